"""Build the Singularity golden files by running the official code on a tiny random checkpoint.

Run with the reference environment, never with the product one (transformers 4.15.0 and
omegaconf 2.1.1, the versions of the official ``environment.yaml``, installed with ``--target`` in
a folder of their own so the shared reference virtualenv keeps its packages):

    /work/refenv/bin/pip install --target /work/ref/singularity-site --no-deps transformers==4.15.0 \\
        huggingface-hub==0.4.0 omegaconf==2.1.1 antlr4-python3-runtime==4.8 sacremoses packaging pyyaml \\
        regex requests tqdm filelock urllib3 idna certifi charset-normalizer
    PYTHONPATH=/work/ref/singularity-site /work/refenv/bin/python \\
        tests/data/official/singularity/make_golden.py --official /work/ref/singularity

What it does, and why:

- The official model builders read their sizes from Hugging Face folders and a BERT config
  file (``text_encoder``, ``vit_zoo.beit``, ``bert_config``): this script writes tiny ones (a BEiT
  and a BERT saved with ``save_pretrained``, the BERT config with ``fusion_layer``) to a temporary
  folder and points the official YAML configs at them. ``SingularityRetrievalBase`` hard-codes
  ``vision_width = text_width = 768``; a wrapper around its ``build_vision_encoder`` (called
  right after those two lines) sets them to the tiny width before anything is built from them.
- The pre-training checkpoint is the one ``tasks/pretrain.py`` writes: the pre-training model
  (``models/model_pretrain.Singularity``, whose text encoder is ``BertForMaskedLM``, so its keys
  are ``text_encoder.bert.*`` plus the MLM head ``text_encoder.cls.*``) built by the official
  ``setup_model`` with the Singularity-temporal settings of the README (4 frames, temporal
  embeddings, a 2-layer temporal encoder), every parameter overwritten with seeded random values,
  saved as ``{'model', 'optimizer', 'scheduler', 'scaler', 'config' (the OmegaConf config),
  'epoch', 'global_step'}``.
- The golden outputs come from the retrieval model (``models/model_retrieval.Singularity``) that
  ``setup_model`` builds from that file for fine-tuning (the branch that renames
  ``text_encoder.bert.*``; see the README for the evaluation branch, which does not), run through
  the official ``tasks/retrieval_utils.evaluation`` (ITC scores and ITM re-ranking with
  ``k_test`` above the caption count, so every pair is re-ranked) with the official tokenizer
  (``models/tokenization_bert.BertTokenizer.from_pretrained``). The loader is not strict, so
  the script asserts that every tensor of the evaluation model equals the file's.
- The fine-tuned checkpoint is what ``tasks/retrieval.py`` writes for the same weights:
  ``{'model': retrieval_model.state_dict(), ..., 'config'}`` with ``text_encoder.*`` keys.
- Stubbed because they are imported but never used here: ``scipy`` (``interpolate.interp2d``, only
  called when a checkpoint's patch grid differs from the model's), ``wandb`` and ``termcolor``
  (logging, imported by ``utils/config_utils.py``), and the names ``tokenizers`` exports (the fast
  tokenizers' package, whose 0.10 release transformers 4.15 requires has no wheel for this Python;
  ``from_pretrained`` imports its names, the official slow ``BertTokenizer`` never uses them).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import types

WIDTH, HEADS, INTERMEDIATE = 32, 2, 37
VISION_LAYERS, TEXT_LAYERS, FUSION_LAYER, TEMPORAL_LAYERS = 2, 4, 2, 2
PATCH, IMAGE = 8, 32
EMBED_DIM = 16
FRAMES = 4
TEXT_POSITIONS = 40
MAX_TXT_L = 32

VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
         "!", "'", ",", ".", "-", "?", "a", "an", "the", "person", "someone", "cut", "##s", "cuts", "onion",
         "slice", "##ing", "##d", "vegetables", "quick", "##ly", "cafe", "creme", "brulee", "中", "文", "text",
         "inside", "open", "jar", "slow", "pour", "water", "into", "pan", "and", "stir", "egg", "##gs", "with",
         "salt", "pepper", "then", "mix", "s", "t", "don", "knife", "un", "##known", "##word", "x", "##y", "##z",
         "tab", "new", "##line", "to", "of", "[", "]", "cls", "sep", "mask", "pad"]

CAPTIONS = [
    "A person cuts an onion.",
    "Someone's SLICING vegetables, quickly!!",
    "Café crème brûlée",  # accents stripped after lower-casing
    "中文 text",  # CJK characters split one by one
    "[CLS] inside [SEP] the jar [PAD] [CLS], [MASK]",  # special tokens split out before the basic tokenizer
    "",
    "unknownword xyz qqq",  # "qqq" has no word piece: [UNK]
    "tab\tand new\nlines \x00 then",  # whitespace and control characters
    # 60 words: cut to max_txt_l - 1 word pieces ([CLS] only, no [SEP])
    " ".join(["pour water into the pan and stir the eggs with salt and pepper then mix"] * 4),
    "don't cut-the knife",
    "x[SEP]y [cls] [Mask] jar[MASK]",  # inside words; lower-case names are not special
]

# (name, frames): three 4-frame clips, one single frame (no temporal encoder), one 6-frame clip
# (temporal embeddings linearly interpolated from the file's 4)
CLIPS = (("f4", FRAMES, 3), ("f1", 1, 1), ("f6", 6, 1))


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    sys.modules[name] = module
    return module


class _Anything(types.ModuleType):
    """A module whose every attribute is a placeholder class (names imported, never used)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


