"""Training ActionFormer with the shared loop (`instract-eval train actionformer --data DIR`).

What the release's ``train.py`` does and where it lives here:

- Data (`instract_eval.adapters.tal.data`): ActivityNet-format ground truth + feature files,
  random truncation / cropping per item (every draw from the loop's per-item RNG, so a resumed run
  draws what an uninterrupted one draws), batches padded to ``max_seq_len``.
- Model and loss (`ActionFormerTrainer`): the network with dropout / drop path, centre-sampled
  targets (radius 1.5), focal + DIoU losses divided by the moving average of positives. That
  average is a buffer of the module, so it is in every checkpoint and a resume continues it.
- Model EMA (the release evaluates ``ModelEma(decay=0.999)``'s weights): the loop knows nothing
  of it, so the module keeps the averages as buffers and updates them from the weights *as they
  are at the next forward* (i.e. right after the optimizer step the release updates them at) and
  once more when weights are written, which a pending flag (also a buffer) keeps from counting
  a step twice. The result equals updating after every step; checkpoints and resume carry it.
- Optimizer (`parameter_groups`): AdamW; weights of convolutions decay, biases, LayerNorm weights,
  the regression and drop-path scales and relative positions do not (``make_optimizer``).
- Schedule: THUMOS14's 30 epochs after 5 warmup epochs, lr 1e-4, weight decay 0.05, batch 2,
  gradient clipping 1.0 (``default_train``). The loop's warmup is in steps: 500 = 5 epochs of the
  200 THUMOS14 validation videos at batch 2 (set ``train.warmup_steps`` for other data). Two small
  differences from the release remain: its warmup reaches the base rate one step earlier
  (``step / (warmup - 1)``), and its cosine ends at 1e-8 (``min_lr_ratio`` 1e-4 here).

Weights are written in the release's checkpoint layout (``state_dict`` and ``state_dict_ema`` with
``module.`` keys, so the release's ``eval.py`` could read them) plus ``labels`` and ``config``, and
the ``actionformer`` localizer evaluates them with ``checkpoint=PATH`` alone.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.files import write_atomic
from instract_eval.media.features import read_features
from instract_eval.training.recipe import DataSource, ParamGroup, TrainingRecipe, register_recipe

from .actionformer import FAMILY, ActionFormerDimensions, ActionFormerNet, ChannelLayerNorm
from .adapter import _weights_of
from .data import FeatureDataConfig, TALItem, crop_example, read_split
from .losses import LossNormalizer, actionformer_losses, batch_targets

__all__ = ["ActionFormerConfig", "ActionFormerTrainer", "ActionFormerRecipe"]


def _data_root(data: DataSource) -> Path:
    """The directory with ``annotations.json`` and ``features/``; for ``--data synth`` the synthetic
    TAL training split with its synth-temporal features, made once under ``ROOT/tal``."""
    if data.synth:
        from .synth import ensure_synth_tal_data

        return ensure_synth_tal_data(data.root / "tal", seed=data.seed)
    return Path(data.root)


@dataclass(frozen=True)
class ActionFormerConfig(FeatureDataConfig):
    """Every hyperparameter, defaulted as the release's THUMOS14 I3D config (``configs/thumos_i3d.yaml``
    over ``libs/core/config.py``); the data settings are `FeatureDataConfig`'s. ``input_dim`` /
    ``num_classes`` 0: taken from the data."""

    # network
    input_dim: int = 0
    num_classes: int = 0
    embd_dim: int = 512
    fpn_dim: int = 512
    head_dim: int = 512
    n_head: int = 4
    backbone_arch: tuple[int, int, int] = (2, 2, 5)
    scale_factor: int = 2
    embd_kernel_size: int = 3
    embd_with_ln: bool = True
    fpn_type: str = "identity"
    fpn_with_ln: bool = True
    fpn_start_level: int = 0
    head_num_layers: int = 3
    head_kernel_size: int = 3
    head_with_ln: bool = True
    mha_win_size: tuple[int, ...] = (19, 19, 19, 19, 19, 19)
    use_abs_pe: bool = False
    use_rel_pe: bool = False
    regression_range: tuple[tuple[float, float], ...] = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))
    # training
    center_sample: bool = True
    center_sample_radius: float = 1.5
    loss_weight: float = 1.0          # <= 0: balance reg against cls automatically
    cls_prior_prob: float = 0.01
    init_loss_norm: float = 100.0
    label_smoothing: float = 0.0
    dropout: float = 0.0
    droppath: float = 0.1
    ema_decay: float = 0.999          # 0 turns the model EMA off (then both entries hold the raw weights)

    def __post_init__(self) -> None:
        if self.ema_decay < 0 or self.ema_decay >= 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        self.check_data()

    def dimensions(self, input_dim: int, num_classes: int) -> ActionFormerDimensions:
        return ActionFormerDimensions(
            input_dim=input_dim, num_classes=num_classes, embd_dim=self.embd_dim, fpn_dim=self.fpn_dim,
            head_dim=self.head_dim, n_head=self.n_head, backbone_arch=self.backbone_arch,
            scale_factor=self.scale_factor, embd_kernel_size=self.embd_kernel_size, embd_with_ln=self.embd_with_ln,
            fpn_type=self.fpn_type, fpn_with_ln=self.fpn_with_ln, fpn_start_level=self.fpn_start_level,
            head_num_layers=self.head_num_layers, head_kernel_size=self.head_kernel_size,
            head_with_ln=self.head_with_ln, mha_win_size=_per_level(self.mha_win_size, self.backbone_arch[2] + 1),
            use_abs_pe=self.use_abs_pe, use_rel_pe=self.use_rel_pe, drop_path_scales=self.droppath > 0,
            max_seq_len=self.max_seq_len)


def _per_level(windows: tuple[int, ...], levels: int) -> tuple[int, ...]:
    return tuple(windows) * levels if len(windows) == 1 else tuple(windows)


def _ema_name(name: str) -> str:
    return name.replace(".", "__")


class ActionFormerTrainer(nn.Module):
    """The network, its loss, the loss normaliser and the model EMA, as one trainable module."""

    def __init__(self, net: ActionFormerNet, config: ActionFormerConfig, labels: Sequence[str]):
        super().__init__()
        self.net = net
        self.config = config
        self.labels = list(labels)
        self.register_buffer("loss_normalizer", torch.tensor(config.init_loss_norm, dtype=torch.float64))
        self.register_buffer("ema_pending", torch.tensor(False))
        self.ema = nn.Module()
        for name, parameter in net.named_parameters():
            self.ema.register_buffer(_ema_name(name), parameter.detach().clone())

    @torch.no_grad()
    def update_ema(self) -> None:
        """Fold the current weights into the averages if a step was taken since the last fold."""
        if not bool(self.ema_pending):
            return
        decay = self.config.ema_decay
        for name, parameter in self.net.named_parameters():
            average = getattr(self.ema, _ema_name(name))
            average.copy_(decay * average + (1.0 - decay) * parameter.detach())
        self.ema_pending.fill_(False)

    def ema_state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self.ema, _ema_name(name)).detach().clone() for name, _ in self.net.named_parameters()}

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.training:
            self.update_ema()
        out = self.net(batch["feats"], batch["mask"])
        classes, offsets = batch_targets(out.points, batch["segments"], batch["labels"], self.net.dims.num_classes,
                                         center_sample=self.config.center_sample,
                                         radius=self.config.center_sample_radius)
        normalizer = LossNormalizer(float(self.loss_normalizer))
        losses = actionformer_losses(out.masks, out.cls_logits, out.offsets, classes, offsets, normalizer,
                                     num_classes=self.net.dims.num_classes, loss_weight=self.config.loss_weight,
                                     label_smoothing=self.config.label_smoothing)
        if self.training:
            self.loss_normalizer.fill_(normalizer.value)
            self.ema_pending.fill_(True)
        positives = (classes.sum(-1) > 0) & torch.cat(out.masks, dim=1)
        # the normaliser moves from init_loss_norm towards the positives per batch, so the logged
        # losses are also given per positive point (comparable from step to step)
        per_positive = losses["final_loss"].detach() * normalizer.value / max(int(positives.sum()), 1)
        return {"total": losses["final_loss"], "cls_loss": losses["cls_loss"].detach(),
                "reg_loss": losses["reg_loss"].detach(), "loss_per_positive": per_positive,
                "loss_normalizer": torch.tensor(normalizer.value)}


@register_recipe
class ActionFormerRecipe(TrainingRecipe):
    name = FAMILY
    model_config = ActionFormerConfig
    evaluation_model = FAMILY
    description = "ActionFormer on precomputed features (ActivityNet-format ground truth + <video>.npy files)"
    default_train = {"lr": 1e-4, "weight_decay": 0.05, "batch_size": 2, "epochs": 35, "warmup_steps": 500,
                     "grad_clip": 1.0, "betas": (0.9, 0.999), "eps": 1e-8, "schedule": "cosine",
                     "min_lr_ratio": 1e-4}
    find_unused_parameters = False

    def __init__(self) -> None:
        self._classes: tuple[str, ...] = ()
        self._input_dim = 0

    # -- data

    def training_items(self, config: ActionFormerConfig, data: DataSource) -> Sequence[TALItem]:
        root = _data_root(data)
        split = read_split(root / config.annotations, root / config.features, config.train_split, fps=config.fps,
                           feat_stride=config.feat_stride, num_frames=config.num_frames,
                           suffix=config.feature_suffix)
        if config.num_classes and config.num_classes != len(split.class_names):
            raise InputError(f"model.num_classes is {config.num_classes} but the ground truth has "
                             f"{len(split.class_names)} classes", path=root / config.annotations, field="label")
        first = read_features(split.items[0].path, dtype=None)
        self._classes = split.class_names
        self._input_dim = config.input_dim or int(first.shape[1])
        return split.items

    def make_example(self, item: TALItem, rng: random.Random, config: ActionFormerConfig,
                     data: DataSource) -> Mapping[str, Any]:
        feats = read_features(item.path, dim=self._input_dim or None)
        offset = 0.5 * item.window / item.stride
        feats, segments, labels = crop_example(feats, item.segments, item.labels, rng, max_seq_len=config.max_seq_len,
                                               trunc_thresh=config.trunc_thresh, offset=offset,
                                               crop_ratio=config.crop_ratio)
        return {"feats": torch.from_numpy(np.ascontiguousarray(feats)), "segments": torch.from_numpy(segments),
                "labels": torch.from_numpy(labels)}

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Features padded to ``max_seq_len`` as ``[B, C, L]`` with a ``[B, 1, L]`` mask (the release's
        training ``preprocessing``); ground truth stays a list per video."""
        length = max(int(e["feats"].shape[0]) for e in examples)
        target = max(length, self._max_len)
        feats = torch.zeros(len(examples), examples[0]["feats"].shape[1], target)
        for row, example in enumerate(examples):
            feats[row, :, :example["feats"].shape[0]] = example["feats"].T
        lengths = torch.tensor([int(e["feats"].shape[0]) for e in examples])
        mask = (torch.arange(target)[None, :] < lengths[:, None])[:, None, :]
        return {"feats": feats, "mask": mask, "segments": [e["segments"] for e in examples],
                "labels": [e["labels"] for e in examples]}

    _max_len = 0

    # -- model

    def build(self, config: ActionFormerConfig, init: Path | None = None) -> nn.Module:
        if not self._classes:
            raise InputError("actionformer's classes come from the training data; read it first (training_items)",
                             field="--data")
        self._max_len = config.max_seq_len
        try:
            dims = config.dimensions(self._input_dim, len(self._classes))
            net = ActionFormerNet(dims, regression_range=config.regression_range, path_pdrop=config.droppath,
                                  proj_pdrop=config.dropout, prior_prob=config.cls_prior_prob)
        except ValueError as error:
            raise InputError(str(error), field="model") from None
        trainer = ActionFormerTrainer(net, config, self._classes)
        if init is not None:
            self._initialise(trainer, Path(init))
        return trainer

    def _initialise(self, trainer: ActionFormerTrainer, path: Path) -> None:
        """Start from a release checkpoint or our weights: ``state_dict`` into the network and
        ``state_dict_ema`` (when present) into the averages, every key and shape checked."""
        from ..core.checkpoints import load_strict, read_checkpoint

        checkpoint = read_checkpoint(path, family=FAMILY)
        load_strict(trainer.net, _weights_of(checkpoint, "raw"), path, family=FAMILY)
        ema = _weights_of(checkpoint, "ema")
        for name, value in ema.items():
            buffer = getattr(trainer.ema, _ema_name(name), None)
            if buffer is not None and buffer.shape == value.shape:
                buffer.copy_(value)

    def parameter_groups(self, module: ActionFormerTrainer, config: ActionFormerConfig) -> list[ParamGroup]:
        """The release's ``make_optimizer`` split: conv weights decay; biases, LayerNorm weights, the
        Scale / drop-path scales and relative positions do not."""
        decay, no_decay = ParamGroup("decay"), ParamGroup("no_decay", weight_decay=False)
        for module_name, submodule in module.net.named_modules():
            for name, parameter in submodule.named_parameters(recurse=False):
                if name == "weight" and isinstance(submodule, (nn.Conv1d, nn.Linear)):
                    decay.params.append(parameter)
                elif name == "bias" or (name == "weight" and isinstance(submodule, ChannelLayerNorm)) \
                        or name in ("scale", "rel_pe"):
                    no_decay.params.append(parameter)
                else:
                    raise ValueError(f"parameter {module_name}.{name} is in no ActionFormer parameter group")
        return [decay, no_decay]

    # -- weights

    def save_weights(self, module: ActionFormerTrainer, config: ActionFormerConfig, path: Path) -> None:
        import io

        module.update_ema()
        state = {f"module.{k}": v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
        ema = {f"module.{k}": v.cpu() for k, v in module.ema_state().items()} if config.ema_decay > 0 else state
        dims = module.net.dims
        saved = {"n_head": dims.n_head, "mha_win_size": list(dims.mha_win_size), "max_seq_len": dims.max_seq_len,
                 "use_abs_pe": dims.use_abs_pe, "regression_range": [list(r) for r in module.net.regression_range],
                 "fps": config.fps, "feat_stride": config.feat_stride, "num_frames": config.num_frames,
                 "model": dataclasses.asdict(config)}
        buffer = io.BytesIO()
        torch.save({"recipe": self.name, "state_dict": state, "state_dict_ema": ema, "labels": list(module.labels),
                    "config": saved}, buffer)
        write_atomic(path, buffer.getvalue())
