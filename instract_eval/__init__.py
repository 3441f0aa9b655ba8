"""instract-eval: evaluation of video-language models on action understanding.

``instract_eval.evaluate(models, tasks, ...)`` runs models on tasks as ``instract-eval run`` does
(see `instract_eval.api`); it is imported on first use, so ``import instract_eval`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "evaluate":
        from .api import evaluate

        return evaluate
    raise AttributeError(f"module 'instract_eval' has no attribute {name!r}")
