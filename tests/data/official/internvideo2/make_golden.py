"""Build the InternVideo2 stage-2 golden files by running the official code on tiny random checkpoints.

Run with a reference environment, never with the product one:

    python3 -m venv /work/refenv_iv2
    /work/refenv_iv2/bin/pip install torch==2.13.0 transformers==4.28.1 numpy einops safetensors
    /work/refenv_iv2/bin/python tests/data/official/internvideo2/make_golden.py \\
        --official /work/ref/InternVideo/InternVideo2/multi_modality

(A virtualenv of its own because the official ``models/backbones/bert/xbert.py`` imports helpers
that transformers 5 no longer has: ``apply_chunking_to_forward``, ``find_pruneable_heads_and_indices``
and ``prune_linear_layer`` from ``transformers.modeling_utils``.)

What it does, and why:

- The official inference class is ``InternVideo2_Stage2`` of ``demo/utils.py`` (the one the README's
  demo notebook uses): ``setup_internvideo2(config)`` builds it, reads ``pretrained_path``
  (``checkpoint['model']``, else ``checkpoint['module']`` (DeepSpeed), else the file itself),
  interpolates the position tables with ``interpolate_pos_embed_internvideo2_new`` and loads with
  ``strict=False``; ``get_vid_feat`` / ``get_txt_feat`` give the unit-length embeddings and
  ``predict_label`` scores ``100 * video @ text.T``. We call exactly these.
- The vision factory ``pretrain_internvideo2_1b_patch14_224`` hard-codes the 1B widths (1408 wide,
  40 blocks, 16 heads, 224 px, patch 14). We keep that factory and its fixed switches
  (qk-normalisation, LayerScale, no qkv bias, MLP ratio 48/11) and only narrow the sizes it gives
  ``PretrainInternVideo2``, by replacing that module-level name with a function that overrides the
  size arguments and builds the real class.
- The text encoder is the official ``xbert`` ``BertForMaskedLM`` (``is_pretrain=True``, as in the
  demo), built by the official ``build_bert`` from a tiny BERT config file and a tiny random
  ``save_pretrained`` folder standing in for ``bert-large-uncased``. ``mode="text"`` runs only the
  layers below ``fusion_layer``; the layers from there on carry cross-attention and are not used
  by the dual encoder.
- Stubbed because they are imported but never used on this path: ``timm.models.layers``
  (``DropPath`` is the identity in eval; ``to_2tuple`` and ``trunc_normal_`` are given their
  plain meaning), ``flash_attn`` (only with ``use_flash_attn``, off in the demo config for fp32),
  ``cv2`` (the demo's frame reader) and ``models.criterions`` (``get_sim``, a training helper,
  whose relative imports reach above the ``models`` package). The package ``__init__`` files of
  ``models`` and ``models.backbones.internvideo2`` import the CLIP, LLaMA, audio and MobileCLIP
  variants; those packages are registered by path so the files we need are imported without them.
- Every parameter is overwritten with seeded random values (LayerScale gammas ~0.5 rather than
  1e-5, norms around 1), so a porting mistake moves the outputs. The checkpoint is written with
  ``torch.save`` in the layouts ``setup_internvideo2`` reads and rebuilt from the file by it.
- Two models: MAIN is the published layout (``sep_image_video_pos_embed=True``: separate video and
  image position tables; 4 frames, saved as DeepSpeed's ``{'module': ...}``); SECOND changes every
  size (patch, grid, frames, widths, heads, layers, the fusion layer, the joint width), uses one
  shared position table (images then use its mean over frames) and is saved as ``{'model': ...}``.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import types

SEED = 0
MAX_TXT_L = 40

MAIN = dict(
    checkpoint="internvideo2_stage2_tiny_f4.pt", wrapper="module",
    vision=dict(img_size=28, patch_size=7, embed_dim=48, depth=3, num_heads=4, attn_pool_num_heads=6,
                clip_embed_dim=32, clip_teacher_embed_dim=40, clip_teacher_final_dim=32, clip_return_layer=2),
    num_frames=4, sep_image_video_pos_embed=True, other_frames=8,
    bert=dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=4, intermediate_size=64,
              max_position_embeddings=64, fusion_layer=3),
    embed_dim=24,
)
SECOND = dict(
    checkpoint="internvideo2_stage2_tiny_second.pt", wrapper="model",
    vision=dict(img_size=42, patch_size=14, embed_dim=32, depth=2, num_heads=2, attn_pool_num_heads=4,
                clip_embed_dim=20, clip_teacher_embed_dim=24, clip_teacher_final_dim=0, clip_return_layer=1),
    num_frames=2, sep_image_video_pos_embed=False, other_frames=3,
    bert=dict(hidden_size=24, num_attention_heads=2, num_hidden_layers=3, intermediate_size=40,
              max_position_embeddings=48, fusion_layer=2),
    embed_dim=16,
)

CAPTIONS = [
    "a person cuts an onion",
    "Someone is slicing vegetables quickly.",
    "",
    "the chef's knife, don't drop it!",
    "xylophone zebra",  # unknown words: [UNK]
    "café crème brûlée",  # accents are stripped by the uncased basic tokenizer
    "[MASK] the onion [SEP] cut",  # special tokens are matched whole
    "cuts " * 50,  # more than 40 tokens: cut to 38 pieces + [CLS] + [SEP]
    "Cutting\tslices\nof ONIONS",
]

VOCAB = [
    "[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", "'", ",", ".", "-", "?",
    "a", "an", "the", "person", "someone", "is", "cut", "##s", "cuts", "onion", "##s", "slice", "##ing",
    "##d", "vegetables", "quick", "##ly", "chef", "knife", "don", "t", "drop", "it", "cafe", "creme",
    "br", "##ule", "##e", "of", "slices", "cutting", "x", "##y", "zebra", "in", "on", "and", "to",
]


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def install_stubs(official: pathlib.Path) -> None:
    """Modules the official files import but this path never uses, and the package folders by path."""
    import torch
    from torch import nn

    class DropPath(nn.Module):
        def __init__(self, drop_prob=0.0):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            assert not self.training, "the golden run is in eval mode"
            return x

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
        return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)

    _module("timm")
    _module("timm.models")
    _module("timm.models.layers", DropPath=DropPath, to_2tuple=to_2tuple, trunc_normal_=trunc_normal_)
    _module("flash_attn")
    _module("flash_attn.flash_attn_interface", flash_attn_varlen_qkvpacked_func=None)
    _module("flash_attn.bert_padding", unpad_input=None, pad_input=None)
    _module("cv2")
    for name, folder in (("models", "models"), ("models.backbones", "models/backbones"),
                         ("models.backbones.internvideo2", "models/backbones/internvideo2")):
        package = _module(name)
        package.__path__ = [str(official / folder)]
    _module("models.criterions", get_sim=None)


class Config(dict):
    """The attribute-and-get dictionary the official code expects of its config."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def of(cls, value):
        if isinstance(value, dict):
            return cls({k: cls.of(v) for k, v in value.items()})
        return value


