"""Build the UniVL golden files by running the official code on a tiny random checkpoint.

Run with the reference environment, never with the product one:

    /work/refenv/bin/python tests/data/official/univl/make_golden.py --official /work/ref/UniVL \\
        --features /work/ref/VideoFeatureExtractor --s3d /work/ref/S3D_HowTo100M

What it does, and why:

- UniVL's video input is S3D features: one 1024-d vector per second, made by the official
  feature extractor (ArrowLuo/VideoFeatureExtractor, which UniVL's README points to): frames at
  16 fps, ``Preprocessing('s3dg')`` (pixels / 255, zero frames appended up to a multiple of 16,
  chunks of 16 frames), its ``S3D(last_fc=False)`` (the pooled ``mixed_5c``) loaded with its
  ``init_weight`` from ``s3d_howto100m.pth``, then ``F.normalize`` and float16 (``extract.py``'s
  defaults). Here the S3D checkpoint is the tiny one of ``tests/data/official/milnce_s3d``
  (channel widths / 8, so 128-d features), narrowed with the same constructor wrappers.
- The UniVL model is built by the official ``UniVL.from_pretrained`` from tiny config files
  (``bert_config.json``, ``visual_config.json``, ``cross_config.json``, ``decoder_config.json`` in a
  temporary folder) with a pre-training ``task_config`` (``--do_pretrain --stage_two``), so the
  checkpoint holds what ``univl.pretrained.bin`` holds: ``bert``, ``visual``, ``cross``,
  ``decoder``, the MLM heads ``cls``/``cls_visual``, ``similarity_dense`` and ``normalize_video``.
  Every parameter is then overwritten with seeded random values and the state dict saved with
  ``torch.save(model.state_dict())`` (``main_pretrain.save_model``'s format).
- The golden outputs come from the model ``main_task_retrieval.init_model`` builds from that file
  for evaluation (``UniVL.from_pretrained(..., state_dict=torch.load(init_model))``): the stage-one
  model (alignment: mean pooling and cosine, ``use_mil`` off) and the ``--train_sim_after_cross``
  model (the cross encoder's ``similarity_dense`` logit). Text and video inputs come from the
  official YouCook retrieval loader's ``_get_text`` / ``_get_video`` (the BERT tokenizer of
  ``modules/tokenization.py`` on a tiny vocabulary, ``[CLS] ... [SEP]`` cut to ``max_words``,
  features cut to ``max_frames`` and zero-padded).
- Stubbed because they are imported but never used here: ``tqdm``, ``boto3``, ``botocore``,
  ``requests`` (downloads in ``file_utils``), ``pandas`` (the loaders' csv), ``torchvision`` (the
  feature extractor's 2-D model). ``np.long``/``np.float``, removed in numpy 2, are aliased for
  the loaders.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import types

MAX_WORDS = 48  # the README's retrieval settings
MAX_FRAMES = 48
HIDDEN, HEADS, INTERMEDIATE = 32, 2, 37
TEXT_LAYERS, VISUAL_LAYERS, CROSS_LAYERS, DECODER_LAYERS = 2, 2, 2, 1
VIDEO_DIM = 128  # the tiny S3D's mixed_5c (1024 / 8)
FPS = 16  # VideoFeatureExtractor's FRAMERATE_DICT['s3dg']

VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
         "!", "'", ",", ".", "-", "?", "a", "an", "the", "person", "someone", "cut", "##s", "cuts", "onion",
         "slice", "##ing", "##d", "vegetables", "quick", "##ly", "cafe", "creme", "brulee", "中", "文", "text",
         "inside", "open", "jar", "slow", "pour", "water", "into", "pan", "and", "stir", "egg", "##gs", "with",
         "salt", "pepper", "then", "mix", "s", "t", "don", "knife", "un", "##known", "##word", "x", "##y", "##z",
         "tab", "new", "##line", "to", "of"]

CAPTIONS = [
    "A person cuts an onion.",
    "Someone's SLICING vegetables, quickly!!",
    "Café crème brûlée",  # accents stripped after lower-casing
    "中文 text",  # CJK characters split one by one
    "[CLS] inside [SEP] the jar [PAD] [CLS], [MASK]",  # never_split keeps "[CLS]" whole, not "[CLS],"
    "",
    "unknownword xyz qqq",  # "qqq" has no word piece: [UNK]
    "tab\tand new\nlines \x00 then",  # whitespace and control characters
    # 60 words: cut to max_words - 2 word pieces
    " ".join(["pour water into the pan and stir the eggs with salt and pepper then mix"] * 4),
    "don't cut-the knife",
]


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    sys.modules[name] = module
    return module


def install_stubs(official: str, features: str) -> None:
    import numpy as np

    np.long = np.int64  # removed in numpy 2; the official loaders use them as dtypes
    np.float = np.float64
    _stub("tqdm", tqdm=lambda *a, **k: None)
    _stub("boto3", resource=None)
    _stub("botocore")
    _stub("botocore.exceptions", ClientError=Exception)
    _stub("requests", head=None, get=None)
    _stub("pandas", read_csv=None)
    _stub("torchvision")
    _stub("torchvision.models")
    _stub("ffmpeg")
    sys.path.insert(0, official)
    sys.path.insert(1, features)


def write_configs(folder: pathlib.Path, vocab_size: int) -> dict[str, str]:
    common = dict(attention_probs_dropout_prob=0.1, hidden_act="gelu", hidden_dropout_prob=0.1, hidden_size=HIDDEN,
                  initializer_range=0.02, intermediate_size=INTERMEDIATE, num_attention_heads=HEADS)
    configs = {
        "bert": ("bert_config.json", dict(common, max_position_embeddings=64, num_hidden_layers=12,
                                          type_vocab_size=2, vocab_size=vocab_size)),
        "visual": ("visual_config.json", dict(common, max_position_embeddings=64, num_hidden_layers=1,
                                              vocab_size=VIDEO_DIM)),
        "cross": ("cross_config.json", dict(common, max_position_embeddings=128, num_hidden_layers=2,
                                            vocab_size=HIDDEN)),
        "decoder": ("decoder_config.json", dict(common, num_hidden_layers=12, type_vocab_size=2,
                                                vocab_size=vocab_size, num_decoder_layers=1,
                                                max_target_embeddings=64)),
    }
    names = {}
    for key, (file, config) in configs.items():
        directory = folder / f"{key}-tiny"
        directory.mkdir()
        (directory / file).write_text(json.dumps(config))
        names[key] = str(directory)
    return names


def task_config(**flags):
    """The argparse Namespace of main_pretrain.py / main_task_retrieval.py with the README's values."""
    base = dict(do_pretrain=False, stage_two=False, train_sim_after_cross=False, use_mil=False, sampled_use_mil=False,
                max_words=MAX_WORDS, max_frames=MAX_FRAMES, video_dim=VIDEO_DIM, batch_size=1, n_gpu=1, n_pair=1,
                margin=0.1, negative_weighting=1, hard_negative_rate=0.5, local_rank=0, task_type="retrieval",
                text_num_hidden_layers=TEXT_LAYERS, visual_num_hidden_layers=VISUAL_LAYERS,
                cross_num_hidden_layers=CROSS_LAYERS, decoder_num_hidden_layers=DECODER_LAYERS,
                feature_framerate=1)
    base.update(flags)
    return argparse.Namespace(**base)


