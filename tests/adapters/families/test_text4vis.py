"""``text4vis`` equals the official Text4Vis (github.com/whwu95/Text4Vis at
d61b34d0208a03ce6146edcc51033b2a040cb249).

``tests/data/official/text4vis`` holds a tiny checkpoint written by the official
``train.epoch_saving`` (``{'epoch', 'model_state_dict': visual.* + fusion_model.* + logit_scale,
'optimizer_state_dict'}``, no text tower) and the official outputs: ``VideoCLIP.encode_image`` on
fixed frames, ``CLIP.encode_text`` of ``text_prompt`` tokens with the captions as class names, and
``test.py``'s class logits (``100 * cosine``). The pre-trained CLIP whose text tower builds the
classifier (the ``clip_checkpoint``) is the CLIP family's TorchScript archive ``clip/ViT-T-8.pt``.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "text4vis"
CHECKPOINT = FOLDER / "k400-vitb-16-f8.pt"
BASE = OFFICIAL / "clip" / "ViT-T-8.pt"


@pytest.fixture(scope="module")
def golden():
    return load_golden("text4vis")


@pytest.fixture(scope="module")
def saved():
    """The tiny checkpoint without its optimizer state (smaller files for the variants below)."""
    loaded = torch.load(CHECKPOINT, weights_only=True)
    return {"epoch": loaded["epoch"], "model_state_dict": loaded["model_state_dict"]}


@pytest.fixture(scope="module")
def model():
    return create_model("text4vis", checkpoint=str(CHECKPOINT), clip_checkpoint=str(BASE)).eval()


def test_golden_was_made_from_this_base_file(golden):
    """The golden used clip/ViT-T-8.pt as base; if that file changes, rerun make_golden.py."""
    assert hashlib.sha256(BASE.read_bytes()).hexdigest() == golden.metadata["clip_checkpoint_sha256"]


def test_equals_official_text4vis(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(scores, golden.tensors["similarity"], scale=100.0)


def test_template_and_tokens_equal_official(golden, model):
    prompts = [model.template.format(c) for c in golden.captions]
    assert prompts[0] == f"a video of a person {golden.captions[0]}."
    assert torch.equal(openai_tokenize(prompts, 77), golden.tensors["token_ids"])


def test_frame_spec_is_official_single_view(model):
    from instract_eval.adapters.image_text.text4vis import text4vis_frame_spec

    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.interpolation) == (8, 32, 32, "bicubic")
    assert (text4vis_frame_spec(224).size, text4vis_frame_spec(336).size) == (256, 336)


def _clip_state(width: int, layers: int, patch: int, image: int, embed: int, seed: int) -> dict[str, torch.Tensor]:
    from instract_eval.adapters.core.clip_net import ClipDimensions, ClipNet

    dims = ClipDimensions(embed_dim=embed, vision_width=width, vision_layers=layers, vision_heads=width // 64,
                          patch_size=patch, image_size=image, context_length=77, vocab_size=49408, text_width=width,
                          text_layers=layers, text_heads=width // 64)
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * 0.1 for k, v in ClipNet(dims).state_dict().items()}


def _fusion_state(width: int, layers: int, seed: int) -> dict[str, torch.Tensor]:
    from instract_eval.adapters.image_text.text4vis import TemporalFusion

    generator = torch.Generator().manual_seed(seed)
    head = TemporalFusion(width, layers, 1, 77)
    return {k: torch.randn(v.shape, generator=generator) * 0.1 for k, v in head.state_dict().items()}


def test_nce_layout_of_another_size_loads_with_its_own_text_tower(tmp_path):
    """train_nce.py's layout: whole CLIP (width 128: 2 heads, patch 4 on 16 px, embed 24) + fusion_model_state_dict."""
    state = _clip_state(width=128, layers=1, patch=4, image=16, embed=24, seed=1)
    torch.save({"epoch": 4, "model_state_dict": {f"module.{k}": v for k, v in state.items()},
                "fusion_model_state_dict": _fusion_state(24, 3, seed=2),
                "optimizer_state_dict": {"state": {}, "param_groups": []}}, tmp_path / "last_model.pt")
    model = create_model("text4vis", checkpoint=str(tmp_path / "last_model.pt"), frames=5).eval()
    with torch.inference_mode():
        videos = model.encode_video(torch.randn(3, 5, 3, 16, 16))
        texts = model.encode_text(["abseiling", "a b c " * 30])
    assert videos.shape == (3, 24) and texts.shape == (2, 24) and model.similarity(videos, texts).shape == (3, 2)
    assert len(model.fusion_model.transformer.resblocks) == 3
    assert model.fusion_model.transformer.resblocks[0].attn.num_heads == 2  # CLIP text width 128 // 64
    assert model.clip_checkpoint is None and model.frame_spec().crop == 16


