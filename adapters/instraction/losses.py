"""InstrAction's training objectives, as the official release computes them.

- `vtc_loss` (``model/modules/contrastive_loss.py``): symmetric InfoNCE at a learned temperature
  over the batch, multi-positive (captions of one video group are all positives, each row of the
  target normalised), softened by the verb-guided teacher:
  ``y' = a softmax(sim(teacher, t) / tau) + (1 - a) y``; the two directions are *averaged*.
- `hard_negative_nce` (``hard_negative_loss.py``): a fixed temperature 0.05, the text bank is
  every video's caption and its hard-negative slots; a video sees its own caption and valid
  negatives and the other videos' captions (their negatives and padded slots hidden); each row's
  cross-entropy is divided by log(#candidates); captions to videos, divided by log(B); summed.
  With the release's beta = 0 the hardness weighting is flat, so it is a plain softmax over the
  visible candidates; the release's arithmetic (max over every column, the 1e-12 floor) is kept.
- `soft_dtw_prob` / `dtw_alignment_loss` (``dtw_loss.py``): DTW over cost ``1 - cos`` whose
  neighbour term is the softmax(-n / gamma)-weighted *average* of the three neighbours (not the
  log-sum-exp soft-min of Soft-DTW), borders at float32's max; the cost is scaled by 0.01; the
  negative is the same tokens in reverse time against the same verbs, hinge ``max(0, fwd - rev +
  margin)``; the loss is mean(fwd) + order_weight * mean(hinge) over samples that have verbs.
  With beta = 0 the hardness weighting of the NCE is flat; ``beta`` is kept for the release's option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["vtc_targets", "vtc_loss", "hard_negative_candidates", "hard_negative_nce", "soft_dtw_prob",
           "DtwLoss", "dtw_alignment_loss"]

_FLOOR = 1e-12


def vtc_targets(idx: torch.Tensor | None, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[B, B]`` hard targets: 1 where two rows share a video group id, each row summing to 1."""
    if idx is None:
        return torch.eye(size, dtype=dtype, device=device)
    idx = idx.reshape(-1, 1).to(device)
    same = (idx == idx.T).to(dtype)
    return same / same.sum(1, keepdim=True)


def vtc_loss(video: torch.Tensor, text: torch.Tensor, idx: torch.Tensor | None, temperature: torch.Tensor | float,
             *, alpha: torch.Tensor | float = 0.0, teacher: torch.Tensor | None = None) -> torch.Tensor:
    """Video-text contrastive loss with soft targets from ``teacher`` (one vector per video) when given."""
    video, text = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
    v2t = video @ text.T / temperature
    t2v = v2t.T
    with torch.no_grad():
        hard = vtc_targets(idx, v2t.shape[0], v2t.dtype, v2t.device)
    target_v2t = target_t2v = hard
    if teacher is not None:
        teacher_v2t = F.normalize(teacher, dim=-1) @ text.T / temperature
        target_v2t = alpha * teacher_v2t.softmax(dim=1) + (1 - alpha) * hard
        target_t2v = alpha * teacher_v2t.T.softmax(dim=1) + (1 - alpha) * hard
    loss_v2t = -(F.log_softmax(v2t, dim=1) * target_v2t).sum(1).mean()
    loss_t2v = -(F.log_softmax(t2v, dim=1) * target_t2v).sum(1).mean()
    return 0.5 * (loss_v2t + loss_t2v)


def hard_negative_candidates(padded: torch.Tensor) -> torch.Tensor:
    """``[B, B * C]`` bool: the texts video ``i`` is ranked against, from the ``[B, C]`` padded-slot mask.

    Slot 0 of every group is a caption: visible to every video. Slots 1.. of group ``i`` (its hard
    negatives) are visible to video ``i`` only, and only where not padded.
    """
    batch, slots = padded.shape
    visible = torch.zeros(batch, batch, slots, dtype=torch.bool, device=padded.device)
    visible[:, :, 0] = True
    rows = torch.arange(batch, device=padded.device)
    visible[rows, rows] = ~padded.bool()
    return visible.reshape(batch, batch * slots)


def _row_nce(logits: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, count: torch.Tensor,
             beta: float = 0.0) -> torch.Tensor:
    """Per row: the release's weighted NCE, ``-log(e^pos / (e^pos + sum_n w_n e^n))``.

    The negatives' weights are ``exp(beta * logit)`` normalised to sum to ``count - 1`` (``count``:
    the row's candidates); with beta = 0 each visible negative weighs 1 and this is a plain
    softmax over the visible candidates. Computed as the release does: exponentials shifted by the
    row's maximum over *all* columns, sums floored at 1e-12.
    """
    scaled = beta * logits
    weights = torch.exp(scaled - scaled.max(dim=-1, keepdim=True).values) * negatives.to(logits.dtype)
    weights = (count.to(logits.dtype) - 1).unsqueeze(-1) * weights / weights.sum(-1, keepdim=True).clamp_min(_FLOOR)
    weights = weights + positive.to(logits.dtype)
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    normaliser = (weights * shifted.exp()).sum(-1).clamp_min(_FLOOR)
    return normaliser.log() - (shifted * positive.to(logits.dtype)).sum(-1)


