"""`instract-eval score`: wiring of files to metrics, output keys, and hand-worked numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from instract_eval.cli import main
from instract_eval.tasks.registry import builtin_resource

from .helpers import ground_truth_document, predictions_document, write_json

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process and parse the JSON it prints."""

    def run(*args: str) -> dict:
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        assert exit_info.value.code in (0, None)
        return json.loads(capsys.readouterr().out)

    return run


def test_tal_hand_worked_example(tmp_path, run_cli):
    gt = write_json(tmp_path / "gt.json", ground_truth_document({
        "v1": [("A", 0, 10), ("A", 20, 30)],
        "v2": [("B", 5, 15)],
    }))
    pred = write_json(tmp_path / "pred.json", predictions_document({
        "v1": [("A", 0, 10, 0.9), ("A", 40, 50, 0.8), ("A", 21, 30, 0.7)],
        "v2": [("B", 5, 15, 0.6)],
        "v3": [("B", 0, 1, 0.95)],  # a video without ground truth: a false positive
    }))
    result = run_cli("score", "tal", "-g", str(gt), "-p", str(pred), "--thresholds", "0.5,0.95")
    # A at 0.5: TP, FP, TP -> AP = 0.5 * 1 + 0.5 * 2/3; at 0.95 the third is an FP -> 0.5.
    # B: the unknown-video FP ranks first, then a TP -> AP = 1 * 1/2 at both thresholds.
    assert result["per_class_AP"]["0.5"] == pytest.approx({"A": 0.5 + 1 / 3, "B": 0.5}, abs=1e-12)
    assert result["per_class_AP"]["0.95"] == pytest.approx({"A": 0.5, "B": 0.5}, abs=1e-12)
    assert result["mAP"] == pytest.approx({"0.5": (0.5 + 1 / 3 + 0.5) / 2, "0.95": 0.5}, abs=1e-12)
    assert result["average_mAP"] == pytest.approx(((0.5 + 1 / 3 + 0.5) / 2 + 0.5) / 2, abs=1e-12)
    assert result["thresholds"] == [0.5, 0.95]
    assert result["num_videos"] == 2
    assert result["num_predictions"] == 5
    assert result["num_predictions_in_unknown_videos"] == 1


def test_tal_thumos14_preset_uses_shipped_ground_truth_and_linspace_thresholds(tmp_path, run_cli):
    with builtin_resource("thumos14_gt.json") as path:
        database = json.loads(Path(path).read_text())["database"]
    perfect = {
        video: [{"label": a["label"], "segment": a["segment"], "score": 1.0} for a in entry["annotations"]]
        for video, entry in database.items() if entry["subset"] == "Test"
    }
    pred = write_json(tmp_path / "pred.json", {"results": perfect})
    result = run_cli("score", "tal", "--preset", "thumos14", "-p", str(pred))
    assert list(result["mAP"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    assert result["thresholds"][1] == np.linspace(0.3, 0.7, 5)[1] != 0.4
    assert all(value == 1.0 for value in result["mAP"].values())
    assert (result["subset"], result["num_videos"], result["num_ground_truth"], result["num_classes"]) == (
        "Test", 212, 3358, 20)


def test_tal_example_from_readme_scores_between_zero_and_one(tmp_path):
    out = tmp_path / "tal.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "tal", "--preset", "thumos14", "--predictions",
              str(REPO / "examples" / "thumos14_predictions.json"), "--output", str(out)])
    assert exit_info.value.code in (0, None)
    result = json.loads(out.read_text())
    assert 0.2 < result["average_mAP"] < 0.9
    assert result["mAP"]["0.3"] > result["mAP"]["0.7"]


def test_tal_subset_is_case_insensitive_and_other_subset_videos_are_false_positives(tmp_path, run_cli):
    document = ground_truth_document({"t1": [("A", 0, 10)]}, subset="Test")
    document["database"]["val1"] = {"subset": "Validation", "annotations": [{"label": "A", "segment": [0, 10]}]}
    gt = write_json(tmp_path / "gt.json", document)
    pred = write_json(tmp_path / "pred.json", predictions_document({
        "val1": [("A", 0, 10, 0.9)],
        "t1": [("A", 0, 10, 0.5)],
    }))
    result = run_cli("score", "tal", "-g", str(gt), "-p", str(pred), "--subset", "TEST", "--thresholds", "0.5")
    assert result["subset"] == "Test"
    assert result["num_predictions_in_other_subset_videos"] == 1
    assert result["mAP"]["0.5"] == pytest.approx(0.5)  # FP at rank 1, TP at rank 2


