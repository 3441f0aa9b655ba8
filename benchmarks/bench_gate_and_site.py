"""Time the regression gate and the leaderboard build on result directories sized like the real benchmarks.

Run from the repository root::

    python benchmarks/bench_gate_and_site.py [--resamples 10000] [--models 20] [--seed 0]

Both features read nothing but result records and their sample logs, so their cost is set by how
big those files are, not by a model: the synth group's logs (a few dozen samples per task) say
nothing about a CI gate on InstrAct-Dynamics. The benchmark therefore writes, into a temporary
directory, records laid out exactly as ``instract-eval run --log-samples`` writes them. The random
model is run once on the synth group (a few seconds, no files) and its records are the templates;
their provenance (model, frame spec, run, versions, dataset fingerprint) is kept, and their task
section, coverage, metrics, details, tie counts and samples are replaced.

1. Regression gate: `compare_results(baseline, candidate, n_resamples=R)` for R = 1,000 and
   ``--resamples``, one task per directory pair so that each kind is timed on its own:

   - ``mcq``: instract-semantic, 2,000 clips from 500 videos, 10 candidate captions each;
   - ``retrieval``: instract-dynamics, 16,326 clips in 120 object pools of uneven size, from
     5,000 videos, T2V and V2T ranks inside each pool;
   - ``classification``: srt-ikea, 4,000 clips from 1,000 videos, 21 seen and 10 unseen classes,
     10 synonym runs that rename the unseen ones.

   Scores come from a seeded numpy generator (ground truth a little above the rest); the candidate
   is the baseline plus small noise, which costs it a little ranking quality: the verdict column
   shows what the gate makes of that (a rank metric can regress, its tolerance being 0.01 rank
   under the absolute default). The retrieval engine's similarity matrix is ``[N, N]``, NaN
   outside the pools, so that task holds 2.1 GB while its records are written. The record
   metrics are computed from the same scores by the package's own metric functions, as the task
   engines call them, so `sample_metrics` reproduces every metric the log supports and the gate
   computes a paired bootstrap interval for it: the benchmark asserts that no metric falls back
   to a point comparison. Samples share videos, as clips of HowTo100M videos do, so the bootstrap
   is clustered: means stay vectorised, while medians, macro F1 and harmonic means are evaluated
   resample by resample. The fixed cost (reading, rebuilding) is the time at R = 2.
2. Leaderboard build: ``--models`` models times the synth group's 9 records, values perturbed
   per model, then `build_site` on that directory: records read, pages written, HTML bytes, time.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from instract_eval.api import evaluate
from instract_eval.leaderboard import build_site
from instract_eval.metrics import (
    classification_metrics,
    harmonic_mean,
    mcq_metrics,
    pooled_retrieval_metrics,
    recall_by_pool_size,
    runs_summary,
)
from instract_eval.metrics.ranking import ground_truth_ranks
from instract_eval.regress import GateReport, compare_results
from instract_eval.results import describe_metrics, write_record
from instract_eval.tasks import load_registry
from instract_eval.tasks.registry import Registry, TaskSpec

SEMANTIC_CLIPS, SEMANTIC_CAPTIONS, SEMANTIC_VIDEOS = 2_000, 10, 500
DYNAMICS_CLIPS, DYNAMICS_POOLS, DYNAMICS_VIDEOS = 16_326, 120, 5_000
SRT_CLIPS, SRT_VIDEOS, SRT_CLASSES, SRT_RUNS, SRT_TAU = 4_000, 1_000, {"seen": 21, "unseen": 10}, 10, 0.02
CANDIDATE_NOISE = 0.1  # the candidate's scores: the baseline's plus this much Gaussian noise (score units)
GATE_RESAMPLES = 1_000


# ------------------------------------------------------------------------------------------------
# Engine results: what tasks/{mcq,retrieval,classification}.py return, from given scores


def mcq_result(task: str, scores: np.ndarray, videos: Sequence[str], ties: str) -> dict:
    """`evaluate_mcq`'s result for a full score matrix (answer 0, positive first)."""
    answers = np.zeros(scores.shape[0], dtype=np.int64)
    ranks = ground_truth_ranks(scores, answers, ties=ties)
    return {
        "metrics": mcq_metrics(scores, answers, ties=ties),
        "chance": 1.0 / scores.shape[1],
        "coverage": coverage(scores.shape[0]),
        "samples": [{"id": f"{task}/{i}", "video": video, "scores": row.tolist(), "answer": 0, "rank": float(rank)}
                    for i, (video, row, rank) in enumerate(zip(videos, scores, ranks))],
    }


