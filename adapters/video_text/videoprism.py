"""``videoprism``: VideoPrism's video-text encoders (Zhao et al., ICML 2024) through transformers'
``VideoPrismClipModel``.

Why transformers: the published video-text checkpoints (``google/videoprism-lvt-base-f16r288``,
``google/videoprism-lvt-large-f8r288``) are Hugging Face directories converted from the authors'
JAX/Flax release (github.com/google-deepmind/videoprism) and loaded with ``VideoPrismClipModel``,
so that class (transformers 5.23) is the reference. A directory is read with
``from_pretrained(local_files_only=True)``; every size comes from its ``config.json``. Missing,
unexpected or mis-shaped weights are refused in one line (`instract_eval.adapters.core.hf`).

Facts this adapter keeps:

- Score: the cosine of the two embeddings, which the model L2-normalises itself
  (``x * rsqrt(sum(x²) + 1e-6)``). ``VideoPrismClipModel.forward`` does not return logits: it
  returns ``exp(similarity)`` normalised over the videos of the batch (a softmax over the batch),
  so its numbers depend on which other videos are in the batch. The harness therefore computes
  the cosine of ``get_video_features``/``get_text_features`` itself (the class's numbers are a
  column softmax of it, which orders the videos of each text the same way).
- Video: a factorised encoder (spatial layers per frame, then temporal layers per patch), the
  auxiliary layers, an attention-pooling head and a LayerNorm. The temporal position embedding
  has ``num_frames`` rows (16 for the base model, 8 for the large one) and the spatial one a fixed
  grid, so the frame count and resolution are those of the checkpoint (``fixed_frames``).
  transformers can interpolate both (``interpolate_pos_encoding``); ``frames=N`` asks for that,
  which the published models were not evaluated with.
- Text: the checkpoint's SentencePiece tokenizer (``VideoPrismTokenizer``, T5-style, no end token
  appended), padded to ``max_length`` = ``max_position_embeddings`` (64) and truncated, with the
  attention mask, as ``VideoPrismProcessor`` does. The text tower appends a class token after the
  padded sequence and takes its output, under a causal mask that also hides the padding (the class
  token has no position embedding, so the padded length does not change the embedding; without the
  mask it would).
- Frames: ``VideoPrismProcessor`` resizes to 288 x 288 (both sides: a squash, no crop), bicubic
  (the processor class's default), scales to [0, 1] and does not normalise (``do_normalize:
  False``): mean 0, std 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import file_sha256
from ..core.hf import (hf_model_directory, hf_tokenizer, load_hf_pretrained, pooled_features, read_hf_config,
                       transformers_class)
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["VideoPrismAdapter", "videoprism", "videoprism_frame_spec"]

_FIELD = "checkpoint"
_ZERO = (0.0, 0.0, 0.0)
_ONE = (1.0, 1.0, 1.0)


def videoprism_frame_spec(frames: int = 16, image_size: int = 288, fixed: bool = True) -> FrameSpec:
    """``VideoPrismProcessor``: squash to ``image_size`` (bicubic), [0, 1], no mean/std."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=image_size, crop=None, resize="squash",
                     interpolation="bicubic", mean=_ZERO, std=_ONE, fixed_frames=fixed)


def _hub_tag(name: str, frames: int) -> WeightTag:
    return WeightTag(name=name, source="hub", hub_id=f"google/videoprism-{name}",
                     frame_spec=videoprism_frame_spec(frames),
                     notes="Hugging Face VideoPrismClipModel directory with its SentencePiece tokenizer; revision "
                           "not pinned (the hub could not be reached when this was ported)")


CARD = ModelCard(
    family="videoprism",
    description="VideoPrism video-text (LvT): factorised video encoder with attention pooling and a causal text "
                "encoder; cosine of the L2-normalised embeddings",
    capabilities=(DUAL_ENCODER,),
    tags=(_hub_tag("lvt-base-f16r288", 16), _hub_tag("lvt-large-f8r288", 8)),
    default_tag="lvt-base-f16r288",
    frame_spec=videoprism_frame_spec(16),
    tokenizer="the checkpoint's SentencePiece (VideoPrismTokenizer), padded to max_length 64, truncated, with mask",
    code_licence="Apache-2.0 (google-deepmind/videoprism; transformers VideoPrismClipModel)",
    weights_licence="CC-BY-4.0 (google/videoprism-* model cards; not verified offline)",
    paper="Zhao et al., VideoPrism: A Foundational Visual Encoder for Video Understanding, ICML 2024",
    citation="zhao2024videoprism",
    checkpoint_formats=("Hugging Face VideoPrismClipModel directory (config.json + model.safetensors, "
                        "tokenizer files)",),
    code_version="1",
)


