"""MIL-NCE S3D (Miech et al., CVPR 2020): S3D-G video network and a word-dictionary text model.

Why a port: the official PyTorch release (antoine77340/S3D_HowTo100M, ``s3dg.py``, the PyTorch port
of TF-Hub ``deepmind/mil-nce/s3d/1``) hard-codes every channel width and the text sizes, and its
text model reads the dictionary with ``np.load`` at construction. Here every width comes from the
checkpoint's tensor shapes, so the published ``s3d_howto100m.pth`` and a tiny test file load
through the same code, and the dictionary is read without unpickling anything.

Files: ``s3d_howto100m.pth`` is a plain state dict (``torch.save(net.state_dict())``, with the
batch-norm ``num_batches_tracked`` counters or without them); ``s3d_dict.npy`` is a NumPy array of
words where word ``i`` has id ``i + 1`` and 0 is padding. The dictionary is looked for beside the
checkpoint unless ``word_dict=PATH`` (or a URL) names it.

Facts of the official network that this port keeps (each checked against the official code on
tiny random checkpoints; tests/data/official/milnce_s3d/ has the data):

- Input ``[B, 3, T, H, W]`` with values in [0, 1] and no mean/std. The published stem is the
  TPU "space-to-depth" one: each 2x2x2 block of pixels becomes 8 x 3 = 24 channels ordered
  (t-offset, h-offset, w-offset, colour), a ``[2, 4, 4]`` convolution with padding ``(1, 2, 2)``,
  then the first row of each axis is cropped (the official emulation of TF's SAME padding). So
  T, H and W must be even. The other stem (``space_to_depth=False``) is a ``[3, 7, 7]``
  convolution with stride 2 and padding ``(1, 3, 3)`` on RGB; which one a file has is read from
  the stem's kernel.
- Every convolution is bias-free and followed by batch norm (eps 1e-5, running statistics) and
  ReLU. "Separable" 3x3x3 units are a ``[1, 3, 3]`` convolution + BN + ReLU, then a ``[3, 1, 1]``
  one + BN + ReLU.
- Self-gating after ``conv_2c`` and after every inception branch: ``x * sigmoid(fc(mean_thw(x)))``.
  It is always on: ``S3D.__init__`` assigns the gating module to the ``self.gating`` flag it has
  just set, so ``gating=False`` changes nothing, and the inception blocks are built with their
  default ``gating=True``.
- The stride-2 max pools emulate TF's SAME padding: zero padding of ``max(k - s, 0)`` split
  ``(along // 2, rest)`` on each axis, then ``max_pool3d(..., ceil_mode=True)``. The padding tuple
  is built in (H, W, T) order and handed to ``ConstantPad3d``, which reads (W, H, T); as H and W
  always have the same kernel and stride, that changes nothing, and we build it the same way.
  The pool inside each inception block is a plain ``max_pool3d(3, stride=1, padding=1)``.
- ``mixed_5c`` is the mean over T, H and W of the last inception block (1024 channels in the
  published model); ``video_embedding = fc(mixed_5c)`` (512).
- Text: the caption is lower-cased, split with ``re.findall(r"[\\w']+")`` (so "chef's" is one
  word), words not in the dictionary are dropped, the rest cut to 16 and zero-padded (a caption
  with no known word is 16 zeros). Then ``word_embd`` (300-d word2vec), ``relu(fc1)`` (2048),
  a max over the 16 positions **including the padding rows** (row 0 of the embedding is not
  zeroed), and ``fc2`` (512). A word listed twice keeps its later id; a dictionary word with a
  capital letter never matches.
- Score: the raw dot product of the two 512-d outputs (the README's
  ``th.matmul(text_embedding, video_embedding.t())``), not the cosine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

from ..cards import SUPPORTED, ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import file_sha256, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.hub import side_file
from ..core.shapes import frame_count, require_clips, require_shapes
from ..protocols import DUAL_ENCODER, FEATURE_EXTRACTOR
from ..registry import register_model

__all__ = ["S3DDimensions", "S3DNet", "WordDictionary", "MilNceS3D", "milnce_s3d", "milnce_frame_spec",
           "load_s3d_net", "read_word_dictionary", "INCEPTION_BLOCKS", "CARD"]

FAMILY = "milnce-s3d"
DICT_NAME = "s3d_dict.npy"
_RELEASE = "https://www.rocq.inria.fr/cluster-willow/amiech/howto100m"
CHECKPOINT_URL = f"{_RELEASE}/s3d_howto100m.pth"
DICT_URL = f"{_RELEASE}/{DICT_NAME}"
MAX_WORDS = 16  # Sentence_Embedding's default; S3D never passes another
_BN_EPS = 1e-5  # torch's BatchNorm3d default, which the official port keeps
_WORD = re.compile(r"[\w']+")

# The inception blocks in order, with the max pool (kernel, stride) that precedes some of them.
INCEPTION_BLOCKS = ("mixed_3b", "mixed_3c", "mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f",
                    "mixed_5b", "mixed_5c")
_POOL_BEFORE = {"mixed_4b": ((3, 3, 3), (2, 2, 2)), "mixed_5b": ((2, 2, 2), (2, 2, 2))}
_POOL_2A = _POOL_3A = ((1, 3, 3), (1, 2, 2))
# The six convolutions of an inception block, in the order their output widths are listed.
_BRANCHES = ("conv_b0", "conv_b1_a", "conv_b1_b", "conv_b2_a", "conv_b2_b", "conv_b3_b")
_STEMS = {(24, (2, 4, 4)): True, (3, (3, 7, 7)): False}  # (input channels, kernel) -> space-to-depth

_SIGNATURE_KEYS = ("conv1.conv1.weight", "conv_2c.conv2.weight", "mixed_5c.conv_b0.conv1.weight",
                   "text_module.word_embd.weight")
_SIZE_KEYS = {"conv1.conv1.weight": 5, "conv_2b.conv1.weight": 5, "conv_2c.conv1.weight": 5, "fc.weight": 2,
              "text_module.word_embd.weight": 2, "text_module.fc1.weight": 2, "text_module.fc2.weight": 2,
              **{f"{block}.{branch}.conv1.weight": 5 for block in INCEPTION_BLOCKS for branch in _BRANCHES}}


def milnce_frame_spec(frames: int = 32, fps: float = 10.0, size: int = 224) -> FrameSpec:
    """MIL-NCE's input: ``frames`` frames at ``fps`` (32 at 10 fps, 3.2 s, as in training; the README
    says 16 also works), shorter side to ``size`` and a centre crop (the README: 200 to 256 px),
    values in [0, 1] with no mean/std."""
    return FrameSpec(num_frames=frames, sampling="fps", fps=fps, size=size, crop=size, mean=(0.0, 0.0, 0.0),
                     std=(1.0, 1.0, 1.0), resize="short_side", interpolation="bilinear", value_range=1.0)


@dataclass(frozen=True)
class S3DDimensions:
    """The sizes of a MIL-NCE S3D, read from its tensors (``blocks``: six output widths per inception
    block, in `_BRANCHES` order)."""

    space_to_depth: bool
    conv1: int
    conv_2b: int
    conv_2c: int
    blocks: tuple[tuple[int, int, int, int, int, int], ...]
    embed_dim: int
    vocab_rows: int
    word_dim: int
    text_hidden: int

    @property
    def features(self) -> int:
        """The width of ``mixed_5c`` (1024 in the published model)."""
        last = self.blocks[-1]
        return last[0] + last[2] + last[4] + last[5]

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> S3DDimensions:
        def out(key: str) -> int:
            return int(state[key].shape[0])

        stem = state["conv1.conv1.weight"]
        kind = (int(stem.shape[1]), tuple(int(k) for k in stem.shape[2:]))
        if kind not in _STEMS:
            raise InputError(f"does not fit the {FAMILY} architecture: conv1.conv1.weight has {kind[0]} input "
                             f"channels and kernel {list(kind[1])}; S3D's stems are 24 x [2, 4, 4] "
                             "(space-to-depth) and 3 x [3, 7, 7]", path=source, field="checkpoint")
        embed = out("fc.weight")
        if out("text_module.fc2.weight") != embed:
            raise InputError(f"fc gives {embed}-d video embeddings but text_module.fc2 "
                             f"{out('text_module.fc2.weight')}-d text embeddings", path=source, field="checkpoint")
        words = state["text_module.word_embd.weight"]
        return cls(
            space_to_depth=_STEMS[kind],
            conv1=out("conv1.conv1.weight"),
            conv_2b=out("conv_2b.conv1.weight"),
            conv_2c=out("conv_2c.conv1.weight"),
            blocks=tuple(tuple(out(f"{block}.{branch}.conv1.weight") for branch in _BRANCHES)
                         for block in INCEPTION_BLOCKS),
            embed_dim=embed,
            vocab_rows=int(words.shape[0]),
            word_dim=int(words.shape[1]),
            text_hidden=out("text_module.fc1.weight"),
        )


# ------------------------------------------------------------------------------------------------
# The video network


class FrozenBatchNorm3d(nn.Module):
    """Batch norm with the file's running statistics, always (inference only; no ``num_batches_tracked``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False,
                            eps=_BN_EPS)


