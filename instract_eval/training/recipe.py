"""What a trainable model gives the training loop, and the registry of those recipes.

The loop (`instract_eval.training.loop`) owns everything models share: seeding, the data order,
AMP, clipping, the warmup + cosine schedule, parameter groups, DDP, checkpoints, resume, the
training log and periodic evaluation through the harness. A paper model contributes a
`TrainingRecipe`: its module, its parameter groups, its data and its evaluation name. Nothing in
the loop knows which model it trains.

The contract, in the order the loop uses it:

``model_config``
    A frozen dataclass whose fields are every hyperparameter of the model (architecture, loss
    weights, ablation switches), each with its paper/official default. A config file's ``model:``
    section overrides fields by name; an unknown name is an error.
``build(config, init)``
    The trainable ``nn.Module``. ``init`` is an optional checkpoint to start from (a backbone or
    a full official checkpoint). Its ``forward(batch)`` returns a dict of scalar loss tensors
    with the key ``"total"`` (the one the loop differentiates); every other entry is logged.
    Forward goes through the module itself so DDP's gradient hooks see it.
``parameter_groups(module, config)``
    `ParamGroup` s: which parameters train, at which multiple of the base learning rate, and
    with or without weight decay. Parameters in no group are frozen (``requires_grad`` off).
``training_items(config, data)``
    The training split as a list of items (cheap: annotations, not decoded videos).
``make_example(item, rng, config, data)``
    One item to tensors, with every random choice of the item drawn from ``rng``: the loop seeds
    it from (seed, epoch, position), so a resumed run draws what an uninterrupted one draws.
``collate(examples)``
    Examples to a batch dict (tensors batched along dimension 0).
``evaluation_model`` and ``save_weights(module, config, path)``
    The registry name that loads what ``save_weights`` writes, with ``checkpoint=PATH``; the
    loop evaluates a checkpoint by running the harness on exactly that.
``accepts_checkpoint(payload)``
    Whether a checkpoint payload (our own or an official one) belongs to this model; a resume
    from another model's checkpoint is refused with one line.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["DataSource", "ParamGroup", "TrainingRecipe", "available_recipes", "get_recipe", "register_recipe"]


@dataclass(frozen=True)
class DataSource:
    """Where the training data is: ``root`` (a directory in the model's official layout) or the
    synthetic world (``synth=True``: the recipe generates its training split under ``root`` with
    seeds disjoint from every evaluation world)."""

    root: Path
    synth: bool = False
    seed: int = 0


@dataclass
class ParamGroup:
    """Parameters that share a learning-rate multiple and a weight-decay choice."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    lr_scale: float = 1.0
    weight_decay: bool = True


class TrainingRecipe:
    """Base of a model's training recipe; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    model_config: ClassVar[type] = object
    evaluation_model: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # The loop's settings (TrainConfig fields) the official code of this model uses by default.
    default_train: ClassVar[dict[str, Any]] = {}
    # Whether some parameters in the groups may get no gradient in a step (DDP must then look for them).
    find_unused_parameters: ClassVar[bool] = True

    def build(self, config: Any, init: Path | None = None) -> nn.Module:
        raise NotImplementedError

    def parameter_groups(self, module: nn.Module, config: Any) -> list[ParamGroup]:
        raise NotImplementedError

    def training_items(self, config: Any, data: DataSource) -> Sequence[Any]:
        raise NotImplementedError

    def make_example(self, item: Any, rng: random.Random, config: Any, data: DataSource) -> Mapping[str, Any]:
        raise NotImplementedError

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Stack tensors along a new dimension 0; other values become lists."""
        batch: dict[str, Any] = {}
        for key in examples[0]:
            values = [example[key] for example in examples]
            batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
        return batch

    def save_weights(self, module: nn.Module, config: Any, path: Path) -> None:
        raise NotImplementedError

    def accepts_checkpoint(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("recipe") == self.name

    def load_state(self, module: nn.Module, payload: Mapping[str, Any]) -> None:
        """Load the model weights of a checkpoint payload (ours: ``payload['model']``)."""
        module.load_state_dict(payload["model"])


_RECIPES: dict[str, Callable[[], TrainingRecipe]] = {}
_BUILTIN = ("instract_eval.adapters.instraction.recipe", "instract_eval.adapters.tal.recipe",
            "instract_eval.adapters.tal.adatad_recipe", "instract_eval.adapters.tal.tridet_recipe")


def register_recipe(cls: type[TrainingRecipe]) -> type[TrainingRecipe]:
    """Class decorator: make ``cls`` trainable as ``instract-eval train <cls.name>``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    _RECIPES[cls.name] = cls
    return cls


def _load_builtins() -> None:
    import importlib

    for module in _BUILTIN:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name is None or not (module == error.name or module.startswith(error.name + ".")):
                raise   # the recipe's module exists but one of its own imports is missing


def available_recipes() -> list[str]:
    _load_builtins()
    return sorted(_RECIPES)


def get_recipe(name: str) -> TrainingRecipe:
    """The recipe registered as ``name`` (or ``package.module:RecipeClass``), or one line listing the
    trainable models."""
    from instract_eval.errors import InputError
    from instract_eval.text import did_you_mean

    _load_builtins()
    if ":" in name and name not in _RECIPES:
        return _load_target(name)
    if name not in _RECIPES:
        known = sorted(_RECIPES)
        raise InputError(f"no trainable model {name!r}{did_you_mean(name, known)}; trainable: {', '.join(known) or 'none'}",
                         field="MODEL")
    return _RECIPES[name]()


def _load_target(target: str) -> TrainingRecipe:
    """``package.module:RecipeClass``: a recipe outside this package (a user's own model)."""
    import importlib

    from instract_eval.errors import InputError

    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(f"cannot import {module_name}: {error}", field="MODEL") from None
    cls = getattr(module, attribute, None)
    if not (isinstance(cls, type) and issubclass(cls, TrainingRecipe)):
        raise InputError(f"{target} is not a TrainingRecipe class", field="MODEL")
    return cls()
