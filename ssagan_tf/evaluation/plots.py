"""The report's figures, drawn with matplotlib (`ssagan_tf.figures`, Agg backend) and written as
PNG and PDF: ROC curves per arm (mean over seeds with a band of +- 1 std of the true positive rate
across seeds, when there are several), metric bars with +- 1 std error bars, and a real |
synthetic sample grid per augmenter with its columns titled."""

from __future__ import annotations

import os

import numpy as np

from ssagan_tf import figures
from ssagan_tf import metrics

METRIC_LABELS = {"sensitivity": "sensitivity", "specificity": "specificity", "accuracy": "accuracy", "auc": "AUC",
                 "balanced_accuracy": "balanced\naccuracy", "auc_hard": "AUC\n(hard)"}
FPR_GRID = np.linspace(0.0, 1.0, 101)
SAMPLE_COLUMNS = ("real normal", "to tumor", "its attention", "real tumor", "to normal", "its attention",
                  "true mask")


def _color(index: int) -> str:
    return f"C{index % 10}"


def mean_roc(test_labels, runs: list):
    """The seeds' ROC curves interpolated on FPR_GRID: (mean TPR, std TPR, seeds) or None when no
    seed has a finite curve."""
    curves = []
    for run in runs:
        fpr, tpr, _ = metrics.roc_curve(test_labels, run["test_probabilities"])
        if np.isfinite(fpr).all():
            # Several points may share an FPR (tied scores move diagonally); interp needs them ordered.
            curves.append(np.interp(FPR_GRID, fpr, tpr))
    if not curves:
        return None
    curves = np.stack(curves)
    return curves.mean(axis=0), curves.std(axis=0), len(curves)


def roc_figure(rows: list, test_labels):
    """One ROC curve per row (arm and augmenter): the mean over its seeds, the +- 1 std band when
    it has several; the chance diagonal dashed."""
    figure = figures.new_figure(6.4, 5.0)
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for index, row in enumerate(rows):
        roc = mean_roc(test_labels, row["runs"])
        if roc is None:
            continue
        mean, std, seeds = roc
        auc = row["summary"].get("auc", {}).get("mean", float("nan")) if "summary" in row else float("nan")
        label = f"{row['name']} (AUC {auc:.3f}, {seeds} seed{'s' * (seeds > 1)})" if np.isfinite(auc) else row["name"]
        ax.plot(FPR_GRID, mean, color=_color(index), linewidth=1.6, label=label)
        if seeds > 1:
            ax.fill_between(FPR_GRID, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color=_color(index),
                            alpha=0.2, linewidth=0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title("ROC on the test split: mean over seeds, band +- 1 std")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure


def metric_bar_figure(rows: list, metric_names: tuple):
    """Grouped bars: for each metric one bar per row (mean over seeds), error bars +- 1 std."""
    figure = figures.new_figure(max(6.4, 1.1 * len(metric_names) * max(1, len(rows)) / 2 + 2), 4.2)
    ax = figure.add_subplot()
    width = 0.8 / max(len(rows), 1)
    centres = np.arange(len(metric_names))
    for r, row in enumerate(rows):
        means = np.array([row["summary"][m]["mean"] for m in metric_names], np.float64)
        stds = np.array([row["summary"][m]["std"] for m in metric_names], np.float64)
        stds = np.where(np.isfinite(stds), stds, 0.0)
        ax.bar(centres - 0.4 + width * (r + 0.5), np.nan_to_num(means), width, yerr=stds, capsize=3,
               color=_color(r), label=row["name"], error_kw={"linewidth": 1})
    ax.set_xticks(centres, [METRIC_LABELS.get(m, m.replace("_", " ")) for m in metric_names])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test split, mean over seeds")
    ax.set_title("Test metrics per arm: mean +- 1 std over seeds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def augmenter_grid(translation: dict, test: dict, count: int, name: str = ""):
    """Rows of test slices: real normal | synthetic tumor | its attention, real tumor | synthetic
    normal | its attention | true mask; every column titled."""
    to_tumor, to_normal = translation["test_to_tumor"], translation["test_to_normal"]
    n = min(count, len(to_tumor.source), len(to_normal.source))
    pick = {key: np.linspace(0, len(t.source) - 1, n).round().astype(int)
            for key, t in (("normal", to_tumor), ("tumor", to_normal))}
    tumor_masks = test["mask"][test["label"] == 1][pick["tumor"]]
    tiles = []
    for i in range(n):
        a, b = pick["normal"][i], pick["tumor"][i]
        tiles.append([figures.to_unit(to_tumor.source[a]), figures.to_unit(to_tumor.image[a]),
                      figures.to_unit(to_tumor.attention[a], 0, 1), figures.to_unit(to_normal.source[b]),
                      figures.to_unit(to_normal.image[b]), figures.to_unit(to_normal.attention[b], 0, 1),
                      figures.to_unit(tumor_masks[i], 0, 1)])
    return figures.labelled_grid(tiles, list(SAMPLE_COLUMNS), [f"test {i + 1}" for i in range(n)],
                                 title=f"Test slices translated by {name}" if name else None)


def write_figures(output_dir: str, results: dict, translations: dict, test: dict, metric_names: tuple,
                  sample_count: int) -> dict:
    """Write every figure as PNG and PDF; returns {figure name: PNG file name relative to
    `output_dir`} (the PDF has the same name with .pdf)."""
    drawn = {"roc": roc_figure(results["rows"], results["test_labels"]),
             "metrics": metric_bar_figure(results["rows"], metric_names)}
    for name, translation in translations.items():
        drawn[f"samples_{name}"] = augmenter_grid(translation, test, sample_count, name)
    for key, figure in drawn.items():
        figures.save(figure, os.path.join(output_dir, f"{key}.png"), vector=True)
    return {key: f"{key}.png" for key in drawn}
