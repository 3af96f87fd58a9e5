import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_tiny_dataset
from ssagan_tf.data import integrity, pipeline, schema


def _batches(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def test_unpaired_batches_have_static_shapes_and_masks(tiny_dataset):
    ds = pipeline.make_unpaired_dataset(schema.open(tiny_dataset), "train", global_batch_size=3, seed=0)
    spec = ds.element_spec
    assert spec["normal"]["image"].shape == (3, 32, 32, 1)
    assert spec["tumor"]["mask"].shape == (3, 32, 32, 1)
    assert spec["tumor"]["has_mask"].shape == (3,)
    batch = _batches(ds, 1)[0]
    assert np.all(batch["tumor"]["has_mask"] == 1.0)
    # tumor images carry the bright disc exactly where the mask is
    tumor = batch["tumor"]
    assert np.allclose(tumor["image"][tumor["mask"] > 0], 0.9)


def test_flip_is_applied_identically_to_image_and_mask(tiny_dataset):
    ds = pipeline.make_unpaired_dataset(schema.open(tiny_dataset), "train", global_batch_size=4, seed=3, flip=True)
    for batch in _batches(ds, 10):
        tumor = batch["tumor"]
        disc = np.isclose(tumor["image"], 0.9)
        np.testing.assert_array_equal(disc, tumor["mask"] > 0)


def test_flip_happens(tiny_dataset):
    ref = pipeline.load_split_arrays(schema.open(tiny_dataset), "train", domains=("tumor",))["mask"]
    ds = pipeline.make_unpaired_dataset(schema.open(tiny_dataset), "train", global_batch_size=1, shuffle=False,
                                        flip=True, seed=1, deterministic=True)
    flipped = 0
    for i, batch in enumerate(_batches(ds, 16)):
        mask = batch["tumor"]["mask"][0]
        original = ref[i % len(ref)]
        if not np.array_equal(mask, original):
            np.testing.assert_array_equal(mask, original[:, ::-1])
            flipped += 1
    assert 0 < flipped < 16


def test_shorter_domain_repeats_in_a_single_pass(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), n_normal=7, n_tumor=2, splits=("train",))
    ds = pipeline.make_unpaired_dataset(schema.open(data), "train", global_batch_size=1, shuffle=False, flip=False,
                                        repeat=False, deterministic=True, seed=0)
    batches = _batches(ds, 100)
    assert len(batches) == 7  # one pass over the longer (normal) domain
    tumor_ids = [b["tumor"]["image"].tobytes() for b in batches]
    assert len(set(tumor_ids)) == 2  # the two tumor slices cycle
    assert tumor_ids[0] == tumor_ids[2] == tumor_ids[4]
    assert pipeline.steps_per_epoch(schema.open(data), 2) == 3


def test_deterministic_mode_repeats_the_order(tiny_dataset):
    def run():
        ds = pipeline.make_unpaired_dataset(schema.open(tiny_dataset), "train", 2, seed=5, deterministic=True)
        return [b["normal"]["image"].tobytes() for b in _batches(ds, 6)]
    assert run() == run()
    with pytest.raises(ValueError, match="seed"):
        pipeline.make_unpaired_dataset(schema.open(tiny_dataset), "train", 2, deterministic=True)


def test_feeds_a_mirrored_strategy(tiny_dataset):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    ds = pipeline.make_unpaired_dataset(schema.open(tiny_dataset), "train", 2, seed=0)
    dist = strategy.experimental_distribute_dataset(ds)
    batch = next(iter(dist))
    assert batch["normal"]["image"].shape == (2, 32, 32, 1)


def test_load_split_arrays_orders_normal_then_tumor(tiny_dataset):
    arrays = pipeline.load_split_arrays(schema.open(tiny_dataset), "test")
    assert arrays["image"].shape == (10, 32, 32, 1)
    assert list(arrays["label"]) == [0] * 6 + [1] * 4


def test_truncated_shard_of_an_old_manifest_is_named_when_read(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False)
    shard = os.path.join(data, "train", "tumor-00000-of-00001.tfrecord")
    with open(shard, "rb") as f:
        payload = f.read()
    with open(shard, "wb") as f:
        f.write(payload[:-50])
    with pytest.raises(pipeline.CorruptShardError, match="tumor-00000-of-00001.tfrecord"):
        pipeline.load_split_arrays(schema.open(data), "train")


