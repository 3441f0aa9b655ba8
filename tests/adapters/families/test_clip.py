"""``clip`` equals OpenAI's implementation (github.com/openai/CLIP at d05afc436d78f1c48dc0dbf8e5980a9d471f35f6).

``tests/data/official/clip`` holds a tiny CLIP (embed 32, ViT width 64 x 2 layers, patch 8 on
32 px, text width 64 x 2 layers, context 77, the real 49,408-token vocabulary) written by
``make_golden.py`` from openai/CLIP's own ``CLIP`` class, in both published layouts: a traced
TorchScript archive (``ViT-T-8.pt``, as OpenAI ships) and a plain fp16 state dict with the three
integer scalars. The golden outputs are the official ``clip.load``/``build_model`` networks'
``encode_image`` per frame (normalised, averaged, renormalised) and ``encode_text`` of
``clip.tokenize(truncate=True)``.
"""

from __future__ import annotations

import torch
import pytest

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "clip"


@pytest.fixture(scope="module")
def golden():
    return load_golden("clip")


@pytest.mark.parametrize("file, prefix", [("ViT-T-8.pt", ""), ("ViT-T-8-state.pt", "state_")])
def test_equals_official_clip(golden, file, prefix):
    model = create_model("clip", checkpoint=str(FOLDER / file), frames=4).eval()
    frames = golden.tensors["frames"]
    with torch.inference_mode():
        videos = model.encode_video(frames)
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors[f"{prefix}video_embeddings"], "video")
    assert_matches(texts, golden.tensors[f"{prefix}text_embeddings"], "text")
    assert_scores(scores, golden.tensors[f"{prefix}similarity"], scale=float(torch.tensor(2.5).exp()))


def test_tokens_equal_official_tokenize(golden):
    """The long caption is cut to 76 ids plus the end token, as clip.tokenize(truncate=True) does."""
    assert torch.equal(openai_tokenize(golden.captions, 77), golden.tensors["tokens"])


def test_frame_spec_is_openai_preprocessing():
    model = create_model("clip", checkpoint=str(FOLDER / "ViT-T-8.pt"))
    spec = model.frame_spec()
    assert (spec.size, spec.crop, spec.interpolation, spec.resize, spec.num_frames) == (32, 32, "bicubic",
                                                                                       "short_side", 8)


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """A state dict of another tiny size (width 128: 2 heads, 3 layers, patch 4, context 16) loads."""
    from instract_eval.adapters.core.clip_net import ClipDimensions, ClipNet

    dims = ClipDimensions(embed_dim=24, vision_width=128, vision_layers=3, vision_heads=2, patch_size=4,
                          image_size=16, context_length=16, vocab_size=49408, text_width=128, text_layers=1,
                          text_heads=2)
    net = ClipNet(dims)
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    torch.save({"state_dict": {f"module.{k}": v.half() for k, v in net.state_dict().items()}}, tmp_path / "w.pt")
    model = create_model("clip", checkpoint=str(tmp_path / "w.pt"), frames=2).eval()
    with torch.inference_mode():
        assert model.encode_video(torch.randn(2, 2, 3, 16, 16)).shape == (2, 24)
        assert model.encode_text(["a b c " * 20]).shape == (1, 24)
    assert model.frame_spec().size == 16


def test_bad_checkpoints_give_one_line(tmp_path):
    state = torch.load(FOLDER / "ViT-T-8-state.pt")
    missing = {k: v for k, v in state.items() if k != "visual.proj"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(InputError, match=r"missing.pt.*lacks visual.proj"):
        create_model("clip", checkpoint=str(tmp_path / "missing.pt"))
    shaped = dict(state, **{"ln_final.bias": torch.zeros(3)})
    torch.save(shaped, tmp_path / "shaped.pt")
    with pytest.raises(InputError, match=r"shaped.pt.*wrong shape of ln_final.bias \(file \[3\], model \[64\]\)"):
        create_model("clip", checkpoint=str(tmp_path / "shaped.pt"))
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"other.pt.*not an OpenAI-format CLIP"):
        create_model("clip", checkpoint=str(tmp_path / "other.pt"))
    (tmp_path / "cut.pt").write_bytes((FOLDER / "ViT-T-8-state.pt").read_bytes()[:5000])
    with pytest.raises(InputError, match=r"cut.pt.*truncated"):
        create_model("clip", checkpoint=str(tmp_path / "cut.pt"))


def test_hf_clip_directory_equals_transformers(tmp_path):
    """A save_pretrained CLIPModel directory loads offline and matches transformers' own features."""
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(0)
    reference = transformers.CLIPModel(config).eval()
    reference.save_pretrained(tmp_path / "hf")
    model = create_model("clip", checkpoint=str(tmp_path / "hf"), frames=3).eval()
    frames = torch.randn(2, 3, 3, 32, 32)
    captions = ["a person cuts an onion", "open the jar", "stop!~"]  # '!' is token id 0
    with torch.inference_mode():
        videos = model.encode_video(frames)
        texts = model.encode_text(captions)
        ids = openai_tokenize(captions, 77)
        mask = torch.tensor([[1] * (row.argmax() + 1) + [0] * (77 - row.argmax() - 1) for row in ids])
        expected_text = reference.get_text_features(input_ids=ids, attention_mask=mask)
        per_frame = reference.get_image_features(pixel_values=frames.flatten(0, 1))
    expected_text = getattr(expected_text, "pooler_output", expected_text)
    per_frame = getattr(per_frame, "pooler_output", per_frame)
    per_frame = torch.nn.functional.normalize(per_frame.view(2, 3, -1), dim=-1).mean(1)
    assert_matches(videos, per_frame, "video")
    assert_matches(texts, expected_text, "text")
