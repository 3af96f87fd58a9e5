"""What every entry point shares: how it ends.

- `--help` (and absl's `--helpshort`) lists the entry point's own flags and exits 0 (absl's own
  exits 1, which scripts and CI read as a failure, and lists only the flags of the module run as
  `__main__`; the converter and the `ssagan` verbs define theirs in another module). `--helpfull`
  lists every flag of every loaded module, `--helpxml` the same as XML, both exit 0. All of them
  are answered before the flags are parsed, so before any heavy import.
- A usage error (a flag that does not parse, an unknown flag, a value refused before any work)
  prints one line and a `--help` hint on stderr and exits 2, instead of absl's page of flag help.
- The project's own errors (bad paths, folders in use, corrupt shards, refused exports, data
  checks, TensorFlow op errors such as our input assertions: see `is_user_error`) print one line
  on stderr and exit 1, without a traceback. `--debug` shows the traceback instead; anything
  else (a bug: TypeError, KeyError, ...) always shows it.
- Ctrl-C (SIGINT) and SIGTERM (`kill`, a batch scheduler, `docker stop`) end alike: the command
  cleans up as it does for any error (locks released, temporary files removed; training first
  saves a checkpoint of its last finished step), prints one line, `<program>: interrupted`, and
  exits 130 - never -15. SIGTERM is turned into KeyboardInterrupt in the main thread here, so
  every entry point gets it.
- Log records print as plain lines (`console.plain_logging`), like the commands' own lines.
- TensorFlow's start-up chatter is dropped and its errors kept (`console.install`, first thing,
  before any entry point imports TensorFlow); importing the library alone leaves the console as
  it is.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-helpshort", "-?")
FULL_HELP_FLAGS = ("--helpfull", "-helpfull")
XML_HELP_FLAGS = ("--helpxml", "-helpxml")
USAGE_EXIT = 2
ERROR_EXIT = 1
INTERRUPT_EXIT = 130
DEBUG_HELP = "Show the Python traceback of an error instead of one line."


def wants_help(argv) -> bool:
    return any(arg in HELP_FLAGS + FULL_HELP_FLAGS + XML_HELP_FLAGS for arg in list(argv)[1:])


def answer_help(argv, doc: str, module=None) -> bool:
    """Print the help a help flag in `argv` asks for (see the module docstring) and return True;
    False when no argument asks for help."""
    from absl import flags

    args = list(argv)[1:]
    if any(arg in FULL_HELP_FLAGS for arg in args):
        print(doc.strip() + "\n\nflags of every loaded module:\n\n" + flags.FLAGS.get_help().rstrip())
    elif any(arg in XML_HELP_FLAGS for arg in args):
        flags.FLAGS.write_help_in_xml_format(sys.stdout)
    elif wants_help(argv):
        print(help_text(doc, module))
    else:
        return False
    return True


def help_text(doc: str, module=None) -> str:
    """`doc` and the flags defined by `module` (default: the main module), and `--debug`."""
    from absl import flags

    listed = flags.FLAGS.module_help(module) if module is not None else flags.FLAGS.main_module_help()
    return doc.strip() + "\n\nflags:\n\n" + listed.rstrip() + f"\n  --[no]debug: {DEBUG_HELP}\n    (default: 'false')"


def program_name(argv) -> str:
    """How the user started us: `run_train.py`, or `python -m ssagan_tf.export`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        return f"python -m {spec.name}"
    return os.path.basename(argv[0]) if argv else "ssagan_tf"


def is_user_error(err: BaseException) -> bool:
    """Errors the project raises for what the user gave it (one line, exit 1), as opposed to
    bugs (traceback). TensorFlow op errors count: they carry our own data and input checks, and
    out-of-memory and similar conditions of the machine."""
    if isinstance(err, (NotImplementedError, RecursionError)):
        return False
    if isinstance(err, (ValueError, OSError, RuntimeError, FloatingPointError)):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(err, tf.errors.OpError)


def one_line(err: BaseException) -> str:
    """`err`'s message on one line: a TensorFlow op error without its node and op decoration,
    the lines of a multi-line message joined."""
    text = getattr(err, "message", None) if type(err).__module__.startswith("tensorflow") else None
    if text is not None:
        text = re.sub(r"\{\{.*?\}\}", "", text.split("[Op:")[0])
        text = re.sub(r"\[\[.*?\]\]", "", text)
        text = text.replace("assertion failed: [", "").strip().rstrip("]")
        text = f"{type(err).__name__}: {text}"
    else:
        text = str(err) or type(err).__name__
    parts = [part.strip() for part in text.splitlines() if part.strip()]
    joined = parts[0] if parts else type(err).__name__
    for part in parts[1:]:
        joined += (" " if joined.endswith(":") else "; ") + part
    return joined


def usage_exit(program: str, message) -> None:
    print(f"{program}: {one_line(message) if isinstance(message, BaseException) else message} "
          f"(try --help)", file=sys.stderr, flush=True)
    sys.exit(USAGE_EXIT)


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)


def _define_debug(flag_values) -> None:
    from absl import flags

    if "debug" not in flag_values:
        flags.DEFINE_boolean("debug", False, DEBUG_HELP, flag_values=flag_values)


def run(main, doc: str, argv=None, help_module=None) -> None:
    """`absl.app.run(main)`, ending as the module docstring says. `help_module`: the module whose
    flags `--help` lists (default: the main module)."""
    from absl import app, flags

    from ssagan_tf import console

    console.install()                      # before the entry point's work imports TensorFlow
    argv = list(sys.argv if argv is None else argv)
    program = program_name(argv)
    interrupt_on_sigterm()
    _define_debug(flags.FLAGS)
    if answer_help(argv, doc, help_module):
        sys.exit(0)
    try:
        flags.FLAGS(argv)                  # parsed here to report errors our way; app.run parses again
    except flags.Error as err:
        usage_exit(program, err)
    debug = flags.FLAGS.debug

    def guarded(args):
        console.plain_logging()           # app.run installed absl's handler; one format for every command
        try:
            return main(args)
        except app.UsageError as err:
            if debug:
                raise
            usage_exit(program, err)
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"{program}: interrupted", file=sys.stderr, flush=True)
            sys.exit(INTERRUPT_EXIT)
        except Exception as err:  # noqa: BLE001 - sorted by is_user_error, the rest re-raised
            if debug or not is_user_error(err):
                raise
            print(f"{program}: error: {one_line(err)}", file=sys.stderr, flush=True)
            sys.exit(ERROR_EXIT)

    app.run(guarded, argv=argv)