def test_checkpoint_without_head_averages_frames(tmp_path, model, saved):
    """sim_header: None (the few-shot configs) saves no fusion_model.*: the video is the frame mean."""
    state = {k: v for k, v in saved["model_state_dict"].items() if not k.startswith("fusion_model.")}
    torch.save(dict(saved, model_state_dict=state), tmp_path / "none.pt")
    plain = create_model("text4vis", checkpoint=str(tmp_path / "none.pt"), clip_checkpoint=str(BASE), frames=3).eval()
    clips = torch.randn(2, 3, 3, 32, 32)
    with torch.inference_mode():
        expected = model.net.encode_image(clips.flatten(0, 1)).view(2, 3, -1).mean(dim=1)
        assert float((plain.encode_video(clips) - expected).abs().max()) < 1e-6
    assert plain.fusion_model is None


def test_bad_inputs_give_one_line(tmp_path, saved):
    vifi = OFFICIAL / "vifi_clip" / "vifi_clip_10_epochs_k400_full_finetuned.pth"
    with pytest.raises(InputError, match=r"vifi_clip_10_epochs.*not a Text4Vis checkpoint.*lacks visual.conv1.weight"):
        create_model("text4vis", checkpoint=str(vifi), clip_checkpoint=str(BASE))
    with pytest.raises(InputError, match=r"no text tower.*clip_checkpoint=PATH"):
        create_model("text4vis", checkpoint=str(CHECKPOINT))

    state = saved["model_state_dict"]
    torch.save(dict(saved, model_state_dict={k: v for k, v in state.items() if k != "visual.ln_post.bias"}),
               tmp_path / "missing.pt")
    with pytest.raises(InputError, match=r"missing.pt.*missing visual.ln_post.bias"):
        create_model("text4vis", checkpoint=str(tmp_path / "missing.pt"), clip_checkpoint=str(BASE))
    key = "fusion_model.transformer.resblocks.2.ln_1.bias"
    torch.save(dict(saved, model_state_dict=dict(state, **{key: torch.zeros(5)})), tmp_path / "shaped.pt")
    with pytest.raises(InputError, match=rf"shaped.pt.*wrong shape of {key} \(file \[5\], model \[32\]\)"):
        create_model("text4vis", checkpoint=str(tmp_path / "shaped.pt"), clip_checkpoint=str(BASE))
    with pytest.raises(InputError, match=r"frames=78.*77 frame positions"):
        create_model("text4vis", checkpoint=str(CHECKPOINT), clip_checkpoint=str(BASE), frames=78)

    base = _clip_state(width=64, layers=1, patch=8, image=32, embed=48, seed=3)
    torch.save(base, tmp_path / "ViT-other.pt")
    with pytest.raises(InputError, match=r"ViT-other.pt.*text_projection is \[64, 48\].*projects to 32"):
        create_model("text4vis", checkpoint=str(CHECKPOINT), clip_checkpoint=str(tmp_path / "ViT-other.pt"))
    del base["ln_final.bias"]
    base["text_projection"] = torch.zeros(64, 32)
    torch.save(base, tmp_path / "ViT-cut.pt")
    with pytest.raises(InputError, match=r"ViT-cut.pt.*missing ln_final.bias"):
        create_model("text4vis", checkpoint=str(CHECKPOINT), clip_checkpoint=str(tmp_path / "ViT-cut.pt"))
