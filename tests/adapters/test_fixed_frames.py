"""A model whose frame count is fixed (X-CLIP's prompt and MIT layers are built for it) refuses a task
that asks for another count in one line, before anything is decoded; a group skips that task."""

from __future__ import annotations

import pytest

from instract_eval.adapters import create_model
from instract_eval.adapters.protocols import task_frame_spec
from instract_eval.cli import main
from instract_eval.errors import InputError

from .test_conformance import OFFICIAL

XCLIP = str(OFFICIAL / "x_clip" / "xclip-tiny-patch8")


def cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_task_frame_spec_refuses_another_count():
    spec = create_model("x-clip", checkpoint=XCLIP).frame_spec()
    assert spec.fixed_frames and spec.num_frames == 8
    assert task_frame_spec(spec, {"frames": 8, "sampling": "uniform"}).num_frames == 8
    with pytest.raises(InputError, match="task t asks for 16 frames; this model takes exactly 8"):
        task_frame_spec(spec, {"frames": 16}, "t")


def test_run_refuses_before_decoding_and_a_group_skips(world, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--model", "x-clip", "--model-args", f"checkpoint='{XCLIP}'", "--include", str(world / "tasks.yaml"),
              "--output", str(out), "--no-site", "--cache-dir", str(tmp_path / "cache")]
    # synth-semantic (8 frames) would run; synth-srt asks for 16: nothing runs, nothing is written.
    code, _, err = cli(capsys, "run", *common, "--task", "synth-semantic", "--task", "synth-srt")
    assert code == 2 and "synth-srt asks for 16 frames; this model takes exactly 8" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists() and not (tmp_path / "cache").exists()
    code, stdout, err = cli(capsys, "run", *common, "--task", "synth", "--limit", "2")
    assert code == 0, err
    assert "synth-srt" in stdout and "asks for 16 frames" in stdout  # the skip and its reason
    assert (out / "x-clip" / "synth-semantic.json").is_file() and not (out / "x-clip" / "synth-srt.json").exists()
