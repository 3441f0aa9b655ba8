"""One checkpoint loader for every family: safe reads, wrapper keys, remap tables, a strict key report.

Official video-language checkpoints come in many shapes: safetensors, plain state dicts, TorchScript
archives (OpenAI CLIP), and pickles that carry non-tensor payloads next to the weights
(``argparse.Namespace`` in LaViLa, OmegaConf in Singularity, a yacs ``CfgNode`` in ViFi-CLIP, plain
dicts of epochs and optimiser states). Reading them must never run code from the file:

1. safetensors files are read as such;
2. TorchScript archives are read without ``torch.jit.load``, which would run the archive's
   code (a module's ``__setstate__`` is TorchScript that can read and write files): the pickled
   module tree (``data.pkl``) goes through the restricted unpickler below, the parameter and
   buffer names come from the ``__parameters__``/``__buffers__`` lists of the archive's code,
   parsed (never compiled or run), and a module that restores itself with its own
   ``__setstate__`` is refused;
3. pickles go through ``torch.load(weights_only=True)`` with an allow-list of harmless payload
   types (`ALLOWED_PAYLOAD_TYPES`);
4. a pickle that names another class (yacs, OmegaConf, a training script's own class) is read by a
   restricted unpickler (`InertObject`): torch's weights-only allow-list, the payload types, and
   every other class replaced by an inert stand-in that records what it was and the data it held.
   Nothing outside the allow-list is imported, so a pickle "carrying code" (``os.system`` as a
   reduce callable) is refused in one line instead of run. A pickle that *calls* a function outside
   the allow-list (``webbrowser.open``) is refused too. Without importing it a function cannot be
   told from a class, so the name decides: a lower-case name is a function (refused), a
   capitalised one a class whose ``__reduce__`` rebuilds it from arguments (an ``Enum`` member),
   kept inert with those arguments. Plain objects are rebuilt with ``__new__`` (pickle's default)
   and never need a call. Either way nothing from the file runs.
   Python 2 names (``__builtin__.set``, which ``torch.save``'s protocol 2 writes) are read as
   their Python 3 modules, as ``pickle`` itself does.

After reading, `unwrap_state_dict` finds the weights inside their wrapper (``state_dict``, ``model``,
``module.`` prefixes), `remap_keys` applies a family's declarative rename table, and
`load_strict` loads them into a module after `key_report` has checked every key and shape: one
`InputError` naming the file and the first offending keys. Dimensions are read from tensor shapes
by each family (as OpenAI's ``build_model`` does), so a published file and a tiny test file go
through the same code.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import ast
import collections
import datetime
import hashlib
import io
import os
import pathlib
import pickle
import types
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from instract_eval.errors import InputError

__all__ = [
    "ALLOWED_PAYLOAD_TYPES",
    "Checkpoint",
    "InertObject",
    "read_checkpoint",
    "unwrap_state_dict",
    "strip_prefix",
    "remap_keys",
    "key_report",
    "load_strict",
    "file_sha256",
    "require_keys",
]

# Non-tensor payload types of official checkpoints that are plain data.
ALLOWED_PAYLOAD_TYPES: tuple[Any, ...] = (argparse.Namespace, collections.OrderedDict, collections.defaultdict,
                                          set, frozenset, slice, complex, range)
_SHOWN = 3
_FIELD = "checkpoint"


@dataclass
class Checkpoint:
    """What a file held: its tensors (by key), its other top-level entries, and its format."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    payload: dict[str, Any] = field(default_factory=dict)
    format: str = ""

    def has(self, prefix: str) -> bool:
        """Whether any key starts with ``prefix``."""
        return any(key.startswith(prefix) for key in self.state_dict)


class InertObject(dict):
    """Stand-in for a pickled object whose class is not on the allow-list.

    It keeps what the pickle gave it (constructor arguments, dict items, list items, state) and
    its original class name in ``inert_class``, and has no behaviour. A yacs ``CfgNode`` (a dict
    subclass) reads back as its items.
    """

    inert_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        # ``NEWOBJ``: ``cls.__new__(cls, *args)``, how pickle rebuilds plain objects; nothing is called
        obj = super().__new__(cls)
        obj.inert_args = args
        obj.inert_kwargs = kwargs
        return obj

    def __init__(self, *args: Any, **kwargs: Any):
        # Reached only when the pickle *calls* the global (``REDUCE``). Nothing runs either way (the
        # stand-in has no behaviour), but a call of a function (``webbrowser.open``) is what a pickle
        # carrying code looks like, so it is refused; a class with its own ``__reduce__`` (an Enum
        # member, ``Mode("bicubic")``) keeps its arguments. Told apart by the name's case (PEP 8).
        if not self.inert_class.rsplit(".", 1)[-1][:1].isupper():
            raise _Refused(f"refusing to call {self.inert_class}: checkpoints hold data, not code")

    def __setstate__(self, state: Any) -> None:
        self.inert_state = state

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("inert_items", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("inert_items", []).extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.inert_class} {dict.__repr__(self)}>"


