"""InternVideo v1 multimodal (Wang et al., 2022): CLIP with a UniFormerV2-style global video branch.

Why a port: the official inference package (OpenGVLab/InternVideo,
``InternVideo1/Pretrain/Multi-Modalities-Pretraining/InternVideo``: ``load_model``, ``tokenize``,
``encode_video``/``encode_text``) picks its video backbone by the width of ``visual_proj``, whose
builders hard-code the ViT-B/16 and ViT-L/14 sizes, needs timm, decord and a copy of an old
torch attention function, and fixes the clip length when the model is built. The network is
written here once, reusing the OpenAI CLIP blocks and text tower of
`instract_eval.adapters.core.clip_net`, with every size read from the checkpoint so the published
files and a tiny test file load through the same code.

Facts of the official network that this port keeps (each checked against the official code on a
tiny random checkpoint; ``tests/data/official/internvideo/`` has the data and the script):

- Checkpoint: ``InternVideo-MM-L-14.ckpt`` is a PyTorch Lightning checkpoint of the training
  module, ``{'state_dict': {...}, 'epoch', 'global_step', 'hyper_parameters', ...}``. The model
  is its ``clip.*`` keys (``load_model`` keeps only those and strips the prefix; the 2.47 GB file
  holds more, e.g. the captioning decoder, which is ignored). fp32.
- Video backbone: a Conv3d patch embedding with a (1, p, p) kernel, then a plain CLIP ViT run on
  every frame separately (class token, spatial positions, ``ln_pre``, attention within the frame).
  There is no temporal position embedding.
- Global branch (``clip_vit_only_global.Transformer``): after each of the last K backbone layers
  (K = the number of ``dec`` modules: 4 on layers 20-23 for L/14, 8-11 for B/16), the patch tokens
  of all frames get a depthwise 3x3x3 convolution over (time, height, width) added (``dpe``), and
  one learned query (``temporal_cls_token``, shared by all frames) cross-attends to the class and
  patch tokens of every frame (``dec``: query ``ln_1``, keys/values ``ln_3``, then an MLP with
  ``ln_2``). The video feature is ``(1 - s) * query + s * mean over frames of the last layer's
  class tokens``, ``s = sigmoid(balance)`` per channel, then ``visual_ln_post`` and ``visual_proj``.
  Heads are width // 64 for the backbone, the extractor and the text (16/16/12 for L/14).
- Frame count: nothing in the weights depends on it; the official model is built for ``t_size``
  frames (8 by default) and must be given exactly that many. Here any count works (the model is
  the official one built for the clip's length); ``frames=`` sets how many are sampled.
- Text: OpenAI's causal transformer, ``ln_final``, the feature at the highest id, ``text_projection``;
  CLIP BPE with a 77-token context, cut as ``tokenize(truncate=True)`` (the training and zero-shot
  code's setting; the default ``truncate=False`` raises on long text).
- Embeddings are returned raw; the official score (``demo.py``) is ``exp(logit_scale) * cosine``.
- Frames (``load_video``): 8 frames at ``linspace(0, n - 1, 8)``, shorter side to 256 with PIL's
  bilinear filter (the transform's ``'nearest'`` default selects PIL bilinear in its PIL branch),
  centre crop 224, CLIP mean/std. The harness samples segment midpoints instead of linspace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import SUPPORTED, ModelCard, WeightTag
from ..core.base import TorchAdapter, require_checkpoint
from ..core.checkpoints import Checkpoint, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.clip_net import LayerNorm32, Mlp, ResidualBlock, TextTower, cosine_logits
from ..core.shapes import (count_blocks, embedding_width, frame_count, heads_for, optional_positive, require_clips,
                           require_patch_count, require_shapes, square_grid)
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["InternVideoDimensions", "GlobalVideoVision", "InternVideoNet", "InternVideo", "internvideo",
           "internvideo_frame_spec", "load_internvideo_net", "CARD"]

FAMILY = "internvideo"
PREFIX = "clip."


def internvideo_frame_spec(frames: int = 8, size: int = 224) -> FrameSpec:
    """``load_video``'s preprocessing: shorter side to 256 (for 224; scaled alike for other input
    sizes), PIL bilinear, centre crop of the input size, CLIP statistics."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=round(size * 256 / 224), crop=size, mean=CLIP_MEAN,
                     std=CLIP_STD, resize="short_side", interpolation="bilinear")


