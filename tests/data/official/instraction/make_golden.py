"""Write a tiny official InstrAct checkpoint (one real training step) and the golden outputs of the official code.

Run out of tree, in the reference environment (never in the product):

    /work/refenv-instract/bin/python tests/data/official/instraction/make_golden.py \
        --official /work/ref/InstrAct/model

``--official`` is the ``model/`` folder of zyyangzy/InstrAct at commit
8b0269460705e9fea1198560422207181bd6bc04, recreated file by file, plus the CLIP BPE vocabulary
``bpe_simple_vocab_16e6.txt.gz`` (git-ignored upstream; the byte-identical file of openai/CLIP) next to
``models/third_party/internvideo_compat/simple_tokenizer.py``.

What it does, and why each step:

1. Writes ``annotations.json`` in the official *training* format (an object keyed by the positive
   caption) with four items chosen to exercise the loader: 3 / 2 / 1 / 7 verb phrases (the last is cut
   to ``max_verbs`` = 6), one item without order-swapped negatives, two captions of the same
   ``video_id`` (so the VTC targets have two positives), one caption longer than the 32-token context,
   one clip shorter than ``min_time`` (the loader widens it), and exactly one MAM candidate per item.
   Every item has at most 12 hard negatives, so the loader's ``random.sample`` never runs and the
   batch is deterministic.
2. Writes a tiny model config: the official ``models/config.yaml`` with only sizes changed
   (see ``SIZES``) and ``backbone.checkpoint`` cleared (there is no InternVideo checkpoint).
3. Swaps the two size builders ``build_instract`` imports (``clip_joint_b16``, ``clip_text_b16``, which
   hard-code ViT-B/16 and a 512-wide text tower) for builders that construct the *official*
   ``VisionTransformer`` and ``CLIP_TEXT`` classes at the tiny size. Everything else is official code.
4. Runs the official ``main.main()`` (``--use-hard-negatives --hard-negative-type both
   --use-action-perceiver --use-dtw --use-mam --amp off --device cpu``) for exactly one epoch of one
   batch of 4: official ``build_instract`` (fine-tuning policy), official ``parameter_groups`` +
   ``AdamW(betas=(0.9, 0.98), eps=1e-6)``, official warmup+cosine ``LambdaLR``, official
   ``train_one_epoch`` (train mode, grad clip 1.0) and official ``save_checkpoint`` -> ``epoch0000.pth``.
   Only two things are wrapped: ``main.build_instract`` returns the official model after loading a seeded
   random state into it (the constructors leave ``proj``/``text_projection``/``positional_embedding`` as
   ``torch.empty``), and ``HT100MDataLoader._decode_video`` returns seeded random, already-normalised
   frames [3, T, 32, 32] (a function of the file name and the widened window) instead of calling ffmpeg.
   ``--warmup-steps 0`` because any warmup > 0 makes the official first step run at lr 0 (LambdaLR
   applies factor ``0 / warmup`` before the first ``scheduler.step()``); the schedule horizon is 4 steps
   (``--scheduler-total-epochs 4``) so the lr after the step is ``base * mult * 0.5 * (1 + cos(pi/4))``.
5. Records the official parameter groups (``groups.json``): per group its parameter name, base lr,
   multiplier, lr after the step, weight decay; and which parameters have ``requires_grad``.
6. Rebuilds the model with the official ``build_instract`` with ``backbone.checkpoint = epoch0000.pth``
   and ``strict_checkpoint = true`` (the official ``InternVideoAdapter.load_checkpoint`` path), puts it
   in eval mode and, under ``torch.no_grad()``, runs on the batch that the official
   ``HT100MDataLoader.__getitem__`` + default collate produce from ``annotations.json`` (in file order):
   ``model.encode``, ``encode_vision``, ``_action_features`` and the full ``forward(...,
   return_loss_dict=True)``; the teacher vector and the DTW order part are captured by wrapping the
   official ``vtc_loss`` / ``compute_dtw_loss`` calls (the wrappers only record and pass through).
7. Calls the official DTW, hard-negative and VTC loss functions and the official scheduler directly on
   small fixed inputs, so each can be checked in isolation.

Stubbed imports (imported by the official modules, not used on this path): ``ffmpeg`` (video decoding,
replaced as in step 4), ``data.eval_loader`` and ``validation`` (evaluation; ``main.py`` imports them,
no ``--val-annotations`` is given). Nothing that runs is stubbed or re-implemented: the official
``viclip_vision.py`` already carries its own ``DropPath`` (no timm).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import types
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
REPOSITORY = "https://github.com/zyyangzy/InstrAct"
COMMIT = "8b0269460705e9fea1198560422207181bd6bc04"
CKPT_NAME = "epoch0000.pth"
SEED = 20250611
TRAIN_SEED = 42  # the official --seed default; main_worker seeds python/numpy/torch with it

# Tiny sizes. Vision and text towers are 24 wide (not the suggested 64): the MAM LM head (8 x 49408) and
# its two AdamW moments alone take 4.7 MB of the 6 MB budget.
VISION = dict(patch_size=8, width=24, layers=3, heads=1)
TEXT = dict(transformer_width=24, transformer_heads=1, transformer_layers=2)
SIZES = {
    "backbone.input_resolution": 32,
    "backbone.checkpoint": None,
    "data.num_frames": 8,
    "model.text_feature_dim": 8,
    "model.action_perceiver.dim": 8,
    "model.action_perceiver.k_v_dim": 8,
    "model.action_perceiver.depth": 2,
    "model.action_perceiver.dim_head": 4,
    "model.action_perceiver.heads": 2,
    "model.action_perceiver.num_latents": 4,
    "model.action_perceiver.ff_mult": 2,
    "model.multimodal_decoder.dim": 8,
    "model.multimodal_decoder.context_dim": 8,
    "model.multimodal_decoder.multimodal_depth": 2,
    "model.multimodal_decoder.dim_head": 4,
    "model.multimodal_decoder.heads": 2,
    "model.multimodal_decoder.ff_mult": 2,
}
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.05
SCHEDULE_STEPS = 4

LONG_CAPTION = (
    "First wash the potatoes under cold running water, peel them with a small knife, cut them into thin "
    "even slices, soak the slices in salted water for ten minutes, dry them on a clean towel, and finally "
    "fry them in hot oil until they turn golden and crisp."
)
ITEMS = [
    {
        "caption": "Crack two eggs into a bowl, whisk them well, then pour the mixture into a hot pan.",
        "video_id": "vid_eggs", "start": 10.0, "end": 18.0,
        "verb_phrases": ["crack two eggs", "whisk them well", "pour the mixture"],
        "order_swapped_hn": [
            "Pour the mixture into a hot pan, whisk it well, then crack two eggs into a bowl.",
            "Whisk the bowl well, crack two eggs into it, then pour the mixture into a hot pan.",
        ],
        "hard_negatives": [
            "Drop two eggs into a bowl, whisk them well, then pour the mixture into a hot pan.",
            "Crack two eggs into a bowl, stir them well, then pour the mixture into a hot pan.",
            "Crack two eggs into a bowl, whisk them well, then spill the mixture into a hot pan.",
            "Peel two eggs into a bowl, whisk them well, then pour the mixture into a hot pan.",
            "Crack two eggs into a bowl, shake them well, then pour the mixture into a hot pan.",
            "Crack two eggs into a bowl, whisk them well, then scrape the mixture into a hot pan.",
        ],
        "mam": "whisk",
    },
    {
        "caption": "Slice the onion and fry it in butter.",
        "video_id": "vid_onion", "start": 3.0, "end": 5.5,  # shorter than min_time 5 s: the loader widens it
        "verb_phrases": ["slice the onion", "fry it in butter"],
        "order_swapped_hn": [],
        "hard_negatives": [
            "Peel the onion and fry it in butter.",
            "Slice the onion and boil it in butter.",
            "Grate the onion and fry it in butter.",
            "Slice the onion and melt it in butter.",
        ],
        "mam": "fry",
    },
    {
        "caption": "Flip the omelette with a spatula.",
        "video_id": "vid_eggs", "start": 20.0, "end": 27.0,  # same video as item 0: two VTC positives
        "verb_phrases": ["flip the omelette"],
        "order_swapped_hn": [],
        "hard_negatives": [
            "Fold the omelette with a spatula.",
            "Press the omelette with a spatula.",
        ],
        "mam": "Flip",
    },
    {
        "caption": LONG_CAPTION,
        "video_id": "vid_potato", "start": 40.0, "end": 52.0,
        "verb_phrases": ["wash the potatoes", "peel them", "cut them into slices", "soak the slices",
                         "dry them", "fry them in hot oil", "turn golden"],
        "order_swapped_hn": [
            LONG_CAPTION.replace("wash the potatoes", "@").replace("peel them", "wash the potatoes")
            .replace("@", "peel them"),
            LONG_CAPTION.replace("dry them on", "@").replace("fry them in", "dry them in")
            .replace("@", "fry them on"),
        ],
        "hard_negatives": [
            LONG_CAPTION.replace(old, new, 1) for old, new in (
                ("wash", "soak"), ("peel", "grate"), ("cut", "mash"), ("soak", "rinse"), ("dry", "wrap"),
                ("fry", "bake"), ("turn", "stay"), ("cold running", "warm still"), ("thin", "thick"),
                ("hot oil", "cold water"),
            )
        ],
        "mam": "peel",
    },
]


def set_dotted(config, dotted: str, value) -> None:
    node = config
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    assert leaf in node, f"official config has no {dotted}"
    node[leaf] = value


def write_annotations(path: Path) -> None:
    out = {}
    for item in ITEMS:
        caption = item["caption"]
        start = caption.index(item["mam"])
        phrase = next((p for p in item["verb_phrases"] if item["mam"].lower() in p), "")
        out[caption] = {
            "video_id": item["video_id"],
            "start": item["start"],
            "end": item["end"],
            "verb_phrases": item["verb_phrases"],
            "hard_negatives": item["hard_negatives"],
            "order_swapped_hn": item["order_swapped_hn"],
            "mam_mask_candidates": [{
                "word": item["mam"], "char_start": start, "char_end": start + len(item["mam"]),
                "phrase": phrase, "method": "verb_phrase_head",
            }],
        }
        assert len(item["hard_negatives"]) + len(item["order_swapped_hn"]) <= 12
    assert len(out) == len(ITEMS), "captions must be distinct (they are the JSON keys)"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def stub_unused_imports(official: Path) -> None:
    ffmpeg = types.ModuleType("ffmpeg")

    class FfmpegError(Exception):
        pass

    def _unused(*args, **kwargs):
        raise RuntimeError("ffmpeg stub used: video decoding is replaced by seeded frames")

    ffmpeg.Error = FfmpegError
    ffmpeg.input = _unused
    sys.modules["ffmpeg"] = ffmpeg
    # data/ and utils/ are namespace packages upstream (no __init__.py): pin them to the official tree.
    for name in ("data", "utils"):
        package = types.ModuleType(name)
        package.__path__ = [str(official / name)]
        sys.modules[name] = package
    eval_loader = types.ModuleType("data.eval_loader")
    eval_loader.HT100MEvalLoader = _unused
    sys.modules["data.eval_loader"] = eval_loader
    validation = types.ModuleType("validation")
    validation.evaluate = _unused
    sys.modules["validation"] = validation


def import_official(official: Path):
    stub_unused_imports(official)
    sys.path.insert(0, str(official))
    import main as official_main
    import models.instract as instract_module
    from data import train_loader
    from models.adapters import internvideo
    from models.third_party.internvideo_compat import viclip_text, viclip_vision
    from modules import contrastive_loss, dtw_loss, hard_negative_loss
    from utils import scheduler

    def tiny_vision(*, pretrained, input_resolution, kernel_size, center, num_frames, drop_path, checkpoint_num,
                    dropout):
        # clip_joint_b16's arguments, with the tiny architecture instead of ViT-B/16 (output dim = text dim).
        assert not pretrained and center
        return viclip_vision.VisionTransformer(
            input_resolution=input_resolution, output_dim=SIZES["model.text_feature_dim"], kernel_size=kernel_size,
            num_frames=num_frames, drop_path=drop_path, checkpoint_num=checkpoint_num, dropout=dropout, **VISION,
        ).eval()

    def tiny_text(*, embed_dim, context_length, vocab_size, checkpoint_num, pretrained):
        assert not pretrained and vocab_size == 49408 and context_length == 32
        return viclip_text.CLIP_TEXT(embed_dim, context_length, vocab_size, TEXT["transformer_width"],
                                     TEXT["transformer_heads"], TEXT["transformer_layers"], checkpoint_num).eval()

    viclip_vision.clip_joint_b16 = tiny_vision
    viclip_text.clip_text_b16 = tiny_text
    return types.SimpleNamespace(
        main=official_main, instract=instract_module, train_loader=train_loader, adapter=internvideo,
        contrastive=contrastive_loss, dtw=dtw_loss, hn=hard_negative_loss, scheduler=scheduler,
    )


def randomise(model: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A seeded, non-trivial value for every learnable tensor (buffers keep their official values)."""
    out = {}
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith(".beta") or name.endswith("inv_freq"):
            value = tensor.clone()  # MAM LayerNorm's constant-zero bias buffer, rotary frequencies
        elif name.endswith("token_embedding.weight"):
            rows, width = shape
            base = torch.randn(rows + width - 1, generator=generator) * 0.5
            value = base.as_strided(shape, (1, 1))
        elif name == "temperature":
            value = torch.tensor(0.03 + 0.01 * torch.rand((), generator=generator).item())
        elif name in ("action_mix", "distill_alpha"):
            value = 0.8 * torch.randn((), generator=generator)
        elif name.endswith(".gamma") or (name.endswith(".weight") and tensor.dim() == 1):
            value = 1.0 + 0.2 * torch.randn(shape, generator=generator)  # every LayerNorm scale
        elif name.endswith("bias"):  # also MultiheadAttention's in_proj_bias
            value = 0.1 * torch.randn(shape, generator=generator)
        elif name.endswith(("positional_embedding", "class_embedding", "mask_action_embedding")):
            value = 0.5 * torch.randn(shape, generator=generator)
        elif name in ("action_perceiver.latents", "action_perceiver.temporal_embedding"):
            value = torch.randn(shape, generator=generator)
        elif name.endswith("in_proj_weight"):
            # Query and key rows 3x larger: sharper attention, so outputs depend on their own inputs.
            width = shape[1]
            value = torch.randn(shape, generator=generator) * width ** -0.5
            value[: 2 * width] *= 3.0
        elif tensor.dim() >= 2:
            fan_in = shape[0] if name.endswith(("proj", "text_projection")) else tensor[0].numel()
            value = torch.randn(shape, generator=generator) * fan_in ** -0.5
            if name.endswith("to_q.weight"):
                value *= 2.0  # sharper Perceiver / MAM cross-attention
        else:
            raise AssertionError(f"no rule for {name} {shape}")
        assert value.dtype == torch.float32, name
        out[name] = value
    return out


