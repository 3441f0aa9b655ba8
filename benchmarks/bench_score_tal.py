"""Time `instract-eval score tal` as a user runs it, at ActivityNet-1.3 validation scale.

Run from the repository root::

    python benchmarks/bench_score_tal.py [--repeats 7] [--seed 0] [--workdir DIR]

`bench_tal_map.py` times the mAP engine on arrays; a user waits for the whole process: start-up
and imports, reading and checking a predictions file of about 52 MB, the mAP, writing the result.
This benchmark writes, into a temporary directory (or ``--workdir``), files shaped like the real
ones, deterministic from the seed:

- ground truth: 4,926 ``validation`` videos (ActivityNet-1.3's count) of 30-240 s with 1-3
  instances each, plus 10,024 ``training`` videos, 200 classes with names of a real name's length;
- predictions: 100 per validation video (492,600), half of them jittered around a ground-truth
  instance, floats written with all 17 significant digits as ``json.dump`` writes them.

It then prints, as min and median of ``--repeats`` runs (after one warm-up run):

- ``core``: `temporal_localization_map` on the arrays the readers produce, 10 thresholds;
- ``read``: the two readers in this process (parse, checks, arrays);
- ``whole process``: ``python -m instract_eval score tal --preset activitynet`` as a subprocess,
  from its start to its exit, writing its JSON result to a file;
- ``start-up``: ``python -m instract_eval --version`` (interpreter and the CLI's imports).

It checks that the subprocess's average mAP equals the in-process one. Measure on a quiet machine:
a busy one moves the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from instract_eval.data.activitynet import read_ground_truth, read_predictions
from instract_eval.metrics.localization import TIOU_THRESHOLD_PRESETS, temporal_localization_map

VALIDATION_VIDEOS = 4_926
TRAINING_VIDEOS = 10_024
NUM_CLASSES = 200
PREDICTIONS_PER_VIDEO = 100


def class_names() -> list[str]:
    """200 distinct names about as long as ActivityNet's ("Playing bagpipes", "Using the balance beam")."""
    return [f"Action number {i:03d} done" for i in range(NUM_CLASSES)]


def write_files(directory: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    names = class_names()
    database = {}
    instances = {}
    for subset, count in (("validation", VALIDATION_VIDEOS), ("training", TRAINING_VIDEOS)):
        for i in range(count):
            video = f"v_{subset[:3]}{i:06d}"
            duration = float(rng.uniform(30.0, 240.0))
            label = names[int(rng.integers(NUM_CLASSES))]
            rows = []
            for _ in range(1 + int(rng.integers(3))):
                length = duration * float(rng.uniform(0.05, 0.4))
                start = float(rng.uniform(0.0, duration - length))
                rows.append((start, start + length))
            instances[video] = (duration, label, rows)
            database[video] = {"subset": subset, "duration": duration, "url": "",
                               "annotations": [{"segment": [s, e], "label": label} for s, e in rows]}
    ground_truth = directory / "activitynet_gt.json"
    ground_truth.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database}))

    results = {}
    for video, (duration, label, rows) in instances.items():
        if not video.startswith("v_val"):
            continue
        n = PREDICTIONS_PER_VIDEO
        near = rng.random(n) < 0.5
        source = np.array(rows)[rng.integers(len(rows), size=n)]
        jitter = rng.normal(0.0, 0.15, (n, 2)) * (source[:, 1:] - source[:, :1])
        random_start = rng.uniform(0.0, duration, n)
        random_segments = np.stack([random_start, random_start + rng.uniform(0.02, 0.5, n) * duration], 1)
        segments = np.clip(np.where(near[:, None], source + jitter, random_segments), 0.0, duration)
        segments[:, 1] = np.maximum(segments[:, 0], segments[:, 1])
        scores = np.where(near, rng.beta(5, 2, n), rng.beta(2, 5, n))
        labels = np.where(rng.random(n) < 0.7, names.index(label), rng.integers(NUM_CLASSES, size=n))
        results[video] = [{"label": names[int(c)], "score": float(p), "segment": [float(s), float(e)]}
                          for c, p, (s, e) in zip(labels, scores, segments)]
    predictions = directory / "activitynet_predictions.json"
    predictions.write_text(json.dumps({"version": "VERSION 1.3", "results": results,
                                       "external_data": {"used": False, "details": ""}}))
    return ground_truth, predictions


def timed(function, repeats: int) -> list[float]:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def row(name: str, times: list[float]) -> str:
    return f"{name:<16} {min(times):>8.3f} {statistics.median(times):>8.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="Write the files here (kept) instead of a temporary directory.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        directory = args.workdir or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        ground_truth_path, predictions_path = write_files(directory, np.random.default_rng(args.seed))
        thresholds = TIOU_THRESHOLD_PRESETS["activitynet"]
        gt = read_ground_truth(ground_truth_path, "validation")
        pred = read_predictions(predictions_path, gt)
        arrays = (gt.video, gt.label, gt.segments, pred.video, pred.label, pred.segments, pred.scores)
        result = temporal_localization_map(*arrays, thresholds=thresholds, num_classes=gt.num_classes)

        output = directory / "result.json"
        command = [sys.executable, "-m", "instract_eval", "score", "tal", "--preset", "activitynet",
                   "--ground-truth", str(ground_truth_path), "--predictions", str(predictions_path),
                   "--output", str(output)]
        size_mb = predictions_path.stat().st_size / 1e6
        print(f"{pred.num_predictions:,} predictions ({size_mb:.0f} MB) in {gt.num_videos:,} videos, "
              f"{gt.num_classes} classes, {gt.label.shape[0]:,} ground-truth instances, "
              f"{thresholds.shape[0]} thresholds")
        print(f"{'':<16} {'min s':>8} {'median s':>8}")
        print(row("core (mAP)", timed(lambda: temporal_localization_map(
            *arrays, thresholds=thresholds, num_classes=gt.num_classes), args.repeats)))
        print(row("read", timed(lambda: read_predictions(predictions_path, read_ground_truth(
            ground_truth_path, "validation")), args.repeats)))
        print(row("whole process", timed(lambda: subprocess.run(command, check=True), args.repeats)))
        print(row("start-up", timed(lambda: subprocess.run(
            [sys.executable, "-m", "instract_eval", "--version"], check=True, capture_output=True),
            args.repeats)))
        written = json.loads(output.read_text())["average_mAP"]
        if written != float(result.average_map):
            raise SystemExit(f"the process's average mAP {written} differs from {float(result.average_map)}")
        print(f"average mAP {written:.4f}, the same in the process and here")


if __name__ == "__main__":
    main()