def test_corrupted_bytes_are_named(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",))
    shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
    payload = bytearray(open(shard, "rb").read())
    payload[200:210] = b"\xff" * 10
    open(shard, "wb").write(bytes(payload))
    with pytest.raises(pipeline.CorruptShardError, match="normal-00000-of-00001.tfrecord"):
        pipeline.load_split_arrays(schema.open(data), "train")


def test_record_disagreeing_with_manifest_is_rejected_naming_the_shard(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False)
    shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(shard) as writer:
        writer.write(schema.serialize_slice(np.zeros((16, 16, 1)), None, False, 0, "c", "s", 0))
    with pytest.raises(pipeline.DataCheckError,
                       match=r"normal-00000-of-00001.tfrecord: a record of shape 16x16x1 disagrees with "
                             r"the manifest \(32x32x1\)$"):
        pipeline.load_split_arrays(schema.open(data), "train", domains=("normal",))


def test_record_labelled_against_its_shard_domain_is_named(tmp_path):
    """A tumor record (label 1) in a normal-* shard: training would read it as a normal slice."""
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False)
    shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(shard) as writer:
        writer.write(schema.serialize_slice(np.zeros((32, 32, 1)), None, False, 0, "c", "s", 0))
        writer.write(schema.serialize_slice(np.zeros((32, 32, 1)), None, False, 1, "c", "s", 1))
    with pytest.raises(pipeline.DataCheckError,
                       match=r"normal-00000-of-00001.tfrecord: a record labelled 1 in a normal shard \(label 0\)"):
        pipeline.load_split_arrays(schema.open(data), "train", domains=("normal",))
    with pytest.raises(pipeline.DataCheckError, match="normal-00000-of-00001.tfrecord: a record labelled 1"):
        with pipeline.shard_errors_named(schema.open(data)):           # as training reads it
            for _ in pipeline.make_unpaired_dataset(schema.open(data), "train", 1, repeat=False, shuffle=False):
                pass


def test_out_of_range_values_are_rejected(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False)
    shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(shard) as writer:
        writer.write(schema.serialize_slice(np.full((32, 32, 1), 3.0), None, False, 0, "c", "s", 0))
    with pytest.raises(pipeline.DataCheckError,
                       match=r"normal-00000-of-00001.tfrecord: image values outside \[-1, 1\] \(magnitude 3"):
        pipeline.load_split_arrays(schema.open(data), "train", domains=("normal",))


def test_missing_shards_are_reported(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False)
    shutil.rmtree(os.path.join(data, "train"))
    with pytest.raises(integrity.DatasetMismatchError, match="no train/normal shards, but .* counts 6"):
        pipeline.make_unpaired_dataset(schema.open(data), "train", 1)


def test_flips_are_keyed_on_stream_position_so_skipping_resumes_exactly(tiny_dataset):
    def stream(skip):
        ds = pipeline.make_unpaired_dataset(schema.open(tiny_dataset), "train", 2, seed=9, deterministic=True,
                                            flip=True)
        return [b["tumor"]["image"].tobytes() for b in _batches(ds.skip(skip), 6)]
    assert stream(0)[3:] == stream(3)[:3]


def _truncate(path, by=50):
    payload = open(path, "rb").read()
    open(path, "wb").write(payload[:-by])


def _edit_manifest(data, edit):
    path = os.path.join(data, schema.MANIFEST_NAME)
    manifest = json.load(open(path))
    edit(manifest)
    json.dump(manifest, open(path, "w"))


