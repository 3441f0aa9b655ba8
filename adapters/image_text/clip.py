"""``clip``: OpenAI CLIP on video, frame by frame (CLIP4Clip's zero-shot convention).

A video is its frames' image embeddings, each L2-normalised, averaged over time and normalised
again (skipping the per-frame normalisation moves the similarity matrix by about 1e-4, see
BASELINES.md). Text is OpenAI's BPE at the checkpoint's context length (77), cut as
``clip.tokenize(truncate=True)`` cuts it. The score is CLIP's: ``exp(logit_scale) * cosine``.

Two on-disk formats load through ``checkpoint=PATH``:

- OpenAI's files (``ViT-B-32.pt`` ...): TorchScript archives of fp16 weights, or plain state dicts
  with OpenAI's key names (also inside ``state_dict``/``model`` wrappers, ``module.`` prefixes),
  built into our port (`instract_eval.adapters.core.clip_net`) with every size read from the shapes;
- Hugging Face ``CLIPModel`` directories (``save_pretrained``: ``config.json`` + weights), through
  transformers, read offline in float32 with every weight accounted for
  (`instract_eval.adapters.core.hf`): a missing, unexpected or mis-shaped weight is refused in one
  line instead of re-initialised.

Frames follow OpenAI's preprocessing: shorter side to the input resolution with bicubic
antialiasing, centre crop, CLIP mean/std; 8 frames spread uniformly over the clip by default
(``frames=``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import read_checkpoint, unwrap_state_dict
from ..core.clip_net import ClipNet, cosine_logits, mean_of_normalised_frames, per_frame
from ..core.hf import (hf_model_directory, load_hf_pretrained, pooled_features, read_hf_config, through_end_token,
                       transformers_class)
from ..core.tokenizers import openai_tokenize
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["ClipAdapter", "clip", "clip_frame_spec", "load_hf_clip"]

_OPENAI = "https://openaipublic.azureedge.net/clip/models"


def clip_frame_spec(size: int, frames: int = 8) -> FrameSpec:
    """OpenAI's ``_transform(size)``: bicubic shorter side, centre crop, CLIP statistics."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=size, mean=CLIP_MEAN, std=CLIP_STD,
                     interpolation="bicubic")


def _openai_tag(name: str, file: str, sha256: str, size: int) -> WeightTag:
    return WeightTag(name=name, source="url", url=f"{_OPENAI}/{sha256}/{file}", sha256=sha256,
                     frame_spec=clip_frame_spec(size))


def _hub_tag(name: str, hub_id: str, size: int) -> WeightTag:
    return WeightTag(name=name, source="hub", hub_id=hub_id, frame_spec=clip_frame_spec(size),
                     notes="Hugging Face CLIPModel layout (transformers)")


CARD = ModelCard(
    family="clip",
    description="OpenAI CLIP per frame: normalised frame embeddings averaged (CLIP4Clip zero-shot), 100·cosine",
    capabilities=(DUAL_ENCODER,),
    tags=(
        _openai_tag("vit-b-32", "ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", 224),
        _openai_tag("vit-b-16", "ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", 224),
        _openai_tag("vit-l-14", "ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", 224),
        _openai_tag("vit-l-14-336", "ViT-L-14-336px.pt",
                    "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", 336),
        _hub_tag("hf-vit-b-32", "openai/clip-vit-base-patch32", 224),
        _hub_tag("hf-vit-b-16", "openai/clip-vit-base-patch16", 224),
        _hub_tag("hf-vit-l-14", "openai/clip-vit-large-patch14", 224),
        _hub_tag("hf-vit-l-14-336", "openai/clip-vit-large-patch14-336", 336),
    ),
    default_tag="vit-b-32",
    frame_spec=clip_frame_spec(224),
    tokenizer="OpenAI CLIP BPE (shipped), context 77",
    code_licence="MIT (openai/CLIP)",
    weights_licence="MIT (OpenAI CLIP)",
    paper="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021",
    citation="radford2021learning",
    checkpoint_formats=("OpenAI TorchScript .pt", "OpenAI state dict", "Hugging Face CLIPModel directory"),
    code_version="1",
)


class ClipAdapter(TorchAdapter):
    """A CLIP network (our port or transformers' ``CLIPModel``) as a video-text dual encoder."""

    name = "clip"

    def __init__(self, net: Any, *, hf: bool, context_length: int, spec: FrameSpec, checkpoint: Path):
        super().__init__(spec=spec, checkpoint=checkpoint)
        self.net = net
        self.hf = hf
        self.context_length = context_length

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        if self.hf:
            return pooled_features(self.net.get_image_features(pixel_values=images))
        return self.net.encode_image(images)

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, D]`` unit vectors."""
        return mean_of_normalised_frames(per_frame(self._images, clips.to(self.device)))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` (not normalised; `similarity` normalises)."""
        ids = openai_tokenize(list(texts), self.context_length).to(self.device)
        if self.hf:
            features = self.net.get_text_features(input_ids=ids, attention_mask=through_end_token(ids))
        else:
            features = self.net.encode_text(ids)
        return pooled_features(features).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """CLIP's score, ``exp(logit_scale) * cosine``."""
        return cosine_logits(videos, texts, self.net.logit_scale.detach().float().cpu())


def load_hf_clip(path: Path, model: str = "clip") -> tuple[Any, int, int]:
    """transformers ``CLIPModel`` from a ``save_pretrained`` directory, offline: (model, size, context)."""
    directory = hf_model_directory(path, model)
    read_hf_config(directory, model, ("clip",), reads="a CLIPModel")
    net = load_hf_pretrained(transformers_class("CLIPModel", model, directory), directory, model)
    return net, int(net.config.vision_config.image_size), int(net.config.text_config.max_position_embeddings)


@register_model("clip", card=CARD)
def clip(checkpoint: str | os.PathLike | None = None, frames: int = 8, vision_heads: int | None = None,
         text_heads: int | None = None) -> ClipAdapter:
    """OpenAI CLIP from an OpenAI ``.pt`` file or a Hugging Face CLIPModel directory.

    ``frames``: frames per clip (uniform). ``vision_heads``/``text_heads``: attention heads, for
    checkpoints that do not follow OpenAI's width // 64 rule (files of the OpenAI format do).
    """
    path = require_checkpoint("clip", checkpoint)
    frames = positive_int("clip", "frames", frames)
    if path.is_dir():
        net, size, context = load_hf_clip(path)
        return ClipAdapter(net, hf=True, context_length=context, spec=clip_frame_spec(size, frames), checkpoint=path)
    state = unwrap_state_dict(read_checkpoint(path, family="clip")).state_dict
    net = ClipNet.from_state_dict(state, path, family="clip", vision_heads=vision_heads, text_heads=text_heads)
    return ClipAdapter(net, hf=False, context_length=net.dims.context_length,
                       spec=clip_frame_spec(net.dims.image_size, frames), checkpoint=path)
