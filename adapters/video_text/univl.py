"""UniVL (Luo et al., 2020): BERT text, a transformer over S3D features, and a cross encoder.

Why a port: the official code (microsoft/UniVL, ``modules/modeling.py``) builds its encoders from
config files it downloads with the BERT weights, loads checkpoints non-strictly (a layer the file
lacks silently keeps its random init), and takes precomputed S3D feature pickles rather than
frames. Here every size comes from the checkpoint's tensor shapes, loading is strict, and the video
path starts from frames: UniVL's features are those of ArrowLuo/VideoFeatureExtractor (which the
UniVL README names), computed here through our MIL-NCE S3D port (``milnce-s3d``).

Files: ``univl.pretrained.bin`` is ``torch.save(model.state_dict())`` of the pre-training model:
``bert.*`` (text), ``visual.*`` (video), ``cross.*`` + ``similarity_dense`` (the cross encoder),
``normalize_video.*``, plus the caption decoder and the MLM heads (``decoder.*``, ``cls.*``,
``cls_visual.*``), which retrieval never uses and which are skipped. A fine-tuned stage-one
retrieval file has no ``cross.*``: it serves the alignment score only. The S3D weights are
MIL-NCE's ``s3d_howto100m.pth`` (``s3d_checkpoint=``), and the vocabulary is bert-base-uncased's
``vocab.txt`` (``vocab=``); both are looked for beside the checkpoint when not given.

Facts of the official pipeline that this port keeps (each checked against the official code on a
tiny random checkpoint; tests/data/official/univl/ has the data):

- Video features (VideoFeatureExtractor, ``--type s3dg``): frames at 16 fps, shorter side 224
  (ffmpeg's ``scale``: bicubic) and a centre crop, pixels / 255 with no mean/std; black frames are
  appended up to a multiple of 16, each chunk of 16 frames (one second) gives S3D's pooled
  ``mixed_5c`` (1024-d), which is L2-normalised and stored as float16. The retrieval loader keeps
  the first ``max_frames`` (48) seconds.
- ``normalize_video``: a TF-style LayerNorm (eps 1e-12) over the 1024 channels. The visual
  encoder: ``Linear(1024 -> 768)`` + learned positions + LayerNorm, then BERT layers (6 in the
  published model).
- Text: BERT's basic + WordPiece tokenizer (lower case, accents stripped, ``never_split`` for
  ``[UNK] [SEP] [PAD] [CLS] [MASK]``), ``[CLS]`` + at most ``max_words - 2`` pieces + ``[SEP]``,
  zero-padded to ``max_words`` (48); segment ids 0.
- Every BERT layer here is post-LayerNorm with TF-style LayerNorm (eps 1e-12), erf GELU and an
  additive attention mask of ``(1 - mask) * -10000``.
- Alignment score (``get_similarity_logits`` in stage one, ``use_mil`` off): the text vector is the
  mean of the text outputs over its mask **without position 0** (``[CLS]``), the video vector the
  mean over its frames, and the score their cosine.
- Cross encoder (``--train_sim_after_cross``, the pair scorer): text outputs (all ``max_words``
  positions, so the video starts at position ``max_words`` whatever the caption's length) then the
  video outputs, plus learned positions and type embeddings (0 text, 1 video), LayerNorm, BERT
  layers under the joint mask, ``tanh(dense(first token))`` and ``similarity_dense``: one logit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import SUPPORTED, ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.bert import BertLayer, Dense, additive_mask
from ..core.checkpoints import file_sha256, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.hub import side_file
from ..core.wordpiece import BERT_VOCAB_URL, BertWordPiece, encode_for
from ..core.shapes import captions_per_clip, count_blocks, heads_for, require_clips, require_shapes
from ..protocols import DUAL_ENCODER, PAIR_SCORER
from ..registry import register_model
from .milnce_s3d import CHECKPOINT_URL as S3D_URL
from .milnce_s3d import S3DNet, load_s3d_net

__all__ = ["UniVLDimensions", "UniVLNet", "BertWordPiece", "UniVLAlign", "UniVLCross", "univl",
           "univl_frame_spec", "load_univl_net", "CARD"]

FAMILY = "univl"
FEATURE_FPS = 16  # VideoFeatureExtractor's FRAMERATE_DICT['s3dg']: one feature per 16 frames
MAX_WORDS = 48
MAX_FRAMES = 48
_RELEASE = "https://github.com/microsoft/UniVL/releases/download/v0/univl.pretrained.bin"
_SKIPPED = ("decoder.", "cls.", "cls_visual.", "bert.pooler.", "visual.pooler.")
_SIGNATURE_KEYS = ("bert.embeddings.word_embeddings.weight", "visual.embeddings.word_embeddings.weight",
                   "normalize_video.visual_norm2d.weight")
_SIZE_KEYS = {"bert.embeddings.word_embeddings.weight": 2, "bert.embeddings.position_embeddings.weight": 2,
              "bert.embeddings.token_type_embeddings.weight": 2, "bert.encoder.layer.0.intermediate.dense.weight": 2,
              "visual.embeddings.word_embeddings.weight": 2, "visual.embeddings.position_embeddings.weight": 2,
              "visual.encoder.layer.0.intermediate.dense.weight": 2, "normalize_video.visual_norm2d.weight": 1}
_CROSS_SIZE_KEYS = {"cross.embeddings.position_embeddings.weight": 2,
                    "cross.embeddings.token_type_embeddings.weight": 2,
                    "cross.encoder.layer.0.intermediate.dense.weight": 2, "similarity_dense.weight": 2}


def univl_frame_spec(seconds: int = 16, size: int = 224) -> FrameSpec:
    """VideoFeatureExtractor's s3dg input: 16 fps (``seconds`` x 16 frames), shorter side to ``size``
    (bicubic, ffmpeg's default) and a centre crop, pixels in [0, 1] with no mean/std."""
    return FrameSpec(num_frames=seconds * FEATURE_FPS, sampling="fps", fps=float(FEATURE_FPS), size=size, crop=size,
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize="short_side", interpolation="bicubic",
                     value_range=1.0)


@dataclass(frozen=True)
class UniVLDimensions:
    """The sizes of a UniVL model, read from its tensors (``cross_layers`` 0: no cross encoder in the file)."""

    hidden: int
    heads: int
    vocab_size: int
    text_positions: int
    text_types: int
    text_layers: int
    text_intermediate: int
    video_dim: int
    visual_positions: int
    visual_layers: int
    visual_intermediate: int
    cross_positions: int = 0
    cross_types: int = 0
    cross_layers: int = 0
    cross_intermediate: int = 0

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                        heads: int | None = None) -> UniVLDimensions:
        def shape(key: str) -> tuple[int, ...]:
            return tuple(int(n) for n in state[key].shape)

        vocab, hidden = shape("bert.embeddings.word_embeddings.weight")
        visual_hidden, video_dim = shape("visual.embeddings.word_embeddings.weight")
        if visual_hidden != hidden:
            raise InputError(f"its text encoder is {hidden} wide but its visual encoder {visual_hidden}",
                             path=source, field="checkpoint")
        cross = {}
        if "cross.embeddings.position_embeddings.weight" in state:
            require_shapes(state, _CROSS_SIZE_KEYS, source, FAMILY)
            cross = dict(cross_positions=shape("cross.embeddings.position_embeddings.weight")[0],
                         cross_types=shape("cross.embeddings.token_type_embeddings.weight")[0],
                         cross_layers=count_blocks(state, "cross.encoder.layer."),
                         cross_intermediate=shape("cross.encoder.layer.0.intermediate.dense.weight")[0])
        return cls(hidden=hidden, heads=heads_for(heads, hidden, "heads"), vocab_size=vocab,
                   text_positions=shape("bert.embeddings.position_embeddings.weight")[0],
                   text_types=shape("bert.embeddings.token_type_embeddings.weight")[0],
                   text_layers=count_blocks(state, "bert.encoder.layer."),
                   text_intermediate=shape("bert.encoder.layer.0.intermediate.dense.weight")[0],
                   video_dim=video_dim,
                   visual_positions=shape("visual.embeddings.position_embeddings.weight")[0],
                   visual_layers=count_blocks(state, "visual.encoder.layer."),
                   visual_intermediate=shape("visual.encoder.layer.0.intermediate.dense.weight")[0], **cross)


