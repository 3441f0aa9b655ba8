"""Time a generative pair score per (clip, caption) on a tiny model: letter vs log-likelihood, with
and without the shared-prompt cache.

Run from the repository root::

    python benchmarks/bench_generative_pair_score.py [--model qwen2.5-vl] [--captions 5] [--repeats 5]

It loads the tiny checkpoint the tests use (``tests/data/official/<family>/``, widths of 32) through
``create_model`` (``--frames`` and, for Qwen2.5-VL, ``--size`` lengthen the prompt) and scores clips against ``--captions`` captions each, the
way the encoder calls ``score``:

- ``likelihood, prompt cached``: the prompt with the video runs once per clip, its KV cache is
  repeated for the captions and the captions run as one batch (the default);
- ``likelihood, full sequences``: every (prompt + caption) sequence runs in full, the video
  encoded once per caption;
- ``letter``: one prompt per clip listing every caption as an option; one forward.

It prints the min and median of ``--repeats`` runs (after one warm-up) in ms per (clip, caption)
pair, and checks that the cached and the full scores agree. On a tiny model the vision tower is
cheap, so the cache's gain here is a floor: with a real model the video's share of the prompt
(hundreds of tokens per frame) grows and so does the gain. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from instract_eval.adapters import create_model

ROOT = Path(__file__).resolve().parents[1]
TINY = {"qwen2.5-vl": ("qwen2_5_vl/qwen2_5_vl-tiny", {"frames": 4, "size": 32}),
        "internvl3": ("internvl3/internvl3-tiny", {"frames": 4})}
CAPTIONS = ["a person cuts an onion on a board", "someone opens a jar slowly", "a hand pours water into a cup",
            "the person folds a towel twice", "someone stirs the soup with a spoon", "a knife slices bread",
            "the jar is closed again", "a cup is put down on the table"]


def _time(model, clips, captions, repeats):
    with torch.inference_mode():
        model.score(clips, [captions] * len(clips))  # warm-up
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            scores = model.score(clips, [captions] * len(clips))
            runs.append((time.perf_counter() - start) * 1000 / (len(clips) * len(captions)))
    return min(runs), statistics.median(runs), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(TINY), default="qwen2.5-vl")
    parser.add_argument("--captions", type=int, default=5)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=4, help="frames per clip (more: a longer prompt)")
    parser.add_argument("--size", type=int, default=32, help="frame side for qwen2.5-vl (a multiple of 16)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder, extra = TINY[args.model]
    extra = {**extra, "frames": args.frames}
    side = 32
    if args.model == "qwen2.5-vl":
        extra["size"] = side = args.size
    checkpoint = ROOT / "tests" / "data" / "official" / folder
    captions = (CAPTIONS * 4)[:args.captions]
    clips = torch.randn(args.clips, args.frames, 3, side, side, generator=torch.Generator().manual_seed(0))
    rows, results = [], {}
    for label, kwargs in (("likelihood, prompt cached", {"reuse_prefix": True}),
                          ("likelihood, full sequences", {"reuse_prefix": False}),
                          ("letter", {"protocol": "letter"})):
        model = create_model(args.model, checkpoint=str(checkpoint), **extra, **kwargs).eval()
        best, median, scores = _time(model, clips, captions, args.repeats)
        results[label] = scores
        rows.append((label, best, median))
    torch.testing.assert_close(results["likelihood, prompt cached"], results["likelihood, full sequences"],
                               rtol=0, atol=1e-4)
    prompt = create_model(args.model, checkpoint=str(checkpoint), **extra).prompt_inputs(clips[0], "?")
    print(f"{args.model} (tiny), {args.clips} clips of {args.frames} frames ({prompt['input_ids'].shape[1]} prompt "
          f"tokens) x {args.captions} captions, 1 thread, ms per (clip, caption):")
    for label, best, median in rows:
        print(f"  {label:<28} min {best:7.2f}   median {median:7.2f}")


if __name__ == "__main__":
    main()
