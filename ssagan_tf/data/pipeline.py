"""tf.data pipelines over converted slices (docs/formats.md).

`make_unpaired_dataset` feeds training: unpaired batches of normal slices and tumor slices (with
their masks and `has_mask`), the shorter domain repeating. `make_slice_dataset` and
`load_split_arrays` read one split/domain in order, for validation, augmentation and evaluation.
Each takes the `schema.Dataset` its command opened (`schema.open`), so the manifest is read once.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re

import numpy as np
import tensorflow as tf

from ssagan_tf.data import combined, integrity, schema

AUTOTUNE = tf.data.AUTOTUNE


def _shards(manifest: schema.Manifest, split: str, domain: str) -> list:
    """The split's shards of one domain, checked against the manifest (`integrity.check_shards`)."""
    shards = integrity.check_shards(manifest, split, domain)
    if not shards:
        raise FileNotFoundError(
            f"{manifest.data_dir}: no {split}/{domain} shards (manifest counts "
            f"{manifest.count(split, domain)} slices)")
    return shards


def _read_records(manifest, shards: list, deterministic: bool, shuffle_files: bool,
                  seed) -> tf.data.Dataset:
    """(record, shard path) pairs of several shards, interleaved. Each shard is read by its own
    TFRecordDataset so that a corrupt or truncated one is named in the error (see
    `shard_errors_named`), and, when the manifest records them, its records are counted against
    the manifest as they pass (`assert_cardinality`: reading fails as soon as a shard proves to
    hold more, or at its end fewer). `manifest` may be a list, one per shard's dataset, when
    `shards` is a list of lists of the same length (several datasets' shards read together): each
    shard is then read with its own dataset's compression, and the elements are (record, shard
    path, index of the dataset in the list)."""
    if isinstance(manifest, (list, tuple)):
        expected = [n for m, paths in zip(manifest, shards) for n in integrity.expected_records(m, paths)]
        parts = [i for i, paths in enumerate(shards) for _ in paths]
        compressions = [manifest[i].storage.tf_compression for i in parts]
        shards = [path for paths in shards for path in paths]
        if min(expected, default=-1) >= 0:
            files = tf.data.Dataset.from_tensor_slices(
                (shards, tf.constant(expected, tf.int64), compressions, tf.constant(parts, tf.int64)))
            read = lambda path, count, compression, part: tf.data.TFRecordDataset(  # noqa: E731
                path, compression).apply(tf.data.experimental.assert_cardinality(count)).map(
                lambda record: (record, path, part))
        else:
            files = tf.data.Dataset.from_tensor_slices((shards, compressions, tf.constant(parts, tf.int64)))
            read = lambda path, compression, part: tf.data.TFRecordDataset(path, compression).map(  # noqa: E731
                lambda record: (record, path, part))
        if shuffle_files:
            files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)
        return files.interleave(read, cycle_length=min(len(shards), 8), num_parallel_calls=AUTOTUNE,
                                deterministic=deterministic)
    expected = integrity.expected_records(manifest, shards)
    compression = manifest.storage.tf_compression
    if min(expected, default=-1) >= 0:
        files = tf.data.Dataset.from_tensor_slices((shards, tf.constant(expected, tf.int64)))
        read = lambda path, count: tf.data.TFRecordDataset(path, compression).apply(  # noqa: E731
            tf.data.experimental.assert_cardinality(count)).map(lambda record: (record, path))
    else:
        files = tf.data.Dataset.from_tensor_slices(shards)
        read = lambda path: tf.data.TFRecordDataset(path, compression).map(  # noqa: E731
            lambda record: (record, path))
    if shuffle_files:
        files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)
    return files.interleave(read, cycle_length=min(len(shards), 8), num_parallel_calls=AUTOTUNE,
                            deterministic=deterministic)


class CorruptShardError(IOError):
    """A shard that cannot be read to its end (truncated, or failing its CRC)."""


class DataCheckError(ValueError):
    """A record or shard that fails a check while it is read (shape, range, record count); the
    message names the shard."""


