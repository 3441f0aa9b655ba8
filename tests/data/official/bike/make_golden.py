"""Write the BIKE golden data from the official code (whwu95/BIKE), out of tree.

Run with the reference virtualenv, never the product one:

    /work/refenv/bin/python tests/data/official/bike/make_golden.py --official /work/ref/BIKE

What it does, in order:

1. builds a tiny random model with the official classes (``clip.model.CLIP`` and
   ``modules.video_clip.video_header`` with ``Transf`` + ``VCS``, the settings of the published
   ``k400-vit-b-16-f8.pt``), takes one AdamW step with the official parameter groups (the text tower
   frozen, as ``fix_text: True`` does) and saves the checkpoint the way ``utils.utils.best_saving``
   does: ``{'epoch', 'model_state_dict', 'fusion_model_state_dict', 'optimizer_state_dict'}``, all
   float32 (``clip.load(device='cpu')`` and ``model.float()`` leave nothing in fp16);
2. reloads that file as ``test.py`` does (``build_model`` on the state dict, ``.float()``,
   ``load_state_dict`` of both dicts) and runs the official inference in eval mode:
   ``encode_text(tokens, return_token=True)``, ``encode_image`` per frame, ``video_head(...)``;
3. writes ``golden.safetensors`` next to this script.

Only import-time dependencies the inference never touches are stubbed (``pkg_resources``,
``PIL``, ``torchvision``: ``clip/clip.py`` imports them for its download and image transforms).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CHECKPOINT_NAME = "k400-vit-t-8-f8.pt"  # published pattern: <dataset>-vit-<size>-<patch>-f<frames>.pt
SEED = 20230226

# Tiny sizes. The official code derives every head count as width // 64, so the widths are 64.
EMBED_DIM = 32
VISION_WIDTH, VISION_LAYERS, PATCH, IMAGE = 64, 1, 8, 32
TEXT_WIDTH, TEXT_LAYERS, CONTEXT = 64, 2, 77
# The token table keeps the real BPE rules but only its first merges: 512 byte symbols, the first
# VOCAB - 514 merges, then <|startoftext|> and <|endoftext|> as the last two rows. With 49408 this is
# exactly OpenAI's tokenizer; the full table at width 64 in float32 would be 12.6 MB.
VOCAB = 1024
FRAMES, BATCH = 8, 3
EPOCH = 26  # the best epoch of exps/k400/ViT-B/16/8f/log.txt (0-based), i.e. what model_best.pt holds

CAPTIONS = [
    "This is a video about abseiling",
    "A chef's hands slice an ONION, then push it aside!",
    "Someone pours water into a glass; the glass overflows.",
    "a person " + " ".join(["folds the towel, unfolds it, and folds it again"] * 8) + " (too long)",
]


def _stub_unused_imports() -> None:
    """clip/clip.py imports these for downloading and PIL transforms; inference never calls them."""

    def module(name: str, **attrs: object) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    import packaging.version

    module("pkg_resources", packaging=types.SimpleNamespace(version=packaging.version))
    image = module("PIL.Image", BICUBIC=3)
    module("PIL", Image=image)
    placeholder = object
    transforms = module(
        "torchvision.transforms",
        Compose=placeholder, Resize=placeholder, CenterCrop=placeholder, ToTensor=placeholder,
        Normalize=placeholder, InterpolationMode=types.SimpleNamespace(BICUBIC=3),
    )
    module("torchvision", transforms=transforms)


def _shrink_tokenizer(tokenizer, vocab_size: int) -> None:
    """Keep the official BPE rules, restricted to the first merges, so every id is < vocab_size."""
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)[: vocab_size - 514]
    symbols = list(tokenizer.byte_encoder.values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == vocab_size
    tokenizer.encoder = {token: i for i, token in enumerate(vocab)}
    tokenizer.decoder = {i: token for token, i in tokenizer.encoder.items()}
    tokenizer.bpe_ranks = {m: i for i, m in enumerate(merges)}
    tokenizer.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}


def _randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial random values: LayerNorm scales around 1, random biases, 1/sqrt(fan-in) weights."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = ".ln_" in f".{name}" or name.startswith("ln_")
            if is_norm and leaf == "weight":
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif leaf == "bias" or leaf.endswith("_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name == "logit_scale":
                p.fill_(math.log(1 / 0.07) + 0.3)
            elif name in ("visual.proj", "text_projection"):  # used as x @ W: fan-in is dim 0
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[0]))
            elif p.ndim >= 2 and "embedding" not in name:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:  # token / positional / class / frame-position embeddings
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def _optimizer_state(model, video_head, gen: torch.Generator) -> dict:
    """One AdamW step with the official groups (utils/solver.py, adamw, lr 5e-5, clip_ratio 0.1)."""
    for name, p in model.named_parameters():  # fix_text: True
        p.requires_grad_("visual" in name or "logit_scale" in name)
    lr, clip_ratio = 5.0e-5, 0.1
    opt = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": lr * clip_ratio}, {"params": video_head.parameters(), "lr": lr}],
        betas=(0.9, 0.999), lr=lr, eps=1e-8, weight_decay=0.2,
    )
    for group in opt.param_groups:  # set by the official warm-up scheduler (_LRScheduler)
        group["initial_lr"] = group["lr"]
    for p in list(model.parameters()) + list(video_head.parameters()):
        if p.requires_grad:
            p.grad = 1e-3 * torch.randn(p.shape, generator=gen)
    opt.step()
    opt.zero_grad(set_to_none=True)
    state = opt.state_dict()
    # torch 1.12.1 (the version in the official training log) writes exactly these group keys.
    keep = ("lr", "betas", "eps", "weight_decay", "amsgrad", "foreach", "maximize", "capturable", "initial_lr",
            "params")
    state["param_groups"] = [{k: g[k] for k in keep if k in g} for g in state["param_groups"]]
    for p in model.parameters():
        p.requires_grad_(True)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="checkout of github.com/whwu95/BIKE")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    _stub_unused_imports()
    sys.path.insert(0, str(args.official.resolve()))
    import clip  # the official package (clip/ in the BIKE repository)
    from clip.model import CLIP, build_model
    from modules.video_clip import video_header

    commit = subprocess.run(
        ["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    # 1. the tiny official model and its checkpoint
    model = CLIP(
        EMBED_DIM, IMAGE, VISION_LAYERS, VISION_WIDTH, PATCH,
        CONTEXT, VOCAB, TEXT_WIDTH, TEXT_WIDTH // 64, TEXT_LAYERS,
        joint=False, tm=False, T=FRAMES, dropout=0.0, emb_dropout=0.0,
    ).float()
    _randomize(model, gen)
    head = video_header("Transf", "VCS", model.state_dict())
    _randomize(head, gen)
    optimizer_state = _optimizer_state(model, head, gen)
    checkpoint = {
        "epoch": EPOCH,
        "model_state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "fusion_model_state_dict": {k: v.detach().clone() for k, v in head.state_dict().items()},
        "optimizer_state_dict": optimizer_state,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / CHECKPOINT_NAME
    torch.save(checkpoint, ckpt_path)

    # 2. reload it the way test.py does and run the official inference
    loaded = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    strip = lambda sd: {k.replace("module.", ""): v for k, v in sd.items()}  # test.update_dict
    model = build_model(dict(strip(loaded["model_state_dict"])), tm=False, T=FRAMES, joint=False).float()
    model.load_state_dict(strip(loaded["model_state_dict"]))
    clip_state = model.state_dict()
    heads = {}
    for sim_header, interaction in (("Transf", "VCS"), ("Transf", "DP"), ("None", "VCS")):
        h = video_header(sim_header, interaction, clip_state)
        if sim_header == "Transf":
            h.load_state_dict(strip(loaded["fusion_model_state_dict"]))
        heads[(sim_header, interaction)] = h.eval()
    model.eval()

    _shrink_tokenizer(clip.clip._tokenizer, VOCAB)
    # test.py tokenizes class prompts with truncate=False (short names); long captions need the
    # official function's own truncate=True (cut to 77, last id replaced by <|endoftext|>).
    tokens = clip.tokenize(CAPTIONS, context_length=CONTEXT, truncate=True)
    assert int(tokens.max()) == VOCAB - 1

    frames = torch.randn((BATCH, FRAMES, 3, IMAGE, IMAGE), generator=gen)
    with torch.no_grad():
        text_cls, text_tokens = model.encode_text(tokens, return_token=True)
        b, t, c, hh, ww = frames.shape
        frame_features = model.encode_image(frames.view(-1, c, hh, ww)).view(b, t, -1)
        video_tokens = heads[("Transf", "VCS")].agg_video_feat(frame_features)
        similarity = heads[("Transf", "VCS")](frame_features, text_tokens, text_cls)
        similarity_dp = heads[("Transf", "DP")](frame_features, text_tokens, text_cls)
        similarity_no_head = heads[("None", "VCS")](frame_features, text_tokens, text_cls)

    tensors = {
        "frames": frames,
        "similarity": similarity,
        "frame_features": frame_features,
        "video_tokens": video_tokens,
        "text_cls": text_cls,
        "text_tokens": text_tokens,
        "similarity_dp": similarity_dp,
        "similarity_no_head": similarity_no_head,
    }
    tensors = {k: v.detach().float().contiguous() for k, v in tensors.items()}
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "token_ids": json.dumps(tokens.tolist()),
        "repository": "https://github.com/whwu95/BIKE",
        "commit": commit,
        "checkpoint": CHECKPOINT_NAME,
        "pair_scorer": "true",
        "score": (
            "video concept spotting (video_header Transf+VCS): per-frame features after the temporal "
            "transformer (+residual) and every text token feature are L2-normalised; frame weights = "
            "softmax over frames of (token . frame) / 0.01, averaged over all 77 token positions; "
            "score = (weighted frame sum) . normalised EOT feature; no logit scale at test time"
        ),
        "normalized": "false",
        "frames_layout": "B,T,C,H,W (CLIP mean/std already applied)",
        "context_length": str(CONTEXT),
        "vocab_size": str(VOCAB),
        "tokenizer": "official CLIP BPE restricted to its first vocab_size-514 merges; truncate=True",
        "official_prompt": "This is a video about {}",
        "logit_scale": repr(float(model.logit_scale.detach())),
        "tensors": (
            "similarity [B,C] = official score; frame_features [B,T,D] = encode_image per frame; "
            "video_tokens [B,T,D] = video_header.agg_video_feat; text_cls [C,D], text_tokens [C,77,D] = "
            "encode_text(return_token=True); similarity_dp = Transf+DP head; similarity_no_head = None+VCS"
        ),
    }
    from safetensors.torch import save_file

    save_file(tensors, str(args.out / "golden.safetensors"), metadata=metadata)
    print(f"wrote {ckpt_path} ({ckpt_path.stat().st_size} bytes) and golden.safetensors; commit {commit}")
    print("similarity", similarity)


if __name__ == "__main__":
    main()
