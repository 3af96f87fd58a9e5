"""ssagan_tf/metrics.py: every metric against a hand-computed value."""

import math

import numpy as np
import pytest

from ssagan_tf import metrics


def test_confusion_counts_and_rates_by_hand():
    labels = [1, 1, 1, 0, 0, 0, 0]
    predictions = [1, 1, 0, 0, 0, 1, 0]
    counts = metrics.confusion_counts(labels, predictions)
    assert counts == {"tp": 2, "fn": 1, "tn": 3, "fp": 1}
    rates = metrics.rates_from_counts(**counts)
    assert rates["sensitivity"] == pytest.approx(2 / 3)
    assert rates["specificity"] == pytest.approx(3 / 4)
    assert rates["accuracy"] == pytest.approx(5 / 7)
    assert rates["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)


def test_rates_without_a_class_are_nan_not_guessed():
    rates = metrics.rates_from_counts(tp=0, fn=0, tn=3, fp=1)
    assert math.isnan(rates["sensitivity"]) and rates["specificity"] == 0.75


def test_roc_curve_and_auc_of_a_hand_example():
    labels = [1, 1, 0, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.3]
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert thresholds[0] == np.inf and thresholds[-1] == 0.3
    # 8 of the 9 (tumor, normal) pairs are ordered correctly.
    assert metrics.roc_auc(labels, scores) == pytest.approx(8 / 9)


def test_tied_scores_move_the_roc_diagonally_and_count_half():
    labels = [1, 0, 1, 0]
    scores = [0.5, 0.5, 0.8, 0.2]
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert metrics.roc_auc(labels, scores) == pytest.approx(3.5 / 4)


def test_auc_equals_the_mann_whitney_statistic_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.uniform(size=200) + 0.3 * labels, 1)  # rounding makes many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert metrics.roc_auc(labels, scores) == pytest.approx(pairs.mean())


def test_constant_scores_give_auc_one_half_and_one_class_gives_nan():
    assert metrics.roc_auc([0, 1, 1, 0, 1], [0.3] * 5) == pytest.approx(0.5)
    assert math.isnan(metrics.roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))


def test_hard_label_auc_is_balanced_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    probabilities = rng.uniform(size=50)
    result = metrics.classification_metrics(labels, probabilities, threshold=0.5)
    assert result["auc_hard"] == pytest.approx(result["balanced_accuracy"])
    assert result["auc"] == pytest.approx(metrics.roc_auc(labels, probabilities))
    assert result["tp"] + result["fn"] == labels.sum()


def test_classification_metrics_threshold_is_inclusive():
    result = metrics.classification_metrics([1, 0], [0.5, 0.49], threshold=0.5)
    assert (result["sensitivity"], result["specificity"]) == (1.0, 1.0)