def find_corrupt_shard(shards, storage: schema.Storage = schema.LEGACY_STORAGE):
    """The first shard that does not read and decode cleanly to its end as `storage`, with the
    reader's message, or None."""
    decode = lambda record: schema.decode_slice(record, storage)  # noqa: E731
    for path in shards:
        try:
            for _ in tf.data.TFRecordDataset(path, storage.tf_compression).map(decode).batch(1024):
                pass
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            lines = re.sub(r"\{\{.*?\}\}\s*", "", err.message.split("[Op:")[0]).strip().splitlines()
            return path, lines[0][:200] if lines else type(err).__name__
    return None


def find_count_mismatch(dataset: schema.Dataset):
    """The first shard holding another number of records than the manifest records, as
    (path, records, recorded), or None."""
    manifest = dataset.manifest
    for name, entry in sorted((manifest.raw.get(integrity.SHARDS_KEY) or {}).items()):
        path = os.path.join(dataset.data_dir, name)
        records = sum(1 for _ in tf.data.TFRecordDataset(path, manifest.storage.tf_compression))
        if records != int(entry["records"]):
            return path, records, int(entry["records"])
    return None


@contextlib.contextmanager
def shard_errors_named(datasets):
    """Re-raise what goes wrong while reading the shards of `datasets` (a `schema.Dataset`) as
    one clear error naming the shard: a tf.data DataLossError (whose own message says only
    'truncated record at N', not which file) as `CorruptShardError`, and a failed check of
    `parse_and_validate` or of a shard's record count as `DataCheckError`. `datasets` may be a
    list of datasets read together (`make_unpaired_dataset`'s `extras`): the shard is looked
    for in each."""
    datasets = [datasets] if isinstance(datasets, schema.Dataset) else list(datasets)
    try:
        yield
    except tf.errors.FailedPreconditionError as err:
        found = None
        for one in datasets if "expected to contain" in err.message else ():
            found = found or find_count_mismatch(one)
        if found is None:
            raise
        path, actual, expected = found
        raise DataCheckError(f"{path}: holds {actual} records but the manifest records {expected}; the shard was "
                             "changed after conversion (convert again)") from err
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        message = check_message(err) if isinstance(err, tf.errors.InvalidArgumentError) else None
        if message is not None:
            raise DataCheckError(message) from err
        found = None
        for one in datasets:
            found = found or find_corrupt_shard(
                sorted(glob.glob(os.path.join(glob.escape(one.data_dir), "*", "*.tfrecord"))), one.storage)
        if found is None:
            raise
        path, message = found
        raise CorruptShardError(f"{path}: corrupt, truncated, or not a TFRecord of slices ({message}); "
                                "re-run the conversion for this dataset") from err


def check_message(err) -> str | None:
    """The message of a failed data check (ours name a shard), without TensorFlow's decoration;
    None for any other error."""
    lines = [line.strip() for line in re.sub(r"\{\{.*?\}\}", "", err.message).splitlines() if line.strip()]
    if not lines or ".tfrecord" not in lines[0]:
        return None
    line = lines[0]
    if line.startswith("assertion failed: ["):
        line = line[len("assertion failed: ["):]
        line = line[:-1] if line.endswith("]") else line
    return line


