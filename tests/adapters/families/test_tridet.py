"""``tridet`` equals the official TriDet (github.com/dingfengshi/TriDet at
764b8165b0d7eb3dfce29f126493564e15003d6e, ``libs/modeling``, ``libs/utils/nms.py`` + its C++ NMS, built).

``tests/data/official/tridet`` holds two tiny checkpoints in the release's on-disk format
(``train.py``'s dict: ``state_dict`` and ``state_dict_ema`` with ``module.`` keys, after five
official training steps) and, from ``make_golden.py``: the official raw outputs per pyramid level
(class logits, centre offsets, start / end boundary logits, the expected distances of
``decode_offset`` per class, masks, points) of the EMA weights on a 100-step and a 300-step
video, the official post-processed detections under three test configs, the official targets and
losses on a batch with ground truth, and the official parameter-group split. ``thumos_like`` is
the THUMOS14 I3D structure (SGP window 1, k 5, 16 bins, identity neck, drop-path scales);
``variant`` has an FPN neck, SGP windows 3 / 5 with k 1.5, average-pool downsampling, absolute
positions, 6 bins, a boundary kernel of 5 and heads without LayerNorm; ``plain`` has no Trident
head (``use_trident_head`` false: two regressed distances per step).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.tal.actionformer import InferenceConfig
from instract_eval.adapters.tal.losses import LossNormalizer, batch_targets
from instract_eval.adapters.tal.nms import NMSConfig
from instract_eval.adapters.tal.tridet import load_tridet, sgp_long_kernel, tridet_losses
from instract_eval.errors import InputError

from .golden import OFFICIAL, load_golden

FOLDER = OFFICIAL / "tridet"
MODELS = ("thumos_like", "variant", "plain")


@pytest.fixture(autouse=True)
def one_thread():
    """The golden outputs were computed on one thread (threaded convolutions sum in another order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def golden():
    loaded = load_golden("tridet")
    return loaded.tensors, json.loads(loaded.metadata["meta"])


def _windows(spec) -> list[int]:
    windows = spec["n_sgp_win_size"]
    return list(windows) if isinstance(windows, list) else [windows] * 6


def _net(meta, name, weights="ema"):
    spec = meta["models"][name]
    net, _ = load_tridet(FOLDER / f"{name}.pth.tar", weights=weights, level0_window=_windows(spec)[0],
                         max_seq_len=meta["max_seq_len"], use_abs_pe=spec["use_abs_pe"],
                         regression_range=spec["regression_range"])
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
    assert (dims.embd_dim, dims.fpn_dim, dims.head_dim, dims.sgp_mlp_dim) == (
        spec["embd_dim"], spec["fpn_dim"], spec["head_dim"], spec["sgp_mlp_dim"])
    assert dims.backbone_arch == tuple(spec["backbone_arch"]) and dims.fpn_type == spec["fpn_type"]
    assert dims.head_num_layers == spec["head_num_layers"] and dims.head_with_ln == spec["head_with_ln"]
    assert dims.use_trident_head == spec["use_trident_head"]
    if dims.use_trident_head:
        assert dims.boundary_kernel_size == spec["boudary_kernel_size"] and dims.num_bins == spec["num_bins"]
    else:   # no boundary heads, two regressed distances
        assert dims.num_bins == 0 and not hasattr(_net(meta, name), "start_head")
    assert dims.downsample_type == spec["downsample_type"]
    assert dims.drop_path_scales == (spec["droppath"] > 0)
    windows = _windows(spec)
    assert list(dims.sgp_win_size) == windows
    # the stem's blocks have kernel 1 whatever level 0's window says; the long kernel follows k
    stem, branch = spec["backbone_arch"][1:]
    assert list(dims.long_kernels) == [sgp_long_kernel(1, spec["k"])] * stem + [
        sgp_long_kernel(w, spec["k"]) for w in windows[1:1 + branch]]


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
        assert len(out.cls_logits) == 6
        for level in range(6):
            prefix = f"{name}/{video}/level{level}"
            pairs = [(out.cls_logits, "cls_logits"), (out.centre, "centre"), (out.distances, "distances")]
            if net.dims.use_trident_head:
                pairs += [(out.start_logits, "start_logits"), (out.end_logits, "end_logits")]
            else:
                assert not out.start_logits and not out.left
            for ours, key in pairs:
                assert ours[level][0].shape == tensors[f"{prefix}/{key}"].shape, (prefix, key)
                worst = max(worst, (ours[level][0] - tensors[f"{prefix}/{key}"]).abs().max().item())
            assert torch.equal(out.masks[level][0].float(), tensors[f"{prefix}/mask"])
            assert torch.equal(out.points[level][:, [0, 3]], tensors[f"{prefix}/points"][:, [0, 3]])
            if not net.dims.use_trident_head:
                continue
            # the distributions are distributions and give the distances as their expectations
            bins = net.dims.num_bins
            assert torch.allclose(out.left[level].sum(-1), torch.ones(()), atol=1e-5)
            expected_left = (out.left[level] * torch.arange(bins, -1, -1, dtype=torch.float32)).sum(-1)
            assert torch.allclose(expected_left, out.distances[level][..., 0], atol=1e-5)
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
            assert expected.shape[0] > 0, prefix
            assert torch.equal(found.labels.float(), tensors[f"{prefix}/labels"]), prefix
            assert torch.equal(found.segments, expected), prefix
            assert (found.scores - tensors[f"{prefix}/scores"]).abs().max() <= 1e-6, prefix


def test_ema_weights_are_the_ones_evaluated(golden):
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
    normalizer = LossNormalizer(meta[f"{name}/loss_normalizer_after_step"])
    losses = tridet_losses(out, classes, offsets, normalizer, iou_weight_power=spec["iou_weight_power"])
    assert normalizer.value == pytest.approx(meta[f"{name}/train/loss_normalizer_after"], rel=1e-12)
    for key in ("cls_loss", "reg_loss", "final_loss"):
        assert losses[key].item() == pytest.approx(meta[f"{name}/train/{key}"], rel=1e-5), key
    losses["final_loss"].backward()
    assert net.cls_head.cls_head.conv.weight.grad.abs().sum() > 0
    if not spec["use_trident_head"]:
        return
    # the IoU weighting matters: without it the classification loss is another number
    plain = tridet_losses(out, classes, offsets, LossNormalizer(meta[f"{name}/loss_normalizer_after_step"]),
                          iou_weight_power=0.0)
    assert abs(plain["cls_loss"].item() - meta[f"{name}/train/cls_loss"]) > 1e-4
    assert net.start_head.cls_head.conv.weight.grad.abs().sum() > 0


def test_localizer_reads_features_and_metadata(golden, tmp_path):
    """The registered localizer: class names from a label file, seconds from ``features.json``."""
    tensors, meta = golden
    video, length, fps, stride, frames, duration = meta["videos"][1]
    np.save(tmp_path / f"{video}.npy", tensors[f"features/{video}"].numpy())
    (tmp_path / "features.json").write_text(json.dumps({
        "format": "instract-eval/features/v1", "model": "test", "fingerprint": "x", "feature_dim": 24, "fps": fps,
        "window": frames, "stride": stride, "offset": 0,
        "videos": {video: {"num_features": length, "duration": duration, "fps": fps}}}))
    (tmp_path / "labels.txt").write_text("Jump\nRun\nSwim\n")
    model = create_model("tridet", checkpoint=str(FOLDER / "thumos_like.pth.tar"), labels=str(tmp_path / "labels.txt"),
                         max_seq_len=256)
    names = ["Jump", "Run", "Swim"]
    segments = model.localize(str(tmp_path / f"{video}.npy"), names, None)
    expected = tensors[f"thumos_like/{video}/thumos/segments"]
    assert len(segments) == expected.shape[0]
    assert [s.label for s in segments] == [names[int(i)] for i in tensors[f"thumos_like/{video}/thumos/labels"]]
    assert torch.equal(torch.tensor([[s.start, s.end] for s in segments], dtype=torch.float32), expected)
    assert segments[0].score == pytest.approx(float(tensors[f"thumos_like/{video}/thumos/scores"][0]), abs=1e-6)
    only_run = model.localize(str(tmp_path / f"{video}.npy"), ["Run"], None)
    assert only_run and {s.label for s in only_run} == {"Run"}
    with pytest.raises(InputError, match="none of the task's classes"):
        model.localize(str(tmp_path / f"{video}.npy"), ["Dance"], None)
    assert "bins=16" in model.weights_fingerprint()


def test_localizer_refuses_bad_input(tmp_path):
    checkpoint = str(FOLDER / "thumos_like.pth.tar")
    with pytest.raises(InputError, match="labels=FILE"):
        create_model("tridet", checkpoint=checkpoint, max_seq_len=256)
    (tmp_path / "two.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="2 class names for a model of 3 classes"):
        create_model("tridet", checkpoint=checkpoint, labels=str(tmp_path / "two.txt"), max_seq_len=256)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(InputError, match="divisible"):
        create_model("tridet", checkpoint=checkpoint, labels=str(tmp_path / "three.txt"), max_seq_len=200)
    with pytest.raises(InputError, match="fps must be a positive number"):
        create_model("tridet", checkpoint=checkpoint, labels=str(tmp_path / "three.txt"), max_seq_len=256, fps=0)
    with pytest.raises(InputError, match="is not a TriDet checkpoint"):
        create_model("tridet", checkpoint=str(OFFICIAL / "actionformer" / "thumos_like.pth.tar"),
                     labels=str(tmp_path / "three.txt"))
    model = create_model("tridet", checkpoint=checkpoint, labels=str(tmp_path / "three.txt"), max_seq_len=256)
    np.save(tmp_path / "v.npy", np.zeros((10, 7), dtype=np.float32))
    with pytest.raises(InputError, match="D=24"):
        model.localize(str(tmp_path / "v.npy"), ["a"], None)
