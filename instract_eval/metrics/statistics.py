"""Bootstrap confidence intervals for per-sample metrics, plain, clustered and paired.

Every metric of a task is a statistic of per-sample values: R@K and accuracy are the mean of 0/1
(or expected-tie fractional) hits, the median rank is the median of ranks, a weighted mean is a
ratio of two column sums. :func:`bootstrap_ci` gives the uncertainty of one run's metric;
:func:`paired_bootstrap` gives the uncertainty of the difference between two runs scored on the
same samples, which is what a regression gate needs to tell a real drop from noise.

Resampling units. Without ``clusters`` each sample is its own unit. With ``clusters`` (one key per
sample, e.g. the video id when several captions or clips share a video) whole clusters are drawn
with replacement and every sample of a drawn cluster is kept (the cluster bootstrap, Davison &
Hinkley 1997, Sec. 3.8): samples of one video are not independent, and resampling them one by one
would understate the error.

Determinism. All draws come from ``numpy.random.default_rng(seed)`` through
:func:`resample_indices`: resample ``b`` is row ``b`` of one ``[n_resamples, num_units]`` matrix
of ``rng.integers(0, num_units)`` draws, produced in chunks of rows to bound memory. numpy draws
these element by element, so the chunk size never changes the result, and a plain loop calling
``rng.integers(0, num_units, size=num_units)`` once per resample sees exactly the same indices.

Cost. The mean (``statistic is numpy.mean`` on 1-D values) is vectorised: per-unit sums and sizes
are gathered for a whole chunk of resamples at once, ``mean* = sum(unit_sums[idx]) /
sum(unit_sizes[idx])``. ``numpy.median`` is vectorised too: with ``axis=1`` without clusters, and
with clusters from each resample's multiplicity of every unit, counted over chunks of the sorted
values (one resample at a time, a median rank at InstrAct-Dynamics size took about 6 s per 10,000
resamples). A statistic of counts that add over rows (macro F1, harmonic means of group rates) is
vectorised by subclassing :class:`CountStatistic`. Any other statistic is called once per
resample. Several paired comparisons with the same number of units (the metrics of one task)
share one stream of draws through :func:`paired_bootstraps`, which also evaluates all their means
whose per-unit sums add exactly in any order (hits, whole and half ranks) in one matrix product
per batch. Memory is bounded by ``batch_size`` resamples at a time (default: about 4 million
drawn indices, 32 MB, plus the values they gather and the batch's multiplicities), whatever ``N``
and ``n_resamples``; 100k samples x 10k resamples of the mean take a few seconds.

Intervals. ``method="percentile"`` (default) or ``method="bca"`` (bias-corrected and accelerated),
both computed as ``scipy.stats.bootstrap`` computes them; see :func:`bootstrap_ci`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

__all__ = [
    "BOOTSTRAP_METHODS",
    "BootstrapResult",
    "PairedBootstrapResult",
    "bootstrap_ci",
    "paired_bootstrap",
    "paired_bootstraps",
    "PairedJob",
    "CountStatistic",
    "resample_indices",
    "cluster_units",
]

BOOTSTRAP_METHODS = ("percentile", "bca")

Statistic = Callable[[np.ndarray], float]

# Drawn indices held in memory at once when batch_size is not given (int64: 32 MB).
_INDICES_PER_BATCH = 1 << 22
_STANDARD_NORMAL = NormalDist()
# BCa: statistics this close (relative to their magnitude) are equal up to summation order.
_RELATIVE_TIE_TOLERANCE = 1e-12
# Clustered median: the sorted rows are cut into this many chunks (see _ResampledStatistic._cluster_medians).
_MEDIAN_CHUNKS = 32
# Per-unit sums that are multiples of 1 / _EXACT_STEPS add exactly in any order (see _sums_exact_in_any_order).
_EXACT_STEPS = 256.0


@dataclass(frozen=True)
class BootstrapResult:
    """Outcome of :func:`bootstrap_ci`.

    ``estimate`` is the statistic on the original data; ``low`` and ``high`` bound the interval at
    level ``confidence``; ``std_error`` is the standard deviation (``ddof=1``) of the bootstrap
    distribution; ``num_clusters`` counts the resampling units (``num_samples`` when no clusters
    were given); ``distribution`` holds the ``n_resamples`` resampled statistics in draw order.
    """

    estimate: float
    low: float
    high: float
    std_error: float
    confidence: float
    n_resamples: int
    method: str
    num_clusters: int
    num_samples: int
    distribution: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class PairedBootstrapResult:
    """Outcome of :func:`paired_bootstrap`: the difference ``statistic(b) - statistic(a)``.

    ``estimate`` is the observed difference and ``estimate_a``, ``estimate_b`` its two terms;
    ``low``, ``high``, ``std_error`` and ``distribution`` describe the resampled differences as in
    :class:`BootstrapResult`; ``p_value`` is the two-sided bootstrap p-value defined in
    :func:`paired_bootstrap`.
    """

    estimate: float
    estimate_a: float
    estimate_b: float
    low: float
    high: float
    std_error: float
    p_value: float
    confidence: float
    n_resamples: int
    method: str
    num_clusters: int
    num_samples: int
    distribution: np.ndarray = field(repr=False)


class CountStatistic:
    """A statistic that depends on the rows only through counts that add over rows: vectorised over resamples.

    Macro F1 needs each class's true, predicted and correct counts; a harmonic mean of two group
    accuracies needs each group's rows and hits. Such a statistic says so by subclassing this:
    ``__call__(values)`` is the statistic itself (used on the original data and for the
    jackknife); ``row_counts(values)`` gives, once, the counts as entries, ``(rows, columns,
    width, context)``: row ``rows[e]`` adds 1 to count ``columns[e]`` of ``width`` (e.g. a true
    class, a predicted class, a hit), and a context (e.g. the number of classes);
    ``from_totals(totals, context)`` maps the summed counts of each resample ``[b, width]`` to
    the statistic ``[b]``. A resample's totals are the per-unit
    counts times its multiplicity of each unit, one matrix product for a whole batch, exact in
    float64 since they are whole numbers. ``from_totals`` must compute what ``__call__`` computes
    on that resample's rows, operation for operation, so that the result is the same to the bit
    (the tests of each such statistic compare it with the loop).
    """

    def __call__(self, values: np.ndarray) -> float:
        raise NotImplementedError

    def row_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, object]:
        raise NotImplementedError

    def from_totals(self, totals: np.ndarray, context: object) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# Resampling units and draws


@dataclass(frozen=True)
class _Units:
    """Rows grouped into resampling units, numbered in order of first appearance."""

    unit_of_row: np.ndarray  # [N] int64
    order: np.ndarray  # [N] rows sorted by unit (stable: rows keep their order inside a unit)
    starts: np.ndarray  # [G] position in `order` of each unit's first row
    sizes: np.ndarray  # [G] rows per unit
    singletons: bool  # every row is its own unit, in row order

    @property
    def count(self) -> int:
        return int(self.sizes.shape[0])

    def rows(self, drawn_units: np.ndarray) -> np.ndarray:
        """Row indices of the drawn units, each unit's rows in a block, units in draw order."""
        if self.singletons:
            return drawn_units
        lengths = self.sizes[drawn_units]
        block_offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
        positions = np.repeat(self.starts[drawn_units], lengths) + np.arange(int(lengths.sum())) - block_offsets
        return self.order[positions]

    def rows_without(self, unit: int) -> np.ndarray:
        """Row indices of every unit but ``unit``, in unit order (for the jackknife)."""
        start = int(self.starts[unit])
        return np.concatenate((self.order[:start], self.order[start + int(self.sizes[unit]) :]))


