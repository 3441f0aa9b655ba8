"""Regenerate the VideoMAE golden data in this folder, in two parts.

    python tests/data/official/videomae/make_golden.py
    /work/refenv/bin/python tests/data/official/videomae/make_golden.py --official /work/ref/VideoMAEv2
    /work/refenv/bin/python tests/data/official/videomae/make_golden.py --processor

The first part's reference is transformers (5.23.0, torch 2.13.0 CPU): ``VideoMAEForVideoClassification``
and ``VideoMAEForPreTraining``, the classes the ``MCG-NJU/videomae-*`` directories load with. It writes
two tiny ``save_pretrained`` directories and ``golden.safetensors``.

The second part's reference is the official VideoMAE V2 code, github.com/OpenGVLab/VideoMAEv2
(``models/modeling_finetune.py``, ``VisionTransformer.forward_features``, the function
``extract_tad_feature.py`` calls), checked out at the commit in the metadata and run out of tree in the
reference virtualenv (torch only). It imports three helpers from timm (``drop_path``, ``to_2tuple``,
``trunc_normal_``) and timm's ``register_model`` decorator; timm is not installed there, so a stub
module gives those four (the first three as torch one-liners; none of them changes inference: drop
path is off in eval, ``trunc_normal_`` only initialises weights we overwrite). It writes a tiny
fine-tuned checkpoint in the official format (``torch.save({'module': state_dict})``, the keys
``extract_tad_feature.py`` unwraps) and ``golden_official.safetensors``. Deterministic: fixed seeds, CPU,
float32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
FINETUNED = "videomae-tiny-finetuned-32"
PRETRAINED = "videomae-tiny-32"
OFFICIAL_FILE = "vit_tiny_patch8_32_k710_ft.pth"
SEED = 20261204
PREPROCESSOR = {   # the published MCG-NJU form (legacy feature extractor), at 32 px
    "do_center_crop": True, "do_normalize": True, "do_resize": True, "feature_extractor_type": "VideoMAEFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 2,
    "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial random weights: norm scales near 1, random biases, matrices ~ 1/sqrt(fan-in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim == 1 and leaf == "weight":
                p.copy_(1.0 + 0.2 * noise)
            elif p.ndim == 1:                                      # biases, q_bias, v_bias, mask token rows
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / math.sqrt(p[0].numel()))


def hugging_face(out: Path) -> None:
    import transformers
    from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEForVideoClassification

    sizes = dict(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=64)
    for name in (FINETUNED, PRETRAINED):
        if (out / name).exists():
            shutil.rmtree(out / name)
    torch.manual_seed(SEED)
    finetuned = VideoMAEForVideoClassification(VideoMAEConfig(**sizes, use_mean_pooling=True,
                                                              id2label={0: "a", 1: "b", 2: "c"})).eval()
    randomize(finetuned, SEED)
    finetuned.save_pretrained(str(out / FINETUNED))
    torch.manual_seed(SEED + 1)
    pretrained = VideoMAEForPreTraining(VideoMAEConfig(**sizes, use_mean_pooling=False, decoder_hidden_size=16,
                                                       decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                                       decoder_intermediate_size=32)).eval()
    randomize(pretrained, SEED + 1)
    pretrained.save_pretrained(str(out / PRETRAINED))
    for name in (FINETUNED, PRETRAINED):
        (out / name / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")

    finetuned = VideoMAEForVideoClassification.from_pretrained(str(out / FINETUNED), local_files_only=True).eval()
    pretrained = VideoMAEForPreTraining.from_pretrained(str(out / PRETRAINED), local_files_only=True).eval()
    gen = torch.Generator().manual_seed(SEED)
    frames = torch.randn(3, 4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        tokens = finetuned.videomae(pixel_values=frames).last_hidden_state
        features = finetuned.fc_norm(tokens.mean(1))
        logits = finetuned(pixel_values=frames).logits
        assert torch.allclose(finetuned.classifier(features), logits, atol=1e-6)   # the classifier's own input
        pretrained_features = pretrained.videomae(pixel_values=frames).last_hidden_state.mean(1)
    tensors = {"frames": frames, "features": features, "logits": logits, "pretrained_features": pretrained_features}
    metadata = {
        "checkpoint": FINETUNED, "pretrained_checkpoint": PRETRAINED,
        "repository": "https://github.com/huggingface/transformers (VideoMAEForVideoClassification, "
                      "VideoMAEForPreTraining; weights converted from https://github.com/MCG-NJU/VideoMAE)",
        "commit": f"transformers=={transformers.__version__}, torch=={torch.__version__}",
        "features": "fine-tuned: fc_norm(mean over tokens of videomae(...).last_hidden_state), the classifier's input; "
                    "pre-trained: mean over tokens (after the encoder's final LayerNorm)",
        "frames_layout": "B,T,3,H,W, already normalised",
        "seed": str(SEED),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "golden.safetensors"), metadata=metadata)
    print(f"[hf] features {list(features.shape)}; logits\n{logits}")


def stub_timm() -> None:
    """The four timm names modeling_finetune.py imports (timm is not installed in the reference venv)."""
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")

    def drop_path(x, drop_prob=0.0, training=False):
        if drop_prob == 0.0 or not training:
            return x
        raise RuntimeError("drop path is not used at inference")

    layers.drop_path = drop_path
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (list, tuple)) else (x, x)
    layers.trunc_normal_ = lambda tensor, mean=0.0, std=1.0: torch.nn.init.trunc_normal_(tensor, mean=mean, std=std)
    registry.register_model = lambda fn: fn
    timm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})


def official(out: Path, repo: Path) -> None:
    from functools import partial

    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    stub_timm()
    sys.path.insert(0, str(repo / "models"))
    import modeling_finetune as mf

    torch.manual_seed(SEED + 2)
    # vit_giant_patch14_224's recipe at tiny sizes: qkv_bias, LayerNorm eps 1e-6, mean pooling, as
    # extract_tad_feature.py builds it (num_classes 710 there; 5 here), 4 frames of 32 px, tubelet 2.
    model = mf.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0,
                                 qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_classes=5,
                                 all_frames=4, tubelet_size=2, drop_path_rate=0.3, use_mean_pooling=True).eval()
    randomize(model, SEED + 2)
    torch.save({"module": model.state_dict()}, str(out / OFFICIAL_FILE))
    model.load_state_dict(torch.load(str(out / OFFICIAL_FILE), map_location="cpu")["module"])
    gen = torch.Generator().manual_seed(SEED + 2)
    frames = torch.rand(3, 4, 3, 32, 32, generator=gen)         # [0, 1], not normalised, as the TAD script
    with torch.no_grad():
        features = model.forward_features(frames.permute(0, 2, 1, 3, 4))   # the official layout B,3,T,H,W
        logits = model(frames.permute(0, 2, 1, 3, 4))
    metadata = {
        "checkpoint": OFFICIAL_FILE,
        "repository": "https://github.com/OpenGVLab/VideoMAEv2 (models/modeling_finetune.py)",
        "commit": commit,
        "torch": torch.__version__,
        "features": "VisionTransformer.forward_features(frames as B,3,T,H,W) = fc_norm(mean over tokens)",
        "frames_layout": "B,T,3,H,W in [0, 1] (permuted to B,3,T,H,W for the official model)",
        "sizes": "img 32, patch 8, embed 32, depth 2, heads 4, mlp_ratio 2, 4 frames, tubelet 2, 5 classes",
        "seed": str(SEED + 2),
    }
    save_file({"frames": frames.contiguous(), "features": features.contiguous(), "logits": logits.contiguous()},
              str(out / "golden_official.safetensors"), metadata=metadata)
    print(f"[official] {commit}: features {list(features.shape)}; keys {sorted(model.state_dict())[:6]} ...")


def processor(out: Path) -> None:
    """The published processor on a small uint8 clip: ``VideoMAEImageProcessorPil`` (Pillow, no torchvision)
    read from the tiny directory's ``preprocessor_config.json``; run in the reference virtualenv (the
    product installs no Pillow), so the product's test compares its own pipeline with the stored output."""
    import numpy as np
    import transformers
    from transformers.models.videomae import VideoMAEImageProcessorPil

    gen = torch.Generator().manual_seed(SEED + 3)
    y, x = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing="ij")
    base = torch.stack([y, x, (x + y) / 2], dim=-1) * 200
    clip = (base[None] + 40 * torch.rand(4, 48, 64, 3, generator=gen)).clamp(0, 255).round().to(torch.uint8)
    proc = VideoMAEImageProcessorPil.from_pretrained(str(out / FINETUNED))
    pixels = proc([np.asarray(frame) for frame in clip.numpy()], return_tensors="pt")["pixel_values"][0]
    save_file({"clip": clip.contiguous(), "pixel_values": pixels.contiguous()}, str(out / "processor_check.safetensors"),
              metadata={"processor": f"{type(proc).__name__} from {FINETUNED}/preprocessor_config.json",
                        "commit": f"transformers=={transformers.__version__}", "clip_layout": "T,H,W,3 uint8",
                        "pixel_values_layout": "T,3,H,W float32"})
    print(f"[processor] {type(proc).__name__}: {list(clip.shape)} -> {list(pixels.shape)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None,
                        help="a checkout of github.com/OpenGVLab/VideoMAEv2: write the official-format part")
    parser.add_argument("--processor", action="store_true",
                        help="write processor_check.safetensors with the published processor (needs Pillow)")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.processor:
        processor(args.out)
    elif args.official is not None:
        official(args.out, args.official)
    else:
        hugging_face(args.out)


if __name__ == "__main__":
    main()
