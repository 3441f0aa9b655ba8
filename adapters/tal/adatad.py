"""AdaTAD (Liu et al., CVPR 2024): end-to-end temporal action detection, frames in and segments out.

The model (OpenTAD ``configs/adatad/thumos/e2e_thumos_videomae_*_768x1_160_adapter.py``), read
from sming256/OpenTAD at 3dd7b03 and re-implemented here on transformers' ``VideoMAEModel`` and
the ActionFormer head of `instract_eval.adapters.tal.actionformer`:

- **Frames.** One detection window is ``frames`` frames (768) taken every
  ``snippet_stride / scale_factor`` frames of the video (4 at THUMOS14's ~30 fps), resized to
  ``image_size`` (160: shorter side, then a centre crop at test time), ImageNet mean/std. The
  window is cut into chunks of the VideoMAE clip length (16 frames): 48 chunks, each a batch
  element of the ViT, so attention stays inside a chunk.
- **Backbone.** VideoMAE (tubelet 2, patch 16; sinusoidal positions for 16 frames at 224,
  interpolated bicubically per temporal slice to the 10x10 grid of 160 px, as the official
  ``VisionTransformerAdapter``), stochastic depth rising linearly to 0.1 over the blocks, no final
  norm. The frozen ViT weights are never updated; only the adapters train.
- **Temporal-informative adapter (TIA)** after every block ``i`` in ``adapter_layers`` (all by
  default): ``y = x + gamma * up(z + pw(dw(z)))`` with ``z = GELU(down(x))``, ``down`` / ``up``
  linear layers to and from a quarter of the width, ``dw`` a depthwise temporal convolution
  (kernel 3, zero padding) and ``pw`` a pointwise one over the *whole window's* token sequence at
  each spatial position (the 48 chunks x 8 tubelets = 384 steps of a 768-frame window), so the
  adapters are where information crosses chunk boundaries. ``up`` starts at zero (weight and
  bias) and ``gamma`` at one: an adapted block is exactly the plain block at initialisation.
- **Snippet features.** Tokens averaged over space, chunks concatenated in time (``[B, C, 384]``),
  linearly interpolated (``align_corners=False``) to ``frames / scale_factor`` steps (768).
- **Head.** ActionFormer (``Conv1DTransformerProj`` arch (2, 2, 5), global attention
  ``n_mha_win_size=-1``, ``max_seq_len`` = the window, 4 heads, 512 wide, identity neck, 3-layer
  heads, strides 1..32, centre sampling radius 1.5, focal + DIoU losses, loss normaliser 100
  with momentum 0.9), as OpenTAD re-implements it: the release network of
  `instract_eval.adapters.tal.actionformer` with OpenTAD's two differences applied
  (`opentad_head`: LayerNorm eps 1e-6 in its conv modules and neck, and the mask applied again
  after each conv module's ReLU).
- **Inference.** Sliding windows over the video's snippets (overlap 0.5, the last window
  right-aligned), per window every valid point's segment and per-class sigmoid scores, the 2000
  best above 0.001 over all levels together (OpenTAD's ``post_processing``; the ActionFormer
  release selects per level), seconds ``(x * snippet_stride + window_start_frame) / fps`` with
  ``fps = frames / duration`` clipped to ``[0, duration]``, then Soft-NMS over all windows of the
  video (sigma 0.7, 2000 segments, multi-class).

Memory knobs (the reasons AdaTAD scales to ViT-g and 1536 frames): ``frames``, ``snippet_stride``,
``scale_factor`` (1536 frames -> 768 features), ``image_size``, ``gradient_checkpointing`` (each
block is recomputed in the backward pass, ``torch.utils.checkpoint``, as the official
``with_cp=True``; only blocks whose input needs a gradient, i.e. after the first adapter), and the
frozen ViT (no gradients or optimizer state for it).

What was checked against what (``tests/adapters/tal/test_adatad*.py``): with every adapter's
``gamma`` at zero, and at initialisation, the backbone's tokens equal transformers'
``VideoMAEModel`` run chunk by chunk; an adapted block equals a hand computation of the official
formulas (explicit per-position temporal convolution over the window); gradient checkpointing
gives the same loss and gradients; the head read from an OpenTAD checkpoint gives OpenTAD's own
``forward_test`` proposals and scores (its torch-only modules run out of tree; golden data in
``tests/data/official/adatad``), on a full and on a padded window; ``localize`` equals the
network on independently decoded frames; ``instract-eval train adatad`` lowers the loss and its
weights load here. OpenTAD's ViT (``vit_adapter.py``) needs mmcv / mmaction2, which do not install
here, so it was read and its formulas written out in the tests, not run.

Weights: the file our recipe writes (``state_dict``, ``state_dict_ema``, ``labels``, ``config``)
is evaluated with ``checkpoint=PATH``. An official AdaTAD checkpoint (Google Drive; OpenTAD's
``{'epoch', 'state_dict', 'state_dict_ema', 'optimizer', 'scheduler'}``, keys
``module.backbone.model.backbone.*`` (mmaction2 ViT names, adapters ``blocks.N.adapter.*``),
``module.projection.*``, ``module.neck.*``, ``module.rpn_head.*``) is evaluated with
``checkpoint=PATH labels=category_idx.txt`` (`load_opentad`: every size read from the tensors,
the sampling from the arguments), and starts training with ``--init``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, FrameSpec, VideoReader, apply_frame_spec

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import TorchAdapter, require_checkpoint
from ..core.checkpoints import load_strict, read_checkpoint, remap_keys, strip_prefix
from ..protocols import LOCALIZER, Segment
from ..registry import register_model
from ..video_text.videomae import official_state_dict
from .actionformer import ActionFormerDimensions, ActionFormerNet, ActionFormerOutputs, ChannelLayerNorm
from .adapter import read_label_file
from .nms import NMSConfig, batched_nms

__all__ = ["FAMILY", "AdaTADConfig", "TemporalInformativeAdapter", "AdaTADBackbone", "AdaTADNet", "AdaTADLocalizer",
           "build_network", "backbone_state_dict", "window_starts", "window_frame_indices", "video_timing",
           "window_candidates", "load_adatad", "load_opentad", "opentad_head", "opentad_head_state", "is_opentad_state", "CARD", "SIZES",
           "HEAD_VARIANTS"]

FAMILY = "adatad"
_ARGS = "--model-args"
_FIELD = "checkpoint"

HEAD_VARIANTS = ("opentad", "release")
# The official backbones by size: (width, depth, heads, patch, MLP ratio); configs/adatad/thumos/*.
SIZES: Mapping[str, tuple[int, int, int, int, float]] = {
    "s": (384, 12, 6, 16, 4.0), "b": (768, 12, 12, 16, 4.0), "l": (1024, 24, 16, 16, 4.0),
    "h": (1280, 32, 16, 16, 4.0), "g": (1408, 40, 16, 14, 48 / 11),
}


# ------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class AdaTADConfig:
    """Every setting of the model, its data and its training, defaulted as the official THUMOS14
    VideoMAE-S adapter config (``e2e_thumos_videomae_s_768x1_160_adapter.py``). The training
    recipe reads it from a config file's ``model:`` section; the weights it writes carry it."""

    # backbone (VideoMAE ViT); ``size`` fills width / depth / heads / patch / MLP ratio when they are 0
    size: str = "s"
    hidden_size: int = 0
    num_layers: int = 0
    num_heads: int = 0
    patch_size: int = 0
    mlp_ratio: float = 0.0
    tubelet_size: int = 2
    chunk_frames: int = 16            # frames per VideoMAE clip (its position table's length)
    position_size: int = 224          # the resolution the position table was made for (img_size)
    drop_path: float = 0.1
    adapter_ratio: float = 0.25
    adapter_kernel: int = 3
    adapter_layers: tuple[int, ...] | None = None   # None: every block (adapter_index=list(range(depth)))
    # memory knobs and frame sampling
    frames: int = 768                 # frames per detection window (window_size * scale_factor)
    scale_factor: int = 1             # frames per feature step
    snippet_stride: int = 4           # video frames between two feature steps
    image_size: int = 160
    gradient_checkpointing: bool = True
    # head (ActionFormer)
    embd_dim: int = 512
    fpn_dim: int = 512
    head_dim: int = 512
    n_head: int = 4
    backbone_arch: tuple[int, int, int] = (2, 2, 5)
    mha_win_size: tuple[int, ...] = (-1,)
    head_num_layers: int = 3
    regression_range: tuple[tuple[float, float], ...] = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))
    head_droppath: float = 0.1
    cls_prior_prob: float = 0.01
    head_variant: str = "opentad"     # OpenTAD's ActionFormer (what AdaTAD trains), or "release"
    # training
    center_sample_radius: float = 1.5
    init_loss_norm: float = 100.0
    loss_weight: float = 1.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.999
    adapter_lr_scale: float = 2.0     # adapters at 2e-4 against the head's 1e-4 (VideoMAE-S; 1.0 for B/L/H/g)
    # data
    annotations: str = "ground_truth.json"
    videos: str = "videos"
    video_suffixes: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov")
    train_split: tuple[str, ...] = ("training",)
    trunc_thresh: float = 0.75
    crop_ratio: tuple[float, float] | None = (0.9, 1.0)
    augment: bool = True              # random resized crop + horizontal flip (see the recipe)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        width, depth, heads, patch, ratio = SIZES[self.size]
        for name, default in (("hidden_size", width), ("num_layers", depth), ("num_heads", heads),
                              ("patch_size", patch), ("mlp_ratio", ratio)):
            if not getattr(self, name):
                object.__setattr__(self, name, default)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        for name in ("frames", "scale_factor", "snippet_stride", "image_size", "chunk_frames", "tubelet_size",
                     "patch_size", "position_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.chunk_frames % self.tubelet_size:
            raise ValueError(f"chunk_frames {self.chunk_frames} is not a multiple of tubelet_size {self.tubelet_size}")
        if self.frames % self.chunk_frames:
            raise ValueError(f"frames {self.frames} must be a multiple of the VideoMAE clip length {self.chunk_frames}")
        if self.frames % self.scale_factor or self.snippet_stride % self.scale_factor:
            raise ValueError(f"frames ({self.frames}) and snippet_stride ({self.snippet_stride}) must be multiples of "
                             f"scale_factor ({self.scale_factor})")
        if self.image_size % self.patch_size or self.position_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} and position_size {self.position_size} must be multiples "
                             f"of patch_size {self.patch_size}")
        if self.adapter_layers is not None:
            layers = tuple(int(i) for i in self.adapter_layers)
            if any(i < 0 or i >= self.num_layers for i in layers) or len(set(layers)) != len(layers):
                raise ValueError(f"adapter_layers must be distinct block indices in 0..{self.num_layers - 1}, "
                                 f"got {list(layers)}")
            object.__setattr__(self, "adapter_layers", layers)
        if not 0 <= self.drop_path < 1 or not 0 <= self.head_droppath < 1:
            raise ValueError("drop path rates must be in [0, 1)")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.crop_ratio is not None and not 0 < self.crop_ratio[0] <= self.crop_ratio[1] <= 1:
            raise ValueError(f"crop_ratio must be 0 < low <= high <= 1, got {self.crop_ratio}")
        if not self.train_split:
            raise ValueError("train_split names at least one subset")
        if self.head_variant not in HEAD_VARIANTS:
            raise ValueError(f"head_variant must be one of {', '.join(HEAD_VARIANTS)}, got {self.head_variant!r}")

    @property
    def window_size(self) -> int:
        """Feature steps per window (the head's ``max_seq_len``)."""
        return self.frames // self.scale_factor

    @property
    def frame_stride(self) -> int:
        """Video frames between two sampled frames."""
        return self.snippet_stride // self.scale_factor

    @property
    def layers_with_adapters(self) -> tuple[int, ...]:
        return tuple(range(self.num_layers)) if self.adapter_layers is None else tuple(self.adapter_layers)

    def dimensions(self, num_classes: int) -> ActionFormerDimensions:
        levels = self.backbone_arch[2] + 1
        windows = tuple(self.mha_win_size) * levels if len(self.mha_win_size) == 1 else tuple(self.mha_win_size)
        return ActionFormerDimensions(
            input_dim=self.hidden_size, num_classes=num_classes, embd_dim=self.embd_dim, fpn_dim=self.fpn_dim,
            head_dim=self.head_dim, n_head=self.n_head, backbone_arch=tuple(self.backbone_arch),
            head_num_layers=self.head_num_layers, mha_win_size=windows, use_abs_pe=False, use_rel_pe=False,
            drop_path_scales=self.head_droppath > 0, max_seq_len=self.window_size)

    def frame_spec(self) -> FrameSpec:
        """The test pipeline's pixels: shorter side to ``image_size``, centre crop, ImageNet statistics."""
        return FrameSpec(num_frames=self.frames, sampling="uniform", size=self.image_size, crop=self.image_size,
                         mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(values: Mapping[str, Any], source: str | os.PathLike) -> AdaTADConfig:
    """The config a weights file records (lists back to tuples); unknown names are refused."""
    fields = {f.name for f in dataclasses.fields(AdaTADConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise InputError(f"its config has unknown AdaTAD settings: {', '.join(unknown)}", path=source, field="config")

    def tuples(value: Any) -> Any:
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    try:
        return AdaTADConfig(**{key: tuples(value) for key, value in values.items()})
    except (TypeError, ValueError) as error:
        raise InputError(f"its config is not a valid AdaTAD config: {error}", path=source, field="config") from None


# ------------------------------------------------------------------------------------------------
# The network


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth per batch element (per chunk here), scaled by the keep probability."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class TemporalInformativeAdapter(nn.Module):
    """The TIA: a bottleneck whose middle mixes each spatial position's tokens along the window's time.

    Parameter names are the official ``Adapter``'s (``down_proj``, ``dwconv``, ``conv``,
    ``up_proj``, ``gamma``), so its weights load unchanged. Initialisation as official:
    ``down_proj`` truncated normal (std 0.02), ``dwconv`` normal (std sqrt(2 / kernel)),
    ``conv`` normal (std sqrt(2 / hidden)), biases zero, ``up_proj`` all zero, ``gamma`` one.
    """

    def __init__(self, width: int, ratio: float = 0.25, kernel_size: int = 3):
        super().__init__()
        hidden = int(width * ratio)
        if hidden < 1:
            raise ValueError(f"adapter width {width} x {ratio} leaves no hidden channels")
        self.hidden = hidden
        self.down_proj = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.dwconv = nn.Conv1d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.conv = nn.Conv1d(hidden, hidden, 1)
        self.up_proj = nn.Linear(hidden, width)
        self.gamma = nn.Parameter(torch.ones(1))
        with torch.no_grad():
            nn.init.trunc_normal_(self.down_proj.weight, std=0.02)
            nn.init.zeros_(self.down_proj.bias)
            self.dwconv.weight.normal_(0.0, math.sqrt(2.0 / kernel_size))
            nn.init.zeros_(self.dwconv.bias)
            self.conv.weight.normal_(0.0, math.sqrt(2.0 / hidden))
            nn.init.zeros_(self.conv.bias)
            nn.init.zeros_(self.up_proj.weight)
            nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor, chunks: int, grid: tuple[int, int, int]) -> torch.Tensor:
        """``x``: ``[B * chunks, t * h * w, C]`` tokens of ``B`` windows cut into ``chunks`` clips
        (tokens ordered time, row, column, as the patch embedding flattens them)."""
        steps, height, width = grid
        z = self.act(self.down_proj(x))
        channels = z.shape[-1]
        # one sequence per (window, row, column) over all of the window's chunks x tubelets
        sequence = z.reshape(-1, chunks * steps, height * width, channels).permute(0, 2, 3, 1)
        batch = sequence.shape[0]
        mixed = self.conv(self.dwconv(sequence.reshape(batch * height * width, channels, chunks * steps)))
        mixed = mixed.reshape(batch, height * width, channels, chunks * steps).permute(0, 3, 1, 2)
        z = z + mixed.reshape(z.shape)
        return x + self.up_proj(z) * self.gamma


def _videomae_config(config: AdaTADConfig) -> Any:
    from transformers import VideoMAEConfig

    return VideoMAEConfig(image_size=config.position_size, patch_size=config.patch_size, num_channels=3,
                          num_frames=config.chunk_frames, tubelet_size=config.tubelet_size,
                          hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                          num_attention_heads=config.num_heads,
                          intermediate_size=int(config.hidden_size * config.mlp_ratio), hidden_act="gelu",
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-6,
                          qv_bias=True, use_mean_pooling=True)


class AdaTADBackbone(nn.Module):
    """VideoMAE with TIAs: ``[B, frames, 3, H, W]`` windows to ``[B, C, frames / scale_factor]`` features.

    ``encoder`` is a transformers ``VideoMAEModel``; its modules are used block by block (the
    attention, MLP and LayerNorms of each ``VideoMAELayer``) so that stochastic depth and an
    adapter can sit around them as in the official block. Its weights stay frozen.
    """

    def __init__(self, config: AdaTADConfig, encoder: nn.Module | None = None):
        super().__init__()
        if encoder is None:
            from transformers import VideoMAEModel

            encoder = VideoMAEModel(_videomae_config(config))
        self.encoder = encoder
        self.config = config
        self.adapters = nn.ModuleDict({str(i): TemporalInformativeAdapter(config.hidden_size, config.adapter_ratio,
                                                                          config.adapter_kernel)
                                       for i in config.layers_with_adapters})
        self.drop_path_rates = [float(r) for r in torch.linspace(0, config.drop_path, config.num_layers)]
        self.gradient_checkpointing = config.gradient_checkpointing
        self._positions: dict[tuple[int, int], torch.Tensor] = {}
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> AdaTADBackbone:
        """The frozen ViT stays in eval mode, as the official ``_freeze_layers`` puts it; the
        adapters and stochastic depth follow ``mode``."""
        super().train(mode)
        self.encoder.eval()
        return self

    def positions(self, height: int, width: int) -> torch.Tensor:
        """``[1, t * height * width, C]``: the position table, resized bicubically per temporal slice
        when the patch grid is not the one it was made for (the official rule)."""
        key = (height, width)
        if key not in self._positions:
            table = self.encoder.embeddings.position_embeddings.detach().float()
            grid = self.config.position_size // self.config.patch_size
            if (height, width) != (grid, grid):
                slices = table.reshape(-1, grid, grid, table.shape[-1]).permute(0, 3, 1, 2)
                slices = F.interpolate(slices, size=(height, width), mode="bicubic", align_corners=False)
                table = slices.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])
            self._positions[key] = table
        return self._positions[key]

    def block(self, index: int, x: torch.Tensor, chunks: int, grid: tuple[int, int, int]) -> torch.Tensor:
        """Block ``index``: ``x + dp(attn(ln1 x))``, ``+ dp(mlp(ln2 .))``, then its adapter, if any."""
        layer = self.encoder.encoder.layer[index]
        rate = self.drop_path_rates[index]
        x = x + _drop_path(layer.attention(layer.layernorm_before(x)), rate, self.training)
        mlp = layer.output.dropout(layer.output.dense(layer.intermediate(layer.layernorm_after(x))))
        x = x + _drop_path(mlp, rate, self.training)
        adapter = self.adapters[str(index)] if str(index) in self.adapters else None
        return adapter(x, chunks, grid) if adapter is not None else x

    def tokens(self, frames: torch.Tensor) -> tuple[torch.Tensor, int, tuple[int, int, int]]:
        """``[B * chunks, t * h * w, C]`` final tokens, the chunk count and the token grid."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"adatad expects frames [B, T, 3, H, W], got {tuple(frames.shape)}")
        batch, count, _, height, width = frames.shape
        clip = self.config.chunk_frames
        if count % clip:
            raise ValueError(f"adatad takes a multiple of {clip} frames per window, got {count}")
        if height % self.config.patch_size or width % self.config.patch_size:
            raise ValueError(f"frame size {height}x{width} is not a multiple of the patch {self.config.patch_size}")
        chunks = count // clip
        x = frames.reshape(batch * chunks, clip, 3, height, width).transpose(1, 2)
        x = self.encoder.embeddings.patch_embeddings.projection(x.to(self._dtype()))
        grid = tuple(int(n) for n in x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        x = x + self.positions(grid[1], grid[2]).to(x.device, x.dtype)
        for index in range(len(self.encoder.encoder.layer)):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and x.requires_grad:
                x = activation_checkpoint(self.block, index, x, chunks, grid, use_reentrant=False)
            else:
                x = self.block(index, x, chunks, grid)
        return x, chunks, grid

    def _dtype(self) -> torch.dtype:
        return self.encoder.embeddings.patch_embeddings.projection.weight.dtype

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch = frames.shape[0]
        x, chunks, (steps, height, width) = self.tokens(frames)
        feats = x.reshape(batch, chunks * steps, height * width, x.shape[-1]).mean(dim=2).transpose(1, 2)
        length = frames.shape[1] // self.config.scale_factor
        if feats.shape[-1] != length:
            feats = F.interpolate(feats, size=length, mode="linear", align_corners=False)
        return feats.float()


class AdaTADNet(nn.Module):
    """Backbone + ActionFormer head."""

    def __init__(self, config: AdaTADConfig, num_classes: int, *, encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.backbone = AdaTADBackbone(config, encoder)
        self.head = ActionFormerNet(config.dimensions(num_classes), regression_range=config.regression_range,
                                    path_pdrop=config.head_droppath, prior_prob=config.cls_prior_prob)
        if config.head_variant == "opentad":
            opentad_head(self.head)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> ActionFormerOutputs:
        """``[B, frames, 3, H, W]`` windows and their ``[B, window_size]`` validity to the head's raw outputs."""
        return self.head(self.backbone(frames), mask[:, None, :])


