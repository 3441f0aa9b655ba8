"""FrameSpec and ClipRequest: validation, equality and the stable keys used for caching."""

from __future__ import annotations

import pytest

from instract_eval.media import (
    CLIP_MEAN,
    ClipRequest,
    FrameSpec,
    ace_frame_spec,
    clip_key,
    instract_frame_spec,
)


def test_spec_key_is_exact_and_stable() -> None:
    spec = FrameSpec(num_frames=16, sampling="uniform", fps=5, size=224, crop=224)
    assert spec.key() == (
        "framespec/v1;frames=16;sampling=uniform;fps=5.0;size=224;crop=224;"
        "mean=0.48145466,0.4578275,0.40821073;std=0.26862954,0.26130258,0.27577711"
    )
    assert len(spec.fingerprint()) == 16
    assert spec.fingerprint() == FrameSpec(16, "uniform", 5.0).fingerprint()


def test_equal_specs_are_equal_and_hash_alike() -> None:
    a = FrameSpec(8, "fps", fps=10, mean=[0.5, 0.5, 0.5], std=(1, 1, 1))
    b = FrameSpec(8, "fps", fps=10.0, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0))
    assert a == b and hash(a) == hash(b) and a.key() == b.key()
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"num_frames": 8},
        {"sampling": "fps"},
        {"fps": 10.0},
        {"size": 256},
        {"crop": None},
        {"mean": (0.5, 0.5, 0.5)},
        {"std": (0.5, 0.5, 0.5)},
    ],
)
def test_every_field_changes_the_key(change: dict) -> None:
    base = dict(num_frames=16, sampling="uniform", fps=5.0, size=224, crop=224)
    assert FrameSpec(**{**base, **change}).key() != FrameSpec(**base).key()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_frames": 0},
        {"num_frames": 2.0},
        {"num_frames": 4, "sampling": "random"},
        {"num_frames": 4, "sampling": "fps"},
        {"num_frames": 4, "fps": 0},
        {"num_frames": 4, "fps": float("nan")},
        {"num_frames": 4, "size": 0},
        {"num_frames": 4, "size": 100, "crop": 128},
        {"num_frames": 4, "mean": (0.5, 0.5)},
        {"num_frames": 4, "std": (1.0, 0.0, 1.0)},
    ],
)
def test_invalid_specs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FrameSpec(**kwargs)


def test_protocol_presets() -> None:
    instract = instract_frame_spec()
    assert (instract.num_frames, instract.sampling, instract.fps, instract.size, instract.crop) == (16, "uniform", 5.0, 224, 224)
    assert instract.mean == CLIP_MEAN
    assert instract.clip_duration_s is None
    ata, ikea, gtea = (ace_frame_spec(name) for name in ("ata", "IKEA", "gtea"))
    assert (ata.num_frames, ata.clip_duration_s) == (30, 3.0)
    assert (ikea.num_frames, ikea.clip_duration_s) == (25, 2.0)
    assert (gtea.num_frames, gtea.clip_duration_s) == (15, 1.0)
    with pytest.raises(ValueError, match="unknown ACE dataset"):
        ace_frame_spec("kinetics")


def test_request_key_names_every_field() -> None:
    request = ClipRequest("/videos/abc.mp4", start=1, end=2.5, context_s=5, min_clip_s=5, num_clips=3, reverse=True)
    assert request.key() == "/videos/abc.mp4@1.0-2.5;ctx=5.0;min=5.0;clips=3;reversed"
    assert ClipRequest("/elsewhere/abc.mp4", 1, 2.5, video_id="abc").key() == "abc@1.0-2.5;ctx=0.0;min=0.0;clips=1"
    assert ClipRequest("v.mp4").key() == "v.mp4@0.0-end;ctx=0.0;min=0.0;clips=1"
    assert request.key() != ClipRequest("/videos/abc.mp4", 1, 2.5, 5, 5, 3, reverse=False).key()


def test_clip_key_joins_request_and_spec() -> None:
    request, spec = ClipRequest("v.mp4", 0, 1), FrameSpec(4)
    assert clip_key(request, spec) == f"{request.key()}#{spec.key()}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": 2.0, "end": 1.0},
        {"start": float("nan"), "end": 1.0},
        {"end": float("inf")},
        {"context_s": -1.0},
        {"min_clip_s": -0.5},
        {"num_clips": 0},
        {"num_clips": True},
    ],
)
def test_invalid_requests_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClipRequest("v.mp4", **kwargs)
