"""Every metric of the five source papers, as pure numpy functions.

No torch, no file I/O, no global state: inputs are arrays, outputs are numbers, arrays or plain
dicts. Rates are fractions in [0, 1] and ranks are 1-based. Each function's docstring states its
formula, its tie policy and the reference implementation whose numbers it reproduces.

- `ranking`: ranks of a ground truth among candidates, R@K, median/mean rank, accuracy (MCQ).
- `retrieval`: text-to-video and video-to-text, several captions per video, pooled retrieval.
- `classification`: accuracy, scikit-learn F1, runs summaries, harmonic mean, random baseline.
- `localization`: tIoU and ActivityNet-style per-class AP and mAP.
- `localization_diagnostics`: ActionVLM's LAP, hallucination rates, mConf, mLen and acc@length.
- `alignment`: DTW, Soft-DTW and InstrAction's normalized DTW cost.
- `statistics`: clustered and paired bootstrap confidence intervals.
"""

from . import (
    alignment,
    classification,
    localization,
    localization_diagnostics,
    ranking,
    retrieval,
    statistics,
)
from .alignment import *  # noqa: F403
from .classification import *  # noqa: F403
from .localization import *  # noqa: F403
from .localization_diagnostics import *  # noqa: F403
from .ranking import *  # noqa: F403
from .retrieval import *  # noqa: F403
from .statistics import *  # noqa: F403

__all__ = [
    *alignment.__all__,
    *classification.__all__,
    *localization.__all__,
    *localization_diagnostics.__all__,
    *ranking.__all__,
    *retrieval.__all__,
    *statistics.__all__,
]
