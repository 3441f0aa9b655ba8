"""Every registered task resolves to an engine, and the whole synth world runs through `evaluate_task`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from instract_eval.adapters.protocols import Segment
from instract_eval.errors import InputError
from instract_eval.media import FrameSpec
from instract_eval.tasks import load_registry, packaged_registry
from instract_eval.results import describe_metrics
from instract_eval.tasks.evaluate import FORMATS_OF_KIND, evaluate_task
from instract_eval.tasks.schema import engine_metrics


@pytest.mark.parametrize("name", sorted(packaged_registry().tasks))
def test_every_packaged_task_reads_a_format_of_its_engine_and_says_where_its_data_is(name, tmp_path):
    spec = packaged_registry().tasks[name]
    assert spec.format in FORMATS_OF_KIND[spec.kind]
    relative = [value for key, value in spec.data.items() if isinstance(value, str) and key != "download"]
    if not relative:
        pytest.skip("every file of this task ships in the package")
    with pytest.raises(InputError) as error:
        evaluate_task(object(), spec, data_root=tmp_path, environ={})
    message = str(error.value)
    assert "does not exist" in message and "Download:" in message and spec.data_variable in message


class ConstantEverything:
    """A collapsed model with every capability: dual encoder, token encoder and localizer."""

    name = "constant"

    def frame_spec(self):
        return FrameSpec(num_frames=8, size=32, crop=32)

    def encode_video(self, clips):
        return torch.ones(clips.shape[0], 4)

    def encode_video_tokens(self, clips):
        return torch.ones(clips.shape[0], clips.shape[1], 4)

    def encode_text(self, texts):
        return torch.ones(len(texts), 4)

    def localize(self, video, classes, descriptions):
        """Every class everywhere: 2 s windows every 0.5 s, all with one score (it ignores the descriptions)."""
        return [Segment(start / 2, start / 2 + 2.0, label, 0.5) for label in classes for start in range(30)]


def test_the_synth_world_runs_end_to_end_through_evaluate_task(world):
    registry = load_registry([world / "tasks.yaml"])
    counts = json.loads((world / "manifest.json").read_text())["counts"]
    results = {spec.name: evaluate_task(ConstantEverything(), spec, environ={})
               for spec in registry.resolve(["synth", "synth-alignment"])}
    assert set(results) == {*registry.groups["synth"], "synth-alignment"}
    for name, result in results.items():
        assert result["task"] == name and result["coverage"]["fraction"] == 1.0
        for metric in registry.tasks[name].metrics:  # every headline metric is reported
            value = result["metrics"]
            for part in metric.name.split(".") if metric.name not in value else [metric.name]:
                value = value[part]
            assert isinstance(value, float), (name, metric.name)
    for name, result in results.items():  # the names the registry checks declared metrics against
        spec = registry.tasks[name]
        declared = set(engine_metrics(spec.kind, spec.format, spec.transform, spec.protocol))
        if spec.kind == "localization":  # only a localizer that answers in text has hallucination rates
            declared -= {"hallucination.fixed", "hallucination.repeating"}
        assert set(describe_metrics(result["metrics"])) == declared, name
    assert results["synth-aa"]["metrics"]["accuracy"] == pytest.approx(0.5)
    assert results["synth-semantic"]["coverage"]["total"] == counts["synth-semantic"]
    assert results["synth-srt"]["metrics"]["unseen.accuracy"] == pytest.approx(1 / 4)
    assert 0 < results["synth-tal"]["metrics"]["average_mAP"] < 1
    assert results["synth-lap"]["metrics"]["LAP"] == 0.0  # the descriptions change nothing
    # Constant tokens and phrases: cosine 1 everywhere, so the DTW cost is exactly 0.
    assert results["synth-alignment"]["metrics"]["normalized_dtw_cost"] == pytest.approx(0.0, abs=1e-12)


def test_a_declared_metric_that_only_some_models_report_is_an_error_not_a_gap(world, tmp_path):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text((world / "tasks.yaml").read_text().replace(
        "{name: average_mAP, direction: higher}", "{name: hallucination.fixed, direction: lower}", 1))
    spec = load_registry([tasks]).tasks["synth-tal"]
    assert spec.metrics[0].name == "hallucination.fixed"  # a localizer that answers in text reports it
    with pytest.raises(InputError) as error:
        evaluate_task(ConstantEverything(), spec, environ={"INSTRACT_EVAL_DATA_SYNTH_TAL": str(world)})
    assert error.value.path == str(tasks) and error.value.field == "tasks.synth-tal.metrics[0].name"
    assert "declares the metric 'hallucination.fixed', which this run did not report" in error.value.message


def test_missing_videos_are_an_error_unless_allowed_and_then_counted(world, tmp_path):
    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    spec = load_registry([copy / "tasks.yaml"]).tasks["synth-aa"]
    first = json.loads((copy / "actionbench/ego4d_test.jsonl").read_text().splitlines()[0])
    (copy / "videos" / f"{first['clip_uid']}.mp4").unlink()
    with pytest.raises(InputError, match=rf"{first['clip_uid']}\.mp4"):
        evaluate_task(ConstantEverything(), spec, environ={})
    result = evaluate_task(ConstantEverything(), spec, environ={}, allow_missing=True)
    coverage = result["coverage"]
    assert coverage["evaluated"] == coverage["total"] - 1 and len(coverage["failed_videos"]) == 1


def run_cli(argv):
    from instract_eval.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code or 0


def test_check_reports_each_task_and_needs_allow_missing_for_gaps(world, tmp_path, capsys):
    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    tasks = str(copy / "tasks.yaml")
    assert run_cli(["check", "synth", "synth-alignment", "--include", tasks]) == 0
    out = capsys.readouterr().out
    counts = json.loads((world / "manifest.json").read_text())["counts"]
    assert f"synth-semantic: {counts['synth-semantic']} items" in out and "synth-alignment:" in out
    database = json.loads((copy / "tal/ground_truth.json").read_text())["database"]
    gone = sorted(database)[0]
    (copy / "videos" / f"{gone}.mp4").unlink()
    assert run_cli(["check", "synth-tal", "--include", tasks]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: data.videos: task synth-tal: 1 of") and gone in error and "--allow-missing" in error
    assert run_cli(["check", "synth-tal", "--include", tasks, "--allow-missing"]) == 0
    assert f"{len(database) - 1} of {len(database)} videos present" in capsys.readouterr().out