class _Refused(pickle.UnpicklingError):
    """A pickle that would run code (as opposed to one that is merely broken)."""


def _inert_class(module: str, name: str) -> type:
    return type(name, (InertObject,), {"inert_class": f"{module}.{name}", "__module__": "inert"})


def _identity_list(data: Any) -> Any:
    return data


def _restore_type_tag(value: Any, type_str: str) -> Any:
    return value


# Callables a pickle may invoke while rebuilding plain data, besides torch's own allow-list: each
# builds a value from plain arguments and nothing else (paths are the pure kinds: no file system).
_EXTRA_CALLABLES = {
    "builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice, "builtins.complex": complex,
    "builtins.range": range, "builtins.object": object, "builtins.dict": dict, "builtins.list": list,
    "builtins.tuple": tuple, "builtins.bytes": bytes, "builtins.bytearray": bytearray,
    # scalars: OmegaConf's node metadata names its types (Singularity's config; ``__builtin__.long``
    # under protocol 2 reads as int); each only builds a value from its argument
    "builtins.int": int, "builtins.float": float, "builtins.str": str, "builtins.bool": bool,
    "argparse.Namespace": argparse.Namespace, "types.SimpleNamespace": types.SimpleNamespace,
    "collections.OrderedDict": collections.OrderedDict, "collections.defaultdict": collections.defaultdict,
    "collections.Counter": collections.Counter, "collections.deque": collections.deque,
    "datetime.datetime": datetime.datetime, "datetime.date": datetime.date, "datetime.time": datetime.time,
    "datetime.timedelta": datetime.timedelta, "datetime.timezone": datetime.timezone,
    **{f"{module}.{name}": pure for module in ("pathlib", "pathlib._local") for name, pure in (
        ("Path", pathlib.PurePosixPath), ("PosixPath", pathlib.PurePosixPath), ("PurePath", pathlib.PurePosixPath),
        ("PurePosixPath", pathlib.PurePosixPath), ("WindowsPath", pathlib.PureWindowsPath),
        ("PureWindowsPath", pathlib.PureWindowsPath))},
    # what TorchScript's pickler writes around typed lists: identities (torch.jit._pickle)
    **{f"torch.jit._pickle.build_{kind}list": _identity_list for kind in ("int", "tensor", "double", "bool")},
    "torch.jit._pickle.restore_type_tag": _restore_type_tag,
    "torch.storage._load_from_bytes": lambda data: _load_from_bytes(data),
}


