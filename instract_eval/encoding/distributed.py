"""The ranks of a `torchrun` / `accelerate launch` job, or a single process.

Both launchers set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when ``WORLD_SIZE`` is above one the
process group is started here (gloo on CPU, NCCL when every rank has a GPU). Work is split by
position in a sorted list of keys, so every rank computes the same split without talking, and the
outputs are gathered as Python objects: the sizes involved (embeddings of thousands of clips) are
far below what `all_gather_object` handles comfortably.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["Ranks", "SINGLE_PROCESS", "ranks_from_environment", "close_process_group"]

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world_size``, and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 computes nothing extra but is the one that prints and writes results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``world_size``-th one, starting at ``rank``."""
        return list(items[self.rank::self.world_size])

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (a list of one in a single process)."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


SINGLE_PROCESS = Ranks()


def ranks_from_environment(environ: Mapping[str, str] = os.environ, *, device: str | None = None) -> Ranks:
    """The ranks the launcher set up, starting the process group when there is more than one.

    ``device`` (as given to ``--device``; None is the best available) picks the backend: NCCL
    when the ranks run on CUDA, gloo otherwise.
    """
    world_size = int(environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE_PROCESS
    ranks = Ranks(int(environ.get("RANK", "0")), world_size, int(environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        on_cuda = (device is None or device.startswith("cuda")) and torch.cuda.is_available()
        backend = "nccl" if on_cuda else "gloo"
        dist.init_process_group(backend=backend)
    return ranks


def close_process_group() -> None:
    """End the job's process group, if one was started: every rank waits for the others first.

    A rank that exits with the group still open can abort in gloo's teardown (``terminate called
    without an active exception``) while another rank is still writing, so the command line closes
    it explicitly. Code that owns its own group does not call this.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

