"""Reading InstrAction weights: the release's ``epochNNNN.pth``, our own saved files, and a ViCLIP backbone.

The release saves ``{epoch, global_step, model, optimizer, scheduler, scaler, args, config}``
(``model/utils/checkpoint.py``), ``model`` being the state dict of ``InstrAct`` and ``config`` the
resolved ``config.yaml`` as a dict. Our recipe saves ``{'model', 'config', 'recipe': 'instraction'}``
with ``config`` the fields of `InstrActionConfig`. Both load through `load_instraction_net`: every
size comes from the tensors (backbone as ViCLIP reads it; Perceiver width, depth, latents and
feed-forward width; decoder width, depth, vocabulary, key width); only head counts, which a weight
matrix cannot tell apart from head width, come from the saved config (else the release's 8).

A ViCLIP checkpoint (``{'model': ...}`` with ``vision_encoder.*``, ``text_encoder.*``, ``temp``)
initialises the backbone as the release's ``InternVideoAdapter.load_checkpoint`` does: the temporal
table linearly interpolated to the clip length (``align_corners=False``, in both directions),
``temp`` becoming ``temperature``; the Perceiver and decoder start fresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from instract_eval.errors import InputError

from ..core.checkpoints import Checkpoint, load_strict, read_checkpoint, require_keys, unwrap_state_dict
from ..core.shapes import count_blocks, require_shapes
from ..video_text.viclip import ViclipDimensions
from .config import InstrActionConfig
from .network import DecoderDims, InstrActionDims, InstrActionNet, PerceiverDims

__all__ = ["FAMILY", "interpolate_temporal", "read_instraction", "is_official_payload", "config_from_payload",
           "dims_from_state_dict", "load_instraction_net", "init_from_viclip", "state_kind"]

FAMILY = "instraction"
TEMPORAL_KEY = "vision_encoder.temporal_positional_embedding"
_BACKBONE_KEYS = ("vision_encoder.conv1.weight", TEMPORAL_KEY, "text_encoder.token_embedding.weight")
_SIZE_KEYS = {"vision_encoder.conv1.weight": 5, "vision_encoder.class_embedding": 1,
              "vision_encoder.positional_embedding": 2, TEMPORAL_KEY: 3, "vision_encoder.proj": 2,
              "text_encoder.token_embedding.weight": 2, "text_encoder.positional_embedding": 2,
              "text_encoder.ln_final.weight": 1, "text_encoder.text_projection": 2}
_HEAD_FIELDS = ("perceiver_heads", "perceiver_dim_head", "decoder_heads", "decoder_dim_head")
_CONFIG_FIELDS = {field.name for field in dataclasses.fields(InstrActionConfig)}


def interpolate_temporal(table: torch.Tensor, frames: int) -> torch.Tensor:
    """A ``[1, R, D]`` temporal table resized to ``frames`` rows by linear interpolation
    (``align_corners=False``), fewer rows as well as more: the release's rule."""
    if table.shape[1] == frames:
        return table
    return F.interpolate(table.float().transpose(1, 2), size=frames, mode="linear",
                         align_corners=False).transpose(1, 2).to(table.dtype).contiguous()


def read_instraction(path: str | os.PathLike) -> Checkpoint:
    """The file's state dict (under ``model``) and its other entries, read safely; a safetensors
    file's ``config`` metadata (what `write_packaged` stores) becomes ``payload['config']``."""
    loaded = unwrap_state_dict(read_checkpoint(path, family=FAMILY))
    saved = loaded.payload.get("config")
    if isinstance(saved, Mapping) and "model_name" in saved and isinstance(saved.get("model"), Mapping):
        loaded.payload["config"] = dict(saved["model"])   # a training-loop checkpoint: its model section
    if loaded.format == "safetensors":
        loaded.payload.update(_safetensors_config(loaded.path))
        loaded.state_dict = {key: value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
                             for key, value in loaded.state_dict.items()}
    return loaded


PACKAGED_FORMAT = "instract-eval/instraction/v1"


def _safetensors_config(path: os.PathLike) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata:
        return {}
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError:
        raise InputError("the metadata entry 'config' is not JSON", path=path, field="config") from None
    return {"config": config, "recipe": metadata.get("recipe")}


def write_packaged(net: InstrActionNet, config: InstrActionConfig, path: str | os.PathLike) -> None:
    """The evaluation weights as a small safetensors file: floating tensors in fp16, the MAM decoder
    (a training head) left out, the config (head counts included) in the metadata. This is how the
    shipped ``instraction-synth`` is stored; ``create_model("instraction", checkpoint=path)`` loads it."""
    from safetensors.torch import save

    from instract_eval.files import write_atomic

    state = {key: (value.detach().cpu().to(torch.float16) if value.is_floating_point() else value.detach().cpu())
             .contiguous() for key, value in net.state_dict().items() if not key.startswith("text_decoder.")}
    metadata = {"format": PACKAGED_FORMAT, "recipe": FAMILY,
                "config": json.dumps(dataclasses.asdict(config), sort_keys=True)}
    write_atomic(path, save(state, metadata=metadata))


