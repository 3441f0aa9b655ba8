"""``videoprism`` equals VideoPrism as published: transformers' ``VideoPrismClipModel`` (transformers 5.23.0),
the class the ``google/videoprism-lvt-*`` directories load with.

``tests/data/official/videoprism`` holds a tiny ``VideoPrismClipModel`` directory written with
``save_pretrained`` (width 32, 4 heads, 2 spatial + 1 temporal + 1 auxiliary layers, tubelet 1x8x8 on
32 px, 8 frames; text 2 layers, context 24, a tiny SentencePiece-style Unigram ``VideoPrismTokenizer``)
and the class's own outputs on fixed frames and captions. ``make_golden.py`` regenerates it.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from instract_eval.adapters import card_of, create_model
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

transformers = pytest.importorskip("transformers")

FOLDER = OFFICIAL / "videoprism"


@pytest.fixture(scope="module")
def golden():
    return load_golden("videoprism")


@pytest.fixture(scope="module")
def checkpoint(golden):
    return FOLDER / golden.metadata["checkpoint"]


@pytest.fixture(scope="module")
def model(checkpoint):
    return create_model("videoprism", checkpoint=str(checkpoint)).eval()


def test_embeddings_and_cosine_equal_the_official_class(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        similarity = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(similarity, golden.tensors["similarity"])
    # the class's own forward returns exp(cos) normalised over the batch's videos (a column softmax):
    # it is a function of the cosine, and it orders the videos of each text as the cosine does
    official = golden.tensors["logits_per_video"]
    torch.testing.assert_close(similarity.exp() / similarity.exp().sum(dim=0, keepdim=True), official,
                               rtol=0, atol=1e-6)
    assert torch.equal(similarity.argsort(dim=0), official.argsort(dim=0))


def test_tokens_equal_the_processor(golden, model):
    """padding=max_length, truncation, attention mask, as VideoPrismProcessor's text_kwargs say."""
    from transformers.models.videoprism.processing_videoprism import VideoPrismProcessor

    assert VideoPrismProcessor.text_kwargs == {"padding": "max_length", "truncation": True, "max_length": 64}
    ids, mask = model.tokenize(golden.captions)
    assert torch.equal(ids, golden.tensors["input_ids"]) and torch.equal(mask, golden.tensors["attention_mask"])
    assert ids.shape[1] == model.net.config.text_config.max_position_embeddings


def test_frame_spec_is_the_processors(model):
    """The HF video processor needs torchvision (and Pillow), which the product has not, so the constants are
    compared: VideoPrismProcessor's video_kwargs (288 x 288, do_normalize False) and its video processor
    class's bicubic resampling (LlavaOnevisionVideoProcessor.resample = BICUBIC in transformers 5.23)."""
    from transformers.models.videoprism.processing_videoprism import VideoPrismProcessor

    assert VideoPrismProcessor.video_kwargs["size"] == {"height": 288, "width": 288}
    assert VideoPrismProcessor.video_kwargs["do_normalize"] is False
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation, spec.fixed_frames) == (
        8, 32, None, "squash", "bicubic", True)
    assert (spec.mean, spec.std, spec.value_range) == ((0.0,) * 3, (1.0,) * 3, 1.0)
    published = card_of("videoprism").frame_spec_of("lvt-large-f8r288")
    assert (published.num_frames, published.size) == (8, 288)


def test_other_frame_counts_interpolate_as_transformers_does(golden, checkpoint):
    model = create_model("videoprism", checkpoint=str(checkpoint), frames=4).eval()
    assert model.frame_spec().num_frames == 4 and not model.frame_spec().fixed_frames
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"][:, :4])
    assert_matches(videos, golden.tensors["video_embeddings_4_frames_interpolated"], "4 frames, interpolated")


def test_clip_shape_is_checked(golden, model):
    with pytest.raises(ValueError, match="exactly 8 frames"):
        model.encode_video(golden.tensors["frames"][:, :4])
    with pytest.raises(ValueError, match="takes 32x32 frames"):
        model.encode_video(torch.zeros(1, 8, 3, 40, 40))


