"""The alignment-diagnostic engine end to end: synthetic world -> task file -> decoding -> DTW cost.

Every cost is checked against an independent computation: the test decodes the clips itself,
calls the stand-in model on them, and runs a brute-force DTW that enumerates every monotone path.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from instract_eval.encoding import Encoder
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest, FrameSpec, load_clip
from instract_eval.tasks import load_registry, require_data
from instract_eval.tasks.alignment import AlignmentItem, alignment_items, evaluate_alignment, verb_phrases

FRAMES, SIZE = 8, 32
TASK = "synth-alignment"


# ------------------------------------------------------------------------------------------------
# verb_phrases


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("shake the blue diamond, then move the blue cross right",
         ("shake the blue diamond", "move the blue cross right")),
        ("cut the onion; fry it then serve", ("cut the onion", "fry it", "serve")),
        ("whisk the eggs, and then fold in flour , then bake", ("whisk the eggs", "fold in flour", "bake")),
        ("Peel the potato, Then boil it", ("Peel the potato", "boil it")),
        ("  then chop ;; dice ;  ", ("chop", "dice")),  # empty pieces and a leading "then" are dropped
        ("fly to athens, thenceforth relax", ("fly to athens, thenceforth relax",)),  # words containing "then"
        ("chop, dice and fry the onion", ("chop, dice and fry the onion",)),  # bare commas do not split
        ("stir the sauce", ("stir the sauce",)),
    ],
)
def test_verb_phrases_default_separator(caption, expected):
    assert verb_phrases(caption) == expected


def test_verb_phrases_custom_separator_ignores_groups_and_empty_matches():
    assert verb_phrases("slice 1 dice 2 serve", r"\s*(\d)\s*") == ("slice", "dice", "serve")
    assert verb_phrases("a / b", r"\s*/?\s*") == ("a", "b")  # zero-width matches never split


# ------------------------------------------------------------------------------------------------
# The synthetic world and a task file of our own


@pytest.fixture(scope="module")
def captions(world) -> list[str]:
    return [row["caption"] for row in json.loads((world / "instract" / "logic.json").read_text())]


def write_task(directory, world, *, name=TASK, fmt="instract-logic", **protocol_extra):
    protocol = {"frames": FRAMES, "sampling": "uniform", "fps": 8, "context_s": 0.0, "min_clip_s": 0.0,
                "size": SIZE, **protocol_extra}
    entry = {
        "kind": "alignment", "paper": "synth", "description": "DTW cost on the synthetic procedures.",
        "format": fmt,
        "data": {"annotations": str(world / "instract" / "logic.json"), "videos": str(world / "videos")},
        "protocol": protocol, "ties": "expected", "seed": 0,
        "metrics": [{"name": "normalized_dtw_cost", "direction": "lower"}],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"tasks": {name: entry}}))
    return path


def load_task(path, name=TASK):
    spec = load_registry([path]).tasks[name]
    return spec, require_data(spec, environ={})


@pytest.fixture(scope="module")
def task(world, tmp_path_factory):
    return load_task(write_task(tmp_path_factory.mktemp("tasks"), world, min_phrases=2))


# ------------------------------------------------------------------------------------------------
# Stand-in token model and the independent computation


class ProgressTokenModel:
    """One token per decoded frame: its temporal progress on a quarter circle plus the frame's mean colour.

    A phrase is embedded at the progress of its step in its caption (``positions``), so tokens in
    true temporal order align with phrases in caption order. ``progress`` (per frame, 0 to 1) is
    even by default; a front-loaded one makes the optimal path of a 3-step caption detour through
    more than ``max(K, M)`` cells, where the mean along the path differs from ``DTW / max(K, M)``.
    """

    name = "progress-tokens"

    def __init__(self, positions: dict[str, float], progress: list[float] | None = None):
        self.positions = positions
        self.progress = torch.linspace(0, 1, FRAMES) if progress is None else torch.tensor(progress)
        self.clips_seen = 0

    def frame_spec(self):
        return FrameSpec(num_frames=FRAMES, size=SIZE, crop=SIZE)

    def encode_video_tokens(self, clips):
        assert clips.dtype == torch.float32 and clips.shape[1:] == (FRAMES, 3, SIZE, SIZE)
        assert clips.std() > 0  # real pixels, not a placeholder
        self.clips_seen += clips.shape[0]
        angle = self.progress * math.pi / 2
        progress = torch.stack([angle.cos(), angle.sin()], dim=1).expand(clips.shape[0], FRAMES, 2)
        colour = 0.2 * clips.mean(dim=(3, 4))  # [B, T, 3]
        return torch.cat([progress, colour], dim=2)

    def encode_text(self, texts):
        rows = []
        for text in texts:
            angle = self.positions[text] * math.pi / 2
            rows.append([math.cos(angle), math.sin(angle), 0.05 * (len(text) % 5), 0.05 * text.count("e"), 0.02])
        return torch.tensor(rows)


def step_positions(captions: list[str]) -> dict[str, float]:
    """Each step's progress through its procedure (0 first, 1 last), from the synth captions' ', then '."""
    positions: dict[str, float] = {}
    for caption in captions:
        steps = caption.split(", then ")
        for index, step in enumerate(steps):
            positions.setdefault(step, index / max(len(steps) - 1, 1))
    return positions


def brute_force_normalized_dtw(tokens: np.ndarray, phrases: np.ndarray) -> tuple[float, int, int]:
    """Mean cosine distance along the minimal-total-cost monotone path, its length, the number of paths."""
    a = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    b = phrases / np.linalg.norm(phrases, axis=1, keepdims=True)
    cost = 1.0 - a @ b.T
    rows, columns = cost.shape
    best: list[tuple[float, int]] = []

    def walk(i: int, j: int, total: float, length: int) -> None:
        if (i, j) == (rows - 1, columns - 1):
            best.append((total, length))
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i + di < rows and j + dj < columns:
                walk(i + di, j + dj, total + cost[i + di, j + dj], length + 1)

    walk(0, 0, cost[0, 0], 1)
    total, length = min(best)
    return total / length, length, len(best)


def test_brute_force_enumerates_every_monotone_path():
    # Delannoy numbers: D(2, 2) = 13 paths through 3x3, D(7, 2) = 113 through 8x3.
    assert brute_force_normalized_dtw(np.eye(3) + 0.1, np.eye(3) + 0.1)[2] == 13
    assert brute_force_normalized_dtw(np.random.default_rng(0).normal(size=(8, 4)), np.eye(3, 4) + 0.1)[2] == 113


def independent_cost(model, item: AlignmentItem) -> tuple[float, int]:
    """The item's cost and optimal path length, from clips decoded here and a brute-force DTW."""
    spec = FrameSpec(num_frames=FRAMES, sampling="uniform", fps=8, size=SIZE, crop=SIZE)
    tokens = model.encode_video_tokens(load_clip(item.request, spec)).mean(dim=0).numpy()
    phrases = model.encode_text(list(item.phrases)).numpy()
    return brute_force_normalized_dtw(tokens.astype(np.float64), phrases.astype(np.float64))[:2]


