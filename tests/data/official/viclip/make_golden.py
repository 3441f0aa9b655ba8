"""Write the tiny ViCLIP checkpoint and the golden outputs of the official InternVid ViCLIP code.

Run out of tree, in the reference environment (never in the product):

    /work/refenv/bin/python tests/data/official/viclip/make_golden.py --official /work/ref/InternVideo

What it does, and why each step:

1. Imports the official package ``Data/InternVid/viclip`` and swaps the two size builders its
   ``ViCLIP`` class calls (``clip_joint_l14`` and ``clip_text_l14``, which hard-code ViT-L/14) for
   builders that construct the *official* ``VisionTransformer`` and ``CLIP_TEXT`` classes at a tiny
   size. Everything else -- the ``ViCLIP`` wrapper, its strict ``torch.load(...)['model']`` load,
   ``get_vid_features``, ``get_text_features``, the tokenizer -- is the official code unchanged.
2. Fills every tensor with seeded random values (LayerNorm scales around 1, random biases, a
   random temporal embedding so frame order matters, query/key weights 3x larger so attention is
   sharp enough for each video's class token to depend on its own patches) and saves ``{'model': state_dict}`` in fp32
   as ``ViClip-InternVid-10M-FLT.pth``, the published file's name and layout. The token
   embedding keeps the real 49,408 rows (the real BPE ids, 49406/49407 for start/end, must index
   it) but is stored as an overlapping-stride view of one 49,471-float vector (row i = v[i:i+64]),
   so it costs 200 kB instead of 12.6 MB; ``torch.load`` gives back an ordinary [49408, 64] tensor.
3. Loads that file through the official ``ViCLIP(pretrain=...)`` and runs, in eval mode,
   ``get_vid_features`` on random already-normalised frames [B, T, C, H, W] and
   ``get_text_features`` on four captions (both L2-normalised by the official code). The official
   score is ``get_predict_label``'s logits: ``100 * video @ text.T``.
4. Frame counts other than the trained 8: the official evaluation path (Pretrain/ViCLIP
   ``tasks/shared_utils.py``) builds the model for the new count and runs
   ``interpolate_pos_embed_vit`` on the checkpoint: fewer frames keep the first rows of the
   temporal embedding, more frames interpolate it linearly. The copy of that function in
   ``Data/InternVid/viclip/viclip_vision.py`` calls ``interpolate_temporal_pos_embed`` without
   defining it, so the definition from ``InternVideo1/Pretrain/ViCLIP/models/utils.py`` is
   injected. Outputs for 4 frames (``frames[:, ::2]``) and 16 frames
   (``cat([frames, frames.flip(1)], 1)``) are stored; the test rebuilds those inputs. A single
   frame on the 8-frame model (the official forward adds the *mean* temporal embedding) is stored
   too.

Stubbed imports (imported by the official package, not used on this path): ``cv2`` (demo frame
reading and resizing in ``viclip/__init__.py``), ``pkg_resources`` (only its ``packaging`` attribute
is used, by the tokenizer's torch-version check: the real ``packaging`` module is put there), and,
for loading ``models/utils.py`` on its own, ``scipy.interpolate`` (its ``.prompts`` import finds the
real file through a stand-in package).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
CKPT_NAME = "ViClip-InternVid-10M-FLT.pth"
SEED = 20240705

VISION = dict(input_resolution=32, patch_size=8, width=128, layers=2, heads=2, output_dim=64)
TEXT = dict(embed_dim=64, context_length=32, vocab_size=49408, transformer_width=64, transformer_heads=1,
            transformer_layers=2)
BATCH, FRAMES = 3, 8
CAPTIONS = [
    "A person slices an onion on a wooden board.",
    "Someone's pouring MILK into a glass, then stirring it!",
    "The chef, wearing a red apron and a tall white hat, quickly whisks three brown eggs in a steel bowl, "
    "adds a pinch of salt & freshly ground black pepper, pours the foamy mixture into a hot buttered pan, "
    "waits until the edges set, folds the omelette twice with a wooden spatula, sprinkles chopped chives "
    "on top and finally slides it onto a warm white plate before serving it to the hungry guests.",
    "close-up: hands tie a shoelace",
]


def stub_unused_imports() -> None:
    import packaging.version

    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))  # refenv's torchvision needs these (out of tree)
    cv2 = types.ModuleType("cv2")

    def _unused(*args, **kwargs):
        raise RuntimeError("cv2 stub used: the demo's frame reader is not part of the golden path")

    cv2.resize = cv2.VideoCapture = _unused
    sys.modules.setdefault("cv2", cv2)
    pkg_resources = types.ModuleType("pkg_resources")
    pkg_resources.packaging = packaging
    sys.modules.setdefault("pkg_resources", pkg_resources)


def load_pretrain_utils(official: Path):
    """``InternVideo1/Pretrain/ViCLIP/models/utils.py`` without importing its package."""
    scipy = types.ModuleType("scipy")
    scipy.interpolate = types.ModuleType("scipy.interpolate")
    sys.modules.setdefault("scipy", scipy)
    sys.modules.setdefault("scipy.interpolate", scipy.interpolate)
    root = official / "InternVideo1" / "Pretrain" / "ViCLIP" / "models"
    package = types.ModuleType("viclip_pretrain_models")
    package.__path__ = [str(root)]
    sys.modules["viclip_pretrain_models"] = package
    spec = importlib.util.spec_from_file_location("viclip_pretrain_models.utils", root / "utils.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def import_official(official: Path):
    stub_unused_imports()
    sys.path.insert(0, str(official / "Data" / "InternVid"))
    import viclip  # noqa: F401  (the package __init__ imports the model modules)
    from viclip import viclip as viclip_model, viclip_text, viclip_vision

    state = {"frames": FRAMES}

    def tiny_vision(**kwargs):
        # The official builder's arguments, with the tiny architecture instead of ViT-L/14.
        kwargs.pop("pretrained")
        kwargs.pop("center")
        kwargs.pop("input_resolution")  # 224 in ViCLIP; the tiny model is 32 px
        kwargs["num_frames"] = state["frames"]
        return viclip_vision.VisionTransformer(**VISION, **kwargs).eval()

    def tiny_text(**kwargs):
        kwargs.pop("pretrained")
        assert kwargs["context_length"] == TEXT["context_length"] and kwargs["vocab_size"] == TEXT["vocab_size"]
        return viclip_text.CLIP_TEXT(**TEXT, checkpoint_num=kwargs["checkpoint_num"]).eval()

    viclip_model.clip_joint_l14 = tiny_vision
    viclip_model.clip_text_l14 = tiny_text
    viclip_vision.interpolate_temporal_pos_embed = load_pretrain_utils(official).interpolate_temporal_pos_embed
    return viclip, viclip_model, viclip_vision, state


def randomise(model: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A seeded, non-trivial value for every tensor (returned as the state dict to save)."""
    out = {}
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith("token_embedding.weight"):
            rows, width = shape
            base = torch.randn(rows + width - 1, generator=generator) * 0.5
            value = base.as_strided(shape, (1, 1))
        elif name == "temp":
            value = torch.tensor(0.01 + 0.002 * torch.rand((), generator=generator).item())
        elif name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
            value = 1.0 + 0.2 * torch.randn(shape, generator=generator)
        elif name.endswith("bias"):
            value = 0.1 * torch.randn(shape, generator=generator)
        elif name.endswith(("positional_embedding", "class_embedding")):
            value = 0.5 * torch.randn(shape, generator=generator)
        elif name.endswith("temporal_positional_embedding"):
            value = 0.5 * torch.randn(shape, generator=generator)
        elif name.endswith("in_proj_weight"):
            # Query and key rows 3x larger: sharper attention, so each video's class token depends on
            # its own patches (at 1x the three videos' embeddings have cosine 0.98 to one another).
            width = shape[1]
            value = torch.randn(shape, generator=generator) * width ** -0.5
            value[: 2 * width] *= 3.0
        elif tensor.dim() >= 2:
            fan_in = tensor[0].numel() if not name.endswith(("proj", "text_projection")) else shape[0]
            value = torch.randn(shape, generator=generator) * fan_in ** -0.5
        else:
            raise AssertionError(f"no rule for {name} {shape}")
        assert value.dtype == torch.float32, name
        out[name] = value
    return out