def randomise(model, torch, nn, LayerNorm, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)

    def rn(t, std):
        return torch.randn(t.shape, generator=gen) * std

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("LayerNorm.weight") or name.endswith("visual_norm2d.weight"):
                parameter.copy_(1.0 + rn(parameter, 0.2))
            elif name.endswith("bias"):
                parameter.copy_(rn(parameter, 0.1))
            elif parameter.ndim == 2 and "embeddings" not in name:
                parameter.copy_(rn(parameter, parameter.shape[1] ** -0.5))
            else:
                parameter.copy_(rn(parameter, 0.5))


def narrow_feature_s3d(s3dg, nn, narrowed) -> None:
    """The extractor's copy of s3dg at the widths of the tiny MIL-NCE checkpoint (its make_golden.py rules)."""
    conv_init, gating_init, s3d_init = s3dg.STConv3D.__init__, s3dg.SelfGating.__init__, s3dg.S3D.__init__

    def tiny_conv(self, input_dim, output_dim, kernel_size, stride=1, padding=0, separable=False):
        stem_input = input_dim in (3, 24) and list(kernel_size) in ([2, 4, 4], [3, 7, 7])
        conv_init(self, input_dim if stem_input else narrowed(input_dim), narrowed(output_dim), kernel_size,
                  stride=stride, padding=padding, separable=separable)

    def tiny_gating(self, input_dim):
        gating_init(self, narrowed(input_dim))

    def tiny_s3d(self, num_classes=512, gating=True, space_to_depth=True, last_fc=False):
        s3d_init(self, num_classes=32, gating=gating, space_to_depth=space_to_depth, last_fc=last_fc)
        self.fc = nn.Linear(narrowed(self.fc.in_features), self.fc.out_features)

    s3dg.STConv3D.__init__, s3dg.SelfGating.__init__, s3dg.S3D.__init__ = tiny_conv, tiny_gating, tiny_s3d


