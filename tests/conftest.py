"""Shared test fixtures: a tiny converted dataset written straight through the schema, and the
location of the real data in ../shared/data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The test run is a command line too: TensorFlow's start-up chatter off, as `ssagan_tf.cli.run`
# does for the entry points (importing ssagan_tf leaves the console alone).
from ssagan_tf import console  # noqa: E402

console.install()

# A guard against hangs, never a speed assertion: subprocesses a test starts get this long, as long
# as pytest-timeout gives a whole test (pytest.ini), so a loaded machine slows tests down without
# failing them.
HANG_TIMEOUT = 900
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")
REAL_DATA = os.path.join(SHARED_DATA, "brain_tumor_progression")


def write_tiny_dataset(out_dir, size=32, channels=1, n_normal=6, n_tumor=4, splits=("train", "val", "test"),
                       labelled=True, seed=0, record_shards=True, storage=None):
    """Write a converted dataset of blob images: tumor slices carry a bright disc and its mask.
    Returns the data directory. Schema and layout are those of `data_prep.convert`; without
    `record_shards`, the manifest is one of an older version, without its shards' records.
    `storage` (a `schema.Storage`) writes schema version 2 in that storage; None writes a version 1
    dataset exactly as the converter did before storage was chosen (float32, uncompressed, no
    `storage` in the manifest, no `image_dtype` in the records)."""
    import tensorflow as tf

    from ssagan_tf.data import integrity, schema

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    counts, cases, shards = {}, {}, {}
    for split in splits:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        counts[split], cases[split] = {}, [f"{split}_case{i}" for i in range(2)]
        for domain, n in (("normal", n_normal), ("tumor", n_tumor)):
            path = os.path.join(out_dir, split, schema.shard_name(domain, 0, 1))
            options = storage.writer_options() if storage else None
            with tf.io.TFRecordWriter(path, options) as writer:
                for i in range(n):
                    image = rng.uniform(-1, -0.2, (size, size, channels)).astype(np.float32)
                    mask = np.zeros((size, size), np.uint8)
                    if domain == "tumor":
                        cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [size // 6]
                        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
                        image[mask > 0] = 0.9
                    has_mask = domain == "tumor" and labelled
                    if storage is None:
                        writer.write(_version_1_record(image, mask, has_mask, schema.LABELS[domain],
                                                       cases[split][i % 2], f"real:tiny/{split}/{i}", i))
                    else:
                        writer.write(schema.serialize_slice(
                            image, mask, has_mask, schema.LABELS[domain], cases[split][i % 2],
                            f"real:tiny/{split}/{i}", i, storage))
            counts[split][domain] = n
            shards[f"{split}/{os.path.basename(path)}"] = integrity.describe_shard(path, n)
    manifest = {"schema_version": 1 if storage is None else schema.SCHEMA_VERSION, "image_size": size,
                "channels": channels,
                "modalities": ["t1ce"] if channels == 1 else ["flair", "t1", "t1ce", "t2"][:channels],
                "counts": counts, "cases": cases, "normalisation": {"method": "percentile", "range": [-1, 1]},
                "settings": {"format": "tiny"}}
    if storage is not None:
        manifest[schema.STORAGE_KEY] = storage.manifest_entry()
    if record_shards:
        manifest["shards"] = shards
    with open(os.path.join(out_dir, schema.MANIFEST_NAME), "w") as f:
        json.dump(manifest, f, indent=2)
    return str(out_dir)


def _version_1_record(image, mask, has_mask, label, case_id, source, slice_index) -> bytes:
    """A record as schema version 1 wrote it: float32 image bytes, no `image_dtype` feature."""
    import tensorflow as tf

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    height, width, channels = image.shape
    features = {"image": feature(np.ascontiguousarray(image, np.float32).tobytes()),
                "mask": feature(np.ascontiguousarray(mask, np.uint8).tobytes()), "has_mask": feature(int(has_mask)),
                "label": feature(label), "height": feature(height), "width": feature(width),
                "channels": feature(channels), "case_id": feature(case_id.encode()),
                "source": feature(source.encode()), "slice_index": feature(slice_index)}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 32x32 one-channel dataset: 6 normal and 4 tumor slices (all with masks) per split."""
    return write_tiny_dataset(str(tmp_path_factory.mktemp("tiny_data")))


@pytest.fixture(scope="session")
def real_data_dir():
    if not os.path.isdir(REAL_DATA):
        pytest.skip(f"real data not found at {os.path.normpath(REAL_DATA)} (../shared/data beside the repo)")
    return REAL_DATA

