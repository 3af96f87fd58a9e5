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
