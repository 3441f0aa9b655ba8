"""World sizes: how many clips each task gets, at which resolution and frame rate.

``default`` is the embedded world the harness runs when no data is given (a few seconds to
generate on two CPU cores); ``tiny`` is for tests (about a second).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WorldSize:
    name: str
    canvas: int                     # frame side in pixels (square frames, even for yuv420p)
    fps: int
    semantic_rows: int
    logic_rows: int
    dynamics_pools: int
    dynamics_clips_per_pool: int
    actionbench_rows: int
    srt_test_per_class: int
    srt_train_per_seen_class: tuple[int, int]  # inclusive range, drawn per seen class
    tal_videos: int
    tal_duration_s: tuple[float, float]

    def as_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


SIZES: dict[str, WorldSize] = {
    "tiny": WorldSize(
        name="tiny", canvas=32, fps=8,
        semantic_rows=6, logic_rows=5, dynamics_pools=2, dynamics_clips_per_pool=3, actionbench_rows=6,
        srt_test_per_class=1, srt_train_per_seen_class=(1, 1), tal_videos=3, tal_duration_s=(12.0, 14.0),
    ),
    "default": WorldSize(
        name="default", canvas=32, fps=8,
        semantic_rows=60, logic_rows=40, dynamics_pools=8, dynamics_clips_per_pool=6, actionbench_rows=50,
        srt_test_per_class=4, srt_train_per_seen_class=(4, 9), tal_videos=20, tal_duration_s=(12.0, 20.0),
    ),
}


def world_size(size: str | WorldSize) -> WorldSize:
    if isinstance(size, WorldSize):
        return size
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown world size {size!r} (one of {', '.join(SIZES)})") from None
