"""Decode requests in DataLoader worker processes and hand back ``(keys, clips)`` batches.

Why failures travel as values: an exception raised in a worker reaches the main process as a
re-built exception whose message is a formatted traceback, so the file name would survive only as
text and ``InputError.path`` would be lost. Instead each item that fails with `InputError` comes
back as a `ClipFailure` and the main process raises a proper `InputError` naming the file
(``on_error="raise"``, the default) or records it in `ClipLoader.failures` and carries on
(``on_error="skip"``, for benchmarks whose videos are partly missing; the caller reports coverage).
Other exceptions are bugs and propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError
from .clips import load_clip
from .request import ClipRequest
from .spec import FrameSpec

__all__ = ["ClipItem", "ClipFailure", "ClipBatch", "ClipDataset", "ClipLoader", "collate_clips", "clip_loader"]

ON_ERROR = ("raise", "skip")


class ClipItem(NamedTuple):
    """One decoded request: its key and the clips ``[K, T, 3, H, W]``."""

    key: str
    clip: torch.Tensor


class ClipFailure(NamedTuple):
    """A request that could not be decoded, with the `InputError` fields to re-raise it."""

    key: str
    message: str
    path: str | None
    field: str | None = None

    def to_error(self) -> InputError:
        return InputError(self.message, path=self.path, field=self.field)


class ClipBatch(NamedTuple):
    """Request keys and their clips stacked to ``[B, K, T, 3, H, W]`` (failures kept apart)."""

    keys: list[str]
    clips: torch.Tensor
    failures: list[ClipFailure]


class ClipDataset(Dataset):
    """A map-style dataset of clip requests decoded with one frame spec."""

    def __init__(self, requests: Sequence[ClipRequest], spec: FrameSpec, *, threads: int | None = None):
        self.requests = list(requests)
        self.spec = spec
        self.threads = threads

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, index: int) -> ClipItem | ClipFailure:
        request = self.requests[index]
        try:
            return ClipItem(request.key(), load_clip(request, self.spec, threads=self.threads))
        except InputError as error:
            return ClipFailure(request.key(), error.message, error.path, error.field)


def collate_clips(items: Sequence[ClipItem | ClipFailure]) -> ClipBatch:
    """Stack the decoded items of a batch; failures are passed through untouched."""
    decoded = [item for item in items if isinstance(item, ClipItem)]
    failures = [item for item in items if isinstance(item, ClipFailure)]
    if not decoded:
        return ClipBatch([], torch.empty(0), failures)
    shapes = {tuple(item.clip.shape) for item in decoded}
    if len(shapes) > 1:
        raise ValueError(
            f"clips in one batch have different shapes {sorted(shapes)} ([K, T, 3, H, W]): requests in "
            "one loader need the same num_clips, and frames of different sizes need a FrameSpec crop "
            "(or batch_size=1)"
        )
    return ClipBatch([item.key for item in decoded], torch.stack([item.clip for item in decoded]), failures)


class ClipLoader:
    """Iterates ``ClipBatch``es of a `ClipDataset` through a `torch.utils.data.DataLoader`."""

    def __init__(self, loader: DataLoader, on_error: Literal["raise", "skip"]):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.loader = loader
        self.on_error = on_error
        self.failures: list[ClipFailure] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[ClipBatch]:
        self.failures = []
        for batch in self.loader:
            if batch.failures:
                if self.on_error == "raise":
                    raise batch.failures[0].to_error()
                self.failures.extend(batch.failures)
            if batch.keys:
                yield batch


def clip_loader(
    requests: Sequence[ClipRequest],
    spec: FrameSpec,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    on_error: Literal["raise", "skip"] = "raise",
    threads: int | None = None,
    prefetch_factor: int | None = None,
    multiprocessing_context: str | None = None,
    pin_memory: bool = False,
) -> ClipLoader:
    """Batches of decoded clips in request order, decoded by ``num_workers`` worker processes.

    ``threads`` is the decoder's thread count per video (None: PyAV's default); with several
    workers 1 is usually fastest. ``multiprocessing_context`` is passed to the DataLoader
    (default: the platform's, ``fork`` on Linux).
    """
    dataset = ClipDataset(requests, spec, threads=threads)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_clips,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        pin_memory=pin_memory,
    )
    return ClipLoader(loader, on_error)
