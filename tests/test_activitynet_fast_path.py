"""The ActivityNet readers' fast paths: the same values and the same error messages as the checked
readers, without their per-entry checks (1.5M calls on an ActivityNet-val predictions file, most
of `score tal`'s 2.7 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from instract_eval.data import activitynet
from instract_eval.data.activitynet import read_ground_truth, read_predictions
from instract_eval.errors import InputError

from .helpers import ground_truth_document, predictions_document, write_json


@pytest.fixture
def gt(tmp_path):
    """Subset `test`: videos t1 (A, B) and t2 (A); subset `train`: video r1 with class C only."""
    document = ground_truth_document({"t1": [("A", 0, 10), ("B", 20, 30)], "t2": [("A", 5, 15)]})
    document["database"]["r1"] = {"subset": "train", "annotations": [{"label": "C", "segment": [0, 5]}]}
    return read_ground_truth(write_json(tmp_path / "gt.json", document), "test")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pred.json"
    path.write_text(text)
    return path


def _entry(label="A", score=0.5, segment=(0, 10)) -> dict:
    return {"label": label, "score": score, "segment": list(segment)}


def _assert_same(fast, checked):
    for name in ("video", "label", "segments", "scores"):
        a, b = getattr(fast, name), getattr(checked, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    for name in ("num_in_other_subset_videos", "num_in_unknown_videos", "num_ignored_other_subset_class"):
        assert getattr(fast, name) == getattr(checked, name), name


def test_valid_file_is_read_without_per_entry_checks(tmp_path, gt, monkeypatch):
    path = write_json(tmp_path / "pred.json", predictions_document({
        "t1": [("A", 0, 10, 0.9), ("B", 21, 30, 0.8)] * 50,
        "t2": [("A", 5, 15, 0.7)] * 50,
    }))

    def per_entry_check(*args, **kwargs):
        raise AssertionError("a valid file took the entry-by-entry reader")

    monkeypatch.setattr(activitynet, "require_number", per_entry_check)
    predictions = read_predictions(path, gt)
    assert predictions.num_predictions == 150
    assert predictions.scores[:3].tolist() == [0.9, 0.8, 0.9]


def test_fast_path_gives_the_checked_readers_values(tmp_path, gt):
    rng = np.random.default_rng(0)
    results = {}
    for video in ("t2", "zzz", "r1", "t1", "empty"):  # unknown, other-subset and empty videos too
        rows = []
        for _ in range(0 if video == "empty" else 40):
            start = float(rng.uniform(0, 50))
            rows.append(_entry(str(rng.choice(["A", "B", "C"])), float(rng.random()),
                               (start, start + float(rng.exponential(10)))))
        results[video] = rows
    results["t1"].append({"segment": [3, 3], "score": 1, "label": "A", "extra": {"ignored": [1]}})  # ints
    results["t1"].append(_entry(score=-0.0, segment=(-0.0, 0.1)))
    text = json.dumps({"version": "x", "results": results, "external_data": {}})
    # A repeated key keeps its last value, in its first place, in both readers.
    text = text.replace('{"version": "x", "results": {', '{"results": {"t1": [], "t1": [], ', 1)
    path = _write(tmp_path, text)
    fast = activitynet._read_predictions_fast(path, gt)
    assert fast is not None  # the fast path accepted it: the comparison is of the two paths
    checked = activitynet._read_predictions_checked(path, gt)
    _assert_same(fast, checked)
    assert fast.num_in_unknown_videos > 0 and fast.num_in_other_subset_videos > 0
    assert fast.num_ignored_other_subset_class > 0


BAD = [
    ("NaN score", '{"results": {"t1": [{"label": "A", "score": NaN, "segment": [0, 1]}]}}',
     "results.t1[0].score: expected a finite number, got nan"),
    ("infinite score", '{"results": {"t1": [{"label": "A", "score": Infinity, "segment": [0, 1]}]}}',
     "results.t1[0].score: expected a finite number, got inf"),
    ("overflowing score", '{"results": {"t1": [{"label": "A", "score": 1e400, "segment": [0, 1]}]}}',
     "results.t1[0].score: expected a finite number, got inf"),
    ("huge integer score", '{"results": {"t1": [{"label": "A", "score": 1%s, "segment": [0, 1]}]}}' % ("0" * 400),
     "results.t1[0].score: expected a finite number, got an integer of 401 digits"),
    ("huge integer end", '{"results": {"t1": [{"label": "A", "score": 1, "segment": [0, 1%s]}]}}' % ("0" * 400),
     "results.t1[0].segment[1]: expected a finite number, got an integer of 401 digits"),
    ("integer past the digit limit", '{"results": {"t1": [{"label": "A", "score": 1%s, "segment": [0, 1]}]}}'
     % ("0" * 5000), "cannot be read: Exceeds the limit (4300 digits) for integer string conversion: value has 5001 digits"),
    ("infinite end", '{"results": {"t1": [{"label": "A", "score": 1, "segment": [0, -Infinity]}]}}',
     "results.t1[0].segment[1]: expected a finite number, got -inf"),
    ("string score", '{"results": {"t1": [{"label": "A", "score": "0.5", "segment": [0, 1]}]}}',
     "results.t1[0].score: expected a number, got the string '0.5'"),
    ("boolean score", '{"results": {"t1": [{"label": "A", "score": true, "segment": [0, 1]}]}}',
     "results.t1[0].score: expected a number, got a boolean"),
    ("null score", '{"results": {"t1": [{"label": "A", "score": null, "segment": [0, 1]}]}}',
     "results.t1[0].score: expected a number, got null"),
    ("missing score", '{"results": {"t1": [{"label": "A", "segment": [0, 1]}]}}',
     "results.t1[0]: missing key 'score'"),
    ("missing segment", '{"results": {"t1": [{"label": "A", "score": 1}]}}',
     "results.t1[0]: missing key 'segment'"),
    ("numeric label", '{"results": {"t1": [{"label": 3, "score": 1, "segment": [0, 1]}]}}',
     "results.t1[0].label: expected a non-empty string, got the number 3"),
    ("empty label", '{"results": {"t1": [{"label": "", "score": 1, "segment": [0, 1]}]}}',
     "results.t1[0].label: expected a non-empty string, got an empty string"),
    ("three-value segment", '{"results": {"t1": [{"label": "A", "score": 1, "segment": [0, 1, 2]}]}}',
     "results.t1[0].segment: expected [start, end], got 3 values"),
    ("start after end", '{"results": {"t1": [{"label": "A", "score": 1, "segment": [5, 1]}]}}',
     "results.t1[0].segment: start 5.0 is after end 1.0"),
    ("negative start", '{"results": {"t1": [{"label": "A", "score": 1, "segment": [-1, 1]}]}}',
     "results.t1[0].segment: negative start time -1.0"),
    ("entries not a list", '{"results": {"t1": {"label": "A"}}}', "results.t1: expected a list, got an object"),
    ("entry not an object", '{"results": {"t1": [7]}}', "results.t1[0]: expected an object, got the number 7"),
    ("results not an object", '{"results": []}', "results: expected an object, got a list"),
    ("no results", '{"version": 1}', "top level: missing key 'results'"),
    ("top level a list", "[1]", "top level: expected an object, got a list"),
    ("malformed JSON", '{"results": {', "not valid JSON: Expecting property name enclosed in double quotes "
                                          "(line 1, column 14)"),
    ("empty file", "  \n", "file is empty"),
    ("unknown label", '{"results": {"t1": [{"label": "Z", "score": 1, "segment": [0, 1]}]}}',
     "results.t1[0].label: 'Z' is not a class of the ground truth {gt}"),
    # The first problem in file order is the one named, whichever check finds it.
    ("unknown label before NaN", '{"results": {"t1": [{"label": "Z", "score": 1, "segment": [0, 1]}], '
                                 '"t2": [{"label": "A", "score": NaN, "segment": [0, 1]}]}}',
     "results.t1[0].label: 'Z' is not a class of the ground truth {gt}"),
    ("NaN before unknown label", '{"results": {"t1": [{"label": "A", "score": NaN, "segment": [0, 1]}], '
                                 '"t2": [{"label": "Z", "score": 1, "segment": [0, 1]}]}}',
     "results.t1[0].score: expected a finite number, got nan"),
    ("bad end after a good entry", '{"results": {"t1": [{"label": "A", "score": 1, "segment": [0, 1]}, '
                                   '{"label": "A", "score": 1, "segment": [4, 3]}]}}',
     "results.t1[1].segment: start 4.0 is after end 3.0"),
]


@pytest.mark.parametrize("text, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_predictions_give_the_checked_readers_message(tmp_path, gt, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as error:
        read_predictions(path, gt)
    assert str(error.value) == f"{path}: {message.format(gt=gt.path)}"


def test_missing_file_is_named(tmp_path, gt):
    with pytest.raises(InputError, match="file not found"):
        read_predictions(tmp_path / "absent.json", gt)


THUMOS14 = Path(__file__).resolve().parents[1] / "instract_eval" / "data" / "resources" / "thumos14_gt.json"


def _assert_same_ground_truth(fast, checked):
    for name in ("video", "label", "segments"):
        a, b = getattr(fast, name), getattr(checked, name)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    for name in ("path", "subset", "video_names", "class_names", "classes_of_other_subsets", "all_video_names",
                 "taxonomy_classes"):
        assert getattr(fast, name) == getattr(checked, name), name
    assert dict(fast.durations) == dict(checked.durations)


@pytest.mark.parametrize("subset", ["Test", "validation"])
def test_ground_truth_fast_path_gives_the_checked_readers_values_on_thumos14(subset):
    fast = activitynet._read_ground_truth_fast(THUMOS14, subset, None)
    assert fast is not None
    _assert_same_ground_truth(fast, activitynet._read_ground_truth_checked(THUMOS14, subset, None))


def test_ground_truth_fast_path_keeps_durations_taxonomy_and_other_subsets(tmp_path, monkeypatch):
    document = {
        "taxonomy": [{"nodeId": 1, "nodeName": "Sports", "parentId": None},
                     {"nodeId": 2, "nodeName": "Diving", "parentId": 1}, "not a node"],
        "database": {
            "a": {"subset": "Test", "duration": 12.5, "url": "x",
                  "annotations": [{"label": "Diving", "segment": [1, 2.5]}, {"label": "Rowing", "segment": [0, 9]}]},
            "b": {"subset": "train", "duration": 3, "annotations": [{"label": "Surfing", "segment": [0, 1]}]},
            "c": {"subset": "test", "duration": "long", "annotations": []},
            "d": {"subset": "test", "duration": True, "annotations": [{"label": "Diving", "segment": [4, 5]}]},
        },
    }
    path = write_json(tmp_path / "gt.json", document)
    checked = activitynet._read_ground_truth_checked(path, None, "TEST")
    monkeypatch.setattr(activitynet, "require_number", None)  # the fast path calls no per-entry check
    fast = read_ground_truth(path, preferred_subset="TEST")
    _assert_same_ground_truth(fast, checked)
    assert fast.video_names == ("a", "c", "d") and dict(fast.durations) == {"a": 12.5}
    assert fast.classes_of_other_subsets == {"Surfing"} and fast.taxonomy_classes == {"Diving"}


BAD_GROUND_TRUTH = [  # (case, file, --subset, message)
    ("zero-length", '{"database": {"a": {"subset": "t", "annotations": [{"label": "A", "segment": [2, 2]}]}}}',
     None, "database.a.annotations[0].segment: zero-length segment [2.0, 2.0]"),
    ("start after end", '{"database": {"a": {"subset": "t", "annotations": [{"label": "A", "segment": [3, 2]}]}}}',
     None, "database.a.annotations[0].segment: start 3.0 is after end 2.0"),
    ("negative start", '{"database": {"a": {"subset": "t", "annotations": [{"label": "A", "segment": [-3, 2]}]}}}',
     None, "database.a.annotations[0].segment: negative start time -3.0"),
    ("NaN end", '{"database": {"a": {"subset": "t", "annotations": [{"label": "A", "segment": [0, NaN]}]}}}',
     None, "database.a.annotations[0].segment[1]: expected a finite number, got nan"),
    ("empty label", '{"database": {"a": {"subset": "t", "annotations": [{"label": "", "segment": [0, 1]}]}}}',
     None, "database.a.annotations[0].label: expected a non-empty string, got an empty string"),
    ("missing annotations", '{"database": {"a": {"subset": "t"}}}', None, "database.a: missing key 'annotations'"),
    ("missing subset", '{"database": {"a": {"annotations": []}}}', None, "database.a: missing key 'subset'"),
    ("empty subset", '{"database": {"a": {"subset": "", "annotations": []}}}',
     None, "database.a.subset: expected a non-empty string, got an empty string"),
    ("no videos", '{"database": {}}', None, "database: has no videos"),
    ("several subsets", '{"database": {"a": {"subset": "x", "annotations": []}, "b": {"subset": "y", '
                        '"annotations": []}}}', None, "holds several subsets (x, y): choose one with --subset"),
    # The checked reader refuses a subset name that is not in the file before it reads annotations.
    ("bad annotation and no such subset", '{"database": {"a": {"subset": "x", "annotations": [{"label": "A", '
                                          '"segment": [2, 1]}]}}}', "q", "has no subset 'q' (subsets in the file: x)"),
]


@pytest.mark.parametrize("text, subset, message", [case[1:] for case in BAD_GROUND_TRUTH],
                         ids=[case[0] for case in BAD_GROUND_TRUTH])
def test_bad_ground_truth_gives_the_checked_readers_message(tmp_path, text, subset, message):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as error:
        read_ground_truth(path, subset)
    assert str(error.value) == f"{path}: {message}"


def test_score_tal_imports_nothing_heavy(tmp_path):
    """`score tal` is a JSON-to-JSON command: its start-up pays for no model library."""
    gt = write_json(tmp_path / "gt.json", ground_truth_document({"v1": [("A", 0, 10)]}))
    pred = write_json(tmp_path / "pred.json", predictions_document({"v1": [("A", 0, 10, 0.9)]}))
    code = ("import sys\nfrom instract_eval.cli import main\n"
            f"try:\n    main(['score', 'tal', '-g', {str(gt)!r}, '-p', {str(pred)!r}, '--thresholds', '0.5', "
            f"'-o', {str(tmp_path / 'out.json')!r}])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'av', 'pyarrow', 'safetensors', 'PIL', 'scipy') "
            "if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
    assert json.loads((tmp_path / "out.json").read_text())["mAP"] == {"0.5": 1.0}
