"""The temporal-localization engine: real THUMOS14 ground truth, the synthetic world, LAP and errors.

Every expected number is computed here, independently of the engine: the ground truth is read
with `read_ground_truth`, the predictions are coded by the test and scored with
`temporal_localization_map` (or `hallucination_rates`) directly.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import yaml

from instract_eval.encoding import Encoder
from instract_eval.adapters.protocols import Segment
from instract_eval.data.activitynet import read_ground_truth
from instract_eval.errors import InputError
from instract_eval.media import decode_frames, probe_video
from instract_eval.metrics.localization import THUMOS14_TIOU_THRESHOLDS, temporal_localization_map
from instract_eval.metrics.localization_diagnostics import hallucination_rates
from instract_eval.tasks import load_registry, require_data, task
from instract_eval.tasks.localization import derangement, evaluate_localization, localization_task
from instract_eval.tasks.registry import builtin_resource, parse_registry

KEYS = ("0.3", "0.4", "0.5", "0.6", "0.7")


# ------------------------------------------------------------------------------------------------
# Real THUMOS14 ground truth with a feature-based stand-in localizer


@pytest.fixture(scope="module")
def thumos():
    """The shipped THUMOS14 test ground truth, its durations and its ambiguity groups, read here."""
    with builtin_resource("thumos14_gt.json") as path:
        gt = read_ground_truth(path, "Test")
        database = json.loads(path.read_text())["database"]
    with builtin_resource("thumos14.yaml") as path:
        groups = yaml.safe_load(path.read_text())["ambiguity_groups"]
    durations = {video: float(database[video]["duration"]) for video in gt.video_names}
    return gt, durations, groups


def perturbed_rows(gt, seed: int = 0) -> dict[str, np.ndarray]:
    """Per video, [start, end, class_id, score] rows: GT with jittered boundaries, drops, false positives."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {video: [] for video in gt.video_names}
    for v, c, (start, end) in zip(gt.video.tolist(), gt.label.tolist(), gt.segments.tolist()):
        if rng.random() < 0.2:
            continue  # dropped: a miss
        length = end - start
        s = max(0.0, start + rng.normal(0, 0.2) * length)
        e = max(s + 0.05, end + rng.normal(0, 0.2) * length)
        label = c if rng.random() < 0.9 else int(rng.integers(0, gt.num_classes))
        rows[gt.video_names[v]].append([s, e, label, rng.random()])
    for video in gt.video_names:
        for _ in range(int(rng.poisson(2))):  # false positives anywhere
            s = rng.uniform(0, 100)
            rows[video].append([s, s + rng.uniform(0.5, 10), int(rng.integers(0, gt.num_classes)), rng.random()])
    return {video: np.array(r, dtype=np.float64).reshape(-1, 4) for video, r in rows.items()}


def oracle_rows(gt) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {video: [] for video in gt.video_names}
    for v, c, (start, end) in zip(gt.video.tolist(), gt.label.tolist(), gt.segments.tolist()):
        rows[gt.video_names[v]].append([start, end, c, 1.0])
    return {video: np.array(r, dtype=np.float64).reshape(-1, 4) for video, r in rows.items()}


def thumos_task(tmp_path, rows: dict[str, np.ndarray], name: str = "tal-thumos14"):
    """Write one .npy per video under ``<tmp>/thumos14/videos`` and build the registered task on it."""
    videos = tmp_path / "thumos14" / "videos"
    videos.mkdir(parents=True)
    for video, array in rows.items():
        np.save(videos / f"{video}.npy", array)
    spec = task(name)
    return localization_task(spec, require_data(spec, data_root=tmp_path, environ={}))


class FeatureLocalizer:
    """Reads its precomputed [start, end, class_id, score] rows from the video's .npy file."""

    name = "feature-stand-in"

    def __init__(self, class_names):
        self.class_names = tuple(class_names)
        self.calls = 0

    def localize(self, video, classes, descriptions):
        assert video.endswith(".npy") and set(classes) == set(self.class_names)
        self.calls += 1
        return [Segment(float(s), float(e), self.class_names[int(c)], float(p)) for s, e, c, p in np.load(video)]


