"""A synthetic TAL training split: untrimmed videos like synth-tal's, to train feature-based heads on.

A feature-based localizer (ActionFormer and its kin, `instract_eval.adapters.tal`) learns from
an ActivityNet-format ground truth and one feature file per video; the evaluation world's
synth-tal videos are its test set and must never be trained on. This split provides the rest:

- ``ground_truth.json``: ActivityNet format (``version``, ``taxonomy``, ``database: {video_id:
  {subset, duration, annotations: [{segment: [start, end], label}]}}``), ``subset`` ``training``
  for ids ``taltrain_<n>`` and ``validation`` for ids ``talval_<n>``; the taxonomy is synth-tal's
  (the 12 actions, alphabetical), so a head trained here scores the synth-tal task directly;
- ``videos/<video_id>.mp4``: rendered by the evaluation world's planner and renderer
  (`world.plan_untrimmed`, `render.write_mp4`) at its canvas and frame rate;
- ``tasks.yaml``: ``synth-tal-training`` and ``synth-tal-validation``, localization tasks on the
  two subsets (paths relative to the split), so ``instract-eval features --task
  synth-tal-training --include SPLIT/tasks.yaml`` extracts a subset and registers its copy;
- ``manifest.json``: generator, version, seed, size and counts (what makes the split reusable).

Content, per video, as synth-tal's builder draws it: 1-4 instances of one or two classes
(instances 1.5-2.5 s, idle stretches of at least 0.75 s between and around them) over 1-2
objects. Each subset cycles through a permutation of the classes for the first class of its
videos, so every class has instances in both subsets once a subset has 12 videos.

Seeds: split ``seed`` draws from ``numpy.random.default_rng([1000 + seed, 7])``. Evaluation
worlds use small seeds with streams 0-5 (`benchmarks`), the packaged models' training worlds
seeds ``1000 + 100 * seed + k`` with streams 0-5 and the InstrAct training split stream 6
(`training`); stream 7 is used by nothing else, so this split is disjoint from all of them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import writers
from .generated import check_replaceable, ensure_generated, publish, read_generator_manifest
from .benchmarks import PLAN_TRIES, TAL_MIN_IDLE_S, TAL_STEP_S, _seconds
from .render import video_codec, write_mp4
from .vocabulary import ACTION_NAMES
from .world import Clip, pick_objects, plan_untrimmed

__all__ = ["GENERATOR", "GENERATOR_VERSION", "TAL_TRAINING_SIZES", "SUBSETS", "TalTrainingSize", "TalTrainingSplit",
           "tal_training_clips", "write_tal_training", "ensure_tal_training", "read_tal_training_manifest"]

GENERATOR = "instract_eval.synth.tal_training"
GENERATOR_VERSION = 1
SEED_BASE = 1000  # never an evaluation seed
STREAM = 7        # benchmarks.py uses streams 0-5, training.py stream 6
GROUND_TRUTH = "ground_truth.json"
SUBSETS = {"training": "taltrain", "validation": "talval"}  # subset -> video id prefix


@dataclass(frozen=True)
class TalTrainingSize:
    """How many videos per subset, how long, and how they look (the evaluation world's canvas and rate)."""

    name: str
    training: int
    validation: int
    duration_s: tuple[float, float] = (12.0, 20.0)
    canvas: int = 32
    fps: int = 8

    def as_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


# ``default``: 160 + 40 videos of 12-20 s (synth-tal's lengths), about 25,000 frames, generated in
# about 15 s on two cores; ``tiny`` is for tests.
TAL_TRAINING_SIZES: dict[str, TalTrainingSize] = {
    "tiny": TalTrainingSize(name="tiny", training=6, validation=2, duration_s=(8.0, 10.0)),
    "default": TalTrainingSize(name="default", training=160, validation=40),
}


@dataclass(frozen=True)
class TalTrainingSplit:
    """A written split: where its ground truth and videos are, and what it holds."""

    root: Path
    seed: int
    size: str
    counts: dict[str, int]
    seconds: float = field(default=0.0, compare=False)

    @property
    def ground_truth(self) -> Path:
        return self.root / GROUND_TRUTH

    @property
    def video_root(self) -> Path:
        return self.root / writers.VIDEOS

    @property
    def tasks_file(self) -> Path:
        return self.root / writers.TASKS


def _size(size: str | TalTrainingSize) -> TalTrainingSize:
    if isinstance(size, TalTrainingSize):
        return size
    try:
        return TAL_TRAINING_SIZES[size]
    except KeyError:
        raise ValueError(f"unknown TAL training split size {size!r} (one of {', '.join(TAL_TRAINING_SIZES)})") from None


# ------------------------------------------------------------------------------------------------
# Content


def _untrimmed(rng: np.random.Generator, video_id: str, primary: str, spec: TalTrainingSize) -> Clip:
    """One video as synth-tal draws its videos: the primary class, maybe a second, 1-4 instances."""
    min_idle = int(round(TAL_MIN_IDLE_S * spec.fps))
    step_frames = (int(round(TAL_STEP_S[0] * spec.fps)), int(round(TAL_STEP_S[1] * spec.fps)))
    for _ in range(PLAN_TRIES):
        classes = [primary]
        if rng.random() < 0.5:
            classes.append(str(rng.choice([a for a in ACTION_NAMES if a != primary])))
        num_instances = int(rng.integers(len(classes), 5))
        labels = classes + [classes[int(rng.integers(0, len(classes)))] for _ in range(num_instances - len(classes))]
        labels = [labels[i] for i in rng.permutation(len(labels))]
        num_objects = int(rng.integers(1, 3))
        kinds = pick_objects(rng, num_objects)
        plan = [(int(rng.integers(0, num_objects)), label) for label in labels]
        duration = float(rng.uniform(*spec.duration_s))
        clip = plan_untrimmed(rng, video_id, kinds, plan, duration_s=duration, step_frames=step_frames,
                              min_idle_frames=min_idle, canvas=spec.canvas, fps=spec.fps)
        if clip is not None:
            return clip
    raise RuntimeError(f"could not place the untrimmed video {video_id} in {PLAN_TRIES} tries")


def tal_training_clips(seed: int, size: str | TalTrainingSize = "default") -> tuple[list[Clip], dict]:
    """The split's clips (video recipes) and its ground-truth document, deterministic from ``seed``."""
    spec = _size(size)
    rng = np.random.default_rng([SEED_BASE + seed, STREAM])
    clips: list[Clip] = []
    database: dict[str, dict] = {}
    for subset, prefix in SUBSETS.items():
        cycle = [ACTION_NAMES[i] for i in rng.permutation(len(ACTION_NAMES))]
        for index in range(getattr(spec, subset)):
            clip = _untrimmed(rng, f"{prefix}_{index:04d}", cycle[index % len(cycle)], spec)
            clips.append(clip)
            database[clip.video_id] = {
                "subset": subset,
                "duration": _seconds(clip.duration),
                "annotations": [
                    {"segment": [_seconds(clip.seconds(s.start_frame)), _seconds(clip.seconds(s.end_frame))],
                     "label": s.action}
                    for s in clip.steps
                ],
            }
    document = {
        "version": "synth-tal-training",
        "taxonomy": [{"nodeId": i, "nodeName": name, "parentId": None, "parentName": None}
                     for i, name in enumerate(sorted(ACTION_NAMES))],
        "database": database,
    }
    return clips, document


def _tasks_yaml(seed: int, spec: TalTrainingSize) -> str:
    entries = []
    for subset in SUBSETS:
        entries.append(f"""  synth-tal-{subset}:
    kind: localization
    paper: synth
    description: The {subset} subset of the synthetic TAL training split (seed {seed}), disjoint from synth-tal.
    format: activitynet
    data: {{ground_truth: {GROUND_TRUTH}, videos: {writers.VIDEOS}}}
    protocol: {{sampling: fps, fps: {spec.fps}, size: {spec.canvas}, tiou_thresholds: thumos14, subset: {subset}}}
    ties: expected
    seed: {seed}
    metrics:
      - {{name: average_mAP, direction: higher}}
""")
    return ("# The synthetic TAL training split (instract_eval.synth.tal_training); paths are relative to this file.\n"
            "tasks:\n" + "\n".join(entries))


# ------------------------------------------------------------------------------------------------
# Files


def write_tal_training(out_dir: str | os.PathLike, *, seed: int, size: str | TalTrainingSize = "default"
                       ) -> TalTrainingSplit:
    """Write the split into ``out_dir`` (absent, empty, or an earlier split, which is replaced).

    Everything is written beside ``out_dir`` first and moved into place at the end, so an
    interrupted run never leaves a ground truth that names videos that are not there.
    """
    started = time.perf_counter()
    spec = _size(size)
    out = Path(out_dir)
    check_replaceable(out, generator=GENERATOR, what="a synthetic TAL training split")
    clips, document = tal_training_clips(seed, spec)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    (partial / writers.VIDEOS).mkdir(parents=True)
    try:
        frames = 0
        for clip in clips:
            rendered = clip.frames()
            frames += len(rendered)
            write_mp4(partial / writers.VIDEOS / f"{clip.video_id}.mp4", rendered, clip.fps)
        writers.write_json(partial / GROUND_TRUTH, document)
        (partial / writers.TASKS).write_text(_tasks_yaml(seed, spec), encoding="utf-8")
        database = document["database"]
        counts = {"videos": len(clips), "frames": frames}
        for subset in SUBSETS:
            entries = [entry for entry in database.values() if entry["subset"] == subset]
            counts[subset] = len(entries)
            counts[f"{subset}_instances"] = sum(len(entry["annotations"]) for entry in entries)
        writers.write_json(partial / writers.MANIFEST, {
            "generator": GENERATOR, "generator_version": GENERATOR_VERSION, "seed": seed, "size": spec.name,
            "size_spec": spec.as_dict(), "codec": video_codec(), "counts": counts})
        publish(partial, out, generator=GENERATOR, what="a synthetic TAL training split")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return TalTrainingSplit(root=out, seed=seed, size=spec.name, counts=counts, seconds=time.perf_counter() - started)


def read_tal_training_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The split's ``manifest.json`` document, or None when there is none made by this generator."""
    return read_generator_manifest(out_dir, GENERATOR)


def ensure_tal_training(out_dir: str | os.PathLike, seed: int = 0, size: str | TalTrainingSize = "default"
                        ) -> TalTrainingSplit:
    """The split in ``out_dir`` if it is this generator version's, for this seed and size, and
    complete (its ground truth, task file and every video it names are there); otherwise a fresh
    one, made under a lock beside it so that two first runs do not both write."""
    spec = _size(size)
    return ensure_generated(out_dir, lambda: _usable(out_dir, seed, spec),
                            lambda: write_tal_training(out_dir, seed=seed, size=spec))


def _usable(out_dir: str | os.PathLike, seed: int, spec: TalTrainingSize) -> TalTrainingSplit | None:
    manifest = read_tal_training_manifest(out_dir)
    if (manifest is None or manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("seed") != seed
            or manifest.get("size_spec") != spec.as_dict()):
        return None
    root = Path(out_dir)
    try:
        document = json.loads((root / GROUND_TRUTH).read_text(encoding="utf-8"))
        videos = list(document["database"])
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, KeyError, TypeError):
        return None
    if not (root / writers.TASKS).is_file() or not all((root / writers.VIDEOS / f"{v}.mp4").is_file() for v in videos):
        return None
    return TalTrainingSplit(root=root, seed=seed, size=spec.name, counts=manifest.get("counts", {}))

