"""Where a conversion works before its result is final: OUT/.staging-<pid>/ holds the staged
slices of each case and the new dataset; `swap_into_place` moves the dataset into OUT at the end,
and `clean_stale` removes what runs that died (power cut, SIGKILL) left behind.

Reading runs in worker threads, not processes: SimpleITK's readers and numpy release the GIL,
and threads cost no start-up imports and no pickling of volumes.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from data_prep import preprocess
from data_prep.readers import load
from data_prep.scan import CaseError

_STAGING = re.compile(r"^\.staging-(\d+)$")
_TMP = re.compile(r"\.tmp-(\d+)(\.png)?$")
DATASET_ENTRIES = ("train", "val", "test")


class Stage:
    """OUT/.staging-<pid>/: cases/<i>.npz (staged slices) and dataset/ (the new dataset)."""

    def __init__(self, output_dir: str):
        self.root = os.path.join(output_dir, f".staging-{os.getpid()}")
        self.dataset_dir = os.path.join(self.root, "dataset")
        os.makedirs(os.path.join(self.root, "cases"), exist_ok=True)
        os.makedirs(self.dataset_dir, exist_ok=True)

    def save_case(self, key: int, slices) -> str:
        path = os.path.join(self.root, "cases", f"{key}.npz")
        np.savez(path, images=slices.images, masks=slices.masks, labels=slices.labels,
                 slice_index=slices.slice_index)
        return path

    @staticmethod
    def load_case(path: str) -> dict:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(output_dir: str) -> list:
    """Remove staging folders and `*.tmp-<pid>` files of processes that no longer run. Returns
    what was removed (for the log)."""
    removed = []
    for entry in sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []:
        match = _STAGING.match(entry)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(output_dir, entry), ignore_errors=True)
            removed.append(os.path.join(output_dir, entry))
    for path in glob.glob(os.path.join(output_dir, "*")) + glob.glob(os.path.join(output_dir, "*", "*")):
        match = _TMP.search(os.path.basename(path))
        if match and os.path.isfile(path) and not _alive(int(match.group(1))):
            os.remove(path)
            removed.append(path)
    return removed


def swap_into_place(new_dir: str, output_dir: str) -> None:
    """Move the dataset in `new_dir` into `output_dir`, replacing one already there. The old
    dataset stays whole until the new one is complete (it is in staging until now), and at no
    moment are final-named shards visible without a manifest: the old split folders are moved
    aside first, then the new manifest replaces the old one, then the new split folders arrive."""
    from ssagan_tf.data import schema
    from data_prep.report import REPORT_NAME, SHEET_NAME

    aside = os.path.join(os.path.dirname(new_dir), "old")
    os.makedirs(aside, exist_ok=True)
    for name in DATASET_ENTRIES:
        old = os.path.join(output_dir, name)
        if os.path.exists(old):
            os.replace(old, os.path.join(aside, name))
    for name in (schema.MANIFEST_NAME, REPORT_NAME, SHEET_NAME):
        if os.path.exists(os.path.join(new_dir, name)):
            os.replace(os.path.join(new_dir, name), os.path.join(output_dir, name))
        elif os.path.exists(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))
    for name in DATASET_ENTRIES:
        if os.path.exists(os.path.join(new_dir, name)):
            os.replace(os.path.join(new_dir, name), os.path.join(output_dir, name))


def _process(args):
    """Worker: read and preprocess one case. Returns (ref, SliceSet or None, error, seconds)."""
    ref, reader_options, prep_options = args
    start = time.perf_counter()
    try:
        scan = load(ref, reader_options)
        slices = preprocess.prepare(scan, prep_options)
        return scan.ref, slices, "", time.perf_counter() - start
    except CaseError as err:
        return ref, None, str(err), time.perf_counter() - start
    except MemoryError:
        raise
    except Exception as err:  # an unexpected failure of one case must not stop the others
        path = next(iter(ref.paths.values()), ref.case_id)
        return ref, None, f"{path}: {type(err).__name__}: {err}", time.perf_counter() - start


def results(refs, reader_options, prep_options, workers: int):
    """Per-case results in input order. At most two cases per worker are in flight, so memory
    stays bounded however fast the readers are."""
    jobs = [(ref, reader_options, prep_options) for ref in refs]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) <= 1:
        yield from map(_process, jobs)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for job in jobs:
            pending.append(pool.submit(_process, job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
