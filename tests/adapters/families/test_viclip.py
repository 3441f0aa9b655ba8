"""``viclip`` equals the official ViCLIP (github.com/OpenGVLab/InternVideo at 3965eef16e2dadd0ea6c8d0cc29c8a3039df52e3,
``Data/InternVid/viclip/``).

``tests/data/official/viclip`` holds a tiny ViCLIP (embed 64; video ViT width 128, 2 heads, 2 layers,
patch 8 on 32 px, 8-frame temporal embedding; text width 64 x 2 layers, context 32, the real
49,408-token vocabulary) saved as ``{'model': state_dict}`` under the published file name, and the
outputs of the official ``ViCLIP.get_vid_features`` / ``get_text_features`` (both normalised) and of
``get_predict_label``'s logits (``100 * cosine``), written by ``make_golden.py``. The 1-, 4- and
16-frame outputs come from the official forward (1 frame: mean temporal row) and from the official
evaluation loader's resizing of the temporal embedding (first rows / linear interpolation).
"""

from __future__ import annotations

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "viclip"
FILE = FOLDER / "ViClip-InternVid-10M-FLT.pth"


@pytest.fixture(scope="module")
def golden():
    return load_golden("viclip")


@pytest.fixture(scope="module")
def model():
    return create_model("viclip", checkpoint=str(FILE)).eval()


def test_equals_official_viclip(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    assert_scores(scores, golden.tensors["similarity"], scale=100.0)
    assert torch.allclose(videos.norm(dim=-1), torch.ones(3)) and torch.allclose(texts.norm(dim=-1), torch.ones(4))


def test_tokens_equal_official_tokenize(golden):
    """Context 32: the long caption keeps its first 31 ids and ends with the end token."""
    assert torch.equal(openai_tokenize(golden.captions, 32).float(), golden.tensors["text_tokens"])


def test_other_frame_counts_follow_the_official_rules(golden, model):
    frames = golden.tensors["frames"]
    with torch.inference_mode():
        single = model.encode_video(frames[:, :1])
        fewer = model.encode_video(frames[:, ::2])
        more = model.encode_video(torch.cat([frames, frames.flip(1)], dim=1))
    assert_matches(single, golden.tensors["video_embeddings_1f"], "1 frame (mean temporal row)")
    assert_matches(fewer, golden.tensors["video_embeddings_4f"], "4 frames (first rows)")
    assert_matches(more, golden.tensors["video_embeddings_16f"], "16 frames (linear interpolation)")


def test_frame_spec_is_the_demo_preprocessing(model):
    spec = model.frame_spec()
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation) == (8, 32, None, "squash",
                                                                                        "bilinear")
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert create_model("viclip", checkpoint=str(FILE), num_frames=16).frame_spec().num_frames == 16
    with pytest.raises(InputError, match="frames=4 and num_frames=16 disagree"):
        create_model("viclip", checkpoint=str(FILE), frames=4, num_frames=16)


def _tiny_state(generator: torch.Generator):
    from instract_eval.adapters.video_text.viclip import ViclipDimensions, ViclipNet

    dims = ViclipDimensions(embed_dim=24, vision_width=64, vision_layers=3, vision_heads=1, patch_size=4,
                            image_size=16, checkpoint_frames=4, context_length=16, vocab_size=49408, text_width=32,
                            text_layers=1, text_heads=1)
    state = {key: torch.randn(value.shape, generator=generator) * 0.1
             for key, value in ViclipNet(dims).state_dict().items()}
    state["temp"] = torch.tensor(0.01)
    return state


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """Width 64 x 3 layers, patch 4 on 16 px, 4-frame table, text width 32, context 16, 24-d embeddings."""
    torch.save({"model": _tiny_state(torch.Generator().manual_seed(0))}, tmp_path / "ViCLIP-T.pth")
    model = create_model("viclip", checkpoint=str(tmp_path / "ViCLIP-T.pth")).eval()
    with torch.inference_mode():
        assert model.encode_video(torch.randn(2, 4, 3, 16, 16)).shape == (2, 24)
        assert model.encode_video(torch.randn(1, 6, 3, 16, 16)).shape == (1, 24)
        assert model.encode_text(["a b c " * 20, "open the jar"]).shape == (2, 24)
    assert (model.frame_spec().num_frames, model.frame_spec().size) == (4, 16)
    with pytest.raises(InputError, match=r"frames of 32x32 pixels give 64 patches; .* 16x16"):
        model.encode_video(torch.randn(1, 4, 3, 32, 32))


def test_bad_checkpoints_give_one_line(tmp_path):
    state = torch.load(FILE)["model"]
    torch.save({"model": {k: v for k, v in state.items() if k != "vision_encoder.ln_post.weight"}},
               tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth.*missing vision_encoder.ln_post.weight"):
        create_model("viclip", checkpoint=str(tmp_path / "missing.pth"))
    torch.save({"model": dict(state, **{"text_encoder.ln_final.bias": torch.zeros(3)})}, tmp_path / "shaped.pth")
    with pytest.raises(InputError, match=r"shaped.pth.*wrong shape of text_encoder.ln_final.bias "
                                         r"\(file \[3\], model \[64\]\)"):
        create_model("viclip", checkpoint=str(tmp_path / "shaped.pth"))
    torch.save({"model": dict(state, **{"vision_encoder.extra.weight": torch.zeros(3)})}, tmp_path / "extra.pth")
    with pytest.raises(InputError, match=r"extra.pth.*unexpected vision_encoder.extra.weight"):
        create_model("viclip", checkpoint=str(tmp_path / "extra.pth"))
    other = OFFICIAL / "internvideo" / "InternVideo-MM-L-14.ckpt"
    with pytest.raises(InputError, match=r"InternVideo-MM-L-14.ckpt.*not a viclip checkpoint: it lacks "
                                         r"vision_encoder.temporal_positional_embedding"):
        create_model("viclip", checkpoint=str(other))
