"""Small builders of input files shared by the CLI and reader tests."""

from __future__ import annotations

import json
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