def make_config(sizes: dict, workdir: pathlib.Path, pretrained_path: str, frames: int | None = None) -> Config:
    """The demo's ``internvideo2_stage2_config.py`` with the tiny sizes (everything else as there).

    ``frames``: the ``num_frames`` to build for; the checkpoint's count stays ``origin_num_frames``,
    so ``setup_internvideo2`` interpolates the position tables over time when they differ.
    """
    vision = sizes["vision"]
    frames = frames or sizes["num_frames"]
    bert_config = {
        "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "model_type": "bert", "pad_token_id": 0, "position_embedding_type": "absolute", "type_vocab_size": 2,
        "use_cache": True, "vocab_size": len(VOCAB), "encoder_width": 768, "cross_module": "ca",
        **sizes["bert"],
    }
    config_path = workdir / "config_bert_tiny.json"
    config_path.write_text(json.dumps(bert_config))
    return Config.of(dict(
        num_frames=frames, num_frames_test=frames, max_txt_l=MAX_TXT_L,
        origin_num_frames=sizes["num_frames"], size_t=vision["img_size"],
        use_half_precision=False, use_bf16=False, compile_model=False, device="cpu",
        gradient_checkpointing=True, pretrained_path=pretrained_path,
        model=dict(
            model_cls="InternVideo2_Stage2",
            vision_encoder=dict(
                name="pretrain_internvideo2_1b_patch14_224", img_size=vision["img_size"],
                num_frames=frames, tubelet_size=1, patch_size=vision["patch_size"],
                d_model=vision["embed_dim"], clip_embed_dim=vision["clip_embed_dim"],
                clip_teacher_embed_dim=vision["clip_teacher_embed_dim"],
                clip_teacher_final_dim=vision["clip_teacher_final_dim"], clip_norm_type="l2",
                clip_return_layer=vision["clip_return_layer"], clip_student_return_interval=1,
                pretrained=None, use_checkpoint=False, checkpoint_num=0,
                use_flash_attn=False, use_fused_rmsnorm=False, use_fused_mlp=False,
                clip_teacher=None, clip_input_resolution=vision["img_size"], clip_teacher_return_interval=1,
                video_mask_type="random", video_mask_ratio=0.8, image_mask_type="random", image_mask_ratio=0.5,
                sep_image_video_pos_embed=sizes["sep_image_video_pos_embed"], keep_temporal=False, only_mask=True),
            text_encoder=dict(name="bert_large", pretrained=str(workdir / "bert"), config=str(config_path),
                              d_model=sizes["bert"]["hidden_size"], fusion_layer=sizes["bert"]["fusion_layer"]),
            multimodal=dict(enable=True), embed_dim=sizes["embed_dim"], temp=0.07, find_unused_parameters=False),
    ))


