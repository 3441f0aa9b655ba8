"""BERT's post-LN encoder layer, its text embeddings and its attention mask, under transformers'
``BertModel`` parameter names, so official checkpoints load into them strictly.

UniVL, Singularity and InternVideo2 each carry a copy of BERT in their repositories; their layers
compute the same thing: self-attention (``softmax(q k^T / sqrt(d) + mask) v``), its output
projection added to the input and LayerNormed, then an erf-GELU MLP added and LayerNormed again.
They differ in what a family passes here: the LayerNorm (UniVL's TF-style one, eps inside the
square root), and whether a layer also cross-attends to video tokens (Singularity's fusion layers).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MASKED", "EPS", "additive_mask", "Dense", "DenseNorm", "BertLayer", "BertTextEmbeddings"]

MASKED = -10000.0  # what BERT adds to the scores of padded positions
EPS = 1e-12

LayerNormFactory = Callable[[int], nn.Module]


def _layer_norm(width: int) -> nn.Module:
    return nn.LayerNorm(width, eps=EPS)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[N, L]`` 1/0 attention mask to the ``[N, 1, 1, L]`` term BERT adds to its scores."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASKED


class Dense(nn.Module):
    """A linear layer under BERT's ``.dense`` name (``intermediate``, ``pooler``)."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.dense = nn.Linear(inputs, outputs)


class DenseNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: BERT's ``*Output`` blocks."""

    def __init__(self, inputs: int, width: int, layer_norm: LayerNormFactory = _layer_norm):
        super().__init__()
        self.dense = nn.Linear(inputs, width)
        self.LayerNorm = layer_norm(width)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor, additive: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        head_dim = width // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.heads, head_dim).permute(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(context)), split(self.value(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        if additive is not None:
            scores = scores + additive
        return (scores.softmax(dim=-1) @ v).permute(0, 2, 1, 3).reshape(batch, length, width)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, layer_norm: LayerNormFactory):
        super().__init__()
        self.self = _SelfAttention(width, heads)
        self.output = DenseNorm(width, width, layer_norm)

    def forward(self, x: torch.Tensor, context: torch.Tensor, additive: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, context, additive), x)


class BertLayer(nn.Module):
    """Self-attention, cross-attention to ``frames`` when built with ``cross`` (every frame token
    attended), erf-GELU MLP; each sub-block post-LN."""

    def __init__(self, width: int, heads: int, intermediate: int, *, cross: bool = False,
                 layer_norm: LayerNormFactory = _layer_norm):
        super().__init__()
        self.attention = _Attention(width, heads, layer_norm)
        if cross:
            self.crossattention = _Attention(width, heads, layer_norm)
        self.intermediate = Dense(width, intermediate)
        self.output = DenseNorm(intermediate, width, layer_norm)

    def forward(self, x: torch.Tensor, additive: torch.Tensor | None,
                frames: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attention(x, x, additive)
        if frames is not None:
            x = self.crossattention(x, frames, None)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class BertTextEmbeddings(nn.Module):
    """``LayerNorm(word + token_type[0] + position)`` of ``[N, L]`` ids (every token of type 0)."""

    def __init__(self, vocab_size: int, positions: int, types: int, width: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width)
        self.position_embeddings = nn.Embedding(positions, width)
        self.token_type_embeddings = nn.Embedding(types, width)
        self.LayerNorm = nn.LayerNorm(width, eps=EPS)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_embeddings.weight[: ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(ids) + self.token_type_embeddings.weight[0] + positions)
