"""Training InstrAction (``instract-eval train instraction``): the release's recipe on the shared loop.

From the release (``model/main.py``, ``train.py``, ``models/build.py``,
``models/adapters/internvideo.py``, ``args.py``):

- Start: a ViCLIP-B/16 checkpoint (backbone; the temporal table interpolated to 16 frames, ViCLIP's
  ``temp`` as ``temperature``; Perceiver and decoder fresh) or a whole ``epochNNNN.pth``. Without
  ``init`` the backbone is random (CLIP's initialisation; for synthetic runs only).
- Fine-tuning policy: the vision tower's last 2 blocks, ``ln_pre``, ``ln_post``, ``proj`` and
  temporal table train; its patch embedding, spatial table, class token and first blocks, and the
  whole text tower, are frozen. The Perceiver, decoder, temperature and the two mixes train.
- Optimiser groups: **one per parameter**, in ``model.named_parameters()`` order of the release
  (so a release optimizer state loads into ours). Learning-rate multiple: x10 for
  ``action_perceiver*``, ``text_decoder*``, ``action_mix``, ``distill_alpha`` (matched first, so
  ``action_perceiver.latents`` is x10), else x0.1 when the name contains ``positional_embedding``,
  ``token_embedding`` or ``latents``, else x1. No weight decay for biases and for the names of the
  release's ``no_weight_decay`` set (temperature, the mixes, the mask embedding, the vision
  tower's class token and spatial/temporal tables); everything else decays, LayerNorm gains too.
- AdamW betas (0.9, 0.98), eps 1e-6, lr 1e-4, weight decay 0.05, linear warmup of 1000 steps then
  cosine to 0, batch 72, 20 epochs, gradient clipping at 1.0, seed 42 (``default_train``). The
  release trains in fp16 autocast on GPUs; ``precision`` stays the loop's fp32 here so a CPU run
  works as is (set ``train.precision: fp16`` on a GPU for the release's setting).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.files import write_atomic
from instract_eval.training.recipe import DataSource, ParamGroup, TrainingRecipe, register_recipe

from ..core.checkpoints import key_report
from ..video_text.viclip import ViclipDimensions
from .checkpoint import (FAMILY, TEMPORAL_KEY, init_from_viclip, interpolate_temporal, is_official_payload,
                         load_instraction_net, read_instraction, state_kind)
from .config import InstrActionConfig
from .network import InstrActionDims, InstrActionNet, official_parameter_order

__all__ = ["InstrActionRecipe", "trainable_names", "no_weight_decay_names", "lr_multiple", "fresh_net"]

ANNOTATIONS = "annotations.json"
VIDEOS = "videos"


def _unwrap(module: nn.Module) -> InstrActionNet:
    module = getattr(module, "module", module)
    if not isinstance(module, InstrActionNet):
        raise TypeError(f"the instraction recipe trains an InstrActionNet, got {type(module).__name__}")
    return module


def fresh_net(config: InstrActionConfig) -> InstrActionNet:
    """A random model of the config's sizes (no checkpoint). The zero tables of the ViCLIP port that
    a checkpoint always fills get CLIP's initialisation; the temporal table stays zero (the release's)."""
    backbone = ViclipDimensions(
        embed_dim=config.embed_dim, vision_width=config.vision_width, vision_layers=config.vision_layers,
        vision_heads=config.vision_heads, patch_size=config.patch_size, image_size=config.image_size,
        checkpoint_frames=config.num_frames, context_length=config.context_length, vocab_size=config.vocab_size,
        text_width=config.text_width, text_layers=config.text_layers, text_heads=config.text_heads)
    net = InstrActionNet(InstrActionDims.fresh(backbone, config), config, frames=config.num_frames)
    vision, text = net.vision_encoder, net.text_encoder
    with torch.no_grad():
        scale = config.vision_width ** -0.5
        vision.class_embedding.normal_(std=scale)
        vision.positional_embedding.normal_(std=scale)
        vision.proj.normal_(std=scale)
        text.token_embedding.weight.normal_(std=0.02)
        text.positional_embedding.normal_(std=0.01)
        text.text_projection.normal_(std=config.text_width ** -0.5)
    return net


def trainable_names(net: InstrActionNet, config: InstrActionConfig) -> set[str]:
    """The parameters the release's ``configure_finetuning`` leaves trainable."""
    names: set[str] = set()
    vision_blocks = net.dims.backbone.vision_layers
    text_blocks = net.dims.backbone.text_layers
    first_vision = vision_blocks - min(config.unfreeze_last_vision_blocks, vision_blocks)
    first_text = text_blocks - min(config.unfreeze_last_text_blocks, text_blocks)
    for name, _ in net.named_parameters():
        top, _, rest = name.partition(".")
        if config.freeze_backbone and top in ("vision_encoder", "text_encoder"):
            continue
        if top == "vision_encoder":
            member = rest.split(".")[0]
            if member in ("ln_pre", "ln_post", "proj"):
                names.add(name)
            elif member == "temporal_positional_embedding" and not config.freeze_temporal_position:
                names.add(name)
            elif member == "positional_embedding" and not config.freeze_spatial_position:
                names.add(name)
            elif member == "conv1" and not config.freeze_patch_embedding:
                names.add(name)
            elif member == "transformer" and int(rest.split(".")[2]) >= first_vision:
                names.add(name)
        elif top == "text_encoder":
            if config.freeze_text:
                continue
            member = rest.split(".")[0]
            if member in ("ln_final", "text_projection"):
                names.add(name)
            elif member == "token_embedding" and config.unfreeze_token_embedding:
                names.add(name)
            elif member == "transformer" and config.unfreeze_last_text_blocks > 0 and int(rest.split(".")[2]) >= first_text:
                names.add(name)
        else:
            names.add(name)
    return names


