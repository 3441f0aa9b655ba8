"""`instract-eval features`: per-video feature files for feature-based TAL heads.

Feature-based localizers (ActionFormer, TriDet and the OpenTAD models) never see a video: they
read one ``[T, C]`` array per video, a frozen backbone's output on a sliding window. This module
writes that layout from any model the harness can load, through the same `Encoder` as ``run``:
every window is a `ClipRequest`, so windows are batched, decoded by the DataLoader workers,
cached under the model's fingerprint (a second or an interrupted run encodes only what is
missing), split over the ranks of a ``torchrun`` job and gathered, with one batching loop for
the whole harness.

The directory (format ``instract-eval/features/v1``):

- ``<video_id>.npy``: float32 ``[T, C]``;
- ``features.json``: ``format, model, model_args, fingerprint, feature_dim, fps, window, stride,
  offset, frame_spec, videos: {video_id: {num_features, duration, fps}}`` (a video's ``fps`` is the
  feature grid's rate, the global ``fps``, since every video is resampled to it) and, added here,
  ``output`` (the model method), ``precision``, ``time_rule``, ``short_video_frame_spec``,
  ``source`` and per video ``source_fps`` (the file's own rate), ``frames`` (at ``fps``),
  ``file`` and, for a short video, ``short``;
- with ``--task``, ``tasks.yaml``: a copy of the localization task whose videos are these files.

Time mapping (the ActionFormer convention): feature ``i`` covers frames ``[offset + i * stride,
offset + i * stride + window)`` of the video resampled at ``fps``, whose frame ``k`` is the
frame shown at ``(k + 1/2) / fps`` s; its time is `instract_eval.media.feature_times`. A video
has ``n = floor(duration * fps)`` whole frames at that rate (a frame whose ``1/fps`` cell runs
past the end is not one) and ``T = (n - window) // stride + 1`` windows. Each window is
decoded with the model's pixel preparation and ``window`` frames sampled at ``fps``
(``sampling="fps"``): the model sees exactly the window's frames, as the community's extractors
do. A model whose frame count is fixed (``fixed_frames``) therefore needs ``--window`` equal to
it, which is checked before anything is decoded.

Rules chosen here, each stated where it applies and recorded in ``features.json``:

- A video shorter than one window (``n < window``) gets **one** feature from the whole video:
  ``window`` frames at the midpoints of equal parts of ``[0, duration]`` (so frames repeat),
  flagged per video under ``short`` with the frame count and the reason, never padded silently.
  Its feature covers ``short.covers_s`` = ``[0, duration]``, not the window that
  `feature_times` would place.
- A directory already holding features of another model, or of other settings (window, stride,
  fps, offset, frame spec, method, precision), is refused in one line unless ``overwrite``; then
  its listed files are replaced. Features of the same model and settings are kept and only the
  videos not yet there are extracted (resume at the level of the directory; the cache resumes
  within a video). Files the directory holds that ``features.json`` does not list are never
  touched, and a non-empty directory without one is refused.
- Rank 0 writes, in groups of videos: each group's ``.npy`` files and the updated
  ``features.json`` together (`write_together`), so the metadata only ever lists whole files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from instract_eval.adapters.protocols import (
    DUAL_ENCODER,
    FEATURE_EXTRACTOR,
    capabilities_of,
    describe_capabilities,
)
from instract_eval.adapters.registry import create_model, model_fingerprint
from instract_eval.encoding import Encoder, OutputCache, ranks_from_environment
from instract_eval.errors import InputError
from instract_eval.files import make_directories, require_writable_directory, write_together, writing
from instract_eval.media import FEATURE_SUFFIXES, ClipRequest, FrameSpec, probe_video

from .run import ModelRequest, _to_device, pick_device

__all__ = [
    "FORMAT",
    "METADATA",
    "TASKS_FILE",
    "TASK_SUFFIX",
    "THUMOS14_CONVENTION",
    "DEFAULT_FPS",
    "FeatureOptions",
    "FeatureReport",
    "VideoWindows",
    "extract_features",
    "features_for",
    "feature_method",
    "frames_at",
    "plan_windows",
    "task_videos",
    "videos_in_directory",
    "window_requests",
    "window_spec",
    "short_video_spec",
    "write_task_copy",
]

FORMAT = "instract-eval/features/v1"
METADATA = "features.json"
TASKS_FILE = "tasks.yaml"
TASK_SUFFIX = "-features"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
# THUMOS14 with VideoMAEv2 (and ActionFormer's I3D features): 16-frame windows every 4 frames at 30 fps.
THUMOS14_CONVENTION = {"window": 16, "stride": 4, "fps": 30.0}
DEFAULT_FPS = THUMOS14_CONVENTION["fps"]  # when neither --fps, the model nor the task gives a rate
GROUP_WINDOWS = 2048  # windows per written group: bounds the work lost to a kill between writes
_FRAME_EPS = 1e-6     # a duration of 12.625 s at 8 fps read as 100.99999999 is still 101 frames
TIME_RULE = ("feature i covers frames [offset + i*stride, offset + i*stride + window) of the video resampled at "
             "fps (frame k shown at (k + 1/2)/fps s); its time is (offset + i*stride + window/2)/fps s "
             "(instract_eval.media.feature_times)")
SHORT_RULE = ("shorter than one window: one feature from the whole video, its window frames at the midpoints of "
              "equal parts of [0, duration] (frames repeat); it covers [0, duration]")
_OUR_TASKS_HEADER = "# Written by instract-eval features: localization tasks whose videos are feature files.\n"


@dataclass(frozen=True)
class FeatureOptions:
    """How to extract; the defaults are those of the command line.

    ``window``, ``stride`` (frames) and ``fps`` default to the model's frame count, a quarter of
    the window, and the model's rate, else the task's, else `DEFAULT_FPS` (the THUMOS14
    convention, `THUMOS14_CONVENTION`).
    """

    out: Path
    window: int | None = None
    stride: int | None = None
    fps: float | None = None
    batch_size: int = 8
    workers: int = 0
    device: str | None = None
    precision: str = "fp32"
    cache_dir: Path | None = None
    overwrite: bool = False


@dataclass
class FeatureReport:
    """What a run produced (every rank has it; rank 0 alone wrote the files)."""

    is_main: bool
    out: Path
    model: str
    fingerprint: str
    feature_dim: int
    fps: float
    window: int
    stride: int
    fps_from: str
    extracted: list[str] = field(default_factory=list)   # videos written by this run
    kept: list[str] = field(default_factory=list)        # videos already there, same model and settings
    short: list[str] = field(default_factory=list)       # videos shorter than one window (one feature each)
    num_features: int = 0                                # over the videos of this run
    tasks_file: Path | None = None
    task_name: str | None = None
    work: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class VideoWindows:
    """The windows of one video: its frames at ``fps``, and how many features it gets."""

    video_id: str
    path: Path
    duration: float
    source_fps: float | None
    frames: int          # whole frames at the feature rate
    num_features: int    # 1 for a short video
    short: bool


# ------------------------------------------------------------------------------------------------
# Windows


def frames_at(duration: float, fps: float) -> int:
    """Whole frames of a ``duration``-second video resampled at ``fps``: ``floor(duration * fps)``."""
    return max(0, math.floor(duration * fps + _FRAME_EPS))


def plan_windows(video_id: str, path: Path, duration: float, source_fps: float | None, *, window: int,
                 stride: int, fps: float, offset: int = 0) -> VideoWindows:
    """How many features a video gets: ``(n - offset - window) // stride + 1``, or one when short."""
    frames = frames_at(duration, fps)
    usable = frames - offset
    if usable >= window:
        return VideoWindows(video_id, path, duration, source_fps, frames, (usable - window) // stride + 1, False)
    return VideoWindows(video_id, path, duration, source_fps, frames, 1, True)


def window_requests(video: VideoWindows, *, window: int, stride: int, fps: float, offset: int = 0
                    ) -> list[ClipRequest]:
    """One request per feature: ``[(offset + i*stride) / fps, (offset + i*stride + window) / fps]``, or
    the whole video for a short one. ``video_id`` (not the path) names them in cache keys."""
    if video.short:
        return [ClipRequest(str(video.path), 0.0, None, video_id=video.video_id)]
    return [ClipRequest(str(video.path), (offset + i * stride) / fps, (offset + i * stride + window) / fps,
                        video_id=video.video_id) for i in range(video.num_features)]


def window_spec(model_spec: FrameSpec, *, window: int, fps: float, model: str = "the model") -> FrameSpec:
    """The model's pixel preparation with ``window`` frames at ``fps`` (``sampling="fps"``): a
    request ``[s, s + window / fps]`` then shows frames ``s*fps .. s*fps + window - 1`` exactly."""
    if model_spec.fixed_frames and window != model_spec.num_frames:
        raise InputError(f"{model} takes exactly {model_spec.num_frames} frames per clip (its temporal embedding "
                         f"has that length); use --window {model_spec.num_frames}", field="--window")
    return dataclasses.replace(model_spec, num_frames=window, sampling="fps", fps=float(fps))


def short_video_spec(spec: FrameSpec) -> FrameSpec:
    """The spec of a video shorter than one window: the same frames, spread uniformly over it."""
    return dataclasses.replace(spec, sampling="uniform", fps=None)


def feature_method(model: Any, name: str) -> str:
    """``extract_features`` for a feature extractor (preferred: the backbone features TAL heads are
    trained on), else a dual encoder's ``encode_video``; anything else is refused in one line."""
    capabilities = capabilities_of(model)
    if FEATURE_EXTRACTOR in capabilities:
        return "extract_features"
    if DUAL_ENCODER in capabilities:
        return "encode_video"
    raise InputError(f"features needs a feature extractor or dual encoder model; {name} provides: "
                     f"{describe_capabilities(capabilities, 'none', ', ')}", field="--model")


# ------------------------------------------------------------------------------------------------
# Which videos


def videos_in_directory(directory: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(video_id, file)`` of every video file directly in ``directory`` (the stem is the id), sorted."""
    directory = Path(directory)
    if not directory.exists():
        raise InputError("the video directory does not exist", path=directory, field="--videos")
    if not directory.is_dir():
        raise InputError("is not a directory", path=directory, field="--videos")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        if path.stem in found:
            raise InputError(f"two videos have the id '{path.stem}' ({found[path.stem].name} and {path.name}); "
                             "a feature file is named by the id, so keep one", path=path, field="--videos")
        found[path.stem] = path
    if not found:
        raise InputError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in the directory", path=directory,
                         field="--videos")
    return sorted(found.items())


def task_videos(spec: Any, location: Any) -> tuple[list[tuple[str, Path]], Any]:
    """The videos of a localization task (every video of its evaluated subset), and the task."""
    from instract_eval.tasks.localization import find_video, localization_task

    if spec.kind != "localization":
        raise InputError(f"task {spec.name} is a {spec.kind} task; features are extracted for localization tasks",
                         field="--task")
    task = localization_task(spec, location)
    if not task.video_dir.is_dir():
        raise InputError(f"task {spec.name}: the video directory does not exist", path=task.video_dir)
    videos = []
    for video in task.ground_truth.video_names:
        path = find_video(task.video_dir, video)
        if path is None or path.suffix.lower() in FEATURE_SUFFIXES:
            what = "is a feature file already" if path is not None else "has no video file"
            raise InputError(f"task {spec.name}: video '{video}' {what} (looked for "
                             f"{video}{{{','.join(VIDEO_SUFFIXES)}}})", path=path or task.video_dir / video)
        videos.append((video, path))
    return videos, task


# ------------------------------------------------------------------------------------------------
# The run


def extract_features(model_request: ModelRequest, videos: Sequence[tuple[str, str | os.PathLike]],
                     options: FeatureOptions, *, task_fps: float | None = None, source: Mapping[str, Any] | None = None,
                     progress: Any = None, environ: Mapping[str, str] = os.environ) -> FeatureReport:
    """Write the feature files of ``videos`` (``(video_id, file)``) into ``options.out``; see the module
    docstring. ``task_fps``: the task's rate, the default after ``--fps`` and the model's own."""
    started = time.perf_counter()
    _check_numbers(options)
    ranks = ranks_from_environment(environ, device=options.device)
    device = pick_device(options.device, ranks.local_rank)
    if options.precision == "fp16" and device.type == "cpu":
        raise InputError("fp16 autocast needs a GPU; use --precision bf16 or fp32 on the CPU", field="--precision")
    out = Path(options.out)
    require_writable_directory(out, "--out")
    require_writable_directory(options.cache_dir, "--cache-dir")
    if not videos:
        raise InputError("no videos to extract features from", field="--videos")
    model = create_model(model_request.name, **model_request.args)
    method = feature_method(model, model_request.name)
    fingerprint = model_fingerprint(model_request.name, model_request.args, model)
    model_spec = model.frame_spec()
    window = options.window if options.window is not None else model_spec.num_frames
    stride = options.stride if options.stride is not None else max(1, window // 4)
    fps, fps_from = _feature_fps(options.fps, model_spec, task_fps)
    spec = window_spec(model_spec, window=window, fps=fps, model=model_request.name)
    short_spec = short_video_spec(spec)
    identity = {"format": FORMAT, "model": model_request.name, "model_args": _jsonable(dict(model_request.args)),
                "fingerprint": fingerprint, "output": method, "precision": options.precision, "fps": fps,
                "window": window, "stride": stride, "offset": 0, "frame_spec": _spec_json(spec),
                "short_video_frame_spec": _spec_json(short_spec)}
    existing = _existing(out, identity, options.overwrite)
    plans = [_plan(str(video_id), Path(path), window=window, stride=stride, fps=fps) for video_id, path in videos]
    kept = ranks.gather(sorted(_kept(out, existing, plans, options.overwrite)))[0]  # rank 0's view decides
    todo = [plan for plan in plans if plan.video_id not in kept]

    model = _to_device(model, device)
    cache = OutputCache(options.cache_dir, fingerprint) if options.cache_dir is not None else None
    encoder = Encoder(model, batch_size=options.batch_size, num_workers=options.workers, device=device,
                      precision=options.precision, cache=cache, ranks=ranks, progress=progress)
    encoder.label = f"{model_request.name} features"
    listed = dict(existing["videos"]) if existing is not None and not options.overwrite else {}
    feature_dim = existing.get("feature_dim") if existing is not None and not options.overwrite else None
    stale = set(existing["videos"]) if existing is not None and options.overwrite else set()
    report = FeatureReport(is_main=ranks.is_main, out=out, model=model_request.name, fingerprint=fingerprint,
                           feature_dim=feature_dim or 0, fps=fps, window=window, stride=stride, fps_from=fps_from,
                           kept=sorted(kept), short=sorted(plan.video_id for plan in plans if plan.short))
    before = Counter(encoder.counts)
    for group in _groups(todo):
        arrays = _encode_group(encoder, group, spec, short_spec, method, window=window, stride=stride, fps=fps)
        dims = {array.shape[1] for array in arrays.values()}
        if feature_dim is not None:
            dims.add(int(feature_dim))
        if len(dims) != 1:
            raise InputError(f"{model_request.name} gave features of sizes {sorted(dims)}; one size is expected",
                             field="--model")
        feature_dim = dims.pop()
        for plan in group:
            listed[plan.video_id] = _video_entry(plan, fps)
            stale.discard(plan.video_id)
        report.extracted.extend(plan.video_id for plan in group)
        report.num_features += sum(plan.num_features for plan in group)
        if ranks.is_main:
            document = {**identity, "feature_dim": feature_dim, "time_rule": TIME_RULE,
                        "source": dict(source or {}), "videos": dict(sorted(listed.items()))}
            _write_group(out, arrays, document)
    if ranks.is_main:
        # An overwritten directory's files that this run did not replace (the new features.json,
        # written above, no longer lists them); only plain names in it, never a path elsewhere.
        for video_id in sorted(name for name in stale if isinstance(name, str) and Path(name).name == name):
            with writing(out / f"{video_id}.npy"):
                (out / f"{video_id}.npy").unlink(missing_ok=True)
    report.feature_dim = int(feature_dim or 0)
    report.work = dict(Counter(encoder.counts) - before)
    report.seconds = time.perf_counter() - started
    ranks.barrier()
    return report


def _check_numbers(options: FeatureOptions) -> None:
    for value, flag in ((options.window, "--window"), (options.stride, "--stride")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"must be a positive whole number of frames, got {value!r}", field=flag)
    if options.fps is not None and not (math.isfinite(options.fps) and options.fps > 0):
        raise InputError(f"must be a positive number of frames per second, got {options.fps!r}", field="--fps")


def _feature_fps(requested: float | None, spec: FrameSpec, task_fps: float | None) -> tuple[float, str]:
    if requested is not None:
        return float(requested), "--fps"
    if spec.fps is not None:
        return float(spec.fps), "the model's frame spec"
    if task_fps is not None:
        return float(task_fps), "the task's protocol"
    return DEFAULT_FPS, "the THUMOS14 convention (no rate given by --fps, the model or the task)"


def _plan(video_id: str, path: Path, *, window: int, stride: int, fps: float) -> VideoWindows:
    info = probe_video(path)
    if not (math.isfinite(info.duration) and info.duration > 0):
        raise InputError(f"the video's duration is {info.duration}; cannot place windows", path=path)
    return plan_windows(video_id, path, info.duration, info.average_fps, window=window, stride=stride, fps=fps)


def _groups(plans: Sequence[VideoWindows]) -> list[list[VideoWindows]]:
    """Consecutive videos with about `GROUP_WINDOWS` windows together (a long video is one group)."""
    groups: list[list[VideoWindows]] = []
    current: list[VideoWindows] = []
    size = 0
    for plan in plans:
        current.append(plan)
        size += plan.num_features
        if size >= GROUP_WINDOWS:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _encode_group(encoder: Encoder, group: Sequence[VideoWindows], spec: FrameSpec, short_spec: FrameSpec,
                  method: str, *, window: int, stride: int, fps: float) -> dict[str, np.ndarray]:
    """``[T, C]`` float32 per video of the group, in one encoder call per frame spec."""
    requests = {plan.video_id: window_requests(plan, window=window, stride=stride, fps=fps) for plan in group}
    encoded: dict[str, np.ndarray] = {}
    for chosen, which in ((spec, False), (short_spec, True)):
        wanted = [request for plan in group if plan.short == which for request in requests[plan.video_id]]
        if wanted:
            encoded.update(encoder.videos(wanted, chosen, method=method).embeddings)
    arrays = {}
    for plan in group:
        rows = [encoded[request.key()] for request in requests[plan.video_id]]
        array = np.stack(rows).astype(np.float32, copy=False)
        if array.ndim != 2:
            raise InputError(f"{method} gave features of shape {tuple(array.shape[1:])} per window for video "
                             f"'{plan.video_id}'; one vector per window is expected", field="--model")
        arrays[plan.video_id] = np.ascontiguousarray(array)
    return arrays


def _video_entry(plan: VideoWindows, fps: float) -> dict[str, Any]:
    """A video's listing. Its ``fps`` is the rate of its feature grid (the run's ``fps``: every video is
    resampled to it), the number heads multiply by; the file's own rate is ``source_fps``."""
    entry: dict[str, Any] = {"num_features": plan.num_features, "duration": plan.duration, "fps": fps,
                             "source_fps": plan.source_fps, "frames": plan.frames, "file": f"{plan.video_id}.npy"}
    if plan.short:
        entry["short"] = {"frames": plan.frames, "covers_s": [0.0, plan.duration], "why": SHORT_RULE}
    return entry


def _write_group(out: Path, arrays: Mapping[str, np.ndarray], document: Mapping[str, Any]) -> None:
    with writing(out):
        make_directories(out)
    files: list[tuple[Path, bytes | str]] = []
    for video_id, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        files.append((out / f"{video_id}.npy", buffer.getvalue()))
    files.append((out / METADATA, json.dumps(document, indent=1, sort_keys=False) + "\n"))
    write_together(files)


# ------------------------------------------------------------------------------------------------
# An earlier run in the same directory


def _existing(out: Path, identity: Mapping[str, Any], overwrite: bool) -> dict | None:
    """The directory's ``features.json`` (None when there is none); one line when it is another
    model's or other settings' and ``overwrite`` is not given, or when the directory holds files
    but no ``features.json``."""
    path = out / METADATA
    if not path.is_file():
        if out.is_dir() and any(not entry.name.startswith(".") for entry in out.iterdir()):
            raise InputError(f"holds files but no {METADATA}: not a feature directory; choose an empty or new "
                             "directory", path=out, field="--out")
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read ({error}); remove it or choose another --out", path=path) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("videos"),
                                                                                           dict):
        raise InputError(f"is not an {FORMAT} metadata file; choose another --out", path=path, field="format")
    if overwrite:
        return document
    if document.get("fingerprint") != identity["fingerprint"]:
        raise InputError(f"holds features of another model ({document.get('model')} "
                         f"{_short(document.get('model_args'))}, fingerprint {str(document.get('fingerprint'))[:12]}); "
                         f"this run's {identity['model']} {_short(identity['model_args'])} has fingerprint "
                         f"{identity['fingerprint'][:12]}: pass --overwrite to replace them, or choose another --out",
                         path=path, field="fingerprint")
    for key in ("output", "precision", "fps", "window", "stride", "offset", "frame_spec", "short_video_frame_spec"):
        if document.get(key) != identity[key]:
            raise InputError(f"holds features with {key} {document.get(key)!r}; this run's is {identity[key]!r}: "
                             "pass --overwrite to replace them, or choose another --out", path=path, field=key)
    return document