# ------------------------------------------------------------------------------------------------
# End to end


@pytest.mark.parametrize("progress", [None, [0.25] + [1.0] * (FRAMES - 1)], ids=["even", "front-loaded"])
def test_costs_equal_brute_force_dtw_on_the_same_embeddings(task, captions, progress):
    spec, location = task
    items = alignment_items(spec, location)
    assert [item.phrases for item in items] == [tuple(c.split(", then ")) for c in captions]
    assert [item.request.video_id for item in items] == [f"log_{i:04d}" for i in range(len(captions))]
    model = ProgressTokenModel(step_positions(captions), progress)
    result = evaluate_alignment(Encoder(model), items, task=spec.name, protocol=spec.protocol)
    assert model.clips_seen == len({item.request.key() for item in items})

    expected, lengths = zip(*(independent_cost(model, item) for item in items))
    if progress is not None:  # the detour case really occurs
        assert any(length > max(FRAMES, len(item.phrases)) for length, item in zip(lengths, items))
    assert [s["id"] for s in result["samples"]] == [f"{TASK}/{i}" for i in range(len(captions))]
    assert [s["cost"] for s in result["samples"]] == pytest.approx(expected, abs=1e-6)
    assert [s["num_tokens"] for s in result["samples"]] == [FRAMES] * len(items)
    assert [s["num_phrases"] for s in result["samples"]] == [len(c.split(", then ")) for c in captions]
    assert len(set(np.round(expected, 6))) > 1  # costs depend on the clip, not a constant
    metrics = result["metrics"]
    assert metrics["normalized_dtw_cost"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert metrics["median_normalized_dtw_cost"] == pytest.approx(np.median(expected), abs=1e-6)
    assert metrics["num_items"] == len(captions)
    coverage = result["coverage"]
    assert (coverage["evaluated"], coverage["total"], coverage["fraction"], coverage["failed_videos"]) == (
        len(captions), len(captions), 1.0, {})
    assert coverage["selection"] == {"rows": len(captions), "kept": len(captions), "too_few_phrases": 0,
                                     "min_phrases": 2}


def test_tokens_in_true_order_align_better_than_reversed_phrases(task, captions):
    spec, location = task
    items = alignment_items(spec, location)
    model = ProgressTokenModel(step_positions(captions))
    reversed_items = [AlignmentItem(item.request, item.phrases[::-1], item.sample_id) for item in items]
    forward = evaluate_alignment(Encoder(model), items, task=spec.name, protocol=spec.protocol)["samples"]
    backward = evaluate_alignment(Encoder(model), reversed_items, task=spec.name, protocol=spec.protocol)["samples"]
    for ahead, behind in zip(forward, backward):
        assert ahead["cost"] < behind["cost"] - 0.05, ahead["id"]


def test_min_phrases_keeps_only_long_procedures_and_counts_the_rest(world, tmp_path, captions):
    spec, location = load_task(write_task(tmp_path, world, min_phrases=3))
    items = alignment_items(spec, location)
    long_rows = [i for i, c in enumerate(captions) if len(c.split(", then ")) >= 3]
    assert 0 < len(long_rows) < len(captions)  # the tiny world has 2- and 3-step procedures
    assert [item.sample_id for item in items] == [f"{TASK}/{i}" for i in long_rows]
    assert all(len(item.phrases) >= 3 for item in items)
    model = ProgressTokenModel(step_positions(captions))
    result = evaluate_alignment(Encoder(model), items, task=spec.name, protocol=spec.protocol)
    assert result["metrics"]["num_items"] == len(long_rows)
    assert result["coverage"]["selection"] == {"rows": len(captions), "kept": len(long_rows),
                                               "too_few_phrases": len(captions) - len(long_rows), "min_phrases": 3}


def test_the_default_min_phrases_is_two(world, tmp_path, captions):
    spec, location = load_task(write_task(tmp_path, world))
    assert len(alignment_items(spec, location)) == sum(len(c.split(", then ")) >= 2 for c in captions)


def test_a_protocol_separator_replaces_the_default(world, tmp_path, captions):
    spec, location = load_task(write_task(tmp_path, world, phrase_separator=r"\s+the\s+", min_phrases=2))
    items = alignment_items(spec, location)
    assert items[0].phrases == tuple(part.strip() for part in captions[0].split(" the "))


# ------------------------------------------------------------------------------------------------
# Errors


def test_a_model_without_token_encoding_fails_before_decoding(tmp_path):
    class DualEncoder:
        name = "dual-only"

        def frame_spec(self):
            raise AssertionError("frame_spec must not be asked for")

        def encode_video(self, clips):
            raise AssertionError("nothing may be decoded")

        def encode_text(self, texts):
            raise AssertionError("nothing may be encoded")

    items = [AlignmentItem(ClipRequest(str(tmp_path / "never-opened.mp4")), ("a", "b"), "x")]
    with pytest.raises(InputError, match="needs a token encoder model; dual-only provides: dual encoder"):
        evaluate_alignment(Encoder(DualEncoder()), items, task="probe", protocol={})


def test_missing_video_is_an_error_unless_allowed_and_then_counted(task, captions, tmp_path):
    spec, location = task
    real = alignment_items(spec, location)[0]
    gone = AlignmentItem(ClipRequest(str(tmp_path / "gone.mp4"), 0.0, 2.0, video_id="gone"), real.phrases, "gone")
    model = ProgressTokenModel(step_positions(captions))
    with pytest.raises(InputError, match="gone.mp4"):
        evaluate_alignment(Encoder(model), [real, gone], task=spec.name, protocol=spec.protocol)
    result = evaluate_alignment(Encoder(model, allow_missing=True), [real, gone], task=spec.name, protocol=spec.protocol)
    coverage = result["coverage"]
    assert (coverage["evaluated"], coverage["total"], coverage["fraction"]) == (1, 2, 0.5)
    assert list(coverage["failed_videos"]) == [gone.request.key()]
    assert "selection" not in coverage  # a plain list carries no phrase selection
    assert [s["id"] for s in result["samples"]] == [real.sample_id]
    assert result["metrics"]["num_items"] == 1
    assert result["samples"][0]["cost"] == pytest.approx(independent_cost(model, real)[0], abs=1e-6)


def test_nan_tokens_are_an_error_naming_the_video(task, captions):
    class NaNTokens(ProgressTokenModel):
        def encode_video_tokens(self, clips):
            tokens = super().encode_video_tokens(clips)
            tokens[:, 3, 0] = float("nan")
            return tokens

    spec, location = task
    items = alignment_items(spec, location)[:1]
    with pytest.raises(InputError, match=r"NaN or inf video embeddings .*log_0000"):
        evaluate_alignment(Encoder(NaNTokens(step_positions(captions))), items, task=spec.name, protocol=spec.protocol)


def test_pooled_embeddings_instead_of_tokens_are_an_error(task, captions):
    class Pooled(ProgressTokenModel):
        def encode_video_tokens(self, clips):
            return super().encode_video_tokens(clips).mean(dim=1)

    spec, location = task
    items = alignment_items(spec, location)[:1]
    with pytest.raises(InputError, match=r"expected \[K, D\] tokens"):
        evaluate_alignment(Encoder(Pooled(step_positions(captions))), items, task=spec.name, protocol=spec.protocol)


def test_other_formats_and_bad_protocols_name_the_field(world, tmp_path):
    spec, location = load_task(write_task(tmp_path, world, fmt="instract-semantic"))
    with pytest.raises(InputError, match=f"tasks.{TASK}.format"):
        alignment_items(spec, location)
    # Refused when the task file is read, before any annotation or video is opened.
    with pytest.raises(InputError, match=f"tasks.{TASK}.protocol.phrase_separator: not a valid regular"):
        load_task(write_task(tmp_path, world, phrase_separator="(unclosed"))
    with pytest.raises(InputError, match=f"tasks.{TASK}.protocol.min_phrases: expected an integer >= 1, got 0"):
        load_task(write_task(tmp_path, world, min_phrases=0))


def test_no_item_left_is_an_error(world, tmp_path, captions):
    spec, location = load_task(write_task(tmp_path, world, min_phrases=99))
    items = alignment_items(spec, location)
    assert len(items) == 0 and items.too_few_phrases == len(captions)
    with pytest.raises(InputError, match="no item to evaluate"):
        evaluate_alignment(Encoder(ProgressTokenModel({})), items, task=spec.name, protocol=spec.protocol)
