"""ActionFormer's training recipe: the data reader, the release's parameter groups and EMA, and
`instract-eval train actionformer` on a tiny feature world whose trained weights localize."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import yaml

from instract_eval.adapters import create_model
from instract_eval.adapters.tal.adapter import load_actionformer
from instract_eval.adapters.tal.data import crop_example, read_split
from instract_eval.adapters.tal.recipe import ActionFormerConfig, ActionFormerRecipe, ActionFormerTrainer
from instract_eval.cli import main
from instract_eval.errors import InputError

from ..families.golden import OFFICIAL, load_golden

CLASSES = ("Jump", "Throw")
FPS, STRIDE, WINDOW = 30.0, 4.0, 16.0
DIM, LENGTH = 8, 100


def _seconds(index: float) -> float:
    """Feature index to seconds, the ActionFormer convention (index * stride + window / 2) / fps."""
    return (index * STRIDE + WINDOW / 2) / FPS


def make_world(root, videos: int = 10, seed: int = 0, metadata: bool = True, dim: int = DIM,
               classes: tuple[str, ...] = CLASSES):
    """Features = a class pattern inside each action + noise; ground truth in seconds."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(len(classes), dim)).astype(np.float32) * 2.0
    (root / "features").mkdir(parents=True)
    database, listed = {}, {}
    for v in range(videos):
        feats = rng.normal(scale=0.3, size=(LENGTH, dim)).astype(np.float32)
        annotations = []
        for start in (rng.integers(5, 30), rng.integers(55, 80)):
            length = int(rng.integers(8, 18))
            label = int(rng.integers(0, len(classes)))
            feats[start:start + length] += patterns[label]
            annotations.append({"segment": [_seconds(start), _seconds(start + length)], "label": classes[label]})
        name = f"v{v:02d}"
        np.save(root / "features" / f"{name}.npy", feats)
        database[name] = {"subset": "Validation" if v < videos - 2 else "Test", "duration": LENGTH * STRIDE / FPS,
                          "annotations": annotations}
        listed[name] = {"num_features": LENGTH, "duration": LENGTH * STRIDE / FPS, "fps": FPS}
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    if metadata:
        (root / "features" / "features.json").write_text(json.dumps({
            "format": "instract-eval/features/v1", "model": "test", "fingerprint": "t", "feature_dim": dim,
            "fps": FPS, "window": WINDOW, "stride": STRIDE, "offset": 0, "videos": listed}))
    return database


