"""Classification metrics for zero-shot recognition over label sets (ACE's SRT and default labels).

Top-1 accuracy, per-class and macro F1 (scikit-learn's definitions), metrics straight from logits
with an explicit rule for tied maxima, mean and standard deviation over repeated runs (the ten
synonym runs of the Synonym Robustness Test), the seen/unseen harmonic mean, and the
random-guess baseline row. Rates are fractions in [0, 1].
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from .ranking import _as_index_vector, _as_score_matrix, _check_finite, _check_ties, _describe_nonfinite, _show

__all__ = [
    "accuracy",
    "per_class_f1",
    "macro_f1",
    "classification_metrics",
    "classification_metrics_over_runs",
    "runs_summary",
    "harmonic_mean",
    "random_guess_baseline",
]


# --------------------------------------------------------------------------------------------
# Label vectors


def _label_family(array: np.ndarray) -> str:
    if array.dtype.kind in "iu":
        return "integer"
    if array.dtype.kind == "U":
        return "string"
    return "other"


def _as_class_labels(values: object, name: str) -> np.ndarray:
    """A non-empty 1-D array of integer or string class labels."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one sample")
    if _label_family(array) == "other":
        raise ValueError(f"{name} must hold integer or string class labels, got dtype {array.dtype}")
    return array


def _check_pair(y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray]:
    truth = _as_class_labels(y_true, "y_true")
    predicted = _as_class_labels(y_pred, "y_pred")
    if predicted.shape[0] != truth.shape[0]:
        raise ValueError(
            f"y_pred has {predicted.shape[0]} entries but y_true has {truth.shape[0]}: need one prediction per sample"
        )
    if _label_family(truth) != _label_family(predicted):
        raise ValueError(f"y_true holds {_label_family(truth)} labels but y_pred holds {_label_family(predicted)} labels")
    return truth, predicted


def _class_list(labels: object, truth: np.ndarray) -> np.ndarray:
    """The classes to report: ``labels`` as given (no repeats), or the sorted classes of ``y_true``."""
    if labels is None:
        return np.unique(truth)
    classes = _as_class_labels(labels, "labels")
    if _label_family(classes) != _label_family(truth):
        raise ValueError(f"labels holds {_label_family(classes)} labels but y_true holds {_label_family(truth)} labels")
    unique, counts = np.unique(classes, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"labels lists class {unique[counts > 1][0].item()!r} more than once")
    return classes


