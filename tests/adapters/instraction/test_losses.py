"""InstrAction's objectives against values worked by hand or by brute-force loops over plain floats."""

from __future__ import annotations

import math

import pytest
import torch

from instract_eval.adapters.instraction.losses import (dtw_alignment_loss, hard_negative_candidates, hard_negative_nce,
                                                       soft_dtw_prob, vtc_loss)

GAMMA = 0.1


def soft_average(*values: float) -> float:
    """The release's neighbour term worked out in floats: sum softmax(-n / 0.1) * n."""
    weights = [math.exp(-v / GAMMA) for v in values]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


E1, E2, NEG_E1 = [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]


def test_dtw_prob_2x2_by_hand():
    # cost 1 - cos = [[0, 1], [1, 0]]; the borders are float max and get weight 0.
    video, text = torch.tensor([E1, E2]), torch.tensor([E1, E2])
    r11 = 0.0                          # neighbours (max, 0, max) -> 0
    r12 = 1.0 + r11                    # (r11, max, max)
    r21 = 1.0 + r11                    # (max, max, r11)
    r22 = 0.0 + soft_average(r21, r11, r12)
    assert r22 == pytest.approx(2 * math.exp(-10) / (1 + 2 * math.exp(-10)))
    assert soft_dtw_prob(video, text).item() == pytest.approx(r22, rel=1e-5, abs=1e-9)
    # reversed video: cost [[1, 0], [0, 1]]
    reverse = 1.0 + soft_average(0.0 + 1.0, 1.0, 0.0 + 1.0)
    assert reverse == pytest.approx(2.0)
    assert soft_dtw_prob(video.flip(0), text).item() == pytest.approx(reverse, rel=1e-6)


def test_dtw_prob_2x3_by_hand():
    # cost [[0, 1, 2], [1, 0, 1]]
    video, text = torch.tensor([E1, E2]), torch.tensor([E1, E2, NEG_E1])
    r11 = 0.0
    r12 = 1.0 + r11
    r13 = 2.0 + r12
    r21 = 1.0 + r11
    r22 = 0.0 + soft_average(r21, r11, r12)
    r23 = 1.0 + soft_average(r22, r12, r13)
    assert soft_dtw_prob(video, text).item() == pytest.approx(r23, rel=1e-6)
    # and the 3x2 transpose problem: cost^T = [[0, 1], [1, 0], [2, 1]]
    q11 = 0.0
    q12 = 1.0 + q11
    q21 = 1.0 + q11
    q22 = 0.0 + soft_average(q21, q11, q12)
    q31 = 2.0 + q21
    q32 = 1.0 + soft_average(q31, q21, q22)
    assert soft_dtw_prob(text, video).item() == pytest.approx(q32, rel=1e-6)


def test_dtw_prob_differs_from_log_sum_exp_soft_min():
    # The release averages its neighbours; Cuturi's soft-min -g log sum exp(-n/g) would go below the minimum.
    video, text = torch.tensor([E1, E2]), torch.tensor([E1, E2])
    soft_min = -GAMMA * math.log(math.exp(-1 / GAMMA) + 1 + math.exp(-1 / GAMMA))
    assert soft_min < 0 < soft_dtw_prob(video, text).item()


