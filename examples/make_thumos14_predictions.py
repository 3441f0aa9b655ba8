"""Write examples/thumos14_predictions.json: a plausible detector's output on the THUMOS14 test set.

The predictions are derived from the real THUMOS14 ground truth shipped with the package, so the
example scores like a good detector (average mAP about 0.78) without any video: most
instances are found with jittered boundaries, some are missed, some are found twice, and false
positives land in the right videos with the wrong class or at the wrong time. Deterministic from
the seed; rerun with ``python examples/make_thumos14_predictions.py``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

SEED = 14


def main() -> None:
    rng = np.random.default_rng(SEED)
    source = resources.files("instract_eval.data").joinpath("resources", "thumos14_gt.json")
    database = json.loads(source.read_text())["database"]
    classes = sorted({a["label"] for v in database.values() for a in v["annotations"]})
    results: dict[str, list[dict]] = {}
    for video, entry in database.items():
        if entry["subset"] != "Test":
            continue
        duration = float(entry["duration"])
        found = []
        for annotation in entry["annotations"]:
            start, end = annotation["segment"]
            length = end - start
            if rng.random() < 0.15:  # missed instance
                continue
            for copy in range(1 + (rng.random() < 0.3)):  # sometimes detected twice
                jitter = rng.normal(0.0, 0.12 + 0.15 * copy, size=2) * length
                s = max(0.0, start + jitter[0])
                # No clipping to the duration: some real THUMOS14 instances end after it.
                e = max(s + 0.1, end + jitter[1])
                score = float(np.clip(rng.beta(5, 2) - 0.2 * copy, 0.01, 0.99))
                found.append({"label": annotation["label"], "score": round(score, 4),
                              "segment": [round(s, 2), round(e, 2)]})
        for _ in range(int(rng.integers(3, 12))):  # false positives
            s = float(rng.uniform(0, max(duration - 2.0, 0.1)))
            e = min(duration, s + float(rng.uniform(0.5, 8.0)))
            found.append({"label": classes[int(rng.integers(len(classes)))],
                          "score": round(float(rng.beta(2, 5)), 4), "segment": [round(s, 2), round(e, 2)]})
        results[video] = found
    out = Path(__file__).with_name("thumos14_predictions.json")
    document = {"version": "instract-eval example", "external_data": {}, "results": results}
    out.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    print(f"wrote {sum(map(len, results.values()))} predictions in {len(results)} videos to {out}")


if __name__ == "__main__":
    main()
