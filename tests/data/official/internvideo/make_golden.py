"""Write the tiny InternVideo (v1, multimodal) checkpoint and the golden outputs of the official code.

Run out of tree, in the reference environment (never in the product):

    /work/refenv/bin/python tests/data/official/internvideo/make_golden.py --official /work/ref/InternVideo

The official inference package is ``InternVideo1/Pretrain/Multi-Modalities-Pretraining/InternVideo``
(``load_model``, ``tokenize``, ``VideoIntern.encode_video`` / ``encode_text``; ``demo.py`` scores).
What this script does, and why each step:

1. ``build_model`` reads every text dimension from tensor shapes but picks the video backbone by
   the width of ``visual_proj`` (768: ``vit_only_global_b16``, 1024: ``vit_only_global_l14``; both
   builders hard-code their ViT sizes) and raises for any other width. So this script registers
   one more builder beside those two in the official ``clip_utils.utils`` namespace: it
   constructs the *official* ``clip_vit_only_global.VisionTransformer`` (per-frame CLIP ViT with
   the UniFormerV2-style global branch: depthwise 3D-conv position encoding, cross-attention
   "extractor" layers on the last backbone layers, sigmoid-balanced mix with the frame-mean class
   token) at a tiny size, and replaces ``build_model`` by one that makes the same choices as the
   official one (heads = width // 64 for text, backbone and extractor; extractors on the last
   layers, as ``return_list=[20..23]`` of 24 for L/14) but selects that builder. ``VideoIntern``,
   the ``load_state_dict(strict=False)`` load and ``load_model``'s own reading of the file
   (``torch.load(path)["state_dict"]``, keys under ``clip.`` kept with the prefix removed) are the
   official code.
2. Fills every tensor with seeded random values (LayerNorm scales around 1, random biases, non-zero
   extractor outputs -- the official init zeroes them --, a random ``balance``, query/key weights
   3x larger so attention is sharp enough for each video to differ) and saves the file the way
   the training code (PyTorch Lightning 1.6, ``CoTrain/modules/clip_module.py``'s ``CLIP`` module
   holding the model as ``self.clip``) writes it: ``{'state_dict': {'clip.…': fp32}, 'epoch',
   'global_step', 'pytorch-lightning_version', 'hparams_name', 'hyper_parameters': {'config':
   {...}}, 'callbacks', 'optimizer_states', 'lr_schedulers', 'native_amp_scaling_state', 'loops'}``,
   named ``InternVideo-MM-L-14.ckpt``. The non-tensor entries follow Lightning 1.6's layout with
   plain values; the published file itself could not be inspected (it is behind the Hugging Face
   hub). The token embedding keeps the real 49,408 rows (the real BPE ids must index it) but is
   stored as an overlapping-stride view of one vector (row i = v[i:i+64]) so it costs 200 kB;
   ``torch.load`` returns an ordinary [49408, 64] tensor.
3. Loads that file through the official ``load_model`` and runs, in eval mode, ``encode_video`` on
   random already-normalised frames (given to it as [N, C, T, H, W]; stored as [B, T, C, H, W])
   and ``encode_text`` on ``tokenize(captions, truncate=True)`` (77 tokens; the training and
   zero-shot code pass ``truncate=True``, the default ``False`` raises on long text). Both
   embeddings are raw (not normalised); the official score is ``demo.py``'s:
   ``exp(logit_scale) * cosine``.
4. The video branch has no temporal position embedding, so the frame count is only fixed by the
   ``t_size`` the model is built with (``build_model``'s default 8). Outputs for 4 frames
   (``frames[:, ::2]``) and 16 frames (``cat([frames, frames.flip(1)], 1)``) from the official model
   built with ``t_size`` 4 and 16 are stored too; the test rebuilds those inputs.

Stubbed imports (imported by the official package, not used on this path): ``decord`` (video
reading in ``load_video``), ``cv2`` and ``skimage`` (``video_transform``'s resizing), and
``pkg_resources`` (only its ``packaging`` attribute is used, by ``tokenize``'s torch-version check:
the real ``packaging`` module is put there).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
CKPT_NAME = "InternVideo-MM-L-14.ckpt"
SEED = 20221207

VISION = dict(input_resolution=32, patch_size=8, width=128, layers=2)
EXTRACTOR_LAYERS = 1  # on the last backbone layer (L/14: 4 extractors on layers 20..23)
TEXT = dict(context_length=77, vocab_size=49408, width=64, layers=2, embed_dim=64)
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

    def _unused(*args, **kwargs):
        raise RuntimeError("stub used: video reading/resizing is not part of the golden path")

    decord = types.ModuleType("decord")
    decord.VideoReader, decord.cpu, decord.bridge = _unused, _unused, types.SimpleNamespace(set_bridge=_unused)
    cv2 = types.ModuleType("cv2")
    cv2.resize, cv2.INTER_LINEAR, cv2.INTER_NEAREST = _unused, 1, 0
    skimage = types.ModuleType("skimage")
    skimage.transform = types.ModuleType("skimage.transform")
    pkg_resources = types.ModuleType("pkg_resources")
    pkg_resources.packaging = packaging
    for name, module in (("decord", decord), ("cv2", cv2), ("skimage", skimage),
                         ("skimage.transform", skimage.transform), ("pkg_resources", pkg_resources)):
        sys.modules.setdefault(name, module)


def import_official(official: Path):
    stub_unused_imports()
    sys.path.insert(0, str(official / "InternVideo1" / "Pretrain" / "Multi-Modalities-Pretraining"))
    import InternVideo
    from InternVideo import internvideo
    from InternVideo.clip_utils import model as clip_model
    from InternVideo.clip_utils import utils as backbones
    from InternVideo.clip_utils.utils import clip_vit_only_global as vit

    # VideoIntern does not pass n_layers: the official builders' default (4) matches their return_list.
    def vit_only_global_tiny(pretrained=False, t_size=8, return_list=(), n_layers=EXTRACTOR_LAYERS, n_dim=768,
                             n_head=12, mlp_dropout=(0.5,) * 4, cls_dropout=0.5, drop_path_rate=0.0,
                             backbone_drop_path_rate=0.0, use_checkpoint=False, checkpoint_num=(0,)):
        # Same signature and body as the official vit_only_global_{b16,l14}, tiny ViT sizes.
        assert not pretrained
        return vit.VisionTransformer(
            input_resolution=VISION["input_resolution"], patch_size=VISION["patch_size"], width=VISION["width"],
            layers=VISION["layers"], heads=VISION["width"] // 64, output_dim=TEXT["embed_dim"],
            use_checkpoint=use_checkpoint, checkpoint_num=checkpoint_num, t_size=t_size,
            backbone_drop_path_rate=backbone_drop_path_rate, return_list=list(return_list), n_layers=n_layers,
            n_dim=n_dim, n_head=n_head, mlp_factor=4.0, drop_path_rate=drop_path_rate,
            mlp_dropout=list(mlp_dropout), cls_dropout=cls_dropout, num_classes=400,
        ).eval()

    backbones.vit_only_global_tiny = vit_only_global_tiny
    state = {"t_size": FRAMES}

    def video_intern(embed_dim, vision_width, context_length, vocab_size, transformer_width, transformer_layers,
                     layers, extractors):
        return clip_model.VideoIntern(
            embed_dim, vision_width, context_length, vocab_size, transformer_width, transformer_width // 64,
            transformer_layers, n_layers=extractors, n_dim=vision_width, n_head=vision_width // 64,
            drop_path_rate=0.0, mlp_dropout=[0.5] * extractors, cls_dropout=0.5, t_size=state["t_size"],
            use_image_attnmap=True, backbone="vit_only_global_tiny",
            return_list=list(range(layers - extractors, layers)), use_checkpoint=False, checkpoint_num=[0],
        )

    def build_model_tiny(state_dict):
        # The official build_model's readings, with the tiny backbone instead of b16/l14.
        layers = len([k for k in state_dict if k.startswith("visual.transformer.resblocks.")
                      and k.endswith(".attn.in_proj_weight")])
        extractors = len({k.split(".")[3] for k in state_dict if k.startswith("visual.transformer.dec.")})
        model = video_intern(
            state_dict["text_projection"].shape[1], state_dict["visual_proj"].shape[0],
            state_dict["positional_embedding"].shape[0], state_dict["token_embedding.weight"].shape[0],
            state_dict["ln_final.weight"].shape[0],
            len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks")}), layers, extractors)
        model.load_state_dict(state_dict, strict=False)
        return model.eval()

    state["fresh"] = lambda: video_intern(TEXT["embed_dim"], VISION["width"], TEXT["context_length"],
                                          TEXT["vocab_size"], TEXT["width"], TEXT["layers"], VISION["layers"],
                                          EXTRACTOR_LAYERS)
    internvideo.build_model = build_model_tiny
    return InternVideo, clip_model, state


def randomise(model: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A seeded, non-trivial value for every tensor of ``VideoIntern``."""
    out = {}
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        leaf = name.rsplit(".", 1)[-1]
        if name == "token_embedding.weight":
            rows, width = shape
            value = (torch.randn(rows + width - 1, generator=generator) * 0.5).as_strided(shape, (1, 1))
        elif name == "logit_scale":
            value = torch.tensor(2.6593 + 0.1 * torch.randn((), generator=generator).item())  # ~ log(1/0.07)
        elif name == "visual.transformer.balance":
            value = torch.randn(shape, generator=generator)
        elif ".ln_" in name or name.startswith(("ln_final", "visual_ln_post", "visual.ln_pre")):
            value = (1.0 + 0.2 * torch.randn(shape, generator=generator)) if leaf == "weight" else \
                0.1 * torch.randn(shape, generator=generator)
        elif leaf.endswith("bias"):
            value = 0.1 * torch.randn(shape, generator=generator)
        elif name in ("positional_embedding", "visual.positional_embedding", "visual.class_embedding",
                      "visual.transformer.temporal_cls_token", "text_mask_embedding"):
            value = 0.5 * torch.randn(shape, generator=generator)
        elif leaf == "in_proj_weight":
            width = shape[1]
            value = torch.randn(shape, generator=generator) * width ** -0.5
            value[: 2 * width] *= 3.0
        elif name in ("visual_proj", "text_projection"):
            value = torch.randn(shape, generator=generator) * shape[0] ** -0.5
        elif ".dpe." in name:
            value = torch.randn(shape, generator=generator) * 27 ** -0.5  # depthwise 3x3x3
        elif tensor.dim() >= 2:
            value = torch.randn(shape, generator=generator) * tensor[0].numel() ** -0.5
        else:
            raise AssertionError(f"no rule for {name} {shape}")
        out[name] = value.float()
    return out


