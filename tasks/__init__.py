"""Task kinds and the task registry (`tasks.yaml`, shipped inside this package).

`registry` validates the packaged `tasks.yaml` and the user's `--include` files into `TaskSpec`s
and resolves where each task's data lies.
"""

from __future__ import annotations

from functools import lru_cache

from .registry import DataLocation, MetricSpec, Registry, TaskSpec, load_registry, locate_data, require_data

__all__ = ["DataLocation", "MetricSpec", "Registry", "TaskSpec", "load_registry", "locate_data", "require_data",
           "packaged_registry", "task"]


@lru_cache(maxsize=1)
def packaged_registry() -> Registry:
    """The registry shipped with the package, without user files."""
    return load_registry()


def task(name: str) -> TaskSpec:
    """One task of the packaged registry; an unknown name raises `InputError` with close matches."""
    registry = packaged_registry()
    if name not in registry.tasks:
        registry.resolve([name])  # raises, naming close matches
    return registry.tasks[name]
