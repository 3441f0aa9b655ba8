"""InternVideo2 stage 2 (Wang et al., ECCV 2024): the video-text dual encoder of ``InternVideo2_s2``.

Why a port: the official code (OpenGVLab/InternVideo, ``InternVideo2/multi_modality``) builds the
model from hard-coded 1B/6B factories, needs flash-attn, DeepSpeed-era config files, timm 0.5 and
transformers 4.28 (its ``xbert`` imports helpers transformers 5 removed), and loads BERT-large from
the hub at build time. The dual-encoder path is small enough to write once here, with every size
read from the checkpoint's tensors, so the published file and a tiny test file load through the
same code.

Facts of the official network that this port keeps (each checked against the official code on tiny
random checkpoints; ``tests/data/official/internvideo2/`` has the data and the script):

- Inference path: ``demo/utils.py`` ``InternVideo2_Stage2`` (the demo notebook's class).
  ``setup_internvideo2`` reads ``checkpoint['model']``, else ``checkpoint['module']`` (DeepSpeed),
  else the file itself, and loads it with ``strict=False``; this port checks every key it uses.
- Vision (``PretrainInternVideo2``): a Conv3d patch embedding (kernel ``(1, p, p)``), one class
  token, a learned joint space-time position table ``pos_embed`` (``T * g * g + 1`` rows) added to
  all tokens, then pre-norm blocks with RMSNorm (eps 1e-6), qk-normalisation (an RMSNorm over
  all heads of q and of k together), no qkv bias, LayerScale on both branches, GELU MLP. No final
  norm: the tokens go straight to ``clip_projector``, an attention pool whose single query is the
  mean of all tokens (class token included), with LayerNorms (eps 1e-5) on query, keys and values
  and its own head count (16 for the published models), projected to ``clip_embed_dim`` (768).
  ``vision_proj`` maps that to the joint width (512).
- Images (one frame): ``img_pos_embed`` when the file has one (``sep_image_video_pos_embed``, the
  published setting), else the class row plus the mean over frames of ``pos_embed``.
- Frame count: the file's table is for ``origin_num_frames`` (4). Built for another count,
  ``setup_internvideo2`` interpolates the table over time (``interpolate_pos_embed_internvideo2_new``:
  linear, ``align_corners=False``, the class row kept). The same is done here for whatever frame
  count a clip has; ``frames=`` sets how many are sampled (and which table a single image averages).
- Text: BERT-large-uncased under ``text_encoder.bert.*`` (``BertForMaskedLM``, the pre-training
  layout; ``text_encoder.*`` is read too). ``mode="text"`` runs only the layers below
  ``fusion_layer`` (19 of 24 for the published model): the layers from there on carry
  cross-attention to the video and are not part of the dual encoder. ``fusion_layer`` is read as
  the first layer with ``crossattention`` keys. Masked positions get ``-10000`` in the attention.
  The pooled text is the ``[CLS]`` output, then ``text_proj``.
- Tokenizer: the repository's ``tokenization_bert.BertTokenizer`` with bert-large-uncased's vocabulary
  (the same 30,522 entries as bert-base-uncased), ``padding="max_length", truncation=True,
  max_length=40``. Its ``build_inputs_with_special_tokens`` adds ``[CLS]`` and **no** ``[SEP]``;
  special tokens are split out first (exact, case-sensitive), the rest lower-cased, accents
  stripped, basic + WordPiece.
- Score: ``get_vid_feat`` / ``get_txt_feat`` L2-normalise; ``predict_label`` is ``softmax(100 *
  video @ text.T)``, so the score here is ``100 * cosine``. ``temp`` is the training temperature.
- Frames (``frames2tensor``): each frame squashed to 224 x 224 with OpenCV's bilinear resize (no
  crop), ``/ 255``, ImageNet mean/std; the evaluation configs sample segment middles
  (``sample_type_test="middle"``). The harness's bilinear resize antialiases when shrinking, OpenCV's
  does not, so decoded inputs differ slightly from the demo's (the network itself is exact).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, FrameSpec

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.bert import BertLayer, BertTextEmbeddings, additive_mask
from ..core.checkpoints import file_sha256, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.hub import side_file
from ..core.shapes import count_blocks, frame_count, require_clips, require_patch_count, require_shapes
from ..core.wordpiece import ClsOnlyWordPiece, encode_for
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["InternVideo2Dimensions", "InternVideo2Vision", "InternVideo2Text", "InternVideo2Net",
           "InternVideo2Tokenizer", "InternVideo2", "internvideo2", "internvideo2_frame_spec",
           "resize_temporal", "load_internvideo2_net", "CARD"]

FAMILY = "internvideo2"
SCORE_SCALE = 100.0
MAX_TXT_L = 40
BERT_LARGE_VOCAB_URL = "https://huggingface.co/google-bert/bert-large-uncased/resolve/main/vocab.txt"
_RMS_EPS = 1e-6
_POOL_EPS = 1e-5
# Published vision widths -> (block heads, attention-pool heads): the 1B and 6B factories.
_PUBLISHED_HEADS = {1408: (16, 16), 3200: (25, 16)}

_V = "vision_encoder."
_SIGNATURE_KEYS = (f"{_V}patch_embed.proj.weight", f"{_V}pos_embed", f"{_V}clip_projector.cross_attn.q.weight",
                   "vision_proj.weight", "text_proj.weight")
_SIZE_KEYS = {f"{_V}patch_embed.proj.weight": 5, f"{_V}pos_embed": 3, f"{_V}cls_token": 3,
              f"{_V}blocks.0.mlp.fc1.weight": 2, f"{_V}clip_projector.cross_attn.proj.weight": 2,
              "vision_proj.weight": 2, "text_proj.weight": 2, "text_encoder.embeddings.word_embeddings.weight": 2,
              "text_encoder.embeddings.position_embeddings.weight": 2,
              "text_encoder.embeddings.token_type_embeddings.weight": 2,
              "text_encoder.encoder.layer.0.intermediate.dense.weight": 2}
# Training-only parts of the stage-2 file: the distillation decoders and their positions, the MLM
# head, the matching head, the temperature, a frozen teacher, BERT's position-id buffer.
_TRAINING_ONLY = (f"{_V}clip_decoder.", f"{_V}final_clip_decoder.", f"{_V}clip_pos_embed",
                  f"{_V}clip_img_pos_embed", "text_encoder.cls.", "itm_head.", "temp", "clip_teacher.",
                  "text_encoder.embeddings.position_ids", "text_encoder.pooler.")


def internvideo2_frame_spec(frames: int = 4, size: int = 224) -> FrameSpec:
    """The demo's ``frames2tensor``: squash to ``size`` x ``size``, bilinear, ImageNet statistics, no crop."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=None, mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, resize="squash", interpolation="bilinear")


