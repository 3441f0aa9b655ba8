"""Decode requests in DataLoader worker processes and hand back ``(keys, clips)`` batches.

Why a dataset of batches: a worker decodes a whole batch at once with a `ClipDecoder`, so the
requests of one video in it share one decoding pass, and the decoder keeps its last video open for
the worker's next batch. With several workers each one takes a contiguous run of batches (the
loader's sampler interleaves the runs), so a video's requests, sorted together by the caller, stay
in one worker and its GOPs are decoded once there too; batches then arrive in that interleaved
order, their keys say which requests they hold. Decoder threads are this machine's cores shared
out among the processes that decode (`decoder_threads`), with frame threading, which one-slice
H.264 needs to use more than one core.

Why failures travel as values: an exception raised in a worker reaches the main process as a
re-built exception whose message is a formatted traceback, so the file name would survive only as
text and ``InputError.path`` would be lost. Instead each item that fails with `InputError` comes
back as a `ClipFailure` and the main process raises a proper `InputError` naming the file
(``on_error="raise"``, the default) or records it in `ClipLoader.failures` and carries on
(``on_error="skip"``, for benchmarks whose videos are partly missing; the caller reports coverage).
Other exceptions are bugs and propagate unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import InputError
from .clips import ClipDecoder
from .decode import decoder_threads
from .request import ClipRequest
from .spec import FrameSpec
from .transforms import apply_frame_spec

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
    """A map-style dataset of batches: item ``b`` is the `ClipBatch` of requests ``[b * size, (b + 1) * size)``.

    The requests of a batch are decoded together by one `ClipDecoder` per process (see the
    module docstring); the batch keeps their order.
    """

    def __init__(self, requests: Sequence[ClipRequest], spec: FrameSpec, *, batch_size: int = 1,
                 threads: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.requests = list(requests)
        self.spec = spec
        self.batch_size = batch_size
        self.threads = threads
        self._decoder: ClipDecoder | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.requests) / self.batch_size)

    def __getitem__(self, index: int) -> ClipBatch:
        if not 0 <= index < len(self):
            raise IndexError(index)
        requests = self.requests[index * self.batch_size:(index + 1) * self.batch_size]
        if self._decoder is None:
            self._decoder = ClipDecoder(self.spec, threads=self.threads)
        items: list[ClipItem | ClipFailure] = [None] * len(requests)  # type: ignore[list-item]
        upcoming = self.requests[(index + 1) * self.batch_size:(index + 2) * self.batch_size]
        for position, decoded in self._decoder.decode(requests, upcoming):
            key = requests[position].key()
            if isinstance(decoded, InputError):
                items[position] = ClipFailure(key, decoded.message, decoded.path, decoded.field)
            else:
                items[position] = ClipItem(key, apply_frame_spec(decoded.frames, self.spec))
        return collate_clips(items)

    def close(self) -> None:
        """Close this process's open video (a loader does at the end of each pass, so no decoder
        threads are alive when the next pass forks its workers)."""
        if self._decoder is not None:
            self._decoder.close()

    @property
    def frames_decoded(self) -> int:
        """Frames this process's decoder has decoded so far (0 in a process that decoded nothing)."""
        if self._decoder is None:
            return 0
        current = self._decoder._open.frames_decoded if self._decoder._open is not None else 0
        return self._decoder.frames_decoded + current


class ContiguousRuns(Sampler[int]):
    """Batch indices in the order that gives each of ``workers`` DataLoader workers one contiguous run.

    The DataLoader hands the k-th index to worker ``k % workers``; the first ``n % workers`` runs
    are one batch longer, and their extra batches come last, so the cycle never skips a worker.
    """

    def __init__(self, batches: int, workers: int):
        self.batches, self.workers = batches, max(1, workers)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[int]:
        length, longer = divmod(self.batches, self.workers)
        starts = [w * length + min(w, longer) for w in range(self.workers)]
        for step in range(length + 1):
            for worker in range(self.workers):
                if step < length or worker < longer:
                    yield starts[worker] + step


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
        try:
            for batch in self.loader:
                if batch.failures:
                    if self.on_error == "raise":
                        raise batch.failures[0].to_error()
                    self.failures.extend(batch.failures)
                if batch.keys:
                    yield batch
        finally:
            self.loader.dataset.close()


def _as_is(batch: ClipBatch) -> ClipBatch:
    """The dataset's items are batches already (a module-level function, so workers can pickle it)."""
    return batch


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
    """Batches of decoded clips, decoded by ``num_workers`` worker processes (0: in this one).

    With 0 or 1 worker the batches come in request order; with more, each worker's contiguous run
    of batches is interleaved with the others' (`ContiguousRuns`). Sort the requests by video and
    time first (the encoder does) to decode each GOP once. ``threads`` is the decoder's thread
    count per video; None shares this machine's cores among the decoding processes. Workers fill
    a bounded queue (``prefetch_factor`` batches each, pinned when ``pin_memory``) while the caller
    runs the model on the batch before. ``multiprocessing_context`` is passed to the DataLoader
    (default: the platform's, ``fork`` on Linux).
    """
    if threads is None:
        threads = decoder_threads(max(1, num_workers))
    dataset = ClipDataset(requests, spec, batch_size=batch_size, threads=threads)
    loader = DataLoader(
        dataset,
        batch_size=None,
        collate_fn=_as_is,
        sampler=ContiguousRuns(len(dataset), num_workers) if num_workers > 1 else None,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        multiprocessing_context=multiprocessing_context if num_workers > 0 else None,
        pin_memory=pin_memory,
    )
    return ClipLoader(loader, on_error)
