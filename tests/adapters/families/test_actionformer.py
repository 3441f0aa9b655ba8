"""``actionformer`` equals the official ActionFormer (github.com/happyharrycn/actionformer_release at
61ea7eb9308a568b0cf45e3804830836e30061de, ``libs/modeling``, ``libs/utils/nms.py`` + its C++ NMS).

``tests/data/official/actionformer`` holds two tiny checkpoints in the release's on-disk format
(``train.py``'s dict: ``state_dict`` and ``state_dict_ema`` with ``module.`` keys, after five
official training steps, so the two differ) and, from ``make_golden.py``: the official raw outputs
per pyramid level (classification logits, offsets, masks, points) of the EMA weights on fixed
features of a 100-step and a 300-step video, the official post-processed detections under three
test configs, the official training targets and losses on a batch with ground truth, and the
official parameter-group split. ``thumos_like`` is the THUMOS14 I3D structure (identity neck,
local attention everywhere, drop-path scales, LayerNorm heads); ``variant`` has the FPN neck from
level 1, absolute and relative positions, global attention on three levels, heads without LayerNorm.
"""

from __future__ import annotations

import json

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.tal.actionformer import InferenceConfig
from instract_eval.adapters.tal.adapter import load_actionformer
from instract_eval.adapters.tal.losses import LossNormalizer, actionformer_losses, batch_targets
from instract_eval.adapters.tal.nms import NMSConfig
from instract_eval.errors import InputError

from .golden import OFFICIAL, load_golden

FOLDER = OFFICIAL / "actionformer"
MODELS = ("thumos_like", "variant")


