"""ViCLIP (Wang et al., InternVid, ICLR 2024): a CLIP ViT with joint space-time attention over all frames.

Why a port: the official code (OpenGVLab/InternVideo, ``Data/InternVid/viclip/``) builds the model
from two hard-coded sizes (``size='l'`` or ``'b'``), imports timm and decord-era helpers, and
moves tensors to CUDA in its demo. The network is small enough to write once here, reusing the
OpenAI CLIP blocks and text tower of `instract_eval.adapters.core.clip_net`, with every size read
from the checkpoint's tensors so the published files and a tiny test file load through the same code.

Facts of the official network that this port keeps (each checked against the official code on a
tiny random checkpoint; ``tests/data/official/viclip/`` has the data and the script):

- Checkpoint: ``ViClip-InternVid-10M-FLT.pth`` is ``{'model': state_dict}`` in fp32, keys
  ``vision_encoder.*``, ``text_encoder.*`` and the training temperature ``temp``, loaded strictly
  by the official ``ViCLIP.__init__``.
- Vision: a Conv3d patch embedding with a (1, p, p) kernel (frames stay separate), the class token
  and spatial positions per frame, then ``temporal_positional_embedding`` (one row per frame)
  added to the patch tokens only -- the single class token of the video gets none. All patches of
  all frames and the one class token then go through one transformer together (joint space-time
  attention; no per-frame grouping). ``ln_post`` is applied to every token, the class token is
  taken and projected. With a single frame the official forward adds the *mean* temporal row.
- Frame count: the temporal embedding has the trained length (8). The official evaluation
  (``InternVideo1/Pretrain/ViCLIP/tasks/shared_utils.py``, ``interpolate_pos_embed_vit``) builds
  the model for the clip length and adapts the table: fewer frames keep the first rows, more
  frames interpolate it linearly (``align_corners=False``). The same rule is applied here for
  whatever frame count a clip has, so any count works; ``frames=`` sets how many are sampled.
- Text: OpenAI's causal transformer (heads = width // 64: 12 for L, 8 for B), ``ln_final``, the
  feature at the highest id (the end token), ``text_projection``; CLIP BPE cut to **32** tokens as
  ``tokenize(truncate=True)`` cuts it (first 31 ids, then the end token).
- ``get_vid_features`` and ``get_text_features`` L2-normalise; the official score
  (``get_predict_label``) is ``100 * cosine``. ``temp`` is a training temperature and does not
  enter the score.
- Frames (``demo.ipynb`` / ``frames2tensor``): each frame squashed to 224 x 224 (no crop), bilinear,
  ImageNet mean/std. The demo resizes with OpenCV's ``INTER_LINEAR``, which does not antialias
  when shrinking; the harness's bilinear resize does, so decoded inputs differ slightly from the
  demo's (the network itself is exact).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, FrameSpec

from ..cards import SUPPORTED, ModelCard, WeightTag
from ..core.base import TorchAdapter, require_checkpoint
from ..core.checkpoints import load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.clip_net import LayerNorm32, TextTower, Transformer, cosine
from ..core.shapes import (count_blocks, embedding_width, frame_count, heads_for, optional_positive, require_clips,
                           require_patch_count, require_shapes, square_grid)
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["ViclipDimensions", "JointSpaceTimeVision", "ViclipNet", "ViCLIP", "viclip", "viclip_frame_spec",
           "resize_temporal", "load_viclip_net", "CARD"]

FAMILY = "viclip"
SCORE_SCALE = 100.0


def viclip_frame_spec(frames: int = 8, size: int = 224) -> FrameSpec:
    """The demo's preprocessing: squash to ``size`` x ``size``, bilinear, ImageNet statistics, no crop."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=None, mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, resize="squash", interpolation="bilinear")


# ------------------------------------------------------------------------------------------------
# ViCLIP


_SIGNATURE_KEYS = ("vision_encoder.temporal_positional_embedding", "text_encoder.token_embedding.weight")
_SIZE_KEYS = {"vision_encoder.conv1.weight": 5, "vision_encoder.class_embedding": 1,
              "vision_encoder.positional_embedding": 2, "vision_encoder.temporal_positional_embedding": 3,
              "vision_encoder.proj": 2, "text_encoder.token_embedding.weight": 2,
              "text_encoder.positional_embedding": 2, "text_encoder.ln_final.weight": 1,
              "text_encoder.text_projection": 2}


