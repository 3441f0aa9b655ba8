"""`instract-eval check` and `list tasks`: what they say about a task's videos, and that they resolve
task names as `run` does (issue 12, items 5 and 12)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from instract_eval.cli import main
from instract_eval.tasks import evaluate as evaluate_module


def run_cli(argv):
    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code or 0


@pytest.fixture
def world_copy(world, tmp_path):
    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    return copy


def test_check_decodes_each_video_to_its_last_frame_and_fails_on_a_truncated_mp4(world_copy, capsys):
    tasks = str(world_copy / "tasks.yaml")
    assert run_cli(["check", "synth-semantic", "--include", tasks]) == 0
    videos = len(list((world_copy / "videos").glob("sem_*.mp4")))
    assert f"{videos} of {videos} videos present, {videos} decoded to their last frame" in capsys.readouterr().out

    cut = sorted((world_copy / "videos").glob("sem_*.mp4"))[0]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a download that stopped half-way
    assert run_cli(["check", "synth-semantic", "--include", tasks]) == 2
    captured = capsys.readouterr()
    assert (f"{videos} of {videos} videos present, {videos - 1} decoded to their last frame; 1 unreadable: {cut}: "
            in captured.out)
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {cut}: ") and "--allow-missing" in error[0]

    # --allow-missing evaluates the readable videos, as `run --allow-missing` does; check still says which.
    assert run_cli(["check", "synth-semantic", "--include", tasks, "--allow-missing"]) == 0
    assert f"1 unreadable: {cut}: " in capsys.readouterr().out
    # --no-decode checks presence only, and says so.
    assert run_cli(["check", "synth-semantic", "--include", tasks, "--no-decode"]) == 0
    assert f"{videos} of {videos} videos present (not decoded: --no-decode)" in capsys.readouterr().out


def test_only_small_tasks_are_decoded_by_default_and_decode_forces_it(world_copy, monkeypatch, capsys):
    tasks = str(world_copy / "tasks.yaml")
    monkeypatch.setattr(evaluate_module, "DECODE_MAX_VIDEOS", 3)
    assert run_cli(["check", "synth-semantic", "--include", tasks]) == 0
    videos = len(list((world_copy / "videos").glob("sem_*.mp4")))
    assert (f"{videos} of {videos} videos present (not decoded: more than 3 videos; --decode reads each)"
            in capsys.readouterr().out)
    assert run_cli(["check", "synth-semantic", "--include", tasks, "--decode"]) == 0
    assert f"{videos} decoded to their last frame" in capsys.readouterr().out


def test_check_decodes_the_videos_of_a_localization_task(world_copy, capsys):
    tasks = str(world_copy / "tasks.yaml")
    cut = sorted((world_copy / "videos").glob("tal_*.mp4"))[-1]
    cut.write_bytes(cut.read_bytes()[:-200])
    assert run_cli(["check", "synth-tal", "--include", tasks]) == 2
    assert f"1 unreadable: {cut}: " in capsys.readouterr().out


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """A cache without the embedded world: the first test here sees it generated on first use."""
    return tmp_path_factory.mktemp("check-cache") / "cache"


def test_check_and_list_know_the_embedded_world_as_run_does(fresh_cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    cache = str(fresh_cache)
    # `list tasks` shows the synth tasks and group without generating the world (a listing writes nothing).
    assert run_cli(["list", "tasks", "--cache-dir", cache]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "synth-semantic" in line)
    assert "synth" in row and "embedded world" in row and "generated on first use" in row
    assert "synth-alignment" in out
    assert not (fresh_cache / "synth-world").exists()

    # `check synth` resolves the group as `run` does, generating the world into the cache; a data root set
    # for the user's benchmarks does not move the embedded world's files.
    assert run_cli(["check", "synth", "--cache-dir", cache, "--data-root", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    for name in ("synth-semantic", "synth-logic", "synth-dynamics", "synth-aa", "synth-vr", "synth-or",
                 "synth-srt", "synth-tal", "synth-lap"):
        assert f"{name}: " in out
    assert run_cli(["list", "tasks", "--cache-dir", cache]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "synth-semantic" in line)
    assert "embedded world" in row and "present" in row


def test_a_record_of_the_embedded_world_names_its_directory_not_an_unused_data_root(fresh_cache, tmp_path, capsys):
    """--data-root is for the user's benchmarks: the embedded world's files are read from the cache,
    so its record names the world's directory there, not that root."""
    import json

    out = tmp_path / "out"
    assert run_cli(["run", "--model", "random", "--task", "synth-aa", "--cache-dir", str(fresh_cache),
                    "--data-root", str(tmp_path / "elsewhere"), "--output", str(out), "--no-site"]) == 0
    dataset = json.loads((out / "random" / "synth-aa.json").read_text())["dataset"]
    assert dataset["root"] == str(fresh_cache / "synth-world")