def lightning_checkpoint(weights: dict[str, torch.Tensor]) -> dict:
    """The PyTorch Lightning 1.6 checkpoint layout of CoTrain's ``CLIP`` module (plain payload values)."""
    monitor = "contrastive/train/loss"
    callback = (f"ModelCheckpoint{{'monitor': '{monitor}', 'mode': 'min', 'every_n_train_steps': 1000, "
                "'every_n_epochs': 0, 'train_time_interval': None, 'save_on_train_epoch_end': True}")
    config = {"exp_name": "clip_kc_new_L14_pretrain", "seed": 0, "clip": "ViT-L-14.pt", "clip_type": "kc_new",
              "num_frames": 8, "image_size": 224, "precision": 16, "max_text_len": 77, "load_path": "",
              "loss_names": {"contrastive": 1, "cap": 0, "mlm": 0, "vtm": 0}}
    return {
        "epoch": 9,
        "global_step": 40000,
        "pytorch-lightning_version": "1.6.4",
        "state_dict": collections.OrderedDict((f"clip.{k}", v) for k, v in weights.items()),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 10, "completed": 9}}}},
        "callbacks": {callback: {"monitor": monitor, "best_model_score": torch.tensor(1.25),
                                 "best_model_path": "outputs/epoch=9-step=40000.ckpt", "dirpath": "outputs",
                                 "best_k_models": {}, "kth_best_model_path": "",
                                 "kth_value": torch.tensor(float("inf")),
                                 "last_model_path": ""}},
        "optimizer_states": [],
        "lr_schedulers": [],
        "native_amp_scaling_state": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                     "growth_interval": 2000, "_growth_tracker": 17},
        "hparams_name": "kwargs",
        "hyper_parameters": {"config": config},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of OpenGVLab/InternVideo")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    InternVideo, clip_model, state = import_official(args.official)

    fresh = state["fresh"]()  # the tiny layout: its keys and shapes are what the file holds
    weights = randomise(fresh, generator)
    checkpoint = args.out / CKPT_NAME
    torch.save(lightning_checkpoint(weights), checkpoint)

    model = InternVideo.load_model(str(checkpoint))
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights), "official load_model did not load every key"
    frames = torch.randn(BATCH, FRAMES, 3, VISION["input_resolution"], VISION["input_resolution"],
                         generator=generator)
    tokens = InternVideo.tokenize(CAPTIONS, truncate=True)
    assert int(tokens.max()) == 49407 and (tokens[2] != 0).all(), "caption 3 must overflow the 77-token context"
    with torch.no_grad():
        video = model.encode_video(frames.permute(0, 2, 1, 3, 4))
        text = model.encode_text(tokens)
        scale = model.logit_scale.exp()
        similarity = torch.nn.functional.normalize(video, dim=1) @ torch.nn.functional.normalize(text, dim=1).T * scale

    extra = {}
    for count, clip in ((4, frames[:, ::2]), (16, torch.cat([frames, frames.flip(1)], 1))):
        state["t_size"] = count
        other = InternVideo.load_model(str(checkpoint))
        with torch.no_grad():
            extra[f"video_embeddings_{count}f"] = other.encode_video(clip.permute(0, 2, 1, 3, 4)).contiguous()
    state["t_size"] = FRAMES

    tensors = {
        "frames": frames.contiguous(),
        "video_embeddings": video.contiguous(),
        "text_embeddings": text.contiguous(),
        "similarity": similarity.contiguous(),
        "text_tokens": tokens.float().contiguous(),
        **extra,
    }
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/OpenGVLab/InternVideo",
        "commit": commit,
        "code": "InternVideo1/Pretrain/Multi-Modalities-Pretraining/InternVideo (load_model, tokenize, "
                "VideoIntern.encode_video / encode_text; score as in demo.py)",
        "checkpoint": CKPT_NAME,
        "score": "exp(logit_scale) * cosine (demo.py, before its softmax)",
        "logit_scale_exp": repr(float(scale)),
        "normalized": "false",
        "frames_layout": "B,T,C,H,W (already normalised); the official encode_video was given "
                         "frames.permute(0, 2, 1, 3, 4)",
        "num_frames": str(FRAMES),
        "context_length": str(TEXT["context_length"]),
        "frames_4f": "frames[:, ::2] on the official model built with t_size=4",
        "frames_16f": "torch.cat([frames, frames.flip(1)], 1) on the official model built with t_size=16",
        "text_tokens": "official tokenize(captions, truncate=True) (77 tokens), as float32",
    }
    save_file(tensors, str(args.out / "golden.safetensors"), metadata=metadata)
    print(f"wrote {checkpoint} ({checkpoint.stat().st_size / 1e6:.2f} MB) and golden.safetensors; commit {commit}")
    for name, value in tensors.items():
        print(f"  {name}: {list(value.shape)}")
    print("similarity:\n", similarity)


if __name__ == "__main__":
    main()
