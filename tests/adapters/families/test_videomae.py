"""``videomae`` equals VideoMAE as published, in both of its formats:

- Hugging Face directories (``MCG-NJU/videomae-*``): transformers' ``VideoMAEForVideoClassification`` and
  ``VideoMAEForPreTraining`` (transformers 5.23.0) are the reference (``golden.safetensors``);
- official VideoMAE V2 fine-tuned files (``vit_g_hybrid_pt_1200e_k710_ft.pth``, the TAL feature backbone):
  github.com/OpenGVLab/VideoMAEv2 at 29eab1e8a588d1b3ec0cdec7b03a86cca491b74b,
  ``VisionTransformer.forward_features``, run out of tree on a tiny checkpoint in its format
  (``golden_official.safetensors``).

``tests/data/official/videomae/make_golden.py`` regenerates both.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from instract_eval.adapters import card_of, create_model
from instract_eval.adapters.cards import WeightTag
from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD

from .golden import OFFICIAL, assert_matches, load_golden

transformers = pytest.importorskip("transformers")

FOLDER = OFFICIAL / "videomae"
TINY_ARGS = {"frames": 4, "image_size": 32, "num_heads": 4}


@pytest.fixture(scope="module")
def golden():
    return load_golden("videomae")


@pytest.fixture(scope="module")
def official():
    return load_golden("videomae", "golden_official.safetensors")


@pytest.fixture(scope="module")
def official_file(official):
    return FOLDER / official.metadata["checkpoint"]


def test_hugging_face_features_equal_the_classifiers_input(golden):
    model = create_model("videomae", checkpoint=str(FOLDER / golden.metadata["checkpoint"])).eval()
    pretrained = create_model("videomae", checkpoint=str(FOLDER / golden.metadata["pretrained_checkpoint"])).eval()
    with torch.inference_mode():
        features = model.extract_features(golden.tensors["frames"])
        pretrained_features = pretrained.extract_features(golden.tensors["frames"])
    assert_matches(features, golden.tensors["features"], "fine-tuned features (fc_norm of the token mean)")
    assert_matches(pretrained_features, golden.tensors["pretrained_features"], "pre-trained features")
    assert model.fc_norm is not None and pretrained.fc_norm is None


def test_official_file_features_equal_videomaev2_forward_features(official, official_file):
    model = create_model("videomae", checkpoint=str(official_file), **TINY_ARGS).eval()
    with torch.inference_mode():
        features = model.extract_features(official.tensors["frames"])
    assert_matches(features, official.tensors["features"], "VideoMAEv2 forward_features")
    torch.testing.assert_close(features, official.tensors["features"], rtol=0, atol=1e-5)


def test_official_file_wrappers_and_bare_state_dicts_load_the_same(official, official_file, tmp_path):
    state = torch.load(official_file, weights_only=True)["module"]
    torch.save({"model": state, "epoch": 3}, tmp_path / "model.pth")
    torch.save(state, tmp_path / "bare.pth")
    for name in ("model.pth", "bare.pth"):
        model = create_model("videomae", checkpoint=str(tmp_path / name), **TINY_ARGS).eval()
        with torch.inference_mode():
            assert_matches(model.extract_features(official.tensors["frames"]), official.tensors["features"], name)


def test_frame_specs(golden, official_file):
    """Directories: their processor (the published MCG-NJU form: shorter side, centre crop, bilinear, ImageNet).
    Official files: VideoMAEv2's extract_tad_feature.py (squash to 224, bilinear, [0, 1], no mean/std). The HF
    processors need torchvision or Pillow, which the product has not, so the constants are compared."""
    spec = create_model("videomae", checkpoint=str(FOLDER / golden.metadata["checkpoint"])).frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation, spec.fixed_frames) == (
        4, 32, 32, "short_side", "bilinear", True)
    assert (spec.mean, spec.std) == (IMAGENET_MEAN, IMAGENET_STD)
    tad = create_model("videomae", checkpoint=str(official_file), **TINY_ARGS).frame_spec()
    assert (tad.num_frames, tad.size, tad.crop, tad.resize, tad.mean, tad.std) == (
        4, 32, None, "squash", (0.0,) * 3, (1.0,) * 3)
    card = card_of("videomae")
    v2g = card.tag("v2-g-k710-tad")
    assert isinstance(v2g, WeightTag) and v2g.source == "user" and "vit_g_hybrid_pt_1200e_k710_ft.pth" in v2g.where
    published = card.frame_spec_of("v2-g-k710-tad")
    assert (published.num_frames, published.size, published.resize, published.mean) == (16, 224, "squash", (0.0,) * 3)
    assert create_model("videomae", checkpoint=str(official_file), preprocessing="classification",
                        **TINY_ARGS).frame_spec().crop == 32


def test_videomaev2_giant_shapes_build_the_published_sizes():
    """The ViT-g/14 recipe read from shapes alone: 1408 wide -> 16 heads, 6144 MLP, patch 14, 40 blocks (meta device)."""
    from instract_eval.adapters.video_text.videomae import OFFICIAL_HEADS, official_state_dict

    assert OFFICIAL_HEADS[1408] == 16
    state = {"blocks.0.attn.qkv.weight": torch.empty(3 * 1408, 1408, device="meta"),
             "blocks.0.attn.q_bias": torch.empty(1408, device="meta"),
             "blocks.0.attn.v_bias": torch.empty(1408, device="meta")}
    renamed = official_state_dict(state)
    assert set(renamed) == {f"encoder.layer.0.attention.attention.{n}" for n in
                            ("query.weight", "key.weight", "value.weight", "query.bias", "value.bias")}
    config = transformers.VideoMAEConfig(hidden_size=1408, num_hidden_layers=40, num_attention_heads=16,
                                         intermediate_size=6144, patch_size=14)
    with torch.device("meta"):
        net = transformers.VideoMAEModel(config)
    assert 1.00e9 < sum(p.numel() for p in net.parameters()) < 1.02e9


def test_shape_checks(official, official_file):
    model = create_model("videomae", checkpoint=str(official_file), **TINY_ARGS).eval()
    with pytest.raises(ValueError, match="exactly 4 frames"):
        model.extract_features(official.tensors["frames"][:, :2])
    with pytest.raises(ValueError, match="takes 32x32 frames"):
        model.extract_features(torch.zeros(1, 4, 3, 48, 48))


def test_other_size_reads_every_dimension(tmp_path):
    """A Hugging Face VideoMAEModel directory at 48 px, patch 16, 8 frames, width 24 x 2 heads, 1 layer."""
    config = transformers.VideoMAEConfig(image_size=48, patch_size=16, num_frames=8, tubelet_size=2, hidden_size=24,
                                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=40)
    torch.manual_seed(0)
    reference = transformers.VideoMAEModel(config).eval()
    reference.save_pretrained(tmp_path / "videomae")
    model = create_model("videomae", checkpoint=str(tmp_path / "videomae")).eval()
    assert (model.frame_spec().num_frames, model.frame_spec().crop) == (8, 48)
    clips = torch.randn(2, 8, 3, 48, 48)
    with torch.inference_mode():
        assert_matches(model.extract_features(clips), reference(pixel_values=clips).last_hidden_state.mean(1), "mean")


def test_bad_checkpoints_give_one_line(golden, official_file, tmp_path):
    state = torch.load(official_file, weights_only=True)["module"]
    cut = dict(state)
    cut.pop("blocks.1.mlp.fc2.weight")
    torch.save({"module": cut}, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth: checkpoint: does not fit the videomae architecture read from "
                                         r"it: missing encoder.encoder.layer.1.output.dense.weight"):
        create_model("videomae", checkpoint=str(tmp_path / "missing.pth"), **TINY_ARGS)
    with pytest.raises(InputError, match=r"the head count of a 32-wide VideoMAE is not known"):
        create_model("videomae", checkpoint=str(official_file), frames=4, image_size=32)
    # the sinusoidal position table is not in the file: frames= builds it for another count
    eight = create_model("videomae", checkpoint=str(official_file), **{**TINY_ARGS, "frames": 8}).eval()
    assert eight.extract_features(torch.zeros(1, 8, 3, 32, 32)).shape == (1, 32)
    torch.save({"model": {"encoder.patch_embed.proj.weight": torch.zeros(1)}}, tmp_path / "pretrain.pth")
    with pytest.raises(InputError, match=r"pretrain.pth: checkpoint: is a VideoMAE pre-training checkpoint"):
        create_model("videomae", checkpoint=str(tmp_path / "pretrain.pth"))
    torch.save({"weights": {"x": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(InputError, match=r"other.pth: checkpoint: holds no weights under model / module"):
        create_model("videomae", checkpoint=str(tmp_path / "other.pth"))
    with pytest.raises(InputError, match=r"config.json: checkpoint: is a 'xclip' model, not one videomae reads"):
        create_model("videomae", checkpoint=str(OFFICIAL / "x_clip" / "xclip-tiny-patch8"))
    with pytest.raises(InputError, match=r"frames, num_heads are read from a Hugging Face directory"):
        create_model("videomae", checkpoint=str(FOLDER / golden.metadata["checkpoint"]), frames=4, num_heads=4)
    with pytest.raises(InputError, match=r"preprocessing must be one of classification, tad"):
        create_model("videomae", checkpoint=str(official_file), preprocessing="imagenet")
    broken = tmp_path / "broken"
    shutil.copytree(FOLDER / golden.metadata["checkpoint"], broken)
    config = json.loads((broken / "config.json").read_text())
    config["hidden_size"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"broken/model.safetensors: .*wrong shape of"):
        create_model("videomae", checkpoint=str(broken))


def test_pixels_equal_the_published_processor_within_one_grey_level(golden):
    """``processor_check.safetensors``: VideoMAEImageProcessorPil (transformers 5.23, Pillow; run in the reference
    virtualenv, the product has no Pillow) on a 4 x 48 x 64 uint8 clip with the tiny directory's processor file.
    The harness's pipeline (uint8 antialiased bilinear resize, centre crop, ImageNet mean/std) gives the same
    pixels within one grey level: PIL and torch round the resampled values differently."""
    from safetensors.torch import load_file

    from instract_eval.media.transforms import apply_frame_spec

    check = load_file(str(FOLDER / "processor_check.safetensors"))
    model = create_model("videomae", checkpoint=str(FOLDER / golden.metadata["checkpoint"]))
    ours = apply_frame_spec(check["clip"], model.frame_spec())
    assert ours.shape == check["pixel_values"].shape == (4, 3, 32, 32)
    grey = (ours - check["pixel_values"]).abs() * torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    assert float(grey.max()) <= 1.0 + 1e-3 and float(grey.mean()) < 0.5
