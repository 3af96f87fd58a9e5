"""The report's PNG figures, rasterised in numpy (no plotting library is a dependency): ROC curves,
metric bars with error bars and a real | synthetic sample grid. Text uses a 3x5 pixel font."""

from __future__ import annotations

import os

import numpy as np
from skimage import draw, io

from ssagan_tf.evaluation import metrics

# 3x5 glyphs, rows top to bottom; lower case is drawn as upper case.
_GLYPHS = dict(zip(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.-+:/%[]()=_ ?", (
        "111101101101111 010110010010111 111001111100111 111001111001111 101101111001001 "
        "111100111001111 111100111101111 111001001001001 111101111101111 111101111001111 "
        "010101111101101 110101110101110 011100100100011 110101101101110 111100110100111 "
        "111100110100100 011100101101011 101101111101101 111010010010111 001001001101010 "
        "101101110101101 100100100100111 101111111101101 110101101101101 010101101101010 "
        "110101110100100 010101101110011 110101110101101 011100010001110 111010010010010 "
        "101101101101111 101101101101010 101101111111101 101101010101101 101101010010010 "
        "111001010100111 000000000000010 000000111000000 000010111010000 000010000010000 "
        "001001010100100 101001010100101 110100100100110 011001001001011 010100100100010 "
        "010001001001010 000111000111000 000000000000111 000000000000000 111001010000010").split()))
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
BLACK, GREY = (0, 0, 0), (200, 200, 200)
SCALE = 2  # font pixels per glyph pixel
SHORT_NAMES = {"sensitivity": "SENS", "specificity": "SPEC", "accuracy": "ACC", "auc": "AUC",
               "balanced_accuracy": "BAL ACC", "auc_hard": "AUC HARD"}


def color(index: int) -> tuple:
    return PALETTE[index % len(PALETTE)]


def draw_text(canvas: np.ndarray, text: str, top: int, left: int, rgb=BLACK, scale: int = SCALE) -> None:
    """Write `text` with its top-left corner at (top, left), clipped to the canvas."""
    top, left = max(top, 0), max(left, 0)
    for char in text.upper():
        bits = np.array([int(b) for b in _GLYPHS.get(char, _GLYPHS["?"])], bool).reshape(5, 3)
        glyph = np.kron(bits, np.ones((scale, scale), bool))
        region = canvas[top:top + glyph.shape[0], left:left + glyph.shape[1]]
        region[glyph[:region.shape[0], :region.shape[1]]] = rgb
        left += 4 * scale


def text_width(text: str, scale: int = SCALE) -> int:
    return 4 * scale * len(text)


def draw_segment(canvas: np.ndarray, y0, x0, y1, x1, rgb, thickness: int = 1) -> None:
    for offset in range(thickness):
        rows, cols = draw.line(int(round(y0)) + offset, int(round(x0)), int(round(y1)) + offset, int(round(x1)))
        keep = (rows >= 0) & (rows < canvas.shape[0]) & (cols >= 0) & (cols < canvas.shape[1])
        canvas[rows[keep], cols[keep]] = rgb


