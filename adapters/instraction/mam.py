"""Masked action modelling: a small CoCa-style decoder that restores a masked action word from the
caption's other tokens and the student's action tokens.

Official release: ``model/modules/mask_action_modeling.py`` (after lucidrains' CoCa-pytorch).
What this port keeps, under the official parameter and buffer names:

- input: the CLIP text tower's token features of the caption (all 32 positions, projected), with
  every BPE piece of the chosen action word replaced by the learned ``mask_action_embedding``
  (initialised N(0, 0.02));
- per layer, a parallel block -- one pre-LayerNorm, then multi-query causal self-attention (8
  query heads, one shared key/value head, rotary positions on queries and keys) *plus* a SwiGLU
  feed-forward of the same normalised input -- and a cross-attention block (multi-query, one K/V
  head) to the action tokens *plus* its own SwiGLU feed-forward, each added residually;
- the self-attention also hides padded keys (``ids == pad_id``);
- LayerNorms with a learned gain and a fixed zero bias (``beta`` is a buffer);
- the loss is cross-entropy of the logits *at the masked positions* against the caption's ids at
  those same positions (not next-token prediction), zero when no masked position survives.

The release creates input projections lazily on the first forward when widths differ (outside the
optimiser, breaking a strict reload); this port requires equal widths instead and says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError

__all__ = ["GainLayerNorm", "rotate_half", "ParallelBlock", "MultiQueryCrossAttention", "MaskedActionDecoder"]


class GainLayerNorm(nn.Module):
    """LayerNorm with a learned gain and a zero bias kept as a buffer (``gamma``, ``beta``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[a, b]`` halves of the last dimension to ``[-b, a]`` (the rotary pairing of CoCa-pytorch)."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class Rotary(nn.Module):
    """Rotary angles: position x inverse frequency, both halves (``inv_freq`` is a saved buffer)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, length: int, device: torch.device) -> torch.Tensor:
        positions = torch.arange(length, device=device, dtype=self.inv_freq.dtype)
        angles = positions[:, None] * self.inv_freq[None]
        return torch.cat((angles, angles), dim=-1)


def _swiglu(x: torch.Tensor) -> torch.Tensor:
    value, gate = x.chunk(2, dim=-1)
    return F.silu(gate) * value


class _SwiGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _swiglu(x)


class ParallelBlock(nn.Module):
    """Causal multi-query self-attention and a SwiGLU feed-forward side by side on one LayerNorm."""

    def __init__(self, dim: int, dim_head: int, heads: int, ff_mult: int):
        super().__init__()
        self.norm = GainLayerNorm(dim)
        inner, ff_inner = dim_head * heads, dim * ff_mult
        self.splits = (inner, dim_head, dim_head, ff_inner * 2)
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.rotary_emb = Rotary(dim_head)
        self.fused_attn_ff_proj = nn.Linear(dim, sum(self.splits), bias=False)
        self.attn_out = nn.Linear(inner, dim, bias=False)
        self.ff_out = nn.Sequential(_SwiGLU(), nn.Linear(ff_inner, dim, bias=False))

    def forward(self, x: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, N, D]; ``visible`` [B, N] keys that are not padding."""
        batch, length, _ = x.shape
        x = self.norm(x)
        q, k, v, ff = self.fused_attn_ff_proj(x).split(self.splits, dim=-1)
        q = q.view(batch, length, self.heads, -1).transpose(1, 2)            # [B, H, N, d]
        angles = self.rotary_emb(length, x.device)
        q = q * angles.cos() + rotate_half(q) * angles.sin()
        k = k * angles.cos() + rotate_half(k) * angles.sin()                  # [B, N, d], one head
        scores = (q * self.scale) @ k.unsqueeze(1).transpose(-1, -2)          # [B, H, N, N]
        lowest = -torch.finfo(scores.dtype).max
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, lowest)
        if visible is not None:
            scores = scores.masked_fill(~visible[:, None, None, :], lowest)
        scores = scores - scores.amax(dim=-1, keepdim=True).detach()
        out = scores.softmax(dim=-1) @ v.unsqueeze(1)
        return self.attn_out(out.transpose(1, 2).reshape(batch, length, -1)) + self.ff_out(ff)


