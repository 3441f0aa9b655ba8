"""What the engines share about encoding: their encoder, and cosine scores of embeddings.

Engines never call a model's encoders themselves: they ask an `instract_eval.runner.Encoder`,
which encodes each unique clip and text once, batched and cached. The runner passes one encoder
to every task of a run (that is how a clip shared by two tasks is encoded once); a direct call to
an engine gets a private one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from instract_eval.runner import Encoder

__all__ = ["engine_encoder", "cosine_scores"]


def engine_encoder(model: Any, encoder: Encoder | None, *, batch_size: int, num_workers: int,
                   allow_missing: bool) -> Encoder:
    """``encoder`` when the runner gave one (it must wrap ``model``), else a private one."""
    if encoder is None:
        return Encoder(model, batch_size=batch_size, num_workers=num_workers, allow_missing=allow_missing)
    if encoder.model is not model:
        raise ValueError("the encoder wraps another model than the one being evaluated")
    return encoder


def cosine_scores(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query ``[N, D]`` with its own candidates ``[N, C, D]`` -> ``[N, C]``."""
    q = queries / np.maximum(np.linalg.norm(queries, axis=-1, keepdims=True), 1e-12)
    c = candidates / np.maximum(np.linalg.norm(candidates, axis=-1, keepdims=True), 1e-12)
    return np.einsum("nd,ncd->nc", q, c)
