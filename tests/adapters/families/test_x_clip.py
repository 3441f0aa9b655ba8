"""``x-clip`` equals X-CLIP as published: transformers' ``XCLIPModel`` (transformers 5.23.0), the class the
``microsoft/xclip-*`` checkpoints load with. That class in turn matches the authors' code, github.com/microsoft/VideoX
at 1744b2159c3d11694f94dab4fcde8660c685e79a (``X-CLIP/models/xclip.py``), to 9.5e-7 in the logits.

``tests/data/official/x_clip`` holds a tiny ``XCLIPModel`` directory written with ``save_pretrained``
(width 32, 4 heads, 2 layers, patch 8 on 32 px, 8 frames, 2 prompt layers, context 77; the real CLIP
BPE cut to 3,000 merges) and the outputs of the official classes on fixed frames and captions:
``logits_per_video`` (X-CLIP is a pair scorer, so the video-conditioned score is the reference), the
MIT video embeddings, and the text embeddings before and after the video-specific prompts.
``make_golden.py`` regenerates it and repeats the VideoX cross-check.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

transformers = pytest.importorskip("transformers")

FOLDER = OFFICIAL / "x_clip"


@pytest.fixture(scope="module")
def golden():
    return load_golden("x_clip")


@pytest.fixture(scope="module")
def checkpoint(golden):
    return FOLDER / golden.metadata["checkpoint"]


@pytest.fixture(scope="module")
def model(checkpoint):
    return create_model("x-clip", checkpoint=str(checkpoint)).eval()


def test_scores_equal_official_logits_per_video(golden, model):
    frames, captions = golden.tensors["frames"], golden.captions
    with torch.inference_mode():
        scores = model.score(frames, [captions] * 3)
        videos, texts = model.pair_embeddings(frames, [captions] * 3)
        plain_videos, _ = model.video_features(frames)
        plain_texts = model.text_features(captions)
    assert_scores(scores, golden.tensors["similarity"], scale=float(golden.metadata["logit_scale"]))
    assert_matches(plain_videos, golden.tensors["video_embeddings"], "video")
    assert_matches(videos, golden.tensors["video_embeddings"], "normalised video")
    assert_matches(plain_texts, golden.tensors["text_embeddings_unconditioned"], "text before the prompts")
    assert_matches(texts.flatten(0, 1), golden.tensors["conditioned_text_embeddings"].flatten(0, 1),
                   "video-conditioned text")


def test_each_clip_is_scored_against_its_own_captions(golden, model):
    """Rows do not interact: clip b with caption list L_b scores as the official forward of (b, L_b)."""
    captions, official = golden.captions, golden.tensors["similarity"]
    orders = [[3, 0], [1, 2], [2, 2]]
    with torch.inference_mode():
        scores = model.score(golden.tensors["frames"], [[captions[i] for i in row] for row in orders])
    expected = torch.stack([official[b, row] for b, row in enumerate(orders)])
    assert_scores(scores, expected, scale=float(golden.metadata["logit_scale"]))


def test_tokens_equal_the_official_processor(golden, model):
    """The directory's tokenizer with truncation: the 4th caption keeps 75 tokens and its end token."""
    ids, mask = model.tokenize(golden.captions)
    assert torch.equal(ids, golden.tensors["input_ids"])
    assert int(ids[3, -1]) == int(ids.max()) and bool(mask[3].all())


def test_shipped_bpe_gives_the_published_tokenizer_ids(golden):
    """Without tokenizer files the shipped OpenAI BPE is used; it gives the full-vocabulary CLIPTokenizer's ids."""
    ours = openai_tokenize(golden.captions, 77)
    official = golden.tensors["input_ids_full_vocab"]
    for row_ours, row_official in zip(ours, official):
        end = int((row_official == 49407).nonzero()[0])
        assert torch.equal(row_ours[:end + 1], row_official[:end + 1])
        assert int(row_ours.argmax()) == end


def test_frame_spec_is_the_published_processor(checkpoint, model):
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation, spec.fixed_frames) == (
        8, 32, 32, "short_side", "bilinear", True)
    assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert create_model("x-clip", checkpoint=str(checkpoint), size=40).frame_spec().size == 40
    weights = checkpoint / "model.safetensors"  # a weights file inside the directory names the directory
    assert create_model("x-clip", checkpoint=str(weights), frames=8).frame_spec().num_frames == 8
    with pytest.raises(InputError, match="takes exactly 8 frames"):
        create_model("x-clip", checkpoint=str(checkpoint), frames=16)


def test_clip_shape_and_caption_lists_are_checked(golden, model):
    frames = golden.tensors["frames"]
    with pytest.raises(ValueError, match="exactly 8 frames"):
        model.score(frames[:, :4], [golden.captions] * 3)
    with pytest.raises(ValueError, match="3 clips but 2 caption lists"):
        model.score(frames, [golden.captions] * 2)
    with pytest.raises(ValueError, match="same non-zero number of captions"):
        model.score(frames, [golden.captions, golden.captions[:2], golden.captions])


