"""The task registry: the packaged tasks.yaml, user includes, data-root resolution, list tasks."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from instract_eval.cli import main
from instract_eval.errors import InputError
from instract_eval.tasks import load_registry, locate_data, packaged_registry, require_data

PAPER_GROUPS = {
    "instract-bench": {"instract-semantic", "instract-logic", "instract-dynamics"},
    "actionbench": {f"actionbench-{probe}-{source}" for probe in ("aa", "vr", "or") for source in ("ego4d", "ssv2")},
    "srt": {"srt-ata", "srt-ikea", "srt-gtea"},
    "tal": {"tal-thumos14", "tal-activitynet13", "tal-epic100-verb", "tal-epic100-noun"},
}


def test_packaged_registry_has_every_paper_group_and_lap():
    registry = packaged_registry()
    for group, members in PAPER_GROUPS.items():
        assert set(registry.groups[group]) == members
    assert "lap-thumos14" in registry.tasks
    assert len(registry.groups["action100m-recognition"]) == 8
    assert len(registry.groups["action100m-retrieval"]) == 8
    assert set(registry.groups["action100m"]) == {*registry.groups["action100m-recognition"],
                                                  *registry.groups["action100m-retrieval"]}


def test_every_packaged_task_states_its_protocol_metrics_and_download():
    for spec in packaged_registry().tasks.values():
        assert spec.metrics and all(m.direction in ("higher", "lower") for m in spec.metrics), spec.name
        builtin_only = all(isinstance(v, dict) for k, v in spec.data.items() if k != "download")
        assert builtin_only or spec.data.get("download"), f"{spec.name} does not say what to download"
        if spec.kind != "localization":
            assert spec.protocol.get("frames"), spec.name


def test_protocol_parameters_follow_the_papers():
    tasks = packaged_registry().tasks
    semantic = tasks["instract-semantic"].protocol
    assert (semantic["frames"], semantic["context_s"], semantic["min_clip_s"]) == (16, 5.0, 5.0)
    assert tasks["instract-logic"].protocol["max_order_negatives"] == 2
    assert tasks["actionbench-vr-ego4d"].protocol["frames"] == 8
    assert tasks["actionbench-vr-ego4d"].transform == "reverse_video"
    assert tasks["actionbench-vr-ego4d"].candidates == "videos"
    ata = tasks["srt-ata"].protocol
    assert (ata["frames"], ata["window_s"], ata["clips"], ata["runs"], ata["tau"]) == (30, 3.0, 3, 10, 0.02)
    assert tasks["tal-activitynet13"].protocol["tiou_thresholds"] == "activitynet"


def test_resolve_expands_groups_once_in_order_and_suggests_close_names():
    registry = packaged_registry()
    names = [spec.name for spec in registry.resolve(["instract-logic", "instract-bench"])]
    assert names == ["instract-logic", "instract-semantic", "instract-dynamics"]
    with pytest.raises(InputError, match="did you mean instract-semantic"):
        registry.resolve(["instract-semantc"])


def test_builtin_ground_truth_resolves_without_a_data_root():
    location = locate_data(packaged_registry().tasks["tal-thumos14"], environ={})
    assert location.files["ground_truth"].is_file()
    assert location.missing == ("videos",)


def write_registry(path, text):
    path.write_text(textwrap.dedent(text))
    return path


USER_TASK = """
    tasks:
      my-mcq:
        kind: mcq
        paper: mine
        description: my multiple choice
        format: instract-semantic
        data: {annotations: ann.json, videos: videos}
        protocol: {frames: 4, sampling: uniform}
        ties: expected
        seed: 3
        metrics: [{name: accuracy, direction: higher}]
    groups:
      mine: [my-mcq, instract-logic]