def test_other_size_reads_every_dimension_from_its_config(tmp_path, checkpoint):
    """16 frames, 48 px, tubelet 1x16x16, width 24 x 2 heads, 1 layer each; the tokenizer passed as tokenizer=DIR."""
    config = transformers.VideoPrismConfig(
        vision_config=dict(image_size=48, num_frames=16, tubelet_size=[1, 16, 16], hidden_size=24,
                           num_attention_heads=2, intermediate_size=40, num_spatial_layers=1, num_temporal_layers=1,
                           num_auxiliary_layers=1),
        text_config=dict(vocab_size=69, hidden_size=24, intermediate_size=40, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=12))
    torch.manual_seed(0)
    reference = transformers.VideoPrismClipModel(config).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    reference.save_pretrained(tmp_path / "vp")
    with pytest.raises(InputError, match=r"vp: checkpoint: ships no tokenizer files"):
        create_model("videoprism", checkpoint=str(tmp_path / "vp"))
    model = create_model("videoprism", checkpoint=str(tmp_path / "vp"), tokenizer=str(checkpoint)).eval()
    # The tokenizer given from outside the directory joins the cache key: another one reads its own.
    import shutil
    shutil.copytree(checkpoint, tmp_path / "tok")
    vocab = next(p for p in sorted((tmp_path / "tok").iterdir()) if p.name.startswith("tokenizer"))
    vocab.write_bytes(vocab.read_bytes() + b" ")
    assert (create_model("videoprism", checkpoint=str(tmp_path / "vp"), tokenizer=str(tmp_path / "tok"))
            .weights_fingerprint() != model.weights_fingerprint())
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size) == (16, 48)
    clips = torch.rand(2, 16, 3, 48, 48)
    captions = ["a person cuts an onion", "the dog runs"]
    tok = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
    encoded = tok(captions, padding="max_length", truncation=True, max_length=12, return_tensors="pt")
    with torch.inference_mode():
        ours = model.similarity(model.encode_video(clips), model.encode_text(captions))
        out = reference(pixel_values_videos=clips, **encoded)
        expected = out.video_embeds @ out.text_embeds.T
    assert_scores(ours, expected)


def _rewrite_weights(checkpoint, target, change):
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint, target)
    state = load_file(str(checkpoint / "model.safetensors"))
    change(state)
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_bad_checkpoints_give_one_line(checkpoint, tmp_path):
    with pytest.raises(InputError, match=r"config.json: checkpoint: is a 'xclip' model, not a VideoPrismClipModel"):
        create_model("videoprism", checkpoint=str(OFFICIAL / "x_clip" / "xclip-tiny-patch8"))
    missing = _rewrite_weights(checkpoint, tmp_path / "missing",
                               lambda s: s.pop("video_model.head.pooling_attention_query"))
    with pytest.raises(InputError, match=r"missing/model.safetensors: .*missing video_model.head.pooling_attention_query"):
        create_model("videoprism", checkpoint=str(missing))
    shaped = _rewrite_weights(checkpoint, tmp_path / "shaped",
                              lambda s: s.update({"text_model.layernorm.bias": torch.zeros(3)}))
    with pytest.raises(InputError, match=r"shaped/model.safetensors: .*wrong shape of text_model.layernorm.bias"):
        create_model("videoprism", checkpoint=str(shaped))
    cut = tmp_path / "cut"
    shutil.copytree(checkpoint, cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=r"cut/model.safetensors: checkpoint: cannot be loaded as VideoPrismClipModel"):
        create_model("videoprism", checkpoint=str(cut))
    (tmp_path / "video_only").mkdir()
    (tmp_path / "video_only" / "config.json").write_text(json.dumps({"model_type": "videoprism_vision_model"}))
    with pytest.raises(InputError, match=r"video_only/config.json: checkpoint: is a 'videoprism_vision_model' model"):
        create_model("videoprism", checkpoint=str(tmp_path / "video_only"))
