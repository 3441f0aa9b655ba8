"""The training loop every trainable model shares (`instract-eval train MODEL`).

What the loop guarantees, whatever the model:

- **Same seed, same weights.** The data order of epoch ``e`` is a permutation drawn from
  ``(seed, e)`` alone, each item's random choices come from an RNG seeded by
  ``(seed, epoch, item)``, and the DataLoader gets a generator of its own, so nothing depends on
  how many batches were drawn before. A checkpoint holds the step, the model, optimizer,
  scheduler and scaler states and every process's RNG states; resuming from it (``--resume``)
  continues the exact trajectory: a run killed with SIGKILL and resumed ends with the weights of
  an uninterrupted run.
- **Nothing half-written.** Checkpoints are written to a temporary name and renamed; a run that
  stops on bad input or a non-finite loss writes no checkpoint for that step. A new run refuses
  an output directory that already holds checkpoints (resume it, or choose another), so no
  checkpoint is ever overwritten by accident.
- **Parameter groups** come from the recipe (learning-rate multiples, weight decay on or off);
  parameters in no group are frozen. The schedule is a linear warmup from 0 followed by a cosine
  to ``min_lr_ratio`` at the last step (InstrAct's ``get_cosine_schedule_with_warmup``, stepped
  once per optimizer step, so step 0 runs at learning rate 0 when there is a warmup).
- **DDP** under ``torchrun`` (the same launch as ``run``): every process takes every
  ``world_size``-th batch position of the epoch's order, gradients are averaged by DDP, rank 0
  writes. A resumed DDP run needs the same number of processes (the data split depends on it).
- **Evaluation through the harness**: every ``eval_every`` steps and after the last one, rank 0
  writes the model's weights (``OUT/weights/step-N.pt``, loadable with ``instract-eval run
  --model NAME --model-args checkpoint=PATH``) and runs the harness on ``eval_tasks``, writing
  records under ``OUT/eval/step-N/`` exactly as ``run`` writes them.

Files under ``OUT``: ``config.json`` (every setting), ``train.jsonl`` (one JSON object per
logged step and per evaluation), ``checkpoints/``, ``weights/``, ``weights.pt`` (the final
weights) and ``eval/``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from instract_eval.encoding.distributed import Ranks, ranks_from_environment
from instract_eval.errors import InputError
from instract_eval.files import make_directories, require_writable_directory, write_atomic, writing

from .checkpoints import capture_rng, latest_checkpoint, read_payload, restore_rng, write_checkpoint
from .config import RESUMABLE_CHANGES, TrainConfig, config_as_json, differences, load_config
from .recipe import DataSource, ParamGroup, TrainingRecipe, get_recipe

__all__ = ["TrainRequest", "TrainReport", "TrainingDiverged", "train", "learning_rate_factor", "epoch_order"]


class TrainingDiverged(InputError):
    """A loss became NaN or infinite: the step is not taken and no checkpoint is written for it."""


@dataclass(frozen=True)
class TrainRequest:
    """One training run: which model, where its data and outputs are, and what overrides the defaults."""

    model: str
    out: Path
    data: DataSource
    config_file: Path | None = None
    overrides: Sequence[tuple[str, str, Any]] = ()
    resume: bool = False
    init: Path | None = None
    device: str | None = None
    cache_dir: Path | None = None


@dataclass
class TrainReport:
    """What a run did: steps taken in all, where it started, its last losses, what it wrote."""

    out: Path
    steps: int
    started_at: int
    last_losses: dict[str, float] = field(default_factory=dict)
    weights: Path | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    is_main: bool = True
    evaluation_model: str = ""


def learning_rate_factor(step: int, *, warmup: int, total: int, schedule: str, floor: float) -> float:
    """The multiple of each group's learning rate at optimizer step ``step`` (0-based)."""
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "constant":
        return 1.0
    progress = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The order of the training items in ``epoch``: a permutation drawn from (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(count).tolist()


class _Examples(torch.utils.data.Dataset):
    """Item ``k`` of the split as the recipe's example, its random choices seeded by (seed, epoch, k)."""

    def __init__(self, recipe: TrainingRecipe, items: Sequence[Any], config: Any, data: DataSource, seed: int,
                 epoch: int):
        self.recipe, self.items, self.config, self.data, self.seed, self.epoch = recipe, items, config, data, seed, epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        return self.recipe.make_example(self.items[index], rng, self.config, self.data)


def _seed_process(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    return value


def _optimizer(groups: Sequence[ParamGroup], train: TrainConfig) -> torch.optim.AdamW:
    settings = [{"params": group.params, "lr": train.lr * group.lr_scale, "name": group.name,
                 "weight_decay": train.weight_decay if group.weight_decay else 0.0} for group in groups if group.params]
    return torch.optim.AdamW(settings, lr=train.lr, betas=tuple(train.betas), eps=train.eps,
                             weight_decay=train.weight_decay)


def _freeze_outside(module: nn.Module, groups: Sequence[ParamGroup]) -> None:
    """Parameters in no group are frozen; one in two groups is the recipe's error."""
    chosen: dict[int, str] = {}
    for group in groups:
        for parameter in group.params:
            if id(parameter) in chosen:
                raise ValueError(f"a parameter is in both parameter groups {chosen[id(parameter)]!r} and {group.name!r}")
            chosen[id(parameter)] = group.name
    for parameter in module.parameters():
        parameter.requires_grad_(id(parameter) in chosen)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class _Log:
    """``train.jsonl``: one JSON object per line, appended and flushed (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool, *, keep_through: int | None):
        self.path, self.enabled = path, enabled
        if enabled and keep_through is not None and path.exists():
            self._truncate_after(keep_through)

    def _truncate_after(self, step: int) -> None:
        """Drop what a killed run logged after its last checkpoint (and a torn last line), so a
        resumed run's log reads as one run."""
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("step", 0) <= step:
                kept.append(line)
        write_atomic(self.path, "".join(f"{line}\n" for line in kept))

    def write(self, entry: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, allow_nan=True) + "\n")


def _resolved_config(request: TrainRequest, train: TrainConfig, model: Any) -> dict[str, Any]:
    return {"model_name": request.model, "train": config_as_json(train), "model": config_as_json(model),
            "data": {"root": str(request.data.root), "synth": request.data.synth, "seed": request.data.seed},
            "init": None if request.init is None else str(request.init)}


def _check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """A resumed run continues the same trajectory: only settings that do not change weights may differ."""
    changed = differences(saved.get("model", {}), current["model"])
    changed = [f"model.{line}" for line in changed]
    changed += [f"train.{line}" for line in differences(saved.get("train", {}), current["train"],
                                                        ignore=RESUMABLE_CHANGES)]
    changed += [f"data.{line}" for line in differences(saved.get("data", {}), current["data"])]
    if changed:
        raise InputError(f"this checkpoint was trained with other settings ({'; '.join(changed)}); resume with the "
                         "same config, or start a new run in another --out", path=path, field="--resume")


def train(request: TrainRequest, *, on_log: Callable[[Mapping[str, Any]], None] | None = None,
          environ: Mapping[str, str] = os.environ) -> TrainReport:
    """Train ``request.model``; see the module docstring."""
    from instract_eval.runner.run import pick_device

    recipe = get_recipe(request.model)
    train_config, model_config = load_config(request.config_file, model_class=recipe.model_config,
                                             default_train=recipe.default_train, overrides=request.overrides)
    ranks = ranks_from_environment(environ, device=request.device)
    device = pick_device(request.device, ranks.local_rank)
    if train_config.precision == "fp16" and device.type == "cpu":
        raise InputError("fp16 autocast needs a GPU; use precision bf16 or fp32 on the CPU", field="train.precision")
    out = request.out
    require_writable_directory(out, "--out")
    resolved = _resolved_config(request, train_config, model_config)
    payload = _resume_payload(request, recipe, resolved, ranks)

    _seed_process(train_config.seed + ranks.rank)
    items = recipe.training_items(model_config, request.data)
    global_batch = train_config.batch_size * ranks.world_size
    steps_per_epoch = len(items) // global_batch
    if steps_per_epoch == 0:
        raise InputError(f"the training split has {len(items)} items, fewer than one batch of {global_batch} "
                         f"({train_config.batch_size} x {ranks.world_size} processes)", field="train.batch_size")
    total = train_config.steps or train_config.epochs * steps_per_epoch

    module = recipe.build(model_config, request.init).to(device)
    groups = recipe.parameter_groups(module, model_config)
    _freeze_outside(module, groups)
    optimizer = _optimizer(groups, train_config)
    factor = lambda step: learning_rate_factor(step, warmup=train_config.warmup_steps, total=total,  # noqa: E731
                                               schedule=train_config.schedule, floor=train_config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler(device.type, enabled=train_config.precision == "fp16")
    step = 0
    if payload is not None:
        recipe.load_state(module, payload)
        if "optimizer" in payload:
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            if payload.get("scaler"):
                scaler.load_state_dict(payload["scaler"])
            step = int(payload.get("step", payload.get("global_step", 0)))
        rng = payload.get("rng")
        if isinstance(rng, list) and len(rng) == ranks.world_size:
            restore_rng(rng[ranks.rank])
    started_at = step
    if ranks.is_main:
        with writing(out):
            make_directories(out)
        write_atomic(out / "config.json", json.dumps(resolved, indent=2) + "\n")
    log = _Log(out / "train.jsonl", ranks.is_main, keep_through=step if payload is not None else None)
    if payload is None and ranks.is_main:
        write_atomic(out / "train.jsonl", "")

    model: nn.Module = module
    if ranks.distributed:
        model = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                                    find_unused_parameters=recipe.find_unused_parameters)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train_config.precision)
    report = TrainReport(out=out, steps=total, started_at=started_at, is_main=ranks.is_main,
                         evaluation_model=recipe.evaluation_model)
    batches = None
    clock = time.perf_counter()
    while step < total:
        epoch, position = divmod(step, steps_per_epoch)
        if batches is None:
            batches = _epoch_batches(recipe, items, model_config, request.data, train_config, ranks, epoch, position,
                                     steps_per_epoch)
        try:
            batch = next(batches)
        except StopIteration:
            batches = None
            continue
        model.train()
        batch = _to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            losses = model(batch)
        loss = losses["total"]
        finite = torch.isfinite(loss.detach()).to(torch.int32)
        if ranks.distributed:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if not finite.item():
            raise TrainingDiverged(f"non-finite loss at step {step + 1} ({_terms(losses)}); the last checkpoint is "
                                   f"{latest_checkpoint(out) or 'none'}", field="loss")
        scaler.scale(loss).backward()
        grad_norm = None
        if train_config.grad_clip > 0:
            scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_([p for g in groups for p in g.params],
                                                             train_config.grad_clip))
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        report.last_losses = {name: float(_mean_over_ranks(value.detach(), ranks)) for name, value in losses.items()}
        if step % train_config.log_every == 0 or step == total:
            entry = {"step": step, "epoch": epoch, "lr": lr, **report.last_losses,
                     "grad_norm": grad_norm, "seconds": round(time.perf_counter() - clock, 3)}
            log.write(entry)
            if on_log is not None and ranks.is_main:
                on_log(entry)
        if step % train_config.checkpoint_every == 0 or step == total:
            _checkpoint(out, step, epoch, module, optimizer, scheduler, scaler, resolved, recipe, ranks,
                        train_config.keep_checkpoints)
        if step == total or (train_config.eval_every and step % train_config.eval_every == 0):
            weights = _write_weights(recipe, module, model_config, out, step, final=step == total, ranks=ranks)
            if step == total:
                report.weights = weights
            if train_config.eval_tasks:
                result = _evaluate(recipe, weights, train_config.eval_tasks, out, step, request, ranks, environ)
                if result is not None:
                    report.evaluations.append(result)
                    log.write(result)
                    if on_log is not None:
                        on_log(result)
    if total == started_at and ranks.is_main:
        report.weights = out / "weights.pt" if (out / "weights.pt").exists() else None
    return report


