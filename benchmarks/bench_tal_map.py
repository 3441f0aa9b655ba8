"""Time `temporal_localization_map` at ActivityNet-1.3 validation scale and on THUMOS14.

Run from the repository root::

    python benchmarks/bench_tal_map.py [--repeats 5] [--seed 0]

Synthetic data, deterministic from the seed:

- ``activitynet (realistic)``: 4,900 videos of 30-240 s, 200 classes, about 1.5 ground-truth
  instances per video (one class per video, sometimes a second), 100 predictions per video, most of
  them on the video's own class or on two confusable classes, half of them jittered around a
  ground-truth instance, scores higher near the truth; 10 thresholds (0.5:0.05:0.95).
- ``activitynet (uniform labels)``: the same videos and ground truth, but every prediction gets a
  uniformly random class and a random segment: the stress case for the class-wise sort.
- ``thumos14``: the real THUMOS14 test ground truth shipped with the package (212 videos, 20
  classes, 3,358 instances) with 200 synthetic predictions per video; 5 thresholds (0.3:0.1:0.7).

Each figure is the best of ``--repeats`` runs (after one warm-up run). The last line times a
straightforward per-prediction loop (the structure of the official evaluator and of mmaction2's
numpy code, without pandas) on the THUMOS14 case, checks it gives the same AP, and prints the
speed-up ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import numpy as np

from instract_eval.metrics.localization import (
    TIOU_THRESHOLD_PRESETS,
    interpolated_average_precision,
    temporal_localization_map,
)

NUM_VIDEOS = 4_900
NUM_CLASSES = 200
PREDICTIONS_PER_VIDEO = 100


def activitynet_like(rng: np.random.Generator, uniform_labels: bool) -> tuple[tuple[np.ndarray, ...], int]:
    duration = rng.uniform(30.0, 240.0, NUM_VIDEOS)
    video_class = rng.integers(0, NUM_CLASSES, NUM_VIDEOS)
    per_video = 1 + rng.poisson(0.5, NUM_VIDEOS)
    gt_video = np.repeat(np.arange(NUM_VIDEOS), per_video)
    second_class = rng.random(gt_video.shape[0]) < 0.1
    gt_label = np.where(second_class, rng.integers(0, NUM_CLASSES, gt_video.shape[0]), video_class[gt_video])
    length = duration[gt_video] * rng.uniform(0.05, 0.6, gt_video.shape[0])
    start = rng.uniform(0.0, 1.0, gt_video.shape[0]) * (duration[gt_video] - length)
    gt_segments = np.stack([start, start + length], axis=1)

    num_pred = NUM_VIDEOS * PREDICTIONS_PER_VIDEO
    pred_video = np.repeat(np.arange(NUM_VIDEOS), PREDICTIONS_PER_VIDEO)
    video_duration = duration[pred_video]
    if uniform_labels:
        pred_label = rng.integers(0, NUM_CLASSES, num_pred)
        p_start = rng.uniform(0.0, 1.0, num_pred) * video_duration
        p_end = np.minimum(video_duration, p_start + rng.exponential(0.2, num_pred) * video_duration)
        scores = rng.random(num_pred)
    else:
        # The ground-truth instance each prediction is drawn around (a random one of its video).
        first_gt = np.cumsum(per_video) - per_video
        source = first_gt[pred_video] + (rng.random(num_pred) * per_video[pred_video]).astype(np.int64)
        confusers = rng.integers(0, NUM_CLASSES, (NUM_VIDEOS, 2))
        pick = rng.random(num_pred)
        pred_label = np.where(
            pick < 0.6,
            gt_label[source],
            np.where(pick < 0.8, confusers[pred_video, 0], confusers[pred_video, 1]),
        )
        near = rng.random(num_pred) < 0.5
        g_len = gt_segments[source, 1] - gt_segments[source, 0]
        j_start = gt_segments[source, 0] + rng.normal(0.0, 0.15, num_pred) * g_len
        j_end = gt_segments[source, 1] + rng.normal(0.0, 0.15, num_pred) * g_len
        r_start = rng.uniform(0.0, 1.0, num_pred) * video_duration
        r_end = r_start + rng.uniform(0.02, 0.5, num_pred) * video_duration
        p_start = np.clip(np.where(near, j_start, r_start), 0.0, video_duration)
        p_end = np.clip(np.where(near, j_end, r_end), p_start, video_duration)
        scores = np.where(near, rng.beta(5, 2, num_pred), rng.beta(2, 5, num_pred))
    arrays = (gt_video, gt_label, gt_segments, pred_video, pred_label, np.stack([p_start, p_end], 1), scores)
    return arrays, NUM_CLASSES


def thumos14_with_synthetic_predictions(rng: np.random.Generator, per_video: int = 200):
    source = resources.files("instract_eval.data").joinpath("resources", "thumos14_gt.json")
    database = json.loads(source.read_text())["database"]
    videos = sorted(v for v, entry in database.items() if entry["subset"] == "Test")
    classes = sorted({a["label"] for v in videos for a in database[v]["annotations"]})
    class_id = {name: i for i, name in enumerate(classes)}
    gt_video, gt_label, gt_segments = [], [], []
    for i, video in enumerate(videos):
        for annotation in database[video]["annotations"]:
            gt_video.append(i)
            gt_label.append(class_id[annotation["label"]])
            gt_segments.append([float(x) for x in annotation["segment"]])
    gt_video, gt_label, gt_segments = np.array(gt_video), np.array(gt_label), np.array(gt_segments)
    duration = np.array([float(database[v]["duration"]) for v in videos])

    num_pred = len(videos) * per_video
    pred_video = np.repeat(np.arange(len(videos)), per_video)
    # Draw each prediction around a random instance of its video (videos without any: random).
    counts = np.bincount(gt_video, minlength=len(videos))
    first = np.cumsum(counts) - counts
    has = counts[pred_video] > 0
    source = first[pred_video] + (rng.random(num_pred) * np.maximum(counts[pred_video], 1)).astype(np.int64)
    source = np.minimum(source, gt_video.shape[0] - 1)
    near = has & (rng.random(num_pred) < 0.6)
    pred_label = np.where(near & (rng.random(num_pred) < 0.8), gt_label[source], rng.integers(0, len(classes), num_pred))
    g_len = gt_segments[source, 1] - gt_segments[source, 0]
    d = duration[pred_video]
    r_start = rng.uniform(0.0, 1.0, num_pred) * d
    p_start = np.clip(np.where(near, gt_segments[source, 0] + rng.normal(0, 0.2, num_pred) * g_len, r_start), 0, d)
    p_end = np.clip(np.where(near, gt_segments[source, 1] + rng.normal(0, 0.2, num_pred) * g_len,
                             r_start + rng.exponential(5.0, num_pred)), p_start, d)
    scores = np.where(near, rng.beta(5, 2, num_pred), rng.beta(2, 5, num_pred))
    arrays = (gt_video, gt_label, gt_segments, pred_video, pred_label, np.stack([p_start, p_end], 1), scores)
    return arrays, len(classes)


def best_time(arrays, num_classes: int, thresholds: np.ndarray, repeats: int) -> tuple[float, float]:
    result = temporal_localization_map(*arrays, thresholds=thresholds, num_classes=num_classes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        temporal_localization_map(*arrays, thresholds=thresholds, num_classes=num_classes)
        times.append(time.perf_counter() - start)
    return min(times), result.average_map


def per_prediction_loop(gt_video, gt_label, gt_segments, pred_video, pred_label, pred_segments, scores,
                        thresholds, num_classes) -> np.ndarray:
    """AP [T, C] the straightforward way: per class, walk the sorted predictions one at a time."""
    ap = np.full((thresholds.shape[0], num_classes), np.nan)
    for c in range(num_classes):
        gt_rows = np.flatnonzero(gt_label == c)
        if gt_rows.shape[0] == 0:
            continue
        rows = np.flatnonzero(pred_label == c)
        rows = rows[np.argsort(scores[rows], kind="stable")[::-1]]
        locked = np.zeros((thresholds.shape[0], gt_rows.shape[0]), dtype=bool)
        tp = np.zeros((thresholds.shape[0], rows.shape[0]))
        for i, row in enumerate(rows):
            same_video = np.flatnonzero(gt_video[gt_rows] == pred_video[row])
            if same_video.shape[0] == 0:
                continue
            g = gt_segments[gt_rows[same_video]]
            p = pred_segments[row]
            inter = np.clip(np.minimum(p[1], g[:, 1]) - np.maximum(p[0], g[:, 0]), 0, None)
            tiou = inter / ((g[:, 1] - g[:, 0]) + (p[1] - p[0]) - inter)
            for t, threshold in enumerate(thresholds):
                free = np.where(locked[t, same_video], -1.0, tiou)
                best = free.shape[0] - 1 - int(np.argmax(free[::-1]))
                if free[best] >= threshold:
                    locked[t, same_video[best]] = True
                    tp[t, i] = 1
        found = np.cumsum(tp, axis=1)
        precision = found / np.arange(1, rows.shape[0] + 1)
        recall = found / gt_rows.shape[0]
        for t in range(thresholds.shape[0]):
            ap[t, c] = interpolated_average_precision(precision[t], recall[t])
    return ap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cases = [
        ("activitynet (realistic)", *activitynet_like(np.random.default_rng(args.seed), False), "activitynet"),
        ("activitynet (uniform labels)", *activitynet_like(np.random.default_rng(args.seed), True), "activitynet"),
        ("thumos14 (real GT)", *thumos14_with_synthetic_predictions(np.random.default_rng(args.seed)), "thumos14"),
    ]
    print(f"{'case':<30} {'GT':>7} {'predictions':>11} {'T':>3} {'seconds':>9} {'pred/s':>12} {'avg mAP':>8}")
    for name, arrays, num_classes, preset in cases:
        thresholds = TIOU_THRESHOLD_PRESETS[preset]
        seconds, average_map = best_time(arrays, num_classes, thresholds, args.repeats)
        num_pred = arrays[3].shape[0]
        print(f"{name:<30} {arrays[0].shape[0]:>7} {num_pred:>11,} {thresholds.shape[0]:>3} {seconds:>9.3f} "
              f"{num_pred / seconds:>12,.0f} {average_map:>8.4f}")

    name, arrays, num_classes, preset = cases[-1]
    thresholds = TIOU_THRESHOLD_PRESETS[preset]
    start = time.perf_counter()
    loop_ap = per_prediction_loop(*arrays, thresholds=thresholds, num_classes=num_classes)
    loop_seconds = time.perf_counter() - start
    fast = temporal_localization_map(*arrays, thresholds=thresholds, num_classes=num_classes)
    start = time.perf_counter()
    temporal_localization_map(*arrays, thresholds=thresholds, num_classes=num_classes)
    fast_seconds = time.perf_counter() - start
    difference = float(np.nanmax(np.abs(loop_ap - fast.average_precision)))
    print(f"per-prediction loop on {name}: {loop_seconds:.2f} s, {loop_seconds / fast_seconds:,.0f}x slower "
          f"than the vectorised engine (max |AP difference| {difference:.1e})")


if __name__ == "__main__":
    main()
