"""Regenerate the VideoPrism golden data in this folder.

    python tests/data/official/videoprism/make_golden.py

The reference is transformers' ``VideoPrismClipModel`` (the class the published
``google/videoprism-lvt-*`` directories load with; transformers 5.23.0, torch 2.13.0 CPU). It needs
no torchvision, so it runs in the product environment; nothing is stubbed. The published
SentencePiece tokenizer (32k pieces) is on the hub only, so the tiny checkpoint carries a tiny
``VideoPrismTokenizer`` (a Unigram model trained here with the ``tokenizers`` library, with
VideoPrism's special ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2) saved with ``save_pretrained``, so
``AutoTokenizer`` loads it offline the way it loads the real one. Deterministic: fixed seeds, CPU,
float32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
DIRECTORY = "videoprism-lvt-tiny-f8r32"
SEED = 20261202
CONTEXT = 24      # published: 64 (max_position_embeddings); the tiny model keeps 24 so truncation is tested
FRAMES = 8
SIZE = 32
CAPTIONS = [
    "a person cuts an onion",
    "Someone is slicing vegetables quickly",
    "a dog runs on the beach and the waves crash",
    "the chef washes the tomatoes chops the onions heats the oil stirs the sauce tastes it and serves the pasta "
    "to the guests at the long table",
]
CORPUS = [
    "a person cuts an onion on a wooden board",
    "someone is slicing vegetables in the kitchen quickly",
    "a dog runs on the beach and the waves crash",
    "the chef washes the tomatoes and chops the onions",
    "he heats the oil stirs the sauce tastes it and serves the pasta",
    "the guests wait at the long table",
    "a man rides a bicycle down the street",
]


def train_tokenizer(out_dir: Path) -> int:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import VideoPrismTokenizer

    base = Tokenizer(models.Unigram())
    base.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)
    base.train_from_iterator(CORPUS * 4, trainer=trainer)
    pieces = json.loads(base.to_str())["model"]["vocab"]
    assert [p for p, _ in pieces[:3]] == ["<pad>", "</s>", "<unk>"], pieces[:3]
    tokenizer = VideoPrismTokenizer(vocab=[tuple(p) for p in pieces], extra_ids=0, model_max_length=CONTEXT)
    tokenizer.save_pretrained(str(out_dir))
    return len(pieces)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial random weights: norm offsets near 0 (VideoPrism's LayerNorm scales by 1 + weight),
    random biases, matrices ~ 1/sqrt(fan-in), position and class embeddings ~ 0.5."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            if "layernorm" in name or "layer_norm" in name or ".norm" in name:
                p.copy_((0.2 if leaf == "weight" else 0.1) * noise)
            elif leaf == "bias":
                p.copy_(0.1 * noise)
            elif leaf in ("per_dim_scale",):
                p.copy_(0.5 * noise)
            elif "position_embeddings" in name or "cls_emb" in name or "pooling_attention_query" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / math.sqrt(p[0].numel()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import transformers
    from transformers import AutoTokenizer, VideoPrismClipModel, VideoPrismConfig

    target = args.out / DIRECTORY
    if target.exists():
        shutil.rmtree(target)
    vocab = train_tokenizer(target)
    config = VideoPrismConfig(
        vision_config=dict(image_size=SIZE, num_frames=FRAMES, tubelet_size=[1, 8, 8], hidden_size=32,
                           num_attention_heads=4, intermediate_size=64, num_spatial_layers=2,
                           num_temporal_layers=1, num_auxiliary_layers=1),
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=CONTEXT))
    torch.manual_seed(SEED)
    model = VideoPrismClipModel(config).eval()
    randomize(model, SEED)
    model.save_pretrained(str(target))

    model = VideoPrismClipModel.from_pretrained(str(target), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(target), local_files_only=True)
    encoded = tok(CAPTIONS, padding="max_length", truncation=True, max_length=CONTEXT, return_tensors="pt")
    gen = torch.Generator().manual_seed(SEED)
    frames = torch.rand(3, FRAMES, 3, SIZE, SIZE, generator=gen)          # [0, 1], not normalised, as published
    with torch.no_grad():
        video = model.get_video_features(pixel_values_videos=frames).pooler_output.flatten(1)   # [B, 1, D] -> [B, D]
        text = model.get_text_features(**encoded).pooler_output
        forward = model(pixel_values_videos=frames, **encoded)
        similarity = video @ text.T
        # the class's own output is exp(cos) normalised over the videos: check that is what it returns
        softmax = similarity.exp() / similarity.exp().sum(dim=0, keepdim=True)
        assert torch.allclose(softmax, forward.logits_per_video, atol=1e-6)
        assert torch.equal(video, forward.video_embeds) and torch.equal(text, forward.text_embeds)
        longest = tok(CAPTIONS, padding="longest", truncation=True, max_length=CONTEXT, return_tensors="pt")
        moved = model.get_text_features(**longest).pooler_output
        interpolated = model.get_video_features(pixel_values_videos=frames[:, :4],
                                                interpolate_pos_encoding=True).pooler_output.flatten(1)
    print(f"tokenizer {type(tok).__name__}, vocabulary {vocab}; lengths {encoded['attention_mask'].sum(1).tolist()}")
    print(f"padding to the longest caption instead of max_length (the causal mask hides the padding): text cosine "
          f"{F.cosine_similarity(moved, text).min():.4f}")
    print(f"similarity:\n{similarity}")
    tensors = {
        "frames": frames.contiguous(),
        "video_embeddings": video.contiguous(),
        "text_embeddings": text.contiguous(),
        "similarity": similarity.contiguous(),
        "logits_per_video": forward.logits_per_video.contiguous(),
        "input_ids": encoded["input_ids"].contiguous(),
        "attention_mask": encoded["attention_mask"].contiguous(),
        "video_embeddings_4_frames_interpolated": interpolated.contiguous(),
    }
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "checkpoint": DIRECTORY,
        "repository": "https://github.com/huggingface/transformers (VideoPrismClipModel; weights converted from "
                      "https://github.com/google-deepmind/videoprism)",
        "commit": f"transformers=={transformers.__version__}, torch=={torch.__version__}",
        "score": "cosine of get_video_features / get_text_features pooler_output (both L2-normalised by the model); "
                 "logits_per_video is the class's exp(cos) normalised over the batch's videos",
        "frames_layout": "B,T,3,H,W in [0, 1]",
        "text_preprocessing": f"padding=max_length ({CONTEXT}), truncation, attention mask",
        "seed": str(SEED),
    }
    save_file(tensors, str(args.out / "golden.safetensors"), metadata=metadata)


if __name__ == "__main__":
    main()