def install_tiny_vision(backbone, vision: dict) -> None:
    """The 1B factory builds ``PretrainInternVideo2`` with fixed sizes; give it the tiny ones instead."""
    real = getattr(backbone, "_real_class", backbone.PretrainInternVideo2)
    backbone._real_class = real

    def tiny(**kwargs):
        for key in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "attn_pool_num_heads"):
            kwargs[key] = vision[key]
        return real(**kwargs)

    backbone.PretrainInternVideo2 = tiny


def randomise(model, torch, seed: int) -> None:
    """Seeded values for every parameter (buffers such as BERT's position ids stay)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(param.shape, generator=gen)
            if name == "temp":
                continue
            if leaf == "gamma":  # LayerScale
                param.copy_(0.5 + 0.2 * noise)
            elif "pos_embed" in leaf or leaf == "cls_token" or "embeddings" in name and param.dim() == 2:
                param.copy_(0.5 * noise)
            elif param.dim() >= 2:
                fan_in = param[0].numel()
                param.copy_(noise * (1.5 / fan_in) ** 0.5)
            elif leaf == "weight":  # LayerNorm / RMSNorm
                param.copy_(1.0 + 0.2 * noise)
            else:  # biases, q_bias / k_bias / v_bias
                param.copy_(0.1 * noise)


def build_official(demo, backbone, xbert, torch, sizes: dict, out: pathlib.Path, workdir: pathlib.Path, seed: int):
    """Write one tiny checkpoint in the official format and rebuild the model from it with ``setup_internvideo2``."""
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = out / sizes["checkpoint"]
    config = make_config(sizes, workdir, pretrained_path="")
    install_tiny_vision(backbone, sizes["vision"])
    torch.manual_seed(seed)
    bert_config = xbert.BertConfig.from_json_file(config.model.text_encoder.config)
    bert_config.encoder_width = config.model.vision_encoder.d_model  # as build_bert sets it
    xbert.BertForMaskedLM(bert_config).save_pretrained(workdir / "bert", safe_serialization=False)  # for bert-large-uncased
    (workdir / "bert" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = demo.BertTokenizer.from_pretrained(str(workdir / "bert"), local_files_only=True)
    model = demo.InternVideo2_Stage2(config=config, tokenizer=tokenizer, is_pretrain=True)
    randomise(model, torch, seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({sizes["wrapper"]: state}, checkpoint)

    official_config = make_config(sizes, workdir, pretrained_path=str(checkpoint))
    official, official_tokenizer = demo.setup_internvideo2(official_config)
    loaded = official.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items()), "the checkpoint did not load back"
    return official, official_tokenizer, official_config, checkpoint


def rebuild_for_frames(demo, backbone, sizes: dict, workdir: pathlib.Path, checkpoint: pathlib.Path, frames: int):
    """The same checkpoint loaded for another clip length (``num_frames`` != ``origin_num_frames``)."""
    install_tiny_vision(backbone, sizes["vision"])
    official, _ = demo.setup_internvideo2(make_config(sizes, workdir, str(checkpoint), frames=frames))
    return official


def run(official, tokenizer, config, torch, frames, captions):
    video = official.get_vid_feat(frames)
    texts = torch.cat([official.get_txt_feat(t) for t in captions], 0)
    ids = tokenizer(captions, padding="max_length", truncation=True, max_length=config.max_txt_l,
                    return_tensors="pt")
    # ``predict_label``'s logits before the softmax: 100 * video @ text.T
    similarity = 100.0 * video @ texts.T
    return video.contiguous(), texts.contiguous(), similarity.contiguous(), ids.input_ids, ids.attention_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="InternVideo2/multi_modality of OpenGVLab/InternVideo")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    opts = parser.parse_args()
    official_dir = pathlib.Path(opts.official).resolve()
    out = pathlib.Path(opts.out)
    sys.path.insert(0, str(official_dir))
    os.chdir(official_dir)

    import torch
    import transformers  # before the stubs: its optional-package probes must not see them
    from safetensors.torch import save_file

    install_stubs(official_dir)
    from models.backbones.internvideo2 import internvideo2 as backbone
    # what the package ``__init__`` would have exported, for ``demo/utils.py``'s import
    sys.modules["models.backbones.internvideo2"].pretrain_internvideo2_1b_patch14_224 = (
        backbone.pretrain_internvideo2_1b_patch14_224)
    spec = importlib.util.spec_from_file_location("iv2_demo_utils", official_dir / "demo" / "utils.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    from models.backbones.bert import xbert

    tensors: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, sizes, seed in (("", MAIN, SEED), ("_second", SECOND, SEED + 1)):
            official, tokenizer, config, checkpoint = build_official(demo, backbone, xbert, torch, sizes, out,
                                                                     pathlib.Path(tmp) / (tag or "main"), seed)
            gen = torch.Generator().manual_seed(10 + seed)
            size = sizes["vision"]["img_size"]
            frames = torch.randn(3, sizes["num_frames"], 3, size, size, generator=gen)  # normalised frames
            image = torch.randn(2, 1, 3, size, size, generator=gen)  # T == 1: the image path
            video, text, sim, ids, mask = run(official, tokenizer, config, torch, frames, CAPTIONS)
            image_emb = official.get_vid_feat(image)
            tensors.update({
                f"frames{tag}": frames, f"video_embeddings{tag}": video, f"text_embeddings{tag}": text,
                f"similarity{tag}": sim, f"text_token_ids{tag}": ids, f"text_attention_mask{tag}": mask,
                f"images{tag}": image, f"image_embeddings{tag}": image_emb.contiguous(),
                f"image_similarity{tag}": (100.0 * image_emb @ text.T).contiguous(),
            })
            other = sizes["other_frames"]
            resized = rebuild_for_frames(demo, backbone, sizes, pathlib.Path(tmp) / (tag or "main"), checkpoint, other)
            long_frames = torch.randn(2, other, 3, size, size, generator=gen)
            long_video = resized.get_vid_feat(long_frames)
            tensors.update({
                f"frames_{other}f{tag}": long_frames, f"video_embeddings_{other}f{tag}": long_video.contiguous(),
                f"image_embeddings_{other}f{tag}": resized.get_vid_feat(image).contiguous(),
            })
            for name in ("video_embeddings", "text_embeddings", "image_embeddings", f"video_embeddings_{other}f"):
                value = tensors[f"{name}{tag}"]
                print(f"{name}{tag}: shape {list(value.shape)}, std {float(value.std()):.4f}, distinct rows "
                      f"{len({tuple(r.tolist()) for r in value})}")
            print(f"wrote {checkpoint.name} ({checkpoint.stat().st_size} bytes)")
    (out / "vocab.txt").write_text("\n".join(VOCAB) + "\n")

    commit = subprocess.run(["git", "-C", str(official_dir), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or pathlib.Path("/work/ref/InternVideo/COMMIT").read_text().strip()
    metadata = {
        "captions": json.dumps(CAPTIONS),
        "repository": "https://github.com/OpenGVLab/InternVideo (InternVideo2/multi_modality)",
        "commit": commit,
        "score": "demo/utils.py predict_label before its softmax: 100 * get_vid_feat @ get_txt_feat.T",
        "normalized": "true (get_vid_feat / get_txt_feat divide by the norm)",
        "frames_layout": "B,T,C,H,W, ImageNet-normalised (demo frames2tensor)",
        "max_txt_l": str(MAX_TXT_L),
        "sizes": json.dumps({"main": MAIN, "second": SECOND}),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    save_file(tensors, str(out / "golden.safetensors"), metadata=metadata)
    print(f"wrote golden.safetensors ({(out / 'golden.safetensors').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
