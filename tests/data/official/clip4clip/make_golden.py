"""Regenerate the CLIP4Clip golden data from the official ArrowLuo/CLIP4Clip code.

Run with the reference environment (it imports the official checkout, never our adapter):

    /work/refenv/bin/python tests/data/official/clip4clip/make_golden.py --official /work/ref/CLIP4Clip

Why it is built this way:
- CLIP4Clip publishes no fine-tuned weights; users train with the official script, which saves
  `model.state_dict()` as `pytorch_model.bin.N`. So the checkpoint here is written by the official
  `CLIP4Clip` module itself, for each similarity head, and read back the way the official evaluation
  reads it (`CLIP4Clip.from_pretrained(cross_model, state_dict=torch.load(file))`).
- The official constructor takes its CLIP sizes from a downloaded OpenAI base file
  (`CLIP.get_config`), not from the checkpoint. We replace that download with a tiny random CLIP
  state dict of the same sizes (a different seed from the checkpoint's own `clip.*` tensors, so only
  the checkpoint's values can reach the outputs), and give `from_pretrained` a tiny cross config folder.
- The official modules keep CLIP's linear/conv/attention weights in fp16 (`convert_weights`) and the
  rest in fp32, so the saved file has that mix. For the golden outputs the reloaded model is cast with
  `.float()`: the official code runs those layers in fp16 on a GPU, and an fp16 rounding comparison
  would say nothing about the port.
- The real BPE vocabulary (49408 rows) would make each checkpoint megabytes large, so the tiny models
  use the official tokenizer class on a truncated merges file (the first `N_MERGES` merges of the
  official `bpe_simple_vocab_16e6.txt.gz`): same algorithm, vocabulary 512 + N_MERGES + 2, with
  start/end-of-text as the two highest ids, as in the real one.
- Random values are non-trivial (LayerNorm weights around 1, random biases); for seqTransf and
  tightTransf what feeds the head's BERT-style LayerNorms is made small, so their eps shows.
- Text goes through the official data loader's `_get_text` (start token + first max_words-2 BPE
  tokens + end token, zero padding, max_words 32), the function the retrieval evaluation uses.
- The Hugging Face port (Searchium-ai/clip4clip-webvid150k) is a plain CLIP in transformers format;
  its golden is computed the way its model card does it: CLIPTextModelWithProjection text embeds,
  L2-normalised; CLIPVisionModelWithProjection image embeds per frame, L2-normalised, averaged,
  normalised again.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))

SEED = 20240611
B, T, IMG, PATCH = 3, 4, 32, 8
EMBED = 64          # CLIP embed dim == text width == cross hidden size (the official heads need this)
TEXT_WIDTH, TEXT_LAYERS = 64, 1
VISION_WIDTH, VISION_LAYERS = 64, 1     # official head count = width // 64
CONTEXT = 77        # CLIP text positions; also the official frame/cross position table size
CROSS_LAYERS = 1    # official default is 4 (--cross_num_hidden_layers)
MAX_WORDS = 32
N_MERGES = 126      # vocabulary 512 + 126 + 2 = 640
HEADS = ("meanP", "seqLSTM", "seqTransf", "tightTransf")

CAPTIONS = [
    "A man is playing the guitar on stage.",
    "Two DOGS run across the field, chasing a red ball!",
    "The chef's knife slices tomatoes; then she adds salt & pepper.",
    "In a crowded city square at sunset, a street performer juggles flaming torches while tourists "
    "gather around, clapping loudly and taking photos with their phones, as children laugh and "
    "pigeons scatter across the old cobblestones near the fountain.",
]


def _install_stubs():
    """Modules the official files import at top level but the code paths used here never call."""
    import numpy as np

    missing = [n for n in ("boto3", "botocore", "requests") if importlib.util.find_spec(n) is None]
    for name in missing:
        sys.modules[name] = types.ModuleType(name)
    if "botocore" in missing:
        exc = types.ModuleType("botocore.exceptions")
        exc.ClientError = type("ClientError", (Exception,), {})
        sys.modules["botocore.exceptions"] = exc
        sys.modules["botocore"].exceptions = exc
    # the data loader module imports cv2/torchvision through its video reader; only _get_text is used
    raw = types.ModuleType("dataloaders.rawvideo_util")
    raw.RawVideoExtractor = object
    sys.modules["dataloaders.rawvideo_util"] = raw
    if not hasattr(np, "long"):       # removed from numpy; the loader allocates token arrays with it
        np.long = np.int64
    # transformers imports torchvision, whose compiled ops are absent in the reference venv
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))


def write_tiny_bpe(official, path):
    lines = gzip.open(os.path.join(official, "modules", "bpe_simple_vocab_16e6.txt.gz")).read()
    lines = lines.decode("utf-8").split("\n")
    # header + merges, no trailing newline (a trailing empty line would become an empty merge)
    text = "\n".join(lines[: 1 + N_MERGES])
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(text.encode("utf-8"))


def jitter(model, gen, logit_scale):
    """Non-trivial random values for every parameter, kept in each tensor's own dtype."""
    import torch

    norm_params = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm) or type(mod).__name__ == "LayerNorm":
            norm_params.add(f"{mname}.weight" if mname else "weight")
            norm_params.add(f"{mname}.bias" if mname else "bias")
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if name.endswith("logit_scale"):
                new = torch.full(shape, logit_scale)
            elif name in norm_params and name.endswith("weight"):
                new = 1.0 + 0.2 * torch.randn(shape, generator=gen)
            elif name in norm_params or "bias" in name.rsplit(".", 1)[-1]:
                new = 0.1 * torch.randn(shape, generator=gen)
            elif p.ndim > 2:                        # conv kernels [out, in, kh, kw]
                new = torch.randn(shape, generator=gen) / math.sqrt(int(torch.tensor(shape[1:]).prod()))
            elif p.ndim == 1:                       # class embedding
                new = 0.5 * torch.randn(shape, generator=gen)
            elif "embedding" in name:              # token / position tables
                new = 0.5 * torch.randn(shape, generator=gen)
            elif name.endswith("proj") or name.endswith("text_projection"):   # x @ proj
                new = torch.randn(shape, generator=gen) / math.sqrt(shape[0])
            else:                                   # [out, in, ...] weights
                fan_in = int(torch.tensor(shape[1:]).prod())
                new = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
            p.copy_(new.to(p.dtype))


