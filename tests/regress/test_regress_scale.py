"""The gate's shared draws and vectorised medians give exactly the intervals of a slow reference.

The reference is the gate's former computation, written here from its definition: each metric on
its own, its own ``default_rng(seed)``, one ``rng.integers(0, videos, size=videos)`` draw per
resample over the videos in the gate's canonical order (sorted by video, then sample id), the
statistic (mean of hits, numpy's median or mean of ranks) evaluated on that resample's rows, the
percentile interval read with ``numpy.quantile`` and the two-sided p-value. The gate now draws one
stream per task and evaluates every metric on each batch of it; its intervals and p-values must
equal the reference's to the bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instract_eval.metrics import pool_rank_counts, pooled_metrics_from_counts
from instract_eval.metrics.ranking import ranks_from_counts
from instract_eval.regress import compare_results
from instract_eval.results import describe_metrics, sample_log_of

from ..helpers import result_record

TASK = "instract-dynamics"


def write_pooled_run(directory: Path, model: str, sizes: list[int], videos: np.ndarray, noise: float,
                     seed: int) -> Path:
    """A pooled retrieval record and its sample log, as the engine writes them, from seeded scores."""
    rng = np.random.default_rng(seed)
    counts, samples, start = {}, [], 0
    for number, size in enumerate(sizes):
        pool = f"pool{number}"
        base = np.random.default_rng(1_000 + number).standard_normal((size, size)) + 2.0 * np.eye(size)
        block = base + noise * rng.standard_normal((size, size))
        counts[pool] = pool_rank_counts(block, pool=pool)
        t2v, v2t = (ranks_from_counts(counts[pool][d]) for d in ("t2v", "v2t"))
        for member in range(size):
            samples.append({"id": f"{pool}/{member}", "pool": pool, "video": str(videos[start + member]),
                            "t2v_rank": float(t2v[member]), "v2t_rank": float(v2t[member])})
        start += size
    metrics = pooled_metrics_from_counts(counts)["weighted"]
    described = describe_metrics(metrics)
    record = result_record(model, TASK, {name: (m["value"], m["unit"], m["direction"])
                                         for name, m in described.items()})
    record["task"]["kind"] = "retrieval"
    record["ties"] = {"policy": "expected"}
    path = directory / f"{TASK}.json"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    sample_log_of(path).write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    return path


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in sample_log_of(path).read_text(encoding="utf-8").splitlines()]


def slow_reference(rows_a: list[dict], rows_b: list[dict], metric: str, n_resamples: int, seed: int):
    """The percentile interval and p-value of metric(B) - metric(A), one resample at a time."""
    direction, _, name = metric.partition(".")

    def values(rows):
        if name in ("median_rank", "mean_rank"):
            return np.array([row[f"{direction}_rank"] for row in rows])
        k = int(name.removeprefix("R@"))
        needed = ("t2v", "v2t") if direction == "mean" else (direction,)
        return np.mean([[row[f"{d}_rank"] <= k for row in rows] for d in needed], axis=0)

    statistic = np.median if name == "median_rank" else np.mean
    order = sorted(range(len(rows_a)), key=lambda i: (rows_a[i]["video"], rows_a[i]["id"]))
    by_id = {row["id"]: row for row in rows_b}
    first = values([rows_a[i] for i in order])
    second = values([by_id[rows_a[i]["id"]] for i in order])
    videos = list(dict.fromkeys(rows_a[i]["video"] for i in order))
    members = {video: [p for p, i in enumerate(order) if rows_a[i]["video"] == video] for video in videos}
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_resamples):
        rows = [p for unit in rng.integers(0, len(videos), size=len(videos)) for p in members[videos[unit]]]
        differences.append(float(statistic(second[rows])) - float(statistic(first[rows])))
    differences = np.array(differences)
    alpha = 1 - 0.95  # the confidence, as the gate turns it into quantile levels
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    tail = min(np.count_nonzero(differences <= 0), np.count_nonzero(differences >= 0))
    return (float(low), float(high)), min(1.0, 2.0 * tail / n_resamples)


@pytest.mark.parametrize("seed", [0, 3])
def test_shared_draws_and_vectorised_medians_equal_the_slow_reference(tmp_path, seed):
    sizes = [1, 9, 40, 4, 17, 2, 60, 23]  # uneven pools, one of a single clip
    rng = np.random.default_rng(seed)
    videos = rng.integers(0, 70, size=sum(sizes))  # about two clips per video, across pools
    base = write_pooled_run(tmp_path / "base", "model", sizes, videos, noise=0.0, seed=1)
    cand = write_pooled_run(tmp_path / "cand", "model", sizes, videos, noise=1.0, seed=2)
    report = compare_results(base, cand, n_resamples=200, seed=seed, correction="none")
    rows_a, rows_b = read_log(base), read_log(cand)
    compared = {c.metric: c for c in report.comparisons}
    assert {"t2v.median_rank", "v2t.median_rank", "t2v.mean_rank", "mean.R@1"} <= set(compared)
    for name, comparison in compared.items():
        assert comparison.interval is not None, (name, comparison.basis)
        # Ranks are whole numbers and hits 0, 1/2 or 1: every sum is exact in any order, so the
        # gate's matrix products and chunked medians give the loop's numbers to the bit.
        assert (comparison.interval, comparison.p_value) == slow_reference(rows_a, rows_b, name, 200, seed), name
        assert f"over {len(set(videos.tolist()))} videos" in comparison.basis
    assert compared["t2v.median_rank"].interval != (0.0, 0.0)  # the medians do move between resamples
