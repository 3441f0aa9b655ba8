"""Training TriDet with the shared loop (`instract-eval train tridet --data DIR`).

TriDet's ``train.py`` is ActionFormer's, so the data side (ActivityNet-format ground truth + feature
files, random truncation / cropping from the loop's per-item RNG, batches padded to
``max_seq_len``) and the module's loss normaliser and model EMA (buffers, so checkpoints and resume
carry them) are the ActionFormer recipe's, inherited. What TriDet changes:

- the network (`TriDetNet`: SGP backbone, Trident head) and its losses (`tridet_losses`: focal
  loss weighted by the IoU of each positive class's decoded segment, DIoU on every positive
  point-class pair);
- training inputs get Gaussian noise of standard deviation ``input_noise`` on the whole padded
  batch (the release's ``preprocessing``; THUMOS14: 0.0005), drawn from torch's generator, which
  the loop seeds;
- the SGP depthwise convolutions start from N(0, ``init_conv_vars``^2) (THUMOS14: 0, i.e. zero);
- parameter groups (``make_optimizer``): GroupNorm weights join the no-decay group;
- the schedule: THUMOS14's ``opt`` is lr 1e-4, weight decay 0.025, batch 2, 20 warmup + 20
  epochs; the loop's warmup is in steps: 2000 = 20 epochs of the 200 THUMOS14 validation videos at
  batch 2 (set ``train.warmup_steps`` for other data). The release's cosine ends at 1e-8
  (``min_lr_ratio`` 1e-4 here), and its warmup reaches the base rate one step earlier.

Weights are written in the release's checkpoint layout (``state_dict`` and ``state_dict_ema`` with
``module.`` keys) plus ``labels`` and ``config``, and the ``tridet`` localizer evaluates them with
``checkpoint=PATH`` alone.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.files import write_atomic
from instract_eval.training.recipe import ParamGroup, register_recipe

from ..core.checkpoints import load_strict, read_checkpoint
from .actionformer import ChannelLayerNorm
from .data import FeatureDataConfig
from .adapter import _weights_of
from .losses import LossNormalizer, batch_targets
from .recipe import ActionFormerRecipe, ActionFormerTrainer, _ema_name
from .tridet import FAMILY, SGPBlock, TriDetDimensions, TriDetNet, sgp_long_kernel, tridet_losses

__all__ = ["TriDetConfig", "TriDetTrainer", "TriDetRecipe"]


@dataclass(frozen=True)
class TriDetConfig(FeatureDataConfig):
    """Every hyperparameter, defaulted as the release's THUMOS14 I3D config (``configs/thumos_i3d.yaml``
    over ``libs/core/config.py``). ``input_dim`` / ``num_classes`` 0: taken from the data."""

    # network
    input_dim: int = 0
    num_classes: int = 0
    embd_dim: int = 512
    fpn_dim: int = 512
    head_dim: int = 512
    sgp_mlp_dim: int = 768
    backbone_arch: tuple[int, int, int] = (2, 2, 5)
    scale_factor: int = 2
    embd_kernel_size: int = 3
    embd_with_ln: bool = True
    fpn_type: str = "identity"
    fpn_with_ln: bool = True
    head_num_layers: int = 3
    head_kernel_size: int = 3
    boundary_kernel_size: int = 3
    head_with_ln: bool = True
    sgp_win_size: tuple[int, ...] = (1,)
    k: float = 5.0
    num_bins: int = 16
    use_trident_head: bool = True
    downsample_type: str = "max"
    use_abs_pe: bool = False
    regression_range: tuple[tuple[float, float], ...] = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000))
    # training
    center_sample: bool = True
    center_sample_radius: float = 1.5
    loss_weight: float = 1.0          # <= 0: balance reg against cls automatically
    cls_prior_prob: float = 0.01
    init_loss_norm: float = 100.0
    label_smoothing: float = 0.0
    iou_weight_power: float = 0.2
    input_noise: float = 0.0005
    init_conv_vars: float = 0.0
    droppath: float = 0.1
    ema_decay: float = 0.999          # 0 turns the model EMA off (then both entries hold the raw weights)

    def __post_init__(self) -> None:
        if self.ema_decay < 0 or self.ema_decay >= 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        self.check_data()
        if self.input_noise < 0 or self.init_conv_vars < 0:
            raise ValueError("input_noise and init_conv_vars must be 0 or more")

    def windows(self) -> tuple[int, ...]:
        levels = self.backbone_arch[2] + 1
        return tuple(self.sgp_win_size) * levels if len(self.sgp_win_size) == 1 else tuple(self.sgp_win_size)

    def dimensions(self, input_dim: int, num_classes: int) -> TriDetDimensions:
        windows = self.windows()
        stem, branch = self.backbone_arch[1:]
        long_kernels = (sgp_long_kernel(1, self.k),) * stem + tuple(sgp_long_kernel(w, self.k)
                                                                    for w in windows[1:1 + branch])
        return TriDetDimensions(
            input_dim=input_dim, num_classes=num_classes, long_kernels=long_kernels, embd_dim=self.embd_dim,
            fpn_dim=self.fpn_dim, head_dim=self.head_dim, sgp_mlp_dim=self.sgp_mlp_dim,
            backbone_arch=self.backbone_arch, scale_factor=self.scale_factor, embd_kernel_size=self.embd_kernel_size,
            embd_with_ln=self.embd_with_ln, fpn_type=self.fpn_type, fpn_with_ln=self.fpn_with_ln,
            head_num_layers=self.head_num_layers, head_kernel_size=self.head_kernel_size,
            boundary_kernel_size=self.boundary_kernel_size, head_with_ln=self.head_with_ln, sgp_win_size=windows,
            num_bins=self.num_bins if self.use_trident_head else 0, use_trident_head=self.use_trident_head,
            downsample_type=self.downsample_type, use_abs_pe=self.use_abs_pe, drop_path_scales=self.droppath > 0,
            max_seq_len=self.max_seq_len)


class TriDetTrainer(ActionFormerTrainer):
    """The TriDet network, its losses, the loss normaliser and the model EMA, as one trainable module."""

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.training:
            self.update_ema()
        feats = batch["feats"]
        if self.training and self.config.input_noise > 0:
            feats = feats + torch.randn_like(feats) * self.config.input_noise
        out = self.net(feats, batch["mask"])
        classes, offsets = batch_targets(out.points, batch["segments"], batch["labels"], self.net.dims.num_classes,
                                         center_sample=self.config.center_sample,
                                         radius=self.config.center_sample_radius)
        normalizer = LossNormalizer(float(self.loss_normalizer))
        losses = tridet_losses(out, classes, offsets, normalizer, iou_weight_power=self.config.iou_weight_power,
                               loss_weight=self.config.loss_weight, label_smoothing=self.config.label_smoothing)
        if self.training:
            self.loss_normalizer.fill_(normalizer.value)
            self.ema_pending.fill_(True)
        positives = (classes.sum(-1) > 0) & torch.cat(out.masks, dim=1)
        # logged per positive point too: the normaliser moves from init_loss_norm to the data's scale
        per_positive = losses["final_loss"].detach() * normalizer.value / max(int(positives.sum()), 1)
        return {"total": losses["final_loss"], "cls_loss": losses["cls_loss"].detach(),
                "reg_loss": losses["reg_loss"].detach(), "loss_per_positive": per_positive,
                "loss_normalizer": torch.tensor(normalizer.value)}


@register_recipe
class TriDetRecipe(ActionFormerRecipe):
    name = FAMILY
    model_config = TriDetConfig
    evaluation_model = FAMILY
    description = "TriDet on precomputed features (ActivityNet-format ground truth + <video>.npy files)"
    default_train = {"lr": 1e-4, "weight_decay": 0.025, "batch_size": 2, "epochs": 40, "warmup_steps": 2000,
                     "grad_clip": 1.0, "betas": (0.9, 0.999), "eps": 1e-8, "schedule": "cosine",
                     "min_lr_ratio": 1e-4}
    # the boundary heads see detached features, but every parameter gets a gradient each step
    find_unused_parameters = False

    def build(self, config: TriDetConfig, init: Path | None = None) -> nn.Module:
        if not self._classes:
            raise InputError("tridet's classes come from the training data; read it first (training_items)",
                             field="--data")
        self._max_len = config.max_seq_len
        try:
            dims = config.dimensions(self._input_dim, len(self._classes))
            net = TriDetNet(dims, regression_range=config.regression_range, path_pdrop=config.droppath,
                            prior_prob=config.cls_prior_prob)
        except ValueError as error:
            raise InputError(str(error), field="model") from None
        if config.init_conv_vars > 0:
            with torch.no_grad():
                for block in net.modules():
                    if isinstance(block, SGPBlock):
                        for conv in (block.psi, block.fc, block.convw, block.convkw, block.global_fc):
                            conv.weight.normal_(0.0, config.init_conv_vars)
        trainer = TriDetTrainer(net, config, self._classes)
        if init is not None:
            self._initialise(trainer, Path(init))
        return trainer

    def _initialise(self, trainer: TriDetTrainer, path: Path) -> None:
        """Start from a release checkpoint or our weights: ``state_dict`` into the network and
        ``state_dict_ema`` (when present) into the averages, every key and shape checked."""
        checkpoint = read_checkpoint(path, family=FAMILY)
        load_strict(trainer.net, _weights_of(checkpoint, "raw"), path, family=FAMILY)
        for name, value in _weights_of(checkpoint, "ema").items():
            buffer = getattr(trainer.ema, _ema_name(name), None)
            if buffer is not None and buffer.shape == value.shape:
                buffer.copy_(value)

    def parameter_groups(self, module: TriDetTrainer, config: TriDetConfig) -> list[ParamGroup]:
        """The release's ``make_optimizer`` split: conv weights decay; biases, LayerNorm and GroupNorm
        weights, the regression and drop-path scales do not."""
        decay, no_decay = ParamGroup("decay"), ParamGroup("no_decay", weight_decay=False)
        for module_name, submodule in module.net.named_modules():
            for name, parameter in submodule.named_parameters(recurse=False):
                if name == "weight" and isinstance(submodule, (nn.Conv1d, nn.Linear)):
                    decay.params.append(parameter)
                elif name == "bias" or name == "scale" or (
                        name == "weight" and isinstance(submodule, (ChannelLayerNorm, nn.GroupNorm))):
                    no_decay.params.append(parameter)
                else:
                    raise ValueError(f"parameter {module_name}.{name} is in no TriDet parameter group")
        return [decay, no_decay]

    def save_weights(self, module: TriDetTrainer, config: TriDetConfig, path: Path) -> None:
        module.update_ema()
        state = {f"module.{k}": v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
        ema = {f"module.{k}": v.cpu() for k, v in module.ema_state().items()} if config.ema_decay > 0 else state
        dims = module.net.dims
        saved = {"level0_window": dims.sgp_win_size[0], "max_seq_len": dims.max_seq_len,
                 "use_abs_pe": dims.use_abs_pe, "regression_range": [list(r) for r in module.net.regression_range],
                 "fps": config.fps, "feat_stride": config.feat_stride, "num_frames": config.num_frames,
                 "model": dataclasses.asdict(config)}
        buffer = io.BytesIO()
        torch.save({"recipe": self.name, "state_dict": state, "state_dict_ema": ema, "labels": list(module.labels),
                    "config": saved}, buffer)
        write_atomic(path, buffer.getvalue())

