"""LaViLa dual encoders (Zhao et al., CVPR 2023): a CLIP-initialised TimeSformer and CLIP's text tower.

Why a port: LaViLa's official code (facebookresearch/LaViLa, ``lavila/models/models.py`` and
``lavila/models/timesformer.py``) builds its model by downloading OpenAI CLIP, hard-codes the BASE
or LARGE widths, and needs timm. Its checkpoints are the training loop's pickle,
``{'epoch', 'state_dict': {'module.…'}, 'criterion', 'best_acc1', 'args': argparse.Namespace}``,
where ``args`` holds ``pathlib`` paths and ``best_acc1`` is a numpy scalar. The shared loader reads
that without running code, and every size here comes from tensor shapes, so the published files
and a tiny test file load through the same code.

Facts of the official network that this port keeps (each one was checked against the official code
on a tiny random checkpoint; tests/data/official/lavila/ has the data):

- Vision, "frozen-in-time" divided attention. The class token and the learned spatial positions
  are followed by ``temporal_embed`` (one row per frame, repeated over the frame's patches), then
  ``ln_pre`` (eps 1e-5). Each block computes ``t = x + time_attn(norm3(x))``, then
  ``s = x + space_attn(norm1(t))`` (the time output reaches the residual only through the space
  attention), then ``s + mlp(norm2(s))``. The block LayerNorms and the final ``norm`` use eps
  1e-6. In both attentions, patch queries attend within their group (same patch over time, or same
  frame over space) plus the class token, and the class token attends to every token. The MLP is
  QuickGELU. The embedding is ``norm(x)[:, 0] @ image_projection``. The optional
  ``alpha_timeattn`` gate (``--timesformer-gated-xattn``) multiplies the time output by
  ``tanh(alpha)``.
- Frame count: the official evaluation builds the model for the clip length it is given and
  resizes the checkpoint's temporal embedding to it (``inflate_positional_embeds``). With more
  frames it interpolates bilinearly (``align_corners=False``); with fewer it keeps the first rows.
  So any frame count works, and ``num_frames`` only sets how many frames are sampled (4 in
  pre-training and most zero-shot tasks, 16 for Charades-Ego and EGTEA).
- Text: OpenAI's transformer under a causal mask, ``ln_final``, the feature at ``argmax`` of the
  ids, then ``text_projection``. Heads are ``width // 64`` (12/8 for BASE, 16/12 for LARGE).
  The tokenizer is CLIP's BPE with SOT and EOT, cut to 77 ids **without** putting EOT back: a
  caption longer than 76 tokens is pooled at SOT (position 0), as the official code does.
- Frames: segment midpoints, shorter side to 224 (336 for the HR model) and centre crop. Pixels
  stay in 0..255 and are normalised with LaViLa's own constants. The red mean is 108.3272985,
  not CLIP's 0.48145466 × 255 = 122.77 (sic, everywhere in the official code); the other two
  means and the three standard deviations are CLIP's × 255.
- Score: cosine of the two projections (eval_zeroshot.py). ``logit_scale`` is a training
  temperature and does not enter the score.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import SUPPORTED, ModelCard, WeightTag
from ..core.base import TorchAdapter, require_checkpoint
from ..core.checkpoints import load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.clip_net import FcMlp, LayerNorm32, TextTower
from ..core.shapes import (count_blocks, frame_count, heads_for, optional_positive, require_clips,
                           require_patch_count, require_shapes, square_grid)
from ..core.tokenizers import clip_bpe, pad_rows
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["LaViLaDimensions", "SpaceTimeVision", "LaViLaNet", "LaViLa", "lavila", "lavila_frame_spec",
           "lavila_tokenize", "load_lavila_net", "temporal_rows", "CARD"]

FAMILY = "lavila"
# LaViLa's normalisation in 0..255 units (the red mean differs from CLIP's: see the docstring).
LAVILA_MEAN = (108.3272985, 116.7460125, 104.09373615000001)
LAVILA_STD = (68.5005327, 66.6321579, 70.32316305)


def lavila_frame_spec(frames: int = 4, size: int = 224) -> FrameSpec:
    """eval_zeroshot.py's transform: segment midpoints, ``Resize(size)`` + ``CenterCrop(size)``, raw
    0..255 pixels normalised with LaViLa's constants."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=size, mean=LAVILA_MEAN, std=LAVILA_STD,
                     resize="short_side", interpolation="bilinear", value_range=255.0)


