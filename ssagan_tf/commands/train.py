"""Train SSA-CycleGAN (or one of the paper's other four systems) on converted TFRecords.

    python run_train.py --flagfile=brain.flags        (or: ssagan train --flagfile=brain.flags)
    python run_train.py --data_dir=DIR --model_dir=DIR [--system=ssa_cyclegan] [--strategy=mirrored] ...
    python run_train.py --data_dir=DIR,HEALTHY_DIR ...   (a healthy cohort's train normals join the normal domain)

Resumes from the newest intact checkpoint in --model_dir unless --fresh, with the settings the run
was trained with: a change that alters the result (data, seed, schedule, batch, tau, losses,
precision, ...) is refused, naming each, unless --allow_changes names it. One trainer per
--model_dir: a second is refused, naming the first. The data's shards are checked against their
manifest at start and as they are read. Ctrl-C or SIGTERM saves a checkpoint of the last finished
step, prints "interrupted" and exits 130. Errors end in one line and exit 1 (--debug: the
traceback); a bad flag, one line and exit 2. See docs/reliability.md.
"""

from __future__ import annotations

import sys

from absl import app, flags

from ssagan_tf import cli, settings
from ssagan_tf import precision as precisions
# Only plain-Python modules here: --help and a bad flag are answered before TensorFlow loads.
from ssagan_tf.choices import SYSTEMS
from ssagan_tf.data.integrity import DatasetMismatchError
from ssagan_tf.models.config import ModelConfig
from ssagan_tf.training.config import SYSTEM_SPECIFIC, ConfigError, RunConfig, build_run_config, open_dataset, \
    unused_settings_warning

flags.DEFINE_list("data_dir", None, "Converted dataset (the --output_dir of `python -m data_prep.convert`), or a "
                  "comma-separated list of them: the first is the main dataset (both classes; it alone is "
                  "validated, judged and selected on); each further one adds the slices of its train split "
                  "by class, so a healthy cohort converted with --no_masks --assume_normal joins the normal "
                  "domain (its val and test splits are not read). All must hold slices of the same size, "
                  "channels and modalities, and no patient may be in two splits (docs/training.md, "
                  "'Several datasets').")
settings.define("system", "ssa_cyclegan", "Which of the paper's five systems to train (Table I): plain CycleGAN, "
                "+spectral norm, +attention, +both, or SSA-CycleGAN (attention, spectral norm and the semi-supervised "
                "mask loss).", choices=SYSTEMS, aliases=("model",))
flags.DEFINE_integer("image_size", 0, "Slice size; 0 takes it from the dataset manifest, otherwise it must match it.")
# Every setting of the networks and of the run that has help text in its config field is a flag.
MODEL_FLAGS = settings.define_flags(ModelConfig)
RUN_FLAGS = settings.define_flags(RunConfig)
precisions.define_flag(
    "of the networks", "Normalisation, losses, Eq. 1, the output activations, spectral norm's power iteration "
    "and optimizer state stay float32. On the reference CPU bf16 is 1.5-1.8x faster than fp32 (README "
    "Performance). auto continues a saved run in its own precision; the choice is stored in config.json.")
flags.DEFINE_integer("folds", 0, "Patient-level cross-validation: train on fold --fold's training patients of K "
                     "folds (the patients of all of --data_dir's splits pooled, as run_evaluate.py --folds=K deals "
                     "them); their data are written once to --model_dir/fold_data, the fold's test patients never. "
                     "0 = the dataset's own train split.")
flags.DEFINE_integer("fold", 0, "With --folds: which fold's training patients to train on (0..K-1).")
flags.DEFINE_integer("fold_seed", 0, "With --folds: the seed of the patients' fold assignment (the evaluation's "
                     "--fold_seed must be the same).")
flags.DEFINE_float("tumor_fraction", 1.0, "With --folds: the low-data regime; keep the tumor slices of only this "
                   "fraction of the fold's training cases, the same ones run_evaluate.py --tumor_fraction keeps "
                   "for the fold's classifiers. 1 = all.")
