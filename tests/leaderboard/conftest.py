"""Result directories the leaderboard tests build sites from: real records of the runner, plus
copies edited to carry a hostile model name or a task that papers report numbers for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.tasks import load_registry

TASKS = ["synth-aa", "synth-vr", "synth-semantic", "synth-dynamics", "synth-srt", "synth-tal"]
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _copy_record(source: Path, target_dir: Path, *, model: str | None = None, task: str | None = None,
                 groups: list[str] | None = None) -> Path:
    record = json.loads(source.read_text())
    if model is not None:
        record["model"]["name"] = record["model"]["label"] = model
    if task is not None:
        record["task"]["name"] = record["task"]["spec"]["name"] = task
    if groups is not None:
        record["task"]["groups"] = groups
    target = target_dir / f"{len(list(target_dir.glob('*.json')))}.json"
    target_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record))
    return target


@pytest.fixture(scope="session")
def results(world, tmp_path_factory) -> dict[str, Path]:
    """``runs``: two seeds of the random model on six synth tasks; ``hostile``: one record whose
    model and task names are markup; ``paper``: a record renamed to instract-semantic by a model
    named like a reported method (viclip)."""
    root = tmp_path_factory.mktemp("leaderboard")
    registry = load_registry([world / "tasks.yaml"])
    run_evaluation([ModelRequest("random", {"seed": 1}), ModelRequest("random", {"seed": 2})], TASKS, registry,
                   RunOptions(output=root / "runs"))
    records = {path.parent.name + "/" + path.stem: path for path in (root / "runs").rglob("*.json")}
    first = sorted(label for label in records if label.endswith("/synth-aa"))[0]
    _copy_record(records[first], root / "hostile", model=HOSTILE, task=f"synth-aa{HOSTILE}")
    semantic = sorted(label for label in records if label.endswith("/synth-semantic"))[0]
    _copy_record(records[semantic], root / "paper", model="viclip", task="instract-semantic",
                 groups=["instract-bench"])
    return {"runs": root / "runs", "hostile": root / "hostile", "paper": root / "paper", "root": root}
