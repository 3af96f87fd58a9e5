"""scripts/crossval.py: the commands of the cross-validated experiment, each fold's judge data
(its training patients only), and resuming by skipping the judges and folds already made."""

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
    judges = [s for s in steps if s[1:3] == ["-m", "ssagan_tf.judge"]]
    trainings, evaluation = [s for s in steps[:-1] if s not in judges], steps[-1]
    assert len(judges) == 3 and len(trainings) == 3 * 2
    for fold, args in enumerate(judges):
        assert args[3:5] == [f"--data_dir={tmp_path}/fold{fold}/judge_data", f"--output_dir={tmp_path}/fold{fold}/judge"]
        assert steps.index(args) < min(steps.index(t) for t in trainings if f"--fold={fold}" in t)
    for args in trainings:
        assert "--folds=3" in args and "--tumor_fraction=0.25" in args and args[2] == "--flagfile=lgg.flags"
        fold = next(a for a in args if a.startswith("--fold="))[len("--fold="):]
        # After the flagfile's --judge, so the fold's own judge is the one used.
        assert f"--judge={tmp_path}/fold{fold}/judge" in args
    assert {a for args in trainings for a in args if a.startswith("--fold=")} == {"--fold=0", "--fold=1", "--fold=2"}
    assert os.path.basename(evaluation[1]) == "run_evaluate.py" and "--folds=3" in evaluation
    augmenters = next(a for a in evaluation if a.startswith("--augmenters="))
    assert f"ssa={tmp_path}/fold{{fold}}/export_ssa_cyclegan/ssagan" in augmenters
    assert augmenters.endswith(",copy_paste,identity") and evaluation[-2:] == ["--seeds=0,1", "--width=64"]
    # The SSA export a second time, painting inside transplanted lesion masks.
    assert f"ssa_masks={tmp_path}/fold{{fold}}/export_ssa_cyclegan/ssagan" in augmenters
    assert "--in_masks=ssa_masks" in evaluation
    plain = _plan(tmp_path, "--folds=3", "--in_masks=")[-1]
    assert "_masks" not in next(a for a in plain if a.startswith("--augmenters=")) and not [
        a for a in plain if a.startswith("--in_masks")]


def test_judge_train_and_arm_flags_reach_their_commands_and_no_systems_runs_the_cheap_rows(tmp_path):
    steps = _plan(tmp_path, "--folds=2", "--systems=cyclegan", "--in_masks=", "--judge_flags=--width=8 --epochs=3",
                  "--train_flags=--epochs=2 --seed=5", "--arms=none,classic")
    judges = [s for s in steps if s[1:3] == ["-m", "ssagan_tf.judge"]]
    assert all(args[-2:] == ["--width=8", "--epochs=3"] for args in judges) and len(judges) == 2
    trainings = [s for s in steps[:-1] if s not in judges]
    # The train flags come last: after the fold's own --judge, so they may override anything.
    assert all(args[-2:] == ["--epochs=2", "--seed=5"] and "--system=cyclegan" in args for args in trainings)
    assert "--arms=none,classic" in steps[-1]
    # No trained system (--systems= --in_masks= --nofold_judges): the evaluation alone, with the
    # built-in augmenters only.
    cheap = _plan(tmp_path, "--folds=2", "--systems=", "--in_masks=", "--nofold_judges")
    assert len(cheap) == 1 and "--augmenters=copy_paste,identity" in cheap[0]


def test_in_masks_names_a_trained_system():
    done = subprocess.run([sys.executable, "-m", "scripts.crossval", "--data_dir=DATA", "--output_dir=CV",
                           "--systems=cyclegan", "--in_masks=ssa_cyclegan"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT)
    assert done.returncode == 1 and "--in_masks=ssa_cyclegan: not among --systems=cyclegan" in done.stderr


def test_a_fold_already_exported_is_not_trained_again(tmp_path):
    os.makedirs(tmp_path / "fold1" / "export_cyclegan" / "ssagan")
    os.makedirs(tmp_path / "fold0" / "judge")
    (tmp_path / "fold0" / "judge" / "judge.json").write_text("{}")
    steps = _plan(tmp_path, "--folds=2")
    judged = [s[4] for s in steps if s[1:3] == ["-m", "ssagan_tf.judge"]]
    assert judged == [f"--output_dir={tmp_path}/fold1/judge"]
    trained = [(next(a for a in s if a.startswith("--fold=")), next(a for a in s if a.startswith("--system=")))
               for s in steps[:-1] if "run_train.py" in s[1]]
    assert ("--fold=1", "--system=cyclegan") not in trained and len(trained) == 3
    assert not [s for s in _plan(tmp_path, "--folds=2", "--nofold_judges") if "ssagan_tf.judge" in s
                or any(a.startswith("--judge=") for a in s)]


WRITE = ("import sys; from absl import flags; from scripts import crossval; flags.FLAGS(sys.argv[1:]); "
         "crossval.write_judge_data(flags.FLAGS.data_dir, flags.FLAGS.output_dir)")


def test_each_folds_judge_data_holds_its_training_patients_only(tmp_path, tiny_dataset):
    from ssagan_tf.data import folds, schema

    for _ in range(2):           # the second time, the folders are kept as they are
        done = subprocess.run([sys.executable, "-c", WRITE, "crossval", f"--data_dir={tiny_dataset}",
                               f"--output_dir={tmp_path}", "--folds=2", "--tumor_fraction=0.5"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=HANG_TIMEOUT)
        assert done.returncode == 0, done.stderr[-2000:]
    source = schema.open(tiny_dataset)
    for fold in range(2):
        written = schema.open(str(tmp_path / f"fold{fold}" / "judge_data")).manifest
        cohort = folds.cohort_record(source, 2, fold, 0, 0.5)
        assert written.raw["fold"] == cohort
        assert set(written.cases["train"]) | set(written.cases["val"]) == set(cohort["seen_patients"])
        assert not set(cohort["test_patients"]) & set(sum(written.cases.values(), []))
