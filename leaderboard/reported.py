"""The papers' published numbers as reference ("as reported") rows of our tasks.

Why this module: a reproduced number means little without the number the paper printed, and a
reference row is only worth showing if it is the *same* measurement under the *same* name and
scale as ours. Two packaged files carry the knowledge:

- ``resources/paper_results.yaml``: every numeric table of the five papers as printed (a
  byte-for-byte copy of the project's transcription; percentages on 0-100);
- ``resources/reported_tasks.yaml``: which printed block and metric key is which of our
  (task, metric), with the factor to our scale and how rows are labelled (its header explains
  the schema and what is left out and why).

The mapping is validated when it is loaded, against the transcription (tables, parts, metric keys,
units and directions, row fields), the task registry and the metric names each engine writes, so
a renamed task or metric fails here with the file and field at fault instead of showing an empty
column on the leaderboard.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from instract_eval.errors import InputError
from instract_eval.metrics.localization import TIOU_THRESHOLD_PRESETS, threshold_key
from instract_eval.results import describe_metrics
from instract_eval.tasks import TaskSpec, packaged_registry

__all__ = ["ReportedRow", "load_reported", "produced_metrics", "reported_rows", "reported_tasks", "sources"]

RESULTS_FILE = "paper_results.yaml"
MAPPING_FILE = "reported_tasks.yaml"

# A paper unit -> (the unit `describe_metrics` gives the matching metric of ours, the factor from
# the printed number to ours). Any other pairing is not the same scale and is refused.
CONVERSIONS: Mapping[str, tuple[str, Decimal]] = MappingProxyType({
    "%": ("fraction", Decimal("0.01")),
    "rank": ("rank", Decimal("1")),
    "cost (dimensionless)": ("cost", Decimal("1")),
})

# What the engines write, by name (see `produced_metrics`). Kept here rather than imported: the
# engine modules load torch, which the leaderboard does not need; tests pin these to real results.
MCQ_METRICS = ("R@1", "R@5", "median_rank", "mean_rank", "accuracy")
RANK_METRICS = ("R@1", "R@5", "R@10", "median_rank", "mean_rank")
RECALLS = ("R@1", "R@5", "R@10")
CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
LAP_TRANSFORM = "conflicting_descriptions"
SOURCE_FIELDS = ("title", "arxiv", "venue")

# A paper's name for its own method: 'Ours (ACE)' and 'ActionVLM-3B (ours)'.
_SELF_REFERENCE = (re.compile(r"^Ours \((?P<name>.+)\)$", re.IGNORECASE),
                   re.compile(r"^(?P<name>.+?) \(ours\)$", re.IGNORECASE))


@dataclass(frozen=True)
class ReportedRow:
    """One method's published numbers on one of our tasks, on our scale and under our metric names."""

    method: str  # the label to display, unambiguous within its task (qualifiers folded in)
    paper: str  # key in sources(): instraction, ace, paxion, actionvlm, action100m
    citation: str  # "<paper title> (arXiv id if any), Table N[, part]"
    table: str  # "Table 1" / "Table 1, ATA"
    values: Mapping[str, float]  # our metric name -> value (fractions where the paper prints %)
    std: Mapping[str, float]  # our metric name -> std, where the paper prints mean ± std
    note: str | None  # what matters for reading the number, if anything


@dataclass(frozen=True)
class _Target:
    """One paper metric key read as one of our metrics."""

    key: str
    metric: str
    scale: Decimal


def reported_rows(task: str) -> list[ReportedRow]:
    """The reference rows of ``task`` in the paper's row order; [] for a task no paper reports."""
    return list(_packaged().get(task, ()))


def reported_tasks() -> list[str]:
    """The tasks that have at least one reference row, sorted."""
    return sorted(_packaged())


def sources() -> dict[str, dict]:
    """The papers by key, each with ``title``, ``arxiv`` and ``venue`` (None where the paper text
    gives none), so a reference list can print every entry the same way, and ``short``: the name a
    table cites it by (the transcription's ``short_name``, else the title up to its colon)."""
    return {key: {**{field: entry.get(field) for field in SOURCE_FIELDS},
                  "short": entry.get("short_name") or str(entry.get("title", key)).split(":", 1)[0]}
            for key, entry in _packaged_results()["sources"].items()}


@functools.cache
def _packaged() -> Mapping[str, tuple[ReportedRow, ...]]:
    return MappingProxyType(load_reported())


@functools.cache
def _packaged_results() -> dict:
    return _read_yaml(None, RESULTS_FILE)[1]