def retrieval_result(task: str, similarity: np.ndarray, pools: Mapping[str, np.ndarray], videos: Sequence[str],
                     ties: str) -> dict:
    """`evaluate_retrieval`'s pooled result (no categories file, as the packaged task has none)."""
    pooled = pooled_retrieval_metrics(similarity, pools, ties=ties)
    samples = []
    for pool, members in pools.items():
        block = similarity[np.ix_(members, members)]
        diagonal = np.arange(len(members))
        t2v, v2t = ground_truth_ranks(block, diagonal, ties=ties), ground_truth_ranks(block.T, diagonal, ties=ties)
        samples += [{"id": f"{task}/{pool}/{k}", "pool": pool, "video": videos[i], "t2v_rank": float(a),
                     "v2t_rank": float(b)} for k, (i, a, b) in enumerate(zip(members, t2v, v2t))]
    return {"metrics": pooled["weighted"], "per_pool": pooled["per_pool"], "per_category": {},
            "by_pool_size": recall_by_pool_size(similarity, pools, ties=ties),
            "coverage": coverage(similarity.shape[0]), "samples": samples}


def classification_result(task: str, groups: np.ndarray, truth: np.ndarray, videos: Sequence[str],
                          default: Mapping[str, np.ndarray], runs: Sequence[np.ndarray], ties: str) -> dict:
    """`evaluate_classification`'s result: ``default`` logits per group, ``runs`` the unseen group's
    logits under each synonym run (the seen classes keep their names, so their metrics repeat)."""
    rows = {group: np.flatnonzero(groups == group) for group in default}
    label_sets = {"default": {g: classification_metrics(default[g], truth[rows[g]], ties=ties) for g in default}}
    for number, unseen in enumerate(runs, start=1):
        label_sets[f"run-{number}"] = {"seen": label_sets["default"]["seen"],
                                       "unseen": classification_metrics(unseen, truth[rows["unseen"]], ties=ties)}
    per_run = [label_sets[f"run-{number}"] for number in range(1, len(runs) + 1)]
    summary = runs_summary([{m: metrics["unseen"][m] for m in ("accuracy", "macro_f1")} for metrics in per_run])
    headline = {f"{g}.{m}": label_sets["default"][g][m] for g in default for m in ("accuracy", "macro_f1")}
    for metric in ("accuracy", "macro_f1"):
        headline[f"hm.{metric}"] = harmonic_mean(headline[f"seen.{metric}"], headline[f"unseen.{metric}"])
    for metric in ("accuracy", "macro_f1"):
        headline[f"srt.unseen.{metric}"] = summary["mean"][metric]
        headline[f"srt.unseen.{metric}.std"] = summary["std_population"][metric]
    logits = {i: row for g in default for i, row in zip(rows[g], default[g])}
    samples = [{"id": f"{task}/line {i + 1}", "video": videos[i], "label": class_name(groups[i], truth[i]),
                "group": str(groups[i]), "prediction": class_name(groups[i], int(np.argmax(logits[i]))),
                "scores": logits[i].tolist()} for i in range(groups.shape[0])]
    for position, i in enumerate(rows["unseen"]):  # the engine logs each run's prediction for renamed classes
        samples[i]["srt_predictions"] = [class_name("unseen", int(np.argmax(run[position]))) for run in runs]
    return {"metrics": headline, "label_sets": label_sets,
            "runs": {"names": [f"run-{n}" for n in range(1, len(runs) + 1)], "per_run": per_run,
                     "summary": {"unseen": summary}},
            "leaf_augmentation": False, "tau": SRT_TAU, "coverage": coverage(groups.shape[0]), "samples": samples}


def coverage(count: int) -> dict:
    return {"evaluated": count, "total": count, "fraction": 1.0, "failed_videos": {}}


def class_name(group: str, index: int) -> str:
    return f"{group} action {index:02d}"


# ------------------------------------------------------------------------------------------------
# Scores: a baseline and a slightly perturbed candidate