def small_head_inputs(model, factor=0.02):
    """Shrink what reaches the BERT-style LayerNorms of transformerClip / cross (features, positions,
    block outputs) so that their eps (1e-12, not CLIP's 1e-5) shows in the outputs."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("clip.visual.proj", "clip.text_projection", "frame_position_embeddings.weight",
                        "cross.embeddings.position_embeddings.weight") or (
                    name.startswith(("transformerClip.", "cross.transformer."))
                    and (".attn.out_proj." in name or ".mlp.c_proj." in name)):
                p.mul_(factor)


def make_frames(gen):
    import torch

    return torch.randn(B, T, 3, IMG, IMG, generator=gen)


def official_text(official_loader_cls, tokenizer, captions):
    import numpy as np

    holder = types.SimpleNamespace(
        tokenizer=tokenizer, max_words=MAX_WORDS,
        SPECIAL_TOKEN={"CLS_TOKEN": "<|startoftext|>", "SEP_TOKEN": "<|endoftext|>"})
    ids, masks, segs = [], [], []
    for c in captions:
        t, m, s, _ = official_loader_cls._get_text(holder, "video0", c)
        ids.append(t)
        masks.append(m)
        segs.append(s)
    return np.stack(ids), np.stack(masks), np.stack(segs)   # [N, 1, max_words]


def run_official(args):
    import torch

    sys.path.insert(0, args.official)
    _install_stubs()
    from modules import module_clip
    from modules.modeling import CLIP4Clip
    from modules.tokenization_clip import SimpleTokenizer
    from dataloaders.dataloader_msrvtt_retrieval import MSRVTT_DataLoader

    commit = subprocess.check_output(["git", "-C", args.official, "rev-parse", "HEAD"], text=True).strip()
    bpe_path = os.path.join(HERE, "bpe_tiny.txt.gz")
    write_tiny_bpe(args.official, bpe_path)
    tokenizer = SimpleTokenizer(bpe_path=bpe_path)
    vocab = len(tokenizer.encoder)
    assert vocab == 512 + N_MERGES + 2, vocab

    # the "downloaded" base CLIP, here tiny and random
    torch.manual_seed(SEED)
    base = module_clip.CLIP(EMBED, IMG, VISION_LAYERS, VISION_WIDTH, PATCH, CONTEXT, vocab,
                            TEXT_WIDTH, TEXT_WIDTH // 64, TEXT_LAYERS)
    jitter(base, torch.Generator().manual_seed(SEED + 1), logit_scale=math.log(1 / 0.07))
    base_sd = {k: v.detach().clone() for k, v in base.state_dict().items()}
    module_clip.CLIP.get_config = staticmethod(
        lambda pretrained_clip_name="ViT-B/32": {k: v.clone() for k, v in base_sd.items()})

    cross_dir = tempfile.mkdtemp(prefix="clip4clip-cross-")
    with open(os.path.join(args.official, "modules", "cross-base", "cross_config.json")) as f:
        cross_cfg = json.load(f)
    cross_cfg.update(hidden_size=EMBED, num_attention_heads=EMBED // 64, intermediate_size=4 * EMBED)
    with open(os.path.join(cross_dir, "cross_config.json"), "w") as f:
        json.dump(cross_cfg, f)

    ids, masks, segs = official_text(MSRVTT_DataLoader, tokenizer, CAPTIONS)
    input_ids = torch.from_numpy(ids).long()
    attention_mask = torch.from_numpy(masks).long()
    segment_ids = torch.from_numpy(segs).long()
    frames = make_frames(torch.Generator().manual_seed(SEED + 2))
    video = frames.reshape(B, 1, T, 1, 3, IMG, IMG)        # loader layout: pair, frames, 1, C, H, W
    video_mask = torch.ones(B, 1, T, dtype=torch.long)

    tensors = {"frames": frames.contiguous()}
    meta = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/ArrowLuo/CLIP4Clip",
        "commit": commit,
        "heads": json.dumps(list(HEADS) + ["hf"]),
        "layout": "one file for every checkpoint: shared `frames`, then `<head>/<tensor>`; metadata "
                  "`<head>/<key>`; `hf/*` is the Hugging Face port",
        "tokenizer": f"bpe_tiny.txt.gz (first {N_MERGES} merges of the official bpe_simple_vocab_16e6.txt.gz, "
                     f"vocabulary {vocab})",
        "token_ids": json.dumps(input_ids[:, 0].tolist()),
        "max_words": str(MAX_WORDS),
        "frames_layout": "[B, T, 3, H, W], already CLIP-normalised (random normal); official call: video "
                         "[B, 1, T, 1, 3, H, W] with video_mask ones [B, 1, T]",
        "golden_precision": "float32: the official model reloaded from each file, then .float()",
        "video_embeddings": "head output per frame (seqLSTM/seqTransf: + residual), each frame L2-normalised, "
                            "masked mean over frames, L2-normalised again (captured inside _loose_similarity)",
        "text_embeddings": "CLIP encode_text at the end-of-text token (highest id), L2-normalised",
        "frame_features": "get_visual_output: per-frame CLIP image embeddings, before the head",
    }
    for i, head in enumerate(HEADS):
        task = argparse.Namespace(
            max_words=MAX_WORDS, max_frames=T, sim_header=head, loose_type=head != "tightTransf",
            cross_num_hidden_layers=CROSS_LAYERS, linear_patch="2d", pretrained_clip_name="ViT-B/32",
            local_rank=0)
        torch.manual_seed(SEED + 10 + i)
        model = CLIP4Clip.from_pretrained(cross_dir, state_dict=None, cache_dir=None, task_config=task)
        jitter(model, torch.Generator().manual_seed(SEED + 20 + i), logit_scale=math.log(50.0) + 0.1 * i)
        if head in ("seqTransf", "tightTransf"):
            small_head_inputs(model)
        out_dir = os.path.join(HERE, head)
        os.makedirs(out_dir, exist_ok=True)
        ckpt = os.path.join(out_dir, "pytorch_model.bin.0")
        torch.save(model.state_dict(), ckpt)
        dtypes = sorted({str(v.dtype) for v in model.state_dict().values()})

        # reload exactly as the official evaluation does
        sd = torch.load(ckpt, map_location="cpu")
        task2 = argparse.Namespace(**vars(task))
        model = CLIP4Clip.from_pretrained(cross_dir, state_dict=sd, cache_dir=None, task_config=task2)
        for k, v in model.state_dict().items():
            assert torch.equal(v, sd[k]), f"{k} was not loaded from the checkpoint"
        assert set(model.state_dict()) == set(sd)
        model = model.float().eval()

        pooled = []
        pool_fn = model._mean_pooling_for_similarity_visual
        model._mean_pooling_for_similarity_visual = lambda *a, **k: pooled.append(pool_fn(*a, **k)) or pooled[-1]
        with torch.no_grad():
            seq = model.get_sequence_output(input_ids, segment_ids, attention_mask)
            vis = model.get_visual_output(video, video_mask)
            logits, _ = model.get_similarity_logits(seq, vis, attention_mask, video_mask,
                                                    loose_type=model.loose_type)
        similarity = logits.t().contiguous()                  # official: [texts, videos]
        tensors[f"{head}/similarity"] = similarity.float()
        meta.update({
            f"{head}/checkpoint": f"{head}/pytorch_model.bin.0",
            f"{head}/checkpoint_dtypes": ",".join(dtypes),
            f"{head}/logit_scale_exp": repr(float(model.clip.logit_scale.detach().exp())),
        })
        if head == "tightTransf":
            meta.update({
                f"{head}/score": "similarity_dense(cross-encoder pooled output) over [text EOT vector; frame "
                                 "vectors] (CLIP4Clip _cross_similarity): raw logit, no scale",
                f"{head}/normalized": "false",
                f"{head}/pair_scorer": "true: the text is fused with each video, so only similarity is stored",
            })
        else:
            assert len(pooled) == 1
            video_emb = pooled[0] / pooled[0].norm(dim=-1, keepdim=True)
            text_emb = seq.squeeze(1)
            text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
            check = model.clip.logit_scale.exp() * text_emb @ video_emb.t()
            assert torch.allclose(check, logits, atol=1e-5, rtol=0), (check - logits).abs().max()
            tensors.update({f"{head}/video_embeddings": video_emb.contiguous(),
                            f"{head}/text_embeddings": text_emb.contiguous(),
                            f"{head}/frame_features": vis.contiguous()})
            meta.update({
                f"{head}/score": "exp(logit_scale) * cosine (CLIP4Clip _loose_similarity; the official matrix "
                                 "is [texts, videos], stored transposed to [videos, texts])",
                f"{head}/normalized": "true",
            })
        print(head, "dtypes", dtypes, "similarity", similarity.numpy().round(3).tolist())
    shutil.rmtree(cross_dir)
    return tokenizer, tensors, meta


def run_hf(tokenizer, tensors, meta):
    """Tiny stand-in for the Searchium-ai/clip4clip-webvid150k directory, scored the card's way."""
    import torch
    from transformers import (CLIPConfig, CLIPModel, CLIPTextModelWithProjection, CLIPTokenizer,
                              CLIPVisionModelWithProjection)
    import transformers

    out = os.path.join(HERE, "hf")
    model_dir = os.path.join(out, "model")
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    vocab = len(tokenizer.encoder)
    # ids as in the openai/clip-vit-base-patch32 config this port copies (eos 2: argmax pooling)
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=CONTEXT, hidden_act="quick_gelu",
                         bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=48),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                           image_size=IMG, patch_size=PATCH, hidden_act="quick_gelu", projection_dim=48),
        projection_dim=48, logit_scale_init_value=math.log(100.0))
    torch.manual_seed(SEED + 30)
    model = CLIPModel(config).eval()
    jitter(model, torch.Generator().manual_seed(SEED + 31), logit_scale=math.log(100.0))
    model.save_pretrained(model_dir)
    merges = [tuple(m) for m in sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)]
    hf_tok = CLIPTokenizer(vocab=dict(tokenizer.encoder), merges=merges)
    hf_tok.model_max_length = CONTEXT
    hf_tok.save_pretrained(model_dir)
    # the slow-tokenizer files a 2023 save (and the openai/clip-vit-base-patch32 repo) also carries
    with open(os.path.join(model_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(dict(tokenizer.encoder), f, ensure_ascii=False)
    with open(os.path.join(model_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")

    # --- reference, as the model card does it ---
    tok = CLIPTokenizer.from_pretrained(model_dir)
    text_model = CLIPTextModelWithProjection.from_pretrained(model_dir).eval()
    vision_model = CLIPVisionModelWithProjection.from_pretrained(model_dir).eval()
    frames = tensors["frames"]
    texts, ids = [], []
    with torch.no_grad():
        for c in CAPTIONS:
            # the card's call; truncation added because a caption over 77 tokens cannot be embedded
            inputs = tok(text=c, return_tensors="pt", truncation=True, max_length=CONTEXT)
            official_ids = [tokenizer.encoder["<|startoftext|>"]] + tokenizer.encode(c)[: CONTEXT - 2] \
                + [tokenizer.encoder["<|endoftext|>"]]
            assert inputs["input_ids"][0].tolist() == official_ids, c
            ids.append(official_ids)
            o = text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            texts.append(o[0][0] / o[0][0].norm(dim=-1, keepdim=True))
        videos = []
        for b in range(B):
            v = vision_model(frames[b])["image_embeds"]
            v = v / v.norm(dim=-1, keepdim=True)
            v = torch.mean(v, dim=0)
            videos.append(v / v.norm(dim=-1, keepdim=True))
    text_emb, video_emb = torch.stack(texts), torch.stack(videos)
    similarity = video_emb @ text_emb.t()
    tensors.update({"hf/video_embeddings": video_emb.contiguous(), "hf/text_embeddings": text_emb.contiguous(),
                    "hf/similarity": similarity.contiguous()})
    meta.update({
        "hf/repository": "https://huggingface.co/Searchium-ai/clip4clip-webvid150k (model card usage)",
        "hf/checkpoint": "hf/model",
        "hf/saved_with": f"transformers {transformers.__version__} CLIPModel.save_pretrained",
        "hf/score": "cosine: dot product of the L2-normalised video and text embeddings (the card applies no "
                    "logit scale)",
        "hf/normalized": "true",
        "hf/logit_scale_exp": repr(float(model.logit_scale.detach().exp())),
        "hf/token_ids": json.dumps(ids),
        "hf/frames": "each clip's T frames are one pixel_values batch",
        "hf/video_embeddings": "image_embeds per frame, L2-normalised, mean over frames, L2-normalised",
        "hf/text_embeddings": "text_embeds (CLIPTextModelWithProjection output 0), L2-normalised; the card's "
                              "tokenizer call plus truncation=True, max_length=77",
    })
    print("hf similarity", similarity.numpy().round(3).tolist())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, help="checkout of github.com/ArrowLuo/CLIP4Clip")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from safetensors.torch import save_file

    tokenizer, tensors, meta = run_official(args)
    run_hf(tokenizer, tensors, meta)
    assert torch.equal(tensors["frames"], make_frames(torch.Generator().manual_seed(SEED + 2)))
    names = list(HEADS) + ["hf"]
    meta["score"] = json.dumps({name: meta[f"{name}/score"] for name in names})
    meta["normalized"] = json.dumps({name: meta[f"{name}/normalized"] for name in names})
    save_file(tensors, os.path.join(HERE, "golden.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
