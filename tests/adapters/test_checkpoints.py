"""The one checkpoint loader (`instract_eval.adapters.core.checkpoints`): every format read, every
wrapper found, every misfit named, and nothing in a file ever run.

A refusal is one `InputError` line that starts with the file; a pickle "carrying code" is proven
inert by a marker file its payload would create (and, where that is harmless, by showing that an
ordinary ``torch.load`` of the same file does create it).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap
import types
import webbrowser
from collections import Counter, OrderedDict

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from instract_eval.adapters.core.checkpoints import (
    InertObject,
    file_sha256,
    key_report,
    load_strict,
    read_checkpoint,
    remap_keys,
    require_keys,
    strip_prefix,
    unwrap_state_dict,
)
from instract_eval.errors import InputError

# the tests write TorchScript archives (OpenAI's format) with torch.jit, which torch now calls deprecated
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

OFFICIAL = pathlib.Path(__file__).resolve().parents[1] / "data" / "official"


def tiny_state(dtype=torch.float32) -> OrderedDict:
    generator = torch.Generator().manual_seed(0)
    return OrderedDict([
        ("encoder.weight", torch.randn(4, 3, generator=generator).to(dtype)),
        ("encoder.bias", torch.randn(4, generator=generator).to(dtype)),
        ("head.weight", torch.randn(2, 4, generator=generator).to(dtype)),
    ])


def assert_same(found: dict, expected: dict, *, ordered: bool = True) -> None:
    assert (list(found) if ordered else sorted(found)) == (list(expected) if ordered else sorted(expected))
    for key, value in expected.items():
        assert found[key].dtype == value.dtype, key
        assert torch.equal(found[key], value), key


def one_line_about(error: pytest.ExceptionInfo, path, *parts: str) -> str:
    """The error's text, checked to be one line that starts with ``path`` and holds every part."""
    text = str(error.value)
    assert isinstance(error.value, InputError)
    assert "\n" not in text, text
    assert text.startswith(f"{path}: checkpoint: "), text
    for part in parts:
        assert part in text, (part, text)
    return text


