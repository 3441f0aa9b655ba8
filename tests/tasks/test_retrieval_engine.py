"""The pooled retrieval engine on real MP4s with a stand-in encoder that can tell the clips apart."""

from __future__ import annotations

import pytest

from instract_eval.encoding import Encoder
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
    result = evaluate_retrieval(Encoder(BrightnessModel()), items, task="toy", protocol=PROTOCOL)
    assert result["per_pool"]["a"]["t2v"]["R@1"] == 1.0
    # Pool b: each query ties with the other clip -> P(rank 1) = 1/2 for each.
    assert result["per_pool"]["b"]["t2v"]["R@1"] == pytest.approx(0.5)
    assert result["metrics"]["t2v"]["R@1"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert result["metrics"]["mean"]["R@1"] == pytest.approx(0.75)
    assert set(result["by_pool_size"]) == {2}


def test_retrieval_needs_a_dual_encoder(tmp_path):
    items = [RetrievalItem("x", ClipRequest(str(tmp_path / "never.mp4")))]
    with pytest.raises(InputError, match="needs a dual encoder"):
        evaluate_retrieval(Encoder(TextOnly()), items, task="toy", protocol=PROTOCOL)


def test_categories_aggregate_their_pools_clip_weighted(tmp_path):
    up = ClipRequest(str(write_ramp(tmp_path / "up.mp4", rising=True)), 0.0, 2.0)
    down = ClipRequest(str(write_ramp(tmp_path / "down.mp4", rising=False)), 0.0, 2.0)
    items = [
        RetrievalItem("it brightens", up, pool="a", category="tools"),
        RetrievalItem("it darkens", down, pool="a", category="tools"),
        RetrievalItem("brighten quickly", up, pool="b", category="food"),
        RetrievalItem("brighten slowly", ClipRequest(up.path, 0.0, 1.9), pool="b", category="food"),
        RetrievalItem("it darkens", down, pool="c", category="food"),
    ]
    result = evaluate_retrieval(Encoder(BrightnessModel()), items, task="toy", protocol=PROTOCOL)
    food = result["per_category"]["food"]
    # Pool b: two tied clips (P(rank 1) = 1/2 each); pool c: a single clip (rank 1).
    assert food["t2v"]["R@1"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert (food["num_pools"], food["num_items"]) == (2, 3)
    assert result["per_category"]["tools"]["t2v"]["R@1"] == 1.0
    mixed = [RetrievalItem("x", up, pool="a", category="tools"), RetrievalItem("y", down, pool="a", category="food")]
    with pytest.raises(ValueError, match="mixes the categories"):
        evaluate_retrieval(Encoder(BrightnessModel()), mixed, task="toy", protocol=PROTOCOL)


def test_several_captions_per_video_rank_against_the_unique_videos(tmp_path):
    up = ClipRequest(str(write_ramp(tmp_path / "up.mp4", rising=True)), 0.0, 2.0)
    down = ClipRequest(str(write_ramp(tmp_path / "down.mp4", rising=False)), 0.0, 2.0)
    items = [RetrievalItem("brighten", up), RetrievalItem("brighten again", up), RetrievalItem("darken", down),
             RetrievalItem("it darkens", up)]  # a caption that describes its video wrongly
    result = evaluate_retrieval(Encoder(BrightnessModel()), items, task="toy", protocol=PROTOCOL)
    assert (result["num_videos"], result["num_texts"]) == (2, 4)
    # T2V over 2 videos: the wrong caption ranks its video second.
    assert result["metrics"]["t2v"]["R@1"] == pytest.approx(3 / 4)
    assert result["metrics"]["t2v"]["num_queries"] == 4
    # V2T (CLIP4Clip's max over a candidate video's captions), one query per video: the up video
    # ranks itself first; for the down video, 'up' scores max(..., 'it darkens') = its own best,
    # a tie: P(rank 1) = 1/2.
    assert result["metrics"]["v2t"]["num_queries"] == 2 and result["v2t_definition"] == "max_caption"
    assert result["metrics"]["v2t"]["R@1"] == pytest.approx((1 + 0.5) / 2)
    assert result["metrics"]["mean"]["R@1"] == pytest.approx(3 / 4)
    pooled = [RetrievalItem("a", up, pool="p"), RetrievalItem("b", up, pool="p"), RetrievalItem("c", down, pool="q")]
    with pytest.raises(ValueError, match="single-pool"):
        evaluate_retrieval(Encoder(BrightnessModel()), pooled, task="toy", protocol=PROTOCOL)