def _allowed_globals() -> dict[str, Any]:
    from torch import _weights_only_unpickler

    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update(_EXTRA_CALLABLES)
    try:  # numpy arrays and scalars inside payloads (statistics, best accuracies), under numpy 1 and 2 names
        import numpy as np
        core = getattr(np, "_core", None) or np.core
        for prefix in ("numpy.core", "numpy._core"):
            allowed.update({f"{prefix}.multiarray._reconstruct": core.multiarray._reconstruct,
                            f"{prefix}.multiarray.scalar": core.multiarray.scalar})
        allowed.update({"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype})
        allowed.update({f"numpy.dtypes.{name}": getattr(np.dtypes, name) for name in dir(np.dtypes)
                        if name.endswith("DType")})
    except (ImportError, AttributeError):
        pass
    return allowed


# Modules whose globals in a checkpoint can only mean code (refused by name, never made inert).
_CODE_MODULES = frozenset((
    "builtins", "os", "posix", "nt", "subprocess", "sys", "shutil", "importlib", "runpy", "pickle", "_pickle",
    "marshal", "types", "codecs", "_codecs", "operator", "functools", "ctypes", "_ctypes", "socket", "_socket",
    "webbrowser", "signal", "multiprocessing", "threading", "_thread", "asyncio", "code", "codeop", "pty",
    "inspect", "gc", "io", "_io", "pathlib", "tempfile", "urllib", "http", "ftplib", "smtplib", "telnetlib",
    "pdb", "timeit", "trace", "platform", "sysconfig", "site", "zipimport", "pkgutil", "dill", "cloudpickle",
))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; everything else becomes an `InertObject` subclass.

    ``copyreg._reconstructor`` is allowed: it only calls ``base.__new__(cls)`` on classes that
    came through this same filter.
    """

    _allowed: dict[str, Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        allowed = type(self)._allowed
        if allowed is None:
            allowed = type(self)._allowed = _allowed_globals()
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names (protocol 2, torch.save's)
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        if qualified in allowed:
            return allowed[qualified]
        if qualified == "copyreg._reconstructor":
            return _reconstructor
        if (module == "torch" or module.startswith("torch.")) and ("Storage" in name or name.startswith("_rebuild")):
            return super().find_class(module, name)  # tensor storage types and rebuild functions
        if module.split(".")[0] in _CODE_MODULES:
            raise _Refused(f"refusing to load {qualified}: checkpoints hold data, not code")
        return _inert_class(module, name)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocols 0 and 1), with inert classes built without a call."""
    import copyreg

    if isinstance(cls, type) and issubclass(cls, InertObject):
        obj = InertObject.__new__(cls)
        if isinstance(state, Mapping):
            dict.update(obj, state)
        elif state is not None:
            obj.inert_args = (state,)
        return obj
    return copyreg._reconstructor(cls, base, state)


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` needs: an ``Unpickler`` and ``load``."""

    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(file, **kwargs).load()


def read_checkpoint(path: str | os.PathLike, *, family: str = "") -> Checkpoint:
    """The tensors and payload of a checkpoint file, read safely (see the module docstring).

    Raises `InputError` naming the file for a missing file, a directory, a truncated or unreadable
    file, or a pickle that would run code. The state dict is the whole object when that is a
    mapping of tensors; otherwise use `unwrap_state_dict` on ``payload["object"]``.
    """
    source = Path(path)
    label = f"{family} checkpoint" if family else "checkpoint"
    if not source.exists():
        raise InputError(f"{label} not found", path=source, field=_FIELD)
    if source.is_dir():
        raise InputError(f"{label} is a directory; this family reads one file", path=source, field=_FIELD)
    try:
        with open(source, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise InputError(f"cannot read the {label}: {error.strerror or error}", path=source, field=_FIELD) from None
    if not head:
        raise InputError(f"{label} is empty", path=source, field=_FIELD)
    if _looks_like_safetensors(source, head):
        return _read_safetensors(source, label)
    if zipfile.is_zipfile(source) and _is_torchscript(source):
        return _read_torchscript(source, label)
    loaded = _torch_load(source, label)
    checkpoint = Checkpoint(source, {}, {"object": loaded}, format="torch pickle")
    if isinstance(loaded, Mapping):
        tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(loaded):
            checkpoint.state_dict = dict(tensors)
            checkpoint.payload = {}
        else:
            checkpoint.payload = {k: v for k, v in loaded.items() if not isinstance(v, torch.Tensor)}
            checkpoint.payload["object"] = loaded
    return checkpoint


def unwrap_state_dict(checkpoint: Checkpoint, keys: Sequence[str] = ("state_dict", "model", "module"),
                      *, strip: Sequence[str] = ("module.",)) -> Checkpoint:
    """The checkpoint with its weights found inside a wrapper and ``module.``-style prefixes removed.

    Looks for the first of ``keys`` (recursively: ``{'model': {'state_dict': ...}}``) whose value
    is a mapping of tensors. A checkpoint that already is a state dict is returned with only the
    prefixes stripped. The other top-level entries stay in ``payload``.
    """
    state = checkpoint.state_dict
    if not state:
        found = _find_tensors(checkpoint.payload.get("object"), tuple(keys))
        if found is None:
            shown = _shown_keys(checkpoint.payload.get("object"))
            raise InputError(f"holds no weights under {' / '.join(keys)} (top-level keys: {shown})",
                             path=checkpoint.path, field=_FIELD)
        state = found
    for prefix in strip:
        state = strip_prefix(state, prefix)
    return Checkpoint(checkpoint.path, dict(state), checkpoint.payload, checkpoint.format)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix`` removed from its keys, when every key has it (else unchanged)."""
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    return dict(state)


def remap_keys(state: Mapping[str, torch.Tensor], table: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Keys renamed by a declarative table of ``(regular expression, replacement)`` rows.

    Each key is rewritten by the first row that matches it (``re.sub`` with that row's
    replacement, anchored at the start); keys no row matches are kept. Two keys that land on one
    name is an error: a rename table must not silently drop weights.
    """
    import re

    compiled = [(re.compile(pattern), replacement) for pattern, replacement in table]
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in compiled:
            if pattern.match(key):
                new = pattern.sub(replacement, key, count=1)
                break
        if new in out:
            raise ValueError(f"remap table maps both {origin[new]!r} and {key!r} to {new!r}")
        out[new] = value
        origin[new] = key
    return out


def key_report(expected: Mapping[str, torch.Size | tuple[int, ...]], found: Mapping[str, torch.Tensor],
               *, ignore_missing: Iterable[str] = (), ignore_unexpected: Iterable[str] = ()) -> str:
    """What does not fit, in words ("" when everything fits).

    ``ignore_*`` are key prefixes that may be absent (buffers rebuilt from shapes) or present
    without a parameter (the integer scalars OpenAI CLIP files carry).
    """
    skip_missing, skip_unexpected = tuple(ignore_missing), tuple(ignore_unexpected)
    missing = sorted(k for k in expected if k not in found and not k.startswith(skip_missing))
    unexpected = sorted(k for k in found if k not in expected and not k.startswith(skip_unexpected))
    wrong = sorted(k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k]))
    parts = []
    if missing:
        parts.append(f"missing {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected {_first(unexpected)}")
    if wrong:
        shapes = ", ".join(f"{k} (file {list(found[k].shape)}, model {list(expected[k])})" for k in wrong[:_SHOWN])
        more = f" and {len(wrong) - _SHOWN} more" if len(wrong) > _SHOWN else ""
        parts.append(f"wrong shape of {shapes}{more}")
    return "; ".join(parts)


def require_keys(checkpoint: Checkpoint, keys: Iterable[str], *, family: str) -> None:
    """Refuse a file that lacks the keys every checkpoint of ``family`` has (another family's file)."""
    absent = [key for key in keys if key not in checkpoint.state_dict]
    if absent:
        shown = _first(sorted(checkpoint.state_dict))
        raise InputError(f"is not a {family} checkpoint: it lacks {_first(absent)} (it has {shown})",
                         path=checkpoint.path, field=_FIELD)


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
                family: str, ignore_missing: Iterable[str] = (), ignore_unexpected: Iterable[str] = ()) -> None:
    """Load ``state`` into ``module`` after checking every key and shape; values cast to the module's dtypes.

    fp16/fp32 mixes in the file are cast to each parameter's dtype (float32 at build). Non-finite
    values are refused: they would only surface later as NaN scores.
    """
    expected = {key: value.shape for key, value in module.state_dict().items()}
    problems = key_report(expected, state, ignore_missing=ignore_missing, ignore_unexpected=ignore_unexpected)
    if problems:
        raise InputError(f"does not fit the {family} architecture read from it: {problems}", path=source,
                         field=_FIELD)
    bad = [key for key in expected if key in state and state[key].is_floating_point()
           and not torch.isfinite(state[key]).all()]
    if bad:
        raise InputError(f"holds non-finite values in {_first(bad)}", path=source, field=_FIELD)
    targets = module.state_dict()
    converted = {key: state[key].to(targets[key].dtype) for key in expected if key in state}
    module.load_state_dict(converted, strict=False)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a directory's files (names, sizes and contents, in sorted order).

    Each file of a directory is framed by its name and size, so moving bytes from one file into
    another (or into a name) changes the digest. A missing path is an `InputError`.
    """
    source = Path(path)
    if not source.exists():
        raise InputError("not found (cannot hash it)", path=source, field=_FIELD)
    digest = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for file in files:
        if source.is_dir():
            name = file.relative_to(source).as_posix().encode()
            digest.update(len(name).to_bytes(8, "little") + name + file.stat().st_size.to_bytes(8, "little"))
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    if path.suffix == ".safetensors":
        return True
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < length < path.stat().st_size


def _read_safetensors(path: Path, label: str) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return Checkpoint(path, dict(load_file(str(path))), format="safetensors")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise InputError(f"{label} is not a readable safetensors file ({error})", path=path, field=_FIELD) from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _read_torchscript(path: Path, label: str) -> Checkpoint:
    """The parameters and buffers of a TorchScript archive, read without running any of its code."""
    what = f"{label} is a TorchScript archive"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            data = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
            if data is None:
                raise InputError(f"{what} of a format too old to read (no data.pkl); load it with the torch "
                                 "version that wrote it and save its state_dict()", path=path, field=_FIELD)
            prefix = data[: -len("data.pkl")]
            if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() not in (b"", b"little"):
                raise InputError(f"{what} written on a big-endian machine; save its state_dict() there",
                                 path=path, field=_FIELD)
            classes = _torchscript_classes(archive, prefix, names)
            root = _ArchiveUnpickler(io.BytesIO(archive.read(data)), archive, prefix).load()
    except InputError:
        raise
    except _Refused as error:
        raise InputError(f"{label} refused: {_first_line(error, named=False)}", path=path, field=_FIELD) from None
    except Exception as error:  # zip, zlib, syntax, missing records, malformed pickles: a broken file
        raise InputError(f"{what} that does not load ({_first_line(error)})", path=path, field=_FIELD) from None
    if _module_class(root, classes) is None:
        raise InputError(f"{what} whose top-level object is not a module", path=path, field=_FIELD)
    state: dict[str, torch.Tensor] = {}
    _collect_module(root, "", classes, state, path, what)
    return Checkpoint(path, state, format="torchscript")


@dataclass(frozen=True)
class _ScriptClass:
    tensors: tuple[str, ...]  # __parameters__ then __buffers__
    restores_itself: bool  # defines __setstate__ (TorchScript code that jit.load would run)


def _torchscript_classes(archive: zipfile.ZipFile, prefix: str, names: Sequence[str]) -> dict[str, _ScriptClass]:
    """The module classes of an archive's code, by qualified name (``__torch__.clip.model.CLIP``).

    The code is parsed as text (``ast.parse``: nothing is compiled or run) for each class's
    ``__parameters__`` and ``__buffers__`` lists and whether it defines ``__setstate__``.
    """
    classes = {}
    root = prefix + "code/"
    for name in names:
        if not (name.startswith(root) and name.endswith(".py")):
            continue
        module = name[len(root):-3].replace("/", ".")
        for node in ast.parse(archive.read(name).decode("utf-8"), filename=name).body:
            if not isinstance(node, ast.ClassDef):
                continue
            lists: dict[str, tuple[str, ...]] = {}
            restores = False
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__setstate__":
                    restores = True
                if (isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name)
                        and item.targets[0].id in ("__parameters__", "__buffers__")):
                    lists[item.targets[0].id] = tuple(str(v) for v in ast.literal_eval(item.value))
            if lists:
                classes[f"{module}.{node.name}"] = _ScriptClass(
                    lists.get("__parameters__", ()) + lists.get("__buffers__", ()), restores)
    return classes


def _module_class(obj: Any, classes: Mapping[str, _ScriptClass]) -> _ScriptClass | None:
    return classes.get(getattr(type(obj), "inert_class", "")) if isinstance(obj, InertObject) else None


def _collect_module(obj: InertObject, prefix: str, classes: Mapping[str, _ScriptClass],
                    out: dict[str, torch.Tensor], path: Path, what: str, within: tuple[int, ...] = ()) -> None:
    """``state_dict()`` of a scripted module read as data: its tensors, then its submodules'."""
    script = _module_class(obj, classes)
    assert script is not None
    if id(obj) in within or len(within) > 100:
        raise InputError(f"{what} whose modules contain themselves ({prefix or 'the top level'})", path=path,
                         field=_FIELD)
    attributes = getattr(obj, "inert_state", None)
    if script.restores_itself or not isinstance(attributes, Mapping):
        raise InputError(f"{what} whose module {obj.inert_class} restores itself with its own code "
                         "(__setstate__), which is not run: save its state_dict() and pass that file",
                         path=path, field=_FIELD)
    for name in script.tensors:
        value = attributes.get(name)
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.detach()
    for name, value in attributes.items():
        if _module_class(value, classes) is not None:
            _collect_module(value, f"{prefix}{name}.", classes, out, path, what, (*within, id(obj)))


class _ArchiveUnpickler(_RestrictedUnpickler):
    """The restricted unpickler reading tensor storages from a TorchScript archive's ``data/`` records."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, Any] = {}

    def persistent_load(self, saved_id: Any) -> Any:
        if not (isinstance(saved_id, tuple) and len(saved_id) == 5 and saved_id[0] == "storage"):
            raise _Refused(f"unsupported persistent id {str(saved_id)[:60]}")
        _, storage_type, key, _location, _numel = saved_id
        key = str(key)
        if key not in self._storages:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # TypedStorage is deprecated: torch's own loader uses it
                dtype = storage_type if isinstance(storage_type, torch.dtype) else storage_type.dtype
                raw = self._archive.read(f"{self._prefix}data/{key}")
                untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
                self._storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return self._storages[key]


_BROKEN = (EOFError, RuntimeError, ValueError, zipfile.BadZipFile, OSError, AttributeError, TypeError, IndexError,
           KeyError, pickle.UnpicklingError)


def _torch_load(path: Path, label: str) -> Any:
    def broken(error: BaseException) -> InputError:
        return InputError(f"{label} is truncated or not a checkpoint ({_first_line(error)})", path=path, field=_FIELD)

    try:
        with torch.serialization.safe_globals(list(ALLOWED_PAYLOAD_TYPES)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4 ...": not the user's to act on
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower() and "unsupported" not in str(error).lower():
            raise broken(error) from None
    except _BROKEN as error:
        if not _is_plain_pickle(error):
            raise broken(error) from None
        return _plain_pickle_load(path, label)
    try:  # a payload class outside the allow-list: the restricted unpickler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except _Refused as error:
        raise InputError(f"{label} refused: {_first_line(error, named=False)}", path=path, field=_FIELD) from None
    except _BROKEN as error:
        if not _is_plain_pickle(error):
            raise broken(error) from None
    return _plain_pickle_load(path, label)


def _is_plain_pickle(error: BaseException) -> bool:
    """torch.load's complaint about a file written by ``pickle.dump`` rather than ``torch.save``."""
    return isinstance(error, RuntimeError) and "magic number" in str(error).lower()


def _plain_pickle_load(path: Path, label: str) -> Any:
    """A ``pickle.dump`` file (tensors in it pickle their storages as torch.save bytes), read restricted."""
    try:
        with open(path, "rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return _RestrictedUnpickler(handle).load()
    except _Refused as error:
        raise InputError(f"{label} refused: {_first_line(error, named=False)}", path=path, field=_FIELD) from None
    except _BROKEN as error:
        raise InputError(f"{label} is truncated or not a checkpoint ({_first_line(error)})", path=path,
                         field=_FIELD) from None


def _load_from_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` (how ``pickle.dump`` writes a storage), read weights-only."""
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused("torch.storage._load_from_bytes without bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _find_tensors(value: Any, keys: tuple[str, ...], depth: int = 0) -> dict[str, torch.Tensor] | None:
    if isinstance(value, InertObject) and depth <= 3:
        pickled = _pickled_module_state(value)
        if pickled:
            return pickled
    if not isinstance(value, Mapping) or depth > 3:
        return None
    tensors = {k: v for k, v in value.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) >= len(value) / 2 and all(isinstance(k, str) for k in tensors):
        return tensors
    for key in keys:
        found = _find_tensors(value.get(key), keys, depth + 1)
        if found is not None:
            return found
    return None


def _pickled_module_state(obj: InertObject, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """``state_dict()`` of a whole ``torch.nn.Module`` pickled with ``torch.save(model)``, read as data.

    Its class was not imported (it is inert); its ``__dict__`` holds ``_parameters``,
    ``_buffers`` (minus ``_non_persistent_buffers_set``) and ``_modules``, as nn.Module keeps them.
    """
    attributes = getattr(obj, "inert_state", None)
    if depth > 100 or not isinstance(attributes, Mapping) or not isinstance(attributes.get("_modules"), Mapping):
        return {}
    state: dict[str, torch.Tensor] = {}
    skipped = attributes.get("_non_persistent_buffers_set") or ()
    for group in ("_parameters", "_buffers"):
        for name, value in (attributes.get(group) or {}).items():
            if isinstance(value, torch.Tensor) and not (group == "_buffers" and name in skipped):
                state[f"{prefix}{name}"] = value.detach()
    for name, child in attributes["_modules"].items():
        if isinstance(child, InertObject):
            state.update(_pickled_module_state(child, f"{prefix}{name}.", depth + 1))
    return state


def _shown_keys(value: Any) -> str:
    if isinstance(value, InertObject):
        return f"a pickled {value.inert_class}"
    if not isinstance(value, Mapping):
        return type(value).__name__
    return _first(sorted(str(k) for k in value))


def _first(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _first_line(error: BaseException, *, named: bool = True) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    first = first if len(first) <= 100 else first[:100].rsplit(" ", 1)[0] + " …"
    if not named:
        return first or type(error).__name__
    return f"{type(error).__name__}: {first}" if first else type(error).__name__

