"""The ``actionformer`` localizer: an ActionFormer checkpoint on precomputed feature files.

The harness hands a feature-based localizer the path of one video's feature file
(``<dir>/<video_id>.npy``, ``[T, C]``). Where the feature index is in seconds comes from the
directory's ``features.json`` (format ``instract-eval/features/v1``: ``fps``, ``window`` frames
per feature, ``stride`` frames between features, ``offset``, and per video ``num_features``,
``duration``, ``fps``) when it is there, else from the model arguments the release's configs use
(``fps``, ``feat_stride``, ``num_frames``; THUMOS14 I3D: 30, 4, 16). Without a duration the end is
not clipped (the release uses 1e8 then); the start is always clipped at 0.

Which weights: a release checkpoint (``epoch_034.pth.tar``: ``state_dict``, ``state_dict_ema``,
``optimizer``, ``scheduler``, keys prefixed ``module.``) is evaluated with ``state_dict_ema``, as
the release's ``eval.py`` does (``weights=raw`` takes ``state_dict``). A file written by our
training recipe has the same two entries plus ``labels`` and ``config``. Class names: a release
checkpoint has none, so ``labels=`` names a file giving them in class-id order (an ActivityNet-
style JSON whose annotations carry ``label_id``, as the release's THUMOS14 JSON does; a JSON list;
or a text file, one name per line).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.media.features import read_features

from ..cards import NEEDS_USER_WEIGHTS, ModelCard, WeightTag
from ..core.base import require_checkpoint
from ..core.checkpoints import Checkpoint, file_sha256, load_strict, read_checkpoint, strip_prefix
from ..protocols import LOCALIZER, Segment
from ..registry import register_model
from .actionformer import (FAMILY, THUMOS14_TEST, ActionFormerDimensions, ActionFormerNet, InferenceConfig, describe,
                           dimensions_from_state_dict)
from .nms import NMSConfig

__all__ = ["ActionFormerLocalizer", "FeatureTiming", "load_actionformer", "read_label_file", "feature_timing",
           "CARD", "FEATURES_FORMAT"]

FEATURES_FORMAT = "instract-eval/features/v1"
_ARGS = "--model-args"


def _weights_of(checkpoint: Checkpoint, which: str) -> dict[str, torch.Tensor]:
    """The state dict to evaluate: ``state_dict_ema`` (``which='ema'``, falling back to
    ``state_dict`` when a file has no EMA) or ``state_dict`` (``which='raw'``)."""
    if checkpoint.state_dict:
        return strip_prefix(checkpoint.state_dict, "module.")
    payload = checkpoint.payload.get("object")
    if not isinstance(payload, Mapping):
        raise InputError("holds no ActionFormer weights (expected state_dict / state_dict_ema)", path=checkpoint.path,
                         field="checkpoint")
    order = ("state_dict_ema", "state_dict") if which == "ema" else ("state_dict",)
    for key in order:
        value = payload.get(key)
        if isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            return strip_prefix(dict(value), "module.")
    raise InputError(f"holds no {' or '.join(order)} (top-level keys: {', '.join(sorted(map(str, payload))[:6])})",
                     path=checkpoint.path, field="checkpoint")


def load_actionformer(path: str | os.PathLike, *, weights: str = "ema", n_head: int | None = None,
                      mha_win_size: int | Sequence[int] | str | None = None, max_seq_len: int | None = None,
                      use_abs_pe: bool | None = None, regression_range: Sequence[Sequence[float]] | None = None
                      ) -> tuple[ActionFormerNet, dict[str, Any]]:
    """The network of an ActionFormer checkpoint (eval mode) and the file's payload.

    Architecture settings that no tensor records come from the arguments, else from the
    ``config`` a file written by our recipe carries, else from THUMOS14's config (window 19,
    4 heads, ``max_seq_len`` 2304, no absolute positions). ``regression_range`` (one row per
    level) only matters for training targets.
    """
    if weights not in ("ema", "raw"):
        raise InputError(f"weights must be ema or raw, got {weights!r}", field=_ARGS)
    checkpoint = read_checkpoint(path, family=FAMILY)
    state = _weights_of(checkpoint, weights)
    payload = checkpoint.payload.get("object") if isinstance(checkpoint.payload.get("object"), Mapping) else {}
    saved = payload.get("config") if isinstance(payload.get("config"), Mapping) else {}
    settings = {"n_head": n_head if n_head is not None else saved.get("n_head"),
                "mha_win_size": _window_argument(mha_win_size if mha_win_size is not None
                                                 else saved.get("mha_win_size", 19)),
                "max_seq_len": max_seq_len if max_seq_len is not None else saved.get("max_seq_len", 2304),
                "use_abs_pe": use_abs_pe if use_abs_pe is not None else bool(saved.get("use_abs_pe", False))}
    try:
        dims = dimensions_from_state_dict(state, path, **settings)
    except ValueError as error:
        raise InputError(str(error), path=path, field="checkpoint") from None
    try:
        net = ActionFormerNet(dims, regression_range=regression_range or saved.get("regression_range"))
    except ValueError as error:
        raise InputError(str(error), path=path, field="checkpoint") from None
    load_strict(net, state, path, family=FAMILY)
    net.eval()
    return net, dict(payload)


def _window_argument(value: Any) -> int | tuple[int, ...]:
    """``mha_win_size`` as an int, or one per level: a list or a quoted ``'7,7,7,7,7,-1'``."""
    if isinstance(value, bool):
        raise InputError(f"mha_win_size must be an integer or a list of integers, got {value!r}", field=_ARGS)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return tuple(int(part) for part in value.split(","))
        except ValueError:
            raise InputError(f"mha_win_size must be an integer or comma-separated integers, got {value!r}",
                             field=_ARGS) from None
    if isinstance(value, Sequence) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise InputError(f"mha_win_size must be an integer or a list of integers, got {value!r}", field=_ARGS)


def read_label_file(path: str | os.PathLike) -> list[str]:
    """Class names in class-id order from an ActivityNet-style JSON with ``label_id`` (the release's
    annotation files), a JSON list of names, or a text file with one name per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("label file not found", path=path, field="labels") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the label file: {error}", path=path, field="labels") from None
    if path.suffix.lower() != ".json":
        names = [line.strip() for line in text.splitlines() if line.strip()]
        return _unique_names(names, path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON (line {error.lineno})", path=path, field="labels") from None
    if isinstance(document, list):
        if not all(isinstance(name, str) and name for name in document):
            raise InputError("a JSON label list must hold non-empty strings", path=path, field="labels")
        return _unique_names(document, path)
    database = document.get("database") if isinstance(document, Mapping) else None
    if not isinstance(database, Mapping):
        raise InputError("expected a JSON list of names or an ActivityNet-style {'database': ...} file",
                         path=path, field="labels")
    ids: dict[int, str] = {}
    for video, entry in database.items():
        for row, annotation in enumerate((entry or {}).get("annotations", []) or []):
            where = f"database.{video}.annotations[{row}]"
            label, label_id = annotation.get("label"), annotation.get("label_id")
            if not isinstance(label, str) or isinstance(label_id, bool) or not isinstance(label_id, int):
                raise InputError("needs a string 'label' and an integer 'label_id' to give class ids",
                                 path=path, field=where)
            if ids.setdefault(label_id, label) != label:
                raise InputError(f"label_id {label_id} is both {ids[label_id]!r} and {label!r}", path=path,
                                 field=where)
    if not ids:
        raise InputError("has no annotations with label_id", path=path, field="labels")
    missing = [i for i in range(max(ids) + 1) if i not in ids]
    if missing:
        raise InputError(f"label ids are not 0..{max(ids)}: {missing[0]} is missing", path=path, field="labels")
    return _unique_names([ids[i] for i in range(len(ids))], path)


def _unique_names(names: list[str], path: Path) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"class {name!r} appears twice", path=path, field="labels")
        seen.add(name)
    return list(names)


