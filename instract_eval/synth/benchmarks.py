"""The world's benchmarks: clips planned for each task and their annotations, as plain documents.

One builder per task family, each drawing from its own random stream (``[seed, stream]``), so
resizing one task does not reshuffle the others. Builders return clips (video recipes, rendered
later) and documents already in the on-disk shape of the real benchmark; `writers` only
serialises them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import captions
from .sizes import WorldSize
from .vocabulary import (
    ACTION_BY_NAME,
    ACTION_NAMES,
    ACTIONS,
    AMBIGUITY,
    OBJECTS,
    POSE_DESCRIPTIONS,
    REVERSIBLE_ACTIONS,
    ObjectKind,
)
from .world import Clip, Timing, pick_objects, plan_clip, plan_untrimmed, random_actions

TRIMMED = Timing(lead=(2, 5), step=(10, 14), gap=(1, 3), tail=(2, 5))
PLAN_TRIES = 200
NEGATIVES_PER_ROW = 9
SRT_RUNS = 10
TAL_MIN_IDLE_S = 0.75
TAL_STEP_S = (1.5, 2.5)

# Independent random streams, one per task family.
STREAM_SEMANTIC, STREAM_LOGIC, STREAM_DYNAMICS, STREAM_ACTIONBENCH, STREAM_SRT, STREAM_TAL = range(6)


@dataclass
class WorldContent:
    """Everything a world holds before it is written: video recipes and annotation documents."""

    clips: list[Clip] = field(default_factory=list)
    semantic: list[dict] = field(default_factory=list)
    logic: list[dict] = field(default_factory=list)
    dynamics: dict[str, dict[str, dict]] = field(default_factory=dict)
    dynamics_categories: dict[str, str] = field(default_factory=dict)
    actionbench: list[dict] = field(default_factory=list)
    actionbench_object_shuffled: list[dict] = field(default_factory=list)
    srt_classes: dict = field(default_factory=dict)
    srt_test: list[dict] = field(default_factory=list)
    srt_train: list[dict] = field(default_factory=list)
    tal_ground_truth: dict = field(default_factory=dict)
    tal_descriptions: dict = field(default_factory=dict)
    tal_conflicting: dict = field(default_factory=dict)


def build_world(seed: int, size: WorldSize) -> WorldContent:
    content = WorldContent()
    _semantic(np.random.default_rng([seed, STREAM_SEMANTIC]), size, content)
    _logic(np.random.default_rng([seed, STREAM_LOGIC]), size, content)
    _dynamics(np.random.default_rng([seed, STREAM_DYNAMICS]), size, content)
    _actionbench(np.random.default_rng([seed, STREAM_ACTIONBENCH]), size, content)
    _srt(np.random.default_rng([seed, STREAM_SRT]), size, content, seed)
    _tal(np.random.default_rng([seed, STREAM_TAL]), size, content, seed)
    return content


# ---------------------------------------------------------------------------------------------
# helpers


def _seconds(value: float) -> float:
    """Times are multiples of 1/fps; rounding keeps the JSON short and exact for fps 8."""
    return round(float(value), 6)


def _placed(rng: np.random.Generator, video_id: str, size: WorldSize,
            propose: Callable[[], tuple[tuple[ObjectKind, ...], list[tuple[int, str]]]]
            ) -> tuple[Clip, list[tuple[int, str]]]:
    """The first proposal (objects, plan) that can be placed as a trimmed clip."""
    for _ in range(PLAN_TRIES):
        kinds, plan = propose()
        clip = plan_clip(rng, video_id, kinds, plan, TRIMMED, canvas=size.canvas, fps=size.fps)
        if clip is not None:
            return clip, plan
    raise RuntimeError(f"could not place a clip for {video_id} in {PLAN_TRIES} tries")


def _random_plan(rng: np.random.Generator, num_steps: int, num_objects: int,
                 choices: tuple[str, ...] = ACTION_NAMES) -> tuple[tuple[ObjectKind, ...], list[tuple[int, str]]]:
    """Distinct actions over 1-2 objects; the first object always acts first."""
    kinds = pick_objects(rng, num_objects)
    actions = random_actions(rng, num_steps, choices)
    actors = [0] + [int(rng.integers(0, num_objects)) for _ in range(num_steps - 1)]
    return kinds, list(zip(actors, actions))


# ---------------------------------------------------------------------------------------------
# InstrAct Bench


def _semantic(rng: np.random.Generator, size: WorldSize, content: WorldContent) -> None:
    for index in range(size.semantic_rows):
        num_steps = 1 if index % 3 != 2 else 2  # two thirds single-step, one third two-step
        num_objects = int(rng.integers(1, 3))
        clip, plan = _placed(rng, f"sem_{index:04d}", size, lambda: _random_plan(rng, num_steps, num_objects))
        content.clips.append(clip)
        start, end = clip.segment()
        content.semantic.append({
            "caption": captions.caption(clip.kinds, plan),
            "video_id": clip.video_id,
            "start": _seconds(start),
            "end": _seconds(end),
            "hard_negatives": captions.verb_negatives(rng, clip.kinds, plan, NEGATIVES_PER_ROW),
        })


def _logic(rng: np.random.Generator, size: WorldSize, content: WorldContent) -> None:
    for index in range(size.logic_rows):
        num_steps = 2 if index % 5 < 3 else 3
        num_objects = int(rng.integers(1, 3))
        clip, plan = _placed(rng, f"log_{index:04d}", size, lambda: _random_plan(rng, num_steps, num_objects))
        content.clips.append(clip)
        start, end = clip.segment()
        content.logic.append({
            "caption": captions.caption(clip.kinds, plan),
            "video_id": clip.video_id,
            "start": _seconds(start),
            "end": _seconds(end),
            "order_swapped_hn": captions.order_swapped(rng, clip.kinds, plan, most=3),
        })


def _dynamics(rng: np.random.Generator, size: WorldSize, content: WorldContent) -> None:
    """Object pools: one object doing different actions, so only the action tells clips apart."""
    pool_objects = [OBJECTS[i] for i in rng.permutation(len(OBJECTS))[: size.dynamics_pools]]
    for kind in pool_objects:
        pool: dict[str, dict] = {}
        singles = random_actions(rng, len(ACTION_NAMES))
        for index in range(size.dynamics_clips_per_pool):
            if index % 3 != 2:
                first = singles.pop()

                def propose(first: str = first) -> tuple[tuple[ObjectKind, ...], list[tuple[int, str]]]:
                    return (kind,), [(0, first)]
            else:
                def propose() -> tuple[tuple[ObjectKind, ...], list[tuple[int, str]]]:
                    return (kind,), [(0, a) for a in random_actions(rng, 2)]
            for _ in range(PLAN_TRIES):
                clip, plan = _placed(rng, f"dyn_{kind.slug}_{index:02d}", size, propose)
                text = captions.caption(clip.kinds, plan)
                if text not in pool:  # the pool file is keyed by caption: captions must differ
                    break
            else:
                raise RuntimeError(f"no new caption for pool {kind.slug}")
            content.clips.append(clip)
            start, end = clip.segment()
            pool[text] = {"object": kind.name, "video_id": clip.video_id, "start": _seconds(start),
                          "end": _seconds(end), "operation": [action for _, action in plan]}
        content.dynamics[kind.slug] = pool
        content.dynamics_categories[kind.slug] = kind.shape


# ---------------------------------------------------------------------------------------------
# ActionBench (Ego4D field layout)


def _actionbench(rng: np.random.Generator, size: WorldSize, content: WorldContent) -> None:
    """Single actions whose reversal is their antonym, balanced over those actions."""
    repeats = -(-size.actionbench_rows // len(REVERSIBLE_ACTIONS))
    schedule = [REVERSIBLE_ACTIONS[i] for i in rng.permutation(len(REVERSIBLE_ACTIONS) * repeats)
                % len(REVERSIBLE_ACTIONS)][: size.actionbench_rows]
    for index, action in enumerate(schedule):
        num_objects = int(rng.integers(1, 3))
        clip, plan = _placed(rng, f"ab_{index:04d}", size,
                             lambda: (pick_objects(rng, num_objects), [(0, action)]))
        content.clips.append(clip)
        start, end = clip.segment()
        middle = (start + end) / 2
        row = {
            "video_uid": clip.video_id,
            "video_dur": _seconds(clip.duration),
            "narration_source": "synth",
            "narration_ind": index,
            "narration_time": _seconds(middle),
            "clip_start": _seconds(start),
            "clip_end": _seconds(end),
            "clip_text": captions.caption(clip.kinds, plan),
            "action_antonym_clip_text": captions.antonym_caption(clip.kinds, plan),
            "tag_verb": f"[{ACTION_NAMES.index(action)}]",
            "tag_noun": f"[{OBJECTS.index(clip.kinds[0])}]",
            "clip_uid": clip.video_id,
            "narration_relative_time": _seconds(middle),
            "clip_relative_start": _seconds(start),
            "clip_relative_end": _seconds(end),
            "clip_fps": float(clip.fps),
        }
        content.actionbench.append(row)
        content.actionbench_object_shuffled.append(
            {**row, "object_shuffled_clip_text": captions.object_replaced(rng, clip.kinds, plan)})


# ---------------------------------------------------------------------------------------------
# Synonym Robustness Test


def _srt(rng: np.random.Generator, size: WorldSize, content: WorldContent, seed: int) -> None:
    """Classes = actions; the rarest third (no training clips) are unseen and renamed per run."""
    num_unseen = len(ACTIONS) // 3
    order = rng.permutation(len(ACTIONS))
    unseen = {ACTIONS[i].name for i in order[:num_unseen]}
    lo, hi = size.srt_train_per_seen_class
    train_counts = {a.name: 0 if a.name in unseen else int(rng.integers(lo, hi + 1)) for a in ACTIONS}
    test_counts = dict.fromkeys(ACTION_NAMES, size.srt_test_per_class)

    def rows(split: str, counts: dict[str, int]) -> list[dict]:
        labels = [name for name in ACTION_NAMES for _ in range(counts[name])]
        out = []
        for index, position in enumerate(rng.permutation(len(labels))):
            label = labels[position]
            num_objects = int(rng.integers(1, 3))
            clip, _ = _placed(rng, f"srt_{split}_{index:04d}", size,
                              lambda: (pick_objects(rng, num_objects), [(0, label)]))
            content.clips.append(clip)
            start, end = clip.segment()
            out.append({"video": clip.video_id, "start": _seconds(start), "end": _seconds(end), "label": label})
        return out

    content.srt_test = rows("test", test_counts)
    content.srt_train = rows("train", train_counts)

    def entry(action_name: str) -> dict:
        action = ACTION_BY_NAME[action_name]
        return {"root": action.name, "frequency": train_counts[action.name] + test_counts[action.name],
                "runs": list(action.runs)}

    seen_names = [a.name for a in ACTIONS if a.name not in unseen]
    unseen_names = [a.name for a in ACTIONS if a.name in unseen]
    content.srt_classes = {
        "source": {
            "paper": "synth",
            "title": "instract_eval.synth procedural action world",
            "seed": seed,
            "note": "Same structure as the ACE SRT table (srt_synonyms.yaml): per class a root label and 10 runs "
                    "of synonyms, run 1 = the root label. Seen classes are listed too, with the same fields.",
        },
        "protocol": {
            "runs": SRT_RUNS,
            "run_1_is_root": True,
            "summary": "Unseen test clips are classified among the unseen classes 10 times, run r naming every "
                       "unseen class by its run-r label; seen clips among the seen classes by their root labels.",
            "novel_split": "The third of the classes with the fewest clips (none in srt/train.jsonl) are unseen; "
                           "their synonyms (runs 2-10) appear in no caption of any other task.",
        },
        "datasets": {
            "synth": {
                "name": "synth (procedural action world)",
                "description": "shapes x colours doing actions; one class per action; labels without the object",
                "num_classes": len(ACTIONS),
                "num_base_classes": len(seen_names),
                "num_novel_classes": len(unseen_names),
                "frames_per_clip": size.fps * 2,
                "clip_seconds": 2.0,
                "synonym_children": SRT_RUNS - 1,
                "seen_actions": [entry(name) for name in seen_names],
                "unseen_actions": [entry(name) for name in unseen_names],
                "fixes": [],
            },
        },
    }


# ---------------------------------------------------------------------------------------------
# Temporal action localization and the language-advantage probe


def _tal(rng: np.random.Generator, size: WorldSize, content: WorldContent, seed: int) -> None:
    """Untrimmed videos: 1-4 instances of 1-2 classes separated by idle stretches."""
    database: dict[str, dict] = {}
    cycle = [ACTION_NAMES[i] for i in rng.permutation(len(ACTION_NAMES))]
    min_idle = int(round(TAL_MIN_IDLE_S * size.fps))
    step_frames = (int(round(TAL_STEP_S[0] * size.fps)), int(round(TAL_STEP_S[1] * size.fps)))
    for index in range(size.tal_videos):
        video_id = f"tal_{index:04d}"
        primary = cycle[index % len(cycle)]  # every class gets instances once there are 12 videos
        clip = None
        for _ in range(PLAN_TRIES):
            classes = [primary]
            if rng.random() < 0.5:
                classes.append(str(rng.choice([a for a in ACTION_NAMES if a != primary])))
            num_instances = int(rng.integers(len(classes), 5))
            extra = [classes[int(rng.integers(0, len(classes)))] for _ in range(num_instances - len(classes))]
            labels = classes + extra
            labels = [labels[i] for i in rng.permutation(len(labels))]
            num_objects = int(rng.integers(1, 3))
            kinds = pick_objects(rng, num_objects)
            plan = [(int(rng.integers(0, num_objects)), label) for label in labels]
            duration = float(rng.uniform(*size.tal_duration_s))
            clip = plan_untrimmed(rng, video_id, kinds, plan, duration_s=duration, step_frames=step_frames,
                                  min_idle_frames=min_idle, canvas=size.canvas, fps=size.fps)
            if clip is not None:
                break
        if clip is None:
            raise RuntimeError(f"could not place the untrimmed video {video_id}")
        content.clips.append(clip)
        database[video_id] = {
            "subset": "test",
            "duration": _seconds(clip.duration),
            "annotations": [
                {"segment": [_seconds(clip.seconds(s.start_frame)), _seconds(clip.seconds(s.end_frame))],
                 "label": s.action}
                for s in clip.steps
            ],
        }
    content.tal_ground_truth = {
        "version": "synth-tal",
        "taxonomy": [{"nodeId": i, "nodeName": name, "parentId": None, "parentName": None}
                     for i, name in enumerate(sorted(ACTION_NAMES))],
        "database": database,
    }
    content.tal_descriptions = _descriptions(seed)
    content.tal_conflicting = _conflicting(rng, content.tal_descriptions, seed)


def _descriptions(seed: int) -> dict:
    names = sorted(ACTION_NAMES)
    classes = []
    for label_id, name in enumerate(names):
        start_pose, end_pose = POSE_DESCRIPTIONS[name]
        classes.append({
            "name": name,
            "label_id": label_id,
            "ambiguity": AMBIGUITY[name],
            "start_pose": start_pose,
            "end_pose": end_pose,
            "description": f"{start_pose}, and {end_pose}.",
            "description_source": "instract_eval.synth vocabulary (start pose to end pose)",
        })
    families: dict[str, list[str]] = {}
    for action in ACTIONS:
        families.setdefault(action.family, []).append(action.name)
    return {
        "source": {"paper": "synth", "title": "instract_eval.synth procedural action world", "seed": seed,
                   "note": "In the spirit of ActionVLM's THUMOS14 descriptions (thumos14.yaml): per class a "
                           "start-to-end pose description, plus ambiguity groups."},
        "num_classes": len(names),
        "label_id_note": "label_id is the alphabetical index of the class name.",
        "classes": classes,
        "description_prompt": "Describe the action from the start pose to the end pose.",
        "ambiguity_groups": {level: [n for n in names if AMBIGUITY[n] == level]
                             for level in ("hard", "medium", "easy")},
        "ambiguity_note": "hard: a quarter turn of a small shape is subtle; medium: translations, told apart from "
                          "their look-alikes only by direction; easy: size and visibility changes.",
        "lookalike_groups": families,
        "lookalike_note": "Classes in one group look alike frame by frame (move left, move right and shake all "
                          "translate horizontally); only the direction or the rhythm of time separates them.",
        "tiou_thresholds": {"synth": {"thresholds": [0.3, 0.4, 0.5, 0.6, 0.7], "average": "mean over the five"}},
    }


def _conflicting(rng: np.random.Generator, descriptions: dict, seed: int) -> dict:
    """Each class gets another class's description (a random derangement), for ActionVLM's LAP."""
    names = [c["name"] for c in descriptions["classes"]]
    text = {c["name"]: c["description"] for c in descriptions["classes"]}
    while True:
        order = rng.permutation(len(names))
        if all(order[i] != i for i in range(len(names))):
            break
    derangement = {names[i]: names[order[i]] for i in range(len(names))}
    return {
        "source": {"paper": "synth", "seed": seed,
                   "note": "LAP (ActionVLM Table 2): the localizer is given, for each class, the description of "
                           "another class; the relative drop of average mAP is the language advantage."},
        "derangement": derangement,
        "conflicting": {name: text[other] for name, other in derangement.items()},
    }
