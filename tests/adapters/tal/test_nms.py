"""The shared 1-D NMS: hand-worked cases, a literal transcription of the release's C++ loops, and
the release's own outputs (``tests/data/official/actionformer/golden.safetensors``, made by its
compiled ``nms_1d_cpu`` extension through ``libs/utils/nms.py::batched_nms``)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from instract_eval.adapters.tal.nms import NMSConfig, batched_nms, nms_1d, segment_voting, soft_nms_1d

from ..families.golden import load_golden

# A [0, 10] .9 and B [5, 15] .8 overlap by 5 / 15; C [1, 11] .7 overlaps A by 9 / 11 and B by 6 / 14;
# D [0, 10] .6 is A's segment in another class.
SEGS = torch.tensor([[0.0, 10.0], [5.0, 15.0], [1.0, 11.0], [0.0, 10.0]])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6])
LABELS = torch.tensor([0, 0, 0, 1])


def test_hard_nms_by_hand():
    assert nms_1d(SEGS, SCORES, 0.5).tolist() == [0, 1]            # C (IoU .82 with A) and D (IoU 1) go
    assert nms_1d(SEGS, SCORES, 0.3).tolist() == [0]               # B's 1/3 is >= .3 too
    assert nms_1d(SEGS[[1, 2]], SCORES[[1, 2]], 0.5).tolist() == [0, 1]   # B, C: 6/14 < .5
    segs, scores, labels = batched_nms(SEGS, SCORES, LABELS, NMSConfig(method="hard", iou_threshold=0.5,
                                                                       min_score=0.0, multiclass=True))
    assert labels.tolist() == [0, 0, 1] and scores.tolist() == pytest.approx([0.9, 0.8, 0.6])
    assert segs.tolist() == [[0, 10], [5, 15], [0, 10]]
    # min_score is strict for hard NMS: a score equal to it is dropped before NMS
    _, scores, _ = batched_nms(SEGS, SCORES, LABELS, NMSConfig(method="hard", iou_threshold=0.5,
                                                               min_score=0.6, multiclass=True))
    assert scores.tolist() == pytest.approx([0.9, 0.8])


def _gauss(score: float, iou: float, sigma: float) -> float:
    return score * math.exp(-iou * iou / sigma)


def test_soft_nms_by_hand():
    """A is picked; B and C decay by their IoU with A; B is picked; C decays again by its IoU with B."""
    sigma = 0.5
    b = _gauss(0.8, 5 / 15, sigma)
    c = _gauss(_gauss(0.7, 9 / 11, sigma), 6 / 14, sigma)
    segs, scores, order = soft_nms_1d(SEGS[:3], SCORES[:3], sigma=sigma, min_score=0.0)
    assert order.tolist() == [0, 1, 2]
    assert scores.tolist() == pytest.approx([0.9, b, c], abs=1e-6)
    assert segs.tolist() == [[0, 10], [5, 15], [1, 11]]
    # a floor between C's score after A (0.18) and after B (0.127): C is dropped only after B's pick
    _, scores, order = soft_nms_1d(SEGS[:3], SCORES[:3], sigma=sigma, min_score=0.15)
    assert order.tolist() == [0, 1] and scores.tolist() == pytest.approx([0.9, b], abs=1e-6)
    # class-agnostic, with an IoU threshold the Gaussian decay ignores: D (A's segment) decays by A
    # (IoU 1), B (1/3) and C (9/11), and comes last
    d = _gauss(_gauss(_gauss(0.6, 1.0, sigma), 5 / 15, sigma), 9 / 11, sigma)
    _, scores, labels = batched_nms(SEGS, SCORES, LABELS, NMSConfig(method="soft", iou_threshold=0.99, sigma=sigma,
                                                                    min_score=0.0, multiclass=False,
                                                                    voting_thresh=0.0))
    assert labels.tolist() == [0, 0, 0, 1]
    assert scores.tolist() == pytest.approx([0.9, b, c, d], abs=1e-6)


def test_voting_by_hand():
    """The pick [0, 10] averages itself (IoU 1, score .9) and [2, 12] (IoU 8/12, score .5); [20, 30] is too far."""
    picked = torch.tensor([[0.0, 10.0]])
    segs = torch.tensor([[0.0, 10.0], [2.0, 12.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.5, 0.99])
    w1, w2 = 0.9 * 1.0, 0.5 * (8 / 12)
    expected = [(w1 * 0 + w2 * 2) / (w1 + w2), (w1 * 10 + w2 * 12) / (w1 + w2)]
    assert segment_voting(picked, segs, scores, 0.6)[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert segment_voting(picked, segs, scores, 0.7)[0].tolist() == pytest.approx([0.0, 10.0], abs=1e-6)


def _soft_nms_transcribed(segs, scores, sigma, min_score):
    """The release's ``softnms_1d_cpu`` loop (method 2), one scalar at a time in float32."""
    f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731
    x1 = [f32(v) for v in segs[:, 0].tolist()]
    x2 = [f32(v) for v in segs[:, 1].tolist()]
    sc = [f32(v) for v in scores.tolist()]
    areas = (segs[:, 1] - segs[:, 0] + 1e-6).tolist()
    inds = list(range(len(sc)))
    n, dets = len(sc), []
    i = 0
    while i < n:
        best = max(range(i, n), key=lambda p: (sc[p], -p))      # first maximum
        for column in (x1, x2, sc, areas, inds):
            column[i], column[best] = column[best], column[i]
        dets.append((x1[i], x2[i], sc[i], inds[i]))
        pos = i + 1
        while pos < n:
            inter = max(0.0, f32(min(x2[i], x2[pos]) - max(x1[i], x1[pos])))
            iou = f32(inter / f32(areas[i] + areas[pos] - inter))
            sc[pos] = f32(sc[pos] * math.exp(-(iou * iou) / sigma))
            if sc[pos] < min_score:
                for column in (x1, x2, sc, areas, inds):
                    column[pos] = column[n - 1]
                n -= 1
                pos -= 1
            pos += 1
        i += 1
    return dets


