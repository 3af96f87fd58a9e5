"""scripts/texture.py: period-2 texture of a translator inside its attention, by direction, with
bootstrap intervals; a translator painting a checkerboard where it attends is told from one that
does not."""

import numpy as np
import pytest

from scripts import texture
from ssagan_tf.exported import Translation


class Painter:
    """A translator that adds `checker` times a checkerboard inside a fixed square it attends."""

    tau = 0.1

    def __init__(self, checker):
        self.checker = checker

    def translate(self, direction, images):
        yy, xx = np.mgrid[:images.shape[1], :images.shape[2]]
        attention = np.zeros(images.shape[:3] + (1,), np.float32)
        attention[:, 4:12, 4:12] = 1.0
        pattern = self.checker * ((-1.0) ** (xx + yy))[None, ..., None] * attention
        return Translation(source=images, image=images + pattern, attention=attention)


def test_texture_tells_a_checkerboard_painter_from_an_identity():
    rng = np.random.default_rng(0)
    arrays = {"image": rng.uniform(-1, 1, (6, 16, 16, 1)), "label": np.array([0, 0, 0, 0, 1, 1])}
    painted = texture.texture(arrays, Painter(0.5), resamples=200)
    same = texture.texture(arrays, Painter(0.0), resamples=200)
    assert set(painted) == {"normal_to_tumor", "tumor_to_normal"}
    assert painted["normal_to_tumor"]["slices"] == 4 and painted["tumor_to_normal"]["slices"] == 2
    assert painted["normal_to_tumor"]["attended"] == pytest.approx(64 / 256)
    for direction in painted:
        assert same[direction]["checker"][0] == pytest.approx(1.0)
        mean, low, high = painted[direction]["checker"]
        assert low <= mean <= high and low > 1.2


def test_interval_is_the_mean_with_a_bootstrap_range_and_ignores_nan():
    from ssagan_tf.metrics import mean_interval

    mean, low, high = mean_interval(np.array([1.0, 2.0, 3.0, np.nan]), resamples=500)
    assert mean == pytest.approx(2.0) and 1.0 <= low < mean < high <= 3.0
    assert all(np.isnan(mean_interval(np.array([np.nan]), resamples=10)))


@pytest.mark.slow
def test_the_command_line_refuses_models_that_are_not_name_export_pairs(tmp_path):
    """`--models` is read as NAME=EXPORT pairs; anything else is one usage line and exit 2, as at
    every entry point (`ssagan_tf.cli`), before any dataset is opened."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    done = subprocess.run([sys.executable, "-m", "scripts.texture", f"--data_dir={tmp_path / 'nowhere'}",
                           "--models=resize=/e/a,transpose"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert ("python -m scripts.texture: --models: expected NAME=EXPORT pairs, got resize=/e/a,transpose (try --help)"
            in done.stderr.splitlines())


@pytest.mark.slow
def test_split_and_resamples_reach_the_measure(tiny_dataset):
    """--split picks the slices translated and --resamples the bootstrap's size (the translator
    stands in for an export: `load_translator` is replaced in the script's process)."""
    import json
    import subprocess
    import sys

    from conftest import HANG_TIMEOUT, REPO_ROOT
    from ssagan_tf.data import schema
    from ssagan_tf.data.pipeline import load_split_arrays

    code = ("import json, sys; sys.path.insert(0, 'tests'); from absl import flags; from scripts import texture; "
            "import ssagan_tf.exported as exported; from test_texture_script import Painter; "
            "exported.load_translator = lambda path, kinds: Painter(0.5); seen = []; real = texture.texture; "
            "texture.texture = lambda a, t, r: seen.append((sorted(set(c.decode() for c in a['case_id'])), r)) "
            "or real(a, t, r); flags.FLAGS(sys.argv); texture.main(sys.argv[:1]); print(json.dumps(seen))")
    done = subprocess.run([sys.executable, "-c", code, "texture", f"--data_dir={tiny_dataset}", "--models=p=/e",
                           "--split=test", "--resamples=7"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=HANG_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    (cases, resamples), = json.loads(done.stdout.strip().splitlines()[-1])
    test_cases = sorted(set(c.decode() for c in load_split_arrays(schema.open(tiny_dataset), "test")["case_id"]))
    val_cases = sorted(set(c.decode() for c in load_split_arrays(schema.open(tiny_dataset), "val")["case_id"]))
    assert resamples == 7 and cases == test_cases and cases != val_cases
