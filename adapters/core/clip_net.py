"""OpenAI CLIP's vision transformer and text transformer, built from a state dict's shapes.

Most video baselines of the field are CLIP with something around it (CLIP4Clip, ViFi-CLIP, BIKE,
Text4Vis, X-CLIP's towers, ViCLIP's and InternVideo's text, LaViLa's text), and their checkpoints
keep OpenAI's parameter names under a prefix. This module is our port of that network, with
OpenAI's key layout so a state dict loads as is:

- vision: a patch convolution without bias, a class token, learned positions, ``ln_pre``, the
  residual blocks (sequence-first ``nn.MultiheadAttention``, QuickGELU MLP of width 4x), then
  ``ln_post`` on the class token only and the ``proj`` matrix;
- text (`TextTower`): token and learned position embeddings, the same blocks under a causal mask,
  ``ln_final``, the feature at the end token (the highest id of each row: OpenAI pools at
  ``argmax``) and the ``text_projection`` matrix. OpenAI keeps these at the model's top level, so
  a whole model in that layout (`ClipNet`; InternVideo's and LaViLa's too) *is* a text tower with
  its vision side added;
- ``logit_scale`` (the log of the temperature's inverse).

Every size is read from the tensors (`ClipDimensions.from_state_dict`, with the helpers of
`instract_eval.adapters.core.shapes`), as OpenAI's ``build_model`` does; only the head counts
cannot be, and follow OpenAI's rule (width // 64, at least one), overridable for checkpoints
trained otherwise. The ResNet image towers (RN50 ...) are not ported: a state dict holding one is
refused by name.

`LayerNorm32` computes in float32 whatever the dtype of its input and of its own parameters, so a
tower cast to fp16 or bf16 (as OpenAI's files are stored) runs on the CPU too. The frame pooling
and scores that the CLIP-per-frame families share (`per_frame`, `mean_of_normalised_frames`,
`cosine`, `cosine_logits`) sit here as well.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError

from .checkpoints import load_strict
from .shapes import count_blocks, heads_for
from .tokenizers import openai_tokenize

__all__ = ["ClipDimensions", "TextSizes", "quick_gelu", "QuickGELU", "LayerNorm32", "Mlp", "FcMlp", "ResidualBlock",
           "Transformer", "FrameTransformer", "VisionTower", "TextTower", "ClipNet", "per_frame", "unit_frame_mean",
           "mean_of_normalised_frames", "cosine", "cosine_logits", "OPENAI_SCALARS"]

# Integer scalars OpenAI's files carry beside the parameters.
OPENAI_SCALARS = ("input_resolution", "context_length", "vocab_size")


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(1.702 x)``: the GELU approximation CLIP was trained with."""
    return x * torch.sigmoid(1.702 * x)


class QuickGELU(nn.Module):
    """`quick_gelu` as a module (OpenAI's MLPs hold it as ``gelu``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quick_gelu(x)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input and parameter dtypes (autocast, a ``.half()`` model).

    The parameters are cast too: the CPU kernel refuses a float32 input with fp16/bf16 weights.
    Casting float32 parameters is a no-op, so a float32 model computes exactly ``nn.LayerNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class Mlp(nn.Sequential):
    """OpenAI's MLP: ``c_fc``, the activation (under OpenAI's name ``gelu``; QuickGELU unless given), ``c_proj``."""

    def __init__(self, width: int, hidden: int, activation: nn.Module | None = None):
        super().__init__(OrderedDict(c_fc=nn.Linear(width, hidden), gelu=activation or QuickGELU(),
                                     c_proj=nn.Linear(hidden, width)))


class FcMlp(nn.Module):
    """The same QuickGELU MLP under timm's and Hugging Face's names (``fc1``, ``fc2``)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ResidualBlock(nn.Module):
    """Pre-norm attention + MLP block, sequence-first (``[L, N, D]``), OpenAI's parameter names."""

    def __init__(self, width: int, heads: int, *, eps: float = 1e-5):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm32(width, eps=eps)
        self.mlp = Mlp(width, width * 4)
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


class FrameTransformer(nn.Module):
    """A transformer over time on per-frame CLIP features, with learned frame positions and a residual.

    ``[B, T, D]`` to ``[B, T, D]``: ``frames + transformer(frames + positions[:T])``, no mask, no final
    LayerNorm. It is the ``video_header`` of Wu et al.'s BIKE and Text4Vis (``sim_header: Transf``,
    TF-style LayerNorm with eps 1e-12, the default here); keys ``frame_position_embeddings`` and
    ``transformer.resblocks.*``.
    """

    def __init__(self, width: int, positions: int, layers: int, heads: int, *, eps: float = 1e-12):
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(positions, width)
        self.transformer = Transformer(width, layers, heads, eps=eps)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        steps = frames.shape[1]
        positions = self.frame_position_embeddings.weight[:steps].to(frames.dtype)
        mixed = self.transformer((frames + positions).transpose(0, 1)).transpose(0, 1)
        return mixed.to(frames.dtype) + frames


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
            vision_layers=count_blocks(state, "visual.transformer.resblocks."),
            vision_heads=heads_for(vision_heads, vision_width, "vision_heads"),
            patch_size=conv.shape[-1],
            image_size=conv.shape[-1] * grid,
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            text_width=text_width,
            text_layers=count_blocks(state, "transformer.resblocks."),
            text_heads=heads_for(text_heads, text_width, "text_heads"),
        )


