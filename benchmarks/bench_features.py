"""Throughput of `instract-eval features` (windows per second) for the synthetic encoders.

Run from the repository root::

    python benchmarks/bench_features.py [--models synth-bag-of-frames,synth-temporal,random]
        [--split tiny|default] [--batch-size 8] [--workers 0] [--threads 1]

Workload: the videos of the synthetic TAL training split (`instract_eval.synth.tal_training`;
``tiny``: 8 videos of 8-10 s, ``default``: 200 of 12-20 s), 32 px at 8 fps, windows of the
model's 8 frames every 2 frames (the command's defaults for these models). For each model it
prints the windows and features, the wall time of a cold run (decode + encode + write), its
windows per second, and the time of a second run into a fresh directory that reads every window
back from the disk cache (the work counters must show nothing encoded). The split and all outputs
go to a temporary directory.

Measured on the 2-core build machine (shared, load about 4), one torch thread, ``--split default``
(200 videos, 12,026 windows): synth-bag-of-frames 53 windows/s (226 s cold, 1.7 s cached),
synth-temporal 73 windows/s (165 s cold, 2.3 s cached); ``--split tiny``: random 116,
synth-temporal 58, synth-bag-of-frames 52 windows/s (figures move with the machine's load). Most
of a window's 14-19 ms is decoding (15 ms with the random model, by cProfile): each window is its
own request, so with a stride of a quarter window every frame is decoded and converted to RGB four
times (PyAV's ``to_ndarray`` is about 1.3 ms per 32 px frame here). Two torch threads on the
loaded machine were 2-6 times slower than one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from instract_eval.runner.features import FeatureOptions, extract_features, videos_in_directory
from instract_eval.runner.run import ModelRequest
from instract_eval.synth.tal_training import write_tal_training


def measure(model: str, videos: list, root: Path, batch_size: int, workers: int) -> dict:
    cache = root / f"cache-{model}"
    started = time.perf_counter()
    cold = extract_features(ModelRequest(model), videos, FeatureOptions(
        out=root / f"cold-{model}", batch_size=batch_size, workers=workers, device="cpu", cache_dir=cache, fps=8.0))
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    warm = extract_features(ModelRequest(model), videos, FeatureOptions(
        out=root / f"warm-{model}", batch_size=batch_size, workers=workers, device="cpu", cache_dir=cache, fps=8.0))
    warm_s = time.perf_counter() - started
    assert warm.work.get("videos_encoded", 0) == 0, warm.work
    return {"model": model, "videos": len(videos), "windows": cold.num_features, "dim": cold.feature_dim,
            "cold_s": cold_s, "windows_per_s": cold.num_features / cold_s,
            "forward_passes": cold.work["forward_passes"], "cached_s": warm_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="synth-bag-of-frames,synth-temporal,random")
    parser.add_argument("--split", default="tiny", choices=("tiny", "default"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        split = write_tal_training(root / "split", seed=0, size=args.split)
        print(f"split {args.split}: {split.counts['videos']} videos, {split.counts['frames']} frames, generated in "
              f"{time.perf_counter() - started:.1f} s")
        videos = videos_in_directory(split.video_root)
        print(f"{'model':22} {'videos':>6} {'windows':>8} {'dim':>4} {'cold s':>8} {'windows/s':>10} "
              f"{'passes':>7} {'cached s':>9}")
        for model in args.models.split(","):
            row = measure(model, videos, root, args.batch_size, args.workers)
            print(f"{row['model']:22} {row['videos']:>6} {row['windows']:>8} {row['dim']:>4} {row['cold_s']:>8.2f} "
                  f"{row['windows_per_s']:>10.1f} {row['forward_passes']:>7} {row['cached_s']:>9.2f}")


if __name__ == "__main__":
    main()
