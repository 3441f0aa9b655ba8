"""Singularity and Singularity-temporal (Lei, Berg, Bansal, 2023): BEiT frames, BERT text, ITC and ITM.

Why a port: the official code (jayleicn/singularity) builds its encoders from hub downloads
(``microsoft/beit-base-patch16-224-pt22k-ft22k``, ``bert-base-uncased``) with transformers 4.15's
``BeitModel`` and its own copy of BERT (``models/xbert.py``), then loads the checkpoint
non-strictly. Here every size comes from the checkpoint's tensor shapes, loading is strict, and
nothing is downloaded but the weights.

Files: the training scripts save ``{'model': state_dict, 'optimizer', 'scheduler', 'scaler',
'config' (an OmegaConf DictConfig, read here as inert data and not used), 'epoch',
'global_step'}``. Pre-training checkpoints (``tasks/pretrain.py``) name the text encoder
``text_encoder.bert.*`` and carry the MLM head ``text_encoder.cls.*`` (skipped); fine-tuned
retrieval ones (``tasks/retrieval.py``) name it ``text_encoder.*``. Both carry BEiT's
``relative_position_index`` and BERT's ``position_ids`` buffers, which are rebuilt here and not
read. A Singularity-temporal file has ``temporal_vision_encoder.*`` (2 layers); a 1-frame
Singularity file has none, and the same loader reads it. The vocabulary is bert-base-uncased's
``vocab.txt`` (``vocab=``, else beside the checkpoint).

Facts of the official pipeline that this port keeps (each checked against the official code on a
tiny random checkpoint; tests/data/official/singularity/ has the data):

- Text: ``models/tokenization_bert.BertTokenizer`` (transformers 4.15's slow tokenizer): the special
  tokens (``[CLS] [SEP] [PAD] [MASK] [UNK]``, case-sensitive) are split out first, even inside a
  word; the rest is lower-cased, accents stripped, basic + WordPiece. ``[CLS]`` is added and **no
  ``[SEP]``**; the pieces are cut to ``max_txt_l - 1`` (32 in every config) and zero-padded.
- ITC (the dual encoder, ``evaluation``'s ``i2t_scores``): the text vector is
  ``normalize(text_proj(h[CLS]))`` where ``h`` is the text encoder run **only through the layers
  below ``fusion_layer``** (9 of 12; ``mode='text'``). Each frame goes through BEiT on its own; its
  vector is BEiT's pooler (LayerNorm of the mean of the patch tokens, the class token left out),
  ``vision_proj``, L2-normalised; the video vector is the mean of those over frames and **is not
  renormalised**. The score is their plain dot product (``get_sim`` with ``t=1``), so it is the
  `similarity` here, not a cosine. The temporal encoder and temporal embeddings do not enter it:
  ``update_pooler_embed`` is False in every config.
- ITM (the pair scorer, the re-ranking score): the frames' BEiT tokens after ``vision_layernorm``,
  plus ``temporal_embeddings`` (the first ``T`` of the file's, or linearly interpolated when ``T``
  exceeds them), through the temporal encoder (each spatial position attends over the frames, no
  mask; skipped for a single frame), concatenated over frames; the text encoder's ``mode='text'``
  output then runs the layers from ``fusion_layer`` on with cross-attention to them
  (``mode='fusion'``); the score is ``itm_head(h[CLS])[:, 1]``, the "match" logit.
- BEiT: pre-LayerNorm layers with layer scale (``lambda_1``, ``lambda_2``), a per-layer relative
  position bias, no bias on the key projection, erf GELU, LayerNorm eps 1e-12; BERT: post-LN,
  eps 1e-12, additive mask ``(1 - mask) * -10000``.
- Frames (``dataset/__init__.py``, ``video_utils.get_frame_indices``): 4 at the middles of equal
  segments (``num_frames_test``, ``sample_type_test: middle``), squashed to 224 x 224 bicubic,
  ``/ 255`` then mean and std 0.5 (pixels in [-1, 1]).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.bert import BertLayer, BertTextEmbeddings, Dense, additive_mask
from ..core.checkpoints import file_sha256, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.hub import side_file
from ..core.shapes import captions_per_clip, count_blocks, heads_for, require_clips, require_shapes
from ..core.wordpiece import BERT_VOCAB_URL, ClsOnlyWordPiece, encode_for
from ..protocols import DUAL_ENCODER, PAIR_SCORER
from ..registry import register_model

__all__ = ["SingularityDimensions", "SingularityNet", "SingularityTokenizer", "SingularityITC", "SingularityITM",
           "singularity_temporal", "singularity_frame_spec", "load_singularity_net", "CARD"]

FAMILY = "singularity-temporal"
MAX_TXT_L = 32
FRAMES = 4
_EPS = 1e-12
_RELEASE = "https://nlp.cs.unc.edu/data/jielei/singularity/release/ckpts"
_SKIPPED = ("text_encoder.cls.", "text_encoder.pooler.")
_REBUILT = ("relative_position_index", "position_ids")  # buffers the file carries and this port computes
_BIAS_TABLE = "vision_encoder.encoder.layer.0.attention.attention.relative_position_bias.relative_position_bias_table"
_SIGNATURE_KEYS = ("vision_encoder.embeddings.cls_token",
                   "vision_encoder.embeddings.patch_embeddings.projection.weight",
                   "text_encoder.embeddings.word_embeddings.weight", "vision_proj.weight", "text_proj.weight",
                   "itm_head.weight", "temporal_embeddings")
_SIZE_KEYS = {"vision_encoder.embeddings.cls_token": 3,
              "vision_encoder.embeddings.patch_embeddings.projection.weight": 4,
              _BIAS_TABLE: 2,
              "vision_encoder.encoder.layer.0.intermediate.dense.weight": 2,
              "text_encoder.embeddings.word_embeddings.weight": 2,
              "text_encoder.embeddings.position_embeddings.weight": 2,
              "text_encoder.embeddings.token_type_embeddings.weight": 2,
              "text_encoder.encoder.layer.0.intermediate.dense.weight": 2,
              "vision_proj.weight": 2, "text_proj.weight": 2, "itm_head.weight": 2, "temporal_embeddings": 4}


def singularity_frame_spec(frames: int = FRAMES, size: int = 224) -> FrameSpec:
    """The test transform: segment middles, squash to ``size`` bicubic, ``/ 255``, mean/std 0.5."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=None, mean=(0.5, 0.5, 0.5),
                     std=(0.5, 0.5, 0.5), resize="squash", interpolation="bicubic")


