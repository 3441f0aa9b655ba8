"""Model outputs on disk, so a second run, another task or a resumed run reuses them.

Layout: ``<root>/<model fingerprint>/<namespace hash>/`` holds shard files of one kind of output
(video embeddings under one frame spec, text embeddings, localizer answers under one class list).
Every batch the runner computes is written as its own shard the moment it is done: atomically
(temporary file, then rename), so a run killed at any instant leaves only whole shards, and a
resumed run reads them back and computes the rest. The namespace is keyed by everything that
changes the output (model fingerprint, method, frame spec or class list), so a changed model or
spec looks in another directory and can never read a stale entry. ``namespace.json`` in each
directory says what it holds, for people browsing the cache.

Array outputs are ``.npz`` files read without pickle; localizer answers are JSON.
"""

from __future__ import annotations

import hashlib
import json
import io
import os
import sys
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instract_eval.files import make_directories, write_atomic, writing
from instract_eval.paths import default_cache_dir  # defined there: `list tasks` must not import torch

__all__ = ["OutputCache", "default_cache_dir", "digest"]


def digest(value: Any) -> str:
    """sha256 hex of ``value`` as canonical JSON (the identity of a namespace or an item)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class OutputCache:
    """Shards of one model's outputs under ``root``; keys are the runner's item keys."""

    def __init__(self, root: str | os.PathLike, model_fingerprint: str):
        self.root = Path(root)
        self.model_dir = self.root / model_fingerprint[:32]

    def directory(self, namespace: Mapping[str, Any]) -> Path:
        return self.model_dir / digest(namespace)[:32]

    def load(self, namespace: Mapping[str, Any]) -> dict[str, Any]:
        """Every stored output of ``namespace``, by key. An unreadable shard is reported and removed."""
        directory = self.directory(namespace)
        outputs: dict[str, Any] = {}
        if not directory.is_dir():
            return outputs
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.suffix not in (".npz", ".json") or path.name == "namespace.json":
                continue
            try:
                outputs.update(_read_npz(path) if path.suffix == ".npz" else _read_json(path))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
                print(f"warning: {path}: unreadable cache shard ({error}); removing it and recomputing",
                      file=sys.stderr)
                path.unlink(missing_ok=True)
        return outputs

    def store(self, namespace: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Write one shard: arrays as ``.npz``, anything else as JSON; atomic."""
        if not outputs:
            return
        directory = self.directory(namespace)
        with writing(directory):
            make_directories(directory)
        description = directory / "namespace.json"
        if not description.exists():
            write_atomic(description, json.dumps(namespace, indent=2, sort_keys=True, default=str).encode())
        name = uuid.uuid4().hex
        values = list(outputs.values())
        if all(isinstance(value, np.ndarray) for value in values):
            keys = list(outputs)
            arrays = {f"a{i}": value for i, value in enumerate(values)}
            write_atomic(directory / f"{name}.npz", _npz_bytes(np.array(keys, dtype=str), arrays))
        else:
            write_atomic(directory / f"{name}.json", json.dumps(dict(outputs), allow_nan=False).encode())


def _npz_bytes(keys: np.ndarray, arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, keys=keys, **arrays)
    return buffer.getvalue()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        keys = [str(key) for key in data["keys"]]
        return {key: data[f"a{i}"] for i, key in enumerate(keys)}


def _read_json(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
