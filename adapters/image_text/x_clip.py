"""``x-clip``: X-CLIP (Ni et al., ECCV 2022) as a pair scorer, through transformers' ``XCLIPModel``.

Why a pair scorer: X-CLIP's text embedding depends on the video. Its prompt generator lets every
caption's embedding cross-attend to the video's patch tokens, and adds the result, scaled by a
learned ``alpha``, to that caption's embedding. So there is no text vector to compare with every
video, and the model only provides ``score(clips, captions)``: for each clip, the official
``logits_per_video`` against that clip's own captions.

Why transformers: the hub checkpoints (``microsoft/xclip-*``) are Hugging Face directories
(``config.json``, weights, CLIP tokenizer files, ``preprocessor_config.json``) loaded with
``XCLIPModel``. A directory is read with ``from_pretrained(local_files_only=True)``. Every size
comes from its config. The authors' own release files (``k400_32_8.pth`` ... on
github.com/nbl97/X-CLIP_Model_Zoo) are VideoX training pickles with VideoX key names and are not
read here; transformers' conversion script turns them into such a directory. Missing, unexpected
or mis-shaped weights are refused with one line naming the file (the directory helpers of
`instract_eval.adapters.core.hf`, shared with the other Hugging Face families), because
transformers itself would silently re-initialise a missing weight. The authors' own code
(microsoft/VideoX ``X-CLIP/``) gives the same logits to 1e-6 on a converted random model
(tests/data/official/x_clip/README.md).

Facts of the model this adapter keeps:

- Video: every frame goes through the CLIP ViT, whose blocks exchange one message token per frame.
  The frames' projected class tokens go through the multi-frame integration transformer (MIT),
  with a residual, and are then averaged over time. The number of frames is fixed by the
  checkpoint (the message attention and the MIT position embedding both have ``num_frames``
  rows), so the frame spec is ``fixed_frames``. It is 8, 16 or 32 for the published models.
- Prompts: the patch tokens before ``post_layernorm`` go through ``prompts_visual_layernorm`` and
  ``@ prompts_visual_projection``, and are averaged over frames. The projected text embedding
  cross-attends to them in the prompt generator, and ``alpha`` times the result is added to it.
- Score: ``exp(logit_scale) * cosine(video, video-conditioned text)``, the official
  ``logits_per_video``. Rows do not interact: the score of a clip depends only on that clip and its
  own caption list. So clips with different caption lists are scored in one batch, and a caption
  shared by several lists is encoded once.
- Text: the CLIP BPE, 77 tokens, a causal mask, pooled at the highest token id (the end token).
  The tokenizer files in the checkpoint directory are used when present. They are what the
  published processor uses, with truncation to 77, which keeps the end token like
  ``clip.tokenize(truncate=True)``. Without them the shipped OpenAI BPE is used (vocabulary
  49,408). VideoX's own ``clip.tokenize`` refuses texts over 77 tokens instead of cutting them.
- Frames: the directory's ``preprocessor_config.json``. The published repositories use shorter
  side 224, centre crop 224, bilinear, and ImageNet mean/std. VideoX's test pipeline resizes the
  shorter side to 256 before the 224 crop; ``size=256`` selects that.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.hf import (hf_model_directory, hf_tokenizer, load_hf_pretrained, preprocessor_config,
                       processor_interpolation, processor_triple, read_hf_config, through_end_token,
                       transformers_class)
from ..core.tokenizers import openai_tokenize
from ..protocols import PAIR_SCORER
from ..registry import register_model

__all__ = ["XClipAdapter", "x_clip", "xclip_frame_spec"]

_FIELD = "checkpoint"


def _side(value: Any, default: int) -> int:
    """A preprocessor size entry (an int, or a dict with shortest_edge / height) as one side."""
    if isinstance(value, dict):
        value = value.get("shortest_edge", value.get("height"))
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


# ------------------------------------------------------------------------------------------------
# X-CLIP


def xclip_frame_spec(frames: int, image_size: int, processor: dict[str, Any] | None = None,
                     size: int | None = None) -> FrameSpec:
    """The published processor's preparation: shorter side, centre crop, its mean/std and resampling.

    The crop is always the model's input size (the network takes nothing else); the shorter side is
    ``size``, else the processor's, never below the crop.
    """
    processor = processor or {}
    short = max(size if size is not None else _side(processor.get("size"), image_size), image_size)
    return FrameSpec(num_frames=frames, sampling="uniform", size=short, crop=image_size,
                     mean=processor_triple(processor.get("image_mean"), IMAGENET_MEAN),
                     std=processor_triple(processor.get("image_std"), IMAGENET_STD),
                     interpolation=processor_interpolation(processor, "bilinear"),
                     fixed_frames=True)


def _hub_tag(name: str, frames: int, image_size: int = 224, notes: str = "") -> WeightTag:
    return WeightTag(name=name, source="hub", hub_id=f"microsoft/xclip-{name}",
                     frame_spec=xclip_frame_spec(frames, image_size),
                     notes=notes or "Hugging Face XCLIPModel directory; revision not pinned (the hub could not be "
                                    "reached when this was ported)")


CARD = ModelCard(
    family="x-clip",
    description="X-CLIP: CLIP with cross-frame messages, a multi-frame transformer and video-conditioned "
                "text prompts; exp(logit_scale)·cosine per (clip, caption)",
    capabilities=(PAIR_SCORER,),
    tags=(
        _hub_tag("base-patch32", 8),
        _hub_tag("base-patch32-16-frames", 16),
        _hub_tag("base-patch16", 8),
        _hub_tag("base-patch16-16-frames", 16),
        _hub_tag("large-patch14", 8),
        _hub_tag("large-patch14-16-frames", 16, 336),
        _hub_tag("base-patch16-kinetics-600", 8),
        _hub_tag("base-patch16-kinetics-600-16-frames", 16),
        _hub_tag("large-patch14-kinetics-600", 8),
        _hub_tag("base-patch16-zero-shot", 32, notes="Kinetics-400 pre-training used for the paper's zero-shot "
                                                     "results; 32 frames"),
        _hub_tag("base-patch16-hmdb-2-shot", 32), _hub_tag("base-patch16-hmdb-4-shot", 32),
        _hub_tag("base-patch16-hmdb-8-shot", 32), _hub_tag("base-patch16-hmdb-16-shot", 32),
        _hub_tag("base-patch16-ucf-2-shot", 32), _hub_tag("base-patch16-ucf-4-shot", 32),
        _hub_tag("base-patch16-ucf-8-shot", 32), _hub_tag("base-patch16-ucf-16-shot", 32),
    ),
    default_tag="base-patch32",
    frame_spec=xclip_frame_spec(8, 224),
    tokenizer="CLIP BPE from the checkpoint directory (else the shipped OpenAI BPE), context 77, truncated",
    code_licence="MIT (microsoft/VideoX); Apache-2.0 (transformers XCLIPModel)",
    weights_licence="MIT (microsoft/xclip-* model cards)",
    paper="Ni et al., Expanding Language-Image Pretrained Models for General Video Recognition, ECCV 2022",
    citation="ni2022expanding",
    checkpoint_formats=("Hugging Face XCLIPModel directory (config.json + model.safetensors or pytorch_model.bin, "
                        "tokenizer files, preprocessor_config.json)",),
    code_version="1",
)


class XClipAdapter(TorchAdapter):
    """transformers' ``XCLIPModel`` scoring each clip against its own captions; see the module docstring."""

    name = "x-clip"

    def __init__(self, net: Any, tokenizer: Any | None, *, spec: FrameSpec, checkpoint: Path):
        super().__init__(spec=spec, checkpoint=checkpoint)
        self.net = net
        self.tokenizer = tokenizer
        self.context_length = int(net.config.text_config.max_position_embeddings)
        self.num_frames = int(net.config.vision_config.num_frames)
        self.image_size = int(net.config.vision_config.image_size)

    # -- text -----------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, L]`` ids and attention mask, cut to the context length with the end token kept."""
        if self.tokenizer is not None:
            encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.context_length,
                                     return_tensors="pt")
            return encoded["input_ids"], encoded["attention_mask"]
        ids = openai_tokenize(list(texts), self.context_length)
        return ids, through_end_token(ids)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, D]`` projected text embeddings before the video-specific prompts (not normalised)."""
        ids, mask = self.tokenize(texts)
        pooled = self.net.text_model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).pooler_output
        return self.net.text_projection(pooled)

    # -- video ----------------------------------------------------------------------------------

    def _check_clips(self, clips: torch.Tensor) -> None:
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"x-clip expects clips [B, T, 3, H, W], got {tuple(clips.shape)}")
        if clips.shape[1] != self.num_frames:
            raise ValueError(f"x-clip {self.checkpoint} takes exactly {self.num_frames} frames per clip "
                             f"(fixed by the checkpoint), got {clips.shape[1]}")
        if tuple(clips.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"x-clip {self.checkpoint} takes {self.image_size}x{self.image_size} frames, "
                             f"got {clips.shape[-2]}x{clips.shape[-1]}")

    def video_features(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D]`` video embeddings (the MIT output, not normalised) and the ``[B, P, D]`` patch
        features the prompts attend to (averaged over frames)."""
        self._check_clips(clips)
        batch, frames = clips.shape[:2]
        net = self.net
        out = net.vision_model(pixel_values=clips.flatten(0, 1).to(self.device, torch.float32))
        cls = net.visual_projection(out.pooler_output).view(batch, frames, -1)
        video = net.mit(cls).pooler_output
        patches = net.prompts_visual_layernorm(out.last_hidden_state[:, 1:, :]) @ net.prompts_visual_projection
        patches = patches.view(batch, frames, -1, video.shape[-1]).mean(dim=1)
        return video, patches

    # -- pairs ----------------------------------------------------------------------------------

    def pair_embeddings(self, clips: torch.Tensor, texts: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D]`` videos and ``[B, C, D]`` captions conditioned on their clip, both L2-normalised."""
        lists = [list(row) for row in texts]
        if len(lists) != clips.shape[0]:
            raise ValueError(f"x-clip: {clips.shape[0]} clips but {len(lists)} caption lists")
        width = {len(row) for row in lists}
        if len(width) > 1 or 0 in width:
            raise ValueError(f"x-clip: every clip needs the same non-zero number of captions, got {sorted(width)}")
        video, patches = self.video_features(clips)
        unique = list(dict.fromkeys(caption for row in lists for caption in row))
        plain = self.text_features(unique)
        index = {caption: i for i, caption in enumerate(unique)}
        rows = torch.tensor([[index[caption] for caption in row] for row in lists], device=plain.device)
        text = plain[rows]                                            # [B, C, D]
        text = text + self.net.prompts_generator(text, patches)
        return F.normalize(video, dim=-1), F.normalize(text, dim=-1)

    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        """``[B, C]`` official ``logits_per_video``: each clip against its own ``C`` captions."""
        video, text = self.pair_embeddings(clips, texts)
        scale = self.net.logit_scale.exp()
        return torch.einsum("bd,bcd->bc", video, text * scale).float()


@register_model("x-clip", card=CARD)
def x_clip(checkpoint: str | os.PathLike | None = None, frames: int | None = None,
           size: int | None = None) -> XClipAdapter:
    """X-CLIP from a Hugging Face ``XCLIPModel`` directory (``microsoft/xclip-*``).

    ``frames``: optional, must equal the checkpoint's frame count (X-CLIP cannot take another).
    ``size``: shorter side before the centre crop (default: the directory's preprocessor, 224 for the
    published models; 256 is VideoX's test pipeline).
    """
    path = hf_model_directory(require_checkpoint("x-clip", checkpoint), "x-clip")
    read_hf_config(path, "x-clip", ("xclip",))
    net = load_hf_pretrained(transformers_class("XCLIPModel", "x-clip", path), path, "x-clip")
    num_frames = int(net.config.vision_config.num_frames)
    if frames is not None and positive_int("x-clip", "frames", frames) != num_frames:
        raise InputError(f"x-clip: this checkpoint takes exactly {num_frames} frames (its message attention and "
                         f"MIT position embedding are fixed), got frames={frames}", path=path, field="--model-args")
    if size is not None:
        positive_int("x-clip", "size", size)
    tokenizer = hf_tokenizer(path, "x-clip")
    vocab = int(net.config.text_config.vocab_size)
    if tokenizer is None and vocab != 49408:
        raise InputError(f"ships no tokenizer files and its vocabulary ({vocab}) is not the shipped CLIP BPE's "
                         "(49408)", path=path, field=_FIELD)
    image_size = int(net.config.vision_config.image_size)
    spec = xclip_frame_spec(num_frames, image_size, preprocessor_config(path), size)
    return XClipAdapter(net, tokenizer, spec=spec, checkpoint=path)