class FeatureTiming:
    """How one video's feature indices map to seconds."""

    __slots__ = ("fps", "stride", "window", "offset", "duration")

    def __init__(self, fps: float, stride: float, window: float, offset: float, duration: float | None):
        self.fps, self.stride, self.window, self.offset, self.duration = fps, stride, window, offset, duration


def _number(value: Any, where: str, path: Path, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value <= 0 if positive else value < 0):
        raise InputError(f"must be a {'positive' if positive else 'non-negative'} number, got {value!r}",
                         path=path, field=where)
    return float(value)


def feature_timing(feature_file: Path, default: FeatureTiming, num_features: int) -> FeatureTiming:
    """The timing of ``feature_file`` from its directory's ``features.json``, else ``default``."""
    meta_path = feature_file.parent / "features.json"
    if not meta_path.is_file():
        return default
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read the feature metadata: {error}", path=meta_path) from None
    if not isinstance(meta, Mapping) or meta.get("format") != FEATURES_FORMAT:
        raise InputError(f"expected format {FEATURES_FORMAT!r}, got {meta.get('format') if isinstance(meta, Mapping) else meta!r}",
                         path=meta_path, field="format")
    video_id = feature_file.stem
    videos = meta.get("videos")
    entry = videos.get(video_id) if isinstance(videos, Mapping) else None
    if not isinstance(entry, Mapping):
        raise InputError(f"has no entry for video {video_id!r}", path=meta_path, field="videos")
    where = f"videos.{video_id}"
    count = entry.get("num_features")
    if count != num_features:
        raise InputError(f"says num_features {count!r} but {feature_file.name} has {num_features} rows",
                         path=meta_path, field=f"{where}.num_features")
    fps = _number(entry.get("fps", meta.get("fps")), f"{where}.fps", meta_path)
    duration = entry.get("duration")
    return FeatureTiming(fps=fps, stride=_number(meta.get("stride"), "stride", meta_path),
                         window=_number(meta.get("window"), "window", meta_path),
                         offset=_number(meta.get("offset", 0), "offset", meta_path, positive=False),
                         duration=None if duration is None else _number(duration, f"{where}.duration", meta_path))


