"""Inline SVG plots for the task pages: no plotting library, no script, nothing fetched.

Each plot is a self-contained ``<svg role="img">`` with a ``<title>`` (read by screen readers)
and a ``<title>`` on every mark (the browser's tooltip gives the exact value). Every string that
comes from a result file goes through :func:`markupsafe.escape`.

Per task kind (see :func:`task_plots`): multiple choice, bars of accuracy against the chance
line; pooled retrieval, recall vs pool size; classification with synonym runs, the SRT mean ±
std per method; localization, mAP vs tIoU threshold; alignment, bars of the DTW cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from instract_eval.results import model_label

from .board import TaskPage, finite_number, format_value

__all__ = ["Bar", "Series", "bar_chart", "line_chart", "task_plots"]

# Okabe-Ito colours without the yellow: distinguishable with colour-blindness, readable on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
REPORTED_COLOUR = "#767676"  # 4.5:1 on white
WIDTH = 640
LABEL_WIDTH = 200
BAR_HEIGHT = 18
BAR_GAP = 8


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    std: float | None = None
    reported: bool = False


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[float, float], ...]


def _scale(unit: str) -> float:
    return 100.0 if unit == "fraction" else 1.0


def _short(label: str, limit: int = 30) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value``: an axis end that reads well."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value * (1 - 1e-12))


def _ticks(top: float, count: int = 5) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}"


def bar_chart(title: str, bars: Sequence[Bar], *, unit: str, axis: str,
              reference: float | None = None, reference_label: str = "") -> Markup:
    """Horizontal bars, one per row, with ± std whiskers and an optional dashed reference line."""
    scale = _scale(unit)
    values = [bar.value * scale + (bar.std or 0) * scale for bar in bars]
    if reference is not None:
        values.append(reference * scale)
    top = 100.0 if unit == "fraction" else _nice_top(max(values, default=1.0))
    plot_width = WIDTH - LABEL_WIDTH - 30
    height = 40 + len(bars) * (BAR_HEIGHT + BAR_GAP) + 40

    def x(value: float) -> float:
        return LABEL_WIDTH + plot_width * max(0.0, min(value, top)) / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}" class="plot"><title>{escape(title)}</title>']
    axis_y = height - 32
    for tick in _ticks(top):
        parts.append(f'<line x1="{x(tick):.1f}" y1="24" x2="{x(tick):.1f}" y2="{axis_y}" class="grid"/>'
                     f'<text x="{x(tick):.1f}" y="{axis_y + 14}" class="tick" text-anchor="middle">'
                     f'{_tick_text(tick)}</text>')
    parts.append(f'<text x="{LABEL_WIDTH + plot_width / 2:.1f}" y="{height - 4}" class="axis" '
                 f'text-anchor="middle">{escape(axis)}</text>')
    for index, bar in enumerate(bars):
        y = 28 + index * (BAR_HEIGHT + BAR_GAP)
        colour = REPORTED_COLOUR if bar.reported else PALETTE[index % len(PALETTE)]
        shown = format_value(bar.value, unit, bar.std) + (" (reported)" if bar.reported else "")
        opacity = ' fill-opacity="0.55"' if bar.reported else ""
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT - 5}" class="label" text-anchor="end">'
                     f'{escape(_short(bar.label))}</text>'
                     f'<rect x="{LABEL_WIDTH}" y="{y}" width="{x(bar.value * scale) - LABEL_WIDTH:.1f}" '
                     f'height="{BAR_HEIGHT}" fill="{colour}"{opacity}>'
                     f'<title>{escape(bar.label)}: {escape(shown)}</title></rect>')
        if bar.std:
            low, high = x((bar.value - bar.std) * scale), x((bar.value + bar.std) * scale)
            middle = y + BAR_HEIGHT / 2
            parts.append(f'<path d="M{low:.1f} {middle}H{high:.1f}M{low:.1f} {middle - 5}V{middle + 5}'
                         f'M{high:.1f} {middle - 5}V{middle + 5}" class="whisker"/>')
    if reference is not None:
        rx = x(reference * scale)
        parts.append(f'<line x1="{rx:.1f}" y1="20" x2="{rx:.1f}" y2="{axis_y}" class="reference"/>'
                     f'<text x="{rx + 4:.1f}" y="16" class="reference-label">{escape(reference_label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(title: str, series: Sequence[Series], *, unit: str, x_axis: str, y_axis: str) -> Markup:
    """Lines with point markers; the y axis starts at zero, the x axis spans the data."""
    scale = _scale(unit)
    xs = sorted({px for s in series for px, _ in s.points})
    ys = [py * scale for s in series for _, py in s.points]
    top = 100.0 if unit == "fraction" else _nice_top(max(ys, default=1.0))
    left, right, upper, lower = 56, WIDTH - 20, 24, 250
    legend_rows = (len(series) + 2) // 3
    height = lower + 44 + legend_rows * 18
    low_x, high_x = (xs[0], xs[-1]) if xs else (0.0, 1.0)
    span = (high_x - low_x) or 1.0

    def x(value: float) -> float:
        return (left + right) / 2 if high_x == low_x else left + (right - left) * (value - low_x) / span

    def y(value: float) -> float:
        return lower - (lower - upper) * max(0.0, min(value, top)) / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" '
             f'width="{WIDTH}" height="{height}" class="plot"><title>{escape(title)}</title>']
    for tick in _ticks(top):
        parts.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{right}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" class="tick" text-anchor="end">'
                     f'{_tick_text(tick)}</text>')
    for tick in xs:
        parts.append(f'<text x="{x(tick):.1f}" y="{lower + 16}" class="tick" text-anchor="middle">'
                     f'{_tick_text(tick)}</text>')
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{lower + 34}" class="axis" text-anchor="middle">'
                 f'{escape(x_axis)}</text><text x="14" y="{(upper + lower) / 2:.1f}" class="axis" '
                 f'text-anchor="middle" transform="rotate(-90 14 {(upper + lower) / 2:.1f})">{escape(y_axis)}</text>')
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = sorted(line.points)
        if len(points) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{x(px):.1f} {y(py * scale):.1f}"
                            for i, (px, py) in enumerate(points))
            parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for px, py in points:
            parts.append(f'<circle cx="{x(px):.1f}" cy="{y(py * scale):.1f}" r="4" fill="{colour}">'
                         f'<title>{escape(line.label)}: {escape(x_axis)} {px:g}, '
                         f'{escape(format_value(py, unit))}</title></circle>')
        row, column = divmod(index, 3)
        lx, ly = left + column * 190, lower + 54 + row * 18
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{lx + 18}" y="{ly + 1}" class="label">{escape(_short(line.label, 26))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _metric(record: dict, name: str) -> float | None:
    metric = record["metrics"].get(name)
    return finite_number(metric.get("value")) if isinstance(metric, dict) else None



def _headline(page: TaskPage, prefer: Sequence[str]) -> str | None:
    names = [c.metric for c in page.table.columns]
    return next((name for name in prefer if name in names), names[0] if names else None)


def _mcq_plot(page: TaskPage) -> Markup | None:
    metric = _headline(page, ("accuracy", "R@1"))
    if metric is None:
        return None
    bars = [Bar(model_label(r), v) for r in page.records if (v := _metric(r, metric)) is not None]
    # In multiple choice accuracy is R@1; papers print one or the other.
    bars += [Bar(row.method, value, reported=True) for row in page.reported
             if (value := row.values.get("accuracy", row.values.get("R@1"))) is not None]
    if not bars:
        return None
    chances = {round(c, 12) for r in page.records
               if (c := finite_number((r.get("details") or {}).get("chance"))) is not None}
    chance = chances.pop() if len(chances) == 1 else None
    return bar_chart(f"{page.name}: {metric} against chance", bars, unit="fraction", axis=f"{metric} (%)",
                     reference=chance, reference_label=f"chance {100 * chance:.1f}%" if chance is not None else "")


def _pool_size_points(record: dict) -> tuple[tuple[float, float], ...]:
    """(pool size, mean R@1) from the record's ``by_pool_size`` breakdown, skipping what is not a number."""
    by_size = (record.get("details") or {}).get("by_pool_size")
    points = []
    for size, entry in (by_size.items() if isinstance(by_size, dict) else ()):
        value = finite_number(entry.get("mean", {}).get("R@1")) if isinstance(entry, dict) and isinstance(
            entry.get("mean"), dict) else None
        if value is not None and re.fullmatch(r"\d+", str(size)):
            points.append((float(size), value))
    return tuple(points)


