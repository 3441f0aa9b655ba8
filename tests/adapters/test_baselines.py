"""The built-in ``random`` (chance) and ``null`` (overhead) adapters."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from instract_eval.adapters.baselines import NullModel, RandomModel
from instract_eval.adapters.protocols import DUAL_ENCODER, LOCALIZER, TOKEN_ENCODER, Segment, capabilities_of
from instract_eval.adapters.registry import create_model
from instract_eval.errors import InputError
from instract_eval.media import FrameSpec, probe_video
from tests.media.test_fixture_videos import write_video


def clips(batch: int, frames: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 3, size, size, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 3 s MP4 (30 frames at 10 fps)."""
    return write_video(tmp_path_factory.mktemp("videos") / "clip_a.mp4", 30, fps=10)


@pytest.mark.parametrize("name, cls", [("random", RandomModel), ("null", NullModel)])
def test_capabilities(name, cls):
    model = create_model(name)
    assert isinstance(model, cls)
    assert model.name == name
    assert set(capabilities_of(model)) == {DUAL_ENCODER, TOKEN_ENCODER, LOCALIZER}
    assert not hasattr(model, "weights_fingerprint")


def test_frame_specs():
    assert create_model("random", frames=4, size=16).frame_spec() == FrameSpec(
        num_frames=4, sampling="uniform", size=16, crop=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    spec = create_model("null").frame_spec()
    assert (spec.num_frames, spec.sampling, spec.size, spec.crop) == (8, "uniform", 224, 224)


@pytest.mark.parametrize("name, kwargs", [
    ("random", {"dim": 0}), ("random", {"seed": -1}), ("random", {"frames": "8"}), ("random", {"size": True}),
    ("random", {"feature_fps": 0}), ("random", {"feature_fps": "fast"}), ("null", {"dim": -2}),
])
def test_bad_argument_values(name, kwargs):
    with pytest.raises(InputError) as caught:
        create_model(name, **kwargs)
    assert caught.value.field == "--model-args"
    assert next(iter(kwargs)) in caught.value.message


# ------------------------------------------------------------------------------------------------
# random: video and text


def test_random_video_embedding_is_batch_invariant_bitwise():
    model = create_model("random", seed=5)
    data = clips(32)
    with torch.inference_mode():
        whole = model.encode_video(data)
        by_three = torch.cat([model.encode_video(data[i:i + 3]) for i in range(0, 32, 3)])
        by_one = torch.cat([model.encode_video(data[i:i + 1]) for i in range(32)])
    assert whole.shape == (32, 64) and whole.dtype == torch.float32
    assert torch.equal(whole, by_three)
    assert torch.equal(whole, by_one)
    assert torch.allclose(whole.norm(dim=1), torch.ones(32))


def test_random_tokens_are_batch_invariant_and_per_frame():
    model = create_model("random", dim=16)
    data = clips(6, frames=5)
    tokens = model.encode_video_tokens(data)
    assert tokens.shape == (6, 5, 16)
    assert torch.equal(tokens, torch.cat([model.encode_video_tokens(data[i:i + 1]) for i in range(6)]))
    swapped = data[:, [1, 0, 2, 3, 4]]  # a frame's token depends on that frame only
    assert torch.equal(model.encode_video_tokens(swapped)[:, 0], tokens[:, 1])


def test_random_video_embedding_depends_on_content_and_seed_only():
    data = clips(4)
    first = create_model("random", seed=1).encode_video(data)
    assert torch.equal(first, create_model("random", seed=1).encode_video(data))  # a new instance agrees
    assert not torch.equal(first, create_model("random", seed=2).encode_video(data))
    assert not torch.allclose(first[0], first[1])  # different clips differ
    assert create_model("random").encode_video(clips(2, frames=16)).shape == (2, 64)  # other clip lengths work
    assert create_model("random").encode_video(clips(0)).shape == (0, 64)


def test_random_text_embedding_is_stable_and_batch_free():
    model = create_model("random", seed=0, dim=32)
    texts = [f"cut the {thing}" for thing in ("onion", "bread", "paper", "rope")]
    together = model.encode_text(texts)
    assert together.shape == (4, 32)
    assert torch.equal(together, model.encode_text(texts))
    assert torch.equal(together[2], model.encode_text([texts[2]])[0])
    assert torch.equal(together[1], create_model("random", seed=0, dim=32).encode_text(["x", texts[1]])[1])
    assert not torch.equal(together[0], create_model("random", seed=1, dim=32).encode_text(texts[:1])[0])
    assert not torch.allclose(together[0], together[1])
    assert torch.allclose(together.norm(dim=1), torch.ones(4))
    assert model.encode_text([]).shape == (0, 32)


# ------------------------------------------------------------------------------------------------
# random: localization


CLASSES = [f"action {i}" for i in range(20)]


def test_random_localize_segments_inside_the_video_and_deterministic(video, tmp_path):
    model = create_model("random", seed=3)
    duration = probe_video(video).duration
    segments = model.localize(str(video), CLASSES, None)
    assert segments, "20 classes with 0-3 segments each should give some"
    assert all(isinstance(segment, Segment) for segment in segments)
    assert {segment.label for segment in segments} <= set(CLASSES)
    assert all(0.0 <= s.start <= s.end <= duration and 0.0 <= s.score <= 1.0 for s in segments)
    assert all(sum(s.label == label for s in segments) <= 3 for label in CLASSES)

    assert model.localize(str(video), CLASSES, None) == segments
    assert create_model("random", seed=3).localize(str(video), CLASSES, {c: "text" for c in CLASSES}) == segments
    # A class's draws depend on (seed, file name, class) only: not on the other classes or the directory.
    reversed_segments = model.localize(str(video), CLASSES[::-1], None)
    assert sorted(reversed_segments, key=repr) == sorted(segments, key=repr)
    assert model.localize(str(video), CLASSES[5:6], None) == [s for s in segments if s.label == CLASSES[5]]
    moved = tmp_path / video.name
    shutil.copy(video, moved)
    assert model.localize(str(moved), CLASSES, None) == segments
    assert create_model("random", seed=4).localize(str(video), CLASSES, None) != segments


def test_random_localize_feature_file(tmp_path):
    path = tmp_path / "video_b.npy"
    np.save(path, np.zeros((50, 8), dtype=np.float32))
    segments = create_model("random", feature_fps=5).localize(str(path), CLASSES, None)
    assert segments and all(0.0 <= s.start <= s.end <= 10.0 for s in segments)
    with pytest.raises(InputError) as caught:
        create_model("random").localize(str(path), CLASSES, None)
    assert caught.value.field == "--model-args" and caught.value.path == str(path)
    assert "feature_fps" in caught.value.message


def test_random_localize_missing_video_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        create_model("random").localize(str(tmp_path / "absent.mp4"), CLASSES, None)


# ------------------------------------------------------------------------------------------------
# null


def test_null_returns_zeros_on_the_input_device(video):
    model = create_model("null", dim=5)
    data = clips(3, frames=4, size=8)
    assert torch.equal(model.encode_video(data), torch.zeros(3, 5))
    assert torch.equal(model.encode_video_tokens(data), torch.zeros(3, 4, 5))
    assert torch.equal(model.encode_text(["a", "b"]), torch.zeros(2, 5))
    assert model.localize(str(video), CLASSES, None) == []
    # The pixels are never read: a tensor without storage works, and the output stays on its device.
    meta = torch.empty(2, 4, 3, 224, 224, device="meta")
    assert model.encode_video(meta).device.type == "meta" and model.encode_video(meta).shape == (2, 5)
    assert model.encode_video_tokens(meta).device.type == "meta"
    if torch.cuda.is_available():
        assert model.encode_video(data.cuda()).device.type == "cuda"
