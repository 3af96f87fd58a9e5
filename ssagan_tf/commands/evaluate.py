"""Does the augmentation help? Train ResNet18 tumor/normal classifiers on each arm and report.

    python run_evaluate.py --data_dir=DATA --output_dir=REPORT --augmenters=ssa=EXPORT/ssa_cyclegan
        [--arms=none,classic,synthetic,synthetic+classic] [--ratios=0.5,1,2,3] [--seeds=0,1,2]
        [--epochs=30] [--patience=5] [--width=64] [--tau=0.1]

Writes report.md, results.json and PNG figures to --output_dir (docs/evaluation.md explains them).
Every flag is checked, and the dataset and exported models located, before any training starts.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from ssagan_tf import cli
from ssagan_tf.data.integrity import DatasetMismatchError
from ssagan_tf.evaluation.config import (ALLOWED_RATIOS, ARMS, PAPER_ARMS, EvaluationConfig, check_inputs,
                                         parse_augmenters)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Converted dataset (the --output_dir of `python -m data_prep.convert`) "
                    "with train, val and test splits, each holding normal and tumor slices.")
flags.DEFINE_string("output_dir", None, "Where report.md, results.json and the PNG figures are written; "
                    "not the dataset folder, nor inside it, nor a file.")
flags.DEFINE_string("augmenters", "", "Comma-separated NAME=EXPORTED_DIR pairs, one per system compared, e.g. "
                    "ssa=exports/ssa_cyclegan,cyclegan=exports/cyclegan. EXPORTED_DIR is a TF Serving model "
                    "directory (its highest version is used) or one version directory; with --folds it may hold "
                    "{fold}. The built-in copy_paste (a real lesion pasted into a normal slice) and identity (the "
                    "control: the slice itself, relabelled) take no path. Needed by the synthetic arms; also "
                    "scored by the attention metrics.")
flags.DEFINE_list("arms", list(PAPER_ARMS), f"Training arms to run, any of {', '.join(ARMS)}: real slices only, "
                  "+ classic augmentation (flip, rotation, translation, crop), + synthetic slices from each "
                  "augmenter, + both; MixUp or CutMix (Keras 3's layers) of the real batches, alone or after "
                  "classic augmentation.")
flags.DEFINE_list("ratios", ["1"], "Synthetic:real ratios per class for the synthetic arms, each one of "
                  f"{', '.join(f'{r:g}' for r in ALLOWED_RATIOS)} (the paper's; 1 was its best).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Integer seeds; one classifier per seed and row. Mean and std over "
                  "seeds are reported, and arms are compared seed by seed.")
flags.DEFINE_integer("epochs", 30, "Maximum training epochs per classifier.")
flags.DEFINE_integer("batch_size", 32, "Classifier batch size.")
flags.DEFINE_integer("patience", 5, "Early stopping: epochs without a lower validation loss before training "
                     "stops; the best epoch's weights are kept.")
flags.DEFINE_integer("width", 64, "ResNet18 base width (stem and first stage channels); 64 is the standard "
                     "ResNet18 of the paper, 8-16 suits CPU demos.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the classifier.")
flags.DEFINE_float("tau", 0.1, "Attention threshold: pixels with attention >= tau count as attended in the "
                   "Dice/IoU and background-change metrics.")
flags.DEFINE_float("threshold", 0.5, "Decision threshold on the tumor probability for sensitivity, "
                   "specificity and accuracy (AUC uses all thresholds).")
flags.DEFINE_integer("sample_count", 4, "Test slices per class shown in each augmenter's sample grid.")
flags.DEFINE_integer("verbose", 0, "Keras fit verbosity (0 silent, 1 progress bar, 2 one line per epoch).")
flags.DEFINE_enum("precision", "auto", ["auto", "fp32", "bf16", "fp16"],
                  "Compute precision of the ResNet18 classifiers (batch-norm statistics, logits and optimizer state "
                  "stay float32; fp16 scales the loss). auto picks by hardware: bf16 on CPUs with AMX/AVX-512 BF16 "
                  "and GPUs of capability >= 8.0, fp16 on 7.x, else fp32. The augmenters compute in the precision "
                  "they were exported in.")
flags.DEFINE_string("judge", "", "A judge trained on this dataset (python -m ssagan_tf.judge): it scores "
                    "each augmenter's test translations (tumor rate of normal->tumor, normal rate of "
                    "tumor->normal, KID against real slices). Empty = no judge.")
flags.DEFINE_float("tumor_fraction", 1.0, "Low-data regime: keep the tumor slices of only this fraction of the "
                   "training cases (at least one, fixed seed); normal slices all stay. 1 = all.")
flags.DEFINE_integer("folds", 0, "Patient-level K-fold cross-validation: the patients of all splits pooled and dealt "
                     "into K folds (seeded); each fold tested once, early stopping on a fifth of its training "
                     "patients. Augmenter paths may hold {fold} (one export per fold, trained with run_train.py "
                     "--folds=K --fold=k); a fold whose augmenter saw its test patients is refused. 0 = the "
                     "dataset's own split.")
flags.DEFINE_integer("fold_seed", 0, "Seed of the fold assignment (run_train.py --fold_seed must be the same).")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay of the classifier (AdamW); 0 = plain Adam.")
flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine"], "Classifier learning rate per epoch: constant, "
                  "or cosine from --learning_rate towards 0 over --epochs.")
flags.DEFINE_enum("classic_impl", "warp", ["warp", "keras"], "Classic augmentation: one bilinear warp per slice "
                  "(warp, the default and earlier releases' path) or Keras 3 RandomFlip/RandomRotation/"
                  "RandomTranslation/RandomZoom layers over the same ranges (keras; not bit-identical: four "
                  "interpolations, translation range independent of the crop).")
flags.DEFINE_float("classic_strength", 1.0, "Factor on the classic augmentation's rotation, translation and crop "
                   "ranges (1 = ±15°, ±10%, 85-100%; 0 = flips only), in [0, 3].")
flags.DEFINE_integer("bootstrap_resamples", 2000, "Patient-level bootstrap replicates of the 95% confidence "
                     "intervals (seeded).")
flags.mark_flags_as_required(["data_dir", "output_dir"])


def _numbers(name: str, values: list, kind):
    try:
        return tuple(kind(v) for v in values if v.strip())
    except ValueError:
        raise app.UsageError(f"--{name}={','.join(values)}: expected comma-separated {kind.__name__} values")


def config_from_flags() -> EvaluationConfig:
    """Flags -> the frozen config, raising UsageError for any value that cannot work."""
    try:
        return EvaluationConfig(
            data_dir=FLAGS.data_dir, output_dir=FLAGS.output_dir, augmenters=parse_augmenters(FLAGS.augmenters),
            arms=tuple(a.strip() for a in FLAGS.arms if a.strip()), ratios=_numbers("ratios", FLAGS.ratios, float),
            seeds=_numbers("seeds", FLAGS.seeds, int), epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
            patience=FLAGS.patience, width=FLAGS.width, learning_rate=FLAGS.learning_rate, tau=FLAGS.tau,
            threshold=FLAGS.threshold, sample_count=FLAGS.sample_count, verbose=FLAGS.verbose,
            precision=FLAGS.precision, judge=FLAGS.judge, tumor_fraction=FLAGS.tumor_fraction, folds=FLAGS.folds,
            fold_seed=FLAGS.fold_seed, weight_decay=FLAGS.weight_decay, lr_schedule=FLAGS.lr_schedule,
            classic_impl=FLAGS.classic_impl, classic_strength=FLAGS.classic_strength,
            bootstrap_resamples=FLAGS.bootstrap_resamples)
    except ValueError as err:
        raise app.UsageError(str(err))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    try:
        check_inputs(config)
    except DatasetMismatchError:
        raise                     # the data, not the flags, are at fault: one error line (ssagan_tf.cli)
    except (OSError, ValueError) as err:
        raise app.UsageError(str(err))
    logging.set_verbosity(logging.INFO)
    from ssagan_tf.evaluation import run_evaluation

    results = run_evaluation(config)
    classifiers = sum(len(row["runs"]) for row in results["rows"])
    print(f"report: {config.output_dir}/report.md ({classifiers} classifier{'s' * (classifiers != 1)}, "
          f"{results['seconds']:.0f} s)")
    return 0


def run(argv=None) -> None:
    """The command line (run_evaluate.py, `ssagan evaluate`): `ssagan_tf.cli`'s endings; exits."""
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
