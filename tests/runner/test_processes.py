"""The runner across processes: two gloo ranks under torchrun, and a run killed with SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.tasks import load_registry

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def environment() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def records(directory: Path) -> dict:
    """task -> metric -> value from the result files under ``directory``."""
    found = {}
    for path in sorted(directory.glob("*/*.json")):
        record = json.loads(path.read_text())
        found[record["task"]["name"]] = {name: m["value"] for name, m in record["metrics"].items()}
    return found


def single_process(world: Path, tmp_path: Path, model: ModelRequest, tasks: list[str]) -> dict:
    run_evaluation([model], tasks, load_registry([world / "tasks.yaml"]), RunOptions(output=tmp_path / "single"))
    return records(tmp_path / "single")


def test_two_gloo_ranks_give_the_single_process_numbers(world, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "instract_eval", "run", "--model", "random", "--model-args", "seed=3",
               "--include", str(world / "tasks.yaml"), "--task", "synth", "--output", str(tmp_path / "ranks"),
               "--no-cache", "--device", "cpu"]
    done = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = records(tmp_path / "ranks")
    assert two == single_process(world, tmp_path, ModelRequest("random", {"seed": 3}), ["synth"])
    first = json.loads(next((tmp_path / "ranks" / "random").glob("synth-aa.json")).read_text())
    assert first["run"]["world_size"] == 2
    lines = (world / "actionbench" / "ego4d_test.jsonl").read_text().splitlines()
    assert first["run"]["work"]["videos_encoded"] == len(lines)  # counted over both ranks, each clip once


def test_a_run_killed_midway_resumes_from_the_cache_with_the_same_numbers(world, tmp_path):
    cache, tasks = tmp_path / "cache", ["synth-semantic", "synth-aa"]
    command = [sys.executable, "-m", "instract_eval", "run", "--model", "tests.runner.adapters:slow_random",
               "--model-args", "delay_s=0.25", "--include", str(world / "tasks.yaml"),
               "--output", str(tmp_path / "out"), "--cache-dir", str(cache), "--batch-size", "1"]
    for task in tasks:
        command += ["--task", task]
    process = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(cache.rglob("*.npz"))) < 4:  # the first batches of video embeddings are on disk
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the run wrote no cache shard in time"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "out" / "tests.runner.adapters_slow_random" / "synth-aa.json").exists()

    resumed = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = tmp_path / "out" / "tests.runner.adapters_slow_random"
    semantic = json.loads((out / "synth-semantic.json").read_text())
    items = len(json.loads((world / "instract" / "semantic.json").read_text()))
    work = semantic["run"]["work"]
    assert work["videos_reused"] >= 4 and work["videos_encoded"] == items - work["videos_reused"]
    assert records(tmp_path / "out") == single_process(world, tmp_path, ModelRequest("random", {"seed": 0}), tasks)


def test_ranks_that_see_different_caches_still_split_the_same_work(world, tmp_path):
    """Rank 1 starts late and finds shards rank 0 already wrote; the split must not drop items."""
    tasks = ["synth-aa", "synth-semantic"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "instract_eval", "run", "--model", "tests.runner.adapters:late_rank",
               "--include", str(world / "tasks.yaml"), "--output", str(tmp_path / "ranks"),
               "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--batch-size", "1"]
    for task in tasks:
        command += ["--task", task]
    done = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for path in (tmp_path / "ranks").glob("*/*.json"):
        coverage = json.loads(path.read_text())["dataset"]["coverage"]
        assert coverage["evaluated"] == coverage["total"], (path.name, coverage)
    assert records(tmp_path / "ranks") == single_process(world, tmp_path, ModelRequest("random", {"seed": 0}), tasks)
