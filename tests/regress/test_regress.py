"""`instract-eval regress`: the gate's verdicts on planted changes, its intervals against a brute-force
loop, its tolerances and directions, its reports, and its refusal of bad input."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from instract_eval import cli as cli_module
from instract_eval.errors import InputError
from instract_eval.metrics import mcq_metrics
from instract_eval.metrics.ranking import ground_truth_ranks
from instract_eval.regress import (DEFAULT_RESAMPLES, DEFAULT_TOLERANCE, IMPROVED, INCOMPARABLE, MISSING, REGRESSION,
                                   UNCHANGED, WITHIN_NOISE, WITHIN_TOLERANCE, GateReport, MetricComparison, _corrected,
                                   _verdict, compare_results, holm_adjusted, to_junit, to_markdown)
from instract_eval.results import read_sample_log, sample_log_of
from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.tasks import load_registry

from ..helpers import result_record, write_json
from ..runner.test_cli_run import cli

TASKS = ["synth-semantic", "synth-srt", "synth-dynamics", "synth-tal"]
RANK_METRICS = ("R@1", "R@5", "median_rank", "mean_rank", "accuracy")
# A change of one multiple-choice sample's scores: (sample index, scores, answer) -> new scores.
Rescoring = Callable[[int, list[float], int], list[float]]


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory) -> Path:
    """The random model with seeds 1 and 2 on four synth tasks, and the null model on one; about a second."""
    root = tmp_path_factory.mktemp("regress")
    registry = load_registry([world / "tasks.yaml"])
    for name, model, args, tasks in (("seed1", "random", {"seed": 1}, TASKS), ("seed2", "random", {"seed": 2}, TASKS),
                                     ("null", "null", {}, ["synth-semantic"])):
        run_evaluation([ModelRequest(model, args)], tasks, registry, RunOptions(output=root / name, log_samples=True))
    return root


def copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def record_file(directory: Path, task: str) -> Path:
    return next(directory.rglob(f"{task}.json"))


def edit_record(directory: Path, task: str, change: Callable[[dict], None]) -> None:
    path = record_file(directory, task)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def edit_log(directory: Path, task: str, change: Callable[[int, dict], None]) -> None:
    path = record_file(directory, task)
    samples = read_sample_log(path)
    for index, sample in enumerate(samples):
        change(index, sample)
    sample_log_of(path).write_text("".join(json.dumps(sample) + "\n" for sample in samples))


def rescore(directory: Path, task: str, change: Rescoring) -> None:
    """Rewrite each multiple-choice sample's scores, then its rank and the record's metrics as the
    engine computes them (`mcq_metrics`, `ground_truth_ranks`): a consistent record and log."""
    path = record_file(directory, task)
    record, samples = json.loads(path.read_text()), read_sample_log(path)
    for index, sample in enumerate(samples):
        sample["scores"] = change(index, sample["scores"], sample["answer"])
    width = max(len(sample["scores"]) for sample in samples)
    scores = np.zeros((len(samples), width))
    mask = np.zeros(scores.shape, dtype=bool)
    for row, sample in enumerate(samples):
        scores[row, :len(sample["scores"])] = sample["scores"]
        mask[row, :len(sample["scores"])] = True
    answers = np.array([sample["answer"] for sample in samples])
    ties = record["ties"]["policy"]
    for sample, rank in zip(samples, ground_truth_ranks(scores, answers, mask, ties=ties)):
        sample["rank"] = float(rank)
    for name, value in mcq_metrics(scores, answers, mask, ties=ties).items():
        record["metrics"][name]["value"] = value
    sample_log_of(path).write_text("".join(json.dumps(sample) + "\n" for sample in samples))
    path.write_text(json.dumps(record))


def top(_: int, scores: list[float], answer: int) -> list[float]:
    """The answer scores above every other candidate: rank 1."""
    return [max(scores) + 1.0 if column == answer else value for column, value in enumerate(scores)]


def bottom(_: int, scores: list[float], answer: int) -> list[float]:
    """The answer scores below every other candidate: the last rank."""
    return [min(scores) - 1.0 if column == answer else value for column, value in enumerate(scores)]


def first_only(change: Rescoring) -> Rescoring:
    """``change`` applied to the first sample only."""
    return lambda index, scores, answer: change(index, scores, answer) if index == 0 else scores


@pytest.fixture
def planted(runs, tmp_path) -> dict[str, Path]:
    """``baseline``: seed 1 with every synth-semantic answer ranked first; ``drop``: the same with every
    answer ranked last; ``noise``: the baseline with only the first sample's answer ranked last."""
    baseline = copy(runs / "seed1", tmp_path / "baseline")
    rescore(baseline, "synth-semantic", top)
    drop = copy(baseline, tmp_path / "drop")
    rescore(drop, "synth-semantic", bottom)
    noise = copy(baseline, tmp_path / "noise")
    rescore(noise, "synth-semantic", first_only(bottom))
    return {"baseline": baseline, "drop": drop, "noise": noise}


