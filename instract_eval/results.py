"""Result records: one JSON file per (model, task), with provenance, and its per-sample log.

A record says what was measured (metrics with unit and direction), on what (the task spec and its
hash, a fingerprint of the dataset files, coverage), with what (the model's fingerprint, the frame
spec, device, precision) and by what (package, torch and Python versions, the git revision of the
source when it is a checkout). The leaderboard and the regression gate read these files and
nothing else, so everything they need is here.

Files are written atomically: a run killed while writing leaves the previous record or none.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .files import make_directories, write_atomic, write_together, writing

__all__ = ["SCHEMA", "read_records", "read_record_files", "read_sample_log", "sample_log_of", "describe_metrics",
           "dataset_fingerprint", "software_versions", "record_path", "samples_path", "write_record", "to_json",
           "is_finite_number", "label_by_source", "model_label"]

SCHEMA = "instract-eval/result/1"


def model_label(record: Mapping[str, Any]) -> str:
    """The name a record's model goes by in tables and file names: its label, else its name."""
    return record["model"].get("label") or record["model"]["name"]


def is_finite_number(value: Any) -> bool:
    """A metric value that can be shown, compared or plotted: a real number, not a bool, not NaN or
    infinite (JSON lets result files hold all of those)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def describe_metrics(metrics: Mapping[str, Any], declared: Sequence[Any] = ()) -> dict[str, dict]:
    """``{name: {"value", "unit", "direction", "headline"}}`` for every metric of a result.

    Nested metrics (retrieval's ``{"t2v": {"R@1": ...}}``) are flattened to dotted names
    (``t2v.R@1``), the names ``tasks.yaml`` declares.

    The task's declared metrics (``tasks.yaml``) fix the direction of its headline metrics; the
    others follow their names: ranks and costs are lower-better, counts and spreads have no
    direction, hallucination rates are lower-better, the rest are fractions where higher is better.
    """
    declared_direction = {metric.name: metric.direction for metric in declared}
    described = {}
    for name, value in _flatten(metrics).items():
        unit, direction = _unit_and_direction(name)
        described[name] = {"value": value, "unit": unit,
                           "direction": declared_direction.get(name, direction),
                           "headline": name in declared_direction}
    return described


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _unit_and_direction(name: str) -> tuple[str, str | None]:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("std", "sample_std"):
        return "fraction", None
    if leaf.startswith("num_") or name.startswith("num_"):
        return "count", None
    if "rank" in leaf:
        return "rank", "lower"
    if "dtw_cost" in leaf:
        return "cost", "lower"
    if name.startswith("hallucination."):
        return "fraction", "lower"
    return "fraction", "higher"


def dataset_fingerprint(files: Mapping[str, Path], videos_key: str = "videos") -> dict:
    """sha256 over the task's annotation files (contents) and its video directory (names and sizes).

    Hashing every video's bytes would cost as much as decoding them; names and sizes catch a
    missing, added or re-encoded file, which is what changes a result.
    """
    digest = hashlib.sha256()
    count = 0
    for key in sorted(files):
        path = Path(files[key])
        digest.update(f"[{key}]".encode())
        for file in _files_under(path):
            relative = file.relative_to(path).as_posix() if path.is_dir() else file.name
            digest.update(relative.encode() + b"\0")
            if key == videos_key:
                digest.update(str(file.stat().st_size).encode() + b"\0")
            else:
                digest.update(hashlib.sha256(file.read_bytes()).digest())
            count += 1
    return {"sha256": digest.hexdigest(), "files": count}


def _files_under(path: Path) -> Iterable[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return []


def software_versions() -> dict:
    """Versions of what computed the numbers, and the source revision when it is a git checkout."""
    import torch

    from . import __version__

    return {
        "instract_eval": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_revision": _git_revision(Path(__file__).resolve().parent.parent),
    }


def _git_revision(directory: Path) -> str | None:
    """``HEAD`` of the checkout the package runs from (``+dirty`` with local changes), or None."""
    if not (directory / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _safe_name(name: str) -> str:
    """A model or task name as one path component (``pkg.mod:factory`` -> ``pkg.mod_factory``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def record_path(output: Path, model: str, task: str) -> Path:
    return Path(output) / _safe_name(model) / f"{_safe_name(task)}.json"


def samples_path(output: Path, model: str, task: str) -> Path:
    return Path(output) / _safe_name(model) / f"{_safe_name(task)}.samples.jsonl"


def to_json(value: Any) -> Any:
    """Plain JSON types for numpy scalars and arrays, tuples and paths (NaN is refused later)."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_record(output: Path, record: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] | None) -> Path:
    """Write the record (and the per-sample log when ``samples`` is given); returns the record's path.

    Files are named by the model's ``label`` (its name, or name@fingerprint when one run has the
    same model twice with different arguments). The record and its log are written together
    (`write_together`): a write that fails leaves the previous pair, never a new log beside an old
    record. A record written without a log removes an older log, which would belong to another run.
    """
    model, task = model_label(record), record["task"]["name"]
    path = record_path(output, model, task)
    log = samples_path(output, model, task)
    with writing(path):
        make_directories(path.parent)
    text = json.dumps(to_json(record), indent=2, allow_nan=False) + "\n"
    if samples is not None:
        lines = (json.dumps(to_json({"task": task, "model": model, **sample}), allow_nan=False) for sample in samples)
        write_together([(log, "".join(line + "\n" for line in lines)), (path, text)])
        return path
    with writing(log):
        log.unlink(missing_ok=True)
    write_atomic(path, text)
    return path


def read_records(source: str | os.PathLike) -> list[dict]:
    """The result records in ``source``: one record file, or every ``*.json`` under a directory.

    A file that is not a record of this schema is an `InputError` naming it and the field.
    """
    return [record for _, record in read_record_files(source)]


def read_record_files(source: str | os.PathLike) -> list[tuple[Path, dict]]:
    """Like `read_records`, with the file each record came from (to find its sample log beside it)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if not p.name.startswith("."))
        if not files:
            raise InputError("no result records (*.json) in this directory", path=path)
    elif path.is_file():
        files = [path]
    else:
        raise InputError("no such file or directory", path=path)
    return [(file, _read_record(file)) for file in files]


