"""The shared training loop on a tiny model: learning, schedule, groups, resume, DDP, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from instract_eval.cli import main
from instract_eval.training.checkpoints import list_checkpoints
from instract_eval.training.loop import TrainRequest, epoch_order, learning_rate_factor, train
from instract_eval.training.recipe import DataSource

REPO = Path(__file__).resolve().parents[2]
TOY = "tests.training.toy_recipe:ToyRecipe"


def cli(tmp_path: Path, *args: str, out: str = "run") -> list[str]:
    return ["train", TOY, "--data", str(tmp_path), "--out", str(tmp_path / out), "--device", "cpu", *args]


def run_cli(argv: list[str]) -> None:
    """The command line in this process; a successful run exits with code 0."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 0


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


def error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_the_loop_learns_logs_every_step_and_writes_weights_that_load(tmp_path, capsys):
    run_cli(cli(tmp_path, "--steps", "40", "--batch-size", "8", "--set", "model.dropout=0"))
    out = tmp_path / "run"
    lines = log_lines(out)
    assert [line["step"] for line in lines] == list(range(1, 41))
    assert lines[-1]["total"] < 0.2 * lines[2]["total"]       # the regression is learnt
    assert lines[0]["lr"] == 0.0 and lines[1]["lr"] == pytest.approx(0.1)   # warmup 2: 0, 1/2, then cosine
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["steps"] == 40 and config["train"]["lr"] == 0.2 and config["model"]["items"] == 64
    learned = weights(out / "weights.pt")
    assert torch.allclose(learned["linear.weight"][0], torch.tensor([1.5, -2.0, 0.5, 3.0]), atol=0.3)
    assert torch.equal(learned["frozen"], torch.ones(3))      # in no parameter group: frozen
    assert [step for step, _ in list_checkpoints(out)] == [39, 40]   # every 3 steps and the last; newest 2 kept
    assert "evaluate it with: instract-eval run --model" in capsys.readouterr().out


