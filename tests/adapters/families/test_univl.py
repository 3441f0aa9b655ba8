"""``univl`` equals the official UniVL (github.com/microsoft/UniVL at 8db88f391cf4247ffab328c201261c8e8bd6cdd6)
fed by the official feature extractor (github.com/ArrowLuo/VideoFeatureExtractor at
407d457084d4b34ace252e9092916ea67e757b66) on the MIL-NCE S3D (antoine77340/S3D_HowTo100M).

``tests/data/official/univl`` holds a tiny UniVL pre-training checkpoint (hidden 32, 2 heads,
intermediate 37; text 2 layers over a 66-token vocabulary, 64 positions; visual 2 layers on 128-d
features; cross 2 layers, 128 positions; decoder and MLM heads included, as in
``univl.pretrained.bin``) written with ``torch.save(model.state_dict())``, its ``vocab.txt``, and
the official outputs: the extractor's per-second features (16 fps chunks, L2-normalised, float16)
from the tiny S3D of ``tests/data/official/milnce_s3d``, the retrieval loader's token ids, the
stage-one model's mean-pooled embeddings and cosine, and the ``--train_sim_after_cross`` model's
cross-encoder logits.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.video_text.univl import BertWordPiece, UniVLDimensions, UniVLNet
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "univl"
CHECKPOINT = FOLDER / "univl.pretrained.bin"
S3D = OFFICIAL / "milnce_s3d" / "s3d_howto100m.pth"
FILES = {"s3d_checkpoint": str(S3D), "vocab": str(FOLDER / "vocab.txt"), "heads": 2}
LENGTHS = ("3s", "2_5s", "1s", "50s")


@pytest.fixture(scope="module")
def golden():
    return load_golden("univl")


@pytest.fixture(scope="module")
def align():
    return create_model("univl", checkpoint=str(CHECKPOINT), **FILES)


@pytest.fixture(scope="module")
def cross():
    return create_model("univl", checkpoint=str(CHECKPOINT), head="cross", **FILES)


def _clip(golden, name):
    return (golden.tensors[f"frames_{name}"].float() / 255.0)[None]  # [1, T, 3, H, W] in [0, 1], 16 fps


def test_features_equal_the_official_extractor(golden, align):
    """1 s, 3 s, 2.5 s (black frames fill the last second) and 50 s (the first 48 seconds are kept)."""
    with torch.inference_mode():
        for name in LENGTHS:
            ours = align.features(_clip(golden, name))[0]
            official = golden.tensors[f"s3d_features_{name}"][:48]
            assert torch.equal(ours, official), name  # float16-rounded: bit for bit


def test_alignment_equals_official_univl(golden, align):
    with torch.inference_mode():
        videos = torch.cat([align.encode_video(_clip(golden, name)) for name in LENGTHS])
        texts = align.encode_text(golden.captions)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(align.similarity(videos, texts), golden.tensors["similarity"])  # cosine (use_mil off)


def test_cross_encoder_equals_official_univl(golden, cross):
    with torch.inference_mode():
        scores = torch.cat([cross.score(_clip(golden, name), [golden.captions]) for name in LENGTHS])
        batched = cross.score(torch.cat([_clip(golden, "3s")] * 2), [golden.captions[:3], golden.captions[3:6]])
    assert_scores(scores, golden.tensors["pair_scores"])
    assert_scores(batched, torch.stack([golden.tensors["pair_scores"][0, :3], golden.tensors["pair_scores"][0, 3:6]]))
    assert not hasattr(cross, "encode_video") and cross.scoring


def test_tokens_equal_the_official_loader(golden, align):
    ids, mask = align.tokenize(golden.captions)
    assert torch.equal(ids, golden.tensors["text_token_ids"]) and torch.equal(mask, golden.tensors["text_mask"])
    rows = dict(zip(golden.captions, ids.tolist()))
    assert rows[""][:3] == [4, 5, 0]  # [CLS] [SEP]
    assert rows["Café crème brûlée"][:5] == [4, 28, 29, 30, 5]  # accents stripped
    special = rows["[CLS] inside [SEP] the jar [PAD] [CLS], [MASK]"]
    assert special[:13] == [4, 4, 34, 5, 15, 36, 0, 3, 3, 3, 9, 6, 5]  # "[CLS]," is split: [ cls ] ,
    assert int(mask[8].sum()) == 48 and ids[8, -1] == 5  # cut to 46 pieces, [SEP] last


def test_wordpiece_rules():
    vocab = BertWordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "a", "##a", "!"])
    assert vocab.tokenize("Unaffable!! \u00c0a " + "a" * 101) == ["un", "##aff", "##able", "!", "!", "a", "##a",
                                                                  "[UNK]"]  # accents stripped; > 100 chars: [UNK]
    assert vocab.basic("中文\x00\tx") == ["中", "文", "x"]


def test_frame_spec_is_the_extractors_input(align):
    spec = align.frame_spec()
    assert (spec.num_frames, spec.sampling, spec.fps, spec.size, spec.crop) == (256, "fps", 16.0, 224, 224)
    assert (spec.interpolation, spec.mean, spec.std, spec.value_range) == ("bicubic", (0.0,) * 3, (1.0,) * 3, 1.0)
    small = create_model("univl", checkpoint=str(CHECKPOINT), seconds=2, size=32, **FILES).frame_spec()
    assert (small.num_frames, small.size) == (32, 32)


OTHER = UniVLDimensions(hidden=24, heads=3, vocab_size=9, text_positions=20, text_types=2, text_layers=1,
                        text_intermediate=13, video_dim=128, visual_positions=10, visual_layers=3,
                        visual_intermediate=11, cross_positions=40, cross_types=2, cross_layers=1,
                        cross_intermediate=7)


def _write_other(folder, *, cross=True, wrap=None, tf_names=False):
    torch.manual_seed(0)
    net = UniVLNet(OTHER)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0, 0.3)
    state = net.state_dict()
    if not cross:
        state = {k: v for k, v in state.items() if not k.startswith(("cross.", "similarity_dense."))}
    if tf_names:
        state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                 for k, v in state.items()}
    state["decoder.embeddings.word_embeddings.weight"] = torch.zeros(9, 24)  # skipped, as retrieval never uses it
    folder.mkdir(exist_ok=True)
    path = folder / "pytorch_model.bin.4"
    torch.save({wrap: state} if wrap else state, path)
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\ncut\nthe\nonion\n##s\nx\n")
    shutil.copy(S3D, folder / "s3d_howto100m.pth")
    return net, path


@pytest.mark.parametrize("layout", ["plain", "model_state_dict", "tf_names"])
def test_other_size_reads_every_dimension_from_the_file(tmp_path, layout):
    """Files beside the checkpoint; a training checkpoint's ``model_state_dict``; TF ``gamma``/``beta`` names."""
    net, path = _write_other(tmp_path / layout, wrap="model_state_dict" if layout == "model_state_dict" else None,
                             tf_names=layout == "tf_names")
    model = create_model("univl", checkpoint=str(path), heads=3, max_words=12, max_frames=5, seconds=7, size=32)
    assert model.dims == OTHER
    clips = torch.rand(2, 7 * 16, 3, 32, 32)
    with torch.inference_mode():
        videos = model.encode_video(clips)
        texts = model.encode_text(["Cut the onions", "x"])
        assert model.features(clips).shape == (2, 5, 128)  # 7 seconds, cut to max_frames=5
        features = model.features(clips)
        expected = net.video_vector(net.visual_sequence(features, torch.ones(2, 5)), torch.ones(2, 5))
    torch.testing.assert_close(videos, expected, rtol=0, atol=0)
    assert videos.shape == (2, 24) and texts.shape == (2, 24)
    assert model.tokenize(["Cut the onions"])[0][0, :6].tolist() == [2, 4, 5, 6, 7, 3]
    scores = create_model("univl", checkpoint=str(path), head="cross", heads=3, max_words=12, max_frames=5,
                          seconds=1, size=32).score(clips[:, :16], [["cut", "x y"], ["the", "onion"]])
    assert scores.shape == (2, 2) and torch.isfinite(scores).all()