def by_metric(report: GateReport, task: str = "synth-semantic") -> dict[str, MetricComparison]:
    return {c.metric: c for c in report.comparisons if c.task == task}


# ------------------------------------------------------------------------------------------------
# Verdicts from the command line


def test_no_change_passes(capsys, runs, tmp_path):
    same = copy(runs / "seed1", tmp_path / "same")
    code, out, err = cli(capsys, "regress", "--baseline", str(runs / "seed1"), "--candidate", str(same),
                         "--markdown", str(tmp_path / "r.md"), "--junit", str(tmp_path / "r.xml"))
    assert code == 0, err
    assert "PASS: no regression" in out and "synth-semantic" in out and "regression" not in out.replace(
        "no regression", "")
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == int(suite.get("tests")) > 0
    assert (tmp_path / "r.md").read_text().startswith("✅")


def test_a_planted_drop_fails_and_is_named_in_markdown_and_junit(capsys, planted, tmp_path):
    code, out, err = cli(capsys, "regress", "--baseline", str(planted["baseline"]), "--candidate",
                         str(planted["drop"]), "--markdown", str(tmp_path / "r.md"), "--junit", str(tmp_path / "r.xml"))
    assert code == 1, err
    assert "FAIL: 5 of" in out and "synth-semantic R@1" in out
    markdown = (tmp_path / "r.md").read_text()
    regressions = markdown.split("### Regressions")[1].split("### All compared metrics")[0]
    for metric in ("R@1 ↑", "R@5 ↑", "median_rank ↓", "mean_rank ↓", "accuracy ↑"):
        assert f"| synth-semantic | {metric} |" in regressions
    assert markdown.startswith("❌") and "synth-srt" not in regressions
    suite = ET.parse(tmp_path / "r.xml").getroot()
    failed = {(case.get("classname"), case.get("name")) for case in suite.iter("testcase")
              if case.find("failure") is not None}
    assert failed == {("synth-semantic", metric) for metric in RANK_METRICS}
    assert suite.get("failures") == "5" and "R@1" in suite.find("testcase/failure").get("message")


def test_a_drop_beyond_tolerance_within_the_noise_passes(capsys, planted):
    """One of six answers pushed last: R@1 falls by 1/6, but a third of the resamples miss that sample."""
    code, out, err = cli(capsys, "regress", "--baseline", str(planted["baseline"]), "--candidate",
                         str(planted["noise"]))
    assert code == 0, err
    report = compare_results(planted["baseline"], planted["noise"], n_resamples=2000)
    compared = by_metric(report)
    assert compared["R@1"].delta == pytest.approx(-1 / 6) and compared["R@1"].verdict == WITHIN_NOISE
    assert compared["R@1"].interval[0] < 0 == compared["R@1"].interval[1]
    assert compared["mean_rank"].verdict == WITHIN_NOISE and compared["median_rank"].verdict == UNCHANGED


