"""Sharded TFRecord writing with atomic shard names, and the case-level split.

A shard is written under a temporary name and renamed to
`<split>/<domain>-<i>-of-<n>.tfrecord` only when the whole dataset is complete, so a reader never
sees a half-written shard; `abort()` removes the temporary files. `shards` then describes each
final shard (records, bytes, sha256) for the manifest (`ssagan_tf.data.integrity`).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ssagan_tf import io as durable
from ssagan_tf.data import integrity, schema


def split_patients(patients, train_fraction: float, val_fraction: float, seed: int) -> dict:
    """Assign whole patients to train/val/test with a seeded shuffle of the sorted ids, so a
    patient's scans never straddle two splits. With at least three patients every split gets one."""
    ids = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(ids))
    ids = [ids[i] for i in order]
    n = len(ids)
    n_train = int(round(train_fraction * n))
    n_val = int(round(val_fraction * n))
    if n >= 3:
        n_train = min(max(n_train, 1), n - 2)
        n_val = min(max(n_val, 1), n - n_train - 1)
    split = {}
    for i, pid in enumerate(ids):
        split[pid] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return split


def labelled_patients(train_patients, labelled_fraction: float, seed: int) -> set:
    """The training patients that keep their masks (has_mask = 1); the others' tumor slices are
    written with has_mask = 0, for semi-supervised experiments. Validation and test keep masks."""
    ids = sorted(set(train_patients))
    count = int(math.ceil(labelled_fraction * len(ids) - 1e-9))
    order = np.random.default_rng(seed + 1).permutation(len(ids))
    return {ids[i] for i in order[:count]}


class ShardedWriter:
    """Round-robin writer over `num_shards` shards per (split, domain), compressed as `storage`
    says (the records themselves are encoded by `schema.serialize_slice` with the same storage)."""

    def __init__(self, output_dir: str, num_shards: int, storage: schema.Storage = schema.LEGACY_STORAGE):
        import tensorflow as tf

        self._tf = tf
        self.output_dir = output_dir
        self.num_shards = num_shards
        self.storage = storage
        self.counts = {s: {d: 0 for d in schema.DOMAINS} for s in schema.SPLITS}
        self.shards = {}          # relative path -> integrity.describe_shard, filled by close()
        self._records = {}
        self._writers = {}
        self._tmp_paths = {}
        self._tag = f".tmp-{os.getpid()}"

    def _writer(self, split: str, domain: str, index: int):
        key = (split, domain, index)
        if key not in self._writers:
            os.makedirs(os.path.join(self.output_dir, split), exist_ok=True)
            path = os.path.join(self.output_dir, split, f"{domain}-{index:05d}{self._tag}")
            self._tmp_paths[key] = path
            self._writers[key] = self._tf.io.TFRecordWriter(path, self.storage.writer_options())
        return self._writers[key]

    def write(self, split: str, domain: str, record: bytes) -> None:
        index = self.counts[split][domain] % self.num_shards
        self._writer(split, domain, index).write(record)
        self.counts[split][domain] += 1
        self._records[(split, domain, index)] = self._records.get((split, domain, index), 0) + 1

    def close(self) -> list:
        """Flush and rename every shard to its final name; returns the final paths."""
        for writer in self._writers.values():
            writer.close()
        final = []
        for (split, domain, index), tmp in sorted(self._tmp_paths.items()):
            used = min(self.num_shards, self.counts[split][domain])
            path = os.path.join(self.output_dir, split, schema.shard_name(domain, index, used))
            durable.replace_durably(tmp, path)
            final.append(path)
            self.shards[integrity.relative_name(self.output_dir, path)] = integrity.describe_shard(
                path, self._records[(split, domain, index)])
        self._writers.clear()
        self._tmp_paths.clear()
        return final

    def abort(self) -> None:
        """Close and delete every temporary shard."""
        for writer in self._writers.values():
            writer.close()
        for tmp in self._tmp_paths.values():
            if os.path.exists(tmp):
                os.remove(tmp)
        self._writers.clear()
        self._tmp_paths.clear()
