"""Write the CLIP-ViP golden data by running the official XPretrain/CLIP-ViP code.

Run with the reference environment (never the product one):

    OMP_NUM_THREADS=1 /work/refenv/bin/python tests/data/official/clip_vip/make_golden.py \
        --official /work/ref/XPretrain

What it does, in order:
1. builds, in a temporary folder, what the official scripts read from the hub id
   ``openai/clip-vit-base-patch32``: a ``config.json`` (here a tiny CLIPConfig) and the CLIP BPE
   ``vocab.json``/``merges.txt`` (derived from our own ``adapters/resources/bpe_simple_vocab_16e6.txt.gz``,
   the same merges the hub files hold);
2. builds the official ``VidCLIP`` wrapper exactly as ``run_video_retrieval.setup_model`` does, fills its
   state dict with seeded random values, and saves it the way the official ``ModelSaver`` saves a
   model trained under apex O2: a flat ``{'clipmodel.…': tensor}`` dict, floating tensors in fp16,
   the integer ``position_ids`` buffers kept;
3. builds a fresh ``VidCLIP`` and loads that file through the official
   ``load_state_dict_with_mismatch``, tokenises the captions with the official
   ``VideoRetrievalCollator`` (``CLIPTokenizerFast``, ``max_txt_len`` 50), and records
   ``forward_video``/``forward_text`` and the logits of ``CLIPModel.forward``.

Only modules the import chain needs but this path never calls are stubbed (apex, easydict, ujson,
tensorboardX, decord, cv2, lmdb, PIL, the frame-sampling and image-transform modules).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import tempfile
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[3]
BPE_PATH = REPO_ROOT / "adapters" / "resources" / "bpe_simple_vocab_16e6.txt.gz"

CHECKPOINT_NAME = "pretrain_clipvip_tiny_8.pt"
SEED = 20230501
CONTEXT_LENGTH = 50  # max_txt_len of every retrieval config (the pretraining config uses 70)

TINY = {
    "vision": {"hidden_size": 48, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
               "image_size": 32, "patch_size": 8},
    "text": {"hidden_size": 24, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2,
             "max_position_embeddings": 77, "vocab_size": 49408},
    "projection_dim": 32,
    "additional": {"type": "ViP", "temporal_size": 12, "if_use_temporal_embed": 1,
                   "logit_scale_init_value": 4.60, "add_cls_num": 3},
}
QK_GAIN = 3.0  # gain on the vision q/k projections
LOGIT_SCALE = 3.9  # stored log-temperature (official runs clamp it to [0, log 200])

CAPTIONS = [
    "A man is cooking pasta in the kitchen.",
    "Two DOGS run across a snowy field; it\u2019s cold &amp; windy!",
    "The chef's knife slices tomatoes, onions and peppers; then he adds salt, pepper, olive oil, garlic, "
    "basil, oregano, a pinch of sugar and a splash of red wine before stirring the sauce slowly for "
    "twenty minutes while the radio plays old songs in the background.",
    "someone's playing guitar (badly), isn't it?",
]


# --------------------------------------------------------------------------------------------------
# stubs for imports the official modules make but this path does not use
# --------------------------------------------------------------------------------------------------
class _AttrDict(dict):
    """Attribute-access dict standing in for easydict.EasyDict."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __setattr__(self, name, value):
        self[name] = value


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(mod, key, value)
    sys.modules.setdefault(name, mod)
    return sys.modules[name]


def _install_model_stubs() -> None:
    # torchvision is installed without its compiled ops in the reference env; transformers imports it
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    _stub("easydict", EasyDict=_AttrDict)
    _stub("apex", amp=types.SimpleNamespace())
    _stub("ujson", **{k: getattr(json, k) for k in ("load", "loads", "dump", "dumps")})
    _stub("tensorboardX", SummaryWriter=object)


# the collator's module imports video/image libraries at top level; they are stubbed only while it is
# imported (transformers probes PIL itself, so the PIL stub must not outlive that import)
_DATASET_STUBS = ("decord", "cv2", "lmdb", "PIL", "PIL.Image")


