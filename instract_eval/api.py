"""The Python API behind `instract-eval run`: ``instract_eval.evaluate(models, tasks, ...)``.

The command line is a thin layer over this function, so a notebook or a training loop gets the
same run (dedup, cache, ranks, records) as the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .encoding import default_cache_dir, ranks_from_environment
from .runner.run import ModelRequest, RunOptions, RunReport, run_evaluation
from .tasks.resolve import task_registry

__all__ = ["evaluate", "task_registry", "DEFAULT_MODELS", "DEFAULT_TASKS"]

DEFAULT_MODELS = ("synth-bag-of-frames", "synth-temporal", "actionformer-synth")
DEFAULT_TASKS = ("synth",)


def evaluate(models: str | ModelRequest | Sequence[str | ModelRequest] = DEFAULT_MODELS,
             tasks: str | Sequence[str] = DEFAULT_TASKS, *,
             include: Sequence[str | os.PathLike] = (), cache_dir: str | os.PathLike | None = None,
             use_cache: bool = True, progress: Any = None, environ: Mapping[str, str] = os.environ,
             **options: Any) -> RunReport:
    """Evaluate ``models`` (names, or `ModelRequest` with factory arguments) on ``tasks`` (task or group names).

    ``options`` are the fields of `RunOptions` (``output``, ``batch_size``, ``workers``, ``device``,
    ``precision``, ``limit``, ``log_samples``, ``allow_missing``, ``data_root``); ``output=None``
    writes no files. Outputs are cached under ``cache_dir`` (default `default_cache_dir`) unless
    ``use_cache`` is false.
    """
    models = [models] if isinstance(models, (str, ModelRequest)) else models
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    requests = [model if isinstance(model, ModelRequest) else ModelRequest(model) for model in models]
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir(environ)
    ranks = ranks_from_environment(environ, device=options.get("device"))
    registry = task_registry(tasks, include, cache_root, ranks)
    run_options = RunOptions(cache_dir=cache_root / "outputs" if use_cache else None, **options)
    return run_evaluation(requests, list(tasks), registry, run_options, progress=progress, environ=environ)