def state_kind(state: Mapping[str, torch.Tensor]) -> str:
    """``"instraction"`` (a whole model: its ``temperature``), ``"viclip"`` (a backbone: ``temp``) or ``""``."""
    if not all(key in state for key in _BACKBONE_KEYS):
        return ""
    if "temperature" in state:
        return "instraction"
    return "viclip"


def is_official_payload(payload: Mapping[str, Any]) -> bool:
    """A release ``epochNNNN.pth`` payload: a ``model`` state dict of InstrAct beside its training state."""
    model = payload.get("model")
    return (isinstance(model, Mapping) and state_kind(model) == "instraction"
            and all(key in payload for key in ("epoch", "global_step", "optimizer")))


def _section(mapping: Any, *names: str) -> Mapping[str, Any]:
    for name in names:
        mapping = mapping.get(name) if isinstance(mapping, Mapping) else None
    return mapping if isinstance(mapping, Mapping) else {}


def config_from_payload(payload: Mapping[str, Any], base: InstrActionConfig | None = None) -> InstrActionConfig:
    """The `InstrActionConfig` a file was trained with: ours as saved, the release's translated from its
    ``config`` (config.yaml) and ``args`` (switches); fields neither names keep ``base``'s values."""
    base = base or InstrActionConfig()
    saved = payload.get("config")
    if isinstance(saved, Mapping) and saved and set(saved) <= _CONFIG_FIELDS:
        return dataclasses.replace(base, **dict(saved))
    values: dict[str, Any] = {}
    model = _section(saved, "model")
    data = _section(saved, "data")
    perceiver = _section(model, "action_perceiver")
    decoder = _section(model, "multimodal_decoder")
    dtw = _section(model, "dtw")
    weights = _section(model, "loss_weights")
    table = {
        "temperature_init": model.get("temperature"), "temperature_min": model.get("temperature_min"),
        "action_mix_init": model.get("action_mix_init"), "distill_alpha_init": model.get("distill_alpha_init"),
        "max_negatives": data.get("max_negatives"), "max_verbs": data.get("max_verbs"),
        "context_length": data.get("max_text_length"), "num_frames": data.get("num_frames"),
        "fps": data.get("fps"), "min_time": data.get("min_time"), "uniform_window": data.get("uniform_window"),
        "image_size": _section(saved, "backbone").get("input_resolution"),
        "perceiver_heads": perceiver.get("heads"), "perceiver_dim_head": perceiver.get("dim_head"),
        "perceiver_depth": perceiver.get("depth"), "num_latents": perceiver.get("num_latents"),
        "perceiver_ff_mult": perceiver.get("ff_mult"), "temporal_embedding": perceiver.get("add_temporal_embedding"),
        "decoder_depth": decoder.get("multimodal_depth"), "decoder_dim_head": decoder.get("dim_head"),
        "decoder_ff_mult": decoder.get("ff_mult"), "vocab_size": decoder.get("num_tokens"),
        "temporal_dropout": perceiver.get("temporal_dropout"),
        "local_temporal_attention": perceiver.get("local_temporal_attention"),
        "decoder_heads": decoder.get("heads"), "pad_id": decoder.get("pad_id"),
        "mask_embedding_std": decoder.get("mask_embedding_std"),
        "dtw_margin": dtw.get("margin"), "dtw_order_weight": dtw.get("order_weight"), "dtw_scale": dtw.get("scale"),
        "vtc_weight": weights.get("vtc"), "hn_weight": weights.get("hard_negative"), "dtw_weight": weights.get("dtw"),
        "mam_weight": weights.get("mam"),
        "drop_path_rate": _section(saved, "backbone").get("drop_path_rate"),
        "unfreeze_last_vision_blocks": _section(saved, "finetune", "vision").get("unfreeze_last_blocks"),
        "freeze_temporal_position": _section(saved, "finetune", "vision").get("freeze_temporal_position"),
        "freeze_spatial_position": _section(saved, "finetune", "vision").get("freeze_spatial_position"),
        "freeze_patch_embedding": _section(saved, "finetune", "vision").get("freeze_patch_embedding"),
        "freeze_text": _section(saved, "finetune", "text").get("freeze"),
        "unfreeze_last_text_blocks": _section(saved, "finetune", "text").get("unfreeze_last_blocks"),
        "unfreeze_token_embedding": _section(saved, "finetune", "text").get("unfreeze_token_embedding"),
        "lr_backbone": _section(saved, "finetune", "lr_multiplier").get("backbone"),
        "lr_embeddings": _section(saved, "finetune", "lr_multiplier").get("embeddings"),
        "lr_action_modules": _section(saved, "finetune", "lr_multiplier").get("action_modules"),
    }
    values.update({key: value for key, value in table.items() if value is not None})
    args = payload.get("args")
    args = vars(args) if hasattr(args, "__dict__") and not isinstance(args, Mapping) else args
    if isinstance(args, Mapping) and args:
        full = bool(args.get("use_instract", False))
        values["use_hard_negatives"] = full or bool(args.get("use_hard_negatives", False))
        values["use_dtw"] = full or bool(args.get("use_dtw", False))
        values["use_mam"] = full or bool(args.get("use_mam", False))
        values["use_action_perceiver"] = full or bool(args.get("use_action_perceiver", False))
        values["freeze_backbone"] = bool(args.get("freeze_backbone", False))
        if args.get("hard_negative_type") is not None:
            values["hard_negative_type"] = args["hard_negative_type"]
    return dataclasses.replace(base, **values)


