"""The zero-shot classification engine: hand-worked scores, SRT runs, the synthetic world's SRT task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from instract_eval.encoding import Encoder
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest, FrameSpec
from instract_eval.tasks import load_registry, require_data
from instract_eval.tasks.build import classification_task
from instract_eval.tasks.classification import ClassificationItem, ClassificationTask, LabelSet, evaluate_classification

from .test_mcq_engine import PROTOCOL, BrightnessModel, TextOnly, write_levels, write_ramp


def write_triangle(path, frames: int = 20):
    """Brighter for the first half, darker for the second."""
    return write_levels(path, [40 + 12 * (i if i < frames // 2 else frames - 1 - i) for i in range(frames)])


@pytest.fixture
def ramps(tmp_path):
    return {"up": write_ramp(tmp_path / "up.mp4", rising=True), "down": write_ramp(tmp_path / "down.mp4", rising=False)}


def one_group(texts):
    return LabelSet("default", {"all": ("brighten", "darken")}, texts)


def test_scores_are_mean_cosine_over_a_class_texts_divided_by_tau(ramps):
    items = (ClassificationItem(ClipRequest(str(ramps["up"]), 0.0, 2.0), "brighten", sample_id="up"),
             ClassificationItem(ClipRequest(str(ramps["down"]), 0.0, 2.0), "darken", sample_id="down"))
    # 'brighten' is scored by two texts: one brightening (cos ~ 1 with the up clip), one darkening (~ 0).
    texts = {"brighten": ("it brightens", "it darkens"), "darken": ("it darkens",)}
    result = evaluate_classification(Encoder(BrightnessModel()), ClassificationTask(items, one_group(texts)),
                                     name="toy", protocol={**PROTOCOL, "tau": 0.02})
    up = next(s for s in result["samples"] if s["id"] == "up")
    assert up["scores"] == pytest.approx([(1 + 0) / 2 / 0.02, 0.0 / 0.02], abs=0.2)
    assert up["prediction"] == "brighten"
    assert result["metrics"] == {"accuracy": 1.0, "macro_f1": 1.0}
    assert result["tau"] == 0.02


def test_temporal_clips_average_scores_not_embeddings(tmp_path):
    # Two clips of a rise-then-fall video: the first brightens, the second darkens. Averaging the
    # cosines gives 1/2 for 'brighten'; the cosine of the averaged embedding would give ~0.71.
    video = ClipRequest(str(write_triangle(tmp_path / "tri.mp4")), 0.0, 2.0, num_clips=2)
    item = ClassificationItem(video, "brighten", sample_id="tri")
    texts = {"brighten": ("brighten",), "darken": ("darken",)}
    result = evaluate_classification(Encoder(BrightnessModel()), ClassificationTask((item,), one_group(texts)),
                                     name="toy", protocol={"frames": 4, "sampling": "uniform"})
    assert result["samples"][0]["scores"] == pytest.approx([0.5, 0.5], abs=0.02)


def test_groups_runs_and_the_srt_summary_by_hand(ramps):
    up, down = (ClipRequest(str(ramps[k]), 0.0, 2.0) for k in ("up", "down"))
    items = (ClassificationItem(up, "brighten", "seen", "s-up"), ClassificationItem(down, "darken", "seen", "s-down"),
             ClassificationItem(up, "lighten", "unseen", "u-up"), ClassificationItem(down, "dim", "unseen", "u-down"))
    groups = {"seen": ("brighten", "darken"), "unseen": ("lighten", "dim")}
    plain = {"brighten": ("brighten",), "darken": ("darken",), "lighten": ("brighten",), "dim": ("darken",)}
    # Run 2 names the unseen classes by synonyms the stand-in reads the wrong way round.
    swapped = {**plain, "lighten": ("darken",), "dim": ("brighten",)}
    task = ClassificationTask(items, LabelSet("default", groups, plain),
                              (LabelSet("run-1", groups, plain), LabelSet("run-2", groups, swapped)))
    result = evaluate_classification(Encoder(BrightnessModel()), task, name="toy", protocol=PROTOCOL)
    metrics = result["metrics"]
    assert metrics["seen.accuracy"] == metrics["unseen.accuracy"] == metrics["hm.accuracy"] == 1.0
    assert metrics["srt.unseen.accuracy"] == 0.5 and metrics["srt.unseen.accuracy.std"] == 0.5
    assert result["runs"]["summary"]["unseen"]["std_sample"]["accuracy"] == pytest.approx(np.std([1, 0], ddof=1))
    assert "seen" not in result["runs"]["summary"]  # seen classes keep their names in every run
    assert result["label_sets"]["run-2"]["unseen"]["accuracy"] == 0.0


def test_the_harmonic_mean_and_f1_match_scikit_learn(ramps):
    up, down = (ClipRequest(str(ramps[k]), 0.0, 2.0) for k in ("up", "down"))
    # Seen: three clips, 'up' is called darken by the label set -> predictions [d, d, d] vs truth [b, d, d].
    groups = {"seen": ("brighten", "darken"), "unseen": ("lighten", "dim")}
    texts = {"brighten": ("darken",), "darken": ("brighten",), "lighten": ("brighten",), "dim": ("darken",)}
    items = (ClassificationItem(down, "brighten", "seen", "a"), ClassificationItem(up, "darken", "seen", "b"),
             ClassificationItem(ClipRequest(str(ramps["up"]), 0.0, 1.9), "brighten", "seen", "c"),
             ClassificationItem(up, "lighten", "unseen", "d"), ClassificationItem(up, "dim", "unseen", "e"))
    metrics = evaluate_classification(Encoder(BrightnessModel()), ClassificationTask(items, LabelSet("default", groups, texts)),
                                      name="toy", protocol=PROTOCOL)["metrics"]
    seen_true, seen_pred = ["brighten", "darken", "brighten"], ["brighten", "darken", "darken"]
    unseen_true, unseen_pred = ["lighten", "dim"], ["lighten", "lighten"]
    seen_acc, unseen_acc = accuracy_score(seen_true, seen_pred), accuracy_score(unseen_true, unseen_pred)
    assert metrics["seen.accuracy"] == pytest.approx(seen_acc)
    assert metrics["seen.macro_f1"] == pytest.approx(f1_score(seen_true, seen_pred, average="macro"))
    assert metrics["unseen.macro_f1"] == pytest.approx(f1_score(unseen_true, unseen_pred, average="macro",
                                                                zero_division=0))
    assert metrics["hm.accuracy"] == pytest.approx(2 * seen_acc * unseen_acc / (seen_acc + unseen_acc))


def test_classification_needs_a_dual_encoder_and_known_labels(tmp_path):
    item = ClassificationItem(ClipRequest(str(tmp_path / "never.mp4")), "brighten")
    texts = {"brighten": ("b",), "darken": ("d",)}
    with pytest.raises(InputError, match="needs a dual encoder"):
        evaluate_classification(Encoder(TextOnly()), ClassificationTask((item,), one_group(texts)), name="toy", protocol={})
    stray = ClassificationItem(ClipRequest(str(tmp_path / "never.mp4")), "jump", sample_id="x")
    with pytest.raises(ValueError, match="'jump' is not a class"):
        evaluate_classification(Encoder(BrightnessModel()), ClassificationTask((stray,), one_group(texts)), name="toy",
                                protocol={})
    with pytest.raises(ValueError, match="has no texts"):
        LabelSet("default", {"all": ("brighten",)}, {"brighten": ()})


# --- the synthetic world's SRT task --------------------------------------------------------------

class ConstantModel:
    name = "constant"

    def frame_spec(self):
        return FrameSpec(num_frames=16, size=32, crop=32)

    def encode_video(self, clips):
        assert clips.shape[1:] == (16, 3, 32, 32)
        return torch.ones(clips.shape[0], 4)

    def encode_text(self, texts):
        return torch.ones(len(texts), 4)


def srt_task(world, **options):
    spec = load_registry([world / "tasks.yaml"]).tasks["synth-srt"]
    return spec, classification_task(spec, require_data(spec, environ={}), **options)


def test_synth_srt_runs_rename_the_unseen_classes_by_the_world_table(world):
    import yaml

    spec, task = srt_task(world)
    table = yaml.safe_load((world / "srt/classes.yaml").read_text())["datasets"]["synth"]
    unseen = {entry["root"]: entry["runs"] for entry in table["unseen_actions"]}
    assert set(task.default.classes["unseen"]) == set(unseen)
    assert len(task.runs) == spec.protocol["runs"] == 10
    for r, run in enumerate(task.runs):
        for root, names in unseen.items():
            assert run.texts[root] == (names[r],)
        for label in task.default.classes["seen"]:
            assert run.texts[label] == (label,)
    counts = json.loads((world / "manifest.json").read_text())["counts"]
    assert len(task.items) == counts["synth-srt"]
    assert {item.group for item in task.items} == {"seen", "unseen"}


def test_synth_srt_leaf_augmentation_scores_by_the_synonym_children(world):
    import yaml

    _, task = srt_task(world, leaf_augmentation=True)
    table = yaml.safe_load((world / "srt/classes.yaml").read_text())["datasets"]["synth"]
    for entry in table["seen_actions"] + table["unseen_actions"]:
        assert task.default.texts[entry["root"]] == tuple(dict.fromkeys(entry["runs"]))
    assert task.leaf_augmentation and task.runs[1].texts != task.default.texts


def test_a_collapsed_model_scores_exactly_chance_on_synth_srt(world):
    spec, task = srt_task(world)
    result = evaluate_classification(Encoder(ConstantModel()), task, name=spec.name, protocol=spec.protocol, ties=spec.ties)
    metrics = result["metrics"]
    seen, unseen = len(task.default.classes["seen"]), len(task.default.classes["unseen"])
    assert metrics["seen.accuracy"] == pytest.approx(1 / seen)
    assert metrics["unseen.accuracy"] == pytest.approx(1 / unseen)
    assert metrics["hm.accuracy"] == pytest.approx(2 * (1 / seen) * (1 / unseen) / (1 / seen + 1 / unseen))
    assert metrics["srt.unseen.accuracy"] == pytest.approx(1 / unseen) and metrics["srt.unseen.accuracy.std"] == 0
    assert result["coverage"]["fraction"] == 1.0


def test_srt_task_errors_name_the_field(world, tmp_path):
    text = (world / "tasks.yaml").read_text()
    bad = tmp_path / "tasks.yaml"
    bad.write_text(text.replace("runs: 10, tau", "runs: 11, tau").replace(": srt/", f": {world}/srt/")
                   .replace("videos: videos", f"videos: {world}/videos"))
    spec = load_registry([bad]).tasks["synth-srt"]
    with pytest.raises(InputError, match=r"protocol\.runs.*runs must be 1\.\.10"):
        classification_task(spec, require_data(spec, environ={}))


def test_run_refuses_a_synth_srt_list_with_a_misspelt_seen_label(world, tmp_path, capsys):
    """Issue 12, item 3: the typo was scored (seen accuracy 0.875 -> 0.75, coverage still 12/12)."""
    import shutil

    from instract_eval.cli import main

    copy = shutil.copytree(world, tmp_path / "world")
    test_list = copy / "srt" / "test.jsonl"
    rows = [json.loads(line) for line in test_list.read_text().splitlines()]
    seen = next(i for i, row in enumerate(rows) if row["label"] == "move down")
    rows[seen]["label"] = "mvoe down"
    test_list.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--model", "random", "--include", str(copy / "tasks.yaml"), "--task", "synth-srt",
              "--output", str(tmp_path / "out"), "--no-site"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {test_list}: line {seen + 1}.label: unknown class 'mvoe down' (not in the synth "
                      "synonym table); did you mean 'move down'?"]
    assert not (tmp_path / "out").exists()


# --- label rows with a class list (Action100M zero-shot recognition) -----------------------------

def rows_task(tmp_path, rows, classes="brighten\ndarken\n", prompt=None):
    write_ramp(tmp_path / "up.mp4", rising=True)
    write_ramp(tmp_path / "down.mp4", rising=False)
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "classes.txt").write_text(classes)
    protocol = "{frames: 4, sampling: uniform" + (f", prompt: '{prompt}'" if prompt else "") + "}"
    (tmp_path / "tasks.yaml").write_text(f"""
