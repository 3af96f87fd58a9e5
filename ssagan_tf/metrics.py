"""Every measure of the project, once, as pure numpy functions: classifier metrics, Dice/IoU of
attention pseudo-masks, fill scores, period-2 (checkerboard and stripe) texture, KID/MMD, class
rates and the sign test. Training's
validation, augmentation and evaluation all use them (paper section IV; docs/method.md,
"Augmentation and evaluation").

Tumor is the positive class throughout. A metric that is undefined for the data it is given (the
sensitivity of a test set without tumor slices, an AUC with a single class) is NaN, never a guess.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest


def confusion_counts(labels, predictions) -> dict:
    """True/false positives and negatives of hard 0/1 predictions against 0/1 labels."""
    labels = np.asarray(labels).astype(bool).ravel()
    predictions = np.asarray(predictions).astype(bool).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions")
    return {"tp": int(np.sum(labels & predictions)), "fn": int(np.sum(labels & ~predictions)),
            "tn": int(np.sum(~labels & ~predictions)), "fp": int(np.sum(~labels & predictions))}


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator) / denominator if denominator else float("nan")


def rates_from_counts(tp: int, fn: int, tn: int, fp: int) -> dict:
    """Sensitivity TP/(TP+FN), specificity TN/(TN+FP), accuracy and balanced accuracy
    (the mean of sensitivity and specificity)."""
    sensitivity = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    return {"sensitivity": sensitivity, "specificity": specificity,
            "accuracy": _ratio(tp + tn, tp + fn + tn + fp),
            "balanced_accuracy": 0.5 * (sensitivity + specificity)}


def roc_curve(labels, scores):
    """ROC points (fpr, tpr) from (0, 0) to (1, 1), one point per distinct score, so tied scores
    move the curve diagonally; also returns the thresholds (predict tumor when score >= t)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        nan = np.array([np.nan])
        return nan, nan, nan
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # The last index of each run of equal scores: every tied example crosses together.
    last_of_run = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    tp = np.cumsum(labels)[last_of_run]
    fp = np.cumsum(~labels)[last_of_run]
    fpr = np.r_[0.0, fp / negatives]
    tpr = np.r_[0.0, tp / positives]
    thresholds = np.r_[np.inf, scores[last_of_run]]
    return fpr, tpr, thresholds