class TextLocalizer(FeatureLocalizer):
    """The same answers, as if parsed from text; every 5th video gets a constant answer, every 7th a repeat."""

    name = "text-stand-in"
    answers_in_text = True

    def localize(self, video, classes, descriptions):
        segments = super().localize(video, classes, descriptions)
        index = self.calls - 1
        if index % 5 == 0:
            return [Segment(0.0, 10.0, c, 0.5) for c in classes]
        if index % 7 == 0 and segments:
            return segments + [segments[0]]
        return segments


class FixedTextLocalizer:
    name = "fixed-text"
    answers_in_text = True

    def localize(self, video, classes, descriptions):
        return [Segment(0.0, 10.0, c, 0.5) for c in classes]


def direct_map(gt, rows: dict[str, np.ndarray], videos=None):
    """temporal_localization_map on the GT of ``videos`` (default all) and their rows."""
    videos = list(gt.video_names) if videos is None else list(videos)
    ids = [gt.video_names.index(v) for v in videos]
    keep = np.isin(gt.video, ids)
    pv = np.concatenate([np.full(len(rows[v]), i) for v, i in zip(videos, ids)]).astype(np.int64)
    pred = np.concatenate([rows[v] for v in videos])
    return temporal_localization_map(gt.video[keep], gt.label[keep], gt.segments[keep],
                                     pv, pred[:, 2].astype(np.int64), pred[:, :2], pred[:, 3],
                                     thresholds=THUMOS14_TIOU_THRESHOLDS, num_classes=gt.num_classes)


def test_thumos14_map_per_threshold_class_and_group_equals_the_metric(tmp_path, thumos):
    gt, _, groups = thumos
    rows = perturbed_rows(gt)
    localization = thumos_task(tmp_path, rows)
    assert localization.class_names == gt.class_names  # the 20 THUMOS14 classes, all described
    model = FeatureLocalizer(gt.class_names)
    result = evaluate_localization(Encoder(model), localization)
    assert model.calls == gt.num_videos == 212
    expected = direct_map(gt, rows)
    metrics = result["metrics"]
    assert [metrics[f"mAP@{k}"] for k in KEYS] == expected.mean_average_precision.tolist()
    assert metrics["average_mAP"] == expected.average_map
    assert 0.2 < metrics["average_mAP"] < 0.9  # a perturbed, not a trivial, prediction set
    assert list(result["per_class_AP"]) == list(gt.class_names)
    for c, name in enumerate(gt.class_names):
        assert result["per_class_AP"][name] == pytest.approx(expected.average_precision[:, c].mean(), abs=1e-12)
        for t, key in enumerate(KEYS):
            assert result["per_threshold_class_AP"][key][name] == expected.average_precision[t, c]
    assert set(result["ambiguity"]) == set(groups)
    for group, members in groups.items():
        hand = sum(result["per_class_AP"][m] for m in members) / len(members)
        assert result["ambiguity"][group] == pytest.approx(hand, abs=1e-12)
    assert result["num_predictions"] == sum(len(r) for r in rows.values())
    assert result["coverage"] == {"evaluated": 212, "total": 212, "fraction": 1.0, "missing_videos": []}
    assert result["hallucination"] is None and "hallucination.fixed" not in metrics
    first = result["samples"][0]
    assert first["id"] == gt.video_names[0]
    assert first["segments"] == [[s, e, gt.class_names[int(c)], p] for s, e, c, p in rows[first["id"]].tolist()]


