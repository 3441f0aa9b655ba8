"""``bike`` equals BIKE's official inference (github.com/whwu95/BIKE at e8f6a8b8b573878e03d1c06246d830d65bf87799).

``tests/data/official/bike`` holds a tiny random BIKE checkpoint in the released layout
(``{'epoch', 'model_state_dict', 'fusion_model_state_dict', 'optimizer_state_dict'}``, all fp32:
CLIP embed 32, ViT width 64 x 1 layer, patch 8 on 32 px, text width 64 x 2 layers, context 77, a
1,024-row token table, the official 6-layer temporal head) and the official code's outputs:
``encode_image`` per frame, ``video_header.agg_video_feat``, ``encode_text(return_token=True)`` and
the ``video_header`` scores (``Transf`` + ``VCS`` as released, ``DP``, and ``None`` + ``VCS``).
BIKE's score is a pair score, so the checks are on its parts and on the score matrix.
"""

from __future__ import annotations

import json

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.core.clip_net import ClipDimensions, ClipNet
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.adapters.protocols import PAIR_SCORER, capabilities_of
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "bike"
FILE = FOLDER / "k400-vit-t-8-f8.pt"


@pytest.fixture(scope="module")
def golden():
    return load_golden("bike")


@pytest.fixture(scope="module")
def model():
    return create_model("bike", checkpoint=str(FILE), frames=8).eval()


@pytest.fixture(scope="module")
def released():
    return torch.load(FILE, weights_only=True)


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1, tensor.shape[-1])


def test_is_a_pair_scorer_only(model):
    """A dual-encoder view would be ranked by cosine, which is not BIKE's score."""
    assert capabilities_of(model) == (PAIR_SCORER,)
    with pytest.raises(TypeError, match="use score"):
        model.similarity(torch.zeros(1, 32), torch.zeros(1, 32))


def test_parts_equal_official(golden, model):
    frames, captions = golden.tensors["frames"], golden.captions
    with torch.inference_mode():
        per_frame = model.net.encode_image(frames.flatten(0, 1))
        video = model.video_features(frames)
        cls, tokens = model.text_features(captions)
    assert_matches(per_frame, _rows(golden.tensors["frame_features"]), "frame features")
    assert_matches(_rows(video), _rows(golden.tensors["video_tokens"]), "video features after the head")
    assert_matches(cls, golden.tensors["text_cls"], "end-token text features")
    assert_matches(_rows(tokens), _rows(golden.tensors["text_tokens"]), "per-token text features")


def test_scores_equal_official(golden, model):
    frames, captions = golden.tensors["frames"], golden.captions
    official = golden.tensors["similarity"]
    with torch.inference_mode():
        video = model.video_features(frames)
        matrix = model.logits(video, *model.text_features(captions))
        # each clip with its own caption order, as the multiple-choice engine asks
        orders = [[(row + shift) % 4 for shift in range(4)] for row in range(3)]
        scores = model.score(frames, [[captions[i] for i in order] for order in orders])
    assert_scores(matrix, official)
    assert_scores(scores, torch.stack([official[row, order] for row, order in enumerate(orders)]))


def test_dp_interaction_equals_official(golden):
    dp = create_model("bike", checkpoint=str(FILE), interaction="DP").eval()
    with torch.inference_mode():
        scores = dp.score(golden.tensors["frames"], [golden.captions] * 3)
    assert_scores(scores, golden.tensors["similarity_dp"])


def test_file_without_head_is_the_no_header_variant(golden, released, tmp_path):
    """``sim_header: None`` saves an empty head dict: VCS on the CLIP frame features."""
    torch.save({**released, "fusion_model_state_dict": {}}, tmp_path / "k400-fewshot.pt")
    plain = create_model("bike", checkpoint=str(tmp_path / "k400-fewshot.pt")).eval()
    with torch.inference_mode():
        scores = plain.score(golden.tensors["frames"], [golden.captions] * 3)
    assert plain.head is None
    assert_scores(scores, golden.tensors["similarity_no_head"])


def test_tokens_equal_official_tokenize(golden, model):
    """The 1,024-row table reads text with the BPE's first 510 merges; the long caption is cut at 77."""
    ids = openai_tokenize(golden.captions, 77, model.tokenizer)
    assert ids.tolist() == json.loads(golden.metadata["token_ids"])
    assert model.tokenizer.eot == 1023 and int(ids[3, 76]) == 1023


def test_prompt_template_is_applied(golden, model):
    prompted = create_model("bike", checkpoint=str(FILE), prompt="This is a video about {}").eval()
    with torch.inference_mode():
        ours = prompted.text_features(["abseiling"])[0]
        official_text = model.text_features([golden.captions[0]])[0]  # "This is a video about abseiling"
    assert torch.allclose(ours, official_text)