class ConvUnit(nn.Module):
    """Bias-free 3D convolution + batch norm + ReLU; "separable" units factor a k x k x k kernel into
    ``[1, k, k]`` then ``[k, 1, 1]``, each with its own batch norm and ReLU (official ``STConv3D``)."""

    def __init__(self, inputs: int, outputs: int, kernel: int | tuple[int, int, int], *, stride: int = 1,
                 padding: int | tuple[int, int, int] = 0, separable: bool = False):
        super().__init__()
        self.separable = separable
        if separable:
            self.conv1 = nn.Conv3d(inputs, outputs, (1, kernel, kernel), stride=(1, stride, stride),
                                   padding=(0, padding, padding), bias=False)
            self.bn1 = FrozenBatchNorm3d(outputs)
            self.conv2 = nn.Conv3d(outputs, outputs, (kernel, 1, 1), stride=(stride, 1, 1), padding=(padding, 0, 0),
                                   bias=False)
            self.bn2 = FrozenBatchNorm3d(outputs)
        else:
            self.conv1 = nn.Conv3d(inputs, outputs, kernel, stride=stride, padding=padding, bias=False)
            self.bn1 = FrozenBatchNorm3d(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if self.separable:
            x = F.relu(self.bn2(self.conv2(x)))
        return x


class SelfGate(nn.Module):
    """S3D-G feature gating: each channel scaled by ``sigmoid(fc(its mean over T, H, W))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return weights[:, :, None, None, None] * x


class InceptionUnit(nn.Module):
    """Four gated branches concatenated: 1x1x1; 1x1x1 then separable 3x3x3 (twice); 3x3x3 max pool then 1x1x1."""

    def __init__(self, inputs: int, widths: Sequence[int]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.conv_b0 = ConvUnit(inputs, b0, 1)
        self.conv_b1_a = ConvUnit(inputs, b1a, 1)
        self.conv_b1_b = ConvUnit(b1a, b1b, 3, padding=1, separable=True)
        self.conv_b2_a = ConvUnit(inputs, b2a, 1)
        self.conv_b2_b = ConvUnit(b2a, b2b, 3, padding=1, separable=True)
        self.conv_b3_b = ConvUnit(inputs, b3, 1)
        self.gating_b0 = SelfGate(b0)
        self.gating_b1 = SelfGate(b1b)
        self.gating_b2 = SelfGate(b2b)
        self.gating_b3 = SelfGate(b3)
        self.outputs = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.gating_b0(self.conv_b0(x))
        b1 = self.gating_b1(self.conv_b1_b(self.conv_b1_a(x)))
        b2 = self.gating_b2(self.conv_b2_b(self.conv_b2_a(x)))
        b3 = self.gating_b3(self.conv_b3_b(F.max_pool3d(x, 3, stride=1, padding=1)))
        return torch.cat((b0, b1, b2, b3), dim=1)


def tf_same_max_pool(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """The official ``MaxPool3dTFPadding``: zero padding of ``max(k - s, 0)`` per axis (the smaller half
    first), in the official (H, W, T) tuple order, then a ceil-mode max pool."""
    pads = []
    for k, s in zip(kernel, stride):
        along = max(k - s, 0)
        pads.append((along // 2, along - along // 2))
    (t0, t1), (h0, h1), (w0, w1) = pads
    x = F.pad(x, (h0, h1, w0, w1, t0, t1), mode="constant", value=0.0)
    return F.max_pool3d(x, kernel, stride, ceil_mode=True)


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W]`` to ``[B, 8C, T/2, H/2, W/2]``, channels ordered (dt, dh, dw, c) as the official code."""
    b, c, t, h, w = x.shape
    x = x.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
    return x.reshape(b, 8 * c, t // 2, h // 2, w // 2)


class WordBagText(nn.Module):
    """The text model: word embeddings, ``relu(fc1)``, max over all ``max_words`` positions, ``fc2``."""

    def __init__(self, dims: S3DDimensions):
        super().__init__()
        self.word_embd = nn.Embedding(dims.vocab_rows, dims.word_dim)
        self.fc1 = nn.Linear(dims.word_dim, dims.text_hidden)
        self.fc2 = nn.Linear(dims.text_hidden, dims.embed_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.fc1(self.word_embd(ids)))
        return self.fc2(hidden.max(dim=1).values)  # padding positions included, as the official max


class S3DNet(nn.Module):
    """S3D-G with the text model, under the official parameter names (``conv1``, ``mixed_4b``, ``text_module``...)."""

    def __init__(self, dims: S3DDimensions):
        super().__init__()
        self.dims = dims
        if dims.space_to_depth:
            self.conv1 = ConvUnit(24, dims.conv1, (2, 4, 4), padding=(1, 2, 2))
        else:
            self.conv1 = ConvUnit(3, dims.conv1, (3, 7, 7), stride=2, padding=(1, 3, 3))
        self.conv_2b = ConvUnit(dims.conv1, dims.conv_2b, 1)
        self.conv_2c = ConvUnit(dims.conv_2b, dims.conv_2c, 3, padding=1, separable=True)
        self.gating = SelfGate(dims.conv_2c)
        width = dims.conv_2c
        for name, widths in zip(INCEPTION_BLOCKS, dims.blocks):
            block = InceptionUnit(width, widths)
            self.add_module(name, block)
            width = block.outputs
        self.fc = nn.Linear(width, dims.embed_dim)
        self.text_module = WordBagText(dims)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [0, 1] to the ``[B, C]`` pooled ``mixed_5c`` features."""
        x = video.to(self.fc.weight.dtype)
        if self.dims.space_to_depth:
            x = self.conv1(space_to_depth(x))[:, :, 1:, 1:, 1:]  # TF SAME padding emulated by cropping
        else:
            x = self.conv1(x)
        x = tf_same_max_pool(x, *_POOL_2A)
        x = self.gating(self.conv_2c(self.conv_2b(x)))
        x = tf_same_max_pool(x, *_POOL_3A)
        for name in INCEPTION_BLOCKS:
            if name in _POOL_BEFORE:
                x = tf_same_max_pool(x, *_POOL_BEFORE[name])
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3, 4))

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(video))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_module(ids)


# ------------------------------------------------------------------------------------------------
# The word dictionary


class WordDictionary:
    """``s3d_dict.npy``'s words to ids (word ``i`` is id ``i + 1``; a repeated word keeps its last id)."""

    def __init__(self, words: Sequence[str], *, max_words: int = MAX_WORDS, source: str | os.PathLike = ""):
        self.ids: dict[str, int] = {}
        for index, word in enumerate(words):
            self.ids[str(word)] = index + 1
        self.size = len(words)
        self.max_words = max_words
        self.source = str(source)

    def words(self, text: str) -> list[str]:
        """The official split: lower case, then every run of word characters and apostrophes."""
        return _WORD.findall(str(text.lower()))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, max_words]`` ids: unknown words dropped, then cut to ``max_words``, zero-padded."""
        rows = torch.zeros(len(texts), self.max_words, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"{FAMILY}: captions must be strings, got {type(text).__name__}", field="--model")
            known = [self.ids[word] for word in self.words(text) if word in self.ids][: self.max_words]
            rows[row, : len(known)] = torch.tensor(known, dtype=torch.long)
        return rows


def read_word_dictionary(path: str | os.PathLike, *, max_words: int = MAX_WORDS) -> WordDictionary:
    """The word list of an ``s3d_dict.npy`` (a 1-D array of strings), read without unpickling."""
    source = Path(path)
    if not source.is_file():
        raise InputError("word dictionary not found" if not source.exists() else
                         "word dictionary is not a file", path=source, field="word_dict")
    try:
        with open(source, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":  # np.load would take any other file for a pickle
                raise InputError("word dictionary is not a NumPy .npy file (MIL-NCE's s3d_dict.npy is one)",
                                 path=source, field="word_dict")
        words = np.load(source, allow_pickle=False)
    except ValueError as error:
        text = str(error)
        reason = ("holds Python objects, which are not unpickled; MIL-NCE's s3d_dict.npy is an array of "
                  "strings" if "allow_pickle" in text else f"is not a readable .npy file ({text.splitlines()[0]})")
        raise InputError(f"word dictionary {reason}", path=source, field="word_dict") from None
    except (OSError, EOFError) as error:
        raise InputError(f"word dictionary cannot be read ({error})", path=source, field="word_dict") from None
    if not isinstance(words, np.ndarray) or words.ndim != 1 or words.dtype.kind not in "US" or not len(words):
        shape = list(getattr(words, "shape", []))
        raise InputError(f"word dictionary must be a non-empty 1-D array of words (s3d_dict.npy); it holds "
                         f"{getattr(words, 'dtype', type(words).__name__)} of shape {shape}", path=source,
                         field="word_dict")
    if words.dtype.kind == "S":
        words = np.char.decode(words, "utf-8")
    return WordDictionary([str(word) for word in words.tolist()], max_words=max_words, source=source)


# ------------------------------------------------------------------------------------------------
# The adapter


class MilNceS3D(TorchAdapter):
    """MIL-NCE S3D: ``encode_video`` ``[B, T, 3, H, W]`` in [0, 1] and ``encode_text`` to 512-d, raw dot
    product score; ``extract_features`` gives the 1024-d ``mixed_5c``."""

    name = FAMILY

    def __init__(self, net: S3DNet, dictionary: WordDictionary, *, spec: FrameSpec, checkpoint: str | os.PathLike,
                 settings: str = ""):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.net = net
        self.dictionary = dictionary

    @property
    def dims(self) -> S3DDimensions:
        return self.net.dims

    def _video(self, clips: torch.Tensor) -> torch.Tensor:
        require_clips(FAMILY, clips)
        if self.dims.space_to_depth and any(side % 2 for side in (clips.shape[1], *clips.shape[3:])):
            raise InputError(f"{FAMILY}: the space-to-depth stem needs an even frame count, height and width; got "
                             f"{clips.shape[1]} frames of {clips.shape[3]}x{clips.shape[4]}", field="--model")
        return clips.to(self.device).permute(0, 2, 1, 3, 4)  # the network takes [B, 3, T, H, W]

    @torch.no_grad()
    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net.encode_video(self._video(clips)).float()

    @torch.no_grad()
    def extract_features(self, clips: torch.Tensor) -> torch.Tensor:
        """The pooled ``mixed_5c`` features (the README's features "for classification on downstream tasks")."""
        return self.net.features(self._video(clips)).float()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        ids = self.dictionary.encode(list(texts))
        if ids.numel() and int(ids.max()) >= self.dims.vocab_rows:
            word = next(w for w, i in self.dictionary.ids.items() if i == int(ids.max()))
            raise InputError(f"{FAMILY}: the word {word!r} has id {int(ids.max())} in the dictionary, beyond the "
                             f"{self.dims.vocab_rows} rows of the checkpoint's word embedding: the dictionary does "
                             "not belong to this checkpoint", path=self.dictionary.source, field="word_dict")
        return ids

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenize(texts).to(self.device)
        return self.net.encode_text(ids).float()

    def similarity(self, videos: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The official score: the raw dot product (no normalisation)."""
        return videos.float() @ texts.float().T


def load_s3d_net(checkpoint: str | os.PathLike) -> S3DNet:
    """The network sized and filled from an ``s3d_howto100m.pth``-style state dict."""
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family=FAMILY))
    require_keys(loaded, _SIGNATURE_KEYS, family=FAMILY)
    require_shapes(loaded.state_dict, _SIZE_KEYS, loaded.path, FAMILY)
    state = {key: value for key, value in loaded.state_dict.items() if not key.endswith(".num_batches_tracked")}
    net = S3DNet(S3DDimensions.from_state_dict(state, loaded.path))
    load_strict(net, state, loaded.path, family=FAMILY)
    return net.eval()


_DESCRIPTION = "MIL-NCE S3D (HowTo100M): S3D-G video, word-bag text, raw dot product; mixed_5c features"

CARD = ModelCard(
    family=FAMILY,
    description=_DESCRIPTION,
    capabilities=(DUAL_ENCODER, FEATURE_EXTRACTOR),
    tags=(
        WeightTag(name="howto100m", source="url", url=CHECKPOINT_URL, args={"word_dict": DICT_URL},
                  frame_spec=milnce_frame_spec(),
                  notes="The PyTorch port of TF-Hub deepmind/mil-nce/s3d/1, trained from scratch on HowTo100M "
                        f"(antoine77340/S3D_HowTo100M). The tag also fetches the word dictionary {DICT_URL}."),
    ),
    default_tag="howto100m",
    frame_spec=milnce_frame_spec(),
    tokenizer=f"word dictionary (s3d_dict.npy beside the checkpoint, or word_dict=PATH): lower case, [\\w']+ words, "
              f"unknown words dropped, at most {MAX_WORDS}, zero-padded",
    code_licence="Apache-2.0 (antoine77340/S3D_HowTo100M)",
    weights_licence="not stated (the S3D_HowTo100M README names none for the .pth; the repository is Apache-2.0)",
    paper="Miech, Alayrac, Smaira, Laptev, Sivic, Zisserman. End-to-End Learning of Visual Representations from "
          "Uncurated Instructional Videos. CVPR 2020. arXiv:1912.06430",
    citation="miech19endtoend",
    status=SUPPORTED,
    checkpoint_formats=("plain state dict (s3d_howto100m.pth, with or without num_batches_tracked) + s3d_dict.npy",
                        "the same state dict under 'state_dict'/'model' or with 'module.' prefixes", "safetensors"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def milnce_s3d(checkpoint: str | os.PathLike | None = None, word_dict: str | os.PathLike | None = None,
               frames: int | None = None, num_frames: int | None = None, fps: float = 10.0, size: int = 224,
               max_words: int = MAX_WORDS) -> MilNceS3D:
    """MIL-NCE S3D from ``s3d_howto100m.pth`` and its ``s3d_dict.npy``.

    ``word_dict``: the dictionary (a path or URL); default ``s3d_dict.npy`` beside the checkpoint.
    ``frames`` (or ``num_frames``), ``fps``: the clip sampled for each window, 32 frames at 10 fps
    by default (the network is fully convolutional: any count works, even ones for the published
    space-to-depth stem). ``size``: shorter side and centre crop (224; the README: 200 to 256).
    ``max_words``: words kept per caption (16 in the official text model).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    count = frame_count(FAMILY, frames, num_frames) or 32
    size = positive_int(FAMILY, "size", size)
    max_words = positive_int(FAMILY, "max_words", max_words)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < float(fps) < float("inf"):
        raise InputError(f"{FAMILY}: fps must be a positive number, got {fps!r}", field="--model-args")
    net = load_s3d_net(path)
    dictionary_path = side_file(FAMILY, word_dict, path, name=DICT_NAME, argument="word_dict",
                                what="its word dictionary", url=DICT_URL)
    dictionary = read_word_dictionary(dictionary_path, max_words=max_words)
    spec = milnce_frame_spec(count, float(fps), size)
    settings = f"dict={file_sha256(dictionary_path)};max_words={max_words}"  # the dictionary changes outputs too
    return MilNceS3D(net, dictionary, spec=spec, checkpoint=path, settings=settings)