def load_reported(mapping: str | os.PathLike | None = None,
                  results: str | os.PathLike | None = None) -> dict[str, tuple[ReportedRow, ...]]:
    """Reference rows by task from a mapping and a transcription file (default: the packaged ones).

    Raises `InputError` naming the file and field when the mapping refers to a table, part, row,
    metric key, task or metric name that does not exist, converts between units that are not the
    same scale, disagrees on direction, or gives two rows of a task the same label.
    """
    mapping_source, document = _read_yaml(mapping, MAPPING_FILE)
    results_source, transcription = _read_yaml(results, RESULTS_FILE)
    tables = _index_tables(transcription, results_source)
    papers = _require(transcription, "sources", dict, results_source, "sources")
    blocks = _require(document, "blocks", list, mapping_source, "blocks")
    order: dict[tuple, int] = {}
    placed: dict[str, list[tuple[tuple[int, int], ReportedRow]]] = {}
    for index, block in enumerate(blocks):
        field = f"blocks[{index}]"
        if not isinstance(block, dict):
            raise InputError("expected a mapping", path=mapping_source, field=field)
        table = _table_of(block, tables, mapping_source, field)
        position = order.setdefault(_table_key(table), len(order))
        selected = _selected_rows(block, table, mapping_source, field)
        for task, targets in _targets(block, table, mapping_source, field).items():
            for row_index, row in selected:
                reported = _reported_row(block, table, row, targets, papers[table["paper"]], mapping_source, field)
                if reported.values:
                    placed.setdefault(task, []).append(((position, row_index), reported))
    rows = {task: tuple(row for _, row in sorted(entries, key=lambda entry: entry[0]))
            for task, entries in placed.items()}
    _check_unique_labels(rows, mapping_source)
    return rows


def produced_metrics(spec: TaskSpec) -> frozenset[str]:
    """The score metrics (counts left out) that the engine of ``spec`` writes, as dotted names.

    Written out from the engines' code (`instract_eval.tasks.mcq`, ``retrieval``,
    ``classification``, ``localization``, ``alignment``) so a mapping can be checked without a
    model; the tests compare it with the metrics of real runs of every engine.
    """
    if spec.kind == "mcq":
        return frozenset(MCQ_METRICS)
    if spec.kind == "retrieval":
        return frozenset([*(f"{d}.{m}" for d in ("t2v", "v2t") for m in RANK_METRICS),
                          *(f"mean.{m}" for m in RECALLS)])
    if spec.kind == "classification":
        return _classification_metrics(spec)
    if spec.kind == "localization":
        return _localization_metrics(spec)
    return frozenset({"normalized_dtw_cost", "median_normalized_dtw_cost"})


def _classification_metrics(spec: TaskSpec) -> frozenset[str]:
    """One group gives accuracy and macro F1; SRT gives them per seen / unseen group, their
    harmonic mean and, over two or more synonym runs, the unseen mean and std."""
    if spec.format != "srt":
        return frozenset(CLASSIFICATION_METRICS)
    names = [f"{group}.{m}" for group in ("seen", "unseen", "hm") for m in CLASSIFICATION_METRICS]
    if spec.protocol.get("runs") != 1:
        names += [f"srt.unseen.{m}{suffix}" for m in CLASSIFICATION_METRICS for suffix in ("", ".std")]
    return frozenset(names)


def _localization_metrics(spec: TaskSpec) -> frozenset[str]:
    """mAP per threshold of the task's preset and their average; the hallucination rates (text-
    answering localizers); LAP and the two runs' average mAP for a conflicting-descriptions task."""
    thresholds = TIOU_THRESHOLD_PRESETS.get(spec.protocol.get("tiou_thresholds"), ())
    names = [f"mAP@{threshold_key(t)}" for t in thresholds]
    names += ["average_mAP", "hallucination.fixed", "hallucination.repeating"]
    if spec.transform == LAP_TRANSFORM:
        names += ["LAP", "aligned.average_mAP", "conflicting.average_mAP"]
    return frozenset(names)


# ------------------------------------------------------------------------------------------------
# Reading and indexing