def test_tal_class_with_ground_truth_only_in_other_subset_is_ignored_and_counted(tmp_path, run_cli):
    document = ground_truth_document({"t1": [("A", 0, 10)]}, subset="test")
    document["database"]["val1"] = {"subset": "validation", "annotations": [{"label": "B", "segment": [0, 10]}]}
    gt = write_json(tmp_path / "gt.json", document)
    pred = write_json(tmp_path / "pred.json", predictions_document({"t1": [("A", 0, 10, 0.5), ("B", 0, 10, 0.9)]}))
    result = run_cli("score", "tal", "-g", str(gt), "-p", str(pred), "--subset", "test", "--thresholds", "0.5")
    assert result["num_predictions_ignored_other_subset_class"] == 1
    assert result["num_predictions"] == 1
    assert result["per_class_AP"]["0.5"] == {"A": 1.0}


def test_mcq_expected_ties(tmp_path, run_cli):
    scores = tmp_path / "s.npy"
    np.save(scores, np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [1.0, 1.0, 0.0]]))
    result = run_cli("score", "mcq", "--scores", str(scores))
    # ranks 1, 3 and (the answer ties with one other candidate) 1.5
    assert result["R@1"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["R@5"] == 1.0
    assert result["median_rank"] == pytest.approx(1.5)
    assert result["mean_rank"] == pytest.approx((1 + 3 + 1.5) / 3)
    assert (result["num_queries"], result["num_tied"]) == (3, 1)
    optimistic = run_cli("score", "mcq", "--scores", str(scores), "--ties", "optimistic")
    pessimistic = run_cli("score", "mcq", "--scores", str(scores), "--ties", "pessimistic")
    assert optimistic["R@1"] == pytest.approx(2 / 3)
    assert pessimistic["R@1"] == pytest.approx(1 / 3)


def test_mcq_answers_and_mask(tmp_path, run_cli):
    np.save(tmp_path / "s.npy", np.array([[0.1, 0.9, 5.0], [0.3, 0.2, 0.0]]))
    np.save(tmp_path / "a.npy", np.array([1, 0]))
    np.save(tmp_path / "m.npy", np.array([[True, True, False], [True, True, True]]))
    result = run_cli("score", "mcq", "--scores", str(tmp_path / "s.npy"), "--answers", str(tmp_path / "a.npy"),
                     "--mask", str(tmp_path / "m.npy"))
    assert result["accuracy"] == 1.0  # the masked 5.0 does not count


def test_retrieval_square_and_pools(tmp_path, run_cli):
    similarity = np.array([
        [0.9, 0.1, 0.0, 9.0],
        [0.2, 0.8, 0.0, 9.0],
        [0.0, 0.0, 0.1, 0.7],
        [9.0, 9.0, 0.5, 0.6],
    ])
    np.save(tmp_path / "s.npy", similarity)
    plain = run_cli("score", "retrieval", "--similarity", str(tmp_path / "s.npy"))
    assert set(plain) == {"t2v", "v2t"}
    assert plain["t2v"]["R@1"] == 0.0  # over all items the 9.0 entries beat every ground truth
    pools = write_json(tmp_path / "pools.json", {"p1": [0, 1], "p2": [2, 3]})
    pooled = run_cli("score", "retrieval", "--similarity", str(tmp_path / "s.npy"), "--pools", str(pools))
    # Inside the pools the 9.0 entries are never read. Pool p1 is perfect both ways. Pool p2:
    # T2V text 2 -> video 3 (miss), text 3 -> video 3 (hit); V2T video 2 -> text 3 (miss),
    # video 3 -> text 2 (miss).
    assert pooled["per_pool"]["p1"]["t2v"]["R@1"] == 1.0
    assert pooled["per_pool"]["p1"]["v2t"]["R@1"] == 1.0
    assert pooled["per_pool"]["p2"]["t2v"]["R@1"] == pytest.approx(0.5)
    assert pooled["per_pool"]["p2"]["v2t"]["R@1"] == 0.0
    assert pooled["weighted"]["t2v"]["R@1"] == pytest.approx(0.75)
    assert pooled["weighted"]["v2t"]["R@1"] == pytest.approx(0.5)
    assert pooled["t2v"] == pooled["weighted"]["t2v"]
    assert pooled["weighted"]["mean"]["R@1"] == pytest.approx(0.625)


def test_retrieval_pools_ignore_nan_outside_blocks(tmp_path, run_cli):
    similarity = np.full((4, 4), np.nan)
    similarity[:2, :2] = np.eye(2)
    similarity[2:, 2:] = np.eye(2)
    np.save(tmp_path / "s.npy", similarity)
    pools = write_json(tmp_path / "pools.json", {"a": [0, 1], "b": [2, 3]})
    result = run_cli("score", "retrieval", "--similarity", str(tmp_path / "s.npy"), "--pools", str(pools))
    assert result["weighted"]["t2v"]["R@1"] == 1.0


def test_retrieval_several_captions_per_video(tmp_path, run_cli):
    # 3 texts, 2 videos: texts 0 and 1 describe video 0, text 2 video 1.
    similarity = np.array([[0.9, 0.1], [0.2, 0.3], [0.0, 0.8]])
    np.save(tmp_path / "s.npy", similarity)
    np.save(tmp_path / "map.npy", np.array([0, 0, 1]))
    result = run_cli("score", "retrieval", "--similarity", str(tmp_path / "s.npy"),
                     "--text-to-video", str(tmp_path / "map.npy"))
    assert result["t2v"]["num_queries"] == 3
    assert result["t2v"]["R@1"] == pytest.approx(2 / 3)
    assert result["v2t"]["num_queries"] == 2


def test_classification_single_and_runs(tmp_path, run_cli):
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0], [3.0, 0.0, 1.0]])
    labels = np.array([0, 1, 1, 2])
    np.save(tmp_path / "l.npy", logits)
    np.save(tmp_path / "y.npy", labels)
    single = run_cli("score", "classification", "--logits", str(tmp_path / "l.npy"), "--labels", str(tmp_path / "y.npy"))
    assert single["accuracy"] == pytest.approx(0.5)
    # predictions 0, 1, 2, 0: F1 class 0 = 2/3, class 1 = 2/3, class 2 = 0
    assert single["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    np.save(tmp_path / "runs.npy", np.stack([logits, np.eye(3)[[0, 1, 1, 2]]]))
    runs = run_cli("score", "classification", "--logits", str(tmp_path / "runs.npy"), "--labels", str(tmp_path / "y.npy"))
    assert [r["accuracy"] for r in runs["runs"]] == pytest.approx([0.5, 1.0])
    assert runs["mean"]["accuracy"] == pytest.approx(0.75)
    assert "std" in runs


def test_console_script_prints_help():
    completed = subprocess.run([sys.executable, "-m", "instract_eval", "score", "--help"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    for kind in ("tal", "retrieval", "mcq", "classification"):
        assert kind in completed.stdout


def test_tal_without_thresholds_or_preset_uses_the_official_default_and_says_so(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", ground_truth_document({"v1": [("A", 0, 10)]}))
    pred = write_json(tmp_path / "pred.json", predictions_document({"v1": [("A", 0, 8, 0.9)]}))
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "tal", "-g", str(gt), "-p", str(pred)])
    assert exit_info.value.code in (0, None)
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    # ActivityNet's eval_detection.py default: np.linspace(0.5, 0.95, 10); tIoU 0.8 matches up to 0.8.
    assert result["thresholds"] == np.linspace(0.5, 0.95, 10).tolist()
    assert list(result["mAP"].values()) == [1.0] * 7 + [0.0] * 3
    assert "0.5:0.05:0.95" in captured.err and "default" in captured.err
    assert len(captured.err.splitlines()) == 1
