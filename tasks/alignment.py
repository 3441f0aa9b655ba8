"""The alignment-diagnostic engine: InstrAction's normalized DTW cost (Fig. 8, Eq. 10).

Why a separate engine: the diagnostic asks a different question from the ranking tasks. It does
not compare candidates; it measures how well the *temporally ordered tokens* of one video (raw
frame embeddings, or InstrAction's Perceiver action latents) line up with the *ordered verb
phrases* of its caption: ``C_DTW = (1/L) sum_{(i,j) in P*} (1 - S_ij)`` over the optimal DTW path
``P*`` of the token-phrase cosine cost (`instract_eval.metrics.normalized_dtw_cost`). Lower is
better; the paper reports 0.97 for raw frame embeddings and 0.91 for Perceiver latents, on the
videos whose captions have more than three sequential verb phrases.

Verb phrases: the InstrAct annotations carry captions, not phrase lists (the paper extracts them
with an LLM). The task protocol therefore names a regular expression, ``phrase_separator``, that
cuts a caption into its steps in caption order (`verb_phrases`; default
`DEFAULT_PHRASE_SEPARATOR`), and ``min_phrases`` (default 2; the paper's subset is ``4``) keeps
only the captions with enough steps. `alignment_items` returns the kept items as an
`AlignmentItems` list that also remembers how many rows it read, and `evaluate_alignment` reports
that selection in its coverage, next to the videos that could not be decoded.

The flow: each unique clip is decoded and encoded once (``encode_video_tokens``, ``[K, D]`` per
request, the temporal clips of a request averaged element-wise), each unique phrase is encoded once
(``encode_text``), then the per-item cost is computed on numpy arrays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import task_frame_spec
from instract_eval.data.instract import read_logic
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest
from instract_eval.metrics.alignment import normalized_dtw_cost
from instract_eval.encoding import Encoder

from .build import instract_request
from .encoding import engine_capability
from .registry import DataLocation, TaskSpec

__all__ = [
    "ALIGNMENT_FORMATS",
    "DEFAULT_MIN_PHRASES",
    "DEFAULT_PHRASE_SEPARATOR",
    "AlignmentItem",
    "AlignmentItems",
    "alignment_items",
    "evaluate_alignment",
    "verb_phrases",
]

ALIGNMENT_FORMATS = ("instract-logic",)
DEFAULT_MIN_PHRASES = 2

# Step boundaries, tried left to right at each position (so ", and then" wins over ", then"):
#   ", and then "  |  ", then "  |  ";"  |  "then "   (case-insensitive, surrounding spaces eaten)
# "then" must be a whole word followed by more text: "fry it then serve" splits and a leading
# "Then add salt" loses its "then", while "athens", "thenceforth" and a final "then" do not split.
# Commas alone do not split ("chop, dice and fry the onion" is one step); captions that list
# their steps with bare commas need a protocol `phrase_separator` of their own.
DEFAULT_PHRASE_SEPARATOR = r"(?i)\s*,\s*and\s+then\s+|\s*,\s*then\s+|\s*;\s*|\s*\bthen\s+"


def verb_phrases(caption: str, separator: str | re.Pattern[str] = DEFAULT_PHRASE_SEPARATOR) -> tuple[str, ...]:
    """The ordered verb phrases of ``caption``: the pieces between matches of ``separator``.

    Each piece is stripped of surrounding whitespace; empty pieces (a leading "then", doubled
    separators) are dropped; zero-width matches of the pattern are ignored, and capture groups in
    it are never returned (the split uses match spans, not `re.split`).

    >>> verb_phrases("shake the blue diamond, then move the blue cross right")
    ('shake the blue diamond', 'move the blue cross right')
    >>> verb_phrases("cut the onion; fry it then serve")
    ('cut the onion', 'fry it', 'serve')
    """
    pattern = re.compile(separator) if isinstance(separator, str) else separator
    pieces, position = [], 0
    for match in pattern.finditer(caption):
        if match.end() == match.start():
            continue
        pieces.append(caption[position:match.start()])
        position = match.end()
    pieces.append(caption[position:])
    return tuple(piece.strip() for piece in pieces if piece.strip())


@dataclass(frozen=True)
class AlignmentItem:
    """One video clip and its caption's verb phrases, in caption (= intended temporal) order."""

    request: ClipRequest
    phrases: tuple[str, ...]
    sample_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "phrases", tuple(self.phrases))
        if not self.phrases or not all(isinstance(p, str) and p.strip() for p in self.phrases):
            raise ValueError(f"item {self.sample_id!r} needs at least one non-empty verb phrase")


class AlignmentItems(list):
    """The kept items (a plain list of `AlignmentItem`) plus the selection that produced them.

    ``rows``: annotation rows read; ``min_phrases``: the threshold applied. Rows with fewer
    phrases (``too_few_phrases``) are not items. `evaluate_alignment` copies this into its
    coverage; a slice or copy of the list is a plain list and carries no selection.
    """

    def __init__(self, items: Sequence[AlignmentItem] = (), *, rows: int, min_phrases: int):
        super().__init__(items)
        self.rows = rows
        self.min_phrases = min_phrases

    @property
    def too_few_phrases(self) -> int:
        return self.rows - len(self)

    def selection(self) -> dict[str, int]:
        return {"rows": self.rows, "kept": len(self), "too_few_phrases": self.too_few_phrases,
                "min_phrases": self.min_phrases}