def no_weight_decay_names(net: InstrActionNet) -> set[str]:
    """The release's ``no_weight_decay()``: matched by exact name (so ``text_encoder.token_embedding``,
    a module name, never matches its ``.weight``: the release's own quirk, kept)."""
    names = {"temperature", "action_mix", "distill_alpha",
             "vision_encoder.positional_embedding", "vision_encoder.class_embedding",
             "vision_encoder.temporal_positional_embedding",
             "text_encoder.token_embedding", "text_encoder.positional_embedding"}
    if net.text_decoder is not None:
        names.add("text_decoder.mask_action_embedding")
    return names


def lr_multiple(name: str, config: InstrActionConfig) -> float:
    """The release's learning-rate multiple of a parameter, rules in the release's order."""
    if name.startswith(("action_perceiver", "text_decoder")) or name in ("action_mix", "distill_alpha"):
        return config.lr_action_modules
    if any(token in name for token in ("positional_embedding", "token_embedding", "latents")):
        return config.lr_embeddings
    return config.lr_backbone


def _example_options(config: InstrActionConfig):
    from .data import BatchOptions

    return BatchOptions(num_frames=config.num_frames, size=config.image_size, fps=config.fps, min_time=config.min_time,
                        context=config.uniform_window, max_hard_negatives=config.max_negatives,
                        max_verbs=config.max_verbs, context_length=config.context_length,
                        hard_negative_type=config.hard_negative_type)


@functools.lru_cache(maxsize=8)
def _split_root(data: DataSource) -> Path:
    """The split's directory; the synthetic one is generated (once, then reused) under ``ROOT/instract``."""
    if data.synth:
        from instract_eval.synth.training import ensure_instract_training

        return Path(ensure_instract_training(data.root / "instract", seed=data.seed).root)
    return Path(data.root)


def recorded_config(net: InstrActionNet, config: InstrActionConfig) -> InstrActionConfig:
    """``config`` with the head counts the network was actually built with (a file's own counts win
    over the config's when training starts from it, and the tensors cannot tell heads apart)."""
    dims = net.dims
    values = {"vision_heads": dims.backbone.vision_heads, "text_heads": dims.backbone.text_heads}
    if dims.perceiver is not None:
        values.update(perceiver_heads=dims.perceiver.heads, perceiver_dim_head=dims.perceiver.dim_head)
    if dims.decoder is not None:
        values.update(decoder_heads=dims.decoder.heads, decoder_dim_head=dims.decoder.dim_head)
    return dataclasses.replace(config, **values)


def _lacks_modules(state: Mapping[str, torch.Tensor], config: InstrActionConfig) -> bool:
    """Whether an InstrAction file lacks a module this config trains (an ablation without Perceiver
    or decoder, e.g. the plain-contrastive pre-training of the synthetic backbone)."""
    has = lambda prefix: any(key.startswith(prefix) for key in state)  # noqa: E731
    return (config.perceiver_enabled and not has("action_perceiver.")) or (config.use_mam and not has("text_decoder."))


def _init_from_ablation(init: Path, config: InstrActionConfig, loaded: Any) -> InstrActionNet:
    """Train the full model from an ablation's file: its backbone and temperature, the missing modules
    fresh (what starting from a ViCLIP backbone does, with the file's own head counts)."""
    saved = loaded.payload.get("config") if isinstance(loaded.payload.get("config"), Mapping) else {}
    for name in ("vision_heads", "text_heads"):
        if name in saved and saved[name] != getattr(config, name):
            raise InputError(f"was trained with {name} {saved[name]}, the config says {getattr(config, name)}: set "
                             f"model.{name}: {saved[name]} (the weights cannot tell heads apart)", path=init,
                             field="--init")
    net = init_from_viclip(init, config, loaded=loaded, vision_heads=config.vision_heads,
                           text_heads=config.text_heads)
    with torch.no_grad():
        net.temperature.copy_(loaded.state_dict["temperature"].reshape(net.temperature.shape))
    return net


