"""The clips really show what their annotations say, measured on decoded pixels.

Measurements are taken from the frames alone: the object mask is where a frame differs from the
clip's background, its centroid gives translation, its area gives size and visibility, and the
dark mark every shape carries gives the angle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from instract_eval.synth.benchmarks import build_world
from instract_eval.synth.motion import extent, inside_canvas, pose_after
from instract_eval.synth.render import background, read_mp4, write_mp4
from instract_eval.synth.sizes import SIZES
from instract_eval.synth.vocabulary import ACTION_BY_NAME, OBJECTS, REVERSIBLE_ACTIONS, ObjectKind
from instract_eval.synth.world import Clip, Step, Timing, plan_clip

TIMING = Timing(lead=(3, 3), step=(12, 12), gap=(1, 1), tail=(3, 3))
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def measure(frames: np.ndarray, clip: Clip) -> dict[str, np.ndarray]:
    """Per frame: mask area, centroid x and y, and the angle of the actor's dark mark (clockwise from up)."""
    canvas = clip.canvas
    bg = background(canvas, clip.background_seed)
    mask = np.abs(frames.astype(np.float32) - bg[None]).sum(-1) > 60
    yy, xx = np.mgrid[:canvas, :canvas] + 0.5
    for other in clip.initial[1:]:  # bystanders stay still: leave their pixels out
        mask &= (xx - other.x) ** 2 + (yy - other.y) ** 2 > (extent(other, canvas) + 0.5) ** 2
    dark = mask & ((frames.astype(np.float32) @ LUMA) < 60)
    area = mask.sum(axis=(1, 2)).astype(float)
    safe = np.maximum(area, 1)
    cx = (mask * xx).sum(axis=(1, 2)) / safe
    cy = (mask * yy).sum(axis=(1, 2)) / safe
    pose = clip.initial[0]
    near = (xx - pose.x) ** 2 + (yy - pose.y) ** 2 < (0.3 * canvas) ** 2
    angle = np.array([math.degrees(math.atan2(((xx - pose.x) * d).sum(), -((yy - pose.y) * d).sum()))
                      if d.any() else np.nan for d in dark & near])
    return {"area": area, "x": cx, "y": cy, "angle": angle}


def change(frames: np.ndarray, clip: Clip) -> dict[str, float]:
    m = measure(frames, clip)
    turn = (m["angle"][-1] - m["angle"][0] + 180.0) % 360.0 - 180.0
    return {"area": m["area"][-1] - m["area"][0], "x": m["x"][-1] - m["x"][0], "y": m["y"][-1] - m["y"][0],
            "turn": turn}


def shows(action: str, delta: dict[str, float], canvas: int) -> bool:
    """Whether a measured change is the signature of ``action`` (and not of its antonym)."""
    move = 0.15 * canvas
    return {
        "move left": delta["x"] < -move, "move right": delta["x"] > move,
        "move up": delta["y"] < -move, "move down": delta["y"] > move,
        "rotate clockwise": 45 < delta["turn"] < 135, "rotate anticlockwise": -135 < delta["turn"] < -45,
        "grow": delta["area"] > 10, "shrink": delta["area"] < -10,
        "appear": delta["area"] > 10, "disappear": delta["area"] < -10,
    }[action]


def single_action_clip(action: str, kind: ObjectKind, seed: int) -> Clip:
    rng = np.random.default_rng(seed)
    for _ in range(50):
        clip = plan_clip(rng, f"probe_{action}", (kind,), [(0, action)], TIMING, canvas=32, fps=8)
        if clip is not None:
            return clip
    raise AssertionError(f"no placement for {action}")


def test_reversed_move_left_clip_moves_right(tmp_path):
    clip = single_action_clip("move left", ObjectKind("blue", "square"), seed=3)
    write_mp4(tmp_path / "left.mp4", clip.frames(), clip.fps)
    frames, _ = read_mp4(tmp_path / "left.mp4")
    forward = measure(frames, clip)["x"]
    backward = measure(frames[::-1], clip)["x"]
    assert forward[-1] - forward[0] < -0.25 * 32
    assert backward[-1] - backward[0] > 0.25 * 32
    assert np.all(np.diff(backward) > -0.3)  # steadily rightwards, no jumps back