def test_lower_is_better_metrics_regress_upwards_and_improve_downwards(planted):
    forward = by_metric(compare_results(planted["baseline"], planted["drop"], n_resamples=2000))
    assert forward["mean_rank"].direction == "lower" and forward["mean_rank"].delta == pytest.approx(9.0)
    assert forward["mean_rank"].interval[0] > 0 and forward["mean_rank"].verdict == REGRESSION
    assert forward["R@1"].direction == "higher" and forward["R@1"].verdict == REGRESSION
    backward = by_metric(compare_results(planted["drop"], planted["baseline"], n_resamples=2000))
    assert {backward[name].verdict for name in RANK_METRICS} == {IMPROVED}


@pytest.mark.parametrize("tolerances, verdicts", [
    ({"R@1": 1.5}, {"R@1": WITHIN_TOLERANCE, "accuracy": REGRESSION}),
    ({"R@1": 1.5, "synth-semantic:R@1": 0.5}, {"R@1": REGRESSION}),
    ({"synth-semantic:R@1": 1.5, "R@1": 0.0}, {"R@1": WITHIN_TOLERANCE}),
    ({"mean_rank": 9.0}, {"mean_rank": WITHIN_TOLERANCE, "median_rank": REGRESSION}),  # a drop equal to it is within
    ({"synth-dynamics:t2v.mean_rank": 100.0}, {"mean_rank": REGRESSION}),  # another task's key does not apply
])
def test_the_most_specific_tolerance_wins(planted, tolerances, verdicts):
    compared = by_metric(compare_results(planted["baseline"], planted["drop"], tolerances=tolerances,
                                         n_resamples=500))
    for metric, verdict in verdicts.items():
        assert compared[metric].verdict == verdict, metric
    expected = tolerances.get("synth-semantic:R@1", tolerances.get("R@1", DEFAULT_TOLERANCE))
    assert compared["R@1"].tolerance == expected and compared["R@5"].tolerance == DEFAULT_TOLERANCE


def test_metric_tolerances_from_the_command_line(capsys, planted):
    argv = ["regress", "--baseline", str(planted["baseline"]), "--candidate", str(planted["drop"]),
            "--tolerance", "20"]
    assert cli(capsys, *argv)[0] == 0
    assert cli(capsys, *argv, "--metric-tolerance", "synth-semantic:mean_rank=1")[0] == 1
    assert cli(capsys, *argv, "--metric-tolerance", "mean_rank=1", "--metric-tolerance",
               "synth-semantic:mean_rank=9.5")[0] == 0


def test_the_command_line_defaults_are_the_library_defaults():
    parameters = inspect.signature(cli_module.regress).parameters
    assert parameters["tolerance"].default == DEFAULT_TOLERANCE
    assert parameters["resamples"].default == DEFAULT_RESAMPLES
    assert parameters["correction"].default == inspect.signature(compare_results).parameters["correction"].default


