"""The table `instract-eval run` prints at the end: each task's headline metrics, one column per model."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from instract_eval.results import model_label
from instract_eval.text import safe_markup

__all__ = ["summary_table", "format_value", "coverage_note"]


def format_value(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "count":
        return str(value)
    if unit in ("rank", "cost"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def summary_table(records: Sequence[dict], skipped: Sequence[tuple[str, str, str]] = (), *,
                  delta: bool = False) -> Table:
    """Rows (task, headline metric ↑/↓), columns the models in the order they ran.

    With ``delta`` and exactly two columns, a last column gives the second minus the first. A
    record that evaluated only part of its task (``--allow-missing``; ``--limit`` on localization,
    the one engine that counts a limited task whole) says so in each
    of its cells, ``0.833 (5/6 items)``, and a caption explains the note: a value over fewer items
    must not pass for the task's.
    """
    models = list(dict.fromkeys(model_label(record) for record in records))
    models += [model for model, _, _ in skipped if model not in models]
    tasks = list(dict.fromkeys([record["task"]["name"] for record in records] + [task for _, task, _ in skipped]))
    by_pair = {(model_label(record), record["task"]["name"]): record for record in records}
    why_skipped = {(model, task): why for model, task, why in skipped}
    table = Table(title="headline metrics (↑ higher is better, ↓ lower is better)")
    table.add_column("task", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    for model in models:
        table.add_column(safe_markup(model), justify="right", overflow="fold")  # a long label wraps, never cut
    delta = delta and len(models) == 2
    if delta:
        table.add_column("Δ", justify="right")
    for task in tasks:
        names = next((list(_headline(record)) for (m, t), record in by_pair.items() if t == task), [None])
        for name in names:
            cells, values = [], []
            for model in models:
                record = by_pair.get((model, task))
                metric = None if record is None else record["metrics"].get(name)
                values.append(None if metric is None else metric["value"])
                if record is None:
                    cells.append("skipped" if (model, task) in why_skipped else "")
                    continue
                cells.append("" if metric is None else format_value(metric["value"], metric["unit"])
                             + coverage_note(record))
            if delta:
                first, second = values
                both = isinstance(first, (int, float)) and isinstance(second, (int, float))
                cells.append(f"{second - first:+.3f}" if both else "")
            arrow = ""
            if name is not None:
                direction = next(r["metrics"][name]["direction"] for (m, t), r in by_pair.items()
                                 if t == task and name in r["metrics"])
                arrow = {"higher": " ↑", "lower": " ↓"}.get(direction, "")
            table.add_row(safe_markup(task), safe_markup((name or "") + arrow), *cells)
    if any(coverage_note(record) for record in records):
        table.caption = "(n/m items): only n of the task's m items were evaluated"
    return table


def coverage_note(record: dict) -> str:
    """`` (5/6 items)`` when the record evaluated fewer items than its task has, else empty."""
    coverage = (record.get("dataset") or {}).get("coverage")
    if not isinstance(coverage, dict):
        return ""
    evaluated, total = coverage.get("evaluated"), coverage.get("total")
    counts = all(isinstance(n, int) and not isinstance(n, bool) for n in (evaluated, total))
    return f" ({evaluated}/{total} items)" if counts and evaluated < total else ""



def _headline(record: dict) -> dict:
    metrics = record["metrics"]
    return {name: m for name, m in metrics.items() if m["headline"]} or dict(list(metrics.items())[:3])