def test_a_perfect_oracle_scores_one(tmp_path, thumos):
    gt, _, _ = thumos
    result = evaluate_localization(Encoder(FeatureLocalizer(gt.class_names)), thumos_task(tmp_path, oracle_rows(gt)))
    assert result["metrics"]["average_mAP"] == 1.0
    assert all(result["metrics"][f"mAP@{k}"] == 1.0 for k in KEYS)


def test_missing_videos_fail_unless_allowed_and_then_leave_their_ground_truth_out(tmp_path, thumos):
    gt, _, _ = thumos
    rows = perturbed_rows(gt, seed=1)
    localization = thumos_task(tmp_path, rows)
    gone = list(gt.video_names[3:13])
    for video in gone:
        (localization.video_dir / f"{video}.npy").unlink()
    with pytest.raises(InputError) as error:
        evaluate_localization(Encoder(FeatureLocalizer(gt.class_names)), localization)
    assert gone[0] in str(error.value) and str(localization.video_dir) in str(error.value)
    assert "--allow-missing" in str(error.value)

    result = evaluate_localization(Encoder(FeatureLocalizer(gt.class_names), allow_missing=True), localization)
    assert result["coverage"] == {"evaluated": 202, "total": 212, "fraction": 202 / 212, "missing_videos": gone}
    present = [v for v in gt.video_names if v not in gone]
    expected = direct_map(gt, rows, present)
    assert [result["metrics"][f"mAP@{k}"] for k in KEYS] == expected.mean_average_precision.tolist()
    assert result["metrics"]["average_mAP"] == expected.average_map
    # Restricting the GT matters: counting the missing videos' instances as misses gives less.
    assert direct_map(gt, {**rows, **{v: np.zeros((0, 4)) for v in gone}}).average_map < expected.average_map
    assert [s["id"] for s in result["samples"]] == present


def test_no_video_at_all_is_an_error_even_when_missing_ones_are_allowed(tmp_path, thumos):
    gt, _, _ = thumos
    localization = thumos_task(tmp_path, {gt.video_names[0]: np.zeros((0, 4))})
    for path in localization.video_dir.iterdir():
        path.unlink()
    with pytest.raises(InputError, match="none of the 212 videos"):
        evaluate_localization(Encoder(FeatureLocalizer(gt.class_names), allow_missing=True), localization)


def test_hallucination_rates_of_a_text_localizer_equal_the_metric_on_its_responses(tmp_path, thumos):
    gt, durations, _ = thumos
    rows = perturbed_rows(gt, seed=2)
    localization = thumos_task(tmp_path, rows)
    result = evaluate_localization(Encoder(TextLocalizer(gt.class_names)), localization)
    # The responses, assembled here: one per (video, class with GT there), that class's segments.
    answers = {s["id"]: s["segments"] for s in result["samples"]}
    replay = TextLocalizer(gt.class_names)
    responses, video_ids, lengths = [], [], []
    for v, video in enumerate(gt.video_names):
        segments = replay.localize(str(localization.video_dir / f"{video}.npy"), gt.class_names, None)
        assert answers[video] == [[s.start, s.end, s.label, s.score] for s in segments]
        for c in sorted(set(gt.label[gt.video == v].tolist())):
            responses.append([[s.start, s.end] for s in segments if s.label == gt.class_names[c]])
            video_ids.append(video)
            lengths.append(durations[video])
    expected = hallucination_rates([np.array(r).reshape(-1, 2) for r in responses], np.array(video_ids),
                                   np.array(lengths))
    metrics = result["metrics"]
    assert metrics["hallucination.fixed"] == expected["fixed"]
    assert metrics["hallucination.repeating"] == expected["repeating"]
    assert 0 < expected["fixed"] < 1 and 0 < expected["repeating"] < 1
    assert result["hallucination"]["num_responses"] == len(responses)


def test_a_text_localizer_with_one_fixed_answer_is_always_hallucinating(tmp_path, thumos):
    gt, _, _ = thumos
    result = evaluate_localization(Encoder(FixedTextLocalizer()), thumos_task(tmp_path, oracle_rows(gt)))
    assert result["metrics"]["hallucination.fixed"] == 1.0
    assert result["metrics"]["hallucination.repeating"] == 0.0


