"""``vjepa2``: V-JEPA 2 (Assran et al., 2025) through transformers: ``VJEPA2Model`` as a feature
extractor and, with a published attentive probe, ``VJEPA2ForVideoClassification`` as a classifier
over its fixed label set.

Why transformers: the published weights (``facebook/vjepa2-vitl-fpc64-256`` ... and the probes
``facebook/vjepa2-vitl-fpc16-256-ssv2``, ``facebook/vjepa2-vitg-fpc64-384-ssv2``) are Hugging Face
directories converted from github.com/facebookresearch/vjepa2 and loaded with these two classes
(transformers 5.23), so they are the reference. A directory is read with
``from_pretrained(local_files_only=True)``; every size comes from its ``config.json``; missing,
unexpected or mis-shaped weights are refused in one line (`instract_eval.adapters.core.hf`). The
directory's ``architectures`` decides the class: a probe (``VJEPA2ForVideoClassification``) gives a
classifier and a feature extractor, a backbone (``VJEPA2Model``, encoder + predictor) a feature
extractor only. V-JEPA 2 has no text tower, so it is neither a dual encoder nor a pair scorer.

Facts this adapter keeps:

- Features (``extract_features``): the encoder's output tokens (``skip_predictor=True``: the
  predictor is for pre-training only), after its final LayerNorm, averaged over all tokens:
  ``[B, hidden_size]`` (1024 ViT-L, 1280 ViT-H, 1408 ViT-g). The mean is the harness's choice of one
  vector per clip; the paper's probes pool the tokens with a trained attentive pooler instead,
  which only the probe checkpoints have.
- Classification (``classify``): the probe's logits, ``VJEPA2ForVideoClassification(...).logits``
  (attentive pooler, then a linear layer); ``labels`` is the config's ``id2label`` in id order
  (174 Something-Something v2 templates for the published probes).
- Frames: 3D RoPE gives no fixed frame count, but the token grid per frame is fixed by
  ``crop_size // patch_size``, so the frames must be ``crop_size`` square. Tubelets are 2 frames
  (an odd count drops the last frame, as the Conv3d does). The default count is the config's
  ``frames_per_clip`` (64 for the backbones, 16 for the ViT-L probe); ``frames=N`` changes it.
- Pixels: ``VJEPA2VideoProcessor``: shorter side ``int(crop_size * 256 / 224)`` (292 for 256,
  438 for 384), bilinear, centre crop ``crop_size``, [0, 1], ImageNet mean/std.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.hf import hf_model_directory, load_hf_pretrained, read_hf_config, transformers_class
from ..protocols import FEATURE_EXTRACTOR, FIXED_LABEL_CLASSIFIER
from ..registry import register_model

__all__ = ["VJepa2Features", "VJepa2Classifier", "vjepa2", "vjepa2_frame_spec"]

_CLASSIFIER = "VJEPA2ForVideoClassification"


def vjepa2_frame_spec(frames: int = 64, crop_size: int = 256) -> FrameSpec:
    """``VJEPA2VideoProcessor``: shorter side crop * 256 / 224, bilinear, centre crop, ImageNet mean/std."""
    return FrameSpec(num_frames=frames, sampling="uniform", size=int(crop_size * 256 / 224), crop=crop_size,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")


def _hub_tag(name: str, frames: int, crop: int, probe: bool = False) -> WeightTag:
    what = ("VJEPA2ForVideoClassification directory: the frozen backbone with its attentive probe, 174 "
            "Something-Something v2 labels" if probe else "VJEPA2Model directory (encoder + predictor)")
    return WeightTag(name=name, source="hub", hub_id=f"facebook/vjepa2-{name}", frame_spec=vjepa2_frame_spec(frames, crop),
                     notes=f"Hugging Face {what}; revision not pinned (the hub could not be reached when this was "
                           "ported)")


CARD = ModelCard(
    family="vjepa2",
    description="V-JEPA 2 video encoder (no text): mean of its output tokens as features; with a published "
                "attentive probe, a classifier over the probe's labels",
    capabilities=(FEATURE_EXTRACTOR, FIXED_LABEL_CLASSIFIER),
    tags=(
        _hub_tag("vitl-fpc64-256", 64, 256),
        _hub_tag("vith-fpc64-256", 64, 256),
        _hub_tag("vitg-fpc64-256", 64, 256),
        _hub_tag("vitg-fpc64-384", 64, 384),
        _hub_tag("vitl-fpc16-256-ssv2", 16, 256, probe=True),
        _hub_tag("vitg-fpc64-384-ssv2", 64, 384, probe=True),
    ),
    default_tag="vitl-fpc64-256",
    frame_spec=vjepa2_frame_spec(64, 256),
    tokenizer="none (no text tower); a probe's labels are its config's id2label",
    code_licence="MIT (facebookresearch/vjepa2); Apache-2.0 (transformers VJEPA2Model)",
    weights_licence="MIT (facebook/vjepa2-* model cards; not verified offline)",
    paper="Assran et al., V-JEPA 2: Self-Supervised Video Models Enable Understanding, Prediction and Planning, 2025",
    citation="assran2025vjepa2",
    checkpoint_formats=("Hugging Face VJEPA2Model directory (config.json + model.safetensors)",
                        "Hugging Face VJEPA2ForVideoClassification directory (a probe; id2label in config.json)"),
    code_version="1",
)


class VJepa2Features(TorchAdapter):
    """``VJEPA2Model``'s encoder as a feature extractor; see the module docstring."""

    name = "vjepa2"

    def __init__(self, net: Any, *, spec: FrameSpec, checkpoint: Path):
        super().__init__(spec=spec, checkpoint=checkpoint)
        self.net = net
        self.crop_size = int(net.config.crop_size)

    def _backbone(self) -> Any:
        return self.net

    def _check(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"vjepa2 expects clips [B, T, 3, H, W], got {tuple(clips.shape)}")
        if tuple(clips.shape[-2:]) != (self.crop_size, self.crop_size):
            raise ValueError(f"vjepa2 {self.checkpoint} takes {self.crop_size}x{self.crop_size} frames (its RoPE "
                             f"grid is fixed by crop_size), got {clips.shape[-2]}x{clips.shape[-1]}")
        return clips.to(self.device, torch.float32)

    def tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, N, D]`` encoder output tokens (after the encoder's LayerNorm; no predictor)."""
        return self._backbone()(pixel_values_videos=self._check(clips), skip_predictor=True).last_hidden_state

    def extract_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: the mean of the encoder's output tokens."""
        return self.tokens(clips).mean(dim=1).float()


class VJepa2Classifier(VJepa2Features):
    """``VJEPA2ForVideoClassification``: a frozen backbone with its attentive probe, over ``labels``."""

    def __init__(self, net: Any, labels: list[str], *, spec: FrameSpec, checkpoint: Path):
        super().__init__(net, spec=spec, checkpoint=checkpoint)
        self.labels = labels

    def _backbone(self) -> Any:
        return self.net.vjepa2

    def classify(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, len(labels)]`` logits of the probe."""
        return self.net(pixel_values_videos=self._check(clips)).logits.float()


def _labels(net: Any, path: Path) -> list[str]:
    id2label = {int(key): str(value) for key, value in (net.config.id2label or {}).items()}
    count = int(net.classifier.out_features)
    if sorted(id2label) != list(range(count)):
        raise InputError(f"config.json's id2label does not name the probe's {count} outputs 0..{count - 1}",
                         path=path / "config.json", field="checkpoint")
    labels = [id2label[index] for index in range(count)]
    if len(set(labels)) != count:
        raise InputError("config.json's id2label repeats a label, so a class name would not say which output it "
                         "is", path=path / "config.json", field="checkpoint")
    return labels


@register_model("vjepa2", card=CARD)
def vjepa2(checkpoint: str | os.PathLike | None = None, frames: int | None = None) -> VJepa2Features:
    """V-JEPA 2 from a Hugging Face ``VJEPA2Model`` (features) or ``VJEPA2ForVideoClassification`` (probe:
    features and a classifier) directory. ``frames``: frames per clip (default: the config's
    ``frames_per_clip``)."""
    path = hf_model_directory(require_checkpoint("vjepa2", checkpoint), "vjepa2")
    config = read_hf_config(path, "vjepa2", ("vjepa2",))
    probe = _CLASSIFIER in (config.get("architectures") or ())
    cls = transformers_class(_CLASSIFIER if probe else "VJEPA2Model", "vjepa2", path)
    net = load_hf_pretrained(cls, path, "vjepa2")
    count = int(net.config.frames_per_clip) if frames is None else positive_int("vjepa2", "frames", frames)
    spec = vjepa2_frame_spec(count, int(net.config.crop_size))
    if probe:
        return VJepa2Classifier(net, _labels(net, path), spec=spec, checkpoint=path)
    return VJepa2Features(net, spec=spec, checkpoint=path)
