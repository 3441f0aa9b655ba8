"""``vifi-clip`` equals the official ViFi-CLIP (github.com/muzairkhattak/ViFi-CLIP at
e2d1948307f582052078eb8a4afbeb50247166f1).

``tests/data/official/vifi_clip`` holds a tiny checkpoint written by the official
``utils.tools.epoch_saving`` (``{'model': {'module.…'}, 'config': yacs CfgNode, 'optimizer',
'lr_scheduler', 'max_accuracy', 'epoch'}``, no token embedding) and the official
``ViFiCLIP`` outputs on fixed frames and captions; the base CLIP it was built from (its token
table is the ``clip_checkpoint``) is the CLIP family's TorchScript archive ``clip/ViT-T-8.pt``.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "vifi_clip"
CHECKPOINT = FOLDER / "vifi_clip_10_epochs_k400_full_finetuned.pth"
BASE = OFFICIAL / "clip" / "ViT-T-8.pt"


@pytest.fixture(scope="module")
def golden():
    return load_golden("vifi_clip")


@pytest.fixture(scope="module")
def model():
    return create_model("vifi-clip", checkpoint=str(CHECKPOINT), clip_checkpoint=str(BASE), frames=4).eval()


def test_golden_was_made_from_this_base_file(golden):
    """The golden used clip/ViT-T-8.pt as base; if that file changes, rerun make_golden.py."""
    assert hashlib.sha256(BASE.read_bytes()).hexdigest() == golden.metadata["clip_checkpoint_sha256"]


def test_equals_official_vifi_clip(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    scale = float(torch.tensor(float(golden.metadata["logit_scale"])).exp())
    assert_scores(scores, golden.tensors["similarity"], scale=scale)


def test_prompt_and_tokens_equal_official(golden, model):
    """Prefix from the checkpoint's yacs config; the long caption is cut as clip.tokenize(truncate=True) cuts."""
    assert model.prompt_prefix == "a photo of a"
    assert model.prompts(["x"]) == ["a photo of a x."]
    assert torch.equal(openai_tokenize(model.prompts(golden.captions), 77), golden.tensors["token_ids"])


def test_frame_spec_is_official_val_pipeline(model):
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.mean, spec.std) == (4, 36, 32, (0.485, 0.456, 0.406),
                                                                           (0.229, 0.224, 0.225))
    default = create_model("vifi-clip", checkpoint=str(CHECKPOINT), clip_checkpoint=str(BASE)).frame_spec()
    assert default.num_frames == 32


def _tiny_vifi(width: int, layers: int, patch: int, image: int, embed: int, context: int) -> dict[str, torch.Tensor]:
    """A ViFiCLIP state dict in the official names (prefix ``module.``), random values."""
    from instract_eval.adapters.core.clip_net import ClipDimensions, ClipNet

    dims = ClipDimensions(embed_dim=embed, vision_width=width, vision_layers=layers, vision_heads=width // 64,
                          patch_size=patch, image_size=image, context_length=context, vocab_size=49408,
                          text_width=width, text_layers=layers, text_heads=width // 64)
    net = ClipNet(dims)
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, value in net.state_dict().items():
        if key == "token_embedding.weight":
            continue
        value = torch.randn(value.shape, generator=generator) * 0.1
        if key.startswith("visual."):
            state["module.image_encoder." + key[len("visual."):]] = value
        elif key == "logit_scale":
            state["module.logit_scale"] = torch.tensor(4.0)
        else:
            state["module.text_encoder." + key] = value
    state["module.prompt_learner.complete_text_embeddings"] = torch.randn(3, context, width, generator=generator)
    return state


def test_other_size_loads_with_every_dimension_from_the_file(tmp_path):
    """Width 128 (2 heads), 3 layers, patch 4 on 16 px, embedding 24, context 16."""
    state = _tiny_vifi(width=128, layers=3, patch=4, image=16, embed=24, context=16)
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 3,
                "max_accuracy": 1.5, "config": {"TRAINER": {"ViFi_CLIP": {"CTX_INIT": "a_video_of"}}}},
               tmp_path / "ckpt_epoch_3.pth")
    torch.save({"token_embedding.weight": torch.randn(49408, 128).half()}, tmp_path / "base.pt")
    model = create_model("vifi-clip", checkpoint=str(tmp_path / "ckpt_epoch_3.pth"),
                         clip_checkpoint=str(tmp_path / "base.pt"), frames=2).eval()
    with torch.inference_mode():
        videos = model.encode_video(torch.randn(3, 2, 3, 16, 16))
        texts = model.encode_text(["a b c " * 20, "short"])
        scores = model.similarity(videos, texts)
    assert videos.shape == (3, 24) and texts.shape == (2, 24) and scores.shape == (3, 2)
    assert model.prompt_prefix == "a video of"
    assert (model.net.dims.vision_heads, model.net.dims.text_layers, model.frame_spec().crop) == (2, 3, 16)


def test_bad_inputs_give_one_line(tmp_path):
    with pytest.raises(InputError, match=r"ViT-T-8.pt.*not a ViFi-CLIP checkpoint.*lacks image_encoder.conv1.weight"):
        create_model("vifi-clip", checkpoint=str(BASE), clip_checkpoint=str(BASE))
    with pytest.raises(InputError, match=r"k400-vitb-16-f8.pt.*no weights under model"):
        create_model("vifi-clip", checkpoint=str(OFFICIAL / "text4vis" / "k400-vitb-16-f8.pt"),
                     clip_checkpoint=str(BASE))
    with pytest.raises(InputError, match=r"clip_checkpoint=PATH"):
        create_model("vifi-clip", checkpoint=str(CHECKPOINT))

    state = _tiny_vifi(width=64, layers=2, patch=8, image=32, embed=32, context=77)
    missing = {k: v for k, v in state.items() if k != "module.text_encoder.transformer.resblocks.1.ln_2.bias"}
    torch.save({"model": missing}, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth.*missing text_encoder.transformer.resblocks.1.ln_2.bias"):
        create_model("vifi-clip", checkpoint=str(tmp_path / "missing.pth"), clip_checkpoint=str(BASE))
    shaped = dict(state, **{"module.image_encoder.ln_post.bias": torch.zeros(3)})
    torch.save({"model": shaped}, tmp_path / "shaped.pth")
    with pytest.raises(InputError, match=r"shaped.pth.*wrong shape of image_encoder.ln_post.bias \(file \[3\], model"):
        create_model("vifi-clip", checkpoint=str(tmp_path / "shaped.pth"), clip_checkpoint=str(BASE))
    prompted = dict(state, **{"module.prompt_learner.ctx": torch.zeros(16, 64),
                              "module.image_encoder.VPT": torch.zeros(16, 64)})
    torch.save({"model": prompted}, tmp_path / "prompted.pth")
    with pytest.raises(InputError, match=r"prompted.pth.*bridge and prompt.*prompt_learner.ctx"):
        create_model("vifi-clip", checkpoint=str(tmp_path / "prompted.pth"))
    torch.save({"token_embedding.weight": torch.zeros(49408, 32)}, tmp_path / "narrow.pt")
    with pytest.raises(InputError, match=r"narrow.pt.*\[49408, 32\].*64 wide"):
        create_model("vifi-clip", checkpoint=str(CHECKPOINT), clip_checkpoint=str(tmp_path / "narrow.pt"))