class Axes:
    """A plot area on a canvas mapping data (x right, y up, both in [0, 1] by default) to pixels."""

    def __init__(self, canvas, top, left, height, width, ylim=(0.0, 1.0)):
        self.canvas, self.top, self.left, self.height, self.width = canvas, top, left, height, width
        self.ylim = ylim

    def to_pixel(self, x, y):
        fraction = (np.asarray(y, np.float64) - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return (self.top + (1.0 - fraction) * self.height, self.left + np.asarray(x, np.float64) * self.width)

    def frame(self, yticks=(0.0, 0.5, 1.0), xticks=(0.0, 0.5, 1.0)) -> None:
        """The box, y tick labels on the left and (when given) x tick labels below, with grid lines."""
        c, t, l, h, w = self.canvas, self.top, self.left, self.height, self.width
        for value in yticks:
            y, _ = self.to_pixel(0, value)
            draw_segment(c, y, l, y, l + w, GREY)
            label = f"{value:g}"
            draw_text(c, label, int(y) - 5, l - text_width(label) - 6)
        for value in xticks:
            _, x = self.to_pixel(value, self.ylim[0])
            draw_segment(c, t, x, t + h, x, GREY)
            label = f"{value:g}"
            draw_text(c, label, t + h + 6, int(x) - text_width(label) // 2)
        for y0, x0, y1, x1 in ((t, l, t, l + w), (t + h, l, t + h, l + w), (t, l, t + h, l), (t, l + w, t + h, l + w)):
            draw_segment(c, y0, x0, y1, x1, BLACK)

    def polyline(self, xs, ys, rgb, thickness: int = 2) -> None:
        rows, cols = self.to_pixel(xs, ys)
        for i in range(len(rows) - 1):
            draw_segment(self.canvas, rows[i], cols[i], rows[i + 1], cols[i + 1], rgb, thickness)


def legend(canvas, entries, top: int, left: int) -> None:
    """Colour swatches with their labels, one per line."""
    for i, (label, rgb) in enumerate(entries):
        y = top + i * 16
        canvas[y + 1:y + 10, left:left + 14] = rgb
        draw_text(canvas, label, y, left + 20)


def roc_figure(rows: list, test_labels) -> np.ndarray:
    """One ROC curve per row and seed (a row's seeds share its colour), the chance diagonal dashed."""
    canvas = np.full((420, 720, 3), 255, np.uint8)
    draw_text(canvas, "ROC ON THE TEST SPLIT (ONE CURVE PER SEED)", 6, 60)
    axes = Axes(canvas, 50, 60, 320, 320)
    axes.frame(yticks=(0, 0.25, 0.5, 0.75, 1), xticks=(0, 0.25, 0.5, 0.75, 1))
    for start in np.arange(0, 1, 0.05)[::2]:
        axes.polyline([start, start + 0.05], [start, start + 0.05], GREY, thickness=1)
    for index, row in enumerate(rows):
        for run in row["runs"]:
            fpr, tpr, _ = metrics.roc_curve(test_labels, run["test_probabilities"])
            if np.isfinite(fpr).all():
                axes.polyline(fpr, tpr, color(index))
    draw_text(canvas, "FALSE POSITIVE RATE (1 - SPECIFICITY)", 396, 80)
    draw_text(canvas, "TRUE POSITIVE RATE (SENSITIVITY)", 26, 60)
    legend(canvas, [(row["name"], color(i)) for i, row in enumerate(rows)], 60, 400)
    return canvas


def metric_bar_figure(rows: list, metric_names: tuple) -> np.ndarray:
    """Grouped bars: for each metric one bar per row (mean over seeds), error bars +- 1 std."""
    group_width = max(60, 14 * len(rows) + 20)
    width = 70 + group_width * len(metric_names)
    canvas = np.full((360 + 16 * len(rows), max(width, 420), 3), 255, np.uint8)
    draw_text(canvas, "TEST METRICS: MEAN +- STD OVER SEEDS", 10, 60)
    axes = Axes(canvas, 40, 60, 260, group_width * len(metric_names))
    axes.frame(yticks=(0, 0.25, 0.5, 0.75, 1), xticks=())
    bar = 1.0 / (len(metric_names) * (len(rows) + 1.5))
    for m, name in enumerate(metric_names):
        group_left = m / len(metric_names)
        for r, row in enumerate(rows):
            mean, std = row["summary"][name]["mean"], row["summary"][name]["std"]
            if not np.isfinite(mean):
                continue
            x0 = group_left + bar * (r + 0.75)
            (y_top, x_left), (y_base, x_right) = axes.to_pixel(x0, mean), axes.to_pixel(x0 + bar, 0)
            canvas[int(y_top):int(y_base), int(x_left) + 1:int(x_right)] = color(r)
            if np.isfinite(std) and std > 0:
                centre = x0 + bar / 2
                low, high = max(mean - std, 0.0), min(mean + std, 1.0)
                axes.polyline([centre, centre], [low, high], BLACK, thickness=1)
                for y in (low, high):
                    axes.polyline([centre - bar / 3, centre + bar / 3], [y, y], BLACK, thickness=1)
        label = SHORT_NAMES.get(name, name.replace("_", " "))[:group_width // 8]
        _, x = axes.to_pixel(group_left + 0.5 / len(metric_names), 0)
        draw_text(canvas, label, 306, int(x) - text_width(label) // 2)
    legend(canvas, [(row["name"], color(i)) for i, row in enumerate(rows)], 330, 60)
    return canvas


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [-1, 1] slice (first channel) or a [0, 1] map as grey levels."""
    return np.clip(np.round(image[..., 0] * 255.0), 0, 255).astype(np.uint8)


def sample_grid(columns: list, titles: list, gap: int = 4) -> np.ndarray:
    """A grid of grey images, one column per list in `columns` (each [rows, H, W] uint8)."""
    rows, height, width = columns[0].shape
    header = 20
    canvas = np.full((header + rows * (height + gap), len(columns) * (width + gap), 3), 255, np.uint8)
    for c, (images, title) in enumerate(zip(columns, titles)):
        left = c * (width + gap)
        draw_text(canvas, title[:max(1, width // 8)], 4, left, scale=SCALE if width >= 64 else 1)
        for r in range(rows):
            top = header + r * (height + gap)
            canvas[top:top + height, left:left + width] = images[r][..., None]
    return canvas


def _grey(images: np.ndarray) -> np.ndarray:
    return to_uint8((np.asarray(images) + 1.0) / 2.0)


def augmenter_grid(translation: dict, test: dict, count: int) -> np.ndarray:
    """Rows of test slices: real normal | synthetic tumor | its attention, real tumor | synthetic
    normal | its attention | true mask."""
    to_tumor, to_normal = translation["test_to_tumor"], translation["test_to_normal"]
    n = min(count, len(to_tumor.source), len(to_normal.source))
    pick = {name: np.linspace(0, len(t.source) - 1, n).round().astype(int)
            for name, t in (("normal", to_tumor), ("tumor", to_normal))}
    tumor_masks = test["mask"][test["label"] == 1][pick["tumor"]]
    columns = [_grey(to_tumor.source[pick["normal"]]), _grey(to_tumor.image[pick["normal"]]),
               to_uint8(to_tumor.attention[pick["normal"]]), _grey(to_normal.source[pick["tumor"]]),
               _grey(to_normal.image[pick["tumor"]]), to_uint8(to_normal.attention[pick["tumor"]]),
               to_uint8(tumor_masks)]
    titles = ["NORMAL", "TO TUMOR", "ATTN", "TUMOR", "TO NORMAL", "ATTN", "MASK"]
    return sample_grid(columns, titles)


def save_png(path: str, canvas: np.ndarray) -> None:
    io.imsave(path, canvas, check_contrast=False)


def write_figures(output_dir: str, results: dict, translations: dict, test: dict, metric_names: tuple,
                  sample_count: int) -> dict:
    """Write every figure; returns {figure name: file name relative to `output_dir`}."""
    figures = {"roc": "roc.png", "metrics": "metrics.png"}
    save_png(os.path.join(output_dir, figures["roc"]), roc_figure(results["rows"], results["test_labels"]))
    save_png(os.path.join(output_dir, figures["metrics"]), metric_bar_figure(results["rows"], metric_names))
    for name, translation in translations.items():
        key = f"samples_{name}"
        figures[key] = f"{key}.png"
        save_png(os.path.join(output_dir, figures[key]), augmenter_grid(translation, test, sample_count))
    return figures
