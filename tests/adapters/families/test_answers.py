"""The timestamp parser of generative localizers (`instract_eval.adapters.generative.answers`)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instract_eval.adapters.generative.answers import parse_segments, parse_times

def _flat(segments):
    assert segments is not None
    return [value for segment in segments for value in segment]


def assert_segments(got, expected, tolerance=1e-6):
    """Segments equal in count and in every bound (pytest.approx does not compare nested tuples)."""
    assert got is not None and len(got) == len(expected), (got, expected)
    assert _flat(got) == pytest.approx(_flat(expected), abs=tolerance, rel=1e-9)


SHAPES = [
    ("from 5 to 9", [(5.0, 9.0)]),
    ("The person cuts the onion from 5.5s to 10s.", [(5.5, 10.0)]),
    ("between 1.5 and 3 seconds", [(1.5, 3.0)]),
    ("00:05 - 00:10", [(5.0, 10.0)]),
    ("0:05–0:10", [(5.0, 10.0)]),
    ("01:02:03.5 to 01:02:10", [(3723.5, 3730.0)]),
    ("5-9s", [(5.0, 9.0)]),
    ("5 ~ 9 sec", [(5.0, 9.0)]),
    ("1 to 3 minutes", [(60.0, 180.0)]),
    ("1.5 min until 2 min", [(90.0, 120.0)]),
    ("start 3.0, end 7.5", [(3.0, 7.5)]),
    ("9 to 5", [(5.0, 9.0)]),
    ("12.5s–20s and 30 - 40", [(12.5, 20.0), (30.0, 40.0)]),
    ("It happens twice: 1:00 to 1:10, then 2:00 to 2:30.", [(60.0, 70.0), (120.0, 150.0)]),
    ("At 3 seconds and again till 8 seconds", [(3.0, 8.0)]),
]


@pytest.mark.parametrize("answer, expected", SHAPES)
def test_answer_shapes(answer, expected):
    assert_segments(parse_segments(answer), expected)


@pytest.mark.parametrize("answer", ["", "I cannot tell.", "at 12s", "the action is not in the video",
                                    "around frame10", "v1.5"])
def test_an_answer_without_a_segment_is_unparsable(answer):
    assert parse_segments(answer) is None


def test_relative_positions_as_vtimellm_emits():
    assert_segments(parse_segments("From 05 to 37.", 200.0, relative=True), [(10.0, 74.0)])
    # A unit or a clock form stays in seconds.
    assert_segments(parse_segments("from 05 to 10s", 200.0, relative=True), [(5.0, 10.0)])
    assert_segments(parse_segments("00:05 to 00:20", 200.0, relative=True), [(5.0, 20.0)])
    with pytest.raises(ValueError, match="duration"):
        parse_segments("from 05 to 37", None, relative=True)


def test_times_carry_their_spans():
    answer = "from 1:05 to 80s"
    times = parse_times(answer)
    assert [t.seconds for t in times] == [65.0, 80.0]
    assert [answer[t.start:t.end] for t in times] == ["1:05", "80s"]
    assert [t.unit for t in times] == ["clock", "s"]


seconds = st.floats(min_value=0, max_value=5000, allow_nan=False).map(lambda value: round(value, 2))


def _clock(value: float) -> str:
    minutes, rest = divmod(value, 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(seconds, seconds), min_size=1, max_size=5),
       st.sampled_from(["{a}s to {b}s", "{a} - {b} seconds", "from {a} to {b}", "between {a} and {b}",
                        "{ca} - {cb}", "{ca} to {cb}"]),
       st.sampled_from([", ", "; then ", ". Also "]))
def test_ranges_written_any_way_come_back(pairs, shape, separator):
    answer = "The action occurs " + separator.join(
        shape.format(a=a, b=b, ca=_clock(a), cb=_clock(b)) for a, b in pairs) + "."
    expected = [(min(a, b), max(a, b)) for a, b in pairs]
    assert_segments(parse_segments(answer), expected)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=60))
def test_text_without_digits_is_unparsable(text):
    assert parse_segments(text) is None


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 99), st.integers(0, 99), st.floats(1.0, 1000.0))
def test_relative_pairs_scale_with_the_duration(a, b, duration):
    segments = parse_segments(f"from {a:02d} to {b:02d}", duration, relative=True)
    assert_segments(segments, [(min(a, b) / 100 * duration, max(a, b) / 100 * duration)])
