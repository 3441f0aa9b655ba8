"""Build the ProcVLR golden files by running the official ProcedureVRL code on a tiny random checkpoint.

Run with the reference environment, never with the product one:

    /work/refenv/bin/python tests/data/official/procvlr/make_golden.py \
        --official /work/ref/ProcedureVRL --clip /work/ref/CLIP

What it does, and why:

- The official model class ``lib.models.vit.VisionTransformer`` is built directly at tiny sizes
  (``vit_base_patch16_224_develop`` hard-codes width 768, 12 heads and patch 16). Everything else
  of the network (blocks, head, the diffusion ``order_tfm``, the frozen CLIP ``text_model``) is the
  official code.
- It is first built as in stage-2 pre-training (``TRAIN.LABEL_EMB`` set, ``MODEL.TEXT_MODEL:
  clip_vit_b_16``, the config being the official ``configs/HowTo100M/procedurevrl_adamw.yaml``
  merged into the official defaults), so its ``state_dict`` has the published key layout:
  ``model.`` + TimeSformer, ``model.head``, ``model.order_tfm.*`` and ``model.text_model.*`` (OpenAI
  CLIP without ``visual``). ``clip.load`` (a download of ViT-B/16) is replaced by a tiny CLIP built
  from the official ``clip.model.CLIP`` class; the same tiny CLIP serves ``tools/emb_extract.py``.
- The checkpoint is written as PySlowFast's ``save_checkpoint`` writes it:
  ``{'epoch': 24, 'model_state', 'optimizer_state', 'cfg': cfg.dump()}`` in ``checkpoint_epoch_00025.pyth``.
- The zero-shot model is then built as ``configs/COIN/step_classification.yaml`` builds it
  (``DEV.MATCH_LANG_EMB``, ``DEV.TEST_LANG_EMB``, no text model) and filled by the official
  ``lib.models.helpers.load_pretrained`` from that file. The step (caption) embeddings come from the
  official ``tools/emb_extract.get_step_emb`` (the 28-prompt ensemble).
- Stubbed because imported but not used here: ``ipdb``, ``turtle`` (tfm_model.py imports
  ``turtle.distance``), ``torchvision.transforms`` (clip.py's image preprocessing), the package
  ``__init__`` files of ``lib`` and ``lib.models`` (they import every model and the environment
  setup). ``.cuda()`` is the identity (CPU run).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import json
import math
import sys
import tempfile
import types
from functools import partial
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
NAME = "checkpoint_epoch_00025.pyth"

VISION = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_frames=8)
TEXT = dict(width=8, layers=2, heads=2)
EMBED = 16  # CLIP text_projection width = the head's output (512 in the published file)
CAPTIONS = [
    "pour the water into the pot",
    "cut the tomato",
    "tighten the screws on the hinge",
    "remove the old tire from the rim and then " + "carefully " * 70 + "fit the new one",
]


def stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def install_stubs(official: Path, clip_repo: Path) -> None:
    stub("ipdb", set_trace=lambda *a, **k: None)
    stub("turtle", distance=None)
    mpl = stub("matplotlib")
    mpl.__path__ = []
    mpl.pyplot = stub("matplotlib.pyplot")
    tv = stub("torchvision")
    tv.__path__ = []
    names = ("Compose", "Resize", "CenterCrop", "ToTensor", "Normalize")
    tvt = stub("torchvision.transforms", **{n: type(n, (), {}) for n in names},
               InterpolationMode=types.SimpleNamespace(BICUBIC="bicubic"))
    tv.transforms = tvt
    for package, folder in (("lib", "lib"), ("lib.models", "lib/models"), ("lib.config", "lib/config"),
                            ("lib.utils", "lib/utils")):
        module = stub(package)
        module.__path__ = [str(official / folder)]
    sys.path.insert(0, str(clip_repo))
    sys.path.insert(0, str(official / "tools"))
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self


def tiny_clip_factory():
    import clip.model as clip_model

    torch.manual_seed(0)
    net = clip_model.CLIP(embed_dim=EMBED, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16,
                          context_length=77, vocab_size=49408, transformer_width=TEXT["width"],
                          transformer_heads=TEXT["heads"], transformer_layers=TEXT["layers"])
    randomise(net, seed=1)

    def load(name, device="cpu", jit=False, **kwargs):
        assert name in ("ViT-B/16", "ViT-L/14"), name
        return copy.deepcopy(net), None

    return load


def randomise(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name or "ln_" in name or name.endswith(("norm1.weight", "norm2.weight")):
                p.copy_(1 + 0.2 * noise if leaf == "weight" else 0.1 * noise)
            elif leaf == "bias":
                p.copy_(0.1 * noise)
            elif name.endswith("logit_scale"):
                p.fill_(math.log(1 / 0.07))
            elif name.endswith("time_embed"):
                p.copy_(noise)
            elif name.endswith(("cls_token", "pos_embed", "positional_embedding", "class_embedding")):
                p.copy_(0.5 * noise)
            elif name.endswith(("token_embedding.weight",)) or p.dim() == 1:
                p.copy_(0.5 * noise)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(noise / math.sqrt(fan_in))


def stage2_cfg(official: Path):
    from lib.config.defaults import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(official / "configs/HowTo100M/procedurevrl_adamw.yaml"))
    # README's stage-2 command line
    cfg.merge_from_list(["OUTPUT_DIR", "exps/procedurevrl-stg2/", "NUM_SHARDS", 1, "NUM_GPUS", 8,
                         "TIMESFORMER.PRETRAINED_MODEL", "exps/procedurevrl-stg1/checkpoints/checkpoint_epoch_00005.pyth"])
    return cfg


def zero_shot_cfg(official: Path, lang_emb: str, pyth: str):
    from lib.config.defaults import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(official / "configs/COIN/step_classification.yaml"))
    cfg.merge_from_list(["OUTPUT_DIR", "exps/zs_coin_cls", "NUM_SHARDS", 1, "NUM_GPUS", 8, "TRAIN.ENABLE", False,
                         "DEV.MATCH_LANG_EMB", True, "TIMESFORMER.PRETRAINED_MODEL", pyth,
                         "DEV.TEST_LANG_EMB", lang_emb])
    return cfg


def build(cfg, label_emb: str, text_model: str, num_frames: int = VISION["num_frames"]):
    from lib.models.vit import VisionTransformer

    return VisionTransformer(img_size=VISION["img_size"], num_classes=cfg.MODEL.NUM_CLASSES,
                             patch_size=VISION["patch_size"], embed_dim=VISION["embed_dim"], depth=VISION["depth"],
                             num_heads=VISION["num_heads"], mlp_ratio=4, qkv_bias=True,
                             norm_layer=partial(nn.LayerNorm, eps=1e-6), drop_rate=0., attn_drop_rate=0.,
                             drop_path_rate=cfg.MODEL.DROP_PATH, num_frames=num_frames,
                             attention_type=cfg.TIMESFORMER.ATTENTION_TYPE, label_emb=label_emb, mlp=cfg.MODEL.MLP,
                             text_model=text_model, lp=cfg.MODEL.TEXT_LP, num_seg=cfg.MODEL.NUM_SEG,
                             extra_tr=cfg.MODEL.EXTRA_TR, drope=cfg.MODEL.DROP_E, cfg=cfg)


class Develop(nn.Module):
    """The state-dict layout of ``vit_base_patch16_224_develop`` (the VisionTransformer under ``model``)."""

    def __init__(self, inner):
        super().__init__()
        self.model = inner


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", type=Path, default=Path("/work/ref/ProcedureVRL"))
    parser.add_argument("--clip", type=Path, default=Path("/work/ref/CLIP"))
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    install_stubs(args.official, args.clip)
    import clip

    clip.load = tiny_clip_factory()
    vit = importlib.import_module("lib.models.vit")
    helpers = importlib.import_module("lib.models.helpers")
    emb_extract = importlib.import_module("emb_extract")
    tmp = Path(tempfile.mkdtemp())

    # ---- stage-2 pre-training model and its checkpoint
    cfg = stage2_cfg(args.official)
    torch.save(torch.randn(5, EMBED), tmp / "clip_step_emb_ht100m_vbphrase.pth")  # 9871 verb phrases in the real one
    trained = Develop(build(cfg, str(tmp / "clip_step_emb_ht100m_vbphrase.pth"), cfg.MODEL.TEXT_MODEL))
    randomise(trained.model, seed=2)
    # the frozen CLIP text model is the tiny CLIP itself (randomise above touched it: restore it)
    trained.model.text_model.load_state_dict(clip.load("ViT-B/16")[0].state_dict(), strict=False)
    trainable = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(3)
    for p in trainable:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    optimizer.step()  # the published file holds AdamW moments; the weights are drawn again below, so stay seeded
    with torch.no_grad():
        randomise(trained.model, seed=2)
        trained.model.text_model.load_state_dict(clip.load("ViT-B/16")[0].state_dict(), strict=False)
    state = trained.state_dict()
    checkpoint = {"epoch": 24, "model_state": state, "optimizer_state": optimizer.state_dict(), "cfg": cfg.dump()}
    pyth = args.out / NAME
    torch.save(checkpoint, pyth)

    # ---- step embeddings with the official prompt ensemble
    text_embeddings = emb_extract.get_step_emb(CAPTIONS, str(tmp / "clip_step_emb_captions.pth"), model_name="ViT-B/16")
    token_ids = clip.tokenize([p.format(c) for c in CAPTIONS for p in PROMPTS(emb_extract)], truncate=True)

    # ---- the zero-shot model, loaded by the official loader
    def zero_shot():
        zcfg = zero_shot_cfg(args.official, str(tmp / "clip_step_emb_captions.pth"), str(pyth))
        model = build(zcfg, zcfg.TRAIN.LABEL_EMB, zcfg.MODEL.TEXT_MODEL, num_frames=VISION["num_frames"])
        model.default_cfg = vit.default_cfgs["vit_base_patch16_224"]
        helpers.load_pretrained(model, num_classes=model.num_classes, in_chans=3, filter_fn=vit._conv_filter,
                                img_size=VISION["img_size"], num_patches=(VISION["img_size"] // VISION["patch_size"]) ** 2,
                                attention_type=zcfg.TIMESFORMER.ATTENTION_TYPE, pretrained_model=str(pyth),
                                num_frames=zcfg.DATA.NUM_FRAMES, pre_num=zcfg.MODEL.PRE_CLASSES)
        # On the GPU, check_device_norm moves the file's CPU embeddings and L2-normalises them; on
        # this CPU run the devices agree and it would skip the normalisation, so do what it does.
        model.label_emb = model.label_emb / model.label_emb.norm(dim=1, keepdim=True)
        return model.eval(), zcfg

    model, zcfg = zero_shot()
    for key, value in state.items():  # the loader really filled the zero-shot model
        name = key[len("model."):]
        if name in model.state_dict() and not name.startswith("head_cls"):
            assert torch.equal(model.state_dict()[name], value), name

    captured = {}
    model.head.register_forward_hook(lambda m, i, o: captured.__setitem__("projection", o.detach().clone()))
    model.softmax.register_forward_hook(lambda m, i, o: captured.update(logits=i[0].detach().clone(),
                                                                         probabilities=o.detach().clone()))

    def run(frames):  # frames B,T,C,H,W -> official input B,C,T,H,W
        with torch.no_grad():
            probabilities = model(frames.permute(0, 2, 1, 3, 4).contiguous())
        assert torch.equal(probabilities, captured["probabilities"])
        projection = captured["projection"]
        return projection / projection.norm(dim=1, keepdim=True), captured["logits"], probabilities, projection

    generator = torch.Generator().manual_seed(1)
    frames = torch.randn(3, 8, 3, 32, 32, generator=generator)
    frames_4f = torch.randn(2, 4, 3, 32, 32, generator=generator)
    frames_48px = torch.randn(2, 8, 3, 48, 48, generator=generator)
    tensors = {"frames": frames, "frames_4f": frames_4f, "frames_48px": frames_48px,
               "text_embeddings": text_embeddings.float(), "text_token_ids": token_ids.long()}
    for suffix, clips in (("", frames), ("_4f", frames_4f), ("_48px", frames_48px)):
        video, logits, probabilities, projection = run(clips)
        tensors[f"video_projection{suffix}"] = projection
        tensors[f"video_embeddings{suffix}"] = video
        tensors[f"logits{suffix}"] = logits
        tensors[f"probabilities{suffix}"] = probabilities
        cos = video @ (text_embeddings / text_embeddings.norm(dim=1, keepdim=True)).T
        assert torch.allclose(cos / zcfg.DEV.TEMP, logits, atol=1e-4)
        tensors[f"similarity{suffix}"] = cos

    clip_repo_commit = (args.clip / ".git").exists() and _head(args.clip)
    metadata = {
        "captions": json.dumps(CAPTIONS), "repository": "facebookresearch/ProcedureVRL",
        "commit": _head(args.official), "clip_commit": clip_repo_commit or "", "checkpoint": NAME,
        "temperature": str(zcfg.DEV.TEMP), "score": "cosine / DEV.TEMP (then softmax over the candidates)",
        "frames_layout": "B,T,C,H,W (official input B,C,T,H,W)", "frames_value_range": "already normalised",
        "vision": json.dumps(VISION), "text": json.dumps(TEXT), "embed_dim": str(EMBED),
        "prompts": json.dumps(PROMPTS(emb_extract)),
        "sha256": hashlib.sha256(pyth.read_bytes()).hexdigest(),
    }
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out / "golden.safetensors"), metadata=metadata)
    print("keys", len(state), "size", pyth.stat().st_size, {k: tuple(v.shape) for k, v in tensors.items()})


def PROMPTS(emb_extract) -> list[str]:
    """The 28 templates, read from get_step_emb's own source (they are a local list there)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(emb_extract.get_step_emb))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "prompts":
            return [ast.literal_eval(e) for e in node.value.elts]
    raise RuntimeError("no prompts list in get_step_emb")


def _head(repo: Path) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