@pytest.mark.parametrize("action", REVERSIBLE_ACTIONS)
def test_each_reversible_action_reversed_shows_its_antonym(action, tmp_path):
    antonym = ACTION_BY_NAME[action].antonym
    clip = single_action_clip(action, ObjectKind("red", "triangle"), seed=REVERSIBLE_ACTIONS.index(action))
    write_mp4(tmp_path / "clip.mp4", clip.frames(), clip.fps)
    frames, _ = read_mp4(tmp_path / "clip.mp4")
    forward, backward = change(frames, clip), change(frames[::-1], clip)
    assert shows(action, forward, 32) and not shows(antonym, forward, 32), forward
    assert shows(antonym, backward, 32) and not shows(action, backward, 32), backward


@pytest.mark.parametrize("action", REVERSIBLE_ACTIONS)
def test_reversed_frames_equal_a_rendered_antonym_clip(action):
    """VR is real: the reversed clip *is* an antonym clip, pixel for pixel (before encoding)."""
    clip = single_action_clip(action, ObjectKind("green", "cross"), seed=7)
    (step,) = clip.steps
    last = clip.num_frames - 1
    end_pose = pose_after(action, clip.initial[0], clip.canvas)
    mirrored = Clip(video_id="mirror", kinds=clip.kinds, initial=(end_pose,),
                    steps=(Step(0, ACTION_BY_NAME[action].antonym, last - step.end_frame, last - step.start_frame),),
                    num_frames=clip.num_frames, fps=clip.fps, canvas=clip.canvas,
                    background_seed=clip.background_seed)
    difference = np.abs(clip.frames()[::-1].astype(int) - mirrored.frames().astype(int))
    assert difference.max() <= 1


def test_actionbench_clips_of_the_world_show_their_caption_not_its_antonym():
    size = SIZES["tiny"]
    content = build_world(0, size)
    clips = {c.video_id: c for c in content.clips}
    checked = 0
    for row in content.actionbench:
        clip = clips[row["video_uid"]]
        (step,) = clip.steps
        frames = clip.frames()[step.start_frame: step.end_frame + 1]
        if step.action.startswith("rotate") and np.isnan(measure(frames, clip)["angle"][[0, -1]]).any():
            continue  # mark hidden (e.g. under the distractor): nothing to measure
        delta = change(frames, clip)
        antonym = ACTION_BY_NAME[step.action].antonym
        assert row["clip_text"] == ACTION_BY_NAME[step.action].caption(clip.kinds[0].name)
        assert shows(step.action, delta, size.canvas) and not shows(antonym, delta, size.canvas), (row, delta)
        checked += 1
    assert checked >= len(content.actionbench) - 1


def test_untrimmed_videos_are_idle_outside_their_instances_and_move_inside():
    content = build_world(0, SIZES["tiny"])
    database = content.tal_ground_truth["database"]
    for clip in content.clips:
        if clip.video_id not in database:
            continue
        frames = clip.frames()
        moving = np.abs(np.diff(frames.astype(int), axis=0)).max(axis=(1, 2, 3)) > 0  # frame t -> t+1
        annotated = np.zeros(len(moving), bool)
        for instance in database[clip.video_id]["annotations"]:
            start, end = (round(t * clip.fps) for t in instance["segment"])
            annotated[start:end] = True
            assert moving[start:end].sum() >= (end - start) - 2  # something changes during the action
        assert not moving[~annotated].any()  # and nothing outside it


def test_every_planned_clip_stays_inside_the_canvas_and_never_overlaps():
    content = build_world(1, SIZES["tiny"])
    for clip in content.clips:
        for poses in clip.poses():
            visible = [p for p in poses if p.alpha > 0]
            assert all(inside_canvas(p, clip.canvas) for p in visible), clip.video_id
            for i, a in enumerate(visible):
                for b in visible[i + 1:]:
                    assert math.hypot(a.x - b.x, a.y - b.y) >= extent(a, clip.canvas) + extent(b, clip.canvas)


def test_objects_cover_every_colour_and_shape():
    assert len({o.colour for o in OBJECTS}) >= 5 and len({o.shape for o in OBJECTS}) >= 5