def test_truncated_shard_is_named_before_reading(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",))
    _truncate(os.path.join(data, "train", "tumor-00000-of-00001.tfrecord"))
    with pytest.raises(integrity.DatasetMismatchError,
                       match=r"train/tumor-00000-of-00001.tfrecord: \d+ bytes, but .*manifest.json records \d+"):
        pipeline.make_unpaired_dataset(schema.open(data), "train", 1)


def test_missing_and_unlisted_shards_are_named(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",))
    tumor = os.path.join(data, "train", "tumor-00000-of-00001.tfrecord")
    os.rename(tumor, tumor + ".moved")
    with pytest.raises(integrity.DatasetMismatchError, match="tumor-00000-of-00001.tfrecord: missing; .* 4 records"):
        pipeline.make_unpaired_dataset(schema.open(data), "train", 1)
    os.rename(tumor + ".moved", tumor)
    shutil.copy(tumor, os.path.join(data, "train", "tumor-00001-of-00002.tfrecord"))
    with pytest.raises(integrity.DatasetMismatchError, match="tumor-00001-of-00002.tfrecord: not listed in"):
        pipeline.make_slice_dataset(schema.open(data), "train", "tumor", 2)


def test_deleted_shard_of_an_old_manifest_is_found_by_its_name(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False)
    tumor = os.path.join(data, "train", "tumor-00000-of-00001.tfrecord")
    os.rename(tumor, os.path.join(data, "train", "tumor-00001-of-00002.tfrecord"))
    with pytest.raises(integrity.DatasetMismatchError, match=r"tumor-00000-of-00002.tfrecord: missing \(1 of 2"):
        pipeline.make_unpaired_dataset(schema.open(data), "train", 1)
    assert "does not record its shards" in integrity.legacy_warning(schema.read_manifest(data))
    assert integrity.legacy_warning(schema.read_manifest(write_tiny_dataset(str(tmp_path / "new")))) is None


def test_manifest_counts_must_add_up_to_its_shards(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",))
    _edit_manifest(data, lambda m: m["counts"]["train"].update(normal=5000))
    with pytest.raises(integrity.DatasetMismatchError, match="counts 5000 train/normal slices but its shards hold 6"):
        pipeline.make_unpaired_dataset(schema.open(data), "train", 1)


@pytest.mark.parametrize("recorded, message", [(5, "holds 6 records but the manifest records 5"),
                                               (9, "holds 6 records but the manifest records 9")])
def test_record_counts_are_checked_while_reading(tmp_path, recorded, message):
    """A manifest whose per-shard count and split count agree with each other but not with the
    shard stops the first pass over it, naming the shard."""
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",))

    def edit(manifest):
        manifest["counts"]["train"]["normal"] = recorded
        manifest["shards"]["train/normal-00000-of-00001.tfrecord"]["records"] = recorded

    _edit_manifest(data, edit)
    with pytest.raises(pipeline.DataCheckError, match="normal-00000-of-00001.tfrecord: " + message):
        pipeline.load_split_arrays(schema.open(data), "train", domains=("normal",))
    ds = pipeline.make_unpaired_dataset(schema.open(data), "train", 2, seed=0, deterministic=True)
    with pytest.raises(pipeline.DataCheckError, match="normal-00000-of-00001.tfrecord: " + message):
        with pipeline.shard_errors_named(schema.open(data)):
            _batches(ds, 20)


def test_checksums_find_a_changed_shard(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",))
    assert integrity.verify_checksums(schema.read_manifest(data)) == []
    shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
    payload = bytearray(open(shard, "rb").read())
    payload[300] ^= 0xFF
    open(shard, "wb").write(bytes(payload))
    assert integrity.verify_checksums(schema.read_manifest(data)) == [(shard, "sha256 differs from the manifest's")]


def test_garbage_shard_of_the_recorded_size_is_named_when_read(tmp_path):
    """Random bytes under a shard's name and size pass the size check; reading names the shard."""
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",))
    shard = os.path.join(data, "train", "tumor-00000-of-00001.tfrecord")
    size = os.path.getsize(shard)
    open(shard, "wb").write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    with pytest.raises(pipeline.CorruptShardError, match="tumor-00000-of-00001.tfrecord: corrupt, truncated"):
        pipeline.load_split_arrays(schema.open(data), "train")


def test_records_that_are_not_slices_are_named(tmp_path):
    """Well-framed records holding something else than slices: the scan names the shard."""
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False)
    shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(shard) as writer:
        writer.write(b"not an example")
    with pytest.raises(pipeline.CorruptShardError, match="normal-00000-of-00001.tfrecord: corrupt, truncated"):
        pipeline.load_split_arrays(schema.open(data), "train", domains=("normal",))