def _import_collator():
    module = _stub
    decord = module("decord", VideoReader=object, cpu=lambda *a: None, gpu=lambda *a: None)
    decord.bridge = types.SimpleNamespace(set_bridge=lambda *_: None)
    module("cv2")
    module("lmdb")
    module("PIL", Image=types.SimpleNamespace())
    module("PIL.Image")
    # sibling modules of the collator that pull in torchvision/PIL transforms and frame samplers
    module("src.datasets.data_utils", mask_batch_text_tokens=None, img_collate=None)
    module("src.datasets.dataloader", init_transform_dict=None, init_transform_dict_simple=None)
    module("src.datasets.sample_frames", SampleFrames=None)
    from src.datasets.dataset_video_retrieval import VideoRetrievalCollator

    for name in _DATASET_STUBS:
        sys.modules.pop(name, None)
    return VideoRetrievalCollator


# --------------------------------------------------------------------------------------------------
# what the official scripts would read from the hub
# --------------------------------------------------------------------------------------------------
def _bytes_to_unicode() -> list[str]:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def _write_hub_folder(folder: Path) -> None:
    """config.json + CLIP BPE tokenizer files, as the hub folder openai/clip-vit-base-patch32 holds."""
    lines = gzip.open(BPE_PATH, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    base = _bytes_to_unicode()
    tokens = base + [t + "</w>" for t in base] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == 49408
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**special, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}),
        encoding="utf-8")
    common = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "dropout": 0.0,
              "initializer_factor": 1.0, "initializer_range": 0.02}
    config = {
        "model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": TINY["projection_dim"],
        "logit_scale_init_value": 2.6592, "initializer_factor": 1.0,
        "text_config": {**common, **TINY["text"], "projection_dim": TINY["projection_dim"],
                        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
        "vision_config": {**common, **TINY["vision"], "projection_dim": TINY["projection_dim"],
                          "num_channels": 3},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")


def _official_args(hub_folder: Path):
    return _AttrDict(
        clip_config=str(hub_folder),
        clip_weights=None,
        clip_vision_additional_config=_AttrDict(TINY["additional"]),
        e2e_weights_path=None,
    )


# --------------------------------------------------------------------------------------------------
# random tiny checkpoint in the published layout
# --------------------------------------------------------------------------------------------------
def _random_state(reference: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in reference.items():
        if not value.is_floating_point():
            state[key] = value.clone()  # position_ids buffers
            continue
        shape = value.shape

        def normal(std, mean=0.0):
            return torch.randn(shape, generator=gen) * std + mean

        if key.endswith("logit_scale"):
            new = torch.full(shape, LOGIT_SCALE)
        elif "layer_norm" in key or "layrnorm" in key or "layernorm" in key:
            new = normal(0.2, 1.0) if key.endswith("weight") else normal(0.1)
        elif key.endswith("bias"):
            new = normal(0.1)
        elif key.endswith(("class_embedding", "added_cls")):
            new = normal(0.1)  # small, so the pooled class token is driven by the frames, not by itself
        elif key.endswith("temporal_embedding") or "token_embedding" in key:
            new = normal(0.5)
        elif "position_embedding" in key:
            new = normal(0.2)
        else:  # projection / conv weights: fan-in scaling keeps activations O(1)
            fan_in = int(math.prod(shape[1:]))
            gain = 2.0 if "patch_embedding" in key else 1.0
            if "vision_model" in key and key.endswith(("q_proj.weight", "k_proj.weight")):
                gain = QK_GAIN  # peaked attention: the class tokens then depend on which patches they pick
            new = normal(gain * fan_in ** -0.5)
        state[key] = new.to(torch.float16)  # apex O2 keeps model weights in half precision
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of microsoft/XPretrain")
    parser.add_argument("--out", default=str(HERE))
    opts = parser.parse_args()

    official = Path(opts.official).resolve()
    code_root = official / "CLIP-ViP"
    sys.path.insert(0, str(code_root))
    _install_model_stubs()
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    from src.modeling.VidCLIP import VidCLIP
    from src.utils.load_save import load_state_dict_with_mismatch
    from transformers import CLIPTokenizerFast

    VideoRetrievalCollator = _import_collator()

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME

    with tempfile.TemporaryDirectory() as tmp:
        hub = Path(tmp)
        _write_hub_folder(hub)
        args = _official_args(hub)

        template = VidCLIP(args)
        state = _random_state(template.state_dict(), gen)
        torch.save(state, ckpt_path)

        model = VidCLIP(args)
        load_state_dict_with_mismatch(model, str(ckpt_path))
        model.eval()
        loaded = model.state_dict()
        for key, value in state.items():  # the official loader must have taken every tensor
            assert torch.equal(loaded[key].to(value.dtype), value), key

        # transformers 5 dropped batch_encode_plus; in 4.x it was __call__ on a list of strings
        class OldApiTokenizer(CLIPTokenizerFast):
            def batch_encode_plus(self, texts, **kwargs):
                return self(texts, **kwargs)

        tokenizer = OldApiTokenizer.from_pretrained(str(hub))
        collator = VideoRetrievalCollator(tokenizer, max_length=CONTEXT_LENGTH, is_train=False)
        dummy = torch.zeros(1, 3, 2, 2)
        batch = collator.collate_batch([{"video": dummy, "texts": [c]} for c in CAPTIONS])
        input_ids, attention_mask = batch["text_input_ids"], batch["text_input_mask"]

    vision = TINY["vision"]
    frames = torch.randn(3, TINY["additional"]["temporal_size"], 3, vision["image_size"], vision["image_size"],
                         generator=gen)
    frames_short = torch.randn(1, 6, 3, vision["image_size"], vision["image_size"], generator=gen)

    with torch.no_grad():
        video = model.forward_video(frames)
        video_short = model.forward_video(frames_short)
        text = model.forward_text(input_ids, attention_mask)
        outputs = model.clipmodel(input_ids=input_ids, attention_mask=attention_mask, pixel_values=frames,
                                  return_loss=False)
        similarity = outputs["logits_per_image"]
        cosine = video @ text.T
        logit_scale = float(model.clipmodel.logit_scale.exp())

    assert torch.allclose(similarity, cosine * logit_scale, atol=1e-5)
    assert torch.allclose(outputs["image_embeds"], video, atol=1e-6)
    assert torch.allclose(outputs["text_embeds"], text, atol=1e-6)

    # cross-check the BPE files against OpenAI's own tokenizer when its checkout is around
    openai_clip = official.parent / "CLIP"
    if (openai_clip / "clip" / "simple_tokenizer.py").exists():
        sys.path.insert(0, str(openai_clip))
        from clip.simple_tokenizer import SimpleTokenizer

        simple = SimpleTokenizer(str(BPE_PATH))
        for row, caption in zip(input_ids, CAPTIONS):
            ids = [49406] + simple.encode(caption)[: CONTEXT_LENGTH - 2] + [49407]
            same = row[: len(ids)].tolist() == ids
            # OpenAI's tokenizer runs ftfy (curly quotes become straight) and unescapes HTML; the
            # fast tokenizer the official scripts use does neither, so only caption 1 differs
            assert same == (caption is not CAPTIONS[1]), caption

    commit = os.popen(f"git -C {official} rev-parse HEAD").read().strip()
    tensors = {
        "frames": frames.float().contiguous(),
        "video_embeddings": video.float().contiguous(),
        "text_embeddings": text.float().contiguous(),
        "similarity": similarity.float().contiguous(),
        "cosine": cosine.float().contiguous(),
        "input_ids": input_ids.to(torch.int64).contiguous(),
        "attention_mask": attention_mask.to(torch.int64).contiguous(),
        "frames_short": frames_short.float().contiguous(),
        "video_embeddings_short": video_short.float().contiguous(),
    }
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/microsoft/XPretrain (folder CLIP-ViP)",
        "commit": commit,
        "score": "exp(logit_scale) * cosine of the L2-normalised projections (CLIPModel.forward "
                 "logits_per_image, videos x texts); the retrieval evaluation ranks by the plain cosine "
                 "(metrics.cal_cossim), stored as 'cosine'",
        "normalized": "true",
        "logit_scale": repr(logit_scale),
        "frames_layout": "B,T,C,H,W (CLIP mean/std already applied)",
        "context_length": str(CONTEXT_LENGTH),
        "checkpoint": CHECKPOINT_NAME,
        "frames_short": "one 6-frame video: the 12-row temporal embedding is linearly interpolated",
    }
    save_file(tensors, str(out / "golden.safetensors"), metadata=metadata)
    os.chmod(out / "golden.safetensors", 0o644)
    print("wrote", ckpt_path, ckpt_path.stat().st_size, "bytes;", out / "golden.safetensors")
    print("similarity", similarity)


if __name__ == "__main__":
    main()
