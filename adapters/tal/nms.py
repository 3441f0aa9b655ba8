"""1-D non-maximum suppression for temporal action localization heads: hard NMS, Soft-NMS, voting.

Every TAL head of the harness (ActionFormer, TriDet, ActionVLM's head) ends in the same
post-processing, which the ActionFormer release ships as a C++ extension
(``libs/utils/csrc/nms_cpu.cpp``, built with a compiler at install time) wrapped by
``libs/utils/nms.py``. This module is the same algorithm in torch, so no extension has to be
built, and it keeps the details that decide which segments come out and in which order:

- Segment length is ``end - start + 1e-6`` (float32) and IoU is ``inter / (len_a + len_b - inter)``
  with ``inter = max(0, min(end) - max(start))``.
- Hard NMS first drops scores ``<= min_score`` (strictly greater survive), then visits segments in
  descending score order and suppresses every later one with IoU ``>= iou_threshold``.
- Soft-NMS (the Gaussian method, the only one the release calls) multiplies *every* remaining
  score by ``exp(-iou^2 / sigma)`` -- the IoU threshold does not enter the Gaussian method -- and
  drops a segment as soon as its score falls below ``min_score`` by moving the last remaining
  segment into its slot. The next pick is the first maximum in that shuffled order, so the
  shuffle is reproduced exactly (it decides ties). Scores are changed; picks come out in
  non-increasing score order.
- Multi-class NMS runs per class (classes in ascending id), each capped at ``max_seg_num``, then
  all picks are sorted by score and capped again. Segment voting (a score-and-IoU weighted mean
  of the pre-NMS segments overlapping each pick by ``>= voting_thresh``) is applied only in
  class-agnostic mode, as in the release.

Everything is computed on CPU in float32, as the release does. Score sorts use torch's default
(not stable) sort, the call the release makes, so tied scores come out in the release's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NMSConfig", "segment_iou", "nms_1d", "soft_nms_1d", "segment_voting", "batched_nms"]

_LENGTH_EPS = 1e-6
GAUSSIAN = 2          # the release's method code for Gaussian Soft-NMS (0: hard, 1: linear)


@dataclass(frozen=True)
class NMSConfig:
    """Post-processing settings, named and defaulted as the ActionFormer release's ``test_cfg``.

    ``method``: ``soft`` (Gaussian Soft-NMS), ``hard`` or ``none``. ``multiclass``: suppress within
    each class only. ``voting_thresh`` > 0 turns segment voting on (class-agnostic mode only).
    """

    iou_threshold: float = 0.1
    min_score: float = 0.01
    max_seg_num: int = 1000
    method: str = "soft"
    sigma: float = 0.5
    multiclass: bool = True
    voting_thresh: float = 0.75

    def __post_init__(self) -> None:
        if self.method not in ("soft", "hard", "none"):
            raise ValueError(f"nms method must be soft, hard or none, got {self.method!r}")
        if self.sigma <= 0:
            raise ValueError(f"nms sigma must be positive, got {self.sigma!r}")


def _lengths(segs: torch.Tensor) -> torch.Tensor:
    return segs[:, 1] - segs[:, 0] + _LENGTH_EPS


def segment_iou(start: torch.Tensor, end: torch.Tensor, length: torch.Tensor, starts: torch.Tensor,
                ends: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """IoU of one segment (``start``, ``end``, ``length``: 0-d tensors) with many, as the release computes it."""
    inter = (torch.minimum(end, ends) - torch.maximum(start, starts)).clamp(min=0.0)
    return inter / (length + lengths - inter)


def nms_1d(segs: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the segments hard NMS keeps, in descending score order (``[N, 2]``, ``[N]`` float32)."""
    count = segs.shape[0]
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    lengths = _lengths(segs)
    order = torch.sort(scores, descending=True).indices
    starts, ends, lengths = segs[order, 0], segs[order, 1], lengths[order]
    keep = torch.ones(count, dtype=torch.bool)
    threshold = torch.tensor(iou_threshold, dtype=torch.float32)
    for i in range(count):
        if not keep[i]:
            continue
        iou = segment_iou(starts[i], ends[i], lengths[i], starts[i + 1:], ends[i + 1:], lengths[i + 1:])
        keep[i + 1:] &= ~(iou >= threshold)
    return order[keep]


