"""Train SSA-CycleGAN: `python run_train.py --help` (also `ssagan train`). The command line is
ssagan_tf/commands/train.py, which an installed package holds too."""

from ssagan_tf.commands.train import run

if __name__ == "__main__":
    run()
