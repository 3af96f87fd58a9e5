"""Pooled metrics, patient-level bootstrap intervals and paired tests (ssagan_tf/evaluation/stats.py)."""

import numpy as np
import pytest

from ssagan_tf import metrics
from ssagan_tf.evaluation import stats

# Two patients, one tumor and one normal slice each. A resample of two patients is AA, AB, BA or
# BB with probability 1/4 each: AUC(AA) = 1 (0.9 > 0.2), AUC(BB) = 0 (0.3 < 0.6), and AUC(AB) =
# 3/4 (of the pairs 0.9>0.2, 0.9>0.6, 0.3>0.2, 0.3<0.6, three are won).
LABELS = np.array([1, 0, 1, 0])
SCORES = np.array([0.9, 0.2, 0.3, 0.6])
PATIENTS = np.array(["A", "A", "B", "B"])


def test_weighted_auc_equals_the_auc_of_the_repeated_slices():
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 40), np.round(rng.random(40), 1)     # rounding makes ties
    weights = rng.integers(0, 4, (5, 40))
    for row, w in zip(stats.weighted_auc(labels, scores, weights), weights):
        assert row == pytest.approx(metrics.roc_auc(np.repeat(labels, w), np.repeat(scores, w)))


def test_bootstrap_distribution_matches_its_enumeration():
    weights = stats.bootstrap_weights(PATIENTS, resamples=4000, seed=1)
    auc = stats.weighted_auc(LABELS, SCORES, weights)
    values, counts = np.unique(auc, return_counts=True)
    assert values.tolist() == [0.0, 0.75, 1.0]
    assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    ci = stats.bootstrap_ci("auc", LABELS, PATIENTS, SCORES[None], resamples=4000, seed=1)
    assert ci["estimate"] == pytest.approx(0.75)       # all four slices: the AB case
    assert (ci["low"], ci["high"]) == (0.0, 1.0)       # 2.5% and 97.5% of {0: 1/4, 3/4: 1/2, 1: 1/4}


def test_bootstrap_ci_against_an_independent_loop():
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(6)], 5)
    labels = np.tile([1, 1, 0, 0, 0], 6)
    scores = rng.random((2, 30)) + 0.3 * labels        # two seeds
    ci = stats.bootstrap_ci("auc", labels, patients, scores, resamples=300, seed=7)
    # The documented draw, then each replicate built by concatenating the drawn patients' slices.
    draws = np.random.default_rng(7).integers(0, 6, size=(300, 6))
    names = np.unique(patients)
    reference = []
    for draw in draws:
        take = np.concatenate([np.flatnonzero(patients == names[i]) for i in draw])
        reference.append(np.mean([metrics.roc_auc(labels[take], s[take]) for s in scores]))
    low, high = np.percentile(reference, [2.5, 97.5])
    assert ci["low"] == pytest.approx(low) and ci["high"] == pytest.approx(high)
    assert ci["estimate"] == pytest.approx(np.mean([metrics.roc_auc(labels, s) for s in scores]))
    assert ci["resamples"] == 300 and ci["undefined_resamples"] == 0


def test_paired_bootstrap_of_an_arm_with_itself_is_zero_and_of_a_better_arm_positive():
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(12), 4)
    labels = np.tile([1, 0, 1, 0], 12)
    weak = rng.random((3, 48))
    strong = weak + 0.8 * labels
    same = stats.paired_bootstrap_ci("auc", labels, patients, weak, weak, resamples=200)
    assert same["estimate"] == same["low"] == same["high"] == 0.0
    better = stats.paired_bootstrap_ci("auc", labels, patients, strong, weak, resamples=200)
    assert better["low"] > 0 and better["estimate"] == pytest.approx(
        np.mean([metrics.roc_auc(labels, s) - metrics.roc_auc(labels, w) for s, w in zip(strong, weak)]))


def test_weighted_balanced_accuracy_by_hand():
    labels = np.array([1, 1, 0, 0])
    predictions = np.array([1, 0, 0, 1])
    weights = np.array([[1, 1, 1, 1], [3, 1, 1, 0]])
    # Row 2: sensitivity 3/4, specificity 1/1.
    assert stats.weighted_balanced_accuracy(labels, predictions, weights).tolist() == [0.5, 0.875]


def test_paired_tests_use_scipy_sign_and_wilcoxon():
    result = stats.paired_tests([0.02, 0.01, 0.03, -0.01, 0.0, 0.04])
    assert (result["wins"], result["losses"], result["ties"], result["units"]) == (4, 1, 1, 6)
    assert result["sign_test_p"] == pytest.approx(2 * 6 / 32)            # P(<= 1 of 5) twice
    # Wilcoxon, exact: ranks of |d| 1.5 1.5 3 4 5 (the zero dropped), W- = 1.5; of the 32 sign
    # patterns, 3 have a negative rank sum <= 1.5 (none, either 1.5), so p = 2 x 3/32.
    assert result["wilcoxon_p"] == pytest.approx(2 * 3 / 32)
    assert stats.paired_tests([0.0, 0.0])["wilcoxon_p"] is None