def _require_divides(inner: int, heads: int, key: str, source: str | os.PathLike) -> int:
    if heads < 1 or inner % heads:
        raise InputError(f"{key} has {inner} output channels, not divisible into {heads} heads (give the head count)",
                         path=source, field="checkpoint")
    return inner // heads


def dims_from_state_dict(state: Mapping[str, torch.Tensor], source: str | os.PathLike, config: InstrActionConfig, *,
                         vision_heads: int | None = None, text_heads: int | None = None) -> InstrActionDims:
    """Every size of the modules the file holds; modules the config enables but the file lacks get
    the config's fresh sizes."""
    require_shapes(state, _SIZE_KEYS, source, FAMILY)
    backbone = ViclipDimensions.from_state_dict(state, source, vision_heads=vision_heads, text_heads=text_heads)
    fresh = InstrActionDims.fresh(backbone, config)
    perceiver = fresh.perceiver
    if "action_perceiver.latents" in state:
        latents = state["action_perceiver.latents"]
        query = state.get("action_perceiver.layers.0.0.to_q.weight")
        context = state.get("action_perceiver.layers.0.0.norm_context.weight")
        hidden = state.get("action_perceiver.layers.0.1.net.1.weight")
        if query is None or context is None or hidden is None:
            raise InputError("has action_perceiver.latents but not its first layer (layers.0.*)", path=source,
                             field="checkpoint")
        dim = latents.shape[1]
        perceiver = PerceiverDims(
            dim=dim, context_dim=context.shape[0], depth=count_blocks(state, "action_perceiver.layers."),
            heads=config.perceiver_heads,
            dim_head=_require_divides(query.shape[0], config.perceiver_heads, "action_perceiver.layers.0.0.to_q",
                                      source),
            num_latents=latents.shape[0], ff_mult=max(1, hidden.shape[0] // dim),
            temporal_embedding="action_perceiver.temporal_embedding" in state,
            local_attention=config.local_temporal_attention)
    decoder = fresh.decoder
    if "text_decoder.mask_action_embedding" in state:
        kv = state.get("text_decoder.multimodal_layers.0.1.to_kv.weight")
        query = state.get("text_decoder.multimodal_layers.0.1.to_q.weight")
        ff = state.get("text_decoder.multimodal_layers.0.1.ff.2.weight")
        head = state.get("text_decoder.to_logits.1.weight")
        if kv is None or query is None or ff is None or head is None:
            raise InputError("has text_decoder.mask_action_embedding but not its layers (multimodal_layers.0.*, "
                             "to_logits.1)", path=source, field="checkpoint")
        dim = state["text_decoder.mask_action_embedding"].shape[0]
        dim_head = kv.shape[0] // 2
        decoder = DecoderDims(dim=dim, context_dim=kv.shape[1], vocab_size=head.shape[0],
                              depth=count_blocks(state, "text_decoder.multimodal_layers."),
                              heads=max(1, query.shape[0] // dim_head), dim_head=dim_head,
                              ff_mult=max(1, ff.shape[1] // dim))
    projection = None
    if "text_action_projection.weight" in state:
        projection = tuple(state["text_action_projection.weight"].shape)
    return InstrActionDims(backbone, perceiver, decoder, projection)


def _modules_config(state: Mapping[str, torch.Tensor], config: InstrActionConfig) -> InstrActionConfig:
    """For evaluation: the modules the file has decide what is built (a 'ViCLIP + HNs' file has no Perceiver)."""
    has_perceiver = "action_perceiver.latents" in state
    has_decoder = "text_decoder.mask_action_embedding" in state
    return dataclasses.replace(config, use_action_perceiver=has_perceiver, use_mam=has_decoder,
                               use_dtw=config.use_dtw and has_perceiver)


def load_instraction_net(path: str | os.PathLike, *, frames: int | None = None, config: InstrActionConfig | None = None,
                         vision_heads: int | None = None, text_heads: int | None = None,
                         loaded: Checkpoint | None = None) -> InstrActionNet:
    """A whole InstrAction model from an official ``epochNNNN.pth`` or our saved file, strictly.

    ``frames``: the clip length to build for (default the file's temporal table, 16); another count
    interpolates the table as the release does when it builds for a clip length. ``config``: what to
    train with (the recipe); None for evaluation, where the file's own config and modules decide.
    """
    loaded = loaded or read_instraction(path)
    state = dict(loaded.state_dict)
    if state_kind(state) != "instraction":
        if state_kind(state) == "viclip":
            raise InputError("is a ViCLIP backbone, not an InstrAction model (no temperature, Perceiver or decoder); "
                             "evaluate it with --model viclip, or train from it with init=PATH", path=loaded.path,
                             field="checkpoint")
        require_keys(loaded, (*_BACKBONE_KEYS, "temperature"), family=FAMILY)
    require_shapes(state, _SIZE_KEYS, loaded.path, FAMILY)
    saved = loaded.payload.get("config")
    if isinstance(saved, Mapping) and saved and set(saved) <= _CONFIG_FIELDS:
        # Our own file records the head counts it was built with (the release's are width // 64).
        vision_heads = vision_heads or saved.get("vision_heads")
        text_heads = text_heads or saved.get("text_heads")
    if config is None:
        config = _modules_config(state, config_from_payload(loaded.payload))
    elif loaded.payload.get("config"):
        # Training from this file: its head counts (which its tensors cannot tell) override the config's.
        saved_config = config_from_payload(loaded.payload, base=config)
        config = dataclasses.replace(config, **{name: getattr(saved_config, name) for name in _HEAD_FIELDS})
    dims = dims_from_state_dict(state, loaded.path, config, vision_heads=vision_heads, text_heads=text_heads)
    count = frames or state[TEMPORAL_KEY].shape[1]
    # The release builds the model for the clip length and interpolates the table to it on load.
    state[TEMPORAL_KEY] = interpolate_temporal(state[TEMPORAL_KEY], count)
    dims = dataclasses.replace(dims, backbone=dataclasses.replace(dims.backbone, checkpoint_frames=count))
    net = InstrActionNet(dims, config, frames=count)
    skip = tuple(prefix for prefix, built in (("action_perceiver.", net.action_perceiver is not None),
                                              ("text_decoder.", net.text_decoder is not None),
                                              ("text_action_projection.", dims.projection is not None)) if not built)
    built_fresh = tuple(prefix for prefix, present in (("action_perceiver.", "action_perceiver.latents" in state),
                                                       ("text_decoder.", "text_decoder.mask_action_embedding" in state),
                                                       ("action_mix", "action_mix" in state),
                                                       ("distill_alpha", "distill_alpha" in state)) if not present)
    load_strict(net, state, loaded.path, family=FAMILY, ignore_unexpected=skip, ignore_missing=built_fresh)
    return net


def init_from_viclip(path: str | os.PathLike, config: InstrActionConfig, *, vision_heads: int | None = None,
                     text_heads: int | None = None, loaded: Checkpoint | None = None) -> InstrActionNet:
    """A trainable InstrAction model on a ViCLIP backbone (Perceiver and decoder fresh), as the release
    starts from ``ViCLIP-B_InternVid-200M.pth``."""
    loaded = loaded or read_instraction(path)
    state = {key: value for key, value in loaded.state_dict.items()
             if key.startswith(("vision_encoder.", "text_encoder."))}
    require_keys(loaded, _BACKBONE_KEYS, family="ViCLIP")
    require_shapes(state, _SIZE_KEYS, loaded.path, "ViCLIP")
    context = state["text_encoder.positional_embedding"].shape[0]
    if context != config.context_length:
        raise InputError(f"has a {context}-position text table; InstrAction's text is {config.context_length} tokens "
                         "(context_length)", path=loaded.path, field="checkpoint")
    state[TEMPORAL_KEY] = interpolate_temporal(state[TEMPORAL_KEY], config.num_frames)
    backbone = ViclipDimensions.from_state_dict(state, loaded.path, vision_heads=vision_heads, text_heads=text_heads)
    net = InstrActionNet(InstrActionDims.fresh(backbone, config), config, frames=config.num_frames)
    load_strict(net, state, loaded.path, family="ViCLIP",
                ignore_missing=("temperature", "action_perceiver.", "action_mix", "distill_alpha", "text_decoder."))
    temp = loaded.state_dict.get("temp")
    if temp is not None and temp.numel() == 1:
        with torch.no_grad():
            net.temperature.fill_(float(temp))   # the release maps ViCLIP's temp onto temperature
    return net
