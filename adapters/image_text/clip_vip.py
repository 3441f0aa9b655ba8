"""``clip-vip``: CLIP-ViP (Xue et al., ICLR 2023), a CLIP ViT given video proxy tokens.

Why a port of its own: CLIP-ViP is Hugging Face CLIP (same parameter names, same text tower) whose
vision tower reads a whole video in one sequence, with an attention pattern that no stock class
has. So the network is written here in plain torch with the checkpoint's key names, and every size
is read from the tensors.

What the official code (microsoft/XPretrain, ``CLIP-ViP/src/modeling/CLIP_ViP.py``) does, and this
port reproduces (checked against it in ``tests/data/official/clip_vip``):

- Video ``[B, T, 3, H, W]``: each frame is patchified by the CLIP convolution; every patch gets its
  spatial position (the CLIP rows after the first) plus a learned per-frame temporal embedding. When
  T differs from the checkpoint's 12 rows the temporal table is resampled with 1-d linear
  interpolation (``align_corners=False``). The class token and the ``added_cls`` proxy tokens (3 in
  the published files) each get the first position row and no temporal embedding. Sequence:
  ``[class, proxies, frame 1 patches, ..., frame T patches]``, then ``pre_layrnorm``.
- Attention in every vision layer is split: a patch attends to the M = 1 + proxies leading tokens
  and to the patches of its own frame only; the leading tokens attend to the whole sequence. Output
  rows keep that order; one ``out_proj`` follows. Treating the video as full attention, or dropping
  the leading tokens from the patches' keys, gives a different model.
- The video vector is ``post_layernorm`` of the class token (proxies are not pooled), the bias-free
  ``visual_projection``, L2-normalised (``VidCLIP.forward_video``).
- Text: Hugging Face ``CLIPTokenizerFast`` of ``openai/clip-vit-base-patch*`` at ``max_txt_len``
  50 (every retrieval config), padded to 50 with ``<|endoftext|>``, cut to 48 BPE ids + start +
  end. That tokenizer only applies NFC, collapses whitespace and lower-cases: unlike OpenAI's
  ``clip.tokenize`` it does not run ftfy or unescape HTML, so "it’s" and "&amp;" keep their
  characters. The tower is CLIP's causal transformer, ``final_layer_norm``, the feature at the
  first end token (the official ``argmax`` of ids padded with the end id), the bias-free
  ``text_projection``, L2-normalised. The official padding mask is not needed: under the causal
  mask the pooled end token never sees a padded position.
- Score: ``CLIPModel.forward``'s ``exp(logit_scale) * cosine`` (the retrieval evaluation ranks by
  the plain cosine, the same order). Activations ``quick_gelu``, LayerNorm eps 1e-5.

Checkpoint: the official ``ModelSaver`` writes ``VidCLIP.state_dict()`` with ``torch.save``: a flat
dict of ``clipmodel.*`` keys in fp16 (apex O2), with the two int64 ``position_ids`` buffers. Files
without the ``clipmodel.`` prefix (third-party re-saves) or under ``module.``/``state_dict`` load
too. Attention heads are not in the shapes: width // 64, as in both published models (vision 768 /
12 heads, text 512 / 8); ``vision_heads``/``text_heads`` override it for other files.

Frames, as the official test transform prepares them: ``np.linspace(0, n - 1, 12)`` frame indices
over the clip, each squashed to 224 x 224 (bicubic ``Resize((224, 224))`` on the float tensor, then
a no-op centre crop), CLIP mean/std. The platform samples the midpoints of 12 equal parts instead
of the endpoint-inclusive linspace, and antialiases as PIL does (the official tensor resize of 2022
torchvision did not antialias); both are preprocessing differences, not model ones.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import Checkpoint, load_strict, read_checkpoint, require_keys, strip_prefix, unwrap_state_dict
from ..core.clip_net import FcMlp, cosine_logits
from ..core.shapes import count_blocks, openai_heads, optional_positive
from ..core.tokenizers import ClipBPE, pad_rows
from ..protocols import DUAL_ENCODER
from ..registry import register_model

__all__ = ["ClipVipAdapter", "ClipVipNet", "ClipVipDimensions", "clip_vip", "clip_vip_frame_spec",
           "clip_vip_tokenize"]

FAMILY = "clip-vip"
CONTEXT_LENGTH = 50
# buffers the official modules save but which are rebuilt here from the shapes
_BUFFERS = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")
_REQUIRED = ("vision_model.embeddings.added_cls", "vision_model.embeddings.patch_embedding.weight",
             "vision_model.embeddings.position_embedding.weight", "text_model.embeddings.token_embedding.weight",
             "text_model.embeddings.position_embedding.weight", "visual_projection.weight", "text_projection.weight")
_README = "https://github.com/microsoft/XPretrain/tree/main/CLIP-ViP#getting-started"


def clip_vip_frame_spec(size: int = 224, frames: int = 12) -> FrameSpec:
    """The official test transform: squash to ``size`` (bicubic), CLIP statistics."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=size, crop=size, mean=CLIP_MEAN, std=CLIP_STD,
                     resize="squash", interpolation="bicubic")