def auc_trapezoid(x, y) -> float:
    """Area under a piecewise-linear curve through (x, y) by the trapezoid rule."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; equals the probability that a random tumor slice scores above
    a random normal slice, ties counting one half (the Mann-Whitney U statistic)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float("nan") if np.isnan(fpr[0]) else auc_trapezoid(fpr, tpr)


def classification_metrics(labels, probabilities, threshold: float = 0.5) -> dict:
    """All the paper's numbers for one classifier: the confusion counts at `threshold`, the rates,
    `auc` from the probabilities and `auc_hard` from the hard labels. The hard-label ROC has one
    point, so its area is (sensitivity + specificity) / 2: what papers that report an "AUC" from
    predicted classes publish."""
    probabilities = np.asarray(probabilities, np.float64).ravel()
    predictions = probabilities >= threshold
    counts = confusion_counts(labels, predictions)
    result = dict(counts, **rates_from_counts(**counts))
    result["auc"] = roc_auc(labels, probabilities)
    result["auc_hard"] = roc_auc(labels, predictions.astype(np.float64))
    return result


def mean_interval(values, resamples: int = 2000, seed: int = 0) -> list:
    """[mean, low, high]: the mean of the finite values and its 95% bootstrap interval (seeded;
    NaNs for no finite value)."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return [float("nan")] * 3
    means = np.random.default_rng(seed).choice(finite, (resamples, len(finite))).mean(axis=1)
    return [float(finite.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarize(values) -> dict:
    """Mean and sample standard deviation (ddof=1) over the finite values; std is NaN for n < 2."""
    values = np.asarray(values, np.float64).ravel()
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    return {"mean": float(finite.mean()) if n else float("nan"),
            "std": float(finite.std(ddof=1)) if n >= 2 else float("nan"), "n": n}


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test (`scipy.stats.binomtest` at p = 1/2): the probability, under no
    difference, of a split of wins and losses at least this uneven. Ties are dropped; 1 for no
    pairs. With n pairs it cannot fall below 2**(1-n)."""
    n = int(wins) + int(losses)
    return 1.0 if n == 0 else float(binomtest(int(wins), n, 0.5).pvalue)


def paired_differences(treatment, baseline) -> dict:
    """Per-seed differences treatment - baseline (same seeds, same test set), their mean and
    sample std, the sign count and the exact sign-test p-value."""
    treatment, baseline = np.asarray(treatment, np.float64), np.asarray(baseline, np.float64)
    if treatment.shape != baseline.shape:
        raise ValueError(f"paired values differ in number: {treatment.shape} vs {baseline.shape}")
    differences = treatment - baseline
    finite = differences[np.isfinite(differences)]
    wins, losses = int(np.sum(finite > 0)), int(np.sum(finite < 0))
    result = summarize(finite)
    result.update(differences=[float(d) for d in differences], wins=wins, losses=losses,
                  ties=int(finite.size - wins - losses), sign_test_p=sign_test_p(wins, losses))
    return result


def _per_slice(array: np.ndarray) -> np.ndarray:
    """[N, ...] -> [N, pixels], also for N = 0."""
    return array.reshape(array.shape[0], int(np.prod(array.shape[1:])))


def dice_iou(predicted_masks, true_masks) -> tuple:
    """Per-slice Dice 2|P&T|/(|P|+|T|) and IoU |P&T|/|P or T| of binary masks [N, H, W(, 1)];
    both are 1 for a slice where both masks are empty."""
    predicted, true = _per_slice(np.asarray(predicted_masks, bool)), _per_slice(np.asarray(true_masks, bool))
    intersection = np.sum(predicted & true, axis=1).astype(np.float64)
    sizes = np.sum(predicted, axis=1) + np.sum(true, axis=1).astype(np.float64)
    union = sizes - intersection
    dice = np.where(sizes > 0, 2 * intersection / np.maximum(sizes, 1), 1.0)
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
    return dice, iou


def outside_change(source_images, translated_images, attention, tau: float) -> np.ndarray:
    """Per-slice mean absolute change |translated - source| over the pixels (and channels)
    outside the attended region (attention < tau): how well the background is preserved.
    NaN for a slice whose whole area is attended."""
    source = np.asarray(source_images, np.float64)
    translated = np.asarray(translated_images, np.float64)
    outside = np.broadcast_to(np.asarray(attention) < tau, source.shape)
    change = np.abs(translated - source) * outside
    count, total = _per_slice(outside).sum(axis=1), _per_slice(change).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def fill_scores(original_images, filled_images, masks, data_range: float = 2.0) -> dict:
    """How well a fill restores the real tissue inside `masks`, per slice, as the BraTS 2023
    inpainting task scores it (inside the inpainted region only): {"l1": mean |filled - original|
    over the masked pixels and channels, "psnr": 10 log10(data_range^2 / their mean squared
    error) (inf when equal), "ssim": the mean of skimage's SSIM map (Wang et al. 2004, 7x7
    windows, `data_range`, over channels) over the masked pixels}. Images [N, H, W, C] in the
    data's [-1, 1] (data_range 2: the same PSNR as [0, 1] images with range 1); masks [N, H, W]
    or [N, H, W, 1]. NaN for a slice with an empty mask."""
    from skimage.metrics import structural_similarity

    original = np.asarray(original_images, np.float64)
    filled = np.asarray(filled_images, np.float64)
    inside = np.asarray(masks).reshape(original.shape[:3]) > 0.5
    scores = {"l1": [], "psnr": [], "ssim": []}
    for real, fill, mask in zip(original, filled, inside):
        if not mask.any():
            for values in scores.values():
                values.append(float("nan"))
            continue
        error = (fill - real)[mask]
        mse = float(np.mean(error ** 2))
        scores["l1"].append(float(np.mean(np.abs(error))))
        scores["psnr"].append(float("inf") if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse))
        _, ssim_map = structural_similarity(real, fill, data_range=data_range, channel_axis=-1, full=True)
        scores["ssim"].append(float(ssim_map.mean(axis=-1)[mask].mean()))
    return {name: np.asarray(values) for name, values in scores.items()}


PERIOD_TWO_PATTERNS = ("checker", "rows", "cols")
FLAT = 1e-9          # a mean detector response below this (of images in [-1, 1]) is rounding, not texture


def _period_two_responses(images: np.ndarray) -> dict:
    """|response| of three detectors of period-2 texture on [N, H, W] images, each [N, H, W]
    (zero where a detector's window leaves the slice): `checker` the 2x2 kernel [[1, -1], [-1, 1]]
    / 4 (a checkerboard, what stride-2 transposed convolutions paint), `rows` and `cols` the second
    differences [1, -2, 1] / 4 across rows and across columns (alternating rows: horizontal stripes;
    alternating columns: vertical stripes). Smooth intensity ramps give 0."""
    x = np.asarray(images, np.float64)
    out = {name: np.zeros_like(x) for name in PERIOD_TWO_PATTERNS}
    out["checker"][:, :-1, :-1] = np.abs(x[:, :-1, :-1] - x[:, 1:, :-1] - x[:, :-1, 1:] + x[:, 1:, 1:]) / 4
    out["rows"][:, 1:-1, :] = np.abs(x[:, :-2, :] - 2 * x[:, 1:-1, :] + x[:, 2:, :]) / 4
    out["cols"][:, :, 1:-1] = np.abs(x[:, :, :-2] - 2 * x[:, :, 1:-1] + x[:, :, 2:]) / 4
    return out


def period_two_ratios(translated_images, source_images, regions) -> dict:
    """How much more period-2 texture a translation has than its input, inside a region per slice
    ([N, H, W, C] images, first channel; [N, H, W(, 1)] boolean regions, e.g. attention >= tau):
    for each pattern of `_period_two_responses`, per slice the mean response on the translation
    over the mean on the input in the slice's region (1: as much as the real image there; NaN for
    a slice with an empty region or a flat input)."""
    fake = _period_two_responses(np.asarray(translated_images)[..., 0])
    real = _period_two_responses(np.asarray(source_images)[..., 0])
    regions = np.asarray(regions, bool).reshape(fake["checker"].shape)
    ratios = {}
    for name in PERIOD_TWO_PATTERNS:
        values = []
        for f, r, region in zip(fake[name], real[name], regions):
            below = r[region].mean() if region.any() else 0.0
            values.append(f[region].mean() / below if below > FLAT else math.nan)
        ratios[name] = np.asarray(values)
    return ratios


STRIPE_BANDS = ((0.08, 0.16), (0.16, 0.25), (0.25, 0.35), (0.35, 0.5))   # cycles per pixel
STRIPE_WEDGE_DEGREES = 15.0
STRIPE_MIN_PIXELS = 30      # a region smaller than this has too few Fourier bins in a band to count


def stripe_ratios(images, regions, band=(0.16, 0.35), min_pixels: int = STRIPE_MIN_PIXELS) -> np.ndarray:
    """Horizontal against vertical streaks, per slice, at the spatial frequencies of `band`
    (cycles per pixel, radial; 0.5 is the period-2 limit, 0.25 a period of 4 pixels): the slice's
    first channel inside its region (less the region's mean, zero outside) is Fourier transformed,
    and the power within `STRIPE_WEDGE_DEGREES` of the vertical frequency axis (intensity varying
    from row to row: horizontal streaks) is divided by the power within as much of the horizontal
    axis (vertical streaks). Real MR slices sit below 1 when they are smoother from row to row;
    a ratio above theirs is streaks their slices do not have. [N, H, W, C] or [N, H, W] images,
    [N, H, W(, 1)] boolean regions; NaN for a region under `min_pixels` pixels or no power there."""
    x = np.asarray(images, np.float64)
    x = x[..., 0] if x.ndim == 4 else x
    regions = np.asarray(regions, bool).reshape(x.shape)
    fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[1]), np.fft.fftfreq(x.shape[2]), indexing="ij")
    radius, angle = np.hypot(fy, fx), np.degrees(np.arctan2(np.abs(fy), np.abs(fx)))
    ring = (radius >= band[0]) & (radius < band[1])
    across_rows, across_columns = ring & (angle > 90.0 - STRIPE_WEDGE_DEGREES), ring & (angle < STRIPE_WEDGE_DEGREES)
    values = []
    for image, region in zip(x, regions):
        if region.sum() < min_pixels:
            values.append(math.nan)
            continue
        power = np.abs(np.fft.fft2(np.where(region, image - image[region].mean(), 0.0))) ** 2
        below = power[across_columns].sum()
        values.append(power[across_rows].sum() / below if below > FLAT else math.nan)
    return np.asarray(values)


def class_rate(probabilities, tumor: bool, threshold: float = 0.5) -> float:
    """Fraction of slices a classifier calls tumor (p >= threshold) when `tumor`, else normal
    (p < threshold): the judge's "tumor rate" of synthetic tumors, or "normal rate" of synthetic
    normal slices. NaN for no slices."""
    p = np.asarray(probabilities, np.float64).ravel()
    if p.size == 0:
        return float("nan")
    called = p >= threshold
    return float(np.mean(called if tumor else ~called))


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel k(x, y) = (x . y / d + 1)^3 between the rows of a and b (d features)."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(a, b) -> float:
    """Unbiased squared MMD between feature sets a [m, d] and b [n, d] under the KID kernel:
    mean k(a_i, a_j) over i != j + mean k(b_i, b_j) over i != j - 2 mean k(a_i, b_j)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m, n = len(a), len(b)
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    kaa, kbb, kab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
    within_a = (kaa.sum() - np.trace(kaa)) / (m * (m - 1))
    within_b = (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
    return float(within_a + within_b - 2.0 * kab.mean())


def kernel_inception_distance(a, b, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """KID (Binkowski et al. 2018) between feature sets a and b: the unbiased MMD^2 under the
    cubic polynomial kernel, averaged over `subsets` random subsets of min(subset_size, m, n)
    rows drawn without replacement from each set; returns {"mean", "std" (over subsets),
    "subset_size", "subsets"}. 0 in expectation for samples of one distribution (single
    estimates can be slightly negative). With sets no larger than `subset_size` every subset is
    the whole set, and one is computed."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs two [N, d] feature sets of one width, got {a.shape} and {b.shape}")
    size = min(int(subset_size), len(a), len(b))
    if size < 2:
        return {"mean": float("nan"), "std": float("nan"), "subset_size": size, "subsets": 0}
    if size == len(a) == len(b):
        subsets = 1
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(max(int(subsets), 1)):
        pick_a = a if size == len(a) else a[rng.choice(len(a), size, replace=False)]
        pick_b = b if size == len(b) else b[rng.choice(len(b), size, replace=False)]
        values.append(mmd2_unbiased(pick_a, pick_b))
    values = np.asarray(values)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "subset_size": size, "subsets": len(values)}


def split_by_case(case_ids, seed: int = 0) -> tuple:
    """Two disjoint index sets over slices with the cases (patients) shuffled and dealt
    alternately, so that no case is in both halves: the real-vs-real reference of a distance.
    With one case, the slices themselves are halved."""
    case_ids = np.asarray(case_ids)
    cases = np.unique(case_ids)
    if len(cases) < 2:
        order = np.random.default_rng(seed).permutation(len(case_ids))
        return np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])
    shuffled = np.random.default_rng(seed).permutation(cases)
    first = np.isin(case_ids, shuffled[0::2])
    return np.flatnonzero(first), np.flatnonzero(~first)
