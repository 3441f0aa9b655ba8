"""What the leaderboard shows, computed from result records alone: groups, tables, rows, cells.

The site renders this model and nothing else, so everything a page says (which value is best,
which row is reported by a paper, how a reproduced number differs from the published one) is
decided here and tested without a browser.

Rows are *reproduced* (one per model label, from our result records) or *reported* (a paper's
published number, from :mod:`instract_eval.leaderboard.reported`). A reproduced row is matched to
a reported method when their names agree after lower-casing and dropping everything but letters
and digits (``viclip`` matches ``ViCLIP``), or when the user says so (``--match LABEL=METHOD``);
only then is the difference shown.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from instract_eval.errors import InputError
from instract_eval.results import is_finite_number, model_label

from .reported import ReportedRow, reported_rows, sources

__all__ = ["Board", "Cell", "Column", "Group", "Row", "TaskPage", "build_board", "finite_number", "format_value"]

# Known groups, in the order the index shows them, with their titles. A task in several groups is
# shown in the first of these it belongs to; other groups follow in the order records name them.
GROUP_TITLES = {
    "instract-bench": "InstrAct Bench",
    "actionbench": "ActionBench",
    "srt": "Synonym Robustness Test (SRT)",
    "tal": "Temporal action localization",
    "action100m-recognition": "Action100M zero-shot recognition",
    "action100m-retrieval": "Action100M zero-shot retrieval",
    "action100m": "Action100M",
    "synth": "Synthetic action world",
}
UNGROUPED = "other"
UNGROUPED_TITLE = "Other tasks"


@dataclass(frozen=True)
class Column:
    """One metric of one task, with the direction that makes a value better."""

    task: str
    metric: str
    direction: str | None
    unit: str

    @property
    def arrow(self) -> str:
        return {"higher": "↑", "lower": "↓"}.get(self.direction or "", "")

    @property
    def unit_label(self) -> str:
        return "%" if self.unit == "fraction" else self.unit


@dataclass
class Cell:
    """One value; ``std`` where the metric is a mean over runs; ``best`` within its column."""

    value: float | None
    std: float | None = None
    best: bool = False
    unit: str = "fraction"
    link: str = ""  # on the index: the provenance of a reproduced value on its task page

    @property
    def text(self) -> str:
        return "–" if self.value is None else format_value(self.value, self.unit, self.std)


@dataclass
class Row:
    """A table row: a model we evaluated (reproduced) or a paper's number (reported)."""

    label: str
    kind: str  # "reproduced" | "reported"
    cells: list[Cell]
    anchor: str = ""  # id of the provenance entry (reproduced) or the reference (reported)
    citation: str = ""  # reported: the full citation (a tooltip) ...
    cited_as: str = ""  # ... and the short one shown in the table, e.g. "InstrAction, Table 1"


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]


@dataclass
class Provenance:
    """Where a reproduced number comes from: everything needed to rerun it and trust it."""

    anchor: str
    label: str
    task: str
    fields: list[tuple[str, str]]


@dataclass
class Difference:
    """A reproduced value next to the published one for the same model, metric and task."""

    label: str
    method: str
    paper: str
    cited_as: str
    metric: str
    unit: str
    reproduced: float
    reported: float

    @property
    def delta(self) -> float:
        return self.reproduced - self.reported

    @property
    def delta_text(self) -> str:
        """In percentage points for fractions, as the values are shown."""
        return f"{100 * self.delta:+.1f}" if self.unit == "fraction" else f"{self.delta:+.2f}"


@dataclass(frozen=True)
class Coverage:
    """How much of the task a record evaluated; videos that failed are left out only under
    ``--allow-missing``."""

    label: str
    evaluated: int | None
    total: int | None
    failed_videos: int

    @property
    def fraction_text(self) -> str:
        if not self.total or self.evaluated is None:
            return "–"
        return format_value(self.evaluated / self.total, "fraction")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _coverage(record: Mapping[str, Any]) -> Coverage:
    coverage = _dig(record, "dataset", "coverage")
    coverage = coverage if isinstance(coverage, Mapping) else {}
    failed = coverage.get("failed_videos")
    return Coverage(model_label(record), _count(coverage.get("evaluated")), _count(coverage.get("total")),
                    len(failed) if isinstance(failed, dict) else 0)


@dataclass
class Breakdown:
    """A per-category / per-class / per-run table: one row per part, one column per model."""

    title: str
    unit: str
    models: list[str]
    rows: list[tuple[str, list[Cell]]]


