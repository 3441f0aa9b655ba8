"""Progress of `instract-eval run` outside a terminal: timestamped lines on standard error, for CI logs."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from instract_eval.cli import _progress
from instract_eval.runner.progress import INTERVAL_VARIABLE, LineProgress

from .test_cli_run import cli

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (?P<what>.*)$")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_piped_run_prints_each_task_start_and_finish_and_its_counts(world, tmp_path):
    """Through a real pipe (no terminal, as in CI), with an interval of 0: a line per batch."""
    command = [sys.executable, "-m", "instract_eval", "run", "--model", "random", "--include",
               str(world / "tasks.yaml"), "--task", "synth-aa", "--task", "synth-semantic", "--output",
               str(tmp_path / "out"), "--no-cache", "--no-site", "--batch-size", "2"]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", INTERVAL_VARIABLE: "0"}
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert all(LINE.match(line) for line in lines), done.stderr
    said = [LINE.match(line)["what"] for line in lines]
    assert said[0] == "random synth-aa: task 1/2 started"
    assert re.fullmatch(r"random synth-aa: task 1/2 finished in \d+\.\d s", said[said.index(
        "random synth-semantic: task 2/2 started") - 1])
    assert re.fullmatch(r"random synth-semantic: task 2/2 finished in \d+\.\d s", said[-1])
    counts = [line for line in said if line.startswith("random synth-aa: encoding videos ")]
    assert re.fullmatch(r"random synth-aa: encoding videos 2/6 \(\d+\.\d/s\)", counts[0]), counts
    assert counts[-1].startswith("random synth-aa: encoding videos 6/6 ") and len(counts) == 3
    assert "synth-aa" in done.stdout and "wrote 2 result records" in done.stdout
    assert not LINE.search(done.stdout) and "encoding videos" not in done.stdout  # stdout stays the table


def test_count_lines_come_at_most_once_per_interval():
    clock, stream = FakeClock(), io.StringIO()
    progress = LineProgress(stream, interval=5.0, clock=clock)
    progress.announce("m t: task 1/1 started")
    bar = progress.add_task("m t: encoding videos", total=13)
    for second in range(13):
        clock.now = float(second + 1)
        progress.advance(bar)
    progress.remove_task(bar)
    progress.announce("m t: task 1/1 finished in 13.0 s")
    said = [LINE.match(line)["what"] for line in stream.getvalue().splitlines()]
    assert said == ["m t: task 1/1 started", "m t: encoding videos 5/13 (1.0/s)",
                    "m t: encoding videos 10/13 (1.0/s)", "m t: task 1/1 finished in 13.0 s"]


def test_bars_in_a_terminal_and_lines_elsewhere():
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(_progress(terminal), Progress)
    assert isinstance(_progress(Console(file=io.StringIO(), force_terminal=False)), LineProgress)


def test_a_bad_interval_is_one_line_before_any_work(capsys, world, tmp_path, monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "soon")
    code, out, err = cli(capsys, "run", "--model", "random", "--include", str(world / "tasks.yaml"), "--task",
                         "synth-aa", "--output", str(tmp_path / "out"), "--no-cache", "--no-site")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"error: {INTERVAL_VARIABLE}: must be a number of seconds, 0 or more, got 'soon'" in err
    assert not (tmp_path / "out").exists()


def test_names_reach_the_log_and_the_bars_as_text():
    """Model and task names come from the user's files: an escape sequence must not reach the log,
    and Rich markup must show as the characters it is in a terminal's bars."""
    stream = io.StringIO()
    LineProgress(stream, interval=0.0).announce("evil\x1b[2J\x9b [bold red]model[/] t: task 1/1 started")
    assert "\x1b" not in stream.getvalue() and "\x9b" not in stream.getvalue()
    assert "evil[2J [bold red]model[/] t: task 1/1 started" in stream.getvalue()

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120)
    with _progress(terminal) as bars:
        bars.add_task("[bold red]EVIL[/] synth-aa: encoding videos", total=2)
        bars.refresh()
    assert "[bold red]EVIL[/] synth-aa: encoding videos" in screen.getvalue()