def _kept(out: Path, existing: dict | None, plans: Sequence[VideoWindows], overwrite: bool) -> set[str]:
    """Videos whose file is there from an earlier run of the same model and settings, and agrees
    with the listing (a file replaced by hand, or a changed video, is extracted again)."""
    if existing is None or overwrite:
        return set()
    kept = set()
    for plan in plans:
        entry = existing["videos"].get(plan.video_id)
        if (isinstance(entry, dict) and entry.get("num_features") == plan.num_features
                and entry.get("duration") == plan.duration and (out / f"{plan.video_id}.npy").is_file()):
            kept.add(plan.video_id)
    return kept


def _short(args: Any) -> str:
    return json.dumps(args, sort_keys=True) if args else "(default arguments)"


def _spec_json(spec: FrameSpec) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(spec).items()}


def _jsonable(value: Any) -> Any:
    """Model arguments as JSON holds them (a value it cannot hold is written as its ``repr``)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


# ------------------------------------------------------------------------------------------------
# The task copy


def write_task_copy(out: Path, spec: Any, location: Any, report: FeatureReport) -> tuple[Path, str]:
    """Register ``<task>-features`` in ``OUT/tasks.yaml``: the task with its videos replaced by the
    feature files; returns the file and the task name.

    The copy keeps the task's kind, format, ground truth, descriptions (and conflicting ones),
    thresholds, subset, ties, seed and metrics, so scores stay comparable with the video task.
    Data paths are absolute (the files of the original task as located now, and this directory),
    so the copy works from anywhere and whatever data root a later run sets; ``builtin`` files
    stay builtin. The protocol's ``sampling``, ``fps`` and ``size`` describe video files and are
    left out. A ``tasks.yaml`` written earlier by this command keeps its other tasks (one feature
    directory can serve a task and its LAP twin, which share the videos).
    """
    name = f"{spec.name}{TASK_SUFFIX}"
    entry = {key: value for key, value in dict(spec.raw).items()}
    data: dict[str, Any] = {}
    for key, value in spec.data.items():
        if key == "download":
            continue
        if key == "videos":
            data[key] = str(out.resolve())
        elif isinstance(value, Mapping):
            data[key] = dict(value)
        else:
            data[key] = str(Path(location.files[key]).resolve())
    entry["data"] = data
    entry["protocol"] = {key: value for key, value in dict(spec.protocol).items()
                         if key not in ("sampling", "fps", "size")}
    entry["description"] = (f"{spec.description} On feature files of {report.model} (fingerprint "
                            f"{report.fingerprint[:12]}; window {report.window}, stride {report.stride} at "
                            f"{report.fps:g} fps).")
    path = out / TASKS_FILE
    tasks: dict[str, Any] = {}
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if not text.startswith(_OUR_TASKS_HEADER):
            raise InputError("exists and was not written by instract-eval features; move it away", path=path)
        document = yaml.safe_load(text) or {}
        tasks = dict(document.get("tasks") or {})
    tasks[name] = _plain(entry)
    text = _OUR_TASKS_HEADER + "# Run one with: instract-eval run --model NAME --task TASK --include this file\n"
    text += yaml.safe_dump({"tasks": dict(sorted(tasks.items()))}, sort_keys=False, allow_unicode=True)
    from instract_eval.tasks.registry import parse_registry

    parse_registry(yaml.safe_load(text), source=str(path), base_dir=out.resolve())  # a copy that loads, or nothing
    write_together([(path, text)])
    return path, name


def _plain(value: Any) -> Any:
    """Mappings and tuples of a task spec as the plain dicts and lists YAML writes."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# ------------------------------------------------------------------------------------------------
