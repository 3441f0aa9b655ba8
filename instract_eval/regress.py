"""The regression gate: a candidate run's result records against a baseline's, metric by metric.

Records are paired by task name; every metric both sides have, whose direction is ``higher`` or
``lower``, is compared (counts and spreads have no direction and are not gated). A metric that the
candidate gives another unit or direction is *incomparable* and fails the gate, as does one it lacks
(*missing*): a candidate must not pass by redefining or dropping what it is measured on. A metric
*regresses* when it is worse than the baseline, in its direction, by more than its tolerance
(absolute) and, where a paired bootstrap interval of the difference exists, that interval lies
entirely on the worse side of zero. Without an interval the tolerance alone decides.

An interval exists when both records have their sample logs, the logs cover the same samples (same
ids, same videos), and `instract_eval.sample_metrics` rebuilds the metric from both logs. Then
`paired_bootstrap` draws the same videos for both runs (every sample of a drawn video is kept), so
the variation the two runs share cancels in the difference and a change that one or two samples
explain is told apart from a real drop.

Many metrics are tested at once (61 on the synth group), so some intervals would exclude zero by
chance alone; with ``correction="holm"`` (the default) a metric with an interval regresses only if
it also stays significant under Holm's step-down adjustment of the paired p-values over every
metric of the report that has an interval, which keeps the chance of any false alarm at
``1 - confidence``.

Tolerances: one default, overridden per metric (``METRIC``) or per task and metric
(``TASK:METRIC``); the more specific key wins. `to_markdown` and `to_junit` render a report for a
pull-request comment and for a CI test view.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .metrics.statistics import PairedJob, paired_bootstraps
from .results import is_finite_number, model_label, read_record_files, read_sample_log, sample_log_of
from .sample_metrics import PerSample, SampleMetrics, sample_metrics
from .text import plain, plain_lines, plural, safe_markup

__all__ = [
    "DEFAULT_TOLERANCE",
    "DEFAULT_RESAMPLES",
    "CORRECTIONS",
    "REGRESSION",
    "MISSING",
    "INCOMPARABLE",
    "WITHIN_NOISE",
    "WITHIN_TOLERANCE",
    "IMPROVED",
    "UNCHANGED",
    "MetricComparison",
    "NotCompared",
    "GateReport",
    "compare_results",
    "holm_adjusted",
    "parse_tolerance",
    "to_table",
    "to_markdown",
    "to_junit",
    "format_number",
    "format_delta",
    "format_interval",
    "format_p",
    "metric_label",
]

DEFAULT_TOLERANCE = 0.01
DEFAULT_RESAMPLES = 10_000
CORRECTIONS = ("holm", "none")

REGRESSION = "regression"
MISSING = "missing"  # the baseline has a value, the candidate none: a gate must not pass on a vanished metric
# The two sides give the metric another unit or direction: a candidate must not pass by redefining it.
INCOMPARABLE = "incomparable"
WITHIN_NOISE = "within noise"
WITHIN_TOLERANCE = "within tolerance"
IMPROVED = "improved"
UNCHANGED = "unchanged"

# A drop equal to the tolerance up to rounding (0.5 - 0.49 is 0.010000000000000009) is not beyond it;
# relative to the larger of 1 and the values compared.
_ROUNDING = 1e-12
_ARROWS = {"higher": "↑", "lower": "↓"}
# The verdict line names this many regressions; the tables list them all.
_NAMED_IN_VERDICT = 5
# The verdicts that fail the gate, with what the verdict line says of them.
_FAILURES = {REGRESSION: "regressed", MISSING: "are missing from the candidate",
             INCOMPARABLE: "changed unit or direction"}


@dataclass(frozen=True)
class MetricComparison:
    """One (task, metric) compared: the two values, the interval of their difference, the verdict.

    ``interval`` is the paired bootstrap interval of ``candidate - baseline`` at the report's
    confidence, or None; ``basis`` says how many samples and videos it resampled, or why there is
    none (then the comparison is a point comparison).
    """

    task: str
    metric: str
    direction: str
    unit: str
    baseline: float
    candidate: float
    tolerance: float
    interval: tuple[float, float] | None
    p_value: float | None
    basis: str
    verdict: str
    p_adjusted: float | None = None  # Holm's adjustment over the report's metrics with an interval

    @property
    def delta(self) -> float:
        return self.candidate - self.baseline

    @property
    def regressed(self) -> bool:
        """A failure of the gate: worse beyond tolerance and noise, gone from the candidate, or
        given another unit or direction there."""
        return self.verdict in _FAILURES


@dataclass(frozen=True)
class NotCompared:
    """A task (``metric`` None) or a metric that only one side has, or that cannot be compared."""

    task: str
    metric: str | None
    reason: str


@dataclass(frozen=True)
class GateReport:
    """Everything `compare_results` found, in task order; render it with `to_markdown` or `to_junit`."""

    baseline: str
    candidate: str
    baseline_models: tuple[str, ...]
    candidate_models: tuple[str, ...]
    comparisons: tuple[MetricComparison, ...]
    not_compared: tuple[NotCompared, ...]
    notes: tuple[str, ...]
    tolerance: float
    tolerances: Mapping[str, float]
    confidence: float
    n_resamples: int
    seed: int
    correction: str = "holm"

    @property
    def regressions(self) -> tuple[MetricComparison, ...]:
        return tuple(c for c in self.comparisons if c.regressed)

    @property
    def passed(self) -> bool:
        return not self.regressions

    def verdict(self) -> str:
        """One line: pass or fail, and which metrics regressed."""
        if self.passed:
            return f"PASS: no regression in {plural(len(self.comparisons), 'compared metric')}"
        regressions = self.regressions
        named = ", ".join(plain(f"{c.task} {c.metric}") for c in regressions[:_NAMED_IN_VERDICT])
        if len(regressions) > _NAMED_IN_VERDICT:
            named += f" and {len(regressions) - _NAMED_IN_VERDICT} more"
        counts = {verdict: sum(c.verdict == verdict for c in regressions) for verdict in _FAILURES}
        kinds = [verdict for verdict, count in counts.items() if count]
        what = " or ".join(_FAILURES[verdict] for verdict in kinds)
        if len(kinds) > 1:
            what += " (" + ", ".join(f"{counts[verdict]} {verdict}" for verdict in kinds if verdict != REGRESSION) + ")"
        return f"FAIL: {len(regressions)} of {len(self.comparisons)} compared metrics {what} ({named})"


# ------------------------------------------------------------------------------------------------
# Options


def parse_tolerance(text: str) -> tuple[str, float]:
    """``METRIC=TOL`` or ``TASK:METRIC=TOL`` (the ``--metric-tolerance`` syntax) as ``(key, tol)``."""
    key, separator, value = text.rpartition("=")
    if not separator:
        raise InputError(f"expected METRIC=TOL or TASK:METRIC=TOL, got {text!r}", field="--metric-tolerance")
    try:
        tolerance = float(value)
    except ValueError:
        raise InputError(f"tolerance {value!r} in {text!r} is not a number", field="--metric-tolerance") from None
    _check_key(key)
    return key, _check_tolerance(tolerance, f"--metric-tolerance {key}")


def _check_key(key: Any) -> str:
    """A tolerance key: ``METRIC`` or ``TASK:METRIC``, no empty part, no surrounding spaces."""
    parts = key.split(":") if isinstance(key, str) else []
    if not 1 <= len(parts) <= 2 or any(not part or part != part.strip() for part in parts):
        raise InputError(f"tolerance key {key!r} is not METRIC or TASK:METRIC", field="--metric-tolerance")
    return key


def _check_tolerance(value: Any, where: str) -> float:
    if not is_finite_number(value) or value < 0:
        raise InputError(f"a tolerance is a finite number >= 0 (absolute), got {value!r}", field=where)
    return float(value)


def _check_options(n_resamples: Any, confidence: Any, seed: Any) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 2:
        raise InputError(f"expected an integer >= 2, got {n_resamples!r}", field="--resamples")
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise InputError(f"expected a level strictly between 0 and 1, got {confidence!r}", field="--confidence")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"expected an integer >= 0, got {seed!r}", field="--seed")


# ------------------------------------------------------------------------------------------------
# Loading one side


@dataclass(frozen=True)
class _Side:
    """One side's record of a task, with what its sample log supports (None: no log)."""

    path: Path
    record: dict
    samples: SampleMetrics | None = None

    @property
    def label(self) -> str:
        return model_label(self.record)


