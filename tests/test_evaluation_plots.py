"""ssagan_tf/evaluation/plots.py: the numpy rasteriser draws where it is told to."""

import numpy as np

from ssagan_tf.evaluation import plots


def test_text_draws_the_glyph_and_stays_on_the_canvas():
    canvas = np.full((12, 20, 3), 255, np.uint8)
    plots.draw_text(canvas, "1", 0, 0, scale=2)
    inked = (canvas[..., 0] == 0)
    assert inked[:10, :6].sum() == 2 * 2 * 8   # the 3x5 "1" has 8 pixels, each 2x2
    plots.draw_text(canvas, "WIDE TEXT", 8, 15)   # runs off the canvas: clipped, no error
    assert plots.text_width("AB") == 16


def test_roc_of_a_perfect_classifier_runs_up_the_left_edge():
    rows = [{"name": "perfect", "runs": [{"test_probabilities": [0.9, 0.8, 0.2, 0.1]}]}]
    canvas = plots.roc_figure(rows, [1, 1, 0, 0])
    axes = plots.Axes(canvas, 50, 60, 320, 320)
    top, left = (int(v) for v in axes.to_pixel(0.0, 1.0))
    assert tuple(canvas[top + 100, left]) == plots.color(0)   # the curve covers the frame's left edge
    assert tuple(canvas[top, left + 100]) == plots.color(0)


def test_metric_bars_and_sample_grid_shapes():
    summary = {name: {"mean": 0.5, "std": 0.1, "n": 2} for name in ("auc", "accuracy")}
    canvas = plots.metric_bar_figure([{"name": "a", "summary": summary}, {"name": "b", "summary": summary}],
                                     ("auc", "accuracy"))
    assert canvas.ndim == 3 and canvas.dtype == np.uint8
    grid = plots.sample_grid([np.zeros((2, 16, 16), np.uint8)] * 3, ["A", "B", "C"])
    assert grid.shape == (20 + 2 * 20, 3 * 20, 3)
