"""``procvlr`` equals the official ProcedureVRL (github.com/facebookresearch/ProcedureVRL at commit
fcbf833bf469d42f0d657be5ff7ec092d68e65aa: ``lib/models/vit.py`` and ``tools/emb_extract.py``).

``tests/data/official/procvlr/checkpoint_epoch_00025.pyth`` is a tiny stage-2 model built by the
official ``VisionTransformer`` (TimeSformer width 32 x 2 blocks, 2 heads, patch 8 on 32 px, 8
frames; head to 16; the diffusion ``order_tfm``; the frozen CLIP text model, width 8 x 2 layers, 2
heads, the real 49,408-token vocabulary, projecting to 16), saved as PySlowFast saves it
(``{'epoch': 24, 'model_state': {'model.…'}, 'optimizer_state', 'cfg': YAML string}``). The golden
outputs come from the official zero-shot model filled by the official ``load_pretrained``: the
normalised ``head`` projection, the logits entering its softmax and the probabilities; the text
embeddings from the official ``get_step_emb`` (28-prompt ensemble) with the same CLIP.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from instract_eval.adapters import create_model
from instract_eval.adapters.core.checkpoints import read_checkpoint, unwrap_state_dict
from instract_eval.adapters.core.clip_net import TextTower
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.adapters.video_text.procvlr import MEAN, PROMPTS, STD, ProcVLRDimensions, ProcVLRVision
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "procvlr"
PYTH = FOLDER / "checkpoint_epoch_00025.pyth"
HEADS = {"vision_heads": 2, "text_heads": 2}  # the tiny widths do not follow width // 64


@pytest.fixture(scope="module")
def golden():
    return load_golden("procvlr")


@pytest.fixture(scope="module")
def model():
    return create_model("procvlr", checkpoint=str(PYTH), **HEADS).eval()


@pytest.mark.parametrize("suffix", ["", "_4f", "_48px"])
def test_equals_official_procedurevrl(golden, model, suffix):
    """8 frames at 32 px; 4 frames (time_embed resized, nearest); 48 px (pos_embed resized, nearest)."""
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames" + suffix])
        texts = model.encode_text(golden.captions)
        logits = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings" + suffix], "video")
    assert torch.allclose(videos.norm(dim=-1), torch.ones(len(videos)))  # official: normalised head output
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(logits * model.temperature, golden.tensors["similarity" + suffix])
    assert_scores(logits, golden.tensors["logits" + suffix], scale=1 / model.temperature)
    assert_scores(logits.softmax(dim=-1), golden.tensors["probabilities" + suffix])


def test_text_is_the_unnormalised_mean_of_the_official_prompts(golden, model):
    assert model.temperature == pytest.approx(0.02) and float(golden.metadata["temperature"]) == 0.02
    import json

    assert list(PROMPTS) == json.loads(golden.metadata["prompts"]) and len(PROMPTS) == 28
    filled = [p.format(c) for c in golden.captions for p in PROMPTS]
    ids = openai_tokenize(filled, 77)
    assert torch.equal(ids, golden.tensors["text_token_ids"])  # clip.tokenize(truncate=True): the long one ends in EOT
    assert ids[-1, -1] == 49407
    with torch.inference_mode():
        texts = model.encode_text(golden.captions)
    torch.testing.assert_close(texts, golden.tensors["text_embeddings"], atol=1e-5, rtol=1e-5)
    bare = create_model("procvlr", checkpoint=str(PYTH), prompts=False, **HEADS)
    with torch.inference_mode():
        assert bare.encode_text(["cut the tomato"]).shape == (1, 16)
        assert not torch.allclose(bare.encode_text(["cut the tomato"]), texts[1:2])


def test_frame_spec_is_the_official_test_transform(model):
    spec = model.frame_spec()
    assert (spec.num_frames, spec.sampling, spec.crop, spec.size, spec.resize, spec.value_range) == (
        8, "uniform", 32, 37, "short_side", 1.0)
    assert spec.mean == MEAN == (0.45, 0.45, 0.45) and spec.std == STD == (0.225, 0.225, 0.225)
    assert create_model("procvlr", checkpoint=str(PYTH), frames=4, **HEADS).frame_spec().num_frames == 4


def test_official_file_layout_is_read_without_running_code():
    """weights_only torch.load refuses nothing here; the cfg is PySlowFast's YAML dump string."""
    loaded = unwrap_state_dict(read_checkpoint(PYTH, family="procvlr"), keys=("model_state",), strip=("model.",))
    assert loaded.payload["epoch"] == 24 and isinstance(loaded.payload["cfg"], str)
    assert "TEMP: 0.02" in loaded.payload["cfg"] and "TEXT_MODEL: clip_vit_b_16" in loaded.payload["cfg"]
    assert {"optimizer_state", "model_state"} <= set(loaded.payload["object"])
    prefixes = {key.split(".")[0] for key in loaded.state_dict}
    assert {"order_tfm", "text_model", "head", "blocks", "time_embed"} <= prefixes


