"""Regenerate the X-CLIP golden data in this folder (run it with the reference virtualenv, never the product one).

    /work/refenv/bin/python tests/data/official/x_clip/make_golden.py --official /work/ref/VideoX

The reference is transformers' own ``XCLIPModel`` (the class the published ``microsoft/xclip-*``
checkpoints are loaded with): the script writes a tiny random checkpoint with ``save_pretrained``,
loads it back from disk, runs it in eval mode and stores what it returns.  ``--official`` points at a
checkout of microsoft/VideoX; with it the script also rebuilds the same kind of model in VideoX's own
X-CLIP code from a converted state dict and reports how far the two implementations are apart (that
check writes nothing but a line in the metadata).  Deterministic: fixed seeds, CPU, float32.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Reference virtualenv only: its torchvision wheel is built against CUDA, and these two modules fail to
# register on a CPU torch; stubbing them lets transformers and VideoX's clip package import torchvision.
for _name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_name, types.ModuleType(_name))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
CHECKPOINT_DIR = "xclip-tiny-patch8"
NUM_MERGES = 3000          # first merges of the real CLIP BPE list kept in the tiny tokenizer
CONTEXT = 77               # as published
SEED = 20240611

CAPTIONS = [
    "A person cuts an onion.",
    "Someone's slicing VEGETABLES, quickly!",
    "a dog (brown) runs on the beach; the waves crash...",
    "The chef carefully washes the fresh tomatoes, peels the garlic, chops the onions and the peppers, "
    "heats the olive oil in a large pan, stirs everything with a wooden spoon for several minutes, adds salt, "
    "pepper and basil, tastes the sauce, pours it over the pasta, grates some cheese on top and finally serves "
    "the dish to the hungry guests who are waiting at the long table in the garden.",
]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the alphabet of CLIP's byte-level BPE)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def clip_vocab_files(bpe_gz: Path, out_dir: Path, num_merges: int | None) -> int:
    """Write HF ``vocab.json``/``merges.txt`` for the CLIP BPE (all merges, or only the first ``num_merges``).

    CLIP numbers its vocabulary as: 256 byte symbols, the same with ``</w>``, one token per merge
    in merge order, then ``<|startoftext|>`` and ``<|endoftext|>``; so every ordinary token of a
    truncated list keeps its real id and only the two special tokens move.  Returns the vocab size.
    """
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    if num_merges is not None:
        merges = merges[:num_merges]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return len(vocab)


def tiny_config(vocab_size: int, width: int, heads: int, proj: int, frames: int, layers: int = 2):
    from transformers import XCLIPConfig

    text = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                num_attention_heads=heads, max_position_embeddings=CONTEXT)
    vision = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
                  image_size=32, patch_size=8, num_frames=frames, mit_hidden_size=proj, mit_intermediate_size=4 * proj,
                  mit_num_hidden_layers=1, mit_num_attention_heads=heads)
    return XCLIPConfig(text_config=text, vision_config=vision, projection_dim=proj, prompt_layers=2,
                       prompt_num_attention_heads=heads, prompt_alpha=0.1)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial random weights: every norm scale near 1, every bias random, matrices ~ 1/sqrt(fan-in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            if name == "logit_scale":
                p.copy_(torch.tensor(math.log(1 / 0.07)) + 0.3 * noise)
            elif leaf == "alpha":
                p.copy_(0.5 + 0.2 * noise)
            elif p.ndim == 1 and leaf == "weight":          # LayerNorm scales
                p.copy_(1.0 + 0.2 * noise)
            elif leaf == "bias":
                p.copy_(0.1 * noise)
            elif name == "prompts_visual_projection":       # used as x @ P: fan-in is dim 0
                p.copy_(noise / math.sqrt(p.shape[0]))
            elif p.ndim == 1 or "position_embedding" in name or "class_embedding" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / math.sqrt(p[0].numel()))


def hf_to_videox(sd: dict[str, torch.Tensor], text_layers: int, vision_layers: int, mit_layers: int,
                 prompt_layers: int) -> dict[str, torch.Tensor]:
    """Rename an HF XCLIPModel state dict into VideoX's X-CLIP names (our own mapping, read off both codes)."""
    out: dict[str, torch.Tensor] = {}

    def block(src: str, dst: str, attn: str = "self_attn", dst_attn: str = "attn") -> None:
        q, k, v = (sd[f"{src}.{attn}.{n}_proj.weight"] for n in "qkv")
        out[f"{dst}.{dst_attn}.in_proj_weight"] = torch.cat([q, k, v])
        out[f"{dst}.{dst_attn}.in_proj_bias"] = torch.cat([sd[f"{src}.{attn}.{n}_proj.bias"] for n in "qkv"])
        out[f"{dst}.{dst_attn}.out_proj.weight"] = sd[f"{src}.{attn}.out_proj.weight"]
        out[f"{dst}.{dst_attn}.out_proj.bias"] = sd[f"{src}.{attn}.out_proj.bias"]

    def mlp_norms(src: str, dst: str) -> None:
        pairs = (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))
        for a, b in pairs:
            for leaf in ("weight", "bias"):
                out[f"{dst}.{b}.{leaf}"] = sd[f"{src}.{a}.{leaf}"]

    out["token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    for i in range(text_layers):
        block(f"text_model.encoder.layers.{i}", f"transformer.resblocks.{i}")
        mlp_norms(f"text_model.encoder.layers.{i}", f"transformer.resblocks.{i}")
    for leaf in ("weight", "bias"):
        out[f"ln_final.{leaf}"] = sd[f"text_model.final_layer_norm.{leaf}"]
        out[f"visual.ln_pre.{leaf}"] = sd[f"vision_model.pre_layernorm.{leaf}"]
        out[f"visual.ln_post.{leaf}"] = sd[f"vision_model.post_layernorm.{leaf}"]
        out[f"prompts_visual_ln.{leaf}"] = sd[f"prompts_visual_layernorm.{leaf}"]
        out[f"prompts_generator.norm.{leaf}"] = sd[f"prompts_generator.layernorm.{leaf}"]
    out["text_projection"] = sd["text_projection.weight"].t().contiguous()
    out["visual.class_embedding"] = sd["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = sd["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = sd["vision_model.embeddings.position_embedding.weight"]
    out["visual.proj"] = sd["visual_projection.weight"].t().contiguous()
    for i in range(vision_layers):
        src, dst = f"vision_model.encoder.layers.{i}", f"visual.transformer.resblocks.{i}"
        block(src, dst)
        block(src, dst, attn="message_attn", dst_attn="message_attn")
        mlp_norms(src, dst)
        for leaf in ("weight", "bias"):
            out[f"{dst}.message_fc.{leaf}"] = sd[f"{src}.message_fc.{leaf}"]
            out[f"{dst}.message_ln.{leaf}"] = sd[f"{src}.message_ln.{leaf}"]
    out["logit_scale"] = sd["logit_scale"]
    out["prompts_visual_proj"] = sd["prompts_visual_projection"]
    out["mit.positional_embedding"] = sd["mit.position_embedding"]
    for i in range(mit_layers):
        block(f"mit.encoder.layers.{i}", f"mit.resblocks.{i}")
        mlp_norms(f"mit.encoder.layers.{i}", f"mit.resblocks.{i}")
    out["prompts_generator.alpha"] = sd["prompts_generator.alpha"]
    for i in range(prompt_layers):
        src = dst = f"prompts_generator.decoder.{i}"
        for n in ("q_proj", "k_proj", "v_proj"):
            out[f"{dst}.cross_attn.{n}.weight"] = sd[f"{src}.cross_attn.{n}.weight"]
        for n in ("cross_attn.proj", "norm1", "norm3", "mlp.0", "mlp.3"):
            for leaf in ("weight", "bias"):
                out[f"{dst}.{n}.{leaf}"] = sd[f"{src}.{n}.{leaf}"]
    return out


def videox_crosscheck(official: Path, bpe_gz: Path) -> tuple[float, float, str]:
    """VideoX's XCLIP vs transformers' XCLIPModel on one random model (width 128: VideoX fixes heads = width // 64)."""
    from transformers import XCLIPModel

    xclip_root = official / "X-CLIP"
    sys.path.insert(0, str(xclip_root))
    import clip as videox_clip  # VideoX's clip package (its tokenizer and the import chain of models.xclip)
    from models.xclip import build_model

    cfg = tiny_config(49408, width=128, heads=2, proj=128, frames=4)
    torch.manual_seed(SEED + 1)
    hf = XCLIPModel(cfg).eval()
    randomize(hf, SEED + 1)
    sd = hf_to_videox(hf.state_dict(), 2, 2, 1, 2)
    logger = logging.getLogger("videox")
    vx = build_model(dict(sd), T=4, logger=logger, prompts_layers=2, mit_layers=1, use_cache=False).eval()
    missing = set(vx.state_dict()) - set(sd)
    unexpected = set(sd) - set(vx.state_dict())
    if missing or unexpected:
        raise SystemExit(f"VideoX key mismatch: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")

    captions = CAPTIONS[:3]                               # VideoX's tokenize refuses texts over 77 tokens
    ids_vx = videox_clip.tokenize(captions)               # [3, 77], zero padded
    gen = torch.Generator().manual_seed(SEED + 2)
    frames = torch.randn(2, 4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        logits_vx = vx(frames, ids_vx)
        with tempfile.TemporaryDirectory() as tmp:
            clip_vocab_files(bpe_gz, Path(tmp), None)
            from transformers import CLIPTokenizer

            tok = CLIPTokenizer(vocab=str(Path(tmp) / "vocab.json"), merges=str(Path(tmp) / "merges.txt"))
            tok = CLIPTokenizer.from_pretrained(_save(tok, Path(tmp) / "tok"), local_files_only=True)
            enc = tok(captions, padding=True, return_tensors="pt")
        same_ids = all(enc.input_ids[i, : int(enc.attention_mask[i].sum())].tolist()
                       == ids_vx[i, : int((ids_vx[i] > 0).sum())].tolist() for i in range(len(captions)))
        logits_hf = hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=frames).logits_per_video
    diff = (logits_hf - logits_vx).abs().max().item()
    rel = diff / logits_vx.abs().max().item()
    sys.path.remove(str(xclip_root))
    return diff, rel, "same" if same_ids else "different"


def _save(tok, path: Path) -> str:
    tok.save_pretrained(str(path))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of github.com/microsoft/VideoX")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import transformers
    from transformers import CLIPTokenizer, XCLIPModel, XCLIPProcessor

    bpe_gz = args.official / "X-CLIP" / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    out = args.out
    ckpt = out / CHECKPOINT_DIR
    if ckpt.exists():
        shutil.rmtree(ckpt)

    # Tokenizer: the real CLIP BPE cut to its first merges (real ids for every ordinary token).
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = clip_vocab_files(bpe_gz, Path(tmp), NUM_MERGES)
        tokenizer = CLIPTokenizer(vocab=str(Path(tmp) / "vocab.json"), merges=str(Path(tmp) / "merges.txt"),
                                  model_max_length=CONTEXT)
        tokenizer.save_pretrained(str(ckpt))
        for name in ("vocab.json", "merges.txt"):             # the published repos ship these too
            shutil.copy(Path(tmp) / name, ckpt / name)
    # The published repositories' preprocessor_config.json, in its (legacy VideoMAEFeatureExtractor)
    # form and values: shorter side, centre crop, bilinear, ImageNet statistics; sizes at 32 px.
    (ckpt / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "VideoMAEFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "processor_class": "XCLIPProcessor", "resample": 2, "size": 32},
        indent=2) + "\n")

    config = tiny_config(vocab_size, width=32, heads=4, proj=32, frames=8)
    torch.manual_seed(SEED)
    model = XCLIPModel(config).eval()
    randomize(model, SEED)
    model.save_pretrained(str(ckpt))

    # Everything below reads the files back, as a user's copy would be read.
    model = XCLIPModel.from_pretrained(str(ckpt), local_files_only=True).eval()
    processor = XCLIPProcessor.from_pretrained(str(ckpt), local_files_only=True)
    gen = torch.Generator().manual_seed(SEED)
    frames = torch.randn(3, config.vision_config.num_frames, 3, 32, 32, generator=gen)
    enc = processor.tokenizer(CAPTIONS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        output = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=frames)
        video = model.get_video_features(pixel_values=frames).pooler_output
        text_plain = model.get_text_features(input_ids=enc.input_ids, attention_mask=enc.attention_mask).pooler_output

    # Token ids of the captions under the full (published) vocabulary, for the bundled-tokenizer path.
    with tempfile.TemporaryDirectory() as tmp:
        clip_vocab_files(bpe_gz, Path(tmp), None)
        full = CLIPTokenizer(vocab=str(Path(tmp) / "vocab.json"), merges=str(Path(tmp) / "merges.txt"),
                             model_max_length=CONTEXT)
        full = CLIPTokenizer.from_pretrained(_save(full, Path(tmp) / "tok"), local_files_only=True)
        ids_full = full(CAPTIONS, padding="max_length", max_length=CONTEXT, truncation=True,
                        return_tensors="pt").input_ids

    diff, rel, ids_agree = videox_crosscheck(args.official, bpe_gz)
    cond = torch.nn.functional.normalize(text_plain, dim=-1)
    spread = (output.text_embeds - cond.unsqueeze(0)).norm(dim=-1)
    print(f"logits_per_video:\n{output.logits_per_video}")
    print(f"prompt effect |conditioned - plain| per pair: min {spread.min():.3f} max {spread.max():.3f}")
    print(f"VideoX vs transformers: max |diff| {diff:.3g} (relative {rel:.3g}); token ids {ids_agree}")

    tensors = {
        "frames": frames.contiguous(),
        "video_embeddings": video.contiguous(),
        "text_embeddings_unconditioned": text_plain.contiguous(),
        "conditioned_text_embeddings": output.text_embeds.contiguous(),
        "similarity": output.logits_per_video.contiguous(),
        "input_ids": enc.input_ids.to(torch.int64).contiguous(),
        "input_ids_full_vocab": ids_full.to(torch.int64).contiguous(),
    }
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/huggingface/transformers (XCLIPModel); cross-checked against "
                      "https://github.com/microsoft/VideoX (X-CLIP)",
        "commit": f"transformers=={transformers.__version__}; VideoX {commit}",
        "score": "logits_per_video = exp(logit_scale) * cosine(video, video-conditioned text); pair scorer",
        "pair_scorer": "true: the text embedding depends on the video; similarity is the official score, "
                       "video_embeddings are text-independent, text_embeddings_unconditioned are before the prompts",
        "normalized": "false",
        "frames_layout": "B,T,3,H,W",
        "checkpoint": CHECKPOINT_DIR,
        "logit_scale": repr(float(model.logit_scale.detach().exp())),
        "num_merges": str(NUM_MERGES),
        "videox_max_abs_diff": f"{diff:.3g}",
        "videox_tokens": ids_agree,
    }
    save_file(tensors, str(out / "golden.safetensors"), metadata=metadata)
    print(f"wrote {out / 'golden.safetensors'} and {ckpt}")


if __name__ == "__main__":
    main()
