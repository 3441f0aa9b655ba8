"""Regenerate the ViFi-CLIP test data from the official code (muzairkhattak/ViFi-CLIP).

The base CLIP ViFi-CLIP starts from (whose token embedding the text side uses: the fine-tuned
checkpoint does not keep it) is the tiny OpenAI TorchScript archive of the CLIP test data,
tests/data/official/clip/ViT-T-8.pt; it is read, not written. Run with the reference virtualenv,
from the repository root:

    /work/refenv/bin/python tests/data/official/vifi_clip/make_golden.py --official /work/ref/ViFi-CLIP

It writes, next to this file:
  vifi_clip_10_epochs_k400_full_finetuned.pth   a tiny checkpoint saved by the official
                                                utils/tools.epoch_saving (model + yacs config + ...)
  golden.safetensors                            frames, embeddings and logits from the official model

Nothing official is copied here: the official modules are imported from the checkout given by
--official, and only their entry points are called.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE_CLIP = HERE.parent / "clip" / "ViT-T-8.pt"
CKPT_NAME = "vifi_clip_10_epochs_k400_full_finetuned.pth"  # the name the official notebook loads
CONFIG = "configs/zero_shot/train/k400/16_16_vifi_clip.yaml"  # the released K400 ViFi-CLIP model
NUM_FRAMES = 4  # the model has no temporal parameters; released models use 32
NUM_VIDEOS = 3
IMAGE = 32
LOGIT_SCALE = 3.9  # exp = 49.4, so a score that ignores the learnt scale shows
TRAIN_CLASSES = ["abseiling", "air drumming", "answering questions", "applauding", "applying cream"]

CAPTIONS = [
    "A man is playing the GUITAR on stage.",
    "someone's slicing onions, quickly!",
    "Dog runs (fast) across the park; it's sunny?",
    "The chef carefully chops fresh vegetables, stirs the bubbling soup, tastes it with a wooden spoon, "
    "adds a pinch of salt and pepper, wipes the counter, washes every single dish in the sink, dries "
    "them with a towel, sets the long table for twelve hungry guests, lights the candles, and finally "
    "serves dinner while the music plays softly in the background of the crowded little restaurant.",
]


def install_stubs(official: Path) -> None:
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, str(official))


def randomise(module, seed: int) -> None:
    """Non-trivial random values for every parameter, so that wrong wiring shows."""
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
            elif "embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith("proj") or name.endswith("text_projection"):  # used as x @ P
                p.copy_(torch.randn(p.shape, generator=gen) * p.shape[0] ** -0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * p[0].numel() ** -0.5)


class _DistributedLike(__import__("torch").nn.Module):
    """Stands in for DistributedDataParallel: same `module.` key prefix, no process group."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="checkout of muzairkhattak/ViFi-CLIP")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--clip-base", type=Path, default=BASE_CLIP, help="OpenAI-format base CLIP file")
    args = parser.parse_args()
    args.clip_base = args.clip_base.resolve()
    official = args.official.resolve()
    install_stubs(official)

    import torch
    from safetensors.torch import save_file

    from clip import clip as official_clip
    from trainers import vificlip
    from utils.config import get_config
    from utils.optimizer import build_optimizer, build_scheduler
    from utils.tools import epoch_saving

    torch.manual_seed(0)
    logger = logging.getLogger("vifi-golden")
    # the official loader downloads ViT-B/16; point it at the tiny base file instead
    official_clip._download = lambda url, root=None: str(args.clip_base)
    # the official tokenizer raises past 77 tokens; the golden uses CLIP's own truncation instead
    plain_tokenize = official_clip.tokenize
    official_clip.tokenize = lambda texts, context_length=77, truncate=False: plain_tokenize(
        texts, context_length=context_length, truncate=True)

    cwd = os.getcwd()
    os.chdir(official)  # get_config resolves the yaml's BASE entries relative to the file
    try:
        opts = types.SimpleNamespace(config=CONFIG, opts=None, batch_size=None, pretrained=None,
                                     resume=None, accumulation_steps=None, output="exp", only_test=False,
                                     local_rank=0)
        config = get_config(opts)
    finally:
        os.chdir(cwd)

    def build(class_names):
        model = vificlip.returnCLIP(config, logger=logger, class_names=class_names)
        # The official modules record dtype=float16 at build time and cast activations to it; on a GPU
        # apex/autocast absorbs that, on CPU fp16 x fp32 matmuls fail. Reference arithmetic is fp32.
        model.dtype = torch.float32
        model.text_encoder.dtype = torch.float32
        return model

    # ---- "training" ------------------------------------------------------------------------------
    model = build(TRAIN_CLASSES)
    randomise(model, seed=2)
    wrapped = _DistributedLike(model)
    optimizer = build_optimizer(config, wrapped)
    lr_scheduler = build_scheduler(config, optimizer, 10)
    gen = torch.Generator().manual_seed(3)
    for p in model.parameters():
        p.grad = 1e-3 * torch.randn(p.shape, generator=gen)
    optimizer.step()
    lr_scheduler.step_update(1)
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        model.logit_scale.fill_(LOGIT_SCALE)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        epoch_saving(config, 9, wrapped, 71.2, optimizer, lr_scheduler, logger, tmp, False)
        shutil.move(os.path.join(tmp, "ckpt_epoch_9.pth"), args.out / CKPT_NAME)

    # ---- evaluation as the official notebook loads a released checkpoint ------------------------
    model = build(CAPTIONS)
    checkpoint = torch.load(args.out / CKPT_NAME, map_location="cpu", weights_only=False)
    state = checkpoint["model"]
    for key in ("module.prompt_learner.token_prefix", "module.prompt_learner.token_suffix",
                "module.prompt_learner.complete_text_embeddings"):
        state.pop(key, None)
    state = {k[len("module."):]: v for k, v in state.items()}
    msg = model.load_state_dict(state, strict=False)
    assert msg.missing_keys == ["prompt_learner.complete_text_embeddings"] and not msg.unexpected_keys, msg
    model.eval()

    gen = torch.Generator().manual_seed(4)
    frames = torch.randn(NUM_VIDEOS, NUM_FRAMES, 3, IMAGE, IMAGE, generator=gen)
    with torch.no_grad():
        logits = model(frames)
        b, t, c, h, w = frames.shape
        video = model.image_encoder(frames.reshape(-1, c, h, w)).view(b, t, -1).mean(dim=1)
        text = model.text_encoder(model.prompt_learner(), model.tokenized_prompts)
        check = model.logit_scale.exp() * (video / video.norm(dim=-1, keepdim=True)) @ (
            text / text.norm(dim=-1, keepdim=True)).T
    assert torch.allclose(check, logits, atol=1e-5), (check, logits)

    commit = subprocess.run(["git", "-C", str(official), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    meta = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/muzairkhattak/ViFi-CLIP",
        "commit": commit,
        "score": "exp(logit_scale) * cosine(mean of per-frame CLIP image features, text feature)",
        "normalized": "false",
        "frames_layout": "B,T,C,H,W",
        "text_template": config.TRAINER.ViFi_CLIP.CTX_INIT + " {}.",
        "text_truncation": "official clip.tokenize raises past 77 tokens; golden uses truncate=True "
                           "(first 77 tokens, last one replaced by end-of-text)",
        "num_frames": str(NUM_FRAMES),
        "logit_scale": repr(float(model.logit_scale.detach())),
        "checkpoint": CKPT_NAME,
        "clip_checkpoint": "../clip/ViT-T-8.pt",
        "clip_checkpoint_sha256": hashlib.sha256(args.clip_base.read_bytes()).hexdigest(),
    }
    tensors = {
        "frames": frames.contiguous(),
        "video_embeddings": video.float().contiguous(),
        "text_embeddings": text.float().contiguous(),
        "similarity": logits.float().contiguous(),
        "token_ids": model.tokenized_prompts.to(torch.int64).contiguous(),
    }
    save_file(tensors, str(args.out / "golden.safetensors"), metadata=meta)
    print("wrote", args.out / CKPT_NAME, args.out / "golden.safetensors")
    print("similarity\n", logits)


if __name__ == "__main__":
    main()
