"""The synthetic InstrAct training split: official format, true positives, false negatives, reuse."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from instract_eval.data.instract_train import read_training_annotations
from instract_eval.media import probe_video
from instract_eval.synth import captions
from instract_eval.synth.training import (
    ensure_instract_training,
    mask_candidates,
    read_training_manifest,
    training_entries,
    write_instract_training,
)
from instract_eval.synth.vocabulary import ACTION_BY_NAME, ObjectKind

SEPARATOR = captions.STEP_SEPARATOR


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_instract_training(tmp_path_factory.mktemp("train") / "split", seed=0, size="tiny")


def steps_of(text):
    return text.split(SEPARATOR)


def test_the_split_reads_with_the_official_format_reader_and_every_video_exists(split):
    items = read_training_annotations(split.annotations)
    document = json.loads(split.annotations.read_text())
    assert [i.caption for i in items] == list(document)
    assert len({i.video_id for i in items}) == split.counts["videos"] == 10
    for item in items:
        info = probe_video(split.video_root / f"{item.video_id}.mp4")
        assert 0 <= item.start < item.end <= info.duration + 1e-6
        assert item.mam_mask_candidates and item.verb_phrases and item.hard_negatives and item.order_swapped_hn


def test_verb_phrases_are_the_steps_and_negatives_are_false_by_construction(split):
    document = json.loads(split.annotations.read_text())
    full = {}  # video -> the steps of its longest caption
    for text, entry in document.items():
        if len(steps_of(text)) > len(full.get(entry["video_id"], [])):
            full[entry["video_id"]] = steps_of(text)
    for text, entry in document.items():
        steps = steps_of(text)
        assert entry["verb_phrases"] == steps
        assert 2 <= len(steps) <= 3
        # order swaps: every other permutation exactly once, the full reversal first
        others = {SEPARATOR.join(p) for p in itertools.permutations(steps)} - {text}
        assert set(entry["order_swapped_hn"]) == others and len(entry["order_swapped_hn"]) == len(others)
        assert entry["order_swapped_hn"][0] == SEPARATOR.join(reversed(steps))
        # verb-altered: exactly one step differs, and its new text is no step of the whole clip
        clip_steps = full[entry["video_id"]]
        assert len(set(entry["hard_negatives"])) == len(entry["hard_negatives"]) > 0
        for negative in entry["hard_negatives"]:
            changed = [(a, b) for a, b in zip(steps, steps_of(negative)) if a != b]
            assert len(changed) == 1 and len(steps_of(negative)) == len(steps), (text, negative)
            assert changed[0][1] not in clip_steps
            assert _object_of(changed[0][0]) == _object_of(changed[0][1])


def _object_of(step):
    """The object named in a step text ('rotate the red square clockwise' -> 'red square')."""
    words = step.split(" ")
    at = words.index("the")
    return " ".join(words[at + 1:at + 3])


def test_some_videos_have_several_captions_and_sub_captions_are_inside_the_clip(split):
    document = json.loads(split.annotations.read_text())
    per_video = Counter(e["video_id"] for e in document.values())
    assert split.counts["multi_positive_videos"] == sum(n > 1 for n in per_video.values()) >= 1
    by_video = {}
    for text, entry in document.items():
        by_video.setdefault(entry["video_id"], []).append((text, entry))
    for entries in by_video.values():
        (longest, outer), *subs = sorted(entries, key=lambda te: -len(steps_of(te[0])))
        for text, entry in subs:
            assert len(steps_of(text)) == 2 and len(steps_of(longest)) == 3
            assert text in (SEPARATOR.join(steps_of(longest)[:2]), SEPARATOR.join(steps_of(longest)[1:]))
            assert outer["start"] <= entry["start"] < entry["end"] <= outer["end"]


def test_mask_candidates_are_the_action_words_with_exact_spans():
    """Hand-worked: the caption is 'move the red square left, then make the blue circle appear'."""
    kinds = (ObjectKind("red", "square"), ObjectKind("blue", "circle"))
    plan = [(0, "move left"), (1, "appear")]
    text = captions.caption(kinds, plan)
    assert text == "move the red square left, then make the blue circle appear"
    got = [(c["word"], c["char_start"], c["char_end"], c["method"]) for c in mask_candidates(kinds, plan)]
    assert got == [("move", 0, 4, "verb"), ("left", 20, 24, "modifier"), ("appear", 52, 58, "verb")]
    assert ACTION_BY_NAME["appear"].caption("blue circle") == "make the blue circle appear"


def test_the_split_is_deterministic_and_seeds_differ():
    _, first = training_entries(3, "tiny")
    _, again = training_entries(3, "tiny")
    _, other = training_entries(4, "tiny")
    assert first == again
    assert list(first) != list(other)


def test_ensure_reuses_a_complete_split_and_remakes_an_incomplete_one(tmp_path):
    out = tmp_path / "split"
    made = ensure_instract_training(out, seed=1, size="tiny")
    stamp = made.annotations.stat().st_mtime_ns
    assert ensure_instract_training(out, seed=1, size="tiny").annotations.stat().st_mtime_ns == stamp
    assert read_training_manifest(out)["seed"] == 1
    victim = sorted(made.video_root.iterdir())[0]
    victim.unlink()
    remade = ensure_instract_training(out, seed=1, size="tiny")
    assert victim.is_file() and remade.counts == made.counts
    ensure_instract_training(out, seed=2, size="tiny")
    assert read_training_manifest(out)["seed"] == 2


def test_a_directory_of_other_files_is_never_replaced(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a synthetic training split"):
        write_instract_training(tmp_path, seed=0, size="tiny")
    assert (tmp_path / "mine.txt").read_text() == "keep"