# ------------------------------------------------------------------------------------------------
# BERT blocks (the official module names, so the file's keys load as they are)


class TFLayerNorm(nn.Module):
    """LayerNorm with epsilon inside the square root, computed as the official ``until_module.LayerNorm``."""

    def __init__(self, width: int, eps: float = 1e-12):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        variance = (x - mean).pow(2).mean(-1, keepdim=True)
        return self.weight * ((x - mean) / torch.sqrt(variance + self.eps)) + self.bias


class _Encoder(nn.Module):
    def __init__(self, width: int, heads: int, intermediate: int, layers: int):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(width, heads, intermediate, layer_norm=TFLayerNorm)
                                    for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = additive_mask(mask, x.dtype)
        for layer in self.layer:
            x = layer(x, additive)
        return x


class _TextEmbeddings(nn.Module):
    def __init__(self, dims: UniVLDimensions):
        super().__init__()
        self.word_embeddings = nn.Embedding(dims.vocab_size, dims.hidden)
        self.position_embeddings = nn.Embedding(dims.text_positions, dims.hidden)
        self.token_type_embeddings = nn.Embedding(dims.text_types, dims.hidden)
        self.LayerNorm = TFLayerNorm(dims.hidden)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_embeddings.weight[: ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(ids) + positions + self.token_type_embeddings.weight[0])