def _tiny_state(dims: ProcVLRDimensions, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    vision, text = ProcVLRVision(dims), TextTower(dims)
    for module in (vision, text):
        for parameter in module.parameters():
            torch.nn.init.normal_(parameter, std=0.2)
    state = {f"model.{k}": v for k, v in vision.state_dict().items()}
    state.update({f"model.text_model.{k}": v for k, v in text.state_dict().items()})
    state["model.order_tfm.pad_embedding.weight"] = torch.zeros(1, dims.embed_dim)
    return state


def _write(state, path, cfg="DEV:\n  TEMP: 0.05\n"):
    torch.save({"epoch": 4, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []}, "cfg": cfg},
               path)
    return path


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """Width 48 x 3 blocks (3 heads), patch 4 on 16 px, 6 frames, head to 24; text 16 x 1 (2 heads), context 20."""
    dims = ProcVLRDimensions(width=48, layers=3, heads=3, mlp=96, patch_size=4, image_size=16, checkpoint_frames=6,
                             embed_dim=24, context_length=20, vocab_size=49408, text_width=16, text_layers=1,
                             text_heads=2)
    path = _write(_tiny_state(dims), tmp_path / "checkpoint_epoch_00005.pyth")
    model = create_model("procvlr", checkpoint=str(path), vision_heads=3, text_heads=2).eval()
    assert model.dims == dims and model.temperature == pytest.approx(0.05)
    assert (model.frame_spec().num_frames, model.frame_spec().crop) == (6, 16)
    with torch.inference_mode():
        for frames in (3, 6, 9):
            videos = model.encode_video(torch.randn(2, frames, 3, 16, 16))
            assert videos.shape == (2, 24) and torch.allclose(videos.norm(dim=-1), torch.ones(2))
        texts = model.encode_text(["a b c " * 20, "fold the paper"])
        scores = model.similarity(videos, texts)
    assert texts.shape == (2, 24) and torch.isfinite(texts).all()
    torch.testing.assert_close(scores, F.normalize(videos, dim=-1) @ F.normalize(texts, dim=-1).T / 0.05)


