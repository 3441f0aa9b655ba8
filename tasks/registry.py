"""The task registry: `tasks.yaml` (shipped in the package) plus the user's `--include` files.

Each task entry is validated into a `TaskSpec`; groups name lists of tasks. A mistake in a
registry file is an `InputError` naming the file and the entry (``tasks.instract-semantic.kind``),
so a user's own task file fails the same way the packaged one would. A task's ``protocol`` is
checked against its kind's typed schema and its declared metrics against the names its engine
reports (`schema`), so a typo there is refused too instead of running with a default.

Data locations are resolved, not assumed. A path in a task's ``data`` section is relative to a
data root chosen, first match wins, from:

1. ``INSTRACT_EVAL_DATA_<TASK>`` (the task name upper-cased, ``-`` → ``_``), one task's own root;
2. ``--data-root DIR`` on the command line;
3. ``INSTRACT_EVAL_DATA_ROOT``;
4. for a task from an included file, the directory of that file (so a generated world that writes
   its own ``tasks.yaml`` next to its data works where it lies).

``{builtin: FILE}`` names a file shipped in ``instract_eval/data/resources``; absolute paths are
used as written. A task whose files are not there reports exactly which are missing, what to
download from where, and which flag or variable points the tool at them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import InputError
from .schema import check_metrics, check_protocol, engine_metrics

KINDS = ("mcq", "retrieval", "classification", "localization", "alignment")
TIE_POLICIES = ("expected", "optimistic", "pessimistic")
DIRECTIONS = ("higher", "lower")
REQUIRED_KEYS = ("kind", "paper", "description", "format", "data", "protocol", "ties", "seed", "metrics")
OPTIONAL_KEYS = ("candidates", "transform")
# Keys of a task's `data` section that are prose for the user, not files to look for.
DATA_NOTE_KEYS = ("download",)
DATA_ROOT_VARIABLE = "INSTRACT_EVAL_DATA_ROOT"


@dataclass(frozen=True)
class MetricSpec:
    """A headline metric of a task and whether higher or lower values are better."""

    name: str
    direction: str


@dataclass(frozen=True)
class TaskSpec:
    """One registered benchmark protocol, as validated from a registry file."""

    name: str
    kind: str
    paper: str
    description: str
    format: str
    data: Mapping[str, Any]
    protocol: Mapping[str, Any]
    ties: str
    seed: int
    metrics: tuple[MetricSpec, ...]
    candidates: str | None
    transform: str | None
    source: str
    base_dir: Path | None = field(default=None, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def data_variable(self) -> str:
        """The environment variable that moves this task's data root."""
        return "INSTRACT_EVAL_DATA_" + self.name.upper().replace("-", "_")

    def spec_hash(self) -> str:
        """sha256 of the entry as canonical JSON: equal for equal protocols, whatever the file layout."""
        text = json.dumps({"name": self.name, **self.raw}, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DataLocation:
    """Where a task's files were looked for, and which are missing."""

    task: str
    root: Path | None
    root_from: str
    files: Mapping[str, Path]
    missing: tuple[str, ...]

    @property
    def present(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Registry:
    tasks: Mapping[str, TaskSpec]
    groups: Mapping[str, tuple[str, ...]]
    # Names an unknown name may be told about though they are not loaded here (the embedded world's).
    suggestions: frozenset[str] = frozenset()

    def resolve(self, names: Iterable[str], *, field: str = "--task") -> list[TaskSpec]:
        """Task specs for task or group names, groups expanded, in order, each task once; an unknown
        name is an error on ``field``, the argument that gave the names."""
        chosen: dict[str, TaskSpec] = {}
        for name in names:
            if name in self.groups:
                for member in self.groups[name]:
                    chosen.setdefault(member, self.tasks[member])
            elif name in self.tasks:
                chosen.setdefault(name, self.tasks[name])
            else:
                known = [*self.tasks, *self.groups, *sorted(self.suggestions)]
                raise InputError(f"unknown task or group '{name}'{_suggestion(name, known)}",
                                 field=field)
        return list(chosen.values())

    def groups_of(self, task_name: str) -> list[str]:
        return [group for group, members in self.groups.items() if task_name in members]


def load_registry(includes: Iterable[str | os.PathLike] = ()) -> Registry:
    """The packaged registry merged with the user's files; a name defined twice is an error."""
    text = resources.files("instract_eval.tasks").joinpath("tasks.yaml").read_text(encoding="utf-8")
    source = "tasks.yaml (packaged)"
    # The packaged file is ours and valid: libyaml's parser, when present, reads it in a tenth of the
    # pure-Python parser's time (about 50 ms less for every command that needs the registry).
    document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    tasks, groups = parse_registry(document, source=source, base_dir=None)
    group_source = dict.fromkeys(groups, source)
    for include in includes:
        path = Path(include)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("no such file", path=path, field="--include") from None
        except IsADirectoryError:
            raise InputError("is a directory; --include takes a task file (YAML), such as the tasks.yaml that "
                             "instract-eval synth writes", path=path, field="--include") from None
        except yaml.YAMLError as exc:
            raise InputError(f"not valid YAML ({_first_line(exc)})", path=path) from None
        more_tasks, more_groups = parse_registry(document, source=str(path), base_dir=path.resolve().parent)
        for name in more_tasks:
            if name in tasks or name in groups:
                earlier = tasks[name].source if name in tasks else group_source[name]
                raise InputError(f"'{name}' is already defined in {earlier}", path=path, field=f"tasks.{name}")
        for name in more_groups:
            if name in tasks or name in groups or name in more_tasks:
                raise InputError(f"'{name}' is already defined", path=path, field=f"groups.{name}")
        tasks.update(more_tasks)
        groups.update(more_groups)
        group_source.update(dict.fromkeys(more_groups, str(path)))
    # Group members may live in another file, so they are checked once everything is merged.
    for name, members in groups.items():
        for index, member in enumerate(members):
            if member not in tasks:
                raise InputError(f"unknown task '{member}'{_suggestion(member, tasks)}", path=group_source[name],
                                 field=f"groups.{name}[{index}]")
    return Registry(MappingProxyType(tasks), MappingProxyType(groups))


def parse_registry(document: Any, *, source: str, base_dir: Path | None
                   ) -> tuple[dict[str, TaskSpec], dict[str, tuple[str, ...]]]:
    """Validate one registry document: ``{tasks: {name: entry}, groups: {name: [task, ...]}}``."""
    if not isinstance(document, dict) or not isinstance(document.get("tasks"), dict):
        raise InputError("expected a mapping with a 'tasks' mapping at the top level", path=source, field="tasks")
    tasks = {str(name): _parse_task(str(name), entry, source, base_dir) for name, entry in document["tasks"].items()}
    groups_doc = document.get("groups") or {}
    if not isinstance(groups_doc, dict):
        raise InputError("expected a mapping of group name to task list", path=source, field="groups")
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in groups_doc.items():
        where = f"groups.{name}"
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise InputError("expected a non-empty list of task names", path=source, field=where)
        if name in tasks:
            raise InputError(f"'{name}' is both a task and a group", path=source, field=where)
        groups[str(name)] = tuple(members)
    return tasks, groups


def _parse_task(name: str, entry: Any, source: str, base_dir: Path | None) -> TaskSpec:
    where = f"tasks.{name}"
    if not isinstance(entry, dict):
        raise InputError("expected a mapping", path=source, field=where)
    unknown = sorted(set(entry) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise InputError(f"unknown key '{unknown[0]}'{_suggestion(unknown[0], [*REQUIRED_KEYS, *OPTIONAL_KEYS])}",
                         path=source, field=where)
    for key in REQUIRED_KEYS:
        if key not in entry:
            raise InputError(f"missing required key '{key}'", path=source, field=where)
    kind = entry["kind"]
    if kind not in KINDS:
        raise InputError(f"unknown kind '{kind}' (one of {', '.join(KINDS)})", path=source, field=f"{where}.kind")
    for key in ("paper", "description", "format"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise InputError("expected a non-empty string", path=source, field=f"{where}.{key}")
    for key in ("data", "protocol"):
        if not isinstance(entry[key], dict):
            raise InputError("expected a mapping", path=source, field=f"{where}.{key}")
    for key in OPTIONAL_KEYS:
        if entry.get(key) is not None and (not isinstance(entry[key], str) or not entry[key].strip()):
            raise InputError("expected a non-empty string", path=source, field=f"{where}.{key}")
    if entry["ties"] not in TIE_POLICIES:
        raise InputError(f"unknown tie policy '{entry['ties']}' (one of {', '.join(TIE_POLICIES)})",
                         path=source, field=f"{where}.ties")
    if isinstance(entry["seed"], bool) or not isinstance(entry["seed"], int):
        raise InputError("expected an integer seed", path=source, field=f"{where}.seed")
    for key, value in entry["data"].items():
        if key in DATA_NOTE_KEYS:
            continue
        if not (isinstance(value, str) or (isinstance(value, dict) and "builtin" in value)):
            raise InputError("expected a path or {builtin: FILE}", path=source, field=f"{where}.data.{key}")
    transform = entry.get("transform")
    check_protocol(entry["protocol"], kind=kind, format=entry["format"], transform=transform, source=source,
                   where=where)
    metrics = _parse_metrics(entry["metrics"], source, f"{where}.metrics")
    check_metrics([metric.name for metric in metrics],
                  engine_metrics(kind, entry["format"], transform, entry["protocol"]),
                  kind=kind, source=source, where=f"{where}.metrics")
    return TaskSpec(
        name=name,
        kind=kind,
        paper=entry["paper"],
        description=entry["description"],
        format=entry["format"],
        data=MappingProxyType(dict(entry["data"])),
        protocol=MappingProxyType(dict(entry["protocol"])),
        ties=entry["ties"],
        seed=entry["seed"],
        metrics=metrics,
        candidates=entry.get("candidates"),
        transform=transform,
        source=source,
        base_dir=base_dir,
        raw=MappingProxyType(dict(entry)),
    )


def _parse_metrics(value: Any, source: str, where: str) -> tuple[MetricSpec, ...]:
    if not isinstance(value, list) or not value:
        raise InputError("expected a non-empty list of {name, direction}", path=source, field=where)
    metrics = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InputError("expected {name, direction}", path=source, field=f"{where}[{index}]")
        if item.get("direction") not in DIRECTIONS:
            raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {item.get('direction')!r}",
                             path=source, field=f"{where}[{index}].direction")
        metrics.append(MetricSpec(item["name"], item["direction"]))
    return tuple(metrics)


def builtin_resource(filename: str):
    """A context manager giving the filesystem path of a file shipped in instract_eval/data/resources."""
    return resources.as_file(resources.files("instract_eval.data").joinpath("resources", filename))


def locate_data(spec: TaskSpec, data_root: str | os.PathLike | None = None,
                environ: Mapping[str, str] = os.environ) -> DataLocation:
    """Resolve every file of a task's ``data`` section; see the module docstring for the order."""
    root, root_from = _data_root(spec, data_root, environ)
    files: dict[str, Path] = {}
    missing: list[str] = []
    for key, value in spec.data.items():
        if key in DATA_NOTE_KEYS:
            continue
        if isinstance(value, dict):
            resource = resources.files("instract_eval.data").joinpath("resources", value["builtin"])
            if not resource.is_file():
                missing.append(key)
            files[key] = Path(str(resource))
            continue
        path = Path(value)
        if not path.is_absolute():
            if root is None:
                missing.append(key)
                files[key] = path
                continue
            path = root / path
        files[key] = path
        if not path.exists():
            missing.append(key)
    return DataLocation(spec.name, root, root_from, MappingProxyType(files), tuple(missing))


def uses_data_root(spec: TaskSpec) -> bool:
    """Whether any of the task's data paths is relative, so that the data root decides where it is
    read: the embedded world's paths and a user's absolute ones do not, whatever root is set."""
    return any(not isinstance(value, dict) and not Path(value).is_absolute()
               for key, value in spec.data.items() if key not in DATA_NOTE_KEYS)


def require_data(spec: TaskSpec, data_root: str | os.PathLike | None = None,
                 environ: Mapping[str, str] = os.environ) -> DataLocation:
    """`locate_data`, raising one actionable `InputError` when a file is missing."""
    location = locate_data(spec, data_root, environ)
    if location.present:
        return location
    key = location.missing[0]
    where = (f"{location.files[key]} does not exist" if location.root is not None
             else f"no data root is set for '{spec.data[key]}'")
    download = spec.data.get("download")
    raise InputError(
        f"task {spec.name}: {where}. "
        + (f"Download: {' '.join(str(download).split())}. " if download else "")
        + f"Point the tool at it with --data-root DIR, {DATA_ROOT_VARIABLE}, or {spec.data_variable} for this task",
        field=f"data.{key}",
    )


def _data_root(spec: TaskSpec, data_root, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    if environ.get(spec.data_variable):
        return Path(environ[spec.data_variable]), spec.data_variable
    if data_root is not None:
        return Path(data_root), "--data-root"
    if environ.get(DATA_ROOT_VARIABLE):
        return Path(environ[DATA_ROOT_VARIABLE]), DATA_ROOT_VARIABLE
    if spec.base_dir is not None:
        return spec.base_dir, spec.source
    return None, "unset"


def _suggestion(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
