"""Write tiny TriDet checkpoints and the golden outputs of the official release code.

Run out of tree, in the reference environment (never in the product), after building the
release's C++ NMS extension in place (``cd libs/utils && python setup.py build_ext --inplace``):

    /work/refenv-tridet/bin/python tests/data/official/tridet/make_golden.py --official /work/ref/tridet

What it does, and why each step:

1. Builds two tiny ``TriDet`` models with the official ``make_meta_arch`` from the official config
   defaults (``libs/core/config.py``) overridden to a tiny size: ``thumos_like`` (the THUMOS14 I3D
   structure of ``configs/thumos_i3d.yaml``: SGP window 1, k 5, 16 bins, identity neck, max-pool
   downsampling, drop path 0.1 so branch blocks carry their scales, IoU weight power 0.2) and
   ``variant`` (FPN neck, windows 3 / 5, k 1.5, average-pool downsampling, absolute positions,
   heads without LayerNorm, 2-layer heads, boundary kernel 5, 6 bins, IoU weight power 1); and
   ``plain`` (``use_trident_head`` false: the centre head regresses two distances directly).
2. Perturbs every parameter with seeded noise (the official init zeroes the SGP convs and gives
   near-constant outputs), wraps the model in ``nn.DataParallel`` as ``train.py`` does, and takes
   five official training steps (``train_one_epoch``'s body: losses, backward, clipping 1.0,
   AdamW from ``make_optimizer``, cosine ``make_scheduler``, ``ModelEma.update``). The file is
   the dict ``train.py`` saves, so ``state_dict`` and ``state_dict_ema`` differ.
3. Loads ``state_dict_ema`` and runs the official model in eval mode on fixed features of two
   videos (100 steps: padded to ``max_seq_len``; 300: padded to the next multiple of
   ``max_div_factor``), saving per level the raw outputs of the official heads (class logits,
   centre offsets, start and end logits) and the expected distances of the official
   ``decode_offset`` (its inference branch, fed the neighbour windows built exactly as
   ``inference_single_video`` builds them); then the whole official forward (inference +
   post-processing with ``batched_nms``) for three test configs.
4. Loads ``state_dict`` into a training-mode model (drop path 0, no input noise) and records
   ``label_points`` and the three losses of ``losses`` on a tiny batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 20230314
COMMIT = "764b8165b0d7eb3dfce29f126493564e15003d6e"

INPUT_DIM = 24
MODELS = {
    "thumos_like": dict(
        model=dict(backbone_type="SGP", fpn_type="identity", backbone_arch=(2, 2, 5), scale_factor=2,
                   n_sgp_win_size=1, embd_kernel_size=3, embd_dim=16, embd_with_ln=True, fpn_dim=16,
                   sgp_mlp_dim=24, fpn_with_ln=True, head_dim=16, head_num_layers=3, head_kernel_size=3,
                   boudary_kernel_size=3, head_with_ln=True, use_abs_pe=False, num_bins=16, iou_weight_power=0.2,
                   downsample_type="max", input_noise=0.0, k=5, init_conv_vars=0, use_trident_head=True,
                   max_buffer_len_factor=6.0,
                   regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]),
        num_classes=3, droppath=0.1, init_loss_norm=100),
    "variant": dict(
        model=dict(backbone_type="SGP", fpn_type="fpn", backbone_arch=(2, 1, 5), scale_factor=2,
                   n_sgp_win_size=[3, 3, 5, 5, 3, 3], embd_kernel_size=3, embd_dim=16, embd_with_ln=True,
                   fpn_dim=12, sgp_mlp_dim=20, fpn_with_ln=True, head_dim=8, head_num_layers=2,
                   head_kernel_size=3, boudary_kernel_size=5, head_with_ln=False, use_abs_pe=True, num_bins=6,
                   iou_weight_power=1.0, downsample_type="avg", input_noise=0.0, k=1.5, init_conv_vars=0.1,
                   use_trident_head=True, max_buffer_len_factor=6.0,
                   regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]),
        num_classes=4, droppath=0.0, init_loss_norm=2000),
    "plain": dict(
        model=dict(backbone_type="SGP", fpn_type="identity", backbone_arch=(2, 1, 5), scale_factor=2,
                   n_sgp_win_size=3, embd_kernel_size=3, embd_dim=16, embd_with_ln=True, fpn_dim=16,
                   sgp_mlp_dim=16, fpn_with_ln=True, head_dim=16, head_num_layers=3, head_kernel_size=3,
                   boudary_kernel_size=3, head_with_ln=True, use_abs_pe=False, num_bins=16, iou_weight_power=0.2,
                   downsample_type="max", input_noise=0.0, k=3, init_conv_vars=0.1, use_trident_head=False,
                   max_buffer_len_factor=6.0,
                   regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]),
        num_classes=3, droppath=0.1, init_loss_norm=100),
}
MAX_SEQ_LEN = 256
STEPS = 5
VIDEOS = [  # id, length, fps, feat_stride, num_frames, duration
    ("video_a", 100, 30.0, 4, 16, 13.1),
    ("video_b", 300, 25.0, 8, 16, 95.0),
]
TEST_CONFIGS = {
    "thumos": dict(pre_nms_thresh=0.001, pre_nms_topk=2000, iou_threshold=0.1, min_score=0.001, max_seg_num=2000,
                   nms_method="soft", nms_sigma=0.5, duration_thresh=0.05, multiclass_nms=True, voting_thresh=0.7),
    "hard_agnostic_vote": dict(pre_nms_thresh=0.001, pre_nms_topk=50, iou_threshold=0.3, min_score=0.05,
                               max_seg_num=40, nms_method="hard", nms_sigma=0.5, duration_thresh=0.5,
                               multiclass_nms=False, voting_thresh=0.6),
    "soft_agnostic_vote": dict(pre_nms_thresh=0.01, pre_nms_topk=300, iou_threshold=0.1, min_score=0.01,
                               max_seg_num=100, nms_method="soft", nms_sigma=0.3, duration_thresh=0.05,
                               multiclass_nms=False, voting_thresh=0.75),
}
# Ground truth of the loss batch on the feature grid, with label_points' corner cases.
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
            elif "drop_path" in name:
                parameter.copy_(0.5 + 0.3 * noise)
            elif "norm" in name or ".ln." in name or ".gn." in name:
                parameter.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif name.endswith("cls_head.cls_head.conv.bias"):
                parameter.copy_(-2.0 + 0.5 * noise)
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
    return make_meta_arch("TriDet", **spec["model"], input_dim=INPUT_DIM, max_seq_len=MAX_SEQ_LEN,
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


def neighbours(logits: torch.Tensor, bins: int, side: str) -> torch.Tensor:
    """``inference_single_video``'s padded ``as_strided`` windows of one video's [C, T] boundary logits."""
    x = F.pad(logits, (bins, 0) if side == "start" else (0, bins), mode="constant", value=0).unsqueeze(-1)
    size = list(x.size())
    size[-1] = bins + 1
    size[-2] = size[-2] - bins
    stride = list(x.stride())
    stride[-2] = stride[-1]
    return x.as_strided(size=size, stride=stride)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    sys.path.insert(0, str(args.official / "libs" / "utils"))   # the built nms_1d_cpu extension
    torch.set_num_threads(1)
    from libs.modeling.blocks import AffineDropPath
    from libs.utils import ModelEma, make_optimizer, make_scheduler

    generator = torch.Generator().manual_seed(SEED)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, object] = {"repository": "dingfengshi/TriDet", "commit": COMMIT, "max_seq_len": MAX_SEQ_LEN,
                               "input_dim": INPUT_DIM,
                               "models": {n: dict(s["model"]) | {"num_classes": s["num_classes"],
                                                                 "droppath": s["droppath"],
                                                                 "init_loss_norm": s["init_loss_norm"]}
                                          for n, s in MODELS.items()},
                               "videos": VIDEOS, "test_configs": TEST_CONFIGS, "gt": GT}
    for video, length, *_rest in VIDEOS:
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
        scheduler = make_scheduler(optimizer, {"warmup": False, "epochs": 4, "schedule_type": "cosine",
                                               "eta_min": 1e-8}, 5)
        ema = ModelEma(wrapped)
        wrapped.train()
        for _ in range(STEPS):
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

        evaluator = build(name)
        nn.DataParallel(evaluator).load_state_dict(torch.load(HERE / f"{name}.pth.tar")["state_dict_ema"])
        evaluator.eval()
        bins = evaluator.num_bins
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
                trident = evaluator.use_trident_head
                start = evaluator.start_head(levels, masks) if trident else [None] * len(cls)
                end = evaluator.end_head(levels, masks) if trident else [None] * len(cls)
                off = evaluator.reg_head(levels, masks)
            meta[f"{name}/{video}/padded_length"] = int(x.shape[-1])
            for level, (c, s, e, o, m, p) in enumerate(zip(cls, start, end, off, masks, points)):
                prefix = f"{name}/{video}/level{level}"
                tensors[f"{prefix}/cls_logits"] = c[0].T.contiguous()
                tensors[f"{prefix}/centre"] = o[0].T.contiguous()
                tensors[f"{prefix}/mask"] = m[0, 0].to(torch.float32)
                tensors[f"{prefix}/points"] = p.clone()
                if not trident:   # decode_offset returns the regressed distances as they are: [T, 1, 2]
                    tensors[f"{prefix}/distances"] = evaluator.decode_offset(o[0].T, None, None)[:, None].contiguous()
                    continue
                tensors[f"{prefix}/start_logits"] = s[0].T.contiguous()
                tensors[f"{prefix}/end_logits"] = e[0].T.contiguous()
                with torch.no_grad():   # decode_offset's inference branch: [C, T, 2]
                    decoded = evaluator.decode_offset(o[0].T.contiguous(), neighbours(s[0], bins, "start"),
                                                      neighbours(e[0], bins, "end"))
                tensors[f"{prefix}/distances"] = decoded.permute(1, 0, 2).contiguous()   # [T, C, 2]
            for test_name, config in TEST_CONFIGS.items():
                set_test_config(evaluator, config)
                with torch.no_grad():
                    result = evaluator([item])[0]
                prefix = f"{name}/{video}/{test_name}"
                tensors[f"{prefix}/segments"] = result["segments"].reshape(-1, 2).contiguous()
                tensors[f"{prefix}/scores"] = result["scores"].contiguous()
                tensors[f"{prefix}/labels"] = result["labels"].to(torch.float32)

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

    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(HERE / "golden.safetensors"),
              metadata={"meta": json.dumps(meta)})
    print(f"wrote {len(tensors)} tensors")


if __name__ == "__main__":
    np.random.seed(SEED)
    main()
