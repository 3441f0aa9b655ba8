"""``internvl3``: InternVL3 (the ``-hf`` checkpoints) as a pair scorer and a QA localizer.

The published weights are the Hugging Face conversions ``OpenGVLab/InternVL3-{1B,2B,8B,9B,14B,38B,78B}-hf``
for transformers' ``InternVLForConditionalGeneration``, read offline with every size from the config;
a missing, unexpected or mis-shaped weight is refused in one line. The scoring protocols are those
of `instract_eval.adapters.generative.scoring` (ActionVLM evaluates InternVL3 as a QA localizer).

What this adapter does as ``InternVLProcessor`` with ``InternVLVideoProcessor`` does (the video
processor cannot be loaded without torchvision, so it is rewritten here):

- pixels: each frame squashed to the vision tower's ``image_size`` (448 for the published
  models; no crop, no tiling for video frames), bicubic, with the mean/std of the checkpoint's
  ``video_preprocessor_config.json`` (else ``preprocessor_config.json``; else ImageNet's, which the
  published InternVL3 configs state);
- prompt: the checkpoint's chat template with one user message ``[video, text]``; its video
  placeholder (the tokenizer's ``video_token``, ``<video>``) is replaced, as the processor does, by
  one line per frame ``Frame{i}: <img><IMG_CONTEXT>×n</img>`` joined by newlines, where ``n`` is
  ``(image_size / patch_size)² × downsample_ratio²`` (256 for the published models);
- frames are passed as ``pixel_values`` ``[T, 3, S, S]``, one image per frame.
"""

from __future__ import annotations

import os
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
from .qwen2_5_vl import chat_template_of
from .scoring import (DEFAULT_LETTER_PROMPT, DEFAULT_LOCALIZE_PROMPT, DEFAULT_PROMPT, GenerativeVLM,
                      check_generative_args)

__all__ = ["InternVL3Adapter", "internvl3", "internvl_frame_spec", "frame_tokens"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_FIELD = "checkpoint"
_SPECIALS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}


def internvl_frame_spec(size: int = 448, frames: int = 8, processor: dict[str, Any] | None = None) -> FrameSpec:
    """Frames squashed to ``size`` (no crop), ImageNet statistics unless the processor says otherwise, bicubic."""
    processor = processor or {}
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=None, resize="squash",
                     mean=processor_triple(processor.get("image_mean"), _IMAGENET_MEAN),
                     std=processor_triple(processor.get("image_std"), _IMAGENET_STD),
                     interpolation=processor_interpolation(processor, "bicubic"))


