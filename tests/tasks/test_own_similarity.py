"""Every engine ranks with the model's own ``similarity`` when it has one (MIL-NCE's raw dot product,
CLIP's logit scale, SigLIP's sigmoid), and with the cosine otherwise.

The stand-in embeds a brightening clip along (0, 1) and two captions: "exact" along (0, 1) and
"big" along (3, 3). The cosine prefers "exact" (1 against 0.71); the raw dot product prefers
"big" (3 times larger). Each engine's answer says which score it used.
"""

from __future__ import annotations

import pytest
import torch

from instract_eval.encoding import Encoder
from instract_eval.media import ClipRequest
from instract_eval.tasks.classification import ClassificationItem, ClassificationTask, LabelSet, evaluate_classification
from instract_eval.tasks.mcq import MCQItem, evaluate_mcq
from instract_eval.tasks.retrieval import RetrievalItem, evaluate_retrieval

from .test_mcq_engine import PROTOCOL, BrightnessModel, write_ramp


class CaptionVectors(BrightnessModel):
    """Cosine-ranked: no ``similarity`` of its own."""

    def encode_text(self, texts):
        return torch.tensor([[0.0, 1.0] if t == "exact" else [3.0, 3.0] for t in texts])


class DotProduct(CaptionVectors):
    def similarity(self, videos, texts):
        return videos @ texts.T


@pytest.fixture
def clips(tmp_path):
    return (ClipRequest(str(write_ramp(tmp_path / "up.mp4", rising=True)), 0.0, 2.0, video_id="up"),
            ClipRequest(str(write_ramp(tmp_path / "down.mp4", rising=False)), 0.0, 2.0, video_id="down"))


@pytest.mark.parametrize("model, accuracy", [(DotProduct(), 1.0), (CaptionVectors(), 0.0)])
def test_mcq_uses_the_model_score(clips, model, accuracy):
    items = [MCQItem(clips[0], ("big", "exact"), answer=0, sample_id="up")]
    result = evaluate_mcq(Encoder(model), items, task="toy", protocol=PROTOCOL)
    assert result["metrics"]["accuracy"] == accuracy


def test_mcq_with_a_text_query_passes_videos_first(clips):
    """VR-style (one caption against a clip and another clip): similarity gets (videos [2, D], texts [1, D])."""
    calls = []

    class Recording(DotProduct):
        def similarity(self, videos, texts):
            calls.append((tuple(videos.shape), tuple(texts.shape)))
            return super().similarity(videos, texts)

    items = [MCQItem("exact", (clips[0], clips[1]), answer=0, sample_id="q")]
    result = evaluate_mcq(Encoder(Recording()), items, task="toy", protocol=PROTOCOL)
    assert calls == [((2, 2), (1, 2))]
    assert result["samples"][0]["scores"][0] > result["samples"][0]["scores"][1]  # the brightening clip


@pytest.mark.parametrize("model, accuracy", [(DotProduct(), 1.0), (CaptionVectors(), 0.0)])
def test_classification_uses_the_model_score(clips, model, accuracy):
    items = (ClassificationItem(clips[0], "big", sample_id="up"),)
    labels = LabelSet("default", {"all": ("big", "exact")}, {"big": ("big",), "exact": ("exact",)})
    result = evaluate_classification(Encoder(model), ClassificationTask(items, labels), name="toy", protocol=PROTOCOL)
    assert result["metrics"]["accuracy"] == accuracy


@pytest.mark.parametrize("model, v2t", [(DotProduct(), 0.5), (CaptionVectors(), 0.0)])
def test_retrieval_uses_the_model_score(clips, model, v2t):
    """V2T: the brightening clip's caption is "big"; the darkening clip's is "exact"."""
    items = [RetrievalItem("big", clips[0], pool="p"), RetrievalItem("exact", clips[1], pool="p")]
    result = evaluate_retrieval(Encoder(model), items, task="toy", protocol=PROTOCOL)
    assert result["per_pool"]["p"]["v2t"]["R@1"] == pytest.approx(v2t)