class _VisualEmbeddings(nn.Module):
    def __init__(self, dims: UniVLDimensions):
        super().__init__()
        self.word_embeddings = nn.Linear(dims.video_dim, dims.hidden)
        self.position_embeddings = nn.Embedding(dims.visual_positions, dims.hidden)
        self.LayerNorm = TFLayerNorm(dims.hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.word_embeddings(features) + self.position_embeddings.weight[: features.shape[1]])


class _CrossEmbeddings(nn.Module):
    def __init__(self, dims: UniVLDimensions):
        super().__init__()
        self.position_embeddings = nn.Embedding(dims.cross_positions, dims.hidden)
        self.token_type_embeddings = nn.Embedding(dims.cross_types, dims.hidden)
        self.LayerNorm = TFLayerNorm(dims.hidden)

    def forward(self, tokens: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        positions = self.position_embeddings.weight[: tokens.shape[1]]
        return self.LayerNorm(tokens + positions + self.token_type_embeddings(types))


class _TextEncoder(nn.Module):
    def __init__(self, dims: UniVLDimensions):
        super().__init__()
        self.embeddings = _TextEmbeddings(dims)
        self.encoder = _Encoder(dims.hidden, dims.heads, dims.text_intermediate, dims.text_layers)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(ids), mask)


class _VisualEncoder(nn.Module):
    def __init__(self, dims: UniVLDimensions):
        super().__init__()
        self.embeddings = _VisualEmbeddings(dims)
        self.encoder = _Encoder(dims.hidden, dims.heads, dims.visual_intermediate, dims.visual_layers)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(features), mask)


class _CrossEncoder(nn.Module):
    def __init__(self, dims: UniVLDimensions):
        super().__init__()
        self.embeddings = _CrossEmbeddings(dims)
        self.encoder = _Encoder(dims.hidden, dims.heads, dims.cross_intermediate, dims.cross_layers)
        self.pooler = Dense(dims.hidden, dims.hidden)

    def forward(self, tokens: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embeddings(tokens, types), mask)
        return torch.tanh(self.pooler.dense(hidden[:, 0]))


