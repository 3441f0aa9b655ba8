"""Build the LaViLa golden files by running the official code on a tiny random checkpoint.

Run with the reference environment, never with the product one:

    /work/refenv/bin/python tests/data/official/lavila/make_golden.py --official /work/ref/LaViLa

What it does, and why:

- The official dual-encoder builder ``CLIP_OPENAI_TIMESFORMER_BASE`` downloads OpenAI CLIP ViT-B/16
  and hard-codes the BASE widths. We keep the builder (so its key layout, ``remap_keys`` path,
  LayerNorm eps choices and QuickGELU come from the official code) but hand it tiny sizes by
  wrapping the two constructors it calls, and replace the CLIP download by a tiny stand-in
  built from the official ``openai_model`` classes.
- Parts the dual encoder imports but never runs (the narrator, the gated GPT-2, HF tokenizers,
  wandb, submitit, decord, the evaluation script) are stubbed in ``sys.modules``.
- Every parameter is then overwritten with seeded random values (LayerNorm gains around 1,
  random biases, random time attention) so that porting mistakes move the outputs.
- The checkpoint is written as the official pre-training loop writes it (``save_on_master`` in
  main_pretrain.py) under the published file-name pattern; ``args`` is the real argparse
  Namespace produced by the official submitit launcher's parser for the documented LaViLa
  dual-encoder recipe (docs/PRETRAIN.md), with the fields the launcher and
  ``init_distributed_mode`` add afterwards.
- The golden tensors come from the official ``CLIP.encode_image`` / ``CLIP.encode_text`` and the
  official ``SimpleTokenizer``; the 16-frame case goes through the official
  ``inflate_positional_embeds`` exactly as eval_zeroshot.py does.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import types
from collections import OrderedDict

# Sizes of the tiny model. Head counts are not visible in tensor shapes (the published models use
# width // 64); the adapter test passes them explicitly.
VISION = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
TEXT = dict(transformer_width=8, transformer_heads=2, transformer_layers=2)
NUM_FRAMES = 4
EPOCH = 5
FILE_PATTERN = "clip_openai_timesformer_base.narrator_rephraser.ep_{epoch:04d}.md5sum_{md5}.pth"

CAPTIONS = [
    "#C C picks up the knife from the cutting board.",
    "#O The man's LEFT hand opens a drawer, takes out a spoon & stirs the pot!",
    "#C C washes a mug",
    (
        "#C C walks into the kitchen, opens the fridge, takes out two eggs, a carton of milk, "
        "some butter and a bag of flour, puts everything on the counter next to the sink, "
        "cracks the eggs into a large glass bowl, whisks them with a fork for a while, pours "
        "in the milk slowly, adds a pinch of salt, then stirs the batter until it is smooth "
        "and leaves it to rest."
    ),
]

# The documented command for the LaViLa dual encoder (docs/PRETRAIN.md, "Training a LaViLa
# dual-encoder"), as the submitit launcher sees it.
RECIPE_ARGV = [
    "run_with_submitit_pretrain.py",
    "--model", "CLIP_OPENAI_TIMESFORMER_BASE",
    "--metadata", "datasets/Ego4D/ego4d_train.rephraser.no_punkt_top3.pkl",
    "--metadata-aux", "datasets/Ego4D/ego4d_train.narrator_63690737.return_10.pkl",
    "--norm-embed", "--freeze-temperature",
    "--freeze-pseudo-temperature",
    "--fix-lr", "--contrastive-use-vissl",
    "--nodes", "4", "--use_volta32",
]


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    sys.modules[name] = module
    return module


class _Unused:
    """Placeholder for classes the dual encoder imports but never instantiates."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("stubbed: not used by the LaViLa dual encoder")

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        raise RuntimeError("stubbed: not used by the LaViLa dual encoder")


def install_stubs(official: str) -> None:
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, official)
    _stub("transformers", DistilBertModel=_Unused, GPT2LMHeadModel=_Unused, BertTokenizer=_Unused,
          DistilBertTokenizer=_Unused, GPT2Tokenizer=_Unused)
    _stub("lavila.models.narrator", VCLM_HF=_Unused)
    _stub("lavila.models.gpt2_gated", GPT2LMHeadModel=_Unused, augment_gpt2_config=_Unused)
    _stub("lavila.models.openai_clip", load=_Unused)  # replaced below by the tiny stand-in
    _stub("lavila.data.datasets")
    _stub("eval_zeroshot", get_similarity_matrix=_Unused)
    _stub("wandb")
    _stub("submitit")
    _stub("decord")


def tiny_openai_clip(torch, nn):
    """What ``load_openai_clip`` would return, at the tiny sizes (built from official classes)."""
    from lavila.models import openai_model

    width, layers, heads = VISION["embed_dim"], VISION["depth"], VISION["num_heads"]
    clip = nn.Module()
    clip.visual = openai_model.VisionTransformer(
        input_resolution=VISION["img_size"], patch_size=VISION["patch_size"], width=width,
        layers=layers, heads=heads, output_dim=512)
    tw = TEXT["transformer_width"]
    clip.transformer = openai_model.Transformer(tw, TEXT["transformer_layers"], TEXT["transformer_heads"])
    clip.token_embedding = nn.Embedding(49408, tw)
    clip.positional_embedding = nn.Parameter(torch.zeros(77, tw))
    clip.ln_final = openai_model.LayerNorm(tw)
    clip.text_projection = nn.Parameter(torch.zeros(tw, 512))  # 512 != 256: the builder skips it
    clip.logit_scale = nn.Parameter(torch.zeros([]))
    return clip


def patch_builder_sizes(models, torch, nn):
    real_stt, real_clip = models.SpaceTimeTransformer, models.CLIP

    def tiny_space_time_transformer(**kwargs):
        kwargs.update(VISION)
        return real_stt(**kwargs)

    def tiny_clip(**kwargs):
        kwargs.update(TEXT, vision_width=VISION["embed_dim"])
        return real_clip(**kwargs)

    models.SpaceTimeTransformer = tiny_space_time_transformer
    models.CLIP = tiny_clip
    models.load_openai_clip = lambda name, device: (tiny_openai_clip(torch, nn), None)


def randomise(model, torch, nn, seed: int) -> None:
    """Seeded, non-trivial values for every parameter (asserts none is left out)."""
    gen = torch.Generator().manual_seed(seed)

    def rn(t, std):
        return torch.randn(t.shape, generator=gen) * std

    done = set()
    with torch.no_grad():
        for mname, module in model.named_modules():
            prefix = f"{mname}." if mname else ""
            own = dict(module.named_parameters(recurse=False))
            if isinstance(module, nn.LayerNorm):
                own["weight"].copy_(1.0 + rn(own["weight"], 0.2))
                own["bias"].copy_(rn(own["bias"], 0.1))
            elif isinstance(module, (nn.Linear, nn.Conv2d)):
                w = own["weight"]
                fan_in = w[0].numel()
                w.copy_(rn(w, fan_in ** -0.5))
                if own.get("bias") is not None:
                    own["bias"].copy_(rn(own["bias"], 0.1))
            elif isinstance(module, nn.MultiheadAttention):
                own["in_proj_weight"].copy_(rn(own["in_proj_weight"], module.embed_dim ** -0.5))
                own["in_proj_bias"].copy_(rn(own["in_proj_bias"], 0.1))
            elif isinstance(module, nn.Embedding):
                own["weight"].copy_(rn(own["weight"], 0.5))
            for pname in own:
                done.add(prefix + pname)
        top = {
            "visual.cls_token": 0.5, "visual.pos_embed": 0.5, "visual.temporal_embed": 1.0,
            "positional_embedding": 0.1,
            "image_projection": VISION["embed_dim"] ** -0.5,
            "text_projection": TEXT["transformer_width"] ** -0.5,
        }
        params = dict(model.named_parameters())
        for name, std in top.items():
            params[name].copy_(rn(params[name], std))
            done.add(name)
        done.add("logit_scale")  # keep the official init log(1/0.07) (frozen by --freeze-temperature)
    missing = sorted(set(params) - done)
    assert not missing, f"parameters left at their init: {missing}"


def official_args(official: str):
    """The Namespace the official launcher hands to main_pretrain.main for the LaViLa recipe."""
    import run_with_submitit_pretrain as launcher

    saved = sys.argv
    sys.argv = list(RECIPE_ARGV)
    try:
        args = launcher.parse_args()
    finally:
        sys.argv = saved
    shared = pathlib.PosixPath("/checkpoint/user/experiments/lavila_pretrain")
    # launcher.main(): job_dir, dist_url, output_dir; Trainer._setup_gpu_args(): output_dir, gpu,
    # rank, world_size; init_distributed_mode(): distributed, dist_backend.
    args.job_dir = shared / "%j"
    args.dist_url = (shared / "0123456789abcdef0123456789abcdef_init").as_uri()
    args.output_dir = args.job_dir
    args.output_dir = pathlib.PosixPath(str(args.output_dir).replace("%j", "12345678"))
    args.gpu, args.rank, args.world_size = 0, 0, args.nodes * args.ngpus
    args.distributed = True
    args.dist_backend = "nccl"
    return args


def build(models, num_frames: int, ckpt_args):
    return models.CLIP_OPENAI_TIMESFORMER_BASE(
        text_use_cls_token=ckpt_args.use_cls_token,
        project_embed_dim=ckpt_args.project_embed_dim,
        gated_xattn=False,
        timesformer_gated_xattn=ckpt_args.timesformer_gated_xattn,
        timesformer_freeze_space=ckpt_args.timesformer_freeze_space,
        freeze_lm_vclm=ckpt_args.freeze_lm_vclm,
        freeze_visual_vclm=ckpt_args.freeze_visual_vclm,
        num_frames=num_frames,
        drop_path_rate=0,
    )


def save_like_numpy1(torch, obj) -> bytes:
    """torch.save bytes, with numpy scalars pickled under numpy 1.x's module name.

    The published files were written with numpy 1.x, whose scalars pickle as
    ``numpy.core.multiarray.scalar``; numpy 2 would write ``numpy._core.multiarray.scalar``.
    """
    import numpy
    import numpy.core.multiarray as legacy  # numpy 2 keeps this as an alias module

    real = numpy._core.multiarray.scalar

    def scalar(*a):
        return real(*a)

    scalar.__module__, scalar.__qualname__, scalar.__name__ = "numpy.core.multiarray", "scalar", "scalar"
    import pickle

    class Pickler(pickle.Pickler):
        def reducer_override(self, o):
            if isinstance(o, numpy.generic):
                fn, fargs = o.__reduce__()[:2]
                assert fn is real
                return scalar, fargs
            return NotImplemented

    pickle_module = types.SimpleNamespace(Pickler=Pickler, __name__="pickle")
    old = legacy.__dict__.get("scalar")
    legacy.scalar = scalar
    try:
        buf = io.BytesIO()
        torch.save(obj, buf, pickle_module=pickle_module)
    finally:
        if old is None:
            del legacy.scalar
        else:
            legacy.scalar = old
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of facebookresearch/LaViLa")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    opts = parser.parse_args()
    install_stubs(opts.official)

    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    import torch.nn as nn
    from safetensors.torch import save_file

    from lavila.models import loss as official_loss
    from lavila.models import models
    from lavila.models.tokenizer import SimpleTokenizer
    from lavila.models.utils import inflate_positional_embeds

    torch.manual_seed(0)
    patch_builder_sizes(models, torch, nn)
    ckpt_args = official_args(opts.official)
    model = build(models, NUM_FRAMES, ckpt_args).eval()
    randomise(model, torch, nn, seed=0)

    # --- the checkpoint, as main_pretrain.py saves it from the DDP-wrapped model ------------
    state_dict = OrderedDict(("module." + k, v.detach().clone()) for k, v in model.state_dict().items())
    criterion = official_loss.SSLCLIPLoss(
        use_vissl=ckpt_args.contrastive_use_vissl, cache_labels=True, rank=ckpt_args.rank,
        world_size=ckpt_args.world_size, scale_init=ckpt_args.pseudo_temperature_init,
        freeze_scale=ckpt_args.freeze_pseudo_temperature)
    checkpoint = {
        "epoch": EPOCH,
        "state_dict": state_dict,
        "criterion": criterion.state_dict(),
        # eval on EK-100 MIR each epoch: the mean of two numpy mAPs, i.e. a numpy float64
        "best_acc1": np.float64(0.2973),
        "args": ckpt_args,
    }
    blob = save_like_numpy1(torch, checkpoint)
    md5 = hashlib.md5(blob).hexdigest()[:6]
    name = FILE_PATTERN.format(epoch=EPOCH, md5=md5)
    for old in pathlib.Path(opts.out).glob("clip_openai_timesformer_*.pth"):
        old.unlink()
    ckpt_path = pathlib.Path(opts.out) / name
    ckpt_path.write_bytes(blob)

    # --- reload as the official evaluation does, then run the official encoders -------------
    loaded = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    sd = OrderedDict((k.replace("module.", ""), v) for k, v in loaded["state_dict"].items())
    model4 = build(models, NUM_FRAMES, loaded["args"]).eval()
    sd4 = inflate_positional_embeds(model4.state_dict(), OrderedDict(sd), num_frames=NUM_FRAMES,
                                    load_temporal_fix="bilinear")
    model4.load_state_dict(sd4, strict=True)

    tokenizer = SimpleTokenizer()
    tokens = tokenizer(CAPTIONS)
    gen = torch.Generator().manual_seed(1)
    frames = torch.randn(3, NUM_FRAMES, 3, VISION["img_size"], VISION["img_size"], generator=gen)
    frames16 = torch.randn(2, 16, 3, VISION["img_size"], VISION["img_size"], generator=gen)

    def cosine(video, text):
        # eval_zeroshot.get_similarity_matrix: x / x.norm(), then a float32 matmul
        v = (video / video.norm(dim=-1, keepdim=True)).numpy()
        t = (text / text.norm(dim=-1, keepdim=True)).numpy()
        return torch.from_numpy(np.matmul(v, t.T))

    with torch.no_grad():
        video = model4.encode_image(frames.permute(0, 2, 1, 3, 4).contiguous())
        text = model4.encode_text(tokens)
        model16 = build(models, 16, loaded["args"]).eval()
        sd16 = inflate_positional_embeds(model16.state_dict(), OrderedDict(sd), num_frames=16,
                                         load_temporal_fix="bilinear")
        model16.load_state_dict(sd16, strict=True)
        video16 = model16.encode_image(frames16.permute(0, 2, 1, 3, 4).contiguous())

    commit = subprocess.run(["git", "-C", opts.official, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    tensors = {
        "frames": frames.contiguous(),
        "video_embeddings": video.float().contiguous(),
        "text_embeddings": text.float().contiguous(),
        "similarity": cosine(video, text).float().contiguous(),
        "text_token_ids": tokens.contiguous(),
        "frames_16f": frames16.contiguous(),
        "video_embeddings_16f": video16.float().contiguous(),
        "similarity_16f": cosine(video16, text).float().contiguous(),
    }
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/facebookresearch/LaViLa",
        "commit": commit,
        "score": "cosine: L2-normalised video embedding . L2-normalised text embedding, no logit scale "
                 "(eval_zeroshot.get_similarity_matrix)",
        "normalized": "false",
        "frames_layout": "B,T,C,H,W (official CLIP.encode_image takes B,C,T,H,W: frames.permute(0,2,1,3,4))",
        "frames_value_range": "already normalised: (pixel in 0..255 - 255*CLIP mean) / (255*CLIP std)",
        "checkpoint": name,
        "num_frames": str(NUM_FRAMES),
        "vision_heads": str(VISION["num_heads"]),
        "text_heads": str(TEXT["transformer_heads"]),
        "sizes": json.dumps({"vision": VISION, "text": TEXT, "embed_dim": ckpt_args.project_embed_dim,
                             "context_length": 77, "vocab_size": 49408, "num_frames": NUM_FRAMES}),
        "logit_scale": repr(float(model4.logit_scale.exp())),
        "frames_16f": "B=2, 16 frames; official model built with num_frames=16 and the checkpoint "
                      "inflated by lavila.models.utils.inflate_positional_embeds(load_temporal_fix='bilinear')",
    }
    save_file(tensors, str(pathlib.Path(opts.out) / "golden.safetensors"), metadata=metadata)
    print(f"wrote {ckpt_path.name} ({len(blob)} bytes) and golden.safetensors")
    print("token ids of the long caption end with", tokens[3, -3:].tolist(), "(no EOT: truncated)")


if __name__ == "__main__":
    main()