def cluster_units(clusters: object, num_samples: int) -> tuple[np.ndarray, int]:
    """Map one cluster key per sample to unit ids ``0..G-1`` in order of first appearance.

    Keys may be any hashable values (str, int, tuple, ...) or a 1-D numpy array. First-appearance
    numbering makes the unit order, and so the draws for a given seed, independent of how the keys
    sort; with all-distinct keys unit ``g`` is sample ``g``, so the cluster bootstrap with one
    sample per cluster draws exactly what the plain bootstrap draws.

    Returns ``(unit_of_sample [N] int64, num_clusters)``.
    """
    if isinstance(clusters, np.ndarray):
        if clusters.ndim != 1:
            raise ValueError(f"clusters must be 1-D (one key per sample), got shape {clusters.shape}")
        keys: Sequence[Hashable] = clusters.tolist()
    elif isinstance(clusters, (str, bytes, dict)) or not hasattr(clusters, "__iter__"):
        raise ValueError(
            f"clusters must be a sequence or 1-D array of keys, one per sample, got {type(clusters).__name__}"
        )
    else:
        keys = list(clusters)
    if len(keys) != num_samples:
        raise ValueError(f"clusters has {len(keys)} keys but there are {num_samples} samples: need one key per sample")
    ids: dict[Hashable, int] = {}
    unit_of_sample = np.empty(num_samples, dtype=np.int64)
    for row, key in enumerate(keys):
        if key is None or (isinstance(key, float) and np.isnan(key)):
            raise ValueError(f"clusters[{row}] is {key!r}: every sample needs a cluster key")
        try:
            unit_of_sample[row] = ids.setdefault(key, len(ids))
        except TypeError:
            raise ValueError(f"clusters[{row}] = {key!r} is not hashable") from None
    return unit_of_sample, len(ids)


