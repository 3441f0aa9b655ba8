"""InstrAct training batches, built from annotation items exactly as the official loader builds them.

The official loader (zyyangzy/InstrAct ``model/data/train_loader.py``, class ``HT100MDataLoader``,
with ``model/models/config.yaml``'s ``data`` section) turns one annotation item into one example;
PyTorch's default collate then stacks them. Its rules, and where each lives here:

Video (`clip_request`, `frame_spec`): a segment shorter than ``min_time`` (5 s) is widened to
exactly ``min_time`` around its centre, starting at 0 instead if it would start before 0 (the
length is kept, so it then extends further right); then ``uniform_window`` (5 s) of context is
added on each side, clamped at 0 (and, by ffmpeg, at the end of the file). The window is resampled
at ``fps`` (5) and ``num_frames`` (16) frames are kept at ``np.linspace(0, M - 1, 16, dtype=int)``
of the ``M`` resampled frames; the centre square is scaled to ``size`` (224), CLIP mean/std, layout
``[3, T, H, W]``. This is the harness's InstrAct protocol (`instract_eval.media.sampling` documents
the rules and the small known differences: the official ``-t D + 0.1`` cell, black padding when
``M < 16`` where the harness repeats frames, ffmpeg's bicubic scaler), decoded by the same pipeline
the evaluation uses, so training and evaluation see the same pixels.

Text (`text_example`), ``L = context_length`` (32), every row ``[SOT, BPE..., EOT]`` cut to its
first ``L - 1`` ids plus EOT when too long, zero-padded:

- rows ``0 .. max_hard_negatives``: the caption, then the hard negatives: *all* order-swapped
  negatives first (at most ``max_hard_negatives``), then, to fill what is left, verb-altered ones:
  all of them when they fit, otherwise ``rng.sample(verb_altered, remaining)``.
  ``hard_negative_type`` ``"verb"`` / ``"order"`` uses only that source; zero rows pad the rest;
- row ``1 + max_hard_negatives``: the caption again (the masked action modelling input);
- the last ``max_verbs`` rows: the first ``max_verbs`` verb phrases, zero rows after them;
- ``text_mask`` ``[1 + max_hard_negatives, 1]`` long: 0 for the caption and each negative row
  used, **1 for a padded slot** (the hard-negative loss masks those);
- ``num_verbs``: how many verb phrases were kept;
- ``action_mask`` ``[L]`` bool: the candidates are shuffled (``rng.shuffle`` of a copy) and the
  first one whose span fits is marked. A candidate ``[char_start, char_end)`` covers BPE
  positions ``[1 + n(caption[:char_start]), 1 + n(caption[:char_end]))`` where ``n`` counts BPE
  ids of the prefix (position 0 is SOT): every piece of a word split into several ids is marked.
  It fits when that range is non-empty and ends at or before position ``L - 1`` (exclusive), i.e.
  no marked position is the last one, which holds EOT when the caption is cut; a word beyond the
  cut therefore never fits. No candidate fits: all False.

Randomness: only the two draws above, in that order (the negatives' sample, then the shuffle), and
only from the ``rng`` passed in. The official loader draws the same calls from Python's global
``random``, so a ``random.Random(s)`` here reproduces ``random.seed(s)`` there call for call.

Batch (`collate`): ``idx`` is the item's ``group`` (the official ``group_id``: the rank of its
``video_id`` among the file's video ids in order of first appearance), a long ``[B]``; captions of
the same video are positives of each other because their ``idx`` are equal. ``video``
``[B, 3, T, H, W]`` float32, ``text`` ``[B, 2 + H + V, L]`` long, ``text_mask`` ``[B, 1 + H, 1]``
long, ``num_verbs`` ``[B]`` long, ``action_mask`` ``[B, L]`` bool.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from instract_eval.data.instract_train import MaskCandidate, TrainingItem
from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, ClipRequest, FrameSpec, load_clip

from ..core.tokenizers import ClipBPE, clip_bpe, openai_tokenize

__all__ = ["HARD_NEGATIVE_TYPES", "BatchOptions", "Example", "clip_request", "frame_spec", "select_hard_negatives",
           "candidate_mask", "action_mask", "text_example", "make_example", "collate", "video_path"]

HARD_NEGATIVE_TYPES = ("both", "verb", "order")


@dataclass(frozen=True)
class BatchOptions:
    """The loader's settings; the defaults are the official ``config.yaml`` ``data`` section.

    ``context`` is the official ``uniform_window``, ``min_time`` its ``min_time``. ``interpolation``:
    the resize kernel of the harness pipeline (bilinear, as the InstrAct evaluation protocol).
    """

    num_frames: int = 16
    size: int = 224
    fps: float = 5.0
    min_time: float = 5.0
    context: float = 5.0
    max_hard_negatives: int = 12
    max_verbs: int = 6
    context_length: int = 32
    hard_negative_type: str = "both"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.hard_negative_type not in HARD_NEGATIVE_TYPES:
            raise ValueError(f"hard_negative_type must be one of {HARD_NEGATIVE_TYPES}, "
                             f"got {self.hard_negative_type!r}")
        if self.context_length < 3:
            raise ValueError("context_length must leave room for SOT, text and EOT (>= 3)")
        for name in ("max_hard_negatives", "max_verbs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.min_time < 0 or self.context < 0:
            raise ValueError("min_time and context must be >= 0")

    @property
    def text_rows(self) -> int:
        """Rows of ``text``: caption + negatives, the caption again, the verb phrases."""
        return 2 + self.max_hard_negatives + self.max_verbs


@dataclass(frozen=True)
class Example:
    """One training example in the official layout (see the module docstring for each field)."""

    idx: int
    video: torch.Tensor        # float32 [3, T, H, W]
    text: torch.Tensor         # long [2 + max_hard_negatives + max_verbs, context_length]
    text_mask: torch.Tensor    # long [1 + max_hard_negatives, 1], 1 = padded slot
    num_verbs: int
    action_mask: torch.Tensor  # bool [context_length]


def frame_spec(options: BatchOptions = BatchOptions()) -> FrameSpec:
    """Frames uniformly over an ``fps`` grid of the window, centre square of ``size``, CLIP statistics."""
    return FrameSpec(num_frames=options.num_frames, sampling="uniform", fps=options.fps, size=options.size,
                     crop=options.size, mean=options.mean, std=options.std, interpolation=options.interpolation)


def video_path(item: TrainingItem, video_root: str | os.PathLike) -> Path:
    return Path(video_root) / f"{item.video_id}.mp4"


def clip_request(item: TrainingItem, video_root: str | os.PathLike, options: BatchOptions = BatchOptions()
                 ) -> ClipRequest:
    """The item's segment with the official minimum length and context (window rule: module docstring)."""
    return ClipRequest(path=video_path(item, video_root), start=item.start, end=item.end, context_s=options.context,
                       min_clip_s=options.min_time, video_id=item.video_id)