def test_dtw_loss_forward_reverse_hinge_and_skipped_samples():
    ordered = torch.tensor([E1, E2])
    verbs = torch.tensor([[E1, E2, E1], [E1, E2, E1], [E1, E2, E1]])
    tokens = torch.stack([ordered, ordered.flip(0), ordered])
    num_verbs = torch.tensor([2, 2, 0])                    # the third sample has no verbs: skipped
    out = dtw_alignment_loss(tokens, verbs, num_verbs, scale=0.01, margin=0.0, order_weight=1.0)
    small = 2 * math.exp(-10) / (1 + 2 * math.exp(-10))
    forward = [0.01 * small, 0.01 * 2.0]                   # sample 2 is sample 1 reversed
    hinge = [max(0.0, forward[0] - 0.01 * 2.0), max(0.0, forward[1] - 0.01 * small)]
    assert out.align.item() == pytest.approx(sum(forward) / 2, rel=1e-5)
    assert out.order.item() == pytest.approx(sum(hinge) / 2, rel=1e-5)
    assert out.total.item() == pytest.approx(sum(forward) / 2 + sum(hinge) / 2, rel=1e-5)
    weighted = dtw_alignment_loss(tokens, verbs, num_verbs, order_weight=3.0, margin=0.5)
    hinge_m = [max(0.0, forward[0] - 0.02 + 0.5), max(0.0, forward[1] - 0.01 * small + 0.5)]
    assert weighted.total.item() == pytest.approx(sum(forward) / 2 + 3.0 * sum(hinge_m) / 2, rel=1e-5)
    assert weighted.order.item() == pytest.approx(3.0 * sum(hinge_m) / 2, rel=1e-5)


def test_dtw_loss_without_any_verbs_is_a_connected_zero():
    tokens = torch.randn(2, 4, 3, requires_grad=True)
    out = dtw_alignment_loss(tokens, torch.randn(2, 6, 3), torch.tensor([0, 0]))
    assert out.total.item() == 0.0
    out.total.backward()
    assert tokens.grad is not None and torch.count_nonzero(tokens.grad) == 0


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_hard_negative_nce_by_brute_force():
    torch.manual_seed(3)
    batch, slots, tau = 3, 4, 0.05
    video = torch.randn(batch, 5, dtype=torch.float64)
    texts = torch.randn(batch * slots, 5, dtype=torch.float64)
    padded = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 1]])   # video 2 has no hard negatives
    v, t = video.tolist(), texts.tolist()
    logit = [[_cos(v[i], t[k]) / tau for k in range(batch * slots)] for i in range(batch)]
    v2t_rows = []
    for i in range(batch):
        seen = [j * slots + s for j in range(batch) for s in range(slots)
                if s == 0 or (j == i and not padded[i, s])]
        loss = -logit[i][i * slots] + math.log(sum(math.exp(logit[i][k]) for k in seen))
        v2t_rows.append(loss / math.log(len(seen)))
    t2v_rows = []
    for j in range(batch):
        column = [logit[i][j * slots] for i in range(batch)]
        t2v_rows.append((-column[j] + math.log(sum(math.exp(c) for c in column))) / math.log(batch))
    expected = sum(v2t_rows) / batch + sum(t2v_rows) / batch
    got = hard_negative_nce(video, texts, padded.reshape(-1, 1), temperature=tau).item()
    assert got == pytest.approx(expected, rel=1e-6)   # the release computes the logits in float32


def test_hard_negative_nce_hardness_weights_by_brute_force():
    torch.manual_seed(4)
    batch, slots, tau, beta = 2, 3, 0.1, 2.0
    video, texts = torch.randn(batch, 4, dtype=torch.float64), torch.randn(batch * slots, 4, dtype=torch.float64)
    padded = torch.tensor([[0, 0, 1], [0, 0, 0]])
    v, t = video.tolist(), texts.tolist()
    logit = [[_cos(v[i], t[k]) / tau for k in range(batch * slots)] for i in range(batch)]

    def weighted(row: list[float], pos: int, negatives: list[int]) -> float:
        # each negative weighs (count - 1) exp(beta l) / sum over negatives of exp(beta l)
        raw = {k: math.exp(beta * row[k]) for k in negatives}
        scale = len(negatives) / sum(raw.values())
        return -row[pos] + math.log(math.exp(row[pos]) + sum(scale * raw[k] * math.exp(row[k]) for k in negatives))

    v2t = []
    for i in range(batch):
        seen = [j * slots + s for j in range(batch) for s in range(slots) if s == 0 or (j == i and not padded[i, s])]
        v2t.append(weighted(logit[i], i * slots, [k for k in seen if k != i * slots]) / math.log(len(seen)))
    t2v = []
    for j in range(batch):
        column = [logit[i][j * slots] for i in range(batch)]
        t2v.append(weighted(column, j, [i for i in range(batch) if i != j]) / math.log(batch))
    got = hard_negative_nce(video, texts, padded, temperature=tau, beta=beta).item()
    assert got == pytest.approx(sum(v2t) / batch + sum(t2v) / batch, rel=1e-6)


