"""ssagan_tf/training/summaries.py: the console line, TensorBoard events readable as scalars and
images, the translation grid's layout, sample PNGs."""

import glob
import os

import numpy as np
import tensorflow as tf

from ssagan_tf.models import ModelConfig, build_models
from ssagan_tf.training import summaries


def test_progress_line_shows_the_named_terms_throughput_and_eta():
    line = summaries.ProgressLine(total_steps=100, steps_per_epoch=40).line(
        20, {"generator_total": 1.5, "cycle_normal": 0.25, "not_shown": 9.0}, 4.0, 0.5)
    assert line == "step 20/100 (epoch 0.50) | G 1.5000 cyc_n 0.2500 | 4.0 slices/s, 0.500 s/step | ETA 0:00:40"


def test_scalars_and_images_are_written_as_tensorboard_reads_them(tmp_path):
    board = summaries.Summaries(str(tmp_path))
    board.scalars(3, {"cycle_normal": 0.5}, prefix="loss/")
    board.image(3, "translations", np.full((4, 8, 1), 0.5, np.float32))
    board.close()
    events = [e for path in glob.glob(str(tmp_path / "events*")) for e in tf.compat.v1.train.summary_iterator(path)]
    values = {v.tag: (e.step, v) for e in events for v in e.summary.value}
    assert values["loss/cycle_normal"][0] == 3 and float(tf.make_ndarray(values["loss/cycle_normal"][1].tensor)) == 0.5
    width, height, png = tf.make_ndarray(values["translations"][1].tensor)
    assert (width, height) == (b"8", b"4") and tf.io.decode_png(png).shape == (4, 8, 1)
    summaries.Summaries(None).scalars(1, {"x": 1.0})               # non-chief workers: a no-op writer


def test_translation_grid_rows_and_columns(tmp_path):
    models = build_models(ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=4, ndf=4,
                                                 n_res_blocks=0))
    normal = np.full((2, 32, 32, 1), -1.0, np.float32)
    tumor = np.ones((2, 32, 32, 1), np.float32)
    grid = summaries.translation_grid(models, normal, tumor, tau=0.1)
    assert grid.shape == (4 * 32, 4 * 32, 1) and grid.min() >= 0 and grid.max() <= 1
    # Column 0 is the input, shown in [0, 1]: normal rows first (all -1 -> 0), then tumor (1 -> 1).
    assert np.all(grid[:64, :32] == 0.0) and np.all(grid[64:, :32] == 1.0)
    path = os.path.join(tmp_path, "samples", "step_00000001.png")
    summaries.write_png(path, grid)
    assert tf.io.decode_png(open(path, "rb").read()).shape == grid.shape