@pytest.fixture(autouse=True)
def one_thread():
    """The golden outputs were computed on one thread; threaded convolutions sum in another order
    (differences of ~1e-6 in the logits, which Soft-NMS's repeated decays carry into the scores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def golden():
    loaded = load_golden("actionformer")
    return loaded.tensors, json.loads(loaded.metadata["meta"])


def _net(meta, name, weights="ema"):
    spec = meta["models"][name]
    net, _ = load_actionformer(FOLDER / f"{name}.pth.tar", weights=weights, n_head=spec["n_head"],
                               mha_win_size=spec["n_mha_win_size"], max_seq_len=meta["max_seq_len"],
                               use_abs_pe=spec["use_abs_pe"], regression_range=spec["regression_range"])
    return net


def _test_config(values) -> InferenceConfig:
    return InferenceConfig(pre_nms_thresh=values["pre_nms_thresh"], pre_nms_topk=values["pre_nms_topk"],
                      duration_thresh=values["duration_thresh"],
                      nms=NMSConfig(iou_threshold=values["iou_threshold"], min_score=values["min_score"],
                                    max_seg_num=values["max_seg_num"], method=values["nms_method"],
                                    sigma=values["nms_sigma"], multiclass=values["multiclass_nms"],
                                    voting_thresh=values["voting_thresh"]))


@pytest.mark.parametrize("name", MODELS)
def test_dimensions_read_from_the_checkpoint(golden, name):
    _, meta = golden
    spec = meta["models"][name]
    dims = _net(meta, name).dims
    assert dims.input_dim == meta["input_dim"] and dims.num_classes == spec["num_classes"]
    assert (dims.embd_dim, dims.fpn_dim, dims.head_dim) == (spec["embd_dim"], spec["fpn_dim"], spec["head_dim"])
    assert dims.backbone_arch == tuple(spec["backbone_arch"]) and dims.fpn_type == spec["fpn_type"]
    assert dims.fpn_start_level == spec["fpn_start_level"] and dims.head_num_layers == spec["head_num_layers"]
    assert dims.head_with_ln == spec["head_with_ln"] and dims.use_rel_pe == spec["use_rel_pe"]
    assert dims.drop_path_scales == (spec["droppath"] > 0)
    windows = spec["n_mha_win_size"]
    assert dims.mha_win_size == (tuple(windows) if isinstance(windows, list) else (windows,) * 6)


@pytest.mark.parametrize("name", MODELS)
def test_raw_outputs_per_level_equal_official(golden, name):
    tensors, meta = golden
    net = _net(meta, name)
    worst = 0.0
    for video, length, *_ in meta["videos"]:
        x, mask = net.pad_for_inference(tensors[f"features/{video}"])
        assert x.shape[-1] == meta[f"{name}/{video}/padded_length"]
        with torch.no_grad():
            out = net(x, mask)
        assert len(out.cls_logits) == 6 - meta["models"][name]["fpn_start_level"]
        for level in range(len(out.cls_logits)):
            prefix = f"{name}/{video}/level{level}"
            assert out.cls_logits[level][0].shape == tensors[f"{prefix}/cls_logits"].shape
            worst = max(worst, (out.cls_logits[level][0] - tensors[f"{prefix}/cls_logits"]).abs().max().item(),
                        (out.offsets[level][0] - tensors[f"{prefix}/offsets"]).abs().max().item())
            assert torch.equal(out.masks[level][0].float(), tensors[f"{prefix}/mask"])
            # position and stride columns (the regression range is a training setting, not in the file)
            assert torch.equal(out.points[level][:, [0, 3]], tensors[f"{prefix}/points"][:, [0, 3]])
    assert worst <= 1e-5, worst


@pytest.mark.parametrize("name", MODELS)
def test_detections_equal_official_postprocessing(golden, name):
    tensors, meta = golden
    net = _net(meta, name)
    for video, length, fps, stride, frames, duration in meta["videos"]:
        for test_name, values in meta["test_configs"].items():
            found = net.detect(tensors[f"features/{video}"], fps=fps, feat_stride=stride, num_frames=frames,
                               duration=duration, config=_test_config(values))
            prefix = f"{name}/{video}/{test_name}"
            expected = tensors[f"{prefix}/segments"]
            assert found.segments.shape == expected.shape, prefix
            assert torch.equal(found.labels.float(), tensors[f"{prefix}/labels"]), prefix
            assert torch.equal(found.segments, expected), prefix
            assert (found.scores - tensors[f"{prefix}/scores"]).abs().max() <= 1e-6, prefix
            assert found.segments.min() >= 0 and found.segments.max() <= duration


def test_ema_weights_are_the_ones_evaluated(golden):
    """``state_dict`` (the raw weights after five steps) gives other logits than the EMA the release evaluates."""
    tensors, meta = golden
    raw = _net(meta, "thumos_like", weights="raw")
    x, mask = raw.pad_for_inference(tensors["features/video_a"])
    with torch.no_grad():
        logits = raw(x, mask).cls_logits[0][0]
    assert (logits - tensors["thumos_like/video_a/level0/cls_logits"]).abs().max() > 1e-2


@pytest.mark.parametrize("name", MODELS)
def test_training_targets_and_losses_equal_official(golden, name):
    tensors, meta = golden
    spec = meta["models"][name]
    net = _net(meta, name, weights="raw")
    net.train()
    gt = meta["gt"]
    length = meta["max_seq_len"]
    feats = torch.zeros(len(gt), meta["input_dim"], length)
    for k, row in enumerate(gt):
        feats[k, :, :row["length"]] = tensors[f"{name}/train/feats{k}"].T
    mask = (torch.arange(length)[None, :] < torch.tensor([row["length"] for row in gt])[:, None])[:, None, :]
    out = net(feats, mask)
    segments = [torch.tensor(row["segments"]) for row in gt]
    labels = [torch.tensor(row["labels"]) for row in gt]
    classes, offsets = batch_targets(out.points, segments, labels, spec["num_classes"])
    for k in range(len(gt)):
        assert torch.equal(classes[k], tensors[f"{name}/train/gt_cls{k}"])
        assert torch.equal(offsets[k], tensors[f"{name}/train/gt_offsets{k}"])
    # two classes on one segment ([10, 30]) and lengths within 1e-3 ([40, 58] / [40.0004, 58]) mark both classes
    both = classes[0].sum(-1) == 2
    positions = torch.cat(out.points)[:, 0]
    assert (both & (positions > 10) & (positions < 30)).any() and (both & (positions > 40) & (positions < 58)).any()
    normalizer = LossNormalizer(meta[f"{name}/loss_normalizer_after_step"])
    losses = actionformer_losses(out.masks, out.cls_logits, out.offsets, classes, offsets, normalizer,
                                 num_classes=spec["num_classes"])
    assert normalizer.value == pytest.approx(meta[f"{name}/train/loss_normalizer_after"], rel=1e-12)
    for key in ("cls_loss", "reg_loss", "final_loss"):
        assert losses[key].item() == pytest.approx(meta[f"{name}/train/{key}"], rel=1e-4), key


def test_localizer_reads_features_and_metadata(golden, tmp_path):
    """The registered localizer: class names from a label file, seconds from ``features.json``."""
    tensors, meta = golden
    import numpy as np

    video, length, fps, stride, frames, duration = meta["videos"][0]
    np.save(tmp_path / f"{video}.npy", tensors[f"features/{video}"].numpy())
    (tmp_path / "features.json").write_text(json.dumps({
        "format": "instract-eval/features/v1", "model": "test", "fingerprint": "x", "feature_dim": 24, "fps": fps,
        "window": frames, "stride": stride, "offset": 0,
        "videos": {video: {"num_features": length, "duration": duration, "fps": fps}}}))
    (tmp_path / "labels.txt").write_text("Jump\nRun\nSwim\n")
    spec = meta["models"]["thumos_like"]
    model = create_model("actionformer", checkpoint=str(FOLDER / "thumos_like.pth.tar"),
                         labels=str(tmp_path / "labels.txt"), mha_win_size=spec["n_mha_win_size"], max_seq_len=256)
    segments = model.localize(str(tmp_path / f"{video}.npy"), ["Jump", "Run", "Swim"], None)
    expected = tensors[f"thumos_like/{video}/thumos/segments"]
    assert len(segments) == expected.shape[0]
    assert [s.label for s in segments[:5]] == [["Jump", "Run", "Swim"][int(i)]
                                                for i in tensors[f"thumos_like/{video}/thumos/labels"][:5]]
    assert segments[0].start == pytest.approx(float(expected[0, 0]), abs=1e-5)
    assert segments[0].score == pytest.approx(float(tensors[f"thumos_like/{video}/thumos/scores"][0]), abs=1e-6)
    only_run = model.localize(str(tmp_path / f"{video}.npy"), ["Run"], None)
    assert only_run and {s.label for s in only_run} == {"Run"}
    with pytest.raises(InputError, match="none of the task's classes"):
        model.localize(str(tmp_path / f"{video}.npy"), ["Dance"], None)


def test_localizer_refuses_bad_input(golden, tmp_path):
    _, meta = golden
    checkpoint = str(FOLDER / "thumos_like.pth.tar")
    with pytest.raises(InputError, match="labels=FILE"):
        create_model("actionformer", checkpoint=checkpoint, mha_win_size=5, max_seq_len=256)
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="2 class names for a model of 3 classes"):
        create_model("actionformer", checkpoint=checkpoint, labels=str(tmp_path / "two.txt"), mha_win_size=5,
                     max_seq_len=256)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(InputError, match="divisible"):
        create_model("actionformer", checkpoint=checkpoint, labels=str(tmp_path / "three.txt"), mha_win_size=5,
                     max_seq_len=200)
    model = create_model("actionformer", checkpoint=checkpoint, labels=str(tmp_path / "three.txt"), mha_win_size=5,
                         max_seq_len=256)
    import numpy as np

    np.save(tmp_path / "v.npy", np.zeros((10, 7), dtype=np.float32))
    with pytest.raises(InputError, match="D=24"):
        model.localize(str(tmp_path / "v.npy"), ["a"], None)
    np.save(tmp_path / "v.npy", np.zeros((10, 24), dtype=np.float32))
    (tmp_path / "features.json").write_text(json.dumps({"format": "instract-eval/features/v1", "fps": 30,
                                                        "window": 16, "stride": 4, "videos": {}}))
    with pytest.raises(InputError, match="no entry for video 'v'"):
        model.localize(str(tmp_path / "v.npy"), ["a"], None)


def test_label_files(tmp_path):
    """Class ids from the release's annotation JSON (``label_id``), a JSON list or lines of text."""
    from instract_eval.adapters.tal.adapter import read_label_file

    database = {"database": {"v1": {"subset": "Test", "annotations": [
        {"segment": [1, 2], "label": "Diving", "label_id": 1}, {"segment": [1, 2], "label": "BaseballPitch",
                                                                 "label_id": 0}]},
        "v2": {"subset": "Validation", "annotations": [{"segment": [3, 4], "label": "CliffDiving", "label_id": 2}]}}}
    (tmp_path / "gt.json").write_text(json.dumps(database))
    assert read_label_file(tmp_path / "gt.json") == ["BaseballPitch", "Diving", "CliffDiving"]
    database["database"]["v2"]["annotations"][0]["label_id"] = 3
    (tmp_path / "gt.json").write_text(json.dumps(database))
    with pytest.raises(InputError, match="2 is missing"):
        read_label_file(tmp_path / "gt.json")
    (tmp_path / "list.json").write_text(json.dumps(["a", "b"]))
    assert read_label_file(tmp_path / "list.json") == ["a", "b"]
    (tmp_path / "names.txt").write_text("a\n\nb\na\n")
    with pytest.raises(InputError, match="names.txt: labels: class 'a' appears twice"):
        read_label_file(tmp_path / "names.txt")