FLAGS = flags.FLAGS
# The library's settings: the entry point's own flags above, and the generated MODEL_FLAGS and RUN_FLAGS.
OWN_SETTINGS = ("data_dir", "system", "image_size", "precision")


def fold_settings() -> dict:
    """With --folds: the fold's cohort record and its training data folder (written here, once)."""
    used = [name for name in ("fold", "fold_seed", "tumor_fraction") if FLAGS[name].present]
    if not FLAGS.folds:
        if used:
            raise app.UsageError(f"--{', --'.join(used)} need --folds (cross-validation)")
        return {}
    if FLAGS.folds < 2:
        raise app.UsageError(f"--folds={FLAGS.folds}: need at least 2 (or 0 for no cross-validation)")
    if not 0.0 < FLAGS.tumor_fraction <= 1.0:
        raise app.UsageError(f"--tumor_fraction={FLAGS.tumor_fraction}: must be in (0, 1]")
    if not FLAGS.data_dir or not FLAGS.model_dir:
        raise app.UsageError("--data_dir and --model_dir are required")
    if len(FLAGS.data_dir) > 1:
        raise app.UsageError(f"--folds deals the patients of one dataset into folds; --data_dir names "
                             f"{len(FLAGS.data_dir)} ({', '.join(FLAGS.data_dir)}). Cross-validate on the main "
                             "dataset alone, or convert the cohorts together into one dataset")
    data_dir = FLAGS.data_dir[0]
    import os

    from ssagan_tf.data import folds, schema

    try:
        source = schema.open(data_dir)
        cohort = folds.cohort_record(source, FLAGS.folds, FLAGS.fold, FLAGS.fold_seed, FLAGS.tumor_fraction)
        data_dir = folds.write_fold_dataset(source, os.path.join(FLAGS.model_dir, folds.FOLD_DATA_NAME), cohort)
    except (FileNotFoundError, ValueError) as err:
        raise app.UsageError(str(err)) from err
    print(f"Fold {FLAGS.fold} of {FLAGS.folds}: training on {len(cohort['train_patients'])} patients, validating on "
          f"{len(cohort['val_patients'])}; its {len(cohort['test_patients'])} test patients are not in {data_dir}",
          flush=True)
    return {"data_dir": data_dir, "cohort": cohort}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    values = settings.read_flags(OWN_SETTINGS)
    values["data_dir"] = list(values["data_dir"] or ())
    values["model"] = values.pop("system")
    values.update(settings.read_fields(ModelConfig, MODEL_FLAGS))
    values.update(settings.read_fields(RunConfig, RUN_FLAGS))
    values.update(fold_settings())
    try:
        # Each dataset opened once, here, and handed to the config's checks and to training.
        data_dirs = values["data_dir"] if isinstance(values["data_dir"], list) else [values["data_dir"]]
        opened = [open_dataset(d, what=" (extra dataset)" if i else "") for i, d in enumerate(data_dirs) if d]
        config = build_run_config(opened=opened, **values)
    except ConfigError as err:
        raise app.UsageError(str(err)) from err
    warning = unused_settings_warning(config.model, [name for name in SYSTEM_SPECIFIC if FLAGS[name].present])
    if warning:
        print(warning, file=sys.stderr, flush=True)

    from ssagan_tf.export import export_after_training
    from ssagan_tf.training.loop import train

    try:
        train(config, finish=export_after_training, opened=opened)
    except DatasetMismatchError:
        raise                     # the data, not the flags, are at fault: one error line (ssagan_tf.cli)
    except ConfigError as err:    # the data, devices or run directory refuse these settings
        raise app.UsageError(str(err)) from err
    return 0


def run(argv=None) -> None:
    """The command line (run_train.py, `ssagan train`): `ssagan_tf.cli`'s endings; exits."""
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
