"""`python -m ssagan_tf.judge`: the judge's command line (ssagan_tf/commands/judge.py)."""

import sys

from ssagan_tf.commands.judge import run

if __name__ == "__main__":
    run(["python -m ssagan_tf.judge", *sys.argv[1:]])