class ActionFormerLocalizer(nn.Module):
    """``localize(feature_file, classes, descriptions)``: ActionFormer detections as `Segment` s.

    Descriptions are ignored (a vision-only head). Detections of classes the task does not list
    are dropped; a model none of whose classes the task lists is refused.
    """

    name = FAMILY
    localizer_inputs = ("features",)

    def __init__(self, net: ActionFormerNet, labels: Sequence[str], *, timing: FeatureTiming, test: InferenceConfig,
                 checkpoint: Path | None):
        super().__init__()
        if len(labels) != net.dims.num_classes:
            raise InputError(f"{len(labels)} class names for a model of {net.dims.num_classes} classes",
                             field="labels")
        self.net = net
        self.labels = list(labels)
        self.timing = timing
        self.test = test
        self.checkpoint = checkpoint
        self._sha256: str | None = None

    @property
    def dims(self) -> ActionFormerDimensions:
        return self.net.dims

    def weights_fingerprint(self) -> str:
        """The checkpoint's SHA-256 with every setting that changes detections."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.checkpoint) if self.checkpoint is not None else "no-checkpoint"
        t = self.timing
        labels = hashlib.sha256("\0".join(self.labels).encode()).hexdigest()[:16]
        return (f"{self._sha256};{describe(self.dims)};{self.test!r};timing={t.fps},{t.stride},{t.window},{t.offset};"
                f"labels={labels}")

    def localize(self, video: str, classes: Sequence[str], descriptions: Mapping[str, str] | None) -> list[Segment]:
        del descriptions
        path = Path(video)
        wanted = set(classes)
        if not wanted & set(self.labels):
            raise InputError(f"none of the task's classes ({', '.join(list(classes)[:3])}, ...) is one of the "
                             f"model's ({', '.join(self.labels[:3])}, ...); pass labels=FILE naming its classes",
                             field=_ARGS)
        feats = read_features(path, dim=self.dims.input_dim)
        return self.localize_features(feats, feature_timing(path, self.timing, feats.shape[0]), classes)

    def localize_features(self, feats: Any, timing: FeatureTiming, classes: Sequence[str]) -> list[Segment]:
        """Detections on a ``[T, C]`` feature array with its timing (a localizer that computes its
        features itself, such as ``actionformer-synth``, calls this directly)."""
        wanted = set(classes)
        device = next(self.net.parameters()).device
        with torch.autocast(device_type=device.type, enabled=False):
            found = self.net.detect(torch.from_numpy(feats).to(device), fps=timing.fps, feat_stride=timing.stride,
                                    num_frames=timing.window, duration=timing.duration, config=self.test,
                                    offset_frames=timing.offset)
        segments = []
        for (start, end), score, label in zip(found.segments.tolist(), found.scores.tolist(), found.labels.tolist()):
            name = self.labels[int(label)]
            if name in wanted:
                segments.append(Segment(start=float(start), end=float(end), label=name, score=float(score)))
        return segments


# ------------------------------------------------------------------------------------------------
# The card and the factory

_RELEASE = "https://github.com/happyharrycn/actionformer_release"
CARD = ModelCard(
    family=FAMILY,
    description="ActionFormer (ECCV 2022): conv + local-attention transformer TAL head on precomputed features",
    capabilities=(LOCALIZER,),
    tags=(
        WeightTag(name="thumos14-i3d", source="user",
                  where="Google Drive (browser download): https://drive.google.com/file/d/1isG3bc1dG5-llBRFCivJwz_7c_b0XDcY"
                        " (the release README's THUMOS14 model); unpack and pass "
                        "thumos_i3d_reproduce/epoch_034.pth.tar as checkpoint=PATH, with labels= the release's "
                        "thumos14.json (in thumos.tar.gz, which also holds the I3D features)",
                  args={"mha_win_size": 19, "max_seq_len": 2304, "fps": 30.0, "feat_stride": 4, "num_frames": 16},
                  notes="Two-stream I3D features, 2048-d, 16-frame clips every 4 frames at ~30 fps; "
                        "release README: average mAP 66.83 (THUMOS14 test, tIoU 0.3:0.1:0.7)."),
        WeightTag(name="thumos14-videomaev2-g", source="user",
                  where="no head checkpoint is released: train one with `instract-eval train actionformer` on the "
                        "VideoMAE V2-g THUMOS14 features (OpenGVLab/VideoMAEv2 docs/TAD.md: "
                        "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/internvideo/features/th14_mae_g_16_4.tar.gz)"
                        " and pass the weights.pt it writes as checkpoint=PATH",
                  args={"mha_win_size": 19, "max_seq_len": 2304, "fps": 30.0, "feat_stride": 4, "num_frames": 16},
                  notes="VideoMAE V2-g features, 1408-d, 16 frames every 4; VideoMAE V2 reports 69.6 mAP."),
    ),
    tokenizer="none (vision-only head; descriptions are ignored)",
    code_licence="MIT (happyharrycn/actionformer_release)",
    weights_licence="not stated apart from the repository's MIT licence; trained on THUMOS14 validation videos",
    paper="Zhang, Wu, Li. ActionFormer: Localizing Moments of Actions with Transformers. ECCV 2022. arXiv:2202.07925",
    citation="zhang2022actionformer",
    status=NEEDS_USER_WEIGHTS,
    status_reason="the release's checkpoints are browser downloads (Google Drive / Box); none is on a hub",
    checkpoint_formats=("release .pth.tar ({'state_dict', 'state_dict_ema', ...}, keys prefixed 'module.')",
                        "our training recipe's weights.pt (same entries, plus 'labels' and 'config')"),
    code_version="1",
)


@register_model(FAMILY, card=CARD)
def actionformer(checkpoint: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
                 weights: str = "ema", fps: float | None = None, feat_stride: float | None = None,
                 num_frames: float | None = None,
                 n_head: int | None = None, mha_win_size: int | str | None = None, max_seq_len: int | None = None,
                 use_abs_pe: bool | None = None, nms_method: str | None = None, iou_threshold: float | None = None,
                 min_score: float | None = None, max_seg_num: int | None = None, nms_sigma: float | None = None,
                 voting_thresh: float | None = None, multiclass_nms: bool | None = None,
                 pre_nms_topk: int | None = None, pre_nms_thresh: float | None = None,
                 duration_thresh: float | None = None) -> ActionFormerLocalizer:
    """ActionFormer from a release checkpoint or our recipe's weights, on feature files.

    ``labels``: the class names (see `read_label_file`); a file our recipe wrote carries them.
    ``fps`` / ``feat_stride`` / ``num_frames``: feature timing when the feature directory has no
    ``features.json`` (default: what our recipe's file records, else THUMOS14's 30 / 4 / 16). ``n_head``, ``mha_win_size``, ``max_seq_len``, ``use_abs_pe``: what the
    checkpoint does not record (THUMOS14: 4, 19, 2304, false). The NMS and pre-NMS settings
    default to THUMOS14's ``test_cfg`` (Soft-NMS sigma 0.5, min score 0.001, 200 segments,
    2000 candidates per level, multi-class).
    """
    path = require_checkpoint(FAMILY, checkpoint)
    net, payload = load_actionformer(path, weights=weights, n_head=n_head, mha_win_size=mha_win_size,
                                     max_seq_len=max_seq_len, use_abs_pe=use_abs_pe)
    saved = payload.get("config") if isinstance(payload.get("config"), Mapping) else {}
    timing_values = {}
    for name, value, default in (("fps", fps, 30.0), ("feat_stride", feat_stride, 4.0),
                                 ("num_frames", num_frames, 16.0)):
        value = value if value is not None else saved.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
                or (value == 0 and name != "num_frames"):
            raise InputError(f"{FAMILY}: {name} must be a positive number, got {value!r}", field=_ARGS)
        timing_values[name] = float(value)
    if labels is not None:
        names = read_label_file(labels)
    elif isinstance(payload.get("labels"), list):
        names = [str(name) for name in payload["labels"]]
    else:
        raise InputError(f"{FAMILY}: this checkpoint has no class names; pass labels=FILE (the release's "
                         "annotation JSON with label_id, a JSON list, or one name per line)", field=_ARGS)
    base = THUMOS14_TEST
    nms_given = {"method": nms_method, "iou_threshold": iou_threshold, "min_score": min_score,
                 "max_seg_num": max_seg_num, "sigma": nms_sigma, "voting_thresh": voting_thresh,
                 "multiclass": multiclass_nms}
    pre_given = {"pre_nms_topk": pre_nms_topk, "pre_nms_thresh": pre_nms_thresh, "duration_thresh": duration_thresh}
    try:
        nms = NMSConfig(**{**base.nms.__dict__, **{k: v for k, v in nms_given.items() if v is not None}})
        test = InferenceConfig(**{**{k: getattr(base, k) for k in pre_given}, **{k: v for k, v in pre_given.items()
                                                                           if v is not None}}, nms=nms)
    except (TypeError, ValueError) as error:
        raise InputError(f"{FAMILY}: {error}", field=_ARGS) from None
    timing = FeatureTiming(fps=timing_values["fps"], stride=timing_values["feat_stride"],
                           window=timing_values["num_frames"], offset=0.0, duration=None)
    return ActionFormerLocalizer(net, names, timing=timing, test=test, checkpoint=path)
