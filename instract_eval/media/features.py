"""Precomputed per-video feature sequences for feature-based temporal action localization.

TAL heads (ActionFormer, TriDet, OpenTAD models) do not read videos: they read one ``[T, D]``
array per video, extracted beforehand by a frozen backbone with a sliding window. Releases ship
these as ``.npy`` (ActionFormer's THUMOS14 I3D features), ``.npz`` (one named array per file) or
``.safetensors``. Reading them here, with the file, key and shape in every error, keeps a
malformed feature dump from surfacing as a shape error deep inside a model.

`feature_times` maps feature indices to seconds with the ActionFormer convention (feature ``i``
covers frames ``[i * stride, i * stride + window)`` and sits at their centre).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import safetensors

from ..errors import InputError

__all__ = ["FEATURE_SUFFIXES", "feature_path", "read_features", "feature_times"]

FEATURE_SUFFIXES = (".npy", ".npz", ".safetensors")


def feature_path(root: str | os.PathLike, video_id: str, suffix: str = ".npy") -> Path:
    """``<root>/<video_id><suffix>``, the layout every public feature release uses."""
    if suffix not in FEATURE_SUFFIXES:
        raise ValueError(f"suffix must be one of {FEATURE_SUFFIXES}, got {suffix!r}")
    return Path(root) / f"{video_id}{suffix}"


def read_features(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    dim: int | None = None,
    transpose: bool = False,
    dtype: np.dtype | type | None = np.float32,
) -> np.ndarray:
    """The ``[T, D]`` feature array stored at ``path`` (format chosen by the file suffix).

    ``key`` names the array in a ``.npz`` or ``.safetensors`` file; it may be omitted when the
    file holds exactly one. ``dim``: the expected feature size ``D``. ``transpose``: the file
    stores ``[D, T]``. ``dtype``: the returned dtype (None keeps the stored one). Raises
    `InputError` naming the file (and key) for a missing or unreadable file, an unknown key, a
    shape that is not 2-D, a wrong ``D``, zero time steps, or non-finite values.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FEATURE_SUFFIXES:
        raise InputError(f"unsupported feature file type {suffix or '(none)'!r}; expected one of {FEATURE_SUFFIXES}", path=path)
    if not path.is_file():
        raise InputError("feature file not found", path=path)
    if suffix == ".npy":
        if key is not None:
            raise InputError(f"a .npy file holds one unnamed array; key {key!r} cannot be used", path=path)
        array = _read_npy(path)
    elif suffix == ".npz":
        array, key = _read_npz(path, key)
    else:
        array, key = _read_safetensors(path, key)
    return _validated(array, path=path, key=key, dim=dim, transpose=transpose, dtype=dtype)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"cannot read .npy file ({error})", path=path) from error


def _read_npz(path: Path, key: str | None) -> tuple[np.ndarray, str]:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise InputError("not an .npz archive (it holds a single .npy array)", path=path)
        with archive:
            return _pick(archive.files, key, path, lambda name: archive[name])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"cannot read .npz file ({error})", path=path, field=key) from error


def _read_safetensors(path: Path, key: str | None) -> tuple[np.ndarray, str]:
    try:
        with safetensors.safe_open(str(path), framework="numpy") as handle:
            return _pick(list(handle.keys()), key, path, handle.get_tensor)
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as error:
        raise InputError(f"cannot read .safetensors file ({error})", path=path, field=key) from error


def _pick(names: list[str], key: str | None, path: Path, load) -> tuple[np.ndarray, str]:
    if key is None:
        if len(names) != 1:
            raise InputError(f"file holds {len(names)} arrays {sorted(names)}; pass key= to choose one", path=path)
        key = names[0]
    elif key not in names:
        raise InputError(f"no array named {key!r}; the file holds {sorted(names)}", path=path, field=key)
    return np.asarray(load(key)), key


def _validated(
    array: np.ndarray,
    *,
    path: Path,
    key: str | None,
    dim: int | None,
    transpose: bool,
    dtype: np.dtype | type | None,
) -> np.ndarray:
    layout = "[D, T]" if transpose else "[T, D]"
    if array.ndim != 2:
        raise InputError(f"expected a 2-D {layout} feature array, got shape {array.shape}", path=path, field=key)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"features must be numeric, got dtype {array.dtype}", path=path, field=key)
    if transpose:
        array = array.T
    if array.shape[0] == 0:
        raise InputError(f"feature array has no time steps (shape {array.shape} as [T, D])", path=path, field=key)
    if dim is not None and array.shape[1] != dim:
        raise InputError(f"expected feature size D={dim}, got shape {array.shape} as [T, D]", path=path, field=key)
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise InputError(f"features contain NaN or infinity (first at time step {bad})", path=path, field=key)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return np.ascontiguousarray(array)


def feature_times(
    num_features: int, *, fps: float, stride_frames: float, window_frames: float, offset_frames: float = 0.0
) -> np.ndarray:
    """Centre time in seconds of each feature: ``(offset + i * stride + window / 2) / fps``.

    ActionFormer converts predicted feature positions to seconds the same way
    (``(x * feat_stride + 0.5 * num_frames) / fps``), e.g. THUMOS14 I3D: fps 30, stride 4, window 16.
    """
    if num_features < 0 or fps <= 0 or stride_frames <= 0 or window_frames < 0:
        raise ValueError("num_features >= 0, fps > 0, stride_frames > 0 and window_frames >= 0 are required")
    index = np.arange(num_features, dtype=np.float64)
    return (offset_frames + index * stride_frames + 0.5 * window_frames) / fps
