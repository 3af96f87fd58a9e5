"""Exported generators -> an augmented dataset: `python run_augment.py --help` (also `ssagan
augment`). The command line is ssagan_tf/commands/augment.py, which an installed package holds too."""

from ssagan_tf.commands.augment import run

if __name__ == "__main__":
    run()
