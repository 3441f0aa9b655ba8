"""``pe-core`` equals Meta's Perception Encoder code (github.com/facebookresearch/perception_models
at 3e352cca660658d4b5c90f42a7808b11469e4c66, ``core/vision_encoder/pe.py``).

``tests/data/official/pe_core`` holds a tiny PE-Core CLIP (vision width 32 x 2 layers, 4 heads, patch
8 on 32 px, class token, attention pooling with 8 heads; text width 12 x 2 layers, 3 heads, context
32, the real 49,408-token vocabulary; 16-d embeddings) saved by ``make_golden.py`` from the official
``pe.CLIP`` in the published ``PE-Core-*.pt`` layout, and the official outputs: ``encode_video`` /
``encode_text`` with ``normalize=True`` and their raw dot product (the clip_benchmark retrieval
protocol), the classification protocol (mean of raw frames, L2, 100 * cosine), and the same for the
G14 layout (no class token, context 72) derived from the same tensors. The open_clip layout is
checked against the key list, shapes and checksums that make_golden.py recorded from open_clip +
timm's own conversion of the same tensors.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "pe_core"
CKPT = FOLDER / "PE-Core-Tiny8-32.pt"
# The tiny widths are outside the published head table, so their head counts are given.
HEADS = {"vision_heads": 4, "text_heads": 3}


@pytest.fixture(scope="module")
def golden():
    return load_golden("pe_core")


@pytest.fixture(scope="module")
def official_state():
    return torch.load(CKPT, weights_only=True)


def _outputs(model, golden):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        return videos, texts, model.similarity(videos, texts)


def test_equals_official_retrieval_protocol(golden):
    model = create_model("pe-core", checkpoint=str(CKPT), **HEADS).eval()
    videos, texts, scores = _outputs(model, golden)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(scores, golden.tensors["similarity"])
    # The official video embedding is a mean of unit vectors, not renormalised.
    assert torch.allclose(videos.norm(dim=-1), golden.tensors["video_embeddings"].norm(dim=-1), atol=1e-5)
    assert model.layout == "perception_models"


def test_equals_official_classification_protocol(golden):
    model = create_model("pe-core", checkpoint=str(CKPT), pooling="classification", **HEADS).eval()
    videos, texts, scores = _outputs(model, golden)
    assert_matches(videos, golden.tensors["video_embeddings_classification"], "video")
    assert_scores(scores, golden.tensors["similarity_classification"], scale=100.0)


def derive_g_layout(state, context=72):
    """README.md's rule: no class token, text positions tiled to the G14 context of 72."""
    out = {k: v.clone() for k, v in state.items() if k != "visual.class_embedding"}
    out["visual.positional_embedding"] = state["visual.positional_embedding"][1:].clone()
    pos = state["positional_embedding"]
    out["positional_embedding"] = pos.repeat(-(-context // pos.shape[0]), 1)[:context].clone()
    return out


def test_equals_official_g14_layout(golden, official_state, tmp_path):
    """No class token: RoPE positions start at 0 and pooling sees only patches; 72-token context."""
    torch.save(derive_g_layout(official_state), tmp_path / "PE-Core-G-tiny.pt")
    model = create_model("pe-core", checkpoint=str(tmp_path / "PE-Core-G-tiny.pt"), **HEADS).eval()
    assert not model.net.dims.class_token and model.net.dims.context_length == 72
    videos, texts, scores = _outputs(model, golden)
    assert_matches(videos, golden.tensors["video_embeddings_g"], "video")
    assert_matches(texts, golden.tensors["text_embeddings_g"], "text")
    assert_scores(scores, golden.tensors["similarity_g"])


def test_tokens_equal_official_tokenizer(golden):
    """perception_models' tokenizer cuts the long caption to 31 ids plus end-of-text, as clip.tokenize does."""
    assert torch.equal(openai_tokenize(golden.captions, 32), golden.tensors["text_tokens"])
    assert torch.equal(openai_tokenize(golden.captions, 72), golden.tensors["text_tokens_g"])


def to_open_clip_layout(state):
    """The official tensors under open_clip's CustomTextCLIP names (timm vit_pe_core trunk)."""
    renames = [("conv1.", "patch_embed.proj."), ("ln_pre.", "norm_pre."), ("ln_post.", "norm."),
               ("transformer.resblocks.", "blocks."), (".ln_1.", ".norm1."), (".ln_2.", ".norm2."),
               (".attn.in_proj_weight", ".attn.qkv.weight"), (".attn.in_proj_bias", ".attn.qkv.bias"),
               (".attn.out_proj.", ".attn.proj."), (".mlp.c_fc.", ".mlp.fc1."), (".mlp.c_proj.", ".mlp.fc2.")]
    out = {}
    for key, value in state.items():
        if key == "logit_scale":
            out[key] = value
            continue
        if not key.startswith("visual."):
            out[f"text.{key}"] = value
            continue
        name = key[len("visual."):]
        if name == "class_embedding":
            out["visual.trunk.cls_token"] = value.reshape(1, 1, -1)
        elif name == "positional_embedding":
            out["visual.trunk.pos_embed"] = value.unsqueeze(0)
        elif name == "proj":
            out["visual.trunk.head.weight"] = value.T.contiguous()
            out["visual.trunk.head.bias"] = torch.zeros(value.shape[1])
        elif name.startswith("attn_pool."):
            width = state["visual.attn_pool.probe"].shape[-1]
            table = {"attn_pool.probe": "attn_pool.latent", "attn_pool.attn.out_proj.weight": "attn_pool.proj.weight",
                     "attn_pool.attn.out_proj.bias": "attn_pool.proj.bias",
                     "attn_pool.layernorm.weight": "attn_pool.norm.weight",
                     "attn_pool.layernorm.bias": "attn_pool.norm.bias"}
            if name.startswith("attn_pool.attn.in_proj_"):
                part = name.rsplit("_", 1)[1]
                out[f"visual.trunk.attn_pool.q.{part}"] = value[:width].clone()
                out[f"visual.trunk.attn_pool.kv.{part}"] = value[width:].clone()
            elif name in table:
                out[f"visual.trunk.{table[name]}"] = value
            else:
                name = name.replace(".mlp.c_fc.", ".mlp.fc1.").replace(".mlp.c_proj.", ".mlp.fc2.")
                out[f"visual.trunk.{name}"] = value
        else:
            for old, new in renames:
                name = name.replace(old, new)
            out[f"visual.trunk.{name}"] = value
    return out


def test_open_clip_layout_equals_official(golden, official_state, tmp_path):
    """A file in open_clip's hf-hub:timm/PE-Core-* layout (safetensors) loads to the same embeddings."""
    state = to_open_clip_layout(official_state)
    recorded = json.loads(golden.metadata["open_clip_layout"])  # from timm's own converter
    assert sorted(state) == sorted(recorded)
    for key, (shape, total, weighted) in recorded.items():
        flat = state[key].double().reshape(-1)
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64) / flat.numel()
        assert list(state[key].shape) == shape, key
        assert abs(float(flat.sum()) - total) <= 1e-6 * (1 + abs(total)), key
        assert abs(float((flat * weights).sum()) - weighted) <= 1e-6 * (1 + abs(weighted)), key
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "open_clip_model.safetensors"))
    model = create_model("pe-core", checkpoint=str(tmp_path / "open_clip_model.safetensors"), **HEADS).eval()
    assert model.layout == "open_clip"
    videos, texts, scores = _outputs(model, golden)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(scores, golden.tensors["similarity"])


