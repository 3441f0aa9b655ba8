"""The pooled retrieval engine on real MP4s with a stand-in encoder that can tell the clips apart."""

from __future__ import annotations

import pytest

from instract_eval.errors import InputError
from instract_eval.media import ClipRequest
from instract_eval.tasks.retrieval import RetrievalItem, evaluate_retrieval

from .test_mcq_engine import PROTOCOL, BrightnessModel, TextOnly, write_ramp


def test_pools_are_separate_galleries_and_aggregate_by_clip_count(tmp_path):
    up = ClipRequest(str(write_ramp(tmp_path / "up.mp4", rising=True)), 0.0, 2.0)
    down = ClipRequest(str(write_ramp(tmp_path / "down.mp4", rising=False)), 0.0, 2.0)
    items = [
        RetrievalItem("it brightens", up, pool="a"),
        RetrievalItem("it darkens", down, pool="a"),
        # Pool b: two clips that both brighten; the two captions cannot tell them apart.
        RetrievalItem("brighten quickly", up, pool="b"),
        RetrievalItem("brighten slowly", ClipRequest(up.path, 0.0, 1.9), pool="b"),
    ]
    result = evaluate_retrieval(BrightnessModel(), items, task="toy", protocol=PROTOCOL)
    assert result["per_pool"]["a"]["t2v"]["R@1"] == 1.0
    # Pool b: each query ties with the other clip -> P(rank 1) = 1/2 for each.
    assert result["per_pool"]["b"]["t2v"]["R@1"] == pytest.approx(0.5)
    assert result["metrics"]["t2v"]["R@1"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert result["metrics"]["mean"]["R@1"] == pytest.approx(0.75)
    assert set(result["by_pool_size"]) == {2}


def test_retrieval_needs_a_dual_encoder(tmp_path):
    items = [RetrievalItem("x", ClipRequest(str(tmp_path / "never.mp4")))]
    with pytest.raises(InputError, match="needs a dual encoder"):
        evaluate_retrieval(TextOnly(), items, task="toy", protocol=PROTOCOL)
