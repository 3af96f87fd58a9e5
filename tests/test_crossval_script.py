"""scripts/crossval.py: the commands of the cross-validated experiment, and resuming by skipping
the folds already exported."""

import json
import os
import subprocess
import sys

from conftest import HANG_TIMEOUT, REPO_ROOT

# In a process of its own: the script defines absl flags (--output_dir, --folds, ...) at import,
# as other entry points imported by the suite do.
PLAN = ("import json, sys; from absl import flags; from scripts import crossval; flags.FLAGS(sys.argv[1:]); "
        "print(json.dumps(crossval.commands(flags.FLAGS.data_dir, flags.FLAGS.output_dir)))")


def _plan(tmp_path, *args):
    done = subprocess.run([sys.executable, "-c", PLAN, "crossval", "--data_dir=DATA", f"--output_dir={tmp_path}",
                           *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_fold_and_system_is_trained_then_one_evaluation_runs(tmp_path):
    steps = _plan(tmp_path, "--folds=3", "--tumor_fraction=0.25", "--train_flagfile=lgg.flags",
                  "--evaluate_flags=--seeds=0,1 --width=64")
    trainings, evaluation = steps[:-1], steps[-1]
    assert len(trainings) == 3 * 2
    for args in trainings:
        assert "--folds=3" in args and "--tumor_fraction=0.25" in args and args[2] == "--flagfile=lgg.flags"
    assert {a for args in trainings for a in args if a.startswith("--fold=")} == {"--fold=0", "--fold=1", "--fold=2"}
    assert os.path.basename(evaluation[1]) == "run_evaluate.py" and "--folds=3" in evaluation
    augmenters = next(a for a in evaluation if a.startswith("--augmenters="))
    assert f"ssa={tmp_path}/fold{{fold}}/export_ssa_cyclegan/ssagan" in augmenters
    assert augmenters.endswith(",copy_paste,identity") and evaluation[-2:] == ["--seeds=0,1", "--width=64"]


def test_a_fold_already_exported_is_not_trained_again(tmp_path):
    os.makedirs(tmp_path / "fold1" / "export_cyclegan" / "ssagan")
    steps = _plan(tmp_path, "--folds=2")
    trained = [(next(a for a in s if a.startswith("--fold=")), next(a for a in s if a.startswith("--system=")))
               for s in steps[:-1]]
    assert ("--fold=1", "--system=cyclegan") not in trained and len(trained) == 3