def sample_log_of(record_file: str | os.PathLike) -> Path:
    """The per-sample log `write_record` puts beside a record: ``TASK.json`` -> ``TASK.samples.jsonl``."""
    path = Path(record_file)
    return path.with_name(f"{path.stem}.samples.jsonl")


def read_sample_log(record_file: str | os.PathLike) -> list[dict] | None:
    """The per-sample log beside ``record_file``, one dict per line in file order; None when there is none.

    Line ``n`` of the file is element ``n - 1``, so later errors can name the line. A line that is
    not a JSON object, or a sample without a string ``id``, is an `InputError` naming file and line.
    """
    log = sample_log_of(record_file)
    if not log.is_file():
        return None
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"not a readable text file ({error})", path=log) from None
    samples = []
    for number, line in enumerate(lines, start=1):
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"not a JSON object ({error.msg})", path=log, field=f"line {number}") from None
        if not isinstance(sample, dict):
            raise InputError(f"not a JSON object (a {type(sample).__name__})", path=log, field=f"line {number}")
        if not isinstance(sample.get("id"), str):
            raise InputError("missing the sample's string id", path=log, field=f"line {number}: id")
        samples.append(sample)
    return samples


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"not a readable JSON file ({error})", path=path) from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        found = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise InputError(f"not an instract-eval result record (schema {found!r}, expected {SCHEMA!r})",
                         path=path, field="schema")
    for section, key in (("model", "name"), ("task", "name")):
        if not isinstance(record.get(section), dict) or not isinstance(record[section].get(key), str):
            raise InputError(f"missing {section}.{key}", path=path, field=f"{section}.{key}")
    for section in ("task", "dataset", "details", "run", "versions", "ties"):
        if record.get(section) is not None and not isinstance(record[section], dict):
            raise InputError(f"{section} must be a JSON object", path=path, field=section)
    if "label" in record["model"] and not (isinstance(record["model"]["label"], str) and record["model"]["label"]):
        raise InputError("model.label must be a non-empty string", path=path, field="model.label")
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        raise InputError("missing metrics", path=path, field="metrics")
    for name, metric in metrics.items():
        if not isinstance(metric, dict) or not {"value", "unit", "direction"} <= set(metric):
            raise InputError("each metric needs value, unit and direction", path=path, field=f"metrics.{name}")
        _check_metric(name, metric, path)
        metric.setdefault("headline", False)
    return record