def test_other_size_reads_every_dimension_from_its_config(tmp_path):
    """16 frames, 16 px, patch 8, width 48 x 3 heads, 1 layer, projection 24, the full CLIP vocabulary and
    no tokenizer files (so the shipped BPE is used)."""
    config = transformers.XCLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=3,
                           image_size=16, patch_size=8, num_frames=16, mit_hidden_size=24, mit_intermediate_size=48,
                           mit_num_hidden_layers=2, mit_num_attention_heads=2),
        projection_dim=24, prompt_layers=1, prompt_num_attention_heads=2)
    torch.manual_seed(0)
    reference = transformers.XCLIPModel(config).eval()
    reference.save_pretrained(tmp_path / "xclip")
    model = create_model("x-clip", checkpoint=str(tmp_path / "xclip")).eval()
    assert model.tokenizer is None
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop) == (16, 16, 16)
    clips = torch.randn(2, 16, 3, 16, 16)
    captions = ["a person cuts an onion", "open the jar!!", "Someone's SLICING vegetables"]
    with torch.inference_mode():
        scores = model.score(clips, [captions] * 2)
        ids = openai_tokenize(captions, 77)
        mask = (torch.arange(77)[None] <= ids.argmax(-1, keepdim=True)).long()
        expected = reference(input_ids=ids, attention_mask=mask, pixel_values=clips).logits_per_video
    assert scores.shape == (2, 3)
    assert_scores(scores, expected, scale=float(reference.logit_scale.detach().exp()))


def test_published_pytorch_model_bin_loads(golden, checkpoint, tmp_path):
    """The hub repositories ship ``pytorch_model.bin`` written by older transformers (with a
    ``position_ids`` buffer); it loads to the same scores."""
    from safetensors.torch import load_file

    target = tmp_path / "bin"
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns("model.safetensors"))
    state = load_file(str(checkpoint / "model.safetensors"))
    state["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    torch.save(state, target / "pytorch_model.bin")
    model = create_model("x-clip", checkpoint=str(target)).eval()
    with torch.inference_mode():
        scores = model.score(golden.tensors["frames"], [golden.captions] * 3)
    assert_scores(scores, golden.tensors["similarity"], scale=float(golden.metadata["logit_scale"]))


def _rewrite_weights(checkpoint, target, change):
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint, target)
    state = load_file(str(checkpoint / "model.safetensors"))
    change(state)
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_bad_checkpoints_give_one_line(checkpoint, tmp_path):
    with pytest.raises(InputError, match=r"config.json: checkpoint: is a 'siglip' model, not one x-clip reads"):
        create_model("x-clip", checkpoint=str(OFFICIAL / "siglip2" / "siglip2-tiny-patch8-32"))
    with pytest.raises(InputError, match=r"ViT-T-8.pt: checkpoint: is not a Hugging Face model directory"):
        create_model("x-clip", checkpoint=str(OFFICIAL / "clip" / "ViT-T-8.pt"))
    missing = _rewrite_weights(checkpoint, tmp_path / "missing", lambda s: s.pop("visual_projection.weight"))
    with pytest.raises(InputError, match=r"missing/model.safetensors: .*missing visual_projection.weight"):
        create_model("x-clip", checkpoint=str(missing))
    shaped = _rewrite_weights(checkpoint, tmp_path / "shaped",
                              lambda s: s.update({"text_model.final_layer_norm.bias": torch.zeros(3)}))
    with pytest.raises(InputError, match=r"shaped/model.safetensors: .*wrong shape of "
                                         r"text_model.final_layer_norm.bias \(file \[3\], model \[32\]\)"):
        create_model("x-clip", checkpoint=str(shaped))
    extra = _rewrite_weights(checkpoint, tmp_path / "extra", lambda s: s.update({"head.weight": torch.zeros(2)}))
    with pytest.raises(InputError, match=r"extra/model.safetensors: .*unexpected head.weight"):
        create_model("x-clip", checkpoint=str(extra))
    cut = tmp_path / "cut"
    shutil.copytree(checkpoint, cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=r"cut/model.safetensors: checkpoint: cannot be loaded as XCLIPModel "
                                         r"\(truncated"):
        create_model("x-clip", checkpoint=str(cut))
    untokenized = tmp_path / "untokenized"
    shutil.copytree(checkpoint, untokenized,
                    ignore=shutil.ignore_patterns("tokenizer*", "vocab.json", "merges.txt"))
    with pytest.raises(InputError, match=r"untokenized: checkpoint: ships no tokenizer files and its vocabulary "
                                         r"\(3514\)"):
        create_model("x-clip", checkpoint=str(untokenized))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps({"model_type": "xclip"}))
    with pytest.raises(InputError, match=r"broken: checkpoint: holds no weights"):
        create_model("x-clip", checkpoint=str(tmp_path / "broken"))
