"""AdaTAD's training recipe: the video split reader, OpenTAD's frame sampling and parameter groups,
and `instract-eval train adatad` on the synthetic TAL training split, whose weights localize."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import yaml

from instract_eval.adapters import create_model
from instract_eval.adapters.tal.adatad import video_timing
from instract_eval.adapters.tal.adatad_recipe import AdaTADRecipe, crop_box, read_video_split
from instract_eval.cli import main
from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD, decode_frames
from instract_eval.training.recipe import DataSource, get_recipe

from .test_adatad import TINY, tiny, write_mmaction_backbone


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from instract_eval.synth.tal_training import ensure_tal_training

    return ensure_tal_training(tmp_path_factory.mktemp("adatad-train") / "split", seed=0, size="tiny")


def _ground_truth(root, database):
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "ground_truth.json").write_text(json.dumps({"database": database}))
    return root / "ground_truth.json"


def test_reader_puts_ground_truth_on_the_snippet_grid(split, tmp_path):
    source = split.video_root / "taltrain_0000.mp4"
    total, fps, duration = video_timing(source)
    root = tmp_path / "data"
    annotations = _ground_truth(root, {
        "a": {"subset": "training", "duration": 10.0, "frame": 80,
              "annotations": [{"segment": [1.0, 2.04], "label": "Jump"}, {"segment": [3.0, 4.0], "label": "Ambiguous"}]},
        "b": {"subset": "training", "annotations": [{"segment": [0.5, 1.5], "label": "Throw"}]},
        "c": {"subset": "training", "annotations": []},                       # no ground truth: skipped
        "d": {"subset": "validation", "annotations": [{"segment": [0.5, 1.5], "label": "Jump"}]},
        "e": {"subset": "training", "annotations": [{"segment": [0.5, 1.5], "label": "Jump"}]},   # no video
    })
    for name in "abcd":
        (root / "videos" / f"{name}.mp4").write_bytes(source.read_bytes())
    items, classes = read_video_split(annotations, root / "videos", tiny())
    assert classes == ("Jump", "Throw") and [item.video_id for item in items] == ["a", "b"]
    # int(s / duration * frames) / snippet_stride: 1.0 s of 10 s at 80 frames = frame 8 -> 4; 2.04 s -> 16 -> 8
    np.testing.assert_array_equal(items[0].segments, [[4.0, 8.0]])
    assert items[0].total_frames == 80 and items[0].fps == 8.0
    # without 'frame' and 'duration' the container's: floor(0.5 / d * n) / 2
    assert items[1].total_frames == total and items[1].fps == pytest.approx(fps)
    expected = np.floor(np.array([0.5, 1.5]) / duration * total) / 2
    np.testing.assert_allclose(items[1].segments[0], expected)
    assert items[1].labels.tolist() == [1]
    bad = _ground_truth(tmp_path / "bad", {"a": {"subset": "training",
                                                "annotations": [{"segment": [2.0, 1.0], "label": "Jump"}]}})
    with pytest.raises(InputError, match=r"database\.a\.annotations\[0\]\.segment: segment must have start < end"):
        read_video_split(bad, tmp_path / "bad" / "videos", tiny())


def test_example_frames_are_every_strided_frame_of_a_window_with_an_action(split):
    recipe = AdaTADRecipe()
    config = tiny(frames=16, augment=False, crop_ratio=None)
    items = recipe.training_items(config, DataSource(split.root))
    item = items[0]
    example = recipe.make_example(item, random.Random(3), config, DataSource(split.root))
    frames, mask, segments = example["frames"], example["mask"], example["segments"]
    assert frames.shape == (16, 3, 32, 32) and mask.all()
    # which window: the one whose frames, decoded independently, give exactly these pixels
    every = np.arange(0, item.total_frames, 2)
    starts = [s for s in range(len(every) - 16 + 1)
              if np.allclose(_pixels(item.path, every[s:s + 16], item.fps), frames.numpy(), atol=1e-4)]
    assert starts, "no window of every 2nd frame gives these frames"
    start = starts[0]
    # its ground truth: the item's, shifted by the window start, clipped to it, covering >= 75 %
    kept = [(max(lo, start), min(hi, start + 16)) for lo, hi in item.segments.tolist()
            if (min(hi, start + 16) - max(lo, start)) / (hi - lo) >= 0.75]
    np.testing.assert_allclose(segments.numpy(), np.array(kept).reshape(-1, 2) - start, atol=1e-5)
    # a window longer than the video: padded with the last frame, the padding masked
    long = tiny(frames=64, augment=False, crop_ratio=None)
    padded = recipe.make_example(item, random.Random(0), long, DataSource(split.root))
    assert int(padded["mask"].sum()) == len(every) and not padded["mask"][len(every):].any()
    assert torch.equal(padded["frames"][-1], padded["frames"][len(every) - 1])


def _pixels(path, indices, fps):
    frames = decode_frames(path, (np.asarray(indices) + 0.5) / fps).frames.permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    return ((frames - mean) / std).numpy()


def test_random_resized_crop_box_stays_inside_and_falls_back_to_the_centre():
    rng = random.Random(0)
    for _ in range(200):
        top, left, h, w = crop_box(rng, 36, 48)
        assert 0 <= top and top + h <= 36 and 0 <= left and left + w <= 48 and h > 0 and w > 0
    # an impossible area: every draw fails, the centre square is taken
    assert crop_box(random.Random(0), 36, 48, area=(2.0, 3.0)) == (0, 6, 36, 36)


def test_parameter_groups_are_opentads(split):
    recipe = get_recipe("adatad")
    config = tiny()
    recipe.training_items(config, DataSource(split.root))
    module = recipe.build(config)
    groups = {group.name: group for group in recipe.parameter_groups(module, config)}
    assert set(groups) == {"adapters", "decay", "no_decay"}
    assert groups["adapters"].lr_scale == 2.0 and groups["adapters"].weight_decay
    names = {id(p): n for n, p in module.net.named_parameters()}
    adapter_names = {names[id(p)] for p in groups["adapters"].params}
    assert adapter_names == {n for n in names.values() if n.startswith("backbone.adapters.")}
    assert "backbone.adapters.0.gamma" in adapter_names and "backbone.adapters.1.up_proj.bias" in adapter_names
    decay = {names[id(p)] for p in groups["decay"].params}
    no_decay = {names[id(p)] for p in groups["no_decay"].params}
    assert "head.backbone.embd.0.conv.weight" in decay and "head.cls_head.cls_head.conv.weight" in decay
    assert "head.cls_head.cls_head.conv.bias" in no_decay and "head.reg_head.scale.0.scale" in no_decay
    assert "head.backbone.embd_norm.0.weight" in no_decay
    assert not decay & no_decay
    assert decay | no_decay == {n for n in names.values() if n.startswith("head.")}
    everything = adapter_names | decay | no_decay
    assert not any(n.startswith("backbone.encoder.") for n in everything)     # the ViT is not trained


def test_init_from_an_official_checkpoint_takes_its_backbone_adapters_and_fitting_head(split, tmp_path):
    from .test_adatad import OFFICIAL, OFFICIAL_ARGS

    root = tmp_path / "data"
    videos = {f"taltrain_000{i}": label for i, label in enumerate(("Jump", "Throw", "Wave"))}
    _ground_truth(root, {name: {"subset": "training", "annotations": [{"segment": [1.0, 2.0], "label": label}]}
                         for name, label in videos.items()})
    for name in videos:
        (root / "videos" / f"{name}.mp4").write_bytes((split.video_root / f"{name}.mp4").read_bytes())
    official = create_model("adatad", checkpoint=str(OFFICIAL / "opentad_tiny.pth"), weights="raw", **OFFICIAL_ARGS)
    recipe = get_recipe("adatad")
    recipe.training_items(official.config, DataSource(root))
    module = recipe.build(official.config, init=OFFICIAL / "opentad_tiny.pth")
    expected = official.net.state_dict()
    assert module.net.state_dict().keys() == expected.keys()
    for name, value in module.net.state_dict().items():
        assert torch.equal(value, expected[name]), name
    # eight classes: the head does not fit and starts fresh, the backbone still comes from the file
    recipe.training_items(official.config, DataSource(split.root))
    fresh = recipe.build(official.config, init=OFFICIAL / "opentad_tiny.pth")
    assert fresh.net.head.dims.num_classes == 8
    assert torch.equal(fresh.net.backbone.adapters["0"].gamma, official.net.backbone.adapters["0"].gamma)
    assert not torch.equal(fresh.net.head.backbone.embd[0].conv.weight, official.net.head.backbone.embd[0].conv.weight)


@pytest.mark.slow
def test_train_two_steps_lowers_the_loss_and_the_weights_localize(split, tmp_path):
    model = dict(TINY, crop_ratio=None, augment=False, drop_path=0.0, head_droppath=0.0)
    model = {k: [list(r) for r in v] if k == "regression_range" else list(v) if isinstance(v, tuple) else v
             for k, v in model.items()}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"lr": 1e-3, "warmup_steps": 0, "log_every": 1,
                                                "checkpoint_every": 1000}, "model": model}))
    backbone = write_mmaction_backbone(tmp_path / "videomae.pth", tiny())
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        # batch 6 = the whole training subset, no augmentation: both steps see the same batch
        main(["train", "adatad", "--data", str(split.root), "--config", str(config), "--steps", "2",
              "--batch-size", "6", "--out", str(out), "--device", "cpu", "--init", str(tmp_path / "videomae.pth")])
    assert not stopped.value.code
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(log) == 2
    assert log[1]["loss_per_positive"] < log[0]["loss_per_positive"], log
    assert log[1]["loss_normalizer"] < log[0]["loss_normalizer"] < 100.0
    payload = torch.load(out / "weights.pt", weights_only=True)
    assert payload["recipe"] == "adatad" and set(payload) >= {"state_dict", "state_dict_ema", "labels", "config"}
    # the ViT is the --init file's, untouched; the adapters moved from their zero start
    for name, value in backbone.encoder.state_dict().items():
        assert torch.equal(payload["state_dict"][f"backbone.encoder.{name}"], value), name
    assert payload["state_dict"]["backbone.adapters.0.up_proj.weight"].abs().max() > 0
    raw, ema = payload["state_dict"]["head.cls_head.cls_head.conv.weight"], \
        payload["state_dict_ema"]["head.cls_head.cls_head.conv.weight"]
    assert not torch.equal(raw, ema)
    model = create_model("adatad", checkpoint=str(out / "weights.pt"))
    assert model.localizer_inputs == ("video",)
    assert model.labels == sorted({a["label"] for v in json.loads(split.ground_truth.read_text())["database"].values()
                                   if v["subset"] == "training" for a in v["annotations"]})
    torch.testing.assert_close(model.net.state_dict()["head.cls_head.cls_head.conv.weight"], ema)
    video = split.video_root / "talval_0000.mp4"
    found = model.localize(str(video), model.labels, None)
    duration = video_timing(video)[2]
    assert found and all(0.0 <= s.start <= s.end <= duration and s.label in model.labels for s in found)
    raw_model = create_model("adatad", checkpoint=str(out / "weights.pt"), weights="raw")
    torch.testing.assert_close(raw_model.net.state_dict()["head.cls_head.cls_head.conv.weight"], raw)
    with pytest.raises(InputError, match="frames=768 was asked for but the file was trained with 32"):
        create_model("adatad", checkpoint=str(out / "weights.pt"), frames=768)
