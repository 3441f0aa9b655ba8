"""The packaged synthetic-world encoders: loading, invariances, and the picture they exist to show.

Fast tests check what holds by construction (shapes, unit norms, the order-blind model's exact
invariance to frame and word order, provenance, errors naming the file). The slow test evaluates
both packaged models on the default seed-0 world, the embedded default of the harness: the
bag-of-frames model must sit at chance on the order probes (VR, AA, Logic) yet pass the Object
Replacement control, and the temporal model must clear chance clearly on all of them.
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from instract_eval.adapters.registry import create_model
from instract_eval.adapters.synth_models import (
    BAG_OF_FRAMES,
    TEMPORAL,
    SynthDualEncoder,
    default_weights,
    load_synth_model,
    synth_bag_of_frames,
    synth_temporal,
    tokenize,
)
from instract_eval.errors import InputError

CAPTION = "move the red square left, then grow the blue circle"
SWAPPED = "grow the blue circle, then move the red square left"
FACTORIES = {BAG_OF_FRAMES: synth_bag_of_frames, TEMPORAL: synth_temporal}


@pytest.fixture(scope="module")
def models() -> dict[str, SynthDualEncoder]:
    return {name: factory().eval() for name, factory in FACTORIES.items()}


def _clips(batch: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, 3, 32, 32, generator=generator)


# ------------------------------------------------------------------------------------------------
# Loading and provenance


@pytest.mark.parametrize("name", [BAG_OF_FRAMES, TEMPORAL])
def test_packaged_weights_load_and_describe_themselves(models, name):
    model = models[name]
    assert model.name == name
    spec = model.frame_spec()
    assert (spec.num_frames, spec.sampling, spec.size, spec.crop) == (8, "uniform", 32, 32)
    data = default_weights(name).read_bytes()
    assert len(data) <= 2_000_000
    assert model.weights_fingerprint().startswith(hashlib.sha256(data).hexdigest() + ";localize=")
    training = json.loads(model.metadata["training"])
    assert training["world_seeds"] and min(training["world_seeds"]) >= 1000  # disjoint from evaluation worlds
    assert json.loads(model.metadata["architecture"])["kind"] == ("bag-of-frames" if name == BAG_OF_FRAMES
                                                                  else "temporal")


@pytest.mark.parametrize("name", [BAG_OF_FRAMES, TEMPORAL])
def test_the_registry_creates_them_by_name_and_from_an_explicit_path(name, tmp_path):
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(default_weights(name).read_bytes())
    by_name = create_model(name)
    by_path = create_model(name, weights=str(copy))
    assert isinstance(by_name, SynthDualEncoder) and isinstance(by_path, SynthDualEncoder)
    assert by_path.weights_fingerprint() == by_name.weights_fingerprint()
    by_name.eval()
    by_path.eval()
    with torch.inference_mode():
        assert torch.equal(by_name.encode_text([CAPTION]), by_path.encode_text([CAPTION]))


def test_a_missing_weights_file_is_an_input_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(InputError, match="nowhere.safetensors") as caught:
        synth_temporal(weights=str(missing))
    assert caught.value.path == str(missing)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\n\x00\x00\x00\x00\x00\x00\x00{bad json}",
                                     b"\xff" * 64])
def test_a_malformed_weights_file_is_an_input_error_naming_it(tmp_path, content):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(content)
    with pytest.raises(InputError, match="broken.safetensors") as caught:
        load_synth_model(bad)
    assert caught.value.path == str(bad)


def test_malformed_metadata_or_tensors_are_input_errors_naming_the_file(tmp_path):
    from safetensors.torch import load, save_file

    packaged = load_synth_model(name=TEMPORAL)
    tensors = load(default_weights(TEMPORAL).read_bytes())
    broken_metadata = {**packaged.metadata, "architecture": "{not json"}
    save_file(tensors, str(tmp_path / "metadata.safetensors"), metadata=broken_metadata)
    with pytest.raises(InputError, match="metadata.safetensors.*malformed metadata"):
        load_synth_model(tmp_path / "metadata.safetensors")
    del tensors[sorted(tensors)[0]]
    save_file(tensors, str(tmp_path / "tensors.safetensors"), metadata=packaged.metadata)
    with pytest.raises(InputError, match="tensors.safetensors.*does not fit its architecture: missing"):
        load_synth_model(tmp_path / "tensors.safetensors")


def test_weights_of_plain_safetensors_or_of_the_other_model_are_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain), metadata={"format": "pt"})
    with pytest.raises(InputError, match="plain.safetensors.*not a synth dual-encoder"):
        load_synth_model(plain)
    other = tmp_path / "temporal.safetensors"
    other.write_bytes(default_weights(TEMPORAL).read_bytes())
    with pytest.raises(InputError, match=f"temporal.safetensors.*{TEMPORAL}, not {BAG_OF_FRAMES}"):
        synth_bag_of_frames(weights=str(other))


# ------------------------------------------------------------------------------------------------
# Outputs and invariances


@pytest.mark.parametrize("name", [BAG_OF_FRAMES, TEMPORAL])
def test_embeddings_are_finite_unit_vectors_of_one_width(models, name):
    model = models[name]
    with torch.inference_mode():
        videos = model.encode_video(_clips())
        texts = model.encode_text([CAPTION, "shake the green cross", "an unknown sentence"])
        sixteen = model.encode_video(torch.randn(2, 16, 3, 32, 32))  # SRT samples 16 frames
    assert videos.shape == (3, texts.shape[1]) and texts.shape[0] == 3 and sixteen.shape == (2, texts.shape[1])
    for values in (videos, texts, sixteen):
        assert torch.isfinite(values).all()
        assert torch.allclose(values.norm(dim=-1), torch.ones(len(values)), atol=1e-5)


def test_the_bag_of_frames_model_cannot_see_frame_or_word_order(models):
    model = models[BAG_OF_FRAMES]
    clips = _clips()
    with torch.inference_mode():
        forward = model.encode_video(clips)
        backward = model.encode_video(clips.flip(1))
        alone = model.encode_video(clips.flip(1)[1:2])  # another batch position and size
        texts = model.encode_text([CAPTION, SWAPPED])
    assert torch.equal(forward, backward)  # bit-identical: reversal is an exact tie in VR
    assert torch.equal(forward[1:2], alone)
    assert torch.equal(texts[0], texts[1])


def test_the_temporal_model_sees_frame_and_word_order(models):
    model = models[TEMPORAL]
    clips = _clips()
    with torch.inference_mode():
        forward = model.encode_video(clips)
        backward = model.encode_video(clips.flip(1))
        texts = model.encode_text([CAPTION, SWAPPED])
    assert not torch.allclose(forward, backward, atol=1e-3)
    assert not torch.allclose(texts[0], texts[1], atol=1e-3)


def test_text_runs_on_the_models_device_and_tokens_are_lowercase_words(models):
    assert tokenize("Move the RED square left, then grow-it 2x") == ["move", "the", "red", "square", "left", "then",
                                                                      "grow", "it", "x"]
    model = models[TEMPORAL]
    device = next(model.parameters()).device
    with torch.inference_mode():
        assert model.encode_text(["grow the red square"]).device == device
        assert model.encode_text([]).shape == (0, model.encode_text(["x"]).shape[1])


# ------------------------------------------------------------------------------------------------
# The picture on the default world


@pytest.fixture(scope="module")
def default_world(tmp_path_factory):
    """The embedded default world (size default, seed 0), generated once for this module."""
    from instract_eval.synth import generate_world

    out = tmp_path_factory.mktemp("synth-default") / "world"
    generate_world(out, seed=0, size="default")
    return out


def _evaluate(model, world, task: str) -> tuple[dict, float]:
    """The task's metrics and its chance level (mean of 1/candidates over the items, MCQ only)."""
    from instract_eval.tasks import load_registry, require_data
    from instract_eval.tasks.build import mcq_items
    from instract_eval.tasks.evaluate import evaluate_task

    spec = load_registry([world / "tasks.yaml"]).tasks[task]
    result = evaluate_task(model, spec, environ={})
    chance = float("nan")
    if spec.kind == "mcq":
        items = mcq_items(spec, require_data(spec, environ={}))
        chance = sum(1 / len(item.candidates) for item in items) / len(items)
    return result["metrics"], chance