# Keys every LaViLa dual encoder has: the first two tell it from other families; the sizes are read
# from these (with their number of dimensions).
_SIGNATURE_KEYS = ("visual.temporal_embed", "visual.blocks.0.timeattn.qkv.weight")
_SIZE_KEYS = {"visual.temporal_embed": 3, "visual.cls_token": 3, "visual.pos_embed": 3,
              "visual.patch_embed.proj.weight": 4, "visual.blocks.0.mlp.fc1.weight": 2, "image_projection": 2,
              "token_embedding.weight": 2, "positional_embedding": 2, "ln_final.weight": 1, "text_projection": 2}


@dataclass(frozen=True)
class LaViLaDimensions:
    """The sizes of a LaViLa dual encoder, read from its tensors."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    patch_size: int
    image_size: int
    checkpoint_frames: int
    ln_pre: bool
    patch_bias: bool
    gated_time: bool
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                        vision_heads: int | None = None, text_heads: int | None = None) -> LaViLaDimensions:
        def shape(key: str) -> tuple[int, ...]:
            return tuple(state[key].shape)

        vision_width = shape("visual.cls_token")[-1]
        patch = shape("visual.patch_embed.proj.weight")[-1]
        grid = square_grid(shape("visual.pos_embed")[1] - 1, "visual.pos_embed", source)
        text_width = shape("ln_final.weight")[0]
        return cls(
            embed_dim=shape("text_projection")[1],
            vision_width=vision_width,
            vision_layers=count_blocks(state, "visual.blocks."),
            vision_heads=heads_for(vision_heads, vision_width, "vision_heads"),
            vision_mlp=shape("visual.blocks.0.mlp.fc1.weight")[0],
            patch_size=patch,
            image_size=grid * patch,
            checkpoint_frames=shape("visual.temporal_embed")[1],
            ln_pre="visual.ln_pre.weight" in state,
            patch_bias="visual.patch_embed.proj.bias" in state,
            gated_time="visual.blocks.0.alpha_timeattn" in state,
            context_length=shape("positional_embedding")[0],
            vocab_size=shape("token_embedding.weight")[0],
            text_width=text_width,
            text_layers=count_blocks(state, "transformer.resblocks."),
            text_heads=heads_for(text_heads, text_width, "text_heads"),
        )


def temporal_rows(table: torch.Tensor, frames: int) -> torch.Tensor:
    """The checkpoint's ``[1, R, D]`` temporal embedding for ``frames`` frames, as LaViLa's loader
    resizes it: the first rows when fewer are needed, bilinear interpolation when more."""
    rows = table.shape[1]
    if frames <= rows:
        return table[:, :frames]
    resized = F.interpolate(table.float().unsqueeze(0), size=(frames, table.shape[2]), mode="bilinear",
                            align_corners=False)
    return resized.squeeze(0).to(table.dtype)


class DividedAttention(nn.Module):
    """Multi-head attention within groups of patches (one frame, or one patch position over time),
    with the class token as an extra key in every group and as a query over all tokens."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, frames: int, over: str) -> torch.Tensor:
        batch, length, width = x.shape
        heads, head_dim = self.heads, width // self.heads
        patches = (length - 1) // frames
        q, k, v = self.qkv(x).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # [B, h, L, d]
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # class token: every token

        def grouped(t: torch.Tensor) -> torch.Tensor:
            t = t[:, :, 1:].reshape(batch, heads, frames, patches, head_dim)  # tokens are frame-major
            return t if over == "space" else t.transpose(2, 3)  # [B, h, groups, members, d]

        qg, kg, vg = grouped(q), grouped(k), grouped(v)
        groups = qg.shape[2]
        kg = torch.cat([k[:, :, None, :1].expand(-1, -1, groups, -1, -1), kg], dim=3)
        vg = torch.cat([v[:, :, None, :1].expand(-1, -1, groups, -1, -1), vg], dim=3)
        out = F.scaled_dot_product_attention(qg, kg, vg)
        if over == "time":
            out = out.transpose(2, 3)
        out = torch.cat([cls_out, out.reshape(batch, heads, frames * patches, head_dim)], dim=2)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class SpaceTimeBlock(nn.Module):
    """One TimeSformer block in LaViLa's variant (see the module docstring for the residual wiring)."""

    def __init__(self, width: int, heads: int, hidden: int, *, gated: bool):
        super().__init__()
        self.norm1 = LayerNorm32(width, eps=1e-6)
        self.attn = DividedAttention(width, heads)
        self.timeattn = DividedAttention(width, heads)
        if gated:
            self.alpha_timeattn = nn.Parameter(torch.zeros(()))
        self.norm2 = LayerNorm32(width, eps=1e-6)
        self.mlp = FcMlp(width, hidden)
        self.norm3 = LayerNorm32(width, eps=1e-6)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        time_out = self.timeattn(self.norm3(x), frames, "time")
        if hasattr(self, "alpha_timeattn"):
            time_out = torch.tanh(self.alpha_timeattn) * time_out
        x = x + self.attn(self.norm1(x + time_out), frames, "space")
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int, bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=bias)


