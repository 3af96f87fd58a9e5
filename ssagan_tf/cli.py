"""What every entry point shares: `--help` that lists the entry point's own flags and exits 0.

absl's own `--help` exits 1, which scripts and CI read as a failure.
"""

from __future__ import annotations

import sys

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")


def run(main, doc: str, argv=None) -> None:
    """`absl.app.run(main)`, except that a help flag prints `doc` and the main module's flags and
    exits 0."""
    from absl import app, flags

    argv = list(sys.argv if argv is None else argv)
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print(doc.strip() + "\n\nflags:\n\n" + flags.FLAGS.main_module_help())
        sys.exit(0)
    app.run(main, argv=argv)
