"""Timestamps out of a generative model's free-text answer, as segments in seconds.

A QA-style localizer (a VLM asked "when does <class> happen?") answers in words. This module turns
such an answer into ``(start, end)`` pairs in seconds, or says that it found none.

API (small on purpose; other adapters build on it):

``parse_segments(answer, duration=None, *, relative=False, scale=100.0) -> list[tuple[float, float]] | None``
    The segments the answer states, in order of appearance, or ``None`` when it states none (no
    time at all, or a single one): an *unparsable* answer, which the localizer keeps as an empty
    prediction and counts.
``parse_times(answer, duration=None, *, relative=False, scale=100.0) -> list[Time]``
    Every time the answer mentions, with its span in the text (what `parse_segments` pairs up).
``Time``
    One mentioned time: ``seconds``, ``start``/``end`` (character span), ``unit`` (``"clock"``,
    ``"s"``, ``"min"``, ``"h"`` or ``None`` for a bare number), ``relative`` (a bare number read as a
    position 0-99 of the video).

What is read as a time:

- clock forms ``hh:mm:ss`` and ``mm:ss``, each with optional decimals (``1:02:03.5``, ``00:12``);
- numbers, with or without a unit: ``12``, ``12.5s``, ``12 sec``, ``3 seconds``, ``1.5 min``,
  ``2 minutes``, ``1 h``;
- ranges: two times joined by ``to``, ``-``, ``–``, ``—``, ``~``, ``until``, ``till``, ``through`` or
  ``and`` (``from 5 to 9``, ``between 1.5 and 3 seconds``, ``00:05 - 00:10``, ``5-9s``). A unit
  written once after the second time applies to the first too (``1 to 3 minutes`` is 60-180 s).

Pairing: explicit ranges first; the times left over are paired in order of appearance
(``"start 3.0, end 7.5"``), and an odd one left at the end is ignored. A pair written backwards is
put in order. Nothing is clipped to the duration: a segment past the end of the video is a fact
about the answer, which the hallucination rates look at.

Relative positions (``relative=True``): VTimeLLM states times as two-digit positions ``00``-``99``
of its 100 sampled frames, so a bare number ``r`` (no unit, not a clock form) means
``r / scale * duration`` seconds (``scale`` 100 by default). It needs ``duration``; numbers with a
unit and clock forms stay seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Time", "parse_times", "parse_segments"]

_CLOCK = r"(?:(?P<h>\d+):)?(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)"
_UNIT = r"(?P<unit>hours?|hrs?|h|minutes?|mins?|seconds?|secs?|s)"
_NUMBER = r"(?P<num>\d+(?:\.\d+)?|\.\d+)(?:\s*" + _UNIT + r"(?![A-Za-z]))?"
_TIME = re.compile(r"(?<![\w.:])(?:" + _CLOCK + r"|" + _NUMBER + r")(?![\w:]|\.\d)")
_JOIN = re.compile(r"\s*(?:-|–|—|~|to|until|till|through|and)\s*", re.IGNORECASE)
_FACTOR = {"h": 3600.0, "min": 60.0, "s": 1.0}


@dataclass(frozen=True)
class Time:
    """One time mentioned in an answer (see the module docstring)."""

    seconds: float
    start: int
    end: int
    unit: str | None
    relative: bool = False


def _unit(word: str | None) -> str | None:
    if word is None:
        return None
    word = word.lower()
    if word.startswith("h"):
        return "h"
    if word.startswith("m"):
        return "min"
    return "s"


def parse_times(answer: str, duration: float | None = None, *, relative: bool = False,
                scale: float = 100.0) -> list[Time]:
    """Every time ``answer`` mentions, in order, with its span; see the module docstring."""
    if relative and (duration is None or not duration > 0):
        raise ValueError(f"relative timestamps need the video's positive duration, got {duration!r}")
    raw: list[tuple[float, int, int, str | None]] = []
    for match in _TIME.finditer(answer or ""):
        if match.group("m") is not None:
            value = float(match.group("s")) + 60.0 * float(match.group("m")) + 3600.0 * float(match.group("h") or 0)
            raw.append((value, match.start(), match.end(), "clock"))
        else:
            raw.append((float(match.group("num")), match.start(), match.end(), _unit(match.group("unit"))))
    # A unit written once after a range's second time applies to its first ("1 to 3 minutes").
    units = [unit for _, _, _, unit in raw]
    for index in range(len(raw) - 1):
        if units[index] is None and units[index + 1] not in (None, "clock") and _joined(answer, raw, index):
            units[index] = units[index + 1]
    times = []
    for (value, start, end, _), unit in zip(raw, units):
        if unit is None and relative:
            times.append(Time(value / scale * float(duration), start, end, None, True))  # type: ignore[arg-type]
        else:
            times.append(Time(value * _FACTOR.get(unit or "s", 1.0), start, end, unit))
    return times


def _joined(answer: str, raw: list, index: int) -> bool:
    between = answer[raw[index][2]:raw[index + 1][1]]
    return _JOIN.fullmatch(between) is not None


def parse_segments(answer: str, duration: float | None = None, *, relative: bool = False,
                   scale: float = 100.0) -> list[tuple[float, float]] | None:
    """The ``(start, end)`` segments in seconds that ``answer`` states, or None when it states none."""
    times = parse_times(answer, duration, relative=relative, scale=scale)
    if not times:
        return None
    spans = [(t.start, t.end) for t in times]
    raw = [(t.seconds, s, e, t.unit) for t, (s, e) in zip(times, spans)]
    segments: list[tuple[int, tuple[float, float]]] = []
    used = [False] * len(times)
    for index in range(len(times) - 1):
        if not used[index] and not used[index + 1] and _joined(answer, raw, index):
            used[index] = used[index + 1] = True
            segments.append((index, _ordered(times[index].seconds, times[index + 1].seconds)))
    loose = [index for index in range(len(times)) if not used[index]]
    for first, second in zip(loose[0::2], loose[1::2]):
        segments.append((first, _ordered(times[first].seconds, times[second].seconds)))
    return [segment for _, segment in sorted(segments)] or None


def _ordered(a: float, b: float) -> tuple[float, float]:
    return (a, b) if a <= b else (b, a)
