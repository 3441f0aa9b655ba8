"""ProcVLR / ProcedureVRL (Zhong et al., CVPR 2023): a TimeSformer video tower matched to frozen CLIP text embeddings.

Why a port: the official code (facebookresearch/ProcedureVRL, ``lib/models/vit.py`` and
``tools/emb_extract.py``) hard-codes the TimeSformer-B sizes, imports PySlowFast, fvcore, einops,
CLIP and matplotlib, and never embeds text at test time: it matches the video embedding to a file
of step embeddings made beforehand by ``get_step_emb``. The published checkpoint is PySlowFast's
``{'epoch', 'model_state', 'optimizer_state', 'cfg'}`` (``cfg`` a YAML dump string), keys under
``model.``. The shared loader reads it without running code; every size comes from the shapes.

Facts of the official network kept here (checked against the official code on a tiny random
checkpoint; tests/data/official/procvlr/ has the data):

- Video: the original TimeSformer "divided space-time" block. Patch tokens are ordered patch-major
  (for each position, its T frames). Time attention runs over each position's T frames without the
  class token, goes through ``temporal_fc`` and is added to the patch tokens; space attention runs
  per frame with the *block input's* class token prepended; the T class-token outputs are averaged;
  then ``x = [cls, x_t] + [mean cls_s, space_out]`` and the GELU (exact) MLP. Every LayerNorm has eps
  1e-6; attention uses biased qkv. The class token gets ``pos_embed[0]``; ``time_embed`` is added to
  the patches only. Another frame count or frame size resizes ``time_embed`` / ``pos_embed`` with
  *nearest* interpolation, as ``forward_features`` does at inference.
- Embedding: ``norm(x)[:, 0]`` through ``head`` (a Linear with bias, 768 -> the text width), then L2
  normalised.
- Text: CLIP's text tower, 28 prompt templates per step (``'a photo of {}.'`` ... ``'a demonstration
  of a person practicing {}.'``), ``clip.tokenize(truncate=True)``, ``encode_text`` of each prompt,
  and the plain **mean of the unnormalised** prompt features; normalised when matched. The published
  stage-2 checkpoint carries its frozen CLIP text model (``model.text_model.*``, ViT-B/16's: the
  pre-training config has ``TEXT_MODEL: clip_vit_b_16`` and the shipped step-embedding files are
  512-d); a file without it needs ``clip_checkpoint=`` (an OpenAI CLIP file).
- Score: ``video_emb @ normalize(step_emb).T / DEV.TEMP`` (TEMP 0.02 by default, read from the
  checkpoint's cfg), followed by a softmax over the candidates; ``similarity`` returns those logits.
- Frames (``lib/datasets/howto100m.py``, test mode): the clip (9 s windows, ``DATA.FD``) decoded by
  ffmpeg at ``ceil(8 / duration)`` fps and scaled to 640x360, then 8 frames at
  ``linspace(0, n, 8)`` (clamped: the first and the last frame included), pixels /255, mean 0.45 and
  std 0.225, shorter side 256, centre crop 224. The frame spec here takes 8 evenly spread frames
  (segment midpoints) from the video at its own aspect ratio: the 640x360 squash and the
  end-point sampling are not expressible in a `FrameSpec`, and only differ for videos that are
  not 16:9 and by under one decoded frame in time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import TorchAdapter, require_checkpoint
from ..core.checkpoints import Checkpoint, file_sha256, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.clip_net import OPENAI_SCALARS, LayerNorm32, TextTower
from ..core.shapes import (count_blocks, frame_count, heads_for, optional_positive, require_clips, require_shapes,
                           square_grid)
from ..core.tokenizers import openai_tokenize
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["ProcVLRDimensions", "ProcVLRVision", "ProcVLR", "procvlr", "procvlr_frame_spec", "PROMPTS",
           "load_procvlr", "CARD"]

FAMILY = "procvlr"
MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)
DEFAULT_TEMPERATURE = 0.02  # lib/config/defaults.py, DEV.TEMP

# tools/emb_extract.py, get_step_emb: the templates each step description is filled into.
PROMPTS = tuple(f"a {noun} of {middle}{{}}." for noun in ("photo", "video", "example", "demonstration")
                for middle in ("", "a person ", "a person using ", "a person doing ", "a person during ",
                               "a person performing ", "a person practicing "))

_SIGNATURE_KEYS = ("time_embed", "blocks.0.temporal_attn.qkv.weight", "blocks.0.temporal_fc.weight", "head.weight")
_SIZE_KEYS = {"time_embed": 3, "cls_token": 3, "pos_embed": 3, "patch_embed.proj.weight": 4,
              "blocks.0.mlp.fc1.weight": 2, "head.weight": 2}
_TEXT_SIZE_KEYS = {"token_embedding.weight": 2, "positional_embedding": 2, "ln_final.weight": 1,
                   "text_projection": 2}
# Parts of the pre-training / fine-tuning model that the zero-shot embedding does not use.
_UNUSED_PREFIXES = ("order_tfm.", "head_cls.", "head_n.", "head_v.", "text_model.")


def procvlr_frame_spec(frames: int = 8, crop: int = 224) -> FrameSpec:
    """The official test transform: evenly spread frames, shorter side 256 (for a 224 crop), centre crop."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=round(crop * 256 / 224), crop=crop, mean=MEAN,
                     std=STD, resize="short_side", interpolation="bilinear", value_range=1.0)


