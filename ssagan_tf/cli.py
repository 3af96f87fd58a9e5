"""What every entry point shares: `--help` that lists the entry point's own flags and exits 0.

absl's own `--help` exits 1, which scripts and CI read as a failure, and lists only the flags of
the module run as `__main__` (the converter defines its flags in another module).
"""

from __future__ import annotations

import sys

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")


def wants_help(argv) -> bool:
    return any(arg in HELP_FLAGS for arg in list(argv)[1:])


def help_text(doc: str, module=None) -> str:
    """`doc` and the flags defined by `module` (default: the main module)."""
    from absl import flags

    listed = flags.FLAGS.module_help(module) if module is not None else flags.FLAGS.main_module_help()
    return doc.strip() + "\n\nflags:\n\n" + listed


def run(main, doc: str, argv=None) -> None:
    """`absl.app.run(main)`, except that a help flag prints `doc` and the main module's flags and
    exits 0."""
    from absl import app

    argv = list(sys.argv if argv is None else argv)
    if wants_help(argv):
        print(help_text(doc))
        sys.exit(0)
    app.run(main, argv=argv)
