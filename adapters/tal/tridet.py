"""TriDet (Shi et al., CVPR 2023): SGP layers and the Trident head for temporal action localization.

Why a port: the release (dingfengshi/TriDet, ``libs/modeling``) is built on the ActionFormer
codebase, assumes CUDA and a C++ NMS extension, and builds the model from a YAML config. What
TriDet shares with ActionFormer is imported from `instract_eval.adapters.tal.actionformer`
(masked convolutions, channel LayerNorm, drop-path scales, sinusoid positions, the identity / FPN
necks, the head towers, feature-grid to seconds), its targets and losses from
`instract_eval.adapters.tal.losses`, its NMS from `instract_eval.adapters.tal.nms`. It is
checked against the official code on tiny random checkpoints in ``tests/data/official/tridet/``.

The network (``TriDet`` meta-architecture, ``SGP`` backbone) on ``[B, C, T]`` features and their
``[B, 1, T]`` mask:

- Embedding: masked convs + LayerNorm + ReLU, optional absolute positions (as ActionFormer).
- ``arch[1]`` stem and ``arch[2]`` branch *SGP blocks* (Scalable-Granularity Perception). A
  branch block first max-pools (kernel 3, stride 2, padding 1) and subsamples the mask; then
  ``out = LN(x)`` and ``fc(out) * relu(global_fc(mean_t out)) + (convw(out) + convkw(out)) *
  psi(out) + out``, all depthwise convs: ``psi`` / ``convw`` of kernel ``w`` (the level's
  ``sgp_win_size``; 1 in the stem), ``convkw`` of kernel ``round((w + 1) k)`` made odd. The mean
  runs over every step, padding included, and that branch is not masked, so the result depends
  on the padded length (inference pads exactly as the release does). Residual ``x * mask +
  drop_path(out)``, then ``out + drop_path(MLP(GroupNorm16(out)))`` with a GELU MLP. Blocks
  trained with drop path carry per-channel scales that also apply at inference.
- Neck, classification head: ActionFormer's.
- Trident head: a *start* and an *end* head (classification towers of kernel
  ``boundary_kernel_size`` over detached features, one logit per class and step) and a centre
  head giving ``2 (num_bins + 1)`` values per step. The left distance at step ``t`` for class
  ``c`` is the expectation over ``j = 0..num_bins`` of ``num_bins - j`` under ``softmax_j(start[c,
  t - num_bins + j] + centre_left[t, j])``; the right one of ``j`` under ``softmax_j(end[c, t + j] +
  centre_right[t, j])``; boundary logits outside the sequence are 0 (the release's zero padding).
  Distances are in strides of the level, so every class has its own segment per step. The
  release masks the left distribution where the *right* one is NaN (for both sides); that is kept.
- Without the Trident head (``use_trident_head`` false) the centre head regresses 2 distances
  directly (ActionFormer's head).

Training (``losses``): ActionFormer's centre-sampled targets; focal loss whose positive terms are
multiplied by ``IoU ^ iou_weight_power`` of that class's decoded segment with the ground truth
(IoU-weighted classification, gradient through the IoU as in the release), DIoU regression loss
on every positive (point, class) pair; both divided by the moving average of positives.

Inference as ActionFormer's, except that each candidate (point, class) takes its own class's
distances, the pre-NMS padding multiple is ``max(stride * w if w > 1 else stride)``, and segment
voting (class-agnostic NMS only) weights neighbours by score alone (ActionFormer: score x IoU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import require_checkpoint
from ..core.checkpoints import file_sha256, load_strict, read_checkpoint
from ..protocols import LOCALIZER
from ..registry import register_model
from .actionformer import (DEFAULT_REGRESSION_RANGE, AffineDropPath, ChannelLayerNorm, ClassificationHead, Detections,
                           FeaturePyramidNeck, IdentityNeck, InferenceConfig, MaskedConv1D, RegressionHead,
                           sinusoid_positions, to_seconds)
from .adapter import ActionFormerLocalizer, FeatureTiming, _weights_of, read_label_file
from .losses import LossNormalizer, _iou_parts, diou_loss_1d, sigmoid_focal_loss
from .nms import NMSConfig, batched_nms

__all__ = ["TriDetDimensions", "TriDetNet", "TriDetOutputs", "SGPBlock", "dimensions_from_state_dict",
           "sgp_long_kernel", "trident_distances", "tridet_losses", "score_voting", "postprocess", "THUMOS14_TEST", "describe", "load_tridet",
           "TriDetLocalizer", "CARD"]

FAMILY = "tridet"
_ARGS = "--model-args"

# THUMOS14 I3D (configs/thumos_i3d.yaml over libs/core/config.py): the release's test_cfg.
THUMOS14_TEST = InferenceConfig(pre_nms_thresh=0.001, pre_nms_topk=2000, duration_thresh=0.05,
                                nms=NMSConfig(iou_threshold=0.1, min_score=0.001, max_seg_num=2000, method="soft",
                                              sigma=0.5, multiclass=True, voting_thresh=0.7))


def sgp_long_kernel(window: int, k: float) -> int:
    """The kernel of an SGP block's long depthwise branch: ``round((w + 1) k)``, made odd upwards."""
    size = round((window + 1) * k)
    return size + 1 if size % 2 == 0 else size


