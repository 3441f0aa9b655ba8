"""A procedural action world: the embedded default data of instract-eval.

No benchmark video can be downloaded on a build machine, yet the whole pipeline (decode -> sample
-> encode -> score) must run for real on a fresh install. This package generates, deterministically
from a seed, short real MP4 videos of objects (shapes x colours) doing actions with true
dynamics, and writes every task in the on-disk format of the real benchmark it stands in for:

- ``videos/<id>.mp4``: every clip; ids ``sem_*``, ``log_*``, ``dyn_<object>_*``, ``ab_*``,
  ``srt_test_*``, ``srt_train_*``, ``tal_*``
- ``instract/semantic.json``: InstrAct-Semantic rows, 9 ``hard_negatives`` each
- ``instract/logic.json``: InstrAct-Logic rows, 1-3 ``order_swapped_hn`` each
- ``instract/dynamics/<object>.json``: InstrAct-Dynamics pools keyed by caption (``red_square.json``)
- ``actionbench/ego4d_test.jsonl``: ActionBench Ego4D rows (AA and VR); ``video_uid`` = ``clip_uid``
  = the video file stem, clip times within that file
- ``actionbench/ego4d_test_object_shuffled.jsonl``: the same rows plus ``object_shuffled_clip_text`` (OR)
- ``srt/classes.yaml``: SRT classes shaped like ``srt_synonyms.yaml`` (root + 10 runs, seen/unseen)
- ``srt/test.jsonl``, ``srt/train.jsonl``: rows ``{video, start, end, label}`` (train: seen classes only)
- ``tal/ground_truth.json``: ActivityNet-format ground truth, subset ``test``
- ``tal/descriptions.yaml``: start/end-pose description per class, ambiguity and look-alike groups
- ``tal/descriptions_conflicting.yaml``: a derangement of those descriptions (LAP)
- ``tasks.yaml``: the ``synth`` task group, data paths relative to this directory
- ``manifest.json``: seed, size, generator version, counts per task

All times are seconds from the start of the video file. Why the probes are real here, and why the
hard negatives are hard by construction, is documented in `vocabulary`, `motion` and `captions`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import writers
from .generated import check_replaceable, ensure_generated, publish, read_generator_manifest
from .benchmarks import WorldContent, build_world
from .render import video_codec, write_mp4
from .sizes import SIZES, WorldSize, world_size

GENERATOR = "instract_eval.synth"
GENERATOR_VERSION = 2

__all__ = ["GENERATOR_VERSION", "SIZES", "WorldManifest", "WorldSize", "ensure_world", "generate_world",
           "read_manifest"]


@dataclass(frozen=True)
class WorldManifest:
    """What a generated world holds and where (the content of its ``manifest.json``)."""

    root: Path
    seed: int
    size: str
    generator_version: int
    counts: dict[str, int]
    tasks_file: Path
    seconds: float = field(default=0.0, compare=False)  # generation time; not written to manifest.json

    def as_json(self) -> dict:
        return {"generator": GENERATOR, "generator_version": self.generator_version, "seed": self.seed,
                "size": self.size, "counts": self.counts, "tasks": writers.TASKS}


def generate_world(out_dir: str | os.PathLike, *, seed: int = 0, size: str | WorldSize = "default") -> WorldManifest:
    """Generate a world into ``out_dir`` and return its manifest.

    ``out_dir`` must be absent, empty, or an earlier world (it is then replaced). The world is
    written next to it first and moved into place at the end, so an interrupted run never leaves a
    half-written world behind a valid-looking manifest.
    """
    started = time.perf_counter()
    spec = world_size(size)
    out = Path(out_dir)
    check_replaceable(out, generator=GENERATOR, what="a generated world")
    content = build_world(seed, spec)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        videos = partial / writers.VIDEOS
        videos.mkdir()
        frame_count = 0
        for clip in content.clips:
            frames = clip.frames()
            frame_count += len(frames)
            write_mp4(videos / f"{clip.video_id}.mp4", frames, clip.fps)
        writers.write_annotations(partial, content)
        (partial / writers.TASKS).write_text(writers.tasks_yaml(seed, spec), encoding="utf-8")
        counts = _counts(content, frame_count)
        manifest = WorldManifest(root=out, seed=seed, size=spec.name, generator_version=GENERATOR_VERSION,
                                 counts=counts, tasks_file=out / writers.TASKS)
        document = {**manifest.as_json(), "canvas": spec.canvas, "fps": spec.fps, "codec": video_codec(),
                    "size_spec": spec.as_dict()}
        writers.write_json(partial / writers.MANIFEST, document)
        publish(partial, out, generator=GENERATOR, what="a generated world")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return WorldManifest(root=out, seed=seed, size=spec.name, generator_version=GENERATOR_VERSION, counts=counts,
                         tasks_file=out / writers.TASKS, seconds=time.perf_counter() - started)


def read_manifest(out_dir: str | os.PathLike) -> WorldManifest | None:
    """The manifest of the world in ``out_dir``, or None if there is none (or not one of ours)."""
    document = read_generator_manifest(out_dir, GENERATOR)
    if document is None:
        return None
    return WorldManifest(root=Path(out_dir), seed=document["seed"], size=document["size"],
                         generator_version=document["generator_version"], counts=document["counts"],
                         tasks_file=Path(out_dir) / document["tasks"])


def ensure_world(out_dir: str | os.PathLike, *, seed: int = 0, size: str | WorldSize = "default") -> WorldManifest:
    """The world in ``out_dir`` if it was made by this generator version with this seed and size,
    otherwise a freshly generated one (the cache entry point for the embedded default).

    Two first runs on one fresh cache must not both generate: the second would replace the world
    the first is already reading. Generation therefore happens under an exclusive lock on a file
    beside the world; whoever waited for the lock finds the world made and reuses it.
    """
    spec = world_size(size)
    return ensure_generated(out_dir, lambda: _usable_world(out_dir, seed, spec),
                            lambda: generate_world(out_dir, seed=seed, size=spec))


def _usable_world(out_dir: str | os.PathLike, seed: int, spec: WorldSize) -> WorldManifest | None:
    found = read_manifest(out_dir)
    if found is not None and found.seed == seed and found.generator_version == GENERATOR_VERSION:
        document = json.loads((Path(out_dir) / writers.MANIFEST).read_text(encoding="utf-8"))
        if document.get("size_spec") == spec.as_dict():
            return found
    return None


def _counts(content: WorldContent, frame_count: int) -> dict[str, int]:
    gt = content.tal_ground_truth["database"]
    srt = content.srt_classes["datasets"]["synth"]
    return {
        "videos": len(content.clips),
        "frames": frame_count,
        "synth-semantic": len(content.semantic),
        "synth-logic": len(content.logic),
        "synth-dynamics": sum(len(pool) for pool in content.dynamics.values()),
        "synth-dynamics-pools": len(content.dynamics),
        "synth-aa": len(content.actionbench),
        "synth-vr": len(content.actionbench),
        "synth-or": len(content.actionbench_object_shuffled),
        "synth-srt": len(content.srt_test),
        "synth-srt-train": len(content.srt_train),
        "synth-srt-seen-classes": srt["num_base_classes"],
        "synth-srt-unseen-classes": srt["num_novel_classes"],
        "synth-tal": len(gt),
        "synth-tal-instances": sum(len(v["annotations"]) for v in gt.values()),
        "synth-lap": len(gt),
    }
