"""``pe-core``: Meta's Perception Encoder Core (PE-Core) CLIP models on video, frame by frame.

PE-Core's only implementations are perception_models' own ``core/vision_encoder/pe.py`` and the
timm/open_clip re-implementation, both of which pull in timm (and torchvision through it); this is
our torch port of the network, so nothing beyond torch is needed. It was checked against the
official code on a tiny random checkpoint (``tests/data/official/pe_core``); what matters:

- **Vision.** A bias-free patch convolution, a class token (not in G14), learned absolute
  positions (bilinearly resized when the frame grid differs), ``ln_pre``, pre-norm blocks whose
  attention applies a **2D rotary embedding** to queries and keys, ``ln_post`` on every token, then
  **attention pooling** (one learned probe query, 8 heads for every published size, over all tokens
  including the class token, followed by a residual MLP) and the ``proj`` matrix. GELU is the exact
  one, not CLIP's QuickGELU; LayerNorm eps 1e-5.
- **2D RoPE.** Each head's dimension is split in half: the first half rotates by the patch's
  column, the second by its row, with frequencies ``10000^(-2j/(head_dim/2))`` for ``j < head_dim/4``
  and each frequency used for an interleaved pair of channels (pair ``(2i, 2i+1)`` rotated by one
  angle). With a class token, patch positions start at 1 and the class token gets angle 0; without
  one (G14) they start at 0. Nothing of this is stored in the checkpoint.
- **Text.** OpenAI CLIP's causal text transformer (exact GELU), ``ln_final``, the feature at the
  end token (the row's highest id), ``text_projection``. Context 32 (G14: 72) read from the
  positional embedding; tokenizer = CLIP BPE cut as ``clip.tokenize(truncate=True)`` cuts it
  (perception_models' tokenizer keeps the first ``L-1`` ids and ends with end-of-text too; only its
  special-token spellings ``<start_of_text>``/``<end_of_text>`` differ, which matters only for
  captions containing them literally).
- **Head counts** are not in the tensors. Vision heads follow the published table (width 1536 ->
  16, 1024 -> 16, 768 -> 12, 384 -> 6, 192 -> 3; G14's heads are 96 wide, so width // 64 would be
  wrong there), text heads are width // 64, pooling heads are 8; ``vision_heads=``, ``text_heads=``
  and ``pool_heads=`` override them for checkpoints of other sizes.
- **Video.** Official evaluation (``apps/pe/clip_benchmark``, 8 frames): zero-shot *retrieval*
  L2-normalises each frame embedding, averages over frames and does **not** renormalise, and scores
  by the raw dot product with the unit text embedding (``pooling="retrieval"``, the default). The
  benchmark then reweights the whole score matrix by a softmax over the gallery (on by default,
  ``--no-reweight-retrieval`` turns it off); that depends on the gallery, so it is not part of a
  pairwise score. Zero-shot *classification* and the demo notebook average the raw frame
  embeddings, normalise, and score ``100 * cosine`` (``pooling="classification"``).
- **Frames.** ``transforms.get_image_transform``: bilinear resize of the whole frame to a square
  (squash, no crop), ToTensor, mean/std 0.5. The benchmark samples frame indices
  ``int(i * (n - 1) / (T - 1))``; here the task protocol decides the instants.

Two on-disk formats load through ``checkpoint=PATH``: the published ``facebook/PE-Core-*/PE-Core-*.pt``
(a flat state dict: text keys at the top level, ``visual.*``, ``logit_scale``; ``state_dict`` /
``weights`` wrappers and ``module.`` prefixes accepted, as the official ``load_ckpt`` does) and
open_clip's ``hf-hub:timm/PE-Core-*`` files (``visual.trunk.*`` timm names, ``text.*``), mapped
back to the official names. Any float dtype is read into float32 parameters.

How far each mistake moves the tiny model's outputs (the similarity check is 1e-5): RoPE positions
from 0 despite the class token 6.6e-3 (video cosine 0.99976); row and column halves swapped
4.5e-2; rotate-half pairing instead of interleaved pairs 1.7e-2; no RoPE 5.3e-2; pooling with the
tower's 4 heads instead of 8 1.6e-2; QuickGELU 3.2e-3 (text cosine 0.99994); renormalising the
retrieval video embedding 1.4e-2 (cosine 1.0: only the score shows it); the classification pooling
in place of the retrieval one 1.8e-2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.clip_net import LayerNorm32, Mlp, per_frame, unit_frame_mean
from ..core.shapes import count_blocks, optional_positive
from ..core.tokenizers import openai_tokenize
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["PeCoreAdapter", "PeCoreNet", "PeDimensions", "pe_core", "pe_frame_spec", "rope_2d_angles", "rotate_pairs",
           "from_open_clip_layout", "POOLINGS"]

FAMILY = "pe-core"
PE_MEAN = (0.5, 0.5, 0.5)
PE_STD = (0.5, 0.5, 0.5)
POOL_HEADS = 8
POOLINGS = ("retrieval", "classification")
# Published vision widths -> heads (config.py); G14 (1536) is the one where width // 64 is wrong.
PUBLISHED_VISION_HEADS = {1536: 16, 1024: 16, 768: 12, 384: 6, 192: 3}
_FIELD = "checkpoint"
_REQUIRED = ("visual.conv1.weight", "visual.positional_embedding", "visual.attn_pool.probe", "visual.proj",
             "token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight")


def pe_frame_spec(size: int, frames: int = 8) -> FrameSpec:
    """``get_image_transform(size)``: bilinear squash of the whole frame, mean/std 0.5."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=None, mean=PE_MEAN, std=PE_STD,
                     resize="squash", interpolation="bilinear")


