"""Write the tiny PE-Core checkpoint and the golden outputs of the official perception_models code.

Run out of tree, in the reference environment (never in the product):

    /work/refenv/bin/python tests/data/official/pe_core/make_golden.py --official /work/ref/perception_models

What it does, and why each step:

1. Builds the official ``core.vision_encoder.pe.CLIP`` at a tiny size (the L14/B16/S16/T16 layout:
   class token, 32-token text context), fills every tensor with seeded random values (LayerNorm
   scales around 1, random biases) and saves ``model.state_dict()`` with ``torch.save`` as a flat
   fp32 dict -- the layout the official ``load_ckpt`` reads (``visual.*`` vision keys next to the
   top-level text keys and ``logit_scale``; no wrapper, no ``module.`` prefix).
2. Runs the official encoders on random already-normalised frames and on four captions tokenized
   by the official tokenizer, and stores what the official zero-shot *retrieval* benchmark uses
   (``encode_video(normalize=True)``, ``encode_text(normalize=True)``, raw dot product) plus the
   zero-shot *classification* / demo variant (mean of raw frame features, then L2, 100 * cosine).
3. Derives a G14-layout checkpoint from the same tensors (no class token, 72-token context) and
   stores its outputs with the ``_g`` suffix; the test rebuilds that file with `derive_g_layout`
   rules written in README.md, so no second 2 MB file is committed.
4. Cross-checks the out-of-tree open_clip + timm implementation (``CustomTextCLIP`` around
   ``vit_pe_core_*``, weights converted by timm's own ``checkpoint_filter_fn``) against the
   official outputs, and records the open_clip state-dict layout (key, shape, two checksums) so
   the adapter's open_clip-format loader can be tested without committing a second file.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
CKPT_NAME = "PE-Core-Tiny8-32.pt"
SEED = 20250417

# Tiny sizes. Text width 12 keeps the real 49408-row token embedding at 2.4 MB.
VISION = dict(image_size=32, patch_size=8, width=32, layers=2, heads=4, mlp_ratio=2.5, output_dim=16,
              use_cls_token=True, pool_type="attn", attn_pooler_heads=8)
TEXT = dict(context_length=32, width=12, heads=3, layers=2, output_dim=16, mlp_ratio=4.0, vocab_size=49408)
G_CONTEXT = 72
BATCH, FRAMES = 3, 8
CAPTIONS = [
    "A person slices an onion on a wooden board.",
    "Someone's pouring MILK into a glass, then stirring it!",
    "The chef (wearing a red apron) quickly whisks three eggs, adds salt & pepper, pours the mixture "
    "into a hot pan, folds it twice with a spatula and finally slides the omelette onto a white plate.",
    "close-up: hands tie a shoelace",
]


def stub_unused_imports() -> None:
    """pe.py imports timm's DropPath (only built when drop_path > 0) and config.py hf_hub_download."""
    timm = types.ModuleType("timm")
    layers = types.ModuleType("timm.layers")

    class DropPath(torch.nn.Module):  # never instantiated: drop_path is 0
        def __init__(self, *a, **k):
            raise RuntimeError("DropPath stub used")

    layers.DropPath = DropPath
    timm.layers = layers
    sys.modules["timm"], sys.modules["timm.layers"] = timm, layers
    hub = types.ModuleType("huggingface_hub")

    def hf_hub_download(*a, **k):
        raise RuntimeError("no hub access in make_golden")

    hub.hf_hub_download = hf_hub_download
    sys.modules["huggingface_hub"] = hub
    # transforms.py imports torchvision.transforms only for the image pipeline (not used here).
    tv = types.ModuleType("torchvision")
    tvt = types.ModuleType("torchvision.transforms")
    tvt.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", BICUBIC="bicubic")
    tv.transforms = tvt
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tvt