"""


def test_include_adds_tasks_whose_data_sits_next_to_the_file(tmp_path):
    registry_file = write_registry(tmp_path / "mine.yaml", USER_TASK)
    (tmp_path / "ann.json").write_text("[]")
    (tmp_path / "videos").mkdir()
    registry = load_registry([registry_file])
    spec = registry.tasks["my-mcq"]
    assert [s.name for s in registry.resolve(["mine"])] == ["my-mcq", "instract-logic"]
    location = require_data(spec, environ={})
    assert location.files["annotations"] == tmp_path / "ann.json"
    assert location.root_from == str(registry_file)


def test_data_root_precedence(tmp_path):
    spec = load_registry([write_registry(tmp_path / "mine.yaml", USER_TASK)]).tasks["my-mcq"]
    env = {"INSTRACT_EVAL_DATA_ROOT": "/env-root"}
    assert locate_data(spec, environ={}).root == tmp_path
    assert locate_data(spec, environ=env).root.as_posix() == "/env-root"
    assert locate_data(spec, "/flag-root", environ=env).root.as_posix() == "/flag-root"
    env["INSTRACT_EVAL_DATA_MY_MCQ"] = "/task-root"
    assert locate_data(spec, "/flag-root", environ=env).root.as_posix() == "/task-root"


def test_missing_data_says_what_to_download_and_how_to_point_at_it(tmp_path):
    spec = packaged_registry().tasks["instract-semantic"]
    with pytest.raises(InputError) as error:
        require_data(spec, tmp_path, environ={})
    message = str(error.value)
    assert "InstrAct-Semantic/annotations.json does not exist" in message
    assert "github.com/zyyangzy/InstrAct" in message
    assert "--data-root" in message and "INSTRACT_EVAL_DATA_INSTRACT_SEMANTIC" in message


def test_spec_hash_changes_with_the_protocol_only(tmp_path):
    first = load_registry([write_registry(tmp_path / "a.yaml", USER_TASK)]).tasks["my-mcq"]
    same = load_registry([write_registry(tmp_path / "b.yaml", USER_TASK.replace("description: my", "description: a"))])
    changed = load_registry([write_registry(tmp_path / "c.yaml", USER_TASK.replace("frames: 4", "frames: 8"))])
    assert first.spec_hash() == load_registry([tmp_path / "a.yaml"]).tasks["my-mcq"].spec_hash()
    assert first.spec_hash() != changed.tasks["my-mcq"].spec_hash()
    assert first.spec_hash() != same.tasks["my-mcq"].spec_hash()  # the description is part of the entry


@pytest.mark.parametrize(
    "edit, field, message",
    [
        (("kind: mcq", "kind: quiz"), "tasks.my-mcq.kind", "unknown kind 'quiz'"),
        (("ties: expected", "ties: random"), "tasks.my-mcq.ties", "unknown tie policy"),
        (("seed: 3", "seed: three"), "tasks.my-mcq.seed", "integer seed"),
        (("        seed: 3\n", ""), "tasks.my-mcq", "missing required key 'seed'"),
        (("direction: higher", "direction: up"), "tasks.my-mcq.metrics[0].direction", "direction must be"),
        (("protocol: {", "protocl: {"), "tasks.my-mcq", "unknown key 'protocl' (did you mean protocol?)"),
        (("[my-mcq, instract-logic]", "[my-mcq, instract-logc]"), "groups.mine[1]", "did you mean instract-logic"),
        (("my-mcq:\n", "instract-logic:\n"), "tasks.instract-logic", "already defined"),
        (("annotations: ann.json", "annotations: 3"), "tasks.my-mcq.data.annotations", "expected a path"),
    ],
)
def test_registry_errors_name_the_file_and_entry(tmp_path, edit, field, message):
    path = write_registry(tmp_path / "bad.yaml", USER_TASK.replace(*edit, 1))
    with pytest.raises(InputError) as error:
        load_registry([path])
    assert error.value.field == field
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_packaged_file_is_plain_yaml_without_indirection():
    registry = packaged_registry()
    source = yaml.safe_load((__import__("pathlib").Path(__file__).parents[1] / "tasks.yaml").read_text())
    assert set(source["tasks"]) == set(registry.tasks)


def test_list_tasks_shows_every_task_and_data_status(tmp_path, capsys):
    (tmp_path / "instract" / "InstrAct-Semantic").mkdir(parents=True)
    (tmp_path / "instract" / "InstrAct-Semantic" / "annotations.json").write_text("[]")
    (tmp_path / "howto100m").mkdir()
    with pytest.raises(SystemExit) as done:
        main(["list", "tasks", "--data-root", str(tmp_path)])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    for name in packaged_registry().tasks:
        assert name in out
    row = next(line for line in out.splitlines() if "instract-semantic" in line)
    assert "present" in row
    row = next(line for line in out.splitlines() if "instract-logic " in line)
    assert "missing" in row


def test_list_tasks_bad_include_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["list", "tasks", "--include", str(tmp_path / "nope.yaml")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml" in err[0]


# --- typed protocols and declared metrics (issue 12, items 1 and 2) -------------------------------

def task_file(tmp_path, *, kind="mcq", fmt="instract-semantic", protocol="{frames: 4, sampling: uniform}",
              metrics="[{name: accuracy, direction: higher}]", transform=None, data="{annotations: a.json, videos: v}"):
    """A user task file with one task, ``my-task``, of the given kind, format, protocol and metrics."""
    return write_registry(tmp_path / "my_tasks.yaml", f"""
        tasks:
          my-task:
            kind: {kind}
            paper: mine
            description: mine
            format: {fmt}
            data: {data}
            protocol: {protocol}
            ties: expected
            seed: 0
            metrics: {metrics}
        """ + (f"    transform: {transform}\n" if transform else ""))


def refusal(path):
    with pytest.raises(InputError) as error:
        load_registry([path])
    assert str(error.value).startswith(f"{path}: "), error.value  # the file comes first
    return error.value


@pytest.mark.parametrize("kind, fmt, protocol, key, message", [
    ("mcq", "instract-semantic", "{frmaes: 8}", "frmaes", "unknown key; did you mean 'frames'?"),
    ("mcq", "instract-semantic", "{frames: eight}", "frames", "expected an integer >= 1, got 'eight'"),
    ("mcq", "instract-semantic", "{frames: -3}", "frames", "expected an integer >= 1, got -3"),
    ("mcq", "instract-semantic", "{frames: 8.5}", "frames", "expected an integer >= 1, got 8.5"),
    ("mcq", "instract-semantic", "{sampling: random}", "sampling", "expected one of uniform, fps, got 'random'"),
    ("mcq", "instract-semantic", "{fps: 0}", "fps", "expected a number > 0, got 0"),
    ("mcq", "instract-semantic", "{context_s: -1.0}", "context_s", "expected a number >= 0, got -1.0"),
    ("mcq", "instract-semantic", "{colour: red}", "colour", "unknown key (known: frames, sampling, fps"),
    ("mcq", "instract-semantic", "{max_order_negatives: 2}", "max_order_negatives",
     "is read only by the format(s) instract-logic; format 'instract-semantic' would ignore it"),
    ("retrieval", "rows", "{v2t: best}", "v2t", "expected one of max_caption, any_caption, got 'best'"),
    ("retrieval", "instract-dynamics", "{clips: 3}", "clips", "is read only by the format(s) rows"),
    ("classification", "rows", "{tau: '0.02'}", "tau", "expected a number > 0, got '0.02'"),
    ("classification", "rows", "{runs: 3}", "runs", "is read only by the format(s) srt"),
    ("classification", "rows", "{prompt: a video of}", "prompt", "must hold exactly one '{}'"),
    ("classification", "rows", "{leaf_augmentaton: true}", "leaf_augmentaton",
     "unknown key; did you mean 'leaf_augmentation'?"),
    ("classification", "rows", "{frames: 30, sampling: fps, fps: 10, window_s: 2.0}", "window_s",
     "window_s 2 is not frames / fps = 3"),
    ("localization", "activitynet", "{tiou_thresholds: thumos14, sliding_window: {strid_s: 1.0}}",
     "sliding_window.strid_s", "unknown key; did you mean 'stride_s'?"),
    ("localization", "activitynet", "{tiou_thresholds: thumos14, sliding_window: {tau: 0}}",
     "sliding_window.tau", "expected a number > 0, got 0"),
    ("alignment", "instract-logic", "{min_phrases: 1.5}", "min_phrases", "expected an integer >= 1, got 1.5"),
])
def test_a_protocol_key_is_typed_per_kind_and_its_error_names_file_task_and_key(tmp_path, kind, fmt, protocol,
                                                                                key, message):
    metric = {"mcq": "accuracy", "retrieval": "t2v.R@1", "classification": "accuracy",
              "localization": "average_mAP", "alignment": "normalized_dtw_cost"}[kind]
    error = refusal(task_file(tmp_path, kind=kind, fmt=fmt, protocol=protocol,
                              metrics=f"[{{name: {metric}, direction: higher}}]"))
    assert error.field == f"tasks.my-task.protocol.{key}"
    assert message in error.message


def test_protocols_that_contradict_themselves_or_lack_a_required_key_are_refused(tmp_path):
    error = refusal(task_file(tmp_path, fmt="actionbench-ego4d", transform="reverse_video", protocol="{probe: aa}"))
    assert error.field == "tasks.my-task.protocol.probe" and "contradicts the transform 'reverse_video'" in error.message
    error = refusal(task_file(tmp_path, fmt="actionbench-ego4d", transform="[reverse_video]", protocol="{probe: vr}"))
    assert error.field == "tasks.my-task.transform" and error.message == "expected a non-empty string"
    error = refusal(task_file(tmp_path, kind="localization", fmt="activitynet", protocol="{subset: test}",
                              metrics="[{name: average_mAP, direction: higher}]"))
    assert error.field == "tasks.my-task.protocol" and "missing required key 'tiou_thresholds'" in error.message


@pytest.mark.parametrize("kind, fmt, protocol, metric, message", [
    ("mcq", "instract-semantic", "{frames: 4}", "R@11", "the mcq engine does not report 'R@11' for this task; "
                                                         "did you mean 'R@1'"),
    ("mcq", "instract-semantic", "{frames: 4}", "top1", "(it reports R@1, R@5, median_rank, mean_rank, accuracy"),
    ("retrieval", "rows", "{frames: 4}", "t2v.R@11", "did you mean 't2v.R@1'"),
    ("retrieval", "rows", "{frames: 4}", "R@1", "did you mean 'v2t.R@1' or 't2v.R@1'?"),
    ("classification", "rows", "{frames: 4}", "seen.accuracy", "did you mean"),
    ("classification", "srt", "{frames: 4, runs: 1}", "srt.unseen.accuracy", "does not report"),
    ("localization", "activitynet", "{tiou_thresholds: thumos14}", "mAP@0.35", "or 'mAP@0.3' or"),
    ("localization", "activitynet", "{tiou_thresholds: thumos14}", "LAP", "does not report 'LAP'"),
    ("alignment", "instract-logic", "{frames: 4}", "dtw_cost", "(it reports normalized_dtw_cost, "),
])
def test_a_declared_metric_the_engine_does_not_report_refuses_the_file(tmp_path, kind, fmt, protocol, metric,
                                                                      message):
    error = refusal(task_file(tmp_path, kind=kind, fmt=fmt, protocol=protocol,
                              metrics=f"[{{name: accuracy, direction: higher}}, {{name: '{metric}', direction: higher}}]"
                              if kind in ("mcq",) else f"[{{name: '{metric}', direction: higher}}]"))
    assert error.field == f"tasks.my-task.metrics[{1 if kind == 'mcq' else 0}].name"
    assert message in error.message


def test_the_metrics_each_engine_reports_can_be_declared(tmp_path):
    accepted = [
        ("mcq", "instract-semantic", "{frames: 4}", ["R@1", "R@5", "median_rank", "accuracy"]),
        ("retrieval", "rows", "{frames: 4, clips: 1, v2t: any_caption}", ["t2v.R@10", "v2t.median_rank", "mean.R@5"]),
        ("classification", "srt", "{frames: 30, sampling: fps, fps: 10, window_s: 3.0, runs: 10}",
         ["hm.accuracy", "srt.unseen.macro_f1.std"]),
        ("localization", "activitynet", "{tiou_thresholds: activitynet}", ["mAP@0.5", "mAP@0.95", "average_mAP"]),
        ("alignment", "instract-logic", "{min_phrases: 4, phrase_separator: ';'}", ["median_normalized_dtw_cost"]),
    ]
    for kind, fmt, protocol, names in accepted:
        declared = "[" + ", ".join(f"{{name: '{n}', direction: higher}}" for n in names) + "]"
        spec = load_registry([task_file(tmp_path, kind=kind, fmt=fmt, protocol=protocol, metrics=declared)]
                             ).tasks["my-task"]
        assert [m.name for m in spec.metrics] == names
    lap = task_file(tmp_path, kind="localization", fmt="activitynet", protocol="{tiou_thresholds: thumos14}",
                    transform="conflicting_descriptions", metrics="[{name: LAP, direction: lower}]")
    assert load_registry([lap]).tasks["my-task"].metrics[0].name == "LAP"


def test_a_protocol_typo_is_one_line_naming_file_task_and_key_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task_file(tmp_path, protocol="{frmaes: 8, sampling: uniform}")
    with pytest.raises(SystemExit) as done:
        main(["list", "tasks", "--include", "my_tasks.yaml"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: my_tasks.yaml: tasks.my-task.protocol.frmaes: unknown key; did you mean 'frames'?"]


def test_packaged_registry_reads_the_same_with_either_yaml_parser():
    """The packaged tasks.yaml is parsed by libyaml when present (start-up time); the document
    must be the one the pure-Python parser reads."""
    from importlib import resources

    text = resources.files("instract_eval.tasks").joinpath("tasks.yaml").read_text(encoding="utf-8")
    fast = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert fast == yaml.safe_load(text)