@dataclass(frozen=True)
class SingularityDimensions:
    """The sizes of a Singularity model, read from its tensors (``temporal_layers`` 0: 1-frame Singularity)."""

    width: int
    embed_dim: int
    patch: int
    grid: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    vocab_size: int
    text_positions: int
    text_types: int
    text_layers: int
    fusion_layer: int
    text_intermediate: int
    heads: int
    frames: int
    temporal_layers: int = 0
    temporal_intermediate: int = 0

    @property
    def image_size(self) -> int:
        return self.patch * self.grid

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                        heads: int | None = None) -> SingularityDimensions:
        def shape(key: str) -> tuple[int, ...]:
            return tuple(int(n) for n in state[key].shape)

        def fail(message: str) -> InputError:
            return InputError(f"does not fit the {FAMILY} architecture: {message}", path=source, field="checkpoint")

        width, _, patch, patch_w = shape("vision_encoder.embeddings.patch_embeddings.projection.weight")
        table, vision_heads = shape(_BIAS_TABLE)
        grid = math.isqrt(max(table - 3, 0))  # (2 W - 1)^2 relative positions + 3 for the class token
        grid = (grid + 1) // 2
        if patch != patch_w or (2 * grid - 1) ** 2 + 3 != table:
            raise fail(f"its relative position bias table has {table} rows, not (2 W - 1)^2 + 3 for a square grid")
        vocab, text_width = shape("text_encoder.embeddings.word_embeddings.weight")
        embed_dim, vision_width = shape("vision_proj.weight")
        if text_width != width or vision_width != width or shape("text_proj.weight") != (embed_dim, width):
            raise fail(f"its BEiT is {width} wide, its text encoder {text_width}, its projections "
                       f"{vision_width} -> {embed_dim}")
        if width % vision_heads:
            raise fail(f"{vision_heads} BEiT heads do not divide the width {width}")
        text_layers = count_blocks(state, "text_encoder.encoder.layer.")
        cross = sorted(int(key.split(".")[3]) for key in state
                       if key.startswith("text_encoder.encoder.layer.") and ".crossattention." in key)
        if not cross:
            raise fail("its text encoder has no cross-attention layers (text_encoder.encoder.layer.N.crossattention)")
        fusion = cross[0]
        if sorted(set(cross)) != list(range(fusion, text_layers)):
            raise fail(f"cross-attention in text layers {sorted(set(cross))}: expected every layer from the first")
        frames = shape("temporal_embeddings")
        if len(frames) != 4 or frames[0] != 1 or frames[2] != 1 or frames[3] != width:
            raise fail(f"temporal_embeddings is {list(frames)}, expected [1, frames, 1, {width}]")
        temporal = count_blocks(state, "temporal_vision_encoder.layer.")
        return cls(width=width, embed_dim=embed_dim, patch=patch, grid=grid,
                   vision_layers=count_blocks(state, "vision_encoder.encoder.layer."), vision_heads=vision_heads,
                   vision_intermediate=shape("vision_encoder.encoder.layer.0.intermediate.dense.weight")[0],
                   vocab_size=vocab, text_positions=shape("text_encoder.embeddings.position_embeddings.weight")[0],
                   text_types=shape("text_encoder.embeddings.token_type_embeddings.weight")[0],
                   text_layers=text_layers, fusion_layer=fusion,
                   text_intermediate=shape("text_encoder.encoder.layer.0.intermediate.dense.weight")[0],
                   heads=heads_for(heads, width, "heads"), frames=frames[1], temporal_layers=temporal,
                   temporal_intermediate=(shape("temporal_vision_encoder.layer.0.intermediate.dense.weight")[0]
                                          if temporal else 0))


