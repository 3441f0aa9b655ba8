"""`sample_metrics`: each metric of a real record rebuilt from its sample log, checked independently."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, f1_score

from instract_eval.errors import InputError
from instract_eval.metrics import retrieval_metrics
from instract_eval.metrics.ranking import ground_truth_ranks
from instract_eval.results import describe_metrics, read_sample_log, sample_log_of
from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.sample_metrics import sample_metrics
from instract_eval.tasks import load_registry
from instract_eval.tasks.registry import Registry

TASKS = ["synth-aa", "synth-logic", "synth-semantic", "synth-dynamics", "synth-srt", "synth-tal"]
MCQ = ("synth-aa", "synth-logic", "synth-semantic")
RANKS = ("R@1", "R@5", "median_rank", "mean_rank", "accuracy")
POOLED = tuple(f"{d}.{m}" for d in ("t2v", "v2t") for m in ("R@1", "R@5", "R@10", "median_rank", "mean_rank")) + (
    "mean.R@1", "mean.R@5", "mean.R@10")
CLASSIFICATION = tuple(f"{g}.{m}" for g in ("seen", "unseen", "hm") for m in ("accuracy", "macro_f1"))


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory) -> Path:
    """Real records with sample logs: the random model (no ties), the null model (every score tied),
    and the null model on synth-dynamics under the optimistic tie policy. About a second in all."""
    root = tmp_path_factory.mktemp("sample-metrics")
    registry = load_registry([world / "tasks.yaml"])
    for name, model, args, tasks in (("random", "random", {"seed": 1}, [*TASKS, "synth-alignment"]),
                                     ("null", "null", {}, TASKS)):
        run_evaluation([ModelRequest(model, args)], tasks, registry, RunOptions(output=root / name, log_samples=True))
    optimistic = dataclasses.replace(registry.tasks["synth-dynamics"], ties="optimistic")
    run_evaluation([ModelRequest("null", {})], ["synth-dynamics"],
                   Registry({**registry.tasks, "synth-dynamics": optimistic}, registry.groups),
                   RunOptions(output=root / "optimistic", log_samples=True))
    return root


def load(directory: Path, task: str) -> tuple[dict, list[dict], Path]:
    """A record, its sample log and the log's path."""
    path = next(directory.rglob(f"{task}.json"))
    return json.loads(path.read_text()), read_sample_log(path), sample_log_of(path)


def rebuilt(directory: Path, task: str):
    record, samples, log = load(directory, task)
    return record, samples, sample_metrics(record, samples, log=log)