def stub_tokenizers() -> None:
    """``tokenizers`` (the fast tokenizers' Rust package): transformers 4.15 needs a version without a
    wheel for this Python; ``from_pretrained`` imports its module names, the slow tokenizer never uses them."""
    import transformers.file_utils

    transformers.file_utils.is_tokenizers_available = lambda: False  # it is not installed: the stub is names only
    for name in ("tokenizers", "tokenizers.models", "tokenizers.decoders", "tokenizers.normalizers",
                 "tokenizers.pre_tokenizers", "tokenizers.processors", "tokenizers.trainers"):
        sys.modules[name] = _Anything(name)


def randomise(model, torch, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)

    def rn(t, std):
        return torch.randn(t.shape, generator=gen) * std

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name == "temp":
                continue  # the ITC temperature (0.07): evaluation does not use it
            if "LayerNorm.weight" in name or "layernorm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + rn(parameter, 0.2))
            elif name.endswith("lambda_1") or name.endswith("lambda_2"):
                parameter.copy_(0.5 + rn(parameter, 0.2))  # BEiT layer scale
            elif name.endswith("bias"):
                parameter.copy_(rn(parameter, 0.1))
            elif parameter.ndim >= 2 and "embeddings" not in name and "bias_table" not in name:
                fan_in = parameter[0].numel()
                parameter.copy_(rn(parameter, fan_in ** -0.5))
            else:  # embeddings, cls token, relative position bias tables, temporal embeddings
                parameter.copy_(rn(parameter, 0.5))