@dataclass(frozen=True)
class ViclipDimensions:
    """The sizes of a ViCLIP model, read from its tensors."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    patch_size: int
    image_size: int
    checkpoint_frames: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                        vision_heads: int | None = None, text_heads: int | None = None) -> ViclipDimensions:
        conv = state["vision_encoder.conv1.weight"]
        if conv.shape[2] != 1:
            raise InputError(f"vision_encoder.conv1 has a temporal kernel of {conv.shape[2]} frames; ViCLIP's "
                             "published models (and this port) use 1", path=source, field="checkpoint")
        grid = square_grid(state["vision_encoder.positional_embedding"].shape[0] - 1,
                           "vision_encoder.positional_embedding", source)
        vision_width = conv.shape[0]
        text_width = state["text_encoder.ln_final.weight"].shape[0]
        embed = embedding_width(state, "vision_encoder.proj", "text_encoder.text_projection", source)
        return cls(
            embed_dim=embed,
            vision_width=vision_width,
            vision_layers=count_blocks(state, "vision_encoder.transformer.resblocks."),
            vision_heads=heads_for(vision_heads, vision_width, "vision_heads"),
            patch_size=conv.shape[-1],
            image_size=grid * conv.shape[-1],
            checkpoint_frames=state["vision_encoder.temporal_positional_embedding"].shape[1],
            context_length=state["text_encoder.positional_embedding"].shape[0],
            vocab_size=state["text_encoder.token_embedding.weight"].shape[0],
            text_width=text_width,
            text_layers=count_blocks(state, "text_encoder.transformer.resblocks."),
            text_heads=heads_for(text_heads, text_width, "text_heads"),
        )


def resize_temporal(table: torch.Tensor, frames: int) -> torch.Tensor:
    """The trained ``[1, R, D]`` temporal table for ``frames`` frames, as the official evaluation
    adapts it: the first rows when fewer, linear interpolation (align_corners=False) when more."""
    rows = table.shape[1]
    if frames == rows:
        return table
    if frames < rows:
        return table[:, :frames]
    return F.interpolate(table.float().transpose(1, 2), size=frames, mode="linear",
                         align_corners=False).transpose(1, 2).to(table.dtype)


class JointSpaceTimeVision(nn.Module):
    """ViCLIP's video ViT: ``[B, T, 3, H, W]`` to ``[B, embed_dim]`` (the projected class token).

    ``frames`` is the count the model is built for (its temporal table is the trained one adapted
    to that count); it only matters for single-frame input, which gets that table's mean row.
    """

    def __init__(self, dims: ViclipDimensions, frames: int):
        super().__init__()
        width, patch = dims.vision_width, dims.patch_size
        self.dims = dims
        self.frames = frames
        self.conv1 = nn.Conv3d(3, width, (1, patch, patch), (1, patch, patch), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((dims.image_size // patch) ** 2 + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, dims.checkpoint_frames, width))
        self.ln_pre = LayerNorm32(width)
        self.transformer = Transformer(width, dims.vision_layers, dims.vision_heads)
        self.ln_post = LayerNorm32(width)
        self.proj = nn.Parameter(torch.zeros(width, dims.embed_dim))

    def temporal_rows(self, frames: int) -> torch.Tensor:
        if frames == 1:
            return resize_temporal(self.temporal_positional_embedding, self.frames).mean(1, keepdim=True)
        return resize_temporal(self.temporal_positional_embedding, frames)

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + T * patches, width]`` transformer input (after ``ln_pre``): the class token,
        then the patches frame by frame."""
        batch, frames = clips.shape[:2]
        x = self.conv1(clips.transpose(1, 2).to(self.conv1.weight.dtype))  # [B, W, T, h, w]
        width, grid = x.shape[1], x.shape[3] * x.shape[4]
        require_patch_count(FAMILY, clips, grid, self.positional_embedding.shape[0] - 1, self.dims.image_size)
        patches = x.permute(0, 2, 3, 4, 1).reshape(batch, frames, grid, width)
        patches = patches + self.positional_embedding[1:].to(x.dtype)
        patches = patches + self.temporal_rows(frames).to(x.dtype).unsqueeze(2)
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype).expand(batch, 1, width)
        return self.ln_pre(torch.cat([cls, patches.reshape(batch, frames * grid, width)], dim=1))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        tokens = self.transformer(self.embed(clips).transpose(0, 1)).transpose(0, 1)
        return self.ln_post(tokens)[:, 0] @ self.proj

    def features(self, clips: torch.Tensor,
                 transformer: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected class token ``[B, E]`` and every patch token after ``ln_post`` and ``proj``,
        per frame, ``[B, T, patches, E]`` (what InstrAction's Action Perceiver reads).

        ``transformer`` replaces ``self.transformer`` on the sequence-first tokens (a caller that
        runs the same blocks with stochastic depth while training); the class token equals `forward`'s.
        """
        batch, frames = clips.shape[:2]
        tokens = (transformer or self.transformer)(self.embed(clips).transpose(0, 1)).transpose(0, 1)
        projected = self.ln_post(tokens) @ self.proj
        return projected[:, 0], projected[:, 1:].reshape(batch, frames, -1, projected.shape[-1])


class ViclipNet(nn.Module):
    """The whole model with the official key names (``vision_encoder.*``, ``text_encoder.*``)."""

    def __init__(self, dims: ViclipDimensions, frames: int | None = None):
        super().__init__()
        self.dims = dims
        self.vision_encoder = JointSpaceTimeVision(dims, frames or dims.checkpoint_frames)
        self.text_encoder = TextTower(dims)


def load_viclip_net(checkpoint: str | os.PathLike, *, frames: int | None = None, vision_heads: int | None = None,
                    text_heads: int | None = None) -> ViclipNet:
    """The network sized and filled from a ViCLIP checkpoint (``{'model': ...}`` or a bare state dict)."""
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY))
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(loaded.state_dict, _SIZE_KEYS, loaded.path, FAMILY)
    dims = ViclipDimensions.from_state_dict(loaded.state_dict, loaded.path, vision_heads=vision_heads,
                                            text_heads=text_heads)
    net = ViclipNet(dims, frames)
    load_strict(net, loaded.state_dict, loaded.path, family=FAMILY, ignore_unexpected=("temp",))
    return net.eval()


class ViCLIP(TorchAdapter):
    """ViCLIP dual encoder: unit-length video and text embeddings, score ``100 * cosine``."""

    name = FAMILY

    def __init__(self, net: ViclipNet, *, spec: FrameSpec, checkpoint: str | os.PathLike | None, settings: str = ""):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net

    @property
    def dims(self) -> ViclipDimensions:
        return self.net.dims

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` normalised frames to ``[B, D]`` unit vectors (``get_vid_features``)."""
        require_clips(FAMILY, clips)
        return F.normalize(self.net.vision_encoder(clips.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` unit vectors (``get_text_features``), 32-token context."""
        tower = self.net.text_encoder
        ids = tower.tokenize(texts, FAMILY).to(self.device)
        return F.normalize(tower.encode_text(ids).float(), dim=-1)

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official score, ``100 * cosine`` (``get_predict_label`` before its softmax)."""
        return SCORE_SCALE * cosine(videos, texts)


# ------------------------------------------------------------------------------------------------
# The card and the factory

_ALIYUN = "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/internvideo/viclip"
_ONEDRIVE = "https://pjlab-my.sharepoint.cn/:u:/g/personal/wangyi_pjlab_org_cn"
_FORMAT_NOTE = ("Listed in the InternVid model zoo; assumed to share the 10M-FLT file's {'model': ...} layout "
                "(loading checks every key and shape).")


def _aliyun_tag(name: str, file: str, data: str) -> WeightTag:
    return WeightTag(name=name, source="url", url=f"{_ALIYUN}/{file}", frame_spec=viclip_frame_spec(8),
                     notes=f"ViCLIP-L/14 trained on {data}. {_FORMAT_NOTE}")


def _onedrive_tag(name: str, link: str, data: str) -> WeightTag:
    return WeightTag(name=name, source="user", frame_spec=viclip_frame_spec(8),
                     where=f"OneDrive (a browser download; no direct link): {_ONEDRIVE}/{link}; "
                           "pass the downloaded .pth as checkpoint=PATH",
                     notes=f"ViCLIP-B/16 trained on {data}. {_FORMAT_NOTE}")


CARD = ModelCard(
    family=FAMILY,
    description="ViCLIP (InternVid): CLIP ViT with joint space-time attention, 8 frames, 32-token text, 100·cosine",
    capabilities=(DUAL_ENCODER,),
    tags=(
        WeightTag(name="l14-10m-flt", source="hub", hub_id="OpenGVLab/ViCLIP", filename="ViClip-InternVid-10M-FLT.pth",
                  frame_spec=viclip_frame_spec(8),
                  notes="ViCLIP-L/14 on InternVid-10M-FLT (the released model, 1.7 GB fp32). Mirror: "
                        f"{_ALIYUN}/ViClip-InternVid-10M-FLT.pth"),
        _aliyun_tag("l14-10m-div", "ViCLIP-L_InternVid-DIV-10M.pth", "InternVid-10M-DIV"),
        _aliyun_tag("l14-webvid-10m", "ViCLIP-L_WebVid-10M.pth", "WebVid-10M"),
        _aliyun_tag("l14-10m", "ViCLIP-L_InternVid-10M.pth", "InternVid-10M"),
        _aliyun_tag("l14-50m", "ViCLIP-L_InternVid-50M.pth", "InternVid-50M"),
        _aliyun_tag("l14-200m", "ViCLIP-L_InternVid-200M.pth", "InternVid-200M"),
        _onedrive_tag("b16-10m-flt", "EY6ac22ZVzJLm1-wm_9gPaMBm5MFg36GKTxlkwTemgmKzQ?e=mH6u6A", "InternVid-10M-FLT"),
        _onedrive_tag("b16-200m", "EVGBg6kq4M1MjbeSdqiXsaMBaBduhR7CQCT11JR4edmZ8Q?e=ILtTfM", "InternVid-200M"),
    ),
    default_tag="l14-10m-flt",
    frame_spec=viclip_frame_spec(8),
    tokenizer="OpenAI CLIP BPE (shipped), context 32, clip.tokenize(truncate=True) cut",
    code_licence="Apache-2.0 (OpenGVLab/InternVideo)",
    weights_licence="MIT (Hugging Face model card of OpenGVLab/ViCLIP)",
    paper="Wang et al. InternVid: A Large-scale Video-Text Dataset for Multimodal Understanding and Generation. "
          "ICLR 2024. arXiv:2307.06942",
    citation="wang2023internvid",
    status=SUPPORTED,
    checkpoint_formats=("ViCLIP .pth ({'model': state_dict}, fp32)", "bare ViCLIP state dict (.pth or safetensors)"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def viclip(checkpoint: str | os.PathLike | None = None, frames: int | None = None, num_frames: int | None = None,
           vision_heads: int | None = None, text_heads: int | None = None) -> ViCLIP:
    """ViCLIP from an official checkpoint (``ViClip-InternVid-10M-FLT.pth`` and the other zoo files).

    ``frames`` (or the official name ``num_frames``): frames per clip; default the checkpoint's
    temporal-embedding length (8). Other counts adapt that embedding as the official evaluation
    does (first rows for fewer, linear interpolation for more). ``vision_heads``/``text_heads``:
    attention heads, for checkpoints that do not follow the width // 64 rule (published ones do).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    count = frame_count(FAMILY, frames, num_frames)
    optional_positive(FAMILY, vision_heads=vision_heads, text_heads=text_heads)
    net = load_viclip_net(path, frames=count, vision_heads=vision_heads, text_heads=text_heads)
    dims = net.dims
    spec = viclip_frame_spec(net.vision_encoder.frames, dims.image_size)
    return ViCLIP(net, spec=spec, checkpoint=path,
                  settings=f"heads={dims.vision_heads}/{dims.text_heads};frames={net.vision_encoder.frames}")
