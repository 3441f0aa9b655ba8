"""Decoding in DataLoader workers: same batches with 0 and 2 workers, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from instract_eval.errors import InputError
from instract_eval.media import ClipRequest, FrameSpec, clip_loader, load_clip
from tests.media.test_fixture_videos import frame_indices, write_video

# Values stay pixel/255, so the frame index can be read back from the model input.
IDENTITY = dict(size=None, crop=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("dataset")
    return [write_video(root / f"v{n}.mp4", num_frames=n, fps=10) for n in (20, 40, 60)]


def requests_for(videos: list[Path], num_clips: int = 1) -> list[ClipRequest]:
    a, b, c = (str(v) for v in videos)
    return [
        ClipRequest(a, num_clips=num_clips),
        ClipRequest(c, 2.0, 2.5, context_s=1.0, min_clip_s=1.0, num_clips=num_clips),
        ClipRequest(c, 2.0, 2.5, context_s=1.0, min_clip_s=1.0, num_clips=num_clips, reverse=True),
        ClipRequest(b, 0.4, 1.2, num_clips=num_clips),
        ClipRequest(c, 5.0, 6.0, num_clips=num_clips),
        ClipRequest(b, 1.0, 3.0, num_clips=num_clips),
        ClipRequest(b, 0.0, 4.0, num_clips=num_clips),
    ]


def read_indices(clips: torch.Tensor) -> list:
    frames = (clips * 255).round().to(torch.uint8).movedim(-3, -1)
    return frame_indices(frames).tolist()


def collect(loader) -> tuple[list[str], list[torch.Tensor]]:
    keys, clips = [], []
    for batch in loader:
        keys.extend(batch.keys)
        clips.extend(batch.clips)
    return keys, clips


def test_batches_hold_keys_and_clips_in_request_order(videos: list[Path]) -> None:
    requests = requests_for(videos)[:5]
    spec = FrameSpec(4, "uniform", **IDENTITY)
    batches = list(clip_loader(requests, spec, batch_size=2))
    assert [len(batch.keys) for batch in batches] == [2, 2, 1]
    assert batches[0].clips.shape == (2, 1, 4, 3, 24, 32)
    keys, clips = collect(batches)
    assert keys == [request.key() for request in requests]
    assert [read_indices(clip) for clip in clips] == [
        [[2, 7, 12, 17]],
        [[11, 18, 26, 33]],  # [2.0, 2.5] widened to [1.75, 2.75], 1 s context: midpoints of [0.75, 3.75]
        [[33, 26, 18, 11]],  # the same, reversed
        [[5, 7, 9, 11]],
        [[51, 53, 56, 58]],
    ]


def test_two_workers_give_the_same_batches_as_none(videos: list[Path]) -> None:
    """Same batches; with two workers each takes a contiguous run (batches 0-1 and 2), interleaved."""
    requests = requests_for(videos, num_clips=2)
    spec = FrameSpec(3, "fps", fps=5.0, size=16, crop=12)
    serial_keys, serial = collect(clip_loader(requests, spec, batch_size=3, num_workers=0))
    parallel_keys, parallel = collect(clip_loader(requests, spec, batch_size=3, num_workers=2))
    keys = [request.key() for request in requests]
    assert serial_keys == keys
    assert parallel_keys == keys[0:3] + keys[6:7] + keys[3:6]
    assert len(serial) == len(parallel) == len(requests)
    parallel = [dict(zip(parallel_keys, parallel))[key] for key in keys]
    for a, b, request in zip(serial, parallel, requests):
        assert a.shape == (2, 3, 3, 12, 12)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, load_clip(request, spec), rtol=0, atol=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_missing_video_raises_an_input_error_naming_it(videos: list[Path], tmp_path: Path, num_workers: int) -> None:
    missing = str(tmp_path / "gone.mp4")
    requests = [ClipRequest(str(videos[0])), ClipRequest(missing), ClipRequest(str(videos[1]))]
    loader = clip_loader(requests, FrameSpec(2, size=8, crop=8), batch_size=1, num_workers=num_workers)
    with pytest.raises(InputError, match="not found") as caught:
        collect(loader)
    assert caught.value.path == missing


def test_skip_mode_records_failures_and_keeps_going(videos: list[Path], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    missing = tmp_path / "gone.mp4"
    requests = [ClipRequest(str(corrupt)), ClipRequest(str(videos[0])), ClipRequest(str(missing))]
    loader = clip_loader(requests, FrameSpec(2, size=8, crop=8), batch_size=2, num_workers=2, on_error="skip")
    keys, clips = collect(loader)
    assert keys == [requests[1].key()] and len(clips) == 1
    assert [(failure.key, failure.path) for failure in loader.failures] == [
        (requests[0].key(), str(corrupt)),
        (requests[2].key(), str(missing)),
    ]
    assert str(corrupt) in str(loader.failures[0].to_error())


def test_clips_of_different_shapes_cannot_share_a_batch(tmp_path: Path, videos: list[Path]) -> None:
    mixed = [ClipRequest(str(videos[0])), ClipRequest(str(videos[0]), num_clips=2)]
    with pytest.raises(ValueError, match="num_clips"):
        collect(clip_loader(mixed, FrameSpec(2, size=8, crop=8), batch_size=2))
    # uncropped frames of videos of different sizes
    small = write_video(tmp_path / "small.mp4", num_frames=5)
    large = write_video(tmp_path / "large.mp4", num_frames=5, width=48, height=24)
    spec = FrameSpec(2, size=None, crop=None)
    with pytest.raises(ValueError, match="different shapes"):
        collect(clip_loader([ClipRequest(str(small)), ClipRequest(str(large))], spec, batch_size=2))
    keys, _ = collect(clip_loader([ClipRequest(str(small)), ClipRequest(str(large))], spec, batch_size=1))
    assert len(keys) == 2


def test_unknown_error_policy_is_rejected(videos: list[Path]) -> None:
    with pytest.raises(ValueError, match="on_error"):
        clip_loader([ClipRequest(str(videos[0]))], FrameSpec(2), on_error="ignore")  # type: ignore[arg-type]