class MultiQueryCrossAttention(nn.Module):
    """Text queries (8 heads) to the action tokens (one key/value head), plus a SwiGLU feed-forward."""

    def __init__(self, dim: int, context_dim: int, dim_head: int, heads: int, ff_mult: int):
        super().__init__()
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.norm = GainLayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(context_dim, dim_head * 2, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim * 2, bias=False), _SwiGLU(),
                                nn.Linear(ff_mult * dim, dim, bias=False))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        x = self.norm(x)
        q = self.to_q(x).view(batch, length, self.heads, -1).transpose(1, 2) * self.scale
        k, v = self.to_kv(context).chunk(2, dim=-1)                          # [B, M, d] each
        scores = q @ k.unsqueeze(1).transpose(-1, -2)
        scores = scores - scores.amax(dim=-1, keepdim=True)
        out = scores.softmax(dim=-1) @ v.unsqueeze(1)
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1)) + self.ff(x)


class MaskedActionDecoder(nn.Module):
    """The MAM decoder (``text_decoder.*``): masked caption features + action tokens -> vocabulary logits."""

    def __init__(self, *, dim: int, vocab_size: int, depth: int, context_dim: int, dim_head: int, heads: int,
                 ff_mult: int, pad_id: int = 0, mask_embedding_std: float = 0.02):
        super().__init__()
        self.dim = dim
        self.context_dim = context_dim
        self.pad_id = pad_id
        self.mask_action_embedding = nn.Parameter(torch.randn(dim) * float(mask_embedding_std))
        self.multimodal_layers = nn.ModuleList([
            nn.ModuleList([ParallelBlock(dim, dim_head, heads, ff_mult),
                           MultiQueryCrossAttention(dim, context_dim, dim_head, heads, ff_mult)])
            for _ in range(depth)])
        self.to_logits = nn.Sequential(GainLayerNorm(dim), nn.Linear(dim, vocab_size, bias=False))

    def hidden(self, text_features: torch.Tensor, action_tokens: torch.Tensor, ids: torch.Tensor,
               action_mask: torch.Tensor) -> torch.Tensor:
        """``[B, N, dim]`` decoder states of the caption with its ``action_mask`` positions masked."""
        if text_features.shape[-1] != self.dim or action_tokens.shape[-1] != self.context_dim:
            raise InputError(f"the MAM decoder is {self.dim} wide over {self.context_dim}-wide action tokens; got "
                             f"text features of width {text_features.shape[-1]} and tokens of width "
                             f"{action_tokens.shape[-1]}", field="text_decoder")
        if ids.shape != text_features.shape[:2] or action_mask.shape != text_features.shape[:2]:
            raise InputError(f"MAM ids {tuple(ids.shape)} and action_mask {tuple(action_mask.shape)} must match the "
                             f"caption's {tuple(text_features.shape[:2])} positions", field="action_mask")
        masked = action_mask.to(device=text_features.device, dtype=torch.bool)
        x = torch.where(masked.unsqueeze(-1), self.mask_action_embedding.to(text_features.dtype), text_features)
        visible = ids.to(x.device) != self.pad_id
        for self_attention, cross_attention in self.multimodal_layers:
            x = x + self_attention(x, visible)
            x = x + cross_attention(x, action_tokens)
        return x

    def logits(self, text_features: torch.Tensor, action_tokens: torch.Tensor, ids: torch.Tensor,
               action_mask: torch.Tensor) -> torch.Tensor:
        """``[B, N, V]`` logits of the caption with its ``action_mask`` positions masked."""
        return self.to_logits(self.hidden(text_features, action_tokens, ids, action_mask))

    def forward(self, text_features: torch.Tensor, action_tokens: torch.Tensor, ids: torch.Tensor,
                action_mask: torch.Tensor) -> torch.Tensor:
        """The MAM loss: cross-entropy at the masked, non-padding positions against the original ids.

        The vocabulary head runs on those positions only (its LayerNorm and projection act per
        position, so the loss is the release's, which projects every position): at the release's
        sizes that is a few of 32 x 49,408 logits per caption."""
        x = self.hidden(text_features, action_tokens, ids, action_mask)
        ids = ids.to(device=x.device, dtype=torch.long)
        targets = action_mask.to(device=x.device, dtype=torch.bool) & (ids != self.pad_id)
        if not targets.any():
            return self.to_logits(x[:1, :1]).sum() * 0.0   # on the graph, so every rank's backward sees the decoder
        return F.cross_entropy(self.to_logits(x[targets]), ids[targets])
