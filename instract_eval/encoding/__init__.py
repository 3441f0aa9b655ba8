"""The engines' one door to a model: the shared `Encoder` (batching, dedup, cache, ranks).

This layer sits below the task engines (`instract_eval.tasks`) and above the media pipeline and
the adapters' capabilities; the run (`instract_eval.runner`) sits above the engines and hands one
encoder per model to every task it runs.
"""

from .cache import OutputCache, default_cache_dir
from .distributed import SINGLE_PROCESS, Ranks, close_process_group, ranks_from_environment
from .encoder import PRECISIONS, EncodedVideos, Encoder, ScoredPairs

__all__ = ["OutputCache", "default_cache_dir", "SINGLE_PROCESS", "Ranks", "close_process_group",
           "ranks_from_environment", "PRECISIONS", "EncodedVideos", "Encoder", "ScoredPairs"]
