"""What a user sees on the console: TensorFlow's start-up chatter removed, its errors kept, and one
format for every command's lines (`plain_logging`: messages only, warnings prefixed `WARNING:`).

Importing TensorFlow prints, before its logging is initialised (so `TF_CPP_MIN_LOG_LEVEL` cannot
stop them), C++ INFO lines (oneDNN, "Could not find cuda drivers", CPU instructions) and, on a
machine without an NVIDIA GPU, `E0000 ... failed call to cuInit` - an error only where a GPU is
expected. Its Python loggers then print INFO lines through absl ("Using MirroredStrategy with
devices", "Sharding callback duration" on every checkpoint).

`install()` (run by every command line, first thing in `ssagan_tf.cli.run`, before anything
imports TensorFlow; importing `ssagan_tf` does not run it) makes the first `import tensorflow` run
with stderr caught and replayed without those lines: C++ INFO and WARNING lines (the default `TF_CPP_MIN_LOG_LEVEL=2`
hides them anyway once logging is up), and the cuInit line only when the machine has no NVIDIA
device. Every other line - any other error - is shown. TensorFlow's own Python INFO lines are
dropped. A user who sets `TF_CPP_MIN_LOG_LEVEL` to 0 or 1 (asking for INFO or WARNING lines) sees
everything, as TensorFlow prints it.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

# C++ INFO/WARNING lines in absl's format, e.g. "I0000 00:00:1796064647.113945    6863 port.cc:153] ...".
_CPP_INFO = re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
_START_UP = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "To enable the following instructions:")
_CUINIT = re.compile(r"^E\d{4} .*\] failed call to cuInit")
_PACKAGE_DIR = os.sep + "tensorflow" + os.sep


def has_nvidia_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/proc/driver/nvidia/version")


def is_noise(line: str, nvidia: bool | None = None) -> bool:
    """Whether `line` (of TensorFlow's start-up stderr) is chatter rather than a problem."""
    if _CPP_INFO.match(line) or line.startswith(_START_UP):
        return True
    return bool(_CUINIT.match(line)) and not (has_nvidia_device() if nvidia is None else nvidia)


@contextlib.contextmanager
def filtered_stderr():
    """Catch everything written to file descriptor 2 (C++ included) and write it back, without the
    noise lines, when the block ends (also when it raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_noise(line))
            if kept:
                os.write(2, kept.encode("utf-8"))


class _TensorFlowInfoFilter(logging.Filter):
    """Drops INFO (and DEBUG) records logged from TensorFlow's own files; TensorFlow logs some to
    its `tensorflow` logger, others straight to absl's."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or _PACKAGE_DIR not in record.pathname


def quiet_python_loggers():
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _TensorFlowInfoFilter) for f in absl_logger.filters):
        absl_logger.addFilter(_TensorFlowInfoFilter())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of `tensorflow` so that its first import (and
    the device probing that prints the cuInit line) runs inside `filtered_stderr`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            with filtered_stderr():
                original(module)
                module.config.list_physical_devices()       # probes CUDA: the cuInit line
            quiet_python_loggers()

        spec.loader.exec_module = exec_module
        return spec


def install(environ=None) -> None:
    """Quiet TensorFlow's start-up, unless the user set TF_CPP_MIN_LOG_LEVEL below 2 (then nothing
    changes). Sets TF_CPP_MIN_LOG_LEVEL=2 when unset; when TensorFlow is already imported, only its
    Python loggers are quieted."""
    environ = os.environ if environ is None else environ
    if environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() in ("0", "1"):
        return
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        quiet_python_loggers()
    elif not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class PlainFormatter(logging.Formatter):
    """A log record as the project's console lines are: the message alone (no absl `I1202
    06:09:39.289094 140004972108672 run.py:283]` prefix), `WARNING: ` / `ERROR: ` before the
    message at those levels, a traceback when the record has one."""

    def format(self, record):
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


class ConsoleHandler(logging.Handler):
    """INFO lines to stdout (where the commands print their own lines), warnings and errors to
    stderr, each flushed at once so that they interleave with printed lines in order."""

    def __init__(self):
        super().__init__()
        self.setFormatter(PlainFormatter())

    def emit(self, record):
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the program
            self.handleError(record)


def plain_logging() -> None:
    """Route absl logging (the library's INFO lines and warnings) through `ConsoleHandler`
    instead of absl's handler, once; run by `ssagan_tf.cli.run` before an entry point's main."""
    from absl import logging as absl_logging

    root = logging.getLogger()
    root.removeHandler(absl_logging.get_absl_handler())
    if not any(isinstance(h, ConsoleHandler) for h in root.handlers):
        root.addHandler(ConsoleHandler())
