"""Reading score matrices, label vectors and masks from ``.npy`` files, checked before any metric runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError


def read_array(
    path: str | os.PathLike, *, ndim: int | tuple[int, ...], kind: str, finite: bool = True
) -> np.ndarray:
    """Load a ``.npy`` array (no pickles) and check its rank and element kind.

    ``kind`` is ``"float"`` (real numbers, every entry finite unless ``finite=False``), ``"int"`` (integer dtype) or
    ``"bool"`` (boolean dtype, or integers that are all 0 or 1). Values are never rounded or cast
    in a way that could change them: a float array where integers are expected is refused.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
        if not head:
            raise InputError("file is empty", path=path)
        if head != b"\x93NUMPY" and not head.startswith(b"PK"):
            raise InputError("is not a .npy file (it does not start with the NumPy header; write it with "
                             "numpy.save)", path=path)
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a .npy file", path=path) from None
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a readable .npy array ({exc})", path=path) from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise InputError("is an .npz archive, expected a single .npy array", path=path)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed:
        wanted = " or ".join(f"{n}-D" for n in allowed)
        raise InputError(f"expected a {wanted} array, got shape {tuple(array.shape)}", path=path)
    if array.size == 0:
        raise InputError(f"array is empty (shape {tuple(array.shape)})", path=path)
    if kind == "float":
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"expected real numbers, got dtype {array.dtype}", path=path)
        bad = ~np.isfinite(array)
        if finite and bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"non-finite value {array[index]} at index {list(index)}", path=path)
        return array.astype(np.float64, copy=False)
    if kind == "int":
        if not np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
            raise InputError(f"expected integers, got dtype {array.dtype}", path=path)
        return array.astype(np.int64, copy=False)
    if kind == "bool":
        if array.dtype == np.bool_:
            return array
        if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
            return array.astype(bool)
        raise InputError(f"expected a boolean mask (bool dtype or 0/1 integers), got dtype {array.dtype}", path=path)
    raise ValueError(f"unknown array kind {kind!r}")