def _user_tag(name: str, label: str, file: str) -> WeightTag:
    return WeightTag(
        name=name, source="user", frame_spec=clip_vip_frame_spec(224),
        where=(f"{file}: the 'Azure Blob Link' for {label} in {_README} "
               f"(https://hdvila.blob.core.windows.net/dataset/{file} plus the SAS query string printed "
               "there); pass checkpoint=PATH"),
        notes="post-pretrained on HD-VILA-100M; fp16 state dict of clipmodel.* keys")


CARD = ModelCard(
    family=FAMILY,
    description="CLIP-ViP: CLIP ViT with video proxy tokens and frame-local patch attention, exp(t)·cosine",
    capabilities=(DUAL_ENCODER,),
    tags=(_user_tag("vit-b-32", "CLIP-ViP-B/32", "pretrain_clipvip_base_32.pt"),
          _user_tag("vit-b-16", "CLIP-ViP-B/16", "pretrain_clipvip_base_16.pt")),
    default_tag="vit-b-32",
    frame_spec=clip_vip_frame_spec(224),
    tokenizer="CLIP BPE as Hugging Face CLIPTokenizerFast (no ftfy/HTML unescape), context 50",
    code_licence="MIT (CLIP-ViP/LICENSE); the XPretrain repository is under the Microsoft Research License "
                 "Agreement (non-commercial)",
    weights_licence="not stated by the authors (released with the Microsoft Research License repository)",
    paper="Xue et al., CLIP-ViP: Adapting Pre-trained Image-Text Model to Video-Language Representation "
          "Alignment, ICLR 2023 (arXiv:2209.06430)",
    citation="xue2022clip",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the weights are Azure blob files behind SAS links from the CLIP-ViP README; download them and "
                  "pass checkpoint=PATH",
    checkpoint_formats=("CLIP-ViP ModelSaver state dict (clipmodel.* keys, fp16)",),
    code_version="1",
)


# --------------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------------
class _FastTokenizerBPE(ClipBPE):
    """CLIP's BPE with the text cleaning of Hugging Face's CLIPTokenizerFast (see the module docstring)."""

    _spaces = re.compile(r"\s+")

    def clean(self, text: str) -> str:
        return self._spaces.sub(" ", unicodedata.normalize("NFC", text)).strip().lower()


@functools.lru_cache(maxsize=1)
def _tokenizer() -> _FastTokenizerBPE:
    return _FastTokenizerBPE()