def test_a_misspelt_synth_task_gets_the_same_suggestion_from_check_as_from_run(fresh_cache, capsys):
    assert run_cli(["check", "synth-semantc", "--cache-dir", str(fresh_cache)]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "unknown task or group 'synth-semantc' (did you mean synth-semantic" in error[0]
    assert error[0].startswith("error: TASK: "), "check takes names as arguments, not as --task"


def test_only_the_embedded_names_generate_the_world(tmp_path, capsys):
    """A misspelt synth name or another name starting with 'synth' leaves the cache alone (check is
    read-only), and the misspelt one is still told the embedded names."""
    cache = tmp_path / "cache"
    assert run_cli(["check", "synth-semantc", "--cache-dir", str(cache)]) == 2
    assert "did you mean synth-semantic" in capsys.readouterr().err
    assert run_cli(["check", "synthesis-of-mine", "--cache-dir", str(cache)]) == 2
    assert "unknown task or group 'synthesis-of-mine'" in capsys.readouterr().err
    assert not (cache / "synth-world").exists()


def test_list_tasks_answers_without_importing_torch(tmp_path):
    """Listing the embedded world's tasks needs the cache location, not the encoders: no torch import."""
    import subprocess
    import sys

    code = ("import sys\nfrom instract_eval.cli import main\ntry:\n    main(['list', 'tasks', '--cache-dir', sys.argv[1]])\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=120)
    assert "synth-semantic" in done.stdout and done.stdout.strip().endswith("False")


def test_check_prints_task_names_without_their_control_characters(world_copy, capsys):
    """A task named with a terminal escape in a user's registry file is shown without it."""
    document = yaml.safe_load((world_copy / "tasks.yaml").read_text())
    registry = world_copy / "evil.yaml"
    registry.write_text(yaml.safe_dump({"tasks": {"synth-aa\x1b[2J": document["tasks"]["synth-aa"]}}))
    assert run_cli(["check", "synth-aa\x1b[2J", "--include", str(registry), "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert "synth-aa[2J" in out and "\x1b" not in out


@pytest.mark.parametrize("command", [["check", "synth-aa"], ["run", "--model", "random", "--task", "synth-aa"]])
def test_a_cache_where_the_world_cannot_be_written_is_one_line(command, tmp_path, capsys, monkeypatch):
    """The embedded world is written before any other work: a cache no one may write (/sys, even for
    root) is one line on --cache-dir, and a disk that fills during generation one line naming the world."""
    monkeypatch.chdir(tmp_path)
    assert run_cli([*command, "--cache-dir", "/sys/instract-eval-cache"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: /sys/instract-eval-cache: --cache-dir: cannot write: [Errno 1] Operation not permitted"]

    import errno

    import instract_eval.synth as synth

    def full_disk(out_dir, **_):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir) / "videos" / "sem_0001.mp4"))

    monkeypatch.setattr(synth, "ensure_world", full_disk)
    assert run_cli([*command, "--cache-dir", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    world = tmp_path / "cache" / "synth-world"
    assert error[0].startswith("generating the synthetic action world") and len(error) == 2, error
    assert error[1].startswith(f"error: {world}: cannot write: [Errno 28] No space left on device"), error
