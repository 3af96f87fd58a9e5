import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ssagan_tf.data import schema


def test_serialize_then_decode_round_trips_every_field():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (6, 5, 3)).astype(np.float32)
    mask = (rng.uniform(size=(6, 5)) > 0.5).astype(np.uint8)
    record = schema.serialize_slice(image, mask, True, 1, "case 7", "real:a/b.nii.gz", 12)
    ex = {k: v.numpy() for k, v in schema.decode_slice(tf.constant(record)).items()}
    np.testing.assert_array_equal(ex["image"], image)
    np.testing.assert_array_equal(ex["mask"][..., 0], mask.astype(np.float32))
    assert ex["has_mask"] == 1.0 and ex["label"] == 1 and ex["slice_index"] == 12
    assert ex["case_id"] == b"case 7" and ex["source"] == b"real:a/b.nii.gz"


def test_absent_mask_is_written_as_zeros_and_2d_image_gets_a_channel():
    record = schema.serialize_slice(np.zeros((4, 4), np.float32), None, False, 0, "c", "s", 0)
    ex = schema.decode_slice(tf.constant(record))
    assert ex["image"].shape == (4, 4, 1)
    assert float(tf.reduce_sum(ex["mask"])) == 0.0 and float(ex["has_mask"]) == 0.0


def test_mask_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="mask shape"):
        schema.serialize_slice(np.zeros((4, 4, 1)), np.zeros((3, 4)), True, 1, "c", "s", 0)


def test_shard_name_layout():
    assert schema.shard_name("tumor", 3, 8) == "tumor-00003-of-00008.tfrecord"


def test_read_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        schema.read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        schema.read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ValueError, match="schema version 99"):
        schema.read_manifest(str(tmp_path))


def test_read_manifest_of_a_dataset(tiny_dataset):
    manifest = schema.read_manifest(tiny_dataset)
    assert manifest.image_size == 32 and manifest.channels == 1
    assert manifest.count("train", "tumor") == 4
    assert [os.path.basename(p) for p in manifest.shards("train", "normal")] == ["normal-00000-of-00001.tfrecord"]


def test_open_reads_the_manifest_once_and_answers_from_it(tiny_dataset, monkeypatch):
    """A Dataset keeps the folder as it was given, and answers what readers ask from the manifest it
    read: its counts, size, storage and the sha256 of its bytes, without reading the file again."""
    given = tiny_dataset + os.sep
    dataset = schema.open(given)
    with open(os.path.join(tiny_dataset, schema.MANIFEST_NAME), "rb") as f:
        assert dataset.manifest.sha256 == hashlib.sha256(f.read()).hexdigest()
    monkeypatch.setattr(schema, "read_manifest", lambda data_dir: pytest.fail("the manifest was read again"))
    assert dataset.data_dir == given and dataset.manifest.data_dir == tiny_dataset
    assert (dataset.image_size, dataset.channels, dataset.storage) == (32, 1, schema.LEGACY_STORAGE)
    assert dataset.count("val", "normal") == 6 and dataset.count("val", "nothing") == 0
    assert dataset.shards("train", "normal") == dataset.manifest.shards("train", "normal")
    assert dataset.manifest.schema_version == 1                       # a version 1 dataset opens as before


def test_open_raises_read_manifest_s_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        schema.open(str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 2, "image_size": 8, "channels": 1,
                                                        "counts": {}, "cases": {}}))
    with pytest.raises(ValueError, match="missing key 'storage'"):
        schema.open(str(tmp_path))


def test_the_data_conventions_live_in_schema():
    """The background is the quantised storages' lowest level, read back exactly; a value beyond
    [-1, 1] by less than the range slack is written (clipped), one beyond it refused."""
    storage = schema.Storage("uint8")
    level = storage.decode(tf.constant(storage.encode(np.full((1, 1, 1), schema.BACKGROUND))), [1, 1, 1])
    assert level.numpy().item() == schema.BACKGROUND == -1.0
    storage.encode(np.full((1, 1, 1), 1 + schema.RANGE_TOLERANCE / 2))
    with pytest.raises(ValueError, match="outside"):
        storage.encode(np.full((1, 1, 1), 1 + 2 * schema.RANGE_TOLERANCE))