@dataclass(frozen=True)
class ProcVLRDimensions:
    """The sizes of a ProcVLR model, read from its tensors."""

    width: int
    layers: int
    heads: int
    mlp: int
    patch_size: int
    image_size: int
    checkpoint_frames: int
    embed_dim: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int

    @classmethod
    def from_state_dicts(cls, video: Mapping[str, torch.Tensor], text: Mapping[str, torch.Tensor],
                         source: str | os.PathLike, *, vision_heads: int | None = None,
                         text_heads: int | None = None) -> ProcVLRDimensions:
        width = video["cls_token"].shape[-1]
        patch = video["patch_embed.proj.weight"].shape[-1]
        grid = square_grid(video["pos_embed"].shape[1] - 1, "pos_embed", source)
        text_width = text["ln_final.weight"].shape[0]
        return cls(width=width, layers=count_blocks(video, "blocks."), heads=heads_for(vision_heads, width, "vision_heads"),
                   mlp=video["blocks.0.mlp.fc1.weight"].shape[0], patch_size=patch, image_size=grid * patch,
                   checkpoint_frames=video["time_embed"].shape[1], embed_dim=video["head.weight"].shape[0],
                   context_length=text["positional_embedding"].shape[0], vocab_size=text["token_embedding.weight"].shape[0],
                   text_width=text_width, text_layers=count_blocks(text, "transformer.resblocks."),
                   text_heads=heads_for(text_heads, text_width, "text_heads"))


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    """TimeSformer's divided space-time block (see the module docstring)."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = LayerNorm32(width, eps=1e-6)
        self.attn = _Attention(width, heads)
        self.temporal_norm1 = LayerNorm32(width, eps=1e-6)
        self.temporal_attn = _Attention(width, heads)
        self.temporal_fc = nn.Linear(width, width)
        self.norm2 = LayerNorm32(width, eps=1e-6)
        self.mlp = _Mlp(width, hidden)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        batch, _, width = x.shape
        cls, patches = x[:, :1], x[:, 1:]
        positions = patches.shape[1] // frames
        time_in = patches.reshape(batch * positions, frames, width)  # patch-major: each position's frames
        time_out = self.temporal_fc(self.temporal_attn(self.temporal_norm1(time_in)).reshape(batch, -1, width))
        xt = patches + time_out
        space_in = xt.view(batch, positions, frames, width).transpose(1, 2).reshape(batch * frames, positions, width)
        space_in = torch.cat([cls.repeat_interleave(frames, dim=0), space_in], dim=1)
        space_out = self.attn(self.norm1(space_in))
        cls_out = space_out[:, 0].view(batch, frames, width).mean(dim=1, keepdim=True)
        space_out = space_out[:, 1:].view(batch, frames, positions, width).transpose(1, 2).reshape(batch, -1, width)
        x = torch.cat([cls, xt], dim=1) + torch.cat([cls_out, space_out], dim=1)
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)


class ProcVLRVision(nn.Module):
    """The official ``VisionTransformer``'s zero-shot path with its parameter names: ``[B, T, 3, H, W]``
    frames to the L2-normalised ``head`` projection of the class token."""

    def __init__(self, dims: ProcVLRDimensions):
        super().__init__()
        width = dims.width
        self.dims = dims
        self.patch_embed = _PatchEmbed(width, dims.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, (dims.image_size // dims.patch_size) ** 2 + 1, width))
        self.time_embed = nn.Parameter(torch.zeros(1, dims.checkpoint_frames, width))
        self.blocks = nn.ModuleList([_Block(width, dims.heads, dims.mlp) for _ in range(dims.layers)])
        self.norm = LayerNorm32(width, eps=1e-6)
        self.head = nn.Linear(width, dims.embed_dim)

    def _positions(self, rows: int, cols: int) -> torch.Tensor:
        table = self.pos_embed
        if rows * cols + 1 == table.shape[1]:
            return table
        grid = round((table.shape[1] - 1) ** 0.5)  # forward_features: nearest resize of the square grid
        other = table[:, 1:].transpose(1, 2).reshape(1, table.shape[2], grid, grid)
        other = F.interpolate(other, size=(rows, cols), mode="nearest").flatten(2).transpose(1, 2)
        return torch.cat([table[:, :1], other], dim=1)

    def _times(self, frames: int) -> torch.Tensor:
        table = self.time_embed
        if frames == table.shape[1]:
            return table
        return F.interpolate(table.transpose(1, 2), size=frames, mode="nearest").transpose(1, 2)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        weight = self.patch_embed.proj.weight
        x = self.patch_embed.proj(clips.reshape(batch * frames, *clips.shape[2:]).to(weight.dtype))
        rows, cols = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)  # [(B T), N, D]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self._positions(rows, cols)
        cls = x[:batch, :1]  # every row's class token is the same
        patches = x[:, 1:].reshape(batch, frames, rows * cols, -1).transpose(1, 2)  # [B, N, T, D]
        patches = (patches + self._times(frames).unsqueeze(1)).reshape(batch, rows * cols * frames, -1)
        x = torch.cat([cls, patches], dim=1)
        for block in self.blocks:
            x = block(x, frames)
        return F.normalize(self.head(self.norm(x)[:, 0]), dim=-1)


class ProcVLR(TorchAdapter):
    """ProcVLR dual encoder: normalised video embeddings, prompt-ensembled CLIP text, score cosine / TEMP."""

    name = FAMILY

    def __init__(self, vision: ProcVLRVision, text: TextTower, *, temperature: float, prompts: bool, spec: FrameSpec,
                 checkpoint: str | os.PathLike | None, settings: str = ""):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.vision = vision
        self.text = text
        self.temperature = float(temperature)
        self.prompts = PROMPTS if prompts else ("{}",)

    @property
    def dims(self) -> ProcVLRDimensions:
        return self.vision.dims

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        require_clips(FAMILY, clips)
        return self.vision(clips.to(self.device)).float()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``[N, D]``: per text the mean of its prompts' CLIP features (unnormalised, as get_step_emb saves them)."""
        texts = list(texts)
        filled = [prompt.format(text) for text in texts for prompt in self.prompts]
        ids = self.text.check_ids(openai_tokenize(filled, self.dims.context_length), FAMILY).to(self.device)
        features = self.text.encode_text(ids).float()
        return features.view(len(texts), len(self.prompts), -1).mean(dim=1)

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official logits: cosine divided by ``DEV.TEMP`` (a softmax over the texts gives its probabilities)."""
        return F.normalize(videos.float(), dim=-1) @ F.normalize(texts.float(), dim=-1).T / self.temperature


def _split(loaded: Checkpoint) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    video = {k: v for k, v in loaded.state_dict.items() if not k.startswith(_UNUSED_PREFIXES)}
    text = {k[len("text_model."):]: v for k, v in loaded.state_dict.items() if k.startswith("text_model.")}
    return video, text


def _temperature(payload: Mapping[str, Any], path: os.PathLike | str) -> float:
    cfg = payload.get("cfg")
    if cfg is None:
        return DEFAULT_TEMPERATURE
    if isinstance(cfg, str):
        import yaml

        try:
            cfg = yaml.safe_load(cfg)
        except yaml.YAMLError as error:
            raise InputError(f"has a cfg entry that is not YAML ({str(error).splitlines()[0]})", path=path,
                             field="checkpoint") from None
    dev = cfg.get("DEV") if isinstance(cfg, Mapping) else None
    temp = dev.get("TEMP", DEFAULT_TEMPERATURE) if isinstance(dev, Mapping) else DEFAULT_TEMPERATURE
    if isinstance(temp, bool) or not isinstance(temp, (int, float)) or temp <= 0:
        raise InputError(f"has cfg DEV.TEMP={temp!r}; the temperature must be a positive number", path=path,
                         field="checkpoint")
    return float(temp)


def _clip_text(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Checkpoint]:
    loaded = unwrap_state_dict(read_checkpoint(path, family=f"{FAMILY} CLIP"))
    text = {k: v for k, v in loaded.state_dict.items() if not k.startswith("visual.")}
    absent = [key for key in _TEXT_SIZE_KEYS if key not in text]
    if absent:
        raise InputError(f"is not an OpenAI CLIP checkpoint: it lacks {', '.join(absent)}", path=loaded.path,
                         field="clip_checkpoint")
    return text, loaded


def load_procvlr(checkpoint: str | os.PathLike, *, clip_checkpoint: str | os.PathLike | None = None,
                 vision_heads: int | None = None, text_heads: int | None = None
                 ) -> tuple[ProcVLRVision, TextTower, dict[str, Any]]:
    """The video tower and CLIP text tower from an official ``.pyth`` (and, when the file has no
    ``text_model``, from ``clip_checkpoint``), plus the file's other entries."""
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY), keys=("model_state", "state_dict", "model"),
                               strip=("module.", "model."))
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(loaded.state_dict, _SIZE_KEYS, loaded.path, FAMILY)
    video, text = _split(loaded)
    text_source: str | os.PathLike = loaded.path
    if clip_checkpoint is not None:
        text, clip_file = _clip_text(clip_checkpoint)
        text_source = clip_file.path
    elif not text:
        raise InputError("carries no CLIP text model (model.text_model.*); give the OpenAI CLIP checkpoint of its "
                         "step embeddings as clip_checkpoint=PATH (ViT-B/16 for the published HowTo100M model)",
                         path=loaded.path, field="checkpoint")
    require_shapes(text, _TEXT_SIZE_KEYS, text_source, FAMILY)
    dims = ProcVLRDimensions.from_state_dicts(video, text, loaded.path, vision_heads=vision_heads, text_heads=text_heads)
    if text["text_projection"].shape[1] != dims.embed_dim:
        raise InputError(f"has a head to {dims.embed_dim} dimensions, but the CLIP text model projects to "
                         f"{text['text_projection'].shape[1]} (a CLIP of another size)", path=text_source,
                         field="clip_checkpoint" if clip_checkpoint is not None else "checkpoint")
    vision = ProcVLRVision(dims)
    load_strict(vision, video, loaded.path, family=FAMILY)
    tower = TextTower(dims)
    load_strict(tower, text, text_source, family=f"{FAMILY} CLIP text", ignore_unexpected=(*OPENAI_SCALARS, "logit_scale"))
    return vision.eval(), tower.eval(), loaded.payload


