"""The settings of a training run: the loop's (`TrainConfig`) and the model's (the recipe's dataclass).

A config file (YAML or JSON) has at most two sections, ``train:`` and ``model:``; every key must
be a field of the matching dataclass, so a typo is one line naming the file and the key (with the
closest known name) instead of a setting that silently does nothing. Command-line flags
(``--steps``, ``--batch-size``, ...) and ``--set section.key=value`` override the file. The
resolved config, every field with its value, is written beside the checkpoints and into each of
them, so a checkpoint says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from instract_eval.errors import InputError
from instract_eval.text import did_you_mean

__all__ = ["TrainConfig", "RESUMABLE_CHANGES", "config_as_json", "differences", "from_mapping", "load_config",
           "parse_assignment"]


@dataclass(frozen=True)
class TrainConfig:
    """The loop's settings. A recipe's ``default_train`` replaces these defaults by the official
    ones of its model (e.g. InstrAct's lr 1e-4, betas (0.9, 0.98), warmup 1000)."""

    steps: int = 0                 # optimizer steps in all; 0: take them from `epochs`
    epochs: int = 1                # used when `steps` is 0
    batch_size: int = 8            # per process (a DDP job of N processes steps on N x batch_size)
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0          # linear warmup from 0; then `schedule`
    schedule: str = "cosine"       # cosine (to min_lr_ratio x lr at the last step) or constant
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0         # max global gradient norm; 0 switches clipping off
    precision: str = "fp32"        # fp32, bf16 or fp16 (autocast; fp16 adds a gradient scaler and needs a GPU)
    seed: int = 42                 # python, numpy and torch RNGs, the data order and every per-item draw
    workers: int = 0               # DataLoader processes preparing examples
    checkpoint_every: int = 100    # steps between checkpoints (and always after the last step)
    keep_checkpoints: int = 2      # the newest N are kept
    log_every: int = 10            # steps between lines of train.jsonl
    eval_every: int = 0            # steps between evaluations through the harness; 0: only after the last step
    eval_tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 0, "steps", "0 or more"), (self.epochs >= 1, "epochs", "1 or more"),
            (self.batch_size >= 1, "batch_size", "1 or more"), (self.lr > 0, "lr", "positive"),
            (self.weight_decay >= 0, "weight_decay", "0 or more"), (self.eps > 0, "eps", "positive"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two numbers in [0, 1)"),
            (self.warmup_steps >= 0, "warmup_steps", "0 or more"),
            (self.schedule in ("cosine", "constant"), "schedule", "cosine or constant"),
            (0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]"), (self.grad_clip >= 0, "grad_clip", "0 or more"),
            (self.precision in ("fp32", "bf16", "fp16"), "precision", "fp32, bf16 or fp16"),
            (self.workers >= 0, "workers", "0 or more"), (self.checkpoint_every >= 1, "checkpoint_every", "1 or more"),
            (self.keep_checkpoints >= 1, "keep_checkpoints", "1 or more"), (self.log_every >= 1, "log_every", "1 or more"),
            (self.eval_every >= 0, "eval_every", "0 or more"),
        ]
        for ok, name, wanted in checks:
            if not ok:
                raise ValueError(f"train.{name} must be {wanted}, got {getattr(self, name)!r}")