def noisy(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    return values + rng.normal(0.0, CANDIDATE_NOISE, values.shape)


def video_names(rng: np.random.Generator, clips: int, videos: int) -> list[str]:
    """Each clip's source video, drawn with replacement: several clips share a video (a cluster)."""
    return [f"yt{index:05d}" for index in rng.integers(0, videos, clips)]


def semantic_results(rng: np.random.Generator, spec: TaskSpec) -> tuple[dict, dict]:
    scores = rng.normal(0.0, 1.0, (SEMANTIC_CLIPS, SEMANTIC_CAPTIONS))
    scores[:, 0] += 1.0
    videos = video_names(rng, SEMANTIC_CLIPS, SEMANTIC_VIDEOS)
    return (mcq_result(spec.name, scores, videos, spec.ties),
            mcq_result(spec.name, noisy(rng, scores), videos, spec.ties))


def pool_sizes(rng: np.random.Generator, total: int, pools: int) -> np.ndarray:
    """``pools`` uneven sizes (about 0.3x to 1.7x the mean) that add up to ``total``."""
    weights = rng.uniform(0.3, 1.7, pools)
    sizes = np.floor(weights / weights.sum() * total).astype(np.int64)
    sizes[: total - sizes.sum()] += 1
    return sizes


def dynamics_results(rng: np.random.Generator, spec: TaskSpec) -> tuple[dict, dict]:
    """Pools are consecutive index ranges of the ``[N, N]`` similarity matrix, NaN outside the pool
    blocks as in the engine (2.1 GB at this size); one matrix serves both runs in turn."""
    sizes = pool_sizes(rng, DYNAMICS_CLIPS, DYNAMICS_POOLS)
    starts = np.cumsum(sizes) - sizes
    pools = {f"object_{p:03d}": np.arange(start, start + size) for p, (start, size) in enumerate(zip(starts, sizes))}
    baseline = [rng.normal(0.0, 1.0, (size, size)) + 2.0 * np.eye(size) for size in sizes]
    candidate = [noisy(rng, block) for block in baseline]
    videos = video_names(rng, DYNAMICS_CLIPS, DYNAMICS_VIDEOS)
    similarity = np.full((DYNAMICS_CLIPS, DYNAMICS_CLIPS), np.nan)

    def result(blocks: Sequence[np.ndarray]) -> dict:
        for start, block in zip(starts, blocks):
            similarity[start:start + block.shape[0], start:start + block.shape[0]] = block
        return retrieval_result(spec.name, similarity, pools, videos, spec.ties)

    return result(baseline), result(candidate)


def srt_results(rng: np.random.Generator, spec: TaskSpec) -> tuple[dict, dict]:
    """Logits as the engine's: cosines (ground truth a little higher) over tau."""
    groups = np.where(rng.random(SRT_CLIPS) < 2 / 3, "seen", "unseen")
    truth = rng.integers(0, np.where(groups == "seen", SRT_CLASSES["seen"], SRT_CLASSES["unseen"]))
    videos = video_names(rng, SRT_CLIPS, SRT_VIDEOS)

    def logits(group: str) -> np.ndarray:
        rows = np.flatnonzero(groups == group)
        cosines = rng.normal(0.2, 0.03, (rows.shape[0], SRT_CLASSES[group]))
        cosines[np.arange(rows.shape[0]), truth[rows]] += 0.03
        return cosines / SRT_TAU

    default = {group: logits(group) for group in SRT_CLASSES}
    runs = [noisy(rng, default["unseen"]) for _ in range(SRT_RUNS)]
    return (classification_result(spec.name, groups, truth, videos, default, runs, spec.ties),
            classification_result(spec.name, groups, truth, videos, {g: noisy(rng, v) for g, v in default.items()},
                                  [noisy(rng, run) for run in runs], spec.ties))


GATE_TASKS: dict[str, tuple[str, Callable[[np.random.Generator, TaskSpec], tuple[dict, dict]]]] = {
    "mcq": ("instract-semantic", semantic_results),
    "retrieval": ("instract-dynamics", dynamics_results),
    "classification": ("srt-ikea", srt_results),
}


# ------------------------------------------------------------------------------------------------
# Records


def record_from(template: dict, spec: TaskSpec, registry: Registry, result: Mapping) -> dict:
    """The record `instract_eval.runner.run` makes of ``result``, on the template's provenance."""
    described = describe_metrics(result["metrics"], spec.metrics)
    record = copy.deepcopy(template)
    record["task"] = {"name": spec.name, "kind": spec.kind, "paper": spec.paper, "groups": registry.groups_of(spec.name),
                      "hash": spec.spec_hash(), "spec": {"name": spec.name, **spec.raw}, "source": spec.source,
                      "seed": spec.seed}
    record["dataset"]["coverage"] = result["coverage"]
    record["metrics"] = described
    record["details"] = {key: value for key, value in result.items() if key not in ("metrics", "coverage", "samples")}
    record["ties"] = {"policy": spec.ties,
                      "num_tied": {name: m["value"] for name, m in described.items() if name.endswith("num_tied")}}
    return record


def templates_by_kind(records: Sequence[dict]) -> dict[str, dict]:
    """The first synth record of each task kind."""
    found: dict[str, dict] = {}
    for record in records:
        found.setdefault(record["task"]["kind"], record)
    return found


# ------------------------------------------------------------------------------------------------
# 1. The regression gate


def write_gate_pair(root: Path, kind: str, template: dict, registry: Registry, rng: np.random.Generator) -> dict:
    """Baseline and candidate directories of one task under ``root / kind``; returns their sizes."""
    name, results = GATE_TASKS[kind]
    spec = registry.tasks[name]
    pair = results(rng, spec)
    for side, result in zip(("baseline", "candidate"), pair):
        write_record(root / kind / side, record_from(template, spec, registry, result), result["samples"])
    samples = pair[0]["samples"]
    return {"task": name, "samples": len(samples), "clusters": len({s["video"] for s in samples})}


def timed_gate(directory: Path, resamples: int) -> tuple[GateReport, float]:
    started = time.perf_counter()
    report = compare_results(directory / "baseline", directory / "candidate", n_resamples=resamples)
    return report, time.perf_counter() - started


def check_intervals(kind: str, report: GateReport) -> None:
    """Every compared metric has an interval: the logs are the engines' and reproduce every metric."""
    points = {c.metric: c.basis for c in report.comparisons if c.interval is None}
    assert not points, f"{kind}: point comparisons where an interval was expected: {points}"
    assert not report.not_compared, f"{kind}: not compared: {report.not_compared}"


def bench_gate(root: Path, templates: Mapping[str, dict], resamples: int, seed: int) -> None:
    registry = load_registry()
    rng = np.random.default_rng(seed)
    counts = (GATE_RESAMPLES, resamples)
    print(f"regression gate: compare_results on one task per directory pair, clustered by video "
          f"(candidate = baseline + N(0, {CANDIDATE_NOISE}) on the scores)")
    print(f"{'kind':<15} {'task':<18} {'samples':>7} {'clusters':>8} {'metrics':>7} {'intervals':>9} "
          f"{'R=2 s':>6} {f'R={counts[0]} s':>9} {f'R={counts[1]} s':>10} {'ratio':>6}  verdict")
    totals = np.zeros(3)
    for kind, template in templates.items():
        size = write_gate_pair(root, kind, template, registry, rng)
        _, fixed = timed_gate(root / kind, 2)
        (_, few), (report, many) = (timed_gate(root / kind, count) for count in counts)
        check_intervals(kind, report)
        with_interval = sum(c.interval is not None for c in report.comparisons)
        totals += (fixed, few, many)
        print(f"{kind:<15} {size['task']:<18} {size['samples']:>7} {size['clusters']:>8} {len(report.comparisons):>7} "
              f"{with_interval:>9} {fixed:>6.2f} {few:>9.2f} {many:>10.2f} {many / few:>5.1f}x  "
              f"{report.verdict().split(':')[0]} ({len(report.regressions)} regressed)")
    print(f"{'all three':<15} {'':<18} {'':>7} {'':>8} {'':>7} {'':>9} {totals[0]:>6.2f} {totals[1]:>9.2f} "
          f"{totals[2]:>10.2f} {totals[2] / totals[1]:>5.1f}x")


# ------------------------------------------------------------------------------------------------
# 2. The leaderboard build


def perturbed(value: float, unit: str, rng: np.random.Generator) -> float:
    """A nearby value: fractions stay in [0, 1], ranks >= 1, costs >= 0."""
    moved = value * (1.0 + rng.normal(0.0, 0.05))
    if unit == "fraction":
        return float(np.clip(moved, 0.0, 1.0))
    return float(max(moved, 1.0) if unit == "rank" else max(moved, 0.0))


def write_models(out: Path, records: Sequence[dict], models: int, rng: np.random.Generator) -> None:
    """Every record under ``models`` model names, its directional metrics perturbed per model."""
    for number in range(models):
        for template in records:
            record = copy.deepcopy(template)
            record["model"]["name"] = record["model"]["label"] = f"model-{number:03d}"
            for metric in record["metrics"].values():
                value = metric["value"]
                if metric["direction"] is not None and isinstance(value, float) and math.isfinite(value):
                    metric["value"] = perturbed(value, metric["unit"], rng)
            write_record(out, record, None)


def bench_site(root: Path, records: Sequence[dict], models: int, seed: int) -> None:
    write_models(root / "models", records, models, np.random.default_rng(seed))
    started = time.perf_counter()
    board = build_site([root / "models"], root / "site")
    seconds = time.perf_counter() - started
    pages = sorted((root / "site").glob("*.html"))
    size = sum(page.stat().st_size for page in pages)
    print(f"\nleaderboard: build_site on {models} models x {len(records)} synth records")
    print(f"{'records':>7} {'pages':>5} {'HTML bytes':>11} {'seconds':>8} {'ms/record':>9}")
    print(f"{board.num_records:>7} {len(pages):>5} {size:>11,} {seconds:>8.2f} "
          f"{1000 * seconds / board.num_records:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=10_000, help="the larger resample count timed")
    parser.add_argument("--models", type=int, default=20, help="models on the leaderboard")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    records = evaluate("random", ["synth"], output=None, use_cache=False).records
    print(f"synth records of the random model (templates): {len(records)} in {time.perf_counter() - started:.1f} s\n")
    templates = templates_by_kind(records)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        bench_gate(root / "gate", {kind: templates[kind] for kind in GATE_TASKS}, args.resamples, args.seed)
        bench_site(root, records, args.models, args.seed)


if __name__ == "__main__":
    main()
