"""Time the TAL heads: inference per video at THUMOS14 length, and training steps at the synthetic size.

Run from the repository root::

    python benchmarks/bench_tal_heads.py [--heads actionformer,tridet] [--repeats 5] [--threads 2]

Inference: each head at the release's THUMOS14 I3D size (2048-d input, 512 channels, 6 pyramid
levels, window 19 for ActionFormer; TriDet's SGP backbone), random ("null") weights, on one
video of 2,304 features (the release's ``max_seq_len``: about 5 minutes at 30 fps, stride 4),
through ``detect`` (network, per-level candidates, Soft-NMS, seconds): what the localization engine
calls per video. Training: one optimizer step (forward, backward, AdamW) of the recipe's module at
the size of ``examples/train/<head>-synth.yaml`` on a batch of 8 random sequences of 39 features
with two actions each. It prints min and median seconds over ``--repeats`` after one warm-up, and
the rates. Measure on a quiet machine.
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
THUMOS_LENGTH = 2304


def timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def head_net(name: str, *, input_dim: int, num_classes: int, config_path: Path | None):
    """The recipe's network (and its trainer module) at the config's size, random weights."""
    recipe = get_recipe(name)
    train, config = load_config(config_path, model_class=recipe.model_config, default_train=recipe.default_train)
    # the recipe learns the classes and the input width from its data (training_items); no data here
    recipe._input_dim, recipe._classes = input_dim, tuple(f"class {i}" for i in range(num_classes))
    module = recipe.build(config)
    return recipe, train, config, module


def inference_seconds(name: str, repeats: int) -> list[float]:
    from instract_eval.adapters.tal.actionformer import InferenceConfig

    _, _, _, module = head_net(name, input_dim=2048, num_classes=20, config_path=None)
    net = getattr(module, "net", module).eval()
    feats = torch.randn(THUMOS_LENGTH, 2048)
    config = InferenceConfig()
    with torch.inference_mode():
        return timed(lambda: net.detect(feats, fps=30.0, feat_stride=4, num_frames=16, duration=THUMOS_LENGTH * 4 / 30,
                                        config=config), repeats)


def train_seconds(name: str, repeats: int) -> list[float]:
    path = ROOT / "examples" / "train" / f"{name}-synth.yaml"
    recipe, train, config, module = head_net(name, input_dim=96, num_classes=12, config_path=path)
    groups = recipe.parameter_groups(module, config)
    optimizer = torch.optim.AdamW([{"params": g.params, "lr": train.lr * g.lr_scale} for g in groups])
    generator = torch.Generator().manual_seed(0)
    examples = [{"feats": torch.randn(39, 96, generator=generator),
                 "segments": torch.tensor([[3.0, 9.0], [20.0, 31.0]]), "labels": torch.tensor([1, 5])}
                for _ in range(8)]
    batch = recipe.collate(examples)
    module.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        module(batch)["total"].backward()
        optimizer.step()
    return timed(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default="actionformer,tridet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for name in args.heads.split(","):
        seconds = inference_seconds(name, args.repeats)
        median = statistics.median(seconds)
        print(f"{name:>12}: inference, one THUMOS14-length video ({THUMOS_LENGTH} features x 2048): "
              f"min {min(seconds) * 1000:.0f} ms, median {median * 1000:.0f} ms ({1 / median:.1f} videos/s)")
        seconds = train_seconds(name, args.repeats)
        median = statistics.median(seconds)
        print(f"{name:>12}: training step at the synthetic size (batch 8): min {min(seconds) * 1000:.0f} ms, "
              f"median {median * 1000:.0f} ms ({1 / median:.1f} steps/s)")


if __name__ == "__main__":
    main()
