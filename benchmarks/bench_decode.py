"""Time clip decoding (PyAV + sampling + torch transforms) with 0 and 2 DataLoader workers.

Run from the repository root::

    python benchmarks/bench_decode.py [--videos 4] [--clips 48] [--size 128x96] [--fps 25] [--seconds 10]

Synthetic data, deterministic from ``--seed``: ``--videos`` H.264 MP4s (``--size``, ``--fps``,
``--seconds`` long, a keyframe every 2 s, a moving square on a drifting gradient so the encoder
has real work) written to a temporary directory, and ``--clips`` random segments of 0.5-3 s on
them. Two frame specs, both producing 224x224 CLIP-normalised float tensors:

- ``instract``: 16 frames uniform over a 5 fps grid, segment widened to 5 s plus 5 s of context
  on each side (the InstrAct Bench protocol);
- ``ace-ata``: 30 frames at 10 fps (3 s) centred on the segment (ACE/SRT on ATA).

Each row is the best of ``--repeats`` passes over all clips after one warm-up pass; ``decode
only`` is the same decoding to uint8 without resize/normalise, in the main process, to show
what the transforms cost. Figures: clips per second and sampled frames per second. On a 2-core
machine the 2 workers compete with the main process, so expect little gain there.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from instract_eval.media import (
    INSTRACT_CONTEXT_S,
    INSTRACT_MIN_CLIP_S,
    ClipRequest,
    FrameSpec,
    ace_frame_spec,
    clip_loader,
    decode_clip_frames,
    instract_frame_spec,
)


def write_video(path: Path, seconds: float, fps: int, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps, options={"preset": "veryfast"} if codec == "libx264" else {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 2 * fps
        phase = rng.uniform(0, 2 * np.pi, 3)
        side = max(4, height // 4)
        for index in range(int(seconds * fps)):
            t = index / fps
            image = np.empty((height, width, 3), dtype=np.uint8)
            for channel in range(3):
                image[..., channel] = (127 + 100 * np.sin(xx / width * 6 + yy / height * 3 + t + phase[channel])).astype(np.uint8)
            x = int((width - side) * (0.5 + 0.5 * np.sin(t * 1.3 + phase[0])))
            y = int((height - side) * (0.5 + 0.5 * np.cos(t * 0.9 + phase[1])))
            image[y : y + side, x : x + side] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_requests(paths: list[Path], count: int, seconds: float, seed: int, **protocol) -> list[ClipRequest]:
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        length = rng.uniform(0.5, 3.0)
        start = rng.uniform(0.0, seconds - length)
        path = paths[rng.integers(len(paths))]
        requests.append(ClipRequest(str(path), start, start + length, **protocol))
    return requests


def time_loader(requests: list[ClipRequest], spec: FrameSpec, workers: int, repeats: int) -> float:
    def one_pass() -> int:
        seen = 0
        for batch in clip_loader(requests, spec, batch_size=8, num_workers=workers, threads=1 if workers else None):
            seen += len(batch.keys)
        assert seen == len(requests)
        return seen

    one_pass()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        best = min(best, time.perf_counter() - start)
    return best


def time_decode_only(requests: list[ClipRequest], spec: FrameSpec, repeats: int) -> float:
    for request in requests[:4]:
        decode_clip_frames(request, spec)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for request in requests:
            decode_clip_frames(request, spec)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--size", default="128x96", help="WIDTHxHEIGHT of the synthetic videos")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        started = time.perf_counter()
        paths = []
        for n in range(args.videos):
            path = Path(tmp) / f"video{n}.mp4"
            write_video(path, args.seconds, args.fps, width, height, args.seed + n)
            paths.append(path)
        print(
            f"{args.videos} videos {width}x{height} @ {args.fps} fps, {args.seconds:g} s each "
            f"(written in {time.perf_counter() - started:.1f} s); {args.clips} clips; "
            f"torch {torch.__version__}, av {av.__version__}, {os.cpu_count()} CPUs, "
            f"{torch.get_num_threads()} torch threads"
        )
        cases = [
            (
                "instract (16 uniform @5fps grid, ctx 5 s)",
                instract_frame_spec(),
                make_requests(
                    paths, args.clips, args.seconds, args.seed,
                    context_s=INSTRACT_CONTEXT_S, min_clip_s=INSTRACT_MIN_CLIP_S,
                ),
            ),
            ("ace-ata (30 @ 10 fps, 3 s)", ace_frame_spec("ata"), make_requests(paths, args.clips, args.seconds, args.seed)),
        ]
        print(f"{'spec':<44} {'mode':<22} {'clips/s':>9} {'frames/s':>10} {'s/pass':>8}")
        for name, spec, requests in cases:
            frames = len(requests) * spec.num_frames
            elapsed = time_decode_only(requests, spec, args.repeats)
            print(f"{name:<44} {'decode only, uint8':<22} {len(requests) / elapsed:9.1f} {frames / elapsed:10.1f} {elapsed:8.3f}")
            for workers in (0, 2):
                elapsed = time_loader(requests, spec, workers, args.repeats)
                mode = f"loader, {workers} workers"
                print(f"{name:<44} {mode:<22} {len(requests) / elapsed:9.1f} {frames / elapsed:10.1f} {elapsed:8.3f}")


if __name__ == "__main__":
    main()