def parse_and_validate(manifest: schema.Manifest, domain: str):
    """A map function: serialized record (and its shard path) -> validated slice dict with static
    shapes. A record whose shape, channel count or value range disagrees with the manifest, or
    whose label is not its shard's domain (a tumor record in a normal-* shard), or whose image
    dtype is not the manifest's storage, fails with a message naming the shard."""
    size, channels = manifest.image_size, manifest.channels
    label = schema.LABELS[domain]
    storage = manifest.storage

    def parse(record, path):
        features = schema.parse_example(record)
        stored_as = _check(tf.equal(features["image_dtype"], storage.image_dtype), path, "a record stored as ",
                           features["image_dtype"], f" in a dataset whose manifest says {storage.image_dtype}; the "
                           "shard is not this dataset's (convert again)")
        with tf.control_dependencies([stored_as]):
            ex = schema.decode_features(features, storage)
        image, mask = ex["image"], ex["mask"]
        shape = tf.shape(image)
        largest = tf.reduce_max(tf.abs(image))
        checks = [
            _check(tf.reduce_all(tf.equal(shape, [size, size, channels])), path, "a record of shape ",
                   tf.strings.reduce_join(tf.strings.as_string(shape), separator="x"),
                   f" disagrees with the manifest ({size}x{size}x{channels})"),
            _check(largest <= 1.0 + schema.RANGE_TOLERANCE, path, "image values outside [-1, 1] (magnitude ",
                   tf.strings.as_string(largest), ")"),
            _check(tf.reduce_max(mask) <= 1.0, path, "mask values above 1"),
            _check(tf.equal(ex["label"], label), path, "a record labelled ", tf.strings.as_string(ex["label"]),
                   f" in a {domain} shard (label {label}); the shard was changed after conversion"),
        ]
        with tf.control_dependencies(checks):
            ex["image"] = tf.ensure_shape(tf.identity(image), [size, size, channels])
            ex["mask"] = tf.ensure_shape(tf.identity(mask), [size, size, 1])
        return ex

    return parse


def _check(ok, path, *message):
    """An assertion whose message is `<shard path>: <message>` (see `check_message`)."""
    return tf.debugging.Assert(ok, [tf.strings.join([path, ": ", *message])])


def _random_flip(index, ex: dict, seed: int) -> dict:
    """Horizontal flip applied identically to image and mask. The draw is stateless, keyed on the
    element's position in the stream: the same seed flips the same elements whatever the
    parallelism, so a resumed run that skips ahead sees exactly what an uninterrupted one did."""
    flip = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), index])) < 0.5
    ex = dict(ex)
    ex["image"] = tf.cond(flip, lambda: tf.reverse(ex["image"], [1]), lambda: ex["image"])
    ex["mask"] = tf.cond(flip, lambda: tf.reverse(ex["mask"], [1]), lambda: ex["mask"])
    return ex