def clip_vip_tokenize(texts: list[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """``[N, context_length]`` ids as the official collator makes them: start, at most
    ``context_length - 2`` BPE ids, end, then the end id as padding."""
    bpe = _tokenizer()
    rows = [[bpe.sot, *bpe.encode(text)[:context_length - 2], bpe.eot] for text in texts]
    return pad_rows(rows, context_length, pad=bpe.eot)


# --------------------------------------------------------------------------------------------------
# network (Hugging Face CLIP parameter names)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipVipDimensions:
    """The sizes of a CLIP-ViP network, read from its tensors (heads: width // 64 unless given)."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    patch_size: int
    image_size: int
    proxies: int
    temporal_size: int | None
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int
    vocab_size: int
    text_positions: int

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], source: str | os.PathLike = "", *,
                        vision_heads: int | None = None, text_heads: int | None = None) -> ClipVipDimensions:
        conv = state["vision_model.embeddings.patch_embedding.weight"]
        positions = state["vision_model.embeddings.position_embedding.weight"].shape[0]
        grid = round((positions - 1) ** 0.5)
        if conv.ndim != 4 or grid * grid != positions - 1:
            raise InputError(f"has a vision position table of {positions} rows, not 1 + a square patch grid",
                             path=source, field="checkpoint")
        temporal = state.get("vision_model.embeddings.temporal_embedding")
        token = state["text_model.embeddings.token_embedding.weight"]
        vision_width, text_width = conv.shape[0], token.shape[1]
        dims = cls(
            embed_dim=state["visual_projection.weight"].shape[0],
            vision_width=vision_width,
            vision_layers=count_blocks(state, "vision_model.encoder.layers."),
            vision_heads=vision_heads or openai_heads(vision_width),
            vision_mlp=_mlp_width(state, "vision_model", vision_width),
            patch_size=conv.shape[-1],
            image_size=conv.shape[-1] * grid,
            proxies=state["vision_model.embeddings.added_cls"].shape[0],
            temporal_size=None if temporal is None else temporal.shape[1],
            text_width=text_width,
            text_layers=count_blocks(state, "text_model.encoder.layers."),
            text_heads=text_heads or openai_heads(text_width),
            text_mlp=_mlp_width(state, "text_model", text_width),
            vocab_size=token.shape[0],
            text_positions=state["text_model.embeddings.position_embedding.weight"].shape[0],
        )
        for tower, width, heads in (("vision", dims.vision_width, dims.vision_heads),
                                    ("text", dims.text_width, dims.text_heads)):
            if width % heads:
                raise InputError(f"{tower} width {width} is not divisible by {heads} heads (pass {tower}_heads=)",
                                 path=source, field="checkpoint")
        return dims


def _mlp_width(state: dict[str, torch.Tensor], tower: str, width: int) -> int:
    weight = state.get(f"{tower}.encoder.layers.0.mlp.fc1.weight")
    return width * 4 if weight is None else weight.shape[0]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention of already-scaled queries ``[..., Q, d]`` over keys/values ``[..., K, d]``."""
    weights = q @ k.transpose(-1, -2)
    if mask is not None:
        weights = weights + mask
    return weights.softmax(dim=-1) @ v


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)  # [B, H, S, d]

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        batch, heads, length, head_dim = x.shape
        return x.transpose(1, 2).reshape(batch, length, heads * head_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                video: tuple[int, int, int] | None = None) -> torch.Tensor:
        q = self._split(self.q_proj(x) * self.scale)
        k, v = self._split(self.k_proj(x)), self._split(self.v_proj(x))
        if video is None:
            return self.out_proj(self._merge(_attend(q, k, v, mask)))
        lead, frames, patches = video
        batch, heads, _, head_dim = q.shape
        # leading (class + proxy) tokens see the whole video
        out_lead = _attend(q[:, :, :lead], k, v)
        # each frame's patches see the leading tokens and their own frame
        def per_frame(t: torch.Tensor) -> torch.Tensor:
            return t[:, :, lead:].reshape(batch, heads, frames, patches, head_dim)

        def leading(t: torch.Tensor) -> torch.Tensor:
            return t[:, :, None, :lead].expand(batch, heads, frames, lead, head_dim)

        keys = torch.cat([leading(k), per_frame(k)], dim=3)
        values = torch.cat([leading(v), per_frame(v)], dim=3)
        out_frames = _attend(per_frame(q), keys, values).reshape(batch, heads, frames * patches, head_dim)
        return self.out_proj(self._merge(torch.cat([out_lead, out_frames], dim=2)))


class _Layer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.self_attn = _Attention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = FcMlp(width, hidden)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                video: tuple[int, int, int] | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask, video)
        return x + self.mlp(self.layer_norm2(x))


