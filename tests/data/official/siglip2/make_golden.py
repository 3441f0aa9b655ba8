"""Regenerate the SigLIP 2 golden data in this folder (run it with the reference virtualenv, never the product one).

    /work/refenv/bin/python tests/data/official/siglip2/make_golden.py

The reference is transformers' own classes, the ones the published ``google/siglip2-*`` checkpoints
are loaded with: ``SiglipModel`` for the fixed-resolution checkpoints (their config says
``model_type: siglip``) and ``Siglip2Model`` for the NaFlex ones.  The Gemma tokenizer the real
checkpoints ship (256k tokens) needs the hub, so both tiny checkpoints carry a tiny Gemma-style BPE
(byte fallback, ``▁`` for spaces) trained here with the ``tokenizers`` library and saved through
``GemmaTokenizer.save_pretrained``, so ``AutoTokenizer`` loads it offline the way it loads the real one.
Deterministic: fixed seeds, CPU, float32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Reference virtualenv only: its torchvision wheel is built against CUDA, and these two modules fail to
# register on a CPU torch; stubbing them lets transformers import with torchvision installed.
for _name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_name, types.ModuleType(_name))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXED_DIR = "siglip2-tiny-patch8-32"
NAFLEX_DIR = "siglip2-tiny-patch8-naflex"
CONTEXT = 64               # as published: text padded/truncated to 64 tokens
MAX_NUM_PATCHES = 20       # NaFlex patch budget of the tiny processor (published default: 256)
SEED = 20240612
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]   # Gemma's ids 0..4

CAPTIONS = [
    "A person cuts an onion.",
    "Someone's slicing VEGETABLES, quickly!",
    "a dog (brown) runs on the beach; the waves crash...",
    "The chef carefully washes the fresh tomatoes, peels the garlic, chops the onions and the peppers, "
    "heats the olive oil in a large pan, stirs everything with a wooden spoon for several minutes, adds salt, "
    "pepper and basil, tastes the sauce, pours it over the pasta, grates some cheese on top and finally serves "
    "the dish to the hungry guests who are waiting at the long table in the garden.",
]
# Lower-case training text only: an upper-case letter falls back to bytes, so text that is not
# lower-cased first (as SigLIP 2 was trained) gets other ids and shows up in the tests.
CORPUS = [
    "a person cuts an onion on a wooden board.",
    "someone is slicing vegetables in the kitchen.",
    "a dog runs on the beach and the waves crash.",
    "the chef washes the tomatoes and chops the onions.",
    "a man rides a bicycle down the street.",
    "two children play with a ball in the garden.",
    "a woman pours water into a glass.",
    "people are waiting at the long table for dinner.",
]


def train_tokenizer(out_dir: Path):
    """A tiny Gemma-like BPE: specials at 0..4, the 256 byte-fallback tokens, then learned pieces."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import GemmaTokenizer

    base = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    base.normalizer = normalizers.Replace(" ", "▁")
    trainer = trainers.BpeTrainer(vocab_size=220, special_tokens=[], show_progress=False)
    base.train_from_iterator(CORPUS * 4, trainer=trainer)
    learned = json.loads(base.to_str())["model"]
    pieces = sorted(learned["vocab"], key=learned["vocab"].get)
    vocab = {tok: i for i, tok in enumerate(SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned["merges"]]
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=True,
                               padding_side="right", model_max_length=CONTEXT)
    tokenizer.save_pretrained(str(out_dir))
    return len(vocab)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial random weights: norm scales near 1, random biases, matrices ~ 1/sqrt(fan-in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            if name == "logit_scale":
                p.copy_(math.log(10.0) + 0.2 * noise)
            elif name == "logit_bias":
                p.copy_(-5.0 + noise)
            elif p.ndim == 1 and leaf == "weight":          # LayerNorm scales
                p.copy_(1.0 + 0.2 * noise)
            elif leaf == "bias" or "in_proj_bias" in leaf:
                p.copy_(0.1 * noise)
            elif "position_embedding" in name or name.endswith("probe"):
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / math.sqrt(p[0].numel()))


def text_config(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=CONTEXT, pad_token_id=0, eos_token_id=1,
                bos_token_id=2)


def pool_video(frame_embeds: torch.Tensor) -> torch.Tensor:
    """The harness's per-frame video convention: L2-normalise each frame, average over frames, normalise."""
    return F.normalize(F.normalize(frame_embeds, dim=-1).mean(dim=1), dim=-1)