def test_holm_adjustment_on_a_hand_worked_example():
    # sorted p: 0.01, 0.03, 0.04 (m = 3): 3 x 0.01 = 0.03, max(0.03, 2 x 0.03) = 0.06, max(0.06, 0.04) = 0.06
    assert holm_adjusted([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjusted([]) == []


@pytest.mark.parametrize("correction, verdicts", [
    ("none", [REGRESSION, REGRESSION, REGRESSION]),
    ("holm", [REGRESSION, WITHIN_NOISE, WITHIN_NOISE]),  # adjusted 0.003, 0.06, 0.06 against 0.05
])
def test_the_correction_keeps_many_metrics_from_failing_by_chance(correction, verdicts):
    comparisons = [MetricComparison(task="t", metric=f"m{index}", direction="higher", unit="fraction", baseline=0.5,
                                    candidate=0.4, tolerance=0.01, interval=(-0.2, -0.01), p_value=p_value,
                                    basis="paired bootstrap", verdict=REGRESSION)
                   for index, p_value in enumerate([0.001, 0.03, 0.04])]
    assert [c.verdict for c in _corrected(comparisons, 0.05, correction)] == verdicts


def test_a_planted_drop_survives_the_correction_and_the_option_is_on_the_command_line(capsys, planted, tmp_path):
    report = compare_results(planted["baseline"], planted["drop"], n_resamples=2000)
    assert report.correction == "holm" and by_metric(report)["R@1"].p_adjusted < 0.05
    assert "after Holm's adjustment over the" in to_markdown(report)
    code, _, err = cli(capsys, "regress", "--baseline", str(planted["baseline"]), "--candidate", str(planted["drop"]),
                       "--correction", "none", "--resamples", "500")
    assert code == 1, err
    code, _, err = cli(capsys, "regress", "--baseline", str(planted["baseline"]), "--candidate", str(planted["drop"]),
                       "--correction", "bonferroni")
    assert code == 2 and "--correction: unknown correction 'bonferroni'" in err


# ------------------------------------------------------------------------------------------------
# Intervals against a brute-force loop over the same draws


def pair_videos(directory: Path, task: str) -> None:
    """Two samples per video, within each group: a cluster bootstrap with real clusters. The
    metrics do not depend on the video, so record and log stay consistent."""
    counts: dict[str, int] = {}

    def pair(_: int, sample: dict) -> None:
        group = sample.get("group", "all")
        counts[group] = counts.get(group, 0) + 1
        sample["video"] = f"{group}-{(counts[group] - 1) // 2}"

    edit_log(directory, task, pair)


def brute_force(rows_a: list[dict], rows_b: list[dict], statistic: Callable[[list[dict]], float],
                n_resamples: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of statistic(B) - statistic(A) over whole-video resamples, one
    ``rng.integers(0, videos, size=videos)`` draw per resample, videos numbered in sorted order (the
    gate's canonical order, whatever the order of the log lines)."""
    videos = sorted({row["video"] for row in rows_a})
    members = {video: [i for i, row in enumerate(rows_a) if row["video"] == video] for video in videos}
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_resamples):
        drawn = [i for unit in rng.integers(0, len(videos), size=len(videos)) for i in members[videos[unit]]]
        differences.append(statistic([rows_b[i] for i in drawn]) - statistic([rows_a[i] for i in drawn]))
    alpha = 1 - confidence
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def macro_f1(rows: list[dict]) -> float:
    truth = [row["label"] for row in rows]
    return f1_score(truth, [row["prediction"] for row in rows], labels=sorted(set(truth)), average="macro",
                    zero_division=0)


def mean_macro_f1_over_runs(rows: list[dict]) -> float:
    truth = [row["label"] for row in rows]
    runs = len(rows[0]["srt_predictions"])
    return float(np.mean([f1_score(truth, [row["srt_predictions"][run] for row in rows], labels=sorted(set(truth)),
                                   average="macro", zero_division=0) for run in range(runs)]))


def median_rank(rows: list[dict]) -> float:
    return float(np.median([row["rank"] for row in rows]))


@pytest.mark.parametrize("task, metric, group, statistic", [
    ("synth-srt", "seen.macro_f1", "seen", macro_f1),
    ("synth-srt", "srt.unseen.macro_f1", "unseen", mean_macro_f1_over_runs),
    ("synth-semantic", "median_rank", None, median_rank),
])
def test_the_paired_interval_equals_a_brute_force_cluster_bootstrap(runs, tmp_path, task, metric, group, statistic):
    sides = [copy(runs / name, tmp_path / name) for name in ("seed1", "seed2")]
    for side in sides:
        pair_videos(side, task)
    report = compare_results(sides[0], sides[1], n_resamples=150, seed=7)
    compared = by_metric(report, task)[metric]
    rows_a, rows_b = (read_sample_log(record_file(side, task)) for side in sides)
    order = {row["id"]: row for row in rows_b}
    rows_a = [row for row in rows_a if group is None or row["group"] == group]
    rows_b = [order[row["id"]] for row in rows_a]
    assert compared.delta == pytest.approx(statistic(rows_b) - statistic(rows_a))
    assert compared.interval == pytest.approx(brute_force(rows_a, rows_b, statistic, 150, seed=7), abs=1e-12)
    assert f"over {len({row['video'] for row in rows_a})} videos" in compared.basis


def test_a_statistic_undefined_on_some_resample_falls_back_to_a_point(runs, tmp_path):
    """hm needs both groups; with two unseen videos among six, some resample draws none of them."""
    sides = [copy(runs / name, tmp_path / name) for name in ("seed1", "seed2")]
    for side in sides:
        pair_videos(side, "synth-srt")
    compared = by_metric(compare_results(sides[0], sides[1], n_resamples=400), "synth-srt")
    assert compared["hm.macro_f1"].interval is None
    assert compared["hm.macro_f1"].basis.startswith("no bootstrap interval")


# ------------------------------------------------------------------------------------------------
# What is compared, and what is only noted


def test_a_task_or_metric_gone_from_the_candidate_fails_and_extras_are_listed(capsys, runs, tmp_path):
    candidate = copy(runs / "seed1", tmp_path / "candidate")
    record_file(candidate, "synth-tal").unlink()
    edit_record(candidate, "synth-srt", lambda r: r["metrics"].update(
        extra={"value": 0.5, "unit": "fraction", "direction": "higher"}))
    edit_record(candidate, "synth-srt", lambda r: r["metrics"]["seen.accuracy"].update(value=None))
    edit_record(candidate, "synth-srt", lambda r: r["metrics"].pop("unseen.accuracy"))
    report = compare_results(runs / "seed1", candidate, n_resamples=100)
    skipped = {(item.task, item.metric): item.reason for item in report.not_compared}
    assert skipped == {("synth-srt", "extra"): "only in the candidate"}
    missing = {(c.task, c.metric) for c in report.comparisons if c.verdict == MISSING}
    tal = json.loads(record_file(runs / "seed1", "synth-tal").read_text())["metrics"]
    assert missing == {("synth-srt", "seen.accuracy"), ("synth-srt", "unseen.accuracy")} | {
        ("synth-tal", name) for name, metric in tal.items() if metric["direction"]}
    assert not report.passed and "are missing from the candidate" in report.verdict()
    assert "synth-tal: only in the baseline" in to_markdown(report)
    code, _, _ = cli(capsys, "regress", "--baseline", str(runs / "seed1"), "--candidate", str(candidate))
    assert code == 1


def test_the_verdict_does_not_depend_on_the_order_of_the_sample_logs(runs, tmp_path):
    shuffled = copy(runs / "seed1", tmp_path / "shuffled")
    for log in shuffled.rglob("*.samples.jsonl"):
        lines = log.read_text().splitlines(keepends=True)
        log.write_text("".join(lines[::-1]))
    forward = compare_results(runs / "seed1", runs / "seed2", n_resamples=300)
    reordered = compare_results(shuffled, runs / "seed2", n_resamples=300)
    assert [(c.interval, c.verdict) for c in forward.comparisons] == [
        (c.interval, c.verdict) for c in reordered.comparisons]
    assert any(c.interval is not None for c in forward.comparisons)


def test_a_drop_equal_to_the_tolerance_on_large_ranks_is_within_it():
    assert _verdict(11616.613, 11616.663, "lower", 0.05, None) == WITHIN_TOLERANCE
    assert _verdict(11616.613, 11616.664, "lower", 0.05, None) == REGRESSION


def test_differences_in_task_dataset_items_and_logs_are_noted(runs, tmp_path):
    candidate = copy(runs / "seed1", tmp_path / "candidate")
    edit_record(candidate, "synth-srt", lambda r: r["task"].update(hash="0" * 64))
    edit_record(candidate, "synth-srt", lambda r: r["dataset"].update(sha256="1" * 64))
    edit_log(candidate, "synth-semantic", lambda i, s: s.update(id="renamed") if i == 0 else None)
    sample_log_of(record_file(candidate, "synth-dynamics")).unlink()
    report = compare_results(runs / "seed1", candidate, n_resamples=100)
    notes = "\n".join(report.notes)
    assert "synth-srt: the task definition differs (task hash" in notes and "000000000000 in the candidate" in notes
    assert "synth-srt: the dataset files differ" in notes
    assert "synth-semantic: the sample logs cover different items (1 only in the baseline, 1 only in the candidate)" \
        in notes
    assert "synth-dynamics: no sample log beside the candidate record" in notes
    assert {c.basis for c in by_metric(report).values()} == {"the sample logs cover different items"}
    assert {c.basis for c in by_metric(report, "synth-dynamics").values()} == {
        "no sample log beside the candidate record"}
    assert report.passed and "### Notes" in to_markdown(report)


def test_several_models_for_a_task_need_a_choice(runs, tmp_path):
    mixed = tmp_path / "mixed"
    copy(runs / "seed1" / "random", mixed / "random")
    copy(runs / "null" / "null", mixed / "null")
    with pytest.raises(InputError, match=r"task synth-semantic has 2 records \(null, random\): choose one model "
                                         "with --baseline-model"):
        compare_results(mixed, runs / "seed1")
    assert compare_results(mixed, runs / "seed1", baseline_model="random", n_resamples=100).passed
    with pytest.raises(InputError, match=r"no record of model 'nope' here \(models: null, random\)"):
        compare_results(mixed, runs / "seed1", baseline_model="nope")


# ------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


def _not_json_line(base: Path, cand: Path) -> tuple[list[str], list[str]]:
    log = sample_log_of(record_file(cand, "synth-semantic"))
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "{not json", *lines[2:]]) + "\n")
    return [], [str(log), "line 2: not a JSON object"]


