"""Training AdaTAD with the shared loop (`instract-eval train adatad --data DIR`).

What OpenTAD's ``tools/train.py`` does with ``configs/adatad/thumos/e2e_thumos_videomae_s_768x1_160_adapter.py``
and where it lives here:

- **Data.** ``DIR/ground_truth.json`` (ActivityNet format: ``database: {video: {subset, duration,
  [frame], annotations: [{segment: [s, e], label}]}}``) and ``DIR/videos/<video>.mp4`` (names are
  ``model.annotations`` / ``model.videos``). Videos of the ``train_split`` subsets with a video file;
  like the official ``ThumosPaddingDataset``, videos without annotations are skipped, THUMOS's
  ``Ambiguous`` label is ignored and ground truth is put on frames as ``int(s / duration *
  frames)``, then divided by ``snippet_stride`` onto the feature grid. The frame count is the
  annotation's ``frame`` when it has one, else the container's. Class ids: ``label_id`` when every
  annotation has one, else the sorted names.
- **Frames per example** (``LoadFrames``, ``random_trunc``): every ``snippet_stride /
  scale_factor``-th frame; a random window of ``frames`` of them (``crop_ratio`` [0.9, 1]: a random
  shorter length when the video is shorter than the window), drawn until it keeps an action
  covered by ``trunc_thresh`` (0.75) of its length, with H6's `crop_example` (the same algorithm);
  shorter videos are padded by repeating the last frame and masked.
- **Pixels.** Shorter side to ``image_size * 256 / 224`` (182 for 160), a random resized crop
  (area 0.08-1, aspect 3/4-4/3, one box per window), squashed to ``image_size``, flipped with
  probability 0.5, ImageNet mean/std. The official pipeline also applies ``ImgAug('default')`` and
  ``ColorJitter``, which are not reproduced (``augment: false`` turns the rest off too).
- **Model and loss.** `AdaTADNet`: the frozen VideoMAE, the adapters, OpenTAD's ActionFormer head
  (``head_variant``); centre-sampled targets (radius 1.5), focal + DIoU losses divided by the
  moving average of positives (a buffer, so checkpoints and resume carry it), H6's port of the
  release's losses. OpenTAD's ``AnchorFreeHead.losses`` was read, not run: the same targets
  (shortest segment, ties within 1e-3), the same normaliser, and its DIoU taken on the decoded
  segments instead of the stride-normalised distances, which gives the same value (IoU and the
  DIoU penalty do not change under the shared shift and scale). The model EMA (decay 0.999, OpenTAD
  ``ModelEma``) is kept as buffers for the trainable parameters only: the frozen ones never
  change, so their average is themselves.
- **Optimizer** (``optimizer.backbone.custom`` + ``get_optim_groups``): AdamW, lr 1e-4, weight
  decay 0.05; the adapters at ``adapter_lr_scale`` x lr (2e-4 for S, 1e-4 for the larger sizes)
  with weight decay on every adapter tensor; the head's conv / linear weights decay, biases,
  LayerNorm weights and scales do not; the ViT is not in the optimizer.
- **Schedule.** 5 warmup epochs then cosine, batch 2, gradient clipping 1.0. OpenTAD anneals over
  100 epochs and stops after 60; the loop's cosine reaches its floor at the last step, so the
  default is 60 epochs of cosine (set ``train.epochs`` / ``warmup_steps`` for other data).

``--init FILE``: a VideoMAE backbone (official fine-tuned ``.pth``, its mmaction2 conversion as
the configs' ``pretrain=``), an OpenTAD AdaTAD checkpoint (backbone + adapters, and its head
when every head tensor fits, i.e. the same classes and widths; otherwise the head starts fresh),
or our own weights (everything). Without it the ViT is random (synthetic runs only). The weights file is
evaluated by the ``adatad`` localizer with ``checkpoint=PATH`` alone.
"""

from __future__ import annotations

