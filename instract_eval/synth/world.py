"""Scenes of the world: which objects, where they start, which actions happen in which frames.

A `Clip` is a complete recipe for one video: the objects, their starting poses, the timed steps
and the number of frames. Rendering it (`Clip.frames`) is a pure function, so a clip is
reproducible from its description alone, and all randomness lives in the planners here, which
draw from a `numpy.random.Generator` the caller seeds.

Planning is rejection sampling: starting poses are drawn until every step can start (only a
hidden object can appear, grow stops at the largest scale, ...) and, at every frame, every object
stays inside the canvas and clear of the others. A plan that cannot be placed is redrawn by the
caller with other actions, so no clip ever shows something its annotations do not say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import render
from .motion import MAX_SCALE, MIN_SCALE, Pose, can_start, extent, inside_canvas, pose_after, pose_during
from .vocabulary import ACTION_NAMES, OBJECTS, ObjectKind

PLACEMENT_TRIES = 60
SCALES = (MIN_SCALE, 1.0, MAX_SCALE)


@dataclass(frozen=True)
class Step:
    """One action of one object, from ``start_frame`` (start pose) to ``end_frame`` (end pose)."""

    actor: int
    action: str
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class Timing:
    """Frame-count ranges (inclusive) of the parts of a clip."""

    lead: tuple[int, int]
    step: tuple[int, int]
    gap: tuple[int, int]
    tail: tuple[int, int]


@dataclass(frozen=True)
class Clip:
    """A video recipe: objects, starting poses, timed steps; rendered by `frames`."""

    video_id: str
    kinds: tuple[ObjectKind, ...]
    initial: tuple[Pose, ...]
    steps: tuple[Step, ...]
    num_frames: int
    fps: int
    canvas: int
    background_seed: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def seconds(self, frame: int) -> float:
        return frame / self.fps

    def segment(self, first: int = 0, last: int = -1) -> tuple[float, float]:
        """Start of step ``first`` to end of step ``last``, in seconds."""
        return self.seconds(self.steps[first].start_frame), self.seconds(self.steps[last].end_frame)

    def poses(self) -> list[tuple[Pose, ...]]:
        """Every object's pose in every frame."""
        return poses_per_frame(self.initial, self.steps, self.num_frames, self.canvas)

    def frames(self) -> np.ndarray:
        return render.render(self.kinds, self.poses(), self.canvas, self.background_seed)


def poses_per_frame(initial: Sequence[Pose], steps: Sequence[Step], num_frames: int, canvas: int
                    ) -> list[tuple[Pose, ...]]:
    current = list(initial)
    frames: list[tuple[Pose, ...]] = []
    ordered = sorted(steps, key=lambda s: s.start_frame)
    begun: list[tuple[Step, Pose]] = []  # steps that have started, with their actor's start pose
    pending = list(ordered)
    for frame in range(num_frames):
        while pending and pending[0].start_frame <= frame:
            step = pending.pop(0)
            begun.append((step, current[step.actor]))
        poses = list(current)
        still_running = []
        for step, start_pose in begun:
            progress = (frame - step.start_frame) / (step.end_frame - step.start_frame)
            if progress >= 1.0:
                current[step.actor] = pose_after(step.action, start_pose, canvas)
                poses[step.actor] = current[step.actor]
            else:
                poses[step.actor] = pose_during(step.action, start_pose, progress, canvas)
                still_running.append((step, start_pose))
        begun = still_running
        frames.append(tuple(poses))
    return frames


def schedule(rng: np.random.Generator, plan: Sequence[tuple[int, str]], timing: Timing
             ) -> tuple[tuple[Step, ...], int]:
    """Give each (actor, action) of ``plan`` consecutive frames; returns the steps and the frame count."""
    frame = int(rng.integers(timing.lead[0], timing.lead[1] + 1))
    steps = []
    for index, (actor, action) in enumerate(plan):
        if index:
            frame += int(rng.integers(timing.gap[0], timing.gap[1] + 1))
        length = int(rng.integers(timing.step[0], timing.step[1] + 1))
        steps.append(Step(actor, action, frame, frame + length))
        frame += length
    return tuple(steps), frame + int(rng.integers(timing.tail[0], timing.tail[1] + 1)) + 1