# ------------------------------------------------------------------------------------------------
# Dimensions


@dataclass(frozen=True)
class PeDimensions:
    """The sizes of a PE-Core CLIP, read from its tensors (head counts from the rules above)."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    patch_size: int
    grid: int
    class_token: bool
    pool_heads: int
    pool_mlp: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int

    @property
    def image_size(self) -> int:
        return self.grid * self.patch_size

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                        vision_heads: int | None = None, text_heads: int | None = None,
                        pool_heads: int | None = None) -> PeDimensions:
        conv = state["visual.conv1.weight"]
        class_token = "visual.class_embedding" in state
        rows = state["visual.positional_embedding"].shape[0] - int(class_token)
        grid = math.isqrt(max(rows, 0))
        if conv.ndim != 4 or grid * grid != rows or grid == 0:
            raise InputError(f"visual.positional_embedding has {rows} patch rows, not a square grid "
                             f"(class token: {class_token})", path=source, field=_FIELD)
        vision_width = conv.shape[0]
        text_width = state["token_embedding.weight"].shape[1]
        embed_dim = state["visual.proj"].shape[1]
        if state["text_projection"].shape[-1] != embed_dim:
            raise InputError(f"visual.proj gives {embed_dim}-d image embeddings but text_projection "
                             f"{state['text_projection'].shape[-1]}-d text embeddings", path=source, field=_FIELD)
        v_heads = vision_heads or PUBLISHED_VISION_HEADS.get(vision_width) or _rule_heads(vision_width)
        t_heads = text_heads or _rule_heads(text_width)
        p_heads = pool_heads or POOL_HEADS
        for what, width, heads, arg in (("vision", vision_width, v_heads, "vision_heads"),
                                        ("text", text_width, t_heads, "text_heads"),
                                        ("pooling", vision_width, p_heads, "pool_heads")):
            if not heads or width % heads:
                raise InputError(f"cannot split the {what} width {width} into heads "
                                 f"({heads or 'width // 64 does not apply'}); pass {arg}=N", path=source,
                                 field=_FIELD)
        if (vision_width // v_heads) % 4:
            raise InputError(f"vision head width {vision_width // v_heads} is not a multiple of 4, which the 2D "
                             "rotary embedding needs; pass vision_heads=N", path=source, field=_FIELD)
        return cls(
            embed_dim=embed_dim,
            vision_width=vision_width,
            vision_layers=count_blocks(state, "visual.transformer.resblocks."),
            vision_heads=v_heads,
            vision_mlp=_mlp_width(state, "visual.transformer.resblocks.0.", source),
            patch_size=conv.shape[-1],
            grid=grid,
            class_token=class_token,
            pool_heads=p_heads,
            pool_mlp=_mlp_width(state, "visual.attn_pool.", source),
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            text_width=text_width,
            text_layers=count_blocks(state, "transformer.resblocks."),
            text_heads=t_heads,
            text_mlp=_mlp_width(state, "transformer.resblocks.0.", source),
        )


def _rule_heads(width: int) -> int | None:
    return width // 64 if width % 64 == 0 and width >= 64 else None


def _mlp_width(state: Mapping[str, torch.Tensor], prefix: str, source: str | os.PathLike) -> int:
    key = f"{prefix}mlp.c_fc.weight"
    if key not in state:
        raise InputError(f"lacks {key}", path=source, field=_FIELD)
    return state[key].shape[0]


# ------------------------------------------------------------------------------------------------
# Network


def rope_2d_angles(grid_h: int, grid_w: int, head_dim: int, class_token: bool,
                   device: torch.device | None = None) -> torch.Tensor:
    """``[tokens, head_dim]`` rotation angles: column angles, then row angles, each pair-interleaved."""
    quarter = head_dim // 4
    half = head_dim // 2
    freqs = 1.0 / (10000.0 ** (torch.arange(0, half, 2, device=device)[:quarter].float() / half))
    offset = 1 if class_token else 0
    rows = torch.arange(grid_h, device=device, dtype=torch.float32) + offset
    cols = torch.arange(grid_w, device=device, dtype=torch.float32) + offset
    row_angles = (rows[:, None] * freqs).repeat_interleave(2, dim=-1)  # [H, half]
    col_angles = (cols[:, None] * freqs).repeat_interleave(2, dim=-1)  # [W, half]
    angles = torch.cat([col_angles[None, :, :].expand(grid_h, -1, -1),
                        row_angles[:, None, :].expand(-1, grid_w, -1)], dim=-1).reshape(grid_h * grid_w, head_dim)
    if class_token:
        angles = torch.cat([angles.new_zeros(1, head_dim), angles], dim=0)
    return angles


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs ``(x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)``."""
    pairs = x.float().unflatten(-1, (-1, 2))
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x.float() * cos + turned * sin).to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter names (fused ``in_proj``)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [N, heads, L, head_dim]

    def forward(self, x: torch.Tensor, *, query: torch.Tensor | None = None, rope: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        width = x.shape[-1]
        w, b = self.in_proj_weight, self.in_proj_bias
        if query is None:
            q, k, v = F.linear(x, w, b).chunk(3, dim=-1)
        else:  # attention pooling: the learned probe asks, the tokens answer
            q = F.linear(query, w[:width], b[:width])
            k, v = F.linear(x, w[width:], b[width:]).chunk(2, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if rope is not None:
            cos, sin = rope.cos(), rope.sin()
            q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm residual block (batch-first), the official parameter names."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.ln_1 = LayerNorm32(width, eps=1e-5)
        self.attn = Attention(width, heads)
        self.ln_2 = LayerNorm32(width, eps=1e-5)
        self.mlp = Mlp(width, hidden, nn.GELU())

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope=rope, causal=causal)
        return x + self.mlp(self.ln_2(x))


class Blocks(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, hidden: int):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width, heads, hidden) for _ in range(layers)])

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, rope, causal)
        return x