@dataclass
class TaskPage:
    """Everything one task's page shows."""

    name: str
    slug: str
    kind: str
    paper: str
    description: str
    group: str
    table: Table
    records: list[dict]
    provenance: list[Provenance]
    differences: list[Difference]
    reported: list[ReportedRow]
    breakdowns: list[Breakdown] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)


@dataclass
class Group:
    key: str
    title: str
    tasks: list[TaskPage]
    table: Table


@dataclass
class Board:
    groups: list[Group]
    tasks: list[TaskPage]
    references: dict[str, dict] = field(default_factory=dict)
    num_records: int = 0


def format_value(value: float, unit: str, std: float | None = None) -> str:
    """A fraction as a percentage with one decimal (as the papers print it), a rank with two."""
    if unit == "fraction":
        text = f"{100 * value:.1f}"
        return text if std is None else f"{text} ± {100 * std:.1f}"
    if unit == "count":
        return f"{value:.0f}"
    digits = 2 if unit == "rank" else 3
    text = f"{value:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def slug(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique page name: names come from result files and may hold anything. A name
    that had to change keeps a readable prefix and gains a hash of the original, so two names that
    differ only in unsafe characters get different pages."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if safe != name or not safe:
        safe = f"{safe[:40].rstrip('-.') or 'task'}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"
    candidate, number = safe, 2
    while candidate.lower() in taken:
        candidate, number = f"{safe}-{number}", number + 1
    taken.add(candidate.lower())
    return candidate


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())



def _display_group(records: Sequence[Mapping[str, Any]]) -> str:
    groups = [g for record in records if isinstance(listed := record["task"].get("groups"), list)
              for g in listed if isinstance(g, str)]
    for known in GROUP_TITLES:
        if known in groups:
            return known
    return groups[0] if groups else UNGROUPED


def _columns(records: Sequence[Mapping[str, Any]], *, headline_only: bool) -> list[Column]:
    """Columns in the order the records list their metrics, headline metrics first.

    ``headline_only`` (the index): the headline metrics that have a direction, or every metric
    with a direction when a task marks none. Otherwise (a task page): every metric, those with a
    direction before counts and other descriptive values; a ``NAME.std`` beside ``NAME`` is not a
    column of its own but the ± of NAME's cells.
    """
    seen: dict[str, Column] = {}
    headline: set[str] = set()
    for record in records:
        for name, metric in record["metrics"].items():
            if name not in seen:
                seen[name] = Column(record["task"]["name"], name, metric.get("direction"), metric.get("unit", ""))
            if metric.get("headline"):
                headline.add(name)
    gated = [c for c in seen.values() if c.direction in ("higher", "lower")]
    first = [c for c in gated if c.metric in headline]
    if headline_only:
        return first or gated
    rest = [c for c in seen.values() if c not in first and not (c.metric.endswith(".std") and c.metric[:-4] in seen)]
    return first + sorted(rest, key=lambda c: c.direction not in ("higher", "lower"))


def _cell(metrics: Mapping[str, Any], column: Column) -> Cell:
    value = finite_number(_dig(metrics, column.metric, "value"))
    std = finite_number(_dig(metrics, f"{column.metric}.std", "value"))
    return Cell(value, std if value is not None else None, unit=column.unit)


def _cited_as(row: ReportedRow) -> str:
    return f"{sources().get(row.paper, {}).get('short', row.paper)}, {row.table}"


def _reported_cell(row: ReportedRow, column: Column) -> Cell:
    value = row.values.get(column.metric)
    return Cell(value, row.std.get(column.metric), unit=column.unit)


def _mark_best(table: Table) -> None:
    """Mark the best value of every column, by its direction; equal best values are all marked."""
    for index, column in enumerate(table.columns):
        values = [row.cells[index].value for row in table.rows if row.cells[index].value is not None]
        if not values or column.direction not in ("higher", "lower"):
            continue
        best = max(values) if column.direction == "higher" else min(values)
        for row in table.rows:
            row.cells[index].best = row.cells[index].value == best


