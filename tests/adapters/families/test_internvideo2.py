"""``internvideo2`` equals the official InternVideo2 stage-2 dual encoder (github.com/OpenGVLab/InternVideo at
3965eef16e2dadd0ea6c8d0cc29c8a3039df52e3, ``InternVideo2/multi_modality``: ``demo/utils.py``
``InternVideo2_Stage2`` and ``setup_internvideo2``, ``models/backbones/internvideo2/internvideo2.py``,
``models/backbones/bert/xbert.py`` and ``tokenization_bert.py``).

``tests/data/official/internvideo2`` holds two tiny stage-2 models built by the official classes
(``make_golden.py`` narrows the sizes the 1B factory gives ``PretrainInternVideo2``) and written in
the layouts ``setup_internvideo2`` reads:

- ``internvideo2_stage2_tiny_f4.pt``: ``{'module': state_dict}`` (DeepSpeed), the published layout
  (separate video and image position tables), 4 frames of 28 px, patch 7, vision 48 wide x 3 blocks,
  4 heads, a 6-head attention pool to 32, BERT 32 wide x 4 layers with cross-attention from layer 3,
  joint width 24;
- ``internvideo2_stage2_tiny_second.pt``: ``{'model': state_dict}``, one shared position table,
  2 frames of 42 px, patch 14, vision 32 wide x 2 blocks, 2 heads, a 4-head pool to 20, BERT 24
  wide x 3 layers, fusion layer 2, joint width 16;

with a 51-token vocabulary and the official ``get_vid_feat`` / ``get_txt_feat`` outputs, the
tokenizer's ids, ``predict_label``'s logits (``100 * video @ text.T``), single-frame (image) outputs,
and the outputs of each file loaded for another frame count (``num_frames`` != ``origin_num_frames``).
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from instract_eval.adapters import card_of, create_model
from instract_eval.adapters.cards import NEEDS_USER_WEIGHTS
from instract_eval.adapters.video_text.internvideo2 import (InternVideo2Dimensions, InternVideo2Net,
                                                             InternVideo2Tokenizer)
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "internvideo2"
MAIN = FOLDER / "internvideo2_stage2_tiny_f4.pt"
SECOND = FOLDER / "internvideo2_stage2_tiny_second.pt"
MAIN_ARGS = {"heads": 4, "pool_heads": 6, "text_heads": 4}
SECOND_ARGS = {"heads": 2, "pool_heads": 4, "text_heads": 2, "size": 42}


@pytest.fixture(scope="module")
def golden():
    return load_golden("internvideo2")


@pytest.fixture(scope="module")
def model():
    return create_model("internvideo2", checkpoint=str(MAIN), **MAIN_ARGS).eval()


@pytest.fixture(scope="module")
def second():
    return create_model("internvideo2", checkpoint=str(SECOND), vocab=str(FOLDER / "vocab.txt"), **SECOND_ARGS).eval()


def _check(golden, adapter, tag: str) -> None:
    with torch.inference_mode():
        videos = adapter.encode_video(golden.tensors[f"frames{tag}"])
        texts = adapter.encode_text(golden.captions)
        images = adapter.encode_video(golden.tensors[f"images{tag}"])
        ids, mask = adapter.tokenize(golden.captions)
    assert torch.equal(ids, golden.tensors[f"text_token_ids{tag}"])
    assert torch.equal(mask, golden.tensors[f"text_attention_mask{tag}"])
    assert_matches(videos, golden.tensors[f"video_embeddings{tag}"], f"video{tag}")
    assert_matches(texts, golden.tensors[f"text_embeddings{tag}"], f"text{tag}")
    assert_matches(images, golden.tensors[f"image_embeddings{tag}"], f"image{tag}")
    assert_scores(adapter.similarity(videos, texts), golden.tensors[f"similarity{tag}"], scale=100.0)
    assert_scores(adapter.similarity(images, texts), golden.tensors[f"image_similarity{tag}"], scale=100.0)


def test_equals_official_internvideo2(golden, model):
    assert model.dims.image_table and model.dims.checkpoint_frames == 4 and model.dims.fusion_layer == 3
    _check(golden, model, "")


def test_second_size_equals_official(golden, second):
    """Every size differs and the file has one shared position table (images: its mean over frames)."""
    dims = second.dims
    assert not dims.image_table
    assert (dims.width, dims.patch_size, dims.grid, dims.checkpoint_frames, dims.depth, dims.clip_embed_dim,
            dims.embed_dim, dims.text_width, dims.text_layers, dims.fusion_layer) == (32, 14, 3, 2, 2, 20, 16, 24, 3, 2)
    _check(golden, second, "_second")


@pytest.mark.parametrize(("which", "other"), [("main", 8), ("second", 3)])
def test_other_frame_counts_follow_setup_internvideo2(golden, which, other):
    """Clips of another length get the table ``interpolate_pos_embed_internvideo2_new`` gives the model
    built for that count; ``frames=`` also sets the table a single image averages (no image table)."""
    path, args, tag = (MAIN, MAIN_ARGS, "") if which == "main" else (SECOND, SECOND_ARGS, "_second")
    default = create_model("internvideo2", checkpoint=str(path), **args)
    built = create_model("internvideo2", checkpoint=str(path), frames=other, **args)
    assert built.frame_spec().num_frames == other and default.frame_spec().num_frames == default.dims.checkpoint_frames
    with torch.inference_mode():
        clips = golden.tensors[f"frames_{other}f{tag}"]
        assert_matches(default.encode_video(clips), golden.tensors[f"video_embeddings_{other}f{tag}"], "longer clip")
        assert_matches(built.encode_video(clips), golden.tensors[f"video_embeddings_{other}f{tag}"], "built longer")
        assert_matches(built.encode_video(golden.tensors[f"images{tag}"]),
                       golden.tensors[f"image_embeddings_{other}f{tag}"], "image, built longer")


def test_tokens_equal_the_official_tokenizer(golden, model):
    ids, mask = model.tokenize(golden.captions)
    vocab = model.tokenizer.vocab
    rows = {caption: row[: int(m.sum())].tolist() for caption, row, m in zip(golden.captions, ids, mask)}
    assert rows["a person cuts an onion"] == [vocab[t] for t in ("[CLS]", "a", "person", "cuts", "an", "onion")]
    assert rows[""] == [vocab["[CLS]"]]  # [CLS] and no [SEP]
    assert rows["[MASK] the onion [SEP] cut"][:2] == [vocab["[CLS]"], vocab["[MASK]"]]
    assert vocab["[SEP]"] in rows["[MASK] the onion [SEP] cut"]
    assert rows["café crème brûlée"][1:] == [vocab[t] for t in ("cafe", "creme", "br", "##ule", "##e")]
    assert len(rows["cuts " * 50]) == 40 and ids.shape == (len(golden.captions), 40)
    assert rows["Cutting\tslices\nof ONIONS"][-1] == 23  # "##s" is listed twice: the later index wins


def test_special_tokens_are_split_out_exactly():
    tokenizer = InternVideo2Tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "mask", "[", "]", "cut"])
    assert tokenizer.tokenize("cut[MASK]cut [mask]") == ["cut", "[MASK]", "cut", "[", "mask", "]"]


def test_score_is_100_cosine(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
    assert torch.allclose(videos.norm(dim=-1), torch.ones(3)) and torch.allclose(texts.norm(dim=-1), torch.ones(9))
    torch.testing.assert_close(model.similarity(videos, texts), 100.0 * videos @ texts.T)


def test_the_fusion_layers_and_training_heads_do_not_enter(tmp_path, golden, model):
    """Cross-attention layers, the MLM head, the distillation decoders and ``itm_head`` may hold anything."""
    state = torch.load(MAIN, weights_only=True)["module"]
    for key, value in state.items():
        if (".layer.3." in key or key.startswith(("text_encoder.cls.", "itm_head.", "vision_encoder.clip_pos",
                                                                "vision_encoder.clip_img"))
                or "clip_decoder" in key) and value.is_floating_point():
            state[key] = torch.randn_like(value)
    torch.save({"module": state}, tmp_path / "changed.pt")
    shutil.copy(FOLDER / "vocab.txt", tmp_path / "vocab.txt")
    changed = create_model("internvideo2", checkpoint=str(tmp_path / "changed.pt"), **MAIN_ARGS)
    with torch.inference_mode():
        assert torch.equal(changed.encode_text(golden.captions), model.encode_text(golden.captions))
        assert torch.equal(changed.encode_video(golden.tensors["frames"]), model.encode_video(golden.tensors["frames"]))


@pytest.mark.parametrize("layout", ["bare", "text_encoder", "module-prefix", "fp16", "safetensors"])
def test_other_layouts_of_the_same_weights(tmp_path, golden, model, layout):
    """A bare state dict, BERT as ``text_encoder.*`` (no ``bert.``), ``module.``-prefixed keys, fp16, safetensors."""
    state = torch.load(MAIN, weights_only=True)["module"]
    shutil.copy(FOLDER / "vocab.txt", tmp_path / "vocab.txt")
    path = tmp_path / "file.pt"
    if layout == "bare":
        torch.save(state, path)
    elif layout == "text_encoder":
        torch.save({"model": {k.replace("text_encoder.bert.", "text_encoder."): v for k, v in state.items()
                              if not k.startswith("text_encoder.cls.")}}, path)
    elif layout == "module-prefix":
        torch.save({"module": {f"module.{k}": v for k, v in state.items()}}, path)
    elif layout == "fp16":
        torch.save({"module": {k: v.half() if v.is_floating_point() else v for k, v in state.items()}}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "file.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    other = create_model("internvideo2", checkpoint=str(path), **MAIN_ARGS)
    with torch.inference_mode():
        videos = other.encode_video(golden.tensors["frames"])
        texts = other.encode_text(golden.captions)
    if layout == "fp16":  # the weights are rounded; the network still computes in fp32
        assert float(F.cosine_similarity(videos, golden.tensors["video_embeddings"]).min()) > 0.99
        assert float(F.cosine_similarity(texts, golden.tensors["text_embeddings"]).min()) > 0.99
    else:
        with torch.inference_mode():
            assert torch.equal(videos, model.encode_video(golden.tensors["frames"]))
            assert torch.equal(texts, model.encode_text(golden.captions))


def _random_net(dims: InternVideo2Dimensions, seed: int = 0) -> InternVideo2Net:
    net = InternVideo2Net(dims)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return net.eval()


OTHER = InternVideo2Dimensions(width=24, patch_size=5, grid=2, checkpoint_frames=3, image_table=True, depth=2,
                               heads=3, mlp_hidden=30, qkv_bias=True, qk_norm=False, layer_scale=False,
                               clip_embed_dim=14, pool_heads=2, embed_dim=6, vocab_size=9, text_width=12,
                               text_positions=20, text_types=2, text_layers=2, fusion_layer=2, text_intermediate=20,
                               text_heads=3)


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """A qkv bias, no qk-norm, no LayerScale and no cross-attention layers (fusion = all layers), all read
    from the file; a saved ``InternVideo2Net`` loads back unchanged."""
    net = _random_net(OTHER)
    torch.save({"model": net.state_dict()}, tmp_path / "other.pt")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncut\nthe\nonion\n##s\n")
    adapter = create_model("internvideo2", checkpoint=str(tmp_path / "other.pt"), heads=3, pool_heads=2, text_heads=3,
                           max_words=12)
    assert adapter.dims == OTHER and adapter.frame_spec().size == 10 and adapter.frame_spec().num_frames == 3
    clips = torch.randn(2, 3, 3, 10, 10)
    with torch.inference_mode():
        videos, texts = adapter.encode_video(clips), adapter.encode_text(["Cut the onions", "the"])
        ids, mask = adapter.tokenize(["Cut the onions"])
        expected_video = F.normalize(net.vision_proj(net.vision_encoder(clips)), dim=-1)
        expected_text = F.normalize(net.text_proj(net.text_encoder(ids, mask)), dim=-1)
    torch.testing.assert_close(videos, expected_video, rtol=0, atol=0)
    torch.testing.assert_close(texts[:1], expected_text, rtol=1e-5, atol=1e-6)  # batch of 2 vs 1: rounding
    assert ids[0, :5].tolist() == [2, 5, 6, 7, 8] and int(mask.sum()) == 5 and ids.shape == (1, 12)


def test_bad_files_give_one_line(tmp_path):
    viclip = OFFICIAL / "viclip" / "ViClip-InternVid-10M-FLT.pth"
    with pytest.raises(InputError, match=r"ViClip-InternVid-10M-FLT.pth.*not a internvideo2 checkpoint.*lacks "
                                         r"vision_encoder.patch_embed.proj.weight"):
        create_model("internvideo2", checkpoint=str(viclip), **MAIN_ARGS)
    state = torch.load(MAIN, weights_only=True)["module"]
    torch.save({"module": {k: v for k, v in state.items() if "blocks.1.attn.qkv" not in k}}, tmp_path / "missing.pt")
    shutil.copy(FOLDER / "vocab.txt", tmp_path / "vocab.txt")
    with pytest.raises(InputError, match=r"missing.pt.*missing vision_encoder.blocks.1.attn.qkv.weight"):
        create_model("internvideo2", checkpoint=str(tmp_path / "missing.pt"), **MAIN_ARGS)
    torch.save({"module": {k: v for k, v in state.items() if k != "text_encoder.bert.encoder.layer.1.output.dense.bias"}},
               tmp_path / "text.pt")
    with pytest.raises(InputError, match=r"text.pt.*missing text_encoder.encoder.layer.1.output.dense.bias"):
        create_model("internvideo2", checkpoint=str(tmp_path / "text.pt"), **MAIN_ARGS)
    with pytest.raises(InputError, match=r"internvideo2_stage2_tiny_f4.pt.*a 48-wide vision encoder is not a "
                                         r"published size.*pass heads= and pool_heads="):
        create_model("internvideo2", checkpoint=str(MAIN))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(MAIN, alone / "ckpt.pt")
    with pytest.raises(InputError, match=r"alone: vocab: internvideo2 needs the bert-large-uncased vocabulary: no "
                                         r"vocab.txt beside the checkpoint; pass vocab=PATH"):
        create_model("internvideo2", checkpoint=str(alone / "ckpt.pt"), **MAIN_ARGS)
    (tmp_path / "big.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(80)]))
    big = create_model("internvideo2", checkpoint=str(MAIN), vocab=str(tmp_path / "big.txt"), **MAIN_ARGS)
    with pytest.raises(InputError, match=r"big.txt: vocab: internvideo2: the vocabulary has ids up to 83"):
        big.encode_text(["w79"])
    with pytest.raises(InputError, match=r"internvideo2_stage2_tiny_second.pt.*pos_embed has 18 patch positions, "
                                         r"not frames x 16 x 16 \(pass size="):
        create_model("internvideo2", checkpoint=str(SECOND), heads=2, pool_heads=4, text_heads=2)


def test_bad_arguments_give_one_line(model):
    with pytest.raises(InputError, match="needs weights"):
        create_model("internvideo2")
    with pytest.raises(InputError, match="heads=5 does not divide the width 48"):
        create_model("internvideo2", checkpoint=str(MAIN), **{**MAIN_ARGS, "heads": 5})
    with pytest.raises(InputError, match=r"max_words=65 exceeds the 64 positions"):
        create_model("internvideo2", checkpoint=str(MAIN), max_words=65, **MAIN_ARGS)
    with pytest.raises(InputError, match="frames=4 and num_frames=8 disagree"):
        create_model("internvideo2", checkpoint=str(MAIN), frames=4, num_frames=8, **MAIN_ARGS)
    with pytest.raises(InputError, match="position tables are for 28 px frames, not size=56"):
        create_model("internvideo2", checkpoint=str(MAIN), size=56, **MAIN_ARGS)
    with pytest.raises(InputError, match=r"encode_video takes \[B, T, 3, H, W\]"):
        model.encode_video(torch.zeros(2, 3, 28, 28))
    with pytest.raises(InputError, match=r"frames of 56x56 pixels give 64 patches; this checkpoint has positions "
                                         r"for 28x28"):
        model.encode_video(torch.zeros(1, 4, 3, 56, 56))


def test_frame_spec_is_the_demo_preprocessing(model):
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation) == (4, 28, None, "squash",
                                                                                         "bilinear")
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225) and spec.value_range == 1.0
    published = card_of("internvideo2").frame_spec
    assert (published.num_frames, published.size) == (4, 224)


def test_the_card_says_how_to_get_the_gated_weights(monkeypatch):
    card = card_of("internvideo2")
    assert card.status == NEEDS_USER_WEIGHTS and "gated" in card.status_reason
    tag = card.tag(card.default_tag)
    assert tag.source == "user" and "OpenGVLab/InternVideo2-Stage2_1B-224p-f4" in tag.where
    assert "InternVideo2-stage2_1b-224p-f4.pt" in tag.where and "checkpoint=PATH" in tag.where
    assert tag.args["vocab"].endswith("bert-large-uncased/resolve/main/vocab.txt")
    monkeypatch.setenv("INSTRACT_EVAL_OFFLINE", "1")
    with pytest.raises(InputError, match=r"InternVideo2-Stage2_1B-224p-f4"):
        create_model("internvideo2", pretrained="s2-1b-224p-f4")
    with pytest.raises(InputError, match=r"cannot fetch the bert-large-uncased vocabulary https://huggingface.co/.*pass vocab=PATH"):
        create_model("internvideo2", checkpoint=str(MAIN), vocab=card.tag("s2-1b-224p-f4").args["vocab"], **MAIN_ARGS)
