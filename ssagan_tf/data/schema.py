"""The TFRecord slice schema and the dataset manifest (docs/formats.md).

One `tf.train.Example` holds one 2-D slice:

    image        float32 H x W x C, raw bytes, values in [-1, 1]
    mask         uint8 H x W, raw bytes, whole-tumor mask (all zeros when absent)
    has_mask     int64 0/1, whether `mask` is a real annotation
    label        int64, 0 normal, 1 tumor
    height, width, channels   int64
    case_id      bytes, the scan the slice comes from
    source       bytes, provenance ("real:<path>" or "synthetic:<model>:<case>:<slice>")
    slice_index  int64, axial index in the source volume

Shards live at `<data_dir>/<split>/<domain>-<i>-of-<n>.tfrecord` next to
`<data_dir>/manifest.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
DOMAINS = ("normal", "tumor")
LABELS = {"normal": 0, "tumor": 1}
MANIFEST_NAME = "manifest.json"


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def serialize_slice(image: np.ndarray, mask: np.ndarray | None, has_mask: bool, label: int,
                    case_id: str, source: str, slice_index: int) -> bytes:
    """Encode one slice as a serialized `tf.train.Example` in schema version 1."""
    import tensorflow as tf

    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be H x W x C, got shape {image.shape}")
    height, width, channels = image.shape
    if mask is None:
        mask = np.zeros((height, width), np.uint8)
    mask = np.asarray(mask, dtype=np.uint8)
    if mask.shape != (height, width):
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    features = {
        "image": _bytes(np.ascontiguousarray(image).tobytes()),
        "mask": _bytes(np.ascontiguousarray(mask).tobytes()),
        "has_mask": _int(1 if has_mask else 0),
        "label": _int(label),
        "height": _int(height),
        "width": _int(width),
        "channels": _int(channels),
        "case_id": _bytes(case_id.encode("utf-8")),
        "source": _bytes(source.encode("utf-8")),
        "slice_index": _int(slice_index),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def feature_spec():
    """The `tf.io.parse_single_example` spec of schema version 1."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in ("image", "mask", "case_id", "source")}
    spec.update({name: tf.io.FixedLenFeature([], tf.int64)
                 for name in ("has_mask", "label", "height", "width", "channels", "slice_index")})
    return spec


def decode_slice(serialized):
    """Parse one serialized example to a dict of tensors, with image H x W x C float32 and
    mask H x W x 1 float32 (0/1); shapes are dynamic (see `pipeline.parse_and_validate`)."""
    import tensorflow as tf

    ex = tf.io.parse_single_example(serialized, feature_spec())
    h, w, c = ex["height"], ex["width"], ex["channels"]
    image = tf.reshape(tf.io.decode_raw(ex["image"], tf.float32), tf.stack([h, w, c]))
    mask = tf.reshape(tf.io.decode_raw(ex["mask"], tf.uint8), tf.stack([h, w, 1]))
    return {
        "image": image,
        "mask": tf.cast(mask, tf.float32),
        "has_mask": tf.cast(ex["has_mask"], tf.float32),
        "label": ex["label"],
        "case_id": ex["case_id"],
        "source": ex["source"],
        "slice_index": ex["slice_index"],
    }


def shard_name(domain: str, index: int, count: int) -> str:
    return f"{domain}-{index:05d}-of-{count:05d}.tfrecord"


def shard_pattern(data_dir: str, split: str, domain: str) -> str:
    return os.path.join(data_dir, split, f"{domain}-*-of-*.tfrecord")


@dataclass(frozen=True)
class Manifest:
    """What a converted dataset says about itself (`manifest.json`)."""

    path: str
    schema_version: int
    image_size: int
    channels: int
    modalities: tuple
    counts: dict          # counts[split][domain] -> slices
    cases: dict           # cases[split] -> list of case ids
    raw: dict

    @property
    def data_dir(self) -> str:
        return os.path.dirname(self.path)

    def count(self, split: str, domain: str) -> int:
        return int(self.counts.get(split, {}).get(domain, 0))

    def shards(self, split: str, domain: str) -> list:
        import glob

        return sorted(glob.glob(shard_pattern(self.data_dir, split, domain)))


def read_manifest(data_dir: str) -> Manifest:
    """Read and check `<data_dir>/manifest.json`; raise a clear error when it is absent or
    of another schema version."""
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: no manifest; is {data_dir!r} the --output_dir of `python -m data_prep.convert`?")
    try:
        with open(path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema version {version!r}, this code reads version {SCHEMA_VERSION}")
    for key in ("image_size", "channels", "counts", "cases"):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    return Manifest(path=path, schema_version=version, image_size=int(raw["image_size"]),
                    channels=int(raw["channels"]), modalities=tuple(raw.get("modalities", ())),
                    counts=raw["counts"], cases=raw["cases"], raw=raw)