def s3d_features(frames, torch, F, feature_s3dg, preprocessing, tiny_ckpt):
    """VideoFeatureExtractor's s3dg pipeline on one video of [T, 3, H, W] pixels in 0..255."""
    from model import init_weight

    net = feature_s3dg.S3D(last_fc=False)
    net = init_weight(net, torch.load(tiny_ckpt))
    net.eval()
    video = preprocessing(frames)  # [n_chunk, 3, 16, H, W]
    with torch.no_grad():
        features = F.normalize(net(video), dim=1)
    return features.numpy().astype("float16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of microsoft/UniVL")
    parser.add_argument("--features", required=True, help="checkout of ArrowLuo/VideoFeatureExtractor")
    parser.add_argument("--s3d", required=True, help="checkout of antoine77340/S3D_HowTo100M (for the narrowing)")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    opts = parser.parse_args()
    install_stubs(opts.official, opts.features)
    out = pathlib.Path(opts.out)
    official_dir = pathlib.Path(__file__).resolve().parent.parent / "milnce_s3d"  # the tiny S3D and our wrappers

    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from safetensors.torch import save_file

    sys.path.insert(0, str(official_dir))
    import make_golden as milnce_golden  # our narrowing wrappers, reused on the extractor's copy of s3dg
    from videocnn.models import s3dg as feature_s3dg
    from preprocessing import Preprocessing
    from extract import FRAMERATE_DICT  # noqa: E402  (module level code runs only under __main__)

    from dataloaders.dataloader_youcook_retrieval import Youcook_DataLoader
    from modules.modeling import UniVL
    from modules.tokenization import BertTokenizer
    from modules.until_module import LayerNorm

    narrow_feature_s3d(feature_s3dg, nn, milnce_golden.narrowed)

    vocab_path = out / "vocab.txt"
    vocab_path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # main_task_retrieval.py: BertTokenizer.from_pretrained("bert-base-uncased", do_lower_case=True), which sets
    # this never_split; the vocabulary file is ours
    tokenizer = BertTokenizer(str(vocab_path), do_lower_case=True,
                              never_split=("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"))

    with tempfile.TemporaryDirectory() as tmp:
        names = write_configs(pathlib.Path(tmp), len(VOCAB))
        torch.manual_seed(0)
        pretrain = UniVL.from_pretrained(names["bert"], names["visual"], names["cross"], names["decoder"],
                                         task_config=task_config(do_pretrain=True, stage_two=True))
        randomise(pretrain, torch, nn, LayerNorm, seed=0)
        checkpoint = out / "univl.pretrained.bin"
        torch.save(pretrain.state_dict(), checkpoint)

        def evaluation_model(**flags):
            state = torch.load(checkpoint, map_location="cpu")
            model = UniVL.from_pretrained(names["bert"], names["visual"], names["cross"], names["decoder"],
                                          state_dict=state, task_config=task_config(**flags))
            return model.eval()

        align = evaluation_model()
        cross = evaluation_model(train_sim_after_cross=True)
        saved = torch.load(checkpoint, map_location="cpu")
        for model in (align, cross):  # init_preweight is not strict: check that nothing kept its random init
            for key, value in model.state_dict().items():
                assert torch.equal(value, saved[key]), key

    # --- inputs through the official loaders -----------------------------------------------------
    loader = object.__new__(Youcook_DataLoader)
    loader.tokenizer, loader.max_words, loader.max_frames, loader.feature_framerate = \
        tokenizer, MAX_WORDS, MAX_FRAMES, 1
    texts = []
    for caption in CAPTIONS:
        loader.data_dict = {"v": {"text": [caption], "start": [0.0], "end": [1.0]}}
        ids, mask, segment = loader._get_text("v", 0)[:3]
        texts.append((ids, mask, segment))
    input_ids = torch.from_numpy(np.concatenate([t[0] for t in texts]))
    input_mask = torch.from_numpy(np.concatenate([t[1] for t in texts]))
    segment_ids = torch.from_numpy(np.concatenate([t[2] for t in texts]))

    gen = torch.Generator().manual_seed(1)
    # 3 s; 2.5 s (the last chunk padded with black frames); 1 s; 50 s at 16 px (cut to the first 48 s)
    shapes = ((48, 32), (40, 32), (16, 32), (16 * 50, 16))
    pixels = [torch.randint(0, 256, (n, 3, side, side), generator=gen).float() for n, side in shapes]
    preprocessing = Preprocessing("s3dg", FRAMERATE_DICT)
    tiny_ckpt = official_dir / "s3d_howto100m.pth"
    features = [s3d_features(p, torch, F, feature_s3dg, preprocessing, tiny_ckpt) for p in pixels]

    class Csv:
        def __getitem__(self, key):
            return types.SimpleNamespace(values=["v"])

    loader.csv = Csv()
    videos, video_masks = [], []
    for feature in features:
        loader.feature_dict = {"v": feature}
        video, video_mask = loader._get_video(0, np.array([0.0]), np.array([float(len(feature) - 1)]))[:2]
        videos.append(video)
        video_masks.append(video_mask)
    video = torch.from_numpy(np.concatenate(videos))  # float64, as the loader makes it
    video_mask = torch.from_numpy(np.concatenate(video_masks))

    # --- the official evaluation ------------------------------------------------------------------
    with torch.no_grad():
        sequence, visual = align.get_sequence_visual_output(input_ids, segment_ids, input_mask, video, video_mask)
        text_out, video_out = align._mean_pooling_for_similarity(sequence, visual, input_mask, video_mask)
        cosine = align.get_similarity_logits(sequence, visual, input_mask, video_mask)  # [texts, videos]
        sequence_c, visual_c = cross.get_sequence_visual_output(input_ids, segment_ids, input_mask, video, video_mask)
        pair_logits = cross.get_similarity_logits(sequence_c, visual_c, input_mask, video_mask)  # [texts, videos]

    commit = {name: subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], check=True, capture_output=True,
                                   text=True).stdout.strip()
              for name, path in (("univl", opts.official), ("features", opts.features), ("s3d", opts.s3d))}
    tensors = {
        "frames_3s": pixels[0].to(torch.uint8).contiguous(),  # [T, 3, H, W] pixels at 16 fps (ours: / 255)
        "frames_2_5s": pixels[1].to(torch.uint8).contiguous(),
        "frames_1s": pixels[2].to(torch.uint8).contiguous(),
        "frames_50s": pixels[3].to(torch.uint8).contiguous(),
        "s3d_features_3s": torch.from_numpy(features[0].astype(np.float32)),
        "s3d_features_2_5s": torch.from_numpy(features[1].astype(np.float32)),
        "s3d_features_1s": torch.from_numpy(features[2].astype(np.float32)),
        "s3d_features_50s": torch.from_numpy(features[3].astype(np.float32)),
        "text_token_ids": input_ids.long().contiguous(),
        "text_mask": input_mask.long().contiguous(),
        "text_embeddings": text_out.float().contiguous(),
        "video_embeddings": video_out.float().contiguous(),
        "similarity": cosine.t().float().contiguous(),
        "pair_scores": pair_logits.t().float().contiguous(),
    }
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/microsoft/UniVL",
        "commit": commit["univl"],
        "feature_extractor": f"https://github.com/ArrowLuo/VideoFeatureExtractor@{commit['features']}",
        "s3d": f"https://github.com/antoine77340/S3D_HowTo100M@{commit['s3d']}",
        "checkpoint": checkpoint.name,
        "vocab": vocab_path.name,
        "s3d_checkpoint": "../milnce_s3d/s3d_howto100m.pth",
        "score": "similarity: cosine of the mean-pooled text (CLS excluded) and video outputs (use_mil off); "
                 "pair_scores: the cross encoder's similarity_dense logit (--train_sim_after_cross); "
                 "both [videos, texts]",
        "sizes": json.dumps({"hidden": HIDDEN, "heads": HEADS, "intermediate": INTERMEDIATE, "text_layers": TEXT_LAYERS,
                             "visual_layers": VISUAL_LAYERS, "cross_layers": CROSS_LAYERS,
                             "decoder_layers": DECODER_LAYERS, "video_dim": VIDEO_DIM, "vocab": len(VOCAB),
                             "max_words": MAX_WORDS, "max_frames": MAX_FRAMES, "fps": FPS}),
    }
    save_file(tensors, str(out / "golden.safetensors"), metadata=metadata)
    for name, value in tensors.items():
        print(name, list(value.shape), f"std {float(value.float().std()):.4f}")
    print(f"wrote {checkpoint.name} ({checkpoint.stat().st_size} bytes), {vocab_path.name}, golden.safetensors")


if __name__ == "__main__":
    main()