@dataclass(frozen=True)
class TriDetDimensions:
    """Every size of the network. `dimensions_from_state_dict` reads most from a checkpoint; the
    level-0 window (it only sets the padding), absolute positions and ``max_seq_len`` are given.

    ``sgp_win_size``: one window per pyramid level (level 0's stem blocks use kernel 1 whatever it
    says, as the release builds them). ``long_kernels``: the ``convkw`` kernel of every stem, then
    branch block (`sgp_long_kernel` of the window and ``k`` when built from a config)."""

    input_dim: int
    num_classes: int
    long_kernels: tuple[int, ...]
    embd_dim: int = 512
    fpn_dim: int = 512
    head_dim: int = 512
    sgp_mlp_dim: int = 768
    backbone_arch: tuple[int, int, int] = (2, 2, 5)
    scale_factor: int = 2
    embd_kernel_size: int = 3
    embd_with_ln: bool = True
    fpn_type: str = "identity"
    fpn_with_ln: bool = True
    head_num_layers: int = 3
    head_kernel_size: int = 3
    boundary_kernel_size: int = 3
    head_with_ln: bool = True
    sgp_win_size: tuple[int, ...] = (1,) * 6
    num_bins: int = 16
    use_trident_head: bool = True
    downsample_type: str = "max"
    use_abs_pe: bool = False
    drop_path_scales: bool = True
    max_seq_len: int = 2304
    fpn_start_level: int = 0            # TriDet's necks always start at level 0 (ActionFormer's neck reads it)

    def __post_init__(self) -> None:
        levels = self.backbone_arch[2] + 1
        if len(self.sgp_win_size) != levels:
            raise ValueError(f"sgp_win_size needs {levels} entries (one per level), got {list(self.sgp_win_size)}")
        if len(self.long_kernels) != self.backbone_arch[1] + self.backbone_arch[2]:
            raise ValueError("long_kernels needs one entry per stem and branch block")
        for window in self.sgp_win_size[1:]:
            if window < 1 or window % 2 == 0:
                raise ValueError(f"SGP windows must be odd and positive, got {list(self.sgp_win_size)}")
        if self.embd_dim % 16:
            raise ValueError(f"embd_dim {self.embd_dim} must be a multiple of 16 (the SGP GroupNorm's groups)")
        if self.downsample_type not in ("max", "avg"):
            raise ValueError(f"downsample_type must be max or avg, got {self.downsample_type!r}")
        if self.fpn_type not in ("identity", "fpn"):
            raise ValueError(f"fpn_type must be identity or fpn, got {self.fpn_type!r}")
        if self.fpn_type == "identity" and self.fpn_dim != self.embd_dim:
            raise ValueError("the identity neck needs fpn_dim == embd_dim")
        if self.num_bins < 0 or (self.use_trident_head and self.num_bins == 0):
            raise ValueError(f"the Trident head needs num_bins >= 1, got {self.num_bins}")
        if self.max_seq_len % self.scale_factor ** self.backbone_arch[2]:
            raise ValueError(f"max_seq_len {self.max_seq_len} must be divisible by the largest stride "
                             f"{self.scale_factor ** self.backbone_arch[2]}")

    @property
    def num_levels(self) -> int:
        return self.backbone_arch[2] + 1

    @property
    def strides(self) -> list[int]:
        return [self.scale_factor ** level for level in range(self.num_levels)]

    @property
    def max_div_factor(self) -> int:
        """The release's padding multiple: the largest ``stride * w`` (``stride`` where ``w <= 1``)."""
        return max([1] + [s * w if w > 1 else s for s, w in zip(self.strides, self.sgp_win_size)])

    def padded_length(self, length: int) -> int:
        """Inference padding: ``max_seq_len``, or the next multiple of ``max_div_factor`` beyond it."""
        if length <= self.max_seq_len:
            return self.max_seq_len
        divisor = self.max_div_factor
        return (length + divisor - 1) // divisor * divisor


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    indices = {int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)
               and key[len(prefix):].split(".")[0].isdigit()}
    return max(indices) + 1 if indices else 0


