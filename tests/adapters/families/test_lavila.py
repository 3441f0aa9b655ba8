"""``lavila`` equals LaViLa's implementation.

Official code: github.com/facebookresearch/LaViLa at commit 8002b5ab0db31789b9897a0a9c36729099e21ad4.

``tests/data/official/lavila`` holds a tiny dual encoder (TimeSformer width 32 x 2 blocks with 2
heads, patch 8 on 32 px, 4 frames; text width 8 x 2 layers with 2 heads, context 77, the real
49,408-token vocabulary; projections to 256). ``make_golden.py`` built it with the official
``CLIP_OPENAI_TIMESFORMER_BASE`` builder and wrote it the way the official training loop does:
``{'epoch', 'state_dict': {'module.…'}, 'criterion', 'best_acc1': numpy.float64, 'args':
argparse.Namespace}``, where the Namespace holds ``pathlib.PosixPath`` values. The golden outputs
come from the official ``CLIP.encode_image`` / ``encode_text`` / ``SimpleTokenizer`` and
eval_zeroshot.py's cosine. The 16-frame outputs come from the model built for 16 frames, with
the checkpoint passed through ``inflate_positional_embeds``.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.core.checkpoints import read_checkpoint, unwrap_state_dict
from instract_eval.adapters.video_text.lavila import (LAVILA_MEAN, LAVILA_STD, LaViLaDimensions, LaViLaNet,
                                                      lavila_tokenize)
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "lavila"
HEADS = {"vision_heads": 2, "text_heads": 2}  # not readable from shapes (the published files use width // 64)


@pytest.fixture(scope="module")
def golden():
    return load_golden("lavila")


@pytest.fixture(scope="module")
def checkpoint(golden):
    return FOLDER / golden.metadata["checkpoint"]


@pytest.fixture(scope="module")
def model(checkpoint):
    return create_model("lavila", checkpoint=str(checkpoint), **HEADS).eval()


def test_equals_official_lavila(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(scores, golden.tensors["similarity"])  # official score: plain cosine, no logit scale


@pytest.mark.parametrize("argument", ["num_frames", "frames"])
def test_sixteen_frames_inflate_the_temporal_embedding_as_official(golden, checkpoint, argument):
    model = create_model("lavila", checkpoint=str(checkpoint), **{argument: 16}, **HEADS).eval()
    assert model.frame_spec().num_frames == 16
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames_16f"])
        scores = model.similarity(videos, model.encode_text(golden.captions))
    assert_matches(videos, golden.tensors["video_embeddings_16f"], "video (16 frames)")
    assert_scores(scores, golden.tensors["similarity_16f"])


def test_tokens_equal_official_simple_tokenizer(golden):
    """An over-long caption keeps its first 77 ids and loses EOT, so it is pooled at SOT (id 49406)."""
    ids = lavila_tokenize(golden.captions, 77)
    assert torch.equal(ids, golden.tensors["text_token_ids"])
    assert 49407 not in ids[3].tolist() and int(ids[3].argmax()) == 0


def test_frame_spec_is_lavila_preprocessing(model):
    spec = model.frame_spec()
    assert (spec.num_frames, spec.sampling, spec.fps, spec.size, spec.crop, spec.resize) == (
        4, "uniform", None, 32, 32, "short_side")
    assert spec.value_range == 255.0
    assert spec.mean == pytest.approx(LAVILA_MEAN) and spec.std == pytest.approx(LAVILA_STD)
    assert spec.mean[0] == pytest.approx(108.3272985)  # LaViLa's red mean, not CLIP's 122.77


def test_official_payload_is_read_without_running_code(checkpoint):
    """The file carries argparse / pathlib / numpy objects that weights_only refuses; the loader reads them inertly."""
    import pickle

    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    loaded = unwrap_state_dict(read_checkpoint(checkpoint, family="lavila"))
    assert loaded.payload["epoch"] == 5
    assert loaded.payload["args"].model == "CLIP_OPENAI_TIMESFORMER_BASE"
    assert len(loaded.state_dict) == 75 and "visual.temporal_embed" in loaded.state_dict


def _write_official_format(state, path, model_name="CLIP_OPENAI_TIMESFORMER_LARGE"):
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}, "best_acc1": 0.25,
                "args": argparse.Namespace(model=model_name, project_embed_dim=state["text_projection"].shape[1])},
               path)


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """Width 48 x 3 blocks (3 heads), gated time attention, patch 4 on 16 px, 8 frames; text 16 x 1, context 16."""
    dims = LaViLaDimensions(embed_dim=24, vision_width=48, vision_layers=3, vision_heads=3, vision_mlp=96,
                            patch_size=4, image_size=16, checkpoint_frames=8, ln_pre=True, patch_bias=False,
                            gated_time=True, context_length=16, vocab_size=49408, text_width=16, text_layers=1,
                            text_heads=2)
    net = LaViLaNet(dims)
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    _write_official_format(net.state_dict(), tmp_path / "clip_openai_timesformer_large.narrator_rephraser.ep_0003.pth")
    model = create_model("lavila", checkpoint=str(tmp_path / "clip_openai_timesformer_large.narrator_rephraser"
                                                    ".ep_0003.pth"), vision_heads=3, text_heads=2).eval()
    assert model.dims == dims
    assert (model.frame_spec().num_frames, model.frame_spec().size) == (8, 16)
    with torch.inference_mode():
        for frames in (3, 8, 12):  # fewer (first rows), as many, more (bilinear) than the checkpoint's 8
            assert model.encode_video(torch.randn(2, frames, 3, 16, 16)).shape == (2, 24)
        texts = model.encode_text(["a b c " * 20, "#C C opens the tap"])
    assert texts.shape == (2, 24) and torch.isfinite(texts).all()


def test_bad_checkpoints_give_one_line(tmp_path, checkpoint):
    state = unwrap_state_dict(read_checkpoint(checkpoint, family="lavila")).state_dict
    with pytest.raises(InputError, match=r"ViT-T-8-state.pt.*not a lavila checkpoint.*lacks visual.temporal_embed"):
        create_model("lavila", checkpoint=str(OFFICIAL / "clip" / "ViT-T-8-state.pt"))
    missing = {k: v for k, v in state.items() if k != "visual.blocks.1.timeattn.proj.bias"}
    _write_official_format(missing, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth.*missing visual.blocks.1.timeattn.proj.bias"):
        create_model("lavila", checkpoint=str(tmp_path / "missing.pth"), **HEADS)
    shaped = dict(state, **{"ln_final.bias": torch.zeros(3)})
    _write_official_format(shaped, tmp_path / "shaped.pth")
    with pytest.raises(InputError, match=r"shaped.pth.*wrong shape of ln_final.bias \(file \[3\], model \[8\]\)"):
        create_model("lavila", checkpoint=str(tmp_path / "shaped.pth"), **HEADS)
    flat = dict(state, **{"visual.temporal_embed": torch.zeros(4, 32)})
    _write_official_format(flat, tmp_path / "flat.pth")
    with pytest.raises(InputError, match=r"flat.pth.*wrong shape of visual.temporal_embed \(file \[4, 32\]"):
        create_model("lavila", checkpoint=str(tmp_path / "flat.pth"), **HEADS)
    _write_official_format(state, tmp_path / "distilbert.pth", "CLIP_OPENAI_TIMESFORMER_LARGE_336PX_DISTILBERT_BASE")
    with pytest.raises(InputError, match=r"distilbert.pth.*DISTILBERT_BASE; only the CLIP-text dual encoders"):
        create_model("lavila", checkpoint=str(tmp_path / "distilbert.pth"))


def test_bad_arguments_give_one_line(checkpoint, model):
    with pytest.raises(InputError, match="frames=4 and num_frames=16 disagree"):
        create_model("lavila", checkpoint=str(checkpoint), frames=4, num_frames=16, **HEADS)
    with pytest.raises(InputError, match="frames must be a positive integer"):
        create_model("lavila", checkpoint=str(checkpoint), frames=0, **HEADS)
    with pytest.raises(InputError, match="text_heads=3 does not divide the width 8"):
        create_model("lavila", checkpoint=str(checkpoint), vision_heads=2, text_heads=3)
    with pytest.raises(InputError, match="needs weights"):
        create_model("lavila")
    with pytest.raises(InputError, match=r"encode_video takes \[B, T, 3, H, W\]"):
        model.encode_video(torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match="positions for 32x32"):
        model.encode_video(torch.zeros(1, 4, 3, 64, 64))
