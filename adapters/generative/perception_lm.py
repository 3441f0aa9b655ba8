"""``perception-lm``: PerceptionLM (PLM) as a pair scorer and a QA localizer, its PE vision tower native.

The published weights (``facebook/Perception-LM-{1B,3B,8B}``) are Hugging Face directories for
transformers' ``PerceptionLMForConditionalGeneration``. Its vision tower is a ``TimmWrapperModel``
(PE, timm's ``vit_pe_core_*`` Eva), and timm is not a dependency of this harness (it needs
torchvision). So the tower is replaced by `PeTower`, a native port with timm's parameter names
(``model.vision_tower.timm_model.*``): while the class is built, transformers' ``AutoModel`` in the
PerceptionLM module is made to return it for the ``timm_wrapper`` config, and everything else
(projector, Llama, the merging of video features, generation) is transformers' own. The tower was
checked against timm's (``tests/data/official/perception_lm``).

The PE tower as timm builds it for PLM (``global_pool=""``, ``use_post_transformer_norm=False``):
a bias-free patch convolution, a class token (the ``large`` architecture; ``gigantic`` has none),
learned absolute positions, ``norm_pre``, pre-norm blocks with layer scale (``gamma_1``,
``gamma_2``) whose attention rotates queries and keys by PE's 2D RoPE (the rule of
`instract_eval.adapters.image_text.pe_core.rope_2d_angles`: column then row angles, interleaved
pairs, patches from 1 after the class token), exact GELU MLPs; the tokens after the last block,
class token included (the model drops it: ``vision_use_cls_token``). Widths come from the config's
``model_args`` over the architecture's defaults (`PE_ARCHITECTURES`).

Frames, as ``PerceptionLMProcessor`` with its video processor does: each frame resized to the
tower's ``img_size`` (448 for the published models; squashed, no crop), bicubic, mean/std 0.5
(the checkpoint's processor config when it ships one); ``pixel_values_videos`` ``[1, T, 3, S, S]``;
the chat template's ``<|video|>`` is expanded to ``T × (S / patch / projector_pooling_ratio)²`` tokens.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import positive_int, require_checkpoint
from ..core.hf import (hf_model_directory, hf_tokenizer, load_hf_pretrained, preprocessor_config,
                       processor_interpolation, processor_triple, read_hf_config, transformers_class)
from ..image_text.pe_core import rope_2d_angles, rotate_pairs
from ..protocols import LOCALIZER, PAIR_SCORER
from ..registry import register_model
from .qwen2_5_vl import chat_template_of
from .scoring import (DEFAULT_LETTER_PROMPT, DEFAULT_LOCALIZE_PROMPT, DEFAULT_PROMPT, GenerativeVLM,
                      check_generative_args)

__all__ = ["PerceptionLMAdapter", "perception_lm", "PeTower", "PE_ARCHITECTURES", "plm_frame_spec"]

_FIELD = "checkpoint"
_HALF = (0.5, 0.5, 0.5)
# timm's PE architectures PLM uses: (embed_dim, depth, num_heads, mlp_ratio, class_token, img_size).
PE_ARCHITECTURES: Mapping[str, tuple[int, int, int, float, bool, int]] = {
    "vit_pe_core_large_patch14_336": (1024, 24, 16, 4.0, True, 336),
    "vit_pe_core_gigantic_patch14_448": (1536, 50, 16, 8960 / 1536, False, 448),
}


def plm_frame_spec(size: int = 448, frames: int = 16, processor: dict[str, Any] | None = None) -> FrameSpec:
    """Frames squashed to ``size``, mean/std 0.5 unless the processor says otherwise, bicubic."""
    processor = processor or {}
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=None, resize="squash",
                     mean=processor_triple(processor.get("image_mean"), _HALF),
                     std=processor_triple(processor.get("image_std"), _HALF),
                     interpolation=processor_interpolation(processor, "bicubic"))


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        cos, sin = rope.cos(), rope.sin()
        q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(2))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = _Attention(width, heads)
        self.gamma_1 = nn.Parameter(torch.ones(width))
        self.norm2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = _Mlp(width, hidden)
        self.gamma_2 = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma_1 * self.attn(self.norm1(x), rope)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)


class _PeEva(nn.Module):
    """PE's tower under timm's names; ``forward_features`` gives the tokens after the last block."""

    def __init__(self, width: int, depth: int, heads: int, hidden: int, patch: int, image_size: int,
                 class_token: bool):
        super().__init__()
        self.patch, self.heads, self.class_token = patch, heads, class_token
        self.grid = image_size // patch
        if class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2 + int(class_token), width))
        self.patch_embed = _PatchEmbed(width, patch)
        self.norm_pre = nn.LayerNorm(width, eps=1e-5)
        self.blocks = nn.ModuleList([_Block(width, heads, hidden) for _ in range(depth)])

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(images)
        grid_h, grid_w = x.shape[-2:]
        if (grid_h, grid_w) != (self.grid, self.grid):
            raise ValueError(f"PE tower of a {self.grid}x{self.grid} patch grid got frames of "
                             f"{grid_h}x{grid_w} patches")
        x = x.flatten(2).transpose(1, 2)
        if self.class_token:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm_pre(x + self.pos_embed)
        rope = rope_2d_angles(grid_h, grid_w, x.shape[-1] // self.heads, self.class_token, device=x.device)
        for block in self.blocks:
            x = block(x, rope)
        return x


class _TowerOutput(dict):
    """The part of a transformers model output PerceptionLM reads (``last_hidden_state``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


class PeTower(nn.Module):
    """A drop-in for PerceptionLM's ``TimmWrapperModel`` (its ``timm_model`` parameter names)."""

    def __init__(self, config: Any):
        super().__init__()
        architecture = getattr(config, "architecture", None)
        if architecture not in PE_ARCHITECTURES:
            raise ValueError(f"vision tower {architecture!r} is not a PE architecture this port knows "
                             f"({', '.join(PE_ARCHITECTURES)})")
        width, depth, heads, ratio, class_token, image_size = PE_ARCHITECTURES[architecture]
        args = dict(getattr(config, "model_args", None) or {})
        unsupported = {key: args[key] for key in ("global_pool", "use_post_transformer_norm")
                       if key in args and args[key] not in ("", False)}
        if unsupported:
            raise ValueError(f"PE tower arguments {unsupported} are not those of PLM's tower (global_pool='', "
                             "use_post_transformer_norm=False)")
        width = int(args.get("embed_dim", width))
        depth = int(args.get("depth", depth))
        heads = int(args.get("num_heads", heads))
        ratio = float(args.get("mlp_ratio", ratio))
        size = args.get("img_size", image_size)
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        patch = int(re.search(r"patch(\d+)", architecture).group(1))
        self.image_size = size
        self.timm_model = _PeEva(width, depth, heads, int(width * ratio), patch, size, class_token)
        self.config = config

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> _TowerOutput:
        return _TowerOutput(last_hidden_state=self.timm_model.forward_features(pixel_values))


_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def native_pe_tower():
    """While PerceptionLM classes are built, its ``timm_wrapper`` vision config builds a `PeTower`."""
    from transformers.models.perception_lm import modeling_perception_lm as module

    original = module.AutoModel

    class _Auto:
        @staticmethod
        def from_config(config: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(config, "model_type", None) == "timm_wrapper":
                return PeTower(config)
            return original.from_config(config, *args, **kwargs)

    with _BUILD_LOCK:
        module.AutoModel = _Auto
        try:
            yield
        finally:
            module.AutoModel = original


CARD = ModelCard(
    family="perception-lm",
    description="PerceptionLM as a pair scorer (caption log-likelihood given the video under its chat template, "
                "mean per token or sum; or the letter-choice protocol) and a QA localizer; its PE vision tower "
                "is a native port (no timm)",
    capabilities=(PAIR_SCORER, LOCALIZER),
    tags=tuple(WeightTag(name=size, source="hub", hub_id=f"facebook/Perception-LM-{size}",
                         notes="PerceptionLMForConditionalGeneration directory with its tokenizer and chat template "
                               "(gated: accept the licence on the hub first); revision not pinned (the hub could "
                               "not be reached when this was ported)")
               for size in ("1B", "3B", "8B")),
    default_tag="3B",
    frame_spec=plm_frame_spec(),
    tokenizer="Llama-3 BPE with the checkpoint's chat template, from the checkpoint directory",
    code_licence="Apache-2.0 (transformers); PE port written here",
    weights_licence="FAIR Noncommercial Research License (facebook/Perception-LM-*)",
    paper="Cho et al., PerceptionLM: Open-Access Data and Models for Detailed Visual Understanding, "
          "arXiv 2504.13180 (2025)",
    citation="cho2025perceptionlm",
    checkpoint_formats=("Hugging Face PerceptionLMForConditionalGeneration directory (timm_wrapper PE tower)",),
    code_version="1",
)


class PerceptionLMAdapter(GenerativeVLM):
    """PerceptionLM behind the generative scoring base; see the module docstring."""

    name = "perception-lm"

    def __init__(self, net: Any, tokenizer: Any, *, chat_template: str, **kwargs: Any):
        super().__init__(net, tokenizer, **kwargs)
        self.chat_template = chat_template
        tower = net.model.vision_tower
        patch = tower.timm_model.patch
        ratio = max(1, int(net.config.projector_pooling_ratio))
        self.tokens_per_frame = (tower.image_size // patch // ratio) ** 2
        self.video_token_id = int(net.config.video_token_id)
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)

    def prompt_inputs(self, clip: torch.Tensor, question: str, fps: float | None = None) -> dict[str, torch.Tensor]:
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}],
            chat_template=self.chat_template, tokenize=False, add_generation_prompt=True)
        if text.count(self.video_token) != 1:
            raise InputError(f"perception-lm: the chat template does not place one {self.video_token} for a video "
                             "item", path=self.checkpoint, field=_FIELD)
        before, after = text.split(self.video_token)
        ids = self.text_ids(before) + [self.video_token_id] * (self.tokens_per_frame * clip.shape[0]) + \
            self.text_ids(after)
        input_ids = torch.tensor([ids], device=self.device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                "pixel_values_videos": clip[None].to(self.device, torch.float32)}