class TextSizes(Protocol):
    """The sizes a `TextTower` is built from (every family's dimensions record names them alike)."""

    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    embed_dim: int


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


class TextTower(nn.Module):
    """OpenAI CLIP's text transformer with OpenAI's key names at this module's top level.

    ``[N, L]`` ids to ``[N, embed_dim]``: token + learned positions, causal blocks, ``ln_final``, the
    feature at each row's highest id (the end token), ``text_projection``. Used as is (ViCLIP's
    ``text_encoder``) or as the base of a whole model whose text parameters sit at its top level
    (`ClipNet`, InternVideo, LaViLa), which then adds its vision side.
    """

    def __init__(self, dims: TextSizes):
        super().__init__()
        self.context_length = dims.context_length
        self.vocab_size = dims.vocab_size
        self.token_embedding = nn.Embedding(dims.vocab_size, dims.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(dims.context_length, dims.text_width))
        self.transformer = Transformer(dims.text_width, dims.text_layers, dims.text_heads)
        self.ln_final = LayerNorm32(dims.text_width)
        self.text_projection = nn.Parameter(torch.zeros(dims.text_width, dims.embed_dim))
        self.register_buffer("causal_mask", torch.full((dims.context_length, dims.context_length),
                                                       float("-inf")).triu_(1), persistent=False)

    def text_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` ids to ``[N, L, text_width]`` after ``ln_final`` (before pooling and projection)."""
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length].to(self.token_embedding.weight.dtype)
        x = self.transformer(x.transpose(0, 1), self.causal_mask[:length, :length]).transpose(0, 1)
        return self.ln_final(x)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` ids to ``[N, embed_dim]`` (not normalised): the feature at each row's end token (highest id)."""
        x = self.text_tokens(ids)
        return x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)] @ self.text_projection

    def check_ids(self, ids: torch.Tensor, family: str) -> torch.Tensor:
        """``ids``, refused in one line when the tokenizer gave an id past the checkpoint's vocabulary."""
        if ids.numel() and int(ids.max()) >= self.vocab_size:
            raise InputError(f"{family}: the checkpoint's vocabulary has {self.vocab_size} ids; the CLIP tokenizer "
                             f"produced {int(ids.max())}", field="--model")
        return ids

    def tokenize(self, texts: Sequence[str], family: str) -> torch.Tensor:
        """CLIP BPE, SOT ... EOT, cut to the context as ``clip.tokenize(truncate=True)`` cuts."""
        return self.check_ids(openai_tokenize(list(texts), self.context_length), family)


class ClipNet(TextTower):
    """The whole OpenAI CLIP ViT with OpenAI's parameter names: the text tower at top level, ``visual.*``,
    ``logit_scale``."""

    def __init__(self, dims: ClipDimensions):
        super().__init__(dims)
        self.dims = dims
        self.visual = VisionTower(dims)
        self.logit_scale = nn.Parameter(torch.zeros(()))

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


# ------------------------------------------------------------------------------------------------
# Frame pooling and scores of the CLIP-per-frame families


def per_frame(encode: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor) -> torch.Tensor:
    """``[B, T, ...]`` clips to ``[B, T, D]`` float32 features: every frame through ``encode`` in one batch."""
    batch, frames = clips.shape[:2]
    return encode(clips.flatten(0, 1)).float().view(batch, frames, -1)


def unit_frame_mean(frame_embeddings: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]`` to ``[B, D]``: each frame normalised, then averaged (not normalised again)."""
    return F.normalize(frame_embeddings, dim=-1).mean(dim=1)


def mean_of_normalised_frames(frame_embeddings: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]`` to ``[B, D]``: each frame normalised, averaged, normalised again."""
    return F.normalize(unit_frame_mean(frame_embeddings), dim=-1)


def cosine(videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` cosines of ``[B, D]`` videos and ``[N, D]`` texts, in float32."""
    return F.normalize(videos.float(), dim=-1) @ F.normalize(texts.float(), dim=-1).T


def cosine_logits(videos: torch.Tensor, texts: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """``exp(logit_scale) * cos(videos, texts)``, ``[B, N]``: CLIP's score."""
    scale = torch.as_tensor(logit_scale, dtype=torch.float32).exp()
    return scale * cosine(videos, texts)
