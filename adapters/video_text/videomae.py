"""``videomae``: VideoMAE (Tong et al., NeurIPS 2022) and VideoMAE V2 (Wang et al., CVPR 2023) as
feature extractors, the clip features temporal action localization heads read (ActionFormer on
VideoMAEv2-g features).

Two on-disk formats, one network (transformers' ``VideoMAEModel``):

- **Hugging Face directories** (``MCG-NJU/videomae-*``): loaded with the class their
  ``architectures`` names, ``VideoMAEForVideoClassification`` (fine-tuned), ``VideoMAEForPreTraining``
  (self-supervised, with its decoder) or ``VideoMAEModel``, through
  ``from_pretrained(local_files_only=True)``; every size comes from ``config.json``; missing,
  unexpected or mis-shaped weights are refused in one line. That class is the reference.
- **Official VideoMAE / VideoMAE V2 fine-tuned files** (``vit_g_hybrid_pt_1200e_k710_ft.pth``, the
  backbone of the VideoMAEv2 TAL features; github.com/OpenGVLab/VideoMAEv2
  ``models/modeling_finetune.py``): ``{'model'|'module': state_dict}`` or a bare state dict with keys
  ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.q_bias, attn.v_bias, attn.proj, norm2,
  mlp.fc1, mlp.fc2}``, ``fc_norm`` and ``head``. They are renamed onto ``VideoMAEModel`` (the fused
  ``qkv`` split into query/key/value; VideoMAE has no key bias) and loaded strictly; the
  classification ``head`` is not used. Width, depth, MLP width, patch and tubelet come from the
  shapes; the head count is not in the file, so it is the official one for the width (384: 6,
  768: 12, 1024: 16, 1280: 16, 1408: 16) or ``num_heads=``; the frame count (16) and resolution (224)
  fix the sinusoidal position table and are ``frames=`` / ``image_size=``. Every LayerNorm has
  eps 1e-6, as the official ``norm_layer``. Pre-training files (``encoder.*``/``decoder.*``) are
  refused.

Features (``extract_features``, ``[B, hidden_size]``), as the official ``forward_features``:
``fc_norm(mean over tokens)`` for a fine-tuned model (mean pooling), the mean of the final
LayerNorm's tokens for a pre-trained one. VideoMAEv2-g gives 1408-d features.

Frames: 16 per clip, fixed by the sinusoidal position table (``fixed_frames``), tubelet 2.
``preprocessing`` chooses the pixels:

- ``"classification"`` (default for Hugging Face directories): the directory's processor, shorter
  side 224, centre crop 224, bilinear, ImageNet mean/std unless ``preprocessor_config.json`` says
  otherwise;
- ``"tad"`` (default for the official files): VideoMAEv2's ``extract_tad_feature.py``: both sides to
  224 (a squash), bilinear, [0, 1], no mean/std. The official script resizes float frames without
  antialiasing; the harness resizes uint8 frames with antialiasing (its one resize kernel), which
  differs when it shrinks. Its windows (16 frames every 4 frames for THUMOS-14, every 16 for
  FineAction, at the video's own frame rate) are the task's to choose.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, FrameSpec

from ..cards import ModelCard, WeightTag
from ..core.base import TorchAdapter, positive_int, require_checkpoint
from ..core.checkpoints import load_strict, read_checkpoint, remap_keys, unwrap_state_dict
from ..core.hf import (hf_model_directory, load_hf_pretrained, preprocessor_config, processor_interpolation,
                       processor_triple, read_hf_config, transformers_class)
from ..core.shapes import count_blocks, require_shapes
from ..protocols import FEATURE_EXTRACTOR
from ..registry import register_model

__all__ = ["VideoMAEFeatures", "videomae", "videomae_frame_spec", "official_state_dict", "OFFICIAL_HEADS"]

_FIELD = "checkpoint"
_ZERO = (0.0, 0.0, 0.0)
_ONE = (1.0, 1.0, 1.0)
PREPROCESSING = ("classification", "tad")
# The official models' head counts by width (modeling_finetune.py: vit_small ... vit_giant).
OFFICIAL_HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}
_HF_CLASSES = ("VideoMAEForVideoClassification", "VideoMAEForPreTraining", "VideoMAEModel")
_REMAP = (
    (r"patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
    (r"blocks\.(\d+)\.norm1\.", r"encoder.layer.\1.layernorm_before."),
    (r"blocks\.(\d+)\.norm2\.", r"encoder.layer.\1.layernorm_after."),
    (r"blocks\.(\d+)\.attn\.proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"blocks\.(\d+)\.mlp\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
    (r"blocks\.(\d+)\.mlp\.fc2\.", r"encoder.layer.\1.output.dense."),
)


def videomae_frame_spec(frames: int = 16, image_size: int = 224, preprocessing: str = "classification",
                        processor: dict[str, Any] | None = None) -> FrameSpec:
    """The pixels of ``preprocessing`` (see the module docstring); the frame count is fixed."""
    if preprocessing == "tad":
        return FrameSpec(num_frames=frames, sampling="uniform", size=image_size, crop=None, resize="squash",
                         interpolation="bilinear", mean=_ZERO, std=_ONE, fixed_frames=True)
    processor = processor or {}
    size = processor.get("size")
    short = size.get("shortest_edge") if isinstance(size, dict) else size
    short = short if isinstance(short, int) and not isinstance(short, bool) and short >= image_size else image_size
    return FrameSpec(num_frames=frames, sampling="uniform", size=short, crop=image_size,
                     mean=processor_triple(processor.get("image_mean"), IMAGENET_MEAN),
                     std=processor_triple(processor.get("image_std"), IMAGENET_STD),
                     interpolation=processor_interpolation(processor, "bilinear"), fixed_frames=True)


def _hub(name: str, notes: str = "") -> WeightTag:
    return WeightTag(name=name, source="hub", hub_id=f"MCG-NJU/videomae-{name}", frame_spec=videomae_frame_spec(),
                     notes=notes or "Hugging Face VideoMAE directory; revision not pinned (the hub could not be "
                                    "reached when this was ported)")


_V2G_STEPS = ("fill in the VideoMAE V2 Download Request Form linked from docs/MODEL_ZOO.md of "
              "github.com/OpenGVLab/VideoMAEv2 (or request access to the gated Hugging Face repository "
              "OpenGVLab/VideoMAE2), download mae-g/vit_g_hybrid_pt_1200e_k710_ft.pth, and pass it as "
              "checkpoint=PATH: the official file is read as it is, no conversion")
_DISTILLED = "https://huggingface.co/OpenGVLab/VideoMAE2/resolve/main/distill"


def _distilled(name: str, file: str, width: str) -> WeightTag:
    return WeightTag(name=name, source="url", url=f"{_DISTILLED}/{file}", frame_spec=videomae_frame_spec(preprocessing="tad"),
                     notes=f"{width} distilled from ViT-g on K710 (docs/MODEL_ZOO.md, Distillation: a direct link); "
                           "official .pth format; sha256 not recorded (not reachable when this was ported)")


CARD = ModelCard(
    family="videomae",
    description="VideoMAE / VideoMAE V2 ViT as a feature extractor: fc_norm(mean of tokens), as the official "
                "forward_features (the TAL features of VideoMAEv2-g)",
    capabilities=(FEATURE_EXTRACTOR,),
    tags=(
        _hub("base"), _hub("large"), _hub("huge-finetuned-kinetics"),
        _hub("base-finetuned-kinetics"), _hub("large-finetuned-kinetics"),
        _hub("base-finetuned-ssv2"), _hub("base-short-finetuned-kinetics"),
        WeightTag(name="v2-g-k710-tad", source="user", where=_V2G_STEPS, args={"preprocessing": "tad"},
                  frame_spec=videomae_frame_spec(preprocessing="tad"),
                  notes="ViT-g/14 (1408 wide, 40 layers, 16 heads, 16 frames, 224): the hybrid-pre-trained, "
                        "K710-fine-tuned model behind the VideoMAEv2 TAL features (OpenGVLab/VideoMAEv2-TAL-Features); "
                        "CC-BY-NC-4.0, gated"),
        _distilled("v2-s-k710-distilled", "vit_s_k710_dl_from_giant.pth", "ViT-S/16 (384 wide, 6 heads)"),
        _distilled("v2-b-k710-distilled", "vit_b_k710_dl_from_giant.pth", "ViT-B/16 (768 wide, 12 heads)"),
    ),
    default_tag="base-finetuned-kinetics",
    frame_spec=videomae_frame_spec(),
    tokenizer="none (no text tower)",
    code_licence="CC-BY-NC-4.0 (MCG-NJU/VideoMAE; OpenGVLab/VideoMAEv2 code is MIT); Apache-2.0 (transformers "
                 "VideoMAEModel)",
    weights_licence="CC-BY-NC-4.0 (MCG-NJU/videomae-* and the VideoMAEv2 weights)",
    paper="Tong et al., VideoMAE, NeurIPS 2022; Wang et al., VideoMAE V2: Scaling Video Masked Autoencoders with "
          "Dual Masking, CVPR 2023",
    citation="tong2022videomae; wang2023videomaev2",
    checkpoint_formats=("Hugging Face VideoMAEForVideoClassification / VideoMAEForPreTraining / VideoMAEModel "
                        "directory",
                        "official VideoMAE / VideoMAEv2 fine-tuned .pth ({'model'|'module': state_dict} or bare)"),
    code_version="1",
)


class VideoMAEFeatures(TorchAdapter):
    """A VideoMAE encoder with the official feature pooling; see the module docstring."""

    name = "videomae"

    def __init__(self, encoder: Any, fc_norm: nn.Module | None, *, spec: FrameSpec, checkpoint: Path,
                 settings: str = ""):
        super().__init__(spec=spec, checkpoint=checkpoint, settings=settings)
        self.encoder = encoder
        self.fc_norm = fc_norm
        self.num_frames = int(encoder.config.num_frames)
        size = encoder.config.image_size
        self.image_size = int(size[0] if isinstance(size, (list, tuple)) else size)

    def tokens(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, N, D]`` encoder output tokens."""
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise ValueError(f"videomae expects clips [B, T, 3, H, W], got {tuple(clips.shape)}")
        if clips.shape[1] != self.num_frames:
            raise ValueError(f"videomae {self.checkpoint} takes exactly {self.num_frames} frames per clip (its "
                             f"position table), got {clips.shape[1]}")
        if tuple(clips.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"videomae {self.checkpoint} takes {self.image_size}x{self.image_size} frames, "
                             f"got {clips.shape[-2]}x{clips.shape[-1]}")
        return self.encoder(pixel_values=clips.to(self.device, torch.float32)).last_hidden_state

    def extract_features(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, D]``: ``fc_norm(mean of tokens)`` (fine-tuned), else the mean of the tokens."""
        pooled = self.tokens(clips).mean(dim=1)
        return (self.fc_norm(pooled) if self.fc_norm is not None else pooled).float()


def official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official fine-tuned state dict renamed onto ``VideoMAEModel`` (``fc_norm.*`` and ``head.*`` kept
    as they are): the fused ``qkv`` split into query/key/value, ``q_bias``/``v_bias`` as their biases."""
    out = remap_keys({k: v for k, v in state.items() if ".attn.qkv." not in k and not k.endswith(("q_bias", "v_bias"))},
                     _REMAP)
    for key, value in state.items():
        if key.endswith(".attn.qkv.weight"):
            index = key.split(".")[1]
            prefix = f"encoder.layer.{index}.attention.attention."
            query, key_weight, value_weight = value.chunk(3, dim=0)
            out[prefix + "query.weight"], out[prefix + "key.weight"] = query, key_weight
            out[prefix + "value.weight"] = value_weight
            for name, target in (("q_bias", "query"), ("v_bias", "value")):
                bias = state.get(f"blocks.{index}.attn.{name}")
                if bias is not None:
                    out[prefix + f"{target}.bias"] = bias
    return out