def test_lap_thumos14_derangement_has_no_fixed_point_and_follows_the_seed(tmp_path):
    (tmp_path / "thumos14" / "videos").mkdir(parents=True)
    spec = task("lap-thumos14")
    assert "conflicting" not in spec.data
    location = require_data(spec, data_root=tmp_path, environ={})
    first = localization_task(spec, location)
    names = first.class_names
    assert len(names) == 20
    assert all(first.conflicting[c] != first.descriptions[c] for c in names)
    assert sorted(first.conflicting.values()) == sorted(first.descriptions.values())  # a permutation
    assert localization_task(spec, location).conflicting == first.conflicting
    other = localization_task(dataclasses.replace(spec, seed=1), location)
    assert other.conflicting != first.conflicting
    # The documented rule: default_rng(seed).permutation until no fixed point.
    rng = np.random.default_rng(0)
    while True:
        order = rng.permutation(len(names))
        if all(order[i] != i for i in range(len(names))):
            break
    assert dict(first.conflicting) == {c: first.descriptions[names[j]] for c, j in zip(names, order)}


@pytest.mark.parametrize("size", [2, 3, 5, 20])
def test_derangements_move_every_class(size):
    for seed in range(20):
        order = derangement(size, seed)
        assert sorted(order.tolist()) == list(range(size))
        assert (order != np.arange(size)).all()
        assert (order == derangement(size, seed)).all()


# ------------------------------------------------------------------------------------------------
# The synthetic world: real MP4s, frame differencing


@pytest.fixture(scope="module")
def world_truth(world):
    """video -> [(label, start, end)] of the world's TAL ground truth, and its two description tables."""
    database = json.loads((world / "tal" / "ground_truth.json").read_text())["database"]
    truth = {video: [(a["label"], *a["segment"]) for a in entry["annotations"]] for video, entry in database.items()}
    aligned = {c["name"]: c["description"]
               for c in yaml.safe_load((world / "tal" / "descriptions.yaml").read_text())["classes"]}
    conflicting = yaml.safe_load((world / "tal" / "descriptions_conflicting.yaml").read_text())["conflicting"]
    return truth, aligned, conflicting


def moving_stretches(path: str) -> list[tuple[float, float, float]]:
    """(start, end, mean change) of the runs of frames that differ from the previous one."""
    info = probe_video(path)
    times = np.arange(info.num_frames) / info.average_fps
    frames = decode_frames(path, times).frames.numpy().astype(np.float64)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    moving = np.concatenate(([False], change > 0.05, [False]))
    edges = np.flatnonzero(moving[1:] != moving[:-1])
    return [(times[a], times[min(b, len(times) - 1)], float(change[a:b].mean())) for a, b in edges.reshape(-1, 2)]


class MotionLocalizer:
    """Finds moving stretches by frame differencing; names each by the overlapping GT instance.

    The class lookup stands in for a recognizer (the engine, not recognition, is under test).
    With ``aligned`` set it names the class whose *given* description is the true class's aligned
    description, as a model that reads the descriptions would; without, it ignores them.
    """

    name = "motion-stand-in"

    def __init__(self, truth, aligned=None):
        self.truth, self.aligned, self.cache = truth, aligned, {}

    def localize(self, video, classes, descriptions):
        assert video.endswith(".mp4")
        if video not in self.cache:
            self.cache[video] = moving_stretches(video)
        stem = video.rsplit("/", 1)[-1][: -len(".mp4")]
        segments = []
        for start, end, change in self.cache[video]:
            label = max(self.truth[stem], key=lambda g: min(end, g[2]) - max(start, g[1]))[0]
            if self.aligned is not None:
                label = next(c for c in classes if descriptions[c] == self.aligned[label])
            segments.append(Segment(float(start), float(end), label, min(1.0, change / 3)))
        return segments


