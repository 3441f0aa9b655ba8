"""``singularity-temporal`` equals the official Singularity (github.com/jayleicn/singularity at
10a7f7062ab8af187b3a47803851b4e462191492, transformers 4.15.0 as its environment.yaml pins).

``tests/data/official/singularity`` holds a tiny Singularity-temporal in both official layouts (a
pre-training checkpoint with ``text_encoder.bert.*`` and the MLM head, and the fine-tuned retrieval
checkpoint the official ``setup_model`` makes of it, ``text_encoder.*``), each with its OmegaConf
config, optimizer and scheduler states as the training scripts save them: BEiT 32 wide, 2 layers,
2 heads, patch 8 on 32 px frames; BERT 4 layers with cross-attention from layer 2 over a 72-token
vocabulary; a 2-layer temporal encoder; 4 temporal embeddings; 16-d projections. The official
outputs: tokens, ITC embeddings and scores, and ITM re-ranking logits from
``tasks/retrieval_utils.evaluation`` on clips of 4, 1 and 6 frames.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.video_text.singularity import (SingularityDimensions, SingularityNet,
                                                           SingularityTokenizer, relative_position_index)
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "singularity"
PRETRAINED = FOLDER / "singularity_temporal_17m.pth"
FINETUNED = FOLDER / "ft_msrvtt_singularity_temporal_17m.pth"
FILES = {"vocab": str(FOLDER / "vocab.txt"), "heads": 2}
CLIPS = ("f4", "f1", "f6")


@pytest.fixture(scope="module")
def golden():
    return load_golden("singularity")


@pytest.fixture(scope="module", params=["pretrained", "finetuned"])
def checkpoint(request):
    return PRETRAINED if request.param == "pretrained" else FINETUNED


@pytest.fixture(scope="module")
def itc(checkpoint):
    return create_model("singularity-temporal", checkpoint=str(checkpoint), **FILES)


@pytest.fixture(scope="module")
def itm(checkpoint):
    return create_model("singularity-temporal", checkpoint=str(checkpoint), head="itm", **FILES)


def test_itc_equals_official_singularity(golden, itc):
    """Clips of 4, 1 and 6 frames; text . frame mean, the mean not renormalised."""
    with torch.inference_mode():
        videos = torch.cat([itc.encode_video(golden.tensors[f"frames_{name}"]) for name in CLIPS])
        texts = itc.encode_text(golden.captions)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(itc.similarity(videos, texts), golden.tensors["similarity"])
    norms = videos.norm(dim=-1)  # a mean of unit vectors, kept as it is (one frame: unit)
    assert norms[[0, 1, 2, 4]].max() < 0.9 and abs(float(norms[3]) - 1.0) < 1e-6


def test_itm_equals_official_singularity(golden, itm):
    """4 frames (temporal encoder), 1 frame (none: a single frame skips it), 6 frames (temporal
    embeddings interpolated from the file's 4); every caption re-ranked."""
    with torch.inference_mode():
        scores = torch.cat([itm.score(golden.tensors[f"frames_{name}"],
                                      [golden.captions] * golden.tensors[f"frames_{name}"].shape[0])
                            for name in CLIPS])
        frames = golden.tensors["frames_f4"][:2]
        split = itm.score(frames, [golden.captions[:3], golden.captions[3:6]])
    assert_scores(scores, golden.tensors["pair_scores"])
    assert_scores(split, torch.stack([golden.tensors["pair_scores"][0, :3], golden.tensors["pair_scores"][1, 3:6]]))
    assert not hasattr(itm, "encode_video") and itm.scoring


def test_the_temporal_encoder_and_embeddings_feed_only_the_re_ranker(golden, checkpoint):
    """ITC ignores them (update_pooler_embed False); ITM without temporal embeddings differs."""
    plain = create_model("singularity-temporal", checkpoint=str(checkpoint), head="itm", temporal_embed=False,
                         **FILES)
    clips = golden.tensors["frames_f4"][:1]
    with torch.inference_mode():
        with_embeddings = create_model("singularity-temporal", checkpoint=str(checkpoint), head="itm",
                                       **FILES).score(clips, [golden.captions[:4]])
        without = plain.score(clips, [golden.captions[:4]])
        itc = create_model("singularity-temporal", checkpoint=str(checkpoint), **FILES)
        before = itc.encode_video(clips)
        itc.net.temporal_embeddings.add_(1.0)
        for parameter in itc.net.temporal_vision_encoder.parameters():
            parameter.add_(0.5)
        assert torch.equal(itc.encode_video(clips), before)
    assert (with_embeddings - without).abs().max() > 1e-3


def test_tokens_equal_the_official_tokenizer(golden, itc):
    ids, mask = itc.tokenize(golden.captions)
    assert torch.equal(ids, golden.tensors["text_token_ids"]) and torch.equal(mask, golden.tensors["text_mask"])
    rows = dict(zip(golden.captions, ids.tolist()))
    assert rows[""][:2] == [4, 0]  # [CLS] only: no [SEP]
    assert rows["A person cuts an onion."][:7] == [4, 13, 16, 20, 14, 21, 10]
    assert rows["[CLS] inside [SEP] the jar [PAD] [CLS], [MASK]"][:11] == [4, 4, 34, 5, 15, 36, 0, 4, 9, 6, 0]
    assert rows["x[SEP]y [cls] [Mask] jar[MASK]"][:12] == [4, 58, 5, 3, 66, 68, 67, 66, 70, 67, 36, 6]
    assert int(mask[8].sum()) == 32 and ids[8, -1] != 5  # cut to 31 pieces after [CLS], no [SEP] at the end


def test_the_tokenizer_splits_special_tokens_first():
    vocab = SingularityTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "[", "]",
                                  "sep", "a"])
    assert vocab.tokenize("Un[SEP]affable [sep] A[MASK]") == ["un", "[SEP]", "[UNK]", "[", "sep", "]", "a", "[MASK]"]
    ids, mask = vocab.encode(["unaffable", "a " * 40], max_words=5)
    assert ids.tolist() == [[2, 5, 6, 7, 0], [2, 11, 11, 11, 11]] and mask.tolist() == [[1, 1, 1, 1, 0], [1] * 5]


