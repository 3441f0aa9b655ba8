"""`write_atomic` and friends: the user's umask, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import os
import stat

import pytest

from instract_eval.errors import InputError, WriteError
from instract_eval.files import require_writable_directory, write_atomic

from .helpers import simulate_full_disk


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the previous one back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_users_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_atomic(tmp_path / "new.json", "{}")
    (tmp_path / "old.json").write_text("old")
    write_atomic(tmp_path / "old.json", "{}")
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "old.json").stat().st_mode) == mode


def test_a_full_disk_is_a_write_error_naming_the_file_and_the_errno(tmp_path, monkeypatch):
    (tmp_path / "out.json").write_text("previous")
    simulate_full_disk(monkeypatch, tmp_path)
    with pytest.raises(WriteError) as caught:
        write_atomic(tmp_path / "out.json", "x" * 100_000)
    assert str(caught.value) == f"{tmp_path / 'out.json'}: cannot write: [Errno 28] No space left on device"
    assert isinstance(caught.value, InputError)  # the CLI prints it as one line, exit code 2
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left
    assert (tmp_path / "out.json").read_text() == "previous"


def test_a_file_on_the_way_is_named_as_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match=r"out.json: cannot write: \[Errno 20\] Not a directory"):
        write_atomic(tmp_path / "file" / "out.json", "{}")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_a_directory_even_root_cannot_create_is_refused_before_any_work():
    """``/proc`` takes no new entries, for root too (which ``os.access`` would call writable)."""
    with pytest.raises(WriteError, match=r"^/proc/x/results: --output: cannot write: \[Errno 2\]"):
        require_writable_directory("/proc/x/results", "--output")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_directory_is_refused_and_nothing_is_left_in_it(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(WriteError, match=r"cannot write: \[Errno 13\] Permission denied"):
            require_writable_directory(locked / "results", "--output")
        with pytest.raises(WriteError, match=r"locked/out.json: cannot write: \[Errno 13\]"):
            write_atomic(locked / "out.json", "{}")
    finally:
        locked.chmod(0o700)
    assert not list(locked.iterdir())


def test_the_probe_leaves_nothing_behind(tmp_path):
    require_writable_directory(tmp_path / "a" / "b", "--output")
    assert not list(tmp_path.iterdir())


def test_a_record_and_its_sample_log_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    """A rerun whose record cannot be written (the disk fills after its log) keeps the previous pair:
    a new log beside the old record would make `regress` bootstrap over another run's samples."""
    from instract_eval.results import record_path, samples_path, write_record

    def record(items):
        return {"model": {"name": "m"}, "task": {"name": "t"}, "items": items}

    write_record(tmp_path, record(2), [{"item": 0}, {"item": 1}])
    simulate_full_disk(monkeypatch, tmp_path, files_that_fit=1)  # the new log fits, the record does not
    with pytest.raises(WriteError, match=r"t\.json: cannot write: \[Errno 28\]"):
        write_record(tmp_path, record(3), [{"item": 0}, {"item": 1}, {"item": 2}])
    assert json.loads(record_path(tmp_path, "m", "t").read_text())["items"] == 2
    assert len(samples_path(tmp_path, "m", "t").read_text().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["t.json", "t.samples.jsonl"]  # no temporaries