def _official(path: Path, frames: int | None, image_size: int | None, num_heads: int | None,
              preprocessing: str) -> VideoMAEFeatures:
    checkpoint = unwrap_state_dict(read_checkpoint(path, family="videomae"), keys=("model", "module"))
    state = checkpoint.state_dict
    if any(key.startswith(("encoder.", "decoder.")) for key in state):
        raise InputError("is a VideoMAE pre-training checkpoint (encoder./decoder. keys); videomae reads the "
                         "fine-tuned files (patch_embed / blocks / fc_norm), or a Hugging Face directory",
                         path=path, field=_FIELD)
    require_shapes(state, {"patch_embed.proj.weight": 5, "blocks.0.attn.qkv.weight": 2, "blocks.0.mlp.fc1.weight": 2,
                           "fc_norm.weight": 1}, path, "videomae (official VideoMAEv2 ViT)")
    width, _, tubelet, patch, _ = state["patch_embed.proj.weight"].shape
    heads = num_heads or OFFICIAL_HEADS.get(int(width))
    if heads is None or width % heads:
        raise InputError(f"the head count of a {width}-wide VideoMAE is not known (the file does not hold it): pass "
                         f"num_heads=N dividing {width}", path=path, field="--model-args")
    from transformers import VideoMAEConfig

    config = VideoMAEConfig(image_size=image_size or 224, patch_size=int(patch), num_frames=frames or 16,
                            tubelet_size=int(tubelet), hidden_size=int(width),
                            num_hidden_layers=count_blocks(state, "blocks."), num_attention_heads=int(heads),
                            intermediate_size=int(state["blocks.0.mlp.fc1.weight"].shape[0]), layer_norm_eps=1e-6,
                            qv_bias="blocks.0.attn.q_bias" in state, use_mean_pooling=True)
    encoder = transformers_class("VideoMAEModel", "videomae", path)(config).eval()
    fc_norm = nn.LayerNorm(int(width), eps=1e-6)
    renamed = official_state_dict(state)
    wrapper = nn.Module()
    wrapper.encoder, wrapper.fc_norm = encoder, fc_norm
    load_strict(wrapper, {(k if k.startswith(("fc_norm.", "head.")) else f"encoder.{k}"): v
                          for k, v in renamed.items()}, path, family="videomae", ignore_unexpected=("head.",))
    spec = videomae_frame_spec(config.num_frames, config.image_size, preprocessing)
    return VideoMAEFeatures(encoder, fc_norm, spec=spec, checkpoint=path,
                            settings=f"heads={heads};frames={config.num_frames};size={config.image_size}")


