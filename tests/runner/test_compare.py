"""`instract-eval compare` and the record reader it stands on."""

from __future__ import annotations

import json
import re

import pytest

from instract_eval.errors import InputError
from instract_eval.results import read_records
from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.tasks import load_registry

from ..helpers import result_record, write_json
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


def _records(directory, *records) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, record in enumerate(records):
        write_json(directory / f"{index}.json", record)


@pytest.mark.parametrize("command", ["compare", "regress", "leaderboard"])
@pytest.mark.parametrize("value", [1e308, -0.25, float("inf")])
def test_a_fraction_outside_0_1_is_refused_by_every_reader(capsys, tmp_path, command, value):
    """1e308 showed as ``inf (best)`` on the leaderboard and counted as an improvement in the gate."""
    good = result_record("m", "t", {"accuracy": (0.5, "fraction", "higher")})
    bad = result_record("m", "t", {"accuracy": (value, "fraction", "higher")})
    _records(tmp_path / "base", good)
    _records(tmp_path / "cand", bad)
    argv = {"compare": ["compare", str(tmp_path / "base"), str(tmp_path / "cand")],
            "regress": ["regress", "--baseline", str(tmp_path / "base"), "--candidate", str(tmp_path / "cand")],
            "leaderboard": ["leaderboard", "build", str(tmp_path / "cand"), "--out", str(tmp_path / "site")]}[command]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / 'cand' / '0.json'}: metrics.accuracy.value: a fraction must be in [0, 1], got {value!r}" in err
    assert not (tmp_path / "site").exists()


def test_a_relative_change_may_be_negative_and_nan_still_reads_as_no_value(tmp_path):
    _records(tmp_path / "ok", result_record("m", "t", {"LAP": (-0.4, "fraction", "lower"),
                                                        "accuracy": (float("nan"), "fraction", "higher")}))
    assert read_records(tmp_path / "ok")[0]["metrics"]["LAP"]["value"] == -0.4
    _records(tmp_path / "bad", result_record("m", "t", {"LAP": (1.5, "fraction", "lower")}))
    with pytest.raises(InputError, match=r"metrics.LAP.value: a relative change must be finite and at most 1"):
        read_records(tmp_path / "bad")


@pytest.mark.parametrize("field, value, message", [
    ("direction", "up", "metrics.accuracy.direction: direction must be 'higher', 'lower' or null, got 'up'"),
    ("unit", None, "metrics.accuracy.unit: unit must be a non-empty string, got None"),
])
def test_an_unknown_direction_or_unit_is_refused_not_left_ungated(tmp_path, field, value, message):
    record = result_record("m", "t", {"accuracy": (0.5, "fraction", "higher")})
    record["metrics"]["accuracy"][field] = value
    _records(tmp_path / "in", record)
    with pytest.raises(InputError, match=re.escape(message)):
        read_records(tmp_path / "in")


HOSTILE_LABEL = "[bold red]EVIL[/]\x1b[2J\x9b31m\u202e"


def test_markup_and_control_characters_in_names_are_shown_as_text(capsys, tmp_path):
    _records(tmp_path / "a", result_record(HOSTILE_LABEL, "task\x1b]0;pwned\x07[/]", {"acc[i]": (0.5, "fraction",
                                                                                                 "higher")}))
    _records(tmp_path / "b", result_record("plain", "task\x1b]0;pwned\x07[/]", {"acc[i]": (0.75, "fraction",
                                                                                           "higher")}))
    code, out, err = cli(capsys, "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 0, err
    assert "[bold red]EVIL[/][2J31m" in out and "task]0;pwned[/]" in out and "acc[i] ↑" in out
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out)


def _header_cells(out: str, column: int) -> str:
    """The text of one header column of a rich table, its folded lines joined."""
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    rows = []
    for line in lines[top + 1:]:
        if line.startswith("┡"):
            break
        rows.append(line.split("┃")[column + 1].strip())
    return "".join(rows)


def test_compare_shows_long_model_names_whole_in_a_narrow_terminal(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    names = [f"instract-vitb16-finetuned-on-the-whole-corpus-for-forty-epochs-seed-{seed}" for seed in (1, 2)]
    for name, value in zip(names, (0.5, 0.625)):
        _records(tmp_path / name[-6:], result_record(name, "synth-aa", {"accuracy": (value, "fraction", "higher")}))
    code, out, err = cli(capsys, "compare", *(str(tmp_path / name[-6:]) for name in names))
    assert code == 0, err
    assert [_header_cells(out, column) for column in (2, 3)] == names
    assert "…" not in out


def test_the_error_line_holds_no_control_characters(capsys, tmp_path):
    bad = tmp_path / "bad\x1b[2J.json"
    bad.write_text("{")
    code, _, err = cli(capsys, "compare", str(bad))
    assert code == 2 and f"error: {tmp_path}/bad[2J.json: not a readable JSON file" in err and "\x1b" not in err