import io
import json
import math
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
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, VideoReader
from instract_eval.media.transforms import resize_short_side, resize_to
from instract_eval.training.recipe import DataSource, ParamGroup, TrainingRecipe, register_recipe

from ..core.checkpoints import load_strict, read_checkpoint, strip_prefix
from .actionformer import ChannelLayerNorm, Scale
from .adatad import (FAMILY, AdaTADConfig, AdaTADNet, is_opentad_state, build_network, frame_times, load_backbone,
                     opentad_head_state, video_timing)
from .data import crop_example
from .losses import LossNormalizer, actionformer_losses, batch_targets

__all__ = ["AdaTADItem", "AdaTADTrainer", "AdaTADRecipe", "read_video_split", "crop_box"]

_IGNORED_LABELS = ("Ambiguous",)


@dataclass(frozen=True)
class AdaTADItem:
    """One training video: its file, frame count and rate, and ground truth on the feature grid."""

    video_id: str
    path: Path
    total_frames: int
    fps: float
    segments: np.ndarray        # [N, 2] float32, feature grid (frames / snippet_stride)
    labels: np.ndarray          # [N] int64


def _number(value: Any, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"must be a number, got {value!r}", path=path, field=where)
    return float(value)


def _classes(database: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    ids: dict[int, str] = {}
    names: set[str] = set()
    every_id = True
    for video, entry in database.items():
        for row, annotation in enumerate(entry.get("annotations") or []):
            where = f"database.{video}.annotations[{row}]"
            if not isinstance(annotation, Mapping) or not isinstance(annotation.get("label"), str):
                raise InputError("needs a string 'label'", path=path, field=where)
            if annotation["label"] in _IGNORED_LABELS:
                continue
            names.add(annotation["label"])
            label_id = annotation.get("label_id")
            if label_id is None:
                every_id = False
            elif isinstance(label_id, bool) or not isinstance(label_id, int) or label_id < 0:
                raise InputError(f"label_id must be a non-negative integer, got {label_id!r}", path=path,
                                 field=f"{where}.label_id")
            elif ids.setdefault(label_id, annotation["label"]) != annotation["label"]:
                raise InputError(f"label_id {label_id} is both {ids[label_id]!r} and {annotation['label']!r}",
                                 path=path, field=f"{where}.label_id")
    if not names:
        raise InputError("has no annotations: nothing to train on", path=path, field="database")
    if every_id:
        if sorted(ids) != list(range(len(ids))) or len(set(ids.values())) != len(ids):
            raise InputError("label ids must number the classes 0..N-1 once each", path=path, field="label_id")
        return tuple(ids[i] for i in range(len(ids)))
    return tuple(sorted(names))


def _find_video(directory: Path, video: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        candidate = directory / f"{video}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_video_split(annotations: Path, videos: Path, config: AdaTADConfig) -> tuple[list[AdaTADItem], tuple[str, ...]]:
    """The training videos of ``config.train_split`` with ground truth on the feature grid (see the module docstring)."""
    try:
        document = json.loads(annotations.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("ground-truth file not found", path=annotations) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the ground truth: {error}", path=annotations) from None
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON (line {error.lineno})", path=annotations) from None
    database = document.get("database") if isinstance(document, Mapping) else None
    if not isinstance(database, Mapping):
        raise InputError("expected an ActivityNet-style {'database': {video: ...}} file", path=annotations,
                         field="database")
    if not videos.is_dir():
        raise InputError("video directory not found", path=videos)
    for video, entry in database.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("subset"), str):
            raise InputError("needs a string 'subset'", path=annotations, field=f"database.{video}")
    classes = _classes(database, annotations)
    index = {name: i for i, name in enumerate(classes)}
    wanted = {s.lower() for s in config.train_split}
    items, missing = [], 0
    for video, entry in database.items():
        if entry["subset"].lower() not in wanted:
            continue
        where = f"database.{video}"
        rows, labels = [], []
        for row, annotation in enumerate(entry.get("annotations") or []):
            if annotation["label"] in _IGNORED_LABELS:
                continue
            segment = annotation.get("segment")
            if not (isinstance(segment, Sequence) and len(segment) == 2):
                raise InputError("segment must be [start, end] in seconds", path=annotations,
                                 field=f"{where}.annotations[{row}].segment")
            start = _number(segment[0], annotations, f"{where}.annotations[{row}].segment")
            end = _number(segment[1], annotations, f"{where}.annotations[{row}].segment")
            if not start < end:
                raise InputError(f"segment must have start < end, got [{start}, {end}]", path=annotations,
                                 field=f"{where}.annotations[{row}].segment")
            rows.append((start, end))
            labels.append(index[annotation["label"]])
        if not rows:
            continue                      # the official dataset skips videos without ground truth
        path = _find_video(videos, video, config.video_suffixes)
        if path is None:
            missing += 1
            continue
        count, rate, duration = video_timing(path)
        if "duration" in entry:
            duration = _number(entry["duration"], annotations, f"{where}.duration")
        if "frame" in entry:
            count = int(_number(entry["frame"], annotations, f"{where}.frame"))
        if duration <= 0 or count < 1:
            raise InputError(f"needs a positive duration and frame count, got {duration} s and {count}",
                             path=annotations, field=where)
        frames = np.floor(np.asarray(rows, dtype=np.float64) / duration * count)
        items.append(AdaTADItem(video, path, count, count / duration,
                                (frames / config.snippet_stride).astype(np.float32).reshape(-1, 2),
                                np.asarray(labels, dtype=np.int64)))
    if not items:
        raise InputError(f"no annotated video of subset {'/'.join(config.train_split)} has a video file here "
                         f"({missing} without one)", path=videos)
    return items, classes


def crop_box(rng: random.Random, height: int, width: int, *, area: tuple[float, float] = (0.08, 1.0),
             aspect: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random resized crop (mmaction ``RandomResizedCrop``): an area
    fraction and a log-uniform aspect ratio, up to ``tries`` draws, else the centre square."""
    for _ in range(tries):
        target = rng.uniform(*area) * height * width
        ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


class AdaTADTrainer(nn.Module):
    """The network, its loss, the loss normaliser and the EMA of the trainable weights, as one module."""

    def __init__(self, net: AdaTADNet, config: AdaTADConfig, labels: Sequence[str]):
        super().__init__()
        self.net = net
        self.config = config
        self.labels = list(labels)
        self.register_buffer("loss_normalizer", torch.tensor(config.init_loss_norm, dtype=torch.float64))
        self.register_buffer("ema_pending", torch.tensor(False))
        self.ema = nn.Module()
        for name in self.averaged():
            self.ema.register_buffer(name.replace(".", "__"), net.get_parameter(name).detach().clone())

    def averaged(self) -> list[str]:
        """Names of the parameters the EMA averages: all but the frozen ViT."""
        return [name for name, _ in self.net.named_parameters() if not name.startswith("backbone.encoder.")]

    @torch.no_grad()
    def update_ema(self) -> None:
        """Fold the current weights into the averages if a step was taken since the last fold
        (so the average is updated once per optimizer step, right after it)."""
        if not bool(self.ema_pending) or self.config.ema_decay == 0:
            self.ema_pending.fill_(False)
            return
        decay = self.config.ema_decay
        for name in self.averaged():
            average = getattr(self.ema, name.replace(".", "__"))
            average.mul_(decay).add_(self.net.get_parameter(name).detach(), alpha=1.0 - decay)
        self.ema_pending.fill_(False)

    def ema_state(self) -> dict[str, torch.Tensor]:
        """The network's state dict with the averages in place of the trainable weights."""
        state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        if self.config.ema_decay > 0:
            for name in self.averaged():
                state[name] = getattr(self.ema, name.replace(".", "__")).detach().cpu().clone()
        return state

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.training:
            self.update_ema()
        out = self.net(batch["frames"], batch["mask"])
        classes, offsets = batch_targets(out.points, batch["segments"], batch["labels"], self.net.head.dims.num_classes,
                                         center_sample=True, radius=self.config.center_sample_radius)
        normalizer = LossNormalizer(float(self.loss_normalizer))
        losses = actionformer_losses(out.masks, out.cls_logits, out.offsets, classes, offsets, normalizer,
                                     num_classes=self.net.head.dims.num_classes, loss_weight=self.config.loss_weight,
                                     label_smoothing=self.config.label_smoothing)
        if self.training:
            self.loss_normalizer.fill_(normalizer.value)
            self.ema_pending.fill_(True)
        positives = (classes.sum(-1) > 0) & torch.cat(out.masks, dim=1)
        # the normaliser moves from init_loss_norm towards the positives per batch; the loss per
        # positive point is comparable from step to step
        per_positive = losses["final_loss"].detach() * normalizer.value / max(int(positives.sum()), 1)
        return {"total": losses["final_loss"], "cls_loss": losses["cls_loss"].detach(),
                "reg_loss": losses["reg_loss"].detach(), "loss_per_positive": per_positive,
                "loss_normalizer": torch.tensor(normalizer.value)}


@register_recipe
class AdaTADRecipe(TrainingRecipe):
    name = FAMILY
    model_config = AdaTADConfig
    evaluation_model = FAMILY
    description = "AdaTAD end to end on videos (ActivityNet-format ground truth + a video directory)"
    default_train = {"lr": 1e-4, "weight_decay": 0.05, "batch_size": 2, "epochs": 60, "warmup_steps": 500,
                     "grad_clip": 1.0, "betas": (0.9, 0.999), "eps": 1e-8, "schedule": "cosine", "min_lr_ratio": 0.0}
    find_unused_parameters = False

    def __init__(self) -> None:
        self._classes: tuple[str, ...] = ()

    # -- data

    def _root(self, data: DataSource) -> Path:
        if data.synth:
            from instract_eval.synth.tal_training import ensure_tal_training

            # the same split the feature heads train on (their features sit beside it, under tal/)
            return ensure_tal_training(Path(data.root) / "tal" / "split", seed=data.seed).root
        return Path(data.root)

    def training_items(self, config: AdaTADConfig, data: DataSource) -> Sequence[AdaTADItem]:
        root = self._root(data)
        items, classes = read_video_split(root / config.annotations, root / config.videos, config)
        self._classes = classes
        return items

    def make_example(self, item: AdaTADItem, rng: random.Random, config: AdaTADConfig,
                     data: DataSource) -> Mapping[str, Any]:
        every = np.arange(0, item.total_frames, config.frame_stride, dtype=np.int64)
        chosen, segments, labels = crop_example(every[:, None], item.segments * config.scale_factor, item.labels, rng,
                                                max_seq_len=config.frames, trunc_thresh=config.trunc_thresh,
                                                offset=0.0, crop_ratio=config.crop_ratio)
        indices = chosen[:, 0]
        valid = len(indices) // config.scale_factor
        if len(indices) < config.frames:
            indices = np.pad(indices, (0, config.frames - len(indices)), mode="edge")
        indices = np.clip(indices, 0, item.total_frames - 1)
        with VideoReader(item.path) as reader:
            frames = reader.frames_at(frame_times(indices, item.fps)).frames       # uint8 [T, H, W, 3]
        images = frames.movedim(-1, -3)
        size = config.image_size
        if config.augment:
            images = resize_short_side(images, int(size * 256 / 224))
            top, left, h, w = crop_box(rng, images.shape[-2], images.shape[-1])
            images = resize_to(images[..., top:top + h, left:left + w], (size, size))
            if rng.random() < 0.5:
                images = images.flip(-1)
        else:
            images = resize_short_side(images, size)
            top, left = (images.shape[-2] - size) // 2, (images.shape[-1] - size) // 2
            images = images[..., top:top + size, left:left + size]
        mean = torch.tensor(IMAGENET_MEAN).mul(255.0).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).mul(255.0).view(3, 1, 1)
        pixels = (images.to(torch.float32) - mean) / std
        return {"frames": pixels.contiguous(), "mask": torch.arange(config.window_size) < valid,
                "segments": torch.from_numpy(np.ascontiguousarray(segments / config.scale_factor, dtype=np.float32)),
                "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))}

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Windows and masks stacked; ground truth stays a list per video."""
        return {"frames": torch.stack([e["frames"] for e in examples]), "mask": torch.stack([e["mask"] for e in examples]),
                "segments": [e["segments"] for e in examples], "labels": [e["labels"] for e in examples]}

    # -- model

    def build(self, config: AdaTADConfig, init: Path | None = None) -> nn.Module:
        if not self._classes:
            raise InputError("adatad's classes come from the training data; read it first (training_items)",
                             field="--data")
        net = build_network(config, len(self._classes))
        trainer = AdaTADTrainer(net, config, self._classes)
        if init is not None:
            self._initialise(trainer, Path(init))
        return trainer

    def _initialise(self, trainer: AdaTADTrainer, path: Path) -> None:
        """Our own weights (every tensor; the averages from ``state_dict_ema``), else a backbone file."""
        checkpoint = read_checkpoint(path, family=FAMILY)
        payload = checkpoint.payload.get("object")
        if isinstance(payload, Mapping) and payload.get("recipe") == self.name:
            load_strict(trainer.net, payload["state_dict"], path, family=FAMILY)
            ema = payload.get("state_dict_ema") or {}
            for name in trainer.averaged():
                if name in ema:
                    getattr(trainer.ema, name.replace(".", "__")).copy_(ema[name])
            return
        load_backbone(trainer.net.backbone, path)
        state = checkpoint.state_dict or (payload.get("state_dict") if isinstance(payload, Mapping) else None) or {}
        state = strip_prefix(dict(state), "module.")
        if is_opentad_state(state):
            shapes = {k: v.shape for k, v in trainer.net.head.state_dict().items()}
            head = opentad_head_state(state, shapes)
            if head.keys() == shapes.keys() and all(tuple(head[k].shape) == tuple(shapes[k]) for k in shapes):
                load_strict(trainer.net.head, head, path, family=f"{FAMILY} head (OpenTAD ActionFormer)")
        for name in trainer.averaged():
            getattr(trainer.ema, name.replace(".", "__")).copy_(trainer.net.get_parameter(name).detach())

    def parameter_groups(self, module: AdaTADTrainer, config: AdaTADConfig) -> list[ParamGroup]:
        """OpenTAD's groups: the adapters (every tensor decays, ``adapter_lr_scale`` x lr); the head's
        conv / linear weights decay, its biases, LayerNorm weights and scales do not; the ViT is frozen."""
        adapters = ParamGroup("adapters", lr_scale=config.adapter_lr_scale)
        decay, no_decay = ParamGroup("decay"), ParamGroup("no_decay", weight_decay=False)
        adapters.params.extend(module.net.backbone.adapters.parameters())
        for module_name, submodule in module.net.head.named_modules():
            for name, parameter in submodule.named_parameters(recurse=False):
                if name == "bias" or name in ("scale", "rel_pe") or isinstance(submodule, (ChannelLayerNorm, Scale)):
                    no_decay.params.append(parameter)
                elif name == "weight" and isinstance(submodule, (nn.Conv1d, nn.Linear)):
                    decay.params.append(parameter)
                else:
                    raise ValueError(f"head parameter {module_name}.{name} is in no AdaTAD parameter group")
        return [group for group in (adapters, decay, no_decay) if group.params]

    # -- weights

    def save_weights(self, module: AdaTADTrainer, config: AdaTADConfig, path: Path) -> None:
        module.update_ema()
        state = {k: v.detach().cpu().clone() for k, v in module.net.state_dict().items()}
        buffer = io.BytesIO()
        torch.save({"recipe": self.name, "state_dict": state, "state_dict_ema": module.ema_state(),
                    "labels": list(module.labels), "config": config.as_dict()}, buffer)
        write_atomic(path, buffer.getvalue())