@register_model("perception-lm", card=CARD)
def perception_lm(checkpoint: str | os.PathLike | None = None, frames: int = 16, protocol: str = "likelihood",
                  normalisation: str = "mean", reuse_prefix: bool = True, prompt: str = DEFAULT_PROMPT,
                  letter_prompt: str = DEFAULT_LETTER_PROMPT, localize_prompt: str = DEFAULT_LOCALIZE_PROMPT,
                  max_new_tokens: int = 64, caption_batch: int = 16) -> PerceptionLMAdapter:
    """PerceptionLM from a Hugging Face directory (``facebook/Perception-LM-*``).

    ``frames``: frames per clip (uniform; PLM was trained with up to 32). ``protocol``:
    ``likelihood`` or ``letter``; ``normalisation``: ``mean`` or ``sum``. ``reuse_prefix``: share
    the prompt's KV cache across a clip's captions. ``prompt``, ``letter_prompt``,
    ``localize_prompt``: the questions asked. ``caption_batch``: captions scored per forward.
    ``max_new_tokens``: the greedy answer's length limit.
    """
    path = hf_model_directory(require_checkpoint("perception-lm", checkpoint), "perception-lm")
    config = read_hf_config(path, "perception-lm", ("perception_lm",), reads="a PerceptionLMForConditionalGeneration")
    frames = positive_int("perception-lm", "frames", frames)
    check_generative_args("perception-lm", protocol, normalisation, max_new_tokens)
    architecture = (config.get("vision_config") or {}).get("architecture")
    if architecture not in PE_ARCHITECTURES:
        raise InputError(f"has vision tower {architecture!r}; this port knows the PE towers "
                         f"{', '.join(PE_ARCHITECTURES)}", path=path / "config.json", field=_FIELD)
    cls = transformers_class("PerceptionLMForConditionalGeneration", "perception-lm", path)
    with native_pe_tower():
        net = load_hf_pretrained(cls, path, "perception-lm")
    tokenizer = hf_tokenizer(path, "perception-lm")
    if tokenizer is None:
        raise InputError("ships no tokenizer (tokenizer.json, as the hub repository has)", path=path, field=_FIELD)
    template = chat_template_of(path, tokenizer, "perception-lm")
    spec = plm_frame_spec(net.model.vision_tower.image_size, frames, preprocessor_config(path, video=True))
    return PerceptionLMAdapter(net, tokenizer, chat_template=template, spec=spec, checkpoint=path, protocol=protocol,
                               normalisation=normalisation, reuse_prefix=reuse_prefix, prompt=prompt,
                               letter_prompt=letter_prompt, localize_prompt=localize_prompt,
                               max_new_tokens=max_new_tokens, caption_batch=caption_batch)