def _provenance(record: Mapping[str, Any], anchor: str) -> Provenance:
    model, task, run = record["model"], record["task"], record.get("run") or {}
    versions, dataset = record.get("versions") or {}, record.get("dataset") or {}
    coverage = _coverage(record)
    arguments = model.get("args") if isinstance(model.get("args"), Mapping) else {}
    fields = [
        ("model", str(model["name"])),
        ("arguments", ", ".join(f"{k}={v}" for k, v in arguments.items()) or "none"),
        ("model fingerprint", str(model.get("fingerprint", "–"))),
        ("adapter class", str(model.get("class", "–"))),
        ("task hash", str(task.get("hash", "–"))),
        ("dataset sha256", str(dataset.get("sha256", "–"))),
        ("coverage", f"{'–' if coverage.evaluated is None else coverage.evaluated} of "
                     f"{'–' if coverage.total is None else coverage.total} items"),
        ("tie policy", str((record.get("ties") or {}).get("policy", "–"))),
        ("date", str(run.get("started_at", "–"))),
        ("device, precision", f"{run.get('device', '–')}, {run.get('precision', '–')}"),
        ("wall time", f"{run.get('wall_time_s', '–')} s"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("platform", "git_revision"))),
        ("git revision", str(versions.get("git_revision") or "–")),
    ]
    return Provenance(anchor, model_label(record), task["name"], fields)


def finite_number(value: Any) -> float | None:
    """A number to show or plot, or None: result files may hold NaN, infinities or anything else."""
    return float(value) if is_finite_number(value) else None


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _breakdown(title: str, records: Sequence[Mapping[str, Any]], parts: Callable[[Mapping], Mapping[str, Any]],
               unit: str = "fraction") -> Breakdown | None:
    """One row per part name found in any record, one column per record; ``parts`` maps a record's
    details to ``{part name: value}``."""
    found = [parts(record.get("details") or {}) or {} for record in records]
    names = list(dict.fromkeys(name for values in found for name in values))
    if not names:
        return None
    rows = [(str(name), [Cell(finite_number(values.get(name)), unit=unit) for values in found]) for name in names]
    breakdown = Breakdown(title, unit, [model_label(record) for record in records], rows)
    for _, cells in breakdown.rows:
        best = max((c.value for c in cells if c.value is not None), default=None)
        for cell in cells:
            cell.best = best is not None and len(cells) > 1 and cell.value == best
    return breakdown


def _breakdowns(kind: str, records: Sequence[Mapping[str, Any]]) -> list[Breakdown]:
    """The breakdowns each engine writes into ``details``, as tables (see the engines' docstrings)."""
    made: list[Breakdown | None] = []
    if kind == "retrieval":
        made.append(_breakdown("Mean R@1 per category", records,
                               lambda d: {k: _dig(v, "mean", "R@1") for k, v in (d.get("per_category") or {}).items()}))
        made.append(_breakdown("Mean R@1 by pool size (videos per pool)", records,
                               lambda d: {k: _dig(v, "mean", "R@1") for k, v in (d.get("by_pool_size") or {}).items()}))
        made.append(_breakdown("T2V R@1 per pool", records,
                               lambda d: {k: _dig(v, "t2v", "R@1") for k, v in (d.get("per_pool") or {}).items()}))
    elif kind == "classification":
        made.append(_breakdown("Unseen accuracy per label set (default labels, then each synonym run; the seen "
                               "classes keep their labels)", records,
                               lambda d: {k: _dig(v, "unseen", "accuracy")
                                          for k, v in (d.get("label_sets") or {}).items()}))
    elif kind == "localization":
        made.append(_breakdown("AP per class (mean over the tIoU thresholds)", records,
                               lambda d: d.get("per_class_AP") or {}))
        made.append(_breakdown("Average mAP per ambiguity group", records, lambda d: d.get("ambiguity") or {}))
    return [b for b in made if b is not None]


def _matches(label: str, method: str, model_name: str, explicit: Mapping[str, str]) -> bool:
    """Whether our model is the paper's method: as the user said (by label or model name; a label
    found in several sources is prefixed by its source, its model name is not), else by name."""
    for name in (label, model_name):
        if name in explicit:
            return explicit[name] == method
    return _normalized(method) in {_normalized(label), _normalized(model_name)}


def _check_matches(records: Sequence[Mapping[str, Any]], explicit: Mapping[str, str]) -> None:
    names = {name for record in records for name in (model_label(record), record["model"]["name"])}
    for label in explicit:
        if label not in names:
            raise InputError(f"no result record has a model labelled or named '{label}'", field="--match")