@register_recipe
class InstrActionRecipe(TrainingRecipe):
    """InstrAction as the release trains it; see the module docstring."""

    name = FAMILY
    model_config = InstrActionConfig
    evaluation_model = FAMILY
    description = ("InstrAction: ViCLIP-B/16 + Action Perceiver; VTC with verb-guided distillation + hard-negative "
                   "NCE + 10 x DTW-Align + MAM (the release's recipe)")
    default_train = {"lr": 1e-4, "weight_decay": 0.05, "betas": (0.9, 0.98), "eps": 1e-6, "warmup_steps": 1000,
                     "schedule": "cosine", "min_lr_ratio": 0.0, "batch_size": 72, "epochs": 20, "grad_clip": 1.0,
                     "seed": 42}
    # DTW has no term for a batch without verbs and MAM none without a maskable word: unused parameters.
    find_unused_parameters = True

    def build(self, config: InstrActionConfig, init: Path | None = None) -> nn.Module:
        """The model to train: from ``init`` (an InstrAction file or a ViCLIP backbone) or random."""
        if init is None:
            net = fresh_net(config)
        else:
            loaded = read_instraction(init)
            kind = state_kind(loaded.state_dict)
            if kind == "instraction" and _lacks_modules(loaded.state_dict, config):
                net = _init_from_ablation(init, config, loaded)
            elif kind == "instraction":
                net = load_instraction_net(init, frames=config.num_frames, config=config, loaded=loaded)
            elif kind == "viclip":
                net = init_from_viclip(init, config, loaded=loaded)
            else:
                raise InputError("is neither an InstrAction checkpoint nor a ViCLIP backbone (it lacks "
                                 "vision_encoder.* / text_encoder.* weights)", path=init, field="--init")
        trainable = trainable_names(net, config)
        for name, parameter in net.named_parameters():
            parameter.requires_grad_(name in trainable)
        return net

    def parameter_groups(self, module: nn.Module, config: InstrActionConfig) -> list[ParamGroup]:
        """One group per trainable parameter, in the release's optimiser order (module docstring)."""
        net = _unwrap(module)
        trainable = trainable_names(net, config)
        no_decay = no_weight_decay_names(net)
        return [ParamGroup(name=name, params=[parameter], lr_scale=lr_multiple(name, config),
                           weight_decay=not (name in no_decay or name.endswith(".bias")))
                for name, parameter in official_parameter_order(net) if name in trainable]

    def training_items(self, config: InstrActionConfig, data: DataSource) -> Sequence[Any]:
        """The annotation items of ``ROOT/annotations.json`` (the official format; videos in ``ROOT/videos``)."""
        from instract_eval.data.instract_train import read_training_annotations

        root = _split_root(data)
        path = root / ANNOTATIONS if root.is_dir() else root
        return read_training_annotations(path)

    def make_example(self, item: Any, rng: random.Random, config: InstrActionConfig, data: DataSource) -> Any:
        """One item as the official loader makes it, every random choice from ``rng``."""
        from .data import make_example

        root = _split_root(data)
        videos = root / VIDEOS if root.is_dir() else root.parent / VIDEOS
        cache = self.__dict__.setdefault("_frame_cache", {}) if data.synth else None
        return make_example(item, rng, video_root=videos, options=_example_options(config), threads=1,
                            frame_cache=cache)

    def collate(self, examples: Sequence[Any]) -> dict[str, Any]:
        """The official batch dict (what PyTorch's default collate makes of the official examples)."""
        from .data import collate

        return collate(examples)

    def save_weights(self, module: nn.Module, config: InstrActionConfig, path: Path) -> None:
        """``{'model', 'config', 'recipe'}``: what ``create_model("instraction", checkpoint=path)`` loads."""
        net = _unwrap(module)
        buffer = io.BytesIO()
        torch.save({"model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                    "config": dataclasses.asdict(recorded_config(net, config)), "recipe": self.name}, buffer)
        write_atomic(path, buffer.getvalue())

    def accepts_checkpoint(self, payload: Mapping[str, Any]) -> bool:
        """Ours (``recipe: instraction``) and the release's ``epochNNNN.pth``."""
        return payload.get("recipe") == self.name or is_official_payload(payload)

    def load_state(self, module: nn.Module, payload: Mapping[str, Any]) -> None:
        """Load ``payload['model']`` (ours or the release's: the same names), every key and shape checked."""
        net = _unwrap(module)
        state = dict(payload["model"])
        table = state.get(TEMPORAL_KEY)
        rows = net.vision_encoder.temporal_positional_embedding.shape[1]
        if isinstance(table, torch.Tensor) and table.ndim == 3 and table.shape[1] != rows:
            state[TEMPORAL_KEY] = interpolate_temporal(table, rows)
        expected = {key: value.shape for key, value in net.state_dict().items()}
        problems = key_report(expected, state)
        if problems:
            raise InputError(f"does not fit the model being trained: {problems}", field="--resume")
        net.load_state_dict(state, strict=True)
