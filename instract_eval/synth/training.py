"""A synthetic InstrAct training split, in the official training format, from the world's own parts.

``instract-eval train instraction`` reads training data exactly as the official loader does
(`instract_eval.data.instract_train`), so the synthetic world provides a split in that format:

- ``annotations.json``: one object keyed by the positive caption,
  ``{caption: {video_id, start, end, verb_phrases, hard_negatives, order_swapped_hn,
  mam_mask_candidates}}``;
- ``videos/<video_id>.mp4``: the clips, rendered by the same planner and renderer as the
  evaluation world (`world.plan_clip`, `render.write_mp4`), ids ``itr_<n>``;
- ``manifest.json``: generator, version, seed, size and counts (what makes the split reusable).

Content, per video: 2-3 steps of distinct actions over 1-2 objects, captioned as the synthetic
InstrAct tasks caption them ("move the red square left, then grow the blue circle"). The entry's
fields mean what the official pipeline's offline annotations mean:

- ``verb_phrases``: the step texts in order (the teacher queries and DTW's ordered targets);
- ``hard_negatives`` (verb-altered): one step's action replaced by an action that is **not in the
  clip at all**, objects and the other steps unchanged. Excluding the clip's other actions keeps
  every negative false: with them, "A, then C" would describe a clip "A, then B, then C" of which
  it is a sub-sequence. At most `MAX_VERB_NEGATIVES`, in random order;
- ``order_swapped_hn``: every other order of the same steps (the full reversal first), so the
  loader, which takes all of them first, always sees the reversal;
- ``mam_mask_candidates``: each step's action words (the template's words outside the object and
  the fillers "the" and "make": "move" and "left", "rotate" and "anticlockwise", "grow") with their
  exact spans in the caption; ``method`` is ``verb`` for the first such word of a step, ``modifier``
  for the others, ``phrase`` the step text.

Multi-positive: every 3-step video also gets captions of one or both of its 2-step sub-sequences
(steps 1-2, 2-3) with their own segments. The official loader makes every caption of a video a
positive of the video's other captions (same ``idx``), and with 5 s of context on clips of about
6 s every caption's window shows the whole clip, so a sub-sequence caption is a true description.
Captions are unique over the whole file (it is keyed by caption): a plan whose caption is taken is
redrawn, a sub-sequence caption that is taken is left out.

Seeds: split ``seed`` draws from ``numpy.random.default_rng([1000 + seed, 6])``. Evaluation
worlds use seed 0 and small test seeds with streams 0-5 (`benchmarks`); the packaged models'
training worlds use seeds ``1000 + 100 * seed + k`` with the same streams 0-5; stream 6 is used by
nothing else, so this split is disjoint from both in its random stream.
"""

from __future__ import annotations

import itertools
from collections import Counter
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import captions, writers
from .generated import check_replaceable, ensure_generated, publish, read_generator_manifest
from .benchmarks import _placed, _random_plan, _seconds
from .render import video_codec, write_mp4
from .sizes import WorldSize
from .vocabulary import ACTION_BY_NAME, ACTION_NAMES, ObjectKind

__all__ = ["GENERATOR", "GENERATOR_VERSION", "TRAINING_SIZES", "TrainingSize", "TrainingSplit",
           "write_instract_training", "ensure_instract_training", "read_training_manifest", "training_entries"]

GENERATOR = "instract_eval.synth.training"
GENERATOR_VERSION = 1
SEED_BASE = 1000            # as the packaged models' training worlds: never an evaluation seed
STREAM = 6                  # benchmarks.py uses streams 0-5
ANNOTATIONS = "annotations.json"
MAX_VERB_NEGATIVES = 16     # more than the loader's 12 slots, so its random fill varies
FILLER_WORDS = ("the", "make")
PLAN_TRIES = 200


@dataclass(frozen=True)
class TrainingSize:
    """How many videos, and how they look (the canvas and frame rate of the evaluation worlds)."""

    name: str
    videos: int
    canvas: int = 32
    fps: int = 8

    def as_dict(self) -> dict:
        return asdict(self)

    def world_size(self) -> WorldSize:
        """The `WorldSize` the shared planners read (only canvas and fps matter to them)."""
        return WorldSize(name=f"training-{self.name}", canvas=self.canvas, fps=self.fps, semantic_rows=0,
                         logic_rows=0, dynamics_pools=0, dynamics_clips_per_pool=0, actionbench_rows=0,
                         srt_test_per_class=0, srt_train_per_seen_class=(0, 0), tal_videos=0,
                         tal_duration_s=(0.0, 0.0))


