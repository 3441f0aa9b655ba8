"""``siglip2`` equals SigLIP 2 as published: transformers' ``SiglipModel`` (fixed resolution, ``model_type: siglip``)
and ``Siglip2Model`` (NaFlex), transformers 5.23.0, the classes the ``google/siglip2-*`` checkpoints load with. The
weights are converted from github.com/google-research/big_vision; there is no other PyTorch reference.

``tests/data/official/siglip2`` holds two tiny directories written with ``save_pretrained``: fixed 32 px with patch 8,
and NaFlex with patch 8, a 4x4 position grid and a budget of 20 patches. Both have width 32, 4 heads, 2 layers and
context 64, and a tiny Gemma-style BPE tokenizer (byte fallback, lower-case vocabulary) saved by ``GemmaTokenizer``,
so ``AutoTokenizer`` loads it offline as it loads the real one. The golden outputs are the official
``get_image_features`` per frame, normalised, averaged and renormalised; ``get_text_features`` of the lower-cased
captions, padded on the right to 64 with no attention mask; and the logit ``exp(t) * cosine + b``. The per-frame
logits come from the official forward. The NaFlex frames are 24x40, cut into patches by the official processor's
``convert_image_to_patches`` and ``pad_along_first_dim``. ``make_golden.py`` regenerates the folder.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.image_text.siglip2 import naflex_grid, patchify
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

transformers = pytest.importorskip("transformers")

FOLDER = OFFICIAL / "siglip2"
KINDS = {"fixed": ("golden.safetensors", "siglip2-tiny-patch8-32"),
         "naflex": ("golden_naflex.safetensors", "siglip2-tiny-patch8-naflex")}


@pytest.fixture(scope="module", params=sorted(KINDS))
def case(request):
    golden_file, directory = KINDS[request.param]
    model = create_model("siglip2", checkpoint=str(FOLDER / directory), frames=4).eval()
    return request.param, load_golden("siglip2", golden_file), model


def test_equals_official_siglip(case):
    kind, golden, model = case
    frames = golden.tensors["frames"]
    scale = math.exp(float(golden.metadata["logit_scale"]))
    with torch.inference_mode():
        videos = model.encode_video(frames)
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
        per_frame = model.frame_features(frames.flatten(0, 1))
        frame_scores = model.similarity(per_frame, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], f"{kind} video")
    assert_matches(texts, golden.tensors["text_embeddings"], f"{kind} text")
    assert_matches(per_frame, golden.tensors["frame_embeddings"].flatten(0, 1), f"{kind} frame")
    assert_scores(scores, golden.tensors["similarity"], scale=scale)
    assert_scores(frame_scores, golden.tensors["frame_logits"], scale=scale)  # SiglipModel.forward's logits


def test_text_is_lower_cased_right_padded_to_64_without_a_mask(case):
    kind, golden, model = case
    ids = model.tokenize(golden.captions)
    assert torch.equal(ids, golden.tensors["input_ids"])
    assert ids.shape == (4, 64) and int(ids[0, -1]) == 0 and int(ids[3, -1]) == 1  # pad 0 right; eos kept
    cased = model.tokenizer(golden.captions, padding="max_length", max_length=64, truncation=True,
                            return_tensors="pt")
    if kind == "fixed":  # GemmaTokenizer does not lower-case; upper-case letters fall back to bytes
        assert not torch.equal(cased["input_ids"], ids)
    with torch.inference_mode():
        masked = model.net.get_text_features(input_ids=ids, attention_mask=cased["attention_mask"]).pooler_output
        ours = model.encode_text(golden.captions)
    assert_matches(ours, golden.tensors["text_embeddings"], "text")
    assert float(torch.nn.functional.cosine_similarity(masked, ours).min()) < 0.99  # a mask would change it


def test_naflex_patches_equal_the_official_processor():
    golden = load_golden("siglip2", "golden_naflex.safetensors")
    frames = golden.tensors["frames"].flatten(0, 1)[:4]
    patches, mask = patchify(frames, 8, 20)
    assert torch.equal(patches, golden.tensors["pixel_values"])
    assert torch.equal(mask, golden.tensors["pixel_attention_mask"])


# get_image_size_for_max_num_patches of transformers 5.23.0 (its module needs PIL, so the values are written here)
OFFICIAL_GRIDS = {(24, 40, 8, 20): (24, 40), (32, 48, 8, 20): (32, 40), (480, 640, 16, 256): (224, 288),
                  (720, 1280, 16, 256): (192, 336), (1080, 1920, 16, 1024): (384, 672), (100, 30, 14, 64): (196, 56),
                  (7, 9, 8, 20): (32, 40), (256, 256, 16, 256): (256, 256), (300, 200, 16, 576): (464, 304)}


def test_naflex_grid_is_the_processors():
    for (height, width, patch, budget), expected in OFFICIAL_GRIDS.items():
        assert naflex_grid(height, width, patch, budget) == expected


def test_frame_specs_are_the_processors():
    fixed = create_model("siglip2", checkpoint=str(FOLDER / KINDS["fixed"][1])).frame_spec()
    assert (fixed.num_frames, fixed.size, fixed.crop, fixed.resize, fixed.interpolation) == (
        8, 32, None, "squash", "bicubic")
    assert fixed.mean == fixed.std == (0.5, 0.5, 0.5)
    naflex = create_model("siglip2", checkpoint=str(FOLDER / KINDS["naflex"][1]), keep_aspect=True,
                          max_num_patches=30)
    spec = naflex.frame_spec()
    assert (spec.size, spec.crop, spec.resize, spec.interpolation) == (40, None, "short_side", "bilinear")
    assert naflex.max_num_patches == 30 and "max_num_patches=30" in naflex.weights_fingerprint()
    with torch.inference_mode():  # 32x48 frames: resized to the 32x40 grid that fits 20 patches, then encoded
        videos = create_model("siglip2", checkpoint=str(FOLDER / KINDS["naflex"][1]), frames=2).eval() \
            .encode_video(torch.randn(2, 2, 3, 32, 48))
    assert videos.shape == (2, 32)


def test_other_size_reads_every_dimension_from_its_config(tmp_path):
    """Width 48 x 3 heads, 1 layer, 16 px with patch 4, context 16 (as so400m-patch14-224), projection 24; the
    tokenizer given as tokenizer=DIR."""
    config = transformers.SiglipConfig(
        text_config=dict(vocab_size=481, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=3, max_position_embeddings=16, projection_size=24),
        vision_config=dict(hidden_size=24, intermediate_size=64, num_hidden_layers=1, num_attention_heads=3,
                           image_size=16, patch_size=4))
    torch.manual_seed(0)
    reference = transformers.SiglipModel(config).eval()
    reference.save_pretrained(tmp_path / "siglip")
    tokenizer_dir = FOLDER / KINDS["fixed"][1]
    with pytest.raises(InputError, match=r"siglip: checkpoint: ships no tokenizer"):
        create_model("siglip2", checkpoint=str(tmp_path / "siglip"))
    model = create_model("siglip2", checkpoint=str(tmp_path / "siglip"), tokenizer=str(tokenizer_dir), frames=3)
    model.eval()
    assert model.frame_spec().size == 16
    captions = ["A person cuts an onion", "open the jar slowly and carefully, then pour the water out"]
    with torch.inference_mode():
        videos = model.encode_video(torch.randn(2, 3, 3, 16, 16))
        texts = model.encode_text(captions)
        ids = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))(
            [c.lower() for c in captions], padding="max_length", max_length=16, truncation=True,
            return_tensors="pt").input_ids
        expected = reference.get_text_features(input_ids=ids).pooler_output
    assert videos.shape == (2, 24) and texts.shape == (2, 24)
    assert_matches(texts, expected, "text")


def _rewrite_weights(source, target, change):
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    state = load_file(str(source / "model.safetensors"))
    change(state)
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_bad_checkpoints_give_one_line(tmp_path):
    source = FOLDER / KINDS["fixed"][1]
    with pytest.raises(InputError, match=r"config.json: checkpoint: is a 'xclip' model, not one siglip2 reads"):
        create_model("siglip2", checkpoint=str(OFFICIAL / "x_clip" / "xclip-tiny-patch8"))
    with pytest.raises(InputError, match=r"ViT-T-8.pt: checkpoint: is not a Hugging Face model directory"):
        create_model("siglip2", checkpoint=str(OFFICIAL / "clip" / "ViT-T-8.pt"))
    missing = _rewrite_weights(source, tmp_path / "missing", lambda s: s.pop("logit_bias"))
    with pytest.raises(InputError, match=r"missing/model.safetensors: .*SiglipModel.*missing logit_bias"):
        create_model("siglip2", checkpoint=str(missing))
    shaped = _rewrite_weights(source, tmp_path / "shaped", lambda s: s.update(
        {"text_model.head.weight": torch.zeros(32, 7)}))
    with pytest.raises(InputError, match=r"shaped/model.safetensors: .*wrong shape of text_model.head.weight "
                                         r"\(file \[32, 7\], model \[32, 32\]\)"):
        create_model("siglip2", checkpoint=str(shaped))
    wrong_tokenizer = create_model("siglip2", checkpoint=str(source),
                                   tokenizer=str(OFFICIAL / "x_clip" / "xclip-tiny-patch8"))
    with pytest.raises(ValueError, match="a tokenizer of another model"):
        wrong_tokenizer.encode_text(["a person cuts an onion"])
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    with pytest.raises(InputError, match=r"no_weights: checkpoint: holds no weights"):
        create_model("siglip2", checkpoint=str(tmp_path / "no_weights"))