def select_hard_negatives(item: TrainingItem, rng: random.Random, options: BatchOptions = BatchOptions()
                          ) -> list[str]:
    """All order-swapped negatives first, then verb-altered ones drawn to fill ``max_hard_negatives``."""
    kind = options.hard_negative_type
    order = item.order_swapped_hn if kind in ("both", "order") else ()
    verb = item.hard_negatives if kind in ("both", "verb") else ()
    negatives = list(order[: options.max_hard_negatives])
    remaining = options.max_hard_negatives - len(negatives)
    if remaining > 0:
        negatives.extend(rng.sample(list(verb), remaining) if len(verb) > remaining else verb)
    return negatives


def candidate_mask(caption: str, candidate: MaskCandidate, context_length: int = 32,
                   tokenizer: ClipBPE | None = None) -> torch.Tensor:
    """The BPE positions of one candidate word (prefix counting; empty when it does not fit)."""
    bpe = tokenizer or clip_bpe()
    first = 1 + len(bpe.encode(caption[: candidate.char_start]))
    stop = 1 + len(bpe.encode(caption[: candidate.char_end]))
    mask = torch.zeros(context_length, dtype=torch.bool)
    if first < stop <= context_length - 1:
        mask[first:stop] = True
    return mask


def action_mask(item: TrainingItem, rng: random.Random, context_length: int = 32,
                tokenizer: ClipBPE | None = None) -> torch.Tensor:
    """One candidate, drawn by shuffling, whose span fits; all False when none does."""
    candidates = list(item.mam_mask_candidates)
    rng.shuffle(candidates)
    for candidate in candidates:
        mask = candidate_mask(item.caption, candidate, context_length, tokenizer)
        if mask.any():
            return mask
    return torch.zeros(context_length, dtype=torch.bool)