# Settings that may change between a run and its resumption: they do not change the weights.
RESUMABLE_CHANGES = frozenset({"workers", "checkpoint_every", "keep_checkpoints", "log_every", "eval_every",
                               "eval_tasks"})


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` as the dataclass field type ``kind`` (int, float, bool, str, tuples, optionals)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(option for option in options if option is not type(None))
        origin = typing.get_origin(kind)
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise InputError(f"must be a list, got {value!r}", field=where)
        args = typing.get_args(kind)
        item_kinds = [args[0]] * len(value) if (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else args
        if len(item_kinds) != len(value):
            raise InputError(f"must be a list of {len(item_kinds)}, got {value!r}", field=where)
        items = [_coerce(item, item_kind, f"{where}[{i}]") for i, (item, item_kind) in enumerate(zip(value, item_kinds))]
        return tuple(items) if origin is tuple else items
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"must be true or false, got {value!r}", field=where)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"must be an integer, got {value!r}", field=where)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"must be a number, got {value!r}", field=where)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise InputError(f"must be a string, got {value!r}", field=where)
        return value
    return value


def from_mapping(cls: type, values: Mapping[str, Any], *, section: str, path: str | Path | None = None,
                 base: Any = None) -> Any:
    """An instance of the dataclass ``cls`` from ``values`` over ``base`` (or the defaults); an
    unknown key, a value of the wrong type or one the class refuses is one line naming ``path``
    and ``section.key``."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    for key in values:
        if key not in known:
            raise InputError(f"unknown key{did_you_mean(key, known)}", path=path, field=f"{section}.{key}")
    try:
        coerced = {key: _coerce(value, hints[key], f"{section}.{key}") for key, value in values.items()}
    except InputError as error:
        raise InputError(error.message, path=path, field=error.field) from None
    try:
        return dataclasses.replace(base, **coerced) if base is not None else cls(**coerced)
    except (ValueError, TypeError) as error:
        raise InputError(str(error), path=path, field=section) from None


def load_config(path: Path | None, *, model_class: type, default_train: Mapping[str, Any] = {},
                overrides: Sequence[tuple[str, str, Any]] = ()) -> tuple[TrainConfig, Any]:
    """The loop's and the model's config: defaults, then the recipe's official training defaults,
    then the file at ``path``, then ``overrides`` (section, key, value) from the command line."""
    sections: dict[str, dict[str, Any]] = {"train": dict(default_train), "model": {}}
    if path is not None:
        document = _read_document(path)
        for name, values in document.items():
            if name not in sections:
                raise InputError(f"unknown section{did_you_mean(str(name), sections)}; a training config has "
                                 "'train:' and 'model:'", path=path, field=str(name))
            if not isinstance(values, Mapping):
                raise InputError("must be a mapping of settings", path=path, field=str(name))
            sections[name].update(values)
    train = from_mapping(TrainConfig, sections["train"], section="train", path=path)
    model = from_mapping(model_class, sections["model"], section="model", path=path)
    for section, key, value in overrides:
        if section == "train":
            train = from_mapping(TrainConfig, {key: value}, section="train", path=None, base=train)
        elif section == "model":
            model = from_mapping(model_class, {key: value}, section="model", path=None, base=model)
        else:
            raise InputError(f"unknown section {section!r}; use train.KEY or model.KEY", field="--set")
    return train, model


def _read_document(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("config file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the config file: {error}", path=path) from None
    try:
        document = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        line = getattr(error, "lineno", None) or getattr(getattr(error, "problem_mark", None), "line", -1) + 1
        raise InputError(f"not valid {'JSON' if str(path).endswith('.json') else 'YAML'}"
                         + (f" (line {line})" if line and line > 0 else ""), path=path) from None
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise InputError("a training config is a mapping with 'train:' and 'model:' sections", path=path)
    return dict(document)


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` from ``--set``; the value is read as YAML (numbers, true/false, lists)."""
    target, equals, raw = text.partition("=")
    section, dot, key = target.strip().partition(".")
    if not equals or not dot or not key:
        raise InputError(f"expected section.key=value (e.g. model.use_dtw=false), got {text!r}", field="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return section, key, value


def config_as_json(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON values (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def differences(saved: Mapping[str, Any], current: Mapping[str, Any], *, ignore: frozenset[str] = frozenset()
                ) -> list[str]:
    """``key: saved -> current`` for every key whose value differs."""
    keys = sorted((set(saved) | set(current)) - ignore)
    return [f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in keys if saved.get(key) != current.get(key)]
