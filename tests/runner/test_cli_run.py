"""`instract-eval run` and `list models` from the command line."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from instract_eval.cli import main

from ..helpers import simulate_full_disk


def cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_list_models_shows_the_builtin_adapters(capsys):
    code, out, _ = cli(capsys, "list", "models")
    assert code == 0
    for name in ("random", "null", "synth-bag-of-frames", "synth-temporal"):
        assert name in out


def test_run_prints_the_headline_table_and_writes_records(capsys, world, tmp_path):
    code, out, err = cli(capsys, "run", "--model", "random", "--model-args", "seed=1", "--include",
                         str(world / "tasks.yaml"), "--task", "synth-aa", "--task", "synth-dynamics",
                         "--output", str(tmp_path / "out"), "--no-cache", "--log-samples")
    assert code == 0, err
    assert "synth-aa" in out and "accuracy ↑" in out and "mean.R@1 ↑" in out
    assert "wrote 2 result records" in out and "per-sample logs" in out
    record = json.loads((tmp_path / "out" / "random" / "synth-aa.json").read_text())
    assert record["model"]["args"] == {"seed": 1}
    assert (tmp_path / "out" / "random" / "synth-dynamics.samples.jsonl").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--model", "randm"], "unknown model 'randm'; did you mean random?"),
    (["--model", "random", "--model", "null", "--model-args", "seed=1", "--model-args", "dim=2",
      "--model-args", "dim=3"], "3 --model-args for 2 models"),
    (["--model", "random", "--model-args", "seed"], "--model-args"),
    (["--model", "random", "--task", "synth-ab"], "unknown task or group 'synth-ab'"),
    (["--model", "random", "--batch-size", "0"], "batch size must be at least 1"),
    (["--model", "random", "--precision", "fp8"], "unknown precision 'fp8'"),
    (["--model", "random", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_one_line_exit_2_and_no_record(capsys, world, tmp_path, argv, message):
    code, out, err = cli(capsys, "run", *argv, "--include", str(world / "tasks.yaml"), "--output",
                         str(tmp_path / "out"), "--no-cache")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.rglob("*.json"))


def test_a_failure_during_the_work_is_one_error_line_after_the_progress_so_far(capsys, world, tmp_path):
    """Outside a terminal the progress lines of the work done stay in the log; the error is the last line."""
    code, out, err = cli(capsys, "run", "--model", "tests.runner.adapters:nan_videos", "--task", "synth-aa",
                         "--include", str(world / "tasks.yaml"), "--output", str(tmp_path / "out"), "--no-cache")
    *progress, last = err.strip().splitlines()
    assert code == 2 and last.startswith("error: ") and "NaN or inf video embeddings" in last, err
    assert progress and all(re.match(r"\[\d\d:\d\d:\d\d\] tests.runner.adapters:nan_videos synth-aa: ", line)
                            for line in progress), err
    assert not list(tmp_path.rglob("*.json"))


def test_the_site_is_checked_before_any_work(capsys, world, tmp_path):
    """A --site that is not a site, or a file in --output that is not a record (the site shows every
    record there), is refused before anything is evaluated or written."""
    argv = ["run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task", "synth-aa", "--no-cache"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    code, _, err = cli(capsys, *argv, "--output", str(tmp_path / "a"), "--site", str(foreign))
    assert code == 2 and f"{foreign}: --site: holds files" in err and not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.json").write_text("{}")
    code, _, err = cli(capsys, *argv, "--output", str(tmp_path / "b"))
    assert code == 2 and "notes.json: schema" in err and "--no-site" in err
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["notes.json"]
    code, _, err = cli(capsys, *argv, "--output", str(tmp_path / "b"), "--no-site")
    assert code == 0 and (tmp_path / "b" / "random" / "synth-aa.json").is_file() and not (tmp_path / "b-site").exists()


def test_the_site_of_the_current_directory_sits_beside_it(capsys, world, tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    code, out, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                         "synth-aa", "--no-cache", "--output", ".")
    assert code == 0, err
    assert "wrote 1 result record to ./" in out
    assert (tmp_path / "here-site" / "synth-aa.html").is_file()


@pytest.mark.slow
def test_run_with_no_arguments_compares_the_synth_models(capsys, tmp_path, monkeypatch):
    """The README's first command: the embedded world, both models, the synth group, the table."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "run")
    assert code == 0, err
    assert "synth-bag-of-frames" in out and "synth-temporal" in out and "wrote 20 result records to results/" in out
    # the head is a localizer: the seven other tasks are skipped for it, said in two lines (one per reason)
    skips = [line for line in out.splitlines() if line.startswith("skipped ")]
    assert skips == [
        "skipped synth-semantic, synth-logic, synth-dynamics, synth-aa, synth-vr, synth-or for actionformer-synth: "
        "each needs a dual encoder or pair scorer model; actionformer-synth provides: localizer",
        "skipped synth-srt for actionformer-synth: it needs a dual encoder or pair scorer or fixed label classifier "
        "model; actionformer-synth provides: localizer"]
    values = {}
    for path in (tmp_path / "results").glob("*/*.json"):
        record = json.loads(path.read_text())
        for name in ("accuracy", "average_mAP", "LAP"):
            if name in record["metrics"]:
                values[record["model"]["name"], record["task"]["name"]] = record["metrics"][name]["value"]
    # The picture the two models exist to show (margins asserted in tests/adapters/test_synth_models.py).
    assert values["synth-bag-of-frames", "synth-vr"] == 0.5
    assert values["synth-temporal", "synth-vr"] > 0.7 and values["synth-bag-of-frames", "synth-or"] > 0.8
    # Localization by sliding windows: only the order-aware model tells grow from shrink, left from right.
    assert values["synth-temporal", "synth-tal"] > 0.4 > 0.1 > values["synth-bag-of-frames", "synth-tal"]
    assert values["synth-temporal", "synth-lap"] == 0.0  # class names, not descriptions: no language advantage
    # A head trained on the order-aware encoder's features beats that encoder's own sliding window.
    assert values["actionformer-synth", "synth-tal"] > values["synth-temporal", "synth-tal"] + 0.2
    # ... and the leaderboard of its results, beside them.
    index = tmp_path / "results-site" / "index.html"
    assert f"leaderboard of every record in results/: {Path('results-site') / 'index.html'}" in out
    assert "Synthetic action world" in index.read_text()
    assert len(list((tmp_path / "results-site").glob("synth-*.html"))) == 9
    # The README shows this table whole, row for row and digit for digit.
    assert _readme_default_table() == _printed_table(out)