class Net(torch.nn.Module):
    """A module with the key names of `tiny_state`, plus a buffer."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(3, 4)
        self.head = torch.nn.Linear(4, 2, bias=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        return self.head(self.encoder(x))


# ------------------------------------------------------------------------------------------------
# Formats


def test_safetensors_is_read_as_such_even_under_another_suffix(tmp_path):
    state = tiny_state(torch.float16)
    save_file(dict(state), tmp_path / "w.safetensors")
    checkpoint = read_checkpoint(tmp_path / "w.safetensors")
    assert checkpoint.format == "safetensors" and checkpoint.payload == {}
    assert_same(checkpoint.state_dict, state, ordered=False)  # safetensors sorts its keys
    (tmp_path / "w.bin").write_bytes((tmp_path / "w.safetensors").read_bytes())  # sniffed from its header
    assert read_checkpoint(tmp_path / "w.bin").format == "safetensors"


def test_a_plain_state_dict_is_the_state_dict(tmp_path):
    state = tiny_state()
    torch.save(state, tmp_path / "w.pt")
    checkpoint = read_checkpoint(tmp_path / "w.pt")
    assert checkpoint.format == "torch pickle" and checkpoint.payload == {}
    assert_same(checkpoint.state_dict, state)
    assert checkpoint.has("encoder.") and not checkpoint.has("decoder.")


def test_a_state_dict_written_with_pickle_dump_reads_too(tmp_path):
    state = tiny_state()
    with open(tmp_path / "w.pkl", "wb") as handle:
        pickle.dump(dict(state), handle)
    assert_same(read_checkpoint(tmp_path / "w.pkl").state_dict, state)


def test_a_ddp_state_dict_inside_state_dict_is_unwrapped_and_stripped(tmp_path):
    state = tiny_state()
    torch.save({"epoch": 3, "state_dict": OrderedDict((f"module.{k}", v) for k, v in state.items())},
               tmp_path / "ddp.pth")
    checkpoint = read_checkpoint(tmp_path / "ddp.pth")
    assert checkpoint.state_dict == {} and checkpoint.payload["epoch"] == 3
    unwrapped = unwrap_state_dict(checkpoint)
    assert_same(unwrapped.state_dict, state)
    assert unwrapped.payload["epoch"] == 3 and unwrapped.path == tmp_path / "ddp.pth"


def test_model_wrapper_with_a_namespace_and_numpy_scalars(tmp_path):
    state = tiny_state()
    args = argparse.Namespace(lr=3e-4, frames=8, output_dir=pathlib.PosixPath("/runs/7"), tags={"a", "b"})
    torch.save({"model": state, "args": args, "best_acc1": np.float64(0.2973), "step": np.int64(1200),
                "mean": np.array([0.5, 0.25], dtype=np.float32), "opts": types.SimpleNamespace(amp=True),
                "when": datetime.datetime(2024, 5, 1, 12, 30), "empty": b"", "counts": Counter(a=2)},
               tmp_path / "ckpt.pth")
    checkpoint = read_checkpoint(tmp_path / "ckpt.pth")
    payload = checkpoint.payload
    assert isinstance(payload["args"], argparse.Namespace)
    assert payload["args"].lr == 3e-4 and payload["args"].frames == 8 and payload["args"].tags == {"a", "b"}
    assert str(payload["args"].output_dir) == "/runs/7"  # a path stays a path (pure: no file system)
    assert isinstance(payload["best_acc1"], np.float64) and payload["best_acc1"] == 0.2973
    assert isinstance(payload["step"], np.int64) and payload["step"] == 1200
    assert payload["mean"].dtype == np.float32 and payload["mean"].tolist() == [0.5, 0.25]
    assert payload["opts"] == types.SimpleNamespace(amp=True)
    assert payload["when"] == datetime.datetime(2024, 5, 1, 12, 30)
    assert payload["empty"] == b"" and payload["counts"] == Counter(a=2)
    assert_same(unwrap_state_dict(checkpoint).state_dict, state)


def test_the_official_lavila_file_keeps_its_namespace_paths_and_accuracy():
    checkpoint = read_checkpoint(next((OFFICIAL / "lavila").glob("*.pth")))
    args = checkpoint.payload["args"]
    assert args.dataset == "ego4d" and str(args.output_dir) == "/checkpoint/user/experiments/lavila_pretrain/12345678"
    assert checkpoint.payload["best_acc1"] == np.float64(0.2973)
    assert unwrap_state_dict(checkpoint).has("visual.")


def test_a_whole_pickled_module_gives_its_state_dict_without_importing_its_class(tmp_path):
    net = Net()
    net.register_buffer("scratch", torch.ones(1), persistent=False)  # not in the state dict
    torch.save(net, tmp_path / "whole.pt")  # the class is this test module's: a class the loader never imports
    torch.save({"model": torch.nn.DataParallel(net), "epoch": 2}, tmp_path / "wrapped.pt")
    expected = {k: v.detach() for k, v in net.state_dict().items()}
    whole = read_checkpoint(tmp_path / "whole.pt")
    assert whole.payload["object"].inert_class.endswith("test_checkpoints.Net")
    assert_same(unwrap_state_dict(whole).state_dict, expected)
    assert_same(unwrap_state_dict(read_checkpoint(tmp_path / "wrapped.pt")).state_dict, expected)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4)
        self.proj = torch.nn.Linear(4, 4, bias=False)  # a None bias: not a key
        self.register_buffer("scale", torch.full((4,), 2.0))

    def forward(self, x):
        return self.proj(self.norm(x)) * self.scale


class Tower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Parameter(torch.randn(3, 4))
        self.blocks = torch.nn.Sequential(Block(), Block())
        self.sizes = [3, 4]  # a typed list attribute, not a tensor
        self.cache = torch.ones(2)  # a plain tensor attribute: not in the state dict

    def forward(self, x):
        return self.blocks(x + self.embed[: x.shape[0]])


@pytest.mark.parametrize("how", ["trace", "script"])
def test_a_torchscript_archive_gives_what_torch_jit_load_would(tmp_path, how):
    torch.manual_seed(0)
    module = Tower().half() if how == "trace" else Tower()  # OpenAI's files are traced fp16
    example = torch.randn(3, 4, dtype=next(module.parameters()).dtype)
    scripted = torch.jit.trace(module, example) if how == "trace" else torch.jit.script(module)
    scripted.save(str(tmp_path / "ts.pt"))
    checkpoint = read_checkpoint(tmp_path / "ts.pt")
    assert checkpoint.format == "torchscript"
    loaded = torch.jit.load(str(tmp_path / "ts.pt"))  # what running the archive would give
    assert_same(checkpoint.state_dict, {k: v.detach() for k, v in loaded.state_dict().items()})
    assert_same(checkpoint.state_dict, {k: v.detach() for k, v in module.state_dict().items()})
    assert "blocks.0.proj.bias" not in checkpoint.state_dict and "cache" not in checkpoint.state_dict
    assert not any(value.requires_grad for value in checkpoint.state_dict.values())


def test_the_official_clip_torchscript_file_equals_its_state_dict_file():
    scripted = read_checkpoint(OFFICIAL / "clip" / "ViT-T-8.pt")
    plain = read_checkpoint(OFFICIAL / "clip" / "ViT-T-8-state.pt")
    assert scripted.format == "torchscript" and len(scripted.state_dict) == 62
    # the state-dict file carries OpenAI's three integer scalars besides the weights
    assert set(plain.state_dict) - set(scripted.state_dict) == {"input_resolution", "context_length", "vocab_size"}
    for key, value in scripted.state_dict.items():
        assert torch.equal(value, plain.state_dict[key]) and value.dtype == plain.state_dict[key].dtype, key


class Restoring(torch.nn.Module):
    """A module whose TorchScript ``__setstate__`` creates the file named in its state."""

    def __init__(self, marker: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.marker = marker

    def forward(self, x):
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.marker = state[1]
        self.training = state[2]
        # torch.from_file(shared=True) creates the file: TorchScript that touches the file system
        self.weight = state[0] + torch.from_file(state[1], True, 2, dtype=torch.float32) * 0


def test_a_torchscript_archive_that_restores_itself_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    torch.jit.script(Restoring(str(marker))).save(str(tmp_path / "restoring.pt"))
    assert not marker.exists()
    with pytest.raises(InputError) as error:
        read_checkpoint(tmp_path / "restoring.pt")
    one_line_about(error, tmp_path / "restoring.pt", "TorchScript", "__torch__.", "__setstate__", "not run")
    assert not marker.exists()
    torch.jit.load(str(tmp_path / "restoring.pt"))  # the payload is live: torch.jit.load runs it
    assert marker.exists()


THROWAWAY = """
    import pathlib
    pathlib.Path({marker!r}).write_text("imported")  # the loader must never import this module

    class Config(dict):
        pass

    class Settings:
        def __init__(self):
            self.lr = 0.1
            self.layers = [2, 2]