def place(rng: np.random.Generator, kinds: Sequence[ObjectKind], steps: Sequence[Step], num_frames: int,
          canvas: int) -> tuple[Pose, ...] | None:
    """Starting poses under which every step is possible and nothing leaves the canvas or collides."""
    first_action = {}
    for step in sorted(steps, key=lambda s: s.start_frame):
        first_action.setdefault(step.actor, step.action)
    for _ in range(PLACEMENT_TRIES):
        initial = []
        for actor in range(len(kinds)):
            first = first_action.get(actor)
            if first == "grow":
                scale = float(rng.choice(SCALES[:2]))
            elif first == "shrink":
                scale = float(rng.choice(SCALES[1:]))
            else:  # mostly the base size, sometimes small enough to grow later
                scale = SCALES[0] if rng.random() < 0.25 else 1.0
            margin = extent(Pose(0.0, 0.0, scale=scale), canvas) + 0.5
            x, y = rng.uniform(margin, canvas - margin, size=2)
            initial.append(Pose(x=float(round(x, 3)), y=float(round(y, 3)), angle=float(rng.integers(0, 4) * 90),
                                scale=scale, alpha=0.0 if first == "appear" else 1.0))
        if _feasible(initial, steps, num_frames, canvas):
            return tuple(initial)
    return None


def _feasible(initial: Sequence[Pose], steps: Sequence[Step], num_frames: int, canvas: int) -> bool:
    current = list(initial)
    for step in sorted(steps, key=lambda s: s.start_frame):
        if not can_start(step.action, current[step.actor]):
            return False
        current[step.actor] = pose_after(step.action, current[step.actor], canvas)
    for poses in poses_per_frame(initial, steps, num_frames, canvas):
        for pose in poses:
            if pose.alpha > 0.0 and not inside_canvas(pose, canvas):
                return False
        for i in range(len(poses)):
            for j in range(i + 1, len(poses)):
                a, b = poses[i], poses[j]
                if a.alpha > 0.0 and b.alpha > 0.0:
                    if np.hypot(a.x - b.x, a.y - b.y) < extent(a, canvas) + extent(b, canvas) + 1.0:
                        return False
    return True


def pick_objects(rng: np.random.Generator, count: int, required: ObjectKind | None = None,
                 exclude: Sequence[ObjectKind] = ()) -> tuple[ObjectKind, ...]:
    """``count`` distinct objects (the ``required`` one first), none of ``exclude``."""
    chosen = [required] if required is not None else []
    pool = [o for o in OBJECTS if o not in chosen and o not in exclude]
    order = rng.permutation(len(pool))
    chosen.extend(pool[i] for i in order[: count - len(chosen)])
    return tuple(chosen)


def plan_clip(rng: np.random.Generator, video_id: str, kinds: Sequence[ObjectKind], plan: Sequence[tuple[int, str]],
              timing: Timing, *, canvas: int, fps: int) -> Clip | None:
    """A placed clip for ``plan`` ((actor, action) in order), or None if it cannot be placed."""
    steps, num_frames = schedule(rng, plan, timing)
    initial = place(rng, kinds, steps, num_frames, canvas)
    if initial is None:
        return None
    return Clip(video_id=video_id, kinds=tuple(kinds), initial=initial, steps=steps, num_frames=num_frames,
                fps=fps, canvas=canvas, background_seed=int(rng.integers(0, 2**31 - 1)))


def plan_untrimmed(rng: np.random.Generator, video_id: str, kinds: Sequence[ObjectKind],
                   plan: Sequence[tuple[int, str]], *, duration_s: float, step_frames: tuple[int, int],
                   min_idle_frames: int, canvas: int, fps: int) -> Clip | None:
    """A long clip of ``duration_s`` whose steps are separated by idle stretches of random length."""
    lengths = [int(rng.integers(step_frames[0], step_frames[1] + 1)) for _ in plan]
    num_frames = int(round(duration_s * fps))
    idle = num_frames - 1 - sum(lengths)
    stretches = len(plan) + 1
    spare = idle - stretches * min_idle_frames
    if spare < 0:
        return None
    cuts = np.sort(rng.integers(0, spare + 1, size=stretches - 1))
    extra = np.diff(np.concatenate(([0], cuts, [spare])))
    frame = 0
    steps = []
    for index, ((actor, action), length) in enumerate(zip(plan, lengths)):
        frame += min_idle_frames + int(extra[index])
        steps.append(Step(actor, action, frame, frame + length))
        frame += length
    initial = place(rng, kinds, steps, num_frames, canvas)
    if initial is None:
        return None
    return Clip(video_id=video_id, kinds=tuple(kinds), initial=initial, steps=tuple(steps), num_frames=num_frames,
                fps=fps, canvas=canvas, background_seed=int(rng.integers(0, 2**31 - 1)))


def random_actions(rng: np.random.Generator, count: int, choices: Sequence[str] = ACTION_NAMES) -> list[str]:
    """``count`` distinct actions drawn from ``choices``."""
    order = rng.permutation(len(choices))
    return [choices[i] for i in order[:count]]