def _retrieval_plot(page: TaskPage) -> Markup | None:
    series = [Series(model_label(record), points) for record in page.records if (points := _pool_size_points(record))]
    if not series:
        return None
    return line_chart(f"{page.name}: mean R@1 (T2V and V2T) against pool size", series, unit="fraction",
                      x_axis="videos in the pool", y_axis="mean R@1 (%)")


def _classification_plot(page: TaskPage) -> Markup | None:
    metric = _headline(page, ("srt.unseen.accuracy",))
    if metric != "srt.unseen.accuracy":
        metric = _headline(page, ("accuracy", "hm.accuracy", "unseen.accuracy"))
        if metric is None:
            return None
    bars = [Bar(model_label(r), v, _metric(r, f"{metric}.std"))
            for r in page.records if (v := _metric(r, metric)) is not None]
    bars += [Bar(row.method, row.values[metric], row.std.get(metric), reported=True)
             for row in page.reported if metric in row.values]
    if not bars:
        return None
    title = (f"{page.name}: unseen accuracy over synonym runs, mean ± std per method"
             if metric.startswith("srt.") else f"{page.name}: {metric}")
    return bar_chart(title, bars, unit="fraction", axis=f"{metric} (%)")


def _localization_plot(page: TaskPage) -> Markup | None:
    thresholds = {c.metric: float(c.metric.split("@", 1)[1]) for c in page.table.columns
                  if re.fullmatch(r"mAP@\d+(\.\d+)?", c.metric)}
    if not thresholds:
        return None
    series = []
    for record in page.records:
        points = tuple((t, v) for name, t in thresholds.items() if (v := _metric(record, name)) is not None)
        if points:
            series.append(Series(model_label(record), points))
    return line_chart(f"{page.name}: mAP against the tIoU threshold", series, unit="fraction",
                      x_axis="tIoU threshold", y_axis="mAP (%)") if series else None


def _alignment_plot(page: TaskPage) -> Markup | None:
    metric = _headline(page, ())
    if metric is None:
        return None
    unit = next(c.unit for c in page.table.columns if c.metric == metric)
    bars = [Bar(model_label(r), v) for r in page.records if (v := _metric(r, metric)) is not None]
    return bar_chart(f"{page.name}: {metric} (lower is better)", bars, unit=unit, axis=metric) if bars else None


_PLOTS = {"mcq": _mcq_plot, "retrieval": _retrieval_plot, "classification": _classification_plot,
          "localization": _localization_plot, "alignment": _alignment_plot}


def task_plots(page: TaskPage) -> list[Markup]:
    """The plots of one task page, by its kind; none for a kind this module does not know."""
    plot = _PLOTS.get(page.kind)
    made = plot(page) if plot else None
    return [made] if made is not None else []