def _missing_field(base: Path, cand: Path) -> tuple[list[str], list[str]]:
    edit_log(base, "synth-semantic", lambda i, s: s.pop("answer") if i == 2 else None)
    return [], [str(sample_log_of(record_file(base, "synth-semantic"))), "line 3: answer: missing"]


def _unreadable_record(base: Path, cand: Path) -> tuple[list[str], list[str]]:
    record_file(cand, "synth-srt").write_text("{")
    return [], [str(record_file(cand, "synth-srt")), "not a readable JSON file"]


def _missing_source(base: Path, cand: Path) -> tuple[list[str], list[str]]:
    shutil.rmtree(cand)
    return [], [str(cand), "no such file or directory"]


def _no_shared_task(base: Path, cand: Path) -> tuple[list[str], list[str]]:
    for task in TASKS[1:]:
        record_file(base, task).unlink()
    record_file(cand, "synth-semantic").unlink()
    return [], ["no task in common: the baseline has synth-semantic; the candidate has synth-dynamics"]


def _options(*argv: str, expected: tuple[str, ...]) -> Callable[[Path, Path], tuple[list[str], list[str]]]:
    return lambda base, cand: (list(argv), list(expected))


@pytest.mark.parametrize("breaking", [
    _not_json_line, _missing_field, _unreadable_record, _missing_source, _no_shared_task,
    _options("--metric-tolerance", "a:b:c=0.1", expected=("--metric-tolerance", "'a:b:c' is not METRIC or TASK:")),
    _options("--metric-tolerance", ":R@1=0.1", expected=("--metric-tolerance", "is not METRIC or TASK:METRIC")),
    _options("--metric-tolerance", "R@1", expected=("--metric-tolerance", "expected METRIC=TOL")),
    _options("--metric-tolerance", "R@l=0.1", expected=("--metric-tolerance", "'R@l' names no metric")),
    _options("--metric-tolerance", "R@1=-0.1", expected=("--metric-tolerance R@1", ">= 0")),
    _options("--tolerance=-0.5", expected=("--tolerance", "got -0.5")),
    _options("--confidence", "1.5", expected=("--confidence", "strictly between 0 and 1")),
    _options("--resamples", "1", expected=("--resamples", ">= 2")),
    _options("--baseline-model", "nope", expected=("--baseline-model", "no record of model 'nope'")),
], ids=lambda breaking: getattr(breaking, "__name__", "option").strip("_"))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, runs, tmp_path, breaking):
    base, cand = copy(runs / "seed1", tmp_path / "base"), copy(runs / "seed1", tmp_path / "cand")
    argv, expected = breaking(base, cand)
    out = tmp_path / "reports"
    out.mkdir()
    code, _, err = cli(capsys, "regress", "--baseline", str(base), "--candidate", str(cand), *argv,
                       "--markdown", str(out / "r.md"), "--junit", str(out / "r.xml"))
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for fragment in expected:
        assert fragment in err
    assert not list(out.iterdir())