def _read_yaml(path: str | os.PathLike | None, packaged: str) -> tuple[str, Any]:
    """(a name for error messages, the parsed document) of ``path``, or of the packaged file."""
    if path is None:
        source = f"{packaged} (packaged)"
        text = resources.files("instract_eval.leaderboard").joinpath("resources", packaged).read_text("utf-8")
    else:
        source = os.fspath(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            raise InputError("no such file", path=source) from None
    try:
        return source, yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(f"not valid YAML ({str(error).splitlines()[0]})", path=source) from None


def _require(container: Any, key: str, kind: type, source: str, field: str) -> Any:
    """``container[key]`` when it is a ``kind``; otherwise an `InputError` naming the field."""
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        raise InputError(f"expected a {'mapping' if kind is dict else kind.__name__}", path=source, field=field)
    return value


def _optional_mapping(block: dict, key: str, source: str, field: str) -> dict:
    """A block's optional mapping (``where``, ``rows``): {} when absent."""
    return _require(block, key, dict, source, f"{field}.{key}") if block.get(key) is not None else {}


def _table_key(table: Mapping[str, Any]) -> tuple[str, str, str | None]:
    return table["paper"], table["table"], table.get("part")


def _index_tables(transcription: Any, source: str) -> dict[tuple[str, str, str | None], dict]:
    tables = _require(transcription, "tables", list, source, "tables")
    return {_table_key(table): table for table in tables}


def _table_name(table: Mapping[str, Any]) -> str:
    return table["table"] + (f", {table['part']}" if table.get("part") else "")


def _table_of(block: dict, tables: Mapping[tuple, dict], source: str, field: str) -> dict:
    key = (block.get("paper"), block.get("table"), block.get("part"))
    if key not in tables:
        parts = sorted(str(k[2]) for k in tables if k[:2] == key[:2] and k[2] is not None)
        hint = f" (parts: {', '.join(parts)})" if parts else ""
        raise InputError(f"no table {key[1]!r} of paper {key[0]!r}" + (f" part {key[2]!r}" if key[2] else "") + hint,
                         path=source, field=field)
    return tables[key]


# ------------------------------------------------------------------------------------------------
# Rows and labels


def _selected_rows(block: dict, table: dict, source: str, field: str) -> list[tuple[int, dict]]:
    """The table's rows that pass the block's ``where`` filter, with their printed position.

    A filter value that matches no row, and a ``rows`` entry naming no method, are typos.
    """
    where = _optional_mapping(block, "where", source, field)
    rows = list(enumerate(table["rows"]))
    for name, wanted in where.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        for value in allowed:
            if not any(row.get(name) == value for _, row in rows):
                raise InputError(f"no row of {_table_name(table)} has {name} = {value!r}",
                                 path=source, field=f"{field}.where.{name}")
        rows = [(i, row) for i, row in rows if row.get(name) in allowed]
    methods = {row["method"] for row in table["rows"]}
    for method, settings in _optional_mapping(block, "rows", source, field).items():
        if method not in methods:
            raise InputError(f"{_table_name(table)} has no row '{method}'", path=source, field=f"{field}.rows")
        if not isinstance(settings, dict) or not set(settings) <= {"label", "note"}:
            raise InputError("expected a mapping with label and/or note", path=source, field=f"{field}.rows.{method}")
    return rows


def _label(block: dict, row: dict, source: str, field: str) -> str:
    """The displayed method: the row's template (or the block's) over the row's fields, the
    paper's name for itself reduced to the method's name."""
    template = (block.get("rows") or {}).get(row["method"], {}).get("label", block.get("label", "{method}"))
    fields = {**row, "method": _without_self_reference(row["method"])}
    try:
        return str(template).format_map(fields)
    except (KeyError, AttributeError, IndexError, ValueError) as error:
        raise InputError(f"label template {template!r} does not fit row '{row['method']}' ({error!r})",
                         path=source, field=f"{field}.label") from None


def _without_self_reference(method: str) -> str:
    for pattern in _SELF_REFERENCE:
        match = pattern.match(method)
        if match:
            return match["name"]
    return method


def _note(block: dict, row: dict) -> str | None:
    """The block's reading note, then the row's: the mapping's override where it gives one (null
    drops a note about the printing only), else the transcription's note."""
    override = (block.get("rows") or {}).get(row["method"], {})
    row_note = override["note"] if "note" in override else row.get("note")
    parts = [str(part).strip() for part in (block.get("note"), row_note) if part]
    return " ".join(parts) or None


def _check_unique_labels(rows: Mapping[str, Iterable[ReportedRow]], source: str) -> None:
    for task, task_rows in rows.items():
        seen: dict[str, str] = {}
        for row in task_rows:
            if row.method in seen:
                raise InputError(f"task {task}: two rows are labelled '{row.method}' ({seen[row.method]} and "
                                 f"{row.table}); fold the qualifier that tells them apart into the label",
                                 path=source, field="blocks")
            seen[row.method] = row.table


# ------------------------------------------------------------------------------------------------
# Metrics and values


def _targets(block: dict, table: dict, source: str, field: str) -> dict[str, list[_Target]]:
    """Per task, the block's metric keys read as our metrics, each checked (see `_check_target`)."""
    tasks = _require(block, "tasks", dict, source, f"{field}.tasks")
    if not tasks:
        raise InputError("expected at least one task", path=source, field=f"{field}.tasks")
    registry = packaged_registry()
    targets: dict[str, list[_Target]] = {}
    for task in tasks:
        where = f"{field}.tasks.{task}"
        if task not in registry.tasks:
            raise InputError(f"unknown task '{task}'", path=source, field=where)
        keys = _require(tasks, task, dict, source, where)
        targets[task] = [_target(block, key, entry, source, f"{where}.{key}") for key, entry in keys.items()]
        for target in targets[task]:
            _check_target(target, table, registry.tasks[task], source, f"{where}.{target.key}")
    return targets


def _target(block: dict, key: str, entry: Any, source: str, field: str) -> _Target:
    """``NAME`` (the block's scale) or ``{metric: NAME, scale: FACTOR}``."""
    metric, scale = (entry.get("metric"), entry.get("scale")) if isinstance(entry, dict) else (entry, block.get("scale"))
    if not isinstance(metric, str) or not metric:
        raise InputError("expected our metric name, or {metric: NAME, scale: FACTOR}", path=source, field=field)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise InputError("expected a numeric scale (on the block, or on this metric)", path=source, field=field)
    return _Target(str(key), metric, Decimal(str(scale)))


def _check_target(target: _Target, table: dict, spec: TaskSpec, source: str, field: str) -> None:
    """The paper key exists; the task's engine writes the metric (and its ``.std`` where the
    paper prints mean ± std); unit, scale and direction agree with ours."""
    declared = {m["key"]: m for m in table["metrics"]}
    if target.key not in declared:
        raise InputError(f"{_table_name(table)} has no metric '{target.key}' (one of {', '.join(declared)})",
                         path=source, field=field)
    produced = produced_metrics(spec)
    if target.metric not in produced:
        raise InputError(f"the {spec.kind} engine writes no metric '{target.metric}' for task {spec.name} "
                         f"(one of {', '.join(sorted(produced))})", path=source, field=field)
    if _has_std(table, target.key) and f"{target.metric}.std" not in produced:
        raise InputError(f"the paper prints mean ± std but task {spec.name} has no '{target.metric}.std'",
                         path=source, field=field)
    paper = declared[target.key]
    ours = describe_metrics({target.metric: 0.0}, spec.metrics)[target.metric]
    unit, factor = CONVERSIONS.get(paper["unit"], (None, None))
    if unit != ours["unit"] or factor != target.scale:
        raise InputError(f"the paper's unit {paper['unit']!r} is not our {ours['unit']!r} times {target.scale} "
                         f"(known conversions: {_conversions()})", path=source, field=field)
    if {True: "higher", False: "lower"}.get(paper["higher_is_better"]) != ours["direction"]:
        raise InputError(f"the paper's '{target.key}' has higher_is_better: {paper['higher_is_better']}, our "
                         f"'{target.metric}' is {ours['direction']}-is-better", path=source, field=field)


def _conversions() -> str:
    return ", ".join(f"{paper!r} -> {unit!r} x {factor}" for paper, (unit, factor) in CONVERSIONS.items())


def _has_std(table: dict, key: str) -> bool:
    return any(isinstance(row["values"].get(key), dict) for row in table["rows"])


def _reported_row(block: dict, table: dict, row: dict, targets: Iterable[_Target], paper: Mapping[str, Any],
                  source: str, field: str) -> ReportedRow:
    values: dict[str, float] = {}
    spread: dict[str, float] = {}
    for target in targets:
        cell = row["values"].get(target.key)
        mean, std = (cell.get("mean"), cell.get("std")) if isinstance(cell, dict) else (cell, None)
        if mean is not None:
            values[target.metric] = _scaled(mean, target.scale)
        if mean is not None and std is not None:
            spread[target.metric] = _scaled(std, target.scale)
    return ReportedRow(method=_label(block, row, source, field), paper=table["paper"],
                       citation=_citation(paper, table), table=_table_name(table),
                       values=MappingProxyType(values), std=MappingProxyType(spread), note=_note(block, row))


def _scaled(value: float, scale: Decimal) -> float:
    """The printed decimal times ``scale``, rounded once: 14.7 % is exactly the float 0.147."""
    return float(Decimal(str(value)) * scale)


def _citation(paper: Mapping[str, Any], table: dict) -> str:
    arxiv = f" (arXiv {paper['arxiv']})" if paper.get("arxiv") else ""
    return f"{paper['title']}{arxiv}, {_table_name(table)}"
