"""Sliding-window localization of dual encoders: window placement and run merging worked by hand,
and windows that go through the run's encoder (batched, cached, counted) like every clip."""

from __future__ import annotations

import numpy as np
import pytest

from instract_eval.adapters.baselines import RandomModel
from instract_eval.adapters.protocols import Segment
from instract_eval.encoding import Encoder, OutputCache
from instract_eval.errors import InputError
from instract_eval.media import ClipRequest
from instract_eval.synth.render import write_mp4
from instract_eval.tasks.sliding_window import (WindowSettings, merge_windows, sliding_window_segments,
                                                window_settings, window_starts)


def test_windows_cover_the_video_and_the_last_one_ends_at_the_end():
    assert window_starts(3.0, 1.0, 0.5).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert window_starts(3.2, 1.0, 0.5).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.2]
    assert window_starts(0.6, 1.0, 0.5).tolist() == [0.0]  # shorter than a window: one window
    with pytest.raises(ValueError):
        window_starts(3.0, 0.0, 0.5)


def test_runs_of_one_top_class_become_one_segment_scored_by_their_mean():
    starts = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    probabilities = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    segments = merge_windows(starts, 1.0, 2.8, probabilities, ["grow", "shrink"])
    assert segments == [Segment(0.0, 1.5, "grow", pytest.approx(0.8)),
                        Segment(1.0, 2.5, "shrink", pytest.approx(0.7)),
                        Segment(2.0, 2.8, "grow", pytest.approx(0.6))]  # clipped to the duration


class Windowed(RandomModel):
    """The random dual encoder with sliding-window settings, counting its video batches."""

    sliding_window = {"window_s": 1.0, "stride_s": 0.5}

    def __init__(self):
        super().__init__(seed=0)
        self.batches: list[int] = []

    def encode_video(self, clips):
        self.batches.append(len(clips))
        return super().encode_video(clips)


@pytest.fixture
def video(tmp_path):
    frames = np.zeros((24, 32, 32, 3), dtype=np.uint8)
    frames[:, 8:16, 8:16] = 200
    frames[12:, 8:16, 16:24] = 90
    write_mp4(tmp_path / "v.mp4", frames, 8)
    return tmp_path / "v.mp4"


def test_windows_go_through_the_encoder_batched_and_cached(video, tmp_path):
    model = Windowed()
    settings = window_settings(model, {})
    assert settings == WindowSettings(window_s=1.0, stride_s=0.5, tau=0.05, text="name")
    encoder = Encoder(model, batch_size=2, cache=OutputCache(tmp_path / "cache", "fingerprint"))
    segments = sliding_window_segments(encoder, [("v", video)], ["a", "b"], None, settings)[0]
    assert segments and all(0.0 <= s.start < s.end <= 3.0 and s.label in ("a", "b") for s in segments)
    assert all(0.5 <= s.score <= 1.0 for s in segments)  # a run's top-class probability, of two classes
    # 3 s, windows of 1 s every 0.5 s: 5 windows, encoded 2 at a time.
    assert encoder.counts["videos_encoded"] == 5 and model.batches == [2, 2, 1]
    # A second encoder on the same cache decodes nothing and answers the same.
    again = Encoder(Windowed(), batch_size=2, cache=OutputCache(tmp_path / "cache", "fingerprint"))
    assert sliding_window_segments(again, [("v", video)], ["a", "b"], None, settings)[0] == segments
    assert again.counts["videos_reused"] == 5 and again.model.batches == []


def test_the_scores_are_a_softmax_of_window_cosines_over_tau(video):
    model = Windowed()
    settings = WindowSettings(window_s=3.0, stride_s=3.0, tau=0.5)  # one window: the whole video
    encoder = Encoder(model)
    [segment] = sliding_window_segments(encoder, [("v", video)], ["a", "b"], None, settings)[0]
    window = encoder.videos([ClipRequest(str(video), 0.0, 3.0, video_id="v")], model.frame_spec()).embeddings
    window = next(iter(window.values()))
    texts = model.encode_text(["a", "b"]).numpy()
    cosines = texts @ window / np.linalg.norm(window) / np.linalg.norm(texts, axis=1)
    expected = np.exp(cosines / 0.5) / np.exp(cosines / 0.5).sum()
    assert segment.label == ["a", "b"][int(expected.argmax())]
    assert segment.score == pytest.approx(float(expected.max()), rel=1e-5)


def test_description_text_and_settings_errors(video):
    model = Windowed()
    encoder = Encoder(model)
    by_name = sliding_window_segments(encoder, [("v", video)], ["a", "b"], {"a": "grow", "b": "move left"},
                                      WindowSettings(text="name"))
    by_description = sliding_window_segments(encoder, [("v", video)], ["a", "b"], {"a": "grow", "b": "move left"},
                                             WindowSettings(text="description"))
    assert by_name != by_description  # the random model's texts differ, so the answers do
    with pytest.raises(InputError, match="unknown settings \\['width'\\]"):
        window_settings(model, {"width": 2})
    with pytest.raises(InputError, match="sliding_window.tau must be a positive number"):
        window_settings(model, {"tau": 0})
    with pytest.raises(InputError, match="cannot read a feature file"):
        sliding_window_segments(encoder, [("v", video.with_suffix(".npy"))], ["a"], None, WindowSettings())