def test_relative_position_index_is_beits():
    """The buffer the official files carry equals the one rebuilt from the grid."""
    from instract_eval.adapters.core.checkpoints import read_checkpoint, unwrap_state_dict

    state = unwrap_state_dict(read_checkpoint(FINETUNED), keys=("model",)).state_dict
    stored = state["vision_encoder.encoder.layer.1.attention.attention.relative_position_bias.relative_position_index"]
    assert torch.equal(relative_position_index(4), stored)


def test_frame_spec_is_the_test_transform(itc):
    spec = itc.frame_spec()
    assert (spec.num_frames, spec.sampling, spec.size, spec.crop, spec.resize) == (4, "uniform", 32, None, "squash")
    assert (spec.interpolation, spec.mean, spec.std, spec.value_range) == ("bicubic", (0.5,) * 3, (0.5,) * 3, 1.0)
    more = create_model("singularity-temporal", checkpoint=str(PRETRAINED), frames=12, **FILES).frame_spec()
    assert more.num_frames == 12 and not more.fixed_frames


OTHER = SingularityDimensions(width=24, embed_dim=8, patch=4, grid=3, vision_layers=3, vision_heads=3,
                              vision_intermediate=13, vocab_size=9, text_positions=20, text_types=2, text_layers=3,
                              fusion_layer=1, text_intermediate=11, heads=3, frames=2, temporal_layers=1,
                              temporal_intermediate=11)


def _write_other(folder, *, layout="finetuned", temporal=True):
    torch.manual_seed(0)
    dims = OTHER if temporal else SingularityDimensions(**{**OTHER.__dict__, "temporal_layers": 0,
                                                           "temporal_intermediate": 0, "frames": 1})
    net = SingularityNet(dims)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0, 0.3)
    state = dict(net.state_dict())
    for index in range(dims.vision_layers):  # what the official files carry besides the parameters
        state[f"vision_encoder.encoder.layer.{index}.attention.attention.relative_position_bias."
              "relative_position_index"] = relative_position_index(dims.grid)
    state["text_encoder.embeddings.position_ids"] = torch.arange(dims.text_positions)[None]
    if layout == "pretrained":
        state = {("text_encoder.bert." + k[len("text_encoder."):] if k.startswith("text_encoder.") else k): v
                 for k, v in state.items()}
        state["text_encoder.cls.predictions.bias"] = torch.zeros(dims.vocab_size)
    folder.mkdir(exist_ok=True)
    path = folder / "ckpt_best.pth"
    torch.save(state if layout == "bare" else {"model": state, "config": {"embed_dim": 8}, "epoch": 0}, path)
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncut\nthe\nonion\n##s\n")
    return net, path


@pytest.mark.parametrize("layout", ["pretrained", "finetuned", "bare"])
def test_other_size_reads_every_dimension_from_the_file(tmp_path, layout):
    net, path = _write_other(tmp_path / layout, layout=layout)
    itc = create_model("singularity-temporal", checkpoint=str(path), heads=3, max_words=12, frames=3)
    itm = create_model("singularity-temporal", checkpoint=str(path), head="itm", heads=3, max_words=12, frames=3)
    assert itc.dims == OTHER and itc.frame_spec().size == 12
    clips = torch.rand(2, 3, 3, 12, 12) * 2 - 1
    with torch.inference_mode():
        videos, texts = itc.encode_video(clips), itc.encode_text(["Cut the onions", "the"])
        ids, mask = itc.tokenize(["Cut the onions"])
        expected = net.video_vector(net.frames(clips)[1])
        scores = itm.score(clips, [["cut", "the onion"], ["the", "onions"]])
        frames = net.temporal(net.frames(clips[:1])[0], True)
        text = net.text_encoder.text(ids, mask)
        logit = net.match_logits(text, mask, frames)
    torch.testing.assert_close(videos, expected, rtol=0, atol=0)
    assert videos.shape == (2, 8) and texts.shape == (2, 8)
    assert ids[0, :5].tolist() == [2, 5, 6, 7, 8] and int(mask.sum()) == 5
    assert scores.shape == (2, 2) and torch.isfinite(scores).all()
    torch.testing.assert_close(itm.score(clips[:1], [["Cut the onions"]])[0], logit, rtol=1e-6, atol=1e-6)