CARD = ModelCard(
    family=FAMILY,
    description="ProcedureVRL / ProcVLR (TimeSformer matched to frozen CLIP text with a 28-prompt ensemble), cosine / 0.02",
    capabilities=(DUAL_ENCODER,),
    tags=(
        WeightTag(name="howto100m", source="user",
                  where="Google Drive (a browser download): the official README's TimeSformer link, folder "
                        "procedurevrl-stg2/checkpoints/checkpoint_epoch_00025.pyth; pass it as checkpoint=PATH",
                  notes="TimeSformer-B pre-trained on HowTo100M (stage 2, epoch 25). The stage-2 model keeps its frozen "
                        "CLIP ViT-B/16 text model in the file; a file without it needs clip_checkpoint=ViT-B-16.pt.",
                  frame_spec=procvlr_frame_spec()),
    ),
    default_tag="howto100m",
    frame_spec=procvlr_frame_spec(),
    tokenizer="OpenAI CLIP BPE (shipped), context 77, clip.tokenize(truncate=True); 28 prompt templates averaged",
    code_licence="CC-BY-NC-SA 3.0 (facebookresearch/ProcedureVRL)",
    weights_licence="CC-BY-NC-SA 3.0 (facebookresearch/ProcedureVRL LICENSE; no separate weights licence)",
    paper="Zhong, Yu, Bai, Li, Yan, Li. Learning Procedure-aware Video Representation from Instructional Videos and "
          "Their Narrations. CVPR 2023. arXiv:2303.17839",
    citation="zhong2023procedurevrl",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the checkpoint is published only in a Google Drive folder (a browser download)",
    checkpoint_formats=("PySlowFast checkpoint (.pyth: {'epoch', 'model_state': {'model.…'}, 'optimizer_state', "
                        "'cfg': YAML})", "plain state dict with the official key names", "safetensors"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def procvlr(checkpoint: str | os.PathLike | None = None, clip_checkpoint: str | os.PathLike | None = None,
            frames: int | None = None, num_frames: int | None = None, prompts: bool = True,
            vision_heads: int | None = None, text_heads: int | None = None) -> ProcVLR:
    """ProcVLR from the official ``checkpoint_epoch_00025.pyth``.

    ``clip_checkpoint``: an OpenAI CLIP file for the text side, when the ``.pyth`` has no
    ``model.text_model`` (or to override it). ``frames`` (or ``num_frames``): frames per clip, default
    the checkpoint's ``time_embed`` length (8); other counts resize it (nearest) as the official
    forward does. ``prompts=False`` embeds the bare text instead of the 28-template average.
    ``vision_heads``/``text_heads``: for files that do not follow width // 64 (the published one does).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    count = frame_count(FAMILY, frames, num_frames)
    optional_positive(FAMILY, vision_heads=vision_heads, text_heads=text_heads)
    if not isinstance(prompts, bool):
        raise InputError(f"{FAMILY}: prompts must be true or false, got {prompts!r}", field="--model-args")
    vision, text, payload = load_procvlr(path, clip_checkpoint=clip_checkpoint, vision_heads=vision_heads,
                                         text_heads=text_heads)
    dims = vision.dims
    spec = procvlr_frame_spec(count or dims.checkpoint_frames, dims.image_size)
    temperature = _temperature(payload, path)
    return ProcVLR(vision, text, temperature=temperature, prompts=prompts, spec=spec, checkpoint=path,
                   settings=f"heads={dims.heads}/{dims.text_heads} temp={temperature:g} prompts={len(PROMPTS) if prompts else 1}"
                            + (f" clip={file_sha256(clip_checkpoint)}" if clip_checkpoint is not None else ""))