def test_an_output_in_a_missing_directory_is_refused_before_anything_is_written(capsys, runs, tmp_path):
    code, _, err = cli(capsys, "regress", "--baseline", str(runs / "seed1"), "--candidate", str(runs / "seed1"),
                       "--junit", str(tmp_path / "r.xml"), "--markdown", str(tmp_path / "absent" / "r.md"))
    assert code == 2 and "--markdown: directory" in err and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------
# Renderers


def _report(task: str, metric: str, regressed: bool) -> GateReport:
    comparison = MetricComparison(task=task, metric=metric, direction="higher", unit="fraction", baseline=0.5,
                                  candidate=0.25, tolerance=0.01, interval=(-0.4, -0.1), p_value=0.0,
                                  basis="paired bootstrap", verdict=REGRESSION if regressed else WITHIN_NOISE)
    return GateReport(baseline="a", candidate="b", baseline_models=("m",), candidate_models=("m",),
                      comparisons=(comparison,), not_compared=(), notes=("x < y & z",), tolerance=0.01,
                      tolerances={}, confidence=0.95, n_resamples=100, seed=0)


def test_junit_escapes_names_and_counts_failures():
    task, metric = 'a<b&"c|\x01\ufffe', "m>1"
    suite = ET.fromstring(to_junit(_report(task, metric, regressed=True)))
    case = suite.find("testcase")
    assert suite.tag == "testsuite" and suite.get("tests") == "1" and suite.get("failures") == "1"
    # The control character is dropped, the non-character XML cannot hold is replaced.
    assert case.get("classname") == 'a<b&"c|\ufffd' and case.get("name") == "m>1"
    assert case.find("failure").get("message").startswith("regression: m>1 (higher is better): 0.5000 -> 0.2500")
    assert "x < y & z" in suite.find("system-out").text
    passing = ET.fromstring(to_junit(_report(task, metric, regressed=False)))
    assert passing.get("failures") == "0" and passing.find("testcase/failure") is None