def dimensions_from_state_dict(state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                               level0_window: int | None = None, max_seq_len: int = 2304, use_abs_pe: bool = False,
                               scale_factor: int = 2) -> TriDetDimensions:
    """Sizes of an official (or our) TriDet state dict, keys without the ``module.`` prefix.

    From tensors: input / embedding / MLP / neck / head sizes, layer counts, LayerNorms, the SGP
    kernels of every block (windows of levels 1.., long kernels), the downsampling type, the bins
    and whether the Trident head is there, drop-path scales. ``level0_window`` (only the padding
    uses it) defaults to level 1's window.
    """
    def need(key: str) -> torch.Tensor:
        if key not in state:
            shown = ", ".join(sorted(state)[:3])
            raise InputError(f"is not a TriDet checkpoint: it lacks {key} (it has {shown}, ...)", path=source,
                             field="checkpoint")
        return state[key]

    embed = need("backbone.embd.0.conv.weight")
    classifier = need("cls_head.cls_head.conv.weight")
    offsets = need("reg_head.offset_head.conv.weight")
    arch = (_count(state, "backbone.embd."), _count(state, "backbone.stem."), _count(state, "backbone.branch."))
    if arch[2] == 0:
        raise InputError("has no SGP branch blocks (backbone.branch.*); is it an SGP-backbone TriDet?", path=source,
                         field="checkpoint")
    if any(key.startswith("backbone.stem.0.conv1") or key.startswith("backbone.branch.0.conv1") for key in state):
        raise InputError("has a conv backbone (backbone_type conv): only the SGP backbone is supported", path=source,
                         field="checkpoint")
    blocks = [f"backbone.stem.{i}" for i in range(arch[1])] + [f"backbone.branch.{i}" for i in range(arch[2])]
    windows = [int(need(f"backbone.branch.{i}.psi.weight").shape[2]) for i in range(arch[2])]
    long_kernels = tuple(int(need(f"{block}.convkw.weight").shape[2]) for block in blocks)
    first_block = blocks[0]
    trident = "start_head.cls_head.conv.weight" in state
    bins = int(offsets.shape[0]) // 2 - 1
    fpn_type = "fpn" if any(key.startswith("neck.lateral_convs.") for key in state) else "identity"
    embd_dim = int(embed.shape[0])
    fpn_dim = int(state["neck.lateral_convs.0.conv.weight"].shape[0]) if fpn_type == "fpn" else embd_dim
    first_head = state.get("cls_head.head.0.conv.weight")
    try:
        return TriDetDimensions(
            input_dim=int(embed.shape[1]), num_classes=int(classifier.shape[0]), long_kernels=long_kernels,
            embd_dim=embd_dim, fpn_dim=fpn_dim,
            head_dim=int(first_head.shape[0]) if first_head is not None else fpn_dim,
            sgp_mlp_dim=int(need(f"{first_block}.mlp.0.weight").shape[0]), backbone_arch=arch,
            scale_factor=scale_factor, embd_kernel_size=int(embed.shape[2]),
            embd_with_ln="backbone.embd_norm.0.weight" in state, fpn_type=fpn_type,
            fpn_with_ln="neck.fpn_norms.0.weight" in state, head_num_layers=_count(state, "cls_head.head.") + 1,
            head_kernel_size=int(classifier.shape[2]),
            boundary_kernel_size=int(state["start_head.cls_head.conv.weight"].shape[2]) if trident
            else int(classifier.shape[2]),
            head_with_ln="cls_head.norm.0.weight" in state,
            sgp_win_size=(level0_window if level0_window is not None else windows[0], *windows),
            num_bins=bins if trident else 0, use_trident_head=trident,
            downsample_type="avg" if "backbone.branch.0.downsample.1.weight" in state else "max",
            use_abs_pe=use_abs_pe, drop_path_scales="backbone.branch.0.drop_path_out.scale" in state,
            max_seq_len=max_seq_len)
    except ValueError as error:
        raise InputError(str(error), path=source, field="checkpoint") from None


# ------------------------------------------------------------------------------------------------
# The network (module and parameter names follow the release, so its state dicts load as they are)


