"""What a model can do, as capabilities that tasks ask for (never a model class).

A task engine names the capability it needs (`DUAL_ENCODER`, `TOKEN_ENCODER`, `PAIR_SCORER`,
`LOCALIZER`);
`require_capability` checks the model before any video is decoded, so asking a localizer to do
retrieval fails at once with one clear line.

Frames: the task's protocol decides *which instants* are sampled (frames, uniform or fixed fps,
context); the model's `frame_spec` decides *how pixels are prepared* (size, crop, mean/std).
`task_frame_spec` combines the two.

Scores: a dual encoder may define ``similarity(videos [B, D], texts [N, D]) -> [B, N]``, its own
ranking score (CLIP's ``exp(logit_scale) * cosine``, SigLIP's sigmoid with its bias, MIL-NCE's raw
dot product, Singularity's frame mean that is not renormalised). Every engine ranks with it when
it exists and with the cosine of the embeddings otherwise; it is not part of the runtime protocol,
so models without one still are dual encoders.

Flags an adapter may set as class attributes (read through the functions below, never by a bare
``getattr`` in an engine):

``leaf_augmentation``
    Zero-shot classification scores each class by the mean over its synonym children (ACE).
``answers_in_text``
    A localizer that answers in text (a QA-style VLM): the localization engine also reports
    ActionVLM's hallucination rates for it.
``localizer_inputs``
    What a localizer reads: ``("features",)`` for a feature-based head (ActionFormer on
    precomputed feature files), ``("video",)`` for a frame-based one (a VLM, an end-to-end
    detector); both when unset. A task that gives the other kind is refused before localizing.
``list_dependent_scores``
    A pair scorer whose score of a caption depends on the other captions of its list (the
    letter-choice protocol of a generative VLM lists every option in one prompt): the encoder then
    scores each caption list on its own instead of concatenating the lists of one clip.
``scoring``
    One line saying how a pair scorer scores (``"mean token log-likelihood under the chat
    template"``, ``"probability of the option's letter"``): engines write it into the result.
``sliding_window``
    For a dual encoder, the settings of the engine's zero-shot sliding-window localization
    (``window_s``, ``stride_s``, ``tau``, ``text``): a dual encoder localizes through the run's
    encoder, so its windows are batched, cached and sharded like every clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from instract_eval.errors import InputError
from instract_eval.media import FrameSpec

__all__ = [
    "DUAL_ENCODER",
    "TOKEN_ENCODER",
    "PAIR_SCORER",
    "LOCALIZER",
    "CAPABILITIES",
    "VideoTextModel",
    "VideoTokenModel",
    "PairScorer",
    "Localizer",
    "Segment",
    "capabilities_of",
    "require_capability",
    "describe_capabilities",
    "task_frame_spec",
    "FLAGS",
    "wants_leaf_augmentation",
    "answers_in_text",
    "has_own_similarity",
    "localizer_inputs",
    "LOCALIZER_INPUTS",
    "FEATURE_EXTRACTOR",
    "FIXED_LABEL_CLASSIFIER",
    "FeatureExtractor",
    "FixedLabelClassifier",
    "list_dependent_scores",
    "scoring_description",
]

# The class attributes an adapter may set to change how engines treat it (see the module docstring).
FLAGS: Mapping[str, str] = {
    "leaf_augmentation": "classification scores a class by the mean over its synonym children",
    "answers_in_text": "a localizer answering in text: hallucination rates are reported",
    "localizer_inputs": "what a localizer reads: features, video, or both",
    "sliding_window": "a dual encoder's sliding-window localization settings",
    "list_dependent_scores": "a pair scorer whose scores depend on the whole caption list",
    "scoring": "how a pair scorer scores, in one line (recorded in results)",
}
LOCALIZER_INPUTS = ("features", "video")


@runtime_checkable
class VideoTextModel(Protocol):
    """Dual encoder: videos and texts to one embedding space (CLIP4Clip, ViCLIP, InstrAction ...)."""

    def frame_spec(self) -> FrameSpec: ...

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` float frames to ``[B, D]`` embeddings."""
        ...

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``B`` strings to ``[B, D]`` embeddings."""
        ...


@runtime_checkable
class VideoTokenModel(Protocol):
    """A video encoder exposing its temporally ordered tokens (InstrAction's action latents, frame embeddings).

    The alignment diagnostic (InstrAction Fig. 8) compares these tokens with verb-phrase embeddings
    from ``encode_text``, so both must live in one space.
    """

    def frame_spec(self) -> FrameSpec: ...

    def encode_video_tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` float frames to ``[B, K, D]`` tokens in temporal order."""
        ...

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``B`` strings to ``[B, D]`` embeddings."""
        ...


@runtime_checkable
class PairScorer(Protocol):
    """Cross-encoder or generative VLM scoring each (clip, caption) pair."""

    def frame_spec(self) -> FrameSpec: ...

    def score(self, clips: torch.Tensor, texts: list[list[str]]) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips and ``B`` lists of ``C`` captions to ``[B, C]`` scores."""
        ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """A video backbone giving features for feature-based heads (S3D ``mixed_5c``, VideoMAE, V-JEPA 2)."""

    def frame_spec(self) -> FrameSpec: ...

    def extract_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips to ``[B, C]`` features (one vector per clip)."""
        ...


@runtime_checkable
class FixedLabelClassifier(Protocol):
    """A video classifier over its own label set (V-JEPA 2's published probes); ``labels`` names its outputs."""

    labels: Sequence[str]

    def frame_spec(self) -> FrameSpec: ...

    def classify(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` clips to ``[B, len(labels)]`` logits."""
        ...


@dataclass(frozen=True)
class Segment:
    """One localized action: seconds, class name, confidence."""

    start: float
    end: float
    label: str
    score: float


@runtime_checkable
class Localizer(Protocol):
    """Temporal action localizer: ActionFormer-style heads, ActionVLM, QA-style VLMs.

    ``video`` is the path of the video (or of its precomputed features); ``descriptions`` maps
    each class to the text the localizer is given for it (None when the task has none). A
    localizer that answers in text sets the class attribute ``answers_in_text = True``, which
    makes the localization engine report ActionVLM's hallucination rates for it.
    """

    def localize(self, video: str, classes: Sequence[str],
                 descriptions: Mapping[str, str] | None) -> list[Segment]: ...


DUAL_ENCODER = "dual_encoder"
TOKEN_ENCODER = "token_encoder"
PAIR_SCORER = "pair_scorer"
LOCALIZER = "localizer"
FEATURE_EXTRACTOR = "feature_extractor"
FIXED_LABEL_CLASSIFIER = "fixed_label_classifier"
CAPABILITIES: Mapping[str, type] = {DUAL_ENCODER: VideoTextModel, TOKEN_ENCODER: VideoTokenModel,
                                    PAIR_SCORER: PairScorer, LOCALIZER: Localizer,
                                    FEATURE_EXTRACTOR: FeatureExtractor,
                                    FIXED_LABEL_CLASSIFIER: FixedLabelClassifier}


def wants_leaf_augmentation(model: Any) -> bool:
    """Whether the adapter asks for leaf-augmented class scores (ACE)."""
    return bool(getattr(model, "leaf_augmentation", False))


def answers_in_text(model: Any) -> bool:
    """Whether the localizer answers in text, so its hallucination rates are reported."""
    return bool(getattr(model, "answers_in_text", False))


def localizer_inputs(model: Any) -> tuple[str, ...]:
    """What the localizer reads (``features``, ``video``); both when it does not say."""
    declared = getattr(model, "localizer_inputs", LOCALIZER_INPUTS)
    inputs = (declared,) if isinstance(declared, str) else tuple(declared)
    unknown = [value for value in inputs if value not in LOCALIZER_INPUTS]
    if unknown or not inputs:
        raise ValueError(f"localizer_inputs must be some of {LOCALIZER_INPUTS}, got {declared!r}")
    return inputs


def list_dependent_scores(model: Any) -> bool:
    """Whether a pair scorer's scores depend on the whole caption list (score each list alone)."""
    return bool(getattr(model, "list_dependent_scores", False))


def scoring_description(model: Any) -> str | None:
    """The pair scorer's own one-line statement of how it scores, if it gives one."""
    value = getattr(model, "scoring", None)
    return value if isinstance(value, str) and value else None


def has_own_similarity(model: Any) -> bool:
    """Whether the dual encoder ranks with a ``similarity`` of its own rather than the cosine."""
    return callable(getattr(model, "similarity", None))


def capabilities_of(model: Any) -> tuple[str, ...]:
    """The capabilities a model object provides (by the methods it has)."""
    return tuple(name for name, protocol in CAPABILITIES.items() if isinstance(model, protocol))


def require_capability(model: Any, capability: str | Sequence[str], task: str) -> str:
    """The first of ``capability`` (a name, or names in order of preference) that ``model`` provides.

    Raises one clear `InputError` when it provides none of them.
    """
    wanted = (capability,) if isinstance(capability, str) else tuple(capability)
    for name in wanted:
        if name not in CAPABILITIES:
            raise ValueError(f"unknown capability {name!r} (one of {', '.join(CAPABILITIES)})")
    for name in wanted:
        if isinstance(model, CAPABILITIES[name]):
            return name
    raise InputError(f"task {task} needs a {describe_capabilities(wanted)} model; "
                     f"{getattr(model, 'name', type(model).__name__)} provides: "
                     f"{describe_capabilities(capabilities_of(model), 'none', ', ')}", field="--model")


def describe_capabilities(names: Sequence[str], empty: str = "", joiner: str = " or ") -> str:
    """Capability names as words: ``dual_encoder, pair_scorer`` -> ``dual encoder or pair scorer``."""
    return joiner.join(name.replace("_", " ") for name in names) or empty


def task_frame_spec(model_spec: FrameSpec, protocol: Mapping[str, Any], task: str = "") -> FrameSpec:
    """The task's temporal sampling with the model's pixel preparation.

    A model whose frame count is fixed (``fixed_frames``) refuses a task that asks for another
    one, in one line, before anything is decoded.
    """
    sampling = protocol.get("sampling", model_spec.sampling)
    fps = protocol.get("fps", model_spec.fps)
    frames = int(protocol.get("frames", model_spec.num_frames))
    if model_spec.fixed_frames and frames != model_spec.num_frames:
        where = f"task {task} asks" if task else "the task asks"
        raise InputError(f"{where} for {frames} frames; this model takes exactly {model_spec.num_frames} "
                         "(its temporal embedding has that length)", field="--model")
    return dataclasses.replace(model_spec, num_frames=frames, sampling=sampling, fps=fps)
