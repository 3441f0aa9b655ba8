"""Classification metrics against scikit-learn, brute-force tie-breaking and hand-worked values."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import accuracy_score, f1_score

from instract_eval.metrics.classification import (
    accuracy,
    classification_metrics,
    classification_metrics_over_runs,
    harmonic_mean,
    macro_f1,
    per_class_f1,
    random_guess_baseline,
    runs_summary,
)
from instract_eval.metrics.ranking import TIE_POLICIES

SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def label_pairs(draw, max_samples: int = 30, max_classes: int = 6):
    n = draw(st.integers(1, max_samples))
    y_true = draw(arrays(np.int64, (n,), elements=st.integers(0, max_classes - 1)))
    y_pred = draw(arrays(np.int64, (n,), elements=st.integers(0, max_classes - 1)))
    return y_true, y_pred


@st.composite
def logit_cases(draw, max_samples: int = 6, max_classes: int = 4):
    n = draw(st.integers(1, max_samples))
    c = draw(st.integers(1, max_classes))
    logits = draw(arrays(np.int64, (n, c), elements=st.integers(0, 2))).astype(float)
    labels = draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return logits, labels


def f1_from_confusion(confusion: np.ndarray, present: np.ndarray) -> float:
    """Macro F1 over the present classes from a (possibly fractional) confusion matrix [true, pred]."""
    scores = []
    for c in present:
        tp = confusion[c, c]
        fp = confusion[:, c].sum() - tp
        fn = confusion[c, :].sum() - tp
        scores.append(0.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------------------------
# Against scikit-learn


@SETTINGS
@given(label_pairs())
def test_accuracy_and_f1_equal_scikit_learn(pair):
    y_true, y_pred = pair
    present = np.unique(y_true)
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-15)
    np.testing.assert_allclose(
        per_class_f1(y_true, y_pred), f1_score(y_true, y_pred, labels=present, average=None, zero_division=0), atol=1e-15
    )
    assert macro_f1(y_true, y_pred) == pytest.approx(
        f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0), abs=1e-15
    )


@SETTINGS
@given(label_pairs(), st.lists(st.integers(0, 8), min_size=1, max_size=8, unique=True))
def test_explicit_labels_equal_scikit_learn(pair, labels):
    y_true, y_pred = pair
    np.testing.assert_allclose(
        per_class_f1(y_true, y_pred, labels=labels),
        f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0),
        atol=1e-15,
    )
    assert macro_f1(y_true, y_pred, labels=labels) == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0), abs=1e-15
    )


def test_string_labels_and_default_classes_come_from_y_true():
    y_true = np.array(["cut", "cut", "pour", "stir", "stir", "stir"])
    y_pred = np.array(["cut", "pour", "pour", "stir", "cut", "fold"])  # "fold" never occurs in y_true
    # cut: tp 1, fp 1, fn 1 -> 1/2; pour: tp 1, fp 1, fn 0 -> 2/3; stir: tp 1, fp 0, fn 2 -> 1/2.
    np.testing.assert_allclose(per_class_f1(y_true, y_pred), [0.5, 2 / 3, 0.5])
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert macro_f1(y_true, y_pred) == pytest.approx(
        f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)
    )
    # scikit-learn's own default would also average over "fold" (F1 0): ours deliberately does not.
    assert macro_f1(y_true, y_pred) > f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert accuracy(y_true, y_pred) == pytest.approx(3 / 6)


# ------------------------------------------------------------------------------------------------
# From logits


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_tie_free_logits_equal_scikit_learn_on_argmax(n, c, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c))
    labels = rng.integers(0, c, size=n)
    predicted = logits.argmax(axis=1)
    for ties in TIE_POLICIES:
        result = classification_metrics(logits, labels, ties=ties)
        assert result["accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-15)
        assert result["macro_f1"] == pytest.approx(
            f1_score(labels, predicted, labels=np.unique(labels), average="macro", zero_division=0), abs=1e-15
        )
        assert result["num_queries"] == n and result["num_tied"] == 0


@SETTINGS
@given(logit_cases())
def test_tied_logits_equal_brute_force_tie_breaking(case):
    logits, labels = case
    n, c = logits.shape
    maxima = [np.flatnonzero(row == row.max()) for row in logits]
    present = np.unique(labels)

    # Optimistic and pessimistic resolve each row to one class; score them with scikit-learn.
    optimistic = [labels[i] if labels[i] in maxima[i] else maxima[i][0] for i in range(n)]
    pessimistic = [next((j for j in maxima[i] if j != labels[i]), labels[i]) for i in range(n)]
    for ties, predicted in (("optimistic", optimistic), ("pessimistic", pessimistic)):
        result = classification_metrics(logits, labels, ties=ties)
        assert result["accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-15)
        assert result["macro_f1"] == pytest.approx(
            f1_score(labels, predicted, labels=present, average="macro", zero_division=0), abs=1e-15
        )

    # Expected: average over every combination of tie-breaking choices (all equally likely).
    accuracies = []
    confusion = np.zeros((c, c))
    combos = list(itertools.product(*maxima))
    for choice in combos:
        accuracies.append(np.mean(np.array(choice) == labels))
        for i, j in enumerate(choice):
            confusion[labels[i], j] += 1 / len(combos)
    result = classification_metrics(logits, labels, ties="expected")
    assert result["accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-12)
    assert result["macro_f1"] == pytest.approx(f1_from_confusion(confusion, present), abs=1e-12)
    assert result["num_tied"] == sum(len(m) > 1 for m in maxima)
    opt = classification_metrics(logits, labels, ties="optimistic")["accuracy"]
    pes = classification_metrics(logits, labels, ties="pessimistic")["accuracy"]
    assert opt >= result["accuracy"] - 1e-15 and result["accuracy"] >= pes - 1e-15


@SETTINGS
@given(st.integers(1, 50), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_constant_logits_give_chance_and_the_random_baseline_f1(n, c, seed):
    labels = np.random.default_rng(seed).integers(0, c, size=n)
    result = classification_metrics(np.full((n, c), 3.0), labels)
    assert result["accuracy"] == pytest.approx(1 / c, rel=1e-12)
    assert result["num_tied"] == (n if c > 1 else 0)
    baseline = random_guess_baseline(y_true=labels, labels=np.arange(c))
    assert result["macro_f1"] == pytest.approx(baseline["macro_f1"], rel=1e-12)
    assert classification_metrics(np.full((n, c), 3.0), labels, ties="optimistic")["accuracy"] == 1.0


def test_classification_metrics_hand_worked():
    logits = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 3.0]])
    labels = np.array([0, 1, 1, 2])
    # Row 1 ties classes 0/1 (truth 1); row 3 ties 1/2 (truth 2).
    assert classification_metrics(logits, labels, ties="optimistic")["accuracy"] == 0.75
    assert classification_metrics(logits, labels, ties="pessimistic")["accuracy"] == 0.25
    expected = classification_metrics(logits, labels)
    assert expected["accuracy"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    # Expected confusion: class 0 predicted 1.5 (tp 1), class 1 predicted 1.0 (tp 0.5), class 2
    # predicted 1.5 (tp 0.5); actual counts 1, 2, 1.
    f1 = [2 * 1 / (1.5 + 1), 2 * 0.5 / (1.0 + 2), 2 * 0.5 / (1.5 + 1)]
    assert expected["macro_f1"] == pytest.approx(np.mean(f1))
    assert expected["num_tied"] == 2
    assert set(expected) == {"accuracy", "macro_f1", "num_queries", "num_tied"}


# ------------------------------------------------------------------------------------------------
# Runs, harmonic mean, random baseline


def test_runs_summary_names_both_standard_deviations():
    per_run = [{"accuracy": a, "macro_f1": f} for a, f in [(0.5, 0.4), (0.7, 0.6), (0.6, 0.2), (0.9, 0.3)]]
    summary = runs_summary(per_run)
    accuracies = [0.5, 0.7, 0.6, 0.9]
    assert summary["num_runs"] == 4
    assert summary["mean"]["accuracy"] == pytest.approx(statistics.mean(accuracies))
    assert summary["std_population"]["accuracy"] == pytest.approx(statistics.pstdev(accuracies))
    assert summary["std_sample"]["accuracy"] == pytest.approx(statistics.stdev(accuracies))
    assert summary["std_sample"]["macro_f1"] == pytest.approx(statistics.stdev([0.4, 0.6, 0.2, 0.3]))
    assert summary["std_sample"]["accuracy"] > summary["std_population"]["accuracy"]
    single = runs_summary([{"accuracy": 0.5}])
    assert single["std_population"] == {"accuracy": 0.0}
    assert single["std_sample"] == {"accuracy": None}


def test_metrics_over_runs_equal_per_run_calls():
    rng = np.random.default_rng(2)
    logits = rng.integers(0, 3, size=(10, 20, 5)).astype(float)
    labels = rng.integers(0, 5, size=20)
    result = classification_metrics_over_runs(logits, labels)
    assert len(result["per_run"]) == 10
    for run in range(10):
        assert result["per_run"][run] == classification_metrics(logits[run], labels)
    accuracies = [r["accuracy"] for r in result["per_run"]]
    assert result["summary"]["mean"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert result["summary"]["std_population"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=0))
    assert result["summary"]["std_sample"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    per_run_labels = rng.integers(0, 5, size=(10, 20))
    second = classification_metrics_over_runs(logits, per_run_labels, ties="pessimistic")
    assert second["per_run"][3] == classification_metrics(logits[3], per_run_labels[3], ties="pessimistic")


def test_harmonic_mean_matches_ace_example():
    assert round(harmonic_mean(0.900, 0.608), 3) == 0.726
    assert harmonic_mean(0.900, 0.608) == pytest.approx(statistics.harmonic_mean([0.9, 0.608]))
    assert harmonic_mean(0.3, 0.8) == harmonic_mean(0.8, 0.3)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(0.0, 0.7) == 0.0
    assert harmonic_mean(0.4, 0.4) == pytest.approx(0.4)


def test_random_guess_baseline_uniform_and_given_distribution():
    counts = np.array([6, 3, 1, 0])  # 4 guessable classes, one absent from the test split
    result = random_guess_baseline(counts)
    assert result["accuracy"] == pytest.approx(0.25)
    p, q = counts / 10, 0.25
    np.testing.assert_allclose(result["per_class_f1"], 2 * p * q / (p + q))
    assert result["per_class_f1"][3] == 0.0
    assert result["macro_f1"] == pytest.approx(np.mean((2 * p * q / (p + q))[:3]))
    # Guessing by prevalence: accuracy sum p^2 and F1_c = p_c.
    by_prevalence = random_guess_baseline(counts, guess_distribution=counts / 10)
    assert by_prevalence["accuracy"] == pytest.approx(0.36 + 0.09 + 0.01)
    np.testing.assert_allclose(by_prevalence["per_class_f1"], [0.6, 0.3, 0.1, 0.0])
    # From labels: the same figures as from counts, and a large simulated guesser agrees.
    y_true = np.repeat(["a", "b", "c"], [6, 3, 1])
    from_labels = random_guess_baseline(y_true=y_true, labels=["a", "b", "c", "d"])
    np.testing.assert_allclose(from_labels["per_class_f1"], result["per_class_f1"])
    rng = np.random.default_rng(0)
    big_true = np.repeat(np.arange(4), [60000, 30000, 10000, 0])
    simulated = f1_score(big_true, rng.integers(0, 4, size=big_true.shape[0]), labels=[0, 1, 2], average=None)
    np.testing.assert_allclose(simulated, result["per_class_f1"][:3], atol=0.01)


# ------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        ([0, 1], [0], "y_pred has 1 entries but y_true has 2"),
        ([], [], "y_true is empty"),
        ([[0, 1]], [[0, 1]], "y_true must be a 1-D array"),
        ([0.0, 1.0], [0.0, 1.0], "y_true must hold integer or string class labels"),
        ([0, 1], ["a", "b"], "y_true holds integer labels but y_pred holds string labels"),
    ],
)
def test_bad_label_vectors_raise(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        macro_f1(y_true, y_pred)


def test_bad_explicit_labels_raise():
    with pytest.raises(ValueError, match="labels lists class 1 more than once"):
        per_class_f1([0, 1], [0, 1], labels=[1, 0, 1])
    with pytest.raises(ValueError, match="labels holds string labels but y_true holds integer labels"):
        per_class_f1([0, 1], [0, 1], labels=["a"])


@pytest.mark.parametrize(
    "logits, labels, kwargs, message",
    [
        (np.array([[0.0, np.nan], [1.0, 0.0]]), [0, 1], {}, "logits has NaN at row 0, column 1"),
        (np.zeros((2, 3)), [0, 3], {}, r"labels\[1\] = 3 is out of range for 3 classes"),
        (np.zeros((2, 3)), [0], {}, "labels must be a 1-D array of 2 indices"),
        (np.zeros(3), [0], {}, "logits must be a 2-D array"),
        (np.zeros((2, 3)), [0, 1], {"ties": "coin"}, "ties must be one of"),
    ],
)
def test_bad_logits_raise(logits, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(logits, labels, **kwargs)


def test_bad_runs_raise():
    with pytest.raises(ValueError, match="logits must be a 3-D array"):
        classification_metrics_over_runs(np.zeros((2, 3)), [0, 1])
    bad = np.zeros((3, 2, 2))
    bad[2, 1, 0] = np.inf
    with pytest.raises(ValueError, match=r"logits has \+inf at run 2, row 1, column 0"):
        classification_metrics_over_runs(bad, [0, 1])
    with pytest.raises(ValueError, match=r"run 1: labels\[0\] = 5 is out of range"):
        classification_metrics_over_runs(np.zeros((2, 2, 2)), [[0, 1], [5, 0]])
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\) or \(2, 2\)"):
        classification_metrics_over_runs(np.zeros((2, 2, 2)), np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match="per_run must be a non-empty list"):
        runs_summary([])
    with pytest.raises(ValueError, match=r"per_run\[1\] lacks \['macro_f1'\]"):
        runs_summary([{"accuracy": 0.5, "macro_f1": 0.5}, {"accuracy": 0.5}])
    with pytest.raises(ValueError, match=r"per_run\[0\]\['accuracy'\] = nan is not a finite number"):
        runs_summary([{"accuracy": float("nan")}])


@pytest.mark.parametrize(
    "seen, unseen, message",
    [
        (90.0, 60.8, "seen = 90.0 is outside"),
        (0.5, -0.1, r"unseen = -0.1 is outside \[0, 1\]"),
        (float("nan"), 0.5, "seen must be a finite number"),
        ("0.5", 0.5, "seen must be a finite number"),
    ],
)
def test_bad_harmonic_mean_input_raises(seen, unseen, message):
    with pytest.raises(ValueError, match=message):
        harmonic_mean(seen, unseen)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((), {}, "give exactly one of label_counts and y_true"),
        (([1, 2],), {"y_true": [0, 1]}, "give exactly one of label_counts and y_true"),
        (([1, -2],), {}, r"label_counts\[1\] = -2.0 is not a finite non-negative count"),
        (([0, 0],), {}, "label_counts sums to 0"),
        (([1, 2],), {"guess_distribution": [0.5, 0.6]}, "guess_distribution sums to"),
        (([1, 2],), {"guess_distribution": [1.0]}, r"guess_distribution must have one probability per class \(2\)"),
        (([1, 2],), {"guess_distribution": [1.5, -0.5]}, r"guess_distribution\[1\] = -0.5 is not a probability"),
        (([1, 2],), {"labels": [0, 1]}, "labels is only used with y_true"),
        ((), {"y_true": [0, 1, 7], "labels": [0, 1]}, r"y_true\[2\] = 7 is not one of labels"),
    ],
)
def test_bad_random_baseline_input_raises(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_guess_baseline(*args, **kwargs)
