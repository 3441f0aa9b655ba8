"""The summary table of `run` and `compare`: a value computed on part of a task says so."""

from __future__ import annotations

import json
import shutil

import pytest

from .test_cli_run import cli

NOTE = "(n/m items): only n of the task's m items were evaluated"


@pytest.fixture(scope="module")
def partial_run(world, tmp_path_factory):
    """Two models on synth-aa (one of its 6 videos deleted, --allow-missing) and synth-semantic (whole)."""
    root = tmp_path_factory.mktemp("partial")
    shutil.copytree(world, root / "world")
    first = json.loads((root / "world" / "actionbench" / "ego4d_test.jsonl").read_text().splitlines()[0])
    (root / "world" / "videos" / f"{first['clip_uid']}.mp4").unlink()
    argv = ["run", "--model", "random", "--model", "null", "--include", str(root / "world" / "tasks.yaml"),
            "--task", "synth-aa", "--task", "synth-semantic", "--output", str(root / "out"), "--no-cache",
            "--no-site", "--allow-missing"]
    return root, argv


def rows(out: str, task: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("│") and f" {task} " in line]


def test_allow_missing_shows_the_coverage_of_each_partial_cell(capsys, partial_run):
    root, argv = partial_run
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    [partial] = rows(out, "synth-aa")
    assert partial.count("(5/6 items)") == 2, out  # both models' cells
    whole = rows(out, "synth-semantic")
    assert whole and not any("items)" in row for row in whole), out
    assert NOTE in " ".join(out.split()), out  # the caption, however the console wraps it
    coverage = json.loads((root / "out" / "random" / "synth-aa.json").read_text())["dataset"]["coverage"]
    assert (coverage["evaluated"], coverage["total"]) == (5, 6)


def test_compare_shows_the_coverage_too_and_a_whole_run_shows_none(capsys, partial_run, world, tmp_path):
    root, argv = partial_run
    assert cli(capsys, *argv)[0] == 0
    code, out, err = cli(capsys, "compare", str(root / "out"))
    assert code == 0, err
    assert rows(out, "synth-aa")[0].count("(5/6 items)") == 2 and NOTE in " ".join(out.split())
    code, out, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                         "synth-aa", "--output", str(tmp_path / "whole"), "--no-cache", "--no-site", "--allow-missing")
    assert code == 0, err
    assert rows(out, "synth-aa") and "items)" not in out and "only n of" not in out