def test_frame_spec_is_official_preprocessing():
    spec = create_model("pe-core", checkpoint=str(CKPT), **HEADS).frame_spec()
    assert (spec.size, spec.crop, spec.resize, spec.interpolation, spec.num_frames) == (32, None, "squash",
                                                                                       "bilinear", 8)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """Another size (no class token, widths 64 with the width // 64 head rule, patch 4 on 16 px, 3 + 1 layers,
    MLP ratio 3, context 72, fp16 in a ``state_dict`` wrapper with ``module.`` prefixes) loads."""
    from instract_eval.adapters.image_text.pe_core import PeCoreNet, PeDimensions

    dims = PeDimensions(embed_dim=24, vision_width=64, vision_layers=3, vision_heads=1, vision_mlp=192,
                        patch_size=4, grid=4, class_token=False, pool_heads=8, pool_mlp=256, context_length=72,
                        vocab_size=49408, text_width=64, text_layers=1, text_heads=1, text_mlp=256)
    net = PeCoreNet(dims)
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    torch.save({"state_dict": {f"module.{k}": v.half() for k, v in net.state_dict().items()}}, tmp_path / "w.pt")
    model = create_model("pe-core", checkpoint=str(tmp_path / "w.pt"), frames=2).eval()
    assert model.net.dims == dims
    with torch.inference_mode():
        assert model.encode_video(torch.randn(2, 2, 3, 16, 16)).shape == (2, 24)
        assert model.encode_text(["a b c " * 40]).shape == (1, 24)
    assert model.frame_spec().size == 16 and model.frame_spec().num_frames == 2


def test_bad_checkpoints_give_one_line(official_state, tmp_path):
    clip_file = OFFICIAL / "clip" / "ViT-T-8-state.pt"
    if clip_file.exists():
        with pytest.raises(InputError, match=r"ViT-T-8-state.pt.*not a pe-core checkpoint.*visual.attn_pool.probe"):
            create_model("pe-core", checkpoint=str(clip_file))
    missing = {k: v for k, v in official_state.items() if k != "visual.ln_post.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(InputError, match=r"missing.pt.*missing visual.ln_post.bias"):
        create_model("pe-core", checkpoint=str(tmp_path / "missing.pt"), **HEADS)
    shaped = dict(official_state, **{"ln_final.bias": torch.zeros(3)})
    torch.save(shaped, tmp_path / "shaped.pt")
    with pytest.raises(InputError, match=r"shaped.pt.*wrong shape of ln_final.bias \(file \[3\], model \[12\]\)"):
        create_model("pe-core", checkpoint=str(tmp_path / "shaped.pt"), **HEADS)
    with pytest.raises(InputError, match=r"PE-Core-Tiny8-32.pt.*vision width 32.*vision_heads"):
        create_model("pe-core", checkpoint=str(CKPT))
    (tmp_path / "cut.pt").write_bytes(CKPT.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"cut.pt.*truncated"):
        create_model("pe-core", checkpoint=str(tmp_path / "cut.pt"))
    with pytest.raises(InputError, match=r"pooling must be one of"):
        create_model("pe-core", checkpoint=str(CKPT), pooling="max", **HEADS)