def frame_tokens(image_size: int, patch_size: int, downsample_ratio: float) -> int:
    """Tokens per frame: the patch grid after the pixel shuffle (``(S / p)² × r²``)."""
    return int(round((image_size // patch_size) ** 2 * downsample_ratio ** 2))


def _side(value: Any) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


CARD = ModelCard(
    family="internvl3",
    description="InternVL3 (-hf) as a pair scorer (caption log-likelihood given the video under its chat template, "
                "mean per token or sum; or the letter-choice protocol) and a QA localizer (greedy answers, "
                "timestamps parsed)",
    capabilities=(PAIR_SCORER, LOCALIZER),
    tags=tuple(WeightTag(name=size, source="hub", hub_id=f"OpenGVLab/InternVL3-{size}-hf",
                         notes="InternVLForConditionalGeneration directory with its tokenizer, chat template and "
                               "processor configs; revision not pinned (the hub could not be reached when this "
                               "was ported)")
               for size in ("1B", "2B", "8B", "9B", "14B", "38B", "78B")),
    default_tag="8B",
    frame_spec=internvl_frame_spec(),
    tokenizer="Qwen2.5 BPE (InternLM3 for 9B) with the checkpoint's chat template, from the checkpoint directory",
    code_licence="MIT (InternVL); Apache-2.0 (transformers)",
    weights_licence="MIT, with the licence of each language model (Qwen2.5: Apache-2.0 or Qwen licence)",
    paper="Zhu et al., InternVL3: Exploring Advanced Training and Test-Time Recipes for Open-Source Multimodal "
          "Models, arXiv 2504.10479 (2025)",
    citation="zhu2025internvl3",
    checkpoint_formats=("Hugging Face InternVLForConditionalGeneration directory (the -hf conversions)",),
    code_version="1",
)


class InternVL3Adapter(GenerativeVLM):
    """InternVL3 behind the generative scoring base; see the module docstring."""

    name = "internvl3"

    def __init__(self, net: Any, tokenizer: Any, *, chat_template: str, **kwargs: Any):
        super().__init__(net, tokenizer, **kwargs)
        self.chat_template = chat_template
        config = net.config
        self.tokens_per_frame = frame_tokens(_side(config.vision_config.image_size),
                                             _side(config.vision_config.patch_size), float(config.downsample_ratio))
        self.specials = {key: getattr(tokenizer, key, None) or default for key, default in _SPECIALS.items()}
        context = tokenizer.convert_tokens_to_ids(self.specials["context_image_token"])
        if context != int(config.image_token_id):
            raise InputError(f"internvl3: the tokenizer's {self.specials['context_image_token']} is id {context}, the "
                             f"model's image token is {config.image_token_id} (a tokenizer of another model?)",
                             path=self.checkpoint, field=_FIELD)

    def video_text(self, frames: int) -> str:
        """What the processor puts in place of the video placeholder for ``frames`` frames."""
        start, end, context = (self.specials[k] for k in ("start_image_token", "end_image_token",
                                                          "context_image_token"))
        return "\n".join(f"Frame{i + 1}: {start}{context * self.tokens_per_frame}{end}" for i in range(frames))

    def prompt_inputs(self, clip: torch.Tensor, question: str, fps: float | None = None) -> dict[str, torch.Tensor]:
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}],
            chat_template=self.chat_template, tokenize=False, add_generation_prompt=True)
        placeholder = self.specials["video_token"]
        if text.count(placeholder) != 1:
            raise InputError(f"internvl3: the chat template does not place one {placeholder} for a video item",
                             path=self.checkpoint, field=_FIELD)
        text = text.replace(placeholder, self.video_text(clip.shape[0]))
        input_ids = torch.tensor([self.text_ids(text)], device=self.device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "pixel_values": clip.to(self.device, torch.float32)}


@register_model("internvl3", card=CARD)
def internvl3(checkpoint: str | os.PathLike | None = None, frames: int = 8, protocol: str = "likelihood",
              normalisation: str = "mean", reuse_prefix: bool = True, prompt: str = DEFAULT_PROMPT,
              letter_prompt: str = DEFAULT_LETTER_PROMPT, localize_prompt: str = DEFAULT_LOCALIZE_PROMPT,
              max_new_tokens: int = 64, caption_batch: int = 16) -> InternVL3Adapter:
    """InternVL3 from a Hugging Face directory (``OpenGVLab/InternVL3-*-hf``).

    ``frames``: frames per clip (uniform). ``protocol``: ``likelihood`` or ``letter``;
    ``normalisation``: ``mean`` or ``sum``. ``reuse_prefix``: share the prompt's KV cache across a
    clip's captions. ``prompt``, ``letter_prompt``, ``localize_prompt``: the questions asked.
    ``caption_batch``: captions scored per forward. ``max_new_tokens``: the greedy answer's length limit
    (localizer).
    """
    path = hf_model_directory(require_checkpoint("internvl3", checkpoint), "internvl3")
    read_hf_config(path, "internvl3", ("internvl",), reads="an InternVLForConditionalGeneration")
    frames = positive_int("internvl3", "frames", frames)
    check_generative_args("internvl3", protocol, normalisation, max_new_tokens)
    net = load_hf_pretrained(transformers_class("InternVLForConditionalGeneration", "internvl3", path), path,
                             "internvl3")
    tokenizer = hf_tokenizer(path, "internvl3")
    if tokenizer is None:
        raise InputError("ships no tokenizer (tokenizer.json or vocab.json with merges.txt, as the hub repository "
                         "has)", path=path, field=_FIELD)
    template = chat_template_of(path, tokenizer, "internvl3")
    processor = preprocessor_config(path, video=True)
    spec = internvl_frame_spec(_side(net.config.vision_config.image_size), frames, processor)
    return InternVL3Adapter(net, tokenizer, chat_template=template, spec=spec, checkpoint=path, protocol=protocol,
                            normalisation=normalisation, reuse_prefix=reuse_prefix, prompt=prompt,
                            letter_prompt=letter_prompt, localize_prompt=localize_prompt,
                            max_new_tokens=max_new_tokens, caption_batch=caption_batch)
