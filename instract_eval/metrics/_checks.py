"""Input checks shared by the localization metrics: finite score vectors and (start, end) arrays.

One place for these rules so that `localization` and `localization_diagnostics` reject the same
inputs with the same messages (naming the argument and the row).
"""

from __future__ import annotations

import numpy as np


def finite_vector(values: object, name: str, length: int | None = None) -> np.ndarray:
    """A 1-D float64 array of finite real numbers (of ``length`` entries when given)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise ValueError(f"{name} has {array.shape[0]} entries but {length} are needed (one per response/prediction)")
    if array.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"{name}[{index}] = {float(array[index])!r} is not finite")
    return array


def segment_array(values: object, name: str, *, positive_length: bool = False, allow_empty: bool = True) -> np.ndarray:
    """A float64 ``[K, 2]`` array of finite ``(start, end)`` with ``0 <= start <= end``.

    ``positive_length`` demands ``start < end`` (ground truth: a zero-length instance would make the
    official tIoU 0/0).
    """
    array = np.asarray(values)
    if array.size == 0 and array.ndim <= 2 and (array.ndim < 2 or array.shape[1] in (0, 2)):
        if not allow_empty:
            raise ValueError(f"{name} is empty: need at least one (start, end) row")
        return np.zeros((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape [K, 2] (start, end), got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.argmax(~finite))
        raise ValueError(f"{name}[{row}] = {array[row].tolist()} is not finite")
    negative = array[:, 0] < 0
    if negative.any():
        row = int(np.argmax(negative))
        raise ValueError(f"{name}[{row}] = {array[row].tolist()} starts before 0")
    if positive_length:
        bad = array[:, 1] <= array[:, 0]
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"{name}[{row}] = {array[row].tolist()} has no positive length: need start < end "
                             "(ground truth needs a positive length)")
    reversed_rows = array[:, 0] > array[:, 1]
    if reversed_rows.any():
        row = int(np.argmax(reversed_rows))
        raise ValueError(f"{name}[{row}] = {array[row].tolist()} has start > end (need start <= end)")
    return array
