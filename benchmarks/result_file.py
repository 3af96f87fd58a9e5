"""A benchmark's JSON result file: written whole or not at all, and never over a file the benchmark
did not write.

Every result is a JSON object whose `"benchmark"` key names the benchmark that wrote it. A
benchmark replaces an existing file at its output path only when that file is a result of the
same benchmark (a rerun); any other file there (a user's notes, another benchmark's result,
anything that is not such a JSON object) is refused, before the measurement starts and again
when writing, so a long run never ends by destroying a file it did not make. The file is written
atomically (`ssagan_tf.io.atomic_write`): a killed run leaves the old result or the new one.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssagan_tf import io as durable  # noqa: E402

KEY = "benchmark"


class ForeignFileError(ValueError):
    """The output path holds something this benchmark did not write."""


def check(path: str, benchmark: str) -> None:
    """Raise ForeignFileError unless `path` is free or holds a result of `benchmark`."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) or os.path.islink(path):
        raise ForeignFileError(f"{path}: is a {'folder' if os.path.isdir(path) else 'link'}, not a result of "
                               f"{benchmark}; give another output path (nothing was written)")
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ForeignFileError(f"{path}: exists and is not a JSON result of {benchmark} ({error}); give another "
                               "output path or remove the file (nothing was written)") from None
    if not isinstance(document, dict) or document.get(KEY) != benchmark:
        owner = document.get(KEY) if isinstance(document, dict) else None
        what = f"a result of {owner}" if isinstance(owner, str) else f"not a result of {benchmark}"
        raise ForeignFileError(f"{path}: exists and is {what}; give another output path or remove the file "
                               "(nothing was written)")


def write(path: str, document: dict, benchmark: str) -> dict:
    """Write `document` (a dict; its `"benchmark"` key set to `benchmark`, first) to `path` as
    indented JSON, atomically, after `check`. Returns the document as written."""
    check(path, benchmark)
    written = {KEY: benchmark, **{k: v for k, v in document.items() if k != KEY}}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    durable.atomic_write(path, json.dumps(written, indent=1) + "\n")
    return written


def check_or_exit(path: str | None, benchmark: str) -> None:
    """`check` for a benchmark's main: print the refusal and exit with 2 before any measurement."""
    if path is None:
        return
    try:
        check(path, benchmark)
    except ForeignFileError as error:
        print(f"{benchmark}: {error}", file=sys.stderr)
        sys.exit(2)
