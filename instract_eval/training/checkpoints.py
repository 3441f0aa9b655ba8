"""Training checkpoints: everything a resumed run needs to continue exactly, written atomically.

A checkpoint holds the model weights under ``model`` (the key official checkpoints use, so the
model's own loader and ``instract-eval run --model-args checkpoint=PATH`` read it directly), the
optimizer, scheduler and gradient-scaler states, the step and epoch, every process's RNG states
(python, numpy, torch CPU and CUDA: dropout and augmentation draws continue where they stopped)
and the resolved config. It is written to a temporary name and renamed, so a kill at any moment
leaves the previous checkpoint intact and never a truncated one.

Files are ``OUT/checkpoints/step-NNNNNNNN.pt``; the newest ``keep`` are kept.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instract_eval.errors import InputError
from instract_eval.files import make_directories, write_atomic, writing

__all__ = ["FORMAT", "capture_rng", "checkpoint_path", "latest_checkpoint", "list_checkpoints", "read_payload",
           "restore_rng", "write_checkpoint"]

FORMAT = "instract-eval/training-checkpoint/v1"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_path(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:08d}.pt"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint under ``out``, oldest first."""
    directory = out / "checkpoints"
    if not directory.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in directory.iterdir() if (match := _NAME.match(path.name))]
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as plain values (loadable with ``weights_only``)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(item) for item in value) if isinstance(value, (list, tuple)) else value


def write_checkpoint(out: Path, step: int, payload: dict[str, Any], *, keep: int) -> Path:
    """Write ``payload`` as the checkpoint of ``step`` and drop all but the newest ``keep``."""
    path = checkpoint_path(out, step)
    with writing(path):
        make_directories(path.parent)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    write_atomic(path, buffer.getvalue())
    for _, old in list_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def read_payload(path: Path) -> dict[str, Any]:
    """A checkpoint's payload: ours (read with ``weights_only``) or any other the model's recipe may
    accept (an official one), read through the checkpoint reader's allow-list: never code."""
    if not path.is_file():
        raise InputError("checkpoint not found", path=path, field="--resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        from instract_eval.adapters.core.checkpoints import read_checkpoint

        payload = read_checkpoint(path).payload.get("object")
    if not isinstance(payload, dict):
        raise InputError("not a training checkpoint (no mapping inside)", path=path, field="--resume")
    return payload
