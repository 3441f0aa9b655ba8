"""``clip4clip`` equals the official CLIP4Clip (github.com/ArrowLuo/CLIP4Clip at
508ffa3de39ba0563a03199c440ab602a72e9b6f) and the Searchium-ai/clip4clip-webvid150k model card recipe.

``tests/data/official/clip4clip`` holds one tiny checkpoint per similarity head (meanP, seqLSTM,
seqTransf, tightTransf) written by the official ``CLIP4Clip`` module as its training script saves it
(``model.state_dict()``, fp16/fp32 mix), a tiny transformers ``CLIPModel`` directory standing in for
the Hugging Face port, and ``golden.safetensors``: the official ``get_visual_output`` /
``get_sequence_output`` / ``get_similarity_logits`` outputs on fixed frames and captions (see its
README). The tiny models use the official BPE cut to 126 merges (``bpe_tiny.txt.gz``, 640 ids).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import clip_bpe, openai_tokenize
from instract_eval.adapters.protocols import DUAL_ENCODER, PAIR_SCORER, capabilities_of
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "clip4clip"
BPE = str(FOLDER / "bpe_tiny.txt.gz")
DUAL_HEADS = ("meanP", "seqLSTM", "seqTransf")


@pytest.fixture(scope="module")
def golden():
    return load_golden("clip4clip")


def official(which: str, **kwargs):
    return create_model("clip4clip", checkpoint=str(FOLDER / which / "pytorch_model.bin.0"), frames=4,
                        bpe_vocabulary=BPE, **kwargs).eval()


def state_of(head: str) -> dict[str, torch.Tensor]:
    return torch.load(FOLDER / head / "pytorch_model.bin.0", map_location="cpu")


@pytest.mark.parametrize("head", DUAL_HEADS)
def test_dual_heads_equal_official(golden, head):
    model = official(head)
    assert model.head == head and capabilities_of(model) == (DUAL_ENCODER,)
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors[f"{head}/video_embeddings"], "video")
    assert_matches(texts, golden.tensors[f"{head}/text_embeddings"], "text")
    assert_scores(scores, golden.tensors[f"{head}/similarity"], scale=float(golden.metadata[f"{head}/logit_scale_exp"]))


def test_tight_transf_pair_scorer_equals_official(golden):
    model = official("tightTransf")
    assert model.head == "tightTransf" and capabilities_of(model) == (PAIR_SCORER,)
    with torch.inference_mode():
        scores = model.score(golden.tensors["frames"], [golden.captions] * 3)
        one = model.score(golden.tensors["frames"][1:2], [golden.captions[2:]])
    assert_scores(scores, golden.tensors["tightTransf/similarity"])
    assert_scores(one, golden.tensors["tightTransf/similarity"][1:2, 2:])
    with pytest.raises(InputError, match="same number of captions"):
        model.score(golden.tensors["frames"][:2], [["a"], ["b", "c"]])


def test_hf_port_equals_its_model_card(golden):
    model = create_model("clip4clip", checkpoint=str(FOLDER / "hf" / "model"), frames=4).eval()
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["hf/video_embeddings"], "video")
    assert_matches(texts, golden.tensors["hf/text_embeddings"], "text")
    assert_scores(scores, golden.tensors["hf/similarity"])


def test_hf_port_reads_vocab_and_merges_without_tokenizer_json(golden, tmp_path):
    """A directory saved before tokenizer.json existed carries vocab.json + merges.txt only."""
    shutil.copytree(FOLDER / "hf" / "model", tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.json").unlink()
    model = create_model("clip4clip", checkpoint=str(tmp_path / "hf"), frames=4).eval()
    with torch.inference_mode():
        texts = model.encode_text(golden.captions)
    assert_matches(texts, golden.tensors["hf/text_embeddings"], "text")


def test_token_ids_equal_the_official_loader(golden):
    """Start + first 30 BPE ids + end, zero padded to max_words 32 (two captions are cut)."""
    ids = openai_tokenize(golden.captions, 32, clip_bpe(BPE))
    assert ids.tolist() == json.loads(golden.metadata["token_ids"])
    bpe = clip_bpe(BPE)
    hf = [[bpe.sot, *bpe.encode(c)[:75], bpe.eot] for c in golden.captions]
    assert hf == json.loads(golden.metadata["hf/token_ids"])


def test_head_override_uses_clip_alone(golden):
    """head=meanP on a seqTransf file ignores the head's keys, like the official loader: the video is
    the normalised mean of the official per-frame CLIP features."""
    model = official("seqTransf", head="meanp")
    assert model.head == "meanP"
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
    frames = golden.tensors["seqTransf/frame_features"]
    assert_matches(videos, F.normalize(F.normalize(frames, dim=-1).mean(1), dim=-1), "video")
    with pytest.raises(InputError, match=r"meanP/pytorch_model.bin.0.*transformerClip.resblocks"):
        official("meanP", head="seqTransf")
    with pytest.raises(InputError, match="head must be one of"):
        official("meanP", head="meanMax")


def test_clip_checkpoint_fills_missing_clip_tensors(golden, tmp_path):
    """The official loader takes clip.* tensors the file lacks from the base CLIP (clip_checkpoint=)."""
    state = state_of("seqTransf")
    base = {key[len("clip."):]: value for key, value in state.items() if key.startswith("clip.visual.")}
    torch.save(base, tmp_path / "base.pt")
    torch.save({k: v for k, v in state.items() if not k.startswith("clip.visual.")}, tmp_path / "partial.bin")
    with pytest.raises(InputError, match=r"partial.bin.*lacks clip.visual.conv1.weight"):
        create_model("clip4clip", checkpoint=str(tmp_path / "partial.bin"), bpe_vocabulary=BPE)
    model = create_model("clip4clip", checkpoint=str(tmp_path / "partial.bin"), frames=4, bpe_vocabulary=BPE,
                         clip_checkpoint=str(tmp_path / "base.pt")).eval()
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
    assert_matches(videos, golden.tensors["seqTransf/video_embeddings"], "video")


def test_frame_spec_is_the_official_loader():
    spec = official("meanP").frame_spec()
    assert (spec.num_frames, spec.sampling, spec.fps, spec.size, spec.crop, spec.interpolation, spec.resize) == \
        (4, "uniform", 1.0, 32, 32, "bicubic", "short_side")
    assert create_model("clip4clip", checkpoint=str(FOLDER / "hf" / "model")).frame_spec().num_frames == 12


def _tiny_official(tmp_path, head: str, **sizes):
    """An official-format state dict of another size, written from our own module tree."""
    from instract_eval.adapters.core.clip_net import ClipDimensions
    from instract_eval.adapters.image_text.clip4clip import Clip4ClipNet

    dims = ClipDimensions(embed_dim=128, vision_width=128, vision_layers=2, vision_heads=2, patch_size=4,
                          image_size=16, context_length=77, vocab_size=640, text_width=128, text_layers=1,
                          text_heads=2)
    net = Clip4ClipNet(dims, head, **sizes)
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    fp16 = (".weight", ".bias", "proj", "text_projection", "in_proj_weight", "in_proj_bias")
    state = {k: (v.half() if k.startswith("clip.") and k.endswith(fp16) and "ln_" not in k
                 and "embedding" not in k else v) for k, v in net.state_dict().items()}
    torch.save(state, tmp_path / f"{head}.bin")
    return tmp_path / f"{head}.bin"


@pytest.mark.parametrize("head", ["seqTransf", "tightTransf"])
def test_other_size_reads_every_dimension_from_the_file(tmp_path, head):
    """Width 128 (2 heads), 2 vision layers, patch 4 on 16 px, 2 head layers, 20 position rows."""
    path = _tiny_official(tmp_path, head, rows=20, head_layers=2)
    model = create_model("clip4clip", checkpoint=str(path), frames=3, bpe_vocabulary=BPE, max_words=20).eval()
    assert model.head == head and model.frame_spec().size == 16
    clips = torch.randn(2, 3, 3, 16, 16)
    with torch.inference_mode():
        if head == "tightTransf":
            assert model.score(clips, [["a dog", "cut the onion"]] * 2).shape == (2, 2)
        else:
            assert model.encode_video(clips).shape == (2, 128)
            assert model.encode_text(["a b c " * 20]).shape == (1, 128)
        with pytest.raises(InputError, match="room for"):
            (model.score(torch.randn(1, 20, 3, 16, 16), [["a"]]) if head == "tightTransf"
             else model.encode_video(torch.randn(1, 21, 3, 16, 16)))
    with pytest.raises(InputError, match="room for"):
        create_model("clip4clip", checkpoint=str(path), frames=24, bpe_vocabulary=BPE)


def test_bad_checkpoints_give_one_line(tmp_path):
    with pytest.raises(InputError, match=r"ViT-T-8-state.pt.*not a clip4clip checkpoint: it lacks clip.visual"):
        create_model("clip4clip", checkpoint=str(OFFICIAL / "clip" / "ViT-T-8-state.pt"))
    with pytest.raises(InputError, match=r"pytorch_model.bin.0.*640-token vocabulary.*bpe_vocabulary"):
        create_model("clip4clip", checkpoint=str(FOLDER / "meanP" / "pytorch_model.bin.0"))
    state = state_of("seqTransf")
    dropped = ("transformerClip.resblocks.0.ln_2.bias", "clip.ln_final.bias")
    torch.save({k: v for k, v in state.items() if k not in dropped}, tmp_path / "missing.bin")
    with pytest.raises(InputError, match=r"missing.bin.*missing clip.ln_final.bias, "
                                         r"transformerClip.resblocks.0.ln_2.bias"):
        create_model("clip4clip", checkpoint=str(tmp_path / "missing.bin"), bpe_vocabulary=BPE)
    shaped = dict(state, **{"frame_position_embeddings.weight": torch.zeros(77, 32)})
    torch.save(shaped, tmp_path / "shaped.bin")
    with pytest.raises(InputError, match=r"shaped.bin.*wrong shape of frame_position_embeddings.weight "
                                         r"\(file \[77, 32\], model \[77, 64\]\)"):
        create_model("clip4clip", checkpoint=str(tmp_path / "shaped.bin"), bpe_vocabulary=BPE)
    three_d = dict(state, **{"clip.visual.conv2.weight": torch.zeros(64, 3, 3, 8, 8)})
    torch.save(three_d, tmp_path / "3d.bin")
    with pytest.raises(InputError, match=r"3d.bin.*--linear_patch 3d"):
        create_model("clip4clip", checkpoint=str(tmp_path / "3d.bin"), bpe_vocabulary=BPE)
    with pytest.raises(InputError, match=r"xclip-tiny-patch8.*not a CLIPModel"):
        create_model("clip4clip", checkpoint=str(OFFICIAL / "x_clip" / "xclip-tiny-patch8"))
