"""Shared GOP decoding: the same frames, bit for bit, as decoding each request alone, for less work.

The reference is an independent PyAV loop: every frame of the file decoded from the start, and
for each instant the frame whose presentation interval ``[pts_i, pts_{i+1})`` contains it (1 us
tolerance; before the first frame the first, after the last the last). Files are shaped like real
downloads: H.264 yuv420p, 30 fps, a keyframe every 250 frames, one slice per frame, textured
moving content; also one with B-frames and one with a variable frame rate.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from instract_eval.errors import InputError
from instract_eval.media import (
    INSTRACT_CONTEXT_S,
    INSTRACT_MIN_CLIP_S,
    ClipRequest,
    FrameSpec,
    VideoReader,
    clip_loader,
    decode_clip_frames,
    instract_frame_spec,
    load_clip,
)
from instract_eval.media.clips import ClipDecoder
from instract_eval.media.dataset import ContiguousRuns

pytestmark = pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs libx264")

RAW = dict(size=None, crop=None)


def write_h264(path: Path, seconds: float, *, fps: int = 30, bframes: int = 0, vfr: bool = False) -> Path:
    """A textured, moving 64x48 H.264 file: keyframe every 250 frames, one slice (see module doc)."""
    rng = np.random.default_rng(len(path.name))
    base = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={
            "preset": "veryfast", "crf": "18", "bf": str(bframes),
            "x264-params": "keyint=250:min-keyint=250:scenecut=0:slices=1"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        pts_ms = 0
        for index in range(int(seconds * fps)):
            image = np.roll(base, (index % 48, (3 * index) % 64), axis=(0, 1))
            image[(index * 2) % 40:(index * 2) % 40 + 8, 10:18] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if vfr:  # 20-50 ms steps
                frame.pts, frame.time_base = pts_ms, Fraction(1, 1000)
                pts_ms += int(rng.integers(20, 51))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def reference_frames(path: Path, times: np.ndarray) -> np.ndarray:
    """Brute force: decode everything from the start, pick the frame shown at each instant."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        decoded = [(float((frame.pts - start) * stream.time_base), frame.to_ndarray(format="rgb24"))
                   for frame in container.decode(stream)]
    decoded.sort(key=lambda item: item[0])
    pts = np.array([t for t, _ in decoded])
    picks = np.clip(np.searchsorted(pts, np.asarray(times) + 1e-6, side="right") - 1, 0, len(pts) - 1)
    return np.stack([decoded[i][1] for i in picks])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gop")
    return {
        "cfr": write_h264(root / "cfr.mp4", 20.0),
        "bframes": write_h264(root / "bframes.mp4", 12.0, bframes=3),
        "vfr": write_h264(root / "vfr.mp4", 12.0, vfr=True),
    }


def instract_requests(path: Path, duration: float, count: int, seed: int) -> list[ClipRequest]:
    """InstrAct-like: short segments widened to 5 s plus 5 s of context, several on one video,
    some reversed (VR) and one repeated."""
    rng = np.random.default_rng(seed)
    requests = []
    for n in range(count):
        start = float(rng.uniform(0.0, duration - 1.0))
        requests.append(ClipRequest(str(path), start, start + float(rng.uniform(0.3, 3.0)),
                                    context_s=INSTRACT_CONTEXT_S, min_clip_s=INSTRACT_MIN_CLIP_S,
                                    reverse=n % 3 == 2, video_id=path.stem))
    return requests + [requests[0]]


@pytest.mark.parametrize("name", ["cfr", "bframes", "vfr"])
def test_shared_pass_equals_the_per_request_path_and_the_brute_force_loop(files: dict[str, Path], name: str) -> None:
    path = files[name]
    duration = VideoReader(path).info.duration
    requests = instract_requests(path, duration, 9, seed=len(name))
    spec = FrameSpec(16, "uniform", fps=5.0, **RAW)
    with ClipDecoder(spec, threads=1) as decoder:
        shared = dict(decoder.decode(requests))
        work = decoder.frames_decoded + (decoder._open.frames_decoded if decoder._open else 0)
    assert sorted(shared) == list(range(len(requests)))
    alone_work = 0
    for position, request in enumerate(requests):
        alone = decode_clip_frames(request, spec, threads=1)
        got = shared[position]
        assert torch.equal(got.frames, alone.frames), (name, position)
        np.testing.assert_array_equal(got.source_times, alone.source_times)
        np.testing.assert_array_equal(got.times, alone.times)
        forward = got.times[:, ::-1] if request.reverse else got.times
        expected = reference_frames(path, forward.reshape(-1)).reshape(got.frames.shape)
        if request.reverse:
            expected = expected[:, ::-1]
        np.testing.assert_array_equal(got.frames.numpy(), expected)
        with VideoReader(path, threads=1) as reader:
            alone_work += reader.frames_at(forward.reshape(-1)).frames_decoded
    # Nine 15 s windows on a 12-20 s video: the shared pass decodes the file about once.
    assert work <= VideoReader(path).info.num_frames + 2
    assert alone_work >= 3 * work


