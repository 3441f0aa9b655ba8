"""The multiple-choice engine end to end: real MP4 files, real decoding, a stand-in dual encoder."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from instract_eval.encoding import Encoder
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest, FrameSpec
from instract_eval.tasks.mcq import MCQItem, evaluate_mcq


def write_ramp(path, *, rising: bool, frames: int = 20, fps: int = 10):
    """A grey video getting brighter (or darker) frame by frame."""
    return write_levels(path, [40 + 8 * (i if rising else frames - 1 - i) for i in range(frames)], fps=fps)


def write_levels(path, levels, fps: int = 10):
    """A 32x32 grey MP4 whose frame ``i`` has grey level ``levels[i]``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for level in levels:
            image = np.full((32, 32, 3), level, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class BrightnessModel:
    """Embeds a clip as (darkening, brightening) and the words 'brighten'/'darken' likewise."""

    name = "brightness-stand-in"

    def frame_spec(self):
        return FrameSpec(num_frames=4, size=None, crop=None)

    def encode_video(self, clips):
        level = clips.mean(dim=(2, 3, 4))  # [B, T]
        change = level[:, -1] - level[:, 0]
        return torch.stack([(-change).clamp(min=0), change.clamp(min=0)], dim=1) + 1e-3

    def encode_text(self, texts):
        return torch.tensor([[0.0, 1.0] if "brighten" in t else [1.0, 0.0] for t in texts])


@pytest.fixture
def videos(tmp_path):
    return {"up": write_ramp(tmp_path / "up.mp4", rising=True), "down": write_ramp(tmp_path / "down.mp4", rising=False)}


PROTOCOL = {"frames": 4, "sampling": "uniform"}


def test_video_against_texts_and_text_against_original_and_reversed_video(videos):
    up, down = (ClipRequest(str(videos[k]), 0.0, 2.0, video_id=k) for k in ("up", "down"))
    items = [
        MCQItem(up, ("it brightens", "it darkens"), sample_id="aa-up"),
        MCQItem(down, ("it darkens", "it brightens"), sample_id="aa-down"),
        # VR: the text against [clip, clip reversed]; the reversed 'up' clip darkens.
        MCQItem("it brightens", (up, ClipRequest(str(videos["up"]), 0.0, 2.0, reverse=True, video_id="up")),
                sample_id="vr-up"),
        MCQItem("it darkens", (up, down), answer=1, sample_id="pick-down"),
    ]
    result = evaluate_mcq(Encoder(BrightnessModel()), items, task="probe", protocol=PROTOCOL)
    assert result["metrics"]["accuracy"] == 1.0
    assert result["coverage"] == {"evaluated": 4, "total": 4, "fraction": 1.0, "failed_videos": {}}
    vr = next(s for s in result["samples"] if s["id"] == "vr-up")
    assert vr["scores"][0] > vr["scores"][1]


def test_masked_candidates_and_wrong_answers(videos):
    up = ClipRequest(str(videos["up"]), 0.0, 2.0)
    items = [
        MCQItem(up, ("darken", "brighten", "darken"), sample_id="three"),  # answer 0 is wrong: rank 3 (tie 2-3)
        MCQItem(up, ("brighten", "darken"), sample_id="two"),
    ]
    metrics = evaluate_mcq(Encoder(BrightnessModel()), items, task="probe", protocol=PROTOCOL)["metrics"]
    # Item 1: the answer ties with the other 'darken' candidate behind 'brighten': rank 2.5 (expected).
    assert metrics["mean_rank"] == pytest.approx((2.5 + 1) / 2)
    assert metrics["accuracy"] == 0.5
    assert metrics["num_tied"] == 1


def test_missing_video_is_an_error_unless_allowed_and_then_counted(videos, tmp_path):
    up = ClipRequest(str(videos["up"]), 0.0, 2.0)
    gone = ClipRequest(str(tmp_path / "gone.mp4"), 0.0, 2.0)
    items = [MCQItem(up, ("brighten", "darken")), MCQItem(gone, ("brighten", "darken"))]
    with pytest.raises(InputError, match="gone.mp4"):
        evaluate_mcq(Encoder(BrightnessModel()), items, task="probe", protocol=PROTOCOL)
    result = evaluate_mcq(Encoder(BrightnessModel(), allow_missing=True), items, task="probe", protocol=PROTOCOL)
    assert (result["coverage"]["evaluated"], result["coverage"]["total"]) == (1, 2)
    assert list(result["coverage"]["failed_videos"]) == [gone.key()]


class TextOnly:
    name = "text-only"

    def localize(self, video, classes, descriptions):
        return []


def test_a_model_without_the_capability_fails_before_decoding(tmp_path):
    items = [MCQItem(ClipRequest(str(tmp_path / "never-opened.mp4")), ("a", "b"))]
    with pytest.raises(InputError, match="needs a dual encoder or pair scorer model; text-only provides: localizer"):
        evaluate_mcq(Encoder(TextOnly()), items, task="probe", protocol=PROTOCOL)


def test_nan_embeddings_name_the_items(videos):
    class NaNModel(BrightnessModel):
        def encode_video(self, clips):
            return torch.full((clips.shape[0], 2), float("nan"))

    with pytest.raises(InputError, match="NaN or inf video embeddings"):
        evaluate_mcq(Encoder(NaNModel()), [MCQItem(ClipRequest(str(videos["up"])), ("a", "b"))], task="probe",
                     protocol=PROTOCOL)
