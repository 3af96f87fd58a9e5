"""`python -m ssagan_tf.evaluation.judge`: the judge's command line under its former name. It says
so in one line on stderr and runs `python -m ssagan_tf.judge` (ssagan_tf/commands/judge.py) with
the same flags; the judge itself is ssagan_tf/judge/."""

import sys

if __name__ == "__main__":
    # Only when run: the evaluation never imports a command line (ssagan_tf.commands imports it).
    from ssagan_tf.commands.judge import run

    print("python -m ssagan_tf.evaluation.judge is deprecated: use python -m ssagan_tf.judge (or ssagan judge), "
          "same flags", file=sys.stderr, flush=True)
    run()
