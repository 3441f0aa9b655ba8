"""What the engines share: the capability each engine needs (one check), and cosine scores.

Engines never call a model's encoders themselves: they take an `instract_eval.encoding.Encoder`,
which wraps the model and encodes each unique clip and text once, batched and cached. The run
passes one encoder to every task (that is how a clip shared by two tasks is encoded once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from instract_eval.adapters.protocols import (DUAL_ENCODER, FIXED_LABEL_CLASSIFIER, LOCALIZER, PAIR_SCORER,
                                              TOKEN_ENCODER, require_capability, scoring_description)

__all__ = ["CAPABILITY_OF_KIND", "engine_capability", "cosine_scores", "pair_scoring"]

# The capabilities each engine can work with, in order of preference.
CAPABILITY_OF_KIND: Mapping[str, tuple[str, ...]] = {
    "mcq": (DUAL_ENCODER, PAIR_SCORER),
    "retrieval": (DUAL_ENCODER, PAIR_SCORER),
    "classification": (DUAL_ENCODER, PAIR_SCORER, FIXED_LABEL_CLASSIFIER),
    "localization": (LOCALIZER, DUAL_ENCODER),
    "alignment": (TOKEN_ENCODER,),
}


def engine_capability(model: Any, kind: str, task: str) -> str:
    """The capability ``model`` serves a ``kind`` task with, or one `InputError` naming what it lacks.

    The one capability check: the engines call it, and so does the run before any decoding.
    """
    return require_capability(model, CAPABILITY_OF_KIND[kind], task)


def pair_scoring(model: Any, pairs: int) -> dict:
    """The result's ``scoring`` for a pair scorer: how many (clip, caption) pairs, and how it scores."""
    scoring: dict[str, Any] = {"method": "pair scorer", "pairs": pairs}
    protocol = scoring_description(model)
    if protocol is not None:
        scoring["protocol"] = protocol
    return scoring


def cosine_scores(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query ``[N, D]`` with its own candidates ``[N, C, D]`` -> ``[N, C]``."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=-1, keepdims=True), 1e-12)
    c = candidates / np.maximum(np.linalg.norm(candidates, axis=-1, keepdims=True), 1e-12)
    return np.einsum("nd,ncd->nc", q, c)