def direct_world_map(world, localization, model, descriptions):
    gt = read_ground_truth(world / "tal" / "ground_truth.json", "test")
    index = {c: i for i, c in enumerate(localization.class_names)}
    gt_label = np.array([index[gt.class_names[c]] for c in gt.label])
    pv, pl, ps, sc = [], [], [], []
    for v, video in enumerate(gt.video_names):
        for s in model.localize(str(world / "videos" / f"{video}.mp4"), localization.class_names, descriptions):
            pv.append(v), pl.append(index[s.label]), ps.append((s.start, s.end)), sc.append(s.score)
    return temporal_localization_map(gt.video, gt_label, gt.segments, np.array(pv), np.array(pl), np.array(ps),
                                     np.array(sc), thresholds=THUMOS14_TIOU_THRESHOLDS,
                                     num_classes=len(localization.class_names))


def world_task(world, name):
    spec = load_registry([world / "tasks.yaml"]).tasks[name]
    return localization_task(spec, require_data(spec, environ={}))


def test_synth_tal_end_to_end_on_decoded_video(world, world_truth):
    truth, aligned, _ = world_truth
    localization = world_task(world, "synth-tal")
    assert localization.conflicting is None and dict(localization.descriptions) == aligned
    model = MotionLocalizer(truth)
    result = evaluate_localization(Encoder(model), localization)
    expected = direct_world_map(world, localization, model, localization.descriptions)
    assert [result["metrics"][f"mAP@{k}"] for k in KEYS] == expected.mean_average_precision.tolist()
    assert result["metrics"]["average_mAP"] == expected.average_map
    assert result["metrics"]["mAP@0.3"] == 1.0  # every action is found by frame differencing
    assert set(result["per_class_AP"]) == {label for rows in truth.values() for label, _, _ in rows}
    assert "LAP" not in result["metrics"] and "conflicting" not in result


def test_synth_lap_a_description_reader_is_misled_and_a_vision_only_one_is_not(world, world_truth):
    truth, aligned, conflicting = world_truth
    localization = world_task(world, "synth-lap")
    assert dict(localization.conflicting) == conflicting
    reader = MotionLocalizer(truth, aligned=aligned)
    result = evaluate_localization(Encoder(reader), localization)
    a = direct_world_map(world, localization, reader, aligned).average_map
    c = direct_world_map(world, localization, reader, conflicting).average_map
    metrics = result["metrics"]
    assert metrics["aligned.average_mAP"] == metrics["average_mAP"] == a
    assert metrics["conflicting.average_mAP"] == result["conflicting"]["metrics"]["average_mAP"] == c
    assert metrics["LAP"] == pytest.approx((a - c) / a, abs=1e-12)
    assert metrics["LAP"] > 0.5
    sample = result["samples"][0]
    assert [row[2] for row in sample["segments"]] != [row[2] for row in sample["conflicting_segments"]]

    vision = evaluate_localization(Encoder(MotionLocalizer(truth)), localization)
    assert vision["metrics"]["LAP"] == 0.0
    assert vision["metrics"]["average_mAP"] == a  # the same segments, correctly named


# ------------------------------------------------------------------------------------------------
# Errors, on a small task written here