# ------------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class InternVideo2Dimensions:
    """The sizes of an InternVideo2 stage-2 model, read from its tensors (heads from the card's table or given)."""

    width: int
    patch_size: int
    grid: int
    checkpoint_frames: int
    image_table: bool
    depth: int
    heads: int
    mlp_hidden: int
    qkv_bias: bool
    qk_norm: bool
    layer_scale: bool
    clip_embed_dim: int
    pool_heads: int
    embed_dim: int
    vocab_size: int
    text_width: int
    text_positions: int
    text_types: int
    text_layers: int
    fusion_layer: int
    text_intermediate: int
    text_heads: int

    @property
    def image_size(self) -> int:
        return self.grid * self.patch_size

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                        heads: int | None = None, pool_heads: int | None = None, text_heads: int | None = None,
                        size: int | None = None) -> InternVideo2Dimensions:
        def shape(key: str) -> tuple[int, ...]:
            return tuple(int(n) for n in state[key].shape)

        def fail(message: str) -> InputError:
            return InputError(f"does not fit the {FAMILY} architecture: {message}", path=source, field="checkpoint")

        width, channels, tubelet, patch, patch_w = shape(f"{_V}patch_embed.proj.weight")
        if channels != 3 or patch != patch_w:
            raise fail(f"patch_embed.proj is {[width, channels, tubelet, patch, patch_w]}, expected [W, 3, 1, p, p]")
        if tubelet != 1:
            raise fail(f"a tubelet of {tubelet} frames; the published models (and this port) use 1")
        rows = shape(f"{_V}pos_embed")
        if len(rows) != 3 or rows[0] != 1 or rows[2] != width:
            raise fail(f"pos_embed is {list(rows)}, expected [1, T * g * g + 1, {width}]")
        image_table = f"{_V}img_pos_embed" in state
        if image_table:
            image_rows = shape(f"{_V}img_pos_embed")[1] - 1
            grid = int(round(image_rows ** 0.5))
            if grid * grid != image_rows:
                raise fail(f"img_pos_embed has {image_rows} patch positions, not a square grid")
            if size is not None and size != grid * patch:
                raise fail(f"its position tables are for {grid * patch} px frames, not size={size}")
        else:  # one shared table: T and g are not separable from its length alone
            grid = (size or 224) // patch
            if (size or 224) % patch:
                raise InputError(f"{FAMILY}: size={size} is not a multiple of the patch size {patch}",
                                 field="--model-args")
        frames, left = divmod(rows[1] - 1, grid * grid)
        if left or frames < 1:
            raise fail(f"pos_embed has {rows[1] - 1} patch positions, not frames x {grid} x {grid} "
                       "(pass size= the frame size this file was trained for)")
        clip_embed, pool_width = shape(f"{_V}clip_projector.cross_attn.proj.weight")
        embed_dim, vision_out = shape("vision_proj.weight")
        text_embed, text_width = shape("text_proj.weight")
        vocab, word_width = shape("text_encoder.embeddings.word_embeddings.weight")
        if pool_width != width or vision_out != clip_embed or text_embed != embed_dim or word_width != text_width:
            raise fail(f"widths do not chain: vision {width}, pool {pool_width} -> {clip_embed}, vision_proj "
                       f"{vision_out} -> {embed_dim}, text {word_width}, text_proj {text_width} -> {text_embed}")
        text_layers = count_blocks(state, "text_encoder.encoder.layer.")
        cross = sorted({int(key.split(".")[3]) for key in state
                        if key.startswith("text_encoder.encoder.layer.") and ".crossattention." in key})
        fusion = cross[0] if cross else text_layers
        if cross and cross != list(range(fusion, text_layers)):
            raise fail(f"cross-attention in text layers {cross}: expected every layer from the first")
        if fusion < 1:
            raise fail("every text layer has cross-attention: no text-only layers for the dual encoder")
        published = _PUBLISHED_HEADS.get(width)
        if (heads is None or pool_heads is None) and published is None:
            raise InputError(f"{FAMILY}: a {width}-wide vision encoder is not a published size (1408: 1B, 3200: 6B); "
                             "pass heads= and pool_heads= (the attention heads of the blocks and of the pool)",
                             path=source, field="--model-args")
        heads = heads or published[0]
        pool_heads = pool_heads or published[1]
        text_heads = text_heads or max(1, text_width // 64)
        for name, count, of in (("heads", heads, width), ("pool_heads", pool_heads, width),
                                ("text_heads", text_heads, text_width)):
            if of % count:
                raise InputError(f"{FAMILY}: {name}={count} does not divide the width {of} read from the checkpoint",
                                 path=source, field="--model-args")
        block = f"{_V}blocks.0."
        return cls(width=width, patch_size=patch, grid=grid, checkpoint_frames=frames, image_table=image_table,
                   depth=count_blocks(state, f"{_V}blocks."), heads=heads,
                   mlp_hidden=shape(f"{block}mlp.fc1.weight")[0], qkv_bias=f"{block}attn.qkv.bias" in state,
                   qk_norm=f"{block}attn.q_norm.weight" in state, layer_scale=f"{block}ls1.gamma" in state,
                   clip_embed_dim=clip_embed, pool_heads=pool_heads, embed_dim=embed_dim, vocab_size=vocab,
                   text_width=text_width,
                   text_positions=shape("text_encoder.embeddings.position_embeddings.weight")[0],
                   text_types=shape("text_encoder.embeddings.token_type_embeddings.weight")[0],
                   text_layers=text_layers, fusion_layer=fusion,
                   text_intermediate=shape("text_encoder.encoder.layer.0.intermediate.dense.weight")[0],
                   text_heads=text_heads)


def resize_temporal(table: torch.Tensor, grid: int, frames: int) -> torch.Tensor:
    """A ``[1, T0 * g * g + 1, C]`` position table for ``frames`` frames, as
    ``interpolate_pos_embed_internvideo2_new`` adapts it: linear over time, the class row kept."""
    width = table.shape[-1]
    trained = (table.shape[1] - 1) // (grid * grid)
    if frames == trained:
        return table
    tokens = table[:, 1:].float().view(1, trained, -1, width).permute(0, 2, 3, 1).reshape(-1, width, trained)
    tokens = F.interpolate(tokens, size=frames, mode="linear", align_corners=False)
    tokens = tokens.view(1, -1, width, frames).permute(0, 3, 1, 2).reshape(1, -1, width)
    return torch.cat([table[:, :1], tokens.to(table.dtype)], dim=1)


# ------------------------------------------------------------------------------------------------
# Vision (the official module names, so the file's keys load as they are)


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float = _RMS_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class _LayerScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.gamma.float()).to(x.dtype)  # force_fp32, as the official LayerScale


