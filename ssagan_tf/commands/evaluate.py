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

from ssagan_tf import cli, settings
from ssagan_tf import precision as precisions
from ssagan_tf.data.integrity import DatasetMismatchError
from ssagan_tf.evaluation.config import EvaluationConfig

FLAGS = flags.FLAGS
# Every setting with help text in EvaluationConfig's fields is a flag (default, help and choices there).
CONFIG_FLAGS = settings.define_flags(EvaluationConfig)
precisions.define_flag(
    "of the ResNet18 classifiers (batch-norm statistics, logits and optimizer state stay float32; fp16 scales the "
    "loss)", "The augmenters compute in the precision they were exported in.")
flags.mark_flags_as_required(["data_dir", "output_dir"])


def config_from_flags() -> EvaluationConfig:
    """Flags -> the frozen config, raising UsageError for any value that cannot work."""
    try:
        return EvaluationConfig(precision=FLAGS.precision, **settings.read_fields(EvaluationConfig, CONFIG_FLAGS))
    except ValueError as err:
        raise app.UsageError(str(err))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    try:
        dataset = config.check_inputs()
    except DatasetMismatchError:
        raise                     # the data, not the flags, are at fault: one error line (ssagan_tf.cli)
    except (OSError, ValueError) as err:
        raise app.UsageError(str(err))
    logging.set_verbosity(logging.INFO)
    from ssagan_tf.evaluation import run_evaluation

    results = run_evaluation(config, dataset)
    classifiers = sum(len(per_seed) for row in results["rows"] for per_seed in row["fold_runs"])   # folds x seeds
    print(f"report: {config.output_dir}/report.md ({classifiers} classifier{'s' * (classifiers != 1)}, "
          f"{results['seconds']:.0f} s)")
    return 0


def run(argv=None) -> None:
    """The command line (run_evaluate.py, `ssagan evaluate`): `ssagan_tf.cli`'s endings; exits."""
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
