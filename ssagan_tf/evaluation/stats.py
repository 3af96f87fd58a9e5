"""Statistics that carry a claim across patients: pooled AUC and balanced accuracy, patient-level
bootstrap confidence intervals, paired differences between two arms, and paired tests.

The unit of resampling is the patient, not the slice: slices of one patient are strongly
correlated, so resampling slices would give intervals far too narrow. A bootstrap replicate draws
P patients with replacement from the P test patients (numpy's default_rng(seed).integers(0, P,
(resamples, P)), all replicates at once) and weights each slice by how often its patient was
drawn; the statistic is recomputed on the weighted slices. The interval is the percentile
interval of the replicates (2.5% and 97.5% for 95%). Two arms compared on the same patients use
the same replicates (a paired bootstrap), so what the patients share cancels in the difference.

The statistic of an arm is the mean over seeds of the metric of its test predictions pooled over
folds (every patient tested exactly once per seed); seeds are averaged inside each replicate, so
the interval covers the choice of patients with the training noise averaged, not the seed spread.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats

from ssagan_tf.metrics import sign_test_p

RESAMPLES = 2000       # bootstrap replicates; the CI bounds move by ~0.1-0.3 AUC points between seeds of the draw
BOOTSTRAP_SEED = 0
LEVEL = 0.95


def patient_index(patient_ids) -> tuple:
    """(sorted distinct patients, the index of each slice's patient among them)."""
    patients, index = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    return patients, index.ravel()


def bootstrap_weights(patient_ids, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples, slices] multiplicity of each slice in each patient-level bootstrap replicate."""
    patients, index = patient_index(patient_ids)
    draws = np.random.default_rng(seed).integers(0, len(patients), size=(int(resamples), len(patients)))
    counts = np.stack([np.bincount(row, minlength=len(patients)) for row in draws]).astype(np.float64)
    return counts[:, index]


def weighted_auc(labels, scores, weights) -> np.ndarray:
    """ROC AUC (the Mann-Whitney probability, ties one half) of `scores` for 0/1 `labels` under
    each row of slice `weights` [B, N] (a slice of weight w counts as w copies); [B], NaN where a
    row leaves one class without weight."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores) != 0) + 1]
    positive = weights[:, order] * labels[order]
    negative = weights[:, order] * ~labels[order]
    pos_group = np.add.reduceat(positive, starts, axis=1)
    neg_group = np.add.reduceat(negative, starts, axis=1)
    neg_below = np.cumsum(neg_group, axis=1) - neg_group
    total_pos, total_neg = pos_group.sum(axis=1), neg_group.sum(axis=1)
    wins = np.sum(pos_group * (neg_below + 0.5 * neg_group), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((total_pos > 0) & (total_neg > 0), wins / (total_pos * total_neg), np.nan)


def weighted_balanced_accuracy(labels, predictions, weights) -> np.ndarray:
    """(sensitivity + specificity) / 2 of hard 0/1 `predictions` under each row of `weights`; [B]."""
    labels = np.asarray(labels).astype(bool).ravel()
    hit = np.asarray(predictions).astype(bool).ravel() == labels
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = (weights * (labels & hit)).sum(1) / (weights * labels).sum(1)
        specificity = (weights * (~labels & hit)).sum(1) / (weights * ~labels).sum(1)
    return 0.5 * (sensitivity + specificity)


def _metric(name: str, labels, probabilities, weights, threshold: float) -> np.ndarray:
    if name == "auc":
        return weighted_auc(labels, probabilities, weights)
    if name == "balanced_accuracy":
        return weighted_balanced_accuracy(labels, np.asarray(probabilities) >= threshold, weights)
    raise ValueError(f"unknown pooled metric {name!r}; choose auc or balanced_accuracy")


def seed_mean(name: str, labels, probabilities_by_seed, weights, threshold: float = 0.5) -> np.ndarray:
    """The mean over seeds (rows of `probabilities_by_seed` [S, N]) of the metric under each row of
    `weights`; [B]."""
    values = [_metric(name, labels, p, weights, threshold) for p in np.atleast_2d(probabilities_by_seed)]
    return np.mean(values, axis=0)


def _interval(replicates: np.ndarray, level: float) -> dict:
    finite = replicates[np.isfinite(replicates)]
    tail = 100 * (1 - level) / 2
    low, high = (np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan))
    return {"low": float(low), "high": float(high), "resamples": int(replicates.size),
            "undefined_resamples": int(replicates.size - finite.size), "level": level}


def bootstrap_ci(name: str, labels, patient_ids, probabilities_by_seed, threshold: float = 0.5,
                 resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> dict:
    """Point estimate (mean over seeds of the pooled metric) and its patient-level percentile
    bootstrap interval: {"estimate", "low", "high", "resamples", "undefined_resamples", "level"}."""
    ones = np.ones((1, len(np.asarray(labels).ravel())))
    estimate = float(seed_mean(name, labels, probabilities_by_seed, ones, threshold)[0])
    replicates = seed_mean(name, labels, probabilities_by_seed, bootstrap_weights(patient_ids, resamples, seed),
                           threshold)
    return dict(estimate=estimate, **_interval(replicates, level))


def paired_bootstrap_ci(name: str, labels, patient_ids, probabilities_a, probabilities_b, threshold: float = 0.5,
                        resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> dict:
    """The difference a - b of two arms' statistics on the same test slices (same patients, folds
    and seeds) with the percentile interval of the same patient replicates applied to both."""
    n = len(np.asarray(labels).ravel())
    ones = np.ones((1, n))
    estimate = float(seed_mean(name, labels, probabilities_a, ones, threshold)[0]
                     - seed_mean(name, labels, probabilities_b, ones, threshold)[0])
    weights = bootstrap_weights(patient_ids, resamples, seed)
    replicates = (seed_mean(name, labels, probabilities_a, weights, threshold)
                  - seed_mean(name, labels, probabilities_b, weights, threshold))
    return dict(estimate=estimate, **_interval(replicates, level))


def paired_tests(differences) -> dict:
    """Paired tests over units (folds x seeds) of per-unit differences a - b: the counts, the exact
    sign test, and the Wilcoxon signed-rank test (exact for small samples, zero differences
    dropped; None when no difference is non-zero)."""
    d = np.asarray(differences, np.float64).ravel()
    d = d[np.isfinite(d)]
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    nonzero = d[d != 0]
    wilcoxon = float(scipy_stats.wilcoxon(nonzero).pvalue) if nonzero.size else None
    return {"units": int(d.size), "wins": wins, "losses": losses, "ties": int(d.size - wins - losses),
            "mean": float(d.mean()) if d.size else float("nan"),
            "sign_test_p": sign_test_p(wins, losses), "wilcoxon_p": wilcoxon}
