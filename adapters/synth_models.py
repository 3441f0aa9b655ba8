"""Two small video-text dual encoders trained on the synthetic action world, shipped with weights.

Why they exist: the synthetic benchmarks (``instract-eval synth``) probe whether a model uses the
*order* of frames and words. A harness that only ships a random baseline cannot show that its
probes separate models. These two encoders are trained on the same data with the same loss
(`instract_eval.training.synth`) and differ only in whether they can see order:

``synth-bag-of-frames``
    A per-frame CNN whose features are mean-pooled over time, and a bag-of-words text encoder.
    Both are order-blind by construction, so Video Reversal and Logic (step order) are exact
    ties and Action Antonym sits near chance, while Object Replacement (colour and shape) is easy.
``synth-temporal``
    The same per-frame CNN plus frame-to-frame feature changes, temporal position embeddings and
    a small temporal transformer; a text transformer over word + position embeddings read out by
    a bidirectional GRU: order-aware on both sides.

Exact order-blindness: CPU matrix kernels give results that depend in the last bit on a row's
position in the batch, so "the same embedding for a clip and its reversal" would hold only up to
rounding, and the benchmarks score exact ties as ties (`mcq_metrics`). The order-blind encoder
therefore encodes each clip alone with its frames in a canonical (lexicographic) order, and each
text alone from its word counts: a permutation of frames or words gives bit-identical input and
hence a bit-identical embedding.

A weights file is self-describing: the safetensors metadata holds the architecture config, the
vocabulary, the frame specification, and the training config with the seeds of its training
worlds, so `load_synth_model` needs nothing but the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instract_eval.errors import InputError
from instract_eval.files import write_atomic
from instract_eval.media import FrameSpec

from .cards import ModelCard
from .protocols import DUAL_ENCODER
from .registry import register_model

__all__ = [
    "BAG_OF_FRAMES",
    "TEMPORAL",
    "MODEL_NAMES",
    "WEIGHTS_FORMAT",
    "PAD",
    "UNK",
    "ArchitectureConfig",
    "Tokenizer",
    "WeightsDocument",
    "SynthNet",
    "SynthDualEncoder",
    "tokenize",
    "build_net",
    "default_weights",
    "load_synth_model",
    "parameter_count",
    "save_synth_weights",
    "synth_bag_of_frames",
    "synth_temporal",
]

BAG_OF_FRAMES = "synth-bag-of-frames"
TEMPORAL = "synth-temporal"
MODEL_NAMES = (BAG_OF_FRAMES, TEMPORAL)
WEIGHTS_FORMAT = "instract-eval/synth-dual-encoder/v1"
PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z]+")
_HEADER_LIMIT = 100_000_000  # a safetensors header longer than this is not a header
# Position embeddings start as large as the (normalised) frame features and word embeddings they are
# added to: at the usual 0.02 the transformers barely see order at first and learn it last.
POSITION_INIT_STD = 0.5


# ------------------------------------------------------------------------------------------------
# Text


def tokenize(text: str) -> list[str]:
    """Lower-case words: runs of letters; everything else (spaces, commas, digits) separates them."""
    return _WORD.findall(text.lower())


class Tokenizer:
    """Words to ids over a fixed vocabulary; id 0 is padding, id 1 stands for any unknown word.

    The vocabulary is stored with the weights, so a model reads text exactly as it was trained to;
    words it never saw (SRT synonyms, by design) all map to the one UNK id.
    """

    def __init__(self, vocabulary: Sequence[str]):
        words = list(vocabulary)
        if words[:2] != [PAD, UNK] or len(set(words)) != len(words):
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r} and has no duplicates")
        self.vocabulary = words
        self.index = {word: i for i, word in enumerate(words)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Tokenizer:
        """The sorted vocabulary of every word in ``texts``."""
        words = sorted({word for text in texts for word in tokenize(text)})
        return cls([PAD, UNK, *words])

    def __len__(self) -> int:
        return len(self.vocabulary)

    def ids(self, text: str, max_length: int) -> list[int]:
        """Word ids of ``text``, at least one (UNK for an empty text), at most ``max_length``."""
        unknown = self.index[UNK]
        ids = [self.index.get(word, unknown) for word in tokenize(text)] or [unknown]
        return ids[:max_length]

    def pad(self, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, L]`` ids and a ``[B, L]`` mask of real (non-padding) tokens."""
        rows = [self.ids(text, max_length) for text in texts]
        width = max(len(row) for row in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, ids != 0

    def counts(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """``[B, V]`` word counts: the order-free view of each text."""
        out = torch.zeros(len(texts), len(self))
        for i, text in enumerate(texts):
            out[i] = torch.bincount(torch.tensor(self.ids(text, max_length)), minlength=len(self)).float()
        return out


# ------------------------------------------------------------------------------------------------
# Architectures


@dataclass(frozen=True)
class ArchitectureConfig:
    """Everything that fixes the shapes of a net (stored in the weights' metadata)."""

    kind: str                        # "bag-of-frames" or "temporal"
    dim: int = 96                    # embedding width, shared by every stage
    channels: tuple[int, ...] = (16, 32, 64)
    frame_size: int = 32             # frames are frame_size x frame_size after preprocessing
    num_frames: int = 8              # frames per clip in training (and position embeddings)
    video_layers: int = 2            # temporal transformer layers (temporal only)
    text_layers: int = 1             # text transformer layers before the GRU (temporal only)
    heads: int = 4
    max_words: int = 32              # longer texts are cut (captions have at most ~20 words)
    vocabulary_size: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("bag-of-frames", "temporal"):
            raise ValueError(f"kind must be 'bag-of-frames' or 'temporal', got {self.kind!r}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    @property
    def order_blind(self) -> bool:
        return self.kind == "bag-of-frames"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "channels": list(self.channels)}


class FrameEncoder(nn.Module):
    """One frame to one vector: three conv blocks halving the resolution, then a linear layer.

    The final feature map is flattened rather than averaged, so the vector keeps *where* things are
    (a move left and a move right differ only in where the object is, frame by frame).
    """

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        layers: list[nn.Module] = []
        channels_in = 3
        for channels_out in config.channels:
            layers += [nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.GELU(), nn.MaxPool2d(2)]
            channels_in = channels_out
        self.convs = nn.Sequential(*layers)
        side = config.frame_size // 2 ** len(config.channels)
        self.project = nn.Linear(channels_in * side * side, config.dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, D]``."""
        return self.project(self.convs(frames).flatten(1))


def _mlp(dim: int) -> nn.Sequential:
    """The order-blind towers' head: normalise the pooled vector, then a two-layer MLP."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


def _transformer(config: ArchitectureConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(config.dim, config.heads, dim_feedforward=2 * config.dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class BagOfFramesVideo(nn.Module):
    """Per-frame features, averaged over time, then an MLP: the frame order cannot matter."""

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        self.frames = FrameEncoder(config)
        self.head = _mlp(config.dim)

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, T, D]``: each frame on its own."""
        return self.frames(clips.flatten(0, 1)).view(*clips.shape[:2], -1)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, D]``."""
        return self.head(features.mean(dim=1))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.pool(self.frame_features(clips))


class TemporalVideo(nn.Module):
    """Per-frame features + temporal position embeddings, a temporal transformer, mean pooling.

    Each frame's token also gets a projection of how its features changed since the previous
    frame: direction of motion (move left vs right, grow vs shrink) is exactly such a change, and
    handing it over explicitly lets a two-layer transformer learn order from a few minutes of CPU
    training instead of having to discover subtraction across tokens first.

    Trained on ``num_frames`` frames; a clip of another length (SRT samples 16 frames at 8 fps) has
    its frame features resampled to ``num_frames`` by linear interpolation over time, which keeps
    the clip's time axis where the position embeddings expect it.
    """

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        self.num_frames = config.num_frames
        self.frames = FrameEncoder(config)
        self.frame_norm = nn.LayerNorm(config.dim)
        self.motion = nn.Linear(config.dim, config.dim)
        self.positions = nn.Parameter(torch.randn(config.num_frames, config.dim) * POSITION_INIT_STD)
        self.encoder = _transformer(config, config.video_layers)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.dim)

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, T, D]``: each frame on its own, before any temporal mixing."""
        return self.frames(clips.flatten(0, 1)).view(*clips.shape[:2], -1)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` frame features -> ``[B, D]``, through the temporal transformer."""
        if features.shape[1] != self.num_frames:
            features = F.interpolate(features.transpose(1, 2), size=self.num_frames, mode="linear",
                                     align_corners=False).transpose(1, 2)
        features = self.frame_norm(features)
        motion = features - torch.cat([features[:, :1], features[:, :-1]], dim=1)  # change since the last frame
        tokens = self.encoder(features + self.motion(motion) + self.positions)
        return self.head(self.norm(tokens).mean(dim=1))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.pool(self.frame_features(clips))


class BagOfWordsText(nn.Module):
    """Word counts -> mean word embedding -> MLP: the word order cannot matter.

    ``words`` is a linear map applied to the count vector, i.e. the sum of the words' embeddings,
    computed from counts so that reordered words give bit-identical input.
    """

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        self.max_words = config.max_words
        self.words = nn.Linear(config.vocabulary_size, config.dim, bias=False)
        with torch.no_grad():
            self.words.weight.normal_(std=POSITION_INIT_STD)  # initialised like PositionalText's words
        self.head = _mlp(config.dim)

    def forward(self, tokenizer: Tokenizer, texts: Sequence[str]) -> torch.Tensor:
        counts = tokenizer.counts(texts, self.max_words).to(self.words.weight.device)
        return self.head(self.words(counts) / counts.sum(dim=1, keepdim=True))


class PositionalText(nn.Module):
    """Word + position embeddings, a small transformer, then a bidirectional GRU read out at both ends.

    Why the GRU: a procedure and its order swap have the same words, so after mean pooling they
    differ only through position embeddings, a weak signal (trained that way, the two captions'
    embeddings had cosine 0.997). A recurrent read-out is order-sensitive by construction.
    """

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        self.max_words = config.max_words
        self.words = nn.Embedding(config.vocabulary_size, config.dim, padding_idx=0)
        with torch.no_grad():
            self.words.weight.normal_(std=POSITION_INIT_STD)[0].zero_()  # row 0 is padding
        self.positions = nn.Parameter(torch.randn(config.max_words, config.dim) * POSITION_INIT_STD)
        self.encoder = _transformer(config, config.text_layers)
        self.norm = nn.LayerNorm(config.dim)
        self.gru = nn.GRU(config.dim, config.dim // 2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(config.dim, config.dim)

    def forward(self, tokenizer: Tokenizer, texts: Sequence[str]) -> torch.Tensor:
        ids, mask = tokenizer.pad(texts, self.max_words)
        ids, mask = ids.to(self.positions.device), mask.to(self.positions.device)
        tokens = self.words(ids) + self.positions[: ids.shape[1]]
        tokens = self.norm(self.encoder(tokens, src_key_padding_mask=~mask))
        lengths = mask.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(tokens, lengths, batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)  # [2, B, D/2]: the forward pass's last state, the backward pass's first
        return self.head(torch.cat([last[0], last[1]], dim=-1))


class SynthNet(nn.Module):
    """A video tower and a text tower mapping into one ``dim``-wide space (unnormalised outputs)."""

    def __init__(self, config: ArchitectureConfig):
        super().__init__()
        if config.vocabulary_size < 2:
            raise ValueError("the config needs the vocabulary size (at least PAD and UNK)")
        self.config = config
        if config.order_blind:
            self.video: nn.Module = BagOfFramesVideo(config)
            self.text: nn.Module = BagOfWordsText(config)
        else:
            self.video = TemporalVideo(config)
            self.text = PositionalText(config)

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.video(clips)

    def encode_text(self, tokenizer: Tokenizer, texts: Sequence[str]) -> torch.Tensor:
        return self.text(tokenizer, texts)


def build_net(config: ArchitectureConfig) -> SynthNet:
    return SynthNet(config)


# ------------------------------------------------------------------------------------------------
# The adapter


# The localization engine's sliding windows for these models: the world's actions last 1.5-2.5 s.
# Scored against the class names, not the descriptions: the models' vocabulary is that of the
# world's captions and a description's prose is mostly out of it, so the answer is the same whatever
# descriptions are given and LAP is 0 by construction (a vision-and-name localizer).
LOCALIZE_SETTINGS = {"window_s": 1.0, "stride_s": 0.25, "tau": 0.05, "text": "name"}


class SynthDualEncoder(nn.Module):
    """The evaluation-time adapter (a `VideoTextModel`): frame spec, L2-normalised embeddings.

    The runner moves it with ``.to(device)`` and calls ``.eval()``; clips arrive on that device and
    texts are tokenised here and moved to it. It localizes through the engine's sliding windows
    (``sliding_window``).
    """

    sliding_window = LOCALIZE_SETTINGS

    def __init__(self, name: str, net: SynthNet, tokenizer: Tokenizer, spec: FrameSpec, *,
                 fingerprint: str, metadata: dict[str, Any] | None = None, source: str = ""):
        super().__init__()
        self.name = name
        self.net = net
        self.tokenizer = tokenizer
        self.spec = spec
        self.fingerprint = fingerprint
        self.metadata = dict(metadata or {})
        self.source = source

    @property
    def order_blind(self) -> bool:
        return self.net.config.order_blind

    def frame_spec(self) -> FrameSpec:
        return self.spec

    def weights_fingerprint(self) -> str:
        """SHA-256 hex digest of the weights file, plus the localization settings.

        The runner caches outputs under this (with the model's name and arguments); the window
        settings live in code, not in the file, so they are part of it too.
        """
        return f"{self.fingerprint};localize={LOCALIZE_SETTINGS}"

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` normalised frames -> ``[B, D]`` unit vectors."""
        if clips.ndim != 5:
            raise ValueError(f"expected clips [B, T, 3, H, W], got {tuple(clips.shape)}")
        if self.order_blind:  # each clip alone, frames in canonical order: see the module docstring
            encoded = torch.cat([self.net.encode_video(_canonical_frames(clip).unsqueeze(0)) for clip in clips])
        else:
            encoded = self.net.encode_video(clips)
        return F.normalize(encoded.float(), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``B`` strings -> ``[B, D]`` unit vectors, on the model's device."""
        texts = list(texts)
        if not texts:
            return torch.empty(0, self.net.config.dim, device=self._device())
        if self.order_blind:  # each text alone: identical word counts give identical embeddings
            encoded = torch.cat([self.net.encode_text(self.tokenizer, [text]) for text in texts])
        else:
            encoded = self.net.encode_text(self.tokenizer, texts)
        return F.normalize(encoded.float(), dim=-1)

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def _canonical_frames(clip: torch.Tensor) -> torch.Tensor:
    """The frames of ``[T, 3, H, W]`` in lexicographic order of their values (ties are equal frames)."""
    flat = clip.reshape(clip.shape[0], -1).detach().cpu().numpy()
    order = np.lexsort(flat.T[::-1])
    return clip[torch.as_tensor(order, device=clip.device)]


# ------------------------------------------------------------------------------------------------
# Weights files


@dataclass
class WeightsDocument:
    """What a weights file holds besides tensors (its safetensors metadata, decoded)."""

    name: str
    architecture: ArchitectureConfig
    vocabulary: list[str]
    frame_spec: FrameSpec
    training: dict[str, Any] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, str]:
        spec = self.frame_spec
        frame_spec = {"num_frames": spec.num_frames, "sampling": spec.sampling, "fps": spec.fps,
                      "size": spec.size, "crop": spec.crop, "mean": list(spec.mean), "std": list(spec.std)}
        return {"format": WEIGHTS_FORMAT, "name": self.name,
                "architecture": json.dumps(self.architecture.as_json(), sort_keys=True),
                "vocabulary": json.dumps(self.vocabulary),
                "frame_spec": json.dumps(frame_spec, sort_keys=True),
                "training": json.dumps(self.training, sort_keys=True)}


def save_synth_weights(path: str | os.PathLike, net: SynthNet, document: WeightsDocument) -> str:
    """Write ``net``'s weights (float32) with ``document`` as metadata; returns the file's SHA-256.

    The same weights and metadata always give the same bytes (see `_canonical_safetensors`), so
    a retrained file can be compared with the shipped one by its hash.
    """
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in net.state_dict().items()}
    data = _canonical_safetensors(tensors, document.as_metadata())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _canonical_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes whose JSON header has sorted keys.

    The safetensors writer emits the metadata from a hash map, in an order that changes from one
    process to the next, so identical weights would get a different SHA-256 on every run. The
    header is re-serialised with sorted keys (and padded with spaces to 8 bytes, as the format
    asks); the tensor data and its offsets are the writer's own.
    """
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.dumps(json.loads(raw[8:8 + length]), sort_keys=True, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + raw[8 + length:]


def default_weights(name: str) -> Any:
    """The packaged weights of ``name`` (an `importlib.resources` traversable)."""
    return resources.files("instract_eval.adapters") / "weights" / f"{name}.safetensors"


def load_synth_model(weights: str | os.PathLike | None = None, *, name: str | None = None) -> SynthDualEncoder:
    """A `SynthDualEncoder` from a weights file (default: the packaged weights of ``name``).

    Raises `InputError` naming the file when it is missing, not a safetensors file, not one of
    these models, or a file of another model than ``name``.
    """
    if weights is None:
        if name is None:
            raise ValueError("give the weights file or the model name")
        source = default_weights(name)
    else:
        source = Path(weights)
    label = str(source)
    try:
        data = source.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as error:
        raise InputError(f"cannot read the weights file: {error.strerror or error}", path=label) from error
    document = _read_document(data, label)
    if name is not None and document.name != name:
        raise InputError(f"holds the weights of {document.name}, not {name}", path=label)
    net = build_net(document.architecture)
    _load_tensors(net, data, label)
    net.eval()
    tokenizer = Tokenizer(document.vocabulary)
    return SynthDualEncoder(document.name, net, tokenizer, document.frame_spec,
                            fingerprint=hashlib.sha256(data).hexdigest(), metadata=document.as_metadata(),
                            source=label)


def _read_document(data: bytes, label: str) -> WeightsDocument:
    metadata = _safetensors_metadata(data, label)
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise InputError(f"is not a synth dual-encoder weights file (metadata format {metadata.get('format')!r}, "
                         f"expected {WEIGHTS_FORMAT!r})", path=label)
    try:
        architecture = ArchitectureConfig(**json.loads(metadata["architecture"]))
        vocabulary = json.loads(metadata["vocabulary"])
        spec = json.loads(metadata["frame_spec"])
        frame_spec = FrameSpec(num_frames=spec["num_frames"], sampling=spec["sampling"], fps=spec["fps"],
                               size=spec["size"], crop=spec["crop"], mean=tuple(spec["mean"]),
                               std=tuple(spec["std"]))
        training = json.loads(metadata.get("training", "{}"))
        Tokenizer(vocabulary)
    except (KeyError, TypeError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise InputError(f"has malformed metadata: {type(error).__name__}: {error}", path=label) from error
    if len(vocabulary) != architecture.vocabulary_size:
        raise InputError(f"has {len(vocabulary)} vocabulary words for an architecture of "
                         f"{architecture.vocabulary_size}", path=label)
    return WeightsDocument(name=str(metadata.get("name", "")), architecture=architecture, vocabulary=vocabulary,
                           frame_spec=frame_spec, training=training)


def _safetensors_metadata(data: bytes, label: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file: an 8-byte little-endian length, then JSON."""
    if len(data) < 8:
        raise InputError("is not a safetensors file (too short)", path=label)
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(len(data) - 8, _HEADER_LIMIT):
        raise InputError("is not a safetensors file (bad header length)", path=label)
    try:
        header = json.loads(data[8:8 + length])
    except (UnicodeDecodeError, ValueError) as error:
        raise InputError(f"is not a safetensors file (header: {error})", path=label) from error
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise InputError("has no safetensors metadata; it is not a synth dual-encoder weights file", path=label)
    return metadata


def _load_tensors(net: SynthNet, data: bytes, label: str) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise InputError(f"is not a readable safetensors file: {error}", path=label) from error
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(key for key in set(expected) & set(tensors) if expected[key].shape != tensors[key].shape)
    if missing or unexpected or wrong:
        problems = [f"{what} {', '.join(keys[:3])}" for what, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape of", wrong)) if keys]
        raise InputError(f"does not fit its architecture: {'; '.join(problems)}", path=label)
    bad = [key for key, value in tensors.items() if not torch.isfinite(value).all()]
    if bad:
        raise InputError(f"holds non-finite values in {', '.join(bad[:3])}", path=label)
    net.load_state_dict({key: value.float() for key, value in tensors.items()})


def parameter_count(net: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in net.parameters())


# ------------------------------------------------------------------------------------------------
# Registered factories


def _synth_card(description: str) -> ModelCard:
    return ModelCard(family="synth", capabilities=(DUAL_ENCODER,), description=description,
                     tokenizer="the world's word vocabulary (stored in the weights file)",
                     code_licence="MIT (this project)", weights_licence="MIT (shipped in the package)",
                     checkpoint_formats=(WEIGHTS_FORMAT,))


@register_model(BAG_OF_FRAMES, card=_synth_card("order-blind dual encoder (mean-pooled frames, bag of words) "
                                                "trained on the synthetic action world; localizes by sliding "
                                                "windows"))
def synth_bag_of_frames(weights: str | None = None) -> SynthDualEncoder:
    """The order-blind synthetic-world encoder: packaged weights, or those at ``weights``."""
    return load_synth_model(weights, name=BAG_OF_FRAMES)


@register_model(TEMPORAL, card=_synth_card("order-aware dual encoder (temporal transformer, positional text) "
                                           "trained on the synthetic action world; localizes by sliding windows"))
def synth_temporal(weights: str | None = None) -> SynthDualEncoder:
    """The order-aware synthetic-world encoder: packaged weights, or those at ``weights``."""
    return load_synth_model(weights, name=TEMPORAL)
