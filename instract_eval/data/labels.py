"""The one check of a row's label against the set of classes it must belong to.

A label outside its declared set is almost always a misspelling ("mvoe down"). Scored anyway, it
becomes a class of its own or a clip no class can match, and the metric moves while the coverage
still reads complete; so every reader refuses it, naming the file, the row and the closest
declared labels.
"""

from __future__ import annotations

import difflib
import os
from typing import Collection

from ..errors import InputError
from ..text import did_you_mean

NEAR_MISS = 0.8  # similarity of a one- or two-letter slip in a short label ("spin blok": 0.95)


def check_label(label: str, known: Collection[str], *, declared_by: str, path: str | os.PathLike,
                field: str) -> str:
    """``label`` itself if it is in ``known``; else an `InputError` at ``path``/``field``.

    ``declared_by`` says where the known classes come from ("the class list classes.txt"), so the
    user knows which of the two files to correct.
    """
    if label in known:
        return label
    raise InputError(f"unknown class '{label}' (not in {declared_by}){did_you_mean(label, known)}",
                     path=path, field=field)


def similarity(label: str, other: str) -> float:
    """How alike two labels are, 0..1 (difflib's ratio, the measure behind `did_you_mean`)."""
    return difflib.SequenceMatcher(None, label, other).ratio()