_DIRECTIONS = ("higher", "lower", None)
# Relative changes are on the fraction scale (shown as percentages) but not in its range: LAP, the
# relative drop of average mAP under conflicting descriptions, is negative when the conflicting run
# scores higher, and at most 1.
_RELATIVE_CHANGES = ("LAP",)


def fraction_range(name: str) -> tuple[float, float]:
    """The values a metric of unit ``fraction`` can take: [0, 1], or (-inf, 1] for a relative change."""
    return (-math.inf, 1.0) if name.rsplit(".", 1)[-1] in _RELATIVE_CHANGES else (0.0, 1.0)


def _check_metric(name: str, metric: Mapping[str, Any], path: Path) -> None:
    """A metric the gate, compare and the leaderboard can trust: a known direction (an unknown one
    would leave the metric ungated without a word), a unit, and a fraction inside its range (a
    ``1e308`` would show as ``inf`` and win every column). NaN and null stay allowed: they read as
    "no value" everywhere."""
    field = f"metrics.{name}"
    if metric["direction"] not in _DIRECTIONS:
        raise InputError(f"direction must be 'higher', 'lower' or null, got {metric['direction']!r}", path=path,
                         field=f"{field}.direction")
    if not isinstance(metric["unit"], str) or not metric["unit"]:
        raise InputError(f"unit must be a non-empty string, got {metric['unit']!r}", path=path, field=f"{field}.unit")
    value = metric["value"]
    if metric["unit"] != "fraction" or not isinstance(value, numbers.Real) or isinstance(value, bool):
        return
    low, high = fraction_range(name)
    if not math.isnan(value) and not (math.isfinite(value) and low <= value <= high):
        what = "a fraction must be in [0, 1]" if low == 0 else "a relative change must be finite and at most 1"
        raise InputError(f"{what}, got {value!r}", path=path, field=f"{field}.value")



def label_by_source(sources: Sequence[Path]) -> list[dict]:
    """The records of several sources (files or result directories), in order. A model label found
    in more than one source becomes ``SOURCE:label`` (SOURCE being the directory or file name, or
    the whole path where names repeat), so that two runs of one model stay two columns or rows.
    Two records of one label for one task in the same source cannot be told apart: an `InputError`."""
    short = [source.name or str(source) for source in sources]
    names = dict(zip(sources, short if len(set(short)) == len(short) else map(str, sources)))
    loaded = [(names[source], read_record_files(source)) for source in sources]
    owners: dict[str, set[str]] = {}
    for source, files in loaded:
        first: dict[tuple[str, str], Path] = {}
        for path, record in files:
            label = model_label(record)
            key = (label, record["task"]["name"])
            if key in first:
                raise InputError(f"a second record of model {label} for task {key[1]} (the first is {first[key]}); "
                                 "give the two runs as separate sources", path=path, field="model.label")
            first[key] = path
            owners.setdefault(label, set()).add(source)
    labelled = []
    for source, files in loaded:
        for _, record in files:
            label = model_label(record)
            record["model"]["label"] = f"{source}:{label}" if len(owners[label]) > 1 else label
            labelled.append(record)
    return labelled