def opentad_head(head: ActionFormerNet) -> None:
    """Make the release's ActionFormer compute OpenTAD's re-implementation, which AdaTAD trains.

    OpenTAD's ``ConvModule`` (the projection's embedding convs and the heads' towers) differs in
    two ways: its LayerNorm has eps 1e-6 (the release's 1e-5; also its ``FPNIdentity`` norms),
    and it multiplies its output by the mask again *after* the ReLU, so padded steps are zero
    where the release leaves ``relu(bias)``; that changes the valid outputs next to the padding
    through the following convolutions. Both are applied here to the release network of
    `instract_eval.adapters.tal.actionformer`: the eps set on those norms, and forward hooks that
    take the mask each masked convolution returns and zero the following norm's output with it
    (``relu(n * m) = relu(n) * m`` for a 0/1 mask). The rest (transformer blocks, attention, the
    neck, the prediction convs on valid points, point generation) is the same computation; checked
    on random weights against OpenTAD's modules (``tests/data/official/adatad``).
    """
    current: dict[str, torch.Tensor] = {}

    def remember(module: nn.Module, args: Any, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        current["mask"] = output[1]

    def remask(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return output * current["mask"].to(output.dtype)

    pairs = list(zip(head.backbone.embd, head.backbone.embd_norm))
    for tower in (head.cls_head, head.reg_head):
        pairs += list(zip(tower.head, tower.norm))
    for conv, norm in pairs:
        conv.register_forward_hook(remember)
        if isinstance(norm, ChannelLayerNorm):
            norm.eps = 1e-6
        norm.register_forward_hook(remask)
    for norm in getattr(head.neck, "fpn_norms", ()):
        if isinstance(norm, ChannelLayerNorm):
            norm.eps = 1e-6


def build_network(config: AdaTADConfig, num_classes: int) -> AdaTADNet:
    try:
        return AdaTADNet(config, num_classes)
    except ValueError as error:
        raise InputError(str(error), field="model") from None


# ------------------------------------------------------------------------------------------------
# Backbone weights from VideoMAE / OpenTAD files

_MMACTION = (
    (r"patch_embed\.projection\.", "patch_embed.proj."),
    (r"blocks\.(\d+)\.mlp\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"blocks\.(\d+)\.mlp\.layers\.1\.", r"blocks.\1.mlp.fc2."),
)
_OPENTAD_PREFIXES = ("module.backbone.model.backbone.", "backbone.model.backbone.", "backbone.")


def backbone_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The VideoMAE weights (``VideoMAEModel`` names) and the adapters' (``<block>.<name>``) of a file.

    Reads the official VideoMAE / VideoMAE V2 fine-tuned files, their mmaction2 conversions (the
    ``pretrain=`` files of the AdaTAD configs: ``backbone.patch_embed.projection``,
    ``mlp.layers.0.0`` / ``mlp.layers.1``) and OpenTAD AdaTAD checkpoints
    (``module.backbone.model.backbone.*``, adapters ``blocks.N.adapter.*``). Position tables,
    ``fc_norm`` and classification heads are not weights of this backbone and are left out.
    """
    for prefix in _OPENTAD_PREFIXES:
        if any(key.startswith(prefix + "blocks.") for key in state):
            state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
            break
    adapters = {}
    plain = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "blocks" and parts[2] == "adapter":
            adapters[f"{parts[1]}.{'.'.join(parts[3:])}"] = value
        elif key.startswith(("patch_embed.", "blocks.")):
            plain[key] = value
    return official_state_dict(remap_keys(plain, _MMACTION)), adapters


def load_backbone(backbone: AdaTADBackbone, path: Path) -> int:
    """Start ``backbone`` from a VideoMAE or OpenTAD file (see `backbone_state_dict`); every ViT
    weight must be there with its shape. Returns how many adapter tensors the file also gave."""
    checkpoint = read_checkpoint(path, family=FAMILY)
    state = checkpoint.state_dict
    if not state:
        payload = checkpoint.payload.get("object")
        for key in ("state_dict", "model", "module"):
            value = payload.get(key) if isinstance(payload, Mapping) else None
            if isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
                state = dict(value)
                break
    if not state:
        raise InputError("holds no VideoMAE weights (expected a state dict, or one under state_dict / model / module)",
                         path=path, field=_FIELD)
    encoder_state, adapter_state = backbone_state_dict(strip_prefix(state, "module."))
    if not encoder_state:
        shown = ", ".join(sorted(state)[:3])
        raise InputError(f"is not a VideoMAE backbone: no patch_embed / blocks weights (it has {shown}, ...)",
                         path=path, field=_FIELD)
    load_strict(backbone.encoder, encoder_state, path, family=f"{FAMILY} backbone (VideoMAE)")
    if adapter_state:
        load_strict(backbone.adapters, adapter_state, path, family=f"{FAMILY} adapters")
    return len(adapter_state)


# ------------------------------------------------------------------------------------------------
# Windows and post-processing (OpenTAD's sliding-window test)


def window_starts(snippets: int, window: int, overlap: float = 0.5) -> list[int]:
    """First snippet of each test window: every ``window * (1 - overlap)`` snippets, the last one
    right-aligned to the video's end, at least one window (OpenTAD ``SlidingWindowDataset``)."""
    stride = max(1, int(window * (1 - overlap)))
    starts = []
    for index in range(max(1, snippets // stride)):
        start = index * stride
        if start + window > snippets:
            starts.append(max(0, snippets - window))
            break
        starts.append(start)
    return starts


def window_frame_indices(config: AdaTADConfig, total_frames: int, start: int) -> tuple[np.ndarray, int]:
    """The video frame indices of the window whose first snippet is ``start`` (padded by repeating
    the last one) and its number of valid feature steps (OpenTAD ``LoadFrames``, sliding window)."""
    every = np.arange(0, total_frames, config.frame_stride)
    first = min(start * config.scale_factor, len(every))
    last = min((start + config.window_size) * config.scale_factor, len(every))
    chosen = every[first:last]
    valid = len(chosen) // config.scale_factor
    if len(chosen) < config.frames:
        chosen = np.pad(chosen, (0, config.frames - len(chosen)), mode="edge")
    return np.clip(chosen, 0, total_frames - 1).astype(np.int64), valid


def video_timing(path: str | os.PathLike) -> tuple[int, float, float]:
    """``(frames, fps, duration)`` of a video from its container; ``fps = frames / duration`` as the
    official annotations define it."""
    with VideoReader(path) as reader:
        info = reader.info
    rate = info.average_fps
    count = info.num_frames or (int(round(info.duration * rate)) if rate else 0)
    if not count or info.duration <= 0:
        raise InputError("cannot tell the frame count and duration of the video", path=path)
    return int(count), count / info.duration, float(info.duration)


def frame_times(indices: np.ndarray, fps: float) -> np.ndarray:
    """Seconds at which to show frame ``i``: the middle of its display interval."""
    return (indices.astype(np.float64) + 0.5) / fps


@torch.no_grad()
def window_candidates(outputs: ActionFormerOutputs, index: int, *, pre_nms_thresh: float, pre_nms_topk: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window's segments on its feature grid, scores and class ids before NMS: every valid point
    of every level, the ``pre_nms_topk`` best (point, class) scores above ``pre_nms_thresh``."""
    points = torch.cat(outputs.points, dim=0)
    offsets = torch.cat([o[index] for o in outputs.offsets], dim=0)
    valid = torch.cat([m[index] for m in outputs.masks], dim=0)
    probs = torch.cat([c[index] for c in outputs.cls_logits], dim=0).sigmoid()
    starts = points[:, 0] - offsets[:, 0] * points[:, 3]
    ends = points[:, 0] + offsets[:, 1] * points[:, 3]
    proposals = torch.stack((starts, ends), dim=-1)[valid]
    probs = probs[valid]
    classes = probs.shape[-1]
    flat = probs.flatten()
    kept = torch.nonzero(flat > pre_nms_thresh).flatten()
    order = torch.sort(flat[kept], descending=True).indices[:min(pre_nms_topk, kept.numel())]
    kept = kept[order]
    return proposals[torch.div(kept, classes, rounding_mode="floor")], flat[kept], torch.fmod(kept, classes)


def to_seconds(segments: torch.Tensor, *, snippet_stride: float, window_start_frame: float, fps: float,
               duration: float) -> torch.Tensor:
    """``(x * snippet_stride + window_start_frame) / fps`` clipped to ``[0, duration]`` (OpenTAD ``convert_to_seconds``)."""
    seconds = (segments * snippet_stride + window_start_frame) / fps
    return seconds.clamp(min=0.0, max=duration)


# ------------------------------------------------------------------------------------------------
# The localizer


@dataclass(frozen=True)
class AdaTADTest:
    """Test-time settings (the official ``post_processing`` of the THUMOS14 AdaTAD configs)."""

    window_overlap: float = 0.5
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    nms: NMSConfig = dataclasses.field(default_factory=lambda: NMSConfig(
        iou_threshold=0.1, min_score=0.001, max_seg_num=2000, method="soft", sigma=0.7, multiclass=True,
        voting_thresh=0.7))

    def __post_init__(self) -> None:
        if not 0 <= self.window_overlap < 1:
            raise ValueError(f"window_overlap must be in [0, 1), got {self.window_overlap}")
        if self.pre_nms_topk < 1:
            raise ValueError(f"pre_nms_topk must be positive, got {self.pre_nms_topk}")


class AdaTADLocalizer(TorchAdapter):
    """``localize(video, classes, descriptions)``: AdaTAD detections on the video file as `Segment` s.

    Descriptions are ignored (a vision-only detector). Detections of classes the task does not
    list are dropped; a model none of whose classes the task lists is refused.
    """

    name = FAMILY
    localizer_inputs = ("video",)

    def __init__(self, net: AdaTADNet, labels: Sequence[str], *, test: AdaTADTest, checkpoint: Path | None,
                 threads: int | None = None):
        config = net.config
        if len(labels) != net.head.dims.num_classes:
            raise InputError(f"{len(labels)} class names for a model of {net.head.dims.num_classes} classes",
                             field="labels")
        names = hashlib.sha256("\0".join(labels).encode()).hexdigest()[:16]
        super().__init__(spec=config.frame_spec(), checkpoint=checkpoint,
                         settings=f"frames={config.frames};stride={config.snippet_stride};scale={config.scale_factor};"
                                  f"size={config.image_size};test={test!r};labels={names}")
        self.net = net
        self.labels = list(labels)
        self.test = test
        self.threads = threads

    @property
    def config(self) -> AdaTADConfig:
        return self.net.config

    def detect(self, video: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Seconds ``[K, 2]``, scores and class ids of one video after NMS over all its windows."""
        config = self.config
        total, fps, duration = video_timing(video)
        snippets = len(range(0, total, config.snippet_stride))
        spec = self.spec
        device = self.device
        segs, scores, labels = [], [], []
        with VideoReader(video, threads=self.threads) as reader:
            for start in window_starts(snippets, config.window_size, self.test.window_overlap):
                indices, valid = window_frame_indices(config, total, start)
                frames = apply_frame_spec(reader.frames_at(frame_times(indices, fps)).frames, spec)
                mask = torch.arange(config.window_size) < valid
                with torch.autocast(device_type=device.type, enabled=False):
                    outputs = self.net(frames[None].to(device), mask[None].to(device))
                found, score, label = window_candidates(outputs, 0, pre_nms_thresh=self.test.pre_nms_thresh,
                                                        pre_nms_topk=self.test.pre_nms_topk)
                first_frame = float(start * config.snippet_stride)
                segs.append(to_seconds(found.float().cpu(), snippet_stride=config.snippet_stride,
                                       window_start_frame=first_frame, fps=fps, duration=duration))
                scores.append(score.float().cpu())
                labels.append(label.cpu())
        return batched_nms(torch.cat(segs), torch.cat(scores), torch.cat(labels), self.test.nms)

    @torch.no_grad()
    def localize(self, video: str, classes: Sequence[str], descriptions: Mapping[str, str] | None) -> list[Segment]:
        del descriptions
        wanted = set(classes)
        if not wanted & set(self.labels):
            raise InputError(f"none of the task's classes ({', '.join(list(classes)[:3])}, ...) is one of the "
                             f"model's ({', '.join(self.labels[:3])}, ...); pass labels=FILE naming its classes",
                             field=_ARGS)
        was_training = self.net.training
        self.net.eval()
        try:
            segs, scores, labels = self.detect(video)
        finally:
            self.net.train(was_training)
        out = []
        for (start, end), score, label in zip(segs.tolist(), scores.tolist(), labels.tolist()):
            name = self.labels[int(label)]
            if name in wanted:
                out.append(Segment(start=float(start), end=float(end), label=name, score=float(score)))
        return out


# ------------------------------------------------------------------------------------------------
# Loading our weights


def load_adatad(path: str | os.PathLike, *, weights: str = "ema") -> tuple[AdaTADNet, dict[str, Any]]:
    """The network of a file written by the ``adatad`` recipe (eval mode) and its payload."""
    if weights not in ("ema", "raw"):
        raise InputError(f"weights must be ema or raw, got {weights!r}", field=_ARGS)
    path = Path(path)
    checkpoint = read_checkpoint(path, family=FAMILY)
    payload = checkpoint.payload.get("object")
    if not isinstance(payload, Mapping) or not isinstance(payload.get("config"), Mapping):
        inner = payload.get("state_dict") if isinstance(payload, Mapping) else None
        tensors = inner if isinstance(inner, Mapping) else checkpoint.state_dict
        if any(str(key).startswith(("module.backbone.model.", "backbone.model.")) for key in tensors):
            raise InputError("is an official OpenTAD AdaTAD checkpoint, not our recipe's weights: read it with "
                             "load_opentad (create_model('adatad', checkpoint=PATH, labels=FILE) does)", path=path,
                             field=_FIELD)
        keys = sorted(map(str, payload if isinstance(payload, Mapping) else checkpoint.state_dict))[:6]
        raise InputError(f"is not an adatad weights file (expected state_dict, state_dict_ema, labels and config; "
                         f"it has {', '.join(keys)})", path=path, field=_FIELD)
    config = config_from_dict(payload["config"], path)
    labels = payload.get("labels")
    if not (isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels)):
        raise InputError("has no class names (labels)", path=path, field="labels")
    order = ("state_dict_ema", "state_dict") if weights == "ema" else ("state_dict",)
    state = next((payload[k] for k in order if isinstance(payload.get(k), Mapping) and payload[k]), None)
    if state is None:
        raise InputError(f"holds no {' or '.join(order)}", path=path, field=_FIELD)
    net = build_network(config, len(labels))
    load_strict(net, state, path, family=FAMILY)
    net.eval()
    return net, dict(payload)


def is_opentad_state(state: Mapping[str, Any]) -> bool:
    """Whether a state dict is an OpenTAD detector's (its backbone nested as BackboneWrapper nests it)."""
    return any(str(key).startswith(("module.backbone.model.backbone.", "backbone.model.backbone.")) for key in state)


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    found = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)
             and k[len(prefix):].split(".")[0].isdigit()}
    return max(found) + 1 if found else 0


def opentad_head_state(state: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """OpenTAD's ``projection.*`` / ``neck.*`` / ``rpn_head.*`` renamed onto `ActionFormerNet`
    (LayerNorm vectors reshaped to ``[1, C, 1]``); the head's ``loss_normalizer`` is dropped."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "projection":
            if parts[1] == "embed":
                name = (f"backbone.embd.{parts[2]}.conv.{parts[4]}" if parts[3] == "conv"
                        else f"backbone.embd_norm.{parts[2]}.{parts[4]}")
            else:
                name = "backbone." + ".".join(parts[1:])
        elif parts[0] == "neck":
            name = key
        elif parts[0] == "rpn_head" and parts[1] in ("cls_convs", "reg_convs"):
            side = "cls_head" if parts[1] == "cls_convs" else "reg_head"
            name = (f"{side}.head.{parts[2]}.conv.{parts[4]}" if parts[3] == "conv"
                    else f"{side}.norm.{parts[2]}.{parts[4]}")
        elif parts[0] == "rpn_head" and parts[1] == "cls_head":
            name = f"cls_head.cls_head.conv.{parts[2]}"
        elif parts[0] == "rpn_head" and parts[1] == "reg_head":
            name = f"reg_head.offset_head.conv.{parts[2]}"
        elif parts[0] == "rpn_head" and parts[1] == "scale":
            name = f"reg_head.scale.{parts[2]}.scale"
        else:
            continue
        target = shapes.get(name)
        out[name] = value.reshape(target) if target is not None and value.numel() == math.prod(target) else value
    return out


def load_opentad(path: Path, payload: Mapping[str, Any], labels: Sequence[str], *, weights: str, frames: int,
                 image_size: int, scale_factor: int, snippet_stride: int, n_head: int, mha_win_size: int,
                 vit_heads: int | None = None) -> AdaTADNet:
    """An official AdaTAD detector (OpenTAD checkpoint) as `AdaTADNet` with the OpenTAD head.

    Every size the tensors hold is read from them (ViT width, depth, patch, tubelet, MLP width,
    adapted blocks and adapter width; the head's widths, layer counts and classes); the head
    count of the ViT is the official one for its width. What no tensor holds comes from the
    arguments (the config the file was trained with): frames, image size, scale factor, snippet
    stride, the head's attention heads and window.
    """
    order = ("state_dict_ema", "state_dict") if weights == "ema" else ("state_dict",)
    state = next((payload[k] for k in order if isinstance(payload.get(k), Mapping) and payload[k]), None)
    if state is None:
        raise InputError(f"holds no {' or '.join(order)}", path=path, field=_FIELD)
    state = strip_prefix(dict(state), "module.")
    encoder_state, adapter_state = backbone_state_dict(state)
    need = ("embeddings.patch_embeddings.projection.weight", "encoder.layer.0.intermediate.dense.weight")
    head_keys = ("projection.embed.0.conv.weight", "rpn_head.cls_head.weight", "rpn_head.cls_convs.0.conv.weight")
    absent = [k for k in need if k not in encoder_state] + [k for k in head_keys if k not in state]
    if absent:
        raise InputError(f"is not an AdaTAD (VideoMAE + ActionFormer) OpenTAD checkpoint: it lacks {absent[0]}",
                         path=path, field=_FIELD)
    patch = encoder_state["embeddings.patch_embeddings.projection.weight"]
    width, _, tubelet, patch_size, _ = (int(n) for n in patch.shape)
    size = next((name for name, dims in SIZES.items() if dims[0] == width), None)
    heads = vit_heads or (SIZES[size][2] if size is not None else None)
    if heads is None:
        raise InputError(f"has a {width}-wide ViT, not an official AdaTAD size, so its head count is not known: pass "
                         "vit_heads=N", path=path, field=_ARGS)
    table = state.get("backbone.model.backbone.pos_embed")
    position = 224
    if isinstance(table, torch.Tensor) and table.ndim == 3:
        position = int(round(math.sqrt(table.shape[1] / (16 // tubelet)))) * patch_size
    adapted = sorted({int(k.split(".")[0]) for k in adapter_state})
    down = adapter_state.get(f"{adapted[0]}.down_proj.weight") if adapted else None
    arch = (_count(state, "projection.embed."), _count(state, "projection.stem."), _count(state, "projection.branch."))
    levels = arch[2] + 1
    default_range = AdaTADConfig().regression_range
    if not 1 < levels <= len(default_range) or not arch[0]:
        raise InputError(f"has a projection of {arch[0]} embedding / {arch[1]} stem / {arch[2]} branch layers; the "
                         f"AdaTAD head has 1 to {len(default_range) - 1} branch layers after its embedding",
                         path=path, field=_FIELD)
    classes = int(state["rpn_head.cls_head.weight"].shape[0])
    if len(labels) != classes:
        raise InputError(f"{len(labels)} class names for a detector of {classes} classes", field="labels")
    try:
        config = AdaTADConfig(
            size=size or "s", hidden_size=width, num_layers=_count(encoder_state, "encoder.layer."), num_heads=heads,
            patch_size=patch_size, tubelet_size=tubelet, position_size=position,
            mlp_ratio=encoder_state["encoder.layer.0.intermediate.dense.weight"].shape[0] / width,
            adapter_layers=tuple(adapted), adapter_ratio=(down.shape[0] / width) if down is not None else 0.25,
            adapter_kernel=int(adapter_state[f"{adapted[0]}.dwconv.weight"].shape[-1]) if adapted else 3,
            frames=frames, image_size=image_size, scale_factor=scale_factor, snippet_stride=snippet_stride,
            embd_dim=int(state["projection.embed.0.conv.weight"].shape[0]),
            fpn_dim=int(state["projection.embed.0.conv.weight"].shape[0]),
            head_dim=int(state["rpn_head.cls_convs.0.conv.weight"].shape[0]), n_head=n_head, backbone_arch=arch,
            mha_win_size=(mha_win_size,), head_num_layers=_count(state, "rpn_head.cls_convs.") + 1,
            regression_range=default_range[:levels - 1] + ((default_range[levels - 1][0], 10000),),
            head_droppath=0.1 if any(k.endswith("drop_path_attn.scale") for k in state) else 0.0,
            head_variant="opentad")
    except ValueError as error:
        raise InputError(f"does not give a valid AdaTAD: {error}", path=path, field=_FIELD) from None
    net = build_network(config, classes)
    ours = net.backbone.encoder.embeddings.position_embeddings
    if isinstance(table, torch.Tensor) and (table.shape != ours.shape or not torch.allclose(table.float(), ours,
                                                                                             atol=1e-5)):
        raise InputError("its position table (pos_embed) is not the sinusoidal one of a 16-frame VideoMAE at "
                         f"{position} px, which this port computes", path=path, field=_FIELD)
    load_strict(net.backbone.encoder, encoder_state, path, family=f"{FAMILY} backbone (VideoMAE)")
    if adapter_state:
        load_strict(net.backbone.adapters, adapter_state, path, family=f"{FAMILY} adapters")
    shapes = {k: v.shape for k, v in net.head.state_dict().items()}
    load_strict(net.head, opentad_head_state(state, shapes), path, family=f"{FAMILY} head (OpenTAD ActionFormer)")
    return net.eval()


# ------------------------------------------------------------------------------------------------
# The card and the factory

_DRIVE = "https://drive.google.com/file/d/"
_OPENTAD_FORMAT = ("OpenTAD checkpoint {'epoch', 'state_dict', 'state_dict_ema', 'optimizer', 'scheduler'}; keys "
                   "module.backbone.model.backbone.* (mmaction2 ViT names + blocks.N.adapter.*), module.projection.*, "
                   "module.neck.*, module.rpn_head.*")


def _official(size: str, drive_id: str, mean_ap: float, frames: int = 768, image: int = 160, scale: int = 1
              ) -> WeightTag:
    return WeightTag(
        name=f"thumos14-videomae{'v2' if size == 'g' else ''}-{size}-{frames}x{image}", source="user",
        where=f"Google Drive (browser download) {_DRIVE}{drive_id} (OpenTAD configs/adatad/README.md, THUMOS-14): "
              "pass it as checkpoint=PATH with labels= OpenTAD's data/thumos-14/annotations/category_idx.txt "
              "(tools/prepare_data/thumos/download_annotation.sh); the file is read as it is",
        args={"size": size, "frames": frames, "image_size": image, "scale_factor": scale, "snippet_stride": 4},
        notes=f"{_OPENTAD_FORMAT}. Official THUMOS14 average mAP {mean_ap} (tIoU 0.3:0.7); CC-BY-NC weights "
              "(VideoMAE)")


CARD = ModelCard(
    family=FAMILY,
    description="AdaTAD (CVPR 2024): end-to-end TAL, VideoMAE with temporal-informative adapters + ActionFormer head, "
                "on video files",
    capabilities=(LOCALIZER,),
    tags=(
        _official("s", "1_noys-dyuQFGlXigGzW_sLB7I4Q4-zst", 69.03),
        _official("b", "1KpZjPDb7W3rTIRkOYbe_ViQNElVI7ZO9", 71.14),
        _official("l", "1yijRNA4zeoYnFtTk3N7NyCClihvXFAYK", 73.51),
        _official("h", "1Tpl6GTuWhclZ9b5t6Kswori7az51-DFQ", 74.95),
        _official("g", "1fpac_NXmQBR-g2Lau5FE49LBePPprgMY", 75.06),
        _official("g", "1_pfJRKnjkLzW4EOQNpms1bMJIeMJXpMC", 77.07, frames=1536, image=224, scale=2),
        WeightTag(name="videomae-s-k400-backbone", source="user",
                  where=f"Google Drive {_DRIVE}1BH5BZmdImaZesUfqtW23eBGC341Gui1D (OpenTAD configs/adatad/README.md, "
                        "'Converted Checkpoints'): the VideoMAE-S K400 backbone the S config starts from; pass it as "
                        "--init to `instract-eval train adatad`",
                  notes="mmaction2 state dict (backbone.patch_embed.projection, backbone.blocks.N.mlp.layers.*)"),
    ),
    frame_spec=AdaTADConfig().frame_spec(),
    tokenizer="none (vision-only detector; descriptions are ignored)",
    code_licence="Apache-2.0 (sming256/OpenTAD); Apache-2.0 (transformers VideoMAEModel)",
    weights_licence="CC-BY-NC-4.0 (the VideoMAE backbones the released detectors are built on)",
    paper="Liu, Zhang, Zhao, Ghanem. End-to-End Temporal Action Detection with 1B Parameters Across 1000 Frames. "
          "CVPR 2024. arXiv:2311.17241",
    citation="liu2024adatad",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the released detectors are Google Drive browser downloads (OpenTAD's format, read as they are)",
    checkpoint_formats=("our training recipe's weights.pt ({'recipe': 'adatad', 'state_dict', 'state_dict_ema', "
                        "'labels', 'config'})",
                        _OPENTAD_FORMAT + " (with labels=FILE)",
                        "VideoMAE / VideoMAE V2 fine-tuned .pth or its mmaction2 conversion (training initialisation)"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def adatad(checkpoint: str | os.PathLike | None = None, labels: str | os.PathLike | None = None, weights: str = "ema",
           size: str | None = None, frames: int | None = None, image_size: int | None = None,
           scale_factor: int | None = None, snippet_stride: int | None = None, n_head: int | None = None,
           mha_win_size: int | None = None, vit_heads: int | None = None, window_overlap: float | None = None,
           pre_nms_thresh: float | None = None, pre_nms_topk: int | None = None, nms_method: str | None = None,
           nms_sigma: float | None = None, min_score: float | None = None, max_seg_num: int | None = None,
           iou_threshold: float | None = None, multiclass_nms: bool | None = None,
           threads: int | None = None) -> AdaTADLocalizer:
    """AdaTAD localizing on video files, from our recipe's weights or an official OpenTAD checkpoint.

    Our weights carry their config and class names; ``size`` / ``frames`` / ``image_size`` /
    ``scale_factor`` / ``snippet_stride`` given with them must agree with it. An official
    checkpoint holds neither: ``labels=FILE`` names the classes in id order (OpenTAD's
    ``category_idx.txt``, one per line, or JSON; see `read_label_file`), and the sampling comes
    from the arguments (defaults: the THUMOS14 768x1 / 160 configs: 768 frames, scale 1, snippet
    stride 4, 160 px; the head's 4 attention heads and global attention; ``vit_heads`` only for a
    ViT width that is not an official size). ``weights``: ``ema`` (what OpenTAD evaluates) or
    ``raw``. Test settings: the THUMOS14 configs' (windows overlapping by half, 2000 candidates
    above 0.001 per window, Soft-NMS sigma 0.7 keeping 2000, multi-class).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    if weights not in ("ema", "raw"):
        raise InputError(f"weights must be ema or raw, got {weights!r}", field=_ARGS)
    sampling = {"frames": frames, "image_size": image_size, "scale_factor": scale_factor,
                "snippet_stride": snippet_stride}
    checkpoint_file = read_checkpoint(path, family=FAMILY)
    payload = checkpoint_file.payload.get("object")
    inner = payload.get("state_dict") if isinstance(payload, Mapping) else None
    if isinstance(inner, Mapping) and is_opentad_state(inner) and not isinstance(payload.get("config"), Mapping):
        if labels is None:
            raise InputError(f"{FAMILY}: an official OpenTAD checkpoint has no class names: pass labels=FILE (the "
                             "dataset's category_idx.txt, one class per line in id order)", path=path, field=_ARGS)
        names = read_label_file(labels)
        given = {k: v for k, v in sampling.items() if v is not None}
        try:
            net = load_opentad(path, payload, names, weights=weights, frames=given.get("frames", 768),
                               image_size=given.get("image_size", 160), scale_factor=given.get("scale_factor", 1),
                               snippet_stride=given.get("snippet_stride", 4), n_head=n_head or 4,
                               mha_win_size=-1 if mha_win_size is None else mha_win_size, vit_heads=vit_heads)
        except TypeError as error:
            raise InputError(f"{FAMILY}: {error}", field=_ARGS) from None
        if size is not None and SIZES.get(size, (None,))[0] != net.config.hidden_size:
            raise InputError(f"{FAMILY}: size={size!r} was asked for but the file's ViT is {net.config.hidden_size} "
                             "wide", path=path, field=_ARGS)
    else:
        net, payload = load_adatad(path, weights=weights)
        names = list(payload["labels"]) if labels is None else read_label_file(labels)
        for name, value in {"size": size, **sampling}.items():
            if value is not None and getattr(net.config, name) != value:
                raise InputError(f"{FAMILY}: {name}={value!r} was asked for but the file was trained with "
                                 f"{getattr(net.config, name)!r}", path=path, field=_ARGS)
    defaults = AdaTADTest()
    nms_values = {"method": nms_method, "sigma": nms_sigma, "min_score": min_score, "max_seg_num": max_seg_num,
                  "iou_threshold": iou_threshold, "multiclass": multiclass_nms}
    try:
        nms = dataclasses.replace(defaults.nms, **{k: v for k, v in nms_values.items() if v is not None})
        test = dataclasses.replace(defaults, nms=nms, **{k: v for k, v in (
            ("window_overlap", window_overlap), ("pre_nms_thresh", pre_nms_thresh),
            ("pre_nms_topk", pre_nms_topk)) if v is not None})
    except (TypeError, ValueError) as error:
        raise InputError(f"{FAMILY}: {error}", field=_ARGS) from None
    return AdaTADLocalizer(net, names, test=test, checkpoint=path, threads=threads).eval()
