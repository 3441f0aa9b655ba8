"""Running models on tasks: the shared encoder (batching, dedup, cache, ranks) and the run itself.

`run_evaluation` lives in `instract_eval.runner.run` and is not imported here: the task engines
import the encoder from this package, and the run imports the engines.
"""

from .cache import OutputCache, default_cache_dir
from .distributed import SINGLE_PROCESS, Ranks, ranks_from_environment
from .encoder import PRECISIONS, EncodedVideos, Encoder, ScoredPairs

__all__ = ["OutputCache", "default_cache_dir", "SINGLE_PROCESS", "Ranks", "ranks_from_environment", "PRECISIONS",
           "EncodedVideos", "Encoder", "ScoredPairs"]
