"""``vjepa2`` equals V-JEPA 2 as published: transformers' ``VJEPA2Model`` and ``VJEPA2ForVideoClassification``
(transformers 5.23.0), the classes the ``facebook/vjepa2-*`` directories load with.

``tests/data/official/vjepa2`` holds two tiny directories written with ``save_pretrained`` (crop 32, patch 8,
tubelet 2, 8 frames, width 32, 4 heads, 2 layers; a 1-layer predictor; the probe adds a 1-layer attentive
pooler and 6 labels) and the classes' own outputs on fixed frames. ``make_golden.py`` regenerates it.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from instract_eval.adapters import card_of, create_model
from instract_eval.adapters.protocols import (DUAL_ENCODER, FEATURE_EXTRACTOR, FIXED_LABEL_CLASSIFIER, PAIR_SCORER,
                                              capabilities_of)
from instract_eval.cli import main
from instract_eval.errors import InputError
from instract_eval.media import IMAGENET_MEAN, IMAGENET_STD

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

transformers = pytest.importorskip("transformers")

FOLDER = OFFICIAL / "vjepa2"


@pytest.fixture(scope="module")
def golden():
    return load_golden("vjepa2")


@pytest.fixture(scope="module")
def backbone(golden):
    return create_model("vjepa2", checkpoint=str(FOLDER / golden.metadata["checkpoint"])).eval()


@pytest.fixture(scope="module")
def probe(golden):
    return create_model("vjepa2", checkpoint=str(FOLDER / golden.metadata["probe"])).eval()


def test_features_equal_the_official_encoder(golden, backbone, probe):
    frames = golden.tensors["frames"]
    with torch.inference_mode():
        tokens = backbone.tokens(frames)
        features = backbone.extract_features(frames)
        probe_features = probe.extract_features(frames)
    torch.testing.assert_close(tokens, golden.tensors["tokens"], rtol=0, atol=1e-5)
    assert_matches(features, golden.tensors["features"], "features")
    assert_matches(probe_features, golden.tensors["probe_features"], "probe backbone features")
    assert set(capabilities_of(backbone)) == {FEATURE_EXTRACTOR}


def test_probe_logits_and_labels_equal_the_official_classifier(golden, probe):
    with torch.inference_mode():
        logits = probe.classify(golden.tensors["frames"])
    assert_scores(logits, golden.tensors["logits"])
    assert list(probe.labels) == json.loads(golden.metadata["labels"])
    assert set(capabilities_of(probe)) == {FEATURE_EXTRACTOR, FIXED_LABEL_CLASSIFIER}
    assert not {DUAL_ENCODER, PAIR_SCORER} & set(capabilities_of(probe))


def test_other_frame_counts(golden):
    model = create_model("vjepa2", checkpoint=str(FOLDER / golden.metadata["checkpoint"]), frames=16).eval()
    assert model.frame_spec().num_frames == 16 and not model.frame_spec().fixed_frames
    frames = golden.tensors["frames"]
    with torch.inference_mode():
        features = model.extract_features(torch.cat([frames, frames.flip(1)], dim=1))
    assert_matches(features, golden.tensors["features_16_frames"], "16 frames")
    with pytest.raises(ValueError, match="takes 32x32 frames"):
        model.extract_features(torch.zeros(1, 8, 3, 40, 40))


def test_frame_spec_is_the_processors(backbone):
    """VJEPA2VideoProcessor needs torchvision, which the product has not, so its constants (transformers 5.23:
    shorter side int(crop * 256 / 224), bilinear, centre crop, ImageNet mean/std) are compared instead."""
    spec = backbone.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation) == (
        8, int(32 * 256 / 224), 32, "short_side", "bilinear")
    assert (spec.mean, spec.std, spec.value_range) == (IMAGENET_MEAN, IMAGENET_STD, 1.0)
    card = card_of("vjepa2")
    assert (card.frame_spec_of("vitl-fpc64-256").size, card.frame_spec_of("vitl-fpc64-256").crop) == (292, 256)
    assert (card.frame_spec_of("vitg-fpc64-384").size, card.frame_spec_of("vitg-fpc64-384").crop) == (438, 384)
    assert card.frame_spec_of("vitl-fpc16-256-ssv2").num_frames == 16


def test_other_size_reads_every_dimension_from_its_config(tmp_path):
    """crop 48, patch 16, tubelet 2, 4 frames, width 48 x 4 heads, 1 layer, 3 labels."""
    config = transformers.VJEPA2Config(crop_size=48, frames_per_clip=4, patch_size=16, tubelet_size=2, hidden_size=48,
                                       num_hidden_layers=1, num_attention_heads=4, mlp_ratio=2.0,
                                       pred_hidden_size=24, pred_num_hidden_layers=1, pred_num_attention_heads=2,
                                       num_pooler_layers=1, id2label={0: "a", 1: "b", 2: "c"})
    torch.manual_seed(0)
    reference = transformers.VJEPA2ForVideoClassification(config).eval()
    reference.save_pretrained(tmp_path / "probe")
    model = create_model("vjepa2", checkpoint=str(tmp_path / "probe")).eval()
    assert model.labels == ["a", "b", "c"] and model.frame_spec().num_frames == 4
    clips = torch.randn(2, 4, 3, 48, 48)
    with torch.inference_mode():
        assert_scores(model.classify(clips), reference(pixel_values_videos=clips).logits)
        features = reference.vjepa2(pixel_values_videos=clips, skip_predictor=True).last_hidden_state.mean(1)
        assert_matches(model.extract_features(clips), features, "features")


def test_bad_checkpoints_give_one_line(golden, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(InputError, match=r"config.json: checkpoint: is a 'xclip' model, not one vjepa2 reads"):
        create_model("vjepa2", checkpoint=str(OFFICIAL / "x_clip" / "xclip-tiny-patch8"))
    probe = FOLDER / golden.metadata["probe"]
    missing = tmp_path / "missing"
    shutil.copytree(probe, missing)
    state = load_file(str(probe / "model.safetensors"))
    state.pop("classifier.weight")
    save_file(state, str(missing / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"missing/model.safetensors: .*missing classifier.weight"):
        create_model("vjepa2", checkpoint=str(missing))
    relabelled = tmp_path / "relabelled"
    shutil.copytree(probe, relabelled)
    config = json.loads((relabelled / "config.json").read_text())
    config["id2label"] = {str(i): "same" for i in range(6)}
    config["label2id"] = {"same": 0}
    (relabelled / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"relabelled/config.json: checkpoint: config.json's id2label repeats a label"):
        create_model("vjepa2", checkpoint=str(relabelled))


@pytest.mark.slow
def test_a_probe_over_the_synthetic_labels_runs_synth_srt(world, tmp_path, capsys):
    """The classifier path end to end: a tiny probe whose id2label holds every label and synonym of the synthetic
    SRT classes runs ``synth-srt`` (classification scores a class by its label's logit)."""
    classes = yaml.safe_load((world / "srt" / "classes.yaml").read_text())["datasets"]["synth"]
    names = sorted({name for key in ("seen_actions", "unseen_actions") for action in classes[key]
                    for name in [action["root"], *action["runs"]]})
    config = transformers.VJEPA2Config(crop_size=32, frames_per_clip=16, patch_size=8, tubelet_size=2, hidden_size=32,
                                       num_hidden_layers=1, num_attention_heads=4, mlp_ratio=2.0,
                                       pred_hidden_size=16, pred_num_hidden_layers=1, pred_num_attention_heads=2,
                                       num_pooler_layers=1, id2label=dict(enumerate(names)))
    torch.manual_seed(0)
    transformers.VJEPA2ForVideoClassification(config).save_pretrained(tmp_path / "probe")
    argv = ["run", "--model", "vjepa2", "--model-args", f"checkpoint={json.dumps(str(tmp_path / 'probe'))}",
            "--include", str(world / "tasks.yaml"), "--task", "synth-srt", "--output", str(tmp_path / "out"),
            "--no-site", "--cache-dir", str(tmp_path / "cache"), "--limit", "6"]
    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(next((tmp_path / "out").rglob("synth-srt.json")).read_text())
    assert 0.0 <= record["metrics"]["seen.accuracy"]["value"] <= 1.0
