"""Hard negatives are hard by construction: same objects, only actions or their order differ."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from instract_eval.synth import captions
from instract_eval.synth.benchmarks import build_world
from instract_eval.synth.sizes import SIZES
from instract_eval.synth.vocabulary import ACTIONS, OBJECTS, ObjectKind

OBJECT_PATTERN = re.compile("|".join(sorted((re.escape(o.name) for o in OBJECTS), key=len, reverse=True)))


def objects_in(text: str) -> list[str]:
    return OBJECT_PATTERN.findall(text)


def without_objects(text: str) -> str:
    return OBJECT_PATTERN.sub("<obj>", text)


@pytest.fixture(scope="module")
def content():
    return build_world(0, SIZES["tiny"])


def test_semantic_negatives_keep_the_objects_and_change_only_actions_or_order(content):
    for row in content.semantic:
        positive = row["caption"]
        steps = positive.split(captions.STEP_SEPARATOR)
        assert len(row["hard_negatives"]) == 9 and len(set(row["hard_negatives"])) == 9
        for negative in row["hard_negatives"]:
            assert negative != positive
            assert Counter(objects_in(negative)) == Counter(objects_in(positive)), (positive, negative)
            assert len(negative.split(captions.STEP_SEPARATOR)) == len(steps)
            if objects_in(negative) == objects_in(positive):  # same roles: an action changed
                assert without_objects(negative) != without_objects(positive)


def test_semantic_negatives_include_the_antonym_and_the_order_swap(content):
    for row in content.semantic:
        clip_steps = row["caption"].split(captions.STEP_SEPARATOR)
        if len(clip_steps) == 2:
            assert captions.STEP_SEPARATOR.join(reversed(clip_steps)) in row["hard_negatives"]
    kinds = (ObjectKind("red", "square"),)
    negatives = captions.verb_negatives(np.random.default_rng(0), kinds, [(0, "move left")], 9)
    assert "move the red square right" in negatives


def test_logic_negatives_are_the_same_steps_in_another_order(content):
    for row in content.logic:
        steps = row["caption"].split(captions.STEP_SEPARATOR)
        assert len(steps) == len(set(steps)) in (2, 3)
        assert 1 <= len(row["order_swapped_hn"]) <= 3
        assert len(set(row["order_swapped_hn"])) == len(row["order_swapped_hn"])
        for negative in row["order_swapped_hn"]:
            other = negative.split(captions.STEP_SEPARATOR)
            assert sorted(other) == sorted(steps) and other != steps


def test_actionbench_alternatives_change_only_the_action_or_only_the_object(content):
    for row in content.actionbench_object_shuffled:
        text, antonym, shuffled = row["clip_text"], row["action_antonym_clip_text"], row["object_shuffled_clip_text"]
        assert objects_in(antonym) == objects_in(text) and without_objects(antonym) != without_objects(text)
        assert without_objects(shuffled) == without_objects(text) and objects_in(shuffled) != objects_in(text)


def test_action_vocabulary_is_consistent():
    names = [a.name for a in ACTIONS]
    for action in ACTIONS:
        if action.antonym is not None:
            assert action.antonym in names and ACTIONS[names.index(action.antonym)].antonym == action.name
        assert len(action.runs) == 10 and action.runs[0] == action.name
    labels = [label for action in ACTIONS for label in action.runs]
    assert len(labels) == len(set(labels))
    captions_of_red_square = [a.caption("red square") for a in ACTIONS]
    assert len(set(captions_of_red_square)) == len(ACTIONS)
    assert all(objects_in(c) == ["red square"] for c in captions_of_red_square)


def test_object_replacement_names_an_object_absent_from_the_clip():
    kinds = (ObjectKind("red", "square"), ObjectKind("blue", "circle"))
    for seed in range(20):
        text = captions.object_replaced(np.random.default_rng(seed), kinds, [(0, "grow")])
        (name,) = objects_in(text)
        assert name not in ("red square", "blue circle") and text.startswith("grow the ")