def test_a_stage_one_checkpoint_serves_the_alignment_only(tmp_path):
    _, path = _write_other(tmp_path / "stage1", cross=False)
    model = create_model("univl", checkpoint=str(path), heads=3, max_words=12, max_frames=5, seconds=1, size=32)
    assert model.encode_text(["cut"]).shape == (1, 24)
    with pytest.raises(InputError, match=r"pytorch_model.bin.4.*has no cross encoder.*use head=align"):
        create_model("univl", checkpoint=str(path), head="cross", heads=3, max_words=12, max_frames=5)


def test_bad_files_give_one_line(tmp_path):
    with pytest.raises(InputError, match=r"s3d_howto100m.pth.*not a univl checkpoint.*lacks bert.embeddings"):
        create_model("univl", checkpoint=str(S3D), **FILES)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(CHECKPOINT, alone / "univl.pretrained.bin")
    with pytest.raises(InputError, match=r"alone: s3d_checkpoint: univl needs MIL-NCE's S3D weights: no "
                                         r"s3d_howto100m.pth beside the checkpoint; pass s3d_checkpoint=PATH"):
        create_model("univl", checkpoint=str(alone / "univl.pretrained.bin"), heads=2)
    with pytest.raises(InputError, match=r"alone: vocab: univl needs the bert-base-uncased vocabulary: no vocab.txt"):
        create_model("univl", checkpoint=str(alone / "univl.pretrained.bin"), heads=2, s3d_checkpoint=str(S3D))
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match=r"vocab.txt: vocab: vocabulary has no \[UNK\] token"):
        create_model("univl", checkpoint=str(CHECKPOINT), heads=2, s3d_checkpoint=str(S3D),
                     vocab=str(tmp_path / "vocab.txt"))
    (tmp_path / "big.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(80)]))
    model = create_model("univl", checkpoint=str(CHECKPOINT), heads=2, s3d_checkpoint=str(S3D),
                         vocab=str(tmp_path / "big.txt"))
    with pytest.raises(InputError, match=r"big.txt: vocab: univl: the vocabulary has ids up to 83"):
        model.encode_text(["w79"])
    state = torch.load(CHECKPOINT, weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "visual.encoder.layer.1.output.dense.bias"},
               tmp_path / "missing.bin")
    with pytest.raises(InputError, match=r"missing.bin.*missing visual.encoder.layer.1.output.dense.bias"):
        create_model("univl", checkpoint=str(tmp_path / "missing.bin"), **FILES)