def hard_negative_nce(video: torch.Tensor, texts: torch.Tensor, padded: torch.Tensor, *,
                      temperature: float = 0.05, beta: float = 0.0) -> torch.Tensor:
    """The release's hard-negative NCE: ``video`` [B, D], ``texts`` [B * C, D] grouped per video
    (caption first), ``padded`` [B, C] or [B * C, 1] (True/1 = an empty slot). ``beta`` > 0 weighs
    harder negatives more (the release's default, and InstrAction's setting, is 0)."""
    batch = video.shape[0]
    padded = padded.reshape(batch, -1)
    slots = padded.shape[1]
    logits = F.normalize(video, dim=-1).float() @ F.normalize(texts, dim=-1).float().T / float(temperature)
    positive = torch.zeros_like(logits, dtype=torch.bool)
    rows = torch.arange(batch, device=logits.device)
    positive[rows, rows * slots] = True
    candidates = hard_negative_candidates(padded.to(logits.device))
    count = candidates.sum(-1).clamp_min(1)
    per_row = _row_nce(logits, positive, candidates & ~positive, count, beta)
    ranked = count > 1   # a row holding only its positive has nothing to rank (log 1 = 0)
    v2t = (per_row[ranked] / count[ranked].to(logits.dtype).log()).mean() if ranked.any() else logits.sum() * 0.0
    if batch > 1:
        captions = logits[:, rows * slots].T                         # [B captions, B videos]
        eye = torch.eye(batch, dtype=torch.bool, device=logits.device)
        everyone = torch.full((batch,), batch, device=logits.device)
        t2v = _row_nce(captions, eye, ~eye, everyone, beta).sum() / batch / math.log(batch)
    else:
        t2v = logits.sum() * 0.0
    return v2t + t2v


def soft_dtw_prob(video_steps: torch.Tensor, text_steps: torch.Tensor, gamma: float = 0.1) -> torch.Tensor:
    """DTW cost of ``[K, D]`` video steps against ``[M, D]`` text steps, cost ``1 - cos``, with the
    release's "dtw_prob" smoothing: each cell adds the softmax(-n / gamma)-weighted mean of its three
    predecessors ``n``. Borders hold float32's max (weight 0 after the softmax); computed in float32."""
    cost = 1 - F.normalize(video_steps, dim=-1) @ F.normalize(text_steps, dim=-1).T
    rows, cols = cost.shape
    border = torch.tensor(torch.finfo(torch.float32).max, dtype=torch.float32, device=cost.device)
    previous_row = [torch.zeros((), dtype=torch.float32, device=cost.device)] + [border] * cols
    for i in range(1, rows + 1):
        row = [border]
        for j in range(1, cols + 1):
            neighbours = torch.stack((row[j - 1], previous_row[j - 1], previous_row[j]))
            smooth = (F.softmax(-neighbours / gamma, dim=-1) * neighbours).sum()
            row.append((cost[i - 1, j - 1] + smooth).float())
        previous_row = row
    return previous_row[cols]


@dataclass
class DtwLoss:
    """The DTW terms: ``total`` = ``align`` + ``order``; ``align`` = the mean scaled forward cost,
    ``order`` = order_weight x the mean hinge (the release's second return value)."""

    total: torch.Tensor
    align: torch.Tensor
    order: torch.Tensor


def dtw_alignment_loss(action_tokens: torch.Tensor, verbs: torch.Tensor, num_verbs: torch.Tensor, *,
                       gamma: float = 0.1, scale: float = 0.01, margin: float = 0.0,
                       order_weight: float = 1.0) -> DtwLoss:
    """DTW-Align over a batch: ``action_tokens`` [B, K, D], ``verbs`` [B, M, D] (the first
    ``num_verbs[b]`` valid, in order). Samples without verbs are skipped; none at all gives zeros
    that stay on the graph."""
    forward_costs, hinges = [], []
    for tokens, phrases, count in zip(action_tokens, verbs, num_verbs.tolist()):
        count = min(int(count), phrases.shape[0])
        if count <= 0:
            continue
        phrases = phrases[:count]
        fwd = scale * soft_dtw_prob(tokens, phrases, gamma)
        rev = scale * soft_dtw_prob(tokens.flip(0), phrases, gamma)
        forward_costs.append(fwd)
        hinges.append(torch.clamp_min(fwd - rev + margin, 0.0))
    if not forward_costs:
        zero = action_tokens.sum() * 0.0 + verbs.sum() * 0.0
        return DtwLoss(zero, zero, zero)
    align = torch.stack(forward_costs).mean()
    order = order_weight * torch.stack(hinges).mean()
    return DtwLoss(align + order, align, order)
