"""Model adapters (``instract_eval.adapters``): the registry, the model cards and one module per family.

``create_model``, ``available_models``, ``register_model`` and ``card_of`` are re-exported from
`instract_eval.adapters.registry`, imported on first use so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_model", "available_models", "register_model", "card_of", "model_fingerprint"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
