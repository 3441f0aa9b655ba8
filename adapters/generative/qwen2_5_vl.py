"""``qwen2.5-vl``: Qwen2.5-VL as a pair scorer (caption log-likelihood, letter choice) and a QA localizer.

The published weights are Hugging Face directories (``Qwen/Qwen2.5-VL-{3B,7B,32B,72B}-Instruct``)
read with ``Qwen2_5_VLForConditionalGeneration.from_pretrained(local_files_only=True)``; every size
comes from the config, and a missing, unexpected or mis-shaped weight is refused in one line. The
scoring protocols are those of `instract_eval.adapters.generative.scoring`.

What this adapter does as Qwen's processor does (``Qwen2_5_VLProcessor`` with
``Qwen2VLVideoProcessor``, which cannot be loaded without torchvision, so it is rewritten here):

- pixels: CLIP mean/std (the checkpoint's ``preprocessor_config.json`` when it ships one), bicubic;
- patches: frames grouped in ``temporal_patch_size`` (2) along time (an odd count repeats the last
  frame), cut into ``patch_size`` squares and ordered by ``spatial_merge_size`` blocks: the flat
  ``pixel_values_videos`` ``[grid_t * grid_h * grid_w, 3 * 2 * p * p]`` and ``video_grid_thw``
  (`qwen_video_patches`);
- prompt: the checkpoint's own chat template with one user message ``[video, text]``; its
  ``<|video_pad|>`` is expanded to ``grid_t * grid_h * grid_w / merge²`` video tokens, and
  ``mm_token_type_ids`` (2 on video tokens) is passed so the model builds its 3-D rotary positions;
- time: ``second_per_grid_ts = temporal_patch_size / fps``. As a localizer the frames span the
  whole video, so ``fps`` is their real rate (frames / duration) and the answer's seconds are the
  video's; a pair scorer receives frames without their timestamps, so there ``video_fps`` (an
  argument: 2 by default, the rate qwen-vl-utils samples at) stands in.

Harness choices, stated: frames are square (short side resized to ``size``, centre crop) so clips
of different videos batch together; Qwen's processor keeps the aspect ratio within a pixel
budget. ``size`` must be a multiple of ``patch_size * spatial_merge_size`` (28); 448 by default
(256 video tokens per pair of frames), with 16 frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import positive_int, require_checkpoint
from ..core.hf import (hf_model_directory, hf_tokenizer, load_hf_pretrained, preprocessor_config,
                       processor_interpolation, processor_triple, read_hf_config, transformers_class)
from ..protocols import LOCALIZER, PAIR_SCORER
from ..registry import register_model
from .scoring import (DEFAULT_LETTER_PROMPT, DEFAULT_LOCALIZE_PROMPT, DEFAULT_PROMPT, GenerativeVLM,
                      check_generative_args)

__all__ = ["Qwen25VLAdapter", "qwen2_5_vl", "qwen_frame_spec", "qwen_video_patches", "chat_template_of"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_FIELD = "checkpoint"
_VIDEO_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video


def qwen_frame_spec(size: int = 448, frames: int = 16, processor: dict[str, Any] | None = None) -> FrameSpec:
    """Square frames of ``size`` (short side resized, centre crop), CLIP statistics, bicubic."""
    processor = processor or {}
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=size,
                     mean=processor_triple(processor.get("image_mean"), _CLIP_MEAN),
                     std=processor_triple(processor.get("image_std"), _CLIP_STD),
                     interpolation=processor_interpolation(processor, "bicubic"))


def qwen_video_patches(frames: torch.Tensor, patch_size: int, merge_size: int,
                       temporal_patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, 3, H, W]`` prepared frames to Qwen's flat ``pixel_values_videos`` and ``video_grid_thw`` ``[1, 3]``.

    Time is grouped in ``temporal_patch_size`` frames (the last one repeated to fill a group); each
    row is one ``patch_size`` square of one group, flattened (channel, time, y, x); rows run over the
    groups, then the ``merge_size`` blocks row by row, then the patches inside a block row by row.
    """
    count, channels, height, width = frames.shape
    if height % (patch_size * merge_size) or width % (patch_size * merge_size):
        raise ValueError(f"frames of {height}x{width} are not multiples of {patch_size * merge_size}")
    if pad := -count % temporal_patch_size:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
        count += pad
    grid_t, grid_h, grid_w = count // temporal_patch_size, height // patch_size, width // patch_size
    patches = frames.reshape(grid_t, temporal_patch_size, channels, grid_h // merge_size, merge_size, patch_size,
                             grid_w // merge_size, merge_size, patch_size)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch_size * patch_size)
    return flat, torch.tensor([[grid_t, grid_h, grid_w]])


def chat_template_of(directory: Path, tokenizer: Any, model: str) -> str:
    """The checkpoint's chat template: the tokenizer's, else ``chat_template.jinja``/``chat_template.json``."""
    import json

    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    if (directory / "chat_template.jinja").is_file():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    if (directory / "chat_template.json").is_file():
        try:
            return json.loads((directory / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"cannot be read as a chat template ({error})", path=directory / "chat_template.json",
                             field=_FIELD) from None
    raise InputError(f"ships no chat template (chat_template.jinja, chat_template.json or one in "
                     f"tokenizer_config.json), which {model} scores under", path=directory, field=_FIELD)


CARD = ModelCard(
    family="qwen2.5-vl",
    description="Qwen2.5-VL as a pair scorer (caption log-likelihood given the video under its chat template, "
                "mean per token or sum; or the letter-choice protocol) and a QA localizer (greedy answers, "
                "timestamps parsed)",
    capabilities=(PAIR_SCORER, LOCALIZER),
    tags=tuple(WeightTag(name=f"{size}-instruct", source="hub", hub_id=f"Qwen/Qwen2.5-VL-{size}-Instruct",
                         notes="Qwen2_5_VLForConditionalGeneration directory with its tokenizer and chat template; "
                               "revision not pinned (the hub could not be reached when this was ported)")
               for size in ("3B", "7B", "32B", "72B")),
    default_tag="7B-instruct",
    frame_spec=qwen_frame_spec(),
    tokenizer="Qwen2 BPE with the checkpoint's chat template (ChatML), from the checkpoint directory",
    code_licence="Apache-2.0 (transformers)",
    weights_licence="Apache-2.0 (7B, 32B); Qwen licence (3B, 72B)",
    paper="Bai et al., Qwen2.5-VL Technical Report, arXiv 2502.13923 (2025)",
    citation="bai2025qwen25vl",
    checkpoint_formats=("Hugging Face Qwen2_5_VLForConditionalGeneration directory",),
    code_version="1",
)


class Qwen25VLAdapter(GenerativeVLM):
    """Qwen2.5-VL behind the generative scoring base; see the module docstring."""

    name = "qwen2.5-vl"
    token_inputs = ("mm_token_type_ids",)

    def __init__(self, net: Any, tokenizer: Any, *, chat_template: str, video_fps: float, **kwargs: Any):
        super().__init__(net, tokenizer, settings=f"video_fps={video_fps}", **kwargs)
        self.chat_template = chat_template
        self.video_fps = float(video_fps)
        vision = net.config.vision_config
        self.patch_size = int(vision.patch_size)
        self.merge_size = int(vision.spatial_merge_size)
        self.temporal_patch_size = int(vision.temporal_patch_size)
        self.video_token_id = int(net.config.video_token_id)
        pad = tokenizer.convert_tokens_to_ids("<|video_pad|>")
        if pad != self.video_token_id:
            raise InputError(f"qwen2.5-vl: the tokenizer's <|video_pad|> is id {pad}, the model's video token "
                             f"is {self.video_token_id} (a tokenizer of another model?)", path=self.checkpoint,
                             field=_FIELD)

    def prompt_inputs(self, clip: torch.Tensor, question: str, fps: float | None = None) -> dict[str, torch.Tensor]:
        pixels, grid = qwen_video_patches(clip.float(), self.patch_size, self.merge_size, self.temporal_patch_size)
        tokens = int(grid.prod()) // (self.merge_size ** 2)
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}],
            chat_template=self.chat_template, tokenize=False, add_generation_prompt=True)
        if text.count("<|video_pad|>") != 1:
            raise InputError("qwen2.5-vl: the chat template does not place one <|video_pad|> for a video item",
                             path=self.checkpoint, field=_FIELD)
        before, after = text.split("<|video_pad|>")
        ids = self.text_ids(before) + [self.video_token_id] * tokens + self.text_ids(after)
        input_ids = torch.tensor([ids], device=self.device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "mm_token_type_ids": (input_ids == self.video_token_id).long() * _VIDEO_TYPE,
                "pixel_values_videos": pixels.to(self.device), "video_grid_thw": grid.to(self.device),
                "second_per_grid_ts": torch.tensor([self.temporal_patch_size / (fps or self.video_fps)],
                                                   device=self.device)}

    def continuation_inputs(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor,
                            attention: torch.Tensor) -> dict[str, torch.Tensor]:
        # Text after the prompt: the model continues its 3-D positions from the prompt's rope delta.
        prefix = inputs["input_ids"].shape[1]
        delta = self.net.model.rope_deltas.reshape(-1)[:1]
        positions = torch.arange(prefix, prefix + ids.shape[1], device=ids.device) + delta
        return {"input_ids": ids, "attention_mask": attention,
                "position_ids": positions.view(1, 1, -1).expand(3, ids.shape[0], -1)}