class _Attention(nn.Module):
    def __init__(self, dims: InternVideo2Dimensions):
        super().__init__()
        width = dims.width
        self.heads = dims.heads
        self.qkv = nn.Linear(width, 3 * width, bias=dims.qkv_bias)
        self.proj = nn.Linear(width, width)
        self.q_norm = RMSNorm(width) if dims.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(width) if dims.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, width).unbind(2)
        q, k = self.q_norm(q), self.k_norm(k)  # over all heads together
        q, k, v = (t.reshape(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dims: InternVideo2Dimensions):
        super().__init__()
        self.norm1 = RMSNorm(dims.width)
        self.attn = _Attention(dims)
        self.ls1 = _LayerScale(dims.width) if dims.layer_scale else nn.Identity()
        self.norm2 = RMSNorm(dims.width)
        self.mlp = _Mlp(dims.width, dims.mlp_hidden)
        self.ls2 = _LayerScale(dims.width) if dims.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int, out: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.k_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, out)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        batch = query.shape[0]

        def split(x: torch.Tensor, linear: nn.Linear, bias: torch.Tensor) -> torch.Tensor:
            return F.linear(x, linear.weight, bias).reshape(batch, x.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(query, self.q, self.q_bias), split(key, self.k, self.k_bias),
                                             split(value, self.v, self.v_bias))
        return self.proj(out.transpose(1, 2).reshape(batch, query.shape[1], -1))