class _Encoder(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([_Layer(width, heads, hidden) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                video: tuple[int, int, int] | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask, video)
        return x


class _TextEmbeddings(nn.Module):
    def __init__(self, dims: ClipVipDimensions):
        super().__init__()
        self.token_embedding = nn.Embedding(dims.vocab_size, dims.text_width)
        self.position_embedding = nn.Embedding(dims.text_positions, dims.text_width)


class _TextTower(nn.Module):
    """CLIP's text transformer under Hugging Face's names (``embeddings.*``, ``encoder.layers.*`` with
    separate ``q/k/v_proj``, ``final_layer_norm``), pooled at the *first* end token: the same network
    as `core.clip_net.TextTower`, whose OpenAI key layout and highest-id pooling the files do not use."""

    def __init__(self, dims: ClipVipDimensions):
        super().__init__()
        self.embeddings = _TextEmbeddings(dims)
        self.encoder = _Encoder(dims.text_width, dims.text_layers, dims.text_heads, dims.text_mlp)
        self.final_layer_norm = nn.LayerNorm(dims.text_width, eps=1e-5)

    def forward(self, ids: torch.Tensor, end_id: int) -> torch.Tensor:
        """``[N, L]`` ids to ``[N, text_width]``: the feature at each row's first end token."""
        length = ids.shape[1]
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:length]
        causal = torch.full((length, length), float("-inf"), device=ids.device, dtype=x.dtype).triu_(1)
        x = self.final_layer_norm(self.encoder(x, causal))
        is_end = ids == end_id
        end = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), ids.argmax(dim=1))
        return x[torch.arange(ids.shape[0], device=ids.device), end]