def unstub() -> None:
    for name in ("timm", "timm.layers", "huggingface_hub", "torchvision", "torchvision.transforms"):
        sys.modules.pop(name, None)


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Seeded, well-scaled random values for every tensor, so a wrong wiring shows in the outputs."""
    with torch.no_grad():
        for name, p in model.state_dict().items():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(t in name for t in ("ln_", "layernorm", "ln_final"))
            if name == "logit_scale":
                p.copy_(torch.tensor(math.log(1 / 0.07) + 0.5))
            elif is_norm and leaf == "weight":
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1 and leaf in ("bias", "in_proj_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name in ("visual.proj", "text_projection"):  # used as x @ proj: [width, out]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[0]))
            elif leaf in ("class_embedding", "positional_embedding", "probe") or name == "token_embedding.weight":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif p.ndim >= 2:  # Linear [out, in] / in_proj [3w, w] / conv [w, 3, p, p]
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                raise RuntimeError(f"unhandled tensor {name} {tuple(p.shape)}")


def derive_g_layout(sd: dict, context: int = G_CONTEXT) -> dict:
    """The G14 layout from the tiny L-layout tensors: no class token, a longer text context.

    Drops ``visual.class_embedding`` and the class row of ``visual.positional_embedding``; tiles
    the text ``positional_embedding`` rows to ``context`` rows. Everything else is shared.
    """
    out = {k: v.clone() for k, v in sd.items() if k != "visual.class_embedding"}
    out["visual.positional_embedding"] = sd["visual.positional_embedding"][1:].clone()
    pos = sd["positional_embedding"]
    reps = -(-context // pos.shape[0])
    out["positional_embedding"] = pos.repeat(reps, 1)[:context].clone()
    return out


def fingerprint(sd: dict) -> dict:
    """Per key: shape, sum and index-weighted sum (float64), enough to tell a permutation."""
    out = {}
    for k, v in sd.items():
        flat = v.detach().double().reshape(-1)
        w = torch.arange(1, flat.numel() + 1, dtype=torch.float64) / flat.numel()
        out[k] = [list(v.shape), float(flat.sum()), float((flat * w).sum())]
    return out


def official_outputs(model, tokens, frames, suffix=""):
    with torch.no_grad():
        t = model.encode_text(tokens, normalize=True)
        v = model.encode_video(frames, normalize=True)  # clip_benchmark zeroshot_retrieval
        raw = model.encode_video(frames)  # clip_benchmark zeroshot_classification / demo
        v_cls = F.normalize(raw, dim=-1)
        b, n = frames.shape[:2]
        frame_raw = model.encode_image(frames.flatten(0, 1)).reshape(b, n, -1)
    return {
        f"text_embeddings{suffix}": t,
        f"video_embeddings{suffix}": v,
        f"similarity{suffix}": v @ t.T,
        f"frame_embeddings{suffix}": frame_raw,
        f"video_embeddings_classification{suffix}": v_cls,
        f"similarity_classification{suffix}": 100.0 * v_cls @ t.T,
        f"text_tokens{suffix}": tokens.to(torch.int64),
    }


def build_official(official: Path):
    sys.path.insert(0, str(official))
    stub_unused_imports()
    import core.vision_encoder.pe as pe  # noqa: E402
    import core.vision_encoder.transforms as transforms  # noqa: E402
    from core.vision_encoder.config import PEConfig, PETextConfig  # noqa: E402
    return pe, transforms, PEConfig, PETextConfig


def open_clip_check(sd_official: dict, official_out: dict, frames, captions, vision_cfg, text_cfg):
    """open_clip + timm on the same weights; returns (max abs diffs, open_clip state-dict layout)."""
    unstub()
    for n in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(n, types.ModuleType(n))
    import open_clip
    import timm
    from open_clip.model import CustomTextCLIP
    from timm.models.eva import checkpoint_filter_fn

    grid = vision_cfg["image_size"] // vision_cfg["patch_size"]
    name = "vit_pe_core_golden_tiny"

    @timm.models.register_model
    def vit_pe_core_golden_tiny(pretrained=False, **kwargs):
        from timm.models.eva import vit_pe_core_tiny_patch16_384
        kw = dict(embed_dim=vision_cfg["width"], depth=vision_cfg["layers"], num_heads=vision_cfg["heads"],
                  patch_size=vision_cfg["patch_size"], img_size=vision_cfg["image_size"],
                  mlp_ratio=vision_cfg["mlp_ratio"], ref_feat_shape=(grid, grid),
                  attn_pool_num_heads=vision_cfg["attn_pooler_heads"])
        kw.update(kwargs)
        return vit_pe_core_tiny_patch16_384(pretrained=False, **kw)

    base = open_clip.get_model_config("PE-Core-B-16")
    vcfg = {**base["vision_cfg"], "timm_model_name": name, "image_size": vision_cfg["image_size"]}
    tcfg = dict(context_length=text_cfg["context_length"], vocab_size=text_cfg["vocab_size"],
                width=text_cfg["width"], heads=text_cfg["heads"], layers=text_cfg["layers"],
                mlp_ratio=text_cfg["mlp_ratio"])
    model = CustomTextCLIP(embed_dim=vision_cfg["output_dim"], vision_cfg=vcfg, text_cfg=tcfg).eval()

    trunk_sd = checkpoint_filter_fn(sd_official, model.visual.trunk)
    text_sd = {f"text.{k}": v for k, v in sd_official.items() if not k.startswith("visual.") and k != "logit_scale"}
    full = {f"visual.trunk.{k}": v for k, v in trunk_sd.items()}
    full.update(text_sd)
    full["logit_scale"] = sd_official["logit_scale"]
    missing, unexpected = model.load_state_dict(full, strict=False)
    missing = [k for k in missing if not k.endswith("attn_mask")]
    assert not missing and not unexpected, (missing, unexpected)
    tok = open_clip.get_tokenizer("PE-Core-B-16")
    tokens = tok(captions)
    assert torch.equal(tokens, official_out["text_tokens"]), "open_clip tokenizer differs from the official one"
    with torch.no_grad():
        t = model.encode_text(tokens, normalize=True)
        b, n = frames.shape[:2]
        f = model.encode_image(frames.flatten(0, 1), normalize=True).reshape(b, n, -1)
        v = f.mean(1)
    diffs = {
        "text": float((t - official_out["text_embeddings"]).abs().max()),
        "video": float((v - official_out["video_embeddings"]).abs().max()),
        "similarity": float((v @ t.T - official_out["similarity"]).abs().max()),
    }
    layout = fingerprint(model.state_dict())
    layout = {k: val for k, val in layout.items() if not k.endswith("attn_mask")}
    return diffs, layout, open_clip.__version__, timm.__version__


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--official", type=Path, required=True, help="perception_models checkout")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--skip-open-clip", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()

    pe, transforms, PEConfig, PETextConfig = build_official(args.official)
    vcfg, tcfg = PEConfig(**VISION), PETextConfig(**TEXT)
    model = pe.CLIP(vcfg, tcfg).eval()
    gen = torch.Generator().manual_seed(SEED)
    randomize(model, gen)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    ckpt = args.out / CKPT_NAME
    torch.save(model.state_dict(), ckpt)

    # Reload through the official loader, exactly as CLIP.from_config(pretrained=True) would.
    reloaded = pe.CLIP(vcfg, tcfg).eval()
    reloaded.load_ckpt(str(ckpt), verbose=False)
    for k, v in reloaded.state_dict().items():
        assert torch.equal(v, sd[k]), k
    model = reloaded

    frames = torch.randn(BATCH, FRAMES, 3, VISION["image_size"], VISION["image_size"], generator=gen)
    tokenizer = transforms.get_text_tokenizer(model.context_length)
    tokens = tokenizer(CAPTIONS)
    out = {"frames": frames}
    out.update(official_outputs(model, tokens, frames))

    # G14 layout: no class token, 72 text positions.
    vcfg_g = PEConfig(**{**VISION, "use_cls_token": False})
    tcfg_g = PETextConfig(**{**TEXT, "context_length": G_CONTEXT})
    model_g = pe.CLIP(vcfg_g, tcfg_g).eval()
    model_g.load_state_dict(derive_g_layout(sd), strict=True)
    tokens_g = transforms.get_text_tokenizer(model_g.context_length)(CAPTIONS)
    out.update(official_outputs(model_g, tokens_g, frames, suffix="_g"))
    out["logit_scale"] = model.logit_scale.detach().clone().reshape(1)

    meta = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/facebookresearch/perception_models",
        "commit": commit,
        "score": "raw dot product: video = mean over frames of L2-normalised frame embeddings (not renormalised), "
                 "text = L2-normalised; clip_benchmark zeroshot_retrieval without its reweight trick",
        "normalized": "false",
        "normalized_text": "true",
        "score_classification": "100 * cosine of L2(mean of raw frame embeddings) and L2(text); "
                                "clip_benchmark zeroshot_classification and the demo notebook",
        "frames_layout": "BTCHW, already normalised with mean/std 0.5",
        "checkpoint": CKPT_NAME,
        "vision": json.dumps(VISION),
        "text": json.dumps(TEXT),
        "g_layout": json.dumps({"context_length": G_CONTEXT, "use_cls_token": False,
                                "rule": "drop visual.class_embedding and row 0 of visual.positional_embedding; "
                                        "tile positional_embedding rows to 72"}),
        "heads": json.dumps({"vision": VISION["heads"], "text": TEXT["heads"], "pool": VISION["attn_pooler_heads"]}),
        "torch": torch.__version__,
    }
    if not args.skip_open_clip:
        diffs, layout, oc_v, timm_v = open_clip_check(sd, out, frames, CAPTIONS, VISION, TEXT)
        worst = max(diffs.values())
        assert worst < 1e-5, diffs
        meta["open_clip_check"] = json.dumps({"open_clip": oc_v, "timm": timm_v, "max_abs_diff": diffs})
        meta["open_clip_layout"] = json.dumps(layout)
        print("open_clip/timm vs official:", diffs)
    save_file({k: v.contiguous() for k, v in out.items()}, str(args.out / "golden.safetensors"), metadata=meta)
    print("wrote", ckpt, ckpt.stat().st_size, "bytes;", args.out / "golden.safetensors")
    print("similarity\n", out["similarity"], "\nsimilarity_g\n", out["similarity_g"])


if __name__ == "__main__":
    main()