class _AttentionPool(nn.Module):
    """``AttentionPoolingBlock``: one query, the mean of all tokens; LayerNorms on query, keys, values."""

    def __init__(self, dims: InternVideo2Dimensions):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dims.width, eps=_POOL_EPS)
        self.norm1_k = nn.LayerNorm(dims.width, eps=_POOL_EPS)
        self.norm1_v = nn.LayerNorm(dims.width, eps=_POOL_EPS)
        self.cross_attn = _CrossAttention(dims.width, dims.pool_heads, dims.clip_embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = self.norm1_q(x.mean(1, keepdim=True))
        return self.cross_attn(query, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


class _PatchEmbed(nn.Module):
    def __init__(self, dims: InternVideo2Dimensions):
        super().__init__()
        patch = dims.patch_size
        self.proj = nn.Conv3d(3, dims.width, (1, patch, patch), (1, patch, patch))


class InternVideo2Vision(nn.Module):
    """``PretrainInternVideo2`` up to ``clip_projector``: ``[B, T, 3, H, W]`` to ``[B, clip_embed_dim]``.

    ``frames`` is the count the model is built for: it only matters for a single-frame input of a
    file without ``img_pos_embed`` (the mean over that many frames of the adapted table).
    """

    def __init__(self, dims: InternVideo2Dimensions, frames: int):
        super().__init__()
        self.dims = dims
        self.frames = frames
        positions = dims.checkpoint_frames * dims.grid ** 2 + 1
        self.patch_embed = _PatchEmbed(dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, positions, dims.width))
        if dims.image_table:
            self.img_pos_embed = nn.Parameter(torch.zeros(1, dims.grid ** 2 + 1, dims.width))
        self.blocks = nn.ModuleList([_Block(dims) for _ in range(dims.depth)])
        self.clip_projector = _AttentionPool(dims)

    def positions(self, frames: int) -> torch.Tensor:
        grid = self.dims.grid
        if frames > 1:
            return resize_temporal(self.pos_embed, grid, frames)
        if self.dims.image_table:
            return self.img_pos_embed
        table = resize_temporal(self.pos_embed, grid, self.frames)
        patches = table[:, 1:].view(1, self.frames, grid * grid, -1).mean(dim=1)
        return torch.cat([table[:, :1], patches], dim=1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        x = self.patch_embed.proj(clips.transpose(1, 2).to(self.patch_embed.proj.weight.dtype))  # [B, C, T, h, w]
        require_patch_count(FAMILY, clips, x.shape[3] * x.shape[4], self.dims.grid ** 2, self.dims.image_size)
        x = x.flatten(3).permute(0, 2, 3, 1).reshape(batch, -1, x.shape[1])
        x = torch.cat([self.cls_token.expand(batch, -1, -1).to(x.dtype), x], dim=1)
        x = x + self.positions(frames).to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.clip_projector(x)


# ------------------------------------------------------------------------------------------------
# Text: BERT's layers below ``fusion_layer`` (transformers' BertModel names)


class _TextLayers(nn.Module):
    def __init__(self, dims: InternVideo2Dimensions):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(dims.text_width, dims.text_heads, dims.text_intermediate)
                                    for _ in range(dims.fusion_layer)])