def test_requests_of_several_videos_interleaved_and_a_bad_one_alone(files: dict[str, Path], tmp_path: Path) -> None:
    spec = FrameSpec(8, "fps", fps=2.0, **RAW)  # ActionBench-like: 8 frames over 4 s
    cfr, vfr = str(files["cfr"]), str(files["vfr"])
    requests = [ClipRequest(cfr, 14.0, 16.0), ClipRequest(vfr, 1.0, 2.0), ClipRequest(cfr, 2.0, 3.0),
                ClipRequest(cfr, 30.0, 31.0),  # outside the video: fails alone
                ClipRequest(str(tmp_path / "missing.mp4"), 0.0, 1.0),
                ClipRequest(vfr, 8.0, 11.0, reverse=True), ClipRequest(cfr, 2.0, 3.0, reverse=True)]
    with ClipDecoder(spec, threads=1) as decoder:
        results = dict(decoder.decode(requests))
    for position, request in enumerate(requests):
        if position in (3, 4):
            assert isinstance(results[position], InputError)
            assert results[position].path == request.path
            with pytest.raises(InputError) as alone:
                decode_clip_frames(request, spec)
            assert results[position].message == alone.value.message
        else:
            assert torch.equal(results[position].frames, decode_clip_frames(request, spec).frames)


def test_a_truncated_file_gives_each_request_its_own_result(files: dict[str, Path], tmp_path: Path) -> None:
    data = files["cfr"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    spec = FrameSpec(4, "uniform", **RAW)
    requests = [ClipRequest(str(cut), 1.0, 2.0), ClipRequest(str(cut), 16.0, 19.0), ClipRequest(str(cut), 3.0, 4.0)]
    with ClipDecoder(spec, threads=1) as decoder:
        results = dict(decoder.decode(requests))
    for position, request in enumerate(requests):
        try:
            alone = decode_clip_frames(request, spec, threads=1)
        except InputError as error:
            assert isinstance(results[position], InputError) and results[position].message == error.message
        else:
            assert torch.equal(results[position].frames, alone.frames)
    assert isinstance(results[1], InputError)  # the cut-off part is an error, not a shorter clip


def test_batches_continue_one_pass_across_calls(files: dict[str, Path]) -> None:
    """A loader's consecutive batches of one video, sorted by time, decode its GOPs once."""
    path = files["cfr"]
    requests = [ClipRequest(str(path), s, s + 1.0) for s in np.arange(0.0, 19.0, 0.5)]
    spec = FrameSpec(4, "uniform", **RAW)
    with ClipDecoder(spec, threads=1) as decoder:
        for start in range(0, len(requests), 4):
            list(decoder.decode(requests[start:start + 4], requests[start + 4:start + 8]))
        work = decoder._open.frames_decoded
    assert work <= 600 + 2  # the 20 s file once, not once per batch


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_inputs_equal_load_clip(files: dict[str, Path], workers: int) -> None:
    """What the model gets through the loader (resize, crop, normalise) is `load_clip`'s, bit for bit."""
    spec = instract_frame_spec()
    requests = (instract_requests(files["cfr"], 20.0, 5, seed=1) + instract_requests(files["bframes"], 12.0, 4, seed=2))
    got = {}
    for batch in clip_loader(requests, spec, batch_size=3, num_workers=workers):
        got.update(zip(batch.keys, batch.clips))
    assert set(got) == {request.key() for request in requests}
    for request in requests:
        assert torch.equal(got[request.key()], load_clip(request, spec, threads=1))


def test_contiguous_runs_give_each_worker_one_run() -> None:
    for batches in range(0, 12):
        for workers in (1, 2, 3, 5):
            order = list(ContiguousRuns(batches, workers))
            assert sorted(order) == list(range(batches))
            runs = [order[w::workers] for w in range(workers)]
            for run in runs:
                assert run == list(range(run[0], run[0] + len(run))) if run else True