def _positions(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Index of each value in ``classes``, -1 where it is not one of them."""
    order = np.argsort(classes, kind="stable")
    ordered = classes[order]
    at = np.minimum(np.searchsorted(ordered, values), ordered.shape[0] - 1)
    return np.where(ordered[at] == values, order[at], -1)


def _f1_from_counts(true_positives: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (predicted + actual) per class, 0 where both are 0 (``zero_division=0``)."""
    denominator = predicted + actual
    return np.divide(2.0 * true_positives, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


# --------------------------------------------------------------------------------------------
# From predictions


def accuracy(y_true: object, y_pred: object) -> float:
    """Top-1 accuracy: the fraction of samples with ``y_pred == y_true``.

    Matches ``sklearn.metrics.accuracy_score(y_true, y_pred)``. Labels are integers or strings.
    """
    truth, predicted = _check_pair(y_true, y_pred)
    return float(np.mean(truth == predicted))


def per_class_f1(y_true: object, y_pred: object, labels: object = None) -> np.ndarray:
    """F1 of each class in ``labels``: ``2 TP / (2 TP + FP + FN)``, 0 when the class is neither
    present nor predicted.

    Matches ``sklearn.metrics.f1_score(y_true, y_pred, labels=labels, average=None,
    zero_division=0)`` with ``labels`` defaulting to ``numpy.unique(y_true)``: the classes present
    in the evaluated split, which is how ACE reports F1 (scikit-learn's own default would also
    include classes that only occur in ``y_pred``).

    Returns
    -------
    numpy.ndarray of float, shape (len(labels),)
        In the order of ``labels`` (sorted classes of ``y_true`` by default).
    """
    truth, predicted = _check_pair(y_true, y_pred)
    classes = _class_list(labels, truth)
    truth_at = _positions(truth, classes)
    predicted_at = _positions(predicted, classes)
    n_classes = classes.shape[0]
    actual = np.bincount(truth_at[truth_at >= 0], minlength=n_classes)
    guessed = np.bincount(predicted_at[predicted_at >= 0], minlength=n_classes)
    hits = np.bincount(truth_at[(truth_at >= 0) & (truth_at == predicted_at)], minlength=n_classes)
    return _f1_from_counts(hits, guessed, actual)


def macro_f1(y_true: object, y_pred: object, labels: object = None) -> float:
    """Unweighted mean of :func:`per_class_f1` over ``labels`` (default: the classes in ``y_true``).

    Matches ``sklearn.metrics.f1_score(y_true, y_pred, labels=numpy.unique(y_true),
    average="macro", zero_division=0)``.
    """
    return float(np.mean(per_class_f1(y_true, y_pred, labels)))


# --------------------------------------------------------------------------------------------
# From logits


def _prediction_weights(scores: np.ndarray, truth: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """Weight of each class as the prediction of each row ([N, C], rows sum to 1) and the tie mask."""
    rows = np.arange(scores.shape[0])
    maxima = scores == scores.max(axis=1, keepdims=True)
    n_maxima = np.count_nonzero(maxima, axis=1)
    if ties == "expected":
        return maxima / n_maxima[:, None], n_maxima > 1
    if ties == "optimistic":
        choice = np.where(maxima[rows, truth], truth, np.argmax(maxima, axis=1))
    else:
        wrong = maxima.copy()
        wrong[rows, truth] = False
        choice = np.where(wrong.any(axis=1), np.argmax(wrong, axis=1), truth)
    weights = np.zeros(scores.shape, dtype=np.float64)
    weights[rows, choice] = 1.0
    return weights, n_maxima > 1


def classification_metrics(logits: object, labels: object, *, ties: str = "expected") -> dict:
    """Top-1 accuracy and macro F1 of the argmax prediction of ``logits[N, C]``.

    ``labels[i]`` is the true class index of row ``i``. Macro F1 averages over the classes
    present in ``labels`` (as :func:`macro_f1`). Rows whose maximum is shared by several classes
    are resolved by ``ties``:

    ``"optimistic"``
        The true class if it is among the tied maxima, else the lowest-index tied class
        (``numpy.argmax``).
    ``"pessimistic"``
        The lowest-index wrong class among the tied maxima (the true class only when it is the
        sole maximum).
    ``"expected"`` (default)
        Uniformly random tie-breaking, exactly: a row with ``t`` tied maxima adds ``1/t`` to each
        of them in the confusion counts. Accuracy is then the exact expected accuracy (a
        constant-logit model scores exactly 1/C), and F1 is the F1 of the expected confusion
        matrix, ``2 E[TP] / (E[predicted] + actual)`` per class, which is not the expectation of F1.

    Without ties all three equal ``accuracy_score`` and ``f1_score(..., labels=np.unique(labels),
    average="macro", zero_division=0)`` on ``logits.argmax(axis=1)``.

    Returns
    -------
    dict
        ``{"accuracy": float, "macro_f1": float, "num_queries": int, "num_tied": int}``;
        ``num_tied`` counts rows whose maximum is shared by several classes.
    """
    ties = _check_ties(ties)
    scores = _as_score_matrix(logits, "logits")
    _check_finite(scores, "logits")
    n_rows, n_classes = scores.shape
    truth = _as_index_vector(labels, n_rows, n_classes, "labels", "classes")
    weights, tied_rows = _prediction_weights(scores, truth, ties)
    on_truth = weights[np.arange(n_rows), truth]
    true_positives = np.bincount(truth, weights=on_truth, minlength=n_classes)
    actual = np.bincount(truth, minlength=n_classes)
    f1 = _f1_from_counts(true_positives, weights.sum(axis=0), actual)
    return {
        "accuracy": float(np.mean(on_truth)),
        "macro_f1": float(np.mean(f1[actual > 0])),
        "num_queries": int(n_rows),
        "num_tied": int(np.count_nonzero(tied_rows)),
    }


def classification_metrics_over_runs(logits: object, labels: object, *, ties: str = "expected") -> dict:
    """:func:`classification_metrics` for each run of ``logits[R, N, C]`` plus their summary.

    For repeated evaluations of the same samples, e.g. the 10 synonym runs of ACE's Synonym
    Robustness Test. ``labels`` is ``[N]`` (shared by all runs) or ``[R, N]``.

    Returns
    -------
    dict
        ``{"per_run": [dict, ...], "summary": runs_summary(per_run)}``.
    """
    _check_ties(ties)
    stacked = np.asarray(logits)
    if stacked.ndim != 3:
        raise ValueError(f"logits must be a 3-D array [runs, samples, classes], got shape {stacked.shape}")
    if 0 in stacked.shape:
        raise ValueError(f"logits is empty (shape {stacked.shape})")
    if stacked.dtype == np.bool_ or not (np.issubdtype(stacked.dtype, np.floating) or np.issubdtype(stacked.dtype, np.integer)):
        raise ValueError(f"logits must hold real numbers, got dtype {stacked.dtype}")
    bad = ~np.isfinite(stacked)
    if bad.any():
        run, row, column = (int(i) for i in np.argwhere(bad)[0])
        kind = _describe_nonfinite(stacked[run, row, column])
        raise ValueError(f"logits has {kind} at run {run}, row {row}, column {column}")
    n_runs, n_rows, _ = stacked.shape
    truth = np.asarray(labels)
    if truth.ndim == 1:
        truth = np.broadcast_to(truth, (n_runs, truth.shape[0]))
    elif truth.ndim != 2 or truth.shape[0] != n_runs:
        raise ValueError(f"labels must have shape ({n_rows},) or ({n_runs}, {n_rows}), got {truth.shape}")
    per_run = []
    for run in range(n_runs):  # a loop over runs (about 10), not samples
        try:
            per_run.append(classification_metrics(stacked[run], truth[run], ties=ties))
        except ValueError as error:
            raise ValueError(f"run {run}: {error}") from None
    return {"per_run": per_run, "summary": runs_summary(per_run)}


# --------------------------------------------------------------------------------------------
# Summaries


def runs_summary(per_run: Sequence[Mapping[str, float]]) -> dict:
    """Mean and standard deviation of each metric over repeated runs.

    Both standard deviations are reported, named by their divisor, since papers rarely say which
    they print (ACE's "mean ± std" over 10 synonym runs does not)::

        std_population = sqrt(sum (x - mean)^2 / R)         numpy.std(x, ddof=0)
        std_sample     = sqrt(sum (x - mean)^2 / (R - 1))   numpy.std(x, ddof=1); None when R = 1

    Every run must report the same metric names with finite numeric values.

    Returns
    -------
    dict
        ``{"mean": {name: float}, "std_population": {name: float},
        "std_sample": {name: float | None}, "num_runs": int}``.
    """
    if isinstance(per_run, Mapping) or not isinstance(per_run, Sequence) or len(per_run) == 0:
        raise ValueError("per_run must be a non-empty list of metric dicts, one per run")
    for index, run in enumerate(per_run):
        if not isinstance(run, Mapping):
            raise ValueError(f"per_run[{index}] must be a dict of metric values, got {type(run).__name__}")
    names = list(per_run[0])
    if not names:
        raise ValueError("per_run[0] has no metrics")
    for index, run in enumerate(per_run):
        if set(run) != set(names):
            missing = sorted(set(names) - set(run), key=str)
            extra = sorted(set(run) - set(names), key=str)
            detail = f"lacks {missing}" if missing else f"has extra {extra}"
            raise ValueError(f"per_run[{index}] {detail} compared with per_run[0]: every run needs the same metrics")
        for name in names:
            value = run[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
                raise ValueError(f"per_run[{index}][{name!r}] = {_show(value)} is not a finite number")
    table = np.array([[float(run[name]) for name in names] for run in per_run])
    n_runs = table.shape[0]
    mean = table.mean(axis=0)
    population = table.std(axis=0, ddof=0)
    sample = table.std(axis=0, ddof=1) if n_runs > 1 else [None] * len(names)
    return {
        "mean": {name: float(v) for name, v in zip(names, mean)},
        "std_population": {name: float(v) for name, v in zip(names, population)},
        "std_sample": {name: (None if v is None else float(v)) for name, v in zip(names, sample)},
        "num_runs": int(n_runs),
    }


def _check_rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {_show(value)}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} = {_show(value)} is outside [0, 1]: rates are fractions, not percent")
    return float(value)


def harmonic_mean(seen: float, unseen: float) -> float:
    """Harmonic mean of a seen and an unseen rate, ``2 a b / (a + b)``, and 0 when both are 0.

    ACE's "HM" column for base-to-novel results (90.0 and 60.8 percent give 72.6). Inputs are
    fractions in [0, 1].
    """
    a = _check_rate(seen, "seen")
    b = _check_rate(unseen, "unseen")
    return 0.0 if a + b == 0.0 else 2.0 * a * b / (a + b)


def random_guess_baseline(
    label_counts: object = None,
    *,
    y_true: object = None,
    labels: object = None,
    guess_distribution: object = None,
) -> dict:
    """Accuracy and F1 of guessing a class at random, given how often each class occurs.

    With class prevalence ``p_c`` (from ``label_counts``, or counted from ``y_true`` over
    ``labels``) and guess probability ``q_c`` (``guess_distribution``, uniform ``1/K`` by
    default)::

        accuracy = sum_c p_c q_c                       (1/K for a uniform guess)
        F1_c     = 2 p_c q_c / (p_c + q_c)             (0 when p_c + q_c = 0)
        macro_f1 = mean of F1_c over classes with p_c > 0

    F1_c is the F1 of the expected confusion counts (expected TP = N p_c q_c, expected predicted
    = N q_c, actual = N p_c), the same convention as ``classification_metrics(ties="expected")``
    on constant logits; it is not the expected F1 of a finite random guesser, which is lower
    for small N. ACE's "Random" row: accuracy 1/K and this F1 for a uniform guess.

    Parameters
    ----------
    label_counts : array-like of shape (K,), optional
        Number (or share) of test samples of each of the K classes; zeros are classes that can be
        guessed but do not occur. Give this or ``y_true``.
    y_true : array-like of shape (N,), optional
        Test labels; the classes are ``labels`` (default ``numpy.unique(y_true)``).
    labels : array-like of shape (K,), optional
        The K classes that can be guessed, when ``y_true`` is given.
    guess_distribution : array-like of shape (K,), optional
        Probability of guessing each class; non-negative and summing to 1.

    Returns
    -------
    dict
        ``{"accuracy": float, "per_class_f1": numpy.ndarray [K], "macro_f1": float}``.
    """
    if (label_counts is None) == (y_true is None):
        raise ValueError("give exactly one of label_counts and y_true")
    if y_true is not None:
        truth = _as_class_labels(y_true, "y_true")
        classes = _class_list(labels, truth)
        at = _positions(truth, classes)
        if (at < 0).any():
            raise ValueError(f"y_true[{int(np.flatnonzero(at < 0)[0])}] = {truth[at < 0][0].item()!r} is not one of labels")
        counts = np.bincount(at, minlength=classes.shape[0]).astype(np.float64)
    else:
        if labels is not None:
            raise ValueError("labels is only used with y_true; label_counts already fixes the classes")
        counts = np.asarray(label_counts)
        if counts.ndim != 1 or counts.shape[0] == 0:
            raise ValueError(f"label_counts must be a non-empty 1-D array (one count per class), got shape {counts.shape}")
        if counts.dtype == np.bool_ or not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
            raise ValueError(f"label_counts must hold numbers, got dtype {counts.dtype}")
        counts = counts.astype(np.float64)
        bad = ~np.isfinite(counts) | (counts < 0)
        if bad.any():
            c = int(np.flatnonzero(bad)[0])
            raise ValueError(f"label_counts[{c}] = {counts[c]} is not a finite non-negative count")
        if counts.sum() == 0:
            raise ValueError("label_counts sums to 0: at least one class must occur")
    n_classes = counts.shape[0]
    prevalence = counts / counts.sum()
    if guess_distribution is None:
        guess = np.full(n_classes, 1.0 / n_classes)
    else:
        guess = np.asarray(guess_distribution)
        if guess.shape != (n_classes,):
            raise ValueError(f"guess_distribution must have one probability per class ({n_classes}), got shape {guess.shape}")
        if guess.dtype == np.bool_ or not (np.issubdtype(guess.dtype, np.integer) or np.issubdtype(guess.dtype, np.floating)):
            raise ValueError(f"guess_distribution must hold probabilities, got dtype {guess.dtype}")
        guess = guess.astype(np.float64)
        bad = ~np.isfinite(guess) | (guess < 0)
        if bad.any():
            c = int(np.flatnonzero(bad)[0])
            raise ValueError(f"guess_distribution[{c}] = {guess[c]} is not a probability")
        if not np.isclose(guess.sum(), 1.0, rtol=0.0, atol=1e-9):
            raise ValueError(f"guess_distribution sums to {float(guess.sum())!r}, not 1")
    f1 = _f1_from_counts(prevalence * guess, guess, prevalence)
    return {
        "accuracy": float(np.sum(prevalence * guess)),
        "per_class_f1": f1,
        "macro_f1": float(np.mean(f1[prevalence > 0])),
    }
