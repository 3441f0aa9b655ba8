"""The layout promises of DESIGN.md: one namespace, the registry shipped, metrics kept pure."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from instract_eval.metrics.localization import TIOU_THRESHOLD_PRESETS
from instract_eval.tasks import packaged_registry

REPO = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_declared_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    roots = {name: REPO / folder for name, folder in config["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder)
            found.add(".".join([name, *relative.parts]))
    assert found == declared


def test_tasks_yaml_is_linked_into_the_package_and_names_known_presets():
    link = REPO / "tasks" / "tasks.yaml"
    assert link.is_symlink() and link.resolve() == (REPO / "tasks.yaml").resolve()
    tasks = packaged_registry().tasks
    localization = {name: spec for name, spec in tasks.items() if spec.kind == "localization"}
    assert {"tal-thumos14", "tal-activitynet13", "tal-epic100-verb", "tal-epic100-noun", "lap-thumos14"} <= set(
        localization)
    for spec in localization.values():
        assert spec.protocol["tiou_thresholds"] in TIOU_THRESHOLD_PRESETS


def test_metric_modules_import_no_torch_and_open_no_files():
    for module in (REPO / "instract_eval" / "metrics").glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                assert name.split(".")[0] not in {"torch", "pandas", "json", "pathlib", "io"}, (module.name, name)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", module.name