class SpaceTimeVision(nn.Module):
    """LaViLa's TimeSformer: ``[B, T, 3, H, W]`` frames to ``[B, width]`` (the normed class token)."""

    def __init__(self, dims: LaViLaDimensions):
        super().__init__()
        width = dims.vision_width
        self.dims = dims
        self.patch_embed = _PatchEmbed(width, dims.patch_size, dims.patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, (dims.image_size // dims.patch_size) ** 2 + 1, width))
        self.temporal_embed = nn.Parameter(torch.zeros(1, dims.checkpoint_frames, width))
        self.ln_pre = LayerNorm32(width, eps=1e-5) if dims.ln_pre else None
        self.blocks = nn.ModuleList([SpaceTimeBlock(width, dims.vision_heads, dims.vision_mlp, gated=dims.gated_time)
                                     for _ in range(dims.vision_layers)])
        self.norm = LayerNorm32(width, eps=1e-6)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        weight = self.patch_embed.proj.weight
        x = self.patch_embed.proj(clips.reshape(batch * frames, *clips.shape[2:]).to(weight.dtype))
        patches = x.shape[2] * x.shape[3]
        require_patch_count(FAMILY, clips, patches, self.pos_embed.shape[1] - 1, self.dims.image_size)
        x = x.flatten(2).transpose(1, 2).reshape(batch, frames * patches, -1)
        time = temporal_rows(self.temporal_embed, frames).to(x.dtype).repeat_interleave(patches, dim=1)
        space = self.pos_embed[:, 1:].to(x.dtype).repeat(1, frames, 1)
        cls = (self.cls_token + self.pos_embed[:, :1]).to(x.dtype).expand(batch, -1, -1)
        x = torch.cat([cls, x + space + time], dim=1)
        if self.ln_pre is not None:
            x = self.ln_pre(x)
        for block in self.blocks:
            x = block(x, frames)
        return self.norm(x)[:, 0]


class LaViLaNet(TextTower):
    """The whole dual encoder with the official parameter names (``module.`` stripped): OpenAI's text
    tower at top level, ``visual.*``, ``image_projection``, ``logit_scale``."""

    def __init__(self, dims: LaViLaDimensions):
        super().__init__(dims)
        self.dims = dims
        self.visual = SpaceTimeVision(dims)
        self.image_projection = nn.Parameter(torch.zeros(dims.vision_width, dims.embed_dim))
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.visual(clips) @ self.image_projection


def lavila_tokenize(texts: Sequence[str], context_length: int) -> torch.Tensor:
    """LaViLa's ``SimpleTokenizer.__call__``: SOT, BPE ids, EOT, then the first ``context_length``
    ids (an over-long row loses its EOT), zero-padded."""
    bpe = clip_bpe()
    rows = [[bpe.sot, *bpe.encode(text), bpe.eot][:context_length] for text in texts]
    return pad_rows(rows, context_length)


class LaViLa(TorchAdapter):
    """LaViLa dual encoder: ``encode_video`` ``[B, T, 3, H, W]`` and ``encode_text`` to 256-d, cosine score."""

    name = FAMILY

    def __init__(self, net: LaViLaNet, *, spec: FrameSpec, checkpoint: str | os.PathLike | None, settings: str = ""):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net

    @property
    def dims(self) -> LaViLaDimensions:
        return self.net.dims

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        require_clips(FAMILY, clips)
        return self.net.encode_video(clips.to(self.device)).float()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        ids = self.net.check_ids(lavila_tokenize(list(texts), self.dims.context_length), FAMILY).to(self.device)
        return self.net.encode_text(ids).float()


def load_lavila_net(checkpoint: str | os.PathLike, *, vision_heads: int | None = None,
                    text_heads: int | None = None) -> tuple[LaViLaNet, dict[str, Any]]:
    """The network sized and filled from an official LaViLa checkpoint, and the file's other entries."""
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY))
    _architecture_of(loaded.payload, loaded.path)
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(loaded.state_dict, _SIZE_KEYS, loaded.path, FAMILY)
    dims = LaViLaDimensions.from_state_dict(loaded.state_dict, loaded.path, vision_heads=vision_heads,
                                            text_heads=text_heads)
    net = LaViLaNet(dims)
    load_strict(net, loaded.state_dict, loaded.path, family=FAMILY)
    return net.eval(), loaded.payload


