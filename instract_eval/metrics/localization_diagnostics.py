"""ActionVLM's modality-bias diagnostics for temporal action localization (TAL).

Reference: "Towards Mitigating Modality Bias in Vision-Language Models for Temporal Action
Localization" (ActionVLM), Sec. 4.3 "Analysis on Modality Bias" with Table 2, and Appendix A.1
"Analysis on Visual Ambiguity" with Table 5. The paper prints percentages; every function here
returns fractions in [0, 1] (LAP 2.6 % is ``0.026``), as the rest of `instract_eval.metrics`.

- :func:`language_advantage_on_performance` (LAP, Table 2): the relative drop of average mAP when
  the action descriptions given to the model are swapped for unmatched (conflicting) ones.
- :func:`fixed_output_flags`, :func:`repeating_listing_flags`, :func:`hallucination_rates`
  (Table 2, "Fixed" and "Infinite"): the two hallucination rates of localizers that answer in text.
- :func:`ambiguity_calibration` (Table 5): mConf, mLen and acc@θ of the top-1 prediction on each
  ambiguity clip.

The paper names the two hallucinations, "1) fixed outputs with obviously fake boundaries
regardless of input, 2) infinite listing or repeating segments", but gives no operational rule.
This module fixes one, deterministic and with every knob a keyword argument:

Fixed output (:func:`fixed_output_flags`)
    "Regardless of input" is the defining property: the model gives the *same* answer whatever
    video it is shown. A response (the segments parsed from one answer) is flagged when its set of
    segments, snapped to a grid, is given verbatim for at least
    ``max(min_videos, ceil(min_share * V))`` *distinct* videos, ``V`` being the number of distinct
    videos among all responses. Answers are compared in two coordinate systems, and a match in
    either one flags: in seconds (a constant such as "0.0 - 10.0 seconds", grid ``grid_s``, default
    0.5 s) and in time relative to the video duration (a constant such as "the whole video" or
    "from 00 to 50" on VTimeLLM's 0-99 relative scale, grid ``normalized_grid``, default 0.01, which
    is that scale's resolution). Snapping to a grid rather than matching within a tolerance makes
    "the same answer" an equivalence relation, so answers group unambiguously; the price is that two
    values a hair apart on either side of a cell boundary land in different cells. Cells are
    ``floor(x / grid + 0.5)`` (half-up rounding). The share default, 5 % of the videos (11 of the 212
    THUMOS14 test videos), is far above what genuine localizations of different videos share by
    chance, yet well below the rates the paper reports (8.7 % and 14.6 % of answers), so one
    template used for a sizeable part of the inputs is caught even when a model alternates between
    a few. Requiring several *different* videos keeps a model that answers several queries about one
    video the same way (legitimately, when one action fits all of them) from being flagged. Empty
    responses ("no action") are never flagged: an empty answer is a legitimate TAL output.
    "Obviously fake" boundaries (the whole video, [0, 0], coarse round numbers) are what such
    input-independent answers look like; they are not flagged on their own, because a single
    whole-video or early segment can be a correct localization.

Infinite listing or repeating segments (:func:`repeating_listing_flags`)
    A response is flagged when (a) two of its segments repeat one another, start and end each
    within ``tolerance_s`` (inclusive, default 0.5 s), (b) it lists more than ``max_segments``
    segments (no cap by default, see below), or (c) the caller marks its generation as cut off at
    the token limit (``truncated``), the direct sign of a listing that never ended. Repetition is
    tested pair by pair inside one response, so no grid is needed there. The segment cap is off by
    default because dense ground truth is common in TAL: in the THUMOS14 ground truth shipped with
    this package one (video, class) pair has 218 instances and 10 % of pairs have more than 32, so
    any fixed default would flag complete, correct answers; set it per dataset (e.g. to the largest
    ground-truth count of one class in one video) when ``truncated`` is not available.

The rates are the fraction of all responses (one response per query, empty ones included) that
are flagged. Inputs are already-parsed segments; reading the text answers belongs to the adapters.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ._checks import finite_vector, segment_array
from .ranking import _show

__all__ = [
    "language_advantage_on_performance",
    "fixed_output_flags",
    "repeating_listing_flags",
    "hallucination_rates",
    "DEFAULT_LENGTH_THRESHOLDS",
    "ambiguity_calibration",
]

# ActionVLM Table 5 reports acc@0.3, acc@0.5 and acc@0.7.
DEFAULT_LENGTH_THRESHOLDS = (0.3, 0.5, 0.7)


# ------------------------------------------------------------------------------------------------
# Small input checks


def _is_real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def _finite_number(value: object, name: str) -> float:
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {_show(value)}")
    return float(value)


def _positive_number(value: object, name: str) -> float:
    number = _finite_number(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {_show(value)}")
    return number


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {_show(value)}")
    return int(value)


def _responses(responses: object) -> list[np.ndarray]:
    if (
        isinstance(responses, (str, bytes, Mapping))
        or not isinstance(responses, (Sequence, np.ndarray))
        or (isinstance(responses, np.ndarray) and responses.ndim == 0)
    ):
        raise ValueError(
            f"responses must be a sequence of [K, 2] segment arrays (one per query), got {type(responses).__name__}"
        )
    if len(responses) == 0:
        raise ValueError("responses is empty: the rates of zero responses are undefined")
    return [segment_array(r, f"responses[{i}]", allow_empty=True) for i, r in enumerate(responses)]


def _video_ids(values: object, length: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(f"video_ids must be a 1-D array of {length} ids (one per response), got shape {array.shape}")
    if array.dtype.kind not in "iuU":
        raise ValueError(f"video_ids must hold integer or string ids, got dtype {array.dtype}")
    return array


def _durations(values: object, video_ids: np.ndarray) -> np.ndarray:
    array = finite_vector(values, "durations", video_ids.shape[0])
    bad = array <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"durations[{i}] = {float(array[i])!r} is not positive: a video duration is needed in seconds")
    first: dict[object, int] = {}
    for i, video in enumerate(video_ids.tolist()):
        j = first.setdefault(video, i)
        if array[i] != array[j]:
            raise ValueError(
                f"durations[{i}] = {float(array[i])!r} but durations[{j}] = {float(array[j])!r} for the same video "
                f"{video!r}: one video has one duration"
            )
    return array


def _flags(values: object, name: str, length: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D array of {length} booleans (one per response), got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iu" and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(f"{name} must be boolean (or 0/1 integers), got dtype {array.dtype}")


# ------------------------------------------------------------------------------------------------
# LAP


def language_advantage_on_performance(aligned_average_map: float, conflicting_average_map: float) -> float:
    """Language Advantage on Performance (LAP): the relative drop of average mAP under conflicting text.

    Reference: ActionVLM Sec. 4.3 ("Measuring Modality Bias") and Table 2. The same model is
    evaluated twice, once with the matching action descriptions (aligned) and once with unmatched
    ones (conflicting); with ``A`` and ``C`` their average mAP (the mean over the tIoU thresholds,
    `LocalizationResult.average_map`)::

        LAP = (A - C) / A

    Table 2's full ActionVLM has ``A`` = 72.0 % and LAP 2.6 %, i.e. ``C`` = 70.1 %. LAP is
    negative when the conflicting run scores higher (language hurt the aligned run). Both inputs
    are fractions in [0, 1] (pass ``0.72``, not ``72.0``); mixing percent and fractions is refused
    rather than silently giving a LAP near 1.

    Raises ``ValueError`` for non-finite inputs, inputs outside [0, 1], and ``A = 0`` (undefined).

    Returns
    -------
    float
        LAP as a fraction (0.026 for the paper's 2.6 %).
    """
    aligned = _finite_number(aligned_average_map, "aligned_average_map")
    conflicting = _finite_number(conflicting_average_map, "conflicting_average_map")
    for name, value in (("aligned_average_map", aligned), ("conflicting_average_map", conflicting)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} = {value!r} is outside [0, 1]: average mAP is a fraction, not percent")
    if aligned == 0.0:
        raise ValueError("aligned_average_map is 0: LAP, a drop relative to it, is undefined")
    return (aligned - conflicting) / aligned


# ------------------------------------------------------------------------------------------------
# Hallucination rates


def _grid_key(segments: np.ndarray, scale: float, grid: float, index: int, space: str) -> bytes:
    """The set of grid cells of a non-empty response, as bytes (order and repeats ignored)."""
    with np.errstate(over="ignore", invalid="ignore"):
        cells = np.floor(segments / scale / grid + 0.5)
    if not (np.abs(cells) < 2.0**62).all():
        raise ValueError(f"responses[{index}] is too large for a {space} grid of {grid!r}")
    return np.unique(cells.astype(np.int64), axis=0).tobytes()


def _fixed_threshold(num_videos: int, min_share: float, min_videos: int) -> int:
    # A 1e-9 guard keeps float noise (0.07 * 100 = 7.000000000000001) from adding one video.
    return max(min_videos, math.ceil(min_share * num_videos - 1e-9))


def _check_fixed_options(grid_s, normalized_grid, min_share, min_videos) -> tuple:
    if grid_s is None and normalized_grid is None:
        raise ValueError("grid_s and normalized_grid are both None: compare answers in at least one space")
    grid_s = None if grid_s is None else _positive_number(grid_s, "grid_s")
    if normalized_grid is not None:
        normalized_grid = _positive_number(normalized_grid, "normalized_grid")
        if normalized_grid > 1:
            raise ValueError(f"normalized_grid = {normalized_grid!r} exceeds 1 (it is a fraction of the video)")
    min_share = _finite_number(min_share, "min_share")
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share = {min_share!r} is outside [0, 1]: it is a fraction of the videos, not percent")
    min_videos = _count(min_videos, "min_videos", 2)
    return grid_s, normalized_grid, min_share, min_videos


def _fixed_flags(segments, videos, durations, grid_s, normalized_grid, min_share, min_videos) -> tuple[np.ndarray, int]:
    n = len(segments)
    required = _fixed_threshold(len(set(videos.tolist())), min_share, min_videos)
    flags = np.zeros(n, dtype=bool)
    video_list = videos.tolist()
    spaces = [("seconds", grid_s, None), ("normalized", normalized_grid, durations)]
    for space, grid, scales in spaces:
        if grid is None:
            continue
        keys: list[bytes | None] = [None] * n
        videos_of: dict[bytes, set] = {}
        for i, response in enumerate(segments):
            if response.shape[0] == 0:
                continue  # an empty answer is never a fixed output
            key = _grid_key(response, 1.0 if scales is None else float(scales[i]), grid, i, space)
            keys[i] = key
            videos_of.setdefault(key, set()).add(video_list[i])
        flags |= np.array([key is not None and len(videos_of[key]) >= required for key in keys], dtype=bool)
    return flags, required


def fixed_output_flags(
    responses: Sequence[object],
    video_ids: object,
    durations: object,
    *,
    grid_s: float | None = 0.5,
    normalized_grid: float | None = 0.01,
    min_share: float = 0.05,
    min_videos: int = 2,
) -> np.ndarray:
    """Which responses are "fixed outputs regardless of input" (ActionVLM Table 2, "Fixed").

    Reference: ActionVLM Sec. 4.3 names the hallucination without defining it; this is the rule
    of the module docstring. Response ``i`` (non-empty) is flagged when its answer key is shared by
    at least ``required = max(min_videos, ceil(min_share * V))`` distinct videos, ``V`` the number of
    distinct ``video_ids``, in either space:

    - seconds: ``key_s(i) = set{(floor(s / grid_s + 0.5), floor(e / grid_s + 0.5))}``;
    - normalized: ``key_n(i) = set{(floor(s / (d_i g) + 0.5), floor(e / (d_i g) + 0.5))}`` with
      ``d_i = durations[i]`` and ``g = normalized_grid`` (strictly, ``floor(s / d_i / g + 0.5)``).

    Keys are sets: the order of the segments and repeats of a segment do not matter. A space whose
    grid is None is skipped (at least one must be given). Empty responses are never flagged. No
    ties arise: the rule is a count per key.

    Parameters
    ----------
    responses : sequence of array-like [K_i, 2]
        The ``(start, end)`` seconds parsed from each answer, ``0 <= start <= end``; ``K_i`` may be
        0. Ends past the video's duration are allowed (they are a kind of hallucination).
    video_ids : array-like [N] of int or str
        The video each response is about (several queries per video are fine).
    durations : array-like [N] of float
        Duration in seconds of that video; positive, equal for equal ``video_ids``.
    grid_s : float or None
        Grid in seconds (default 0.5 s); None skips the comparison in seconds.
    normalized_grid : float or None
        Grid as a fraction of the video duration (default 0.01, the 0-99 scale of VTimeLLM); None
        skips the comparison in relative time.
    min_share : float
        Share of the distinct videos that must receive the same answer (default 0.05).
    min_videos : int
        The least number of distinct videos, >= 2 (default 2; with the default share it is what decides for up to 40 videos).

    Returns
    -------
    numpy.ndarray of bool, shape [N]
    """
    segments = _responses(responses)
    videos = _video_ids(video_ids, len(segments))
    lengths = _durations(durations, videos)
    options = _check_fixed_options(grid_s, normalized_grid, min_share, min_videos)
    return _fixed_flags(segments, videos, lengths, *options)[0]


def _has_repeat(segments: np.ndarray, tolerance: float) -> bool:
    """Whether two segments have ``|start_a - start_b| <= tolerance`` and ``|end_a - end_b| <= tolerance``."""
    k = segments.shape[0]
    if k < 2:
        return False
    order = np.argsort(segments[:, 0], kind="stable")
    starts, ends = segments[order, 0], segments[order, 1]
    for offset in range(1, k):
        start_gap = starts[offset:] - starts[:-offset]  # >= 0, non-decreasing in the offset
        near = start_gap <= tolerance
        if not near.any():
            return False  # every pair further apart in the sorted order is further apart still
        if (near & (np.abs(ends[offset:] - ends[:-offset]) <= tolerance)).any():
            return True
    return False


def _check_repeat_options(tolerance_s, max_segments, truncated, n) -> tuple:
    tolerance_s = _finite_number(tolerance_s, "tolerance_s")
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s!r}")
    max_segments = None if max_segments is None else _count(max_segments, "max_segments", 1)
    cut = np.zeros(n, dtype=bool) if truncated is None else _flags(truncated, "truncated", n)
    return tolerance_s, max_segments, cut


def _repeat_flags(segments, tolerance_s, max_segments, cut) -> np.ndarray:
    flags = cut.copy()
    for i, response in enumerate(segments):
        if flags[i]:
            continue
        if max_segments is not None and response.shape[0] > max_segments:
            flags[i] = True
        else:
            flags[i] = _has_repeat(response, tolerance_s)
    return flags


def repeating_listing_flags(
    responses: Sequence[object],
    *,
    tolerance_s: float = 0.5,
    max_segments: int | None = None,
    truncated: object = None,
) -> np.ndarray:
    """Which responses are "infinite listing or repeating segments" (ActionVLM Table 2, "Infinite").

    Reference: ActionVLM Sec. 4.3 names the hallucination without defining it; this is the rule
    of the module docstring. Response ``i`` is flagged when any of:

    - two of its segments ``a != b`` (positions in the list) repeat each other:
      ``|start_a - start_b| <= tolerance_s`` and ``|end_a - end_b| <= tolerance_s`` (inclusive;
      ``tolerance_s = 0`` flags exact repeats only);
    - ``K_i > max_segments`` (only when ``max_segments`` is given; off by default, since TAL ground
      truth can hold hundreds of instances of one class in one video);
    - ``truncated[i]`` is True: the caller saw the generation stop at its token limit, the direct
      sign of a listing that never ended. This flags even when nothing could be parsed (``K_i = 0``).

    An empty response that was not truncated is never flagged. No ties arise.

    Parameters
    ----------
    responses : sequence of array-like [K_i, 2]
        As in :func:`fixed_output_flags`.
    tolerance_s : float
        Largest difference in seconds, at each end, of two segments that count as the same.
    max_segments : int or None
        Most segments a plausible answer lists.
    truncated : array-like [N] of bool, optional
        Whether each answer's text ended at the generation limit.

    Returns
    -------
    numpy.ndarray of bool, shape [N]
    """
    segments = _responses(responses)
    options = _check_repeat_options(tolerance_s, max_segments, truncated, len(segments))
    return _repeat_flags(segments, *options)


def hallucination_rates(
    responses: Sequence[object],
    video_ids: object,
    durations: object,
    *,
    grid_s: float | None = 0.5,
    normalized_grid: float | None = 0.01,
    min_share: float = 0.05,
    min_videos: int = 2,
    tolerance_s: float = 0.5,
    max_segments: int | None = None,
    truncated: object = None,
) -> dict:
    """The two hallucination rates of ActionVLM Table 2: fixed outputs and infinite/repeating listings.

    Reference: ActionVLM Sec. 4.3 and Table 2 (VTimeLLM 14.6 % / 27.7 %, TimeMarker 8.7 % / 11.2 %;
    0 for feature-aggregation models, which predict no text). With ``N`` responses (one per query,
    empty ones included)::

        fixed     = #{i : fixed_output_flags(...)[i]} / N
        repeating = #{i : repeating_listing_flags(...)[i]} / N

    The keyword arguments are those of :func:`fixed_output_flags` (``grid_s``, ``normalized_grid``,
    ``min_share``, ``min_videos``) and :func:`repeating_listing_flags` (``tolerance_s``,
    ``max_segments``, ``truncated``); the module docstring explains the rules and their defaults.
    A response may be flagged by both.

    Returns
    -------
    dict
        ``{"fixed": float, "repeating": float, "num_responses": int, "num_empty": int,
        "fixed_min_videos": int, "fixed_flags": bool [N], "repeating_flags": bool [N]}``;
        ``fixed_min_videos`` is the number of distinct videos an answer needed to count as fixed.
    """
    segments = _responses(responses)
    n = len(segments)
    videos = _video_ids(video_ids, n)
    lengths = _durations(durations, videos)
    fixed_options = _check_fixed_options(grid_s, normalized_grid, min_share, min_videos)
    repeat_options = _check_repeat_options(tolerance_s, max_segments, truncated, n)
    fixed, required = _fixed_flags(segments, videos, lengths, *fixed_options)
    repeating = _repeat_flags(segments, *repeat_options)
    return {
        "fixed": float(np.mean(fixed)),
        "repeating": float(np.mean(repeating)),
        "num_responses": n,
        "num_empty": sum(1 for response in segments if response.shape[0] == 0),
        "fixed_min_videos": required,
        "fixed_flags": fixed,
        "repeating_flags": repeating,
    }


# ------------------------------------------------------------------------------------------------
# Calibration on ambiguity clips


def _threshold_keys(length_thresholds: object) -> list[tuple[str, float]]:
    if isinstance(length_thresholds, (str, bytes)) or not isinstance(length_thresholds, (Sequence, np.ndarray)):
        raise ValueError(f"length_thresholds must be a sequence of numbers, got {length_thresholds!r}")
    if len(length_thresholds) == 0:
        raise ValueError("length_thresholds is empty: give at least one threshold")
    keys: dict[str, float] = {}
    for i, value in enumerate(length_thresholds):
        theta = _positive_number(value, f"length_thresholds[{i}]")
        key = f"acc@{theta:g}"
        if key in keys:
            raise ValueError(f"length_thresholds[{i}] = {theta!r} repeats {keys[key]!r} (both give {key!r})")
        keys[key] = theta
    return list(keys.items())


def ambiguity_calibration(
    prediction_clips: object,
    confidences: object,
    segments: object,
    clip_windows: object,
    *,
    length_thresholds: Sequence[float] = DEFAULT_LENGTH_THRESHOLDS,
    clip_to_window: bool = True,
) -> dict:
    """mConf, mLen and acc@θ of the top-1 prediction on each ambiguity clip (ActionVLM Table 5).

    Reference: ActionVLM Appendix A.1 and Table 5 (40 THUMOS14 clips; the learnable-weight row
    reads mConf 3.8, mLen 48.8, acc@0.3/0.5/0.7 15.0/45.0/80.0, in percent). For each clip ``c``
    with window ``[a_c, b_c]``, only its highest-confidence prediction ``p(c)`` is kept;
    ties in confidence go to the prediction listed first. Then, over the ``C`` clips::

        len_c   = |[s, e] ∩ [a_c, b_c]| / (b_c - a_c)    (clip_to_window=True, default)
                = (e - s) / (b_c - a_c)                   (clip_to_window=False; may exceed 1)
        mConf   = mean_c confidences[p(c)]
        mLen    = mean_c len_c
        acc@θ   = #{c : len_c < θ} / C                    (strictly below θ)

    with ``[s, e] = segments[p(c)]``. The default normalization crops the span to the clip
    because the paper restricts evaluation to the ambiguous segments while the model sees the
    whole video; cropped, ``len_c`` is the share of the clip the model claims, in [0, 1], which is
    what thresholds of 0.3-0.7 of the clip length compare against. ``clip_to_window=False`` keeps
    the raw span length instead, so a span spilling past the clip counts in full.

    Which predictions belong to a clip is the caller's choice (``prediction_clips``), normally the
    predictions of the clip's video that overlap its window. Every prediction must touch its clip's
    window (closed intervals: ``s <= b_c`` and ``e >= a_c``), since a prediction elsewhere in the
    video says nothing about the clip; every clip needs at least one prediction (a clip without
    one raises rather than being dropped or scored 0).

    Parameters
    ----------
    prediction_clips : int array-like [P]
        Index into ``clip_windows`` of the clip each prediction belongs to.
    confidences : float array-like [P]
        Confidence of each prediction, in [0, 1] (e.g. the detection head's class score).
    segments : float array-like [P, 2]
        ``(start, end)`` seconds in the video, ``0 <= start <= end``.
    clip_windows : float array-like [C, 2]
        ``(start, end)`` seconds of each ambiguity clip in its video, ``0 <= start < end``.
    length_thresholds : sequence of float
        The θ of acc@θ, positive (default 0.3, 0.5, 0.7).
    clip_to_window : bool
        Crop each span to its clip before normalizing (default True).

    Returns
    -------
    dict
        ``{"mConf": float, "mLen": float, "acc@0.3": float, ... (one per threshold, named with
        ``format(θ, "g")``), "num_clips": int, "top1_index": int64 [C] (index into the
        predictions), "top1_confidence": float64 [C], "normalized_length": float64 [C]}``.
    """
    if not isinstance(clip_to_window, (bool, np.bool_)):
        raise ValueError(f"clip_to_window must be True or False, got {_show(clip_to_window)}")
    thresholds = _threshold_keys(length_thresholds)
    windows = segment_array(clip_windows, "clip_windows", allow_empty=False)
    flat = windows[:, 1] <= windows[:, 0]
    if flat.any():
        c = int(np.argmax(flat))
        raise ValueError(f"clip_windows[{c}] = {windows[c].tolist()} has zero length: a clip needs start < end")
    num_clips = windows.shape[0]

    clips = np.asarray(prediction_clips)
    if clips.ndim != 1:
        raise ValueError(f"prediction_clips must be a 1-D array of clip indices, got shape {clips.shape}")
    num_predictions = clips.shape[0]
    if num_predictions and clips.dtype.kind not in "iu":
        raise ValueError(f"prediction_clips must hold integer clip indices, got dtype {clips.dtype}")
    clips = clips.astype(np.int64)
    outside = (clips < 0) | (clips >= num_clips)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"prediction_clips[{i}] = {int(clips[i])} is outside 0..{num_clips - 1} ({num_clips} clip_windows)")
    scores = finite_vector(confidences, "confidences", num_predictions)
    bad = (scores < 0) | (scores > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"confidences[{i}] = {float(scores[i])!r} is outside [0, 1]: confidences are probabilities")
    spans = segment_array(segments, "segments", allow_empty=True)
    if spans.shape[0] != num_predictions:
        raise ValueError(
            f"segments has {spans.shape[0]} rows but prediction_clips has {num_predictions}: need one per prediction"
        )
    window_of = windows[clips]
    apart = (spans[:, 0] > window_of[:, 1]) | (spans[:, 1] < window_of[:, 0])
    if apart.any():
        i = int(np.argmax(apart))
        raise ValueError(
            f"segments[{i}] = {spans[i].tolist()} does not touch clip_windows[{int(clips[i])}] = "
            f"{windows[clips[i]].tolist()}: give a clip only predictions that overlap it"
        )
    covered = np.bincount(clips, minlength=num_clips) > 0
    if not covered.all():
        missing = np.flatnonzero(~covered)
        shown = ", ".join(str(int(c)) for c in missing[:5]) + (", ..." if missing.shape[0] > 5 else "")
        raise ValueError(
            f"clip_windows[{int(missing[0])}] has no prediction ({missing.shape[0]} clip(s) lack one: {shown}); "
            "every ambiguity clip needs at least one"
        )

    # Top-1 per clip: highest confidence, then earliest listed.
    order = np.lexsort((np.arange(num_predictions), -scores, clips))
    sorted_clips = clips[order]
    first = order[np.concatenate(([True], sorted_clips[1:] != sorted_clips[:-1]))]
    top1 = np.empty(num_clips, dtype=np.int64)
    top1[clips[first]] = first

    start, end = spans[top1, 0], spans[top1, 1]
    clip_start, clip_end = windows[:, 0], windows[:, 1]
    if clip_to_window:
        length = np.maximum(np.minimum(end, clip_end) - np.maximum(start, clip_start), 0.0)
    else:
        length = end - start
    normalized = length / (clip_end - clip_start)
    confidence = scores[top1]
    result: dict = {"mConf": float(np.mean(confidence)), "mLen": float(np.mean(normalized))}
    for key, theta in thresholds:
        result[key] = float(np.mean(normalized < theta))
    result.update(
        num_clips=int(num_clips),
        top1_index=top1,
        top1_confidence=confidence,
        normalized_length=normalized,
    )
    return result