def fake_decode(dataset_self, video_path, start, end):
    """Seeded stand-in for ffmpeg: already-normalised frames [3, T, S, S], a function of file and window."""
    key = f"{Path(video_path).stem}|{start:.3f}|{end:.3f}"
    generator = torch.Generator().manual_seed(SEED + zlib.crc32(key.encode()))
    return torch.randn(3, dataset_self.num_frames, dataset_self.size, dataset_self.size, generator=generator)


def train_one_step(official, work: Path, annotations: Path, generator: torch.Generator):
    """Official main.main() for one epoch of one batch; returns (checkpoint path, tiny config, record)."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(Path(official.main.__file__).parent / "models" / "config.yaml")
    for dotted, value in SIZES.items():
        set_dotted(config, dotted, value)
    tiny_config = work / "tiny_config.yaml"
    OmegaConf.save(config, tiny_config)

    videos = work / "videos"
    videos.mkdir(parents=True)
    for item in ITEMS:
        (videos / f"{item['video_id']}.mp4").touch()  # the loader only checks is_file(); decoding is replaced
    official.train_loader.HT100MDataLoader._decode_video = fake_decode

    record = {}
    official_build = official.main.build_instract

    def seeded_build(config, args):
        model = official_build(config, args)
        assert "state" not in record, "main_worker builds the model once"
        record["state"] = state = randomise(model, generator)
        model.load_state_dict(state, strict=True)
        embedding = model.text_encoder.token_embedding
        # load_state_dict copied it into a dense [49408, W] tensor; put the overlapping-stride view back
        # (frozen by the official policy) so the saved checkpoint stores 49408 + W - 1 floats, not 49408 x W.
        embedding.weight = torch.nn.Parameter(state["text_encoder.token_embedding.weight"], requires_grad=False)
        assert embedding.weight.stride() == (1, 1)
        record["requires_grad"] = {name: bool(p.requires_grad) for name, p in model.named_parameters()}
        return model

    official_groups = official.adapter.InternVideoAdapter.parameter_groups

    def recorded_groups(model, config, base_lr, weight_decay):
        groups = official_groups(model, config, base_lr, weight_decay)
        names = [name for name, p in model.named_parameters() if p.requires_grad]
        by_id = {id(p): name for name, p in model.named_parameters()}
        assert [by_id[id(g["params"][0])] for g in groups] == names and all(len(g["params"]) == 1 for g in groups)
        record["groups"] = [{"params": [name], "base_lr": g["lr"], "multiplier": g["lr"] / base_lr,
                             "weight_decay": g["weight_decay"]} for name, g in zip(names, groups)]
        record["no_weight_decay"] = sorted(model.no_weight_decay())
        return groups

    official.main.build_instract = seeded_build
    official.adapter.InternVideoAdapter.parameter_groups = staticmethod(recorded_groups)
    argv = [
        "main.py", "--video-root", str(videos), "--train-annotations", str(annotations),
        "--model-config", str(tiny_config), "--output-dir", str(work), "--run-name", "instract",
        "--device", "cpu", "--amp", "off", "--workers", "0", "--no-pin-memory", "--seed", str(TRAIN_SEED),
        "--epochs", "1", "--scheduler-total-epochs", str(SCHEDULE_STEPS), "--batch-size", str(len(ITEMS)),
        "--learning-rate", str(LEARNING_RATE), "--weight-decay", str(WEIGHT_DECAY), "--warmup-steps", "0",
        "--gradient-clip-norm", "1.0",
        "--use-hard-negatives", "--hard-negative-type", "both", "--use-action-perceiver", "--use-dtw", "--use-mam",
    ]
    saved_argv = sys.argv
    sys.argv = argv
    try:
        official.main.main()
    finally:
        sys.argv = saved_argv
        official.main.build_instract = official_build
        official.adapter.InternVideoAdapter.parameter_groups = staticmethod(official_groups)
    summary = json.loads((work / "instract" / "training_summary.json").read_text())
    record["train_step"] = {"mode": "train (dropout 0.1 on Perceiver temporal embedding, drop-path 0.05/0.1 in "
                                    "vision blocks 1/2), batch order from the official shuffled DataLoader",
                            "loss": summary["history"][0]["loss"], "loss_terms": summary["history"][0]["loss_terms"]}
    record["argv"] = argv[1:]
    return work / "instract" / CKPT_NAME, config, record


def fixed_function_checks(official, generator: torch.Generator) -> tuple[dict, dict]:
    tensors, meta = {}, {}
    # DTW on a hand-made setting: 2 videos x 5 steps, 2 x 3 verbs, of which 3 and 2 are valid.
    tokens = torch.randn(2, 5, 8, generator=generator)
    verbs = torch.randn(2, 3, 8, generator=generator)
    num_verbs = torch.tensor([3, 2])
    indices = official.instract._step_indices(num_verbs, 3, tokens.device)
    for suffix, (margin, ratio, scale) in {"": (0.0, 1.0, 0.01), "_b": (0.5, 2.0, 1.0)}.items():
        total, order = official.dtw.compute_dtw_loss(tokens, verbs, indices, margin, ratio, scale, "dtw_contrastive")
        tensors[f"dtw_fixed_total{suffix}"] = total
        tensors[f"dtw_fixed_order{suffix}"] = order
        meta[f"dtw_fixed{suffix}"] = f"compute_dtw_loss(tokens, verbs, indices, margin={margin}, order_weight={ratio}, scale={scale})"
    tensors["dtw_fixed_tokens"], tensors["dtw_fixed_verbs"] = tokens, verbs
    tensors["dtw_fixed_num_verbs"], tensors["dtw_fixed_indices"] = num_verbs, indices
    tensors["dtw_fixed_cost_item0"] = official.dtw._smooth_dtw(tokens[0], verbs[0])
    tensors["dtw_fixed_cost_item1_reversed"] = official.dtw._smooth_dtw(tokens[1].flip(0), verbs[1, :2])
    meta["dtw_fixed_cost"] = ("_smooth_dtw(tokens[0], verbs[0]) and _smooth_dtw(tokens[1].flip(0), verbs[1, :2]) "
                              "(softening dtw_prob, gamma 0.1, unscaled)")

    # Hard-negative NCE: 3 videos x 5 candidates (positive first); 1 = padded. Item 2 has only its positive.
    hn_video = torch.randn(3, 8, generator=generator)
    hn_text = torch.randn(15, 8, generator=generator)
    hn_mask = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1]).reshape(-1, 1)
    tensors["hn_fixed_video"], tensors["hn_fixed_text"], tensors["hn_fixed_mask"] = hn_video, hn_text, hn_mask
    tensors["hn_fixed_loss"] = official.hn.verb_hard_neg_nce_torch(hn_video, hn_text, hn_mask)
    tensors["hn_fixed_loss_beta"] = official.hn.verb_hard_neg_nce_torch(hn_video, hn_text, hn_mask, temperature=0.1,
                                                                         beta=2.0)
    meta["hn_fixed"] = ("verb_hard_neg_nce_torch(video [3,8], text [15,8], mask [15,1]) with defaults "
                        "(temperature 0.05, beta 0); _beta: temperature=0.1, beta=2.0")

    # VTC with and without distillation targets.
    vtc = official.contrastive.VTC_VTM_Loss(False)
    vtc_vision = torch.randn(4, 8, generator=generator)
    vtc_text = torch.randn(4, 8, generator=generator)
    vtc_teacher = torch.randn(4, 8, generator=generator)
    vtc_idx = torch.tensor([0, 1, 1, 2])
    tensors.update(vtc_fixed_vision=vtc_vision, vtc_fixed_text=vtc_text, vtc_fixed_teacher=vtc_teacher,
                   vtc_fixed_idx=vtc_idx)
    tensors["vtc_fixed_loss_plain"] = vtc.vtc_loss(vtc_vision, vtc_text, None, 0.05)
    tensors["vtc_fixed_loss_idx"] = vtc.vtc_loss(vtc_vision, vtc_text, vtc_idx, 0.05)
    tensors["vtc_fixed_loss_distill"] = vtc.vtc_loss(vtc_vision, vtc_text, vtc_idx, 0.05, alpha=0.3,
                                                     vision_distill=vtc_teacher)
    meta["vtc_fixed"] = ("vtc_loss(vision, text, idx, temp=0.05): _plain idx=None; _idx idx=[0,1,1,2]; "
                         "_distill idx=[0,1,1,2], alpha=0.3, vision_distill=teacher")

    # The schedule itself, with a warmup: lr factor before each of 12 steps (warmup 3, horizon 10).
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = official.scheduler.get_cosine_schedule_with_warmup(optimizer, 3, 10)
    factors = []
    for _ in range(12):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    tensors["schedule_factors_w3_t10"] = torch.tensor(factors, dtype=torch.float32)
    meta["schedule_factors_w3_t10"] = ("get_cosine_schedule_with_warmup(opt(lr=1), warmup 3, total 10): the lr "
                                       "in force for steps 0..11 (factor 0 at step 0)")
    return tensors, meta


def evaluate_golden(official, config, checkpoint: Path, args_dict: dict):
    from omegaconf import OmegaConf

    config = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    config.backbone.checkpoint = str(checkpoint)
    config.backbone.strict_checkpoint = True
    OmegaConf.resolve(config)
    args = argparse.Namespace(**args_dict)
    torch.manual_seed(0)  # the fresh model's own init is fully overwritten by the strict load
    model = official.main.build_instract(config, args).eval()
    report = model.load_report
    assert not (report.missing or report.unexpected or report.mismatched), report

    dataset, _ = official.main._create_datasets(args, config)
    random.seed(0)  # the loader shuffles the (single) MAM candidate
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])

    captured = {}
    official_vtc = model.contrastive_loss.vtc_loss

    def recording_vtc(*a, **k):
        captured["teacher"] = k["vision_distill"]
        captured["distill_alpha_used"] = k["alpha"]
        captured["vtc_visual"] = a[0]
        captured["vtc_text"] = a[1]
        return official_vtc(*a, **k)

    official_dtw = official.instract.compute_dtw_loss

    def recording_dtw(*a, **k):
        total, order = official_dtw(*a, **k)
        captured["dtw_total"], captured["dtw_order"] = total, order
        return total, order

    model.contrastive_loss.vtc_loss = recording_vtc
    official.instract.compute_dtw_loss = recording_dtw
    try:
        with torch.no_grad():
            video = batch["video"]
            text = batch["text"]
            encoded_video, encoded_text = model.encode(video, text[:, 0])
            vision = model.encode_vision(video)
            action_tokens, action_global = model._action_features(vision["feat_3d"])
            text_global, text_tokens = model.encode_text(text.reshape(-1, text.shape[-1]))
            losses = model(video, text, hard_negative_mask=batch["text_mask"], num_verbs=batch["num_verbs"],
                           action_mask=batch["action_mask"], idx=batch["idx"], return_loss_dict=True)
    finally:
        official.instract.compute_dtw_loss = official_dtw
    batch_size = video.shape[0]
    tensors = {
        "video": video,
        "idx": batch["idx"],
        "text": text,
        "text_mask": batch["text_mask"],
        "num_verbs": batch["num_verbs"],
        "action_mask": batch["action_mask"].long(),
        "encode_video": encoded_video,
        "encode_text": encoded_text,
        "vision_global": vision["global"],
        "vision_feat_3d": vision["feat_3d"],
        "action_tokens": action_tokens,
        "action_global": action_global,
        "text_global": text_global.reshape(batch_size, -1, text_global.shape[-1]),
        "mam_text_tokens": text_tokens.reshape(batch_size, text.shape[1], *text_tokens.shape[1:])[:, 13],
        "teacher_action": captured["teacher"],
        "temperature": model.temperature.detach(),
        "action_mix": model.action_mix.detach(),
        "action_mix_sigmoid": torch.sigmoid(model.action_mix.detach()),
        "distill_alpha": model.distill_alpha.detach(),
        "distill_alpha_sigmoid": torch.sigmoid(model.distill_alpha.detach()),
        "loss": losses["loss"],
        "loss_vtc": losses["vtc"],
        "loss_hard_negative": losses["hard_negative"],
        "loss_dtw": losses["dtw"],
        "loss_dtw_order": captured["dtw_order"],
        "loss_dtw_alignment": captured["dtw_total"] - captured["dtw_order"],
        "loss_mam": losses["mam"],
    }
    assert torch.equal(captured["dtw_total"], losses["dtw"])
    assert torch.equal(captured["vtc_visual"], encoded_video)
    return tensors, dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="the model/ folder of zyyangzy/InstrAct")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--work", type=Path, default=Path("/tmp/instract_golden_run"),
                        help="scratch folder for the official run (emptied first; its paths end up in the "
                             "checkpoint's args)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(SEED)

    official = import_official(args.official.resolve())
    annotations = args.out / "annotations.json"
    write_annotations(annotations)
    run_annotations = args.work / "annotations.json"
    shutil.copyfile(annotations, run_annotations)

    trained_path, config, record = train_one_step(official, args.work, run_annotations, generator)
    record.pop("state")

    checkpoint = args.out / CKPT_NAME
    shutil.copyfile(trained_path, checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert sorted(state) == ["args", "config", "epoch", "global_step", "model", "optimizer", "scaler", "scheduler"]
    assert state["epoch"] == 0 and state["global_step"] == 1
    param_groups = state["optimizer"]["param_groups"]
    assert len(param_groups) == len(record["groups"])
    expected_factor = 0.5 * (1.0 + math.cos(math.pi / SCHEDULE_STEPS))
    for group, saved in zip(record["groups"], param_groups):
        group["lr_after_step"] = saved["lr"]
        group["initial_lr"] = saved["initial_lr"]
        assert saved["weight_decay"] == group["weight_decay"]
        assert math.isclose(saved["lr"], group["base_lr"] * expected_factor, rel_tol=1e-12)
    groups_doc = {
        "repository": REPOSITORY, "commit": COMMIT,
        "optimizer": "torch.optim.AdamW(InternVideoAdapter.parameter_groups(model, config, lr, wd), "
                     "betas=(0.9, 0.98), eps=1e-6)  (main.py)",
        "learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY,
        "scheduler": f"get_cosine_schedule_with_warmup(optimizer, warmup_steps=0, total_steps={SCHEDULE_STEPS}); "
                     f"one step taken, lr_after_step = base_lr * 0.5 * (1 + cos(pi / {SCHEDULE_STEPS}))",
        "lr_factor_after_step": expected_factor,
        "gradient_clip_norm": 1.0,
        "scheduler_state": {k: v for k, v in state["scheduler"].items() if k != "lr_lambdas"},
        "scaler_state": state["scaler"],
        **record,
    }
    (args.out / "groups.json").write_text(json.dumps(groups_doc, indent=1) + "\n", encoding="utf-8")

    tensors, dataset = evaluate_golden(official, config, checkpoint, state["args"])
    fixed, fixed_meta = fixed_function_checks(official, generator)
    tensors.update(fixed)
    tensors = {k: (v.float() if v.is_floating_point() else v.long()).contiguous() for k, v in tensors.items()}

    sizes = {k: v for k, v in SIZES.items() if v is not None}
    metadata = {
        "repository": REPOSITORY,
        "commit": COMMIT,
        "code": "model/ (main.main one step -> utils.checkpoint.save_checkpoint; models.build_instract + "
                "InternVideoAdapter.load_checkpoint(strict) -> InstrAct.encode / forward(return_loss_dict=True))",
        "checkpoint": CKPT_NAME,
        "mode": "eval (model.eval(), torch.no_grad()), fp32, CPU",
        "sizes": json.dumps({**sizes, "vision": VISION, "text": TEXT, "text.context_length": 32,
                             "text.vocab_size": 49408, "max_negatives": 12, "max_verbs": 6, "max_text": 20}),
        "frames_layout": "video [B, 3, T, H, W] = [4, 3, 8, 32, 32], already normalised (seeded randn standing "
                         "in for the loader's ffmpeg decode + CLIP mean/std)",
        "batch": "official HT100MDataLoader(__getitem__) on annotations.json in file order + default_collate; "
                 "text rows: 0 caption, 1..12 hard negatives (order-swapped first, zero rows = padding), "
                 "13 caption again (MAM row), 14..19 verb phrases; text_mask 1 = padded HN slot",
        "captions": json.dumps([s["caption"] for s in dataset.samples]),
        "encode": "encode_video, encode_text = model.encode(video, text[:, 0]) (mixed video embedding, "
                  "un-normalised; text global through text_action_projection = Identity)",
        "vision": "vision_global / vision_feat_3d = model.encode_vision(video)['global' / 'feat_3d'] [B,T,16,D]",
        "action": "action_tokens, action_global = model._action_features(vision_feat_3d)",
        "text_global": "model.encode_text(text.reshape(-1, 32))[0] reshaped to [B, 20, D]",
        "mam_text_tokens": "model.encode_text(...)[1] at text row 13, [B, 32, D] (the MAM decoder's text_embeds)",
        "teacher_action": "the vision_distill argument the official forward passes to vtc_loss",
        "losses": json.dumps({"loss": "loss", "loss_vtc": "vtc", "loss_hard_negative": "hard_negative",
                              "loss_dtw": "dtw", "loss_mam": "mam",
                              "loss_dtw_order": "compute_dtw_loss(...)[1] = order_weight * mean hinge",
                              "loss_dtw_alignment": "dtw - dtw_order (mean scaled forward DTW cost)"}),
        "loss_weights": "vtc 1, hard_negative 1, dtw 10, mam 1",
        "action_mask": "bool in the loader, stored as int64",
        **fixed_meta,
    }
    save_file(tensors, str(args.out / "golden.safetensors"), metadata=metadata)
    digest = hashlib.sha256(json.dumps({k: v.tolist() for k, v in tensors.items()}).encode()).hexdigest()
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB in all); tensors sha256 {digest}")
    for name, value in tensors.items():
        print(f"  {name}: {list(value.shape)} {value.dtype}" + (f" = {value.item():.6f}" if value.dim() == 0 else ""))


if __name__ == "__main__":
    main()
