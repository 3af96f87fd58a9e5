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

from ssagan_tf import cli, settings
from ssagan_tf import precision as precisions
from ssagan_tf.judge.config import JudgeConfig


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = JudgeConfig(precision=flags.FLAGS.precision, **settings.read_fields(JudgeConfig, CONFIG_FLAGS))
        dataset = config.check_inputs()
    except (OSError, ValueError) as err:
        raise app.UsageError(str(err))
    # Here, after the flags are checked: training the judge imports TensorFlow.
    from ssagan_tf.judge.train import train_judge

    info = train_judge(config, dataset=dataset)
    shown = ", ".join(f"{split} AUC {s['auc']:.3f} (sensitivity {s['sensitivity']:.3f}, specificity "
                      f"{s['specificity']:.3f})" for split, s in info["scores"].items())
    print(f"judge: {config.output_dir} ({info['epochs_run']} epochs, best {info['best_epoch']}; {shown}; "
          f"{info['seconds']} s)")
    return 0


CONFIG_FLAGS = settings.flag_names(JudgeConfig)


def _define_flags():
    """Every setting with help text in JudgeConfig's fields is a flag, and the one --precision."""
    settings.define_flags(JudgeConfig, CONFIG_FLAGS)
    precisions.define_flag("of the judge's ResNet18 (batch-norm statistics, logits and optimizer state stay "
                           "float32)")
    flags.mark_flags_as_required(["data_dir", "output_dir"])


def run(argv=None) -> None:
    """The command line (`python -m ssagan_tf.judge`, `ssagan judge`): `ssagan_tf.cli`'s endings;
    exits. Its flags are defined here, when it runs, so importing this module defines none."""
    _define_flags()
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