def sigmoid_logits(video: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SigLIP's pair logit, exp(t) * cos + b (the probability is its sigmoid), as in SiglipModel.forward."""
    return F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t() * scale.exp() + bias


def common_metadata(model, kind: str, tokenizer_class: str) -> dict[str, str]:
    import transformers

    return {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/huggingface/transformers (SiglipModel / Siglip2Model; weights converted "
                      "from https://github.com/google-research/big_vision)",
        "commit": f"transformers=={transformers.__version__}",
        "score": "sigmoid(exp(logit_scale) * cosine + logit_bias); similarity stores the logit "
                 "exp(logit_scale) * cosine + logit_bias",
        "normalized": "false: frame_embeddings and text_embeddings are the raw get_*_features outputs; "
                      "video_embeddings are normalised by the frame pooling",
        "video_pooling": "normalize(mean_t(normalize(frame_embeddings)))",
        "frames_layout": "B,T,3,H,W",
        "text_preprocessing": "lower-case, pad to max_length 64 on the right, truncate to 64 (eos kept), "
                              "no attention mask (big_vision and open_clip attend over the padding)",
        "kind": kind,
        "tokenizer_class": tokenizer_class,
        "logit_scale": repr(float(model.logit_scale.detach())),
        "logit_bias": repr(float(model.logit_bias.detach())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, help="unused: the reference is transformers itself")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from transformers import (AutoTokenizer, Siglip2Config, Siglip2Model, SiglipConfig, SiglipModel)
    from transformers.models.siglip import SiglipImageProcessorPil
    from transformers.models.siglip2 import Siglip2ImageProcessorPil
    from transformers.models.siglip2.image_processing_pil_siglip2 import (
        convert_image_to_patches, get_image_size_for_max_num_patches, pad_along_first_dim)

    out = args.out
    for name in (FIXED_DIR, NAFLEX_DIR):
        if (out / name).exists():
            shutil.rmtree(out / name)

    # ---- fixed resolution: SiglipModel, as google/siglip2-base-patch16-224 ----
    fixed = out / FIXED_DIR
    vocab_size = train_tokenizer(fixed)
    vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    torch.manual_seed(SEED)
    model = SiglipModel(SiglipConfig(text_config=text_config(vocab_size), vision_config=vision)).eval()
    randomize(model, SEED)
    model.save_pretrained(str(fixed))
    SiglipImageProcessorPil(size={"height": 32, "width": 32}, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3).save_pretrained(str(fixed))

    model = SiglipModel.from_pretrained(str(fixed), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(fixed), local_files_only=True)
    lowered = [c.lower() for c in CAPTIONS]
    ids = tok(lowered, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt").input_ids
    gen = torch.Generator().manual_seed(SEED)
    frames = torch.randn(3, 4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        flat = frames.flatten(0, 1)
        frame_embeds = model.get_image_features(pixel_values=flat).pooler_output.view(3, 4, -1)
        text_embeds = model.get_text_features(input_ids=ids).pooler_output
        frame_logits = model(input_ids=ids, pixel_values=flat).logits_per_image      # official forward, per frame
        video = pool_video(frame_embeds)
        similarity = sigmoid_logits(video, text_embeds, model.logit_scale, model.logit_bias)
        masked = model.get_text_features(input_ids=ids, attention_mask=(ids != 0).long()).pooler_output
    check = sigmoid_logits(frame_embeds.flatten(0, 1), text_embeds, model.logit_scale, model.logit_bias)
    assert torch.allclose(check, frame_logits, atol=1e-5), "formula disagrees with SiglipModel.forward"
    cased = tok(CAPTIONS, padding="max_length", max_length=CONTEXT, truncation=True).input_ids
    print(f"[fixed] tokenizer {type(tok).__name__}, vocab {vocab_size}; lengths "
          f"{[int((r != 0).sum()) for r in ids]}; cased ids differ: {cased != ids.tolist()}")
    print(f"[fixed] similarity:\n{similarity}")
    print(f"[fixed] attention mask would move text by cosine "
          f"{F.cosine_similarity(masked, text_embeds).min():.4f}")
    meta = common_metadata(model, "fixed", type(tok).__name__)
    meta["checkpoint"] = FIXED_DIR
    save_file({"frames": frames, "frame_embeddings": frame_embeds.contiguous(), "video_embeddings": video,
               "text_embeddings": text_embeds, "similarity": similarity.contiguous(),
               "frame_logits": frame_logits.contiguous(), "input_ids": ids.to(torch.int64)},
              str(out / "golden.safetensors"), metadata=meta)

    # ---- NaFlex: Siglip2Model, as google/siglip2-base-patch16-naflex ----
    naflex = out / NAFLEX_DIR
    train_tokenizer(naflex)
    vision2 = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, patch_size=8,
                   num_patches=16)
    torch.manual_seed(SEED + 1)
    model2 = Siglip2Model(Siglip2Config(text_config=text_config(vocab_size), vision_config=vision2)).eval()
    randomize(model2, SEED + 1)
    model2.save_pretrained(str(naflex))
    Siglip2ImageProcessorPil(patch_size=8, max_num_patches=MAX_NUM_PATCHES, image_mean=[0.5] * 3,
                             image_std=[0.5] * 3).save_pretrained(str(naflex))

    model2 = Siglip2Model.from_pretrained(str(naflex), local_files_only=True).eval()
    tok2 = AutoTokenizer.from_pretrained(str(naflex), local_files_only=True)
    ids2 = tok2(CAPTIONS, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt").input_ids
    assert torch.equal(ids2, ids), "Siglip2Tokenizer (lower-casing itself) and lower-cased Gemma ids disagree"
    height, width = 24, 40                      # not square, 3 x 5 = 15 patches: padding to 20 is exercised
    assert get_image_size_for_max_num_patches(height, width, 8, MAX_NUM_PATCHES) == (height, width)
    frames2 = torch.randn(3, 4, 3, height, width, generator=torch.Generator().manual_seed(SEED + 1))
    patches, masks = [], []
    for image in frames2.flatten(0, 1).numpy():                   # the official patching of each frame
        p, m = pad_along_first_dim(convert_image_to_patches(image, 8), MAX_NUM_PATCHES)
        patches.append(torch.from_numpy(p))
        masks.append(torch.from_numpy(m))
    pixel_values = torch.stack(patches)
    pixel_mask = torch.stack(masks).long()
    shapes = torch.tensor([[height // 8, width // 8]] * pixel_values.shape[0])
    with torch.no_grad():
        frame_embeds2 = model2.get_image_features(pixel_values=pixel_values, pixel_attention_mask=pixel_mask,
                                                  spatial_shapes=shapes).pooler_output.view(3, 4, -1)
        text_embeds2 = model2.get_text_features(input_ids=ids2).pooler_output
        frame_logits2 = model2(input_ids=ids2, pixel_values=pixel_values, pixel_attention_mask=pixel_mask,
                               spatial_shapes=shapes).logits_per_image
        video2 = pool_video(frame_embeds2)
        similarity2 = sigmoid_logits(video2, text_embeds2, model2.logit_scale, model2.logit_bias)
    check2 = sigmoid_logits(frame_embeds2.flatten(0, 1), text_embeds2, model2.logit_scale, model2.logit_bias)
    assert torch.allclose(check2, frame_logits2, atol=1e-5), "formula disagrees with Siglip2Model.forward"
    print(f"[naflex] tokenizer {type(tok2).__name__}; similarity:\n{similarity2}")
    meta2 = common_metadata(model2, "naflex", type(tok2).__name__)
    meta2.update(checkpoint=NAFLEX_DIR, max_num_patches=str(MAX_NUM_PATCHES),
                 patching="transformers.models.siglip2.image_processing_pil_siglip2.convert_image_to_patches + "
                          "pad_along_first_dim; frames already at a patch-grid size, so no resize")
    save_file({"frames": frames2, "frame_embeddings": frame_embeds2.contiguous(), "video_embeddings": video2,
               "text_embeddings": text_embeds2, "similarity": similarity2.contiguous(),
               "frame_logits": frame_logits2.contiguous(), "input_ids": ids2.to(torch.int64),
               "pixel_values": pixel_values[:4].contiguous(), "pixel_attention_mask": pixel_mask[:4].contiguous()},
              str(out / "golden_naflex.safetensors"), metadata=meta2)
    print(f"wrote {out / 'golden.safetensors'}, {out / 'golden_naflex.safetensors'}, {fixed}, {naflex}")


if __name__ == "__main__":
    main()