def _load(source: str | os.PathLike, model: str | None, flag: str) -> dict[str, _Side]:
    """The records of ``source`` by task name: one model per task, or the one ``model`` names."""
    found = read_record_files(source)
    if model is not None:
        chosen = [(path, record) for path, record in found
                  if model in (record["model"].get("label"), record["model"]["name"])]
        if not chosen:
            labels = sorted({model_label(record) for _, record in found})
            raise InputError(f"no record of model {model!r} here (models: {', '.join(labels)})", path=source,
                             field=flag)
        found = chosen
    by_task: dict[str, list[tuple[Path, dict]]] = {}
    for path, record in found:
        by_task.setdefault(record["task"]["name"], []).append((path, record))
    sides = {}
    for task, entries in by_task.items():
        if len(entries) > 1:
            labels = [model_label(record) for _, record in entries]
            which = ", ".join(labels) if len(set(labels)) == len(labels) else ", ".join(str(p) for p, _ in entries)
            raise InputError(f"task {task} has {len(entries)} records ({which}): choose one model with {flag}",
                             path=source, field=flag)
        path, record = entries[0]
        sides[task] = _Side(path, record)
    return sides


def _with_samples(side: _Side) -> _Side:
    """``side`` with its sample log read and rebuilt into per-sample statistics (bad lines raise)."""
    samples = read_sample_log(side.path)
    if samples is None:
        return side
    return _Side(side.path, side.record, sample_metrics(side.record, samples, log=sample_log_of(side.path)))


