"""The whole cross-validated experiment on a converted dataset, in one resumable command:

    python -m scripts.crossval --data_dir=DATA --output_dir=CV --folds=5 \
        --train_flagfile=lgg.flags [--systems=ssa_cyclegan,cyclegan] [--tumor_fraction=0.25] \
        [--evaluate_flags="--seeds=0,1,2 --width=64 --epochs=40 --patience=8"]

For each fold k it writes the fold's training patients' data (`CV/fold<k>/judge_data/`: the
train and validation patients of `run_train.py --folds=K --fold=k`, in the low-data regime with
the same kept tumor cases) and trains a judge on them (`python -m ssagan_tf.judge`,
`CV/fold<k>/judge/`), so that the judge which ends a fold's warm-up and selects its checkpoint
(`--judge` of the training flagfile) has never seen the fold's test patients. Then, for each
system, it runs `run_train.py --folds=K --fold=k --judge=CV/fold<k>/judge` (the fold's training
patients only; `CV/fold<k>/<system>/`) and exports the model (`CV/fold<k>/export_<system>/`),
then `run_evaluate.py --folds=K` over every fold's exports (those of `--in_masks` systems a second
time, as `<name>_masks`, painting inside transplanted lesion masks) plus the cheap baselines and
controls (`CV/report/`). Every command is printed before it runs. Interrupted, the same command continues
where it stopped: a fold's data and judge are made once, a fold whose export exists is not
trained again, an unfinished training run resumes from its last checkpoint, and the evaluation
reuses its finished classifiers.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from absl import flags

flags.DEFINE_string("data_dir", None, "Converted dataset (python -m data_prep.convert).")
flags.DEFINE_string("output_dir", None, "Where every fold's runs, exports and the report go.")
flags.DEFINE_integer("folds", 5, "Patient-level folds K (>= 2).")
flags.DEFINE_integer("fold_seed", 0, "Seed of the fold assignment.")
flags.DEFINE_list("systems", ["ssa_cyclegan", "cyclegan"], "run_train.py --system values; one augmenter each per fold.")
flags.DEFINE_string("train_flagfile", "", "A run_train.py flagfile (e.g. lgg.flags) for every fold's training.")
flags.DEFINE_string("train_flags", "", "Further run_train.py flags, one string (they follow the flagfile).")
flags.DEFINE_float("tumor_fraction", 1.0, "Low-data regime for the augmenters and the classifiers alike.")
flags.DEFINE_list("in_masks", ["ssa_cyclegan"], "Systems whose export also runs as a second augmenter, <name>_masks, "
                  "painting normal->tumor inside transplanted real lesion masks (run_evaluate.py --in_masks).")
flags.DEFINE_string("arms", "none,classic,mixup+classic,cutmix+classic,synthetic,synthetic+classic",
                    "run_evaluate.py --arms.")
flags.DEFINE_boolean("fold_judges", True, "Train a judge per fold on the fold's training patients and give it to "
                     "the fold's trainings as --judge (after the flagfile's). Off: the training flags bring "
                     "their own judge, or none.")
flags.DEFINE_string("judge_flags", "--width=32 --epochs=60 --patience=15",
                    "python -m ssagan_tf.judge flags of the fold judges, one string.")
flags.DEFINE_string("evaluate_flags", "", "Further run_evaluate.py flags, one string (seeds, width, epochs, ...).")
flags.mark_flags_as_required(["data_dir", "output_dir"])
FLAGS = flags.FLAGS
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = {"ssa_cyclegan": "ssa", "cyclegan": "cyclegan"}


def run(args: list) -> None:
    print(f"$ {shlex.join(args)}", flush=True)
    # `python -m ssagan_tf.judge` finds the package from any working directory.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable if a == "python" else a for a in args], env=env)
    if result.returncode != 0:
        name = args[2] if args[1] == "-m" else os.path.basename(args[1])
        raise RuntimeError(f"crossval: `{name} ...` failed (exit {result.returncode}); rerun the same command to "
                           "continue")


def judge_data_dir(out: str, fold: int) -> str:
    return os.path.join(out, f"fold{fold}", "judge_data")


def write_judge_data(data_dir: str, out: str) -> None:
    """Each fold's training patients' data for its judge (written once; kept when already there)."""
    from ssagan_tf.data import folds, schema

    dataset = schema.open(data_dir)
    for fold in range(FLAGS.folds):
        target = judge_data_dir(out, fold)
        if not os.path.isdir(target):
            print(f"fold {fold}: writing the judge's data (the fold's training patients) to {target}", flush=True)
        cohort = folds.cohort_record(dataset, FLAGS.folds, fold, FLAGS.fold_seed, FLAGS.tumor_fraction)
        folds.write_fold_dataset(dataset, target, cohort)


def commands(data_dir: str, out: str) -> list:
    """Every command of the experiment, in order, skipping the judges and trainings already made."""
    steps = []
    for fold in range(FLAGS.folds):
        judge = os.path.join(out, f"fold{fold}", "judge")
        if FLAGS.fold_judges and not os.path.isfile(os.path.join(judge, "judge.json")):
            steps.append(["python", "-m", "ssagan_tf.judge", f"--data_dir={judge_data_dir(out, fold)}",
                          f"--output_dir={judge}"] + shlex.split(FLAGS.judge_flags))
        for system in FLAGS.systems:
            export = os.path.join(out, f"fold{fold}", f"export_{system}")
            if os.path.isdir(os.path.join(export, "ssagan")):
                continue
            args = ["python", os.path.join(REPO_ROOT, "run_train.py"), f"--data_dir={data_dir}", f"--system={system}",
                    f"--model_dir={os.path.join(out, f'fold{fold}', system)}", f"--folds={FLAGS.folds}",
                    f"--fold={fold}", f"--fold_seed={FLAGS.fold_seed}", f"--tumor_fraction={FLAGS.tumor_fraction}",
                    f"--export_dir={export}"]
            if FLAGS.train_flagfile:
                args.insert(2, f"--flagfile={FLAGS.train_flagfile}")
            if FLAGS.fold_judges:
                args.append(f"--judge={judge}")
            steps.append(args + shlex.split(FLAGS.train_flags))
    # {fold} stays literal: run_evaluate.py fills in each fold's index.
    exports = {s: os.path.join(out, "fold{fold}", f"export_{s}", "ssagan") for s in FLAGS.systems}
    augmenters = [f"{NAMES.get(s, s)}={exports[s]}" for s in FLAGS.systems]
    drawn = [f"{NAMES.get(s, s)}_masks" for s in FLAGS.in_masks]
    augmenters += [f"{name}={exports[s]}" for name, s in zip(drawn, FLAGS.in_masks)]
    steps.append(["python", os.path.join(REPO_ROOT, "run_evaluate.py"), f"--data_dir={data_dir}",
                  f"--output_dir={os.path.join(out, 'report')}", f"--folds={FLAGS.folds}",
                  f"--fold_seed={FLAGS.fold_seed}", f"--tumor_fraction={FLAGS.tumor_fraction}",
                  f"--augmenters={','.join(augmenters + ['copy_paste', 'identity'])}", f"--arms={FLAGS.arms}"]
                 + ([f"--in_masks={','.join(drawn)}"] if drawn else [])
                 + shlex.split(FLAGS.evaluate_flags))
    return steps


def main(argv) -> int:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.folds < 2:
        raise ValueError(f"--folds={FLAGS.folds}: need at least 2")
    stray = [s for s in FLAGS.in_masks if s not in FLAGS.systems]
    if stray:
        raise ValueError(f"--in_masks={','.join(stray)}: not among --systems={','.join(FLAGS.systems)}")
    if FLAGS.fold_judges:
        write_judge_data(FLAGS.data_dir, FLAGS.output_dir)
    for args in commands(FLAGS.data_dir, FLAGS.output_dir):
        run(args)
    print(f"report: {os.path.join(FLAGS.output_dir, 'report', 'report.md')}")
    return 0


if __name__ == "__main__":
    from ssagan_tf import cli

    cli.run(main, __doc__)
