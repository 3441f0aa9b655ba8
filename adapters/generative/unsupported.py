"""``vl-jepa`` and ``timemarker``: baselines of the papers that cannot be run, listed with the reason.

Both are compared against in the papers this harness reproduces, so a user looks for them. Neither
has published weights (checked for this port: VL-JEPA, arXiv 2512.10942, has no official code or
weights, only community reimplementations; TimeMarker's repository, TimeMarker-LLM/TimeMarker,
holds a README and no checkpoint). Their cards say so with status ``unsupported``, ``list models``
shows the reason, and creating either refuses with that reason in one line, instead of "unknown
model".
"""

from __future__ import annotations

from typing import Any

from instract_eval.errors import InputError

from ..cards import UNSUPPORTED, ModelCard
from ..protocols import DUAL_ENCODER, LOCALIZER, PAIR_SCORER
from ..registry import register_model

__all__ = ["VL_JEPA_CARD", "TIMEMARKER_CARD"]

VL_JEPA_CARD = ModelCard(
    family="vl-jepa",
    description="VL-JEPA (V-JEPA 2 video encoder, a predictor and an EmbeddingGemma text target space)",
    capabilities=(DUAL_ENCODER,),
    status=UNSUPPORTED,
    status_reason="no published weights: VL-JEPA (arXiv 2512.10942) has no official code or checkpoint, "
                  "only community reimplementations",
    tokenizer="EmbeddingGemma (per the paper)",
    code_licence="none published",
    weights_licence="none published",
    paper="Chen et al., VL-JEPA: Joint Embedding Predictive Architecture for Vision-language, arXiv 2512.10942 "
          "(2025)",
    citation="chen2025vljepa",
)

TIMEMARKER_CARD = ModelCard(
    family="timemarker",
    description="TimeMarker (Llama-3-8B video LLM with sec{t} temporal separators), a QA-style localizer",
    capabilities=(PAIR_SCORER, LOCALIZER),
    status=UNSUPPORTED,
    status_reason="no published weights: the TimeMarker-LLM/TimeMarker repository holds a README only, "
                  "no checkpoint or inference code",
    tokenizer="Llama-3 (per the paper)",
    code_licence="none published",
    weights_licence="none published",
    paper="Chen et al., TimeMarker: A Versatile Video-LLM for Long and Short Video Understanding with Superior "
          "Temporal Localization Ability, arXiv 2411.18211 (2024)",
    citation="chen2024timemarker",
)


def _refuse(name: str, card: ModelCard) -> None:
    raise InputError(f"model {name} is {card.status}: {card.status_reason}", field="--model")


@register_model("vl-jepa", card=VL_JEPA_CARD)
def vl_jepa(**kwargs: Any) -> Any:
    """VL-JEPA: listed, not creatable (no published weights)."""
    _refuse("vl-jepa", VL_JEPA_CARD)


@register_model("timemarker", card=TIMEMARKER_CARD)
def timemarker(**kwargs: Any) -> Any:
    """TimeMarker: listed, not creatable (no published weights)."""
    _refuse("timemarker", TIMEMARKER_CARD)
