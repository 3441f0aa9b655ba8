"""`instract-eval compare` and the record reader it stands on."""

from __future__ import annotations

import json

import pytest

from instract_eval.errors import InputError
from instract_eval.results import read_records
from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.tasks import load_registry

from .test_cli_run import cli


@pytest.fixture(scope="module")
def two_runs(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    registry = load_registry([world / "tasks.yaml"])
    for seed, name in ((1, "a"), (2, "b")):
        run_evaluation([ModelRequest("random", {"seed": seed})], ["synth-aa"], registry,
                       RunOptions(output=root / name))
    return root


def test_compare_shows_both_runs_and_their_difference(capsys, two_runs):
    code, out, err = cli(capsys, "compare", str(two_runs / "a"), str(two_runs / "b"))
    assert code == 0, err
    a, b = (read_records(two_runs / name)[0]["metrics"]["accuracy"]["value"] for name in ("a", "b"))
    row = next(line for line in out.splitlines() if "synth-aa" in line)
    assert f"{a:.3f}" in row and f"{b:.3f}" in row and f"{b - a:+.3f}" in row
    assert "a:random" in out and "b:random" in out  # one model name in both runs: columns named by source


@pytest.mark.parametrize("content, message", [
    ("{", "not a readable JSON file"),
    ('{"schema": "other"}', "schema: not an instract-eval result record"),
    ('{"schema": "instract-eval/result/1", "model": {"name": "m"}, "task": {}}', "task.name: missing task.name"),
    ('{"schema": "instract-eval/result/1", "model": {"name": "m"}, "task": {"name": "t"}, '
     '"metrics": {"acc": {"value": 1}}}', "metrics.acc: each metric needs value, unit and direction"),
])
def test_a_file_that_is_not_a_record_is_one_line_naming_it(capsys, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = cli(capsys, "compare", str(bad))
    assert code == 2 and message in err and str(bad) in err and len(err.strip().splitlines()) == 1


def test_records_read_back_equal_what_the_run_wrote(two_runs, tmp_path):
    path = next((two_runs / "a").rglob("*.json"))
    assert read_records(path) == [json.loads(path.read_text())]
    with pytest.raises(InputError, match="no result records"):
        read_records(tmp_path)
    with pytest.raises(InputError, match="no such file or directory"):
        read_records(tmp_path / "absent")