class InternVideo2Text(nn.Module):
    """``encode_text`` (``mode="text"``): ``[N, L]`` ids and mask to the ``[N, text_width]`` ``[CLS]`` outputs."""

    def __init__(self, dims: InternVideo2Dimensions):
        super().__init__()
        self.embeddings = BertTextEmbeddings(dims.vocab_size, dims.text_positions, dims.text_types,
                                             dims.text_width)
        self.encoder = _TextLayers(dims)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        additive = additive_mask(mask, x.dtype)
        for layer in self.encoder.layer:
            x = layer(x, additive)
        return x[:, 0]


class InternVideo2Net(nn.Module):
    """The dual encoder under the official names (``vision_encoder``, ``text_encoder``, projections)."""

    def __init__(self, dims: InternVideo2Dimensions, frames: int | None = None):
        super().__init__()
        self.dims = dims
        self.vision_encoder = InternVideo2Vision(dims, frames or dims.checkpoint_frames)
        self.text_encoder = InternVideo2Text(dims)
        self.vision_proj = nn.Linear(dims.clip_embed_dim, dims.embed_dim)
        self.text_proj = nn.Linear(dims.text_width, dims.embed_dim)


def _text_layout(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``text_encoder.bert.*`` (pre-training, BertForMaskedLM) as ``text_encoder.*``; the layers from
    ``fusion_layer`` on (cross-attention) dropped after their presence has been read."""
    out = {}
    for key, value in state.items():
        if key.startswith("text_encoder.bert."):
            key = "text_encoder." + key[len("text_encoder.bert."):]
        out[key] = value
    return out


def load_internvideo2_net(checkpoint: str | os.PathLike, *, frames: int | None = None, heads: int | None = None,
                          pool_heads: int | None = None, text_heads: int | None = None,
                          size: int | None = None) -> InternVideo2Net:
    """The network sized and filled from a stage-2 file (``{'model'|'module': ...}`` or a bare state dict)."""
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY))
    loaded.state_dict = _text_layout(loaded.state_dict)
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(loaded.state_dict, _SIZE_KEYS, loaded.path, FAMILY)
    dims = InternVideo2Dimensions.from_state_dict(loaded.state_dict, loaded.path, heads=heads, pool_heads=pool_heads,
                                                  text_heads=text_heads, size=size)
    net = InternVideo2Net(dims, frames)
    fusion = tuple(f"text_encoder.encoder.layer.{i}." for i in range(dims.fusion_layer, dims.text_layers))
    load_strict(net, loaded.state_dict, loaded.path, family=FAMILY, ignore_unexpected=_TRAINING_ONLY + fusion)
    return net.eval()


# ------------------------------------------------------------------------------------------------
# Tokenizer


class InternVideo2Tokenizer(ClsOnlyWordPiece):
    """The repository's ``tokenization_bert.BertTokenizer`` under transformers 4.28: special tokens
    split out first, the rest basic + WordPiece; ``[CLS]`` and no ``[SEP]`` (`ClsOnlyWordPiece`)."""


# ------------------------------------------------------------------------------------------------
# The adapter


class InternVideo2(TorchAdapter):
    """InternVideo2 stage-2 dual encoder: unit-length video and text embeddings, score ``100 * cosine``."""

    name = FAMILY

    def __init__(self, net: InternVideo2Net, tokenizer: InternVideo2Tokenizer, *, max_words: int, spec: FrameSpec,
                 checkpoint: str | os.PathLike | None, settings: str = ""):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.tokenizer = tokenizer
        self.max_words = max_words

    @property
    def dims(self) -> InternVideo2Dimensions:
        return self.net.dims

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_for(FAMILY, self.tokenizer, texts, self.max_words, self.dims.vocab_size)

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` normalised frames to ``[B, D]`` unit vectors (``get_vid_feat``)."""
        require_clips(FAMILY, clips)
        pooled = self.net.vision_encoder(clips.to(self.device))
        return F.normalize(self.net.vision_proj(pooled).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` unit vectors (``get_txt_feat``), ``max_words`` (40) tokens."""
        ids, mask = self.tokenize(texts)
        pooled = self.net.text_encoder(ids.to(self.device), mask.to(self.device))
        return F.normalize(self.net.text_proj(pooled).float(), dim=-1)

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official score, ``100 * cosine`` (``predict_label`` before its softmax)."""
        return SCORE_SCALE * (F.normalize(videos.float(), dim=-1) @ F.normalize(texts.float(), dim=-1).T)


# ------------------------------------------------------------------------------------------------
# The card and the factory

_HF = "https://huggingface.co/OpenGVLab"
_VOCAB_STEP = ("The BERT vocabulary (google-bert/bert-large-uncased, not gated) is fetched by the tag's vocab URL; "
               "offline, give vocab=PATH or put vocab.txt beside the checkpoint")


def _gated_tag(tag: str, name: str, file: str | None, notes: str) -> WeightTag:
    repo = f"{_HF}/{name}"
    if file:
        get = (f"(2) download {file} from its Files tab, or `hf download OpenGVLab/{name} {file}` once access is "
               "granted (with your token)")
    else:
        get = "(2) download the stage-2 checkpoint (.pt) from its Files tab once access is granted"
    where = (f"(1) sign in on huggingface.co and request access on {repo} (a gated repository: the request "
             f"must be granted); {get}; (3) pass it as checkpoint=PATH. {_VOCAB_STEP}")
    return WeightTag(name=tag, source="user", args={"vocab": BERT_LARGE_VOCAB_URL}, where=where,
                     frame_spec=internvideo2_frame_spec(4), notes=notes)


CARD = ModelCard(
    family=FAMILY,
    description="InternVideo2 stage 2 (dual encoder): 1B video ViT (RMSNorm, qk-norm, attention pool) over 4 "
                "frames, BERT-large text below its fusion layer, 40 tokens, 100·cosine",
    capabilities=(DUAL_ENCODER,),
    tags=(
        _gated_tag("s2-1b-224p-f4", "InternVideo2-Stage2_1B-224p-f4", "InternVideo2-stage2_1b-224p-f4.pt",
                   "InternVideo2-s2-1B, 224 px, 4 frames: the demo's model (DEMO_USAGE_GUIDE.md names the file; "
                   "the repository README also links it under OpenGVLab/InternVideo2). Read as setup_internvideo2 "
                   "reads it ({'model'|'module': state_dict} or bare); the demo config's layout: separate "
                   "image/video position tables, BERT-large, fusion layer 19."),
        _gated_tag("s2-6b-224p-f4", "InternVideo2-Stage2_6B-224p-f4", None,
                   "InternVideo2-s2-6B (MODEL_ZOO.md): 3200 wide, 48 blocks, 25 heads in the official factory. "
                   "Assumed to share the 1B file's layout; loading checks every key and shape it uses."),
    ),
    default_tag="s2-1b-224p-f4",
    frame_spec=internvideo2_frame_spec(4),
    tokenizer="BERT basic + WordPiece (bert-large-uncased vocab.txt: vocab=PATH, a URL, or beside the checkpoint), "
              f"special tokens split out first, [CLS] and no [SEP], padded to {MAX_TXT_L} tokens",
    code_licence="Apache-2.0 (OpenGVLab/InternVideo; InternVideo2/multi_modality/pyproject.toml says the same)",
    weights_licence="per the gated Hugging Face repository's terms (OpenGVLab/InternVideo2-Stage2_*)",
    paper="Wang et al. InternVideo2: Scaling Foundation Models for Multimodal Video Understanding. ECCV 2024. "
          "arXiv:2403.15377",
    citation="wang2024internvideo2",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the weights are in gated Hugging Face repositories (an access form per account): download "
                  "the .pt after access is granted and pass it as checkpoint=PATH",
    checkpoint_formats=("the stage-2 .pt ({'module': state_dict} from DeepSpeed, or {'model': state_dict}), "
                        "text encoder as text_encoder.bert.* (pre-training) or text_encoder.*",
                        "a bare state dict of either layout (.pt/.pth or safetensors)"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def internvideo2(checkpoint: str | os.PathLike | None = None, vocab: str | os.PathLike | None = None,
                 frames: int | None = None, num_frames: int | None = None, max_words: int = MAX_TXT_L,
                 heads: int | None = None, pool_heads: int | None = None, text_heads: int | None = None,
                 size: int | None = None) -> InternVideo2:
    """InternVideo2 stage 2 from an official ``.pt`` (``InternVideo2-stage2_1b-224p-f4.pt``).

    ``vocab``: bert-large-uncased's ``vocab.txt`` (path or URL; default beside the checkpoint).
    ``frames`` (or the official ``num_frames``): frames per clip, default the file's (4); other
    counts interpolate the position table over time as ``setup_internvideo2`` does. ``max_words``:
    ``max_txt_l`` (40). ``heads``/``pool_heads``: attention heads of the vision blocks and of the
    attention pool (default 16/16 for the 1B width, 25/16 for the 6B; required for other widths).
    ``text_heads``: BERT heads (default width // 64: 16 for BERT-large). ``size``: the frame size a
    file without ``img_pos_embed`` was trained for (default 224; read from the file otherwise).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    count = frame_count(FAMILY, frames, num_frames)
    positive_int(FAMILY, "max_words", max_words)
    for name, value in (("heads", heads), ("pool_heads", pool_heads), ("text_heads", text_heads), ("size", size)):
        if value is not None:
            positive_int(FAMILY, name, value)
    net = load_internvideo2_net(path, frames=count, heads=heads, pool_heads=pool_heads, text_heads=text_heads,
                                size=size)
    dims = net.dims
    if max_words > dims.text_positions:
        raise InputError(f"{FAMILY}: max_words={max_words} exceeds the {dims.text_positions} positions of the "
                         "checkpoint", field="--model-args")
    vocab_path = side_file(FAMILY, vocab, path, name="vocab.txt", argument="vocab",
                           what="the bert-large-uncased vocabulary", url=BERT_LARGE_VOCAB_URL)
    tokenizer = InternVideo2Tokenizer.from_file(vocab_path)
    frames_used = net.vision_encoder.frames
    spec = internvideo2_frame_spec(frames_used, dims.image_size)
    settings = (f"heads={dims.heads}/{dims.pool_heads}/{dims.text_heads};frames={frames_used};"
                f"vocab={file_sha256(vocab_path)};max_words={max_words}")
    return InternVideo2(net, tokenizer, max_words=max_words, spec=spec, checkpoint=path, settings=settings)
