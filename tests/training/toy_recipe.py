"""A tiny trainable model for the training loop's tests: noisy linear regression with dropout.

Every part of the contract is exercised: two parameter groups (different learning-rate multiples,
one without weight decay), a parameter in no group (must stay frozen), per-item random draws
from the loop's RNG (the noise), torch's global RNG in the forward (dropout, restored on resume),
and weights that `save_weights` writes. ``TOY_KILL_AT_CALL=N`` makes the process kill itself with
SIGKILL on its N-th forward: the way the resume test stops a run between two checkpoints.
"""

from __future__ import annotations

import math
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from instract_eval.errors import InputError
from instract_eval.training.recipe import DataSource, ParamGroup, TrainingRecipe

TRUE_WEIGHT = torch.tensor([1.5, -2.0, 0.5, 3.0])


@dataclass(frozen=True)
class ToyConfig:
    items: int = 64
    noise: float = 0.1
    dropout: float = 0.1
    nan_at_call: int = 0      # a non-finite loss on this forward (0: never)


class ToyNet(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.linear = nn.Linear(4, 1)
        self.frozen = nn.Parameter(torch.ones(3))
        self.dropout = nn.Dropout(config.dropout)
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        if self.calls == int(os.environ.get("TOY_KILL_AT_CALL", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        prediction = self.linear(self.dropout(batch["x"])).squeeze(-1) + 0 * self.frozen.sum()
        loss = ((prediction - batch["y"]) ** 2).mean()
        if self.calls == self.config.nan_at_call:
            loss = loss * math.nan
        return {"total": loss, "mse": loss.detach()}


class ToyRecipe(TrainingRecipe):
    name = "toy"
    model_config = ToyConfig
    evaluation_model = "toy"
    default_train = {"lr": 0.2, "weight_decay": 0.01, "warmup_steps": 2, "log_every": 1, "checkpoint_every": 3}

    def build(self, config, init=None):
        return ToyNet(config)

    def parameter_groups(self, module, config):
        return [ParamGroup("weight", [module.linear.weight]),
                ParamGroup("bias", [module.linear.bias], lr_scale=10.0, weight_decay=False)]

    def training_items(self, config, data: DataSource):
        if data.root.exists() and (data.root / "broken.json").exists():
            raise InputError("not a toy data file", path=data.root / "broken.json", field="items")
        return list(range(config.items))

    def make_example(self, item, rng: random.Random, config, data):
        features = random.Random(item)            # the item's features are fixed; only the noise is drawn
        x = torch.tensor([features.uniform(-1.0, 1.0) for _ in range(4)], dtype=torch.float32)
        y = (x @ TRUE_WEIGHT) + config.noise * rng.gauss(0.0, 1.0)
        return {"x": x, "y": y.to(torch.float32)}

    def save_weights(self, module, config, path: Path):
        torch.save({"model": module.state_dict()}, path)