def _hugging_face(path: Path, preprocessing: str) -> VideoMAEFeatures:
    config = read_hf_config(path, "videomae", ("videomae",))
    architectures = [name for name in (config.get("architectures") or ()) if name in _HF_CLASSES]
    cls = transformers_class(architectures[0] if architectures else "VideoMAEModel", "videomae", path)
    net = load_hf_pretrained(cls, path, "videomae")
    encoder = getattr(net, "videomae", net)
    fc_norm = getattr(net, "fc_norm", None)
    size = encoder.config.image_size
    image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
    spec = videomae_frame_spec(int(encoder.config.num_frames), image_size, preprocessing, preprocessor_config(path))
    return VideoMAEFeatures(encoder, fc_norm, spec=spec, checkpoint=path)


@register_model("videomae", card=CARD)
def videomae(checkpoint: str | os.PathLike | None = None, preprocessing: str | None = None,
             frames: int | None = None, image_size: int | None = None, num_heads: int | None = None
             ) -> VideoMAEFeatures:
    """VideoMAE features from a Hugging Face directory or an official VideoMAE(v2) fine-tuned ``.pth``.

    ``preprocessing``: ``classification`` (the processor's crop and ImageNet statistics; default for
    directories) or ``tad`` (VideoMAEv2's TAD feature script: squash to 224, [0, 1]; default for
    official files). ``frames``, ``image_size`` and ``num_heads`` are for official files only (the file
    holds none of them; defaults 16, 224 and the official head count for the width).
    """
    path = require_checkpoint("videomae", checkpoint)
    if preprocessing is not None and preprocessing not in PREPROCESSING:
        raise InputError(f"videomae: preprocessing must be one of {', '.join(PREPROCESSING)}, got {preprocessing!r}",
                         field="--model-args")
    for name, value in (("frames", frames), ("image_size", image_size), ("num_heads", num_heads)):
        if value is not None:
            positive_int("videomae", name, value)
    if path.is_file() and not (path.parent / "config.json").is_file():
        return _official(path, frames, image_size, num_heads, preprocessing or "tad")
    directory = hf_model_directory(path, "videomae")
    given = [name for name, value in (("frames", frames), ("image_size", image_size), ("num_heads", num_heads))
             if value is not None]
    if given:
        raise InputError(f"videomae: {', '.join(given)} are read from a Hugging Face directory's config.json, not "
                         "given", path=directory, field="--model-args")
    return _hugging_face(directory, preprocessing or "classification")
