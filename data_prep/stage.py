"""Where a conversion works before its result is final: OUT/.staging-<pid>-<random>/ holds the
staged slices of each case and the new dataset; `swap_into_place` moves the dataset into OUT at
the end (`ownership.clean_stale` removes what runs that died, power cut or SIGKILL, left behind).

Reading runs in worker threads, not processes: SimpleITK's readers and numpy release the GIL,
and threads cost no start-up imports and no pickling of volumes.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from data_prep import ownership, preprocess
from data_prep.readers import load
from data_prep.scan import CaseError
from ssagan_tf import io as durable

DATASET_ENTRIES = ("train", "val", "test")


class Stage:
    """OUT/.staging-<pid>-<random>/: cases/<i>.npz (staged slices) and dataset/ (the new dataset).
    It holds a lock file naming host and pid while the conversion runs, which is how a later run
    tells a dead conversion's staging folder from a live one's, or from anything else."""

    def __init__(self, output_dir: str):
        self.root = tempfile.mkdtemp(prefix=f"{ownership.STAGING_PREFIX}{os.getpid()}-", dir=output_dir)
        self._lock = ownership.staging_lock(self.root)
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
        self._lock.release()


def swap_into_place(new_dir: str, output_dir: str) -> None:
    """Move the dataset in `new_dir` into `output_dir`, replacing the one the converter wrote there
    before (and only what its record lists). The old dataset stays whole until the new one is
    complete (it is in staging until now), and at no moment are final-named shards visible without
    a manifest: the record first claims old and new files, the old split folders are moved aside,
    then the new manifest replaces the old one, then the new split folders arrive, and the record
    ends listing the new files only. Files and folders are flushed before each rename."""
    from ssagan_tf.data import schema

    stage_root = os.path.dirname(new_dir)
    foreign = ownership.foreign_files(output_dir)
    if foreign:     # appeared while this run converted: never moved aside with ours
        raise ValueError(f"--output_dir {output_dir}: files the converter did not write appeared during the "
                         f"conversion ({', '.join(foreign[:3])}); the new dataset was not put in place")
    old = ownership.read_record(output_dir) or set()
    new = set(ownership.present_files(new_dir))
    ownership.write_record(output_dir, old | new, temp_dir=stage_root)
    aside = os.path.join(stage_root, "old")
    os.makedirs(aside, exist_ok=True)
    for name in DATASET_ENTRIES:
        if os.path.lexists(os.path.join(output_dir, name)):
            os.replace(os.path.join(output_dir, name), os.path.join(aside, name))
    for name in [schema.MANIFEST_NAME] + sorted(n for n in new if "/" not in n and n != schema.MANIFEST_NAME):
        durable.replace_durably(os.path.join(new_dir, name), os.path.join(output_dir, name))
    for name in sorted(n for n in old - new if "/" not in n):
        if os.path.isfile(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))
    for name in DATASET_ENTRIES:
        if os.path.exists(os.path.join(new_dir, name)):
            durable.replace_durably(os.path.join(new_dir, name), os.path.join(output_dir, name))
    ownership.write_record(output_dir, new, temp_dir=stage_root)


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


@contextlib.contextmanager
def signals_deferred():
    """Ctrl-C and SIGTERM wait until the block is done: moving the new dataset into place is a few
    renames that must not stop halfway (the old dataset would be half gone). Yields the list of
    the signals that arrived meanwhile, for the caller to act on once the work is complete."""
    caught = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def terminate_as_interrupt():
    """SIGTERM (a scheduler, `kill`, a container stop) cleans up as Ctrl-C does: it raises
    KeyboardInterrupt in the main thread. Returns a function restoring the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)
