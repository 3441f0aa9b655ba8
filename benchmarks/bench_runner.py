"""Harness overhead and deduplication of `instract-eval run`, measured with the `null` adapter.

Run from the repository root::

    python benchmarks/bench_runner.py [--clips 2000] [--captions 10] [--workers 0] [--skip-semantic]

The `null` adapter returns zeros without looking at its inputs, so every second measured is the
harness's own: decoding, sampling, resizing to 224 px and normalising, batching, the cache, the
metrics. Two workloads:

1. the synth group on the embedded synthetic world (generated into a temporary directory);
2. an InstrAct-Semantic-sized task: ``--clips`` clip windows (default 2,000) on 100 synthetic
   MP4s, each with ``--captions`` candidate captions (default 10, so 20,000 text slots), under the
   InstrAct protocol (16 frames from a 5 fps grid, clips widened to 5 s plus 5 s of context).

For each it prints the work the model was asked for next to the unique inputs (forward passes
on videos must equal the unique clip requests, not the text slots), the wall time, the overhead
per clip, and the time of a second run that reads the outputs back from the disk cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from instract_eval.runner.run import ModelRequest, RunOptions, run_evaluation
from instract_eval.synth import generate_world
from instract_eval.synth.render import write_mp4
from instract_eval.tasks import load_registry

NULL = ModelRequest("null")


def moving_square(seconds: float, fps: int, size: int, seed: int) -> np.ndarray:
    """uint8 RGB frames of a square drifting over a gradient: cheap to make, real work to decode."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((int(seconds * fps), size, size, 3), dtype=np.uint8)
    frames[..., 2] = np.linspace(0, 255, size, dtype=np.uint8)[None, None, :]
    x, y, dx, dy = *rng.integers(0, size - 8, 2), *rng.choice([-1, 1], 2)
    for t, frame in enumerate(frames):
        frame[y:y + 8, x:x + 8] = (255, 64 + t % 128, 0)
        x, y = x + dx, y + dy
        if not 0 <= x <= size - 8:
            dx, x = -dx, x - 2 * dx
        if not 0 <= y <= size - 8:
            dy, y = -dy, y - 2 * dy
    return frames


def semantic_sized_task(root: Path, clips: int, captions: int, videos: int = 100, seconds: float = 40.0) -> Path:
    """Write the videos, a semantic annotation file and its tasks file; returns the tasks file."""
    (root / "videos").mkdir(parents=True)
    for index in range(videos):
        write_mp4(root / "videos" / f"v{index:04d}.mp4", moving_square(seconds, 8, 64, index), 8)
    per_video = -(-clips // videos)
    rows = []
    for index in range(clips):
        video, slot = divmod(index, per_video)
        start = 1.0 + slot * (seconds - 4.0) / per_video
        rows.append({"caption": f"caption {index} of clip {index}", "video_id": f"v{video:04d}",
                     "start": round(start, 3), "end": round(start + 1.5, 3),
                     "hard_negatives": [f"negative {k} of clip {index}" for k in range(captions - 1)]})
    (root / "semantic.json").write_text(json.dumps(rows))
    (root / "tasks.yaml").write_text(
        "tasks:\n"
        "  semantic-sized:\n"
        "    kind: mcq\n    paper: benchmark\n    description: InstrAct-Semantic-sized null workload.\n"
        "    format: instract-semantic\n    candidates: texts\n"
        "    data: {annotations: semantic.json, videos: videos}\n"
        "    protocol: {frames: 16, sampling: fps, fps: 5, context_s: 5.0, min_clip_s: 5.0}\n"
        "    ties: expected\n    seed: 0\n    metrics:\n      - {name: R@1, direction: higher}\n")
    return root / "tasks.yaml"


def measure(label: str, tasks_file: Path, tasks: list[str], workers: int, cache: Path) -> None:
    registry = load_registry([tasks_file])
    rows = []
    for attempt in ("cold", "cached"):
        started = time.perf_counter()
        report = run_evaluation([NULL], tasks, registry,
                                RunOptions(output=None, workers=workers, cache_dir=cache, device="cpu"))
        rows.append((attempt, time.perf_counter() - started, report.records))
    (_, cold, records), (_, warm, _) = rows
    clips = sum(r["dataset"]["coverage"]["total"] for r in records)
    work = {key: sum(r["run"]["work"].get(key, 0) for r in records)
            for key in ("videos_encoded", "videos_reused", "texts_encoded", "texts_reused", "localized",
                        "forward_passes")}
    unique_videos = work["videos_encoded"]
    print(f"\n{label} ({len(records)} tasks, {clips} items, workers={workers})")
    print(f"  video forward items {work['videos_encoded']:>7}  = unique clip requests; "
          f"reused across tasks {work['videos_reused']}")
    print(f"  text forward items  {work['texts_encoded']:>7}  = unique texts; reused {work['texts_reused']}")
    print(f"  localize calls      {work['localized']:>7}")
    print(f"  model calls         {work['forward_passes']:>7}  (batches)")
    print(f"  wall, cold cache    {cold:8.2f} s   {1000 * cold / max(unique_videos, 1):7.2f} ms per unique clip")
    print(f"  wall, warm cache    {warm:8.2f} s   {1000 * warm / max(clips, 1):7.2f} ms per item   "
          f"(cold/warm {cold / warm:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--captions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--skip-semantic", action="store_true", help="only the synth group")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        started = time.perf_counter()
        world = generate_world(root / "world", seed=0, size="default")
        print(f"synth world generated in {time.perf_counter() - started:.1f} s")
        measure("synth group, null adapter (224 px frames)", world.tasks_file, ["synth"], args.workers,
                root / "cache-synth")
        if not args.skip_semantic:
            started = time.perf_counter()
            tasks_file = semantic_sized_task(root / "semantic", args.clips, args.captions)
            print(f"\nsemantic-sized task written in {time.perf_counter() - started:.1f} s")
            measure(f"InstrAct-Semantic-sized: {args.clips} clips x {args.captions} captions, null adapter",
                    tasks_file, ["semantic-sized"], args.workers, root / "cache-semantic")


if __name__ == "__main__":
    main()