def test_frame_spec_is_official_test_transform(model):
    from instract_eval.adapters.image_text.bike import bike_frame_spec

    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.interpolation) == (8, 32, 32, "bicubic")
    big = bike_frame_spec(224, 16)
    assert (big.num_frames, big.size, big.crop) == (16, 256, 224)
    assert bike_frame_spec(336).size == 336


def _other_size_file(tmp_path):
    """A BIKE file of another size, saved by DDP (``module.`` keys): 2 heads everywhere, context 16."""
    from instract_eval.adapters.image_text.bike import BikeHead

    dims = ClipDimensions(embed_dim=48, vision_width=128, vision_layers=2, vision_heads=2, patch_size=4,
                          image_size=16, context_length=16, vocab_size=49408, text_width=128, text_layers=1,
                          text_heads=2)
    torch.manual_seed(1)
    net, head = ClipNet(dims), BikeHead(width=48, positions=16, layers=3, heads=2)
    for module in (net, head):
        for parameter in module.parameters():
            torch.nn.init.normal_(parameter, std=0.1)
    payload = {"epoch": 3,
               "model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
               "fusion_model_state_dict": {f"module.{k}": v for k, v in head.state_dict().items()},
               "optimizer_state_dict": {"state": {}, "param_groups": []}}
    torch.save(payload, tmp_path / "k400-vit-s-4-f4.pt")
    return tmp_path / "k400-vit-s-4-f4.pt"


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    path = _other_size_file(tmp_path)
    model = create_model("bike", checkpoint=str(path), frames=4).eval()
    assert model.head.transformer.resblocks[0].attn.num_heads == 2
    assert len(model.head.transformer.resblocks) == 3 and model.tokenizer.vocabulary_size == 49408
    clips = torch.randn(2, 4, 3, 16, 16)
    with torch.inference_mode():
        assert model.video_features(clips).shape == (2, 4, 48)
        cls, tokens = model.text_features(["a person opens the jar " * 10, "close it"])
        assert cls.shape == (2, 48) and tokens.shape == (2, 16, 48)
        scores = model.score(clips, [["open", "close", "shake"], ["pour", "stir", "open"]])
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()
    assert model.frame_spec().size == 16
    with pytest.raises(InputError, match="frames=17, but the temporal head has 16 frame positions"):
        create_model("bike", checkpoint=str(path), frames=17)


def test_bad_checkpoints_give_one_line(released, tmp_path):
    clip_state, head_state = released["model_state_dict"], released["fusion_model_state_dict"]

    torch.save({"epoch": 29, "model_state_dict": clip_state, "optimizer_state_dict": {}}, tmp_path / "text4vis.pt")
    with pytest.raises(InputError, match=r"text4vis.pt.*not a bike checkpoint: it lacks fusion_model_state_dict"):
        create_model("bike", checkpoint=str(tmp_path / "text4vis.pt"))
    torch.save(dict(clip_state), tmp_path / "ViT-B-16.pt")
    with pytest.raises(InputError, match=r"ViT-B-16.pt.*lacks model_state_dict, fusion_model_state_dict"):
        create_model("bike", checkpoint=str(tmp_path / "ViT-B-16.pt"))

    missing = {**released, "model_state_dict": {k: v for k, v in clip_state.items() if k != "visual.proj"}}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(InputError, match=r"missing.pt.*lacks visual.proj"):
        create_model("bike", checkpoint=str(tmp_path / "missing.pt"))
    no_block = {k: v for k, v in head_state.items() if not k.startswith("transformer.resblocks.5.ln_1.")}
    torch.save({**released, "fusion_model_state_dict": no_block}, tmp_path / "head.pt")
    with pytest.raises(InputError, match=r"head.pt.*missing transformer.resblocks.5.ln_1.bias, "
                                         r"transformer.resblocks.5.ln_1.weight"):
        create_model("bike", checkpoint=str(tmp_path / "head.pt"))

    wrong = {**head_state, "transformer.resblocks.0.ln_2.bias": torch.zeros(5)}
    shaped = {**released, "fusion_model_state_dict": wrong}
    torch.save(shaped, tmp_path / "shaped.pt")
    with pytest.raises(InputError, match=r"shaped.pt.*wrong shape of transformer.resblocks.0.ln_2.bias "
                                         r"\(file \[5\], model \[32\]\)"):
        create_model("bike", checkpoint=str(tmp_path / "shaped.pt"))
    (tmp_path / "cut.pt").write_bytes(FILE.read_bytes()[:4000])
    with pytest.raises(InputError, match=r"cut.pt.*truncated"):
        create_model("bike", checkpoint=str(tmp_path / "cut.pt"))


def test_bad_arguments_give_one_line():
    with pytest.raises(InputError, match="interaction must be one of VCS, DP"):
        create_model("bike", checkpoint=str(FILE), interaction="mean")
    with pytest.raises(InputError, match="prompt must contain"):
        create_model("bike", checkpoint=str(FILE), prompt="a video about")
