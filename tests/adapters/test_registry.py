"""The model registry: names, entry-point plugins, module:factory paths, --model-args and fingerprints."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from instract_eval.adapters import registry
from instract_eval.adapters.registry import (
    ModelEntry,
    available_models,
    create_model,
    model_fingerprint,
    parse_model_args,
    register_model,
)
from instract_eval.errors import InputError


@pytest.fixture
def isolated(monkeypatch):
    """A private copy of the registry state, so registrations made by a test do not leak."""
    available_models()  # the built-ins are in before the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_LOADED_ENTRY_POINTS", {})


@pytest.fixture
def fresh_modules():
    """Module names a test imports from tmp_path; removed from sys.modules afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def write_distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A fake installed distribution: ``<dist>-0.1.dist-info`` with METADATA and entry_points.txt."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = ["[instract_eval.adapters]", *(f"{key} = {value}" for key, value in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


PLUGIN_SOURCE = """
    class FakeModel:
        name = "fake-model"

        def __init__(self, dim):
            self.dim = dim

    def make(dim: int = 4, flavour: str = "plain"):
        return FakeModel(dim)
"""


# ------------------------------------------------------------------------------------------------
# Registered models


def test_builtins_are_listed_sorted_with_factories():
    entries = available_models()
    names = [entry.name for entry in entries]
    assert names == sorted(names)
    by_name = {entry.name: entry for entry in entries}
    for name in ("random", "null"):
        assert by_name[name].source == "built-in"
        assert callable(by_name[name].factory)
        assert by_name[name].description
    assert all(isinstance(entry, ModelEntry) for entry in entries)


def test_register_and_create(isolated):
    def make_echo(dim: int = 3, label: str = "x"):
        """Echo model for the tests."""
        return {"dim": dim, "label": label}

    assert register_model("test-echo")(make_echo) is make_echo
    entry = {e.name: e for e in available_models()}["test-echo"]
    assert entry.description == "Echo model for the tests."
    assert entry.factory is make_echo
    assert entry.source == f"registered by {__name__}"
    assert create_model("test-echo") == {"dim": 3, "label": "x"}
    assert create_model("test-echo", dim=7, label="y") == {"dim": 7, "label": "y"}


def test_duplicate_registration_is_an_error(isolated):
    register_model("test-dup", description="first")(lambda: 1)
    with pytest.raises(ValueError, match="test-dup.*already registered"):
        register_model("test-dup")(lambda: 2)
    with pytest.raises(ValueError, match="'random' is already registered"):
        register_model("random")(lambda: 3)
    assert create_model("test-dup") == 1


@pytest.mark.parametrize("name", ["", "a b", "pkg:factory", "a,b", "a=b", 3])
def test_invalid_names_are_rejected(isolated, name):
    with pytest.raises(ValueError, match="model name"):
        register_model(name)


def test_unknown_name_suggests_close_matches(isolated):
    register_model("zebra-quokka-model")(lambda: 1)
    with pytest.raises(InputError) as caught:
        create_model("zebra-quoka-model")
    assert caught.value.field == "--model"
    assert caught.value.message == ("unknown model 'zebra-quoka-model'; did you mean zebra-quokka-model? "
                                    "(instract-eval list models shows all)")
    with pytest.raises(InputError) as caught:
        create_model("zzzzzzzz")
    assert "did you mean" not in caught.value.message
    assert "instract-eval list models shows all" in caught.value.message


def test_unexpected_argument_lists_the_accepted_ones():
    with pytest.raises(InputError) as caught:
        create_model("random", dimm=8)
    error = caught.value
    assert error.field == "--model-args"
    assert "model random does not accept argument 'dimm' (did you mean dim?)" in error.message
    assert "it accepts: seed=0, dim=64, frames=8, size=32" in error.message


def test_missing_argument_is_named(isolated):
    def needs_weights(weights: str, dim: int = 8):
        return (weights, dim)

    register_model("test-weights")(needs_weights)
    with pytest.raises(InputError) as caught:
        create_model("test-weights", dim=4)
    assert caught.value.field == "--model-args"
    assert "model test-weights needs argument 'weights'" in caught.value.message
    assert "it accepts: weights, dim=8" in caught.value.message
    assert create_model("test-weights", weights="w.bin") == ("w.bin", 8)


