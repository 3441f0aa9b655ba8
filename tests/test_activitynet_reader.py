"""Reading ActivityNet-style ground truth and predictions, on the real THUMOS14 file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instract_eval.data.activitynet import available_subsets, read_ground_truth, read_predictions
from instract_eval.errors import InputError

THUMOS14 = Path(__file__).resolve().parents[1] / "instract_eval" / "data" / "resources" / "thumos14_gt.json"


def test_shipped_thumos14_is_the_documented_file():
    import hashlib

    digest = hashlib.sha256(THUMOS14.read_bytes()).hexdigest()
    assert digest == "b0fb5ab084e3ae322b899bbbdd54f90621df3bcb83d33779edc2f22fe68adbb9"


@pytest.mark.parametrize("subset, videos, instances", [("Test", 212, 3358), ("validation", 200, 3007)])
def test_thumos14_subsets(subset, videos, instances):
    gt = read_ground_truth(THUMOS14, subset)
    assert (gt.num_videos, gt.label.shape[0], gt.num_classes) == (videos, instances, 20)
    assert gt.class_names[0] == "BaseballPitch" and gt.class_names[-1] == "VolleyballSpiking"
    assert np.all(gt.segments[:, 0] < gt.segments[:, 1])
    # CliffDiving instances are also Diving instances (same segment, two labels) in THUMOS14.
    raw = json.loads(THUMOS14.read_text())["database"]
    expected_cliff = sum(a["label"] == "CliffDiving" for v in raw.values() if v["subset"].lower() == subset.lower()
                         for a in v["annotations"])
    assert int(np.sum(gt.label == gt.class_names.index("CliffDiving"))) == expected_cliff


def test_several_subsets_need_a_choice():
    assert available_subsets(THUMOS14) == ["Test", "Validation"]  # order of first appearance
    with pytest.raises(InputError, match="several subsets"):
        read_ground_truth(THUMOS14)


def test_predictions_are_coded_in_file_order(tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps({"database": {
        "a": {"subset": "val", "annotations": [{"label": "Y", "segment": [1, 2]}, {"label": "X", "segment": [3, 4]}]},
        "b": {"subset": "val", "annotations": []},
    }}))
    gt = read_ground_truth(gt_path)
    assert gt.class_names == ("X", "Y") and gt.video_names == ("a", "b")
    assert gt.label.tolist() == [1, 0] and gt.video.tolist() == [0, 0]
    pred_path = tmp_path / "p.json"
    pred_path.write_text(json.dumps({"results": {
        "b": [{"label": "X", "score": 0.1, "segment": [0, 0]}],
        "zzz": [{"label": "Y", "score": 0.2, "segment": [1, 2]}, {"label": "X", "score": 0.3, "segment": [1, 2]}],
        "a": [{"label": "Y", "score": 0.4, "segment": [1, 2]}],
    }}))
    pred = read_predictions(pred_path, gt)
    assert pred.scores.tolist() == [0.1, 0.2, 0.3, 0.4]
    assert pred.video.tolist() == [1, 2, 2, 0]  # unknown video 'zzz' gets an id no ground truth uses
    assert pred.label.tolist() == [0, 1, 0, 1]
    assert pred.num_in_unknown_videos == 2 and pred.num_in_other_subset_videos == 0


def test_durations_and_taxonomy_leaves_come_with_the_ground_truth(tmp_path):
    document = {
        "taxonomy": [{"nodeId": 1, "nodeName": "Sports", "parentId": None},
                     {"nodeId": 2, "nodeName": "Diving", "parentId": 1},
                     {"nodeId": 3, "nodeName": "Rowing", "parentId": 1}, "not a node"],
        "database": {
            "a": {"subset": "test", "duration": 12.5, "annotations": [{"label": "Diving", "segment": [1, 2]}]},
            "b": {"subset": "test", "annotations": [{"label": "Diving", "segment": [3, 4]}]},
            "c": {"subset": "train", "duration": 9, "annotations": [{"label": "Surfing", "segment": [0, 1]}]},
        },
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(document))
    gt = read_ground_truth(path, "test")
    assert dict(gt.durations) == {"a": 12.5}  # b gives none, c is in another subset
    assert gt.taxonomy_classes == {"Diving", "Rowing"}
    assert gt.known_classes == {"Diving", "Rowing", "Surfing"}