def test_hard_negative_candidates_hide_other_videos_negatives_and_padding():
    visible = hard_negative_candidates(torch.tensor([[0, 0, 1], [0, 1, 1]]))
    assert visible.tolist() == [[True, True, False, True, False, False],
                                [True, False, False, True, False, False]]


def test_hard_negative_nce_one_video_has_no_ranking_problem():
    # one video, only its caption: nothing to rank (log 1) in either direction -> a zero, not NaN
    out = hard_negative_nce(torch.randn(1, 4), torch.randn(3, 4), torch.tensor([[0, 1, 1]]))
    assert out.item() == 0.0


def _log_softmax(row: list[float]) -> list[float]:
    total = math.log(sum(math.exp(x) for x in row))
    return [x - total for x in row]


def test_vtc_multi_positive_soft_targets_2x2_by_hand():
    video = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    text = torch.tensor([[0.8, 0.6], [0.0, 1.0]], dtype=torch.float64)
    teacher = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    tau, alpha = 0.5, 0.25
    # cosines: v0.t0 = 0.8, v0.t1 = 0, v1.t0 = 0.96, v1.t1 = 0.8 (all vectors unit length)
    sim = [[0.8 / tau, 0.0 / tau], [0.96 / tau, 0.8 / tau]]
    # both captions belong to one video group: hard targets [[.5, .5], [.5, .5]]
    hard = [[0.5, 0.5], [0.5, 0.5]]
    teach = [[0.6 / tau, 1.0 / tau], [0.8 / tau, 0.0 / tau]]       # cos(teacher_i, t_j) / tau
    soft_v2t = [[alpha * math.exp(p) / sum(math.exp(q) for q in row) + (1 - alpha) * h
                 for p, h in zip(row, hrow)] for row, hrow in zip(teach, hard)]
    teach_t = [[teach[0][0], teach[1][0]], [teach[0][1], teach[1][1]]]
    soft_t2v = [[alpha * math.exp(p) / sum(math.exp(q) for q in row) + (1 - alpha) * h
                 for p, h in zip(row, hrow)] for row, hrow in zip(teach_t, hard)]
    sim_t = [[sim[0][0], sim[1][0]], [sim[0][1], sim[1][1]]]
    v2t = -sum(sum(y * l for y, l in zip(ys, _log_softmax(row))) for ys, row in zip(soft_v2t, sim)) / 2
    t2v = -sum(sum(y * l for y, l in zip(ys, _log_softmax(row))) for ys, row in zip(soft_t2v, sim_t)) / 2
    got = vtc_loss(video, text, torch.tensor([7, 7]), tau, alpha=alpha, teacher=teacher).item()
    assert got == pytest.approx(0.5 * (v2t + t2v), rel=1e-10)
    # distinct groups and no teacher: plain symmetric InfoNCE with identity targets
    plain_v2t = -(_log_softmax(sim[0])[0] + _log_softmax(sim[1])[1]) / 2
    plain_t2v = -(_log_softmax(sim_t[0])[0] + _log_softmax(sim_t[1])[1]) / 2
    got = vtc_loss(video, text, torch.tensor([0, 1]), tau).item()
    assert got == pytest.approx(0.5 * (plain_v2t + plain_t2v), rel=1e-10)


def test_vtc_alpha_receives_gradient_through_the_soft_targets():
    alpha = torch.tensor(0.3, requires_grad=True)
    loss = vtc_loss(torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 1]), 0.1, alpha=alpha,
                    teacher=torch.randn(3, 4))
    loss.backward()
    assert alpha.grad is not None and alpha.grad.abs().item() > 0
