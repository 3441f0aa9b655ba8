"""ActionFormer's training targets and losses (the release's ``label_points`` and ``losses``).

Targets, per pyramid point (feature position ``t``, regression range ``[lo, hi]``, stride ``s``):

- a point is inside a ground-truth segment when it lies within the *centre region*
  ``[max(start, c - 1.5 s), min(end, c + 1.5 s)]`` around the segment centre ``c`` (strictly
  inside: both distances > 0), or within the segment when centre sampling is off;
- and when its largest distance to the segment's ends, ``max(t - start, end - t)``, is within
  ``[lo, hi]`` (inclusive), so each level regresses its own scale;
- of the segments that qualify, the shortest wins; every qualifying segment whose length is within
  1e-3 of the shortest adds its class (THUMOS14 has CliffDiving inside Diving with the same
  boundaries), classes clipped to 1, and the regression target is the distances to the first
  shortest one's ends, divided by the stride.

Losses: sigmoid focal loss (alpha 0.25, gamma 2) summed over the valid points and classes, and
the 1-D Distance-IoU loss on positive points, both divided by an exponential moving average of the
number of positives (momentum 0.9, starting at ``init_loss_norm``: 100 for THUMOS14, 2000 by
default), which keeps small batches from swinging the loss scale. Optional label smoothing
``eps`` maps targets to ``t (1 - eps) + eps / (C + 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["sigmoid_focal_loss", "diou_loss_1d", "giou_loss_1d", "point_targets", "batch_targets", "LossNormalizer",
           "actionformer_losses"]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
                       ) -> torch.Tensor:
    """Summed focal loss (RetinaNet) of ``logits`` against soft ``targets`` in [0, 1]."""
    logits, targets = logits.float(), targets.float()
    prob = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_true = prob * targets + (1 - prob) * (1 - targets)
    loss = cross_entropy * ((1 - p_true) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


def _iou_parts(pred: torch.Tensor, target: torch.Tensor, eps: float):
    pred, target = pred.float(), target.float()
    if (pred < 0).any() or (target < 0).any():
        raise ValueError("centre-offset IoU losses need non-negative distances")
    left_p, right_p = pred[:, 0], pred[:, 1]
    left_t, right_t = target[:, 0], target[:, 1]
    intersection = torch.min(left_p, left_t) + torch.min(right_p, right_t)
    union = (left_p + right_p) + (left_t + right_t) - intersection
    return left_p, right_p, left_t, right_t, intersection / union.clamp(min=eps)


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Summed Distance-IoU loss of segments given as distances ``[N, 2]`` from a shared centre point:
    ``1 - IoU + (centre distance / enclosing length)^2``."""
    left_p, right_p, left_t, right_t, iou = _iou_parts(pred, target, eps)
    enclosing = torch.max(left_p, left_t) + torch.max(right_p, right_t)
    centre_gap = 0.5 * (right_p - left_p - right_t + left_t)
    return (1.0 - iou + torch.square(centre_gap / enclosing.clamp(min=eps))).sum()


def giou_loss_1d(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Summed IoU loss (the release's "GIoU", which reduces to IoU for segments sharing a point)."""
    return (1.0 - _iou_parts(pred, target, eps)[-1]).sum()


def point_targets(points: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                  center_sample: bool = True, radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Class targets ``[P, C]`` and stride-normalised distances ``[P, 2]`` for all points ``[P, 4]``
    of one video with ground truth ``[N, 2]`` (feature grid) and labels ``[N]``."""
    count = points.shape[0]
    if segments.shape[0] == 0:
        return segments.new_zeros((count, num_classes)), segments.new_zeros((count, 2))
    position, low, high, stride = (points[:, i:i + 1] for i in range(4))     # each P x 1
    start, end = segments[None, :, 0], segments[None, :, 1]                   # 1 x N
    distances = torch.stack((position - start, end - position), dim=-1)     # P x N x 2
    if center_sample:
        centre = 0.5 * (start + end)
        region_start = torch.maximum(centre - stride * radius, start)
        region_end = torch.minimum(centre + stride * radius, end)
        inside = torch.minimum(position - region_start, region_end - position) > 0
    else:
        inside = distances.min(-1).values > 0
    reach = distances.max(-1).values
    in_range = (reach >= low) & (reach <= high)
    lengths = (end - start).expand(count, -1).clone()
    lengths[~(inside & in_range)] = float("inf")
    shortest, winner = lengths.min(dim=1)
    ties = ((lengths <= shortest[:, None] + 1e-3) & (lengths < float("inf"))).to(distances.dtype)
    classes = (ties @ F.one_hot(labels, num_classes).to(distances.dtype)).clamp(0.0, 1.0)
    offsets = distances[torch.arange(count), winner] / stride
    return classes, offsets


def batch_targets(points: Sequence[torch.Tensor], segments: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                  num_classes: int, *, center_sample: bool = True, radius: float = 1.5
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """`point_targets` of every video over the concatenated pyramid points: ``[B, P, C]``, ``[B, P, 2]``."""
    every = torch.cat(list(points), dim=0)
    pairs = [point_targets(every, s, y, num_classes, center_sample=center_sample, radius=radius)
             for s, y in zip(segments, labels)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


class LossNormalizer:
    """The moving average of positives per batch that divides both losses (updated before use)."""

    def __init__(self, initial: float, momentum: float = 0.9):
        self.value = float(initial)
        self.momentum = momentum

    def update(self, positives: int) -> float:
        self.value = self.momentum * self.value + (1 - self.momentum) * max(positives, 1)
        return self.value


def actionformer_losses(masks: Sequence[torch.Tensor], cls_logits: Sequence[torch.Tensor],
                        offsets: Sequence[torch.Tensor], gt_classes: torch.Tensor, gt_offsets: torch.Tensor,
                        normalizer: LossNormalizer, *, num_classes: int, loss_weight: float = 1.0,
                        label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """``cls_loss``, ``reg_loss`` and ``final_loss = cls + w * reg`` of one batch (``loss_weight``
    <= 0: ``w = cls / max(reg, 0.01)``, detached, as the release balances them)."""
    valid = torch.cat(list(masks), dim=1)                                   # B x P
    positive = (gt_classes.sum(-1) > 0) & valid
    predicted = torch.cat(list(offsets), dim=1)[positive]
    targets = gt_offsets[positive]
    positives = int(positive.sum())
    scale = normalizer.update(positives)
    target = gt_classes[valid] * (1 - label_smoothing) + label_smoothing / (num_classes + 1)
    cls_loss = sigmoid_focal_loss(torch.cat(list(cls_logits), dim=1)[valid], target) / scale
    reg_loss = diou_loss_1d(predicted, targets) / scale if positives else 0 * predicted.sum()
    weight = loss_weight if loss_weight > 0 else cls_loss.detach() / max(reg_loss.item(), 0.01)
    return {"cls_loss": cls_loss, "reg_loss": reg_loss, "final_loss": cls_loss + reg_loss * weight}