def _units(clusters: object, num_samples: int) -> _Units:
    if clusters is None:
        rows = np.arange(num_samples, dtype=np.int64)
        return _Units(rows, rows, rows, np.ones(num_samples, dtype=np.int64), singletons=True)
    unit_of_row, count = cluster_units(clusters, num_samples)
    if count < 2:
        raise ValueError(f"clusters has {count} distinct key: the cluster bootstrap needs at least 2 clusters")
    order = np.argsort(unit_of_row, kind="stable")
    sizes = np.bincount(unit_of_row, minlength=count)
    starts = np.cumsum(sizes) - sizes
    return _Units(unit_of_row, order, starts, sizes, singletons=False)


def _default_batch_size(num_units: int) -> int:
    return max(1, _INDICES_PER_BATCH // num_units)


def resample_indices(
    num_units: int, n_resamples: int, seed: int, *, batch_size: int | None = None
) -> Iterator[np.ndarray]:
    """Yield the bootstrap draws: int64 arrays ``[b, num_units]`` of unit indices, ``b <= batch_size``.

    Together the batches are the ``[n_resamples, num_units]`` matrix
    ``default_rng(seed).integers(0, num_units, size=(n_resamples, num_units))``: row ``r`` lists the
    units (samples or clusters) drawn with replacement for resample ``r``. Every bootstrap in this
    module draws through this function, which is what lets a test replay the draws in a loop.
    """
    _check_count(num_units, "num_units", minimum=1)
    _check_count(n_resamples, "n_resamples", minimum=1)
    _check_seed(seed)
    if batch_size is None:
        rows_per_batch = _default_batch_size(num_units)
    else:
        rows_per_batch = _check_count(batch_size, "batch_size", minimum=1)
    rng = np.random.default_rng(seed)
    for first in range(0, n_resamples, rows_per_batch):
        yield rng.integers(0, num_units, size=(min(rows_per_batch, n_resamples - first), num_units))


# ------------------------------------------------------------------------------------------------
# Validation


def _check_count(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} = {value} must be >= {minimum}")
    return int(value)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_values(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D [N] or 2-D [N, k] (one row per sample), got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"{name} has {array.shape[0]} samples: the bootstrap needs at least 2")
    if array.ndim == 2 and array.shape[1] == 0:
        raise ValueError(f"{name} has no columns (shape {array.shape})")
    real = np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)
    if not (real or array.dtype == bool):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        position = tuple(int(p) for p in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(array[position]) else "an infinite value"
        raise ValueError(f"{name} has {kind} at index {position if array.ndim == 2 else position[0]}")
    return array


def _check_options(statistic: object, n_resamples: object, confidence: object, seed: object, method: object) -> str:
    if not callable(statistic):
        raise ValueError(f"statistic must be a callable mapping an array to a number, got {statistic!r}")
    _check_count(n_resamples, "n_resamples", minimum=2)
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in the open interval (0, 1), got {confidence!r}")
    _check_seed(seed)
    if not isinstance(method, str) or method.lower() not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    return method.lower()


def _as_number(result: object, where: str) -> float:
    if np.ndim(result) != 0:
        raise ValueError(f"statistic must return one number, got shape {np.shape(result)} {where}")
    number = float(result)  # type: ignore[arg-type]
    if not np.isfinite(number):
        raise ValueError(f"statistic returned {number} {where}: it must be finite on every resample")
    return number


# ------------------------------------------------------------------------------------------------
# Evaluating a statistic on resamples


class _Batch:
    """One batch of draws (``[b, G]`` unit indices) and, computed once for every statistic that
    needs it, each resample's multiplicity of every unit (``[b, G]``: how often it drew unit g)."""

    def __init__(self, drawn: np.ndarray):
        self.drawn = drawn
        self._multiplicity: np.ndarray | None = None
        self._as_float: np.ndarray | None = None

    @property
    def multiplicity(self) -> np.ndarray:
        if self._multiplicity is None:
            resamples, width = self.drawn.shape
            offsets = (np.arange(resamples, dtype=np.int64) * width)[:, None]
            counts = np.bincount((self.drawn + offsets).ravel(), minlength=resamples * width)
            self._multiplicity = counts.reshape(resamples, width)
        return self._multiplicity

    @property
    def multiplicity_float(self) -> np.ndarray:
        """The multiplicities as float64, for exact integer matrix products."""
        if self._as_float is None:
            self._as_float = self.multiplicity.astype(np.float64)
        return self._as_float


def _sums_exact_in_any_order(unit_sums: np.ndarray) -> bool:
    """Whether any resample's total of these per-unit sums is exact in float64 whatever the order
    of addition: every sum a multiple of 2^-8 (hits, half hits, integer and half ranks) and no
    total (at most G of them) reaching 2^53 of those steps. Then a matrix product gives the very
    numbers the gathered sums give."""
    scaled = unit_sums * _EXACT_STEPS
    return bool(np.all(scaled == np.round(scaled))) and (
        unit_sums.shape[0] * float(np.abs(scaled).max(initial=0.0)) < 2.0**53)


class _ResampledStatistic:
    """One statistic on one data array, evaluated on the full data, on resamples and leave-one-out."""

    def __init__(self, values: np.ndarray, statistic: Statistic, units: _Units):
        self.values = values
        self.statistic = statistic
        self.units = units
        self.is_mean = statistic is np.mean and values.ndim == 1
        self.is_axis_reducer = statistic is np.median and values.ndim == 1 and units.singletons
        self.is_cluster_median = statistic is np.median and values.ndim == 1 and not units.singletons
        self.is_counted = isinstance(statistic, CountStatistic)
        if self.is_counted:
            rows, columns, width, self.context = statistic.row_counts(values)
            self.count_table = np.bincount(units.unit_of_row[rows] * width + columns, minlength=units.count * width
                                           ).reshape(units.count, width).astype(np.float64)
        if self.is_mean:
            self.unit_sums = np.bincount(units.unit_of_row, weights=values, minlength=units.count)
            self.unit_sizes = units.sizes
            self.exact_sums = _sums_exact_in_any_order(self.unit_sums)
        if self.is_cluster_median:
            # Rows sorted by value and cut into a few chunks of consecutive rows; chunk_table[g, j]
            # counts unit g's rows in chunk j (see _cluster_medians).
            by_value = np.argsort(values, kind="stable")
            self.sorted_values = values[by_value]
            self.unit_by_value = units.unit_of_row[by_value]
            chunks = min(_MEDIAN_CHUNKS, values.shape[0])
            self.chunk_edges = np.unique(np.linspace(0, values.shape[0], chunks + 1).astype(np.int64))
            chunk_of_row = np.searchsorted(self.chunk_edges, np.arange(values.shape[0]), side="right") - 1
            width = self.chunk_edges.shape[0] - 1
            self.chunk_table = np.bincount(self.unit_by_value * width + chunk_of_row,
                                           minlength=units.count * width).reshape(units.count, width).astype(np.float64)

    def full(self) -> float:
        return _as_number(self.statistic(self.values), "on the original data")

    def on_resamples(self, batch: _Batch) -> np.ndarray:
        """Statistic of each resample of ``batch`` (``[b, G]`` unit indices from resample_indices)."""
        drawn = batch.drawn
        if self.is_mean:
            return self.unit_sums[drawn].sum(axis=1) / self.unit_sizes[drawn].sum(axis=1)
        if self.is_axis_reducer:
            return np.asarray(self.statistic(self.values[drawn], axis=1), dtype=np.float64)
        if self.is_cluster_median:
            return self._cluster_medians(batch)
        if self.is_counted:
            # Resamples a few at a time, so that their totals stay within the batch's memory bound.
            step = max(1, _INDICES_PER_BATCH // self.count_table.shape[1])
            result = np.concatenate([np.asarray(self.statistic.from_totals(
                batch.multiplicity_float[first:first + step] @ self.count_table, self.context), dtype=np.float64)
                for first in range(0, batch.drawn.shape[0], step)])
            bad = ~np.isfinite(result)
            if bad.any():  # what the one-resample-at-a-time path says of the first such resample
                _as_number(result[np.flatnonzero(bad)[0]], "on a resample")
            return result
        rows = self.units.rows
        return np.array([_as_number(self.statistic(self.values[rows(row)]), "on a resample") for row in drawn])

    def _cluster_medians(self, batch: _Batch) -> np.ndarray:
        """``numpy.median`` of each resample's rows, without gathering those rows one resample at a time.

        Resample ``b`` holds each row as often as it drew the row's unit (``multiplicity[b, g]``).
        With the rows sorted by value, its ``k``-th smallest (0-based) is the first sorted row at
        which the running multiplicity exceeds ``k``. That row is found in two steps: the chunk
        it falls in, from the chunk counts ``multiplicity @ chunk_table`` (integers, exact in
        float64 whatever the summation order), then the row inside that chunk, from the running
        multiplicity over the chunk's rows alone. The median is the middle row's value (odd row
        count) or ``(low + high) / 2`` of the two middle ones, as numpy computes it: the same
        numbers in the same operation, so the same result to the bit.
        """
        multiplicity = batch.multiplicity
        per_chunk = np.cumsum((batch.multiplicity_float @ self.chunk_table).astype(np.int64), axis=1)
        total = per_chunk[:, -1]
        low = self._kth_smallest(multiplicity, per_chunk, (total - 1) // 2)
        high = self._kth_smallest(multiplicity, per_chunk, total // 2)
        return np.where(total % 2 == 1, low, (low + high) / 2)

    def _kth_smallest(self, multiplicity: np.ndarray, per_chunk: np.ndarray, position: np.ndarray) -> np.ndarray:
        """The value at sorted ``position[b]`` of each resample ``b`` (``per_chunk``: running chunk counts)."""
        chunk = np.count_nonzero(per_chunk <= position[:, None], axis=1)
        before = np.where(chunk > 0, np.take_along_axis(per_chunk, np.maximum(chunk - 1, 0)[:, None], axis=1)[:, 0], 0)
        inside = position - before
        found = np.empty(position.shape[0], dtype=np.float64)
        for j in np.unique(chunk):  # the few chunks around the medians
            rows = np.flatnonzero(chunk == j)
            first, last = int(self.chunk_edges[j]), int(self.chunk_edges[j + 1])
            running = np.cumsum(multiplicity[rows[:, None], self.unit_by_value[None, first:last]], axis=1)
            found[rows] = self.sorted_values[first + np.count_nonzero(running <= inside[rows, None], axis=1)]
        return found

    def leave_one_out(self) -> np.ndarray:
        """Jackknife values: the statistic with each unit left out in turn (``[G]``)."""
        if self.is_mean:
            return (self.unit_sums.sum() - self.unit_sums) / (self.units.sizes.sum() - self.unit_sizes)
        rows_without = self.units.rows_without
        return np.array(
            [_as_number(self.statistic(self.values[rows_without(g)]), f"without unit {g}") for g in range(self.units.count)]
        )


def _distribution(
    evaluate: Callable[[_Batch], np.ndarray], num_units: int, n_resamples: int, seed: int, batch_size: int | None
) -> np.ndarray:
    """The statistic on every resample, in draw order."""
    return _checked_distribution([evaluate(_Batch(drawn)) for drawn in resample_indices(num_units, n_resamples, seed,
                                                                                        batch_size=batch_size)])


def _checked_distribution(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The resampled statistics joined in draw order; refused at the first that is not finite."""
    distribution = np.concatenate(parts)
    bad = ~np.isfinite(distribution)
    if bad.any():
        raise ValueError(
            f"statistic returned {distribution[bad][0]} on resample {int(np.flatnonzero(bad)[0])}: "
            "it must be finite on every resample"
        )
    return distribution


def _interval(
    distribution: np.ndarray,
    estimate: float,
    confidence: float,
    method: str,
    leave_one_out: Callable[[], np.ndarray],
) -> tuple[float, float]:
    """Percentile or BCa interval from the bootstrap distribution (quantiles: numpy 'linear')."""
    alpha = 1.0 - confidence
    levels = np.array([alpha / 2, 1 - alpha / 2])
    if method == "bca":
        levels = _bca_levels(distribution, estimate, levels, leave_one_out())
    low, high = np.quantile(distribution, levels)
    return float(low), float(high)


def _bca_levels(distribution: np.ndarray, estimate: float, levels: np.ndarray, jackknife: np.ndarray) -> np.ndarray:
    """Efron's bias-corrected and accelerated quantile levels (Efron & Tibshirani 1993, Sec. 14.3).

    ``z0 = Phi^-1(share of resamples below the estimate)``, ties counted half (as scipy); the
    acceleration ``a = sum(d^3) / (6 (sum(d^2))^1.5)`` with ``d = mean(jackknife) - jackknife``
    (``a = 0`` when the jackknife values are all equal); level ``Phi(z0 + (z0 + z) / (1 - a (z0 +
    z)))`` for each standard normal quantile ``z`` of the percentile levels.

    Differences below ``1e-12`` of the largest magnitude involved count as ties and zero
    deviations: summing the same numbers in another order moves a statistic by a few ulps, and
    without this a constant metric would get an infinite bias correction or an acceleration made
    of rounding noise (``a`` is scale-free).
    """
    magnitude = max(abs(estimate), float(np.abs(distribution).max()), float(np.abs(jackknife).max()))
    tolerance = _RELATIVE_TIE_TOLERANCE * magnitude
    strictly_below = np.count_nonzero(distribution < estimate - tolerance)
    below_or_tied = np.count_nonzero(distribution <= estimate + tolerance)
    below = (strictly_below + below_or_tied) / (2 * distribution.size)
    if below <= 0 or below >= 1:
        raise ValueError(
            "BCa is undefined here: the estimate lies outside every resampled value, so the bias correction is "
            "infinite; use method='percentile'"
        )
    z0 = _STANDARD_NORMAL.inv_cdf(below)
    deviations = jackknife.mean() - jackknife
    deviations[np.abs(deviations) <= tolerance] = 0.0
    spread = float((deviations**2).sum())
    acceleration = float((deviations**3).sum()) / (6 * spread**1.5) if spread > 0 else 0.0
    adjusted = []
    for level in levels:
        shifted = z0 + _STANDARD_NORMAL.inv_cdf(float(level))
        denominator = 1 - acceleration * shifted
        if denominator <= 0:
            raise ValueError(
                f"BCa is undefined here: the acceleration {acceleration:.3g} is too large; use method='percentile'"
            )
        adjusted.append(_STANDARD_NORMAL.cdf(z0 + shifted / denominator))
    return np.array(adjusted)


# ------------------------------------------------------------------------------------------------
# Public API


def bootstrap_ci(
    values: np.ndarray,
    statistic: Statistic = np.mean,
    *,
    clusters: object = None,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    batch_size: int | None = None,
) -> BootstrapResult:
    """Bootstrap confidence interval of ``statistic(values)``, plain or clustered.

    Parameters
    ----------
    values : array ``[N]`` or ``[N, k]``
        One row per sample: a 1-D array of per-sample metric values (hits, ranks, ...), or a 2-D
        array when the statistic needs several numbers per sample (e.g. ``[hit, weight]`` for a
        weighted mean). Rows are resampled; columns travel together. Finite, ``N >= 2``.
    statistic : callable
        Maps an array shaped like ``values`` (with the resampled rows) to one finite number:
        ``numpy.mean`` for R@K and accuracy (vectorised), ``numpy.median`` for the median rank,
        any function for the rest.
    clusters : sequence of hashable keys or 1-D array, optional
        One key per sample; whole clusters are resampled with replacement (at least 2 clusters).
    n_resamples, confidence, seed :
        Number of resamples (>= 2), interval level in (0, 1), seed of ``numpy.random.default_rng``.
    method : ``"percentile"`` or ``"bca"``
        ``percentile``: ``[q(alpha/2), q(1 - alpha/2)]`` of the bootstrap distribution with
        ``alpha = 1 - confidence`` and numpy's default linear quantiles, as
        ``scipy.stats.bootstrap(method="percentile")``. ``bca``: Efron's bias-corrected and
        accelerated interval, as ``scipy.stats.bootstrap(method="BCa")``, with the acceleration
        from the leave-one-unit-out jackknife (leave-one-cluster-out with clusters). For
        statistics other than the mean the jackknife costs one statistic call per unit.
    batch_size : int, optional
        Resamples evaluated at a time (memory bound only; the result does not depend on it).

    Returns
    -------
    BootstrapResult
        ``estimate = statistic(values)``, ``low``, ``high``, ``std_error`` (``ddof=1`` standard
        deviation of the resampled statistics), ``confidence``, ``n_resamples``, ``method``,
        ``num_clusters`` (resampling units), ``num_samples``, ``distribution``.
    """
    data = _check_values(values, "values")
    method = _check_options(statistic, n_resamples, confidence, seed, method)
    units = _units(clusters, data.shape[0])
    resampled = _ResampledStatistic(data, statistic, units)
    estimate = resampled.full()
    distribution = _distribution(resampled.on_resamples, units.count, n_resamples, seed, batch_size)
    low, high = _interval(distribution, estimate, confidence, method, resampled.leave_one_out)
    return BootstrapResult(
        estimate=estimate,
        low=low,
        high=high,
        std_error=float(np.std(distribution, ddof=1)),
        confidence=float(confidence),
        n_resamples=int(n_resamples),
        method=method,
        num_clusters=units.count,
        num_samples=int(data.shape[0]),
        distribution=distribution,
    )


def paired_bootstrap(
    values_a: np.ndarray,
    values_b: np.ndarray,
    statistic: Statistic = np.mean,
    *,
    clusters: object = None,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    batch_size: int | None = None,
) -> PairedBootstrapResult:
    """Paired bootstrap of ``statistic(values_b) - statistic(values_a)`` for two runs on the same samples.

    Row ``n`` of ``values_a`` and of ``values_b`` must be the same sample (same query, same
    video), scored by run A (e.g. the reference checkpoint) and run B (the candidate). Each
    resample draws one set of units (:func:`resample_indices`, clustered if ``clusters`` is given)
    and applies it to both runs, so the sample-to-sample variation both runs share cancels in the
    difference. Arguments and interval methods are those of :func:`bootstrap_ci`; for BCa the
    jackknife leaves the same unit out of both runs.

    ``p_value`` is two-sided: with ``d*`` the resampled differences,
    ``p = min(1, 2 * min(#{d* <= 0}, #{d* >= 0}) / n_resamples)``: twice the share of resampled
    differences on the less populated side of zero, capped at 1. ``p < alpha`` exactly when fewer
    than ``alpha / 2`` of the resamples reach zero from one side, i.e. when the equal-tailed
    ``1 - alpha`` interval read off the sorted resamples excludes zero; the reported (linearly
    interpolated) percentile interval agrees up to one resample. Resamples exactly at zero count on
    both sides, so identical runs give ``p = 1``. The resolution is ``2 / n_resamples``; ``p = 0``
    means that no resample reached zero.

    Returns
    -------
    PairedBootstrapResult
        ``estimate`` (B minus A), ``estimate_a``, ``estimate_b``, ``low``, ``high``,
        ``std_error``, ``p_value``, ``confidence``, ``n_resamples``, ``method``,
        ``num_clusters``, ``num_samples``, ``distribution``.
    """
    job = PairedJob(values_a, values_b, statistic, clusters)
    result = paired_bootstraps([job], n_resamples=n_resamples, confidence=confidence, seed=seed, method=method,
                               batch_size=batch_size)[0]
    if isinstance(result, ValueError):
        raise result
    return result


@dataclass(frozen=True)
class PairedJob:
    """One paired comparison for :func:`paired_bootstraps`: arguments as in :func:`paired_bootstrap`."""

    values_a: object
    values_b: object
    statistic: Statistic = np.mean
    clusters: object = None


class _PairedRun:
    """A checked :class:`PairedJob`: both runs' statistics on the same units, ready for the draws."""

    def __init__(self, job: PairedJob, n_resamples: object, confidence: object, seed: object, method: object,
                 known_units: dict[tuple[int, int], _Units] | None = None):
        first = _check_values(job.values_a, "values_a")
        second = _check_values(job.values_b, "values_b")
        if first.shape != second.shape:
            raise ValueError(
                f"values_a has shape {first.shape} but values_b has {second.shape}: both runs must score the same "
                "samples"
            )
        self.method = _check_options(job.statistic, n_resamples, confidence, seed, method)
        self.confidence, self.n_resamples = float(confidence), int(n_resamples)  # type: ignore[arg-type]
        # Jobs that pass the very same cluster keys (one task's metrics) number their units once.
        key = (id(job.clusters), first.shape[0])
        if known_units is None or job.clusters is None or key not in known_units:
            self.units = _units(job.clusters, first.shape[0])
            if known_units is not None and job.clusters is not None:
                known_units[key] = self.units
        else:
            self.units = known_units[key]
        self.num_samples = int(first.shape[0])
        self.run_a = _ResampledStatistic(first, job.statistic, self.units)
        self.run_b = _ResampledStatistic(second, job.statistic, self.units)
        self.estimate_a, self.estimate_b = self.run_a.full(), self.run_b.full()

    @property
    def stackable(self) -> bool:
        """A mean whose per-unit sums add exactly in any order (both runs): `paired_bootstraps`
        evaluates all such jobs of a batch in one matrix product."""
        return self.run_a.is_mean and self.run_a.exact_sums and self.run_b.exact_sums

    def stacked_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.run_a.unit_sums, self.run_b.unit_sums, self.units.sizes.astype(np.float64)

    def on_resamples(self, batch: _Batch) -> np.ndarray:
        return self.run_b.on_resamples(batch) - self.run_a.on_resamples(batch)

    def leave_one_out(self) -> np.ndarray:
        return self.run_b.leave_one_out() - self.run_a.leave_one_out()

    def result(self, parts: Sequence[np.ndarray]) -> PairedBootstrapResult:
        """The interval and p-value from the resampled differences, batch by batch in draw order."""
        distribution = _checked_distribution(parts)
        estimate = self.estimate_b - self.estimate_a
        low, high = _interval(distribution, estimate, self.confidence, self.method, self.leave_one_out)
        tail = min(int(np.count_nonzero(distribution <= 0)), int(np.count_nonzero(distribution >= 0)))
        return PairedBootstrapResult(
            estimate=estimate,
            estimate_a=self.estimate_a,
            estimate_b=self.estimate_b,
            low=low,
            high=high,
            std_error=float(np.std(distribution, ddof=1)),
            p_value=min(1.0, 2.0 * tail / distribution.size),
            confidence=self.confidence,
            n_resamples=self.n_resamples,
            method=self.method,
            num_clusters=self.units.count,
            num_samples=self.num_samples,
            distribution=distribution,
        )


def paired_bootstraps(
    jobs: Sequence[PairedJob],
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    batch_size: int | None = None,
) -> list[PairedBootstrapResult | ValueError]:
    """:func:`paired_bootstrap` of several comparisons over one stream of draws.

    The draws of a bootstrap depend only on the number of resampling units, ``n_resamples`` and
    ``seed`` (:func:`resample_indices`), so every job with the same number of units (e.g. all the
    metrics of one task, resampling its videos) sees the same ``[n_resamples, units]`` matrix.
    Here that matrix is drawn once per unit count, batch by batch, and each batch is evaluated for
    every job that shares it, instead of once per job: each result equals what
    :func:`paired_bootstrap` returns for that job alone, to the bit.

    Returns one entry per job, in order: its :class:`PairedBootstrapResult`, or the `ValueError`
    :func:`paired_bootstrap` would have raised for it (bad input, a statistic that is not finite on
    some resample, an undefined BCa interval), so that one job's failure does not stop the others.
    """
    prepared: list[_PairedRun | PairedBootstrapResult | ValueError] = []
    known_units: dict[tuple[int, int], _Units] = {}
    for job in jobs:
        try:
            prepared.append(_PairedRun(job, n_resamples, confidence, seed, method, known_units))
        except ValueError as error:
            prepared.append(error)
    by_count: dict[int, list[int]] = {}
    for index, run in enumerate(prepared):
        if isinstance(run, _PairedRun):
            by_count.setdefault(run.units.count, []).append(index)
    for count, members in by_count.items():
        parts: dict[int, list[np.ndarray]] = {index: [] for index in members}
        stacked = [index for index in members if prepared[index].stackable]  # type: ignore[union-attr]
        columns = [column for index in stacked for column in prepared[index].stacked_columns()]  # type: ignore
        table = np.column_stack(columns) if stacked else None
        for drawn in resample_indices(count, int(n_resamples), int(seed), batch_size=batch_size):
            batch = _Batch(drawn)
            if table is not None:
                # Every stacked mean of the batch in one product: sums of A, of B and sizes per resample.
                totals = batch.multiplicity_float @ table
                for position, index in enumerate(stacked):
                    sum_a, sum_b, size = (totals[:, 3 * position + offset] for offset in range(3))
                    parts[index].append(sum_b / size - sum_a / size)
            for index in list(parts):
                if index in stacked:
                    continue
                try:
                    parts[index].append(prepared[index].on_resamples(batch))  # type: ignore[union-attr]
                except ValueError as error:
                    prepared[index] = error
                    del parts[index]
        for index, chunks in parts.items():
            try:
                prepared[index] = prepared[index].result(chunks)  # type: ignore[union-attr]
            except ValueError as error:
                prepared[index] = error
    return prepared  # type: ignore[return-value]
