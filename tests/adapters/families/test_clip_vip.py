"""``clip-vip`` equals the official CLIP-ViP code (github.com/microsoft/XPretrain, folder CLIP-ViP, at
c37c904a008bcdec36ebf0f7ee7babc652d0f733).

``tests/data/official/clip_vip`` holds a tiny random CLIP-ViP (vision width 48 x 2 layers, 4 heads,
patch 8 on 32 px, 3 proxy tokens, 12-row temporal embedding; text width 24 x 2 layers, 2 heads,
the real 49,408-token vocabulary; embed 32) saved as the official ``ModelSaver`` saves
``pretrain_clipvip_base_{32,16}.pt`` (flat fp16 ``clipmodel.*`` dict with int64 ``position_ids``),
and the outputs of the official ``VidCLIP.forward_video``/``forward_text`` and
``CLIPModel.forward`` logits after loading it with the official ``load_state_dict_with_mismatch``.
The heads are passed explicitly: the tiny widths do not follow the published width // 64 rule.
"""

from __future__ import annotations

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.image_text.clip_vip import ClipVipDimensions, ClipVipNet, clip_vip_tokenize
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "clip_vip"
CHECKPOINT = FOLDER / "pretrain_clipvip_tiny_8.pt"
HEADS = {"vision_heads": 4, "text_heads": 2}


@pytest.fixture(scope="module")
def golden():
    return load_golden("clip_vip")


@pytest.fixture(scope="module")
def model():
    return create_model("clip-vip", checkpoint=str(CHECKPOINT), **HEADS).eval()


def test_equals_official_clip_vip(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(scores, golden.tensors["similarity"], scale=float(golden.metadata["logit_scale"]))


def test_other_frame_counts_interpolate_the_temporal_embedding(golden, model):
    """6 frames against a 12-row temporal table: resampled linearly, as the official embedding does."""
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames_short"])
    assert_matches(videos, golden.tensors["video_embeddings_short"], "6-frame video")


def test_tokens_equal_official_collator(golden):
    """CLIPTokenizerFast at 50: the long caption keeps 48 BPE ids; curly quotes and &amp; stay as they are."""
    assert torch.equal(clip_vip_tokenize(golden.captions, 50), golden.tensors["input_ids"])


def test_frame_spec_is_official_test_transform(model):
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation) == (12, 32, 32, "squash",
                                                                                        "bicubic")
    assert not spec.fixed_frames


def _write_official_layout(net: ClipVipNet, path, *, prefix: str = "clipmodel.", wrap: str | None = None) -> None:
    state = {f"{prefix}{k}": v.half() for k, v in net.state_dict().items()}
    positions = net.dims.image_size // net.dims.patch_size
    state[f"{prefix}text_model.embeddings.position_ids"] = torch.arange(net.dims.text_positions)[None]
    state[f"{prefix}vision_model.embeddings.position_ids"] = torch.arange(positions * positions + 1)[None]
    torch.save(state if wrap is None else {wrap: state}, path)


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """Another tiny size loads: vision 32 x 3 layers, patch 4 on 16 px, 2 proxies, 8 temporal rows;
    text 16 x 1 layer, 20 positions; under ``module.`` inside ``state_dict``."""
    dims = ClipVipDimensions(embed_dim=24, vision_width=32, vision_layers=3, vision_heads=2, vision_mlp=40,
                             patch_size=4, image_size=16, proxies=2, temporal_size=8, text_width=16, text_layers=1,
                             text_heads=2, text_mlp=48, vocab_size=49408, text_positions=20)
    net = ClipVipNet(dims)
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    _write_official_layout(net, tmp_path / "w.pt", prefix="module.clipmodel.", wrap="state_dict")
    model = create_model("clip-vip", checkpoint=str(tmp_path / "w.pt"), frames=5, context_length=20,
                         vision_heads=2, text_heads=2).eval()
    assert model.net.dims == dims
    frames = torch.randn(2, 5, 3, 16, 16)
    with torch.inference_mode():
        videos = model.encode_video(frames)
        texts = model.encode_text(["a b c " * 20, "open the jar"])
        reference = net.float().eval().encode_video(frames)
    assert videos.shape == (2, 24) and texts.shape == (2, 24)
    assert_matches(videos, reference, "fp16 round trip")
    assert model.frame_spec().size == 16 and model.frame_spec().num_frames == 5


def test_bad_checkpoints_give_one_line(tmp_path):
    state = torch.load(CHECKPOINT)
    missing = {k: v for k, v in state.items() if k != "clipmodel.vision_model.encoder.layers.1.mlp.fc2.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(InputError, match=r"missing.pt.*missing vision_model.encoder.layers.1.mlp.fc2.bias"):
        create_model("clip-vip", checkpoint=str(tmp_path / "missing.pt"), **HEADS)
    shaped = dict(state, **{"clipmodel.text_model.final_layer_norm.bias": torch.zeros(3, dtype=torch.float16)})
    torch.save(shaped, tmp_path / "shaped.pt")
    with pytest.raises(InputError, match=r"shaped.pt.*wrong shape of text_model.final_layer_norm.bias "
                                         r"\(file \[3\], model \[24\]\)"):
        create_model("clip-vip", checkpoint=str(tmp_path / "shaped.pt"), **HEADS)
    other = OFFICIAL / "clip" / "ViT-T-8-state.pt"
    with pytest.raises(InputError, match=r"ViT-T-8-state.pt.*not a clip-vip checkpoint.*vision_model.embeddings"
                                         r".added_cls"):
        create_model("clip-vip", checkpoint=str(other))
    (tmp_path / "cut.pt").write_bytes(CHECKPOINT.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"cut.pt.*truncated"):
        create_model("clip-vip", checkpoint=str(tmp_path / "cut.pt"))
    with pytest.raises(InputError, match=r"width 48 is not divisible by 5 heads"):
        create_model("clip-vip", checkpoint=str(CHECKPOINT), vision_heads=5, text_heads=2)


def test_wrong_frame_size_is_refused(model):
    with pytest.raises(InputError, match=r"frames \[B, T, 3, 32, 32\]"):
        model.encode_video(torch.zeros(1, 12, 3, 16, 16))