class SGPBlock(nn.Module):
    """One Scalable-Granularity Perception block (see the module docstring)."""

    def __init__(self, channels: int, window: int, long_kernel: int, stride: int, hidden: int, *,
                 downsample_type: str = "max", drop_path_scales: bool = False, path_pdrop: float = 0.0):
        super().__init__()
        self.stride = stride
        self.ln = ChannelLayerNorm(channels)
        self.gn = nn.GroupNorm(16, channels)
        self.psi = nn.Conv1d(channels, channels, window, padding=window // 2, groups=channels)
        self.fc = nn.Conv1d(channels, channels, 1, groups=channels)
        self.convw = nn.Conv1d(channels, channels, window, padding=window // 2, groups=channels)
        self.convkw = nn.Conv1d(channels, channels, long_kernel, padding=long_kernel // 2, groups=channels)
        self.global_fc = nn.Conv1d(channels, channels, 1, groups=channels)
        if stride == 1:
            self.downsample: nn.Module = nn.Identity()
        elif downsample_type == "max":
            self.downsample = nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2)
        else:
            self.downsample = nn.Sequential(nn.AvgPool1d(stride, stride=stride), nn.Conv1d(channels, channels, 1))
        self.mlp = nn.Sequential(nn.Conv1d(channels, hidden, 1), nn.GELU(), nn.Conv1d(hidden, channels, 1))
        if drop_path_scales:
            self.drop_path_out: nn.Module = AffineDropPath(channels, path_pdrop)
            self.drop_path_mlp: nn.Module = AffineDropPath(channels, path_pdrop)
        else:
            self.drop_path_out = nn.Identity()
            self.drop_path_mlp = nn.Identity()
        for conv in (self.psi, self.fc, self.convw, self.convkw, self.global_fc):
            # the release's init_conv_vars: THUMOS14 trains from N(0, 0); biases start at 0
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = x.shape[-1]
        x = self.downsample(x)
        out_mask = mask[:, :, ::self.stride][:, :, :length // self.stride] if self.stride > 1 else mask
        keep = out_mask.to(x.dtype)
        out = self.ln(x)
        phi = torch.relu(self.global_fc(out.mean(dim=-1, keepdim=True)))
        out = self.fc(out) * phi + (self.convw(out) + self.convkw(out)) * self.psi(out) + out
        out = x * keep + self.drop_path_out(out)
        out = out + self.drop_path_mlp(self.mlp(self.gn(out)))
        return out, out_mask


class SGPBackbone(nn.Module):
    """Embedding convs, stem SGP blocks at full rate, branch SGP blocks halving it; one output per level."""

    def __init__(self, dims: TriDetDimensions, *, path_pdrop: float = 0.0):
        super().__init__()
        convs, stem, branch = dims.backbone_arch
        self.embd = nn.ModuleList(MaskedConv1D(dims.input_dim if i == 0 else dims.embd_dim, dims.embd_dim,
                                               dims.embd_kernel_size, bias=not dims.embd_with_ln)
                                  for i in range(convs))
        self.embd_norm = nn.ModuleList(ChannelLayerNorm(dims.embd_dim) if dims.embd_with_ln else nn.Identity()
                                       for _ in range(convs))
        self.use_abs_pe = dims.use_abs_pe
        self.max_len = dims.max_seq_len
        if dims.use_abs_pe:
            self.register_buffer("pos_embd", sinusoid_positions(dims.max_seq_len, dims.embd_dim)
                                 / dims.embd_dim ** 0.5, persistent=False)
        self.stem = nn.ModuleList(SGPBlock(dims.embd_dim, 1, dims.long_kernels[i], 1, dims.sgp_mlp_dim)
                                  for i in range(stem))   # the release gives stem blocks no drop path
        self.branch = nn.ModuleList(
            SGPBlock(dims.embd_dim, dims.sgp_win_size[1 + i], dims.long_kernels[stem + i], dims.scale_factor,
                     dims.sgp_mlp_dim, downsample_type=dims.downsample_type, drop_path_scales=dims.drop_path_scales,
                     path_pdrop=path_pdrop) for i in range(branch))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        length = x.shape[-1]
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        if self.use_abs_pe:
            if self.training and length > self.max_len:
                raise ValueError(f"a training sequence of {length} steps is longer than max_seq_len {self.max_len}")
            table = self.pos_embd
            if not self.training and length >= self.max_len:
                table = F.interpolate(table, length, mode="linear", align_corners=False)
            x = x + table[:, :, :length] * mask.to(x.dtype)
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


class BoundaryHead(ClassificationHead):
    """A start or end head: a classification tower on *detached* features (the release's
    ``detach_feat``: boundary heads do not train the backbone)."""

    def forward(self, feats, masks) -> list[torch.Tensor]:
        return super().forward([x.detach() for x in feats], masks)


class CentreHead(RegressionHead):
    """The centre-offset head: ``2 (num_bins + 1)`` outputs per step (2 without the Trident head),
    times a learned per-level scale, through ReLU."""

    def __init__(self, dims: TriDetDimensions):
        super().__init__(dims)
        self.offset_head = MaskedConv1D(dims.head_dim, 2 * (dims.num_bins + 1), dims.head_kernel_size)


def _neighbours(logits: torch.Tensor, bins: int, side: str) -> torch.Tensor:
    """``[B, C, T]`` boundary logits to ``[B, T, C, bins + 1]`` windows: ``t - bins .. t`` (start)
    or ``t .. t + bins`` (end), zero outside the sequence (the release's padded ``as_strided``)."""
    pad = (bins, 0) if side == "start" else (0, bins)
    return F.pad(logits, pad).unfold(-1, bins + 1, 1).permute(0, 2, 1, 3)


def trident_distances(centre: torch.Tensor, start: torch.Tensor, end: torch.Tensor, bins: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level's ``[B, T, 2 (bins + 1)]`` centre outputs and ``[B, C, T]`` start / end logits to
    the ``[B, T, C, bins + 1]`` left and right boundary distributions and the ``[B, T, C, 2]``
    expected distances (in strides)."""
    batch, steps = centre.shape[:2]
    centre = centre.reshape(batch, steps, 1, 2, bins + 1)
    left = torch.softmax(_neighbours(start, bins, "start") + centre[..., 0, :], dim=-1)
    right = torch.softmax(_neighbours(end, bins, "end") + centre[..., 1, :], dim=-1)
    undefined = torch.isnan(right)      # the release tests the right distribution for both sides
    left, right = left.masked_fill(undefined, 0), right.masked_fill(undefined, 0)
    left_bins = torch.arange(bins, -1, -1, dtype=torch.float32, device=centre.device).unsqueeze(-1)
    right_bins = torch.arange(bins + 1, dtype=torch.float32, device=centre.device).unsqueeze(-1)
    return left, right, torch.cat((torch.matmul(left, left_bins), torch.matmul(right, right_bins)), dim=-1)


@dataclass
class TriDetOutputs:
    """Raw outputs of one forward, per level: ``[B, T_l, C]`` class logits, ``[B, T_l, 2 (bins + 1)]``
    centre outputs, ``[B, T_l, C]`` start / end logits, ``[B, T_l, C, bins + 1]`` left / right
    boundary distributions, ``[B, T_l, C, 2]`` distances per class (``[B, T_l, 1, 2]`` without the
    Trident head), ``[B, T_l]`` masks and ``[T_l, 4]`` points. Without the Trident head the start,
    end and distribution lists are empty."""

    cls_logits: list[torch.Tensor]
    centre: list[torch.Tensor]
    start_logits: list[torch.Tensor]
    end_logits: list[torch.Tensor]
    left: list[torch.Tensor]
    right: list[torch.Tensor]
    distances: list[torch.Tensor]
    masks: list[torch.Tensor]
    points: list[torch.Tensor]


class TriDetNet(nn.Module):
    """The TriDet network (SGP backbone, neck, classification + Trident heads); release parameter names."""

    def __init__(self, dims: TriDetDimensions, *, regression_range: Sequence[Sequence[float]] | None = None,
                 path_pdrop: float = 0.0, prior_prob: float = 0.01, empty_classes: Sequence[int] = ()):
        super().__init__()
        self.dims = dims
        self.strides = dims.strides
        if regression_range is None:
            levels = len(self.strides)
            regression_range = DEFAULT_REGRESSION_RANGE[:levels - 1] + ((DEFAULT_REGRESSION_RANGE[levels - 1][0],
                                                                        10000),)
        if len(regression_range) != len(self.strides):
            raise ValueError(f"regression_range needs {len(self.strides)} rows, got {len(regression_range)}")
        self.regression_range = tuple(tuple(float(v) for v in row) for row in regression_range)
        self.backbone = SGPBackbone(dims, path_pdrop=path_pdrop)
        self.neck = FeaturePyramidNeck(dims) if dims.fpn_type == "fpn" else IdentityNeck(dims)
        self.cls_head = ClassificationHead(dims, prior_prob, empty_classes)
        if dims.use_trident_head:
            boundary = dataclasses.replace(dims, head_kernel_size=dims.boundary_kernel_size)
            self.start_head = BoundaryHead(boundary, prior_prob, empty_classes)
            self.end_head = BoundaryHead(boundary, prior_prob, empty_classes)
        self.reg_head = CentreHead(dims)

    def points(self, lengths: Sequence[int], device: torch.device | None = None) -> list[torch.Tensor]:
        """``[T_l, 4]`` per level: feature index ``i * stride``, the level's regression range, the stride."""
        rows = []
        for length, stride, (low, high) in zip(lengths, self.strides, self.regression_range):
            position = torch.arange(length, dtype=torch.float32, device=device)[:, None] * stride
            extra = torch.tensor([low, high, float(stride)], dtype=torch.float32, device=device).expand(length, 3)
            rows.append(torch.cat((position, extra), dim=1))
        return rows

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> TriDetOutputs:
        """``[B, C, T]`` features (padded) and ``[B, 1, T]`` bool mask to the raw outputs."""
        levels, masks = self.backbone(feats, mask)
        levels, masks = self.neck(levels, masks)
        logits = [x.permute(0, 2, 1) for x in self.cls_head(levels, masks)]
        centre = [x.permute(0, 2, 1) for x in self.reg_head(levels, masks)]
        starts, ends, lefts, rights, distances = [], [], [], [], []
        if self.dims.use_trident_head:
            for start, end, offsets in zip(self.start_head(levels, masks), self.end_head(levels, masks), centre):
                left, right, distance = trident_distances(offsets, start, end, self.dims.num_bins)
                starts.append(start.permute(0, 2, 1))
                ends.append(end.permute(0, 2, 1))
                lefts.append(left)
                rights.append(right)
                distances.append(distance)
        else:
            distances = [offsets.unsqueeze(2) for offsets in centre]
        return TriDetOutputs(logits, centre, starts, ends, lefts, rights, distances, [m.squeeze(1) for m in masks],
                             self.points([x.shape[-1] for x in levels], feats.device))

    def pad_for_inference(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``[T, C]`` sequence to the padded ``[1, C, T']`` input and its ``[1, 1, T']`` mask."""
        length = feats.shape[0]
        target = self.dims.padded_length(length)
        x = F.pad(feats.T.to(torch.float32), (0, target - length)).unsqueeze(0)
        mask = (torch.arange(target, device=feats.device) < length)[None, None, :]
        return x, mask

    @torch.no_grad()
    def candidates(self, outputs: TriDetOutputs, index: int, config: InferenceConfig
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Video ``index``'s pre-NMS candidates on the feature grid: segments, scores, class ids.
        Each (point, class) above the threshold takes that class's distances."""
        classes = self.dims.num_classes
        segs_all, scores_all, labels_all = [], [], []
        for logits, distances, points, mask in zip(outputs.cls_logits, outputs.distances, outputs.points,
                                                   outputs.masks):
            prob = (logits[index].sigmoid() * mask[index].unsqueeze(-1)).flatten()
            chosen = torch.nonzero(prob > config.pre_nms_thresh).flatten()
            prob = prob[chosen]
            order = torch.sort(prob, descending=True).indices[:min(config.pre_nms_topk, chosen.numel())]
            prob, chosen = prob[order], chosen[order]
            point_index = torch.div(chosen, classes, rounding_mode="floor")
            labels = torch.fmod(chosen, classes)
            per_class = distances[index]
            distance = per_class[point_index, labels if per_class.shape[1] > 1 else 0]
            point = points[point_index]
            left = point[:, 0] - distance[:, 0] * point[:, 3]
            right = point[:, 0] + distance[:, 1] * point[:, 3]
            long_enough = (right - left) > config.duration_thresh
            segs_all.append(torch.stack((left, right), -1)[long_enough])
            scores_all.append(prob[long_enough])
            labels_all.append(labels[long_enough])
        return torch.cat(segs_all), torch.cat(scores_all), torch.cat(labels_all)

    @torch.no_grad()
    def detect(self, feats: torch.Tensor, *, fps: float, feat_stride: float, num_frames: float,
               duration: float | None, config: InferenceConfig, offset_frames: float = 0.0) -> Detections:
        """One ``[T, C]`` sequence to detections in seconds (the release's inference + post-processing)."""
        x, mask = self.pad_for_inference(feats)
        outputs = self(x, mask)
        segs, scores, labels = postprocess(*self.candidates(outputs, 0, config), config.nms)
        return Detections(to_seconds(segs, fps=fps, feat_stride=feat_stride, num_frames=num_frames,
                                     duration=duration, offset_frames=offset_frames), scores, labels)


def score_voting(picked: torch.Tensor, segs: torch.Tensor, scores: torch.Tensor, iou_threshold: float
                 ) -> torch.Tensor:
    """TriDet's segment voting: each pick replaced by the mean of the pre-NMS segments that overlap
    it by at least ``iou_threshold``, weighted by their scores (ActionFormer also weights by IoU)."""
    left = torch.maximum(picked[:, None, 0], segs[None, :, 0])
    right = torch.minimum(picked[:, None, 1], segs[None, :, 1])
    inter = (right - left).clamp(min=0)
    iou = inter / ((picked[:, None, 1] - picked[:, None, 0]) + (segs[None, :, 1] - segs[None, :, 0]) - inter)
    weights = (iou >= iou_threshold).to(scores.dtype) * scores[None, :]
    return (weights / weights.sum(dim=1, keepdim=True)) @ segs


def postprocess(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, config: NMSConfig
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The release's ``batched_nms``: the shared NMS, with TriDet's score-only voting in
    class-agnostic mode. Voting moves segments but not scores, so it can follow the final sort."""
    voting = config.voting_thresh > 0 and not config.multiclass and config.method != "none"
    kept_segs, kept_scores, kept_labels = batched_nms(
        segs, scores, labels, dataclasses.replace(config, voting_thresh=0.0) if voting else config)
    if voting and kept_segs.shape[0]:
        kept_segs = score_voting(kept_segs, segs.detach().to("cpu", torch.float32),
                                 scores.detach().to("cpu", torch.float32), config.voting_thresh)
    return kept_segs, kept_scores, kept_labels


# ------------------------------------------------------------------------------------------------
# Training losses


def _per_element(function, *tensors: torch.Tensor) -> torch.Tensor:
    """The summed loss ``function`` of `instract_eval.adapters.tal.losses` evaluated per row
    (``torch.func.vmap`` over the first dimension), for losses TriDet weights term by term."""
    return torch.func.vmap(function)(*tensors)


def tridet_losses(outputs: TriDetOutputs, gt_classes: torch.Tensor, gt_offsets: torch.Tensor,
                  normalizer: LossNormalizer, *, iou_weight_power: float, loss_weight: float = 1.0,
                  label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """``cls_loss``, ``reg_loss``, ``final_loss`` of one batch (the release's ``TriDet.losses``) from
    the raw outputs and ``[B, P, C]`` / ``[B, P, 2]`` targets over the concatenated points."""
    num_classes = gt_classes.shape[-1]
    valid = torch.cat(outputs.masks, dim=1)
    positive = (gt_classes.sum(-1) > 0) & valid
    decoded = torch.cat(outputs.distances, dim=1)[positive]                       # [Pos, C or 1, 2]
    trident = bool(outputs.start_logits)
    if trident:
        pairs = gt_classes[positive].bool()                                       # every (point, class) pair
        predicted = decoded[pairs]
        targets = gt_offsets[positive][torch.where(pairs)[0]]
    else:
        predicted, targets = decoded[:, 0], gt_offsets[positive]
    positives = int(positive.sum())
    scale = normalizer.update(positives)
    floor = label_smoothing / (num_classes + 1)
    target = gt_classes[valid] * (1 - label_smoothing) + floor
    logits = torch.cat(outputs.cls_logits, dim=1)[valid]
    terms = _per_element(sigmoid_focal_loss, logits.flatten(), target.flatten()).reshape(logits.shape)
    if trident:
        iou = _iou_parts(predicted, targets, 1e-8)[-1]
        rated = target > floor
        terms = terms.masked_scatter(rated, terms[rated] * iou ** iou_weight_power)
    cls_loss = terms.sum() / scale
    reg_loss = diou_loss_1d(predicted, targets) / scale if positives else 0 * predicted.sum()
    weight = loss_weight if loss_weight > 0 else cls_loss.detach() / max(reg_loss.item(), 0.01)
    return {"cls_loss": cls_loss, "reg_loss": reg_loss, "final_loss": cls_loss + reg_loss * weight}


def describe(dims: TriDetDimensions) -> str:
    """A short settings string (part of the weights fingerprint)."""
    return (f"win={','.join(map(str, dims.sgp_win_size))};bins={dims.num_bins};max_len={dims.max_seq_len};"
            f"abs_pe={int(dims.use_abs_pe)}")


# ------------------------------------------------------------------------------------------------
# Loading, the localizer, the card and the factory

def load_tridet(path: str | os.PathLike, *, weights: str = "ema", level0_window: int | None = None,
                max_seq_len: int | None = None, use_abs_pe: bool | None = None,
                regression_range: Sequence[Sequence[float]] | None = None) -> tuple[TriDetNet, dict[str, Any]]:
    """The network of a TriDet checkpoint (eval mode) and the file's payload.

    A release checkpoint (``epoch_039.pth.tar``: ``state_dict``, ``state_dict_ema``, ... with
    ``module.`` keys) is evaluated with ``state_dict_ema`` as the release's ``eval.py`` does
    (``weights=raw``: ``state_dict``). Settings no tensor records come from the arguments, else
    from the ``config`` a file of our recipe carries, else from THUMOS14's config
    (``max_seq_len`` 2304, no absolute positions, level-0 window as level 1's).
    """
    if weights not in ("ema", "raw"):
        raise InputError(f"weights must be ema or raw, got {weights!r}", field=_ARGS)
    checkpoint = read_checkpoint(path, family=FAMILY)
    state = _weights_of(checkpoint, weights)
    payload = checkpoint.payload.get("object") if isinstance(checkpoint.payload.get("object"), Mapping) else {}
    saved = payload.get("config") if isinstance(payload.get("config"), Mapping) else {}
    dims = dimensions_from_state_dict(
        state, path, level0_window=level0_window if level0_window is not None else saved.get("level0_window"),
        max_seq_len=max_seq_len if max_seq_len is not None else saved.get("max_seq_len", 2304),
        use_abs_pe=use_abs_pe if use_abs_pe is not None else bool(saved.get("use_abs_pe", False)))
    try:
        net = TriDetNet(dims, regression_range=regression_range or saved.get("regression_range"))
    except ValueError as error:
        raise InputError(str(error), path=path, field="checkpoint") from None
    load_strict(net, state, path, family=FAMILY)
    net.eval()
    return net, dict(payload)


class TriDetLocalizer(ActionFormerLocalizer):
    """``localize(feature_file, classes, descriptions)``: TriDet detections as `Segment` s (the
    ActionFormer localizer's feature reading, timing and class filtering around `TriDetNet.detect`)."""

    name = FAMILY

    def weights_fingerprint(self) -> str:
        """The checkpoint's SHA-256 with every setting that changes detections."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.checkpoint) if self.checkpoint is not None else "no-checkpoint"
        t = self.timing
        labels = hashlib.sha256("\0".join(self.labels).encode()).hexdigest()[:16]
        return (f"{self._sha256};{describe(self.dims)};{self.test!r};timing={t.fps},{t.stride},{t.window},{t.offset};"
                f"labels={labels}")


_RELEASE = "https://github.com/dingfengshi/TriDet"
CARD = ModelCard(
    family=FAMILY,
    description="TriDet (CVPR 2023): SGP backbone + Trident head (relative boundary distributions) TAL head on "
                "precomputed features",
    capabilities=(LOCALIZER,),
    tags=(
        WeightTag(name="thumos14-i3d", source="user",
                  where="Google Drive (browser download), the release README's THUMOS14 I3D checkpoint "
                        f"({_RELEASE}#pretrained-models); pass its epoch_039.pth.tar as checkpoint=PATH with labels= "
                        "the ActionFormer release's thumos14.json (label_id per annotation), on the I3D features of "
                        "the ActionFormer THUMOS14 package",
                  args={"max_seq_len": 2304, "fps": 30.0, "feat_stride": 4, "num_frames": 16},
                  notes="Two-stream I3D features, 2048-d, 16-frame clips every 4 frames at ~30 fps; the paper reports "
                        "69.3 average mAP (THUMOS14 test, tIoU 0.3:0.7)."),
        WeightTag(name="thumos14-videomaev2-g", source="user",
                  where="no head checkpoint is released: train one with `instract-eval train tridet` on the VideoMAE "
                        "V2-g THUMOS14 features (OpenGVLab/VideoMAEv2 docs/TAD.md: "
                        "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/internvideo/features/th14_mae_g_16_4.tar.gz)"
                        " with model.input_dim 1408, and pass the weights.pt it writes as checkpoint=PATH",
                  args={"max_seq_len": 2304, "fps": 30.0, "feat_stride": 4, "num_frames": 16},
                  notes="VideoMAE V2-g features, 1408-d, 16 frames every 4; VideoMAE V2 reports 70.1 mAP with TriDet."),
    ),
    tokenizer="none (vision-only head; descriptions are ignored)",
    code_licence="MIT (dingfengshi/TriDet)",
    weights_licence="as the release (MIT code; THUMOS14 model trained on THUMOS14 validation)",
    paper="Shi, Zhong, Cao, Zhang, Ma, Li, Tao. TriDet: Temporal Action Detection with Relative Boundary "
          "Modeling. CVPR 2023. arXiv:2303.07347",
    citation="shi2023tridet",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the release's checkpoints are browser downloads (Google Drive); none is on a hub",
    checkpoint_formats=("release .pth.tar ({'state_dict', 'state_dict_ema', ...}, keys prefixed 'module.')",
                        "our training recipe's weights.pt (same entries, plus 'labels' and 'config')"),
    code_version="1",
)


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (value == 0 and name != "num_frames"):
        raise InputError(f"{FAMILY}: {name} must be a positive number, got {value!r}", field=_ARGS)
    return float(value)


@register_model(FAMILY, card=CARD)
def tridet(checkpoint: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
           weights: str = "ema", fps: float | None = None, feat_stride: float | None = None,
           num_frames: float | None = None, level0_window: int | None = None, max_seq_len: int | None = None,
           use_abs_pe: bool | None = None, nms_method: str | None = None, iou_threshold: float | None = None,
           min_score: float | None = None, max_seg_num: int | None = None, nms_sigma: float | None = None,
           voting_thresh: float | None = None, multiclass_nms: bool | None = None, pre_nms_topk: int | None = None,
           pre_nms_thresh: float | None = None, duration_thresh: float | None = None) -> TriDetLocalizer:
    """TriDet from a release checkpoint or our recipe's weights, on feature files.

    ``labels``: the class names (see `read_label_file`); a file our recipe wrote carries them.
    ``fps`` / ``feat_stride`` / ``num_frames``: feature timing when the feature directory has no
    ``features.json`` (default: what our recipe's file records, else THUMOS14's 30 / 4 / 16).
    ``level0_window``, ``max_seq_len``, ``use_abs_pe``: what the checkpoint does not record. The
    NMS and pre-NMS settings default to TriDet's THUMOS14 ``test_cfg`` (Soft-NMS sigma 0.5, min
    score 0.001, 2000 segments, 2000 candidates per level, multi-class).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    net, payload = load_tridet(path, weights=weights, level0_window=level0_window, max_seq_len=max_seq_len,
                               use_abs_pe=use_abs_pe)
    saved = payload.get("config") if isinstance(payload.get("config"), Mapping) else {}
    timing = {name: _positive(name, value if value is not None else saved.get(name, default))
              for name, value, default in (("fps", fps, 30.0), ("feat_stride", feat_stride, 4.0),
                                           ("num_frames", num_frames, 16.0))}
    if labels is not None:
        names = read_label_file(labels)
    elif isinstance(payload.get("labels"), list):
        names = [str(name) for name in payload["labels"]]
    else:
        raise InputError(f"{FAMILY}: this checkpoint has no class names; pass labels=FILE (an annotation JSON with "
                         "label_id, a JSON list, or one name per line)", field=_ARGS)
    base = THUMOS14_TEST
    nms_given = {"method": nms_method, "iou_threshold": iou_threshold, "min_score": min_score,
                 "max_seg_num": max_seg_num, "sigma": nms_sigma, "voting_thresh": voting_thresh,
                 "multiclass": multiclass_nms}
    pre_given = {"pre_nms_topk": pre_nms_topk, "pre_nms_thresh": pre_nms_thresh, "duration_thresh": duration_thresh}
    try:
        nms = dataclasses.replace(base.nms, **{k: v for k, v in nms_given.items() if v is not None})
        test = dataclasses.replace(base, nms=nms, **{k: v for k, v in pre_given.items() if v is not None})
    except (TypeError, ValueError) as error:
        raise InputError(f"{FAMILY}: {error}", field=_ARGS) from None
    return TriDetLocalizer(net, names, timing=FeatureTiming(fps=timing["fps"], stride=timing["feat_stride"],
                                                            window=timing["num_frames"], offset=0.0, duration=None),
                           test=test, checkpoint=path)