def test_s3d_of_another_width_is_refused(tmp_path):
    from instract_eval.adapters.video_text.milnce_s3d import S3DNet

    from .test_milnce_s3d import OTHER as S3D_OTHER

    torch.save(S3DNet(S3D_OTHER).state_dict(), tmp_path / "s3d_other.pth")
    with pytest.raises(InputError, match=r"s3d_other.pth: s3d_checkpoint: S3D gives 20-d features but the UniVL "
                                         r"checkpoint univl.pretrained.bin takes 128-d ones"):
        create_model("univl", checkpoint=str(CHECKPOINT), heads=2, vocab=str(FOLDER / "vocab.txt"),
                     s3d_checkpoint=str(tmp_path / "s3d_other.pth"))


def test_bad_arguments_give_one_line(align, cross):
    with pytest.raises(InputError, match="head must be one of align, cross"):
        create_model("univl", checkpoint=str(CHECKPOINT), head="tight", **FILES)
    with pytest.raises(InputError, match=r"max_words=65 exceeds the 64 positions"):
        create_model("univl", checkpoint=str(CHECKPOINT), max_words=65, **FILES)
    with pytest.raises(InputError, match=r"max_frames=65 exceeds the 64 positions"):
        create_model("univl", checkpoint=str(CHECKPOINT), head="cross", max_frames=65, **FILES)
    with pytest.raises(InputError, match=r"max_words must leave room for \[CLS\] and \[SEP\]"):
        create_model("univl", checkpoint=str(CHECKPOINT), max_words=1, **FILES)
    with pytest.raises(InputError, match="heads=3 does not divide the width 32"):
        create_model("univl", checkpoint=str(CHECKPOINT), **{**FILES, "heads": 3})
    with pytest.raises(InputError, match="needs weights"):
        create_model("univl")
    with pytest.raises(InputError, match=r"encode_video takes \[B, T, 3, H, W\]"):
        align.encode_video(torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match="one list of captions per clip"):
        cross.score(torch.zeros(2, 16, 3, 32, 32), [["a"]])


def test_published_tag_offline_gives_one_line(monkeypatch):
    monkeypatch.setenv("INSTRACT_EVAL_OFFLINE", "1")
    with pytest.raises(InputError, match=r"pretrained: offline and univl.pretrained.bin is not in the cache; download "
                                         r"https://github.com/microsoft/UniVL/releases/download/v0/"):
        create_model("univl", pretrained="pretrained")
    with pytest.raises(InputError, match=r"cannot fetch the bert-base-uncased vocabulary https://huggingface.co/.*"
                                         r"offline.*pass vocab=PATH"):
        create_model("univl", checkpoint=str(CHECKPOINT), heads=2, s3d_checkpoint=str(S3D),
                     vocab="https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt")