# The command


def features_for(model_request: ModelRequest, options: FeatureOptions, *, videos: str | os.PathLike | None = None,
                 task: str | None = None, include: Sequence[str | os.PathLike] = (),
                 data_root: str | os.PathLike | None = None, cache_root: str | os.PathLike | None = None,
                 use_cache: bool = True, progress: Any = None,
                 environ: Mapping[str, str] = os.environ) -> FeatureReport:
    """``instract-eval features``: the videos of a directory or of a localization task, to ``options.out``.

    With ``task``, the task is resolved as ``run`` resolves it (``include`` files, the data root,
    the embedded synthetic world) and, after extraction, ``OUT/tasks.yaml`` registers its copy on
    the feature files (`write_task_copy`). Outputs are cached under ``cache_root/outputs`` (default
    `default_cache_dir`) unless ``use_cache`` is false, as for ``run``.
    """
    from instract_eval.encoding import default_cache_dir
    from instract_eval.tasks.registry import require_data
    from instract_eval.tasks.resolve import task_registry

    if (videos is None) == (task is None):
        raise InputError("give either --videos DIR or --task TASK (one of them)", field="--videos")
    root = Path(cache_root) if cache_root is not None else default_cache_dir(environ)
    options = dataclasses.replace(options, cache_dir=root / "outputs" if use_cache else None)
    if videos is not None:
        found = videos_in_directory(videos)
        return extract_features(model_request, found, options, source={"videos": str(Path(videos).resolve())},
                                progress=progress, environ=environ)
    ranks = ranks_from_environment(environ, device=options.device)
    registry = task_registry([task], include, root, ranks)
    if task in registry.groups:
        raise InputError(f"'{task}' is a group; name one localization task (features of one task's videos)",
                         field="--task")
    spec = registry.resolve([task])[0]
    location = require_data(spec, data_root, environ)
    found, _ = task_videos(spec, location)
    task_fps = spec.protocol.get("fps")
    report = extract_features(model_request, found, options, task_fps=None if task_fps is None else float(task_fps),
                              source={"task": spec.name, "task_source": spec.source}, progress=progress,
                              environ=environ)
    if report.is_main:
        report.tasks_file, report.task_name = write_task_copy(Path(options.out), spec, location, report)
    ranks.barrier()
    return report