def _printed_table(out: str) -> list[list[str]]:
    """The rows of the summary table as printed: the cells between the box-drawing bars."""
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in out.splitlines() if line.startswith("│")]


def _readme_default_table() -> list[list[str]]:
    """The rows of the README's default-run table, header and rule excluded."""
    readme = (Path(__file__).parents[2] / "README.md").read_text().splitlines()
    start = readme.index("| task | metric | synth-bag-of-frames | synth-temporal | actionformer-synth |") + 2
    rows = []
    for line in readme[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _error_line(err: str) -> str:
    """The error: the last line on standard error (progress lines outside a terminal come before it)."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_an_output_no_one_can_create_is_one_line_before_any_work(capsys, world, monkeypatch):
    """``/proc`` refuses new entries even to root, whom ``os.access`` calls allowed; the run used to
    do all its work and then fail in a traceback."""
    import instract_eval.encoding.encoder as encoder

    monkeypatch.setattr(encoder, "clip_loader", lambda *a, **k: pytest.fail("a clip was decoded"))
    for extra in ([], ["--no-site"]):
        code, _, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                           "synth-aa", "--no-cache", "--output", "/proc/instract-eval/results", *extra)
        assert code == 2 and _error_line(err) == ("error: /proc/instract-eval/results: --output: cannot write: "
                                                  "[Errno 2] No such file or directory"), err


def test_a_disk_full_midway_is_one_line_saying_which_records_were_written(capsys, world, tmp_path, monkeypatch):
    out = tmp_path / "out"
    simulate_full_disk(monkeypatch, out, files_that_fit=1)
    code, stdout, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                            "synth-aa", "--task", "synth-dynamics", "--no-cache", "--no-site", "--output", str(out))
    assert code == 2 and _error_line(err) == (
        f"error: {out / 'random' / 'synth-dynamics.json'}: cannot write: [Errno 28] No space left on device; "
        f"records written before it: 1 of 2 in {out}: {Path('random') / 'synth-aa.json'}"), err
    assert sorted(p.name for p in out.rglob("*")) == ["random", "synth-aa.json"]  # no temporary file left


def test_a_full_cache_disk_midway_is_one_line_saying_which_records_were_written(capsys, world, tmp_path,
                                                                               monkeypatch):
    """The cache writes as the run goes, so it can be what fills a shared disk."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, *_ = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                   "synth-aa", "--cache-dir", str(cache), "--no-site", "--output", str(tmp_path / "warm"))
    assert code == 0  # synth-aa's outputs are cached; synth-dynamics needs new ones
    simulate_full_disk(monkeypatch, cache)
    code, _, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                       "synth-aa", "--task", "synth-dynamics", "--cache-dir", str(cache), "--no-site",
                       "--output", str(out))
    line = _error_line(err)
    assert code == 2 and line.startswith(f"error: {cache}") and (
        f": cannot write: [Errno 28] No space left on device; records written before it: 1 of 2 in {out}: "
        f"{Path('random') / 'synth-aa.json'}") in line, err


def test_a_site_that_cannot_be_written_after_the_run_is_one_line(capsys, world, tmp_path, monkeypatch):
    """The records are written and said so; the site's failure names the site, and leaves no page."""
    site = tmp_path / "public" / "site"
    simulate_full_disk(monkeypatch, tmp_path / "public")
    code, stdout, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                            "synth-aa", "--no-cache", "--output", str(tmp_path / "out"), "--site", str(site))
    assert code == 2 and _error_line(err) == f"error: {site}: cannot write: [Errno 28] No space left on device", err
    assert "wrote 1 result record" in stdout and (tmp_path / "out" / "random" / "synth-aa.json").is_file()
    assert not list((tmp_path / "public").iterdir())  # neither a page nor a staging directory


def test_a_site_under_a_file_is_refused_before_any_work(capsys, world, tmp_path):
    (tmp_path / "file").write_text("")
    code, _, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                       "synth-aa", "--no-cache", "--output", str(tmp_path / "out"), "--site",
                       str(tmp_path / "file" / "site"))
    assert code == 2 and "--site: " in _error_line(err) and "is a file" in err and not (tmp_path / "out").exists()


def test_records_and_site_pages_get_the_users_umask(capsys, world, tmp_path):
    previous = os.umask(0o027)
    try:
        code, _, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                           "synth-aa", "--no-cache", "--log-samples", "--output", str(tmp_path / "out"))
    finally:
        os.umask(previous)
    assert code == 0, err
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] + list((tmp_path / "out-site").iterdir())
    assert len(files) == 5 and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o640}
    assert stat.S_IMODE((tmp_path / "out-site").stat().st_mode) == 0o750
