"""ssagan_tf/cli.py: every entry point's --help lists its own flags and exits 0 (absl's exits 1)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

ENTRY_POINTS = {
    "run_train.py": ["--data_dir", "--model_dir", "--precision", "--d_mode"],
    "run_augment.py": ["--model", "--output_dir", "--precision"],
    "run_evaluate.py": ["--augmenters", "--precision"],
    "-m ssagan_tf.export": ["--model_dir", "--export_dir", "--precision", "--tolerance"],
    "-m data_prep.convert": ["--input", "--channel_names", "--[no]match_anatomy"],
    "-m ssagan_tf.evaluation.judge": ["--data_dir", "--output_dir", "--width", "--[no]classic"],
}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_help_lists_the_flags_and_exits_0(entry_point):
    done = subprocess.run([sys.executable, *entry_point.split(), "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    for flag in ENTRY_POINTS[entry_point]:
        assert f"{flag}:" in done.stdout or f"{flag}=" in done.stdout, (flag, done.stdout[-2000:])
