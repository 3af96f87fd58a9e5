"""The TFRecord slice schema and the dataset manifest (docs/formats.md).

One `tf.train.Example` holds one 2-D slice:

    image        H x W x C, raw little-endian bytes of `image_dtype`, values in [-1, 1]: float32
                 as is, or quantised uint16/uint8 q with image = q * scale + offset (`Storage`)
    image_dtype  bytes, "float32", "uint16" or "uint8" (absent in version 1 records: float32)
    mask         uint8 H x W, raw bytes, whole-tumor mask (all zeros when absent)
    has_mask     int64 0/1, whether `mask` is a real annotation
    label        int64, 0 normal, 1 tumor
    height, width, channels   int64
    case_id      bytes, the scan the slice comes from
    source       bytes, provenance ("real:<path>" or "synthetic:<model>:<case>:<slice>")
    slice_index  int64, axial index in the source volume

Shards live at `<data_dir>/<split>/<domain>-<i>-of-<n>.tfrecord` next to
`<data_dir>/manifest.json`, whose `storage` entry (schema version 2) says how the images are
stored and whether the shards are GZIP-compressed TFRecord files. A version 1 manifest (no
`storage`) is a dataset of float32, uncompressed shards, and still reads.

A command opens the dataset once (`open`: the manifest read and checked, a `Dataset`) and hands
that `Dataset` to everything that reads it. The data's conventions live here too: `BACKGROUND`,
the value outside the head, and `RANGE_TOLERANCE`, the slack every check of the [-1, 1] range
allows.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 2            # what this code writes
READABLE_VERSIONS = (1, 2)    # 1: float32 images, uncompressed shards, no `storage` in the manifest
SPLITS = ("train", "val", "test")
DOMAINS = ("normal", "tumor")
# The two translations between the domains (an export's signatures, augmentation's --directions,
# the judge's measures), and the domain each reads and writes.
DIRECTIONS = ("normal_to_tumor", "tumor_to_normal")
SOURCE_DOMAIN = {"normal_to_tumor": "normal", "tumor_to_normal": "tumor"}
TARGET_DOMAIN = {"normal_to_tumor": "tumor", "tumor_to_normal": "normal"}
LABELS = {"normal": 0, "tumor": 1}
# The value of every pixel outside the head of a converted slice: slices are padded and framed with
# it, and it reads back exactly in every storage (an end level of the quantised ones).
BACKGROUND = -1.0
MANIFEST_NAME = "manifest.json"
STORAGE_KEY = "storage"
# Quantised dtypes: q in 0..levels-1 stands for q / half - 1, half = (levels - 1) / 2, so that
# -1 (the background) and 1 are exact and every other value is within half a step, 1 / (levels - 1).
IMAGE_DTYPES = {"float32": None, "uint16": 65535, "uint8": 255}
COMPRESSIONS = {"none": "", "gzip": "GZIP"}     # -> tf.data / tf.io compression_type
# The slack on [-1, 1] of every range check (the reader, the export's signatures): resizing with
# antialiasing can overshoot by float rounding. A quantised write clips within it and refuses beyond.
RANGE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Storage:
    """How a dataset's images are stored (`image_dtype`) and its shards compressed."""

    image_dtype: str = "float32"
    compression: str = "none"

    def __post_init__(self):
        if self.image_dtype not in IMAGE_DTYPES:
            raise ValueError(f"image storage {self.image_dtype!r}: not one of {', '.join(IMAGE_DTYPES)}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression {self.compression!r}: not one of {', '.join(COMPRESSIONS)}")

    @property
    def quantised(self) -> bool:
        return IMAGE_DTYPES[self.image_dtype] is not None

    @property
    def scale(self) -> float:
        return 2.0 / IMAGE_DTYPES[self.image_dtype] if self.quantised else 1.0

    @property
    def offset(self) -> float:
        return -1.0 if self.quantised else 0.0

    @property
    def max_error(self) -> float:
        """The largest difference between a float32 value in [-1, 1] and what is read back: half a
        step, plus the float32 rounding of the decoded value (2^-24 at most)."""
        return self.scale / 2 + 2.0 ** -24 if self.quantised else 0.0

    @property
    def tf_compression(self) -> str:
        return COMPRESSIONS[self.compression]

    def writer_options(self):
        import tensorflow as tf

        return tf.io.TFRecordOptions(compression_type=self.tf_compression)

    def manifest_entry(self) -> dict:
        return {"image_dtype": self.image_dtype, "scale": self.scale, "offset": self.offset,
                "max_error": self.max_error, "compression": self.compression}

    def encode(self, image: np.ndarray) -> bytes:
        """The image's bytes in this storage; a quantised one refuses values it cannot hold."""
        image = np.asarray(image, np.float32)
        if not self.quantised:
            return np.ascontiguousarray(image, "<f4").tobytes()
        largest = float(np.max(np.abs(image))) if image.size else 0.0
        if not largest <= 1.0 + RANGE_TOLERANCE:        # also NaN
            raise ValueError(f"image values outside [-1, 1] (magnitude {largest}) cannot be stored as "
                             f"{self.image_dtype}")
        levels = IMAGE_DTYPES[self.image_dtype]
        q = np.rint((np.clip(image.astype(np.float64), -1.0, 1.0) + 1.0) * (levels / 2.0))
        return np.ascontiguousarray(q, "<u2" if levels > 255 else "u1").tobytes()

    def decode(self, data, shape):
        """Raw image bytes (a string tensor) -> float32 tensor of `shape`."""
        import tensorflow as tf

        dtype = {"float32": tf.float32, "uint16": tf.uint16, "uint8": tf.uint8}[self.image_dtype]
        values = tf.reshape(tf.io.decode_raw(data, dtype, little_endian=True), shape)
        if not self.quantised:
            return values
        # In float64, so that the end levels come back as exactly -1 and 1.
        return tf.cast(tf.cast(values, tf.float64) * self.scale + self.offset, tf.float32)


