"""OpenAI CLIP's vision transformer and text transformer, built from a state dict's shapes.

Most video baselines of the field are CLIP with something around it (CLIP4Clip, ViFi-CLIP, BIKE,
Text4Vis, X-CLIP's towers), and their checkpoints keep OpenAI's parameter names under a prefix.
This module is our port of that network, with OpenAI's key layout so a state dict loads as is:

- vision: a patch convolution without bias, a class token, learned positions, ``ln_pre``, the
  residual blocks (sequence-first ``nn.MultiheadAttention``, QuickGELU MLP of width 4x), then
  ``ln_post`` on the class token only and the ``proj`` matrix;
- text: token and learned position embeddings, the same blocks under a causal mask, ``ln_final``,
  the feature at the end token (the highest id of each row: OpenAI pools at ``argmax``) and the
  ``text_projection`` matrix;
- ``logit_scale`` (the log of the temperature's inverse).

Every size is read from the tensors (`ClipDimensions.from_state_dict`), as OpenAI's
``build_model`` does; only the head counts cannot be, and follow OpenAI's rule (width // 64, at
least one), overridable for checkpoints trained otherwise. The ResNet image towers (RN50 ...) are
not ported: a state dict holding one is refused by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError

from .checkpoints import load_strict

__all__ = ["ClipDimensions", "QuickGELU", "LayerNorm32", "ResidualBlock", "Transformer", "VisionTower", "ClipNet", "cosine_logits",
           "OPENAI_SCALARS"]

# Integer scalars OpenAI's files carry beside the parameters.
OPENAI_SCALARS = ("input_resolution", "context_length", "vocab_size")


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (fp16 weights, autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class ResidualBlock(nn.Module):
    """Pre-norm attention + MLP block, sequence-first (``[L, N, D]``), OpenAI's parameter names."""

    def __init__(self, width: int, heads: int, *, eps: float = 1e-5):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm32(width, eps=eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = LayerNorm32(width, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        normed = self.ln_1(x)
        mask = None if mask is None else mask.to(dtype=normed.dtype, device=normed.device)
        x = x + self.attn(normed, normed, normed, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """``layers`` residual blocks under one optional additive mask."""

    def __init__(self, width: int, layers: int, heads: int, *, eps: float = 1e-5):
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList([ResidualBlock(width, heads, eps=eps) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


@dataclass(frozen=True)
class ClipDimensions:
    """The sizes of a CLIP ViT, as read from its tensors."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    patch_size: int
    image_size: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike = "", *,
                        vision_heads: int | None = None, text_heads: int | None = None) -> ClipDimensions:
        if "visual.layer1.0.conv1.weight" in state:
            raise InputError("holds a ResNet CLIP image tower (RN50 family), which is not ported; use a ViT "
                             "checkpoint", path=source, field="checkpoint")
        needed = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
                  "positional_embedding", "ln_final.weight", "text_projection")
        absent = [key for key in needed if key not in state]
        if absent:
            shown = ", ".join(sorted(state)[:3])
            raise InputError(f"is not an OpenAI-format CLIP state dict: it lacks {', '.join(absent[:3])} "
                             f"(it has {shown} ...)", path=source, field="checkpoint")
        conv = state["visual.conv1.weight"]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision_width = conv.shape[0]
        text_width = state["ln_final.weight"].shape[0]
        return cls(
            embed_dim=state["text_projection"].shape[1],
            vision_width=vision_width,
            vision_layers=_count_blocks(state, "visual.transformer.resblocks."),
            vision_heads=vision_heads or max(1, vision_width // 64),
            patch_size=conv.shape[-1],
            image_size=conv.shape[-1] * grid,
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            text_width=text_width,
            text_layers=_count_blocks(state, "transformer.resblocks."),
            text_heads=text_heads or max(1, text_width // 64),
        )


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)})


class VisionTower(nn.Module):
    """CLIP's image ViT: ``[N, 3, H, W]`` to ``[N, embed_dim]`` (the projected class token)."""

    def __init__(self, dims: ClipDimensions):
        super().__init__()
        width = dims.vision_width
        self.conv1 = nn.Conv2d(3, width, kernel_size=dims.patch_size, stride=dims.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((dims.image_size // dims.patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm32(width)
        self.transformer = Transformer(width, dims.vision_layers, dims.vision_heads)
        self.ln_post = LayerNorm32(width)
        self.proj = nn.Parameter(torch.zeros(width, dims.embed_dim))

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 1 + patches, width]`` after the transformer (batch-first), before ``ln_post``."""
        x = self.conv1(images.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        return self.transformer(x.transpose(0, 1)).transpose(0, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.ln_post(self.tokens(images)[:, 0]) @ self.proj


class ClipNet(nn.Module):
    """The whole OpenAI CLIP ViT with OpenAI's parameter names (``visual.*`` and the text parts at top level)."""

    def __init__(self, dims: ClipDimensions):
        super().__init__()
        self.dims = dims
        self.visual = VisionTower(dims)
        self.token_embedding = nn.Embedding(dims.vocab_size, dims.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(dims.context_length, dims.text_width))
        self.transformer = Transformer(dims.text_width, dims.text_layers, dims.text_heads)
        self.ln_final = LayerNorm32(dims.text_width)
        self.text_projection = nn.Parameter(torch.zeros(dims.text_width, dims.embed_dim))
        self.logit_scale = nn.Parameter(torch.zeros(()))
        self.register_buffer("causal_mask", torch.full((dims.context_length, dims.context_length),
                                                       float("-inf")).triu_(1), persistent=False)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *, family: str = "clip",
                        vision_heads: int | None = None, text_heads: int | None = None) -> ClipNet:
        """A network sized by ``state``'s shapes with ``state`` loaded (checked key by key)."""
        net = cls(ClipDimensions.from_state_dict(state, source, vision_heads=vision_heads, text_heads=text_heads))
        load_strict(net, state, source, family=family, ignore_unexpected=OPENAI_SCALARS)
        return net.eval()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` to ``[N, embed_dim]`` (not normalised)."""
        return self.visual(images)

    def text_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` ids to ``[N, L, text_width]`` after ``ln_final`` (before pooling and projection)."""
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length]
        x = self.transformer(x.transpose(0, 1), self.causal_mask[:length, :length]).transpose(0, 1)
        return self.ln_final(x)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` ids to ``[N, embed_dim]``: the feature at each row's highest id (its end token)."""
        x = self.text_tokens(ids)
        return x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)] @ self.text_projection


def cosine_logits(videos: torch.Tensor, texts: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """``exp(logit_scale) * cos(videos, texts)``, ``[B, N]``: CLIP's score."""
    scale = torch.as_tensor(logit_scale, dtype=torch.float32).exp()
    return scale * (F.normalize(videos.float(), dim=-1) @ F.normalize(texts.float(), dim=-1).T)
