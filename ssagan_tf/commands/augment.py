r"""Exported generators -> an augmented dataset (docs/method.md, "Augmentation and evaluation").

    python run_augment.py --model=exports/ssagan --data_dir=data/brats --output_dir=runs/aug \
        --ratio=1.0 --format=tfrecord

See docs/export_and_serving.md for the inputs, outputs and resuming, docs/reliability.md for what
happens under faults. Errors end in one line and exit 1 (--debug: the traceback).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from ssagan_tf import cli, settings
from ssagan_tf import precision as precisions
# Only plain-Python modules here: --help and a bad flag are answered before TensorFlow loads.
from ssagan_tf.augment.config import AugmentConfig

# Every setting with help text in AugmentConfig's fields is a flag (default, help and choices there).
CONFIG_FLAGS = settings.define_flags(AugmentConfig)
precisions.define_flag(
    "when --model is a training run (exported in it)", "An export computes in the precision it was exported in "
    "(python -m ssagan_tf.export --precision); asking for another one is refused.")
flags.mark_flags_as_required(["model", "data_dir", "output_dir"])

FLAGS = flags.FLAGS


def config_from_flags() -> AugmentConfig:
    return AugmentConfig(precision=FLAGS.precision, **settings.read_fields(AugmentConfig, CONFIG_FLAGS))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags()
        config.check_inputs()
    except ValueError as err:
        raise app.UsageError(str(err)) from None

    from ssagan_tf.augment.run import augment_dataset

    result = augment_dataset(config)
    sheet = f"contact sheet {result.contact_sheet}" if result.contact_sheet else "no contact sheet"
    logging.info("augment: %d synthetic slices (%d normal, %d tumor) in %s; %.1f slices/s this run; manifest %s; %s",
                 sum(result.counts.values()), result.counts.get("normal", 0), result.counts.get("tumor", 0),
                 result.output_dir, result.slices_per_second, result.manifest_csv, sheet)


def run(argv=None) -> None:
    """The command line (run_augment.py, `ssagan augment`): `ssagan_tf.cli`'s endings; exits."""
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