# ------------------------------------------------------------------------------------------------
# BEiT (transformers' BeitModel names, so the file's keys load as they are)


def relative_position_index(grid: int) -> torch.Tensor:
    """BEiT's index into its bias table for ``1 + grid^2`` tokens (the class token uses the last 3 rows)."""
    coords = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (grid - 1)
    rows = (2 * grid - 1) ** 2 + 3
    index = torch.zeros(grid * grid + 1, grid * grid + 1, dtype=torch.long)
    index[1:, 1:] = relative[:, :, 0] * (2 * grid - 1) + relative[:, :, 1]
    index[0, 0:] = rows - 3
    index[0:, 0] = rows - 2
    index[0, 0] = rows - 1
    return index


class _RelativePositionBias(nn.Module):
    def __init__(self, grid: int, heads: int):
        super().__init__()
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, heads))
        self.register_buffer("index", relative_position_index(grid), persistent=False)

    def forward(self) -> torch.Tensor:
        tokens = self.index.shape[0]
        return self.relative_position_bias_table[self.index.view(-1)].view(tokens, tokens, -1).permute(2, 0, 1)


class _BeitSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, grid: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.relative_position_bias = _RelativePositionBias(grid, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        head_dim = width // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, head_dim).permute(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + self.relative_position_bias().unsqueeze(0)
        return (scores.softmax(dim=-1) @ v).permute(0, 2, 1, 3).reshape(batch, length, width)


class _BeitAttention(nn.Module):
    def __init__(self, width: int, heads: int, grid: int):
        super().__init__()
        self.attention = _BeitSelfAttention(width, heads, grid)
        self.output = Dense(width, width)


class BeitLayer(nn.Module):
    """Pre-LN layer with layer scale: ``x + l1 * attn(ln(x))``, then ``x + l2 * mlp(ln(x))``."""

    def __init__(self, width: int, heads: int, intermediate: int, grid: int):
        super().__init__()
        self.attention = _BeitAttention(width, heads, grid)
        self.intermediate = Dense(width, intermediate)
        self.output = Dense(intermediate, width)
        self.layernorm_before = nn.LayerNorm(width, eps=_EPS)
        self.layernorm_after = nn.LayerNorm(width, eps=_EPS)
        self.lambda_1 = nn.Parameter(torch.ones(width))
        self.lambda_2 = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.lambda_1 * self.attention.output.dense(self.attention.attention(self.layernorm_before(x)))
        hidden = F.gelu(self.intermediate.dense(self.layernorm_after(x)))
        return x + self.lambda_2 * self.output.dense(hidden)


class _PatchEmbeddings(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.projection = nn.Conv2d(3, width, kernel_size=patch, stride=patch)


class _BeitEmbeddings(nn.Module):
    def __init__(self, width: int, patch: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.patch_embeddings = _PatchEmbeddings(width, patch)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings.projection(frames).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)


class _BeitEncoder(nn.Module):
    def __init__(self, dims: SingularityDimensions):
        super().__init__()
        self.layer = nn.ModuleList([BeitLayer(dims.width, dims.vision_heads, dims.vision_intermediate, dims.grid)
                                    for _ in range(dims.vision_layers)])


class _BeitPooler(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.layernorm = nn.LayerNorm(width, eps=_EPS)


class BeitEncoder(nn.Module):
    """BEiT with mean pooling (``use_mean_pooling``: no final LayerNorm, the pooler's LayerNorm instead)."""

    def __init__(self, dims: SingularityDimensions):
        super().__init__()
        self.embeddings = _BeitEmbeddings(dims.width, dims.patch)
        self.encoder = _BeitEncoder(dims)
        self.pooler = _BeitPooler(dims.width)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, 3, H, W]`` frames to their tokens ``[N, 1 + P, W]`` and pooled vectors ``[N, W]``."""
        x = self.embeddings(frames)
        for layer in self.encoder.layer:
            x = layer(x)
        return x, self.pooler.layernorm(x[:, 1:].mean(dim=1))


# ------------------------------------------------------------------------------------------------
# BERT (models/xbert.py's names, the layers of adapters.core.bert): cross-attention from ``fusion_layer`` on


class _Layers(nn.Module):
    def __init__(self, dims: SingularityDimensions, layers: int, intermediate: int, fusion: int):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(dims.width, dims.heads, intermediate, cross=i >= fusion)
                                    for i in range(layers)])


class TextEncoder(nn.Module):
    """``mode='text'``: the layers below ``fusion_layer``; ``mode='fusion'``: the rest, over the frames."""

    def __init__(self, dims: SingularityDimensions):
        super().__init__()
        self.fusion_layer = dims.fusion_layer
        self.embeddings = BertTextEmbeddings(dims.vocab_size, dims.text_positions, dims.text_types, dims.width)
        self.encoder = _Layers(dims, dims.text_layers, dims.text_intermediate, dims.fusion_layer)

    def text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        additive = additive_mask(mask, x.dtype)
        for layer in self.encoder.layer[: self.fusion_layer]:
            x = layer(x, additive)
        return x

    def fusion(self, text: torch.Tensor, mask: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        additive = additive_mask(mask, text.dtype)
        for layer in self.encoder.layer[self.fusion_layer:]:
            text = layer(text, additive, frames)
        return text


class SingularityNet(nn.Module):
    """The retrieval model under the official names (``vision_encoder``, ``text_encoder``, ...)."""

    def __init__(self, dims: SingularityDimensions):
        super().__init__()
        self.dims = dims
        self.vision_encoder = BeitEncoder(dims)
        self.vision_layernorm = nn.LayerNorm(dims.width, eps=_EPS)
        self.text_encoder = TextEncoder(dims)
        self.vision_proj = nn.Linear(dims.width, dims.embed_dim)
        self.text_proj = nn.Linear(dims.width, dims.embed_dim)
        self.temp = nn.Parameter(torch.tensor(0.07))  # the ITC training temperature; evaluation uses t = 1
        self.itm_head = nn.Linear(dims.width, 2)
        self.temporal_embeddings = nn.Parameter(torch.zeros(1, dims.frames, 1, dims.width))
        if dims.temporal_layers:
            self.temporal_vision_encoder = _Layers(dims, dims.temporal_layers, dims.temporal_intermediate,
                                                   dims.temporal_layers)

    def frames(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, 3, H, W]`` to BEiT tokens after ``vision_layernorm`` ``[B, T, L, W]`` and pooled ``[B, T, W]``."""
        batch, count = clips.shape[:2]
        tokens, pooled = self.vision_encoder(clips.reshape(batch * count, *clips.shape[2:]))
        tokens = self.vision_layernorm(tokens)
        return tokens.view(batch, count, -1, self.dims.width), pooled.view(batch, count, self.dims.width)

    def video_vector(self, pooled: torch.Tensor) -> torch.Tensor:
        """``get_sim``'s video side: unit frame vectors averaged over frames, not renormalised."""
        return F.normalize(self.vision_proj(pooled), dim=-1).mean(dim=1)

    def text_vector(self, sequence: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(sequence[:, 0]), dim=-1)

    def temporal(self, tokens: torch.Tensor, add_embeddings: bool) -> torch.Tensor:
        """``encode_image``'s ITM side: temporal embeddings, the temporal encoder, frames concatenated."""
        batch, count, length, width = tokens.shape
        if add_embeddings:
            embeddings = self.temporal_embeddings
            if embeddings.shape[1] >= count:
                embeddings = embeddings[:, :count]
            else:  # interpolate_temporal_pos_embed
                embeddings = F.interpolate(embeddings.squeeze(2).permute(0, 2, 1), count, mode="linear")
                embeddings = embeddings.permute(0, 2, 1).unsqueeze(2)
            tokens = tokens + embeddings
        if count > 1 and self.dims.temporal_layers:
            x = tokens.transpose(1, 2).reshape(batch * length, count, width)
            for layer in self.temporal_vision_encoder.layer:
                x = layer(x, None)
            tokens = x.reshape(batch, length, count, width).transpose(1, 2)
        return tokens.reshape(batch, count * length, width)

    def match_logits(self, text: torch.Tensor, mask: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """``[N, L, W]`` text-mode outputs and ``[N, F, W]`` frame tokens (paired by row) to ``[N]`` ITM logits."""
        return self.itm_head(self.text_encoder.fusion(text, mask, frames)[:, 0])[:, 1]


# ------------------------------------------------------------------------------------------------
# Tokenizer


class SingularityTokenizer(ClsOnlyWordPiece):
    """``models/tokenization_bert.BertTokenizer`` under transformers 4.15: special tokens split out
    first, the rest basic + WordPiece; ``[CLS]`` and no ``[SEP]`` (`ClsOnlyWordPiece`)."""


# ------------------------------------------------------------------------------------------------
# Adapters


class _Singularity(TorchAdapter):
    name = FAMILY

    def __init__(self, net: SingularityNet, tokenizer: SingularityTokenizer, *, max_words: int,
                 temporal_embed: bool, spec: FrameSpec, checkpoint: Path, settings: str):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.tokenizer = tokenizer
        self.max_words = max_words
        self.temporal_embed = temporal_embed

    @property
    def dims(self) -> SingularityDimensions:
        return self.net.dims

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_for(FAMILY, self.tokenizer, texts, self.max_words, self.dims.vocab_size)

    def _frames(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        require_clips(FAMILY, clips)
        side = self.dims.image_size
        if tuple(clips.shape[3:]) != (side, side):
            raise InputError(f"{FAMILY}: frames of {clips.shape[3]}x{clips.shape[4]} pixels; this checkpoint's "
                             f"relative position biases are for {side}x{side}", field="--model")
        return self.net.frames(clips.to(self.device, self.net.vision_proj.weight.dtype))

    def _text(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.net.text_encoder.text(ids, mask), mask


class SingularityITC(_Singularity):
    """The ITC dual encoder: unit text vector, frame mean of unit frame vectors; score = dot product."""

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net.video_vector(self._frames(clips)[1]).float()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.net.text_vector(self._text(texts)[0]).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official ITC score: ``text . frame-mean`` (no renormalisation, no temperature)."""
        return videos.float() @ texts.float().T


class SingularityITM(_Singularity):
    """The ITM re-ranker: a pair scorer whose score is the ``itm_head`` match logit of the fusion [CLS]."""

    scoring = "Singularity ITM re-ranker: itm_head match logit (class 1) of the fusion layers' [CLS] over the frames"

    @torch.no_grad()
    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips and ``B`` lists of ``C`` captions to ``[B, C]`` logits."""
        per_clip = captions_per_clip(FAMILY, clips, texts)
        if not per_clip:
            return torch.zeros(clips.shape[0], 0)
        frames = self.net.temporal(self._frames(clips)[0], self.temporal_embed)
        text, mask = self._text([caption for row in texts for caption in row])
        logits = self.net.match_logits(text, mask, frames.repeat_interleave(per_clip, dim=0))
        return logits.view(clips.shape[0], per_clip).float()


def load_singularity_net(checkpoint: str | os.PathLike, *, heads: int | None = None) -> SingularityNet:
    """The retrieval model sized and filled from a Singularity checkpoint (pre-training or fine-tuned)."""
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY), keys=("model", "state_dict", "module"))
    state = {}
    for key, value in loaded.state_dict.items():
        if key.endswith(_REBUILT):
            continue
        if key.startswith("text_encoder.bert."):  # a pre-training file: BertForMaskedLM's .bert
            key = "text_encoder." + key[len("text_encoder.bert."):]
        state[key] = value
    loaded.state_dict = state
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(state, _SIZE_KEYS, loaded.path, FAMILY)
    dims = SingularityDimensions.from_state_dict(state, loaded.path, heads=heads)
    net = SingularityNet(dims)
    load_strict(net, state, loaded.path, family=FAMILY, ignore_unexpected=_SKIPPED)
    return net.eval()


def _tag(name: str, archive: str, model: str, notes: str) -> WeightTag:
    return WeightTag(name=name, source="user", args={"vocab": BERT_VOCAB_URL},
                     where=f"{_RELEASE}/{archive} (a tar.gz of four .pth files: 1-frame and temporal, 5M and 17M); "
                           f"extract it and pass the {model} file as checkpoint=PATH",
                     frame_spec=singularity_frame_spec(), notes=notes)


CARD = ModelCard(
    family=FAMILY,
    description="Singularity-temporal: BEiT frames + BERT text; head=itc: text . frame mean (dual encoder), "
                "head=itm: the ITM re-ranker's match logit over the temporal encoder (pair scorer)",
    capabilities=(DUAL_ENCODER, PAIR_SCORER),
    tags=(
        _tag("pt-17m", "pt.tar.gz", "Singularity-temporal 17M", "Pre-trained on the 17M corpus, 4 frames, "
             "2-layer temporal encoder (its file name contains singularity_temporal and 17m)."),
        _tag("pt-5m", "pt.tar.gz", "Singularity-temporal 5M", "Pre-trained on the 5M corpus (WebVid + CC3M)."),
        _tag("msrvtt-17m", "msrvtt_ret.tar.gz", "Singularity-temporal 17M", "Fine-tuned for MSRVTT retrieval."),
        _tag("didemo-17m", "didemo_ret.tar.gz", "Singularity-temporal 17M", "Fine-tuned for DiDeMo retrieval."),
        _tag("anet-17m", "anet_ret.tar.gz", "Singularity-temporal 17M",
             "Fine-tuned for ActivityNet Captions retrieval."),
        _tag("ssv2-label-17m", "ssv2l_ret.tar.gz", "Singularity-temporal 17M", "Fine-tuned for SSv2-label retrieval."),
        _tag("ssv2-template-17m", "ssv2t_ret.tar.gz", "Singularity-temporal 17M",
             "Fine-tuned for SSv2-template retrieval."),
    ),
    default_tag="pt-17m",
    frame_spec=singularity_frame_spec(),
    tokenizer="BERT basic + WordPiece (bert-base-uncased vocab.txt: vocab=PATH, a URL, or beside the checkpoint), "
              f"special tokens split out first, [CLS] and no [SEP], {MAX_TXT_L} tokens",
    code_licence="MIT (jayleicn/singularity)",
    weights_licence="MIT (jayleicn/singularity's licence; the release states no other)",
    paper="Lei, Berg, Bansal. Revealing Single Frame Bias for Video-and-Language Learning. ACL 2023 "
          "(arXiv:2206.03428)",
    citation="lei2023singularity",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the weights are published only inside tar.gz archives (1.6-4 GB, four checkpoints each); "
                  "download and extract one by hand, then pass its .pth as checkpoint=PATH",
    checkpoint_formats=("the training scripts' {'model': state_dict, 'config': OmegaConf, ...} .pth: pre-training "
                        "(text_encoder.bert.*) or fine-tuned retrieval (text_encoder.*)",
                        "a bare state dict of either layout"),
    code_version="1",
)

_HEADS = ("itc", "itm")


@register_model(FAMILY, card=CARD)
def singularity_temporal(checkpoint: str | os.PathLike | None = None, head: str = "itc",
                         vocab: str | os.PathLike | None = None, frames: int = FRAMES, max_words: int = MAX_TXT_L,
                         heads: int | None = None, temporal_embed: bool | None = None) -> _Singularity:
    """Singularity(-temporal) from an official ``.pth`` (pre-training or fine-tuned retrieval).

    ``head``: ``itc`` (a dual encoder: the retrieval embeddings, score text . frame mean) or ``itm``
    (a pair scorer: the re-ranker's match logit). ``vocab``: bert-base-uncased's ``vocab.txt``
    (path or URL; default beside the checkpoint). ``frames``: frames per clip (4, the official
    test setting). ``max_words``: the tokenizer's ``max_txt_l`` (32). ``heads``: BERT attention
    heads (default width // 64: 12 for the published model; BEiT's come from the file).
    ``temporal_embed``: add the temporal embeddings before the temporal encoder (ITM only; default:
    yes when the file has a temporal encoder, as the README's Singularity-temporal flags say).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    if head not in _HEADS:
        raise InputError(f"{FAMILY}: head must be one of {', '.join(_HEADS)}, got {head!r}", field="--model-args")
    for name, value in (("frames", frames), ("max_words", max_words)):
        positive_int(FAMILY, name, value)
    if heads is not None:
        positive_int(FAMILY, "heads", heads)
    if temporal_embed is not None and not isinstance(temporal_embed, bool):
        raise InputError(f"{FAMILY}: temporal_embed must be true or false, got {temporal_embed!r}",
                         field="--model-args")
    net = load_singularity_net(path, heads=heads)
    dims = net.dims
    if max_words > dims.text_positions:
        raise InputError(f"{FAMILY}: max_words={max_words} exceeds the {dims.text_positions} positions of the "
                         "checkpoint", field="--model-args")
    vocab_path = side_file(FAMILY, vocab, path, name="vocab.txt", argument="vocab",
                           what="the bert-base-uncased vocabulary", url=BERT_VOCAB_URL)
    tokenizer = SingularityTokenizer.from_file(vocab_path)
    add_embeddings = bool(dims.temporal_layers) if temporal_embed is None else temporal_embed
    spec = singularity_frame_spec(frames, dims.image_size)
    settings = (f"head={head};heads={dims.heads};vocab={file_sha256(vocab_path)};max_words={max_words};"
                f"temporal_embed={add_embeddings}")
    adapter = SingularityITM if head == "itm" else SingularityITC
    return adapter(net, tokenizer, max_words=max_words, temporal_embed=add_embeddings, spec=spec, checkpoint=path,
                   settings=settings)