"""


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 0", "pickle protocol 4"])
def test_a_class_the_loader_never_saw_reads_back_as_inert_data(tmp_path, monkeypatch, writer):
    marker = tmp_path / "imported"
    (tmp_path / "throwaway_config.py").write_text(textwrap.dedent(THROWAWAY.format(marker=str(marker))))
    monkeypatch.syspath_prepend(str(tmp_path))
    import throwaway_config

    config = throwaway_config.Config(model="ViT-B/32", depth=12, nested=throwaway_config.Config(frames=8))
    obj = {"state_dict": tiny_state(), "config": config, "settings": throwaway_config.Settings(), "tags": {"x"}}
    target = tmp_path / "ckpt.pth"
    if writer == "torch.save":
        torch.save(obj, target)
    else:
        with open(target, "wb") as handle:
            pickle.dump(obj, handle, protocol=int(writer[-1]))
    del sys.modules["throwaway_config"]
    marker.unlink()
    monkeypatch.syspath_prepend(str(tmp_path))  # importable again: the loader still must not import it

    checkpoint = read_checkpoint(target)
    assert not marker.exists() and "throwaway_config" not in sys.modules
    cfg = checkpoint.payload["config"]
    assert isinstance(cfg, InertObject) and cfg.inert_class == "throwaway_config.Config"
    assert dict(cfg) == {"model": "ViT-B/32", "depth": 12, "nested": {"frames": 8}}
    assert cfg["nested"].inert_class == "throwaway_config.Config"
    settings = checkpoint.payload["settings"]
    assert settings.inert_class == "throwaway_config.Settings" and settings.inert_state == {"lr": 0.1, "layers": [2, 2]}
    assert checkpoint.payload["tags"] == {"x"} and isinstance(checkpoint.payload["tags"], set)
    assert "throwaway_config.Config" in repr(cfg) and not hasattr(cfg, "model")  # data only
    assert_same(unwrap_state_dict(checkpoint).state_dict, tiny_state())


HOOKS = """
    import enum
    import pathlib
    pathlib.Path({imported!r}).write_text("imported")  # the loader must never import this module

    def touch(path):
        pathlib.Path(path).write_text("ran")

    class Mode(enum.Enum):
        BICUBIC = "bicubic"
