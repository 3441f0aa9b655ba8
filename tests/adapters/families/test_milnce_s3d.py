"""``milnce-s3d`` equals the official MIL-NCE S3D (github.com/antoine77340/S3D_HowTo100M ``s3dg.py`` at
commit b8cd0bbfd16fe41629d1b15e0cf384d75f56101a).

``tests/data/official/milnce_s3d`` holds two tiny S3D-G networks built by the official classes with
every channel width divided by 8 (``make_golden.py`` wraps the official constructors), written in
the official format: ``s3d_howto100m.pth`` (a plain ``state_dict()``, space-to-depth stem, 32-d
joint space) with ``s3d_dict.npy`` (50 words, word width 24, hidden 256), and
``s3d_rgb_stem.pth`` (``space_to_depth=False``, 24-d) with ``s3d_rgb_stem_dict.npy`` (40 words, 45
embedding rows, word width 20, hidden 128). The golden outputs are the official
``net(video)['video_embedding']``, ``net(video)['mixed_5c']``, ``net.text_module(captions)`` and its
``_words_to_ids``, and the README's ``th.matmul(text, video.t())`` score.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instract_eval.adapters import create_model
from instract_eval.adapters.video_text.milnce_s3d import S3DDimensions, S3DNet, WordDictionary
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "milnce_s3d"
MAIN = FOLDER / "s3d_howto100m.pth"
RGB = FOLDER / "s3d_rgb_stem.pth"
RGB_DICT = FOLDER / "s3d_rgb_stem_dict.npy"


@pytest.fixture(scope="module")
def golden():
    return load_golden("milnce_s3d")


@pytest.fixture(scope="module")
def model():
    return create_model("milnce-s3d", checkpoint=str(MAIN)).eval()


@pytest.fixture(scope="module")
def rgb_model():
    return create_model("milnce-s3d", checkpoint=str(RGB), word_dict=str(RGB_DICT)).eval()


def test_equals_official_s3d(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        features = model.extract_features(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
        odd = model.encode_video(golden.tensors["frames_odd"])
        odd_features = model.extract_features(golden.tensors["frames_odd"])
    assert videos.shape == (3, 32) and features.shape == (3, 128) and texts.shape == (13, 32)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(features, golden.tensors["mixed_5c"], "mixed_5c")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(scores, golden.tensors["similarity"])  # raw dot product
    # 4 frames of 40 x 48: sizes that are not multiples of 32 go through the ceil-mode SAME pools
    assert_matches(odd, golden.tensors["video_embeddings_odd"], "video (40 x 48)")
    assert_matches(odd_features, golden.tensors["mixed_5c_odd"], "mixed_5c (40 x 48)")


def test_rgb_stem_model_equals_official(golden, rgb_model):
    """The other stem and other text sizes, read from the second file's shapes; odd sizes work without
    space-to-depth."""
    assert rgb_model.dims.space_to_depth is False
    assert (rgb_model.dims.vocab_rows, rgb_model.dims.word_dim, rgb_model.dims.text_hidden,
            rgb_model.dims.embed_dim) == (45, 20, 128, 24)
    with torch.inference_mode():
        videos = rgb_model.encode_video(golden.tensors["frames_rgb"])
        texts = rgb_model.encode_text(golden.captions)
        assert_matches(videos, golden.tensors["video_embeddings_rgb"], "video (RGB stem, 5 x 33 x 37)")
        assert_matches(rgb_model.extract_features(golden.tensors["frames_rgb"]), golden.tensors["mixed_5c_rgb"],
                       "mixed_5c (RGB stem)")
        assert_matches(rgb_model.encode_video(golden.tensors["frames"]), golden.tensors["video_embeddings_rgb_32px"],
                       "video (RGB stem, 8 x 32 x 32)")
        assert_matches(rgb_model.extract_features(golden.tensors["frames"]), golden.tensors["mixed_5c_rgb_32px"],
                       "mixed_5c (RGB stem, 8 x 32 x 32)")
        assert_matches(texts, golden.tensors["text_embeddings_rgb"], "text (RGB stem model)")
        assert_scores(rgb_model.similarity(videos, texts), golden.tensors["similarity_rgb"])
    assert torch.equal(rgb_model.tokenize(golden.captions), golden.tensors["text_token_ids_rgb"])


def test_tokens_equal_official_sentence_embedding(golden, model):
    ids = model.tokenize(golden.captions)
    assert torch.equal(ids, golden.tensors["text_token_ids"])
    rows = dict(zip(golden.captions, ids.tolist()))
    assert rows["The chef's knife, don't drop it!"][:6] == [5, 7, 8, 9, 10, 11]  # "chef's", "don't" stay whole
    for empty in ("xylophone zebra qwerty", "", "   ...!!! "):
        assert rows[empty] == [0] * 16  # no known word: all padding
    assert rows["Pan pan PAN"][:4] == [14, 14, 14, 0]  # lower-cased first: the dictionary's "Pan" (15) never matches
    assert rows["bowl"][0] == 37  # listed twice: the later id wins
    assert rows["'cut' cut"][:2] == [3, 0]  # "'cut'" keeps its quotes and is unknown
    assert rows["stir_fry 2 eggs; stir-fry 'til golden"][:7] == [17, 18, 19, 36, 35, 46, 47]
    long = golden.captions[6]
    assert len(model.dictionary.words(long)) > 16 and 0 not in rows[long]  # unknown words go before the cut
    assert rows[golden.captions[-1]] == [50] * 16  # 30 known words: the first 16


def test_padding_rows_enter_the_max_pool(golden, model):
    """The official max runs over all 16 positions; masking the padding would move every short caption."""
    ids = model.tokenize(golden.captions)
    text = model.net.text_module
    with torch.no_grad():
        hidden = F.relu(text.fc1(text.word_embd(ids)))
        masked = text.fc2(hidden.masked_fill((ids == 0)[..., None], float("-inf")).max(dim=1).values)
    short = [i for i, row in enumerate(ids) if 0 < int((row > 0).sum()) < 16]
    cosine = F.cosine_similarity(masked[short], golden.tensors["text_embeddings"][short], dim=-1)
    assert float(cosine.min()) < 0.999


def test_score_is_the_raw_dot_product(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
    torch.testing.assert_close(model.similarity(videos, texts), videos @ texts.T, rtol=0, atol=0)
    cosine = F.normalize(videos, dim=-1) @ F.normalize(texts, dim=-1).T
    assert float((model.similarity(videos, texts) - cosine).abs().max()) > 0.1


def test_frame_spec_is_milnce_input():
    default = create_model("milnce-s3d", checkpoint=str(MAIN)).frame_spec()
    assert (default.num_frames, default.sampling, default.fps) == (32, "fps", 10.0)
    assert (default.size, default.crop) == (224, 224)
    assert default.mean == (0.0, 0.0, 0.0) and default.std == (1.0, 1.0, 1.0) and default.value_range == 1.0
    small = create_model("milnce-s3d", checkpoint=str(MAIN), num_frames=16, fps=5, size=200).frame_spec()
    assert (small.num_frames, small.fps, small.size, small.crop) == (16, 5.0, 200, 200)


def _random_net(dims: S3DDimensions, seed: int = 0) -> S3DNet:
    net = S3DNet(dims)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return net.eval()


OTHER = S3DDimensions(space_to_depth=True, conv1=4, conv_2b=6, conv_2c=10,
                      blocks=((3, 2, 5, 1, 2, 2), (4, 3, 6, 2, 3, 3), (2, 2, 3, 1, 1, 2), (3, 3, 3, 1, 2, 2),
                              (2, 2, 2, 1, 1, 1), (3, 2, 4, 2, 2, 2), (4, 4, 4, 2, 3, 3), (5, 3, 5, 2, 2, 2),
                              (6, 4, 7, 3, 3, 4)),
                      embed_dim=6, vocab_rows=12, word_dim=5, text_hidden=9)


@pytest.mark.parametrize("layout", ["wrapped", "safetensors"])
def test_other_size_reads_every_dimension_from_the_file(tmp_path, layout):
    """Odd widths everywhere, a 7-word dictionary with 12 rows; a wrapped ``module.`` file without the
    ``num_batches_tracked`` counters, or safetensors."""
    net = _random_net(OTHER)
    state = net.state_dict()
    if layout == "wrapped":
        path = tmp_path / "milnce.pth"
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        from safetensors.torch import save_file

        path = tmp_path / "milnce.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    np.save(tmp_path / "s3d_dict.npy", np.array(["cut", "the", "onion", "chef's", "x", "y", "z"]))
    model = create_model("milnce-s3d", checkpoint=str(path)).eval()
    assert model.dims == OTHER and model.dims.features == 6 + 7 + 3 + 4  # b0 + b1_b + b2_b + b3
    clips = torch.rand(2, 6, 3, 20, 24)
    with torch.inference_mode():
        videos = model.encode_video(clips)
        texts = model.encode_text(["Cut the onion", "chef's z", "nothing"])
        expected = net.encode_video(clips.permute(0, 2, 1, 3, 4))
        features = model.extract_features(clips)
    torch.testing.assert_close(videos, expected, rtol=0, atol=0)
    assert videos.shape == (2, 6) and features.shape == (2, 20) and texts.shape == (3, 6)
    assert model.tokenize(["Cut the onion"])[0, :4].tolist() == [1, 2, 3, 0]


def test_num_batches_tracked_counters_are_optional(tmp_path, golden, model):
    state = torch.load(MAIN, weights_only=True)
    assert any(key.endswith("num_batches_tracked") for key in state)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "s3d.pth")
    shutil.copy(FOLDER / "s3d_dict.npy", tmp_path / "s3d_dict.npy")
    bare = create_model("milnce-s3d", checkpoint=str(tmp_path / "s3d.pth"))
    with torch.inference_mode():
        assert torch.equal(bare.encode_video(golden.tensors["frames"]), model.encode_video(golden.tensors["frames"]))


def test_the_dictionary_is_part_of_the_fingerprint(tmp_path, model):
    shutil.copy(MAIN, tmp_path / "s3d_howto100m.pth")
    np.save(tmp_path / "other.npy", np.array(["open", "door"]))
    other = create_model("milnce-s3d", checkpoint=str(tmp_path / "s3d_howto100m.pth"),
                         word_dict=str(tmp_path / "other.npy"))
    assert other.weights_fingerprint().split(";")[0] == model.weights_fingerprint().split(";")[0]
    assert other.weights_fingerprint() != model.weights_fingerprint()


def test_word_dictionary_rules():
    """Later ids win; captions are lower-cased (Unicode too) but the dictionary is not, so "Ünï" never matches."""
    words = WordDictionary(["a", "b", "a", "Ünï", "x'y", "ünï"], max_words=3)
    assert words.encode(["A b A", "ÜNÏ x'y b a", "", "b-b"]).tolist() == [[3, 2, 3], [6, 5, 2], [0, 0, 0], [2, 2, 0]]


def test_bad_files_give_one_line(tmp_path):
    with pytest.raises(InputError, match=r"not a milnce-s3d checkpoint.*lacks conv1.conv1.weight"):
        create_model("milnce-s3d", checkpoint=str(OFFICIAL / "lavila" /
                                                  "clip_openai_timesformer_base.narrator_rephraser.ep_0005"
                                                  ".md5sum_580893.pth"))
    with pytest.raises(InputError, match=r"s3d_dict.npy.*truncated or not a checkpoint"):
        create_model("milnce-s3d", checkpoint=str(FOLDER / "s3d_dict.npy"))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(MAIN, alone / "s3d_howto100m.pth")
    with pytest.raises(InputError, match=r"alone: word_dict: milnce-s3d needs its word dictionary: no s3d_dict.npy "
                                         r"beside the checkpoint; pass word_dict=PATH"):
        create_model("milnce-s3d", checkpoint=str(alone / "s3d_howto100m.pth"))
    with pytest.raises(InputError, match=r"nowhere.npy: word_dict: word dictionary not found"):
        create_model("milnce-s3d", checkpoint=str(MAIN), word_dict=str(tmp_path / "nowhere.npy"))
    np.save(tmp_path / "objects.npy", np.array(["a", 1], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"objects.npy.*holds Python objects, which are not unpickled"):
        create_model("milnce-s3d", checkpoint=str(MAIN), word_dict=str(tmp_path / "objects.npy"))
    np.save(tmp_path / "grid.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InputError, match=r"grid.npy.*non-empty 1-D array of words.*shape \[2, 2\]"):
        create_model("milnce-s3d", checkpoint=str(MAIN), word_dict=str(tmp_path / "grid.npy"))
    (tmp_path / "words.txt").write_text("open\ndoor\n")
    with pytest.raises(InputError, match=r"words.txt.*not a NumPy .npy file"):
        create_model("milnce-s3d", checkpoint=str(MAIN), word_dict=str(tmp_path / "words.txt"))
    (tmp_path / "cut.npy").write_bytes((FOLDER / "s3d_dict.npy").read_bytes()[:140])
    with pytest.raises(InputError, match=r"cut.npy.*not a readable .npy file \(Failed to read all data"):
        create_model("milnce-s3d", checkpoint=str(MAIN), word_dict=str(tmp_path / "cut.npy"))
    state = torch.load(MAIN, weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "mixed_4e.gating_b2.fc.bias"}, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth.*missing mixed_4e.gating_b2.fc.bias"):
        create_model("milnce-s3d", checkpoint=str(tmp_path / "missing.pth"), word_dict=str(FOLDER / "s3d_dict.npy"))
    torch.save(dict(state, **{"conv1.conv1.weight": torch.zeros(8, 3, 2, 4, 4)}), tmp_path / "stem.pth")
    with pytest.raises(InputError, match=r"stem.pth.*3 input channels and kernel \[2, 4, 4\]; S3D's stems are"):
        create_model("milnce-s3d", checkpoint=str(tmp_path / "stem.pth"), word_dict=str(FOLDER / "s3d_dict.npy"))
    torch.save(dict(state, **{"mixed_4c.conv_b0.conv1.weight": torch.zeros(20, 7, 1, 1, 1)}), tmp_path / "chain.pth")
    with pytest.raises(InputError, match=r"chain.pth.*wrong shape of mixed_4c.conv_b0.conv1.weight \(file \[20, 7"):
        create_model("milnce-s3d", checkpoint=str(tmp_path / "chain.pth"), word_dict=str(FOLDER / "s3d_dict.npy"))
    torch.save(dict(state, **{"fc.weight": torch.zeros(16, 128), "fc.bias": torch.zeros(16)}), tmp_path / "fc.pth")
    with pytest.raises(InputError, match=r"fc.pth.*fc gives 16-d video embeddings but text_module.fc2 32-d"):
        create_model("milnce-s3d", checkpoint=str(tmp_path / "fc.pth"), word_dict=str(FOLDER / "s3d_dict.npy"))
    torch.save(dict(state, **{"fc.bias": torch.full((32,), float("nan"))}), tmp_path / "nan.pth")
    with pytest.raises(InputError, match=r"nan.pth.*non-finite values in fc.bias"):
        create_model("milnce-s3d", checkpoint=str(tmp_path / "nan.pth"), word_dict=str(FOLDER / "s3d_dict.npy"))


def test_a_dictionary_too_large_for_the_checkpoint_is_named_when_its_words_are_used(tmp_path):
    """The official model fails (IndexError) only when a caption uses a word beyond the embedding rows;
    so do we, in words."""
    np.save(tmp_path / "big.npy", np.array([f"w{i}" for i in range(60)]))
    model = create_model("milnce-s3d", checkpoint=str(MAIN), word_dict=str(tmp_path / "big.npy"))
    assert model.encode_text(["w1 w49"]).shape == (1, 32)
    with pytest.raises(InputError, match=r"big.npy: word_dict: milnce-s3d: the word 'w55' has id 56 in the dictionary, "
                                         r"beyond the 51 rows"):
        model.encode_text(["w1 w55"])


def test_published_tag_offline_gives_one_line(monkeypatch):
    monkeypatch.setenv("INSTRACT_EVAL_OFFLINE", "1")
    with pytest.raises(InputError, match=r"howto100m: offline and s3d_howto100m.pth is not in the cache; download "
                                         r"https://www.rocq.inria.fr/cluster-willow/amiech/howto100m/"
                                         r"s3d_howto100m.pth"):
        create_model("milnce-s3d", pretrained="howto100m")
    with pytest.raises(InputError, match=r"cannot fetch its word dictionary https://.*/s3d_dict.npy \(.*offline.*\); "
                                         r"download s3d_dict.npy and pass word_dict=PATH"):
        create_model("milnce-s3d", checkpoint=str(MAIN), word_dict="https://www.rocq.inria.fr/cluster-willow/amiech/"
                                                                    "howto100m/s3d_dict.npy")


def test_bad_arguments_give_one_line(model):
    with pytest.raises(InputError, match="frames=8 and num_frames=16 disagree"):
        create_model("milnce-s3d", checkpoint=str(MAIN), frames=8, num_frames=16)
    with pytest.raises(InputError, match="size must be a positive integer"):
        create_model("milnce-s3d", checkpoint=str(MAIN), size=0)
    with pytest.raises(InputError, match="fps must be a positive number"):
        create_model("milnce-s3d", checkpoint=str(MAIN), fps=0)
    with pytest.raises(InputError, match="max_words must be a positive integer"):
        create_model("milnce-s3d", checkpoint=str(MAIN), max_words=0)
    with pytest.raises(InputError, match="needs weights"):
        create_model("milnce-s3d")
    with pytest.raises(InputError, match=r"encode_video takes \[B, T, 3, H, W\]"):
        model.encode_video(torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match=r"space-to-depth stem needs an even frame count.*got 5 frames of 32x32"):
        model.encode_video(torch.zeros(1, 5, 3, 32, 32))
    with pytest.raises(InputError, match=r"even frame count.*got 4 frames of 32x33"):
        model.extract_features(torch.zeros(1, 4, 3, 32, 33))