def alignment_items(spec: TaskSpec, location: DataLocation) -> AlignmentItems:
    """The items of an alignment task: InstrAct-Logic rows with at least ``min_phrases`` phrases.

    Videos are ``<videos>/<video_id>.mp4`` with the protocol's ``context_s``/``min_clip_s``, as for
    the multiple-choice InstrAct tasks; sample ids are ``<task>/<row index in the file>``, the same
    ids the InstrAct-Logic multiple-choice items get.
    """
    if spec.format not in ALIGNMENT_FORMATS:
        raise InputError(f"task {spec.name}: format '{spec.format}' is not an alignment format "
                         f"({', '.join(ALIGNMENT_FORMATS)})", path=spec.source, field=f"tasks.{spec.name}.format")
    protocol = spec.protocol
    separator = _separator(spec)
    min_phrases = protocol.get("min_phrases", DEFAULT_MIN_PHRASES)
    if isinstance(min_phrases, bool) or not isinstance(min_phrases, int) or min_phrases < 1:
        raise InputError(f"expected a positive integer, got {min_phrases!r}", path=spec.source,
                         field=f"tasks.{spec.name}.protocol.min_phrases")
    rows = read_logic(location.files["annotations"])
    videos = location.files["videos"]
    items = []
    for index, row in enumerate(rows):
        phrases = verb_phrases(row.clip.caption, separator)
        if len(phrases) >= min_phrases:
            items.append(AlignmentItem(instract_request(row.clip, videos, protocol), phrases,
                                       sample_id=f"{spec.name}/{index}"))
    return AlignmentItems(items, rows=len(rows), min_phrases=min_phrases)


def evaluate_alignment(encoder: Encoder, items: Sequence[AlignmentItem], *, task: str,
                       protocol: Mapping[str, Any]) -> dict:
    """Normalized DTW cost per item and over items: ``{"metrics", "coverage", "samples"}``.

    ``metrics``: ``normalized_dtw_cost`` (mean over items, the headline; lower is better),
    ``median_normalized_dtw_cost``, ``num_items``. ``coverage``: ``evaluated``, ``total``,
    ``fraction`` (items), ``failed_videos`` (request key -> why), plus ``selection`` (rows read,
    kept, dropped for too few phrases, threshold) when ``items`` is an `AlignmentItems`.
    ``samples``: ``{"id", "cost", "num_tokens", "num_phrases"}`` per evaluated item.

    A video that cannot be decoded is an error unless ``allow_missing`` (then its items are left
    out and counted); non-finite tokens or phrase embeddings are an error naming the items.
    """
    model = encoder.model
    engine_capability(model, "alignment", task)
    if not items:
        raise InputError(f"task {task}: no item to evaluate (no caption has enough verb phrases?)",
                         field=f"tasks.{task}.protocol.min_phrases")
    spec = task_frame_spec(model.frame_spec(), protocol, task)
    videos = encoder.videos([item.request for item in items], spec, method="encode_video_tokens")
    phrase_embeddings = encoder.texts([phrase for item in items for phrase in item.phrases])
    name = getattr(model, "name", type(model).__name__)

    samples = []
    for item in items:
        tokens = videos.embeddings.get(item.request.key())
        if tokens is None:
            continue  # failed to decode; only reachable with allow_missing
        if tokens.ndim != 2:
            raise InputError(f"task {task}: {name}.encode_video_tokens returned shape {tokens.shape} per clip for "
                             f"{item.sample_id or item.request.key()}; expected [K, D] tokens ([B, K, D] per batch)",
                             field="--model")
        phrases = np.stack([phrase_embeddings[phrase] for phrase in item.phrases])
        try:
            cost = normalized_dtw_cost(tokens, phrases)
        except ValueError as error:
            raise InputError(f"task {task}: item {item.sample_id or item.request.key()}: {error}",
                             field="--model") from error
        video = item.request.video_id if item.request.video_id is not None else Path(item.request.path).stem
        samples.append({"id": item.sample_id, "video": video, "cost": cost, "num_tokens": int(tokens.shape[0]),
                        "num_phrases": len(item.phrases)})
    if not samples:
        raise InputError(f"task {task}: no item could be evaluated (all videos failed to decode)",
                         field=f"tasks.{task}.data.videos")
    costs = np.array([sample["cost"] for sample in samples])
    coverage: dict[str, Any] = {"evaluated": len(samples), "total": len(items), "fraction": len(samples) / len(items),
                                "failed_videos": videos.failed}
    if isinstance(items, AlignmentItems):
        coverage["selection"] = items.selection()
    return {
        "metrics": {"normalized_dtw_cost": float(costs.mean()),
                    "median_normalized_dtw_cost": float(np.median(costs)),
                    "num_items": len(samples)},
        "coverage": coverage,
        "samples": samples,
    }


def _separator(spec: TaskSpec) -> re.Pattern[str]:
    """The protocol's ``phrase_separator`` compiled, or an InputError naming it."""
    pattern = spec.protocol.get("phrase_separator", DEFAULT_PHRASE_SEPARATOR)
    field = f"tasks.{spec.name}.protocol.phrase_separator"
    if not isinstance(pattern, str) or not pattern:
        raise InputError(f"expected a non-empty regular expression, got {pattern!r}", path=spec.source, field=field)
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InputError(f"not a valid regular expression ({error})", path=spec.source, field=field) from None
