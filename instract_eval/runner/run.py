"""`instract-eval run`: models × tasks through one shared encoder per model, to result records.

The order of work, and why:

1. every task spec is resolved and every model created, and each (model, task) pair is checked
   for the capability the task's engine needs, before anything is decoded: a localizer asked for
   retrieval fails at once; a task that came in through a group and that a model cannot serve is
   skipped, and the skip is reported (a task named on its own is an error instead);
2. one `Encoder` per model serves all its tasks, so a clip or text shared by several tasks is
   encoded once, and its disk cache (keyed by the model's fingerprint) lets a second or an
   interrupted run reuse the outputs;
3. under ``torchrun`` every rank runs the same tasks; the encoder splits the unique inputs over
   the ranks and gathers them, so all ranks compute the same metrics and rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from instract_eval.adapters.protocols import capabilities_of, task_frame_spec
from instract_eval.adapters.registry import create_model, model_fingerprint
from instract_eval.errors import InputError, WriteError
from instract_eval.files import require_writable_directory
from instract_eval.results import SCHEMA, dataset_fingerprint, describe_metrics, software_versions, write_record
from instract_eval.tasks.encoding import engine_capability
from instract_eval.tasks.evaluate import evaluate_task
from instract_eval.tasks.registry import Registry, TaskSpec, require_data, uses_data_root

from instract_eval.encoding import Encoder, OutputCache, ranks_from_environment

__all__ = ["RunOptions", "ModelRequest", "RunReport", "run_evaluation", "pick_device"]


@dataclass(frozen=True)
class ModelRequest:
    """A model to evaluate: its registry name and the keyword arguments of its factory."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How to run; the defaults are those of the command line."""

    output: Path | None = Path("results")
    data_root: Path | None = None
    batch_size: int = 8
    workers: int = 0
    device: str | None = None
    precision: str = "fp32"
    limit: int | None = None
    cache_dir: Path | None = None
    log_samples: bool = False
    allow_missing: bool = False