class _NormalizeVideo(nn.Module):
    def __init__(self, video_dim: int):
        super().__init__()
        self.visual_norm2d = TFLayerNorm(video_dim)


class UniVLNet(nn.Module):
    """The UniVL encoders used for retrieval, under the official names (``bert``, ``visual``, ``cross``...)."""

    def __init__(self, dims: UniVLDimensions):
        super().__init__()
        self.dims = dims
        self.bert = _TextEncoder(dims)
        self.visual = _VisualEncoder(dims)
        self.normalize_video = _NormalizeVideo(dims.video_dim)
        if dims.cross_layers:
            self.cross = _CrossEncoder(dims)
            self.similarity_dense = nn.Linear(dims.hidden, 1)

    def text_sequence(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.bert(ids, mask)

    def visual_sequence(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.visual(self.normalize_video.visual_norm2d(features), mask)

    @staticmethod
    def text_vector(sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The official ``_mean_pooling_for_similarity`` text side: the masked mean without position 0."""
        weights = mask.to(sequence.dtype).unsqueeze(-1).clone()
        weights[:, 0] = 0.0
        return (sequence * weights).sum(dim=1) / weights.sum(dim=1)

    @staticmethod
    def video_vector(sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(sequence.dtype).unsqueeze(-1)
        return (sequence * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def pair_logits(self, text: torch.Tensor, text_mask: torch.Tensor, visual: torch.Tensor,
                    visual_mask: torch.Tensor) -> torch.Tensor:
        """``[N, L, H]`` text and ``[N, F, H]`` video outputs (paired row by row) to ``[N]`` cross logits."""
        tokens = torch.cat([text, visual], dim=1)
        mask = torch.cat([text_mask, visual_mask], dim=1)
        types = torch.cat([torch.zeros_like(text_mask), torch.ones_like(visual_mask)], dim=1).long()
        return self.similarity_dense(self.cross(tokens, types, mask)).squeeze(-1)


# ------------------------------------------------------------------------------------------------
# Adapters


class _UniVL(TorchAdapter):
    name = FAMILY

    def __init__(self, net: UniVLNet, s3d: S3DNet, tokenizer: BertWordPiece, *, max_words: int, max_frames: int,
                 spec: FrameSpec, checkpoint: Path, settings: str):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.s3d = s3d
        self.tokenizer = tokenizer
        self.max_words = max_words
        self.max_frames = max_frames

    @property
    def dims(self) -> UniVLDimensions:
        return self.net.dims

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_for(FAMILY, self.tokenizer, texts, self.max_words, self.dims.vocab_size)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` frames at 16 fps in [0, 1] to ``[B, S, D]`` S3D features, one per second:
        black frames up to a multiple of 16, ``mixed_5c`` per chunk, L2-normalised, float16-rounded,
        the first ``max_frames`` kept."""
        require_clips(FAMILY, clips)
        batch, frames = clips.shape[:2]
        if any(side % 2 for side in clips.shape[3:]) and self.s3d.dims.space_to_depth:
            raise InputError(f"{FAMILY}: S3D's space-to-depth stem needs an even height and width, got "
                             f"{clips.shape[3]}x{clips.shape[4]}", field="--model")
        missing = -frames % FEATURE_FPS
        clips = clips.to(self.device, self.s3d.fc.weight.dtype)
        if missing:
            clips = torch.cat([clips, clips.new_zeros(batch, missing, *clips.shape[2:])], dim=1)
        seconds = min(clips.shape[1] // FEATURE_FPS, self.max_frames)
        chunks = clips[:, : seconds * FEATURE_FPS].reshape(batch * seconds, FEATURE_FPS, *clips.shape[2:])
        features = F.normalize(self.s3d.features(chunks.permute(0, 2, 1, 3, 4)), dim=1)
        return features.half().float().view(batch, seconds, -1)

    def _video_sequence(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(clips)
        mask = torch.ones(features.shape[:2], dtype=torch.long, device=features.device)
        return self.net.visual_sequence(features, mask), mask

    def _text_sequence(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.net.text_sequence(ids, mask), mask


class UniVLAlign(_UniVL):
    """The alignment score: mean-pooled text (``[CLS]`` left out) and video outputs, cosine."""

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        sequence, mask = self._video_sequence(clips)
        return self.net.video_vector(sequence, mask).float()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        sequence, mask = self._text_sequence(texts)
        return self.net.text_vector(sequence, mask).float()


class UniVLCross(_UniVL):
    """The cross encoder: a pair scorer whose score is ``similarity_dense`` of the pooled joint sequence."""

    scoring = "UniVL cross encoder: similarity_dense logit of the pooled [text; video] sequence"

    @torch.no_grad()
    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips and ``B`` lists of ``C`` captions to ``[B, C]`` logits."""
        per_clip = captions_per_clip(FAMILY, clips, texts)
        if not per_clip:
            return torch.zeros(clips.shape[0], 0)
        visual, visual_mask = self._video_sequence(clips)
        text, text_mask = self._text_sequence([caption for row in texts for caption in row])
        logits = self.net.pair_logits(text, text_mask, visual.repeat_interleave(per_clip, dim=0),
                                      visual_mask.repeat_interleave(per_clip, dim=0))
        return logits.view(clips.shape[0], per_clip).float()


def load_univl_net(checkpoint: str | os.PathLike, *, heads: int | None = None) -> UniVLNet:
    """The retrieval encoders sized and filled from a UniVL checkpoint (``univl.pretrained.bin`` or a
    fine-tuned one)."""
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY), keys=("model_state_dict", "state_dict",
                                                                                  "model", "module"))
    state = {}
    for key, value in loaded.state_dict.items():  # TF names, as the official init_preweight renames them
        state[key.replace("gamma", "weight").replace("beta", "bias")] = value
    loaded.state_dict = state
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(state, _SIZE_KEYS, loaded.path, FAMILY)
    dims = UniVLDimensions.from_state_dict(state, loaded.path, heads=heads)
    net = UniVLNet(dims)
    load_strict(net, state, loaded.path, family=FAMILY, ignore_unexpected=_SKIPPED)
    return net.eval()


CARD = ModelCard(
    family=FAMILY,
    description="UniVL: BERT text, a transformer over MIL-NCE S3D features (1/s), alignment cosine or cross encoder",
    capabilities=(DUAL_ENCODER, PAIR_SCORER),
    tags=(
        WeightTag(name="pretrained", source="url", url=_RELEASE,
                  args={"s3d_checkpoint": S3D_URL, "vocab": BERT_VOCAB_URL}, frame_spec=univl_frame_spec(),
                  notes="The HowTo100M pre-training checkpoint (GitHub release v0). The tag also fetches MIL-NCE's "
                        "s3d_howto100m.pth for the features and bert-base-uncased's vocab.txt (the 30,522-token "
                        "vocabulary UniVL's README downloads)."),
    ),
    default_tag="pretrained",
    frame_spec=univl_frame_spec(),
    tokenizer="BERT basic + WordPiece (bert-base-uncased vocab.txt: vocab=PATH or beside the checkpoint), "
              f"[CLS] ... [SEP], {MAX_WORDS} tokens",
    code_licence="MIT (microsoft/UniVL)",
    weights_licence="MIT (microsoft/UniVL's licence; the release states no other)",
    paper="Luo, Ji, Shi, Huang, Duan, Li, Li, Bharti, Zhou. UniVL: A Unified Video and Language Pre-Training Model "
          "for Multimodal Understanding and Generation. arXiv:2002.06353",
    citation="luo2020univl",
    status=SUPPORTED,
    checkpoint_formats=("torch.save(state_dict) of the official UniVL (univl.pretrained.bin, pytorch_model.bin.N)",
                        "the same under 'model_state_dict' (training checkpoints) or with 'module.' prefixes"),
    code_version="1",
)

_HEADS = ("align", "cross")


@register_model(FAMILY, card=CARD)
def univl(checkpoint: str | os.PathLike | None = None, head: str = "align",
          s3d_checkpoint: str | os.PathLike | None = None, vocab: str | os.PathLike | None = None,
          seconds: int = 16, size: int = 224, max_words: int = MAX_WORDS,
          max_frames: int = MAX_FRAMES, heads: int | None = None) -> _UniVL:
    """UniVL from ``univl.pretrained.bin`` (or a fine-tuned ``pytorch_model.bin.N``).

    ``head``: ``align`` (a dual encoder, cosine of the mean-pooled outputs) or ``cross`` (a pair
    scorer, the cross encoder's logit). ``s3d_checkpoint``: MIL-NCE's ``s3d_howto100m.pth`` for the
    features (path or URL; default beside the checkpoint). ``vocab``: bert-base-uncased's
    ``vocab.txt`` (default beside the checkpoint). ``seconds``: the clip sampled per window, 16
    frames per second (one feature each). ``size``: shorter side and centre crop (224).
    ``max_words``/``max_frames``: the retrieval loader's cuts (48/48). ``heads``: attention heads of
    every encoder (default width // 64: 12 for the published model).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    if head not in _HEADS:
        raise InputError(f"{FAMILY}: head must be one of {', '.join(_HEADS)}, got {head!r}", field="--model-args")
    for name, value in (("seconds", seconds), ("size", size), ("max_words", max_words), ("max_frames", max_frames)):
        positive_int(FAMILY, name, value)
    if heads is not None:
        positive_int(FAMILY, "heads", heads)
    net = load_univl_net(path, heads=heads)
    dims = net.dims
    if head == "cross" and not dims.cross_layers:
        raise InputError("has no cross encoder (cross.*: a stage-one retrieval checkpoint); use head=align",
                         path=path, field="checkpoint")
    limits = [("max_words", max_words, dims.text_positions), ("max_frames", max_frames, dims.visual_positions)]
    if head == "cross":
        limits.append(("max_words + max_frames", max_words + max_frames, dims.cross_positions))
    for name, value, rows in limits:
        if value > rows:
            raise InputError(f"{FAMILY}: {name}={value} exceeds the {rows} positions of the checkpoint",
                             field="--model-args")
    if max_words < 2:
        raise InputError(f"{FAMILY}: max_words must leave room for [CLS] and [SEP], got {max_words}",
                         field="--model-args")
    s3d_path = side_file(FAMILY, s3d_checkpoint, path, name="s3d_howto100m.pth", argument="s3d_checkpoint",
                         what="MIL-NCE's S3D weights", url=S3D_URL)
    s3d = load_s3d_net(s3d_path)
    if s3d.dims.features != dims.video_dim:
        raise InputError(f"S3D gives {s3d.dims.features}-d features but the UniVL checkpoint {path.name} takes "
                         f"{dims.video_dim}-d ones", path=s3d_path, field="s3d_checkpoint")
    vocab_path = side_file(FAMILY, vocab, path, name="vocab.txt", argument="vocab",
                           what="the bert-base-uncased vocabulary", url=BERT_VOCAB_URL)
    tokenizer = BertWordPiece.from_file(vocab_path)
    spec = univl_frame_spec(seconds, size)
    settings = (f"head={head};heads={dims.heads};s3d={file_sha256(s3d_path)};vocab={file_sha256(vocab_path)};"
                f"max_words={max_words};max_frames={max_frames}")
    adapter = UniVLCross if head == "cross" else UniVLAlign
    return adapter(net, s3d, tokenizer, max_words=max_words, max_frames=max_frames, spec=spec, checkpoint=path,
                   settings=settings)