def soft_nms_1d(segs: torch.Tensor, scores: torch.Tensor, *, sigma: float, min_score: float,
                max_picks: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian Soft-NMS: the picked segments ``[K, 2]``, their decayed scores ``[K]`` and their
    indices into the input, in pick order (see the module docstring for the exact procedure).

    ``max_picks`` > 0 stops after that many picks: picks come in non-increasing score order and
    later picks never change earlier ones, so this equals capping the full result.
    """
    count = segs.shape[0]
    if count == 0:
        return torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    starts = segs[:, 0].clone()
    ends = segs[:, 1].clone()
    score = scores.to(torch.float32).clone()
    lengths = _lengths(segs)
    index = torch.arange(count)
    sigma_t = torch.tensor(sigma, dtype=torch.float32)
    floor = torch.tensor(min_score, dtype=torch.float32)
    picked: list[int] = []
    picked_rows: list[torch.Tensor] = []
    alive = count
    i = 0
    while i < alive and (max_picks <= 0 or i < max_picks):
        best = i + int(torch.argmax(score[i:alive]))     # first maximum, as the C++ scan finds it
        for column in (starts, ends, score, lengths, index):
            column[[i, best]] = column[[best, i]]
        picked.append(int(index[i]))
        picked_rows.append(torch.stack((starts[i], ends[i], score[i])))
        rest = slice(i + 1, alive)
        iou = segment_iou(starts[i], ends[i], lengths[i], starts[rest], ends[rest], lengths[rest])
        score[rest] = score[rest] * torch.exp(-(iou * iou) / sigma_t)
        alive = i + 1 + _drop_low(score, starts, ends, lengths, index, i + 1, alive, floor)
        i += 1
    rows = torch.stack(picked_rows)
    return rows[:, :2].contiguous(), rows[:, 2].contiguous(), torch.tensor(picked, dtype=torch.long)


def _drop_low(score: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, lengths: torch.Tensor,
              index: torch.Tensor, first: int, alive: int, floor: torch.Tensor) -> int:
    """Remove scores below ``floor`` from ``[first, alive)`` the way the release does, in place:
    scanning forward, each low one is replaced by the last remaining segment (itself dropped
    when low). The survivors ahead of the new end stay in place; the holes among them are
    filled by the surviving tail segments, last one first. Returns how many remain."""
    low = score[first:alive] < floor
    kept = int((~low).sum())
    if kept == alive - first:
        return kept
    holes = torch.nonzero(low[:kept]).flatten() + first
    tail = torch.nonzero(~low[kept:]).flatten().flip(0) + first + kept
    for column in (score, starts, ends, lengths, index):
        column[holes] = column[tail]
    return kept


def segment_voting(picked: torch.Tensor, segs: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                   score_offset: float = 1.5) -> torch.Tensor:
    """Each picked segment replaced by the mean of the pre-NMS ``segs`` overlapping it by at least
    ``iou_threshold``, weighted by score x IoU (bounding-box voting; the release's ``seg_voting``,
    whose ``score_offset`` is accepted and unused there too)."""
    del score_offset   # the release computes score + offset and never uses it
    left = torch.maximum(picked[:, None, 0], segs[None, :, 0])
    right = torch.minimum(picked[:, None, 1], segs[None, :, 1])
    inter = (right - left).clamp(min=0)
    union = (picked[:, None, 1] - picked[:, None, 0]) + (segs[None, :, 1] - segs[None, :, 0]) - inter
    iou = inter / union
    weights = (iou >= iou_threshold).to(scores.dtype) * scores[None, :] * iou
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights @ segs


def _suppress(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, config: NMSConfig
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One NMS pass over a group of segments (one class, or all when class-agnostic)."""
    cap = config.max_seg_num
    if config.method == "soft":
        kept_segs, kept_scores, order = soft_nms_1d(segs, scores, sigma=config.sigma, min_score=config.min_score,
                                                    max_picks=cap)
        return kept_segs, kept_scores, labels[order]
    if config.min_score > 0:
        valid = scores > config.min_score
        segs, scores, labels = segs[valid], scores[valid], labels[valid]
    order = nms_1d(segs, scores, config.iou_threshold)
    if cap > 0:
        order = order[:cap]
    return segs[order], scores[order], labels[order]


def batched_nms(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, config: NMSConfig
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Post-process one video's candidates: ``[N, 2]`` segments, ``[N]`` scores, ``[N]`` class ids
    to the kept ones, sorted by descending score and capped at ``config.max_seg_num``.
    ``method == "none"`` returns the input unchanged (the release skips NMS then)."""
    segs = segs.detach().to("cpu", torch.float32)
    scores = scores.detach().to("cpu", torch.float32)
    labels = labels.detach().to("cpu")
    if config.method == "none":
        return segs, scores, labels
    if segs.shape[0] == 0:
        return torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=labels.dtype)
    if config.multiclass:
        parts = [_suppress(segs[labels == label], scores[labels == label], labels[labels == label], config)
                 for label in torch.unique(labels)]
        new_segs, new_scores, new_labels = (torch.cat(column) for column in zip(*parts))
    else:
        new_segs, new_scores, new_labels = _suppress(segs, scores, labels, config)
        if config.voting_thresh > 0:
            new_segs = segment_voting(new_segs, segs, scores, config.voting_thresh)
    order = torch.sort(new_scores, descending=True).indices[:min(config.max_seg_num, new_segs.shape[0])]
    return new_segs[order], new_scores[order], new_labels[order]
