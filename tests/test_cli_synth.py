"""`instract-eval synth`: the world lands on disk and registers as the synth group."""

from __future__ import annotations

import json

import pytest

from instract_eval.cli import main
from instract_eval.tasks import load_registry, require_data


def run(argv):
    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code or 0


def test_synth_writes_a_world_whose_tasks_resolve(tmp_path, capsys):
    out = tmp_path / "world"
    assert run(["synth", "--out", str(out), "--size", "tiny", "--seed", "3"]) == 0
    assert "register it with" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3
    registry = load_registry([out / "tasks.yaml"])
    names = [spec.name for spec in registry.resolve(["synth"])]
    assert names == ["synth-semantic", "synth-logic", "synth-dynamics", "synth-aa", "synth-vr", "synth-or",
                     "synth-srt", "synth-tal", "synth-lap"]
    for spec in registry.resolve(["synth"]):
        assert require_data(spec, environ={}).present


def test_synth_bad_size_and_foreign_directory_are_one_line_errors(tmp_path, capsys):
    assert run(["synth", "--out", str(tmp_path / "w"), "--size", "huge"]) == 2
    assert "unknown size 'huge'" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert run(["synth", "--out", str(tmp_path / "mine"), "--size", "tiny"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
