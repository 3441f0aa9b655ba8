"""Captions of clips and their hard negatives, hard by construction.

A plan is a list of steps ``(actor, action)`` over a clip's objects; its caption names each step
("move the red square left") and joins them with ", then ". Every negative written here keeps
exactly the objects of the positive, in the same roles, and changes only

- an action (its antonym first: the negative a model that ignores the direction of time cannot
  reject), or another action of the vocabulary;
- the order of the steps (InstrAct-Logic, and one Semantic negative for multi-step clips).

The one exception is ActionBench's Object Replacement control (`object_replaced`), which by
definition keeps the action and names an object that is not in the clip.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .vocabulary import ACTION_BY_NAME, ACTION_NAMES, OBJECTS, ObjectKind

Plan = Sequence[tuple[int, str]]
STEP_SEPARATOR = ", then "


def step_text(kinds: Sequence[ObjectKind], actor: int, action: str) -> str:
    return ACTION_BY_NAME[action].caption(kinds[actor].name)


def caption(kinds: Sequence[ObjectKind], plan: Plan) -> str:
    """The positive caption of a plan."""
    return STEP_SEPARATOR.join(step_text(kinds, actor, action) for actor, action in plan)


def antonym_caption(kinds: Sequence[ObjectKind], plan: Plan) -> str:
    """The caption with every step's action replaced by its antonym (ActionBench AA)."""
    return caption(kinds, [(actor, _antonym(action)) for actor, action in plan])


def _antonym(action: str) -> str:
    antonym = ACTION_BY_NAME[action].antonym
    if antonym is None:
        raise ValueError(f"action {action!r} has no antonym")
    return antonym


def verb_negatives(rng: np.random.Generator, kinds: Sequence[ObjectKind], plan: Plan, count: int) -> list[str]:
    """``count`` distinct wrong captions with the same objects (InstrAct-Semantic hard negatives).

    Always included, when they exist: the order swap of a multi-step plan and each step's antonym.
    The rest replace one step's action by another action of the vocabulary, drawn at random.
    """
    positive = caption(kinds, plan)
    first: list[list[tuple[int, str]]] = []
    if len(plan) > 1:
        first.append(list(reversed(plan)))
        if len(plan) == 2 and plan[0][1] != plan[1][1]:
            first.append([(plan[0][0], plan[1][1]), (plan[1][0], plan[0][1])])  # actions exchanged
    for index, (actor, action) in enumerate(plan):
        antonym = ACTION_BY_NAME[action].antonym
        if antonym is not None:
            first.append(_replace(plan, index, antonym))
    rest = [_replace(plan, index, other) for index, (_, action) in enumerate(plan)
            for other in ACTION_NAMES if other != action]
    chosen: dict[str, None] = {}
    for candidate in first:
        text = caption(kinds, candidate)
        if text != positive:
            chosen.setdefault(text, None)
    for index in rng.permutation(len(rest)):
        if len(chosen) >= count:
            break
        text = caption(kinds, rest[index])
        if text != positive:
            chosen.setdefault(text, None)
    negatives = list(chosen)[:count]
    if len(negatives) < count:
        raise ValueError(f"only {len(negatives)} distinct negatives for {positive!r}")
    return [negatives[i] for i in rng.permutation(len(negatives))]


def order_swapped(rng: np.random.Generator, kinds: Sequence[ObjectKind], plan: Plan, most: int = 3) -> list[str]:
    """Up to ``most`` captions of the same steps in another order, the full reversal first."""
    if len(plan) < 2:
        raise ValueError("an order swap needs at least two steps")
    positive = caption(kinds, plan)
    reversal = caption(kinds, list(reversed(plan)))
    others = [caption(kinds, [plan[i] for i in order])
              for order in itertools.permutations(range(len(plan))) if list(order) != list(range(len(plan)))]
    chosen = dict.fromkeys([reversal] if reversal != positive else [])
    for index in rng.permutation(len(others)):
        if len(chosen) >= most:
            break
        if others[index] != positive:
            chosen.setdefault(others[index], None)
    return list(chosen)


def object_replaced(rng: np.random.Generator, kinds: Sequence[ObjectKind], plan: Plan) -> str:
    """The caption with the acting objects replaced by objects absent from the clip (ActionBench OR)."""
    absent = [o for o in OBJECTS if o not in kinds]
    replacement = list(kinds)
    for actor in sorted({actor for actor, _ in plan}):
        pick = absent.pop(int(rng.integers(0, len(absent))))
        replacement[actor] = pick
    return caption(replacement, plan)


def _replace(plan: Plan, index: int, action: str) -> list[tuple[int, str]]:
    changed = list(plan)
    changed[index] = (changed[index][0], action)
    return changed