@pytest.mark.parametrize("seed", range(5))
def test_soft_nms_equals_the_release_loop(seed):
    rng = random.Random(seed)
    count = 40
    starts = torch.tensor([rng.uniform(0, 30) for _ in range(count)])
    segs = torch.stack((starts, starts + torch.tensor([rng.uniform(0.5, 8) for _ in range(count)])), 1)
    scores = torch.tensor([rng.choice([0.5, 0.3]) if k % 7 == 0 else rng.random() for k in range(count)])
    expected = _soft_nms_transcribed(segs, scores, 0.5, 0.05)
    kept, kept_scores, order = soft_nms_1d(segs, scores, sigma=0.5, min_score=0.05)
    assert order.tolist() == [d[3] for d in expected]
    assert kept_scores.tolist() == pytest.approx([d[2] for d in expected], abs=1e-6)
    assert torch.equal(kept, torch.tensor([[d[0], d[1]] for d in expected]))
    capped = soft_nms_1d(segs, scores, sigma=0.5, min_score=0.05, max_picks=6)
    assert capped[2].tolist() == order[:6].tolist() and torch.equal(capped[1], kept_scores[:6])


def test_empty_and_none():
    empty = torch.zeros(0, 2)
    segs, scores, labels = batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), NMSConfig())
    assert segs.shape == (0, 2) and scores.shape == (0,) and labels.dtype == torch.long
    segs, scores, labels = batched_nms(SEGS, SCORES, LABELS, NMSConfig(method="none"))
    assert torch.equal(segs, SEGS) and torch.equal(labels, LABELS)
    with pytest.raises(ValueError, match="soft, hard or none"):
        NMSConfig(method="linear")


def test_equals_the_release_extension():
    golden = load_golden("actionformer")
    tensors, meta = golden.tensors, json.loads(golden.metadata["meta"])
    segs, scores, labels = tensors["nms/segs"], tensors["nms/scores"], tensors["nms/labels"].long()
    for case, s in meta["nms_cases"].items():
        config = NMSConfig(iou_threshold=s["iou_threshold"], min_score=s["min_score"], max_seg_num=s["max_seg_num"],
                           method="soft" if s["use_soft_nms"] else "hard", sigma=s["sigma"],
                           multiclass=s["multiclass"], voting_thresh=s["voting_thresh"])
        out_segs, out_scores, out_labels = batched_nms(segs, scores, labels, config)
        assert out_segs.shape == tensors[f"nms/{case}/segments"].shape, case
        assert torch.equal(out_labels.float(), tensors[f"nms/{case}/labels"]), case
        assert torch.allclose(out_segs, tensors[f"nms/{case}/segments"], atol=1e-6), case
        assert (out_scores - tensors[f"nms/{case}/scores"]).abs().max() <= 1e-6, case