def test_the_schedule_is_linear_warmup_then_cosine_to_the_floor():
    factors = [learning_rate_factor(step, warmup=4, total=12, schedule="cosine", floor=0.0) for step in range(13)]
    assert factors[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # after warmup: 0.5 (1 + cos(pi (s - 4) / 8)), worked by hand at s = 6, 8, 12
    assert factors[6] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert factors[8] == pytest.approx(0.5) and factors[12] == pytest.approx(0.0)
    assert learning_rate_factor(12, warmup=4, total=12, schedule="cosine", floor=0.1) == pytest.approx(0.1)
    assert learning_rate_factor(9, warmup=4, total=12, schedule="constant", floor=0.0) == 1.0


def test_parameter_groups_get_their_learning_rate_multiple_and_weight_decay(tmp_path):
    run_cli(cli(tmp_path, "--steps", "3"))
    payload = torch.load(tmp_path / "run" / "checkpoints" / "step-00000003.pt", weights_only=True)
    groups = payload["optimizer"]["param_groups"]
    assert [group["name"] for group in groups] == ["weight", "bias"]
    assert [group["initial_lr"] for group in groups] == [0.2, 2.0]
    assert [group["weight_decay"] for group in groups] == [0.01, 0.0]


def test_the_data_order_depends_on_seed_and_epoch_only():
    assert epoch_order(10, 42, 3) == epoch_order(10, 42, 3)
    assert sorted(epoch_order(10, 42, 3)) == list(range(10))
    assert epoch_order(10, 42, 3) != epoch_order(10, 42, 4) != epoch_order(10, 43, 3)


def test_a_run_killed_with_sigkill_and_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("WORLD_SIZE", None)
    script = "import sys; from instract_eval.cli import main; main(sys.argv[1:])"
    argv = ["--steps", "20", "--batch-size", "4", "--set", "train.checkpoint_every=5", "--set", "train.keep_checkpoints=1"]

    def run(out: str, **extra: str):
        return subprocess.run([sys.executable, "-c", script, *cli(tmp_path, *argv, out=out)], cwd=REPO,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)

    whole = run("whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run("killed", TOY_KILL_AT_CALL="13")     # after the checkpoint of step 10, before 15
    assert killed.returncode == -signal.SIGKILL
    assert [step for step, _ in list_checkpoints(tmp_path / "killed")] == [10]
    resumed = subprocess.run([sys.executable, "-c", script, *cli(tmp_path, *argv, "--resume", out="killed")],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step 10" in resumed.stdout
    first, second = weights(tmp_path / "whole" / "weights.pt"), weights(tmp_path / "killed" / "weights.pt")
    assert all(torch.equal(first[key], second[key]) for key in first)
    # the resumed log reads as one run: steps 1..20 once each, the same losses as the uninterrupted run's
    whole_log, resumed_log = log_lines(tmp_path / "whole"), log_lines(tmp_path / "killed")
    assert [line["step"] for line in resumed_log] == list(range(1, 21))
    assert [line["total"] for line in resumed_log] == [line["total"] for line in whole_log]


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_with_the_doubled_batch(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("WORLD_SIZE", None)
    argv = ["--steps", "6", "--set", "model.dropout=0.0", "--set", "model.noise=0.0"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "instract_eval", *cli(tmp_path, *argv, "--batch-size", "4", out="ddp")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_cli(cli(tmp_path, *argv, "--batch-size", "8", out="one"))
    two, one = weights(tmp_path / "ddp" / "weights.pt"), weights(tmp_path / "one" / "weights.pt")
    for key in one:
        assert torch.allclose(two[key], one[key], atol=1e-6), key
    payload = torch.load(tmp_path / "ddp" / "checkpoints" / "step-00000006.pt", weights_only=True)
    assert payload["world_size"] == 2 and len(payload["rng"]) == 2


def test_a_config_key_that_does_not_exist_is_one_line_naming_the_file_and_key(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("train:\n  lrr: 0.1\nmodel:\n  items: 8\n")
    line = error_line(capsys, cli(tmp_path, "--config", str(config)))
    assert line == f"error: {config}: train.lrr: unknown key; did you mean 'lr'?"
    config.write_text("model:\n  items: eight\n")
    assert error_line(capsys, cli(tmp_path, "--config", str(config))).endswith("model.items: must be an integer, got 'eight'")
    config.write_text("optim:\n  lr: 1\n")
    assert "optim: unknown section" in error_line(capsys, cli(tmp_path, "--config", str(config)))
    assert "train.batch_size must be 1 or more" in error_line(capsys, cli(tmp_path, "--batch-size", "0"))
    assert error_line(capsys, cli(tmp_path, "--set", "model.dropuot=0")).endswith(
        "model.dropuot: unknown key; did you mean 'dropout'?")
    assert not (tmp_path / "run").exists()


def test_the_recipes_data_error_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{}")
    line = error_line(capsys, cli(tmp_path))
    assert line == f"error: {tmp_path / 'broken.json'}: items: not a toy data file"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_refuses_another_models_checkpoint_and_changed_settings_without_touching_it(tmp_path, capsys):
    run_cli(cli(tmp_path, "--steps", "3"))
    capsys.readouterr()
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000003.pt"
    before = checkpoint.read_bytes()
    line = error_line(capsys, cli(tmp_path, "--steps", "3", "--set", "train.lr=0.01", "--resume"))
    assert f"{checkpoint}: --resume: this checkpoint was trained with other settings (train.lr: 0.2 -> 0.01)" in line
    assert error_line(capsys, cli(tmp_path, "--steps", "3")).startswith(
        f"error: {tmp_path / 'run'}: --out: already holds a training run (up to step-00000003.pt); pass --resume")
    payload = torch.load(checkpoint, weights_only=True)
    payload["recipe"] = "instraction"
    torch.save(payload, checkpoint)
    other = checkpoint.read_bytes()
    assert error_line(capsys, cli(tmp_path, "--steps", "3", "--resume")) == (
        f"error: {checkpoint}: --resume: is a checkpoint of instraction, not of toy")
    assert checkpoint.read_bytes() == other and before != other
    assert "holds no checkpoint to resume" in error_line(capsys, cli(tmp_path, "--resume", out="empty"))


def test_a_non_finite_loss_stops_before_the_step_and_writes_no_checkpoint_for_it(tmp_path, capsys):
    line = error_line(capsys, cli(tmp_path, "--steps", "10", "--set", "model.nan_at_call=5",
                                      "--set", "train.log_every=100"))
    assert "loss: non-finite loss at step 5 (total nan, mse" in line and "the last checkpoint is" in line
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [3]


def test_an_unknown_model_lists_the_trainable_ones(tmp_path, capsys):
    line = error_line(capsys, ["train", "instractoin", "--out", str(tmp_path / "x")])
    assert "no trainable model 'instractoin'" in line


def test_the_python_api_trains_without_the_command_line(tmp_path):
    report = train(TrainRequest(model=TOY, out=tmp_path / "api", data=DataSource(tmp_path), device="cpu",
                                overrides=[("train", "steps", 4)]))
    assert report.steps == 4 and report.started_at == 0 and report.weights == tmp_path / "api" / "weights.pt"
    assert set(report.last_losses) == {"total", "mse"}


def test_the_help_names_every_trainable_model(capsys):
    from instract_eval.training.recipe import available_recipes

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in available_recipes():
        assert name in help_text, name
