"""One conformance test over every registered model (timm's ``test_models`` idea).

A model takes part by being registered: its tiny checkpoint is named by a ``conformance.json``
in its family's ``tests/data/official/<family>/`` folder (``[{"model", "checkpoint", "args"}]``);
paths (``checkpoint``, and arguments naming a file there such as a base CLIP or a vocabulary) are
relative to that folder; the reference models (random, null, synth-*) need none. For each one:

- its card is complete and says what the built model really provides;
- its frame spec is the card's preprocessing (interpolation, resize mode, value range, statistics);
- output shapes are right and a batch of 3 gives the rows a batch of 1 gives;
- its weights survive a save -> load round trip into a freshly created model;
- ``instract-eval run --model NAME --model-args checkpoint=TINY --task synth-semantic`` works.

A registered model without conformance data fails the first test. A model listed as unsupported
(no published weights) needs none: it must refuse to be created, with the card's reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from instract_eval.adapters import available_models, card_of, create_model
from instract_eval.adapters.cards import UNSUPPORTED
from instract_eval.errors import InputError
from instract_eval.adapters.protocols import (DUAL_ENCODER, FEATURE_EXTRACTOR, FIXED_LABEL_CLASSIFIER, LOCALIZER,
                                              PAIR_SCORER, Segment, capabilities_of)
from instract_eval.cli import main

OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "official"
# Models that need no checkpoint: created with their defaults.
NO_CHECKPOINT = {"random": {}, "null": {}, "synth-bag-of-frames": {}, "synth-temporal": {}, "actionformer-synth": {}}
CAPTIONS = ["a person cuts an onion", "open the jar slowly", "Someone's SLICING vegetables, quickly!!"]


def conformance_entries() -> dict[str, list[dict]]:
    """Registered name -> its tiny configurations (a family may give several, one per on-disk format)."""
    entries = {name: [{"args": dict(args), "checkpoint": None}] for name, args in NO_CHECKPOINT.items()}
    for file in sorted(OFFICIAL.glob("*/conformance.json")):
        for entry in json.loads(file.read_text()):
            args = {key: str(file.parent / value) if isinstance(value, str) and (file.parent / value).exists()
                    else value for key, value in entry.get("args", {}).items()}  # files, relative to the folder
            entries.setdefault(entry["model"], []).append(
                {"args": args, "checkpoint": str(file.parent / entry["checkpoint"])})
    return entries


ENTRIES = conformance_entries()
REGISTERED = sorted(entry.name for entry in available_models()
                    if entry.source == "built-in" and entry.card is not None and entry.card.status != UNSUPPORTED)
UNSUPPORTED_MODELS = sorted(entry.name for entry in available_models()
                            if entry.card is not None and entry.card.status == UNSUPPORTED)
CASES = [pytest.param(name, index, id=f"{name}-{index}" if len(ENTRIES.get(name, [])) > 1 else name)
         for name in REGISTERED for index in range(len(ENTRIES.get(name, [])))]


def build(name: str, index: int = 0):
    return create_model(name, **_arguments(name, index))


def _arguments(name: str, index: int) -> dict:
    entry = ENTRIES[name][index]
    args = dict(entry["args"])
    if entry["checkpoint"] is not None:
        args["checkpoint"] = entry["checkpoint"]
    return args


def test_every_registered_model_has_conformance_data():
    missing = [name for name in REGISTERED if name not in ENTRIES]
    assert not missing, f"registered models without tests/data/official/*/conformance.json entries: {missing}"
    unknown = [name for name in ENTRIES if name not in REGISTERED]
    assert not unknown, f"conformance entries for models that are not registered: {unknown}"


@pytest.mark.parametrize("name", UNSUPPORTED_MODELS)
def test_an_unsupported_model_is_listed_and_refuses_with_its_reason(name):
    card = card_of(name)
    assert card.status_reason and card.paper
    with pytest.raises(InputError, match=re.escape(card.status_reason[:30])):
        create_model(name)


@pytest.mark.parametrize("name, index", CASES)
def test_card_is_complete_and_true(name, index):
    """The built model provides some of what the card declares and nothing it does not (a family
    whose heads differ, CLIP4Clip's tightTransf pair scorer beside its dual encoders, declares both)."""
    card = card_of(name)
    assert card is not None, f"{name} has no model card"
    assert card.capabilities and card.code_licence and card.tokenizer
    for tag in card.tags:
        assert tag.location()
    provided = set(capabilities_of(build(name, index)))
    assert provided and provided <= set(card.capabilities), (card.capabilities, provided)


@pytest.mark.parametrize("name, index", CASES)
def test_frame_spec_is_the_cards_preprocessing(name, index):
    card = card_of(name)
    if card.frame_spec is None:
        pytest.skip(f"{name}'s card states no preprocessing (it follows the model's arguments or weights file)")
    spec, stated = build(name, index).frame_spec(), card.frame_spec
    for field in ("sampling", "mean", "std", "resize", "interpolation", "value_range"):
        assert getattr(spec, field) == getattr(stated, field), field


def _reads_features(model) -> bool:
    """A feature-based localizer (ActionFormer, TriDet): it reads [T, C] feature files, not frames."""
    return LOCALIZER in capabilities_of(model) and tuple(getattr(model, "localizer_inputs", ())) == ("features",)


def _localize_features(model, directory: Path) -> list:
    """The model's segments on a fixed random feature file of its input width (100 steps)."""
    import numpy as np

    path = directory / "video_a.npy"
    if not path.exists():
        np.save(path, np.random.default_rng(0).standard_normal((100, model.dims.input_dim)).astype(np.float32))
    return model.localize(str(path), list(model.labels), None)


def _clips(model, batch: int) -> torch.Tensor:
    spec = model.frame_spec()
    side = spec.crop or spec.size or 32
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, spec.num_frames, 3, side, side, generator=generator)


