"""Task kinds and the task registry (`tasks.yaml`, shipped inside this package)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@lru_cache(maxsize=1)
def registered_tasks() -> dict[str, dict[str, Any]]:
    """The ``tasks`` mapping of the packaged ``tasks.yaml``, keyed by task name."""
    text = resources.files(__name__).joinpath("tasks.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    return dict(document["tasks"])


def task(name: str) -> dict[str, Any]:
    """One registered task; an unknown name raises `KeyError` listing the known ones."""
    tasks = registered_tasks()
    if name not in tasks:
        raise KeyError(f"unknown task '{name}' (registered: {', '.join(sorted(tasks))})")
    return tasks[name]