def _rows(texts: Sequence[str], rows: int, length: int, bpe: ClipBPE) -> torch.Tensor:
    ids = openai_tokenize(texts, length, bpe)
    return torch.cat((ids, torch.zeros((rows - len(texts), length), dtype=torch.long)))


def text_example(item: TrainingItem, rng: random.Random, options: BatchOptions = BatchOptions(),
                 tokenizer: ClipBPE | None = None) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """``(text, text_mask, num_verbs, action_mask)`` of one item (rules: module docstring)."""
    bpe = tokenizer or clip_bpe()
    length = options.context_length
    negatives = select_hard_negatives(item, rng, options)
    verbs = list(item.verb_phrases[: options.max_verbs])
    text = torch.cat((_rows([item.caption, *negatives], 1 + options.max_hard_negatives, length, bpe),
                      _rows([item.caption, *verbs], 1 + options.max_verbs, length, bpe)))
    text_mask = torch.ones((1 + options.max_hard_negatives, 1), dtype=torch.long)
    text_mask[: 1 + len(negatives)] = 0
    return text, text_mask, len(verbs), action_mask(item, rng, length, bpe)


def make_example(item: TrainingItem, rng: random.Random, *, video_root: str | os.PathLike,
                 options: BatchOptions = BatchOptions(), tokenizer: ClipBPE | None = None,
                 threads: int | None = None, frame_cache: dict | None = None) -> Example:
    """The official example of ``item``: its clip decoded by the harness pipeline, and its text rows.

    A missing video is an `InputError` naming the annotation file, the caption and the video
    (the official loader drops such items when it starts; here the caller decides).
    ``frame_cache`` (a dict the caller keeps) holds decoded clips by request: the frames of a clip
    never depend on the draw, so a small split (the synthetic one) is decoded once, not once per
    epoch; only the text rows are drawn anew.
    """
    path = video_path(item, video_root)
    if not path.is_file():
        raise InputError(f"video file not found: {path}", path=item.source or None, field=f"{item.caption!r}.video_id")
    request = clip_request(item, video_root, options)
    key = (request, options)
    video = None if frame_cache is None else frame_cache.get(key)
    if video is None:
        video = load_clip(request, frame_spec(options), threads=threads)[0]
        if frame_cache is not None:
            frame_cache[key] = video
    text, text_mask, num_verbs, mask = text_example(item, rng, options, tokenizer)
    return Example(idx=item.group, video=video.permute(1, 0, 2, 3).contiguous(), text=text, text_mask=text_mask,
                   num_verbs=num_verbs, action_mask=mask)


def collate(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """The official batch dict: what PyTorch's default collate makes of the official examples."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    return {
        "idx": torch.tensor([e.idx for e in examples], dtype=torch.long),
        "video": torch.stack([e.video for e in examples]),
        "text": torch.stack([e.text for e in examples]),
        "text_mask": torch.stack([e.text_mask for e in examples]),
        "num_verbs": torch.tensor([e.num_verbs for e in examples], dtype=torch.long),
        "action_mask": torch.stack([e.action_mask for e in examples]),
    }
