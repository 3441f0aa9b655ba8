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
