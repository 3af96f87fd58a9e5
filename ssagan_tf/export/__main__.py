"""`python -m ssagan_tf.export`: the command line (ssagan_tf/commands/export.py) of the export
(ssagan_tf/export/__init__.py). A module of its own, so that the export never imports its command
line; the command line answers --help and refuses bad flags before TensorFlow loads."""

import sys

from ssagan_tf.commands.export import run

if __name__ == "__main__":
    run(["python -m ssagan_tf.export", *sys.argv[1:]])
