"""``internvideo`` equals the official InternVideo v1 multimodal code (github.com/OpenGVLab/InternVideo at
3965eef16e2dadd0ea6c8d0cc29c8a3039df52e3, ``InternVideo1/Pretrain/Multi-Modalities-Pretraining/InternVideo``).

``tests/data/official/internvideo`` holds a tiny model (embed 64; per-frame ViT width 128, 2 heads,
2 layers, patch 8 on 32 px, one global-branch extractor on the last layer; text width 64 x 2
layers, context 77, the real 49,408-token vocabulary) saved as the Lightning checkpoint the training
code writes (``{'state_dict': {'clip.…'}, 'epoch', 'hyper_parameters', ...}``) under the published
file name, and the outputs of the official ``load_model`` network: ``encode_video`` and
``encode_text`` (raw) and ``demo.py``'s score ``exp(logit_scale) * cosine``, written by
``make_golden.py``. The 4- and 16-frame outputs come from the official model built with
``t_size`` 4 and 16.
"""

from __future__ import annotations

import pytest
import torch

from instract_eval.adapters import create_model
from instract_eval.adapters.core.tokenizers import openai_tokenize
from instract_eval.errors import InputError

from .golden import OFFICIAL, assert_matches, assert_scores, load_golden

FOLDER = OFFICIAL / "internvideo"
FILE = FOLDER / "InternVideo-MM-L-14.ckpt"


@pytest.fixture(scope="module")
def golden():
    return load_golden("internvideo")


@pytest.fixture(scope="module")
def model():
    return create_model("internvideo", checkpoint=str(FILE)).eval()


def test_equals_official_internvideo(golden, model):
    with torch.inference_mode():
        videos = model.encode_video(golden.tensors["frames"])
        texts = model.encode_text(golden.captions)
        scores = model.similarity(videos, texts)
    assert_matches(videos, golden.tensors["video_embeddings"], "video")
    assert_matches(texts, golden.tensors["text_embeddings"], "text")
    scale = float(golden.metadata["logit_scale_exp"])
    assert abs(float(model.net.logit_scale.detach().exp()) - scale) < 1e-5
    assert_scores(scores, golden.tensors["similarity"], scale=scale)
    # Raw embeddings, as the official encode_video / encode_text return them.
    assert torch.allclose(videos, golden.tensors["video_embeddings"], atol=1e-4)


def test_tokens_equal_official_tokenize(golden):
    """Context 77, truncate=True: the long caption keeps its first 76 ids and ends with the end token."""
    assert torch.equal(openai_tokenize(golden.captions, 77).float(), golden.tensors["text_tokens"])


def test_other_frame_counts_equal_the_official_model_built_for_them(golden, model):
    frames = golden.tensors["frames"]
    with torch.inference_mode():
        fewer = model.encode_video(frames[:, ::2])
        more = model.encode_video(torch.cat([frames, frames.flip(1)], dim=1))
    assert_matches(fewer, golden.tensors["video_embeddings_4f"], "4 frames")
    assert_matches(more, golden.tensors["video_embeddings_16f"], "16 frames")


def test_frame_spec_is_load_video(model):
    spec = model.frame_spec()
    # 224-px models: shorter side 256, crop 224; this 32-px model scales alike (37, 32).
    assert (spec.num_frames, spec.size, spec.crop, spec.resize, spec.interpolation) == (8, 37, 32, "short_side",
                                                                                        "bilinear")
    assert spec.mean == (0.48145466, 0.4578275, 0.40821073)
    assert create_model("internvideo", checkpoint=str(FILE), frames=16).frame_spec().num_frames == 16


def _tiny_state(generator: torch.Generator):
    from instract_eval.adapters.video_text.internvideo import InternVideoDimensions, InternVideoNet

    dims = InternVideoDimensions(embed_dim=24, vision_width=64, vision_layers=3, vision_heads=1, extractor_layers=2,
                                 extractor_mlp=256, patch_size=4, image_size=16, context_length=16, vocab_size=49408,
                                 text_width=32, text_layers=1, text_heads=1)
    return {key: torch.randn(value.shape, generator=generator) * 0.1
            for key, value in InternVideoNet(dims).state_dict().items()}


def test_other_size_reads_every_dimension_from_the_file(tmp_path):
    """Width 64 x 3 layers with extractors on the last 2, patch 4 on 16 px, text width 32, context 16;
    keys outside ``clip.`` (the captioning decoder of the real file) are ignored, as load_model does."""
    state = {f"clip.{k}": v for k, v in _tiny_state(torch.Generator().manual_seed(0)).items()}
    state["clip.text_mask_embedding"] = torch.zeros(1, 1, 32)
    state["caption_decoder.predictor.4.weight"] = torch.zeros(7, 32)
    torch.save({"epoch": 1, "global_step": 10, "state_dict": state, "hyper_parameters": {"config": {"seed": 0}}},
               tmp_path / "InternVideo-MM-T.ckpt")
    model = create_model("internvideo", checkpoint=str(tmp_path / "InternVideo-MM-T.ckpt")).eval()
    assert (model.dims.vision_layers, model.dims.extractor_layers) == (3, 2)
    with torch.inference_mode():
        assert model.encode_video(torch.randn(2, 4, 3, 16, 16)).shape == (2, 24)
        assert model.encode_video(torch.randn(1, 1, 3, 16, 16)).shape == (1, 24)
        assert model.encode_text(["a b c " * 20, "open the jar"]).shape == (2, 24)
    assert (model.frame_spec().size, model.frame_spec().crop) == (18, 16)


def test_bad_checkpoints_give_one_line(tmp_path):
    checkpoint = torch.load(FILE)
    state = checkpoint["state_dict"]

    def save(name: str, weights: dict) -> str:
        torch.save(dict(checkpoint, state_dict=weights), tmp_path / name)
        return str(tmp_path / name)

    missing = save("missing.ckpt", {k: v for k, v in state.items() if k != "clip.visual_ln_post.weight"})
    with pytest.raises(InputError, match=r"missing.ckpt.*missing visual_ln_post.weight"):
        create_model("internvideo", checkpoint=missing)
    shaped = save("shaped.ckpt", dict(state, **{"clip.visual.transformer.balance": torch.zeros(3)}))
    with pytest.raises(InputError, match=r"shaped.ckpt.*wrong shape of visual.transformer.balance "
                                         r"\(file \[3\], model \[128\]\)"):
        create_model("internvideo", checkpoint=shaped)
    no_dpe = save("no_dpe.ckpt", {k: v for k, v in state.items() if ".dpe." not in k})
    with pytest.raises(InputError, match=r"no_dpe.ckpt.*1 visual.transformer.dec and 0 dpe modules"):
        create_model("internvideo", checkpoint=no_dpe)
    other = OFFICIAL / "viclip" / "ViClip-InternVid-10M-FLT.pth"
    with pytest.raises(InputError, match=r"ViClip-InternVid-10M-FLT.pth.*not a internvideo checkpoint: it lacks "
                                         r"visual.transformer.temporal_cls_token"):
        create_model("internvideo", checkpoint=str(other))
