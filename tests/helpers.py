"""Small builders of input files shared by the CLI and reader tests."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


def ground_truth_document(videos: dict[str, list[tuple[str, float, float]]], subset: str = "test") -> dict:
    """ActivityNet-style ground truth: video -> [(label, start, end), ...], all in one subset."""
    return {
        "version": "test",
        "taxonomy": [],
        "database": {
            video: {
                "subset": subset,
                "duration": 100.0,
                "annotations": [{"label": label, "segment": [start, end]} for label, start, end in rows],
            }
            for video, rows in videos.items()
        },
    }


def predictions_document(videos: dict[str, list[tuple[str, float, float, float]]]) -> dict:
    """ActivityNet-style predictions: video -> [(label, start, end, score), ...]."""
    return {
        "version": "test",
        "external_data": {},
        "results": {
            video: [{"label": label, "segment": [start, end], "score": score} for label, start, end, score in rows]
            for video, rows in videos.items()
        },
    }


def result_record(model: str, task: str, metrics: dict[str, tuple]) -> dict:
    """A minimal result record the reader accepts: ``metrics`` maps a name to (value, unit, direction)."""
    return {"schema": "instract-eval/result/1", "model": {"name": model}, "task": {"name": task},
            "metrics": {name: {"value": value, "unit": unit, "direction": direction, "headline": True}
                        for name, (value, unit, direction) in metrics.items()}}


def simulate_full_disk(monkeypatch, directory: Path, files_that_fit: int = 0) -> None:
    """Make the disk under ``directory`` full, in-process and without root: the first
    ``files_that_fit`` files opened there with `os.open` take their bytes, writes to any later
    one fail with ENOSPC, as `os.write` does on a full file system."""
    directory = Path(directory).resolve()
    real_open, real_write = os.open, os.write
    paths: dict[int, Path] = {}
    fitted: list[Path] = []

    def tracking_open(path, flags, mode=0o777, *args, **kwargs):
        descriptor = real_open(path, flags, mode, *args, **kwargs)
        paths[descriptor] = Path(path).resolve()
        return descriptor

    def full_write(descriptor, data):
        path = paths.get(descriptor)
        if path is not None and path.is_relative_to(directory) and path not in fitted:
            if len(fitted) >= files_that_fit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            fitted.append(path)
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "write", full_write)