def test_text_from_a_separate_clip_checkpoint(tmp_path, golden):
    """A file without model.text_model takes the OpenAI CLIP file as clip_checkpoint=; the tiny one here equals it."""
    state = unwrap_state_dict(read_checkpoint(PYTH, family="procvlr"), keys=("model_state",)).state_dict
    clip_state = {k[len("model.text_model."):]: v for k, v in state.items() if k.startswith("model.text_model.")}
    clip_state["visual.proj"] = torch.zeros(4, 16)  # the vision half of a CLIP file is not used
    torch.save(clip_state, tmp_path / "ViT-B-16.pt")
    vision_only = {k: v for k, v in state.items() if not k.startswith("model.text_model.")}
    path = _write(vision_only, tmp_path / "no_text.pyth")
    with pytest.raises(InputError, match=r"no_text.pyth.*no CLIP text model.*clip_checkpoint=PATH"):
        create_model("procvlr", checkpoint=str(path), **HEADS)
    model = create_model("procvlr", checkpoint=str(path), clip_checkpoint=str(tmp_path / "ViT-B-16.pt"), **HEADS)
    with torch.inference_mode():
        assert_matches(model.encode_text(golden.captions), golden.tensors["text_embeddings"], "text")
    # Another CLIP file gives other text embeddings: it must not read what this one cached.
    other = dict(clip_state, text_projection=clip_state["text_projection"] + 1.0)
    (tmp_path / "other").mkdir()
    torch.save(other, tmp_path / "other" / "ViT-B-16.pt")
    changed = create_model("procvlr", checkpoint=str(path), clip_checkpoint=str(tmp_path / "other" / "ViT-B-16.pt"),
                           **HEADS)
    assert changed.weights_fingerprint() != model.weights_fingerprint()
    wide = dict(clip_state, text_projection=torch.zeros(8, 32))
    torch.save(wide, tmp_path / "ViT-L-14.pt")
    with pytest.raises(InputError, match=r"ViT-L-14.pt.*head to 16 dimensions.*projects to 32"):
        create_model("procvlr", checkpoint=str(path), clip_checkpoint=str(tmp_path / "ViT-L-14.pt"), **HEADS)


def test_bad_checkpoints_give_one_line(tmp_path):
    state = unwrap_state_dict(read_checkpoint(PYTH, family="procvlr"), keys=("model_state",)).state_dict
    with pytest.raises(InputError, match=r"ViT-T-8-state.pt.*not a procvlr checkpoint.*lacks time_embed"):
        create_model("procvlr", checkpoint=str(OFFICIAL / "clip" / "ViT-T-8-state.pt"))
    missing = {k: v for k, v in state.items() if k != "model.blocks.1.temporal_fc.bias"}
    with pytest.raises(InputError, match=r"missing.pyth.*missing blocks.1.temporal_fc.bias"):
        create_model("procvlr", checkpoint=str(_write(missing, tmp_path / "missing.pyth")), **HEADS)
    shaped = dict(state, **{"model.norm.bias": torch.zeros(3)})
    with pytest.raises(InputError, match=r"shaped.pyth.*wrong shape of norm.bias \(file \[3\], model \[32\]\)"):
        create_model("procvlr", checkpoint=str(_write(shaped, tmp_path / "shaped.pyth")), **HEADS)
    flat = dict(state, **{"model.time_embed": torch.zeros(8, 32)})
    with pytest.raises(InputError, match=r"flat.pyth.*time_embed"):
        create_model("procvlr", checkpoint=str(_write(flat, tmp_path / "flat.pyth")), **HEADS)
    with pytest.raises(InputError, match=r"temp.pyth.*DEV.TEMP=0"):
        create_model("procvlr", checkpoint=str(_write(state, tmp_path / "temp.pyth", "DEV:\n  TEMP: 0\n")), **HEADS)
    with pytest.raises(InputError, match=r"yaml.pyth.*not YAML"):
        create_model("procvlr", checkpoint=str(_write(state, tmp_path / "yaml.pyth", "DEV: [\n")), **HEADS)


def test_bad_arguments_give_one_line(model):
    with pytest.raises(InputError, match="frames=4 and num_frames=8 disagree"):
        create_model("procvlr", checkpoint=str(PYTH), frames=4, num_frames=8, **HEADS)
    with pytest.raises(InputError, match="text_heads=3 does not divide the width 8"):
        create_model("procvlr", checkpoint=str(PYTH), vision_heads=2, text_heads=3)
    with pytest.raises(InputError, match="needs weights"):
        create_model("procvlr")
    with pytest.raises(InputError, match=r"encode_video takes \[B, T, 3, H, W\]"):
        model.encode_video(torch.zeros(2, 3, 32, 32))
