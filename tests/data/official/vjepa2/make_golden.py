"""Regenerate the V-JEPA 2 golden data in this folder.

    python tests/data/official/vjepa2/make_golden.py

The reference is transformers' ``VJEPA2Model`` and ``VJEPA2ForVideoClassification`` (the classes the
published ``facebook/vjepa2-*`` directories load with; transformers 5.23.0, torch 2.13.0 CPU). They need
no torchvision, so this runs in the product environment; nothing is stubbed. Two tiny directories are
written with ``save_pretrained``: a backbone (encoder + predictor, as the ``vjepa2-vit*-fpc64-*``
repositories) and a probe (backbone + attentive pooler + linear classifier with an ``id2label``, as the
``-ssv2`` repositories). Deterministic: fixed seeds, CPU, float32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKBONE = "vjepa2-tiny-fpc8-32"
PROBE = "vjepa2-tiny-fpc8-32-probe"
SEED = 20261203
LABELS = ["Pushing [something] from left to right", "Pushing [something] from right to left",
          "Lifting [something] up", "Putting [something] down", "Opening [something]", "Closing [something]"]


def tiny_config(**extra):
    from transformers import VJEPA2Config

    return VJEPA2Config(crop_size=32, frames_per_clip=8, patch_size=8, tubelet_size=2, hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2.0, pred_hidden_size=32,
                        pred_num_hidden_layers=1, pred_num_attention_heads=4, pred_num_mask_tokens=2,
                        num_pooler_layers=1, **extra)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial random weights: norm scales near 1, random biases, matrices ~ 1/sqrt(fan-in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim == 1 and leaf == "weight":
                p.copy_(1.0 + 0.2 * noise)
            elif leaf == "bias":
                p.copy_(0.1 * noise)
            elif p.ndim <= 1 or "query_tokens" in name or "mask_tokens" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / math.sqrt(p[0].numel()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import transformers
    from transformers import VJEPA2ForVideoClassification, VJEPA2Model

    for name in (BACKBONE, PROBE):
        if (args.out / name).exists():
            shutil.rmtree(args.out / name)
    torch.manual_seed(SEED)
    backbone = VJEPA2Model(tiny_config()).eval()
    randomize(backbone, SEED)
    backbone.save_pretrained(str(args.out / BACKBONE))
    torch.manual_seed(SEED + 1)
    probe = VJEPA2ForVideoClassification(tiny_config(id2label=dict(enumerate(LABELS)))).eval()
    randomize(probe, SEED + 1)
    probe.save_pretrained(str(args.out / PROBE))

    backbone = VJEPA2Model.from_pretrained(str(args.out / BACKBONE), local_files_only=True).eval()
    probe = VJEPA2ForVideoClassification.from_pretrained(str(args.out / PROBE), local_files_only=True).eval()
    gen = torch.Generator().manual_seed(SEED)
    frames = torch.randn(3, 8, 3, 32, 32, generator=gen)      # already normalised, B,T,3,H,W
    with torch.no_grad():
        tokens = backbone(pixel_values_videos=frames, skip_predictor=True).last_hidden_state
        assert torch.equal(tokens, backbone.get_vision_features(frames))
        probe_tokens = probe.vjepa2(pixel_values_videos=frames, skip_predictor=True).last_hidden_state
        logits = probe(pixel_values_videos=frames).logits
        tokens_16 = backbone(pixel_values_videos=torch.cat([frames, frames.flip(1)], dim=1),
                             skip_predictor=True).last_hidden_state
    print(f"tokens {list(tokens.shape)}; logits\n{logits}")
    tensors = {
        "frames": frames.contiguous(),
        "tokens": tokens.contiguous(),
        "features": tokens.mean(dim=1).contiguous(),
        "probe_features": probe_tokens.mean(dim=1).contiguous(),
        "logits": logits.contiguous(),
        "features_16_frames": tokens_16.mean(dim=1).contiguous(),
    }
    metadata = {
        "checkpoint": BACKBONE,
        "probe": PROBE,
        "labels": json.dumps(LABELS),
        "repository": "https://github.com/huggingface/transformers (VJEPA2Model, VJEPA2ForVideoClassification; "
                      "weights converted from https://github.com/facebookresearch/vjepa2)",
        "commit": f"transformers=={transformers.__version__}, torch=={torch.__version__}",
        "features": "mean over tokens of VJEPA2Model(pixel_values_videos, skip_predictor=True).last_hidden_state",
        "frames_layout": "B,T,3,H,W, already normalised",
        "features_16_frames": "the 8 frames followed by the same 8 reversed",
        "seed": str(SEED),
    }
    save_file(tensors, str(args.out / "golden.safetensors"), metadata=metadata)


if __name__ == "__main__":
    main()