# ------------------------------------------------------------------------------------------------
# The card and the factory

_BASE_URL = "https://dl.fbaipublicfiles.com/lavila/checkpoints/dual_encoders"
_ARCHITECTURES = ("CLIP_OPENAI_TIMESFORMER_BASE", "CLIP_OPENAI_TIMESFORMER_LARGE")


def _tag(name: str, folder: str, file: str, *, frames: int, notes: str) -> WeightTag:
    md5 = file.split("md5sum_")[1].split(".")[0] if "md5sum_" in file else None
    checksum = f" The file name carries the first six hex digits of its md5 ({md5})." if md5 else ""
    return WeightTag(name=name, source="url", url=f"{_BASE_URL}/{folder}/{file}", args={"frames": frames},
                     frame_spec=lavila_frame_spec(frames), notes=notes + checksum)


CARD = ModelCard(
    family=FAMILY,
    description="LaViLa dual encoder (TimeSformer + CLIP text, Ego4D narrator/rephraser pre-training), cosine",
    capabilities=(DUAL_ENCODER,),
    tags=(
        _tag("base", "ego4d", "clip_openai_timesformer_base.narrator_rephraser.ep_0005.md5sum_d73a9c.pth", frames=4,
             notes="TSF-B, epoch 5: the zero-shot EK-100 MIR / EGTEA / EgoMCQ checkpoint (EGTEA uses frames=16)."),
        _tag("base-ep1", "ego4d", "clip_openai_timesformer_base.narrator_rephraser.ep_0001.md5sum_02dbb9.pth",
             frames=16, notes="TSF-B, epoch 1: the official zero-shot Charades-Ego checkpoint (16 frames)."),
        _tag("large", "ego4d", "clip_openai_timesformer_large.narrator_rephraser.ep_0003.md5sum_c89337.pth", frames=4,
             notes="TSF-L, epoch 3: the zero-shot EK-100 MIR / EGTEA / EgoMCQ checkpoint."),
        _tag("large-ep1", "ego4d", "clip_openai_timesformer_large.narrator_rephraser.ep_0001.md5sum_9a25de.pth",
             frames=16, notes="TSF-L, epoch 1: the official zero-shot Charades-Ego checkpoint (16 frames)."),
        _tag("base-baseline", "ego4d", "clip_openai_timesformer_base.baseline.ep_0003.pth", frames=4,
             notes="TSF-B trained on the original Ego4D narrations only (the paper's baseline)."),
        _tag("base-ek100-mir", "ek100_mir", "clip_openai_timesformer_base.ft_ek100_mir.ep_0085.md5sum_c67d95.pth",
             frames=16, notes="TSF-B fine-tuned on EPIC-KITCHENS-100 multi-instance retrieval (16 frames)."),
        _tag("large-ek100-mir", "ek100_mir", "clip_openai_timesformer_large.ft_ek100_mir.ep_0095.md5sum_bd508b.pth",
             frames=16, notes="TSF-L fine-tuned on EPIC-KITCHENS-100 multi-instance retrieval (16 frames)."),
        _tag("base-charades-ego", "charades_ego",
             "clip_openai_timesformer_base.ft_charades_ego.ep_0005.md5sum_39bf4b.pth", frames=16,
             notes="TSF-B fine-tuned on Charades-Ego (16 frames)."),
        _tag("large-charades-ego", "charades_ego",
             "clip_openai_timesformer_large.ft_charades_ego.ep_0003.md5sum_9448b2.pth", frames=16,
             notes="TSF-L fine-tuned on Charades-Ego (16 frames)."),
    ),
    default_tag="base",
    frame_spec=lavila_frame_spec(4),
    tokenizer="OpenAI CLIP BPE (shipped), context 77, cut without a final EOT as LaViLa's SimpleTokenizer does",
    code_licence="MIT (facebookresearch/LaViLa)",
    weights_licence="MIT (facebookresearch/LaViLa README: the project is MIT-licensed; no separate weights licence)",
    paper="Zhao, Misra, Krähenbühl, Girdhar. Learning Video Representations from Large Language Models. CVPR 2023. "
          "arXiv:2212.04501",
    citation="zhao2023lavila",
    status=SUPPORTED,
    checkpoint_formats=("LaViLa training checkpoint (.pth: {'state_dict': {'module.…'}, 'args': Namespace, …})",
                        "plain state dict with LaViLa key names", "safetensors"),
    code_version="1",
)