@register_model("qwen2.5-vl", card=CARD)
def qwen2_5_vl(checkpoint: str | os.PathLike | None = None, frames: int = 16, size: int = 448,
               protocol: str = "likelihood", normalisation: str = "mean", reuse_prefix: bool = True,
               prompt: str = DEFAULT_PROMPT, letter_prompt: str = DEFAULT_LETTER_PROMPT,
               localize_prompt: str = DEFAULT_LOCALIZE_PROMPT, max_new_tokens: int = 64,
               video_fps: float = 2.0, caption_batch: int = 16) -> Qwen25VLAdapter:
    """Qwen2.5-VL from a Hugging Face directory (``Qwen/Qwen2.5-VL-*-Instruct``).

    ``frames``: frames per clip (uniform). ``size``: square frame side, a multiple of 28.
    ``protocol``: ``likelihood`` or ``letter``; ``normalisation``: ``mean`` or ``sum`` (likelihood).
    ``reuse_prefix``: share the prompt's KV cache across a clip's captions. ``prompt``,
    ``letter_prompt``, ``localize_prompt``: the questions asked. ``caption_batch``: captions scored per
    forward. ``max_new_tokens``: the greedy answer's length limit (localizer). ``video_fps``: the frame
    rate the temporal positions assume.
    """
    path = hf_model_directory(require_checkpoint("qwen2.5-vl", checkpoint), "qwen2.5-vl")
    read_hf_config(path, "qwen2.5-vl", ("qwen2_5_vl",), reads="a Qwen2_5_VLForConditionalGeneration")
    frames = positive_int("qwen2.5-vl", "frames", frames)
    size = positive_int("qwen2.5-vl", "size", size)
    check_generative_args("qwen2.5-vl", protocol, normalisation, max_new_tokens)
    if isinstance(video_fps, bool) or not isinstance(video_fps, (int, float)) or not video_fps > 0:
        raise InputError(f"qwen2.5-vl: video_fps must be a positive number, got {video_fps!r}", field="--model-args")
    net = load_hf_pretrained(transformers_class("Qwen2_5_VLForConditionalGeneration", "qwen2.5-vl", path), path,
                             "qwen2.5-vl")
    vision = net.config.vision_config
    factor = int(vision.patch_size) * int(vision.spatial_merge_size)
    if size % factor:
        raise InputError(f"qwen2.5-vl: size must be a multiple of patch_size x spatial_merge_size = {factor}, "
                         f"got {size}", field="--model-args")
    tokenizer = hf_tokenizer(path, "qwen2.5-vl")
    if tokenizer is None:
        raise InputError("ships no tokenizer (tokenizer.json or vocab.json with merges.txt, as the hub repository "
                         "has)", path=path, field=_FIELD)
    template = chat_template_of(path, tokenizer, "qwen2.5-vl")
    spec = qwen_frame_spec(size, frames, preprocessor_config(path))
    return Qwen25VLAdapter(net, tokenizer, chat_template=template, video_fps=float(video_fps), spec=spec,
                           checkpoint=path, protocol=protocol, normalisation=normalisation,
                           reuse_prefix=reuse_prefix, prompt=prompt, letter_prompt=letter_prompt,
                           localize_prompt=localize_prompt, max_new_tokens=max_new_tokens,
                           caption_batch=caption_batch)
