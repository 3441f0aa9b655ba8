"""Write tiny ActionFormer checkpoints and the golden outputs of the official release code.

Run out of tree, in the reference environment (never in the product), after building the
release's C++ NMS extension in place (``cd libs/utils && python setup.py build_ext --inplace``):

    /work/refenv-actionformer/bin/python tests/data/official/actionformer/make_golden.py \
        --official /work/ref/actionformer

What it does, and why each step:

1. Builds two tiny ``LocPointTransformer`` models with the official ``make_meta_arch`` from the
   official config defaults (``libs/core/config.py``) overridden to a tiny size:
   ``thumos_like`` (identity neck, local attention window 5 everywhere, drop path 0.1 so the
   blocks carry their affine scales, LayerNorm in every head: the THUMOS14 I3D recipe's
   structure) and ``variant`` (FPN neck starting at level 1, absolute and relative positions,
   windows [5, 5, 5, -1, -1, -1] so both local and global attention run, 2 heads, heads without
   LayerNorm, 2-layer heads).
2. Perturbs every parameter with seeded noise (the official init gives near-constant outputs),
   wraps the model in ``nn.DataParallel`` as ``train.py`` does, and takes a few official training
   steps (5, learning rate 1e-2) on a tiny batch (``train_one_epoch``'s body: forward losses,
   backward, gradient clipping 1.0, AdamW from ``make_optimizer``, ``make_scheduler``'s cosine,
   ``ModelEma.update`` with the release's decay 0.999).
   The file is the dict ``train.py`` saves (``epoch``, ``state_dict``, ``scheduler``,
   ``optimizer``, ``state_dict_ema``), keys with the ``module.`` prefix, so ``state_dict`` and
   ``state_dict_ema`` differ, as in a released checkpoint.
3. Loads ``state_dict_ema`` (what ``eval.py`` loads) and runs the official forward in eval mode
   on fixed random features of two videos (100 steps: shorter than ``max_seq_len`` 256; 300:
   longer, padded to the next multiple of ``max_div_factor``), saving per level the raw
   classification logits, offsets and masks, then the whole official inference +
   post-processing for three test configs (THUMOS14's Soft-NMS multi-class; hard NMS
   class-agnostic with voting; Soft-NMS class-agnostic with voting).
4. Loads ``state_dict`` into a training-mode model (drop path probability set to 0 so the
   forward is deterministic) and runs ``label_points`` and ``losses`` on a tiny batch with
   ground truth: the targets, the three losses and the loss normaliser before and after.
5. Runs the official ``batched_nms`` (the C++ extension) on random candidates with tied scores
   and heavy overlaps, for hard / soft, multi-class / class-agnostic (+ voting) settings.
6. Records the official parameter-group split of ``make_optimizer`` (decay / no decay).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 20220507

INPUT_DIM = 24
MODELS = {
    "thumos_like": dict(
        model=dict(backbone_type="convTransformer", fpn_type="identity", backbone_arch=(2, 2, 5), scale_factor=2,
                   n_head=4, n_mha_win_size=5, embd_kernel_size=3, embd_dim=16, embd_with_ln=True, fpn_dim=16,
                   fpn_with_ln=True, fpn_start_level=0, head_dim=16, head_num_layers=3, head_kernel_size=3,
                   head_with_ln=True, use_abs_pe=False, use_rel_pe=False, max_buffer_len_factor=6.0,
                   regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]),
        num_classes=3, droppath=0.1, init_loss_norm=100),
    "variant": dict(
        model=dict(backbone_type="convTransformer", fpn_type="fpn", backbone_arch=(2, 1, 5), scale_factor=2,
                   n_head=2, n_mha_win_size=[5, 5, 5, -1, -1, -1], embd_kernel_size=3, embd_dim=16,
                   embd_with_ln=True, fpn_dim=12, fpn_with_ln=True, fpn_start_level=1, head_dim=8,
                   head_num_layers=2, head_kernel_size=3, head_with_ln=False, use_abs_pe=True, use_rel_pe=True,
                   max_buffer_len_factor=6.0,
                   regression_range=[(0, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]),
        num_classes=4, droppath=0.0, init_loss_norm=2000),
}
MAX_SEQ_LEN = 256
STEPS = 5   # official steps before saving: state_dict and state_dict_ema then clearly differ
VIDEOS = [  # id, length, fps, feat_stride, num_frames, duration
    ("video_a", 100, 30.0, 4, 16, 13.1),
    ("video_b", 300, 25.0, 8, 16, 95.0),
]
TEST_CONFIGS = {
    "thumos": dict(pre_nms_thresh=0.001, pre_nms_topk=2000, iou_threshold=0.1, min_score=0.001, max_seg_num=200,
                   nms_method="soft", nms_sigma=0.5, duration_thresh=0.05, multiclass_nms=True, voting_thresh=0.7),
    "hard_agnostic_vote": dict(pre_nms_thresh=0.001, pre_nms_topk=50, iou_threshold=0.3, min_score=0.05,
                               max_seg_num=40, nms_method="hard", nms_sigma=0.5, duration_thresh=0.5,
                               multiclass_nms=False, voting_thresh=0.6),
    "soft_agnostic_vote": dict(pre_nms_thresh=0.01, pre_nms_topk=300, iou_threshold=0.1, min_score=0.01,
                               max_seg_num=100, nms_method="soft", nms_sigma=0.3, duration_thresh=0.05,
                               multiclass_nms=False, voting_thresh=0.75),
}
NMS_CASES = {
    "soft_multiclass": dict(iou_threshold=0.1, min_score=0.001, max_seg_num=200, use_soft_nms=True, multiclass=True,
                            sigma=0.5, voting_thresh=0.7),
    "soft_multiclass_cap": dict(iou_threshold=0.1, min_score=0.2, max_seg_num=7, use_soft_nms=True, multiclass=True,
                                sigma=0.4, voting_thresh=0.7),
    "hard_multiclass": dict(iou_threshold=0.3, min_score=0.05, max_seg_num=200, use_soft_nms=False, multiclass=True,
                            sigma=0.5, voting_thresh=0.0),
    "soft_agnostic_vote": dict(iou_threshold=0.1, min_score=0.01, max_seg_num=30, use_soft_nms=True, multiclass=False,
                               sigma=0.5, voting_thresh=0.75),
    "hard_agnostic_vote": dict(iou_threshold=0.4, min_score=0.0, max_seg_num=50, use_soft_nms=False,
                               multiclass=False, sigma=0.5, voting_thresh=0.5),
    "hard_agnostic": dict(iou_threshold=0.5, min_score=0.1, max_seg_num=10, use_soft_nms=False, multiclass=False,
                          sigma=0.5, voting_thresh=0.0),
}
# Ground truth of the loss batch on the feature grid (as the dataset classes produce it), with the
# corner cases label_points handles: two classes on one segment (THUMOS' CliffDiving / Diving),
# durations within 1e-3 of each other, a segment starting before 0 and one ending past the end.
GT = [
    dict(length=100, segments=[[10.0, 30.0], [10.0, 30.0], [40.0, 58.0], [40.0004, 58.0], [60.0, 62.5], [-1.5, 8.0],
                               [85.0, 130.0]],
         labels=[0, 2, 0, 1, 1, 0, 2]),
    dict(length=256, segments=[[3.0, 200.0], [40.0, 44.0], [120.0, 180.0], [250.0, 255.0]], labels=[1, 0, 2, 1]),
]


def perturb(model: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("scale") and parameter.dim() == 0:            # regression Scale: keep positive
                parameter.copy_(0.6 + 0.8 * torch.rand((), generator=generator))
            elif "drop_path" in name:                                       # affine drop-path scales
                parameter.copy_(0.5 + 0.3 * noise)
            elif "norm" in name or name.endswith(("ln1.weight", "ln2.weight", "ln1.bias", "ln2.bias")):
                parameter.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif name.endswith("cls_head.cls_head.conv.bias"):
                parameter.copy_(-2.0 + 0.5 * noise)
            elif name.endswith("rel_pe"):
                parameter.copy_(0.5 * noise)
            else:
                fan_in = parameter[0].numel() if parameter.dim() > 1 else 4
                parameter.copy_(noise * (1.5 / fan_in ** 0.5))


def build(name: str):
    from libs.core.config import DEFAULTS
    from libs.modeling import make_meta_arch

    spec = MODELS[name]
    cfg = copy.deepcopy(DEFAULTS)
    train_cfg = dict(cfg["train_cfg"], droppath=spec["droppath"], init_loss_norm=spec["init_loss_norm"],
                     head_empty_cls=[], clip_grad_l2norm=1.0, center_sample_radius=1.5)
    test_cfg = dict(cfg["test_cfg"], **TEST_CONFIGS["thumos"])
    return make_meta_arch("LocPointTransformer", **spec["model"], input_dim=INPUT_DIM, max_seq_len=MAX_SEQ_LEN,
                          num_classes=spec["num_classes"], train_cfg=train_cfg, test_cfg=test_cfg)


def train_batch(generator: torch.Generator) -> list[dict]:
    batch = []
    for k, gt in enumerate(GT):
        feats = torch.randn(INPUT_DIM, gt["length"], generator=generator)
        batch.append({"video_id": f"train_{k}", "feats": feats,
                      "segments": torch.tensor(gt["segments"], dtype=torch.float32),
                      "labels": torch.tensor(gt["labels"], dtype=torch.int64), "fps": 30.0, "duration": 100.0,
                      "feat_stride": 4, "feat_num_frames": 16})
    return batch


def set_test_config(model, config: dict) -> None:
    for key, value in config.items():
        attribute = {"multiclass_nms": "test_multiclass_nms"}.get(key, f"test_{key}")
        setattr(model, attribute, value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    sys.path.insert(0, str(args.official / "libs" / "utils"))   # the built nms_1d_cpu extension
    torch.set_num_threads(1)
    from libs.utils import ModelEma, batched_nms, make_optimizer, make_scheduler
    from libs.modeling.blocks import AffineDropPath

    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    generator = torch.Generator().manual_seed(SEED)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, object] = {"repository": "happyharrycn/actionformer_release", "commit": commit,
                               "max_seq_len": MAX_SEQ_LEN, "input_dim": INPUT_DIM,
                               "models": {n: {k: v for k, v in s["model"].items()} | {
                                   "num_classes": s["num_classes"], "droppath": s["droppath"],
                                   "init_loss_norm": s["init_loss_norm"]} for n, s in MODELS.items()},
                               "videos": VIDEOS, "test_configs": TEST_CONFIGS, "nms_cases": NMS_CASES, "gt": GT}

    for k, (video, length, *_rest) in enumerate(VIDEOS):
        tensors[f"features/{video}"] = torch.randn(length, INPUT_DIM, generator=generator)   # [T, C] as on disk

    for name in MODELS:
        torch.manual_seed(SEED)
        model = build(name)
        perturb(model, generator)
        wrapped = nn.DataParallel(model)
        optimizer = make_optimizer(wrapped, {"type": "AdamW", "learning_rate": 1e-2, "weight_decay": 0.05,
                                             "momentum": 0.9})
        if name == "thumos_like":
            decay, no_decay = [], []
            for group in optimizer.param_groups:
                names = sorted(n.removeprefix("module.") for n, p in wrapped.named_parameters()
                               if any(p is q for q in group["params"]))
                (decay if group["weight_decay"] > 0 else no_decay).extend(names)
            meta["param_groups"] = {"decay": sorted(decay), "no_decay": sorted(no_decay)}
        scheduler = make_scheduler(optimizer, {"warmup": False, "epochs": 4, "schedule_type": "cosine"}, 5)
        ema = ModelEma(wrapped)
        # official training steps (train_one_epoch's body); drop path is random here
        wrapped.train()
        for step in range(STEPS):
            optimizer.zero_grad(set_to_none=True)
            losses = wrapped(train_batch(torch.Generator().manual_seed(SEED + 1)))
            losses["final_loss"].backward()
            torch.nn.utils.clip_grad_norm_(wrapped.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            ema.update(wrapped)
        state = {"epoch": 1, "state_dict": wrapped.state_dict(), "scheduler": scheduler.state_dict(),
                 "optimizer": optimizer.state_dict(), "state_dict_ema": ema.module.state_dict()}
        torch.save(state, HERE / f"{name}.pth.tar")
        meta[f"{name}/loss_normalizer_after_step"] = float(model.loss_normalizer)

        # eval: the EMA weights, as eval.py loads them
        evaluator = build(name)
        nn.DataParallel(evaluator).load_state_dict(torch.load(HERE / f"{name}.pth.tar")["state_dict_ema"])
        evaluator.eval()
        for video, length, fps, stride, frames, duration in VIDEOS:
            feats = tensors[f"features/{video}"].T.contiguous()
            item = {"video_id": video, "feats": feats, "segments": None, "labels": None, "fps": fps,
                    "duration": duration, "feat_stride": stride, "feat_num_frames": frames}
            with torch.no_grad():
                x, mask = evaluator.preprocessing([item])
                levels, masks = evaluator.backbone(x, mask)
                levels, masks = evaluator.neck(levels, masks)
                points = evaluator.point_generator(levels)
                cls = evaluator.cls_head(levels, masks)
                off = evaluator.reg_head(levels, masks)
            meta[f"{name}/{video}/padded_length"] = int(x.shape[-1])
            for level, (c, o, m, p) in enumerate(zip(cls, off, masks, points)):
                prefix = f"{name}/{video}/level{level}"
                tensors[f"{prefix}/cls_logits"] = c[0].T.contiguous()
                tensors[f"{prefix}/offsets"] = o[0].T.contiguous()
                tensors[f"{prefix}/mask"] = m[0, 0].to(torch.float32)
                tensors[f"{prefix}/points"] = p.clone()
            for test_name, config in TEST_CONFIGS.items():
                set_test_config(evaluator, config)
                with torch.no_grad():
                    result = evaluator([item])[0]
                prefix = f"{name}/{video}/{test_name}"
                tensors[f"{prefix}/segments"] = result["segments"].reshape(-1, 2).contiguous()
                tensors[f"{prefix}/scores"] = result["scores"].contiguous()
                tensors[f"{prefix}/labels"] = result["labels"].to(torch.float32)

        # training losses: the non-EMA weights, drop path off so the forward is deterministic
        trainer = build(name)
        nn.DataParallel(trainer).load_state_dict(torch.load(HERE / f"{name}.pth.tar")["state_dict"])
        for module in trainer.modules():
            if isinstance(module, AffineDropPath):
                module.drop_prob = 0.0
        trainer.train()
        trainer.loss_normalizer = meta[f"{name}/loss_normalizer_after_step"]
        batch = train_batch(torch.Generator().manual_seed(SEED + 2))
        for k, item in enumerate(batch):
            tensors[f"{name}/train/feats{k}"] = item["feats"].T.contiguous()
        with torch.no_grad():
            x, mask = trainer.preprocessing(batch)
            levels, masks = trainer.backbone(x, mask)
            levels, masks = trainer.neck(levels, masks)
            points = trainer.point_generator(levels)
            gt_cls, gt_off = trainer.label_points(points, [b["segments"] for b in batch], [b["labels"] for b in batch])
        for k in range(len(batch)):
            tensors[f"{name}/train/gt_cls{k}"] = gt_cls[k].contiguous()
            tensors[f"{name}/train/gt_offsets{k}"] = gt_off[k].contiguous()
        losses = trainer(batch)
        for key, value in losses.items():
            meta[f"{name}/train/{key}"] = float(value)
        meta[f"{name}/train/loss_normalizer_after"] = float(trainer.loss_normalizer)

    # NMS on random candidates: 3 classes, many overlaps, exact ties
    segs_start = torch.randint(0, 40, (80,), generator=generator).float() + torch.rand(80, generator=generator)
    lengths = 1.0 + 9.0 * torch.rand(80, generator=generator)
    segs = torch.stack((segs_start, segs_start + lengths), 1)
    segs[5] = segs[3]                                        # identical segments
    scores = torch.rand(80, generator=generator)
    scores[10:14] = scores[0]                                # tied scores
    scores[20] = scores[21] = 0.5
    labels = torch.randint(0, 3, (80,), generator=generator)
    tensors["nms/segs"], tensors["nms/scores"], tensors["nms/labels"] = segs, scores, labels.to(torch.float32)
    for case, settings in NMS_CASES.items():
        out_segs, out_scores, out_labels = batched_nms(segs.clone(), scores.clone(), labels.clone(), **settings)
        tensors[f"nms/{case}/segments"] = out_segs.contiguous()
        tensors[f"nms/{case}/scores"] = out_scores.contiguous()
        tensors[f"nms/{case}/labels"] = out_labels.to(torch.float32)

    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(HERE / "golden.safetensors"),
              metadata={"meta": json.dumps(meta)})
    print(f"wrote {len(tensors)} tensors; commit {commit}")


if __name__ == "__main__":
    np.random.seed(SEED)
    main()
