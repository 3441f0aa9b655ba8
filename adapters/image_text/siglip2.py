"""``siglip2``: SigLIP 2 (and SigLIP) on video, frame by frame, through transformers.

Why transformers: the published weights are Hugging Face directories, converted from big_vision's
JAX checkpoints. The fixed-resolution SigLIP 2 checkpoints (``google/siglip2-base-patch16-224``,
``-so400m-patch14-384``, ...) and the SigLIP ones (``google/siglip-base-patch16-224``, ...) have
``model_type: siglip`` and load as ``SiglipModel``. The NaFlex checkpoints
(``google/siglip2-base-patch16-naflex``, ...) have ``model_type: siglip2`` and load as
``Siglip2Model``. Each directory is read with ``from_pretrained(local_files_only=True)`` and every
size comes from its config. A missing, unexpected or mis-shaped weight is refused in one line
(`instract_eval.adapters.core.hf.load_hf_pretrained`).

Facts this adapter keeps:

- Score: sigmoid, not softmax. ``similarity`` returns the logit ``exp(logit_scale) * cosine +
  logit_bias`` (``SiglipModel.forward``'s ``logits_per_image``). The probability is its sigmoid,
  and the ranking is the same either way.
- Video: each frame's image embedding (the attention-pooling head's output) is L2-normalised, the
  frames are averaged and the mean is normalised again. This is the harness's per-frame convention,
  shared with ``clip``. SigLIP has no video model of its own.
- Text, as in training (big_vision) and in open_clip:
  - lower-cased. transformers' ``Siglip2Tokenizer`` lower-cases, but ``AutoTokenizer`` only gives it
    for NaFlex checkpoints; the fixed-resolution ones name ``GemmaTokenizer``, which does not.
    SigLIP's sentencepiece tokenizer lower-cases and drops punctuation itself. open_clip's SigLIP 2
    configs also drop punctuation (``clean="canonicalize"``); transformers keeps it, and so does this
    adapter;
  - padded on the right to exactly ``max_position_embeddings`` (64, 16 for so400m-patch14-224) and
    truncated with the end token kept. The text tower pools the last position, which is usually
    padding, so any other length or padding side changes the embedding;
  - no attention mask. The towers were trained attending over the padding, and passing the
    tokenizer's mask moves a tiny random model's text embedding to cosine 0.47.
- Frames:
  - fixed resolution: the image processor squashes to ``image_size`` (no crop) with mean/std 0.5,
    bicubic unless the directory's ``preprocessor_config.json`` says otherwise;
  - NaFlex: each frame is resized to the largest patch grid within ``max_num_patches`` that keeps
    its aspect ratio (the processor's binary search, rewritten here), cut into patches in
    (row, column, channel-last) order, padded to ``max_num_patches`` with a mask, and passed with
    its ``spatial_shapes``. The frame spec gives square frames by default, because clips of
    different videos are batched together; ``keep_aspect=True`` keeps the aspect ratio (only for
    clips of one shape).
- Tokenizer: the Gemma tokenizer (256k tokens) is on the hub only. Put its files beside the
  checkpoint, as a hub snapshot has them, or pass ``tokenizer=DIR``. SigLIP's (v1) sentencepiece
  tokenizer needs the ``sentencepiece`` package.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec
from instract_eval.media.transforms import resize_to

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.clip_net import cosine_logits, mean_of_normalised_frames, per_frame
from ..core.hf import (hf_model_directory, hf_tokenizer, load_hf_pretrained, preprocessor_config,
                       processor_interpolation, processor_triple, read_hf_config, transformers_class)
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["Siglip2Adapter", "siglip2", "siglip_frame_spec", "naflex_frame_spec", "naflex_grid", "patchify"]

_FIELD = "checkpoint"
_HALF = (0.5, 0.5, 0.5)


def siglip_frame_spec(image_size: int, frames: int = 8, processor: dict[str, Any] | None = None) -> FrameSpec:
    """SigLIP's image processor: squash to ``image_size`` (no crop), mean/std 0.5, bicubic by default."""
    processor = processor or {}
    return FrameSpec(num_frames=frames, sampling="uniform", size=image_size, crop=None, resize="squash",
                     mean=processor_triple(processor.get("image_mean"), _HALF),
                     std=processor_triple(processor.get("image_std"), _HALF),
                     interpolation=processor_interpolation(processor, "bicubic"))