_SIGNATURE_KEYS = ("visual.transformer.temporal_cls_token", "visual.transformer.balance", "visual_proj")
_SIZE_KEYS = {"visual.conv1.weight": 5, "visual.class_embedding": 1, "visual.positional_embedding": 2,
              "visual.transformer.temporal_cls_token": 3, "visual.transformer.balance": 1, "visual_proj": 2,
              "visual.transformer.dec.0.mlp.c_fc.weight": 2, "token_embedding.weight": 2, "positional_embedding": 2,
              "ln_final.weight": 1, "text_projection": 2, "logit_scale": 0}
# In the file, not in the network: the masked-language-modelling token of pre-training.
_UNUSED = ("text_mask_embedding",)


@dataclass(frozen=True)
class InternVideoDimensions:
    """The sizes of an InternVideo v1 multimodal model, read from its tensors."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    extractor_layers: int
    extractor_mlp: int
    patch_size: int
    image_size: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                        vision_heads: int | None = None, text_heads: int | None = None) -> InternVideoDimensions:
        conv = state["visual.conv1.weight"]
        if conv.shape[2] != 1:
            raise InputError(f"visual.conv1 has a temporal kernel of {conv.shape[2]} frames; InternVideo's "
                             "multimodal models use 1", path=source, field="checkpoint")
        grid = square_grid(state["visual.positional_embedding"].shape[0] - 1, "visual.positional_embedding", source)
        width = conv.shape[0]
        layers = count_blocks(state, "visual.transformer.resblocks.")
        extractors = count_blocks(state, "visual.transformer.dec.")
        if count_blocks(state, "visual.transformer.dpe.") != extractors or not 0 < extractors <= layers:
            raise InputError(f"has {extractors} visual.transformer.dec and "
                             f"{count_blocks(state, 'visual.transformer.dpe.')} dpe modules for {layers} backbone "
                             "layers; the global branch needs one of each per layer it reads (at most all)",
                             path=source, field="checkpoint")
        text_width = state["ln_final.weight"].shape[0]
        embed = embedding_width(state, "visual_proj", "text_projection", source)
        return cls(
            embed_dim=embed,
            vision_width=width,
            vision_layers=layers,
            vision_heads=heads_for(vision_heads, width, "vision_heads"),
            extractor_layers=extractors,
            extractor_mlp=state["visual.transformer.dec.0.mlp.c_fc.weight"].shape[0],
            patch_size=conv.shape[-1],
            image_size=grid * conv.shape[-1],
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            text_width=text_width,
            text_layers=count_blocks(state, "transformer.resblocks."),
            text_heads=heads_for(text_heads, text_width, "text_heads"),
        )


class Extractor(nn.Module):
    """One query token cross-attending to a set of tokens, then an MLP (pre-norm, residual)."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm32(width)
        self.mlp = Mlp(width, hidden)
        self.ln_2 = LayerNorm32(width)
        self.ln_3 = LayerNorm32(width)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``[1, B, W]`` query, ``[S, B, W]`` tokens (sequence-first)."""
        keys = self.ln_3(tokens)
        query = query + self.attn(self.ln_1(query), keys, keys, need_weights=False)[0]
        return query + self.mlp(self.ln_2(query))


class _GlobalTransformer(nn.Module):
    """The per-frame backbone blocks and the global branch on their last outputs."""

    def __init__(self, dims: InternVideoDimensions):
        super().__init__()
        width = dims.vision_width
        self.resblocks = nn.ModuleList([ResidualBlock(width, dims.vision_heads) for _ in range(dims.vision_layers)])
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.dpe = nn.ModuleList([nn.Conv3d(width, width, kernel_size=3, padding=1, groups=width)
                                  for _ in range(dims.extractor_layers)])
        self.dec = nn.ModuleList([Extractor(width, dims.vision_heads, dims.extractor_mlp)
                                  for _ in range(dims.extractor_layers)])
        self.balance = nn.Parameter(torch.zeros(width))
        self.first_read = dims.vision_layers - dims.extractor_layers

    def forward(self, x: torch.Tensor, batch: int, frames: int, side: tuple[int, int]) -> torch.Tensor:
        """``[L, B*T, W]`` frame tokens (class first) to the ``[B, W]`` video feature."""
        length, _, width = x.shape
        query = self.temporal_cls_token.to(x.dtype).expand(1, batch, width)
        for index, block in enumerate(self.resblocks):
            x = block(x)
            if index < self.first_read:
                continue
            j = index - self.first_read
            tokens = x.view(length, batch, frames, width)
            grid = tokens[1:].permute(1, 3, 2, 0).reshape(batch, width, frames, *side)
            position = self.dpe[j](grid).reshape(batch, width, frames, length - 1).permute(3, 0, 2, 1)
            tokens = torch.cat([tokens[:1], tokens[1:] + position], dim=0)
            query = self.dec[j](query, tokens.permute(2, 0, 1, 3).reshape(frames * length, batch, width))
        share = torch.sigmoid(self.balance)
        frame_mean = x.view(length, batch, frames, width)[0].mean(dim=1)
        return (1 - share) * query[0] + share * frame_mean


class GlobalVideoVision(nn.Module):
    """The ``visual`` module: ``[B, T, 3, H, W]`` frames to the ``[B, width]`` video feature."""

    def __init__(self, dims: InternVideoDimensions):
        super().__init__()
        width, patch = dims.vision_width, dims.patch_size
        self.dims = dims
        self.conv1 = nn.Conv3d(3, width, (1, patch, patch), (1, patch, patch), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((dims.image_size // patch) ** 2 + 1, width))
        self.ln_pre = LayerNorm32(width)
        self.transformer = _GlobalTransformer(dims)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        x = self.conv1(clips.transpose(1, 2).to(self.conv1.weight.dtype))  # [B, W, T, h, w]
        width, side = x.shape[1], (x.shape[3], x.shape[4])
        require_patch_count(FAMILY, clips, side[0] * side[1], self.positional_embedding.shape[0] - 1,
                            self.dims.image_size)
        x = x.permute(0, 2, 3, 4, 1).reshape(batch * frames, side[0] * side[1], width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, width)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))
        return self.transformer(x.transpose(0, 1), batch, frames, side)


class InternVideoNet(TextTower):
    """``VideoIntern`` with the official key names: the text tower at top level, ``visual.*``,
    ``visual_ln_post``, ``visual_proj``, ``logit_scale``."""

    def __init__(self, dims: InternVideoDimensions):
        super().__init__(dims)
        self.dims = dims
        self.visual = GlobalVideoVision(dims)
        self.visual_ln_post = LayerNorm32(dims.vision_width)
        self.visual_proj = nn.Parameter(torch.zeros(dims.vision_width, dims.embed_dim))
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.visual_ln_post(self.visual(clips)) @ self.visual_proj


def _model_keys(loaded: Checkpoint) -> Checkpoint:
    """The ``clip.*`` entries without their prefix (as ``load_model`` reads them); a file without
    any ``clip.`` key is taken as a bare ``VideoIntern`` state dict."""
    state = loaded.state_dict
    if any(key.startswith(PREFIX) for key in state):
        state = {key[len(PREFIX):]: value for key, value in state.items() if key.startswith(PREFIX)}
    return Checkpoint(loaded.path, state, loaded.payload, loaded.format)


def load_internvideo_net(checkpoint: str | os.PathLike, *, vision_heads: int | None = None,
                         text_heads: int | None = None) -> InternVideoNet:
    """The network sized and filled from an InternVideo v1 multimodal checkpoint."""
    loaded = _model_keys(unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY)))
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(loaded.state_dict, _SIZE_KEYS, loaded.path, FAMILY)
    dims = InternVideoDimensions.from_state_dict(loaded.state_dict, loaded.path, vision_heads=vision_heads,
                                                 text_heads=text_heads)
    net = InternVideoNet(dims)
    load_strict(net, loaded.state_dict, loaded.path, family=FAMILY, ignore_unexpected=_UNUSED)
    return net.eval()


class InternVideo(TorchAdapter):
    """InternVideo v1 multimodal dual encoder: raw embeddings, score ``exp(logit_scale) * cosine``."""

    name = FAMILY

    def __init__(self, net: InternVideoNet, *, spec: FrameSpec, checkpoint: str | os.PathLike | None,
                 settings: str = ""):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net

    @property
    def dims(self) -> InternVideoDimensions:
        return self.net.dims

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` normalised frames to ``[B, D]`` (``encode_video``, not normalised)."""
        require_clips(FAMILY, clips)
        return self.net.encode_video(clips.to(self.device)).float()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` (``encode_text`` of ``tokenize(truncate=True)``, not normalised)."""
        ids = self.net.tokenize(texts, FAMILY).to(self.device)
        return self.net.encode_text(ids).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official score, ``exp(logit_scale) * cosine`` (demo.py before its softmax)."""
        return cosine_logits(videos, texts, self.net.logit_scale.detach().float().cpu())


# ------------------------------------------------------------------------------------------------
# The card and the factory

_ALIYUN = "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/internvideo/pretrain"

CARD = ModelCard(
    family=FAMILY,
    description="InternVideo v1 multimodal (CLIP + UniFormerV2-style global video branch), exp(logit_scale)·cosine",
    capabilities=(DUAL_ENCODER,),
    tags=(
        WeightTag(name="mm-l14", source="hub", hub_id="OpenGVLab/InternVideo1.0", filename="InternVideo-MM-L-14.ckpt",
                  frame_spec=internvideo_frame_spec(8),
                  notes="ViT-L/14, pre-trained on WebVid-10M + self-collected data (14M); Lightning checkpoint, "
                        "2.47 GB (also holds modules other than the dual encoder, which are ignored)."),
        WeightTag(name="mm-b16", source="url",
                  url=f"{_ALIYUN}/InternVideo-MM-B-16.ckpt",
                  frame_spec=internvideo_frame_spec(8),
                  notes="ViT-B/16 (the README of Multi-Modalities-Pretraining); same Lightning layout assumed "
                        "(loading checks every key and shape)."),
    ),
    default_tag="mm-l14",
    frame_spec=internvideo_frame_spec(8),
    tokenizer="OpenAI CLIP BPE (shipped), context 77, tokenize(truncate=True) cut",
    code_licence="Apache-2.0 (OpenGVLab/InternVideo)",
    weights_licence="not stated on the model page; the repository is Apache-2.0",
    paper="Wang et al. InternVideo: General Video Foundation Models via Generative and Discriminative Learning. "
          "arXiv:2212.03191, 2022",
    citation="wang2022internvideo",
    status=SUPPORTED,
    checkpoint_formats=("PyTorch Lightning .ckpt ({'state_dict': {'clip.…'}, ...}, fp32)",
                        "bare VideoIntern state dict (.pth or safetensors)"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def internvideo(checkpoint: str | os.PathLike | None = None, frames: int | None = None,
                num_frames: int | None = None, vision_heads: int | None = None,
                text_heads: int | None = None) -> InternVideo:
    """InternVideo v1 multimodal from ``InternVideo-MM-L-14.ckpt`` (or the B/16 file).

    ``frames`` (or ``num_frames``, the official config's name): frames per clip, default 8 (the
    official ``t_size``); the network takes any count. ``vision_heads``/``text_heads``: attention
    heads, for checkpoints that do not follow the width // 64 rule (the published ones do).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    count = frame_count(FAMILY, frames, num_frames)
    count = 8 if count is None else count
    optional_positive(FAMILY, vision_heads=vision_heads, text_heads=text_heads)
    net = load_internvideo_net(path, vision_heads=vision_heads, text_heads=text_heads)
    dims = net.dims
    return InternVideo(net, spec=internvideo_frame_spec(count, dims.image_size), checkpoint=path,
                       settings=f"heads={dims.vision_heads}/{dims.text_heads}")