@pytest.mark.slow
def test_on_the_default_world_only_the_temporal_model_passes_the_order_probes(models, default_world):
    results = {name: {task: _evaluate(model, default_world, task)
                      for task in ("synth-aa", "synth-vr", "synth-or", "synth-logic", "synth-semantic",
                                   "synth-dynamics")}
               for name, model in models.items()}
    bag, temporal = results[BAG_OF_FRAMES], results[TEMPORAL]
    accuracy = {name: {task: metrics.get("accuracy") for task, (metrics, _) in tasks.items()}
                for name, tasks in results.items()}
    chance = {task: level for task, (_, level) in temporal.items()}
    summary = json.dumps({"accuracy": accuracy, "chance": chance}, indent=1)

    # Order-blind: reversal and order swaps are exact ties, antonyms a coin flip; objects it sees.
    vr, logic = bag["synth-vr"][0], bag["synth-logic"][0]
    assert abs(vr["accuracy"] - 0.5) <= 0.05, summary
    assert vr["num_tied"] == vr["num_queries"], summary
    assert logic["num_tied"] == logic["num_queries"], summary
    assert abs(logic["accuracy"] - chance["synth-logic"]) <= 0.12, summary
    assert abs(bag["synth-aa"][0]["accuracy"] - chance["synth-aa"]) <= 0.12, summary
    assert bag["synth-or"][0]["accuracy"] >= 0.8, summary

    # Order-aware: clearly above chance on every probe, and decent on the rest.
    for task in ("synth-aa", "synth-vr", "synth-or", "synth-logic"):
        assert temporal[task][0]["accuracy"] >= chance[task] + 0.2, (task, summary)
    assert temporal["synth-semantic"][0]["R@1"] >= chance["synth-semantic"] + 0.4, summary
    assert temporal["synth-dynamics"][0]["mean"]["R@1"] >= 0.6, summary
    assert temporal["synth-semantic"][0]["R@1"] > bag["synth-semantic"][0]["R@1"] + 0.3, summary