def _architecture_of(payload: Mapping[str, Any], path: os.PathLike | str) -> None:
    """Refuse, by the official model name in ``args``, files of LaViLa models that are not ported."""
    name = getattr(payload.get("args"), "model", None)
    if isinstance(name, str) and name not in _ARCHITECTURES:
        raise InputError(f"holds LaViLa model {name}; only the CLIP-text dual encoders "
                         f"({', '.join(_ARCHITECTURES)}) are ported", path=path, field="checkpoint")


@register_model(FAMILY, card=CARD)
def lavila(checkpoint: str | os.PathLike | None = None, frames: int | None = None, num_frames: int | None = None,
           vision_heads: int | None = None, text_heads: int | None = None) -> LaViLa:
    """LaViLa dual encoder from an official checkpoint (``clip_openai_timesformer_*.pth``).

    ``frames`` (or the official name ``num_frames``): frames per clip, segment midpoints; default
    the checkpoint's temporal-embedding length (4 for the Ego4D pre-training files, 16 for the
    fine-tuned ones). Any other count resizes the temporal embedding as LaViLa's evaluation does.
    ``vision_heads``/``text_heads``: attention heads, for checkpoints that do not follow the
    width // 64 rule (every published file does).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    count = frame_count(FAMILY, frames, num_frames)
    optional_positive(FAMILY, vision_heads=vision_heads, text_heads=text_heads)
    net, payload = load_lavila_net(path, vision_heads=vision_heads, text_heads=text_heads)
    dims = net.dims
    spec = lavila_frame_spec(count or dims.checkpoint_frames, dims.image_size)
    return LaViLa(net, spec=spec, checkpoint=path, settings=f"heads={dims.vision_heads}/{dims.text_heads}")