def test_markdown_cells_escape_pipes():
    markdown = to_markdown(_report("a|b", "m", regressed=True))
    assert "| a\\|b | m ↑ | 0.5000 | 0.2500 | -0.2500 | [-0.4000, -0.1000] | 0 | **regression** |" in markdown


def test_markdown_cells_hold_no_live_html_or_links():
    markdown = to_markdown(_report('t<img src=x onerror="alert(1)">', "[m](https://x.example)", regressed=True))
    assert "<img" not in markdown and "t&lt;img src=x onerror=\"alert(1)\"&gt;" in markdown
    assert "\\[m\\](https://x.example)" in markdown


def test_a_crash_is_exit_3_not_a_regression(capsys, runs, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("instract_eval.regress.compare_results", broken)
    code, _, err = cli(capsys, "regress", "--baseline", str(runs / "seed1"), "--candidate", str(runs / "seed1"))
    assert code == 3 and "regress failed unexpectedly (RuntimeError: boom)" in err


def test_an_empty_sample_log_gives_point_comparisons(runs, tmp_path):
    candidate = copy(runs / "seed1", tmp_path / "candidate")
    sample_log_of(record_file(candidate, "synth-semantic")).write_text("")
    compared = by_metric(compare_results(runs / "seed1", candidate, n_resamples=200), "synth-semantic")
    assert compared["accuracy"].interval is None and compared["accuracy"].verdict == UNCHANGED


def test_a_record_whose_label_is_not_a_string_is_bad_input(capsys, runs, tmp_path):
    candidate = copy(runs / "seed1", tmp_path / "candidate")
    path = record_file(candidate, "synth-semantic")
    record = json.loads(path.read_text())
    record["model"]["label"] = None
    path.write_text(json.dumps(record))
    code, _, err = cli(capsys, "regress", "--baseline", str(runs / "seed1"), "--candidate", str(candidate))
    assert code == 2 and "synth-semantic.json: model.label: model.label must be a non-empty string" in err


# ------------------------------------------------------------------------------------------------
# A redefined metric, and names that hold markup or terminal escapes


@pytest.mark.parametrize("field, value, basis", [
    ("direction", "lower", "the direction differs (baseline 'higher', candidate 'lower')"),
    ("direction", None, "the direction differs (baseline 'higher', candidate None)"),
    ("unit", "rank", "the unit differs (baseline 'fraction', candidate 'rank')"),
])
def test_a_metric_given_another_direction_or_unit_fails_the_gate(capsys, runs, tmp_path, field, value, basis):
    """A candidate that flips accuracy to lower-is-better was "not compared", and the gate passed."""
    candidate = copy(runs / "seed1", tmp_path / "candidate")
    edit_record(candidate, "synth-semantic", lambda r: r["metrics"]["accuracy"].update({field: value}))
    report = compare_results(runs / "seed1", candidate, n_resamples=100)
    accuracy = by_metric(report)["accuracy"]
    assert accuracy.verdict == INCOMPARABLE and accuracy.regressed and accuracy.basis == basis
    assert "accuracy" not in {item.metric for item in report.not_compared}
    assert not report.passed and report.verdict().endswith(
        "compared metrics changed unit or direction (synth-semantic accuracy)")
    code, out, _ = cli(capsys, "regress", "--baseline", str(runs / "seed1"), "--candidate", str(candidate),
                       "--resamples", "100", "--junit", str(tmp_path / "r.xml"))
    assert code == 1 and "incomparable" in out and basis in out.replace("\n", " ")
    assert ET.parse(tmp_path / "r.xml").getroot().get("failures") == "1"


def test_a_regression_and_a_redefined_metric_are_both_named(runs, tmp_path):
    candidate = copy(runs / "seed1", tmp_path / "candidate")
    edit_record(candidate, "synth-semantic", lambda r: r["metrics"]["accuracy"].update(unit="rank"))
    edit_record(candidate, "synth-srt", lambda r: r["metrics"]["seen.accuracy"].update(value=-0.0))
    edit_record(candidate, "synth-srt", lambda r: r["metrics"].pop("unseen.accuracy"))
    verdict = compare_results(runs / "seed1", candidate, n_resamples=100).verdict()
    assert "compared metrics regressed or are missing from the candidate or changed unit or direction " \
           "(1 missing, 1 incomparable)" in verdict


def test_markup_and_control_characters_in_names_reach_neither_terminal_nor_markdown(capsys, tmp_path):
    task = "t[bold red]EVIL[/]\x1b[2J\x9b2J\u202e"
    for name, value in (("base", 0.75), ("cand", 0.25)):
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / "r.json", result_record("m\x1b]0;pwned\x07", task, {"acc": (value, "fraction",
                                                                                                  "higher")}))
    code, out, err = cli(capsys, "regress", "--baseline", str(tmp_path / "base"), "--candidate",
                         str(tmp_path / "cand"), "--markdown", str(tmp_path / "r.md"), "--junit", str(tmp_path / "r.xml"))
    markdown = (tmp_path / "r.md").read_text()
    junit = (tmp_path / "r.xml").read_text()
    assert code == 1, err
    shown = "t[bold red]EVIL[/][2J2J"
    assert shown in out and f"FAIL: 1 of 1 compared metrics regressed ({shown} acc)" in out
    assert "t\\[bold red\\]EVIL\\[/\\]\\[2J2J" in markdown and "(m\\]0;pwned)" in markdown
    assert shown in junit  # a CI page shows the report to people: no one-byte CSI, no right-to-left override
    for text in (out, markdown, junit):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text)