@dataclass
class RunReport:
    """What a run produced: the records (every rank has them), files written (rank 0) and skips."""

    is_main: bool = True  # false on ranks other than 0, which print and write nothing
    records: list[dict] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (model, task, why)


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """The device to run on: ``cuda``/``cuda:N``/``mps``/``cpu``, default the best available.

    Under a launcher each rank takes the GPU of its local rank.
    """
    if requested is None:
        if torch.cuda.is_available():
            requested = "cuda"
        elif torch.backends.mps.is_available():
            requested = "mps"
        else:
            requested = "cpu"
    kind = requested.split(":", 1)[0]
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError("CUDA is not available on this machine; use --device cpu", field="--device")
        device = torch.device(requested if ":" in requested else f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        return device
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise InputError("MPS is not available on this machine; use --device cpu", field="--device")
        return torch.device("mps")
    if requested == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device '{requested}' (choose cuda, cuda:N, mps or cpu)", field="--device")


def run_evaluation(models: Sequence[ModelRequest], task_names: Sequence[str], registry: Registry,
                   options: RunOptions = RunOptions(), *, progress: Any = None,
                   environ: Mapping[str, str] = os.environ) -> RunReport:
    """Evaluate every model on every task; see the module docstring for the order of work."""
    ranks = ranks_from_environment(environ, device=options.device)
    device = pick_device(options.device, ranks.local_rank)
    if options.precision == "fp16" and device.type == "cpu":
        raise InputError("fp16 autocast needs a GPU; use --precision bf16 or fp32 on the CPU", field="--precision")
    for directory, flag in ((options.output, "--output"), (options.cache_dir, "--cache-dir")):
        require_writable_directory(directory, flag)
    if isinstance(options.workers, bool) or not isinstance(options.workers, int) or options.workers < 0:
        raise InputError(f"the number of decoding workers must be 0 (decode in this process) or more, got "
                         f"{options.workers!r}", field="--workers")
    specs = registry.resolve(task_names)
    named = {name for name in task_names if name in registry.tasks}
    report = RunReport(is_main=ranks.is_main)
    plan: list[Any] = []
    for request in models:  # created (not yet moved to the device) and checked before any decoding
        model = create_model(request.name, **request.args)
        plan.append((request, model, model_fingerprint(request.name, request.args, model),
                     _runnable(request, model, specs, named, report.skipped)))
    names = Counter(request.name for request in models)
    shared = _SharedProvenance(options, environ)
    num_records = sum(len(runnable) for *_, runnable in plan)
    position = 0  # of the (model, task) pair running, for the progress lines
    for index, (request, model, fingerprint, runnable) in enumerate(plan):
        label = request.name if names[request.name] == 1 else f"{request.name}@{fingerprint[:8]}"
        model = _to_device(model, device)
        cache = OutputCache(options.cache_dir, fingerprint) if options.cache_dir is not None else None
        encoder = Encoder(model, batch_size=options.batch_size, num_workers=options.workers,
                          allow_missing=options.allow_missing, device=device, precision=options.precision,
                          cache=cache, ranks=ranks, progress=progress)
        for spec in runnable:
            position += 1
            encoder.label = f"{label} {spec.name}"
            _announce(progress, ranks.is_main, f"{encoder.label}: task {position}/{num_records} started")
            # The cache writes as the task runs, then the record is written: either may meet a full disk.
            with _noting_written_records(options.output if ranks.is_main else None, report.written, num_records):
                record, samples = _evaluate(request, label, fingerprint, spec, registry.groups_of(spec.name),
                                            encoder, options, shared, environ)
                _announce(progress, ranks.is_main, f"{encoder.label}: task {position}/{num_records} finished in "
                          f"{record['run']['wall_time_s']:.1f} s")
                report.records.append(record)
                if ranks.is_main and options.output is not None:
                    report.written.append(write_record(options.output, record,
                                                       samples if options.log_samples else None))
        plan[index] = None  # one model on the device at a time
        del model, encoder
        if device.type == "cuda":
            torch.cuda.empty_cache()
        ranks.barrier()
    return report


def _announce(progress: Any, is_main: bool, message: str) -> None:
    """A line saying that a (model, task) starts or finishes, for displays that print lines
    (`LineProgress`, outside a terminal); rich's bars name the running task themselves."""
    if is_main and callable(getattr(progress, "announce", None)):
        progress.announce(message)


@contextlib.contextmanager
def _noting_written_records(output: Path | None, written: Sequence[Path], num_records: int) -> Iterator[None]:
    """When a write fails midway (a record, or a cache shard: a disk filling up), the one-line error
    also says which records of this run are on disk, so the user knows what survived."""
    try:
        yield
    except WriteError as error:
        if output is None:
            raise
        raise WriteError(f"{error.message}; {_written_before(output, written, num_records)}",
                         path=error.path, field=error.field) from error


def _written_before(output: Path, written: Sequence[Path], num_records: int) -> str:
    """``records written before it: 2 of 9 in OUT: m/a.json, m/b.json``."""
    text = f"records written before it: {len(written)} of {num_records}"
    if not written:
        return text
    return f"{text} in {output}: " + ", ".join(os.path.relpath(path, output) for path in written)


def _runnable(request: ModelRequest, model: Any, specs: Sequence[TaskSpec], named: set[str],
              skipped: list[tuple[str, str, str]]) -> list[TaskSpec]:
    """The tasks ``model`` can serve (the engines' own capability check, and a fixed frame count
    that the task's protocol must match); a task named on its own that it cannot serve is an error,
    one that came in through a group is skipped with the reason."""
    runnable = []
    for spec in specs:
        try:
            engine_capability(model, spec.kind, spec.name)
            if spec.kind != "localization" and callable(getattr(model, "frame_spec", None)):
                task_frame_spec(model.frame_spec(), spec.protocol, spec.name)
        except InputError as error:
            if spec.name in named:
                raise
            skipped.append((request.name, spec.name, error.message.removeprefix(f"task {spec.name} ")))
            continue
        runnable.append(spec)
    return runnable


def _to_device(model: Any, device: torch.device) -> Any:
    """The model on ``device`` in eval mode, for adapters that have ``to``/``eval`` (torch modules)."""
    if callable(getattr(model, "to", None)):
        model = model.to(device) or model
    if callable(getattr(model, "eval", None)):
        model.eval()
    return model


def _recorded_root(spec: TaskSpec, root: Path | None) -> str | None:
    """The directory the record names as its data's root: the data root where the task's relative
    paths were resolved against it, else the task file's own directory (the embedded world's, whose
    paths are absolute), so a --data-root set for other benchmarks is never claimed for it."""
    where = root if uses_data_root(spec) else spec.base_dir
    return None if where is None else str(where)


class _SharedProvenance:
    """What every record of a run shares, computed once: versions, and each task's dataset fingerprint."""

    def __init__(self, options: RunOptions, environ: Mapping[str, str]):
        self.options = options
        self.environ = environ
        self.versions = software_versions()
        self._datasets: dict[str, dict] = {}

    def dataset(self, spec: TaskSpec) -> dict:
        if spec.name not in self._datasets:
            location = require_data(spec, self.options.data_root, self.environ)
            self._datasets[spec.name] = {
                **dataset_fingerprint(location.files),
                "root": _recorded_root(spec, location.root)}
        return self._datasets[spec.name]


def _evaluate(request: ModelRequest, label: str, fingerprint: str, spec: TaskSpec, groups: list[str],
              encoder: Encoder, options: RunOptions, shared: _SharedProvenance,
              environ: Mapping[str, str]) -> tuple[dict, list]:
    """One (model, task): the engine's result turned into a record and its per-sample log."""
    model = encoder.model
    before = Counter(encoder.counts)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    result = evaluate_task(model, spec, data_root=options.data_root, environ=environ,
                           allow_missing=options.allow_missing, encoder=encoder, limit=options.limit)
    wall = time.perf_counter() - started
    work = dict(Counter(encoder.counts) - before)
    frame_spec = (dataclasses.asdict(task_frame_spec(model.frame_spec(), spec.protocol))
                  if callable(getattr(model, "frame_spec", None)) else None)
    described = describe_metrics(result["metrics"], spec.metrics)
    record = {
        "schema": SCHEMA,
        "model": {"name": request.name, "label": label, "args": dict(request.args), "fingerprint": fingerprint,
                  "class": f"{type(model).__module__}.{type(model).__qualname__}",
                  "capabilities": list(capabilities_of(model))},
        "task": {"name": spec.name, "kind": spec.kind, "paper": spec.paper, "groups": groups,
                 "hash": spec.spec_hash(), "spec": {"name": spec.name, **spec.raw}, "source": spec.source,
                 "seed": spec.seed},
        "dataset": {**shared.dataset(spec), "coverage": result["coverage"]},
        "metrics": described,
        "details": {key: value for key, value in result.items()
                    if key not in ("task", "kind", "metrics", "coverage", "samples")},
        "frame_spec": frame_spec,
        "ties": {"policy": spec.ties,
                 "num_tied": {name: m["value"] for name, m in described.items() if name.endswith("num_tied")}},
        "run": {"started_at": started_at, "wall_time_s": round(wall, 3), "device": str(encoder.device),
                "precision": options.precision, "batch_size": options.batch_size, "workers": options.workers,
                "world_size": encoder.ranks.world_size, "limit": options.limit,
                "allow_missing": options.allow_missing, "work": work,
                # What the encoder chose from this machine (processes, codec threads each): a wall time
                # is only comparable with another when both decoded the same way.
                "decoding": dict(encoder.decoding)},
        "versions": shared.versions,
    }
    return record, result.get("samples", [])
