import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from data_prep.writer import ShardedWriter, labelled_patients, split_patients
from ssagan_tf.data import schema


def test_split_is_by_patient_seeded_and_complete():
    patients = [f"p{i}" for i in range(20)]
    split = split_patients(patients, 0.5, 0.2, seed=3)
    assert split == split_patients(list(reversed(patients)), 0.5, 0.2, seed=3)  # order-free
    assert split != split_patients(patients, 0.5, 0.2, seed=4)
    counts = {s: sum(v == s for v in split.values()) for s in schema.SPLITS}
    assert counts == {"train": 10, "val": 4, "test": 6}


def test_small_cohorts_get_every_split():
    split = split_patients(["a", "b", "c"], 0.9, 0.0, seed=0)
    assert sorted(split.values()) == ["test", "train", "val"]


def test_labelled_fraction_picks_a_seeded_subset():
    train = [f"p{i}" for i in range(10)]
    chosen = labelled_patients(train, 0.3, seed=1)
    assert len(chosen) == 3 and chosen <= set(train)
    assert chosen == labelled_patients(train, 0.3, seed=1)
    assert labelled_patients(train, 0.0, seed=1) == set()
    assert labelled_patients(train, 1.0, seed=1) == set(train)


def _record(i):
    return schema.serialize_slice(np.full((4, 4, 1), i / 100, np.float32), None, False, 0, f"c{i}", "s", i)


def test_shards_appear_only_on_close_and_are_named_with_their_count(tmp_path):
    writer = ShardedWriter(str(tmp_path), num_shards=4)
    for i in range(6):
        writer.write("train", "normal", _record(i))
    writer.write("val", "tumor", _record(99))
    writer._writers[("train", "normal", 0)].flush()
    assert not [n for n in os.listdir(tmp_path / "train") if n.endswith(".tfrecord")]
    writer.close()
    assert sorted(os.listdir(tmp_path / "train")) == [schema.shard_name("normal", i, 4) for i in range(4)]
    assert os.listdir(tmp_path / "val") == [schema.shard_name("tumor", 0, 1)]
    total = sum(1 for p in (tmp_path / "train").iterdir() for _ in tf.data.TFRecordDataset(str(p)))
    assert total == 6 and writer.counts["train"]["normal"] == 6
    # Each shard is described for the manifest: records, size and checksum of the final file.
    assert sorted(writer.shards) == [f"train/{schema.shard_name('normal', i, 4)}" for i in range(4)] + \
        [f"val/{schema.shard_name('tumor', 0, 1)}"]
    assert [writer.shards[f"train/{schema.shard_name('normal', i, 4)}"]["records"] for i in range(4)] == [2, 2, 1, 1]
    first = tmp_path / "train" / schema.shard_name("normal", 0, 4)
    assert writer.shards[f"train/{first.name}"]["bytes"] == first.stat().st_size
    assert writer.shards[f"train/{first.name}"]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()


def test_abort_leaves_nothing(tmp_path):
    writer = ShardedWriter(str(tmp_path), num_shards=2)
    writer.write("train", "tumor", _record(1))
    writer.abort()
    assert os.listdir(tmp_path / "train") == []
