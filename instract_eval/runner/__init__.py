"""`instract-eval run`: models x tasks through one shared encoder per model, to result records.

It sits above the task engines (`instract_eval.tasks`), which sit above the encoder
(`instract_eval.encoding`): data flows one way, and no layer imports the one above it.
"""

from .run import ModelRequest, RunOptions, RunReport, pick_device, run_evaluation

__all__ = ["ModelRequest", "RunOptions", "RunReport", "pick_device", "run_evaluation"]