def _domain_dataset(manifest, split, domain, shuffle, flip, seed, deterministic, repeat, extras=()):
    """One domain's slices of `split`, from `manifest`'s shards and, with `extras` (the manifests
    of further datasets of the same slice size and channels), theirs too, read as one set: the
    shards of all of them shuffled and interleaved together, the shuffle buffer sized by the
    slices of all of them. Without `extras`, exactly the one dataset's stream."""
    shards = _shards(manifest, split, domain)
    if extras:
        # An extra without slices of this domain (a healthy cohort's tumor domain) adds nothing.
        parts = [(manifest, shards)] + [(m, _shards(m, split, domain)) for m in extras if m.count(split, domain)]
        ds = _read_records([m for m, _ in parts], [paths for _, paths in parts], deterministic,
                           shuffle_files=shuffle, seed=seed)
        # Each dataset's records are decoded by its own storage (an old float32 cohort beside a
        # quantised one).
        parsers = [parse_and_validate(m, domain) for m, _ in parts]
        parse = lambda record, path, part: tf.switch_case(  # noqa: E731
            tf.cast(part, tf.int32), [functools.partial(p, record, path) for p in parsers])
        ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    else:
        ds = _read_records(manifest, shards, deterministic, shuffle_files=shuffle, seed=seed)
        ds = ds.map(parse_and_validate(manifest, domain), num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if repeat:
        ds = ds.repeat()
    if shuffle:
        count = manifest.count(split, domain) + sum(m.count(split, domain) for m in extras)
        ds = ds.shuffle(min(max(count, 1), 2048), seed=seed, reshuffle_each_iteration=True)
    if flip:
        flip_seed = seed if seed is not None else int(np.random.default_rng().integers(2**31))
        ds = ds.enumerate().map(lambda i, ex: _random_flip(i, ex, flip_seed), num_parallel_calls=AUTOTUNE,
                                deterministic=deterministic)
    return ds


def make_unpaired_dataset(dataset: schema.Dataset, split: str = "train", global_batch_size: int = 1,
                          shuffle: bool = True, flip: bool = True, seed=None, deterministic: bool = False,
                          repeat: bool = True, extras=()):
    """Unpaired two-domain batches for training.

    With `extras` (the `schema.Dataset`s of converted datasets of the same slice size and channels,
    checked by `RunConfig.extra_datasets`), each domain reads the `split` slices of `dataset` and
    of every extra together (`ssagan_tf.data.combined`): a healthy cohort's normals join the normal
    domain, an extra's tumor slices the tumor domain. Without them, the stream is the one
    dataset's, element for element.

    Elements: ``{"normal": {"image"}, "tumor": {"image", "mask", "has_mask"}}`` with a leading
    dimension of `global_batch_size` (drop_remainder, static shapes), ready for
    `strategy.experimental_distribute_dataset`. The shorter domain repeats; with `repeat=False`
    the dataset is one pass over the longer domain. `deterministic=True` fixes the element order
    for a given seed (and needs a seed when shuffling).
    """
    manifest, extra_manifests = dataset.manifest, [extra.manifest for extra in extras]
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    if deterministic and shuffle and seed is None:
        raise ValueError("deterministic shuffling needs a seed")
    counts = combined.combined_counts([manifest, *extra_manifests], split)
    longer = max(counts, key=counts.get)
    domains = {}
    for i, domain in enumerate(schema.DOMAINS):
        domain_seed = None if seed is None else seed + i
        domains[domain] = _domain_dataset(manifest, split, domain, shuffle, flip, domain_seed, deterministic,
                                          repeat=repeat or domain != longer, extras=extra_manifests)
    normal = domains["normal"].map(lambda ex: {"image": ex["image"]})
    tumor = domains["tumor"].map(lambda ex: {"image": ex["image"], "mask": ex["mask"], "has_mask": ex["has_mask"]})
    ds = tf.data.Dataset.zip({"normal": normal, "tumor": tumor})
    ds = ds.batch(global_batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(AUTOTUNE)


def make_slice_dataset(dataset: schema.Dataset, split: str, domain: str, batch_size: int,
                       drop_remainder: bool = False):
    """One ordered pass over a split's slices of one domain, batched; elements are
    `schema.decode_slice` dicts (image, mask, has_mask, label, case_id, source, slice_index)."""
    manifest = dataset.manifest
    shards = _shards(manifest, split, domain)
    ds = _read_records(manifest, shards, deterministic=True, shuffle_files=False, seed=None)
    ds = ds.map(parse_and_validate(manifest, domain), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def load_split_arrays(dataset: schema.Dataset, split: str, domains=schema.DOMAINS) -> dict:
    """All slices of a split as numpy arrays (normal first, then tumor): image [N,H,W,C] f32,
    mask [N,H,W,1] f32, has_mask [N] f32, label [N] int64, case_id [N] bytes, source [N] bytes,
    slice_index [N] int64. For small sets (evaluation, augmentation bookkeeping)."""
    parts = []
    for domain in domains:
        if dataset.count(split, domain) == 0 and not dataset.shards(split, domain):
            continue
        with shard_errors_named(dataset):
            for batch in make_slice_dataset(dataset, split, domain, batch_size=256):
                parts.append({k: v.numpy() for k, v in batch.items()})
    keys = ("image", "mask", "has_mask", "label", "case_id", "source", "slice_index")
    if not parts:
        size, c = dataset.image_size, dataset.channels
        empty = {"image": np.zeros((0, size, size, c), np.float32), "mask": np.zeros((0, size, size, 1), np.float32),
                 "has_mask": np.zeros(0, np.float32), "label": np.zeros(0, np.int64),
                 "case_id": np.zeros(0, object), "source": np.zeros(0, object), "slice_index": np.zeros(0, np.int64)}
        return empty
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def steps_per_epoch(dataset: schema.Dataset, global_batch_size: int, split: str = "train", extras=()) -> int:
    """Steps in one pass over the longer domain of a split (of `dataset` and the `extras` together)."""
    manifests = [one.manifest for one in (dataset, *extras)]
    longest = max(combined.combined_counts(manifests, split).values())
    return max(1, longest // global_batch_size)