def official_model(viclip, viclip_model, state, frames: int, checkpoint: Path | None, interpolate=None):
    state["frames"] = frames
    tokenizer = viclip._Tokenizer()
    if interpolate is None:
        model = viclip_model.ViCLIP(tokenizer=tokenizer, size="l", pretrain=str(checkpoint) if checkpoint else None)
    else:  # the Pretrain/ViCLIP evaluation path: build for `frames`, adapt the checkpoint, load
        model = viclip_model.ViCLIP(tokenizer=tokenizer, size="l", pretrain=None)
        weights = torch.load(checkpoint, map_location="cpu")["model"]
        weights = interpolate(weights, model)
        model.load_state_dict(weights)
    return model.eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of OpenGVLab/InternVideo")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    viclip, viclip_model, viclip_vision, state = import_official(args.official)

    fresh, _ = official_model(viclip, viclip_model, state, FRAMES, None)
    weights = randomise(fresh, generator)
    checkpoint = args.out / CKPT_NAME
    torch.save({"model": weights}, checkpoint)

    model, tokenizer = official_model(viclip, viclip_model, state, FRAMES, checkpoint)
    frames = torch.randn(BATCH, FRAMES, 3, VISION["input_resolution"], VISION["input_resolution"],
                         generator=generator)
    with torch.no_grad():
        video = model.get_vid_features(frames)
        video_1f = model.get_vid_features(frames[:, :1])
        text = torch.cat([model.get_text_features(c, tokenizer, {}) for c in CAPTIONS], 0)
        logits = 100.0 * video @ text.T  # get_predict_label, before its softmax
        tokens = model.text_encoder.tokenize(CAPTIONS, context_length=model.max_txt_l)
    assert int(tokens.max()) == 49407 and (tokens[2] != 0).all(), "caption 3 must overflow the 32-token context"

    extra = {}
    for count, clip in ((4, frames[:, ::2]), (16, torch.cat([frames, frames.flip(1)], 1))):
        other, _ = official_model(viclip, viclip_model, state, count, checkpoint,
                                  interpolate=viclip_vision.interpolate_pos_embed_vit)
        with torch.no_grad():
            extra[f"video_embeddings_{count}f"] = other.get_vid_features(clip).contiguous()
    state["frames"] = FRAMES

    tensors = {
        "frames": frames.contiguous(),
        "video_embeddings": video.contiguous(),
        "text_embeddings": text.contiguous(),
        "similarity": logits.contiguous(),
        "video_embeddings_1f": video_1f.contiguous(),
        "text_tokens": tokens.float().contiguous(),
        **extra,
    }
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/OpenGVLab/InternVideo",
        "commit": commit,
        "code": "Data/InternVid/viclip (ViCLIP.get_vid_features / get_text_features / get_predict_label)",
        "checkpoint": CKPT_NAME,
        "score": "100 * cosine (get_predict_label's logits before softmax)",
        "normalized": "true",
        "frames_layout": "B,T,C,H,W (already normalised)",
        "num_frames": str(FRAMES),
        "context_length": str(TEXT["context_length"]),
        "frames_4f": "frames[:, ::2] on the model built for 4 frames (temporal embedding: first 4 rows)",
        "frames_16f": "torch.cat([frames, frames.flip(1)], 1) on the model built for 16 frames (linear interpolation)",
        "frames_1f": "frames[:, :1] on the 8-frame model (mean temporal embedding added)",
        "text_tokens": "official CLIP_TEXT.tokenize(captions, context_length=32) (truncate=True), as float32",
    }
    save_file(tensors, str(args.out / "golden.safetensors"), metadata=metadata)
    size = checkpoint.stat().st_size
    print(f"wrote {checkpoint} ({size / 1e6:.2f} MB) and golden.safetensors; commit {commit}")
    for name, value in tensors.items():
        print(f"  {name}: {list(value.shape)}")
    print("similarity:\n", logits)


if __name__ == "__main__":
    main()