def _task_page(name: str, records: list[dict], page_slug: str, explicit: Mapping[str, str],
               include_reported: bool) -> TaskPage:
    """One task's page: every metric of its records, the papers' rows, and the differences where a
    model of ours is a reported method."""
    columns = _columns(records, headline_only=False)
    reported = reported_rows(name) if include_reported else []
    rows, provenance, differences = [], [], []
    for index, record in enumerate(records):
        anchor = f"run-{index + 1}"
        label = model_label(record)
        rows.append(Row(label, "reproduced", [_cell(record["metrics"], c) for c in columns], anchor=anchor))
        provenance.append(_provenance(record, anchor))
        for paper_row in reported:
            if not _matches(label, paper_row.method, record["model"]["name"], explicit):
                continue
            for position, column in enumerate(columns):
                mine, theirs = rows[-1].cells[position].value, paper_row.values.get(column.metric)
                if mine is not None and theirs is not None:
                    differences.append(Difference(label, paper_row.method, paper_row.paper, _cited_as(paper_row),
                                                  column.metric, column.unit, mine, theirs))
    for paper_row in reported:
        rows.append(Row(paper_row.method, "reported", [_reported_cell(paper_row, c) for c in columns],
                        anchor=f"ref-{paper_row.paper}", citation=paper_row.citation,
                        cited_as=_cited_as(paper_row)))
    table = Table(columns, rows)
    _mark_best(table)
    spec = records[0]["task"].get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    return TaskPage(name=name, slug=page_slug, kind=str(records[0]["task"].get("kind", "")),
                    paper=str(records[0]["task"].get("paper", "")), description=str(spec.get("description", "")),
                    group=_display_group(records), table=table, records=records, provenance=provenance,
                    differences=differences, reported=reported,
                    breakdowns=_breakdowns(str(records[0]["task"].get("kind", "")), records),
                    coverage=[_coverage(record) for record in records])


def _group_table(pages: Sequence[TaskPage]) -> Table:
    """Headline columns of every task in the group, one row per model label, each value linked to
    its provenance on the task page. A reported method's values share one row per table that prints
    them, so a row never cites one table for another's numbers."""
    columns = [c for page in pages for c in _columns(page.records, headline_only=True)]
    reproduced: dict[str, Row] = {}
    reported: dict[tuple[str, str, str], Row] = {}
    for page in pages:
        for position, record in enumerate(page.records):
            label = model_label(record)
            row = reproduced.setdefault(label, Row(label, "reproduced", [Cell(None, unit=c.unit) for c in columns]))
            for index, column in enumerate(columns):
                if column.task == page.name:
                    row.cells[index] = _cell(record["metrics"], column)
                    row.cells[index].link = f"{page.slug}.html#{page.provenance[position].anchor}"
        for paper_row in page.reported:
            key = (paper_row.method, paper_row.paper, paper_row.table)
            row = reported.setdefault(key, Row(paper_row.method, "reported",
                                               [Cell(None, unit=c.unit) for c in columns],
                                               anchor=f"ref-{paper_row.paper}", citation=paper_row.citation,
                                               cited_as=_cited_as(paper_row)))
            for index, column in enumerate(columns):
                if column.task == page.name and paper_row.values.get(column.metric) is not None:
                    row.cells[index] = _reported_cell(paper_row, column)
    rows = list(reproduced.values()) + [row for row in reported.values() if any(c.value is not None
                                                                                 for c in row.cells)]
    table = Table(columns, rows)
    _mark_best(table)
    return table


def build_board(records: Iterable[dict], *, matches: Mapping[str, str] | None = None,
                include_reported: bool = True) -> Board:
    """Group records by task, tasks by group, and build every table the site shows."""
    records = list(records)
    _check_matches(records, matches or {})
    by_task: dict[str, list[dict]] = {}
    for record in records:
        by_task.setdefault(record["task"]["name"], []).append(record)
    taken: set[str] = {"index"}
    pages = [_task_page(name, by_task[name], slug(name, taken), matches or {}, include_reported)
             for name in sorted(by_task)]
    order = list(GROUP_TITLES) + sorted({p.group for p in pages} - set(GROUP_TITLES) - {UNGROUPED}) + [UNGROUPED]
    groups = []
    for key in order:
        members = [page for page in pages if page.group == key]
        if members:
            title = GROUP_TITLES.get(key, UNGROUPED_TITLE if key == UNGROUPED else key)
            groups.append(Group(key, title, members, _group_table(members)))
    cited = {row.paper for page in pages for row in page.reported}
    references = {key: value for key, value in sources().items() if key in cited}
    return Board(groups=groups, tasks=pages, references=references, num_records=len(records))