def test_a_one_frame_singularity_file_serves_both_heads(tmp_path):
    """No temporal encoder in the file: ITM adds no temporal embeddings by default (the YAML default)."""
    _, path = _write_other(tmp_path / "one", temporal=False)
    itm = create_model("singularity-temporal", checkpoint=str(path), head="itm", heads=3, max_words=12)
    assert itm.dims.temporal_layers == 0 and not itm.temporal_embed
    assert itm.score(torch.rand(1, 4, 3, 12, 12), [["cut"]]).shape == (1, 1)
    itc = create_model("singularity-temporal", checkpoint=str(path), heads=3, max_words=12)
    assert itc.encode_text(["cut"]).shape == (1, 8)


def test_bad_files_give_one_line(tmp_path):
    univl = OFFICIAL / "univl" / "univl.pretrained.bin"
    with pytest.raises(InputError, match=r"univl.pretrained.bin.*not a singularity-temporal checkpoint.*lacks "
                                         r"vision_encoder.embeddings.cls_token"):
        create_model("singularity-temporal", checkpoint=str(univl), **FILES)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(PRETRAINED, alone / "ckpt.pth")
    with pytest.raises(InputError, match=r"alone: vocab: singularity-temporal needs the bert-base-uncased "
                                         r"vocabulary: no vocab.txt beside the checkpoint; pass vocab=PATH"):
        create_model("singularity-temporal", checkpoint=str(alone / "ckpt.pth"), heads=2)
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match=r"vocab.txt: vocab: vocabulary has no \[UNK\] token"):
        create_model("singularity-temporal", checkpoint=str(PRETRAINED), heads=2, vocab=str(tmp_path / "vocab.txt"))
    (tmp_path / "big.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(80)]))
    model = create_model("singularity-temporal", checkpoint=str(PRETRAINED), heads=2, vocab=str(tmp_path / "big.txt"))
    with pytest.raises(InputError, match=r"big.txt: vocab: singularity-temporal: the vocabulary has ids up to 83"):
        model.encode_text(["w79"])
    from instract_eval.adapters.core.checkpoints import read_checkpoint, unwrap_state_dict

    state = unwrap_state_dict(read_checkpoint(FINETUNED), keys=("model",)).state_dict
    torch.save({"model": {k: v for k, v in state.items() if k != "itm_head.bias"}}, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth.*missing itm_head.bias"):
        create_model("singularity-temporal", checkpoint=str(tmp_path / "missing.pth"), **FILES)
    no_cross = {k: v for k, v in state.items() if ".crossattention." not in k}
    torch.save({"model": no_cross}, tmp_path / "nocross.pth")
    with pytest.raises(InputError, match=r"nocross.pth.*no cross-attention layers"):
        create_model("singularity-temporal", checkpoint=str(tmp_path / "nocross.pth"), **FILES)


def test_bad_arguments_give_one_line(itc, itm):
    with pytest.raises(InputError, match="head must be one of itc, itm"):
        create_model("singularity-temporal", checkpoint=str(PRETRAINED), head="cross", **FILES)
    with pytest.raises(InputError, match=r"max_words=41 exceeds the 40 positions"):
        create_model("singularity-temporal", checkpoint=str(PRETRAINED), max_words=41, **FILES)
    with pytest.raises(InputError, match="heads=3 does not divide the width 32"):
        create_model("singularity-temporal", checkpoint=str(PRETRAINED), **{**FILES, "heads": 3})
    with pytest.raises(InputError, match="temporal_embed must be true or false"):
        create_model("singularity-temporal", checkpoint=str(PRETRAINED), temporal_embed="yes", **FILES)
    with pytest.raises(InputError, match="needs weights"):
        create_model("singularity-temporal")
    with pytest.raises(InputError, match=r"encode_video takes \[B, T, 3, H, W\]"):
        itc.encode_video(torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match=r"frames of 48x48 pixels; this checkpoint's relative position biases are "
                                         r"for 32x32"):
        itc.encode_video(torch.zeros(1, 4, 3, 48, 48))
    with pytest.raises(InputError, match="one list of captions per clip"):
        itm.score(torch.zeros(2, 4, 3, 32, 32), [["a"]])


def test_published_tags_say_where_to_get_the_files(monkeypatch):
    monkeypatch.setenv("INSTRACT_EVAL_OFFLINE", "1")
    with pytest.raises(InputError, match=r"nlp.cs.unc.edu/data/jielei/singularity/release/ckpts/pt.tar.gz"):
        create_model("singularity-temporal", pretrained="pt-17m")
    with pytest.raises(InputError, match=r"cannot fetch the bert-base-uncased vocabulary https://huggingface.co/.*offline.*"
                                         r"pass vocab=PATH"):
        create_model("singularity-temporal", checkpoint=str(PRETRAINED), heads=2,
                     vocab="https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt")
