"""`python -m ssagan_tf VERB [flags]`: the `ssagan` command without the console script (see
ssagan_tf/commands/__init__.py)."""

import sys

from ssagan_tf.commands import main

if __name__ == "__main__":
    sys.exit(main(program="python -m ssagan_tf"))
