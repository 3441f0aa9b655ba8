"""The sliding-window localizer: window placement and run merging, worked by hand, and a real video."""

from __future__ import annotations

import numpy as np
import pytest

from instract_eval.adapters.baselines import RandomModel
from instract_eval.adapters.protocols import Segment
from instract_eval.adapters.sliding_window import merge_windows, sliding_window_localize, window_starts
from instract_eval.errors import InputError
from instract_eval.synth.render import write_mp4


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


def test_a_real_video_gets_segments_inside_it_for_the_given_classes(tmp_path):
    frames = np.zeros((24, 32, 32, 3), dtype=np.uint8)
    frames[:, 8:16, 8:16] = 200
    frames[12:, 8:16, 16:24] = 90
    write_mp4(tmp_path / "v.mp4", frames, 8)
    model = RandomModel(seed=0)
    segments = sliding_window_localize(model, str(tmp_path / "v.mp4"), {"a": "move left", "b": "grow"},
                                       window_s=1.0, stride_s=0.5)
    assert segments and all(0.0 <= s.start < s.end <= 3.0 and s.label in ("a", "b") for s in segments)
    assert all(0.5 <= s.score <= 1.0 for s in segments)  # a run's top-class probability, of two classes
    assert sliding_window_localize(model, str(tmp_path / "v.mp4"), {"a": "move left", "b": "grow"},
                                   window_s=1.0, stride_s=0.5) == segments
    with pytest.raises(InputError, match="cannot read a feature file"):
        sliding_window_localize(model, str(tmp_path / "v.npy"), {"a": "x"})
