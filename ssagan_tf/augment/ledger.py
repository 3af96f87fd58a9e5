"""Resumable bookkeeping under `<output_dir>/.augment/`.

    plan.json            the settings a run was started with; a re-run must agree
    chunks/<name>.json   one file per committed chunk, holding its manifest rows
    staging/             chunk files being written (emptied at the start of every run)

Committing a chunk: its files are written in `staging/`, renamed to their final paths, and then
its record is written (to a temporary name, renamed). The record is the commit point: a chunk
without one is made again from the start, and because every output name is a function of the plan
(not of the run), redoing it replaces files instead of duplicating them.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid

from ssagan_tf.augment.writers import MANIFEST_COLUMNS

STATE_DIR = ".augment"


def _write_json_atomic(path: str, value) -> None:
    temp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(temp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(temp, path)


def inside(root: str, relative: str) -> str:
    """`root/relative`, refusing any path that would resolve outside `root`."""
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, relative))
    if os.path.commonpath([root_real, path]) != root_real or path == root_real:
        raise ValueError(f"refusing to write {relative!r}: it resolves outside the output directory {root}")
    return path


class Ledger:
    """The committed chunks of one output directory."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.state_dir = os.path.join(output_dir, STATE_DIR)
        self.chunks_dir = os.path.join(self.state_dir, "chunks")
        self.staging_dir = os.path.join(self.state_dir, "staging")

    def start(self, plan_settings: dict) -> None:
        """Create the state directories, clear stale staging, and check that a previous run in this
        output directory had the same settings (a mismatch would mix two plans' slices)."""
        os.makedirs(self.chunks_dir, exist_ok=True)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        os.makedirs(self.staging_dir)
        path = os.path.join(self.state_dir, "plan.json")
        if os.path.isfile(path):
            with open(path) as f:
                previous = json.load(f)
            changed = sorted(k for k in set(previous) | set(plan_settings) if previous.get(k) != plan_settings.get(k))
            if changed:
                details = "; ".join(f"{k}: {previous.get(k)!r} -> {plan_settings.get(k)!r}" for k in changed)
                raise ValueError(f"{self.output_dir} holds an augmentation started with other settings ({details}); "
                                 "use the same settings to complete it, a new --output_dir, or --overwrite to "
                                 "replace it")
        else:
            _write_json_atomic(path, plan_settings)

    def _record_path(self, chunk) -> str:
        return os.path.join(self.chunks_dir, f"{chunk.name}.json")

    def rows(self, chunk):
        """The committed rows of `chunk`, or None when it must be (re)made: no record, or a file
        it names has gone missing."""
        path = self._record_path(chunk)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            rows = json.load(f)["rows"]
        for row in rows:
            for key in ("output_path", "mask_path"):
                if row[key] and not os.path.isfile(os.path.join(self.output_dir, row[key])):
                    return None
        return rows

    def new_staging(self, chunk) -> str:
        path = os.path.join(self.staging_dir, chunk.name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def commit(self, chunk, files: list, rows: list) -> None:
        """Move (staged path, relative final path) files into place, then record the chunk."""
        for staged, relative in files:
            final = inside(self.output_dir, relative)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(staged, final)
        shutil.rmtree(os.path.join(self.staging_dir, chunk.name), ignore_errors=True)
        _write_json_atomic(self._record_path(chunk), {"chunk": chunk.name, "rows": rows})


# What an augmentation writes, relative to its output directory (see writers.py and run.py).
_OWN_FILES = ("manifest.csv", "manifest.json", "augment.json", "contact_sheet.png")
_OWN_PATTERNS = ("*/normal-*-of-*.tfrecord", "*/tumor-*-of-*.tfrecord", "*/normal/*.png", "*/tumor/*.png",
                 "*/normal/*.nii.gz", "*/tumor/*.nii.gz", "contact_sheet.tmp-*.png")


def clear_previous(output_dir: str) -> int:
    """Remove an earlier augmentation's outputs (only when `output_dir` holds one, recognised by its
    state directory, and only files of the names it writes); returns the number of files removed."""
    import glob

    state_dir = os.path.join(output_dir, STATE_DIR)
    if not os.path.isdir(state_dir):
        return 0
    paths = [os.path.join(output_dir, name) for name in _OWN_FILES]
    for pattern in _OWN_PATTERNS:
        paths += glob.glob(os.path.join(output_dir, pattern))
    removed = 0
    for path in paths:
        if os.path.isfile(path):
            os.remove(path)
            removed += 1
    shutil.rmtree(state_dir)
    return removed


def write_manifest_csv(output_dir: str, rows: list) -> str:
    path = os.path.join(output_dir, "manifest.csv")
    temp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(temp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temp, path)
    return path


def write_json(path: str, value) -> str:
    _write_json_atomic(path, value)
    return path
