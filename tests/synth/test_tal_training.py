"""The synthetic TAL training split: ActivityNet format, synth-tal's classes, videos that match their
ground truth, disjoint from the evaluation world, deterministic and reused when complete."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instract_eval.data.activitynet import read_ground_truth
from instract_eval.media import probe_video
from instract_eval.synth import generate_world
from instract_eval.synth.benchmarks import TAL_MIN_IDLE_S, TAL_STEP_S
from instract_eval.synth.tal_training import (
    TAL_TRAINING_SIZES,
    ensure_tal_training,
    read_tal_training_manifest,
    tal_training_clips,
    write_tal_training,
)
from instract_eval.synth.vocabulary import ACTION_NAMES
from instract_eval.tasks import load_registry
from instract_eval.tasks.localization import localization_task
from instract_eval.tasks.registry import require_data


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_tal_training(tmp_path_factory.mktemp("tal-train") / "split", seed=0, size="tiny")


def test_the_ground_truth_reads_as_activitynet_with_training_and_validation_subsets(split, world):
    training = read_ground_truth(split.ground_truth, "training")
    validation = read_ground_truth(split.ground_truth, "validation")
    assert training.num_videos == 6 and validation.num_videos == 2
    assert all(name.startswith("taltrain_") for name in training.video_names)
    assert all(name.startswith("talval_") for name in validation.video_names)
    document = json.loads(split.ground_truth.read_text())
    evaluation = json.loads((world / "tal" / "ground_truth.json").read_text())
    assert document["taxonomy"] == evaluation["taxonomy"]  # synth-tal's classes, in its order
    assert {a["label"] for v in document["database"].values() for a in v["annotations"]} <= set(ACTION_NAMES)
    assert split.counts["training_instances"] == sum(len(v["annotations"]) for v in document["database"].values()
                                                     if v["subset"] == "training")


def test_every_video_lasts_its_duration_and_instances_are_separated_by_idle_stretches(split):
    document = json.loads(split.ground_truth.read_text())
    for video, entry in document["database"].items():
        info = probe_video(split.video_root / f"{video}.mp4")
        assert info.duration == pytest.approx(entry["duration"], abs=1e-6) and info.average_fps == 8.0
        assert 8.0 - 1 / 8 <= entry["duration"] <= 10.0 + 1 / 8  # the tiny size's 8-10 s
        segments = sorted(tuple(a["segment"]) for a in entry["annotations"])
        assert 1 <= len(segments) <= 4
        assert segments[0][0] >= TAL_MIN_IDLE_S - 1e-9 and segments[-1][1] <= entry["duration"]
        for start, end in segments:
            assert TAL_STEP_S[0] - 1e-9 <= end - start <= TAL_STEP_S[1] + 1e-9
        for (_, end), (start, _) in zip(segments, segments[1:]):
            assert start - end >= TAL_MIN_IDLE_S - 1e-9


def test_the_default_size_gives_every_class_instances_in_both_subsets_without_rendering():
    _, document = tal_training_clips(0, "default")
    database = document["database"]
    assert sum(v["subset"] == "training" for v in database.values()) == TAL_TRAINING_SIZES["default"].training == 160
    assert sum(v["subset"] == "validation" for v in database.values()) == 40
    for subset in ("training", "validation"):
        labels = {a["label"] for v in database.values() if v["subset"] == subset for a in v["annotations"]}
        assert labels == set(ACTION_NAMES)


def test_deterministic_per_seed_and_disjoint_from_the_evaluation_worlds(tmp_path):
    _, first = tal_training_clips(0, "tiny")
    _, again = tal_training_clips(0, "tiny")
    _, other = tal_training_clips(1, "tiny")
    assert first == again and first["database"] != other["database"]
    training = {tuple(map(tuple, (a["segment"] for a in v["annotations"]))) for v in first["database"].values()}
    for seed in (0, 1):
        generate_world(tmp_path / f"w{seed}", seed=seed, size="tiny")
        evaluation = json.loads((tmp_path / f"w{seed}" / "tal" / "ground_truth.json").read_text())["database"]
        assert not set(evaluation) & set(first["database"])
        assert not training & {tuple(map(tuple, (a["segment"] for a in v["annotations"]))) for v in evaluation.values()}


def test_the_task_file_registers_both_subsets_as_localization_tasks(split):
    registry = load_registry([split.tasks_file])
    for name, count in (("synth-tal-training", 6), ("synth-tal-validation", 2)):
        spec = registry.tasks[name]
        task = localization_task(spec, require_data(spec, environ={}))
        assert task.ground_truth.num_videos == count and task.video_dir == split.video_root
        assert set(task.class_names) <= set(ACTION_NAMES)


def test_ensure_reuses_a_complete_split_and_remakes_an_incomplete_one(tmp_path):
    made = ensure_tal_training(tmp_path / "s", seed=3, size="tiny")
    video = made.video_root / "taltrain_0000.mp4"
    stamp = video.stat().st_mtime_ns
    assert ensure_tal_training(tmp_path / "s", seed=3, size="tiny") == made and video.stat().st_mtime_ns == stamp
    (made.video_root / "talval_0001.mp4").unlink()
    remade = ensure_tal_training(tmp_path / "s", seed=3, size="tiny")
    assert (remade.video_root / "talval_0001.mp4").is_file()
    assert read_tal_training_manifest(tmp_path / "s")["seed"] == 3
    other = ensure_tal_training(tmp_path / "s", seed=4, size="tiny")  # another seed replaces it
    assert read_tal_training_manifest(tmp_path / "s")["seed"] == 4 and other.counts["videos"] == 8


def test_a_directory_of_other_files_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a synthetic TAL training split"):
        write_tal_training(tmp_path / "mine", seed=0, size="tiny")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_frames_change_where_the_ground_truth_says_an_action_happens(split):
    """The videos show the annotated actions: frames move inside instances and hold still in the
    idle stretches around them (the renderer's idle frames are the previous pose)."""
    import av

    document = json.loads(split.ground_truth.read_text())
    video, entry = next(iter(document["database"].items()))
    with av.open(str(split.video_root / f"{video}.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24").astype(np.float64) for f in container.decode(video=0)])
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # change from frame k to k + 1
    inside = np.zeros(len(change), dtype=bool)
    for start, end in (a["segment"] for a in entry["annotations"]):
        inside[int(round(start * 8)):int(round(end * 8))] = True
    assert change[inside].mean() > 3 * max(change[~inside].mean(), 1e-3)