@pytest.fixture
def one_thread():
    """One thread: on a loaded shared machine more threads than free cores slow tiny convolutions 100x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = {"embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2, "mha_win_size": [5], "max_seq_len": 128}


def test_reader_converts_seconds_to_the_feature_grid(tmp_path):
    database = make_world(tmp_path, videos=3)
    split = read_split(tmp_path / "annotations.json", tmp_path / "features", ["validation"], fps=1.0,
                       feat_stride=1.0, num_frames=1.0)
    assert [item.video_id for item in split.items] == ["v00"] and split.class_names == CLASSES
    seconds = np.array([a["segment"] for a in database["v00"]["annotations"]])
    # (s * 30 - 0) / 4 - 0.5 * 16 / 4 recovers the feature index the world placed the action at
    grid = seconds * FPS / STRIDE - 0.5 * WINDOW / STRIDE
    np.testing.assert_allclose(split.items[0].segments, grid, atol=1e-4)
    assert float(split.items[0].segments[0, 0]) == pytest.approx(round(float(grid[0, 0])), abs=1e-4)
    # without features.json the recipe's timing is used: at fps 15 every grid position halves (+ the offset)
    (tmp_path / "features" / "features.json").unlink()
    other = read_split(tmp_path / "annotations.json", tmp_path / "features", ["validation"], fps=15.0,
                       feat_stride=4.0, num_frames=16.0)
    np.testing.assert_allclose(other.items[0].segments, seconds * 15.0 / 4.0 - 2.0, atol=1e-4)


def test_reader_refuses_bad_ground_truth(tmp_path):
    make_world(tmp_path, videos=4)
    document = json.loads((tmp_path / "annotations.json").read_text())
    document["database"]["v00"]["annotations"][0]["segment"] = [3.0, 3.0]
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"database\.v00\.annotations\[0\]\.segment: segment must have start < end"):
        read_split(tmp_path / "annotations.json", tmp_path / "features", ["validation"], fps=30, feat_stride=4,
                   num_frames=16)
    with pytest.raises(InputError, match="no video of subset training"):
        read_split(tmp_path / "annotations.json", tmp_path / "features", ["training"], fps=30, feat_stride=4,
                   num_frames=16)
    del document["database"]["v01"]["subset"]
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"database\.v01: needs a string 'subset'"):
        read_split(tmp_path / "annotations.json", tmp_path / "features", ["validation"], fps=30, feat_stride=4,
                   num_frames=16)


def test_crop_keeps_an_action_and_shifts_segments():
    feats = np.arange(20, dtype=np.float32)[:, None]
    segments = np.array([[2.0, 5.0], [14.0, 17.0]], dtype=np.float32)
    labels = np.array([0, 1])
    for seed in range(20):
        cut, kept, kept_labels = crop_example(feats, segments, labels, random.Random(seed), max_seq_len=6,
                                              trunc_thresh=0.5, offset=0.5, crop_ratio=None)
        start = int(cut[0, 0])
        assert cut.shape == (6, 1) and np.array_equal(cut[:, 0], np.arange(start, start + 6))
        assert len(kept) >= 1
        for (left, right), label in zip(kept, kept_labels):
            original = segments[label]
            # clipped to the window widened by the offset, then shifted by the window start
            assert left == pytest.approx(max(start - 0.5, original[0]) - start)
            assert right == pytest.approx(min(start + 6 + 0.5, original[1]) - start)
            assert (min(right, 6.5) - max(left, -0.5)) / (original[1] - original[0]) >= 0.5
    same = crop_example(feats, segments, labels, random.Random(3), max_seq_len=32, trunc_thresh=0.5, offset=0.5,
                        crop_ratio=None)
    assert same[0] is feats


def test_parameter_groups_are_the_releases():
    golden = load_golden("actionformer")
    groups = json.loads(golden.metadata["meta"])["param_groups"]
    net, _ = load_actionformer(OFFICIAL / "actionformer" / "thumos_like.pth.tar", mha_win_size=5, max_seq_len=256)
    trainer = ActionFormerTrainer(net, ActionFormerConfig(), ["a", "b", "c"])
    decay, no_decay = ActionFormerRecipe().parameter_groups(trainer, ActionFormerConfig())
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay.params) == groups["decay"]
    assert sorted(names[id(p)] for p in no_decay.params) == groups["no_decay"]
    assert not no_decay.weight_decay and decay.weight_decay


def test_ema_equals_an_update_after_every_step():
    torch.manual_seed(0)
    net, _ = load_actionformer(OFFICIAL / "actionformer" / "thumos_like.pth.tar", weights="raw", mha_win_size=5,
                               max_seq_len=256)
    config = ActionFormerConfig(ema_decay=0.9, max_seq_len=256)
    trainer = ActionFormerTrainer(net, config, ["a", "b", "c"]).train()
    expected = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    batch = {"feats": torch.randn(1, 24, 256), "mask": torch.ones(1, 1, 256, dtype=torch.bool),
             "segments": [torch.tensor([[10.0, 40.0]])], "labels": [torch.tensor([1])]}
    normalizers = []
    for _ in range(3):
        optimizer.zero_grad()
        trainer(batch)["total"].backward()
        optimizer.step()
        normalizers.append(float(trainer.loss_normalizer))
        for n, p in net.named_parameters():
            expected[n] = 0.9 * expected[n] + 0.1 * p.detach()
    trainer.update_ema()          # what writing the weights does after the last step
    trainer.update_ema()          # and a second call changes nothing
    for n, value in trainer.ema_state().items():
        torch.testing.assert_close(value, expected[n], rtol=0, atol=1e-6)
    # the loss normaliser is the release's moving average, kept across steps
    positives = normalizers[0] - 0.9 * 100.0
    assert positives / 0.1 == pytest.approx(round(positives / 0.1), abs=1e-6)
    assert normalizers[1] == pytest.approx(0.9 * normalizers[0] + positives, rel=1e-9)


@pytest.mark.slow
def test_train_decreases_the_loss_and_the_weights_localize(tmp_path, one_thread):
    data = tmp_path / "data"
    database = make_world(data, videos=10)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"lr": 2e-3, "warmup_steps": 5, "log_every": 1,
                                                "checkpoint_every": 1000},
                                      # 150 steps: the release's EMA decay 0.999 would still be 86% initial weights
                                      "model": {**TINY, "ema_decay": 0.9}}))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        main(["train", "actionformer", "--data", str(data), "--config", str(config), "--steps", "150",
              "--batch-size", "2", "--out", str(out), "--device", "cpu"])
    assert not stopped.value.code
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(log) == 150
    # the loss per positive point (the normaliser itself moves from init_loss_norm 100 to the data's scale)
    losses = [entry["loss_per_positive"] for entry in log]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    assert log[-1]["loss_normalizer"] < log[0]["loss_normalizer"] < 100.0
    model = create_model("actionformer", checkpoint=str(out / "weights.pt"))
    assert model.labels == list(CLASSES)
    hits = 0
    for video in ("v08", "v09"):      # the held-out Test videos, two actions each
        found = model.localize(str(data / "features" / f"{video}.npy"), list(CLASSES), None)
        assert found and all(0.0 <= s.start <= s.end <= LENGTH * STRIDE / FPS for s in found)
        for truth in database[video]["annotations"]:
            same_class = sorted((s for s in found if s.label == truth["label"]), key=lambda s: -s.score)
            count = sum(t["label"] == truth["label"] for t in database[video]["annotations"])
            ious = []
            for guess in same_class[:count]:   # as many top detections of the class as it has actions
                inter = max(0.0, min(guess.end, truth["segment"][1]) - max(guess.start, truth["segment"][0]))
                ious.append(inter / ((guess.end - guess.start) + (truth["segment"][1] - truth["segment"][0]) - inter))
            hits += max(ious, default=0.0) >= 0.5
    assert hits == 4, hits
    # and through the harness: the localization engine on the held-out subset, as `train --eval-task` runs it
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump({"tasks": {"tiny-tal": {
        "kind": "localization", "paper": "actionvlm", "description": "tiny feature world, held-out videos",
        "format": "activitynet",
        "data": {"ground_truth": str(data / "annotations.json"), "videos": str(data / "features")},
        "protocol": {"tiou_thresholds": "thumos14", "subset": "test"}, "ties": "expected", "seed": 0,
        "metrics": [{"name": "average_mAP", "direction": "higher"}]}}}))
    with pytest.raises(SystemExit) as stopped:
        main(["run", "--model", "actionformer", "--model-args", f"checkpoint={out / 'weights.pt'}",
              "--include", str(tmp_path / "tasks.yaml"), "--task", "tiny-tal", "--output", str(tmp_path / "eval"),
              "--no-site", "--cache-dir", str(tmp_path / "cache")])
    assert not stopped.value.code
    record = json.loads(next((tmp_path / "eval").rglob("tiny-tal.json")).read_text())
    assert record["metrics"]["average_mAP"]["value"] > 0.5, record["metrics"]
    payload = torch.load(out / "weights.pt", weights_only=True)
    assert set(payload) >= {"state_dict", "state_dict_ema", "labels", "config"}
    assert all(key.startswith("module.") for key in payload["state_dict_ema"])


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_same_weights_and_averages(tmp_path, one_thread):
    """Stopped after step 3 and resumed, the run ends where an uninterrupted one does: network,
    model EMA and loss normaliser (module buffers, in the loop's checkpoints)."""
    import shutil

    data = tmp_path / "data"
    make_world(data, videos=6)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"lr": 2e-3, "warmup_steps": 2, "checkpoint_every": 3},
                                      "model": {**TINY, "ema_decay": 0.5}}))
    whole, part = tmp_path / "whole", tmp_path / "part"
    argv = ["train", "actionformer", "--data", str(data), "--config", str(config), "--steps", "6",
            "--batch-size", "2", "--device", "cpu"]
    for target in (whole,):
        with pytest.raises(SystemExit):
            main(argv + ["--out", str(target)])
    shutil.copytree(whole, part)
    (part / "checkpoints" / "step-00000006.pt").unlink()
    (part / "weights.pt").unlink()
    with pytest.raises(SystemExit):
        main(argv + ["--out", str(part), "--resume"])
    first, second = (torch.load(path / "weights.pt", weights_only=True) for path in (whole, part))
    for key in ("state_dict", "state_dict_ema"):
        assert first[key].keys() == second[key].keys()
        for name in first[key]:
            assert torch.equal(first[key][name], second[key][name]), (key, name)
    raw, ema = first["state_dict"], first["state_dict_ema"]
    assert any(not torch.equal(raw[name], ema[name]) for name in raw)
    checkpoint = torch.load(whole / "checkpoints" / "step-00000006.pt", weights_only=False)
    assert float(checkpoint["model"]["loss_normalizer"]) < 100.0


def test_init_from_a_release_checkpoint(tmp_path):
    """``--init``: the release file's ``state_dict`` goes into the network, ``state_dict_ema`` into the averages."""
    data = tmp_path / "data"
    make_world(data, videos=4, dim=24, classes=("a", "b", "c"))
    recipe = ActionFormerRecipe()
    config = ActionFormerConfig(embd_dim=16, fpn_dim=16, head_dim=16, n_head=4, mha_win_size=(5,), max_seq_len=256)
    from instract_eval.training.recipe import DataSource

    recipe.training_items(config, DataSource(data))
    path = OFFICIAL / "actionformer" / "thumos_like.pth.tar"
    trainer = recipe.build(config, init=path)
    release = torch.load(path, weights_only=False)
    for name, value in trainer.net.state_dict().items():
        assert torch.equal(value, release["state_dict"][f"module.{name}"]), name
    for name, value in trainer.ema_state().items():
        assert torch.equal(value, release["state_dict_ema"][f"module.{name}"]), name
    wrong = ActionFormerConfig(embd_dim=32, fpn_dim=32, head_dim=32, mha_win_size=(5,), max_seq_len=256)
    with pytest.raises(InputError, match="wrong shape"):
        recipe.build(wrong, init=path)