class AttentionPool(nn.Module):
    """One learned probe attends over all tokens; then a residual MLP on the pooled vector."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, width))
        self.attn = Attention(width, heads)
        self.layernorm = LayerNorm32(width, eps=1e-5)
        self.mlp = Mlp(width, hidden, nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.attn(x, query=self.probe.to(x.dtype).expand(x.shape[0], -1, -1))
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]


class PeVision(nn.Module):
    """PE's image tower: ``[N, 3, H, W]`` to ``[N, embed_dim]`` (not normalised)."""

    def __init__(self, dims: PeDimensions, proj_bias: bool = False):
        super().__init__()
        self.dims = dims
        width = dims.vision_width
        self.conv1 = nn.Conv2d(3, width, kernel_size=dims.patch_size, stride=dims.patch_size, bias=False)
        if dims.class_token:
            self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(dims.grid ** 2 + int(dims.class_token), width))
        self.ln_pre = LayerNorm32(width, eps=1e-5)
        self.transformer = Blocks(width, dims.vision_layers, dims.vision_heads, dims.vision_mlp)
        self.ln_post = LayerNorm32(width, eps=1e-5)
        self.attn_pool = AttentionPool(width, dims.pool_heads, dims.pool_mlp)
        self.proj = nn.Parameter(torch.zeros(width, dims.embed_dim))
        if proj_bias:  # open_clip/timm files carry the projection as a Linear with a (zero) bias
            self.proj_bias = nn.Parameter(torch.zeros(dims.embed_dim))

    def _positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        pos = self.positional_embedding
        if (grid_h, grid_w) == (self.dims.grid, self.dims.grid):
            return pos
        head, grid = (pos[:1], pos[1:]) if self.dims.class_token else (pos[:0], pos)
        grid = grid.reshape(1, self.dims.grid, self.dims.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1).to(pos.dtype)
        return torch.cat([head, grid], dim=0)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, tokens, width]`` after ``ln_post`` (class token first when there is one)."""
        x = self.conv1(images.to(self.conv1.weight.dtype))
        grid_h, grid_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # row-major patches
        if self.dims.class_token:
            x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = self.ln_pre(x + self._positions(grid_h, grid_w).to(x.dtype))
        head_dim = self.dims.vision_width // self.dims.vision_heads
        rope = rope_2d_angles(grid_h, grid_w, head_dim, self.dims.class_token, device=x.device)
        return self.ln_post(self.transformer(x, rope=rope))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.attn_pool(self.tokens(images))
        out = pooled @ self.proj.to(pooled.dtype)
        if hasattr(self, "proj_bias"):
            out = out + self.proj_bias.to(out.dtype)
        return out


class PeCoreNet(nn.Module):
    """The PE-Core CLIP with the official key layout (text at the top level, ``visual.*``).

    The text side has OpenAI's key names but is not `core.clip_net.TextTower`: its MLP is the exact
    GELU (QuickGELU moves the text embedding, see the module docstring) with a width read from the
    file, and it runs on the batch-first `Blocks` the RoPE vision tower needs.
    """

    def __init__(self, dims: PeDimensions, proj_bias: bool = False):
        super().__init__()
        self.dims = dims
        self.visual = PeVision(dims, proj_bias)
        self.token_embedding = nn.Embedding(dims.vocab_size, dims.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(dims.context_length, dims.text_width))
        self.transformer = Blocks(dims.text_width, dims.text_layers, dims.text_heads, dims.text_mlp)
        self.ln_final = LayerNorm32(dims.text_width, eps=1e-5)
        self.text_projection = nn.Parameter(torch.zeros(dims.text_width, dims.embed_dim))
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` to ``[N, embed_dim]`` (not normalised)."""
        return self.visual(images)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` ids to ``[N, embed_dim]`` (not normalised): the feature at each row's end token."""
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length].to(self.token_embedding.weight.dtype)
        x = self.ln_final(self.transformer(x, causal=True))
        pooled = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        return pooled @ self.text_projection.to(pooled.dtype)


# ------------------------------------------------------------------------------------------------
# Checkpoint formats

# open_clip (hf-hub:timm/PE-Core-*) vision names -> the official ones, after ``visual.trunk.``.
_OPEN_CLIP_VISION = (
    (r"patch_embed\.proj\.", "conv1."),
    (r"norm_pre\.", "ln_pre."),
    (r"norm\.", "ln_post."),
    (r"blocks\.(\d+)\.norm1\.", r"transformer.resblocks.\1.ln_1."),
    (r"blocks\.(\d+)\.norm2\.", r"transformer.resblocks.\1.ln_2."),
    (r"blocks\.(\d+)\.attn\.qkv\.weight", r"transformer.resblocks.\1.attn.in_proj_weight"),
    (r"blocks\.(\d+)\.attn\.qkv\.bias", r"transformer.resblocks.\1.attn.in_proj_bias"),
    (r"blocks\.(\d+)\.attn\.proj\.", r"transformer.resblocks.\1.attn.out_proj."),
    (r"blocks\.(\d+)\.mlp\.fc1\.", r"transformer.resblocks.\1.mlp.c_fc."),
    (r"blocks\.(\d+)\.mlp\.fc2\.", r"transformer.resblocks.\1.mlp.c_proj."),
    (r"attn_pool\.proj\.", "attn_pool.attn.out_proj."),
    (r"attn_pool\.norm\.", "attn_pool.layernorm."),
    (r"attn_pool\.mlp\.fc1\.", "attn_pool.mlp.c_fc."),
    (r"attn_pool\.mlp\.fc2\.", "attn_pool.mlp.c_proj."),
)


def from_open_clip_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An open_clip ``CustomTextCLIP`` state dict (timm ``vit_pe_core_*`` trunk) in the official layout.

    The reverse of timm's PE conversion: ``cls_token``/``pos_embed`` lose their batch axes, the
    pooling's separate ``q`` and ``kv`` projections are fused back into ``in_proj``, and the timm
    ``head`` Linear becomes ``proj`` (transposed) plus its bias (zero in timm's conversion).
    """
    import re

    out: dict[str, torch.Tensor] = {}
    trunk = "visual.trunk."
    rules = [(re.compile(pattern), replacement) for pattern, replacement in _OPEN_CLIP_VISION]
    pool_q: dict[str, torch.Tensor] = {}
    pool_kv: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("text."):
            out[key[len("text."):]] = value
        elif key == "logit_scale":
            out[key] = value
        elif key.startswith(trunk):
            name = key[len(trunk):]
            if name == "cls_token":
                out["visual.class_embedding"] = value.reshape(-1)
            elif name == "pos_embed":
                out["visual.positional_embedding"] = value.reshape(value.shape[-2], value.shape[-1])
            elif name == "attn_pool.latent":
                out["visual.attn_pool.probe"] = value.reshape(1, -1, value.shape[-1])
            elif name in ("attn_pool.q.weight", "attn_pool.q.bias"):
                pool_q[name.rsplit(".", 1)[1]] = value
            elif name in ("attn_pool.kv.weight", "attn_pool.kv.bias"):
                pool_kv[name.rsplit(".", 1)[1]] = value
            elif name == "head.weight":
                out["visual.proj"] = value.T.contiguous()
            elif name == "head.bias":
                out["visual.proj_bias"] = value
            else:
                for pattern, replacement in rules:
                    if pattern.match(name):
                        name = pattern.sub(replacement, name, count=1)
                        break
                out[f"visual.{name}"] = value
        else:
            out[key] = value  # reported as unexpected by the strict load
    for part in ("weight", "bias"):
        if part in pool_q and part in pool_kv:
            out[f"visual.attn_pool.attn.in_proj_{part}"] = torch.cat([pool_q[part], pool_kv[part]], dim=0)
        else:  # left unfused so the key report names what is missing
            for name, found in (("q", pool_q), ("kv", pool_kv)):
                if part in found:
                    out[f"visual.trunk.attn_pool.{name}.{part}"] = found[part]
    return out


def load_pe_core(path: Path, *, vision_heads: int | None = None, text_heads: int | None = None,
                 pool_heads: int | None = None) -> tuple[PeCoreNet, str]:
    """Our network with the file's weights, and the format it was read as."""
    checkpoint = unwrap_state_dict(read_checkpoint(path, family=FAMILY), keys=("state_dict", "weights", "model",
                                                                                "module"))
    state = checkpoint.state_dict
    layout = "perception_models"
    if any(key.startswith("visual.trunk.") for key in state):
        state = from_open_clip_layout(state)
        layout = "open_clip"
    checkpoint.state_dict = state
    require_keys(checkpoint, _REQUIRED, family=FAMILY)
    dims = PeDimensions.from_state_dict(state, path, vision_heads=vision_heads, text_heads=text_heads,
                                        pool_heads=pool_heads)
    net = PeCoreNet(dims, proj_bias="visual.proj_bias" in state)
    load_strict(net, state, path, family=FAMILY)
    return net.eval(), layout


# ------------------------------------------------------------------------------------------------
# Adapter


class PeCoreAdapter(TorchAdapter):
    """A PE-Core CLIP as a video-text dual encoder (per-frame image embeddings pooled over time)."""

    name = "pe-core"

    def __init__(self, net: PeCoreNet, *, pooling: str, spec: FrameSpec, checkpoint: Path, layout: str):
        super().__init__(spec=spec, checkpoint=checkpoint)
        self.net = net
        self.pooling = pooling
        self.layout = layout

    def frame_embeddings(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, T, D]`` raw image embeddings, one per frame."""
        return per_frame(self.net.encode_image, clips.to(self.device))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, D]``: the official video pooling of the chosen ``pooling``."""
        frames = self.frame_embeddings(clips)
        if self.pooling == "retrieval":  # encode_video(normalize=True): unit frames averaged, not renormalised
            return unit_frame_mean(frames)
        return F.normalize(frames.mean(dim=1), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` unit vectors (``encode_text(normalize=True)``)."""
        ids = openai_tokenize(list(texts), self.net.dims.context_length).to(self.device)
        return F.normalize(self.net.encode_text(ids).float(), dim=-1)

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """Retrieval: raw dot product with the unit texts. Classification: ``100 * cosine``."""
        texts = F.normalize(texts.float(), dim=-1)
        if self.pooling == "retrieval":
            return videos.float() @ texts.T
        return 100.0 * F.normalize(videos.float(), dim=-1) @ texts.T


def _facebook_tag(name: str, size: int, revision: str | None = None, notes: str = "") -> WeightTag:
    return WeightTag(name=name.lower(), source="hub", hub_id=f"facebook/{name}", filename=f"{name}.pt",
                     revision=revision, frame_spec=pe_frame_spec(size),
                     notes=notes or "perception_models state dict; revision not pinned (main)")


def _open_clip_tag(name: str, hub_name: str, size: int) -> WeightTag:
    return WeightTag(name=name, source="hub", hub_id=f"timm/{hub_name}", filename="open_clip_model.safetensors",
                     frame_spec=pe_frame_spec(size),
                     notes="open_clip hf-hub layout (timm trunk); revision not pinned (main); "
                           "open_clip_pytorch_model.bin of the same repository loads too")


CARD = ModelCard(
    family="pe_core",
    description="Perception Encoder Core CLIP per frame (ViT with 2D RoPE and attention pooling); official "
                "video retrieval pooling (mean of unit frame embeddings) and raw dot-product score",
    capabilities=(DUAL_ENCODER,),
    tags=(
        _facebook_tag("PE-Core-G14-448", 448),
        _facebook_tag("PE-Core-L14-336", 336, revision="bafb0f76541d399057e980a25947f67acec76575",
                      notes="perception_models state dict; file sha256 reported as "
                            "0cdab5b338cbaa1e7a5dcd1b2fb4c9f4d5df1abd289564658edbab64a650e7e8 (not checked here)"),
        _facebook_tag("PE-Core-B16-224", 224),
        _facebook_tag("PE-Core-S16-384", 384),
        _facebook_tag("PE-Core-T16-384", 384),
        _open_clip_tag("open-clip-pe-core-bigg-14-448", "PE-Core-bigG-14-448", 448),
        _open_clip_tag("open-clip-pe-core-l-14-336", "PE-Core-L-14-336", 336),
        _open_clip_tag("open-clip-pe-core-b-16", "PE-Core-B-16", 224),
        _open_clip_tag("open-clip-pe-core-s-16-384", "PE-Core-S-16-384", 384),
        _open_clip_tag("open-clip-pe-core-t-16-384", "PE-Core-T-16-384", 384),
    ),
    default_tag="pe-core-l14-336",
    frame_spec=pe_frame_spec(336),
    tokenizer="OpenAI CLIP BPE (shipped), context 32 (G14: 72), clip.tokenize(truncate=True) cut",
    code_licence="Apache-2.0 (facebookresearch/perception_models, LICENSE.PE); this port: the project's licence",
    weights_licence="Apache-2.0 (facebook/PE-Core-* model cards)",
    paper="Bolya et al., Perception Encoder: The best visual embeddings are not at the output of the network, "
          "arXiv:2504.13181, 2025",
    citation="bolya2025perception",
    checkpoint_formats=("perception_models .pt state dict (facebook/PE-Core-*/PE-Core-*.pt)",
                        "open_clip hf-hub:timm/PE-Core-* (open_clip_model.safetensors or open_clip_pytorch_model.bin)"),
    code_version="1",
)


@register_model("pe-core", card=CARD)
def pe_core(checkpoint: str | os.PathLike | None = None, frames: int = 8, pooling: str = "retrieval",
            vision_heads: int | None = None, text_heads: int | None = None,
            pool_heads: int | None = None) -> PeCoreAdapter:
    """PE-Core from a ``facebook/PE-Core-*`` ``.pt`` file or an open_clip ``timm/PE-Core-*`` weights file.

    ``frames``: frames per clip (8 in the official video evaluation). ``pooling``: ``"retrieval"``
    (default) or ``"classification"``, the two official video protocols (module docstring).
    ``vision_heads``/``text_heads``/``pool_heads``: attention heads for sizes outside the
    published table.
    """
    path = require_checkpoint("pe-core", checkpoint)
    frames = positive_int("pe-core", "frames", frames)
    if pooling not in POOLINGS:
        raise InputError(f"pe-core: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}",
                         field="--model-args")
    optional_positive("pe-core", vision_heads=vision_heads, text_heads=text_heads, pool_heads=pool_heads)
    net, layout = load_pe_core(path, vision_heads=vision_heads, text_heads=text_heads, pool_heads=pool_heads)
    return PeCoreAdapter(net, pooling=pooling, spec=pe_frame_spec(net.dims.image_size, frames), checkpoint=path,
                         layout=layout)