# ------------------------------------------------------------------------------------------------
# Comparing


def compare_results(
    baseline: str | os.PathLike,
    candidate: str | os.PathLike,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    tolerances: Mapping[str, float] = {},
    baseline_model: str | None = None,
    candidate_model: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    correction: str = "holm",
) -> GateReport:
    """Compare the candidate's records with the baseline's; see the module docstring for the rule.

    ``baseline`` and ``candidate`` are record files or result directories (``run --output``).
    ``tolerances`` maps ``METRIC`` or ``TASK:METRIC`` to an absolute tolerance that replaces
    ``tolerance`` there. Every input is read and checked before anything is computed; bad input
    (unreadable records or sample logs, a missing sample field, a bad tolerance, several models for
    a task without a choice, no task in common) is an `InputError` naming the file and the field.
    """
    default = _check_tolerance(tolerance, "--tolerance")
    overrides = {_check_key(key): _check_tolerance(value, f"--metric-tolerance {key}")
                 for key, value in tolerances.items()}
    _check_options(n_resamples, confidence, seed)
    if correction not in CORRECTIONS:
        raise InputError(f"unknown correction {correction!r} (choose {' or '.join(CORRECTIONS)})", field="--correction")
    base = _load(baseline, baseline_model, "--baseline-model")
    cand = _load(candidate, candidate_model, "--candidate-model")
    shared = [task for task in base if task in cand]
    if not shared:
        raise InputError(f"no task in common: the baseline has {', '.join(sorted(base))}; the candidate has "
                         f"{', '.join(sorted(cand))}", path=candidate)
    _check_keys_match(overrides, base, cand)
    pairs = [(task, _with_samples(base[task]), _with_samples(cand[task])) for task in shared]
    not_compared = [NotCompared(task, None, "only in the candidate") for task in cand if task not in base]
    comparisons = [missing for task in base if task not in cand
                   for name in _metric_names(base[task].record, base[task].record)
                   if (missing := _missing(task, name, base[task].record, default, overrides)) is not None]
    notes = [f"{task}: only in the baseline: each of its metrics is missing from the candidate"
             for task in base if task not in cand]
    options = {"n_resamples": int(n_resamples), "confidence": float(confidence), "seed": int(seed)}
    for task, before, after in pairs:
        notes += _task_notes(task, before, after)
        same_items = (before.samples is not None and after.samples is not None
                      and before.samples.items == after.samples.items)
        names = _metric_names(before.record, after.record)
        intervals = _intervals([name for name in names if _needs_interval(name, before, after)], before, after,
                               same_items, options)
        for name in names:
            outcome = _compare_metric(task, name, before, after, _tolerance_of(task, name, default, overrides),
                                      intervals)
            (comparisons if isinstance(outcome, MetricComparison) else not_compared).append(outcome)
            if isinstance(outcome, MetricComparison) and outcome.verdict == INCOMPARABLE:
                notes.append(f"{task} {name}: {outcome.basis}: not comparable, a failure")
    return GateReport(
        baseline=str(baseline), candidate=str(candidate),
        baseline_models=tuple(dict.fromkeys(base[task].label for task in shared)),
        candidate_models=tuple(dict.fromkeys(cand[task].label for task in shared)),
        comparisons=_corrected(comparisons, 1 - float(confidence), correction), not_compared=tuple(not_compared),
        notes=tuple(dict.fromkeys(notes)), tolerance=default, tolerances=dict(overrides), correction=correction,
        **options)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (Holm 1979).

    With the ``m`` p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted ``i``-th is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where it is below ``alpha`` keeps the
    family-wise error rate at ``alpha`` under any dependence between the tests.
    """
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _corrected(comparisons: Sequence[MetricComparison | NotCompared], alpha: float,
               correction: str) -> tuple[MetricComparison, ...]:
    """The comparisons with Holm-adjusted p-values; an interval-backed regression that is not
    significant after the adjustment is within noise."""
    compared = [c for c in comparisons if isinstance(c, MetricComparison)]
    tested = [index for index, c in enumerate(compared) if c.p_value is not None]
    if correction == "none" or not tested:
        return tuple(compared)
    for index, p_adjusted in zip(tested, holm_adjusted([compared[index].p_value for index in tested])):
        c = compared[index]
        verdict = WITHIN_NOISE if c.verdict == REGRESSION and not p_adjusted < alpha else c.verdict
        compared[index] = dataclasses.replace(c, p_adjusted=p_adjusted, verdict=verdict)
    return tuple(compared)


def _check_keys_match(overrides: Mapping[str, float], base: Mapping[str, _Side], cand: Mapping[str, _Side]) -> None:
    """A tolerance key that names no metric of either side is a typo, not a silent no-op."""
    known = {(task, name) for sides in (base, cand) for task, side in sides.items() for name in side.record["metrics"]}
    for key in overrides:
        task, _, metric = key.rpartition(":")
        if not any(name == metric and (not task or task == other) for other, name in known):
            raise InputError(f"tolerance key {key!r} names no metric of the compared records",
                             field="--metric-tolerance")


def _tolerance_of(task: str, metric: str, default: float, overrides: Mapping[str, float]) -> float:
    """``TASK:METRIC`` wins over ``METRIC``, which wins over the default."""
    return overrides.get(f"{task}:{metric}", overrides.get(metric, default))


def _metric_names(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """The gated metrics of either record: the baseline's order, then the candidate's extras."""
    names = list(baseline["metrics"]) + [name for name in candidate["metrics"] if name not in baseline["metrics"]]
    return [name for name in names
            if any(r["metrics"].get(name, {}).get("direction") in _ARROWS for r in (baseline, candidate))]


def _missing(task: str, name: str, baseline: Mapping[str, Any], default: float,
             overrides: Mapping[str, float]) -> MetricComparison | None:
    """A baseline metric with a value that the candidate lacks or holds no number for: a failure."""
    metric = baseline["metrics"].get(name)
    if metric is None or not is_finite_number(metric["value"]) or metric.get("direction") not in _ARROWS:
        return None
    return MetricComparison(task=task, metric=name, direction=metric["direction"], unit=metric["unit"],
                            baseline=float(metric["value"]), candidate=math.nan,
                            tolerance=_tolerance_of(task, name, default, overrides), interval=None, p_value=None,
                            basis="the candidate has no value for it", verdict=MISSING)


def _needs_interval(name: str, before: _Side, after: _Side) -> bool:
    """Whether `_compare_metric` reaches the interval for ``name``: both values are numbers, in one
    unit and one direction (the checks it makes first, in that order)."""
    first, second = before.record["metrics"].get(name), after.record["metrics"].get(name)
    return (first is not None and is_finite_number(first["value"]) and second is not None
            and is_finite_number(second["value"]) and not _changed_definition(first, second))


def _compare_metric(task: str, name: str, before: _Side, after: _Side, tolerance: float,
                    intervals: Mapping[str, tuple[tuple[float, float] | None, float | None, str]]
                    ) -> MetricComparison | NotCompared:
    """One metric: missing from the candidate (a failure), not compared (the baseline lacks it or has
    no number for it), incomparable (another unit or direction in the candidate: a failure), or its verdict."""
    sides = {"baseline": before.record["metrics"].get(name), "candidate": after.record["metrics"].get(name)}
    if sides["baseline"] is None:
        return NotCompared(task, name, "only in the candidate")
    if not is_finite_number(sides["baseline"]["value"]):
        return NotCompared(task, name, f"the baseline value is {sides['baseline']['value']!r}, not a number")
    if sides["candidate"] is None or not is_finite_number(sides["candidate"]["value"]):
        return _missing(task, name, before.record, tolerance, {}) or NotCompared(
            task, name, "the baseline metric has no direction")
    direction = sides["baseline"]["direction"]
    value_a, value_b = float(sides["baseline"]["value"]), float(sides["candidate"]["value"])
    changed = _changed_definition(sides["baseline"], sides["candidate"])
    if changed:
        return MetricComparison(task=task, metric=name, direction=direction, unit=sides["baseline"]["unit"],
                                baseline=value_a, candidate=value_b, tolerance=tolerance, interval=None,
                                p_value=None, basis=changed, verdict=INCOMPARABLE)
    interval, p_value, basis = intervals[name]
    return MetricComparison(task=task, metric=name, direction=direction, unit=sides["baseline"]["unit"],
                            baseline=value_a, candidate=value_b, tolerance=tolerance, interval=interval,
                            p_value=p_value, basis=basis,
                            verdict=_verdict(value_a, value_b, direction, tolerance, interval))


def _changed_definition(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> str:
    """What makes the two values incomparable (``the direction differs (baseline 'higher', candidate
    'lower')``), or an empty string: a value is only better or worse on one scale in one direction."""
    return "; ".join(f"the {key} differs (baseline {baseline[key]!r}, candidate {candidate[key]!r})"
                     for key in ("unit", "direction") if baseline[key] != candidate[key])


def _verdict(baseline: float, candidate: float, direction: str, tolerance: float,
             interval: tuple[float, float] | None) -> str:
    """Regression: worse by more than the tolerance and, with an interval, all of it on the worse side.

    A drop equal to the tolerance up to the rounding of the subtraction is within it; that rounding
    grows with the values (a mean rank of 11616.663 minus 11616.613 is 0.050000000001).
    """
    delta = candidate - baseline
    worse = -delta if direction == "higher" else delta
    if worse == 0:
        return UNCHANGED
    if worse < 0:
        return IMPROVED
    if worse - tolerance <= _ROUNDING * max(1.0, abs(tolerance), abs(baseline), abs(candidate)):
        return WITHIN_TOLERANCE
    if interval is not None:
        low, high = interval
        excluded = high < 0 if direction == "higher" else low > 0
        if not excluded:
            return WITHIN_NOISE
    return REGRESSION


def _intervals(names: Sequence[str], before: _Side, after: _Side, same_items: bool,
               options: Mapping[str, Any]) -> dict[str, tuple[tuple[float, float] | None, float | None, str]]:
    """Each metric's paired bootstrap interval of the difference, with its p-value and basis, or why
    there is none; all the task's intervals in one `paired_bootstraps` call, so that its metrics
    share one stream of draws (one per number of videos resampled) instead of each drawing it anew."""
    found: dict[str, tuple[tuple[float, float] | None, float | None, str]] = {}
    jobs: dict[str, tuple[PairedJob, PerSample]] = {}
    pairings: dict[tuple[int, int, int], _Pairing] = {}
    for name in names:
        prepared = _prepared(name, before, after, same_items, pairings)
        if isinstance(prepared, str):
            found[name] = (None, None, prepared)
        else:
            jobs[name] = prepared
    results = paired_bootstraps([job for job, _ in jobs.values()], **options)
    for (name, (job, first)), result in zip(jobs.items(), results):
        if isinstance(result, ValueError):
            found[name] = (None, None, f"no bootstrap interval: {result}")
            continue
        units = len(first.ids) if job.clusters is None else len(set(job.clusters))
        what = "sample" if first.clusters is None else "video"
        found[name] = ((result.low, result.high), result.p_value,
                       f"paired bootstrap over {plural(units, what)} ({plural(len(first.ids), 'sample')})")
    return {name: found[name] for name in names}


def _prepared(name: str, before: _Side, after: _Side, same_items: bool,
              pairings: dict[tuple[int, int, int], _Pairing]) -> tuple[PairedJob, PerSample] | str:
    """The paired bootstrap to run for ``name`` (with the baseline's per-sample data), or why there is none."""
    if before.samples is None or after.samples is None:
        missing = " and ".join(side for side, s in (("baseline", before), ("candidate", after)) if s.samples is None)
        return f"no sample log beside the {missing} record"
    reasons = {side: s.samples.point_only.get(name) for side, s in (("baseline", before), ("candidate", after))}
    if any(reasons.values()):
        if len(set(reasons.values())) == 1:
            return str(reasons["baseline"])
        return "; ".join(f"{side}: {r}" for side, r in reasons.items() if r)
    if not same_items:
        return "the sample logs cover different items"
    first, second = before.samples.per_sample.get(name), after.samples.per_sample.get(name)
    if first is None or second is None:
        return "not in the sample log"
    paired = _paired(first, second, pairings)
    if isinstance(paired, str):
        return paired
    values_a, values_b, clusters = paired
    return PairedJob(values_a, values_b, first.statistic, clusters), first


_Pairing = tuple[np.ndarray, np.ndarray, "tuple[str, ...] | None"]


def _paired(first: PerSample, second: PerSample, pairings: dict[tuple[int, int, int], _Pairing] | None = None
            ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None] | str:
    """Both runs' rows in one canonical order, by (video, sample id), and the cluster keys when videos repeat.

    The order is fixed by the data, not by the lines of either log, so that the same records give
    the same draws, intervals and verdicts however their logs are ordered. With every video
    distinct the cluster bootstrap draws exactly what the plain one draws, so no keys are passed
    and `paired_bootstrap` may take its vectorised median. ``pairings`` keeps the order of each
    (ids, clusters, other ids) seen, by identity: the metrics of a task mostly share their rows,
    and sorting 16,000 of them once per metric was a good part of the gate's fixed cost.
    """
    if first.statistic is not second.statistic:
        return "the two sample logs give this metric different statistics"
    key = (id(first.ids), id(first.clusters), id(second.ids))
    pairing = None if pairings is None else pairings.get(key)
    if pairing is None:
        if set(first.ids) != set(second.ids):
            return "the sample logs count different samples toward it"
        rows = sorted(range(len(first.ids)), key=lambda row: (
            "" if first.clusters is None else first.clusters[row], first.ids[row]))
        position = {identifier: row for row, identifier in enumerate(second.ids)}
        order = np.fromiter((position[first.ids[row]] for row in rows), dtype=np.int64, count=len(rows))
        clusters = None if first.clusters is None else tuple(first.clusters[row] for row in rows)
        if clusters is not None and len(set(clusters)) == len(clusters):
            clusters = None
        pairing = (np.asarray(rows, dtype=np.int64), order, clusters)
        if pairings is not None:
            pairings[key] = pairing
    rows, order, clusters = pairing
    return first.values[rows], second.values[order], clusters


def _task_notes(task: str, before: _Side, after: _Side) -> list[str]:
    """What differs between the two records of a task beyond the metrics, worth a reader's attention."""
    a, b = before.record, after.record
    notes = []
    checks = (("the task definition differs (task hash", a["task"].get("hash"), b["task"].get("hash")),
              ("the dataset files differ (fingerprint", (a.get("dataset") or {}).get("sha256"),
               (b.get("dataset") or {}).get("sha256")),
              ("the tie policy differs (policy", (a.get("ties") or {}).get("policy"),
               (b.get("ties") or {}).get("policy")))
    for what, first, second in checks:
        if first != second:
            notes.append(f"{task}: {what} {_short(first)} in the baseline, {_short(second)} in the candidate)")
    coverage = [((r.get("dataset") or {}).get("coverage") or {}) for r in (a, b)]
    counts = [(c.get("evaluated"), c.get("total")) for c in coverage]
    if counts[0] != counts[1]:
        notes.append(f"{task}: {counts[0][0]} of {counts[0][1]} items evaluated in the baseline, "
                     f"{counts[1][0]} of {counts[1][1]} in the candidate")
    for side, s in (("baseline", before), ("candidate", after)):
        if s.samples is None:
            notes.append(f"{task}: no sample log beside the {side} record ({sample_log_of(s.path)}): "
                         "point comparisons only")
        else:
            notes += [f"{task}: {note}" for note in s.samples.notes]
    if before.samples is not None and after.samples is not None and before.samples.items != after.samples.items:
        difference = _item_difference(before.samples, after.samples)
        notes.append(f"{task}: the sample logs cover different items ({difference}): point comparisons only")
    return notes


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if re.fullmatch(r"[0-9a-f]{64}", text) else repr(value)


def _item_difference(first: SampleMetrics, second: SampleMetrics) -> str:
    only_a = len(first.items.keys() - second.items.keys())
    only_b = len(second.items.keys() - first.items.keys())
    moved = sum(1 for key in first.items.keys() & second.items.keys() if first.items[key] != second.items[key])
    parts = [f"{only_a} only in the baseline", f"{only_b} only in the candidate"]
    if moved:
        parts.append(f"{moved} with another video")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------------
# Rendering


def format_number(value: float, unit: str) -> str:
    """Four decimals for fractions, three for ranks and costs: enough to see a 0.001 tolerance."""
    if not math.isfinite(value):
        return "–"
    return f"{value:.3f}" if unit in ("rank", "cost") else f"{value:.4f}"


def format_delta(comparison: MetricComparison) -> str:
    """The difference in the metric's unit; ``–`` when there is none or the units differ."""
    if comparison.verdict == INCOMPARABLE or not math.isfinite(comparison.delta):
        return "–"
    return f"{comparison.delta:+.3f}" if comparison.unit in ("rank", "cost") else f"{comparison.delta:+.4f}"


def format_interval(comparison: MetricComparison) -> str:
    """``[low, high]`` of the difference, or ``point`` when there is no interval."""
    if comparison.verdict in (MISSING, INCOMPARABLE):
        return "–"
    if comparison.interval is None:
        return "point"
    digits = 3 if comparison.unit in ("rank", "cost") else 4
    low, high = comparison.interval
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def format_p(comparison: MetricComparison) -> str:
    """The paired bootstrap p-value, Holm-adjusted when the report is; ``–`` without an interval."""
    p_value = comparison.p_adjusted if comparison.p_adjusted is not None else comparison.p_value
    return "–" if p_value is None else f"{p_value:.3g}"


def _p_header(report: GateReport) -> str:
    return "p (Holm)" if report.correction == "holm" else "p"


def metric_label(comparison: MetricComparison) -> str:
    return f"{comparison.metric} {_ARROWS.get(comparison.direction, '')}".rstrip()


def to_table(report: GateReport, title: str):
    """The comparison as a rich table for the terminal, regressions in bold red (the p-values are in
    the markdown and JUnit reports: one column more would fold the task names in a narrow terminal)."""
    from rich.table import Table

    table = Table(title=f"{safe_markup(title)} (↑ higher is better, ↓ lower is better)")
    for column in ("task", "metric", "baseline", "candidate", "Δ", f"{report.confidence:.0%} CI of Δ", "verdict"):
        table.add_column(column, overflow="fold", no_wrap=column not in ("task", "metric"),
                         justify="right" if column in ("baseline", "candidate", "Δ") else "left")
    for c in report.comparisons:
        table.add_row(safe_markup(c.task), safe_markup(metric_label(c)), format_number(c.baseline, c.unit),
                      format_number(c.candidate, c.unit), format_delta(c), format_interval(c), c.verdict,
                      style="bold red" if c.regressed else None)
    return table


def to_markdown(report: GateReport) -> str:
    """The report as a pull-request comment: verdict, regressions, every metric, what was not compared."""
    mark = "✅" if report.passed else "❌"
    level = f"{report.confidence:.0%}"
    lines = [f"{mark} **instract-eval regress: {_md(report.verdict())}**", "",
             f"Baseline `{_md(report.baseline)}` ({_md(', '.join(report.baseline_models))}) vs candidate "
             f"`{_md(report.candidate)}` ({_md(', '.join(report.candidate_models))}). {_md(_rule(report))}", ""]
    lines += ["### Regressions", ""]
    lines += _md_table(report.regressions, level, _p_header(report)) if report.regressions else ["None.", ""]
    lines += ["### All compared metrics", ""] + _md_table(report.comparisons, level, _p_header(report))
    if report.not_compared:
        lines += ["### Not compared", ""]
        lines += [f"- `{_md(item.task)}`" + (f" `{_md(item.metric)}`" if item.metric else "") + f": {_md(item.reason)}"
                  for item in report.not_compared] + [""]
    if report.notes:
        lines += ["### Notes", ""] + [f"- {_md(note)}" for note in report.notes] + [""]
    points = _point_reasons(report)
    if points:
        lines += ["<details><summary>Why some metrics are point comparisons</summary>", ""]
        lines += [f"- `{_md(task)}` {_md(', '.join(names))}: {_md(reason)}" for (task, reason), names in points.items()]
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def _rule(report: GateReport) -> str:
    overrides = ", ".join(f"{key}={value:g}" for key, value in report.tolerances.items())
    return (f"A metric regresses when it is worse by more than its tolerance ({report.tolerance:g} absolute"
            + (f"; {overrides}" if overrides else "") + f") and its {report.confidence:.0%} paired bootstrap "
            f"interval ({report.n_resamples} resamples of whole videos, seed {report.seed}) lies on the worse side "
            "of zero" + (", and its p-value stays below "
                         f"{1 - report.confidence:.2g} after Holm's adjustment over the {plural(_tested(report), 'metric')} "
                         "with an interval" if report.correction == "holm" else "")
            + "; without an interval the tolerance alone decides.")


def _tested(report: GateReport) -> int:
    return sum(c.p_value is not None for c in report.comparisons)


def _md_table(comparisons: Sequence[MetricComparison], level: str, p_header: str) -> list[str]:
    rows = [f"| task | metric | baseline | candidate | Δ | {level} CI of Δ | {p_header} | verdict |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for c in comparisons:
        verdict = f"**{c.verdict}**" if c.regressed else c.verdict
        cells = [_md(c.task), _md(metric_label(c)), format_number(c.baseline, c.unit),
                 format_number(c.candidate, c.unit), format_delta(c), format_interval(c), format_p(c), verdict]
        rows.append("| " + " | ".join(cells) + " |")
    return rows + [""]


def _point_reasons(report: GateReport) -> dict[tuple[str, str], list[str]]:
    """Point comparisons grouped by task and reason, so a long list of mAP thresholds reads as one line."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for c in report.comparisons:
        if c.interval is None and c.verdict not in (MISSING, INCOMPARABLE):
            grouped.setdefault((c.task, c.basis), []).append(c.metric)
    return grouped


def _md(text: str) -> str:
    """Text from result files made inert in a markdown table cell or list item (GitHub renders raw
    HTML and markdown there): one line without control characters (`plain`: a raw ESC would reach
    the terminal of whoever cats the file), ``& < >`` as entities, the markdown punctuation that
    opens a link, image, code span, emphasis, strike-through or a new cell backslash-escaped (``_``
    inside a name such as ``mean_rank`` is not emphasis in GitHub's markdown and stays readable)."""
    entities = plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*\[\]|~])", r"\\\1", entities)  # links, images, emphasis, code, cells, strike


def to_junit(report: GateReport) -> str:
    """JUnit XML: one testsuite, one testcase per compared (task, metric), a failure per regression."""
    suite = ET.Element("testsuite", name="instract-eval regress", tests=str(len(report.comparisons)),
                       failures=str(len(report.regressions)), errors="0", skipped="0")
    properties = ET.SubElement(suite, "properties")
    for key, value in (("baseline", report.baseline), ("candidate", report.candidate),
                       ("tolerance", f"{report.tolerance:g}"), ("confidence", f"{report.confidence:g}"),
                       ("resamples", str(report.n_resamples)), ("seed", str(report.seed))):
        ET.SubElement(properties, "property", name=key, value=_xml(value))
    for c in report.comparisons:
        case = ET.SubElement(suite, "testcase", classname=_xml(c.task), name=_xml(c.metric))
        summary = (f"{c.metric} ({c.direction} is better): {format_number(c.baseline, c.unit)} -> "
                   f"{format_number(c.candidate, c.unit)}, delta {format_delta(c)}, "
                   f"{report.confidence:.0%} CI {format_interval(c)}, tolerance {c.tolerance:g}")
        if c.regressed:
            failure = ET.SubElement(case, "failure", type="regression", message=_xml(f"{c.verdict}: {summary}"))
            failure.text = _xml(f"{summary}\nbasis: {c.basis}")
        else:
            ET.SubElement(case, "system-out").text = _xml(f"{c.verdict}: {summary}; basis: {c.basis}")
    extra = [f"not compared: {item.task}" + (f" {item.metric}" if item.metric else "") + f": {item.reason}"
             for item in report.not_compared] + [f"note: {note}" for note in report.notes]
    ET.SubElement(suite, "system-out").text = _xml("\n".join([report.verdict(), *extra]))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _xml(text: str) -> str:
    """``text`` for a JUnit report: no control or bidi characters (`plain_lines`: a CI page shows it
    to people too), nor the other characters XML 1.0 cannot hold, which no escape fixes."""
    return re.sub("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "\ufffd", plain_lines(text))