def write_pretrained_folders(folder: pathlib.Path, torch) -> dict[str, str]:
    """Tiny stand-ins for bert-base-uncased, microsoft/beit-base-patch16-224-pt22k-ft22k and config_bert.json."""
    from transformers import BeitConfig, BeitModel
    from models.xbert import BertConfig, BertModel

    bert_config = dict(architectures=["BertForMaskedLM"], attention_probs_dropout_prob=0.1, hidden_act="gelu",
                       hidden_dropout_prob=0.1, hidden_size=WIDTH, initializer_range=0.02,
                       intermediate_size=INTERMEDIATE, layer_norm_eps=1e-12, max_position_embeddings=TEXT_POSITIONS,
                       model_type="bert", num_attention_heads=HEADS, num_hidden_layers=TEXT_LAYERS, pad_token_id=0,
                       type_vocab_size=2, vocab_size=len(VOCAB), fusion_layer=FUSION_LAYER, encoder_width=WIDTH)
    config_file = folder / "config_bert.json"
    config_file.write_text(json.dumps(bert_config))
    bert_dir = folder / "bert-tiny-uncased"
    torch.manual_seed(0)
    BertModel(BertConfig.from_json_file(str(config_file)), add_pooling_layer=False).save_pretrained(str(bert_dir))
    (bert_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    beit_dir = folder / "beit-tiny-patch8-32"
    beit = BeitConfig(attention_probs_dropout_prob=0.0, drop_path_rate=0.1, hidden_act="gelu", hidden_dropout_prob=0.0,
                      hidden_size=WIDTH, image_size=IMAGE, initializer_range=0.02, intermediate_size=INTERMEDIATE,
                      layer_norm_eps=1e-12, layer_scale_init_value=0.1, num_attention_heads=HEADS, num_channels=3,
                      num_hidden_layers=VISION_LAYERS, patch_size=PATCH, use_absolute_position_embeddings=False,
                      use_mask_token=False, use_mean_pooling=True, use_relative_position_bias=True,
                      use_shared_relative_position_bias=False, vocab_size=8192)
    BeitModel(beit, add_pooling_layer=True).save_pretrained(str(beit_dir))
    return {"text_encoder": str(bert_dir), "beit": str(beit_dir), "bert_config": str(config_file)}


def temporal_config(base, folders, **overrides):
    """The official YAML config with the README's Singularity-temporal flags and the tiny folders."""
    from omegaconf import OmegaConf
    from utils.config_utils import convert_types

    cli = [f"text_encoder={folders['text_encoder']}", f"bert_config={folders['bert_config']}",
           f"vit_zoo.beit={folders['beit']}", f"image_res={IMAGE}", f"embed_dim={EMBED_DIM}",
           f"video_input.num_frames={FRAMES}", "add_temporal_embed=True", "temporal_vision_encoder.enable=True",
           f"temporal_vision_encoder.num_layers={TEMPORAL_LAYERS}", "device=cpu", "distributed=False", "fp16=False",
           f"max_txt_l={MAX_TXT_L}", "k_test=1000", "eval_offload=False"]
    cli += [f"{key}={value}" for key, value in overrides.items()]
    config = convert_types(OmegaConf.merge(OmegaConf.load(base), OmegaConf.from_dotlist(cli)))
    config.scheduler.num_training_steps = 10  # set by main() from the loaders
    config.scheduler.num_warmup_steps = 0
    return config


def as_published(config, originals):
    """The config as the training script would store it: the tiny folders named as in the YAML file."""
    stored = copy.deepcopy(config)
    for key, value in originals.items():
        stored[key] = value
    stored.vit_zoo.beit = "microsoft/beit-base-patch16-224-pt22k-ft22k"
    return stored


class _Loader(list):
    """What ``evaluation`` reads from a data loader: (image, img_id) batches and a dataset."""

    def __init__(self, batches, texts):
        super().__init__(batches)
        self.dataset = types.SimpleNamespace(text=texts, image=list(range(sum(len(b[0]) for b in batches))),
                                             media_type="video", txt2img=None, img2txt=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of jayleicn/singularity")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    opts = parser.parse_args()
    _stub("scipy", interpolate=None)
    _stub("wandb")
    os.environ.setdefault("SL_DATA_DIR", "/data/singularity")  # the README's variables; no data is read
    os.environ.setdefault("SL_EXP_DIR", "/data/singularity/exp")
    # torch.load in the official code predates weights_only=True (torch 1.10): it reads our own file here
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    _stub("termcolor", colored=lambda text, *a, **k: text)
    sys.path.insert(0, opts.official)
    os.chdir(opts.official)  # the configs' relative paths
    out = pathlib.Path(opts.out)

    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    stub_tokenizers()

    from models import model_retrieval_base
    from models.model_pretrain import Singularity as SingularityPretrain
    from models.model_retrieval import Singularity
    from tasks.retrieval_utils import evaluation
    from tasks.shared_utils import setup_model

    build_vision = model_retrieval_base.SingularityRetrievalBase.build_vision_encoder

    def tiny_widths(self):  # vision_width = text_width = 768 are hard-coded just before this call
        self.vision_width = self.text_width = WIDTH
        return build_vision(self)

    model_retrieval_base.SingularityRetrievalBase.build_vision_encoder = tiny_widths
    originals = {"text_encoder": "bert-base-uncased", "bert_config": "configs/config_bert.json"}

    with tempfile.TemporaryDirectory() as tmp:
        folders = write_pretrained_folders(pathlib.Path(tmp), torch)
        # --- the pre-training checkpoint (tasks/pretrain.py) -------------------------------------
        pt_config = temporal_config("configs/pretrain.yaml", folders)
        torch.manual_seed(0)
        pretrain, _, optimizer, scheduler, scaler, _, _, _ = setup_model(
            pt_config, model_cls=SingularityPretrain, has_decoder=False, pretrain=True)
        randomise(pretrain, torch, seed=0)
        pt_path = out / "singularity_temporal_17m.pth"
        torch.save({"model": pretrain.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "config": as_published(pt_config, originals), "epoch": 9, "global_step": 10},
                   pt_path)

        # --- the evaluation model: setup_model's downstream init from that file -------------------
        ret_config = temporal_config("configs/ret_msrvtt.yaml", folders, pretrained_path=str(pt_path),
                                     evaluate=False)
        torch.manual_seed(1)
        model, _, optimizer, scheduler, scaler, tokenizer, _, _ = setup_model(
            ret_config, model_cls=Singularity, has_decoder=False, pretrain=False)
        model.eval()
        saved = torch.load(pt_path, map_location="cpu")["model"]
        for key, value in model.state_dict().items():  # the loader is not strict: nothing kept its init
            source = key.replace("text_encoder.", "text_encoder.bert.", 1) if key.startswith("text_encoder.") else key
            assert torch.equal(value, saved[source]), key
        ft_path = out / "ft_msrvtt_singularity_temporal_17m.pth"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "config": as_published(ret_config, {**originals, "pretrained_path": pt_path.name}), "epoch": 4,
                    "global_step": 50}, ft_path)
        vocab_path = out / "vocab.txt"
        vocab_path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")

        # --- inputs and the official evaluation -----------------------------------------------
        gen = torch.Generator().manual_seed(2)
        clips = {name: torch.rand(count, frames, 3, IMAGE, IMAGE, generator=gen) * 2 - 1
                 for name, frames, count in CLIPS}  # normalised frames, (x / 255 - 0.5) / 0.5
        tensors = {}
        with torch.no_grad():
            encoded = tokenizer(CAPTIONS, padding="max_length", truncation=True, max_length=MAX_TXT_L,
                                return_tensors="pt")
            tensors["text_token_ids"] = encoded.input_ids.long().contiguous()
            tensors["text_mask"] = encoded.attention_mask.long().contiguous()
            text_feats, _ = model.encode_text(encoded)
            tensors["text_embeddings"] = F.normalize(model.text_proj(text_feats[:, 0]), dim=-1).contiguous()
            videos, itc, itm = [], [], []
            for name, frames, count in CLIPS:
                tensors[f"frames_{name}"] = clips[name].contiguous()
                loader = _Loader([(clips[name], torch.arange(count))], CAPTIONS)
                i2t_x, _, i2t, _ = evaluation(model, loader, tokenizer, torch.device("cpu"), ret_config)
                _, pooled = model.encode_image(clips[name])
                video = F.normalize(model.vision_proj(pooled), dim=-1).mean(1)  # get_sim's frame mean
                assert torch.allclose(video @ tensors["text_embeddings"].T, torch.from_numpy(i2t), atol=1e-6)
                videos.append(video)
                itc.append(torch.from_numpy(i2t))
                itm.append(torch.from_numpy(i2t_x))
        tensors["video_embeddings"] = torch.cat(videos).contiguous()
        tensors["similarity"] = torch.cat(itc).float().contiguous()
        tensors["pair_scores"] = torch.cat(itm).float().contiguous()

    commit = subprocess.run(["git", "-C", opts.official, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "clips": json.dumps([[name, frames, count] for name, frames, count in CLIPS]),
        "repository": "https://github.com/jayleicn/singularity",
        "commit": commit,
        "checkpoint": pt_path.name,
        "finetuned_checkpoint": ft_path.name,
        "vocab": vocab_path.name,
        "score": "similarity: ITC, text . mean over frames of the unit frame vectors (get_sim, t=1); "
                 "pair_scores: ITM re-ranking, itm_head(fusion [CLS])[:, 1]; both [videos, texts]",
        "sizes": json.dumps({"width": WIDTH, "heads": HEADS, "intermediate": INTERMEDIATE,
                             "vision_layers": VISION_LAYERS, "text_layers": TEXT_LAYERS, "fusion_layer": FUSION_LAYER,
                             "temporal_layers": TEMPORAL_LAYERS, "patch": PATCH, "image": IMAGE,
                             "embed_dim": EMBED_DIM, "frames": FRAMES, "vocab": len(VOCAB),
                             "text_positions": TEXT_POSITIONS, "max_txt_l": MAX_TXT_L}),
    }
    save_file(tensors, str(out / "golden.safetensors"), metadata=metadata)
    for name, value in tensors.items():
        print(name, list(value.shape), f"std {float(value.float().std()):.4f}")
    for path in (pt_path, ft_path):
        print(f"wrote {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