class VideoPrismAdapter(TorchAdapter):
    """transformers' ``VideoPrismClipModel`` as a dual encoder; see the module docstring."""

    name = "videoprism"

    def __init__(self, net: Any, tokenizer: Any, *, spec: FrameSpec, checkpoint: Path, interpolate: bool,
                 tokenizer_sha256: str | None = None):
        # A tokenizer from outside the checkpoint directory joins the cache key by its hash.
        settings = [f"frames={spec.num_frames}"] if interpolate else []
        settings += [f"tokenizer={tokenizer_sha256}"] if tokenizer_sha256 else []
        super().__init__(spec=spec, checkpoint=checkpoint, settings=";".join(settings))
        self.net = net
        self.tokenizer = tokenizer
        self.interpolate = interpolate
        vision = net.config.vision_config
        self.num_frames = int(vision.num_frames)
        size = vision.image_size
        self.image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.context_length = int(net.config.text_config.max_position_embeddings)

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, 64]`` ids and mask: padded to max_length and truncated, as ``VideoPrismProcessor``."""
        encoded = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                                 return_tensors="pt")
        return encoded["input_ids"], encoded["attention_mask"]

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        ids, mask = self.tokenize(texts)
        output = self.net.get_text_features(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return pooled_features(output).float()

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"videoprism expects clips [B, T, 3, H, W], got {tuple(clips.shape)}")
        if not self.interpolate:
            if clips.shape[1] != self.num_frames:
                raise ValueError(f"videoprism {self.checkpoint} takes exactly {self.num_frames} frames per clip "
                                 f"(its temporal position embedding), got {clips.shape[1]}")
            if tuple(clips.shape[-2:]) != (self.image_size, self.image_size):
                raise ValueError(f"videoprism {self.checkpoint} takes {self.image_size}x{self.image_size} frames, "
                                 f"got {clips.shape[-2]}x{clips.shape[-1]}")
        output = self.net.get_video_features(pixel_values_videos=clips.to(self.device, torch.float32),
                                             interpolate_pos_encoding=self.interpolate)
        return pooled_features(output).flatten(1).float()     # the pooling head's [B, 1, D] -> [B, D]


@register_model("videoprism", card=CARD)
def videoprism(checkpoint: str | os.PathLike | None = None, frames: int | None = None,
               tokenizer: str | os.PathLike | None = None) -> VideoPrismAdapter:
    """VideoPrism video-text from a Hugging Face ``VideoPrismClipModel`` directory.

    ``frames``: default the checkpoint's ``num_frames``; another count interpolates the temporal
    position embedding (transformers' ``interpolate_pos_encoding``), which the published models were
    not evaluated with. ``tokenizer``: a directory with the SentencePiece tokenizer files, when the
    checkpoint directory has none.
    """
    path = hf_model_directory(require_checkpoint("videoprism", checkpoint), "videoprism")
    read_hf_config(path, "videoprism", ("videoprism",), reads="a VideoPrismClipModel (model_type 'videoprism'; "
                   "the video-only google/videoprism-base/large checkpoints have no text tower)")
    net = load_hf_pretrained(transformers_class("VideoPrismClipModel", "videoprism", path), path, "videoprism")
    source = path if tokenizer is None else Path(os.fspath(tokenizer))
    text_tokenizer = hf_tokenizer(source, "videoprism")
    if text_tokenizer is None:
        raise InputError("ships no tokenizer files (tokenizer.json or spiece.model); pass tokenizer=DIR with "
                         "the published repository's tokenizer", path=source, field="tokenizer" if tokenizer else _FIELD)
    vision = net.config.vision_config
    num_frames = int(vision.num_frames)
    size = vision.image_size
    image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
    wanted = num_frames if frames is None else positive_int("videoprism", "frames", frames)
    spec = videoprism_frame_spec(wanted, image_size, fixed=wanted == num_frames)
    return VideoPrismAdapter(net, text_tokenizer, spec=spec, checkpoint=path, interpolate=wanted != num_frames,
                             tokenizer_sha256=None if tokenizer is None else file_sha256(source))
