"""Text that comes from result files, registries and model cards, made safe to show.

Model labels, task and metric names, paths and notes are written by whoever made the file, so they
may hold anything: Rich markup (``[bold red]EVIL[/]`` would render styled, or hide what follows),
terminal escapes (``\\x1b[2J`` clears the screen, ``\\x1b]0;...\\x07`` retitles the window, CSI
``\\x9b`` does the same in one byte) or bidirectional overrides that show text in another order
than it is. Every table and report passes such text through these functions, so that it is only
ever shown as the characters it is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["did_you_mean", "plain", "plain_lines", "safe_markup", "plural"]

# C0 and C1 controls, DEL, and the bidirectional marks, embeddings, overrides and isolates.
_LAYOUT = "\t\n\r"
_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROLS_BUT_LAYOUT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")


def plain(text: object) -> str:
    """``text`` as one line without control characters: a line break or tab becomes a space,
    anything else a terminal or a bidi algorithm would act on is dropped."""
    return _CONTROLS.sub("", re.sub(f"[{_LAYOUT}]+", " ", str(text)))


def plain_lines(text: object) -> str:
    """``text`` without control characters, keeping tabs and line breaks: for whole documents
    (an HTML page) whose layout is ours but whose content is not."""
    return _CONTROLS_BUT_LAYOUT.sub("", str(text))


def safe_markup(text: object) -> str:
    """``text`` to put into a Rich table cell, title or printed line: `plain`, with Rich markup escaped."""
    from rich.markup import escape

    return escape(plain(text))


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 result record``, ``2 result records``: the count with the noun in its number."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the (at most three) closest known names, or ``""`` when none is
    close: the one wording of the hint for labels, protocol keys and metric names."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(f"'{match}'" for match in close) + "?" if close else ""
