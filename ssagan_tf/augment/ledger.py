"""Resumable bookkeeping under `<output_dir>/.augment/`.

    plan.json            the settings a run was started with; a re-run must agree
    chunks/<name>.json   one file per committed chunk, holding its manifest rows
    claims/<name>.json   the output files a chunk (or the run's summary files) is about to put in
                         place, written before they are: the record of what the augmentation owns
    staging/             chunk files being written (emptied at the start of every run)
    tmp/                 temporary files of the summary files, renamed into place when complete

Committing a chunk: its files are written in `staging/`, claimed, renamed to their final paths,
and then its record is written. The record is the commit point: a chunk without one is made again
from the start, and because every output name is a function of the plan (not of the run), redoing
it replaces files instead of duplicating them. Every file is flushed to disk before its rename.

Ownership: `--overwrite` removes exactly the claimed files (never by name pattern), and an output
folder holding anything that is not claimed is refused, so a user's file is never replaced.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil

from ssagan_tf import io as durable
from ssagan_tf.augment.writers import MANIFEST_COLUMNS

STATE_DIR = ".augment"
_SHOWN = 3


def _json_text(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


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
        self.claims_dir = os.path.join(self.state_dir, "claims")
        self.temp_dir = os.path.join(self.state_dir, "tmp")

    def start(self, plan_settings: dict) -> None:
        """Create the state directories, clear stale staging, and check that a previous run in this
        output directory had the same settings (a mismatch would mix two plans' slices)."""
        path = os.path.join(self.state_dir, "plan.json")
        if os.path.isfile(path):
            with open(path) as f:
                previous = json.load(f)
            _check_same_settings(self.output_dir, previous, plan_settings)
        for folder in (self.chunks_dir, self.claims_dir):
            os.makedirs(folder, exist_ok=True)
        for folder in (self.staging_dir, self.temp_dir):       # ours alone: the whole state folder is
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
        if not os.path.isfile(path):
            durable.atomic_write(path, _json_text(plan_settings))

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

    def claim(self, name: str, relatives) -> None:
        """Record, before they are written, output files (relative paths) as this augmentation's."""
        os.makedirs(self.claims_dir, exist_ok=True)
        durable.atomic_write(os.path.join(self.claims_dir, f"{name}.json"), _json_text({"files": sorted(relatives)}))

    def owned(self) -> set:
        """Every output file (relative path) an augmentation claimed or recorded in this folder.
        A state folder from before claims existed owns its summary files by their fixed names."""
        owned = set()
        for folder in (self.claims_dir, self.chunks_dir):
            for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                if not name.endswith(".json"):
                    continue
                try:
                    with open(os.path.join(folder, name)) as f:
                        record = json.load(f)
                except (OSError, ValueError):
                    continue             # a record cut by a crash: its files are claimed too
                owned.update(record.get("files", []))
                for row in record.get("rows", []):
                    owned.update(row[key] for key in ("output_path", "mask_path") if row.get(key))
        if not os.path.isdir(self.claims_dir):
            owned.update(_OWN_FILES)
        return owned

    def commit(self, chunk, files: list, rows: list) -> None:
        """Move (staged path, relative final path) files into place, then record the chunk."""
        self.claim(chunk.name, [relative for _, relative in files])
        for staged, relative in files:
            final = inside(self.output_dir, relative)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            durable.replace_durably(staged, final)
        shutil.rmtree(os.path.join(self.staging_dir, chunk.name), ignore_errors=True)
        durable.atomic_write(self._record_path(chunk), _json_text({"chunk": chunk.name, "rows": rows}))

    def committed_any(self) -> bool:
        return os.path.isdir(self.chunks_dir) and any(n.endswith(".json") for n in os.listdir(self.chunks_dir))

    def write_output(self, relative: str, data) -> str:
        """Claim and write one of the run's summary files (str or bytes) at `output_dir/relative`,
        its temporary file in the state folder. Returns the path."""
        self.claim(relative.replace("/", "_"), [relative])
        os.makedirs(self.temp_dir, exist_ok=True)
        return durable.atomic_write(inside(self.output_dir, relative), data, temp_dir=self.temp_dir)

    def put(self, relative: str, write) -> str:
        """`write_output` for a file another function writes: `write(path)` writes it at a
        temporary path in the state folder (keeping the final name's extension), then it is moved
        into place."""
        self.claim(relative.replace("/", "_"), [relative])
        os.makedirs(self.temp_dir, exist_ok=True)
        final = inside(self.output_dir, relative)
        with durable.atomic_output(final, self.temp_dir, suffix=os.path.splitext(relative)[1]) as temp:
            write(temp)
        return final


# The summary files an augmentation writes, relative to its output directory (see run.py).
_OWN_FILES = ("manifest.csv", "manifest.json", "augment.json", "contact_sheet.png")


def _check_same_settings(output_dir: str, previous: dict, current: dict) -> None:
    """A re-run completes the earlier one only with the same settings and the same input data."""
    informative = {"data_dir", "model_path"}      # where things were: a moved project still completes
    changed = sorted(k for k in (set(previous) | set(current)) - informative if previous.get(k) != current.get(k))
    if not changed:
        return
    fix = "use --overwrite to replace it, or another --output_dir"
    if "input_checksum" in changed and "input_checksum" not in previous:
        raise ValueError(f"{output_dir} holds an augmentation started by an earlier version, which did not record "
                         f"a checksum of its input, so completing it could mix two inputs' slices; {fix}")
    if "input_checksum" in changed:
        raise ValueError(f"{output_dir} holds an augmentation of other input data: the input "
                         f"({current.get('data_dir')}, {current.get('source')}) is not the data it started from "
                         f"(then {previous.get('data_dir')}; its checksum changed, re-converted or edited?), and "
                         f"completing it would mix slices of both; {fix}")
    details = "; ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in changed)
    raise ValueError(f"{output_dir} holds an augmentation started with other settings ({details}); use the same "
                     f"settings to complete it, a new --output_dir, or --overwrite to replace it")


def foreign_files(output_dir: str, lock_name: str) -> list:
    """What lies in `output_dir` that no augmentation there claimed (its state folder and lock
    file aside); everything when it holds no augmentation's state folder."""
    entries = durable.entries_under(output_dir, lambda name: name in (STATE_DIR, lock_name))
    if not os.path.isdir(os.path.join(output_dir, STATE_DIR)):
        return entries
    return durable.not_owned(entries, Ledger(output_dir).owned())


def describe(paths: list) -> str:
    return ", ".join(paths[:_SHOWN]) + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def clear_previous(output_dir: str) -> int:
    """Remove an earlier augmentation's outputs: only the files it claimed (and the folders that
    held them, once empty), then its state folder. Returns the number of files removed."""
    state_dir = os.path.join(output_dir, STATE_DIR)
    if not os.path.isdir(state_dir):
        return 0
    removed = durable.remove_owned(output_dir, Ledger(output_dir).owned())
    shutil.rmtree(state_dir)
    return removed


def manifest_csv_text(rows: list) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def json_text(value) -> str:
    return _json_text(value)
