"""TAL on the synthetic world end to end: features, a head trained on them, and what it buys.

The shipped ``actionformer-synth`` is the head ``instract-eval train actionformer --data synth
--config examples/train/actionformer-synth.yaml`` trains on synth-temporal features of the TAL
training split; these tests check the pieces of that path on a tiny split and the claim on the
default world: a trained head clearly beats the same encoder's sliding window.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.tal.synth import FPS, STRIDE, WINDOW, ensure_synth_tal_data
from instract_eval.training.loop import TrainRequest, train
from instract_eval.training.recipe import DataSource

torch.set_num_threads(2)
CONFIG = Path(__file__).resolve().parents[3] / "examples" / "train" / "actionformer-synth.yaml"


@pytest.fixture(scope="module")
def tal_data(tmp_path_factory):
    return ensure_synth_tal_data(tmp_path_factory.mktemp("tal") / "tal", seed=0, size="tiny")


def test_the_synthetic_layout_is_what_the_features_command_and_the_split_write(tal_data):
    truth = json.loads((tal_data / "split" / "ground_truth.json").read_text())
    assert json.loads((tal_data / "annotations.json").read_text()) == truth
    meta = json.loads((tal_data / "features" / "features.json").read_text())
    assert (meta["window"], meta["stride"], meta["fps"], meta["model"]) == (WINDOW, STRIDE, FPS, "synth-temporal")
    assert set(meta["videos"]) == set(truth["database"])
    # a second call keeps what is there (same model and settings): nothing is rewritten
    before = {path.name: path.stat().st_mtime_ns for path in (tal_data / "features").iterdir()}
    ensure_synth_tal_data(tal_data, seed=0, size="tiny")
    assert {path.name: path.stat().st_mtime_ns for path in (tal_data / "features").iterdir()} == before


def test_the_frames_in_model_computes_the_features_the_command_wrote(tal_data):
    model = create_model("actionformer-synth")
    video = sorted((tal_data / "videos").iterdir())[0]
    feats, duration = model.features(video)
    written = np.load(tal_data / "features" / f"{video.stem}.npy")
    np.testing.assert_allclose(feats, written, rtol=1e-5, atol=1e-5)
    meta = json.loads((tal_data / "features" / "features.json").read_text())
    assert duration == pytest.approx(meta["videos"][video.stem]["duration"])


@pytest.mark.slow
@pytest.mark.parametrize("head", ["actionformer", "tridet"])
def test_a_head_trained_on_the_layout_learns_and_localizes(tal_data, tmp_path, head):
    config = CONFIG.with_name(f"{head}-synth.yaml")
    report = train(TrainRequest(model=head, out=tmp_path / "run", data=DataSource(root=tal_data), config_file=config,
                                overrides=[("train", "steps", 30), ("train", "batch_size", 2),
                                           ("train", "warmup_steps", 5), ("train", "log_every", 1)]))
    lines = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    per_positive = [line["loss_per_positive"] for line in lines]   # "total" is divided by a moving normaliser
    assert np.mean(per_positive[-5:]) < 0.8 * np.mean(per_positive[:5])
    video = sorted((tal_data / "videos").iterdir())[0]
    if head == "actionformer":   # the frames-in model takes any head trained this way
        model = create_model("actionformer-synth", checkpoint=str(report.weights))
        segments = model.localize(str(video), model.labels, None)
    else:
        model = create_model(head, checkpoint=str(report.weights))
        segments = model.localize(str(tal_data / "features" / f"{video.stem}.npy"), model.labels, None)
    assert segments and all(0 <= s.start <= s.end and s.label in model.labels for s in segments)


@pytest.mark.slow
def test_the_trained_head_clearly_beats_the_sliding_window_on_synth_tal(tmp_path):
    from instract_eval.api import evaluate

    report = evaluate(["actionformer-synth", "synth-temporal"], ["synth-tal"], cache_dir=tmp_path / "cache",
                      output=None)
    mAP = {record["model"]["name"]: record["metrics"]["average_mAP"]["value"] for record in report.records}
    # default world (seed 0): 0.895 for the head against 0.640 for the encoder's own sliding window
    assert mAP["actionformer-synth"] > 0.85
    assert mAP["actionformer-synth"] > mAP["synth-temporal"] + 0.2