class PairDot(DotProduct):
    """The same score as `DotProduct`, but as a pair scorer: ``score(clips, caption lists)``."""

    encode_video_as_dual = DotProduct.encode_video

    def score(self, clips, texts):
        videos = self.encode_video_as_dual(clips)
        return torch.stack([videos[i] @ self.encode_text(captions).T for i, captions in enumerate(texts)])


def pair_only(model):
    """``model`` seen through its pair-scorer capability alone (no encode_video / encode_text)."""
    class PairOnly:
        name = "pair-only"
        frame_spec = model.frame_spec
        list_dependent_scores = getattr(model, "list_dependent_scores", False)

        def score(self, clips, texts):
            return model.score(clips, texts)

    return PairOnly()


def test_a_pair_scorer_classifies_as_the_equivalent_dual_encoder(clips):
    items = (ClassificationItem(clips[0], "big", sample_id="up"), ClassificationItem(clips[1], "exact", sample_id="dn"))
    labels = LabelSet("default", {"all": ("big", "exact")}, {"big": ("big", "exact"), "exact": ("exact",)})
    task = ClassificationTask(items, labels)
    dual = evaluate_classification(Encoder(DotProduct()), task, name="toy", protocol={**PROTOCOL, "tau": 0.5})
    pair = evaluate_classification(Encoder(pair_only(PairDot())), task, name="toy", protocol={**PROTOCOL, "tau": 0.5})
    assert pair["metrics"] == dual["metrics"]
    for a, b in zip(pair["samples"], dual["samples"]):
        assert a["scores"] == pytest.approx(b["scores"], rel=1e-6)
    assert pair["scoring"] == {"method": "pair scorer", "pairs": 4} and dual["scoring"] == {"method": "model similarity"}


def test_a_pair_scorer_retrieves_as_the_equivalent_dual_encoder(clips, tmp_path):
    other = ClipRequest(clips[0].path, 0.0, 1.5, video_id="up-short")
    items = [RetrievalItem("big", clips[0], pool="p"), RetrievalItem("exact", clips[1], pool="p"),
             RetrievalItem("exact", other, pool="q"), RetrievalItem("big", clips[1], pool="q")]
    dual = evaluate_retrieval(Encoder(DotProduct()), items, task="toy", protocol=PROTOCOL)
    pair = evaluate_retrieval(Encoder(pair_only(PairDot())), items, task="toy", protocol=PROTOCOL)
    assert pair["per_pool"] == dual["per_pool"] and pair["metrics"] == dual["metrics"]
    assert pair["scoring"] == {"method": "pair scorer", "pairs": 8}


@pytest.mark.parametrize("separate", [True, False])
def test_list_dependent_scorers_get_each_caption_list_on_its_own(clips, separate):
    """A letter-choice scorer's scores depend on the whole list (here: a softmax over it), so the
    encoder must not concatenate a clip's lists; a plain pair scorer still gets one call per clip."""
    calls = []

    class Softmax(PairDot):
        list_dependent_scores = separate

        def score(self, clips, texts):
            calls.append([len(captions) for captions in texts])
            return torch.softmax(super().score(clips, texts), dim=1)

    scored = Encoder(pair_only(Softmax())).pair_scores([(clips[0], ("big", "exact")), (clips[0], ("exact", "big", "big"))],
                                                      Softmax().frame_spec())
    first, second = scored.scores[(clips[0].key(), ("big", "exact"))], scored.scores[(clips[0].key(), ("exact", "big", "big"))]
    if separate:
        assert sorted(calls) == [[2], [3]]
        assert first.sum() == pytest.approx(1.0) and second.sum() == pytest.approx(1.0)
    else:
        assert calls == [[5]]
        assert first.sum() + second.sum() == pytest.approx(1.0)
