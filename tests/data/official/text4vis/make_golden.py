"""Regenerate the Text4Vis test data from the official code (whwu95/Text4Vis).

Run with the reference virtualenv, from the repository root:

    /work/refenv/bin/python tests/data/official/text4vis/make_golden.py --official /work/ref/Text4Vis

The base CLIP Text4Vis starts from (whose text tower builds the class classifier, so the adapter
needs it as clip_checkpoint) is the tiny OpenAI TorchScript archive of the CLIP test data,
tests/data/official/clip/ViT-T-8.pt (embed 32, ViT width 64 x 2 layers, patch 8 on 32 px, text width
64 x 2 layers, context 77, the real 49,408-token vocabulary); it is read, not written.

It writes, next to this file:
  k400-vitb-16-f8.pt   a tiny checkpoint in the layout the official train.py saves
  golden.safetensors   frames, embeddings and class logits computed by the official modules

Nothing official is copied here: the official modules are imported from the checkout given by
--official, and only their entry points are called.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE_CLIP = HERE.parent / "clip" / "ViT-T-8.pt"

IMAGE = 32  # the base file's input resolution
NUM_FRAMES = 8
NUM_VIDEOS = 3
LOGIT_SCALE = 3.3  # deliberately not log(100): the official score uses a fixed 100, not this parameter

CAPTIONS = [
    "A man is playing the GUITAR on stage.",
    "someone's slicing onions, quickly!",
    "Dog runs (fast) across the park; it's sunny?",
    "The chef carefully chops fresh vegetables, stirs the bubbling soup, tastes it with a wooden spoon, "
    "adds a pinch of salt and pepper, wipes the counter, washes every single dish in the sink, dries "
    "them with a towel, sets the long table for twelve hungry guests, lights the candles, and finally "
    "serves dinner while the music plays softly in the background of the crowded little restaurant.",
]
TEMPLATE = "a video of a person {}."  # modules/text_prompt.py


def install_stubs(official: Path) -> None:
    """Modules the official imports name but the functions used here never touch."""
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    import packaging.version

    pkg = types.ModuleType("pkg_resources")  # clip/clip.py only reads pkg_resources.packaging
    pkg.packaging = packaging
    sys.modules.setdefault("pkg_resources", pkg)
    sys.modules.setdefault("decord", types.ModuleType("decord"))  # video decoding (datasets.py)
    torchnet = types.ModuleType("torchnet")  # ActivityNet mAP meter (utils/utils.py)
    torchnet.meter = types.ModuleType("torchnet.meter")
    sys.modules.setdefault("torchnet", torchnet)
    sys.path.insert(0, str(official))


def randomise(module, seed: int) -> None:
    """Non-trivial random values for every floating tensor, so that wrong wiring shows."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(LOGIT_SCALE)
            elif p.ndim == 1 and name.endswith("weight"):  # LayerNorm gains
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1 and name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:  # class embedding
                p.copy_(torch.randn(p.shape, generator=gen) * p.shape[0] ** -0.5)
            elif "embedding" in name:  # token / positional / frame-position tables
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith("proj") or name.endswith("text_projection"):  # used as x @ P
                p.copy_(torch.randn(p.shape, generator=gen) * p.shape[0] ** -0.5)
            else:  # Linear / Conv / attention weights, fan-in scaled
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * fan_in ** -0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="checkout of whwu95/Text4Vis")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--clip-base", type=Path, default=BASE_CLIP, help="OpenAI-format base CLIP file")
    args = parser.parse_args()
    install_stubs(args.official)

    import torch
    import yaml
    from dotmap import DotMap
    from safetensors.torch import save_file

    import clip
    import train as official_train
    from modules import text_prompt as official_prompt
    from modules.video_clip import VideoCLIP, video_header
    from utils.solver import _lr_scheduler

    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    base_path = args.clip_base.resolve()
    ckpt_path = args.out / "k400-vitb-16-f8.pt"

    with open(args.official / "configs/k400/k400_train_rgb_vitb-16-f8.yaml") as f:
        config = DotMap(yaml.load(f, Loader=yaml.FullLoader))
    config.data.num_segments = NUM_FRAMES

    def build():
        model, clip_state_dict = clip.load(
            str(base_path), device="cpu", jit=False, internal_modeling=config.network.tm,
            T=config.data.num_segments, dropout=config.network.drop_out,
            emb_dropout=config.network.emb_dropout, pretrain=config.network.init,
            joint_st=config.network.joint_st)
        head = video_header(config.network.sim_header, clip_state_dict)
        model = model.float()  # train.py / test.py with --precision amp
        return model, head

    # ---- "training": the fine-tuned visual tower, fusion transformer and logit scale -------------
    model, head = build()
    model_full = VideoCLIP(model, head, config.data.num_segments)
    randomise(model_full, seed=2)
    clip_params, other_params = [], []
    for name, param in model_full.named_parameters():  # the grouping train.py uses
        if "visual" in name and "control_point" not in name:
            clip_params.append(param)
        elif "logit_scale" in name:
            clip_params.append(param)
        else:
            other_params.append(param)
    optimizer = torch.optim.AdamW(
        [{"params": clip_params, "lr": config.solver.lr * config.solver.clip_ratio},
         {"params": other_params, "lr": config.solver.lr}],
        betas=(0.9, 0.999), lr=config.solver.lr, eps=1e-8, weight_decay=config.solver.weight_decay)
    lr_scheduler = _lr_scheduler(config, optimizer)
    gen = torch.Generator().manual_seed(3)
    for p in model_full.parameters():  # one step, so the optimizer state holds real moments
        p.grad = 1e-3 * torch.randn(p.shape, generator=gen)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # keep the parameters non-trivial after the step
        model_full.logit_scale.fill_(LOGIT_SCALE)
    official_train.epoch_saving(29, model_full, optimizer, str(ckpt_path))

    # ---- evaluation exactly as test.py does it ----------------------------------------------------
    model, head = build()
    model_full = VideoCLIP(model, head, config.data.num_segments)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model_full.load_state_dict(official_train.update_dict(checkpoint["model_state_dict"]))
    model_full.eval()
    model.eval()

    official_prompt.clip.tokenize = _truncating(official_prompt.clip.tokenize)
    fake_data = types.SimpleNamespace(classes=[[i, c] for i, c in enumerate(CAPTIONS)])
    classes, _, _ = official_prompt.text_prompt(fake_data)

    gen = torch.Generator().manual_seed(4)
    frames = torch.randn(NUM_VIDEOS, NUM_FRAMES, 3, IMAGE, IMAGE, generator=gen)
    with torch.no_grad():
        text_features = model.encode_text(classes)
        b, t, c, h, w = frames.shape
        image_features = model_full.encode_image(frames.view(-1, c, h, w))
        v = image_features / image_features.norm(dim=-1, keepdim=True)
        tt = text_features / text_features.norm(dim=-1, keepdim=True)
        similarity = 100.0 * v @ tt.T  # test.py: class logits before the softmax

    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    meta = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/whwu95/Text4Vis",
        "commit": commit,
        "score": "100 * cosine(video, class text) (fixed 100, not exp(logit_scale)); test.py then softmaxes",
        "normalized": "false",
        "frames_layout": "B,T,C,H,W",
        "text_template": TEMPLATE,
        "text_truncation": "official clip.tokenize raises past 77 tokens; golden uses truncate=True "
                           "(first 77 tokens, last one replaced by end-of-text)",
        "num_frames": str(NUM_FRAMES),
        "checkpoint": ckpt_path.name,
        "clip_checkpoint": "../clip/ViT-T-8.pt",
        "clip_checkpoint_sha256": hashlib.sha256(base_path.read_bytes()).hexdigest(),
    }
    tensors = {
        "frames": frames.float().contiguous(),
        "video_embeddings": image_features.float().contiguous(),
        "text_embeddings": text_features.float().contiguous(),
        "similarity": similarity.float().contiguous(),
        "token_ids": classes.to(torch.int64).contiguous(),
    }
    save_file(tensors, str(args.out / "golden.safetensors"), metadata=meta)
    print("wrote", ckpt_path, args.out / "golden.safetensors")
    print("similarity\n", similarity)


def _truncating(tokenize):
    def wrapped(texts, context_length=77, truncate=False):
        return tokenize(texts, context_length=context_length, truncate=True)
    return wrapped


if __name__ == "__main__":
    main()
