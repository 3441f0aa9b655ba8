"""Bad input: one error line naming the file and the field or row, exit code 2, no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from instract_eval.cli import main

from .helpers import ground_truth_document, predictions_document, simulate_full_disk

GOOD_GT = ground_truth_document({"v1": [("A", 0.0, 10.0)], "v2": [("B", 5.0, 15.0)]})
GOOD_PRED = predictions_document({"v1": [("A", 0.0, 10.0, 0.9)]})


def _tal_case(gt=GOOD_GT, pred=GOOD_PRED, extra=("--thresholds", "0.5")):
    def build(tmp: Path) -> list[str]:
        for name, document in (("gt.json", gt), ("pred.json", pred)):
            path = tmp / name
            path.write_text(document if isinstance(document, str) else json.dumps(document))
        return ["score", "tal", "-g", str(tmp / "gt.json"), "-p", str(tmp / "pred.json"), *extra]

    return build


def _with(document: dict, mutate) -> dict:
    copy = json.loads(json.dumps(document))
    mutate(copy)
    return copy


def _set_gt_segment(segment):
    return _with(GOOD_GT, lambda d: d["database"]["v1"]["annotations"][0].__setitem__("segment", segment))


def _set_pred(key, value):
    return _with(GOOD_PRED, lambda d: d["results"]["v1"][0].__setitem__(key, value))


def _npy_case(command: str, arrays: dict[str, object], flags: dict[str, str], raw: dict[str, bytes] | None = None):
    def build(tmp: Path) -> list[str]:
        for name, array in arrays.items():
            np.save(tmp / name, array)
        for name, content in (raw or {}).items():
            (tmp / name).write_bytes(content)
        args = ["score", command]
        for flag, name in flags.items():
            args += [flag, str(tmp / name)]
        return args

    return build


SCORES = np.array([[0.9, 0.1], [0.2, 0.8]])

CASES = {
    "gt malformed json": (_tal_case(gt="{ not json"), ["gt.json", "not valid JSON", "line 1"]),
    "gt empty file": (_tal_case(gt=""), ["gt.json", "file is empty"]),
    "gt missing database": (_tal_case(gt={"version": "x"}), ["gt.json", "missing key 'database'"]),
    "gt missing annotations": (
        _tal_case(gt=_with(GOOD_GT, lambda d: d["database"]["v1"].pop("annotations"))),
        ["gt.json", "database.v1", "missing key 'annotations'"]),
    "gt missing subset": (
        _tal_case(gt=_with(GOOD_GT, lambda d: d["database"]["v2"].pop("subset"))),
        ["gt.json", "database.v2", "missing key 'subset'"]),
    "gt start after end": (_tal_case(gt=_set_gt_segment([5.0, 2.0])),
                           ["gt.json", "database.v1.annotations[0].segment", "start 5.0 is after end 2.0"]),
    "gt zero length": (_tal_case(gt=_set_gt_segment([3.0, 3.0])),
                       ["gt.json", "database.v1.annotations[0].segment", "zero-length"]),
    "gt negative time": (_tal_case(gt=_set_gt_segment([-1.0, 2.0])),
                         ["gt.json", "database.v1.annotations[0].segment", "negative start"]),
    "gt nan time": (_tal_case(gt=json.dumps(GOOD_GT).replace("[0.0, 10.0]", "[NaN, 10.0]")),
                    ["gt.json", "database.v1.annotations[0].segment[0]", "finite"]),
    "gt string time": (_tal_case(gt=_set_gt_segment(["0", 10.0])),
                       ["gt.json", "database.v1.annotations[0].segment[0]", "expected a number"]),
    "gt unknown subset": (_tal_case(extra=("--thresholds", "0.5", "--subset", "validation")),
                          ["gt.json", "no subset 'validation'"]),
    "pred malformed json": (_tal_case(pred='{"results": {'), ["pred.json", "not valid JSON"]),
    "pred missing results": (_tal_case(pred={"version": 1}), ["pred.json", "missing key 'results'"]),
    "pred missing score": (_tal_case(pred=_with(GOOD_PRED, lambda d: d["results"]["v1"][0].pop("score"))),
                           ["pred.json", "results.v1[0]", "missing key 'score'"]),
    "pred nan score": (_tal_case(pred=json.dumps(GOOD_PRED).replace("0.9", "NaN")),
                       ["pred.json", "results.v1[0].score", "finite"]),
    "pred inf score": (_tal_case(pred=json.dumps(GOOD_PRED).replace("0.9", "Infinity")),
                       ["pred.json", "results.v1[0].score", "finite"]),
    "pred start after end": (_tal_case(pred=_set_pred("segment", [9.0, 1.0])),
                             ["pred.json", "results.v1[0].segment", "after end"]),
    "pred negative time": (_tal_case(pred=_set_pred("segment", [-0.5, 1.0])),
                           ["pred.json", "results.v1[0].segment", "negative start"]),
    "pred unknown label": (_tal_case(pred=_set_pred("label", "Juggling")),
                           ["pred.json", "results.v1[0].label", "'Juggling' is not a class"]),
    "pred segment arity": (_tal_case(pred=_set_pred("segment", [1.0, 2.0, 3.0])),
                           ["pred.json", "results.v1[0].segment", "expected [start, end]"]),
    "bad threshold": (_tal_case(extra=("--thresholds", "0.5,abc")), ["--thresholds", "'abc' is not a number"]),
    "threshold out of range": (_tal_case(extra=("--thresholds", "1.5")), ["--thresholds", "(0, 1]"]),
    "unknown preset": (_tal_case(extra=("--preset", "kinetics")), ["--preset", "unknown preset 'kinetics'"]),
    "mcq nan score": (_npy_case("mcq", {"s.npy": np.array([[0.1, np.nan]])}, {"--scores": "s.npy"}),
                      ["s.npy", "non-finite value nan at index [0, 1]"]),
    "mcq answers length": (_npy_case("mcq", {"s.npy": SCORES, "a.npy": np.array([0, 1, 1])},
                                     {"--scores": "s.npy", "--answers": "a.npy"}),
                           ["a.npy", "3 entries", "2 rows"]),
    "mcq answer out of range": (_npy_case("mcq", {"s.npy": SCORES, "a.npy": np.array([0, 2])},
                                          {"--scores": "s.npy", "--answers": "a.npy"}),
                                ["a.npy", "row 1", "answer 2"]),
    "mcq float answers": (_npy_case("mcq", {"s.npy": SCORES, "a.npy": np.array([0.0, 1.0])},
                                    {"--scores": "s.npy", "--answers": "a.npy"}),
                          ["a.npy", "expected integers"]),
    "mcq mask shape": (_npy_case("mcq", {"s.npy": SCORES, "m.npy": np.ones((2, 3), bool)},
                                 {"--scores": "s.npy", "--mask": "m.npy"}),
                       ["m.npy", "does not match"]),
    "mcq masked answer": (_npy_case("mcq", {"s.npy": SCORES, "m.npy": np.array([[False, True], [True, True]])},
                                    {"--scores": "s.npy", "--mask": "m.npy"}),
                          ["m.npy", "row 0", "masked out"]),
    "mcq 1-d scores": (_npy_case("mcq", {"s.npy": np.ones(3)}, {"--scores": "s.npy"}),
                       ["s.npy", "expected a 2-D array"]),
    "mcq empty file": (_npy_case("mcq", {}, {"--scores": "s.npy"}, raw={"s.npy": b""}),
                       ["s.npy", "file is empty"]),
    "mcq not npy": (_npy_case("mcq", {}, {"--scores": "s.npy"}, raw={"s.npy": b"hello"}),
                    ["s.npy", "is not a .npy file"]),
    "mcq missing file": (_npy_case("mcq", {}, {"--scores": "absent.npy"}), ["absent.npy", "file not found"]),
    "retrieval non-square": (_npy_case("retrieval", {"s.npy": np.ones((2, 3))}, {"--similarity": "s.npy"}),
                             ["s.npy", "needs --text-to-video"]),
    "retrieval map range": (_npy_case("retrieval", {"s.npy": np.ones((3, 2)), "m.npy": np.array([0, 1, 2])},
                                      {"--similarity": "s.npy", "--text-to-video": "m.npy"}),
                            ["m.npy", "row 2", "video index 2"]),
    "retrieval captionless video": (
        _npy_case("retrieval", {"s.npy": np.ones((3, 3)), "m.npy": np.array([0, 1, 1])},
                  {"--similarity": "s.npy", "--text-to-video": "m.npy"}),
        ["m.npy", "video 2 has no caption"]),
    "retrieval pools overlap": (
        _npy_case("retrieval", {"s.npy": np.eye(3)}, {"--similarity": "s.npy", "--pools": "p.json"},
                  raw={"p.json": b'{"a": [0, 1], "b": [1, 2]}'}),
        ["p.json", "b[0]", "already in pool 'a'"]),
    "retrieval pools range": (
        _npy_case("retrieval", {"s.npy": np.eye(3)}, {"--similarity": "s.npy", "--pools": "p.json"},
                  raw={"p.json": b'{"a": [0, 7]}'}),
        ["p.json", "a[1]", "item 7"]),
    "retrieval nan inside pool": (
        _npy_case("retrieval", {"s.npy": np.where(np.eye(3) > 0, np.nan, 0.0)},
                  {"--similarity": "s.npy", "--pools": "p.json"}, raw={"p.json": b'{"a": [0, 1, 2]}'}),
        ["s.npy", "non-finite similarity", "pool 'a'"]),
    "classification label range": (
        _npy_case("classification", {"l.npy": SCORES, "y.npy": np.array([0, 5])},
                  {"--logits": "l.npy", "--labels": "y.npy"}),
        ["y.npy", "row 1", "label 5"]),
    "classification length": (
        _npy_case("classification", {"l.npy": SCORES, "y.npy": np.array([0])},
                  {"--logits": "l.npy", "--labels": "y.npy"}),
        ["y.npy", "1 entries", "2 samples"]),
    "classification inf logits": (
        _npy_case("classification", {"l.npy": np.array([[np.inf, 0.0]]), "y.npy": np.array([0])},
                  {"--logits": "l.npy", "--labels": "y.npy"}),
        ["l.npy", "non-finite"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_no_output(case, tmp_path, capsys):
    build, expected = CASES[case]
    out = tmp_path / "result.json"
    with pytest.raises(SystemExit) as exit_info:
        main([*build(tmp_path), "--output", str(out)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])
    assert captured.out == ""
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".result.json")]


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "s.npy").write_bytes(b"")
    with pytest.raises(Exception, match="file is empty"):
        main(["score", "mcq", "--scores", str(tmp_path / "s.npy"), "--debug"])


def test_real_console_script_exit_code_and_single_line(tmp_path):
    (tmp_path / "gt.json").write_text("[1, 2")
    completed = subprocess.run(
        [sys.executable, "-m", "instract_eval", "score", "tal", "-g", str(tmp_path / "gt.json"),
         "-p", str(tmp_path / "gt.json"), "--thresholds", "0.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
    assert completed.stderr.startswith("error: ") and "gt.json" in completed.stderr


def test_output_into_missing_directory_is_an_error(tmp_path, capsys):
    np.save(tmp_path / "s.npy", SCORES)
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "mcq", "--scores", str(tmp_path / "s.npy"), "--output", str(tmp_path / "nope" / "r.json")])
    assert exit_info.value.code == 2
    assert "--output" in capsys.readouterr().err


def _cli(capsys, *argv) -> tuple[int, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    return code, capsys.readouterr().err


def test_each_wrong_argument_gets_its_own_accurate_line(tmp_path, capsys, world):
    """Issue 12, item 8: negative workers, a directory as --include, a text file named .npy."""
    code, err = _cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                     "synth-aa", "--workers", "-1", "--output", str(tmp_path / "out"), "--no-site")
    assert code == 2 and "--workers: the number of decoding workers must be 0" in err and "-1" in err
    assert not (tmp_path / "out").exists()
    code, err = _cli(capsys, "list", "tasks", "--include", str(tmp_path))
    assert code == 2 and "--include: is a directory; --include takes a task file (YAML)" in err
    (tmp_path / "logits.npy").write_text("0.1 0.9\n")
    np.save(tmp_path / "labels.npy", np.array([1]))
    code, err = _cli(capsys, "score", "classification", "--logits", str(tmp_path / "logits.npy"),
                     "--labels", str(tmp_path / "labels.npy"))
    assert code == 2 and "logits.npy: is not a .npy file (it does not start with the NumPy header" in err
    assert "pickled" not in err


def test_score_output_that_cannot_be_written_is_one_line_with_the_errno(tmp_path, capsys, monkeypatch):
    """Issue 12, item 6: a full disk, and a place no one may write (``/proc``, even for root)."""
    np.save(tmp_path / "s.npy", SCORES)
    argv = ["score", "mcq", "--scores", str(tmp_path / "s.npy"), "--output"]
    if os.path.isdir("/proc/self"):
        code, err = _cli(capsys, *argv, "/proc/instract-eval.json")
        assert code == 2 and err == "error: /proc/instract-eval.json: cannot write: [Errno 2] No such file or directory\n"
    out = tmp_path / "full" / "r.json"
    out.parent.mkdir()
    simulate_full_disk(monkeypatch, out.parent)
    code, err = _cli(capsys, *argv, str(out))
    assert code == 2 and err == f"error: {out}: cannot write: [Errno 28] No space left on device\n"
    assert not list(out.parent.iterdir())  # no partial file, no temporary file
    (tmp_path / "afile").write_text("")
    code, err = _cli(capsys, *argv, str(tmp_path / "afile" / "r.json"))  # a file where the directory should be
    assert code == 2 and err == f"error: {tmp_path / 'afile' / 'r.json'}: cannot write: [Errno 20] Not a directory\n"
