"""Classifier evaluation of the augmentation: `python run_evaluate.py --help` (also `ssagan
evaluate`). The command line is ssagan_tf/commands/evaluate.py, which an installed package holds too."""

from ssagan_tf.commands.evaluate import run

if __name__ == "__main__":
    run()
