"""Progress for logs: plain timestamped lines on standard error when it is not a terminal.

In a terminal `instract-eval run` draws rich progress bars that vanish when done. In a pipe or a
CI log bars cannot redraw, and rich draws nothing there, so a first run used to print a single
line in over a minute and a CI job looked hung. `LineProgress` takes the bars' place there: it
has the part of rich's ``Progress`` that the encoder drives (``add_task``, ``advance``,
``remove_task``), prints one line when each (model, task) starts and finishes (``announce``),
and between those at most one line every ``interval`` seconds, so a log shows life without a
line per batch::

    [12:01:03] synth-temporal synth-semantic: task 3/18 started
    [12:01:08] synth-temporal synth-semantic: encoding videos 120/300 (18.2/s)
    [12:01:19] synth-temporal synth-semantic: task 3/18 finished in 16.0 s

The interval is `PROGRESS_INTERVAL_S`, or ``$INSTRACT_EVAL_PROGRESS_INTERVAL`` seconds (0: a
line per batch).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from instract_eval.errors import InputError
from instract_eval.text import plain

__all__ = ["LineProgress", "PROGRESS_INTERVAL_S", "INTERVAL_VARIABLE", "progress_interval"]

PROGRESS_INTERVAL_S = 5.0
INTERVAL_VARIABLE = "INSTRACT_EVAL_PROGRESS_INTERVAL"


def progress_interval(environ: Mapping[str, str]) -> float:
    """The seconds between two progress lines: ``$INSTRACT_EVAL_PROGRESS_INTERVAL`` or the default."""
    text = environ.get(INTERVAL_VARIABLE)
    if text is None:
        return PROGRESS_INTERVAL_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InputError(f"must be a number of seconds, 0 or more, got {text!r}", field=INTERVAL_VARIABLE)
    return seconds


@dataclass
class _Bar:
    """One unit of work being counted (a task's videos to encode, its videos to localize)."""

    description: str
    total: int | None
    started: float
    completed: int = 0


class LineProgress:
    """Rich's ``Progress`` interface as lines on ``stream`` (default: the current standard error)."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = PROGRESS_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.interval = interval
        self._clock = clock
        self._bars: dict[int, _Bar] = {}
        self._next_id = 0
        self._last_line = -math.inf

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def announce(self, message: str) -> None:
        """A line that is always printed: a (model, task) starting or finishing."""
        self._write(message)

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        self._next_id += 1
        self._bars[self._next_id] = _Bar(description, None if total is None else int(total), self._clock())
        return self._next_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Count ``advance`` more done; print the count if ``interval`` has passed since the last line."""
        bar = self._bars[task_id]
        bar.completed += int(advance)
        if self._clock() - self._last_line >= self.interval:
            self._write(self._count_line(bar))

    def remove_task(self, task_id: int) -> None:
        self._bars.pop(task_id, None)

    def _count_line(self, bar: _Bar) -> str:
        count = f"{bar.completed}/{bar.total}" if bar.total is not None else str(bar.completed)
        elapsed = self._clock() - bar.started
        rate = f" ({bar.completed / elapsed:.1f}/s)" if elapsed > 0 else ""
        return f"{bar.description} {count}{rate}"

    def _write(self, message: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(f"[{datetime.now():%H:%M:%S}] {plain(message)}\n")
        stream.flush()
        self._last_line = self._clock()
