"""scripts/stripes.py: horizontal against vertical streak power by band, in real slices and in a
training run's G_n2t and D_t; the streaks of a constructed slice are found where they are."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT
from scripts import stripes


def _arrays(size=64):
    """Two normal slices (a head disc with vertical streaks) and two tumor slices whose lesion
    square carries horizontal streaks of period 4."""
    yy, xx = np.mgrid[:size, :size]
    head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.42 * size) ** 2
    images = np.full((4, size, size, 1), -1.0, np.float32)
    images[:, head, 0] = (-0.2 + 0.1 * np.cos(2 * np.pi * xx / 4))[head]
    masks = np.zeros((4, size, size, 1), np.float32)
    masks[2:, 24:40, 24:40] = 1.0
    lesion = masks[2:, ..., 0] > 0
    images[2:, ..., 0][lesion] = np.broadcast_to(0.5 + 0.2 * np.cos(2 * np.pi * yy / 4), (2, size, size))[lesion]
    return {"image": images, "mask": masks, "has_mask": np.array([0, 0, 1, 1], np.float32),
            "label": np.array([0, 0, 1, 1])}


def test_real_slices_find_the_lesions_horizontal_and_the_brains_vertical_streaks():
    result = stripes.real_slices(_arrays(), resamples=50)
    assert set(result) == {"real lesions", "real brain around lesions", "real brain of normal slices"}
    assert result["real lesions"]["slices"] == 2 and result["real brain of normal slices"]["slices"] == 2
    lesions, normal = result["real lesions"]["bands"]["0.16-0.25"], result["real brain of normal slices"]["bands"]
    assert lesions[1] <= lesions[0] <= lesions[2] and lesions[0] > 10           # period 4 = 0.25: rows dominate
    assert normal["0.25-0.35"][0] < 0.1                                         # columns dominate


def test_median_interval_is_the_median_with_a_bootstrap_range_and_ignores_nan():
    median, low, high = stripes.median_interval([1.0, 2.0, 10.0, np.nan], resamples=400)
    assert median == 2.0 and 1.0 <= low <= median <= high <= 10.0
    assert all(np.isnan(stripes.median_interval([np.nan], resamples=5)))


@pytest.mark.slow
def test_a_run_s_networks_and_the_command_line(tmp_path, tiny_dataset):
    from test_export import TINY, make_run_dir

    from ssagan_tf.data import schema
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.models import ModelConfig

    run = str(tmp_path / "run")
    make_run_dir(run, ModelConfig(**TINY))
    arrays = load_split_arrays(schema.open(tiny_dataset), "val")
    result = stripes.run_networks(arrays, run, resamples=20)
    assert {"G_n2t raw output, brain", "D_t gradient on translations, in A_n",
            "D_t gradient on real tumors, brain"} <= set(result)
    assert 0.0 <= result["A_n share of pixels"] <= 1.0
    median, low, high = result["D_t gradient on real tumors, brain"]["bands"]["0.16-0.25"]
    assert np.isfinite(median) and low <= median <= high                      # an untrained D has a gradient
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO_ROOT}
    done = subprocess.run([sys.executable, "-m", "scripts.stripes", f"--data_dir={tiny_dataset}", f"--run={run}",
                           "--split=val", "--resamples=20"], capture_output=True, text=True, timeout=HANG_TIMEOUT,
                          cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout[:done.stdout.index("\nhorizontal over vertical")])
    assert printed["split"] == "val" and "real lesions" in printed and "input, in A_n" in printed
    missing = subprocess.run([sys.executable, "-m", "scripts.stripes"], capture_output=True, text=True,
                             timeout=HANG_TIMEOUT, cwd=REPO_ROOT, env=env)
    assert missing.returncode == 2 and "--data_dir is required" in missing.stderr
