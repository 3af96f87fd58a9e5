"""The judge: an independent tumor/normal classifier that says whether translations work.

It is a ResNet18 trained once per dataset on the real training slices only (classic
augmentation, early stopping on the real validation split), and its own test AUC is recorded.
Training, augmentation and evaluation then reuse it for two measures of a translation:

- **tumor rate**: the fraction of normal->tumor outputs it calls tumor (and the **normal rate**,
  the fraction of tumor->normal outputs it calls normal). The unchanged inputs give the floor,
  real slices of the target class the ceiling.
- **KID** (kernel inception distance) between synthetic and real slices of the target class in
  its feature space (the ResNet18's global-average-pooled features), with the inputs against the
  target (what no translation scores) and two case-disjoint halves of the real target slices
  (what a perfect translation scores) as references.

    python -m ssagan_tf.judge --data_dir=DATA --output_dir=JUDGE

writes JUDGE/judge.keras and JUDGE/judge.json (settings, validation and test metrics). Flags are
checked, and --help answered, before TensorFlow loads (the judge itself: ssagan_tf/judge/).
"""

from __future__ import annotations

import sys

from absl import app, flags

from ssagan_tf import cli
from ssagan_tf.data import schema
from ssagan_tf.judge.config import JUDGE_INFO, JUDGE_MODEL, JudgeConfig, check_output_dir


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        config = JudgeConfig(data_dir=f.data_dir, output_dir=f.output_dir, width=f.width, epochs=f.epochs,
                             patience=f.patience, batch_size=f.batch_size, learning_rate=f.learning_rate,
                             seed=f.seed, classic=f.classic, threshold=f.threshold, precision=f.precision,
                             balance_classes=f.balance_classes)
        check_output_dir(config.output_dir)
        schema.read_manifest(config.data_dir)
    except (OSError, ValueError) as err:
        raise app.UsageError(str(err))
    # Here, after the flags are checked: training the judge imports TensorFlow.
    from ssagan_tf.judge.train import train_judge

    info = train_judge(config)
    shown = ", ".join(f"{split} AUC {s['auc']:.3f} (sensitivity {s['sensitivity']:.3f}, specificity "
                      f"{s['specificity']:.3f})" for split, s in info["scores"].items())
    print(f"judge: {config.output_dir} ({info['epochs_run']} epochs, best {info['best_epoch']}; {shown}; "
          f"{info['seconds']} s)")
    return 0


def _define_flags():
    flags.DEFINE_string("data_dir", None, "Converted dataset (train, val and test splits) the judge learns and "
                        "scores.")
    flags.DEFINE_string("output_dir", None, f"Where {JUDGE_MODEL} and {JUDGE_INFO} go: a new or empty folder, or "
                        "an earlier judge, which is replaced.")
    flags.DEFINE_integer("width", 32, "ResNet18 base width.")
    flags.DEFINE_integer("epochs", 30, "Maximum training epochs.")
    flags.DEFINE_integer("patience", 5, "Early stopping patience on the validation loss (the best epoch is kept).")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
    flags.DEFINE_integer("seed", 0, "Seed of the initialisation, shuffling and augmentation.")
    flags.DEFINE_bool("classic", True, "Classic augmentation (flip, rotation, translation, crop) while training.")
    flags.DEFINE_float("threshold", 0.5, "Tumor probability at and above which the judge calls a slice tumor.")
    flags.DEFINE_enum("precision", "auto", ["auto", "fp32", "bf16", "fp16"],
                      "Compute precision (auto: bf16 on CPUs with AMX/AVX-512 BF16 and GPUs of capability >= 8.0, "
                      "fp16 on 7.x, else fp32).")
    flags.DEFINE_bool("balance_classes", False, "Weight each slice's loss by n / (2 n_class) of its class, in training "
                      "and in the validation loss that stops it, so that the rarer class (often the normals) counts "
                      "as much as the other.")
    flags.mark_flags_as_required(["data_dir", "output_dir"])


def run(argv=None) -> None:
    """The command line (`python -m ssagan_tf.judge`, `ssagan judge`): `ssagan_tf.cli`'s endings;
    exits. Its flags are defined here, when it runs, so importing this module defines none."""
    _define_flags()
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
