"""One way from task and group names to task specs, shared by `run`, `check` and `list tasks`.

The ``synth`` group and its ``synth-*`` tasks are the embedded default: a procedural world that
`instract_eval.synth.ensure_world` generates into the cache on first use. Every command must
see them the same way, or `check synth` calls unknown a name `run` accepts. So the registry a
command works with always comes from here: the packaged tasks, the user's ``--include`` files,
and the embedded world when one of its names is asked for (or, for a listing, always), unless an
included file already registers a ``synth`` group (a world the user generated wins). Any other name
leaves the cache alone, but a misspelt embedded name still gets the embedded names suggested.

The embedded world lies in the cache, not under a data root, so its tasks read their files
there whatever ``--data-root`` or ``$INSTRACT_EVAL_DATA_ROOT`` say for the user's benchmarks.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import MappingProxyType

from ..errors import InputError
from .registry import DATA_NOTE_KEYS, Registry, TaskSpec, load_registry, parse_registry

__all__ = ["EMBEDDED_GROUP", "embedded_world_dir", "is_embedded", "listing_registry", "task_registry"]

EMBEDDED_GROUP = "synth"
EMBEDDED_SEED = 0
EMBEDDED_SIZE = "default"


def embedded_world_dir(cache_root: str | os.PathLike) -> Path:
    """Where the embedded world lives in a cache."""
    return Path(cache_root) / "synth-world"


@functools.cache
def embedded_names() -> frozenset[str]:
    """The embedded world's task and group names, read from the registry text its generator writes."""
    import yaml

    from ..synth import writers
    from ..synth.sizes import world_size

    document = yaml.safe_load(writers.tasks_yaml(EMBEDDED_SEED, world_size(EMBEDDED_SIZE)))
    return frozenset([*document["tasks"], *document["groups"]])


def wants_embedded_world(registry: Registry, names: Iterable[str]) -> bool:
    """Whether the embedded world joins: one of its names is asked for and no file registers ``synth``."""
    return EMBEDDED_GROUP not in registry.groups and not embedded_names().isdisjoint(names)


def task_registry(names: Sequence[str], include: Sequence[str | os.PathLike] = (),
                  cache_root: str | os.PathLike | None = None, ranks=None) -> Registry:
    """The registry in which ``names`` are resolved: see the module docstring.

    Generates the embedded world when it is needed and not yet in ``cache_root`` (default: the
    run's cache, `default_cache_dir`); under several ranks rank 0 generates and the others wait.
    """
    registry = load_registry(include)
    if EMBEDDED_GROUP in registry.groups:
        return registry
    if not wants_embedded_world(registry, names):
        return dataclasses.replace(registry, suggestions=embedded_names())
    tasks_file = _ensure_embedded_world(_cache_root(cache_root), ranks)
    return _own_data_root(load_registry([*include, tasks_file]), tasks_file)


def listing_registry(include: Sequence[str | os.PathLike] = (),
                     cache_root: str | os.PathLike | None = None) -> Registry:
    """Every task a name could resolve to, the embedded world's included, generating nothing.

    A listing must not write a world into the cache, so the embedded tasks are read from the
    registry text the generator writes (`instract_eval.synth.writers.tasks_yaml`), placed where the
    world is or will be; `is_embedded` tells them apart.
    """
    import yaml

    from ..synth import writers
    from ..synth.sizes import world_size

    registry = load_registry(include)
    if EMBEDDED_GROUP in registry.groups:
        return registry
    world = embedded_world_dir(_cache_root(cache_root))
    tasks_file = world / writers.TASKS
    document = yaml.safe_load(writers.tasks_yaml(EMBEDDED_SEED, world_size(EMBEDDED_SIZE)))
    tasks, groups = parse_registry(document, source=str(tasks_file), base_dir=world.resolve())
    for name in [*tasks, *groups]:
        if name in registry.tasks or name in registry.groups:
            raise InputError(f"'{name}' is already defined (the embedded synthetic world defines it too)",
                             path=registry.tasks[name].source if name in registry.tasks else None,
                             field=f"tasks.{name}")
    merged = Registry(MappingProxyType({**registry.tasks, **tasks}), MappingProxyType({**registry.groups, **groups}))
    return _own_data_root(merged, tasks_file)


def is_embedded(spec: TaskSpec, cache_root: str | os.PathLike | None = None) -> bool:
    """Whether ``spec`` is a task of the embedded world (of this cache)."""
    from ..synth import writers

    return spec.source == str(embedded_world_dir(_cache_root(cache_root)) / writers.TASKS)


def _own_data_root(registry: Registry, tasks_file: Path) -> Registry:
    """The embedded tasks with their relative data paths made absolute under the world's directory
    (absolute paths are used as written, whatever the data root); their protocol hash is unchanged."""
    tasks = {name: _anchored(spec) if spec.source == str(tasks_file) else spec
             for name, spec in registry.tasks.items()}
    return Registry(MappingProxyType(tasks), registry.groups)


def _anchored(spec: TaskSpec) -> TaskSpec:
    data = {key: str(spec.base_dir / value) if key not in DATA_NOTE_KEYS and isinstance(value, str) else value
            for key, value in spec.data.items()}
    return dataclasses.replace(spec, data=MappingProxyType(data))


def _cache_root(cache_root: str | os.PathLike | None) -> Path:
    from ..paths import default_cache_dir

    return Path(cache_root) if cache_root is not None else default_cache_dir()


def _ensure_embedded_world(cache_root: Path, ranks) -> Path:
    """The embedded world's tasks file, generating the world first when the cache lacks it."""
    from ..files import require_writable_directory, writing
    from ..synth import ensure_world, read_manifest

    world = embedded_world_dir(cache_root)
    is_main = ranks is None or ranks.is_main
    if is_main:
        if read_manifest(world) is None:
            # An unwritable cache or a full disk is one line naming the world, not a traceback.
            require_writable_directory(cache_root, "--cache-dir")
            print(f"generating the synthetic action world in {world} (first run only, a few seconds)",
                  file=sys.stderr)
        with writing(world):
            ensure_world(world, seed=EMBEDDED_SEED, size=EMBEDDED_SIZE)
    if ranks is not None:
        ranks.barrier()
    return read_manifest(world).tasks_file