def _terms(losses: Mapping[str, torch.Tensor]) -> str:
    return ", ".join(f"{name} {float(value.detach()):.4g}" for name, value in losses.items())


def _mean_over_ranks(value: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if not ranks.distributed:
        return value
    value = value.detach().float().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ranks.world_size


def _epoch_batches(recipe: TrainingRecipe, items: Sequence[Any], config: Any, data: DataSource, train: TrainConfig,
                   ranks: Ranks, epoch: int, position: int, steps_per_epoch: int):
    """This process's batches of ``epoch`` from batch ``position`` on. The loader's generator (which
    seeds its worker processes) is the epoch's own, so a resumed epoch seeds them as the first run did."""
    order = epoch_order(len(items), train.seed, epoch)
    size = train.batch_size
    batches = []
    for index in range(position, steps_per_epoch):
        chunk = order[index * size * ranks.world_size:(index + 1) * size * ranks.world_size]
        batches.append(chunk[ranks.rank::ranks.world_size])
    dataset = _Examples(recipe, items, config, data, train.seed, epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=recipe.collate,
                                         num_workers=train.workers,
                                         generator=torch.Generator().manual_seed(train.seed * 100_003 + epoch),
                                         persistent_workers=False)
    return iter(loader)


def _resume_payload(request: TrainRequest, recipe: TrainingRecipe, resolved: Mapping[str, Any],
                    ranks: Ranks) -> dict[str, Any] | None:
    existing = latest_checkpoint(request.out)
    if not request.resume:
        if existing is not None:
            raise InputError(f"already holds a training run (up to {existing.name}); pass --resume to continue it, or "
                             "choose another --out", path=request.out, field="--out")
        return None
    if existing is None:
        raise InputError("holds no checkpoint to resume (checkpoints/step-*.pt)", path=request.out, field="--resume")
    payload = read_payload(existing)
    if not recipe.accepts_checkpoint(payload):
        other = payload.get("recipe") or "another model"
        raise InputError(f"is a checkpoint of {other}, not of {recipe.name}", path=existing, field="--resume")
    _check_resumable(payload.get("config", {}), resolved, existing)
    saved_world = payload.get("world_size", 1)
    if saved_world != ranks.world_size:
        raise InputError(f"was written by a run of {saved_world} processes; resume it with the same number (this run "
                         f"has {ranks.world_size}): the data split depends on it", path=existing, field="--resume")
    return payload


def _checkpoint(out: Path, step: int, epoch: int, module: nn.Module, optimizer, scheduler, scaler, resolved,
                recipe: TrainingRecipe, ranks: Ranks, keep: int) -> None:
    rng = ranks.gather(capture_rng())
    if ranks.is_main:
        write_checkpoint(out, step, {
            "recipe": recipe.name, "step": step, "epoch": epoch, "world_size": ranks.world_size,
            "model": _unwrap(module).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng, "config": dict(resolved),
        }, keep=keep)
    ranks.barrier()


def _write_weights(recipe: TrainingRecipe, module: nn.Module, config: Any, out: Path, step: int, *, final: bool,
                   ranks: Ranks) -> Path:
    path = out / "weights.pt" if final else out / "weights" / f"step-{step:08d}.pt"
    if ranks.is_main:
        with writing(path):
            make_directories(path.parent)
        recipe.save_weights(_unwrap(module), config, path)
    ranks.barrier()
    return path


def _evaluate(recipe: TrainingRecipe, weights: Path, tasks: Sequence[str], out: Path, step: int,
              request: TrainRequest, ranks: Ranks, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """Rank 0 runs the harness on ``weights`` in a single-process view; the others wait."""
    result = None
    if ranks.is_main:
        from instract_eval.api import evaluate
        from instract_eval.runner.run import ModelRequest

        single = {key: value for key, value in environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
        evaluation = evaluate(ModelRequest(recipe.evaluation_model, {"checkpoint": str(weights)}), list(tasks),
                              cache_dir=request.cache_dir, use_cache=False, environ=single,
                              output=out / "eval" / f"step-{step:08d}", device=request.device)
        metrics = {record["task"]["name"]: {name: metric["value"] for name, metric in record["metrics"].items()}
                   for record in evaluation.records}
        result = {"step": step, "eval": metrics, "records": str(out / "eval" / f"step-{step:08d}")}
    ranks.barrier()
    return result