def naflex_frame_spec(patch_size: int, max_num_patches: int, frames: int = 8, processor: dict[str, Any] | None = None,
                      keep_aspect: bool = False) -> FrameSpec:
    """Frames for a NaFlex model: the shorter side at the square grid the patch budget allows.

    Square crops by default (one batch holds clips of different videos); ``keep_aspect`` keeps the aspect
    ratio, and the model then resizes each clip to its own grid.
    """
    processor = processor or {}
    side = patch_size * max(1, math.isqrt(max_num_patches))
    return FrameSpec(num_frames=frames, sampling="uniform", size=side, crop=None if keep_aspect else side,
                     mean=processor_triple(processor.get("image_mean"), _HALF),
                     std=processor_triple(processor.get("image_std"), _HALF),
                     interpolation=processor_interpolation(processor, "bilinear"))


def naflex_grid(height: int, width: int, patch_size: int, max_num_patches: int) -> tuple[int, int]:
    """The pixel size a NaFlex processor resizes an ``height x width`` image to.

    It is the largest scale whose patch grid (each side rounded up to whole patches, at least one
    patch) fits ``max_num_patches``. The search is the same bisection over the scale as the official
    processor's, to the same tolerance.
    """
    def side(scale: float, size: int) -> int:
        return max(patch_size, int(math.ceil(size * scale / patch_size) * patch_size))

    low, high = 1e-6, 100.0
    while high - low >= 1e-5:
        middle = (low + high) / 2
        if (side(middle, height) // patch_size) * (side(middle, width) // patch_size) <= max_num_patches:
            low = middle
        else:
            high = middle
    return side(low, height), side(low, width)


def patchify(images: torch.Tensor, patch_size: int, max_num_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, 3, H, W]`` (H, W multiples of the patch) to ``[N, max_num_patches, p*p*3]`` patches and their mask.

    Patches run row by row, and each is flattened channel-last (``p, p, 3``), as the NaFlex processor does.
    """
    count, channels, height, width = images.shape
    rows, cols = height // patch_size, width // patch_size
    if rows * cols > max_num_patches:
        raise ValueError(f"{rows}x{cols} patches exceed max_num_patches={max_num_patches}")
    patches = images.reshape(count, channels, rows, patch_size, cols, patch_size).permute(0, 2, 4, 3, 5, 1)
    patches = patches.reshape(count, rows * cols, patch_size * patch_size * channels)
    padded = patches.new_zeros(count, max_num_patches, patches.shape[-1])
    padded[:, :rows * cols] = patches
    mask = torch.zeros(count, max_num_patches, dtype=torch.long, device=images.device)
    mask[:, :rows * cols] = 1
    return padded, mask


def _hub(name: str, hub_id: str, spec: FrameSpec, notes: str) -> WeightTag:
    return WeightTag(name=name, source="hub", hub_id=hub_id, frame_spec=spec,
                     notes=f"{notes}; revision not pinned (the hub could not be reached when this was ported)")


def _fixed(name: str, size: int, repo: str = "siglip2") -> WeightTag:
    if repo == "siglip2":
        return _hub(name, f"google/siglip2-{name}", siglip_frame_spec(size),
                    "SiglipModel directory with the Gemma tokenizer files")
    return _hub(f"{repo}-{name}", f"google/{repo}-{name}", siglip_frame_spec(size),
                "SigLIP (v1) SiglipModel directory; its sentencepiece tokenizer needs the sentencepiece package")


def _naflex(name: str, patch: int) -> WeightTag:
    return _hub(name, f"google/siglip2-{name}", naflex_frame_spec(patch, 256),
                "NaFlex Siglip2Model directory with the Gemma tokenizer files, max_num_patches 256")


CARD = ModelCard(
    family="siglip2",
    description="SigLIP 2 / SigLIP per frame: normalised frame embeddings averaged; sigmoid score "
                "exp(t)·cosine + b (similarity is the logit)",
    capabilities=(DUAL_ENCODER,),
    tags=(
        _fixed("base-patch16-224", 224),
        _fixed("base-patch16-256", 256),
        _fixed("base-patch16-384", 384),
        _fixed("base-patch16-512", 512),
        _fixed("base-patch32-256", 256),
        _fixed("large-patch16-256", 256),
        _fixed("large-patch16-384", 384),
        _fixed("large-patch16-512", 512),
        _fixed("so400m-patch14-224", 224),
        _fixed("so400m-patch14-384", 384),
        _fixed("so400m-patch16-256", 256),
        _fixed("so400m-patch16-384", 384),
        _fixed("so400m-patch16-512", 512),
        _fixed("giant-opt-patch16-256", 256),
        _fixed("giant-opt-patch16-384", 384),
        _naflex("base-patch16-naflex", 16),
        _naflex("so400m-patch16-naflex", 16),
        _fixed("base-patch16-224", 224, repo="siglip"),
        _fixed("so400m-patch14-384", 384, repo="siglip"),
    ),
    default_tag="base-patch16-224",
    frame_spec=siglip_frame_spec(224),
    tokenizer="Gemma (SigLIP 2; from the checkpoint directory or tokenizer=DIR) or SigLIP's sentencepiece; "
              "lower-cased, right-padded to 64, no attention mask",
    code_licence="Apache-2.0 (big_vision; transformers)",
    weights_licence="Apache-2.0 (google/siglip2-*, google/siglip-*)",
    paper="Tschannen et al., SigLIP 2: Multilingual Vision-Language Encoders with Improved Semantic Understanding, "
          "Localization, and Dense Features, arXiv 2502.14786 (2025); Zhai et al., Sigmoid Loss for Language Image "
          "Pre-Training, ICCV 2023",
    citation="tschannen2025siglip2; zhai2023sigmoid",
    checkpoint_formats=("Hugging Face SiglipModel directory (fixed resolution)",
                        "Hugging Face Siglip2Model directory (NaFlex)"),
    code_version="1",
)


class Siglip2Adapter(TorchAdapter):
    """A SigLIP / SigLIP 2 network as a video-text dual encoder; see the module docstring."""

    name = "siglip2"

    def __init__(self, net: Any, tokenizer: Any, *, naflex: bool, max_num_patches: int, spec: FrameSpec,
                 checkpoint: Path):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=f"max_num_patches={max_num_patches}" if naflex
                         else "")
        self.net = net
        self.tokenizer = tokenizer
        self.naflex = naflex
        self.max_num_patches = max_num_patches
        self.context_length = int(net.config.text_config.max_position_embeddings)
        self.patch_size = int(net.config.vision_config.patch_size)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """``[N, L]`` ids: lower-cased, right-padded and truncated to the context length."""
        encoded = self.tokenizer([text.lower() for text in texts], padding="max_length", truncation=True,
                                 max_length=self.context_length, return_tensors="pt")
        ids = encoded["input_ids"]
        vocab = int(self.net.config.text_config.vocab_size)
        if ids.numel() and int(ids.max()) >= vocab:
            raise ValueError(f"siglip2 {self.checkpoint}: the tokenizer gives id {int(ids.max())} for a text tower "
                             f"of {vocab} tokens (a tokenizer of another model?)")
        return ids

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` (not normalised; `similarity` normalises)."""
        ids = self.tokenize(list(texts)).to(self.device)
        return self.net.get_text_features(input_ids=ids).pooler_output.float()

    def frame_features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` normalised frames to ``[N, D]`` image embeddings (not normalised)."""
        images = images.to(self.device, torch.float32)
        if not self.naflex:
            return self.net.get_image_features(pixel_values=images).pooler_output
        height, width = naflex_grid(images.shape[-2], images.shape[-1], self.patch_size, self.max_num_patches)
        images = resize_to(images, (height, width), "bilinear")
        patches, mask = patchify(images, self.patch_size, self.max_num_patches)
        shapes = torch.tensor([[height // self.patch_size, width // self.patch_size]] * images.shape[0],
                              device=images.device)
        return self.net.get_image_features(pixel_values=patches, pixel_attention_mask=mask,
                                           spatial_shapes=shapes).pooler_output

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, D]`` unit vectors (per-frame embeddings normalised, averaged, normalised)."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"siglip2 expects clips [B, T, 3, H, W], got {tuple(clips.shape)}")
        return mean_of_normalised_frames(per_frame(self.frame_features, clips))

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """SigLIP's logit ``exp(logit_scale) * cosine + logit_bias`` (its sigmoid is the match probability)."""
        bias = self.net.logit_bias.detach().float().cpu()
        return cosine_logits(videos.cpu(), texts.cpu(), self.net.logit_scale.detach().float().cpu()) + bias


@register_model("siglip2", card=CARD)
def siglip2(checkpoint: str | os.PathLike | None = None, frames: int = 8, tokenizer: str | os.PathLike | None = None,
            max_num_patches: int | None = None, keep_aspect: bool = False) -> Siglip2Adapter:
    """SigLIP 2 / SigLIP from a Hugging Face directory (``google/siglip2-*``, ``google/siglip-*``).

    ``frames``: frames per clip (uniform). ``tokenizer``: a directory with the tokenizer files when the
    checkpoint's has none (the Gemma tokenizer of ``google/siglip2-*``). ``max_num_patches``: the NaFlex
    patch budget (default: the directory's processor, 256 for the published models). ``keep_aspect``:
    NaFlex frames keep their aspect ratio instead of a square crop.
    """
    path = hf_model_directory(require_checkpoint("siglip2", checkpoint), "siglip2")
    config = read_hf_config(path, "siglip2", ("siglip", "siglip2"))
    frames = positive_int("siglip2", "frames", frames)
    naflex = config["model_type"] == "siglip2"
    if not isinstance(keep_aspect, bool):
        raise InputError(f"siglip2: keep_aspect must be true or false, got {keep_aspect!r}", field="--model-args")
    net_class = transformers_class("Siglip2Model" if naflex else "SiglipModel", "siglip2", path)
    net = load_hf_pretrained(net_class, path, "siglip2")
    source = path if tokenizer is None else Path(os.fspath(tokenizer))
    text_tokenizer = hf_tokenizer(source, "siglip2")
    if text_tokenizer is None:
        raise InputError("ships no tokenizer: put the checkpoint's tokenizer files (tokenizer.json and "
                         "tokenizer_config.json of the hub repository) in it, or pass tokenizer=DIR",
                         path=source, field="tokenizer" if tokenizer is not None else _FIELD)
    text_tokenizer.padding_side = "right"
    processor = preprocessor_config(path)
    if naflex:
        budget = max_num_patches if max_num_patches is not None else processor.get("max_num_patches", 256)
        budget = positive_int("siglip2", "max_num_patches", budget)
        spec = naflex_frame_spec(int(net.config.vision_config.patch_size), budget, frames, processor, keep_aspect)
    else:
        budget = 0
        spec = siglip_frame_spec(int(net.config.vision_config.image_size), frames, processor)
    return Siglip2Adapter(net, text_tokenizer, naflex=naflex, max_num_patches=budget, spec=spec, checkpoint=path)
