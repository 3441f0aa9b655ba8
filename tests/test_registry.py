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
