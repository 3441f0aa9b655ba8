"""``clip4clip``: CLIP4Clip (Luo et al., 2021), CLIP fine-tuned for video-text retrieval.

Why a port: the official code (github.com/ArrowLuo/CLIP4Clip, ``modules/modeling.py``) sizes its
network from a downloaded OpenAI base file rather than from the checkpoint, needs its training
package layout, and runs CLIP in fp16. Its training script saves ``model.state_dict()`` of the whole
``CLIP4Clip`` module as ``pytorch_model.bin.N``: keys ``clip.*`` (OpenAI's CLIP names) plus the
similarity head's own. No fine-tuned weights were published by the authors, so users bring their
own file; the one public fine-tune, Searchium-ai/clip4clip-webvid150k, is a plain CLIP in
transformers format and loads here too. Every size is read from tensor shapes, so a published file
and a tiny test file go through the same code.

Facts of the official network that this port keeps (each checked against the official code on tiny
random checkpoints, tests/data/official/clip4clip/):

- The head is visible in the keys: ``transformerClip.*`` with ``frame_position_embeddings.weight``
  is seqTransf, ``lstm_visual.*`` seqLSTM, ``cross.*`` with ``similarity_dense.*`` tightTransf,
  none of these meanP (``head=`` overrides; keys of other heads are then ignored, as the official
  loader ignores them).
- Frames: CLIP's projected class token per frame (``get_visual_output``). seqTransf adds the first
  ``T`` rows of ``frame_position_embeddings`` (77 rows, initialised from CLIP's text positions),
  runs ``transformerClip`` (OpenAI-style pre-norm blocks with QuickGELU, heads = width // 64) and
  adds the result back to the **original** frame features (no final LayerNorm, no projection).
  seqLSTM is a one-layer LSTM whose output is likewise added to the frame features.
- The LayerNorms of ``transformerClip`` and of the cross encoder are the BERT ("TF-style") ones
  with eps 1e-12 (the epsilon is inside the square root, which is what ``nn.LayerNorm`` does too);
  CLIP's own keep 1e-5.
- Video vector: each frame L2-normalised, masked mean over frames, L2-normalised again. The
  attention mask is ``(1 - m) * -1e6`` per head; every frame given here is real, so it is zero.
- Text: OpenAI BPE, ``max_words`` 32 (the official README's value): start token, the first
  ``max_words - 2`` BPE tokens, end token, zero padding (the official loader's ``_get_text``; the
  same ids as ``clip.tokenize(truncate=True)`` at that length); CLIP's causal transformer over
  those 32 positions (the first 32 of its 77 position embeddings), pooled at the end token (the
  highest id).
- Score (meanP/seqLSTM/seqTransf): ``exp(logit_scale) * cosine``, with the checkpoint's own scale
  (not clamped). tightTransf is a pair scorer: the text's end-token vector is put before the frame
  vectors (both unnormalised), position embeddings added (no type embeddings, no LayerNorm), the
  cross transformer run, its output LayerNormed, the first token through ``dense`` + QuickGELU,
  and ``similarity_dense`` gives a raw logit per (text, video) pair.
- Checkpoints mix dtypes: CLIP's linear, conv and attention weights and the two projections are
  fp16 (``convert_weights``), everything else fp32. They are computed in fp32 here.
- Frames (official loader): 1 fps, at most 12 frames taken uniformly (``--slice_framepos 2``),
  shorter side to 224 bicubic, centre crop, CLIP mean/std.
- ``--linear_patch 3d`` files (``clip.visual.conv2.weight``) are not ported and are refused.

The Hugging Face port is used the way its model card does: CLIPVisionModelWithProjection
``image_embeds`` per frame, normalised, averaged, normalised; CLIPTextModelWithProjection
``text_embeds`` of the directory's own tokenizer (cut at 77 tokens); score = cosine. Its directory
is read as the ``clip`` family reads one (`instract_eval.adapters.core.hf`: offline, float32, a
missing, unexpected or mis-shaped weight refused in one line).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import CLIP_MEAN, CLIP_STD, FrameSpec

from ..cards import SUPPORTED, ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import file_sha256, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.clip_net import (OPENAI_SCALARS, ClipDimensions, ClipNet, LayerNorm32, QuickGELU, Transformer,
                             cosine_logits, mean_of_normalised_frames, per_frame)
from ..core.hf import pooled_features, through_end_token
from ..core.shapes import captions_per_clip, count_blocks, openai_heads
from ..core.tokenizers import ClipBPE, clip_bpe, openai_tokenize
from ..protocols import DUAL_ENCODER, PAIR_SCORER
from ..registry import register_model
from .clip import load_hf_clip

__all__ = ["HEADS", "detect_head", "clip4clip_frame_spec", "Clip4ClipNet", "Clip4Clip",
           "Clip4ClipTight", "Clip4ClipHF", "load_clip4clip"]

FAMILY = "clip4clip"
HEADS = ("meanP", "seqLSTM", "seqTransf", "tightTransf")
DEFAULT_MAX_WORDS = 32
DEFAULT_FRAMES = 12
HEAD_EPS = 1e-12  # BERT-style LayerNorm of transformerClip and the cross encoder
_CLIP_KEYS = ("clip.visual.conv1.weight", "clip.visual.proj", "clip.token_embedding.weight", "clip.text_projection")
# What marks each head in a checkpoint (all of a head's marks must be present).
_HEAD_MARKS = {
    "tightTransf": ("cross.", "similarity_dense."),
    "seqTransf": ("transformerClip.", "frame_position_embeddings."),
    "seqLSTM": ("lstm_visual.",),
}
_HEAD_PREFIXES = ("frame_position_embeddings.", "transformerClip.", "lstm_visual.", "cross.", "similarity_dense.")
_HF_ID = "Searchium-ai/clip4clip-webvid150k"
_HF_REVISION = "2b8a9ad523f53ee23466f2f4e43c3a108598e430"
_TRAIN_WHERE = ("no published weights: train with github.com/ArrowLuo/CLIP4Clip main_task_retrieval.py "
                "(--pretrained_clip_name {clip} --sim_header meanP|seqLSTM|seqTransf|tightTransf) and pass the "
                "saved <output_dir>/pytorch_model.bin.N as checkpoint=PATH (the head is read from its keys)")


def clip4clip_frame_spec(size: int = 224, frames: int = DEFAULT_FRAMES) -> FrameSpec:
    """The official loader: 1 fps, frames taken uniformly, bicubic shorter side, centre crop, CLIP stats."""
    return FrameSpec(num_frames=frames, sampling="uniform", fps=1.0, size=size, crop=size, mean=CLIP_MEAN,
                     std=CLIP_STD, interpolation="bicubic")


CARD = ModelCard(
    family=FAMILY,
    description="CLIP4Clip: CLIP fine-tuned on video (meanP / seqLSTM / seqTransf dual encoders, tightTransf "
                "cross-encoder), exp(logit_scale)·cosine",
    capabilities=(DUAL_ENCODER, PAIR_SCORER),
    tags=(
        WeightTag(name="webvid150k", source="hub", hub_id=_HF_ID, revision=_HF_REVISION,
                  frame_spec=clip4clip_frame_spec(224),
                  notes="Searchium's CLIP4Clip meanP on the first 150k WebVid pairs, ViT-B/32, transformers "
                        "CLIPModel layout; scored as its model card does (cosine, text cut at 77 tokens); frames "
                        "prepared as the official loader (the card's notebook was not checked); revision: the "
                        "commit of the card's current README"),
        WeightTag(name="vit-b-32", source="user", where=_TRAIN_WHERE.format(clip="ViT-B/32"),
                  frame_spec=clip4clip_frame_spec(224), notes="official format, CLIP ViT-B/32 base"),
        WeightTag(name="vit-b-16", source="user", where=_TRAIN_WHERE.format(clip="ViT-B/16"),
                  frame_spec=clip4clip_frame_spec(224), notes="official format, CLIP ViT-B/16 base"),
    ),
    default_tag="webvid150k",
    frame_spec=clip4clip_frame_spec(224),
    tokenizer="OpenAI CLIP BPE (shipped), max_words 32 (start + 30 tokens + end); HF port: its own tokenizer, 77",
    code_licence="MIT (ArrowLuo/CLIP4Clip)",
    weights_licence="official: the user's own training; webvid150k: none stated on its model card (no licence "
                    "field; trained on WebVid)",
    paper="Luo et al., CLIP4Clip: An Empirical Study of CLIP for End to End Video Clip Retrieval, "
          "arXiv:2104.08860 (Neurocomputing 2022)",
    citation="Luo2021CLIP4Clip",
    status=SUPPORTED,
    checkpoint_formats=("official pytorch_model.bin.N (model.state_dict(), fp16/fp32 mix)",
                        "Hugging Face CLIPModel directory (Searchium-ai/clip4clip-webvid150k)"),
    code_version="1",
)


# ------------------------------------------------------------------------------------------------
# Checkpoint reading


def detect_head(state: Mapping[str, torch.Tensor]) -> str:
    """The similarity head a CLIP4Clip state dict was trained with, from its keys."""
    found = [head for head, marks in _HEAD_MARKS.items()
             if all(any(key.startswith(mark) for key in state) for mark in marks)]
    if len(found) > 1:
        raise ValueError(f"keys of several heads ({', '.join(found)})")
    return found[0] if found else "meanP"


def _rows(state: Mapping[str, torch.Tensor], key: str, default: int) -> int:
    value = state.get(key)
    return int(value.shape[0]) if value is not None and value.ndim == 2 else default


def _head_heads(given: int | None, width: int) -> int:
    heads = given or openai_heads(width)
    if width % heads:
        raise InputError(f"{FAMILY}: head_heads={heads} does not divide the head width {width}", field="--model-args")
    return heads


class _CrossEmbeddings(nn.Module):
    def __init__(self, rows: int, width: int):
        super().__init__()
        self.position_embeddings = nn.Embedding(rows, width)


class _CrossPooler(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.ln_pool = LayerNorm32(width, eps=HEAD_EPS)
        self.dense = nn.Linear(width, width)
        self.activation = QuickGELU()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(self.ln_pool(hidden)[:, 0]))


class CrossEncoder(nn.Module):
    """tightTransf's fusion transformer over ``[text vector; frame vectors]`` (official key names)."""

    def __init__(self, width: int, rows: int, layers: int, heads: int):
        super().__init__()
        self.embeddings = _CrossEmbeddings(rows, width)
        self.transformer = Transformer(width, layers, heads, eps=HEAD_EPS)
        self.pooler = _CrossPooler(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L, D]`` to the pooled ``[N, D]``."""
        x = tokens + self.embeddings.position_embeddings.weight[:tokens.shape[1]]
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.pooler(x)


class Clip4ClipNet(nn.Module):
    """The CLIP4Clip module with the official parameter names (``clip.*`` and the head's keys)."""

    def __init__(self, dims: ClipDimensions, head: str, *, rows: int = 77, head_layers: int = 0,
                 head_heads: int | None = None):
        super().__init__()
        self.head = head
        self.clip = ClipNet(dims)
        width = dims.embed_dim
        heads = _head_heads(head_heads, width)
        if head in ("seqLSTM", "seqTransf"):
            self.frame_position_embeddings = nn.Embedding(rows, width)  # seqLSTM has it too, unused
        if head == "seqTransf":
            self.transformerClip = Transformer(width, head_layers, heads, eps=HEAD_EPS)
        elif head == "seqLSTM":
            self.lstm_visual = nn.LSTM(input_size=width, hidden_size=width, batch_first=True, num_layers=1)
        elif head == "tightTransf":
            self.cross = CrossEncoder(width, rows, head_layers, heads)
            self.similarity_dense = nn.Linear(width, 1)

    @property
    def max_frames(self) -> int:
        """The most frames the head's position table allows (CLIP-only heads: no limit)."""
        if self.head == "seqTransf":
            return self.frame_position_embeddings.num_embeddings
        if self.head == "tightTransf":
            return self.cross.embeddings.position_embeddings.num_embeddings - 1
        return 1 << 30

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, T, D]``: CLIP's projected class token per frame."""
        return per_frame(self.clip.encode_image, clips)

    def temporal(self, frames: torch.Tensor) -> torch.Tensor:
        """The loose heads on ``[B, T, D]`` frame features (meanP: unchanged)."""
        if self.head == "seqTransf":
            x = frames + self.frame_position_embeddings.weight[:frames.shape[1]]
            x = self.transformerClip(x.transpose(0, 1)).transpose(0, 1)
            return x + frames
        if self.head == "seqLSTM":
            return self.lstm_visual(frames)[0] + frames
        return frames

    def pair_logits(self, texts: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """tightTransf: ``[N, D]`` text vectors and ``[N, T, D]`` frame features to ``[N]`` logits."""
        pooled = self.cross(torch.cat([texts.unsqueeze(1), frames], dim=1))
        return self.similarity_dense(pooled).squeeze(-1)


def _merge_base_clip(state: dict[str, torch.Tensor], clip_checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Fill ``clip.*`` keys the file lacks from an OpenAI CLIP file, as the official loader does."""
    base = unwrap_state_dict(read_checkpoint(clip_checkpoint, family="clip")).state_dict
    merged = dict(state)
    for key, value in base.items():
        if key not in OPENAI_SCALARS:
            merged.setdefault(f"clip.{key}", value)
    return merged


def load_clip4clip(checkpoint: str | os.PathLike, *, head: str | None = None,
                   clip_checkpoint: str | os.PathLike | None = None, vision_heads: int | None = None,
                   text_heads: int | None = None, head_heads: int | None = None) -> Clip4ClipNet:
    """A `Clip4ClipNet` built from an official ``pytorch_model.bin.N`` (sizes from its shapes)."""
    path = Path(checkpoint)
    ckpt = unwrap_state_dict(read_checkpoint(path, family=FAMILY))
    state = ckpt.state_dict
    if clip_checkpoint is not None:
        state = _merge_base_clip(state, clip_checkpoint)
        ckpt.state_dict = state
    require_keys(ckpt, _CLIP_KEYS, family=FAMILY)
    if "clip.visual.conv2.weight" in state:
        raise InputError("was trained with --linear_patch 3d (clip.visual.conv2.weight), which is not ported; "
                         "only 2d patch embeddings are", path=path, field="checkpoint")
    try:
        found = detect_head(state)
    except ValueError as error:
        if head is None:
            raise InputError(f"holds {error}: pass head=", path=path, field="checkpoint") from None
        found = head
    head = _head_name(head) if head is not None else found
    clip_state = {key[len("clip."):]: value for key, value in state.items() if key.startswith("clip.")}
    dims = ClipDimensions.from_state_dict(clip_state, path, vision_heads=vision_heads, text_heads=text_heads)
    if head == "seqTransf":
        rows = _rows(state, "frame_position_embeddings.weight", dims.context_length)
        layers = count_blocks(state, "transformerClip.resblocks.")
    elif head == "tightTransf":
        rows = _rows(state, "cross.embeddings.position_embeddings.weight", dims.context_length)
        layers = count_blocks(state, "cross.transformer.resblocks.")
    else:
        rows, layers = _rows(state, "frame_position_embeddings.weight", dims.context_length), 0
    if head in ("seqTransf", "tightTransf") and layers == 0:
        prefix = "transformerClip" if head == "seqTransf" else "cross.transformer"
        raise InputError(f"has no {prefix}.resblocks.* tensors, which the {head} head needs", path=path,
                         field="checkpoint")
    net = Clip4ClipNet(dims, head, rows=rows, head_layers=layers, head_heads=head_heads)
    own = {"seqLSTM": ("frame_position_embeddings.", "lstm_visual."),
           "seqTransf": ("frame_position_embeddings.", "transformerClip."),
           "tightTransf": ("cross.", "similarity_dense.")}.get(head, ())
    ignored = tuple(p for p in _HEAD_PREFIXES if p not in own) + tuple(f"clip.{s}" for s in OPENAI_SCALARS)
    load_strict(net, state, path, family=FAMILY, ignore_unexpected=ignored)
    return net.eval()


def _head_name(head: str) -> str:
    for name in HEADS:
        if str(head).lower() == name.lower():
            return name
    raise InputError(f"{FAMILY}: head must be one of {', '.join(HEADS)}, got {head!r}", field="--model-args")


# ------------------------------------------------------------------------------------------------
# Text


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InputError(f"{FAMILY}: encode_text takes a list of strings", field="texts")
    return list(texts)


def _check_clips(clips: torch.Tensor, size: int, max_frames: int) -> torch.Tensor:
    if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or clips.shape[2] != 3:
        shape = list(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise InputError(f"{FAMILY}: clips must be [B, T, 3, H, W] frames, got {shape}", field="clips")
    if tuple(clips.shape[-2:]) != (size, size):
        raise InputError(f"{FAMILY}: frames of {clips.shape[-2]}x{clips.shape[-1]} pixels; this checkpoint takes "
                         f"{size}x{size}", field="clips")
    if clips.shape[1] > max_frames:
        raise InputError(f"{FAMILY}: {clips.shape[1]} frames, but the head's position table has room for "
                         f"{max_frames}", field="clips")
    return clips


# ------------------------------------------------------------------------------------------------
# Adapters


class _Official(TorchAdapter):
    name = FAMILY

    def __init__(self, net: Clip4ClipNet, *, tokenizer: ClipBPE, max_words: int, spec: FrameSpec,
                 checkpoint: Path, settings: str):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.tokenizer = tokenizer
        self.max_words = max_words

    @property
    def head(self) -> str:
        return self.net.head

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        ids = openai_tokenize(texts, self.max_words, self.tokenizer).to(self.device)
        return self.net.clip.encode_text(ids).float()

    def _frames(self, clips: torch.Tensor) -> torch.Tensor:
        dims = self.net.clip.dims
        clips = _check_clips(clips, dims.image_size, self.net.max_frames)
        return self.net.frame_features(clips.to(self.device))


class Clip4Clip(_Official):
    """meanP / seqLSTM / seqTransf: a dual encoder scored with ``exp(logit_scale) * cosine``."""

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, D]`` unit vectors."""
        return mean_of_normalised_frames(self.net.temporal(self._frames(clips)))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` unit vectors."""
        return F.normalize(self._text_features(_check_texts(texts)), dim=-1)

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official ``_loose_similarity``: ``exp(logit_scale) * cosine``, ``[B, N]``."""
        return cosine_logits(videos, texts, self.net.clip.logit_scale.detach().float().cpu())


class Clip4ClipTight(_Official):
    """tightTransf: a pair scorer (``similarity_dense`` logit of the cross encoder per pair)."""

    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips and ``B`` lists of ``C`` captions to ``[B, C]`` raw logits."""
        per_clip = captions_per_clip(FAMILY, clips, texts)
        frames = self._frames(clips)
        flat = _check_texts([caption for row in texts for caption in row])
        if not flat:
            return torch.zeros(clips.shape[0], 0)
        text = self._text_features(flat)
        paired = frames.repeat_interleave(per_clip, dim=0)
        return self.net.pair_logits(text, paired).view(clips.shape[0], per_clip).float()


class Clip4ClipHF(TorchAdapter):
    """The Hugging Face port: frame embeddings averaged as its card does, cosine score."""

    name = FAMILY

    def __init__(self, net: Any, tokenizer: Any, *, context_length: int, spec: FrameSpec, checkpoint: Path,
                 settings: str):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.image_size = int(net.config.vision_config.image_size)

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.net.get_image_features(pixel_values=images))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` to ``[B, D]`` unit vectors."""
        clips = _check_clips(clips, self.image_size, 1 << 30)
        return mean_of_normalised_frames(per_frame(self._images, clips.to(self.device)))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``N`` strings to ``[N, D]`` unit vectors (the directory's tokenizer, cut at the context length)."""
        texts = _check_texts(texts)
        if self.tokenizer is None:
            ids = openai_tokenize(texts, self.context_length)
            mask = through_end_token(ids)
        else:
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.context_length,
                                   return_tensors="pt")
            ids, mask = batch["input_ids"], batch["attention_mask"]
        features = pooled_features(self.net.get_text_features(input_ids=ids.to(self.device),
                                                              attention_mask=mask.to(self.device)))
        return F.normalize(features.float(), dim=-1)


def _hf_tokenizer(path: Path, vocabulary_size: int) -> Any:
    """The directory's own CLIP tokenizer; None (the shipped BPE) when it has none and the vocabulary is OpenAI's.

    Not `core.hf.hf_tokenizer`: under transformers 4 its ``AutoTokenizer`` picks
    ``CLIPTokenizerFast``, which cleans text differently from ``CLIPTokenizer`` (no ftfy), so some
    captions would get other ids; the class stays explicit here.
    """
    if any((path / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        from transformers import CLIPTokenizer

        try:
            return CLIPTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise InputError(f"has tokenizer files that do not load: {str(error).splitlines()[0]}", path=path,
                             field="checkpoint") from None
    if vocabulary_size != clip_bpe().vocabulary_size:
        raise InputError(f"has no tokenizer files (tokenizer.json or vocab.json + merges.txt) and a "
                         f"{vocabulary_size}-token vocabulary, not OpenAI's", path=path, field="checkpoint")
    return None


@register_model(FAMILY, card=CARD)
def clip4clip(checkpoint: str | os.PathLike | None = None, head: str | None = None, frames: int = DEFAULT_FRAMES,
              max_words: int | None = None, bpe_vocabulary: str | os.PathLike | None = None,
              clip_checkpoint: str | os.PathLike | None = None, vision_heads: int | None = None,
              text_heads: int | None = None, head_heads: int | None = None) -> TorchAdapter:
    """CLIP4Clip from an official ``pytorch_model.bin.N`` or the Hugging Face port's directory.

    ``head``: meanP, seqLSTM, seqTransf or tightTransf (default: read from the keys; tightTransf
    gives a pair scorer, the others a dual encoder). ``frames``: frames per clip (official 12).
    ``max_words``: text length in tokens with start and end (official 32; HF port 77).
    ``bpe_vocabulary``: the BPE merges file (``.txt.gz``) when the checkpoint was trained with
    another vocabulary than OpenAI's. ``clip_checkpoint``: an OpenAI CLIP file supplying ``clip.*``
    tensors the checkpoint lacks (the official loader's base model). ``vision_heads`` /
    ``text_heads`` / ``head_heads``: attention heads when not width // 64.
    """
    path = require_checkpoint(FAMILY, checkpoint)
    frames = positive_int(FAMILY, "frames", frames)
    if max_words is not None:
        max_words = positive_int(FAMILY, "max_words", max_words)
    if path.is_dir():
        if head is not None and _head_name(head) != "meanP":
            raise InputError(f"{FAMILY}: a Hugging Face directory is a meanP model; head={head!r} does not apply",
                             field="--model-args")
        if bpe_vocabulary is not None or clip_checkpoint is not None:
            raise InputError(f"{FAMILY}: bpe_vocabulary and clip_checkpoint apply to official files; a Hugging Face "
                             "directory carries its own tokenizer and weights", field="--model-args")
        net, size, context = load_hf_clip(path, FAMILY)
        words = max_words or context
        if words > context:
            raise InputError(f"{FAMILY}: max_words={words} exceeds the text context of {context}",
                             field="--model-args")
        tokenizer = _hf_tokenizer(path, int(net.config.text_config.vocab_size))
        return Clip4ClipHF(net, tokenizer, context_length=words, spec=clip4clip_frame_spec(size, frames),
                           checkpoint=path, settings=f"hf;words={words}")
    net = load_clip4clip(path, head=head, clip_checkpoint=clip_checkpoint, vision_heads=vision_heads,
                         text_heads=text_heads, head_heads=head_heads)
    dims = net.clip.dims
    words = DEFAULT_MAX_WORDS if max_words is None else max_words
    if not 3 <= words <= dims.context_length:
        raise InputError(f"{FAMILY}: max_words must be between 3 and the text context {dims.context_length}, "
                         f"got {words}", field="--model-args")
    if frames > net.max_frames:
        raise InputError(f"{FAMILY}: frames={frames}, but the {net.head} head's position table has room for "
                         f"{net.max_frames}", field="--model-args")
    if bpe_vocabulary is not None and not Path(bpe_vocabulary).is_file():
        raise InputError("BPE vocabulary file not found", path=bpe_vocabulary, field="bpe_vocabulary")
    tokenizer = clip_bpe(None if bpe_vocabulary is None else os.fspath(bpe_vocabulary))
    if tokenizer.vocabulary_size != dims.vocab_size:
        hint = "pass bpe_vocabulary=PATH (the merges file it was trained with)" if bpe_vocabulary is None \
            else "this vocabulary file does not belong to it"
        raise InputError(f"has a {dims.vocab_size}-token vocabulary; the tokenizer has {tokenizer.vocabulary_size}: "
                         f"{hint}", path=path, field="checkpoint")
    vocab = "openai" if bpe_vocabulary is None else file_sha256(bpe_vocabulary)[:16]
    settings = f"head={net.head};words={words};bpe={vocab}"
    if clip_checkpoint is not None:
        settings += f";base={file_sha256(clip_checkpoint)[:16]}"
    cls = Clip4ClipTight if net.head == "tightTransf" else Clip4Clip
    return cls(net, tokenizer=tokenizer, max_words=words, spec=clip4clip_frame_spec(dims.image_size, frames),
               checkpoint=path, settings=settings)
