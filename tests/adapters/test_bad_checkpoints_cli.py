"""``instract-eval run --model clip --model-args checkpoint=BAD``: exit 2, one ``error:`` line naming
the file and what is wrong with it, and nothing written (no record, no site, no cache entry).

The good tiny checkpoint (``tests/data/official/clip/ViT-T-8-state.pt``, a plain fp16 OpenAI-format
state dict) runs through the same command line, so every refusal below is the file's doing.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import torch

from instract_eval.cli import main

# the tests write TorchScript archives (OpenAI's format) with torch.jit, which torch now calls deprecated
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

OFFICIAL = pathlib.Path(__file__).resolve().parents[1] / "data" / "official"
GOOD = OFFICIAL / "clip" / "ViT-T-8-state.pt"


def cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def run_clip(capsys, world, tmp_path, checkpoint) -> tuple[int, str, str]:
    return cli(capsys, "run", "--model", "clip", "--model-args", f"checkpoint={checkpoint}", "--include",
               str(world / "tasks.yaml"), "--task", "synth-semantic", "--output", str(tmp_path / "out"),
               "--cache-dir", str(tmp_path / "cache"))


def assert_nothing_written(tmp_path) -> None:
    for name in ("out", "out-site", "cache"):
        folder = tmp_path / name
        assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()], name


@pytest.fixture(scope="module")
def good_state():
    return torch.load(GOOD, map_location="cpu", weights_only=True)


class Reduce:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class Restoring(torch.nn.Module):
    """TorchScript whose ``__setstate__`` (run by torch.jit.load) creates the file named in its state."""

    def __init__(self, marker: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.marker = marker

    def forward(self, x):
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.marker = state[1]
        self.training = state[2]
        self.weight = state[0] + torch.from_file(state[1], True, 2, dtype=torch.float32) * 0


def bad_file(kind: str, folder: pathlib.Path, state: dict, marker: pathlib.Path) -> tuple[pathlib.Path, list[str]]:
    """A bad checkpoint of ``kind`` and the parts its error line must hold."""
    target = folder / f"{kind}.pt"
    if kind == "lavila":
        return next((OFFICIAL / "lavila").glob("*.pth")), ["visual.conv1.weight"]
    if kind == "viclip":
        return next((OFFICIAL / "viclip").glob("*.pth")), ["visual.conv1.weight"]
    if kind == "missing key":
        torch.save({k: v for k, v in state.items() if k != "transformer.resblocks.1.ln_2.bias"}, target)
        return target, ["missing transformer.resblocks.1.ln_2.bias"]
    if kind == "mis-shaped key":
        torch.save({**state, "visual.transformer.resblocks.0.mlp.c_fc.weight": torch.zeros(128, 64).half()}, target)
        return target, ["wrong shape of visual.transformer.resblocks.0.mlp.c_fc.weight (file [128, 64], "
                        "model [256, 64])"]
    if kind == "unexpected key":
        torch.save({**state, "visual.extra_head.weight": torch.zeros(2)}, target)
        return target, ["unexpected visual.extra_head.weight"]
    if kind == "nan":
        proj = state["visual.proj"].clone()
        proj[0, 0] = float("nan")
        torch.save({**state, "visual.proj": proj}, target)
        return target, ["non-finite values in visual.proj"]
    if kind == "truncated":
        data = GOOD.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        return target, ["truncated or not a checkpoint"]
    if kind == "pickle carrying code":
        torch.save({"state_dict": state, "hook": Reduce(os.system, f"touch {marker}")}, target)
        return target, ["refused", "posix.system"]
    if kind == "torchscript carrying code":
        torch.jit.script(Restoring(str(marker))).save(str(target))
        return target, ["TorchScript", "__setstate__", "not run"]
    raise AssertionError(kind)


KINDS = ["lavila", "viclip", "missing key", "mis-shaped key", "unexpected key", "nan", "truncated",
         "pickle carrying code", "torchscript carrying code"]


def test_the_good_checkpoint_runs_through_the_same_command(capsys, world, tmp_path):
    code, out, err = run_clip(capsys, world, tmp_path, GOOD)
    assert code == 0, err
    assert (tmp_path / "out" / "clip" / "synth-semantic.json").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_checkpoint_is_one_error_line_and_writes_nothing(capsys, world, tmp_path, good_state, kind):
    marker = tmp_path / "ran"
    checkpoint, parts = bad_file(kind, tmp_path, good_state, marker)
    code, out, err = run_clip(capsys, world, tmp_path, checkpoint)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {checkpoint}: checkpoint: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    assert_nothing_written(tmp_path)
    assert not marker.exists()


def test_the_installed_command_prints_one_line_and_runs_nothing(world, tmp_path, good_state):
    """In a fresh process (no pytest capturing warnings): stderr is the one line, nothing else."""
    marker = tmp_path / "ran"
    checkpoint, _ = bad_file("pickle carrying code", tmp_path, good_state, marker)
    completed = subprocess.run(
        [sys.executable, "-m", "instract_eval", "run", "--model", "clip", "--model-args", f"checkpoint={checkpoint}",
         "--include", str(world / "tasks.yaml"), "--task", "synth-semantic", "--output", str(tmp_path / "out"),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines() == [
        f"error: {checkpoint}: checkpoint: clip checkpoint refused: refusing to load posix.system: checkpoints hold "
        "data, not code"], completed.stderr
    assert not marker.exists()
    assert_nothing_written(tmp_path)