def small_task_spec(tmp_path, *, protocol=None, transform=None, descriptions=None, conflicting=None,
                    videos=("v1", "v2", "v3")):
    """gt.json (classes jump and run), descriptions.yaml, videos/*.npy and the task entry for them."""
    database = {
        "v1": {"subset": "test", "duration": 50.0,
               "annotations": [{"label": "jump", "segment": [1.0, 5.0]}, {"label": "run", "segment": [10.0, 20.0]}]},
        "v2": {"subset": "test", "duration": 40.0, "annotations": [{"label": "run", "segment": [2.0, 8.0]}]},
        "v3": {"subset": "test", "duration": 30.0, "annotations": [{"label": "jump", "segment": [3.0, 4.0]}]},
        "v9": {"subset": "train", "duration": 30.0, "annotations": [{"label": "swim", "segment": [3.0, 4.0]}]},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "gt.json").write_text(json.dumps({"version": "t", "database": database}))
    described = descriptions if descriptions is not None else {"jump": "leaves the ground", "run": "moves fast"}
    (tmp_path / "descriptions.yaml").write_text(yaml.safe_dump({
        "classes": [{"name": n, "description": d} for n, d in described.items()],
        "ambiguity_groups": {"all": list(described)},
    }))
    (tmp_path / "videos").mkdir()
    for video in videos:
        np.save(tmp_path / "videos" / f"{video}.npy", np.zeros((1, 4)))
    data = {"ground_truth": "gt.json", "descriptions": "descriptions.yaml", "videos": "videos"}
    if conflicting is not None:
        (tmp_path / "conflicting.yaml").write_text(yaml.safe_dump({"conflicting": conflicting}))
        data["conflicting"] = "conflicting.yaml"
    entry = {"kind": "localization", "paper": "test", "description": "a small task", "format": "activitynet",
             "data": data, "protocol": protocol or {"tiou_thresholds": "thumos14", "subset": "test"},
             "ties": "expected", "seed": 0, "metrics": [{"name": "average_mAP", "direction": "higher"}]}
    if transform is not None:
        entry["transform"] = transform
    tasks, _ = parse_registry({"tasks": {"small": entry}}, source=str(tmp_path / "tasks.yaml"), base_dir=tmp_path)
    return tasks["small"]


def small_task(tmp_path, **kwargs):
    spec = small_task_spec(tmp_path, **kwargs)
    return localization_task(spec, require_data(spec, environ={}))


