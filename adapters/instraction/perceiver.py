"""The Action Perceiver: K learned queries that read the video's patch tokens into K ordered action tokens.

Official release: ``model/modules/perceiver.py`` (itself PAXION's Knowledge Patcher reworked). What
this port keeps, with the official parameter names so an ``epochNNNN.pth`` loads as is:

- ``depth`` layers of [cross-attention (LayerNorm on the context and on the latents, ``heads`` x
  ``dim_head``, no biases) + residual, then LayerNorm -> Linear -> exact GELU -> Linear (no biases,
  width ``ff_mult`` x dim) + residual], then a final LayerNorm;
- the student's queries are ``latents`` plus a learned ``temporal_embedding`` (one row per latent,
  under dropout 0.1 while training);
- local temporal attention: latent ``q`` of ``K`` sees only frames ``f`` with
  ``floor(q T / K) <= f < ceil((q + 1) T / K)`` (`local_window_mask`), tokens flattened frame-major;
- the teacher reuses the same weights with external queries (verb-phrase embeddings): no window,
  no temporal embedding, outputs zeroed at padded verbs.
"""

from __future__ import annotations

import torch
from torch import nn

from instract_eval.errors import InputError

__all__ = ["local_window_mask", "PerceiverAttention", "PerceiverFeedForward", "ActionPerceiver"]


def local_window_mask(latents: int, frames: int) -> torch.Tensor:
    """``[latents, frames]`` bool: which frames each latent may attend to.

    Latent ``q`` covers ``[floor(q T / K), ceil((q + 1) T / K))``: with T = 16, K = 8 two frames
    each; when K does not divide T neighbouring windows share their boundary frame.
    """
    q = torch.arange(latents)
    starts = torch.div(q * frames, latents, rounding_mode="floor")
    ends = torch.div((q + 1) * frames + latents - 1, latents, rounding_mode="floor")
    f = torch.arange(frames)
    return (f[None] >= starts[:, None]) & (f[None] < ends[:, None])


class PerceiverAttention(nn.Module):
    """Latents attend to the (normalised) context; multi-head, no biases."""

    def __init__(self, dim: int, context_dim: int, dim_head: int, heads: int):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.norm_context = nn.LayerNorm(context_dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, context: torch.Tensor, latents: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``context`` [B, N, C], ``latents`` [B, Q, D], ``mask`` [B, Q, N] (True = may attend) -> [B, Q, D]."""
        context = self.norm_context(context)
        latents = self.norm_latents(latents)
        batch, queries, _ = latents.shape
        q = self.to_q(latents).view(batch, queries, self.heads, -1).transpose(1, 2)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        k = k.reshape(batch, k.shape[1], self.heads, -1).transpose(1, 2)
        v = v.reshape(batch, v.shape[1], self.heads, -1).transpose(1, 2)
        scores = (q * self.scale) @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None], -torch.finfo(scores.dtype).max)
        out = scores.softmax(dim=-1) @ v
        return self.to_out(out.transpose(1, 2).reshape(batch, queries, -1))


class PerceiverFeedForward(nn.Module):
    """LayerNorm, Linear, exact GELU, Linear (no biases); ``net.*`` as in the release."""

    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                                 nn.Linear(dim * mult, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ActionPerceiver(nn.Module):
    """``[B, T, P, C]`` patch tokens to ``[B, K, D]`` temporally ordered action tokens (or teacher outputs)."""

    def __init__(self, *, dim: int, context_dim: int, depth: int, heads: int, dim_head: int, num_latents: int,
                 ff_mult: int, temporal_embedding: bool = True, temporal_dropout: float = 0.1,
                 local_attention: bool = True):
        super().__init__()
        self.num_latents = num_latents
        self.local_attention = local_attention
        # The release draws both tables from a standard normal.
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.temporal_embedding = nn.Parameter(torch.randn(num_latents, dim)) if temporal_embedding else None
        self.temporal_dropout = nn.Dropout(temporal_dropout)
        self.layers = nn.ModuleList([
            nn.ModuleList([PerceiverAttention(dim, context_dim, dim_head, heads), PerceiverFeedForward(dim, ff_mult)])
            for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, queries: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Student (``queries`` None): the learned latents, windowed. Teacher: ``queries`` [B, M, D],
        global attention, rows where ``query_mask`` [B, M] is False zeroed."""
        if tokens.ndim != 4:
            raise InputError(f"the Action Perceiver reads [B, T, P, D] patch tokens, got shape {tuple(tokens.shape)}",
                             field="feat_3d")
        batch, frames, patches, _ = tokens.shape
        context = tokens.reshape(batch, frames * patches, tokens.shape[-1])
        mask = None
        if queries is None:
            queries = self.latents.expand(batch, -1, -1)
            if self.temporal_embedding is not None:
                queries = queries + self.temporal_dropout(self.temporal_embedding)
            if self.local_attention:
                window = local_window_mask(self.num_latents, frames).to(tokens.device)
                mask = window.repeat_interleave(patches, dim=1).expand(batch, -1, -1)
        elif queries.ndim != 3:
            raise InputError(f"teacher queries must be [B, M, D], got shape {tuple(queries.shape)}", field="verbs")
        for attention, feed_forward in self.layers:
            queries = queries + attention(context, queries, mask)
            queries = queries + feed_forward(queries)
        out = self.norm(queries)
        if query_mask is not None:
            out = out * query_mask.to(out.dtype).unsqueeze(-1)
        return out