tasks:
  toy-zs:
    kind: classification
    paper: action100m
    description: toy zero-shot recognition
    format: rows
    data: {{annotations: clips.jsonl, classes: classes.txt, videos: .}}
    protocol: {protocol}
    ties: expected
    seed: 0
    metrics: [{{name: accuracy, direction: higher}}]
""")
    spec = load_registry([tmp_path / "tasks.yaml"]).tasks["toy-zs"]
    return spec, classification_task(spec, require_data(spec, environ={}))


def test_label_rows_classify_among_the_class_list(tmp_path):
    rows = [{"video": "up", "label": "brighten"}, {"video": "down.mp4", "start": 0.0, "end": 1.5, "label": "darken"}]
    spec, task = rows_task(tmp_path, rows, prompt="it will {}")
    assert task.default.texts == {"brighten": ("it will brighten",), "darken": ("it will darken",)}
    assert task.items[0].video.end is None and task.items[1].video.end == 1.5
    result = evaluate_classification(Encoder(BrightnessModel()), task, name=spec.name, protocol=spec.protocol)
    assert result["metrics"] == {"accuracy": 1.0, "macro_f1": 1.0}


def test_label_rows_errors(tmp_path):
    with pytest.raises(InputError, match=r"clips\.jsonl: line 2\.label: unknown class 'jump'"):
        rows_task(tmp_path, [{"video": "up", "label": "brighten"}, {"video": "up", "label": "jump"}])


def test_a_misspelt_label_row_names_the_class_list_and_the_closest_class(tmp_path):
    """Issue 12, item 3: the error says which file declares the classes and what was probably meant."""
    with pytest.raises(InputError) as error:
        rows_task(tmp_path, [{"video": "up", "label": "brighten"}, {"video": "down", "label": "darkne"}])
    assert str(error.value) == (f"{tmp_path / 'clips.jsonl'}: line 2.label: unknown class 'darkne' (not in the "
                                f"class list {tmp_path / 'classes.txt'}); did you mean 'darken'?")
    with pytest.raises(InputError, match=r"protocol\.prompt"):
        rows_task(tmp_path, [{"video": "up", "label": "brighten"}], prompt="a video")


class FixedLabels:
    """A probe over its own labels: logits (darkening, brightening, 0) read off the brightness change."""

    name = "fixed-labels"
    labels = ("darken", "brighten", "stay")

    def frame_spec(self):
        return BrightnessModel().frame_spec()

    def classify(self, clips):
        video = BrightnessModel().encode_video(clips)
        return torch.cat([video, torch.zeros(len(clips), 1)], dim=1)


def test_a_fixed_label_classifier_scores_classes_by_their_labels_logits(ramps):
    items = (ClassificationItem(ClipRequest(str(ramps["up"]), 0.0, 2.0), "brighten", sample_id="up"),
             ClassificationItem(ClipRequest(str(ramps["down"]), 0.0, 2.0), "darken", sample_id="down"))
    task = ClassificationTask(items, one_group({"brighten": ("brighten",), "darken": ("darken",)}))
    result = evaluate_classification(Encoder(FixedLabels()), task, name="toy", protocol=PROTOCOL)
    assert result["metrics"] == {"accuracy": 1.0, "macro_f1": 1.0}
    assert result["scoring"] == {"method": "fixed-label classifier", "labels": 3}
    up = next(s for s in result["samples"] if s["id"] == "up")
    logits = FixedLabels().classify(torch.zeros(1, 4, 3, 8, 8))  # shape only; the values are checked below
    assert len(up["scores"]) == 2 and logits.shape == (1, 3)
    assert up["scores"][0] > 0.1 and up["scores"][1] == pytest.approx(1e-3, abs=1e-6)  # brighten logit, darken ~0


def test_a_fixed_label_classifier_refuses_classes_it_has_no_label_for(ramps):
    items = (ClassificationItem(ClipRequest(str(ramps["up"]), 0.0, 2.0), "brighten", sample_id="up"),)
    task = ClassificationTask(items, one_group({"brighten": ("lighten up",), "darken": ("darken",)}))
    with pytest.raises(InputError, match="the classifier's 3 labels do not include 'lighten up'"):
        evaluate_classification(Encoder(FixedLabels()), task, name="toy", protocol=PROTOCOL)