class _VisionEmbeddings(nn.Module):
    def __init__(self, dims: ClipVipDimensions):
        super().__init__()
        width = dims.vision_width
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.added_cls = nn.Parameter(torch.zeros(dims.proxies, width))
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=dims.patch_size, stride=dims.patch_size, bias=False)
        self.position_embedding = nn.Embedding((dims.image_size // dims.patch_size) ** 2 + 1, width)
        if dims.temporal_size is not None:
            self.temporal_embedding = nn.Parameter(torch.zeros(1, dims.temporal_size, width))
        else:
            self.temporal_embedding = None

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        batch, frames = clips.shape[:2]
        patches = self.patch_embedding(clips.flatten(0, 1).to(self.patch_embedding.weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)  # [B*T, L, C]
        width = patches.shape[-1]
        patches = patches.reshape(batch, frames, -1, width)
        if self.temporal_embedding is not None:
            table = self.temporal_embedding
            if table.shape[1] != frames:
                table = F.interpolate(table.transpose(1, 2), size=frames, mode="linear").transpose(1, 2)
            patches = patches + table.unsqueeze(2)
        positions = self.position_embedding.weight
        patches = patches + positions[1:]
        first = positions[0]
        lead = torch.cat([(self.class_embedding + first)[None], self.added_cls + first])  # [M, C]
        tokens = torch.cat([lead.expand(batch, -1, -1), patches.reshape(batch, -1, width)], dim=1)
        return tokens, (lead.shape[0], frames, patches.shape[2])


class _VisionTower(nn.Module):
    def __init__(self, dims: ClipVipDimensions):
        super().__init__()
        self.embeddings = _VisionEmbeddings(dims)
        self.pre_layrnorm = nn.LayerNorm(dims.vision_width, eps=1e-5)  # the official (and HF) spelling
        self.encoder = _Encoder(dims.vision_width, dims.vision_layers, dims.vision_heads, dims.vision_mlp)
        self.post_layernorm = nn.LayerNorm(dims.vision_width, eps=1e-5)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, vision_width]``: the class token after ``post_layernorm``."""
        tokens, layout = self.embeddings(clips)
        tokens = self.encoder(self.pre_layrnorm(tokens), video=layout)
        return self.post_layernorm(tokens[:, 0])


class ClipVipNet(nn.Module):
    """CLIP-ViP's ``CLIPModel`` with the official parameter names (after the ``clipmodel.`` prefix)."""

    def __init__(self, dims: ClipVipDimensions):
        super().__init__()
        self.dims = dims
        self.text_model = _TextTower(dims)
        self.vision_model = _VisionTower(dims)
        self.visual_projection = nn.Linear(dims.vision_width, dims.embed_dim, bias=False)
        self.text_projection = nn.Linear(dims.text_width, dims.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual_projection(self.vision_model(clips)), dim=-1)

    def encode_text(self, ids: torch.Tensor, end_id: int) -> torch.Tensor:
        return F.normalize(self.text_projection(self.text_model(ids, end_id)), dim=-1)


def read_clip_vip_state(path: str | os.PathLike) -> Checkpoint:
    """The file's weights with wrappers and the ``clipmodel.`` prefix removed, or one InputError."""
    checkpoint = unwrap_state_dict(read_checkpoint(path, family=FAMILY))
    state = strip_prefix(checkpoint.state_dict, "clipmodel.")
    checkpoint = Checkpoint(checkpoint.path, state, checkpoint.payload, checkpoint.format)
    require_keys(checkpoint, _REQUIRED, family=FAMILY)
    return checkpoint


# --------------------------------------------------------------------------------------------------
# adapter
# --------------------------------------------------------------------------------------------------
class ClipVipAdapter(TorchAdapter):
    """CLIP-ViP as a video-text dual encoder (see the module docstring)."""

    name = FAMILY

    def __init__(self, net: ClipVipNet, *, context_length: int, spec: FrameSpec, checkpoint: os.PathLike):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=f"context={context_length}")
        self.net = net
        self.context_length = context_length

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` normalised frames to ``[B, D]`` unit vectors."""
        size = self.net.dims.image_size
        if clips.ndim != 5 or clips.shape[2] != 3 or tuple(clips.shape[-2:]) != (size, size):
            raise InputError(f"{FAMILY} takes frames [B, T, 3, {size}, {size}], got {list(clips.shape)}",
                             field="frames")
        return self.net.encode_video(clips.to(self.device)).float()

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` unit vectors."""
        ids = clip_vip_tokenize(list(texts), self.context_length).to(self.device)
        return self.net.encode_text(ids, _tokenizer().eot).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official logits, ``exp(logit_scale) * cosine``."""
        return cosine_logits(videos, texts, self.net.logit_scale.detach().float().cpu())


@register_model(FAMILY, card=CARD)
def clip_vip(checkpoint: str | os.PathLike | None = None, frames: int = 12, context_length: int = CONTEXT_LENGTH,
             vision_heads: int | None = None, text_heads: int | None = None) -> ClipVipAdapter:
    """CLIP-ViP from the official ``pretrain_clipvip_base_{32,16}.pt`` (or a file in that layout).

    ``frames``: frames per clip (12 official; others resample the temporal embedding as the official
    code does). ``context_length``: text ids (50 in the retrieval configs, 70 in pre-training).
    ``vision_heads``/``text_heads``: attention heads when a file does not follow width // 64.
    """
    path = require_checkpoint(FAMILY, checkpoint)
    frames = positive_int(FAMILY, "frames", frames)
    context_length = positive_int(FAMILY, "context_length", context_length)
    optional_positive(FAMILY, vision_heads=vision_heads, text_heads=text_heads)
    state = read_clip_vip_state(path).state_dict
    dims = ClipVipDimensions.from_state_dict(state, path, vision_heads=vision_heads, text_heads=text_heads)
    if not 2 < context_length <= dims.text_positions:
        raise InputError(f"{FAMILY}: context_length must be 3..{dims.text_positions} (the file's text positions), "
                         f"got {context_length}", field="--model-args")
    if _tokenizer().vocabulary_size != dims.vocab_size:
        raise InputError(f"has a {dims.vocab_size}-row token table; CLIP-ViP reads CLIP's "
                         f"{_tokenizer().vocabulary_size}-token BPE", path=path, field="checkpoint")
    net = ClipVipNet(dims)
    load_strict(net, state, path, family=FAMILY, ignore_unexpected=_BUFFERS)
    return ClipVipAdapter(net.eval(), context_length=context_length,
                          spec=clip_vip_frame_spec(dims.image_size, frames), checkpoint=path)