def test_summarize_uses_the_sample_std_and_skips_nan():
    assert metrics.summarize([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    single = metrics.summarize([0.7, float("nan")])
    assert single["mean"] == 0.7 and single["n"] == 1 and math.isnan(single["std"])


def test_sign_test_by_hand():
    assert metrics.sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert metrics.sign_test_p(2, 0) == pytest.approx(0.5)   # two seeds can never be significant
    assert metrics.sign_test_p(3, 1) == pytest.approx(2 * 5 / 16)
    assert metrics.sign_test_p(0, 0) == 1.0


def test_paired_differences():
    result = metrics.paired_differences([0.8, 0.7, 0.9], [0.6, 0.7, 0.8])
    np.testing.assert_allclose(result["differences"], [0.2, 0.0, 0.1])
    assert (result["wins"], result["losses"], result["ties"]) == (2, 0, 1)
    assert result["mean"] == pytest.approx(0.1) and result["std"] == pytest.approx(0.1)
    assert result["sign_test_p"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ in number"):
        metrics.paired_differences([0.1, 0.2], [0.3])


def test_dice_and_iou_by_hand():
    predicted = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]])
    true = np.array([[[1, 0], [1, 0]], [[0, 0], [0, 0]], [[0, 1], [0, 0]]])
    dice, iou = metrics.dice_iou(predicted, true)
    np.testing.assert_allclose(dice, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(iou, [1 / 3, 1.0, 0.0])


def test_outside_change_averages_only_unattended_pixels():
    source = np.zeros((2, 2, 2, 1))
    translated = np.array([[[1, 2], [3, 4]], [[5, 5], [5, 5]]], float)[..., None]
    attention = np.array([[[1, 0], [0, 0.05]], [[1, 1], [1, 1]]], float)[..., None]
    change = metrics.outside_change(source, translated, attention, tau=0.1)
    assert change[0] == pytest.approx(3.0)   # pixels 2, 3 and 4 lie outside
    assert math.isnan(change[1])             # everything attended: nothing to measure


def test_attention_metrics_accept_no_slices():
    dice, iou = metrics.dice_iou(np.zeros((0, 4, 4, 1)), np.zeros((0, 4, 4, 1)))
    assert dice.shape == iou.shape == (0,)
    empty = np.zeros((0, 4, 4, 1))
    assert metrics.outside_change(empty, empty, empty, 0.1).shape == (0,)
    assert metrics.summarize(dice)["n"] == 0


def test_fill_scores_inside_the_mask_by_hand():
    original = np.zeros((3, 16, 16, 1))
    mask = np.zeros((3, 16, 16), bool)
    mask[:, 4:6, 4:8] = True                                 # 8 pixels
    filled = original.copy()
    filled[0, 4:6, 4:6] = 0.5                                # half the mask off by 0.5, half by 0.1
    filled[0, 4:6, 6:8] = 0.1
    filled[0, 12, 12] = 1.0                                  # outside the mask: not counted in L1 / PSNR
    filled[1] = 0.2                                          # a uniform shift everywhere
    scores = metrics.fill_scores(original, filled, mask[..., None] * 1.0)
    assert scores["l1"][0] == pytest.approx(0.3)
    assert scores["psnr"][0] == pytest.approx(10 * math.log10(4 / ((0.25 + 0.01) / 2)))
    # Constant windows: SSIM is its luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = (0.01 x 2)^2.
    assert scores["ssim"][1] == pytest.approx(4e-4 / (0.04 + 4e-4), rel=1e-6)
    assert scores["l1"][1] == pytest.approx(0.2)
    empty = metrics.fill_scores(original[:1], original[:1], np.zeros((1, 16, 16)))
    assert math.isnan(empty["l1"][0]) and math.isnan(empty["ssim"][0])
    same = metrics.fill_scores(original[:1], original[:1], mask[:1])
    assert same["l1"][0] == 0 and same["psnr"][0] == float("inf") and same["ssim"][0] == pytest.approx(1.0)


def test_period_two_ratios_see_checkerboards_and_stripes_and_not_smooth_ramps():
    yy, xx = np.mgrid[:8, :8].astype(np.float64)
    source = (0.01 * xx + 0.02 * yy)[None, ..., None]                  # a smooth ramp: no period-2 texture
    checker = source + 0.1 * ((-1.0) ** (xx + yy))[None, ..., None]
    rows = source + 0.1 * ((-1.0) ** yy)[None, ..., None]
    region = np.zeros((1, 8, 8, 1), bool)
    region[:, 2:6, 2:6] = True
    base = source + 0.05 * ((-1.0) ** (xx + yy))[None, ..., None]      # an input with some checkerboard
    ratios = metrics.period_two_ratios(checker, base, region)
    # checker response: |4 * 0.1| / 4 = 0.1 on the translation, 0.05 on the input (the ramp cancels).
    assert ratios["checker"] == pytest.approx([2.0])
    assert ratios["rows"] == pytest.approx([2.0]) and ratios["cols"] == pytest.approx([2.0])
    stripes = metrics.period_two_ratios(rows, base, region)
    assert stripes["checker"] == pytest.approx([0.0]) and stripes["cols"] == pytest.approx([0.0])
    assert stripes["rows"] == pytest.approx([2.0])
    assert np.isnan(metrics.period_two_ratios(checker, source, region)["checker"][0])    # a flat input
    assert np.isnan(metrics.period_two_ratios(checker, base, np.zeros_like(region))["rows"][0])


def test_stripe_ratio_by_hand_is_the_power_ratio_of_horizontal_to_vertical_streaks():
    yy, xx = np.mgrid[:32, :32].astype(np.float64)
    # Period 4 (0.25 cycles per pixel, one Fourier bin each): horizontal streaks of amplitude 0.2,
    # vertical ones of 0.1; over the whole frame the power ratio is (0.2 / 0.1)^2 = 4.
    streaks = 0.2 * np.cos(2 * np.pi * yy / 4) + 0.1 * np.cos(2 * np.pi * xx / 4)
    everywhere = np.ones((2, 32, 32), bool)
    ratios = metrics.stripe_ratios(np.stack([streaks, streaks.T])[..., None], everywhere, band=(0.2, 0.3))
    assert ratios == pytest.approx([4.0, 0.25])
    # Outside the band (period 8: 0.125) there is no power at all: undefined.
    assert np.isnan(metrics.stripe_ratios(streaks[None], everywhere[:1], band=(0.08, 0.16))[0])
    # A diagonal checkerboard lies in neither wedge; a constant has no power.
    checker = (-1.0) ** (xx + yy)
    assert np.isnan(metrics.stripe_ratios(checker[None], everywhere[:1], band=(0.35, 0.75))[0])
    assert np.isnan(metrics.stripe_ratios(np.ones((1, 32, 32)), everywhere[:1])[0])
    small = np.zeros((1, 32, 32), bool)
    small[0, :5, :5] = True                                          # 25 pixels < min_pixels
    assert np.isnan(metrics.stripe_ratios(streaks[None], small)[0])
    # Inside a region only the region counts: horizontal streaks in a square, vertical outside.
    mixed = np.where((yy >= 8) & (yy < 24) & (xx >= 8) & (xx < 24), streaks, 0.3 * np.cos(2 * np.pi * xx / 4))
    square = np.zeros((1, 32, 32), bool)
    square[0, 8:24, 8:24] = True
    assert metrics.stripe_ratios(mixed[None], square, band=(0.2, 0.3))[0] == pytest.approx(4.0, rel=0.05)