"""


def test_a_call_of_a_function_from_an_importable_module_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    imported, ran = tmp_path / "imported", tmp_path / "ran"
    (tmp_path / "throwaway_hooks.py").write_text(textwrap.dedent(HOOKS.format(imported=str(imported))))
    monkeypatch.syspath_prepend(str(tmp_path))
    import throwaway_hooks

    torch.save({"state_dict": tiny_state(), "hook": Reduce(throwaway_hooks.touch, str(ran))}, tmp_path / "hook.pt")
    torch.save({"state_dict": tiny_state(), "mode": throwaway_hooks.Mode.BICUBIC}, tmp_path / "enum.pt")
    del sys.modules["throwaway_hooks"]
    imported.unlink()
    with pytest.raises(InputError) as error:
        read_checkpoint(tmp_path / "hook.pt")
    one_line_about(error, tmp_path / "hook.pt", "refused: refusing to call throwaway_hooks.touch")
    # a class rebuilt by a call (an Enum member) is kept as inert data with its arguments
    mode = read_checkpoint(tmp_path / "enum.pt").payload["mode"]
    assert mode.inert_class == "throwaway_hooks.Mode" and mode.inert_args == ("bicubic",)
    assert not ran.exists() and not imported.exists() and "throwaway_hooks" not in sys.modules


def test_the_official_vifi_clip_file_reads_its_yacs_config_as_data():
    checkpoint = read_checkpoint(next((OFFICIAL / "vifi_clip").glob("*.pth")))
    config = checkpoint.payload["config"]
    assert config.inert_class == "yacs.config.CfgNode" and config["DATA"]["NUM_FRAMES"] == 32
    assert "yacs" not in sys.modules


def test_the_official_singularity_file_reads_its_omegaconf_config_as_data():
    """OmegaConf pickles name builtins.int (as Python 2's ``__builtin__.long``) in its node metadata: the
    scalar types are allowed, OmegaConf's classes become inert and are never imported."""
    checkpoint = read_checkpoint(OFFICIAL / "singularity" / "singularity_temporal_17m.pth")
    config = checkpoint.payload["config"]
    assert config.inert_class == "omegaconf.dictconfig.DictConfig" and "omegaconf" not in sys.modules
    embed_dim = config.inert_state["_content"]["embed_dim"]
    assert embed_dim.inert_class == "omegaconf.nodes.AnyNode" and embed_dim.inert_state["_val"] == 16
    assert checkpoint.payload["epoch"] == 9 and "vision_proj.weight" in unwrap_state_dict(checkpoint).state_dict


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_scalar_types_and_their_calls_read_back_as_values(tmp_path, protocol):
    obj = {"state_dict": tiny_state(), "types": [int, float, str, bool], "built": Reduce(int, "12"),
           "ratio": Reduce(float, "0.5"), "flag": Reduce(bool, 1), "name": Reduce(str, 7)}
    with open(tmp_path / "scalars.pth", "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)
    payload = read_checkpoint(tmp_path / "scalars.pth").payload
    assert payload["types"] == [int, float, str, bool]
    assert (payload["built"], payload["ratio"], payload["flag"], payload["name"]) == (12, 0.5, True, "7")


# ------------------------------------------------------------------------------------------------
# Wrappers, prefixes, rename tables


def test_unwrap_finds_nested_wrappers_and_strips_module_prefixes(tmp_path):
    state = tiny_state()
    torch.save({"model": {"state_dict": {f"module.{k}": v for k, v in state.items()}, "ema": None}, "epoch": 1},
               tmp_path / "nested.pt")
    assert_same(unwrap_state_dict(read_checkpoint(tmp_path / "nested.pt")).state_dict, state)
    torch.save(OrderedDict((f"module.{k}", v) for k, v in state.items()), tmp_path / "flat.pt")
    assert_same(unwrap_state_dict(read_checkpoint(tmp_path / "flat.pt")).state_dict, state)


def test_unwrap_without_weights_names_the_top_level_keys(tmp_path):
    torch.save({"epoch": 3, "optimizer": {}, "args": argparse.Namespace(), "lr": 0.1}, tmp_path / "empty.pt")
    with pytest.raises(InputError) as error:
        unwrap_state_dict(read_checkpoint(tmp_path / "empty.pt"))
    one_line_about(error, tmp_path / "empty.pt", "holds no weights under state_dict / model / module",
                   "(top-level keys: args, epoch, lr and 1 more)")


def test_strip_prefix_only_when_every_key_has_it():
    state = {"module.a": torch.zeros(1), "module.b": torch.ones(1)}
    assert list(strip_prefix(state, "module.")) == ["a", "b"]
    mixed = {"module.a": torch.zeros(1), "b": torch.ones(1)}
    assert strip_prefix(mixed, "module.") == mixed and strip_prefix(mixed, "module.") is not mixed
    assert strip_prefix({}, "module.") == {}


def test_remap_keys_first_matching_row_anchored_at_the_start():
    state = {"visual.conv.weight": torch.zeros(1), "text.visual.w": torch.ones(1), "logit_scale": torch.ones(())}
    table = [(r"visual\.(\w+)\.", r"image.\1."), (r"visual\.", "never."), (r"text\.", "")]
    remapped = remap_keys(state, table)
    assert list(remapped) == ["image.conv.weight", "visual.w", "logit_scale"]
    assert remapped["visual.w"] is state["text.visual.w"]


def test_remap_keys_refuses_two_keys_landing_on_one_name():
    state = {"a.weight": torch.zeros(1), "b.weight": torch.ones(1)}
    with pytest.raises(ValueError, match=r"maps both 'a\.weight' and 'b\.weight' to 'c\.weight'"):
        remap_keys(state, [(r"[ab]\.", "c.")])
    with pytest.raises(ValueError, match=r"maps both 'c\.weight' and 'b\.weight' to 'c\.weight'"):
        remap_keys({"c.weight": torch.zeros(1), "b.weight": torch.ones(1)}, [(r"b\.", "c.")])


# ------------------------------------------------------------------------------------------------
# Key reports and strict loading


def test_key_report_names_missing_unexpected_and_both_shapes():
    expected = {"a": (2, 3), "b": (4,), "c": (1,), "buf.x": (1,)}
    found = {"a": torch.zeros(3, 2), "b": torch.zeros(4), "extra": torch.zeros(1), "int.scalar": torch.tensor(7)}
    report = key_report(expected, found, ignore_missing=("buf.",), ignore_unexpected=("int.",))
    assert report == "missing c; unexpected extra; wrong shape of a (file [3, 2], model [2, 3])"
    assert key_report({"a": (1,)}, {"a": torch.zeros(1)}) == ""
    many = key_report({f"k{i}": (1,) for i in range(5)}, {})
    assert many == "missing k0, k1, k2 and 2 more"
    shapes = key_report({f"k{i}": (1,) for i in range(5)}, {f"k{i}": torch.zeros(2) for i in range(5)})
    assert shapes.endswith("k2 (file [2], model [1]) and 2 more")


def test_load_strict_refuses_what_does_not_fit_naming_the_file(tmp_path):
    source = tmp_path / "w.pt"
    state = dict(Net().state_dict())
    wrong = {**state, "encoder.weight": torch.zeros(5, 3), "surplus": torch.zeros(1)}
    del wrong["head.weight"]
    with pytest.raises(InputError) as error:
        load_strict(Net(), wrong, source, family="toy")
    one_line_about(error, source, "does not fit the toy architecture read from it", "missing head.weight",
                   "unexpected surplus", "wrong shape of encoder.weight (file [5, 3], model [4, 3])")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_load_strict_refuses_non_finite_values(tmp_path, bad):
    state = dict(Net().state_dict())
    state["encoder.bias"] = state["encoder.bias"].clone().half()
    state["encoder.bias"][1] = bad
    net = Net()
    before = net.encoder.bias.detach().clone()
    with pytest.raises(InputError) as error:
        load_strict(net, state, tmp_path / "w.pt", family="toy")
    one_line_about(error, tmp_path / "w.pt", "holds non-finite values in encoder.bias")
    assert torch.equal(net.encoder.bias.detach(), before)  # nothing loaded


def test_load_strict_casts_fp16_fp32_mixes_to_the_module_dtypes(tmp_path):
    state = {"encoder.weight": torch.randn(4, 3).half(), "encoder.bias": torch.randn(4, dtype=torch.float64),
             "head.weight": torch.randn(2, 4), "steps": torch.tensor(5, dtype=torch.int32)}
    net = Net()
    load_strict(net, state, tmp_path / "w.pt", family="toy")
    assert net.encoder.weight.dtype == torch.float32
    assert torch.equal(net.encoder.weight, state["encoder.weight"].float())
    assert net.encoder.bias.dtype == torch.float32 and torch.allclose(net.encoder.bias, state["encoder.bias"].float())
    assert net.steps.dtype == torch.long and net.steps.item() == 5
    half = Net().half()
    load_strict(half, {k: v.float() for k, v in state.items()}, tmp_path / "w.pt", family="toy")
    assert half.head.weight.dtype == torch.float16 and torch.equal(half.head.weight, state["head.weight"].half())


def test_require_keys_says_which_family_the_file_is_not(tmp_path):
    torch.save({"text_encoder.w": torch.zeros(1), "vision.w": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError) as error:
        require_keys(read_checkpoint(tmp_path / "other.pt"), ["visual.proj", "logit_scale"], family="clip")
    one_line_about(error, tmp_path / "other.pt", "is not a clip checkpoint: it lacks visual.proj, logit_scale",
                   "(it has text_encoder.w, vision.w)")


# ------------------------------------------------------------------------------------------------
# Hashing


def test_file_sha256_of_a_file_and_of_a_directory(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"weights" * 1000)
    assert file_sha256(tmp_path / "w.bin") == hashlib.sha256(b"weights" * 1000).hexdigest()

    def folder(name, files):
        root = tmp_path / name
        for relative, data in files.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(data)
        return file_sha256(root)

    base = folder("a", {"config.json": b"{}", "sub/model.safetensors": b"abc"})
    assert folder("b", {"sub/model.safetensors": b"abc", "config.json": b"{}"}) == base  # where it is: no matter
    assert folder("c", {"config.json": b"{}", "sub/model.safetensors": b"abd"}) != base  # contents
    assert folder("d", {"config.json": b"{}", "sub/weights.safetensors": b"abc"}) != base  # names
    # bytes moved from one file into the next file's name must not give the same digest
    assert folder("e", {"a": b"x", "b": b"y"}) != folder("f", {"a": b"xb\0y"})
    assert file_sha256(tmp_path / "a") != file_sha256(tmp_path / "a" / "config.json")


def test_file_sha256_of_a_missing_path_is_an_error(tmp_path):
    with pytest.raises(InputError) as error:
        file_sha256(tmp_path / "gone")
    one_line_about(error, tmp_path / "gone", "not found")


# ------------------------------------------------------------------------------------------------
# Refusals: code never runs, broken files are one line


class Reduce:
    """Pickles as a call of ``function(*args)``: what a malicious checkpoint carries."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def code_payloads(marker: pathlib.Path) -> dict:
    command = f"touch {marker}"
    return {
        "os.system": (Reduce(os.system, command), "posix.system"),
        "subprocess.Popen": (Reduce(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
        "subprocess.check_output": (Reduce(subprocess.check_output, ["touch", str(marker)]), "subprocess.check_output"),
        "builtins.eval": (Reduce(eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
        "builtins.exec": (Reduce(exec, f"open({str(marker)!r}, 'w')"), "builtins.exec"),
        "builtins.open": (Reduce(open, str(marker), "w"), "io.open"),
        "getattr": (Reduce(getattr, "text", "upper"), "builtins.getattr"),
        "webbrowser.open": (Reduce(webbrowser.open, marker.as_uri()), "webbrowser.open"),
        "shutil.rmtree": (Reduce(shutil.rmtree, str(marker)), "shutil.rmtree"),
        # a method pickles as getattr(class, name): refused at the getattr
        "pathlib.Path.touch": (Reduce(pathlib.Path.touch, pathlib.Path(marker)), "builtins.getattr"),
    }


PAYLOADS = list(code_payloads(pathlib.Path("/m")))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_pickle_carrying_code_is_refused_and_nothing_runs(tmp_path, payload, writer):
    marker = tmp_path / "ran"
    reducer, global_name = code_payloads(marker)[payload]
    target = tmp_path / "evil.pth"
    obj = {"state_dict": tiny_state(), "payload": reducer}
    if writer == "torch.save":
        torch.save(obj, target)
    else:
        with open(target, "wb") as handle:
            pickle.dump(obj, handle, protocol=2)
    with pytest.raises(InputError) as error:
        read_checkpoint(target, family="clip")
    text = one_line_about(error, target, "clip checkpoint refused: refusing to", "checkpoints hold data, not code")
    assert global_name in text
    assert not marker.exists()


def test_the_refused_payload_is_live(tmp_path):
    """The same file does run its payload through an ordinary unpickler: the refusals above prove something."""
    marker = tmp_path / "ran"
    torch.save({"state_dict": tiny_state(), "payload": Reduce(os.system, f"touch {marker}")}, tmp_path / "evil.pth")
    with pytest.raises(InputError):
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


def test_a_truncated_file_of_each_format_is_one_line(tmp_path):
    state = tiny_state()
    save_file(dict(state), tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with open(tmp_path / "w.pkl", "wb") as handle:
        pickle.dump(dict(state), handle)
    torch.jit.trace(Net(), torch.zeros(1, 3)).save(str(tmp_path / "ts.pt"))
    for name in ("w.safetensors", "w.pt", "legacy.pt", "w.pkl", "ts.pt"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(InputError) as error:
            read_checkpoint(cut, family="toy")
        text = one_line_about(error, cut)
        assert "truncated or not a checkpoint" in text or "not a readable safetensors file" in text, text


def test_empty_directory_missing_and_foreign_files_are_one_line(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("these are not weights\n")
    (tmp_path / "folder").mkdir()
    cases = {"empty.pt": "toy checkpoint is empty", "folder": "toy checkpoint is a directory",
             "missing.pt": "toy checkpoint not found", "notes.txt": "toy checkpoint is truncated or not a checkpoint"}
    for name, message in cases.items():
        with pytest.raises(InputError) as error:
            read_checkpoint(tmp_path / name, family="toy")
        one_line_about(error, tmp_path / name, message)
