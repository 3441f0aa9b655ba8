"""Time InstrAction training steps (forward, backward, AdamW) at the synthetic size and the release's size.

Run from the repository root::

    python benchmarks/bench_train_instraction.py [--size synth|official|both] [--batch-size N] [--repeats 5]

``synth`` is the model of ``examples/train/instraction-synth.yaml`` (a 3-block, 64-wide ViCLIP on 8
frames of 32 px, 32-wide text, K = 4 action tokens) with its full loss (VTC + hard negatives + DTW
+ MAM) and the release's fine-tuning policy. ``official`` is
the release's model (ViCLIP-B/16 on 16 frames of 224 px, 12-block text, K = 8, decoder depth 2)
built randomly ("null" weights: the time of a step does not depend on their values) on random
inputs in the release's batch layout. Both use the recipe's own module, parameter groups and
optimizer settings, so this is the loop's step minus data loading.

It prints the min and median seconds per step of ``--repeats`` steps after one warm-up, steps/s
and clips/s. The release trains batch 72 on GPUs; on a CPU the official size is measured at a
small batch (default 2). Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from instract_eval.training.config import load_config
from instract_eval.training.recipe import get_recipe

ROOT = Path(__file__).resolve().parents[1]
SYNTH_CONFIG = ROOT / "examples" / "train" / "instraction-synth.yaml"


def null_batch(config, batch_size: int) -> dict[str, torch.Tensor]:
    """Random inputs in the release's batch layout (every hard-negative slot and verb row filled)."""
    generator = torch.Generator().manual_seed(0)
    rows = config.text_rows
    text = torch.randint(1, 49_000, (batch_size, rows, config.context_length), generator=generator)
    text[:, :, 0], text[:, :, -1] = 49_406, 49_407
    mask = torch.zeros(batch_size, config.context_length, dtype=torch.bool)
    mask[:, 3:5] = True
    return {"idx": torch.arange(batch_size),
            "video": torch.randn(batch_size, 3, config.num_frames, config.image_size, config.image_size,
                                 generator=generator),
            "text": text, "text_mask": torch.zeros(batch_size, config.max_negatives + 1, 1, dtype=torch.long),
            "num_verbs": torch.full((batch_size,), config.max_verbs), "action_mask": mask}


def time_steps(size: str, batch_size: int, repeats: int) -> list[float]:
    recipe = get_recipe("instraction")
    path = SYNTH_CONFIG if size == "synth" else None
    train, config = load_config(path, model_class=recipe.model_config, default_train=recipe.default_train)
    net = recipe.build(config)
    groups = recipe.parameter_groups(net, config)
    optimizer = torch.optim.AdamW([{"params": g.params, "lr": train.lr * g.lr_scale} for g in groups],
                                  betas=train.betas, eps=train.eps, weight_decay=train.weight_decay)
    batch = null_batch(config, batch_size)
    net.train()
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        net(batch)["total"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g.params], train.grad_clip)
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("synth", "official", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 (synth), 2 (official)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for size in (("synth", "official") if args.size == "both" else (args.size,)):
        batch = args.batch_size or (32 if size == "synth" else 2)
        seconds = time_steps(size, batch, args.repeats)
        median = statistics.median(seconds)
        print(f"{size:>8}: batch {batch:3d}  min {min(seconds):.3f} s  median {median:.3f} s per step  "
              f"{1 / median:.2f} steps/s  {batch / median:.1f} clips/s")


if __name__ == "__main__":
    main()
