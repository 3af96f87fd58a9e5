"""Storage of converted slices (schema version 2): quantised image dtypes and GZIP shards read back
within their stated error, version 1 datasets still read, bad storage entries are named."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_tiny_dataset
from ssagan_tf.data import folds, pipeline, schema

STORAGES = [schema.Storage(d, c) for d in schema.IMAGE_DTYPES for c in schema.COMPRESSIONS]


def _ids(storage):
    return f"{storage.image_dtype}-{storage.compression}"


def _decode(record, storage):
    return schema.decode_slice(tf.constant(record), storage)["image"].numpy()


@pytest.mark.parametrize("storage", STORAGES, ids=_ids)
def test_a_slice_reads_back_within_the_stated_error_with_the_ends_exact(storage):
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (16, 16, 2)).astype(np.float32)
    image[:4] = -1.0      # the background
    image[-1] = 1.0
    back = _decode(schema.serialize_slice(image, None, False, 0, "c", "s", 0, storage), storage)
    assert back.dtype == np.float32 and back.shape == image.shape
    if storage.quantised:
        error = np.abs(back - image)
        assert error.max() <= storage.max_error
        assert error.max() > storage.max_error / 4       # really quantised, not stored as float32
    else:
        np.testing.assert_array_equal(back, image)
    assert np.all(back[:4] == -1.0) and np.all(back[-1] == 1.0)


def test_quantised_levels_and_stated_errors_are_pinned():
    uint16, uint8 = schema.Storage("uint16"), schema.Storage("uint8")
    assert uint16.scale == 2 / 65535 and uint16.offset == -1.0 and uint8.scale == 2 / 255
    assert uint16.max_error == pytest.approx(1.532e-5, abs=1e-8)
    assert uint8.max_error == pytest.approx(3.922e-3, abs=1e-6)
    values = np.array([[-1.0, 0.0, 0.5, 1.0]], np.float32)
    record = schema.serialize_slice(values, None, False, 0, "c", "s", 0, uint16)
    image = tf.train.Example.FromString(record).features.feature["image"].bytes_list.value[0]
    assert np.frombuffer(image, "<u2").tolist() == [0, 32768, 49151, 65535]
    # 0.0 falls between two levels: it comes back as the upper one, half a step off.
    np.testing.assert_allclose(_decode(record, uint16)[0, :, 0], [-1.0, 1 / 65535, 0.5 - 0.5 / 65535, 1.0],
                               rtol=0, atol=1e-7)


def test_quantised_storage_refuses_values_it_cannot_hold():
    for bad in (1.01, np.nan):
        with pytest.raises(ValueError, match="outside \\[-1, 1\\].*uint16"):
            schema.serialize_slice(np.full((4, 4), bad, np.float32), None, False, 0, "c", "s", 0,
                                   schema.Storage("uint16"))
    # within the reader's slack it is clipped to the end level
    back = _decode(schema.serialize_slice(np.full((4, 4), 1.0005, np.float32), None, False, 0, "c", "s", 0,
                                          schema.Storage("uint8")), schema.Storage("uint8"))
    assert np.all(back == 1.0)


@pytest.fixture(scope="module")
def version_1(tmp_path_factory):
    """The tiny dataset exactly as written before storage was chosen (schema version 1)."""
    return write_tiny_dataset(str(tmp_path_factory.mktemp("v1")), seed=5)


@pytest.mark.parametrize("storage", STORAGES, ids=_ids)
def test_a_dataset_in_each_storage_reads_back_the_same_slices(tmp_path, version_1, storage):
    data = write_tiny_dataset(str(tmp_path / "d"), seed=5, storage=storage)
    manifest = schema.read_manifest(data)
    assert manifest.schema_version == 2 and manifest.storage == storage
    assert manifest.raw["storage"]["image_dtype"] == storage.image_dtype
    for split in schema.SPLITS:
        old = pipeline.load_split_arrays(schema.open(version_1), split)
        new = pipeline.load_split_arrays(schema.open(data), split)
        for key in ("mask", "has_mask", "label", "case_id", "source", "slice_index"):
            np.testing.assert_array_equal(new[key], old[key])
        if storage.quantised:
            assert np.abs(new["image"] - old["image"]).max() <= storage.max_error
        else:
            np.testing.assert_array_equal(new["image"], old["image"])
    batch = next(iter(pipeline.make_unpaired_dataset(schema.open(data), "train", global_batch_size=2, seed=0)))
    assert batch["tumor"]["image"].shape == (2, 32, 32, 1) and batch["tumor"]["image"].dtype == tf.float32


def test_a_version_1_dataset_reads_as_float32_uncompressed(version_1):
    raw = json.load(open(os.path.join(version_1, "manifest.json")))
    assert raw["schema_version"] == 1 and "storage" not in raw
    record = next(iter(tf.data.TFRecordDataset(schema.read_manifest(version_1).shards("train", "tumor")[0])))
    assert "image_dtype" not in tf.train.Example.FromString(record.numpy()).features.feature
    manifest = schema.read_manifest(version_1)
    assert manifest.storage == schema.LEGACY_STORAGE
    arrays = pipeline.load_split_arrays(schema.open(version_1), "train")
    tumor = arrays["label"] == 1
    np.testing.assert_array_equal(arrays["image"][tumor][arrays["mask"][tumor] > 0], np.float32(0.9))
    assert next(iter(pipeline.make_unpaired_dataset(schema.open(version_1), "train", global_batch_size=2, seed=0)))


def test_compact_storage_shrinks_the_shards(tmp_path):
    """On slices that are mostly background, as brain slices are: a head disc of noise in -1."""
    def shard_bytes(data):
        return sum(e["bytes"] for e in schema.read_manifest(data).raw["shards"].values())

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    head = (yy - 32) ** 2 + (xx - 32) ** 2 <= 20 ** 2
    sizes = {}
    for storage in (schema.LEGACY_STORAGE, schema.Storage("uint16", "none"), schema.DEFAULT_STORAGE):
        out = tmp_path / _ids(storage)
        os.makedirs(out / "train")
        with tf.io.TFRecordWriter(str(out / "train" / schema.shard_name("normal", 0, 1)),
                                  storage.writer_options()) as writer:
            rng = np.random.default_rng(0)
            for i in range(20):
                image = np.where(head, rng.uniform(-0.8, 1, (64, 64)), -1.0).astype(np.float32)
                writer.write(schema.serialize_slice(image, None, False, 0, "c", "s", i, storage))
        sizes[_ids(storage)] = os.path.getsize(out / "train" / schema.shard_name("normal", 0, 1))
    base = sizes["float32-none"]
    # uint16: the image bytes halve, the mask bytes (one per pixel) stay: (4 + 1) / (2 + 1).
    assert base / sizes["uint16-none"] == pytest.approx(5 / 3, rel=0.02)
    # gzip: the background and the empty masks compress to almost nothing.
    assert base / sizes["uint16-gzip"] > 3.5


def test_the_converter_writes_its_default_storage_and_records_it(tmp_path):
    from data_prep import phantom
    from data_prep.convert import ConvertConfig, convert
    from data_prep.preprocess import PrepOptions

    cohort = os.path.dirname(phantom.write_cohort(str(tmp_path / "cohort"), cases=4, size=32, slices=12, seed=2)[0])
    written = {}
    for name, kw in (("default", {}), ("float32", {"storage": "float32", "compression": "none"})):
        config = ConvertConfig(input_dir=cohort, format="brats", output_dir=str(tmp_path / name), workers=1,
                               num_shards=1, prep=PrepOptions(image_size=32, min_tumor_pixels=10), **kw)
        manifest = convert(config, log=lambda _: None)
        assert manifest["storage"] == config.image_storage().manifest_entry()
        assert manifest["settings"]["storage"] == config.storage
        written[name] = sum(e["bytes"] for e in manifest["shards"].values())
    assert schema.read_manifest(str(tmp_path / "default")).storage == schema.Storage("uint16", "gzip")
    for split in schema.SPLITS:
        compact = pipeline.load_split_arrays(schema.open(str(tmp_path / "default")), split)
        exact = pipeline.load_split_arrays(schema.open(str(tmp_path / "float32")), split)
        assert np.abs(compact["image"] - exact["image"]).max() <= schema.DEFAULT_STORAGE.max_error
        # The background stays exactly -1 (values within half a step of it join it).
        assert np.all(compact["image"][exact["image"] == -1.0] == -1.0)
        assert np.all(exact["image"][compact["image"] == -1.0] < -1.0 + schema.DEFAULT_STORAGE.max_error)
        np.testing.assert_array_equal(compact["mask"], exact["mask"])
    assert written["float32"] / written["default"] > 2.5


def _edit_manifest(data, **storage):
    path = os.path.join(data, "manifest.json")
    raw = json.load(open(path))
    raw["storage"] = dict(raw["storage"], **storage) if storage else None
    if not storage:
        del raw["storage"]
    json.dump(raw, open(path, "w"))
    return path


@pytest.mark.parametrize("edit, message", [
    ({"image_dtype": "uint12"}, "image storage 'uint12': not one of float32, uint16, uint8"),
    ({"compression": "zstd"}, "compression 'zstd': not one of none, gzip"),
    ({"scale": 0.5}, "storage scale 0.5 for uint16 images"),
    ({"offset": "x"}, "storage offset 'x' for uint16 images"),
    ({}, "missing key 'storage'"),
])
def test_an_unknown_or_edited_storage_is_one_error_naming_the_manifest(tmp_path, edit, message):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), storage=schema.Storage("uint16", "gzip"))
    path = _edit_manifest(data, **edit)
    for read in (lambda: schema.read_manifest(data), lambda: pipeline.load_split_arrays(schema.open(data), "train"),
                 lambda: pipeline.make_unpaired_dataset(schema.open(data), "train", 1)):
        with pytest.raises(ValueError, match=message) as err:
            read()
        assert str(err.value).startswith(path + ":")


def test_records_of_another_storage_than_the_manifests_are_named(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), storage=schema.Storage("uint16", "none"))
    _edit_manifest(data, image_dtype="float32", scale=1.0, offset=0.0)
    with pytest.raises(pipeline.DataCheckError, match="normal-00000-of-00001.tfrecord: a record stored as uint16 "
                                                      "in a dataset whose manifest says float32"):
        pipeline.load_split_arrays(schema.open(data), "train")


def test_a_truncated_gzip_shard_is_named(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "d"), splits=("train",), record_shards=False,
                              storage=schema.Storage("uint16", "gzip"))
    shard = os.path.join(data, "train", "tumor-00000-of-00001.tfrecord")
    payload = open(shard, "rb").read()
    open(shard, "wb").write(payload[: len(payload) // 2])
    with pytest.raises(pipeline.CorruptShardError, match="tumor-00000-of-00001.tfrecord: corrupt"):
        pipeline.load_split_arrays(schema.open(data), "train")


def test_a_fold_dataset_keeps_its_sources_storage(tmp_path):
    data = schema.open(write_tiny_dataset(str(tmp_path / "d"), storage=schema.Storage("uint8", "gzip")))
    cohort = folds.cohort_record(data, 2, 1, 0, tumor_fraction=1.0)
    out = folds.write_fold_dataset(data, str(tmp_path / "fold"), cohort)
    assert schema.read_manifest(out).storage == schema.Storage("uint8", "gzip")
    # Folds draw patients from every split of the source: find each record by case, slice and label.
    source = {}
    for split in schema.SPLITS:
        arrays = pipeline.load_split_arrays(data, split)
        for i, key in enumerate(zip(arrays["case_id"], arrays["slice_index"], arrays["label"])):
            source[key] = arrays["image"][i]
    train = pipeline.load_split_arrays(schema.open(out), "train")
    assert len(train["label"]) > 0
    for i, key in enumerate(zip(train["case_id"], train["slice_index"], train["label"])):
        np.testing.assert_array_equal(train["image"][i], source[key])