def test_factory_errors_are_not_masked(isolated):
    def broken(dim: int = 3):
        raise TypeError("inside the adapter")

    register_model("test-broken")(broken)
    with pytest.raises(TypeError, match="inside the adapter"):
        create_model("test-broken", dim=3)


def test_factory_with_var_keyword_accepts_anything(isolated):
    register_model("test-kw")(lambda **options: options)
    assert create_model("test-kw", anything=1) == {"anything": 1}


# ------------------------------------------------------------------------------------------------
# Built-in modules


def test_builtin_modules_are_discovered_without_a_list():
    """Every adapter module of the package is found by walking it; the platform modules are not adapters."""
    found = registry.builtin_modules()
    assert {"instract_eval.adapters.baselines", "instract_eval.adapters.synth_models",
            "instract_eval.adapters.image_text.clip"} <= set(found)
    assert not {"instract_eval.adapters.registry", "instract_eval.adapters.protocols",
                "instract_eval.adapters.cards"} & set(found)
    assert list(found) == sorted(found)


def test_a_failing_builtin_module_propagates(tmp_path, monkeypatch, isolated, fresh_modules):
    (tmp_path / "broken_builtin_adapters.py").write_text(textwrap.dedent("""
        from instract_eval.adapters.registry import register_model

        @register_model("half-registered")
        def make():
            return 1

        raise RuntimeError("adapter bug at import")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_modules.append("broken_builtin_adapters")
    discovered = registry.builtin_modules()
    monkeypatch.setattr(registry, "_builtins_loaded", False)
    monkeypatch.setattr(registry, "builtin_modules", lambda: (*discovered, "broken_builtin_adapters"))
    for _ in range(2):  # the half registration is withdrawn, so a retry fails the same way
        with pytest.raises(RuntimeError, match="broken_builtin_adapters failed to import: "
                                               "RuntimeError: adapter bug at import"):
            available_models()
        assert "half-registered" not in registry._REGISTRY


# ------------------------------------------------------------------------------------------------
# Entry points


def test_entry_point_is_listed_without_import_and_created_on_demand(tmp_path, monkeypatch, isolated,
                                                                   fresh_modules):
    write_distribution(tmp_path, "fake-adapters", {"fake-model": "fake_adapters_plugin:make"},
                       {"fake_adapters_plugin": PLUGIN_SOURCE})
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_modules.append("fake_adapters_plugin")

    listed = {entry.name: entry for entry in available_models()}
    assert listed["fake-model"].source == "entry point from fake-adapters"
    assert listed["fake-model"].factory is None
    assert listed["fake-model"].description == "fake_adapters_plugin:make"
    assert "fake_adapters_plugin" not in sys.modules

    model = create_model("fake-model", dim=9)
    assert type(model).__name__ == "FakeModel" and model.dim == 9
    assert "fake_adapters_plugin" in sys.modules
    listed = {entry.name: entry for entry in available_models()}
    assert listed["fake-model"].factory is sys.modules["fake_adapters_plugin"].make

    with pytest.raises(InputError, match="does not accept argument 'size'.*it accepts: dim=4, flavour='plain'"):
        create_model("fake-model", size=3)


def test_unknown_name_suggests_entry_points(tmp_path, monkeypatch, isolated):
    write_distribution(tmp_path, "fake-adapters", {"fake-model": "fake_adapters_plugin:make"}, {})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError, match="did you mean fake-model"):
        create_model("fake-modle")


@pytest.mark.parametrize("error, shown", [
    ('raise ImportError("fake: the CUDA extension is missing")', "ImportError: fake: the CUDA extension is missing"),
    ("import definitely_not_installed_xyz", "ModuleNotFoundError: No module named 'definitely_not_installed_xyz'"),
    ('raise RuntimeError("config file unreadable")', "RuntimeError: config file unreadable"),
])
def test_failing_plugin_reports_its_error_not_unknown(tmp_path, monkeypatch, isolated, fresh_modules, error, shown):
    write_distribution(tmp_path, "fake-adapters", {"broken-model": "fake_adapters_broken:make"},
                       {"fake_adapters_broken": f"{error}\ndef make():\n    return 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_modules.append("fake_adapters_broken")
    assert "broken-model" in {entry.name for entry in available_models()}  # listing does not import
    with pytest.raises(InputError) as caught:
        create_model("broken-model")
    assert caught.value.field == "--model"
    assert caught.value.message.startswith(
        f"model broken-model (entry point from fake-adapters) failed to load: {shown}")
    assert "fake_adapters_broken:make" in caught.value.message
    assert "unknown" not in caught.value.message


def test_registered_name_wins_over_an_entry_point(tmp_path, monkeypatch, isolated, fresh_modules):
    write_distribution(tmp_path, "fake-adapters", {"random": "fake_adapters_hijack:make"},
                       {"fake_adapters_hijack": "def make():\n    return 'hijacked'\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_modules.append("fake_adapters_hijack")
    assert [entry.source for entry in available_models() if entry.name == "random"] == ["built-in"]
    assert create_model("random").name == "random"
    assert "fake_adapters_hijack" not in sys.modules


def test_two_plugins_claiming_one_name_is_an_error(tmp_path, monkeypatch, isolated):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    write_distribution(tmp_path / "one", "adapters-one", {"same-model": "one_mod:make"}, {})
    write_distribution(tmp_path / "two", "adapters-two", {"same-model": "two_mod:make"}, {})
    monkeypatch.syspath_prepend(str(tmp_path / "one"))
    monkeypatch.syspath_prepend(str(tmp_path / "two"))
    sources = sorted(entry.source for entry in available_models() if entry.name == "same-model")
    assert sources == ["entry point from adapters-one", "entry point from adapters-two"]
    with pytest.raises(InputError, match="provided by several installed distributions: .*adapters-one"):
        create_model("same-model")


# ------------------------------------------------------------------------------------------------
# package.module:factory


def test_module_factory_path(tmp_path, monkeypatch, fresh_modules):
    (tmp_path / "my_local_adapter.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_modules.append("my_local_adapter")
    model = create_model("my_local_adapter:make", dim=5)
    assert model.dim == 5
    assert create_model("my_local_adapter:FakeModel", dim=2).dim == 2  # a class is a factory too
    with pytest.raises(InputError, match="does not accept argument 'dims'") as caught:
        create_model("my_local_adapter:make", dims=5)
    assert caught.value.field == "--model-args"
    with pytest.raises(InputError, match="my_local_adapter has no attribute 'nope'"):
        create_model("my_local_adapter:nope")
    with pytest.raises(InputError, match="not a callable factory"):
        create_model("my_local_adapter:FakeModel.name")


def test_module_factory_import_errors_are_shown(tmp_path, monkeypatch, fresh_modules):
    (tmp_path / "my_broken_adapter.py").write_text('raise ImportError("needs flash-attn")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_modules.append("my_broken_adapter")
    with pytest.raises(InputError) as caught:
        create_model("my_broken_adapter:make")
    assert caught.value.field == "--model"
    assert caught.value.message == "model my_broken_adapter:make failed to load: ImportError: needs flash-attn"
    with pytest.raises(InputError, match="failed to load: ModuleNotFoundError: No module named 'no_such_pkg_xyz'"):
        create_model("no_such_pkg_xyz.models:make")
    with pytest.raises(InputError, match="expected package.module:factory"):
        create_model("my_broken_adapter:")


def test_module_factory_is_found_in_the_current_directory(tmp_path, monkeypatch, fresh_modules):
    """The console script does not put the current directory on sys.path; the registry does."""
    (tmp_path / "cwd_adapter_module.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path
                                      if entry not in ("", ".") and Path(entry).resolve() != tmp_path.resolve()])
    fresh_modules.append("cwd_adapter_module")
    assert create_model("cwd_adapter_module:make", dim=6).dim == 6


# ------------------------------------------------------------------------------------------------
# --model-args


def test_parse_model_args_types():
    assert parse_model_args("weights=/x.safetensors,dim=64,fast=true,scale=0.5,none=null") == {
        "weights": "/x.safetensors", "dim": 64, "fast": True, "scale": 0.5, "none": None}
    parsed = parse_model_args("a=-3, b=1e-3 ,c=False,d=None,e=inf,f=+2,g=.5,h=v1.2,i=x=y")
    assert parsed == {"a": -3, "b": 1e-3, "c": False, "d": None, "e": float("inf"), "f": 2, "g": 0.5,
                      "h": "v1.2", "i": "x=y"}
    assert type(parsed["a"]) is int and type(parsed["b"]) is float


def test_parse_model_args_quoted_strings():
    assert parse_model_args("a='x,y',b=2") == {"a": "x,y", "b": 2}
    assert parse_model_args('prompt="it\'s, ok" , n=1') == {"prompt": "it's, ok", "n": 1}
    assert parse_model_args("n='3',e=''") == {"n": "3", "e": ""}
    assert parse_model_args("path=/data/it's here") == {"path": "/data/it's here"}  # a quote inside stays


@pytest.mark.parametrize("text", [None, "", "   "])
def test_parse_model_args_empty(text):
    assert parse_model_args(text) == {}


@pytest.mark.parametrize("text, shown", [
    ("dim", "'dim'"),
    ("dim=3,fast", "'fast'"),
    ("a=1,,b=2", "empty pair"),
    ("a=1,", "trailing comma"),
    ("dim=3,dim=4", "duplicate key 'dim' in 'dim=4'"),
    ("dim=", "empty value in 'dim='"),
    ("a='x", "unterminated ' quote"),
    ("a='x'y,b=1", "after the closing quote in \"a='x'y,b=1\""),
    ("feature-fps=5", "'feature-fps' in 'feature-fps=5' is not a valid argument name"),
    ("=5", "not a valid argument name"),
])
def test_parse_model_args_errors_name_the_pair(text, shown):
    with pytest.raises(InputError) as caught:
        parse_model_args(text)
    assert caught.value.field == "--model-args"
    assert shown in caught.value.message


def test_parsed_args_feed_create_model():
    model = create_model("random", **parse_model_args("seed=3,dim=16"))
    assert (model.seed, model.dim) == (3, 16)


# ------------------------------------------------------------------------------------------------
# Fingerprint


class _Weighted:
    def __init__(self, digest: str):
        self.digest = digest

    def weights_fingerprint(self) -> str:
        return self.digest


class _OtherWeighted(_Weighted):
    pass


def test_fingerprint_is_stable_and_keyed_on_everything():
    model = create_model("random", seed=1)
    base = model_fingerprint("random", {"seed": 1}, model)
    assert len(base) == 64 and int(base, 16) >= 0
    assert model_fingerprint("random", {"seed": 1}, create_model("random", seed=1)) == base
    assert model_fingerprint("random", {"seed": 2}, model) != base
    assert model_fingerprint("random", {"seed": 1, "dim": 64}, model) != base
    assert model_fingerprint("random-2", {"seed": 1}, model) != base
    assert model_fingerprint("random", {"seed": 1}, create_model("null")) != base  # another class

    a = model_fingerprint("w", {"x": 1, "y": "z"}, _Weighted("aaa"))
    assert model_fingerprint("w", {"y": "z", "x": 1}, _Weighted("aaa")) == a  # argument order is irrelevant
    assert model_fingerprint("w", {"x": 1, "y": "z"}, _Weighted("bbb")) != a
    assert model_fingerprint("w", {"x": 1, "y": "z"}, _OtherWeighted("aaa")) != a
    assert model_fingerprint("w", {"x": 1.0, "y": "z"}, _Weighted("aaa")) != a  # 1 and 1.0 are different args


def test_fingerprint_accepts_non_json_values():
    first = model_fingerprint("w", {"path": Path("/w.bin"), "pair": (1, 2)}, _Weighted("a"))
    assert first == model_fingerprint("w", {"path": Path("/w.bin"), "pair": (1, 2)}, _Weighted("a"))
    assert first != model_fingerprint("w", {"path": Path("/v.bin"), "pair": (1, 2)}, _Weighted("a"))


def test_a_created_torch_model_is_in_evaluation_mode(isolated):
    """create_model(...).encode_video(...) outside the runner must not sample dropout."""
    import torch

    @register_model("test-dropout")
    def make():
        return torch.nn.Sequential(torch.nn.Dropout(0.5))

    model = create_model("test-dropout")
    assert not model.training
    x = torch.ones(1000)
    assert torch.equal(model(x), x)


def test_every_builtin_module_imports_on_its_own_first():
    """`import instract_eval.adapters.video_text.univl` as a user's first line: a module whose
    registration loaded its siblings mid-import let one of them (singularity, importing from univl)
    find it half made. Each module is imported first in a fresh adapters package, in one process."""
    import subprocess

    script = textwrap.dedent("""
        import importlib, sys
        from instract_eval.adapters.registry import builtin_modules
        failed = []
        for name in builtin_modules():
            for loaded in [m for m in sys.modules if m.startswith("instract_eval.adapters")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as error:
                failed.append(f"{name}: {type(error).__name__}: {error}")
        print("\\n".join(failed))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout
