"""Build the MIL-NCE S3D golden files by running the official code on tiny random checkpoints.

Run with the reference environment, never with the product one:

    /work/refenv/bin/python tests/data/official/milnce_s3d/make_golden.py --official /work/ref/S3D_HowTo100M

What it does, and why:

- The official ``s3dg.S3D`` hard-codes S3D-G's channel widths (a full-width state dict is about
  30 MB) and the text module's sizes (66,250 words x 300, a 2048-wide hidden layer). We keep the
  official classes and their forward code untouched and narrow the widths by wrapping the
  ``__init__`` of the official building blocks at import time: every channel count given to
  ``STConv3D`` and ``SelfGating`` is divided by 8 (except the stem's input, 24 = 8 x RGB after
  space-to-depth, or 3 without it), ``S3D``'s final ``fc`` takes the narrowed 1024 / 8 = 128
  features, and ``Sentence_Embedding`` gets a small dictionary and word-embedding width. The
  wrappers patch ``__init__`` instead of replacing the class names because the official code
  calls ``super(ClassName, self)``, which needs the real classes under those names.
- Every parameter and batch-norm statistic is then overwritten with seeded random values, so a
  porting mistake (a wrong space-to-depth order, a missed gating, a masked padding row) moves the
  outputs.
- The files are written in the official on-disk format: ``torch.save(net.state_dict())`` (a plain
  state dict, as ``s3d_howto100m.pth``) and ``np.save`` of the word list (as ``s3d_dict.npy``:
  word i has id i + 1, 0 is padding). The official network is then rebuilt from these files the
  way the official README does it (``S3D(dict_path, num_classes)`` +
  ``load_state_dict(torch.load(...))``, ``eval()``) and its outputs recorded.
- Two official models: the published layout (space-to-depth stem, 50 words, word width 24,
  hidden 256, 32-d joint space) and a second one with the RGB stem
  (``space_to_depth=False``), another dictionary size with spare embedding rows (40 words, 45
  rows), word width 20, hidden 128 and a 24-d joint space, so that every size the port reads
  from shapes varies.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

NARROW = 8  # every S3D-G channel width divided by this
SEED = 0

# The main model (the published layout at tiny widths).
MAIN = dict(checkpoint="s3d_howto100m.pth", word_dict="s3d_dict.npy", space_to_depth=True, num_classes=32,
            word_dim=24, hidden=256, rows=None)
# The second model: RGB stem, other text sizes, more embedding rows than dictionary words.
RGB = dict(checkpoint="s3d_rgb_stem.pth", word_dict="s3d_rgb_stem_dict.npy", space_to_depth=False, num_classes=24,
           word_dim=20, hidden=128, rows=45)

# 50 words. Ids are index + 1. "bowl" appears twice (the official dict keeps the later index);
# "Pan" has a capital and can never match (captions are lower-cased first); "chef's", "don't" and
# "'til" keep their apostrophes ([\w']+); "stir_fry" keeps its underscore (\w); "café", "naïve"
# are Unicode words; "2" is a number.
WORDS = [
    "open", "door", "cut", "tomato", "the", "a", "chef's", "knife", "don't", "drop",
    "it", "into", "slices", "pan", "Pan", "bowl", "stir_fry", "2", "eggs", "café",
    "naïve", "add", "salt", "pepper", "to", "and", "then", "mix", "pour", "water",
    "oil", "heat", "onion", "garlic", "fry", "stir", "bowl", "whisk", "flour", "sugar",
    "butter", "milk", "bake", "oven", "minutes", "'til", "golden", "serve", "hot", "of",
]
RGB_WORDS = WORDS[:40]

CAPTIONS = [
    "open door",
    "Cut the TOMATO into slices",
    "The chef's knife, don't drop it!",
    "xylophone zebra qwerty",  # no known word: the official code gives all-padding ids
    "",
    "   ...!!! ",
    # 22 known words with unknown ones between them: unknown words go first, then the cut to 16
    "add the salt and pepper to the bowl then mix and pour water and oil then heat the pan and fry the onion "
    "zzz and garlic and stir",
    "Pan pan PAN",  # only "pan" (id 14) is in reach: "Pan" (id 15) never matches a lower-cased word
    "café naïve CAFÉ",
    "stir_fry 2 eggs; stir-fry 'til golden",  # "stir-fry" splits at "-"
    "bowl",  # the second "bowl" wins: id 37, not 16
    "'cut' cut",  # "'cut'" keeps its quotes and is unknown
    "a" * 3 + " " + "of " * 30,  # 30 known words: only 16 are kept
]


def narrowed(channels: int) -> int:
    assert channels % NARROW == 0, channels
    return channels // NARROW


def install_tiny_sizes(s3dg, nn, text_sizes: dict) -> None:
    """Wrap the official constructors so that they build the tiny model (forward code untouched)."""
    conv_init = s3dg.STConv3D.__init__
    gating_init = s3dg.SelfGating.__init__
    sentence_init = s3dg.Sentence_Embedding.__init__
    s3d_init = s3dg.S3D.__init__
    if getattr(s3dg, "_tiny_installed", False):
        conv_init, gating_init, sentence_init, s3d_init = s3dg._tiny_originals

    def tiny_conv(self, input_dim, output_dim, kernel_size, stride=1, padding=0, separable=False):
        stem_input = input_dim in (3, 24) and list(kernel_size) in ([2, 4, 4], [3, 7, 7])
        conv_init(self, input_dim if stem_input else narrowed(input_dim), narrowed(output_dim), kernel_size,
                  stride=stride, padding=padding, separable=separable)

    def tiny_gating(self, input_dim):
        gating_init(self, narrowed(input_dim))

    def tiny_sentence(self, embd_dim, num_embeddings=66250, word_embedding_dim=300, token_to_word_path="dict.npy",
                      max_words=16, output_dim=2048):
        sentence_init(self, embd_dim, num_embeddings=text_sizes["rows"], word_embedding_dim=text_sizes["word_dim"],
                      token_to_word_path=token_to_word_path, max_words=max_words, output_dim=text_sizes["hidden"])

    def tiny_s3d(self, dict_path, num_classes=512, gating=True, space_to_depth=True):
        s3d_init(self, dict_path, num_classes=num_classes, gating=gating, space_to_depth=space_to_depth)
        self.fc = nn.Linear(narrowed(self.fc.in_features), self.fc.out_features)  # mixed_5c is 1024 / 8 wide

    s3dg._tiny_originals = (conv_init, gating_init, sentence_init, s3d_init)
    s3dg._tiny_installed = True
    s3dg.STConv3D.__init__ = tiny_conv
    s3dg.SelfGating.__init__ = tiny_gating
    s3dg.Sentence_Embedding.__init__ = tiny_sentence
    s3dg.S3D.__init__ = tiny_s3d


def randomise(net, torch, nn, seed: int) -> None:
    """Seeded, non-trivial values for every parameter and batch-norm statistic (none left out)."""
    gen = torch.Generator().manual_seed(seed)

    def rn(t, std):
        return torch.randn(t.shape, generator=gen) * std

    done = set()
    with torch.no_grad():
        for mname, module in net.named_modules():
            prefix = f"{mname}." if mname else ""
            if isinstance(module, nn.BatchNorm3d):
                module.weight.copy_(1.0 + rn(module.weight, 0.2))
                module.bias.copy_(rn(module.bias, 0.1))
                module.running_mean.copy_(rn(module.running_mean, 0.1))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
                module.num_batches_tracked.fill_(123456)
                done.update(prefix + n for n in ("weight", "bias", "running_mean", "running_var",
                                                 "num_batches_tracked"))
            elif isinstance(module, nn.Conv3d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(rn(module.weight, (2.0 / fan_in) ** 0.5))
                done.add(prefix + "weight")
            elif isinstance(module, nn.Linear):
                fan_in = module.weight.shape[1]
                module.weight.copy_(rn(module.weight, (2.0 / fan_in) ** 0.5))
                module.bias.copy_(rn(module.bias, 0.1))
                done.update((prefix + "weight", prefix + "bias"))
            elif isinstance(module, nn.Embedding):
                module.weight.copy_(rn(module.weight, 1.0))  # row 0 (padding) too: it enters the max-pool
                done.add(prefix + "weight")
    missing = sorted(set(net.state_dict()) - done)
    assert not missing, f"left at their init: {missing}"


def build_official(s3dg, torch, nn, np, sizes: dict, words: list[str], out: pathlib.Path, seed: int):
    """Write one tiny checkpoint + dictionary in the official format and reload them as the README does."""
    text_sizes = dict(rows=sizes["rows"] or len(words) + 1, word_dim=sizes["word_dim"], hidden=sizes["hidden"])
    install_tiny_sizes(s3dg, nn, text_sizes)
    dict_path = out / sizes["word_dict"]
    np.save(dict_path, np.array(words))  # a unicode array, read by np.load without pickle
    net = s3dg.S3D(str(dict_path), sizes["num_classes"], space_to_depth=sizes["space_to_depth"])
    randomise(net, torch, nn, seed)
    checkpoint = out / sizes["checkpoint"]
    torch.save(net.state_dict(), checkpoint)
    # The README's way: S3D(dict, 512) + load_state_dict(th.load(pth)) + eval()
    official = s3dg.S3D(str(dict_path), sizes["num_classes"], space_to_depth=sizes["space_to_depth"])
    official.load_state_dict(torch.load(checkpoint))
    return official.eval(), checkpoint


def run_video(net, torch, frames):
    """``frames`` in our layout [B, T, 3, H, W]; the official network takes [B, 3, T, H, W]."""
    with torch.no_grad():
        out = net(frames.permute(0, 2, 1, 3, 4).contiguous())
    return out["video_embedding"].contiguous(), out["mixed_5c"].contiguous()


def run_text(net, torch, captions):
    with torch.no_grad():
        ids = net.text_module._words_to_ids(captions)
        text = net.text_module(captions)["text_embedding"]
    return ids.contiguous(), text.contiguous()


def similarity(torch, video, text):
    """The README's ``th.matmul(text_embedding, video_embedding.t())``, stored transposed as [videos, texts]."""
    return torch.matmul(text, video.t()).t().contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of antoine77340/S3D_HowTo100M")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    opts = parser.parse_args()
    sys.path.insert(0, opts.official)
    out = pathlib.Path(opts.out)

    import numpy as np
    import torch
    import torch.nn as nn
    from safetensors.torch import save_file

    import s3dg

    torch.manual_seed(SEED)
    main_net, main_ckpt = build_official(s3dg, torch, nn, np, MAIN, WORDS, out, seed=SEED)
    rgb_net, rgb_ckpt = build_official(s3dg, torch, nn, np, RGB, RGB_WORDS, out, seed=SEED + 1)

    gen = torch.Generator().manual_seed(1)
    frames = torch.rand(3, 8, 3, 32, 32, generator=gen)  # values in [0, 1], no normalisation
    frames_odd = torch.rand(2, 4, 3, 40, 48, generator=gen)  # even, but not multiples of 32: ceil-mode pools
    frames_rgb = torch.rand(2, 5, 3, 33, 37, generator=gen)  # odd sizes: fine without space-to-depth

    video, mixed = run_video(main_net, torch, frames)
    video_odd, mixed_odd = run_video(main_net, torch, frames_odd)
    ids, text = run_text(main_net, torch, CAPTIONS)
    video_rgb, mixed_rgb = run_video(rgb_net, torch, frames_rgb)
    video_rgb32, mixed_rgb32 = run_video(rgb_net, torch, frames)
    ids_rgb, text_rgb = run_text(rgb_net, torch, CAPTIONS)

    for name, value in (("video", video), ("mixed_5c", mixed), ("text", text), ("video_rgb", video_rgb)):
        print(f"{name}: shape {list(value.shape)}, std {float(value.std()):.4f}, "
              f"distinct rows {len({tuple(r.tolist()) for r in value})}")

    tensors = {
        "frames": frames, "video_embeddings": video, "mixed_5c": mixed,
        "frames_odd": frames_odd, "video_embeddings_odd": video_odd, "mixed_5c_odd": mixed_odd,
        "text_token_ids": ids, "text_embeddings": text, "similarity": similarity(torch, video, text),
        "frames_rgb": frames_rgb, "video_embeddings_rgb": video_rgb, "mixed_5c_rgb": mixed_rgb,
        "video_embeddings_rgb_32px": video_rgb32, "mixed_5c_rgb_32px": mixed_rgb32,
        "text_token_ids_rgb": ids_rgb, "text_embeddings_rgb": text_rgb,
        "similarity_rgb": similarity(torch, video_rgb, text_rgb),
    }
    commit = subprocess.run(["git", "-C", opts.official, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/antoine77340/S3D_HowTo100M",
        "commit": commit,
        "score": "raw dot product of video_embedding and text_embedding (README: "
                 "th.matmul(text_embedding, video_embedding.t())), stored as [videos, texts]",
        "normalized": "false",
        "frames_layout": "B,T,C,H,W (the official S3D takes B,C,T,H,W: frames.permute(0,2,1,3,4))",
        "frames_value_range": "[0, 1], no mean/std",
        "checkpoint": main_ckpt.name,
        "word_dict": MAIN["word_dict"],
        "checkpoint_rgb": rgb_ckpt.name,
        "word_dict_rgb": RGB["word_dict"],
        "narrow": str(NARROW),
        "sizes": json.dumps({"main": MAIN, "rgb": RGB, "words": len(WORDS), "words_rgb": len(RGB_WORDS),
                             "max_words": 16}),
    }
    save_file(tensors, str(out / "golden.safetensors"), metadata=metadata)
    for path in (main_ckpt, rgb_ckpt, out / MAIN["word_dict"], out / RGB["word_dict"], out / "golden.safetensors"):
        print(f"wrote {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