class Scripted:
    """Returns, per video stem, the segments it was given."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = answers

    def localize(self, video, classes, descriptions):
        return self.answers.get(video.rsplit("/", 1)[-1].split(".")[0], [])


class EncoderOnly:
    name = "encoder-only"

    def encode_text(self, texts):
        raise AssertionError("never called")


def test_a_model_without_localize_fails_before_any_file_is_read(tmp_path):
    localization = dataclasses.replace(small_task(tmp_path), video_dir=tmp_path / "does-not-exist")
    with pytest.raises(InputError, match="needs a localizer or dual encoder model; encoder-only provides") as error:
        evaluate_localization(Encoder(EncoderOnly()), localization)
    assert error.value.field == "--model"


GOOD = Segment(1.0, 5.0, "jump", 0.9)


@pytest.mark.parametrize("bad, why", [
    (Segment(1.0, 5.0, "swim", 0.5), "label 'swim'"),
    (Segment(float("nan"), 5.0, "jump", 0.5), "start nan"),
    (Segment(1.0, math.inf, "jump", 0.5), "end inf"),
    (Segment(1.0, 5.0, "jump", float("nan")), "score nan"),
    (Segment(6.0, 5.0, "jump", 0.5), "need 0 <= start <= end"),
    (Segment(-1.0, 5.0, "jump", 0.5), "need 0 <= start <= end"),
    ((1.0, 5.0, "jump", 0.5), "not a Segment"),
])
def test_a_bad_segment_names_the_video_and_the_segment(tmp_path, bad, why):
    localization = small_task(tmp_path)
    with pytest.raises(InputError, match="video 'v2', segment 1") as error:
        evaluate_localization(Encoder(Scripted({"v2": [GOOD, bad]})), localization)
    assert why in str(error.value)
    assert error.value.field == "segments[1]" and error.value.path.endswith("v2.npy")


def test_a_non_list_answer_is_refused(tmp_path):
    with pytest.raises(InputError, match="returned NoneType for video 'v1'"):
        evaluate_localization(Encoder(Scripted({"v1": None})), small_task(tmp_path))


def test_small_task_scores_and_restricts_ground_truth(tmp_path):
    localization = small_task(tmp_path, videos=("v1", "v2"))
    assert localization.class_names == ("jump", "run")
    answers = {"v1": [Segment(1.0, 5.0, "jump", 0.9), Segment(0.0, 3.0, "run", 0.8)],
               "v2": [Segment(2.0, 8.0, "run", 0.7)]}
    result = evaluate_localization(Encoder(Scripted(answers), allow_missing=True), localization)
    # jump: only v1's instance counts (v3 is missing), found -> AP 1. run: predictions ranked
    # [v1 FP (0.8), v2 TP (0.7)] over 2 instances -> precision [0, 1/2], recall [0, 1/2] -> AP 1/4.
    assert result["per_class_AP"] == {"jump": 1.0, "run": 0.25}
    assert result["metrics"]["average_mAP"] == pytest.approx(0.625, abs=1e-12)
    assert result["ambiguity"] == {"all": pytest.approx(0.625, abs=1e-12)}
    assert result["coverage"] == {"evaluated": 2, "total": 3, "fraction": 2 / 3, "missing_videos": ["v3"]}


def test_unknown_threshold_preset_and_transform_name_the_field(tmp_path):
    with pytest.raises(InputError, match="thumos15") as error:  # refused when the task file is read
        small_task_spec(tmp_path / "preset", protocol={"tiou_thresholds": "thumos15", "subset": "test"})
    assert error.value.field == "tasks.small.protocol.tiou_thresholds"
    spec = dataclasses.replace(small_task_spec(tmp_path), transform="shuffle")
    with pytest.raises(InputError, match="unknown transform 'shuffle'") as error:
        localization_task(spec, require_data(spec, environ={}))
    assert error.value.field == "tasks.small.transform"


def test_descriptions_must_cover_the_ground_truth_and_name_only_known_classes(tmp_path):
    with pytest.raises(InputError, match="'fly' is not a class of the ground truth") as error:
        small_task(tmp_path / "a", descriptions={"jump": "up", "run": "fast", "fly": "wings"})
    assert error.value.path == str(tmp_path / "a" / "descriptions.yaml") and error.value.field == "classes[2].name"
    with pytest.raises(InputError, match="no description for the ground-truth class 'run'"):
        small_task(tmp_path / "b", descriptions={"jump": "up"})
    # A class labelled in another subset is known: described, it is offered to the model too.
    localization = small_task(tmp_path / "c", descriptions={"jump": "up", "run": "fast", "swim": "wet"})
    assert localization.class_names == ("jump", "run", "swim")


def test_conflicting_file_must_cover_exactly_the_classes(tmp_path):
    for sub, texts, message in [("a", {"jump": "fast"}, "no conflicting description for class 'run'"),
                                ("b", {"jump": "fast", "run": "up", "fly": "x"}, "'fly' is not a class")]:
        with pytest.raises(InputError, match=message) as error:
            small_task(tmp_path / sub, transform="conflicting_descriptions", conflicting=texts)
        assert error.value.path == str(tmp_path / sub / "conflicting.yaml")
    localization = small_task(tmp_path / "c", transform="conflicting_descriptions",
                              conflicting={"jump": "moves fast", "run": "leaves the ground"})
    assert dict(localization.conflicting) == {"jump": "moves fast", "run": "leaves the ground"}


def test_lap_is_undefined_when_the_aligned_run_finds_nothing(tmp_path):
    localization = small_task(tmp_path, transform="conflicting_descriptions")
    assert dict(localization.conflicting) == {"jump": "moves fast", "run": "leaves the ground"}  # 2 classes: a swap
    result = evaluate_localization(Encoder(Scripted({})), localization)
    assert result["metrics"]["LAP"] is None and result["metrics"]["aligned.average_mAP"] == 0.0
    assert "undefined" in result["LAP_undefined"] and "conflicting" not in result