# ``default``: 240 videos, about 350 captions, generated in a few seconds on two cores.
TRAINING_SIZES: dict[str, TrainingSize] = {
    "tiny": TrainingSize(name="tiny", videos=10),
    "default": TrainingSize(name="default", videos=240),
}


@dataclass(frozen=True)
class TrainingSplit:
    """A written split: where its annotations and videos are, and what it holds."""

    root: Path
    seed: int
    size: str
    counts: dict[str, int]
    seconds: float = field(default=0.0, compare=False)

    @property
    def annotations(self) -> Path:
        return self.root / ANNOTATIONS

    @property
    def video_root(self) -> Path:
        return self.root / writers.VIDEOS


def _size(size: str | TrainingSize) -> TrainingSize:
    if isinstance(size, TrainingSize):
        return size
    try:
        return TRAINING_SIZES[size]
    except KeyError:
        raise ValueError(f"unknown training split size {size!r} (one of {', '.join(TRAINING_SIZES)})") from None


# ------------------------------------------------------------------------------------------------
# Annotations


def _step_spans(kinds: tuple[ObjectKind, ...], plan: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Each step's text and where it starts in the caption (the caption is the texts joined)."""
    spans, offset = [], 0
    for actor, action in plan:
        text = captions.step_text(kinds, actor, action)
        spans.append((offset, text))
        offset += len(text) + len(captions.STEP_SEPARATOR)
    return spans


def _action_words(action: str, obj: str) -> list[tuple[int, str]]:
    """The action's words in a step text, with their offsets in it (object and fillers left out)."""
    before, after = ACTION_BY_NAME[action].template.split("{obj}")
    words = []
    for part, base in ((before, 0), (after, len(before) + len(obj))):
        position = 0
        for word in part.split(" "):
            if word and word not in FILLER_WORDS:
                words.append((base + part.index(word, position), word))
            position += len(word) + 1
    return words


def mask_candidates(kinds: tuple[ObjectKind, ...], plan: list[tuple[int, str]]) -> list[dict]:
    """Every step's action words with exact ``[char_start, char_end)`` spans in the caption."""
    text = captions.caption(kinds, plan)
    out = []
    for (offset, phrase), (actor, action) in zip(_step_spans(kinds, plan), plan):
        for rank, (position, word) in enumerate(_action_words(action, kinds[actor].name)):
            start = offset + position
            assert text[start:start + len(word)] == word, (text, word, start)
            out.append({"word": word, "char_start": start, "char_end": start + len(word), "phrase": phrase,
                        "method": "verb" if rank == 0 else "modifier"})
    return out


def verb_altered(rng: np.random.Generator, kinds: tuple[ObjectKind, ...], plan: list[tuple[int, str]],
                 clip_actions: set[str]) -> list[str]:
    """One step's action replaced by an action absent from the clip, at most `MAX_VERB_NEGATIVES`."""
    texts = [captions.caption(kinds, [*plan[:i], (actor, other), *plan[i + 1:]])
             for i, (actor, _) in enumerate(plan) for other in ACTION_NAMES if other not in clip_actions]
    return [texts[i] for i in rng.permutation(len(texts))[:MAX_VERB_NEGATIVES]]


def order_swaps(kinds: tuple[ObjectKind, ...], plan: list[tuple[int, str]]) -> list[str]:
    """Every other order of the steps, the full reversal first."""
    positive = captions.caption(kinds, plan)
    orders = [list(reversed(plan))] + [[plan[i] for i in order] for order in itertools.permutations(range(len(plan)))]
    return [text for text in dict.fromkeys(captions.caption(kinds, order) for order in orders) if text != positive]


def _entry(rng: np.random.Generator, clip, plan: list[tuple[int, str]], first: int, last: int) -> dict:
    steps = plan[first:last + 1]
    start, end = clip.segment(first, last)
    return {
        "video_id": clip.video_id,
        "start": _seconds(start),
        "end": _seconds(end),
        "verb_phrases": [captions.step_text(clip.kinds, actor, action) for actor, action in steps],
        "hard_negatives": verb_altered(rng, clip.kinds, steps, {action for _, action in plan}),
        "order_swapped_hn": order_swaps(clip.kinds, steps),
        "mam_mask_candidates": mask_candidates(clip.kinds, steps),
    }


def training_entries(seed: int, size: str | TrainingSize = "default") -> tuple[list, dict[str, dict]]:
    """The split's clips (video recipes) and its annotation document, deterministic from ``seed``."""
    spec = _size(size)
    world = spec.world_size()
    rng = np.random.default_rng([SEED_BASE + seed, STREAM])
    clips, document = [], {}
    for index in range(spec.videos):
        num_steps = 2 if index % 5 < 3 else 3
        num_objects = int(rng.integers(1, 3))
        for _ in range(PLAN_TRIES):
            clip, plan = _placed(rng, f"itr_{index:04d}", world, lambda: _random_plan(rng, num_steps, num_objects))
            if captions.caption(clip.kinds, plan) not in document:
                break
        else:
            raise RuntimeError(f"no unused caption for itr_{index:04d} in {PLAN_TRIES} tries")
        clips.append(clip)
        document[captions.caption(clip.kinds, plan)] = _entry(rng, clip, plan, 0, len(plan) - 1)
        if num_steps == 3:
            choice = int(rng.integers(0, 3))  # steps 1-2, steps 2-3, or both
            for first in ((0,), (1,), (0, 1))[choice]:
                text = captions.caption(clip.kinds, plan[first:first + 2])
                if text not in document:
                    document[text] = _entry(rng, clip, plan, first, first + 1)
    return clips, document


# ------------------------------------------------------------------------------------------------
# Files


def write_instract_training(out_dir: str | os.PathLike, *, seed: int, size: str | TrainingSize = "default"
                            ) -> TrainingSplit:
    """Write the split into ``out_dir`` (absent, empty, or an earlier split, which is replaced).

    Everything is written beside ``out_dir`` first and moved into place at the end, so an
    interrupted run never leaves annotations that name videos that are not there.
    """
    started = time.perf_counter()
    spec = _size(size)
    out = Path(out_dir)
    check_replaceable(out, generator=GENERATOR, what="a synthetic training split")
    clips, document = training_entries(seed, spec)
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
        writers.write_json(partial / ANNOTATIONS, document)
        per_video = Counter(entry["video_id"] for entry in document.values())
        counts = {"videos": len(clips), "captions": len(document), "frames": frames,
                  "multi_positive_videos": sum(1 for n in per_video.values() if n > 1)}
        writers.write_json(partial / writers.MANIFEST, {
            "generator": GENERATOR, "generator_version": GENERATOR_VERSION, "seed": seed, "size": spec.name,
            "size_spec": spec.as_dict(), "codec": video_codec(), "counts": counts})
        publish(partial, out, generator=GENERATOR, what="a synthetic training split")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return TrainingSplit(root=out, seed=seed, size=spec.name, counts=counts, seconds=time.perf_counter() - started)


def read_training_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The split's ``manifest.json`` document, or None when there is none made by this generator."""
    return read_generator_manifest(out_dir, GENERATOR)


def ensure_instract_training(out_dir: str | os.PathLike, seed: int, size: str | TrainingSize = "default"
                             ) -> TrainingSplit:
    """The split in ``out_dir`` if it is this generator version's, for this seed and size, and
    complete (its annotations and every video they name are there); otherwise a fresh one, made
    under a lock beside it so that two first runs do not both write."""
    spec = _size(size)
    return ensure_generated(out_dir, lambda: _usable(out_dir, seed, spec),
                            lambda: write_instract_training(out_dir, seed=seed, size=spec))


def _usable(out_dir: str | os.PathLike, seed: int, spec: TrainingSize) -> TrainingSplit | None:
    manifest = read_training_manifest(out_dir)
    if (manifest is None or manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("seed") != seed
            or manifest.get("size_spec") != spec.as_dict()):
        return None
    root = Path(out_dir)
    try:
        document = json.loads((root / ANNOTATIONS).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    videos = {entry.get("video_id") for entry in document.values()} if isinstance(document, dict) else {None}
    if not all(isinstance(v, str) and (root / writers.VIDEOS / f"{v}.mp4").is_file() for v in videos):
        return None
    return TrainingSplit(root=root, seed=seed, size=spec.name, counts=manifest.get("counts", {}))

