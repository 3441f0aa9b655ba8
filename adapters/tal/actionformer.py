"""ActionFormer (Zhang, Wu, Li, ECCV 2022): a single-stage temporal action localization head.

Why a port: the release (happyharrycn/actionformer_release, ``libs/modeling``) builds the model
from a YAML config, assumes CUDA and ``nn.DataParallel``, and needs a C++ extension for NMS. The
network is written once here with every size read from the checkpoint, and the post-processing
uses the torch NMS of `instract_eval.adapters.tal.nms`. It is checked against the official code
on tiny random checkpoints (``tests/data/official/actionformer/``): raw outputs per pyramid level,
post-processed segments and the training losses.

The network (``LocPointTransformer`` with the ``convTransformer`` backbone) on a ``[B, C, T]``
feature sequence and its ``[B, 1, T]`` validity mask:

- Embedding: ``arch[0]`` masked 1-D convolutions (kernel 3, no bias when followed by LayerNorm),
  each followed by a channel LayerNorm and ReLU. Every masked convolution multiplies its output by
  the mask, so padded steps stay zero; a strided one keeps every ``stride``-th mask entry.
- Optional absolute sinusoidal positions scaled by ``1 / sqrt(C)`` (ActivityNet / Ego4D configs),
  linearly resized when the sequence is at least ``max_seq_len`` long (inference only).
- ``arch[1]`` stem and ``arch[2]`` branch transformer blocks (pre-LayerNorm). Attention is
  *conv attention*: depthwise convolutions (kernel 3; stride 2 in the branch, which halves the
  sequence) with a LayerNorm each make query, key and value, then 1x1 projections. With a window
  ``w`` > 1 each query sees the keys ``t - w//2 .. t + w//2`` (local attention, optional learned
  relative bias per head and offset); else all valid keys. The skip path of a strided block is a
  max-pool (kernel 3, stride 2, padding 1). Blocks trained with drop path carry a per-channel
  scale (init 1e-4) on both residual branches that also applies at inference.
- Neck: ``identity`` (a LayerNorm per level) or ``fpn`` (1x1 laterals, top-down nearest
  upsampling, depthwise 3-tap conv, LayerNorm). Six levels of strides 1, 2, ..., 32 by default.
- Heads shared over levels: ``head_num_layers - 1`` masked convs (+ LayerNorm) + ReLU, then a
  classifier conv to ``num_classes`` logits and an offset conv to 2 distances, which are
  multiplied by a learned per-level scalar and passed through ReLU.
- Points: level ``l`` position ``i`` sits at feature index ``i * stride_l``; a prediction is the
  segment ``[t - d0 * stride_l, t + d1 * stride_l]`` on the feature grid.

Inference (``inference_single_video`` + ``postprocessing`` of the release), per level: sigmoid
probabilities of valid points only, those above ``pre_nms_thresh``, the ``pre_nms_topk`` best,
segments longer than ``duration_thresh`` feature steps; then NMS over all levels, and seconds
``(x * feat_stride + 0.5 * num_frames) / fps`` clipped to ``[0, duration]``. A sequence shorter
than ``max_seq_len`` is zero-padded to it, a longer one to the next multiple of the largest
stride x window the pyramid needs (the release's ``max_div_factor``).

The release's point generator buffers ``max_seq_len * max_buffer_len_factor`` points and asserts
on longer inputs; here points are made for whatever length arrives (the same values where the
release runs at all).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError

from .nms import NMSConfig, batched_nms

__all__ = ["ActionFormerDimensions", "ActionFormerNet", "ActionFormerOutputs", "Detections", "InferenceConfig",
           "dimensions_from_state_dict", "pyramid_strides", "padded_length"]

FAMILY = "actionformer"
DEFAULT_REGRESSION_RANGE = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))


# ------------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class ActionFormerDimensions:
    """Every size of the network. Most are read from a checkpoint (`dimensions_from_state_dict`);
    the attention window, head count, ``max_seq_len`` and absolute positions are not stored in one
    and come from the config the checkpoint was trained with (THUMOS14 defaults)."""

    input_dim: int
    num_classes: int
    embd_dim: int = 512
    fpn_dim: int = 512
    head_dim: int = 512
    n_head: int = 4
    backbone_arch: tuple[int, int, int] = (2, 2, 5)
    scale_factor: int = 2
    embd_kernel_size: int = 3
    embd_with_ln: bool = True
    fpn_type: str = "identity"
    fpn_with_ln: bool = True
    fpn_start_level: int = 0
    head_num_layers: int = 3
    head_kernel_size: int = 3
    head_with_ln: bool = True
    mha_win_size: tuple[int, ...] = (19,) * 6
    use_abs_pe: bool = False
    use_rel_pe: bool = False
    drop_path_scales: bool = True
    max_seq_len: int = 2304

    def __post_init__(self) -> None:
        levels = self.backbone_arch[2] + 1
        if len(self.mha_win_size) != levels:
            raise ValueError(f"mha_win_size needs {levels} entries (one per backbone level), got {self.mha_win_size}")
        if self.fpn_type not in ("identity", "fpn"):
            raise ValueError(f"fpn_type must be identity or fpn, got {self.fpn_type!r}")
        if self.embd_dim % self.n_head:
            raise ValueError(f"embd_dim {self.embd_dim} is not divisible by n_head {self.n_head}")
        for window in self.mha_win_size:
            if window > 1 and window % 2 == 0:
                raise ValueError(f"attention windows must be odd, got {window}")
        for stride, window in zip(pyramid_strides(self), self.mha_win_size):   # paired as the release pairs them
            if self.max_seq_len % _level_divisor(stride, window):
                raise ValueError(f"max_seq_len {self.max_seq_len} must be divisible by every stride x window "
                                 f"({_level_divisor(stride, window)} at stride {stride})")
        if self.fpn_type == "identity" and self.fpn_dim != self.embd_dim:
            raise ValueError("the identity neck needs fpn_dim == embd_dim")

    @property
    def num_levels(self) -> int:
        return self.backbone_arch[2] + 1 - self.fpn_start_level


def pyramid_strides(dims: ActionFormerDimensions, *, all_levels: bool = False) -> list[int]:
    """Feature strides of the pyramid levels (the heads' levels, or every backbone level)."""
    first = 0 if all_levels else dims.fpn_start_level
    return [dims.scale_factor ** level for level in range(first, dims.backbone_arch[2] + 1)]


def _level_divisor(stride: int, window: int) -> int:
    return stride * (window // 2) * 2 if window > 1 else stride


def padded_length(dims: ActionFormerDimensions, length: int) -> int:
    """The release's inference padding: ``max_seq_len``, or the next multiple of its ``max_div_factor``."""
    if length <= dims.max_seq_len:
        return dims.max_seq_len
    divisor = max([1] + [_level_divisor(s, w) for s, w in zip(pyramid_strides(dims), dims.mha_win_size)])
    return (length + divisor - 1) // divisor * divisor


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    indices = {int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)
               and key[len(prefix):].split(".")[0].isdigit()}
    return max(indices) + 1 if indices else 0


def dimensions_from_state_dict(state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                               n_head: int | None = None, mha_win_size: int | Sequence[int] = 19,
                               max_seq_len: int = 2304, use_abs_pe: bool = False,
                               scale_factor: int = 2) -> ActionFormerDimensions:
    """Sizes of an official (or our) ActionFormer state dict, keys without the ``module.`` prefix.

    Read from tensors: input and embedding sizes, the embedding kernel, the numbers of embedding,
    stem and branch layers, LayerNorms, the neck type, the head sizes and depth, the classes,
    relative positions (and with them the head count and window), drop-path scales. Given: the
    window (when there are no relative positions), the head count (default 4, or read from the
    relative positions), ``max_seq_len``, absolute positions and the scale factor.
    """
    def need(key: str) -> torch.Tensor:
        if key not in state:
            shown = ", ".join(sorted(state)[:3])
            raise InputError(f"is not an ActionFormer checkpoint: it lacks {key} (it has {shown}, ...)",
                             path=source, field="checkpoint")
        return state[key]

    if any(key.startswith("backbone.proj.") for key in state):
        raise InputError("has per-feature input projections (backbone.proj.*, a list input_dim): not supported",
                         path=source, field="checkpoint")
    embed = need("backbone.embd.0.conv.weight")
    classifier = need("cls_head.cls_head.conv.weight")
    first_head = state.get("cls_head.head.0.conv.weight")
    arch = (_count(state, "backbone.embd."), _count(state, "backbone.stem."), _count(state, "backbone.branch."))
    if arch[0] == 0 or arch[2] == 0:
        raise InputError(f"has {arch[0]} embedding and {arch[2]} branch layers; ActionFormer needs both",
                         path=source, field="checkpoint")
    levels = _count(state, "reg_head.scale.")
    fpn_type = "fpn" if any(key.startswith("neck.lateral_convs.") for key in state) else "identity"
    rel_key = next((key for key in sorted(state) if key.endswith("attn.rel_pe")), None)
    windows = _windows(mha_win_size, arch[2] + 1)
    if rel_key is not None:
        heads_found = int(state[rel_key].shape[2])
        if n_head is not None and n_head != heads_found:
            raise InputError(f"n_head={n_head} was given but the relative positions have {heads_found} heads",
                             path=source, field="checkpoint")
        n_head = heads_found
        # Every local-attention block has relative positions, so a block without them is global.
        blocks = ["backbone.stem.0"] + [f"backbone.branch.{i}" for i in range(arch[2])]
        windows = tuple(_window_of(state, block, windows[i] if i == 0 and arch[1] == 0 else -1)
                        for i, block in enumerate(blocks))
    embd_dim = int(embed.shape[0])
    fpn_dim = int(state["neck.lateral_convs.0.conv.weight"].shape[0]) if fpn_type == "fpn" else embd_dim
    return ActionFormerDimensions(
        input_dim=int(embed.shape[1]), num_classes=int(classifier.shape[0]), embd_dim=embd_dim, fpn_dim=fpn_dim,
        head_dim=int(first_head.shape[0]) if first_head is not None else fpn_dim, n_head=n_head or 4,
        backbone_arch=arch, scale_factor=scale_factor, embd_kernel_size=int(embed.shape[2]),
        embd_with_ln="backbone.embd_norm.0.weight" in state, fpn_type=fpn_type,
        fpn_with_ln="neck.fpn_norms.0.weight" in state, fpn_start_level=arch[2] + 1 - levels,
        head_num_layers=_count(state, "cls_head.head.") + 1, head_kernel_size=int(classifier.shape[2]),
        head_with_ln="cls_head.norm.0.weight" in state, mha_win_size=windows, use_abs_pe=use_abs_pe,
        use_rel_pe=rel_key is not None,
        drop_path_scales=any(key.endswith("drop_path_attn.scale") for key in state), max_seq_len=max_seq_len)


def _windows(value: int | Sequence[int], levels: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * levels
    windows = tuple(int(v) for v in value)
    if len(windows) != levels:
        raise InputError(f"mha_win_size needs 1 or {levels} values, got {list(windows)}", field="--model-args")
    return windows


def _window_of(state: Mapping[str, torch.Tensor], block: str, given: int) -> int:
    key = f"{block}.attn.rel_pe"
    return int(state[key].shape[3]) if key in state else given


# ------------------------------------------------------------------------------------------------
# Building blocks (module and parameter names follow the release, so its state dicts load as they are)


class MaskedConv1D(nn.Module):
    """A 1-D convolution whose output is zeroed where the (stride-subsampled) mask is False."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 bias: bool = True):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                              bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(x)
        if self.stride > 1:
            mask = mask[:, :, ::self.stride]
        return out * mask.to(out.dtype), mask


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``[B, C, T]``, parameters shaped ``[1, C, 1]`` as in the release."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        variance = (centred ** 2).mean(dim=1, keepdim=True)
        return centred / torch.sqrt(variance + self.eps) * self.weight + self.bias


class Scale(nn.Module):
    """A learned scalar (the per-level regression scale)."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AffineDropPath(nn.Module):
    """A per-channel scale on a residual branch, with stochastic depth while training (per sample)."""

    def __init__(self, channels: int, drop_prob: float = 0.0, init: float = 1e-4):
        super().__init__()
        self.scale = nn.Parameter(init * torch.ones(1, channels, 1))
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale * x
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor()
        return x / keep * mask


def sinusoid_positions(length: int, channels: int) -> torch.Tensor:
    """``[1, C, length]`` sinusoidal table (sin on even, cos on odd channels), float64 math as the release."""
    position = np.arange(length, dtype=np.float64)[:, None]
    rates = np.power(10000.0, 2 * (np.arange(channels) // 2) / channels)
    table = position / rates
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32).T.unsqueeze(0)


class ConvAttention(nn.Module):
    """Masked multi-head conv attention, global (``window <= 1``) or local (odd ``window``).

    ``rel_pe`` (local only) is a learned bias ``[1, 1, heads, window]`` per head and key offset.
    Local attention follows the release's Longformer-style masking: keys outside the sequence are
    excluded, padded keys get ``-1e4`` added to their logits, rows of padded queries are zeroed.
    """

    def __init__(self, channels: int, heads: int, stride: int, window: int, use_rel_pe: bool,
                 attn_pdrop: float = 0.0, proj_pdrop: float = 0.0):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = 1.0 / math.sqrt(channels // heads)
        kernel = stride + 1 if stride > 1 else 3
        self.query_conv = MaskedConv1D(channels, channels, kernel, stride, groups=channels, bias=False)
        self.query_norm = ChannelLayerNorm(channels)
        self.key_conv = MaskedConv1D(channels, channels, kernel, stride, groups=channels, bias=False)
        self.key_norm = ChannelLayerNorm(channels)
        self.value_conv = MaskedConv1D(channels, channels, kernel, stride, groups=channels, bias=False)
        self.value_norm = ChannelLayerNorm(channels)
        self.key = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.value = nn.Conv1d(channels, channels, 1)
        self.attn_drop = nn.Dropout(attn_pdrop)
        self.proj_drop = nn.Dropout(proj_pdrop)
        self.proj = nn.Conv1d(channels, channels, 1)
        if use_rel_pe and window > 1:   # global-attention blocks have none, as in the release
            self.rel_pe = nn.Parameter(torch.zeros(1, 1, heads, window))
            nn.init.trunc_normal_(self.rel_pe, std=(2.0 / channels) ** 0.5)
        else:
            self.rel_pe = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        return x.view(batch, self.heads, channels // self.heads, length).transpose(2, 3)   # B, h, T, d

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, _ = x.shape
        q, q_mask = self.query_conv(x, mask)
        k, kv_mask = self.key_conv(x, mask)
        v, _ = self.value_conv(x, mask)
        q = self._split(self.query(self.query_norm(q)))
        k = self._split(self.key(self.key_norm(k)))
        v = self._split(self.value(self.value_norm(v)))
        if self.window > 1:
            out = self._local(q * self.scale, k, v, kv_mask)
        else:
            logits = (q * self.scale) @ k.transpose(-2, -1)
            logits = logits.masked_fill(~kv_mask[:, :, None, :], float("-inf"))
            weights = self.attn_drop(F.softmax(logits, dim=-1))
            out = weights @ (v * kv_mask[:, :, :, None].to(v.dtype))
        out = out.transpose(2, 3).contiguous().view(batch, channels, -1)
        return self.proj_drop(self.proj(out)) * q_mask.to(out.dtype), q_mask

    def _local(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        """Banded attention: query ``t`` over keys ``t - r .. t + r`` (``r = window // 2``).

        The products are computed with the release's matrix shapes (overlapping chunks of ``2r``
        rows for query x key, groups of ``r`` queries against ``3r`` keys for probabilities x
        values), so the float sums run in the same order and the outputs match it bit for bit.
        The sequence length must be a multiple of ``2r``, which the input padding guarantees.
        """
        batch, heads, length, width = q.shape
        radius = self.window // 2
        if length % (2 * radius):
            raise ValueError(f"local attention needs a length divisible by {2 * radius}, got {length}")
        q = q.reshape(batch * heads, length, width)
        k = k.reshape(batch * heads, length, width)
        v = v.reshape(batch * heads, length, width)
        chunks = length // radius - 1
        q_chunks = q.unfold(1, 2 * radius, radius).transpose(2, 3)            # BH, chunks, 2r, d
        k_chunks = k.unfold(1, 2 * radius, radius).transpose(2, 3)
        products = q_chunks @ k_chunks.transpose(-1, -2)                        # BH, chunks, 2r, 2r
        rows, chunk, row, column, outside = _band_indices(length, radius, chunks, q.device)
        logits = products[:, chunk, row, column].view(batch, heads, length, 2 * radius + 1)
        logits = logits.masked_fill(outside, float("-inf"))
        if self.rel_pe is not None:
            logits = logits + self.rel_pe.permute(0, 2, 1, 3)                  # [1, h, 1, window]
        padded_key = (~kv_mask[:, 0, :]).to(q.dtype) * -1e4                    # B, T: 0 or -1e4
        penalty = F.pad(padded_key, (radius, radius))[:, rows + torch.arange(2 * radius + 1, device=q.device)]
        logits = logits + penalty.masked_fill(outside, float("-inf"))[:, None]
        weights = F.softmax(logits, dim=-1)
        weights = weights.masked_fill(~kv_mask[:, :, :, None].bool(), 0.0)
        weights = self.attn_drop(weights).reshape(batch * heads, length // radius, radius, 2 * radius + 1)
        # each group of r queries against its 3r keys; row x holds its 2r+1 weights from column x on
        diagonal = F.pad(weights, (0, radius + 1)).flatten(2)[:, :, :-radius]
        diagonal = diagonal.view(batch * heads, length // radius, radius, 3 * radius + 1)[..., :-1]
        values = F.pad(v, (0, 0, radius, radius), value=-1.0).unfold(1, 3 * radius, radius).transpose(2, 3)
        out = diagonal @ values                                                 # BH, T/r, r, d
        return out.reshape(batch, heads, length, width)


@functools.lru_cache(maxsize=64)
def _band_indices(length: int, radius: int, chunks: int, device: torch.device):
    """Where the logit of query ``t`` and key ``t - r + j`` sits in the chunked products: the chunk
    holding both (any such chunk holds the same dot product), its row and column, and whether the
    key is outside the sequence. Also the ``[T, 1]`` query positions. Cached per length: every
    block of a level and every video of a padded length share them (they are never written to)."""
    rows = torch.arange(length, device=device)[:, None]
    keys = rows - radius + torch.arange(2 * radius + 1, device=device)[None, :]
    outside = (keys < 0) | (keys >= length)
    keys = keys.clamp(0, length - 1)
    chunk = (torch.minimum(rows, keys) // radius).clamp(max=chunks - 1)
    return rows, chunk, rows - chunk * radius, keys - chunk * radius, outside


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: conv attention (optionally strided) + max-pooled skip, then a 4x GELU MLP."""

    def __init__(self, channels: int, heads: int, stride: int, window: int, *, use_rel_pe: bool,
                 drop_path_scales: bool, path_pdrop: float = 0.0, proj_pdrop: float = 0.0):
        super().__init__()
        self.ln1 = ChannelLayerNorm(channels)
        self.ln2 = ChannelLayerNorm(channels)
        self.attn = ConvAttention(channels, heads, stride, window, use_rel_pe, proj_pdrop=proj_pdrop)
        self.pool_skip = (nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2) if stride > 1
                          else nn.Identity())
        self.mlp = nn.Sequential(nn.Conv1d(channels, 4 * channels, 1), nn.GELU(), nn.Dropout(proj_pdrop),
                                 nn.Conv1d(4 * channels, channels, 1), nn.Dropout(proj_pdrop))
        if drop_path_scales:
            self.drop_path_attn = AffineDropPath(channels, path_pdrop)
            self.drop_path_mlp = AffineDropPath(channels, path_pdrop)
        else:
            self.drop_path_attn = nn.Identity()
            self.drop_path_mlp = nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, out_mask = self.attn(self.ln1(x), mask)
        keep = out_mask.to(out.dtype)
        out = self.pool_skip(x) * keep + self.drop_path_attn(out)
        out = out + self.drop_path_mlp(self.mlp(self.ln2(out)) * keep)
        return out, out_mask


def _norm_or_identity(channels: int, with_ln: bool) -> nn.Module:
    return ChannelLayerNorm(channels) if with_ln else nn.Identity()


class ConvTransformerBackbone(nn.Module):
    """Embedding convs, stem blocks at full rate, branch blocks halving the rate; one output per level."""

    def __init__(self, dims: ActionFormerDimensions, *, path_pdrop: float = 0.0, proj_pdrop: float = 0.0):
        super().__init__()
        convs, stem, branch = dims.backbone_arch
        self.embd = nn.ModuleList(MaskedConv1D(dims.input_dim if i == 0 else dims.embd_dim, dims.embd_dim,
                                               dims.embd_kernel_size, bias=not dims.embd_with_ln)
                                  for i in range(convs))
        self.embd_norm = nn.ModuleList(_norm_or_identity(dims.embd_dim, dims.embd_with_ln) for _ in range(convs))
        self.use_abs_pe = dims.use_abs_pe
        self.max_len = dims.max_seq_len
        if dims.use_abs_pe:
            self.register_buffer("pos_embd", sinusoid_positions(dims.max_seq_len, dims.embd_dim)
                                 / dims.embd_dim ** 0.5, persistent=False)
        common = dict(use_rel_pe=dims.use_rel_pe, drop_path_scales=dims.drop_path_scales, path_pdrop=path_pdrop,
                      proj_pdrop=proj_pdrop)
        self.stem = nn.ModuleList(TransformerBlock(dims.embd_dim, dims.n_head, 1, dims.mha_win_size[0], **common)
                                  for _ in range(stem))
        self.branch = nn.ModuleList(TransformerBlock(dims.embd_dim, dims.n_head, dims.scale_factor,
                                                     dims.mha_win_size[1 + i], **common) for i in range(branch))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        length = x.shape[-1]
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        if self.use_abs_pe:
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


class IdentityNeck(nn.Module):
    """A LayerNorm (or nothing) per pyramid level."""

    def __init__(self, dims: ActionFormerDimensions):
        super().__init__()
        self.start = dims.fpn_start_level
        self.fpn_norms = nn.ModuleList(_norm_or_identity(dims.fpn_dim, dims.fpn_with_ln)
                                       for _ in range(dims.num_levels))

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]):
        return ([norm(feats[self.start + i]) for i, norm in enumerate(self.fpn_norms)], masks[self.start:])


class FeaturePyramidNeck(nn.Module):
    """1x1 laterals, top-down nearest upsampling added level by level, depthwise 3-tap conv, LayerNorm."""

    def __init__(self, dims: ActionFormerDimensions):
        super().__init__()
        self.start, self.scale_factor = dims.fpn_start_level, dims.scale_factor
        bias = not dims.fpn_with_ln
        self.lateral_convs = nn.ModuleList(MaskedConv1D(dims.embd_dim, dims.fpn_dim, 1, bias=bias)
                                           for _ in range(dims.num_levels))
        self.fpn_convs = nn.ModuleList(MaskedConv1D(dims.fpn_dim, dims.fpn_dim, 3, groups=dims.fpn_dim, bias=bias)
                                       for _ in range(dims.num_levels))
        self.fpn_norms = nn.ModuleList(_norm_or_identity(dims.fpn_dim, dims.fpn_with_ln)
                                       for _ in range(dims.num_levels))

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]):
        laterals = [conv(feats[self.start + i], masks[self.start + i])[0] for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], scale_factor=self.scale_factor,
                                                              mode="nearest")
        outs, out_masks = [], []
        for i, (conv, norm) in enumerate(zip(self.fpn_convs, self.fpn_norms)):
            x, mask = conv(laterals[i], masks[self.start + i])
            outs.append(norm(x))
            out_masks.append(mask)
        return outs, out_masks


class _HeadTower(nn.Module):
    """The shared conv tower of a head (``num_layers - 1`` masked convs, LayerNorm or not, ReLU)."""

    def __init__(self, dims: ActionFormerDimensions):
        super().__init__()
        layers = dims.head_num_layers - 1
        self.head = nn.ModuleList(MaskedConv1D(dims.fpn_dim if i == 0 else dims.head_dim, dims.head_dim,
                                               dims.head_kernel_size, bias=not dims.head_with_ln)
                                  for i in range(layers))
        self.norm = nn.ModuleList(_norm_or_identity(dims.head_dim, dims.head_with_ln) for _ in range(layers))

    def tower(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.head, self.norm):
            x, _ = conv(x, mask)
            x = F.relu(norm(x))
        return x


class ClassificationHead(_HeadTower):
    def __init__(self, dims: ActionFormerDimensions, prior_prob: float = 0.01, empty_classes: Sequence[int] = ()):
        super().__init__(dims)
        self.cls_head = MaskedConv1D(dims.head_dim, dims.num_classes, dims.head_kernel_size)
        if prior_prob > 0:   # the focal-loss prior: every class starts at probability prior_prob
            nn.init.constant_(self.cls_head.conv.bias, -math.log((1 - prior_prob) / prior_prob))
        with torch.no_grad():
            for index in empty_classes:  # classes without training data stay at probability 1e-6
                self.cls_head.conv.bias[index] = -math.log((1 - 1e-6) / 1e-6)

    def forward(self, feats, masks) -> list[torch.Tensor]:
        return [self.cls_head(self.tower(x, m), m)[0] for x, m in zip(feats, masks)]


class RegressionHead(_HeadTower):
    def __init__(self, dims: ActionFormerDimensions):
        super().__init__(dims)
        self.scale = nn.ModuleList(Scale() for _ in range(dims.num_levels))
        self.offset_head = MaskedConv1D(dims.head_dim, 2, dims.head_kernel_size)

    def forward(self, feats, masks) -> list[torch.Tensor]:
        return [F.relu(scale(self.offset_head(self.tower(x, m), m)[0]))
                for x, m, scale in zip(feats, masks, self.scale)]


# ------------------------------------------------------------------------------------------------
# The network


@dataclass(frozen=True)
class InferenceConfig:
    """Inference settings (the release's ``test_cfg``; defaults are its ``libs/core/config.py``)."""

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 5000
    duration_thresh: float = 0.05
    nms: NMSConfig = field(default_factory=NMSConfig)


THUMOS14_TEST = InferenceConfig(pre_nms_topk=2000, nms=NMSConfig(min_score=0.001, max_seg_num=200, voting_thresh=0.7,
                                                              multiclass=True))


@dataclass
class ActionFormerOutputs:
    """Raw outputs of one forward: per level ``[B, T_l, C]`` logits, ``[B, T_l, 2]`` offsets (in
    strides), ``[B, T_l]`` masks, and ``[T_l, 4]`` points (position, regression range, stride)."""

    cls_logits: list[torch.Tensor]
    offsets: list[torch.Tensor]
    masks: list[torch.Tensor]
    points: list[torch.Tensor]


@dataclass
class Detections:
    """Post-processed detections of one video: ``[K, 2]`` seconds, ``[K]`` scores, ``[K]`` class ids."""

    segments: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


class ActionFormerNet(nn.Module):
    """The ActionFormer network (``LocPointTransformer``); parameter names are the release's."""

    def __init__(self, dims: ActionFormerDimensions, *, regression_range: Sequence[Sequence[float]] | None = None,
                 path_pdrop: float = 0.0, proj_pdrop: float = 0.0, prior_prob: float = 0.01,
                 empty_classes: Sequence[int] = ()):
        super().__init__()
        self.dims = dims
        self.strides = pyramid_strides(dims)
        if regression_range is None:   # only training uses it; the release's rows, cut to the level count
            levels = len(self.strides)
            regression_range = DEFAULT_REGRESSION_RANGE[:levels - 1] + ((DEFAULT_REGRESSION_RANGE[levels - 1][0],
                                                                        10000),)
        if len(regression_range) != len(self.strides):
            raise ValueError(f"regression_range needs {len(self.strides)} rows, got {len(regression_range)}")
        self.regression_range = tuple(tuple(float(v) for v in row) for row in regression_range)
        self.backbone = ConvTransformerBackbone(dims, path_pdrop=path_pdrop, proj_pdrop=proj_pdrop)
        self.neck = FeaturePyramidNeck(dims) if dims.fpn_type == "fpn" else IdentityNeck(dims)
        self.cls_head = ClassificationHead(dims, prior_prob, empty_classes)
        self.reg_head = RegressionHead(dims)

    def points(self, lengths: Sequence[int], device: torch.device | None = None) -> list[torch.Tensor]:
        """``[T_l, 4]`` per level: feature index ``i * stride``, the level's regression range, the stride."""
        rows = []
        for length, stride, (low, high) in zip(lengths, self.strides, self.regression_range):
            position = torch.arange(length, dtype=torch.float32, device=device)[:, None] * stride
            extra = torch.tensor([low, high, float(stride)], dtype=torch.float32, device=device).expand(length, 3)
            rows.append(torch.cat((position, extra), dim=1))
        return rows

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> ActionFormerOutputs:
        """``[B, C, T]`` features (padded) and ``[B, 1, T]`` bool mask to the raw outputs."""
        levels, masks = self.backbone(feats, mask)
        levels, masks = self.neck(levels, masks)
        logits = [x.permute(0, 2, 1) for x in self.cls_head(levels, masks)]
        offsets = [x.permute(0, 2, 1) for x in self.reg_head(levels, masks)]
        return ActionFormerOutputs(logits, offsets, [m.squeeze(1) for m in masks],
                                   self.points([x.shape[-1] for x in levels], feats.device))

    def pad_for_inference(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``[T, C]`` sequence to the padded ``[1, C, T']`` input and its ``[1, 1, T']`` mask."""
        length = feats.shape[0]
        target = padded_length(self.dims, length)
        x = F.pad(feats.T.to(torch.float32), (0, target - length)).unsqueeze(0)
        mask = (torch.arange(target, device=feats.device) < length)[None, None, :]
        return x, mask

    @torch.no_grad()
    def candidates(self, outputs: ActionFormerOutputs, index: int, config: InferenceConfig
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Video ``index``'s pre-NMS candidates on the feature grid: segments, scores, class ids."""
        classes = self.dims.num_classes
        segs_all, scores_all, labels_all = [], [], []
        for logits, offsets, points, mask in zip(outputs.cls_logits, outputs.offsets, outputs.points, outputs.masks):
            prob = (logits[index].sigmoid() * mask[index].unsqueeze(-1)).flatten()
            chosen = torch.nonzero(prob > config.pre_nms_thresh).flatten()
            prob = prob[chosen]
            order = torch.sort(prob, descending=True).indices[:min(config.pre_nms_topk, chosen.numel())]
            prob, chosen = prob[order], chosen[order]
            point_index = torch.div(chosen, classes, rounding_mode="floor")
            labels = torch.fmod(chosen, classes)
            distance, point = offsets[index][point_index], points[point_index]
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
        segs, scores, labels = batched_nms(*self.candidates(outputs, 0, config), config.nms)
        return Detections(to_seconds(segs, fps=fps, feat_stride=feat_stride, num_frames=num_frames,
                                     duration=duration, offset_frames=offset_frames), scores, labels)


def to_seconds(segs: torch.Tensor, *, fps: float, feat_stride: float, num_frames: float, duration: float | None,
               offset_frames: float = 0.0) -> torch.Tensor:
    """Feature-grid segments to seconds: ``(x * feat_stride + 0.5 * num_frames + offset) / fps``,
    then clipped to ``[0, duration]`` (no upper clip without a duration, as the release's 1e8)."""
    if segs.shape[0] == 0:
        return segs
    seconds = (segs * feat_stride + 0.5 * num_frames + offset_frames) / fps
    seconds = torch.where(seconds <= 0.0, torch.zeros_like(seconds), seconds)
    if duration is not None:
        seconds = torch.where(seconds >= duration, torch.full_like(seconds, duration), seconds)
    return seconds


def describe(dims: ActionFormerDimensions) -> str:
    """A short settings string (part of the weights fingerprint)."""
    return (f"win={','.join(map(str, dims.mha_win_size))};heads={dims.n_head};max_len={dims.max_seq_len};"
            f"abs_pe={int(dims.use_abs_pe)}")