@pytest.mark.parametrize("name, index", CASES)
def test_shapes_and_batch_invariance(name, index, tmp_path):
    model = build(name, index)
    if hasattr(model, "eval"):
        model.eval()
    if _reads_features(model):
        segments = _localize_features(model, tmp_path)
        assert segments, "a tiny random head should still propose segments"
        assert all(isinstance(s, Segment) and s.label in model.labels and 0 <= s.start <= s.end for s in segments)
        assert _localize_features(model, tmp_path) == segments     # deterministic
        return
    clips = _clips(model, 3)
    with torch.inference_mode():
        if DUAL_ENCODER in capabilities_of(model):
            videos = model.encode_video(clips)
            texts = model.encode_text(CAPTIONS)
            assert videos.ndim == 2 and videos.shape[0] == 3 and texts.shape == (3, videos.shape[1])
            one_by_one = torch.cat([model.encode_video(clips[i:i + 1]) for i in range(3)])
            torch.testing.assert_close(videos, one_by_one, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(texts, torch.cat([model.encode_text([c]) for c in CAPTIONS]),
                                       rtol=1e-5, atol=1e-5)
            similarity = getattr(model, "similarity", None)
            if callable(similarity):
                assert similarity(videos, texts).shape == (3, 3)
        if PAIR_SCORER in capabilities_of(model):
            scores = model.score(clips, [CAPTIONS[:2]] * 3)
            assert scores.shape == (3, 2)
            single = torch.cat([model.score(clips[i:i + 1], [CAPTIONS[:2]]) for i in range(3)])
            torch.testing.assert_close(scores, single, rtol=1e-5, atol=1e-5)
        for capability, method in ((FEATURE_EXTRACTOR, "extract_features"), (FIXED_LABEL_CLASSIFIER, "classify")):
            if capability in capabilities_of(model):
                outputs = getattr(model, method)(clips)
                assert outputs.ndim == 2 and outputs.shape[0] == 3
                if capability == FIXED_LABEL_CLASSIFIER:
                    assert outputs.shape[1] == len(model.labels)
                one_by_one = torch.cat([getattr(model, method)(clips[i:i + 1]) for i in range(3)])
                torch.testing.assert_close(outputs, one_by_one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, index", CASES)
def test_weights_round_trip(name, index, tmp_path):
    model = build(name, index)
    if not isinstance(model, torch.nn.Module):
        pytest.skip(f"{name} has no weights")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    again = build(name, index)
    with torch.no_grad():
        for parameter in again.parameters():
            parameter.add_(1.0)  # make sure the load below is what restores the values
    again.load_state_dict(torch.load(tmp_path / "state.pt"))
    model.eval(), again.eval()
    if _reads_features(model):
        assert _localize_features(again, tmp_path) == _localize_features(model, tmp_path)
        return
    clips = _clips(model, 2)
    with torch.inference_mode():
        if DUAL_ENCODER in capabilities_of(model):
            torch.testing.assert_close(model.encode_video(clips), again.encode_video(clips), rtol=0, atol=0)
            torch.testing.assert_close(model.encode_text(CAPTIONS), again.encode_text(CAPTIONS), rtol=0, atol=0)
        elif PAIR_SCORER in capabilities_of(model):
            torch.testing.assert_close(model.score(clips, [CAPTIONS] * 2), again.score(clips, [CAPTIONS] * 2),
                                       rtol=0, atol=0)
        for capability, method in ((FEATURE_EXTRACTOR, "extract_features"), (FIXED_LABEL_CLASSIFIER, "classify")):
            if capability in capabilities_of(model):
                torch.testing.assert_close(getattr(model, method)(clips), getattr(again, method)(clips), rtol=0, atol=0)


def _model_args(name: str, index: int) -> str:
    return ",".join(f"{key}={json.dumps(value) if isinstance(value, str) else value}"
                    for key, value in _arguments(name, index).items())


@pytest.mark.slow
@pytest.mark.parametrize("name, index", CASES)
def test_runs_on_synth_semantic_from_the_command_line(name, index, world, tmp_path, capsys):
    if not {DUAL_ENCODER, PAIR_SCORER} & set(card_of(name).capabilities):
        pytest.skip(f"{name} has no text side, so it serves no multiple-choice task; its family test runs the synth "
                    "tasks its capabilities serve (a fixed-label classifier: synth-srt; a feature extractor: none)")
    argv = ["run", "--model", name, "--include", str(world / "tasks.yaml"), "--task", "synth-semantic",
            "--output", str(tmp_path / "out"), "--no-site", "--cache-dir", str(tmp_path / "cache"), "--limit", "6"]
    if _model_args(name, index):
        argv[3:3] = ["--model-args", _model_args(name, index)]
    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(next((tmp_path / "out").rglob("synth-semantic.json")).read_text())
    assert record["dataset"]["coverage"]["evaluated"] == 6
    assert 0.0 <= record["metrics"]["R@1"]["value"] <= 1.0
