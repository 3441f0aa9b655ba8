"""TriDet's training recipe: the release's parameter groups, its input noise and SGP init, and
`instract-eval train tridet` on a tiny feature world whose trained weights localize."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from instract_eval.adapters import create_model
from instract_eval.adapters.tal.tridet import SGPBlock, load_tridet
from instract_eval.adapters.tal.tridet_recipe import TriDetConfig, TriDetRecipe, TriDetTrainer
from instract_eval.cli import main
from instract_eval.training.recipe import DataSource, get_recipe

from ..families.golden import OFFICIAL, load_golden
from .test_recipe import CLASSES, FPS, LENGTH, STRIDE, make_world

TINY = {"embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "sgp_mlp_dim": 32, "num_bins": 8, "max_seq_len": 128}


@pytest.fixture
def one_thread():
    """One thread: on a loaded shared machine more threads than free cores slow tiny convolutions 100x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registered_and_parameter_groups_are_the_releases():
    assert isinstance(get_recipe("tridet"), TriDetRecipe)
    golden = load_golden("tridet")
    groups = json.loads(golden.metadata["meta"])["param_groups"]
    net, _ = load_tridet(OFFICIAL / "tridet" / "thumos_like.pth.tar", max_seq_len=256)
    trainer = TriDetTrainer(net, TriDetConfig(), ["a", "b", "c"])
    decay, no_decay = TriDetRecipe().parameter_groups(trainer, TriDetConfig())
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay.params) == groups["decay"]
    assert sorted(names[id(p)] for p in no_decay.params) == groups["no_decay"]
    assert any(".gn." in n for n in groups["no_decay"]) and not no_decay.weight_decay and decay.weight_decay


def test_config_builds_the_thumos_structure(tmp_path, one_thread):
    make_world(tmp_path, videos=3)
    recipe = TriDetRecipe()
    recipe.training_items(TriDetConfig(), DataSource(tmp_path))
    config = TriDetConfig(**{**TINY, "init_conv_vars": 0.0})
    trainer = recipe.build(config)
    dims = trainer.net.dims
    # THUMOS14: window 1 everywhere, k 5 -> long kernel round(2 * 5) = 10, made odd: 11
    assert dims.sgp_win_size == (1,) * 6 and dims.long_kernels == (11,) * 7 and dims.num_bins == 8
    assert dims.input_dim == 8 and dims.num_classes == len(CLASSES)
    block = trainer.net.backbone.branch[0]
    assert isinstance(block, SGPBlock) and block.convkw.kernel_size == (11,) and block.psi.kernel_size == (1,)
    assert float(block.psi.weight.detach().abs().sum()) == 0.0     # the release's init_conv_vars 0
    noisy = recipe.build(TriDetConfig(**{**TINY, "init_conv_vars": 0.1, "sgp_win_size": (3,), "k": 1.5}))
    psi = noisy.net.backbone.branch[0].psi.weight.detach()
    assert psi.shape[-1] == 3 and 0.05 < float(psi.std()) < 0.2
    assert noisy.net.dims.long_kernels == (3, 3, 7, 7, 7, 7, 7)   # two stem blocks (window 1), five branch
    # input noise: training forwards differ for the same batch, evaluation forwards do not
    batch = recipe.collate([recipe.make_example(item, __import__("random").Random(0), config, DataSource(tmp_path))
                            for item in recipe.training_items(config, DataSource(tmp_path))[:1]])
    trainer.train()
    first, second = trainer(batch), trainer(batch)["cls_loss"]
    assert first["cls_loss"] != second
    # zero-initialised SGP convs get zero gradients (every path through them multiplies by another
    # of them), so with the release's THUMOS14 init they stay zero; the MLP and norms do train
    first["total"].backward()
    for conv in (block.psi, block.fc, block.convw, block.convkw, block.global_fc):
        assert float(conv.weight.grad.abs().sum()) == 0.0 and float(conv.bias.grad.abs().sum()) == 0.0
    assert float(block.mlp[0].weight.grad.abs().sum()) > 0
    trainer.eval()
    assert trainer(batch)["cls_loss"] == trainer(batch)["cls_loss"]


@pytest.mark.slow
def test_train_decreases_the_loss_and_the_weights_localize(tmp_path, one_thread):
    data = tmp_path / "data"
    database = make_world(data, videos=10)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"lr": 2e-3, "warmup_steps": 5, "log_every": 1,
                                                "checkpoint_every": 1000},
                                      # the release's zero SGP init keeps those convs at zero forever
                                      # (their gradients are 0); the test trains them from N(0, 0.1^2)
                                      "model": {**TINY, "ema_decay": 0.9, "init_conv_vars": 0.1}}))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        main(["train", "tridet", "--data", str(data), "--config", str(config), "--steps", "150",
              "--batch-size", "2", "--out", str(out), "--device", "cpu"])
    assert not stopped.value.code
    log = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(log) == 150
    losses = [entry["loss_per_positive"] for entry in log]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    model = create_model("tridet", checkpoint=str(out / "weights.pt"))
    assert model.labels == list(CLASSES) and model.dims.num_bins == 8 and model.dims.max_seq_len == 128
    hits = 0
    for video in ("v08", "v09"):      # the held-out Test videos, two actions each
        found = model.localize(str(data / "features" / f"{video}.npy"), list(CLASSES), None)
        assert found and all(0.0 <= s.start <= s.end <= LENGTH * STRIDE / FPS for s in found)
        for truth in database[video]["annotations"]:
            same_class = sorted((s for s in found if s.label == truth["label"]), key=lambda s: -s.score)
            count = sum(t["label"] == truth["label"] for t in database[video]["annotations"])
            ious = []
            for guess in same_class[:count]:
                inter = max(0.0, min(guess.end, truth["segment"][1]) - max(guess.start, truth["segment"][0]))
                ious.append(inter / ((guess.end - guess.start) + (truth["segment"][1] - truth["segment"][0]) - inter))
            hits += max(ious, default=0.0) >= 0.5
    assert hits >= 3, hits
