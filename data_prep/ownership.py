"""What the converter owns in its output folder, and the checks that keep it from touching anything
else.

Every file the converter puts in `--output_dir` is listed, before it is written, in
`OUT/.conversion-files.json` (relative paths). That record is the only proof of ownership: an
output folder holding anything not in it (a user's file, a dataset converted without a record, the
input's own split folders) is refused before any work, with or without `--overwrite`, and
`--overwrite` removes only listed files. Staging folders (`OUT/.staging-<pid>/`) are recognised by
the lock file inside them, which names their host and pid (`ssagan_tf.locking`), never by name.
"""

from __future__ import annotations

import json
import os
import shutil

from ssagan_tf import io as durable
from ssagan_tf.locking import DirectoryLock, is_held, is_stale, read_holder

RECORD_NAME = ".conversion-files.json"
STAGING_PREFIX = ".staging-"
STAGING_LOCK = ".convert.lock"      # inside a staging folder, held while its conversion runs
_WRITER = "python -m data_prep.convert"
_SHOWN = 3


def read_record(output_dir: str) -> set | None:
    """The relative paths the converter recorded as written in `output_dir`; None without a
    record. A record that is not ours (unreadable, or written by something else) is refused."""
    path = os.path.join(output_dir, RECORD_NAME)
    if not os.path.lexists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable record of the converter's files ({err}); nothing in "
                         f"{output_dir} is replaced: choose another --output_dir") from None
    if not isinstance(record, dict) or record.get("written_by") != _WRITER or not isinstance(record.get("files"), list):
        raise ValueError(f"{path}: not a record of the converter's files; nothing in {output_dir} is replaced: "
                         "choose another --output_dir")
    return {str(name) for name in record["files"]}


def write_record(output_dir: str, files, temp_dir: str | None = None) -> None:
    durable.atomic_write(os.path.join(output_dir, RECORD_NAME),
                         json.dumps({"written_by": _WRITER, "files": sorted(set(files))}, indent=1) + "\n",
                         temp_dir=temp_dir)


def is_staging(path: str) -> bool:
    """A conversion's staging folder: a real folder holding the converter's lock file."""
    lock = os.path.join(path, STAGING_LOCK)
    return (os.path.basename(path).startswith(STAGING_PREFIX) and os.path.isdir(path) and not os.path.islink(path)
            and os.path.isfile(lock) and not os.path.islink(lock))


def present_files(output_dir: str) -> list:
    """Every file, link and empty folder under `output_dir` (relative paths), except the record and
    staging folders."""
    return durable.entries_under(output_dir, lambda name: name == RECORD_NAME
                                 or is_staging(os.path.join(output_dir, name)))


def foreign_files(output_dir: str) -> list:
    """What lies in `output_dir` that the converter did not record as written."""
    if not os.path.isdir(output_dir):
        return []
    return durable.not_owned(present_files(output_dir), read_record(output_dir) or set())


def check_output(input_dir: str, output_dir: str, overwrite: bool, manifest_name: str) -> None:
    """Refuse, before any work, an output folder that is the input, holds it or lies inside it, is
    a file, holds anything the converter did not write, or holds a dataset without --overwrite."""
    source, target = os.path.realpath(input_dir), os.path.realpath(output_dir)
    if target == source or os.path.commonpath([source, target]) in (source, target):
        where = ("is" if target == source else "lies inside" if os.path.commonpath([source, target]) == source
                 else "holds")
        raise ValueError(f"--output_dir {output_dir} {where} --input {input_dir}; write the dataset to a folder "
                         "outside the input (nothing of the input is ever replaced)")
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir}: is a file, not a folder")
    foreign = foreign_files(output_dir)
    if foreign:
        listed = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
        why = ("it holds no record of the converter's files (" + RECORD_NAME + ")"
               if read_record(output_dir) is None else "they are not in its record of the converter's files")
        raise ValueError(f"--output_dir {output_dir} holds files the converter did not write ({listed}; {why}); "
                         "nothing there is replaced, with or without --overwrite: choose a new or empty folder")
    if os.path.isfile(os.path.join(output_dir, manifest_name)) and not overwrite:
        raise ValueError(f"--output_dir: {output_dir} already holds a converted dataset; "
                         "pass --overwrite to replace it")


def clean_stale(output_dir: str) -> list:
    """Remove the staging folders that conversions killed on this machine left in `output_dir`
    (their lock names this host and a pid, and no live process holds it). A folder merely named
    like one, or another machine's, is left alone. Returns the paths removed."""
    removed = []
    for name in sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []:
        path = os.path.join(output_dir, name)
        if is_staging(path) and is_stale(os.path.join(path, STAGING_LOCK)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def check_not_in_use(output_dir: str) -> None:
    """Refuse a folder another conversion of this machine is writing (its staging lock is held)."""
    for name in sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []:
        lock = os.path.join(output_dir, name, STAGING_LOCK)
        if is_staging(os.path.join(output_dir, name)) and is_held(lock):
            holder = read_holder(lock)
            raise ValueError(f"--output_dir {output_dir} is in use by a conversion (pid {holder.get('pid', '?')} on "
                             f"{holder.get('host', '?')}, started {holder.get('started', '?')}); wait for it to "
                             "finish, stop it, or choose another --output_dir")


def staging_lock(root: str) -> DirectoryLock:
    """The lock a staging folder holds while its conversion runs (it names host and pid)."""
    return DirectoryLock(root, STAGING_LOCK, "a conversion", "--output_dir").acquire()
