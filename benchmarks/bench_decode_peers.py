"""Our clip loader beside the video decoding libraries that install here, on realistic files.

Run from the repository root (peers are benchmark-only; install them apart, never into the product)::

    pip install --no-deps --target /work/peers video-reader-rs decord2 torchcodec
    PYTHONPATH=/work/peers LD_LIBRARY_PATH=/work/peers/video_reader_rs.libs \\
        python benchmarks/bench_decode_peers.py [--sizes 640x360,1280x720] [--seconds 30] [--videos 2] [--clips 12]

Files: H.264 yuv420p, 30 fps, a keyframe every 250 frames, one slice per frame, textured moving
content (what downloads look like). Workloads, each clip's instants planned once by our sampler and
given to every library as the same frame indices (frame ``floor(t * fps)`` of these constant-rate
files, the frame shown at ``t``):

- ``instract``: 16 frames on a 5 fps grid, segment widened to 5 s plus 5 s context, several clips
  per video (they overlap, as InstrAct-Dynamics and Ego4D clips share long videos);
- ``actionbench``: 8 frames over 4 s (2 fps) centred on the segment.

Every library's frames go through the same resize / crop / normalise (`apply_frame_spec`, InstrAct's
224 spec). Peers keep one open reader per video (their best case). Printed: ms per clip (median of
``--repeats`` passes), frames decoded per frame used (ours counted by the decoder; "per-request"
is today's one-pass-per-clip path, which is what every peer does: from the keyframe forward), the
ratio of the best peer's time to ours, and whether each peer's uint8 frames equal ours (max abs
difference otherwise: peers may convert YUV to RGB with other swscale flags). Peers that do not
import (torchcodec's wheel here is a CUDA build) are listed as skipped. Figures on a shared 2-core
machine are noisy: compare medians of several runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from instract_eval.media import (
    INSTRACT_CONTEXT_S,
    INSTRACT_MIN_CLIP_S,
    ClipRequest,
    FrameSpec,
    apply_frame_spec,
    clip_loader,
    instract_frame_spec,
    plan_request,
    probe_video,
)
from instract_eval.media.clips import ClipDecoder

FPS = 30


def write_video(path: Path, seconds: float, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={
            "preset": "veryfast", "crf": "23", "x264-params": "keyint=250:min-keyint=250:scenecut=0:slices=1"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for index in range(int(seconds * FPS)):
            image = np.roll(base, (index % height, (2 * index) % width), axis=(0, 1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def workloads(paths: list[Path], seconds: float, clips: int, seed: int) -> dict[str, tuple[FrameSpec, list[ClipRequest]]]:
    rng = np.random.default_rng(seed)
    instract, actionbench = [], []
    for path in paths:
        for _ in range(clips):
            start = float(rng.uniform(0, seconds - 3))
            end = start + float(rng.uniform(0.5, 3.0))
            instract.append(ClipRequest(str(path), start, end, context_s=INSTRACT_CONTEXT_S,
                                        min_clip_s=INSTRACT_MIN_CLIP_S))
            actionbench.append(ClipRequest(str(path), start, end))
    pixels = instract_frame_spec()
    return {"instract": (pixels, instract),
            "actionbench": (FrameSpec(8, "fps", fps=2.0, size=pixels.size, crop=pixels.crop,
                                      mean=pixels.mean, std=pixels.std), actionbench)}


def indices_of(request: ClipRequest, spec: FrameSpec) -> np.ndarray:
    info = probe_video(request.path)
    times = plan_request(request, spec, info.duration).times.reshape(-1)
    return np.clip(np.floor((times + 1e-6) * FPS).astype(np.int64), 0, (info.num_frames or 1) - 1)


def peers() -> tuple[dict[str, Callable[[str], Callable[[np.ndarray], np.ndarray]]], list[str]]:
    """name -> (open(path) -> get(indices) -> uint8 [N, H, W, 3]); and the peers skipped, with why."""
    found, skipped = {}, []
    try:
        from video_reader import PyVideoReader

        found["video-reader-rs"] = lambda path: PyVideoReader(path).get_batch
    except Exception as error:  # noqa: BLE001 - any import failure means "not here"
        skipped.append(f"video-reader-rs ({type(error).__name__}: {str(error)[:80]})")
    try:
        import decord

        found["decord2"] = lambda path: (lambda reader: lambda idx: reader.get_batch(list(idx)).asnumpy())(
            decord.VideoReader(path, num_threads=0))
    except Exception as error:  # noqa: BLE001
        skipped.append(f"decord2 ({type(error).__name__}: {str(error)[:80]})")
    try:
        from torchcodec.decoders import VideoDecoder

        found["torchcodec"] = lambda path: (lambda dec: lambda idx: dec.get_frames_at(
            [int(i) for i in idx]).data.permute(0, 2, 3, 1).numpy())(VideoDecoder(path, device="cpu"))
    except Exception as error:  # noqa: BLE001
        skipped.append(f"torchcodec ({type(error).__name__}: {str(error)[:80]})")
    return found, skipped


def median_ms(run: Callable[[], None], clips: int, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="640x360,1280x720")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--clips", type=int, default=12, help="clips per video")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    found, skipped = peers()
    print(f"peers: {', '.join(found) or 'none'}; skipped: {', '.join(skipped) or 'none'}")
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.lower().split("x"))
            paths = []
            for n in range(args.videos):
                paths.append(Path(tmp) / f"{size}_{n}.mp4")
                write_video(paths[-1], args.seconds, width, height, args.seed + n)
            for name, (spec, requests) in workloads(paths, args.seconds, args.clips, args.seed).items():
                used = len(requests) * spec.num_frames
                with ClipDecoder(spec) as decoder:
                    ours = {}
                    for position, frames in decoder.decode(requests):
                        ours[position] = frames.frames.reshape(-1, *frames.frames.shape[2:]).numpy()
                shared = decoder.frames_decoded
                alone = sum(_decoded_alone(r, spec) for r in requests)
                rows = []
                for workers in (0, 2):
                    def ours_pass(workers: int = workers) -> None:
                        for _ in clip_loader(requests, spec, batch_size=8, num_workers=workers):
                            pass
                    rows.append((f"harness --workers {workers}", median_ms(ours_pass, len(requests), args.repeats), ""))
                indices = [indices_of(request, spec) for request in requests]  # planned outside the timing
                for peer, open_video in found.items():
                    readers = {}

                    def peer_pass(open_video: Callable = open_video, readers: dict = readers) -> None:
                        for request, wanted in zip(requests, indices):
                            get = readers.get(request.path) or readers.setdefault(request.path, open_video(request.path))
                            frames = torch.from_numpy(np.ascontiguousarray(get(wanted)))
                            apply_frame_spec(frames, spec)
                    ms = median_ms(peer_pass, len(requests), args.repeats)
                    get = open_video(requests[0].path)
                    diff = max(int(np.abs(get(indices[k]).astype(np.int16) - ours[k].astype(np.int16)).max())
                               for k, r in enumerate(requests[:4]) if r.path == requests[0].path)
                    rows.append((peer, ms, "frames equal" if diff == 0 else f"max |diff| {diff}"))
                best_peer = min((ms for label, ms, _ in rows if not label.startswith("harness")), default=None)
                print(f"\n{size} {name}: {len(requests)} clips, decoded per frame used: shared {shared / used:.1f}, "
                      f"per-request {alone / used:.1f} ({alone / max(shared, 1):.2f}x less work)")
                for label, ms, note in rows:
                    ratio = f"{best_peer / ms:5.2f}x best peer" if best_peer else ""
                    print(f"  {label:<22} {ms:8.1f} ms/clip  {ratio}  {note}")


def _decoded_alone(request: ClipRequest, spec: FrameSpec) -> int:
    """Frames today's one-pass-per-request path decodes for ``request``."""
    from instract_eval.media import VideoReader

    with VideoReader(request.path) as reader:
        plan = plan_request(request, spec, reader.info.duration)
        return reader.frames_at(plan.times.reshape(-1)).frames_decoded


if __name__ == "__main__":
    main()