LEGACY_STORAGE = Storage("float32", "none")
DEFAULT_STORAGE = Storage("uint16", "gzip")     # the converter's default (docs/formats.md, measured)


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def serialize_slice(image: np.ndarray, mask: np.ndarray | None, has_mask: bool, label: int,
                    case_id: str, source: str, slice_index: int, storage: Storage = LEGACY_STORAGE) -> bytes:
    """Encode one slice as a serialized `tf.train.Example`, its image in `storage.image_dtype`."""
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
        "image": _bytes(storage.encode(image)),
        "image_dtype": _bytes(storage.image_dtype.encode("ascii")),
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
    """The `tf.io.parse_single_example` spec (a version 1 record, without `image_dtype`, is float32)."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in ("image", "mask", "case_id", "source")}
    spec["image_dtype"] = tf.io.FixedLenFeature([], tf.string, default_value="float32")
    spec.update({name: tf.io.FixedLenFeature([], tf.int64)
                 for name in ("has_mask", "label", "height", "width", "channels", "slice_index")})
    return spec


def parse_example(serialized):
    """The raw features of one serialized example (`feature_spec`)."""
    import tensorflow as tf

    return tf.io.parse_single_example(serialized, feature_spec())


def decode_slice(serialized, storage: Storage = LEGACY_STORAGE):
    """Parse one serialized example to a dict of tensors, with image H x W x C float32 and
    mask H x W x 1 float32 (0/1); shapes are dynamic (see `pipeline.parse_and_validate`, which
    also checks that each record's `image_dtype` is the manifest's)."""
    return decode_features(parse_example(serialized), storage)


def decode_features(ex: dict, storage: Storage = LEGACY_STORAGE) -> dict:
    """`parse_example`'s features -> the slice dict of `decode_slice`, the image read as `storage`."""
    import tensorflow as tf

    h, w, c = ex["height"], ex["width"], ex["channels"]
    image = storage.decode(ex["image"], tf.stack([h, w, c]))
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
    sha256: str           # of the manifest's bytes as read
    storage: Storage = LEGACY_STORAGE

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
    # The bytes read once, for the checksum and the parse (as text, as `open(path)` reads it).
    # `builtins.open`: this module's `open` opens a dataset.
    with builtins.open(path, "rb") as f:
        data = f.read()
    try:
        raw = json.load(io.TextIOWrapper(io.BytesIO(data)))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    version = raw.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: schema version {version!r}, this code reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    for key in ("image_size", "channels", "counts", "cases") + ((STORAGE_KEY,) if version >= 2 else ()):
        if key not in raw:
            raise ValueError(f"{path}: missing key {key!r}")
    return Manifest(path=path, schema_version=version, image_size=int(raw["image_size"]),
                    channels=int(raw["channels"]), modalities=tuple(raw.get("modalities", ())),
                    counts=raw["counts"], cases=raw["cases"], raw=raw, sha256=hashlib.sha256(data).hexdigest(),
                    storage=storage_of(raw.get(STORAGE_KEY), path))


@dataclass(frozen=True)
class Dataset:
    """A converted dataset, opened once by a command (`open`) and handed to everything that reads
    it, so its manifest is read once: the folder as the command was given it (the messages name it
    so), its checked `manifest`, and what readers ask of it."""

    data_dir: str
    manifest: Manifest

    @property
    def storage(self) -> Storage:
        return self.manifest.storage

    @property
    def image_size(self) -> int:
        return self.manifest.image_size

    @property
    def channels(self) -> int:
        return self.manifest.channels

    def count(self, split: str, domain: str) -> int:
        """The slices of one split and domain, as the manifest counts them."""
        return self.manifest.count(split, domain)

    def shards(self, split: str, domain: str) -> list:
        """The shard files of one split and domain on disk (`integrity.check_shards` checks them)."""
        return self.manifest.shards(split, domain)


def open(data_dir: str) -> Dataset:
    """The converted dataset in `data_dir`, its manifest read and checked once (`read_manifest`,
    whose errors it raises)."""
    return Dataset(data_dir, read_manifest(data_dir))


def storage_of(entry, path: str = MANIFEST_NAME) -> Storage:
    """The `Storage` a manifest's `storage` entry describes (None: a version 1 dataset, float32 and
    uncompressed); an unknown name, or a scale or offset other than the name's, is refused naming
    the manifest."""
    if entry is None:
        return LEGACY_STORAGE
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: 'storage' must be an object, got {entry!r}")
    try:
        storage = Storage(str(entry.get("image_dtype")), str(entry.get("compression")))
    except ValueError as err:
        raise ValueError(f"{path}: {err}; this code reads the images of float32, uint16 and uint8 datasets, "
                         "compressed with none or gzip (convert again, or use the version that wrote it)") from err
    for key in ("scale", "offset"):
        recorded, expected = entry.get(key), getattr(storage, key)
        if not isinstance(recorded, (int, float)) or abs(recorded - expected) > 1e-12 * max(1.0, abs(expected)):
            raise ValueError(f"{path}: storage {key} {recorded!r} for {storage.image_dtype} images; this code "
                             f"reads them with {key} {expected!r} (the manifest was edited or is not this dataset's)")
    return storage
