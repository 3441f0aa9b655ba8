"""One checkpoint loader for every family: safe reads, wrapper keys, remap tables, a strict key report.

Official video-language checkpoints come in many shapes: safetensors, plain state dicts, TorchScript
archives (OpenAI CLIP), and pickles that carry non-tensor payloads next to the weights
(``argparse.Namespace`` in LaViLa, OmegaConf in Singularity, a yacs ``CfgNode`` in ViFi-CLIP, plain
dicts of epochs and optimiser states). Reading them must never run code from the file:

1. safetensors files are read as such;
2. TorchScript archives are read with ``torch.jit.load`` and only their ``state_dict`` is used
   (TorchScript is compiled graph code, not Python; nothing of it is run);
3. pickles go through ``torch.load(weights_only=True)`` with an allow-list of harmless payload
   types (`ALLOWED_PAYLOAD_TYPES`);
4. a pickle that names another class (yacs, OmegaConf, a training script's own class) is read by a
   restricted unpickler (`InertObject`): torch's weights-only allow-list, the payload types, and
   every other class replaced by an inert stand-in that records what it was and the data it held.
   Nothing outside the allow-list is imported, so a pickle "carrying code" (``os.system`` as a
   reduce callable) is refused in one line instead of run.

After reading, `unwrap_state_dict` finds the weights inside their wrapper (``state_dict``, ``model``,
``module.`` prefixes), `remap_keys` applies a family's declarative rename table, and
`load_strict` loads them into a module after `key_report` has checked every key and shape: one
`InputError` naming the file and the first offending keys. Dimensions are read from tensor shapes
by each family (as OpenAI's ``build_model`` does), so a published file and a tiny test file go
through the same code.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import pickle
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

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        self.inert_args = args
        self.inert_kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.inert_state = state

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("inert_items", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("inert_items", []).extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.inert_class} {dict.__repr__(self)}>"


def _inert_class(module: str, name: str) -> type:
    return type(name, (InertObject,), {"inert_class": f"{module}.{name}", "__module__": "inert"})


# Callables a pickle may invoke while rebuilding plain data, besides torch's own allow-list.
_EXTRA_CALLABLES = {
    "builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice, "builtins.complex": complex,
    "builtins.range": range, "builtins.object": object, "builtins.dict": dict, "builtins.list": list,
    "builtins.tuple": tuple, "argparse.Namespace": argparse.Namespace,
    "collections.OrderedDict": collections.OrderedDict, "collections.defaultdict": collections.defaultdict,
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
        qualified = f"{module}.{name}"
        if qualified in allowed:
            return allowed[qualified]
        if qualified == "copyreg._reconstructor":
            import copyreg
            return copyreg._reconstructor
        if module.startswith("torch") and ("Storage" in name or name.startswith("_rebuild")):
            return super().find_class(module, name)  # tensor storage types and rebuild functions
        if module in ("builtins", "os", "posix", "nt", "subprocess", "sys", "shutil", "importlib", "runpy",
                      "pickle", "marshal", "types", "codecs", "_codecs", "operator", "functools"):
            raise pickle.UnpicklingError(f"refusing to load {qualified}: checkpoints hold data, not code")
        return _inert_class(module, name)


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
    """SHA-256 of a file, or of a directory's files (names and contents, in sorted order)."""
    source = Path(path)
    digest = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for file in files:
        if source.is_dir():
            digest.update(str(file.relative_to(source)).encode() + b"\0")
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
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: the format is OpenAI's
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # a TorchScript archive that does not load is a broken file
        raise InputError(f"{label} is a TorchScript archive that does not load ({type(error).__name__})", path=path,
                         field=_FIELD) from None
    return Checkpoint(path, {key: value.detach() for key, value in module.state_dict().items()},
                      format="torchscript")


def _torch_load(path: Path, label: str) -> Any:
    try:
        with torch.serialization.safe_globals(list(ALLOWED_PAYLOAD_TYPES)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower() and "unsupported" not in str(error).lower():
            raise InputError(f"{label} is truncated or not a checkpoint ({_first_line(error)})", path=path,
                             field=_FIELD) from None
    except (EOFError, RuntimeError, ValueError, zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{label} is truncated or not a checkpoint ({_first_line(error)})", path=path,
                         field=_FIELD) from None
    try:  # a payload class outside the allow-list: the restricted unpickler
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except pickle.UnpicklingError as error:
        raise InputError(f"{label} refused: {_first_line(error)}", path=path, field=_FIELD) from None
    except (EOFError, RuntimeError, ValueError, zipfile.BadZipFile, OSError, AttributeError, TypeError) as error:
        raise InputError(f"{label} is truncated or not a checkpoint ({_first_line(error)})", path=path,
                         field=_FIELD) from None


def _find_tensors(value: Any, keys: tuple[str, ...], depth: int = 0) -> dict[str, torch.Tensor] | None:
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


def _shown_keys(value: Any) -> str:
    if not isinstance(value, Mapping):
        return type(value).__name__
    return _first(sorted(str(k) for k in value))


def _first(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    first = first if len(first) <= 100 else first[:100].rsplit(" ", 1)[0] + " …"
    return f"{type(error).__name__}: {first}" if first else type(error).__name__

