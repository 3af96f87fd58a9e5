"""ssagan_tf/evaluation/plots.py: the report's figures carry their words and are written as PNG
and PDF."""

import os
from types import SimpleNamespace

import numpy as np
from skimage import io as skio

from ssagan_tf import figures
from ssagan_tf.evaluation import plots

SUMMARY = {name: {"mean": 0.5, "std": 0.1, "n": 2} for name in ("auc", "accuracy", "balanced_accuracy")}


def test_roc_of_a_perfect_classifier_runs_up_the_left_edge_and_seeds_give_a_band():
    labels = [1, 1, 0, 0]
    mean, std, seeds = plots.mean_roc(labels, [{"test_probabilities": [0.9, 0.8, 0.2, 0.1]}])
    assert seeds == 1 and mean[1] == 1.0 and np.all(std == 0)       # TPR 1 from FPR 0.01 on
    runs = [{"test_probabilities": [0.9, 0.8, 0.2, 0.1]}, {"test_probabilities": [0.9, 0.1, 0.8, 0.2]}]
    mean, std, seeds = plots.mean_roc(labels, runs)
    assert seeds == 2 and std.max() > 0 and np.all((mean >= 0) & (mean <= 1))
    rows = [{"name": "none", "summary": SUMMARY, "runs": runs}]
    figure = plots.roc_figure(rows, labels)
    words = figures.texts(figure)
    assert "false positive rate (1 - specificity)" in words and "true positive rate (sensitivity)" in words
    assert "none (AUC 0.500, 2 seeds)" in words and any("band +- 1 std" in w for w in words)
    assert len(figure.axes[0].collections) == 1          # the band


def test_metric_bars_label_metrics_and_arms_with_error_bars():
    rows = [{"name": "none", "summary": SUMMARY}, {"name": "synthetic", "summary": SUMMARY}]
    figure = plots.metric_bar_figure(rows, ("auc", "accuracy", "balanced_accuracy"))
    words = figures.texts(figure)
    assert {"AUC", "accuracy", "balanced\naccuracy", "none", "synthetic"} <= set(words)
    assert len(figure.axes[0].patches) == 6              # 3 metrics x 2 arms


def test_sample_grid_titles_its_columns_and_all_figures_are_written_as_png_and_pdf(tmp_path):
    rng = np.random.default_rng(0)
    side = lambda n: SimpleNamespace(source=rng.uniform(-1, 1, (n, 16, 16, 1)), image=rng.uniform(-1, 1, (n, 16, 16, 1)),
                                     attention=rng.uniform(0, 1, (n, 16, 16, 1)))
    translation = {"test_to_tumor": side(3), "test_to_normal": side(2)}
    test = {"label": np.array([0, 0, 0, 1, 1]), "mask": rng.integers(0, 2, (5, 16, 16, 1))}
    words = figures.texts(plots.augmenter_grid(translation, test, 4, "ssa"))
    assert set(plots.SAMPLE_COLUMNS) <= set(words) and {"test 1", "test 2"} <= set(words)
    assert "Test slices translated by ssa" in words
    results = {"rows": [{"name": "none", "summary": SUMMARY,
                         "runs": [{"test_probabilities": [0.9, 0.8, 0.7, 0.2, 0.1]}]}],
               "test_labels": [1, 1, 0, 0, 0]}
    written = plots.write_figures(str(tmp_path), results, {"ssa": translation}, test, ("auc", "accuracy"), 4)
    assert written == {"roc": "roc.png", "metrics": "metrics.png", "samples_ssa": "samples_ssa.png"}
    assert sorted(os.listdir(tmp_path)) == sorted([f"{k}.{e}" for k in written for e in ("png", "pdf")])
    for key in written:
        image = skio.imread(str(tmp_path / f"{key}.png"))
        assert image.ndim == 3 and 200 < image.shape[0] < 3000 and 200 < image.shape[1] < 3000
        assert open(tmp_path / f"{key}.pdf", "rb").read(5) == b"%PDF-"