@pytest.mark.parametrize("run, task, per_sample, point", [
    ("random", "synth-aa", RANKS, {}),
    ("random", "synth-logic", RANKS, {}),
    ("null", "synth-semantic", RANKS, {}),  # every score tied: the logged scores still fix the expected hits
    ("random", "synth-dynamics", POOLED, {}),
    ("null", "synth-dynamics", tuple(n for n in POOLED if "rank" in n),
     {n: "ties: R@K is not determined by the logged rank" for n in POOLED if "R@" in n}),
    ("optimistic", "synth-dynamics", POOLED, {}),  # optimistic ranks fix the hits, ties or not
    # the means over the synonym runs come from each sample's srt_predictions
    ("random", "synth-srt", CLASSIFICATION + ("srt.unseen.accuracy", "srt.unseen.macro_f1"), {}),
    ("null", "synth-srt", (), {**dict.fromkeys(CLASSIFICATION, "shared top score"),
                               "srt.unseen.accuracy": "a synonym run has tied top scores"}),
    ("random", "synth-alignment", ("normalized_dtw_cost", "median_normalized_dtw_cost"), {}),
    ("random", "synth-tal", (), {"average_mAP": "not the ground truth", "mAP@0.5": "not the ground truth"}),
])
def test_which_metrics_get_a_per_sample_statistic(runs, run, task, per_sample, point):
    record, _, built = rebuilt(runs / run, task)
    gated = {name for name, metric in record["metrics"].items() if metric["direction"] in ("higher", "lower")}
    assert set(built.per_sample) == set(per_sample)
    assert set(built.per_sample) | set(built.point_only) == gated
    for name, reason in point.items():
        assert reason in built.point_only[name]
    for name, entry in built.per_sample.items():  # the rule: what gets a statistic reproduces the record
        assert entry.value() == pytest.approx(record["metrics"][name]["value"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("run", ["random", "null"])
@pytest.mark.parametrize("task", MCQ)
def test_mcq_hits_and_ranks_equal_scipy_ranks_per_sample(runs, run, task):
    """Expected-tie rank = the average rank; P(rank <= K) = clip((K - better) / (tied + 1), 0, 1)."""
    record, samples, built = rebuilt(runs / run, task)
    low = np.array([rankdata([-s for s in sample["scores"]], method="min")[sample["answer"]] for sample in samples])
    high = np.array([rankdata([-s for s in sample["scores"]], method="max")[sample["answer"]] for sample in samples])
    average = (low + high) / 2
    for name, k in (("R@1", 1), ("R@5", 5), ("accuracy", 1)):
        expected = np.clip((k - (low - 1)) / (high - low + 1), 0, 1)
        np.testing.assert_allclose(built.per_sample[name].values, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(built.per_sample["mean_rank"].values, average)
    np.testing.assert_allclose(built.per_sample["median_rank"].values, [s["rank"] for s in samples])
    assert statistics.median(average) == pytest.approx(record["metrics"]["median_rank"]["value"])
    assert built.per_sample["R@1"].clusters == tuple(s["video"] for s in samples)


def test_pooled_retrieval_metrics_are_statistics_of_all_queries_across_pools(runs):
    """The clip-weighted aggregate is the median / mean / share over the concatenated queries."""
    record, samples, built = rebuilt(runs / "random", "synth-dynamics")
    assert len({s["pool"] for s in samples}) > 1
    value = {name: metric["value"] for name, metric in record["metrics"].items()}
    for direction in ("t2v", "v2t"):
        ranks = [s[f"{direction}_rank"] for s in samples]
        assert value[f"{direction}.median_rank"] == pytest.approx(statistics.median(ranks))
        assert value[f"{direction}.mean_rank"] == pytest.approx(statistics.fmean(ranks))
        assert value[f"{direction}.R@1"] == pytest.approx(sum(r <= 1 for r in ranks) / len(ranks))
    both = [((s["t2v_rank"] <= 1) + (s["v2t_rank"] <= 1)) / 2 for s in samples]
    assert value["mean.R@1"] == pytest.approx(statistics.fmean(both))
    np.testing.assert_array_equal(built.per_sample["mean.R@1"].values, both)


def test_a_gallery_with_several_captions_per_video_supports_only_text_to_video():
    """The engine logs only T2V ranks there; V2T and the mean are not in the log."""
    rng = np.random.default_rng(0)
    owner = np.array([0, 0, 1, 2, 2, 3, 4, 4])
    similarity = rng.normal(size=(8, 5))
    record = {"task": {"name": "gallery", "kind": "retrieval"}, "ties": {"policy": "expected"},
              "metrics": describe_metrics(retrieval_metrics(similarity, text_to_video=owner))}
    ranks = ground_truth_ranks(similarity, owner)
    samples = [{"id": f"t{i}", "video": f"v{owner[i]}", "t2v_rank": float(r)} for i, r in enumerate(ranks)]
    built = sample_metrics(record, samples)
    assert set(built.per_sample) == {"t2v.R@1", "t2v.R@5", "t2v.R@10", "t2v.median_rank", "t2v.mean_rank"}
    assert all("only text-to-video ranks" in built.point_only[name] for name in ("v2t.R@1", "v2t.mean_rank"))
    assert built.per_sample["t2v.R@1"].clusters == tuple(f"v{o}" for o in owner)


def test_classification_accuracy_and_macro_f1_equal_scikit_learn(runs):
    record, samples, built = rebuilt(runs / "random", "synth-srt")
    value = {name: metric["value"] for name, metric in record["metrics"].items()}
    per_group = {}
    for group in ("seen", "unseen"):
        rows = [s for s in samples if s["group"] == group]
        truth, predicted = [s["label"] for s in rows], [s["prediction"] for s in rows]
        per_group[group] = (accuracy_score(truth, predicted),
                            f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0))
        for index, metric in enumerate(("accuracy", "macro_f1")):
            assert value[f"{group}.{metric}"] == pytest.approx(per_group[group][index])
            assert built.per_sample[f"{group}.{metric}"].value() == pytest.approx(per_group[group][index])
        assert built.per_sample[f"{group}.accuracy"].ids == tuple(s["id"] for s in rows)
    for index, metric in enumerate(("accuracy", "macro_f1")):
        a, b = per_group["seen"][index], per_group["unseen"][index]
        assert built.per_sample[f"hm.{metric}"].value() == pytest.approx(0 if a + b == 0 else 2 * a * b / (a + b))


def test_alignment_cost_is_the_mean_and_median_of_the_logged_costs(runs):
    record, samples, built = rebuilt(runs / "random", "synth-alignment")
    costs = [s["cost"] for s in samples]
    assert built.per_sample["normalized_dtw_cost"].value() == pytest.approx(statistics.fmean(costs))
    assert built.per_sample["median_normalized_dtw_cost"].value() == pytest.approx(statistics.median(costs))
    # Resampled by video, as the engine logs it (older logs without a video are resampled one by one).
    assert built.per_sample["normalized_dtw_cost"].clusters == tuple(s["video"] for s in samples)
    assert not built.notes


def test_a_log_that_does_not_reproduce_the_record_gives_no_statistic(runs):
    record, samples, log = load(runs / "random", "synth-dynamics")
    samples[0]["t2v_rank"] += 1
    built = sample_metrics(record, samples, log=log)
    assert "t2v.mean_rank" not in built.per_sample
    assert "not the record's" in built.point_only["t2v.mean_rank"]
    assert "v2t.mean_rank" in built.per_sample


@pytest.mark.parametrize("task, line, edit, message", [
    ("synth-aa", 2, lambda s: s.pop("scores"), "line 2: scores: missing"),
    ("synth-aa", 1, lambda s: s.update(answer=5), "line 1: answer: is 5 but the sample has 2 scores"),
    ("synth-aa", 3, lambda s: s.update(scores=[0.1, "x"]), "line 3: scores: expected a non-empty list"),
    ("synth-aa", 2, lambda s: s.update(id="synth-aa/line 1"), "line 2: id: repeats the id 'synth-aa/line 1' of line 1"),
    ("synth-aa", 1, lambda s: s.update(task="synth-or"), "line 1: task: is 'synth-or'"),
    ("synth-aa", 4, lambda s: s.pop("video"), "line 4: video: missing"),
    ("synth-dynamics", 2, lambda s: s.update(t2v_rank=0), "line 2: t2v_rank: expected a 1-based rank"),
    ("synth-srt", 3, lambda s: s.update(prediction=None), "line 3: prediction: expected a class name, got None"),
])
def test_a_bad_sample_names_the_file_the_line_and_the_field(runs, task, line, edit, message):
    record, samples, log = load(runs / "random", task)
    edit(samples[line - 1])
    with pytest.raises(InputError) as raised:
        sample_metrics(record, samples, log=log)
    assert str(raised.value).startswith(f"{log}: ") and message in str(raised.value)


@pytest.mark.parametrize("line, message", [('{"id": "a"', "line 2: not a JSON object"),
                                           ("[1, 2]", "line 2: not a JSON object (a list)"),
                                           ('{"video": "v"}', "line 2: id: missing the sample's string id")])
def test_a_log_line_that_is_not_a_sample_is_an_input_error(tmp_path, line, message):
    record = tmp_path / "t.json"
    (tmp_path / "t.samples.jsonl").write_text('{"id": "a"}\n' + line + "\n")
    with pytest.raises(InputError) as raised:
        read_sample_log(record)
    assert str(raised.value).startswith(f"{tmp_path / 't.samples.jsonl'}: {message}")
    assert read_sample_log(tmp_path / "absent.json") is None