def test_weights_files_are_canonical_so_retraining_reproduces_their_hash():
    from safetensors.torch import load

    from instract_eval.adapters.synth_models import _canonical_safetensors

    for name in (BAG_OF_FRAMES, TEMPORAL):
        data = default_weights(name).read_bytes()
        model = load_synth_model(name=name)
        assert _canonical_safetensors(load(data), model.metadata) == data


# ------------------------------------------------------------------------------------------------
# The training script's pieces (training itself runs for minutes; here a two-step smoke run)


def test_captions_parse_to_meanings_and_relations_follow_content():
    from instract_eval.training import synth as train

    meaning = train.parse_caption(CAPTION)
    assert train.render(meaning) == CAPTION
    assert train.render(train.reversed_meaning(meaning)) == "shrink the blue circle, then move the red square right"
    label = train.parse_label("move left")
    single = train.parse_caption("move the red square left")
    assert train.relation(label, single) == train.POSITIVE          # a label describes any such clip
    assert train.relation(single, label) == train.UNKNOWN           # the label file does not name the object
    assert train.relation(train.parse_caption(SWAPPED), meaning) == train.NEGATIVE
    assert train.relation(train.parse_label("move right"), single) == train.NEGATIVE
    with pytest.raises(ValueError, match="not a caption"):
        train.parse_caption("juggle the red square")


def test_hard_negatives_keep_the_steps_and_change_order_direction_or_objects():
    import numpy as np

    from instract_eval.training import synth as train

    meaning = train.parse_caption(CAPTION)
    negatives = train.hard_negatives(np.random.default_rng(0), meaning, 5)
    assert len(negatives) == 5 and meaning not in negatives and len(set(negatives)) == 5
    assert negatives[0] == train.parse_caption("move the red square right, then shrink the blue circle")  # antonym
    assert negatives[1] == train.parse_caption(SWAPPED)  # the only other order of two steps
    assert all(len(negative) == len(meaning) for negative in negatives)


def test_two_training_steps_on_the_tiny_world_give_a_loadable_model(world, tmp_path):
    from instract_eval.adapters.synth_models import Tokenizer, WeightsDocument, save_synth_weights
    from instract_eval.training import synth as train

    samples = train.world_samples(world)
    train.check_protocol(world, train.FRAME_SPEC)
    data = train.TrainingData(samples, train.decode(samples, train.FRAME_SPEC), [0], 0.0)
    tokenizer = Tokenizer.from_texts(train.render(m) for m in train._all_meanings())
    config = train.TrainConfig(steps=2, batch_size=8, warmup_steps=1)
    net, summary = train.train_model(TEMPORAL, data, tokenizer, 0, config)
    assert math.isfinite(summary["first_loss"]) and math.isfinite(summary["final_loss_mean_last_50"])
    document = WeightsDocument(TEMPORAL, net.config, tokenizer.vocabulary, train.FRAME_SPEC,
                               train.training_metadata(0, data, config, summary))
    digest = save_synth_weights(tmp_path / "smoke.safetensors", net, document)
    model = load_synth_model(tmp_path / "smoke.safetensors", name=TEMPORAL)
    assert model.weights_fingerprint().startswith(digest + ";")
    assert json.loads(model.metadata["training"])["config"]["steps"] == 2
    with torch.inference_mode():
        assert model.encode_video(data.clips[:2]).shape == model.encode_text(["grow the red square", "x"]).shape
