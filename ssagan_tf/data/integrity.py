"""Do the shards on disk match what the manifest says was written?

The converter (and augmentation) record each shard in the manifest under `shards`, keyed by its
path relative to the dataset folder:

    "shards": {"train/tumor-00000-of-00008.tfrecord": {"records": 13, "bytes": 1709712,
                                                        "sha256": "9f2c..."}, ...}

Readers check, before reading, that every listed shard of a split is there with its recorded
size, that no unlisted shard sits beside them, and that the records listed add up to the
manifest's counts (`check_shards`); the record count of each shard is checked while it is read
(`pipeline`). The checksum is for `verify_checksums` (reading every byte is too slow to do at
each start on a large dataset; the TFRecord format's own CRCs catch damaged records as they are
read). Manifests written before `shards` existed still load: their shards are checked for
completeness by their names (`-<i>-of-<n>`) only, with `legacy_warning` saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from ssagan_tf.data import schema

SHARDS_KEY = "shards"
_SHARD_NAME = re.compile(r"^(?P<domain>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")


class DatasetMismatchError(ValueError):
    """The shards on disk disagree with the manifest (missing, extra, resized, recounted)."""


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_shard(path: str, records: int) -> dict:
    """The manifest entry of a finished shard holding `records` records."""
    return {"records": int(records), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def relative_name(data_dir: str, path: str) -> str:
    return os.path.relpath(path, data_dir).replace(os.sep, "/")


def has_shard_records(manifest: schema.Manifest) -> bool:
    return isinstance(manifest.raw.get(SHARDS_KEY), dict)


def dataset_checksum(manifest: schema.Manifest) -> str:
    """The identity of a dataset's content: the sha256 of its manifest's shard records (each
    shard's name, record count, size and sha256), so a copy elsewhere has the same checksum and a
    re-conversion with other settings another. A manifest without shard records (written by an
    older version) is identified by its own bytes (as read, `Manifest.sha256`)."""
    if has_shard_records(manifest):
        text = json.dumps(manifest.raw[SHARDS_KEY], sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(text).hexdigest()
    return "sha256:" + manifest.sha256


def legacy_warning(manifest: schema.Manifest) -> str | None:
    """A warning for a manifest written before shards were recorded (None for a current one)."""
    if has_shard_records(manifest):
        return None
    return (f"WARNING: {manifest.path} does not record its shards' record counts, sizes and checksums (written "
            "by an older version); only missing shards are detected. Convert again to have every shard checked.")


def check_shards(manifest: schema.Manifest, split: str, domain: str) -> list:
    """The shard paths of one split and domain, after checking them against the manifest; raises
    `DatasetMismatchError` naming the first shard that disagrees."""
    on_disk = manifest.shards(split, domain)
    if not has_shard_records(manifest):
        if not on_disk and manifest.count(split, domain) > 0:
            raise DatasetMismatchError(f"{manifest.data_dir}: no {split}/{domain} shards, but {manifest.path} counts "
                                       f"{manifest.count(split, domain)} such slices (restore them, or convert again)")
        _check_complete_by_name(on_disk)
        return on_disk
    recorded = {name: entry for name, entry in manifest.raw[SHARDS_KEY].items()
                if name.startswith(f"{split}/{domain}-")}
    present = {relative_name(manifest.data_dir, path): path for path in on_disk}
    for name in sorted(set(recorded) - set(present)):
        raise DatasetMismatchError(f"{os.path.join(manifest.data_dir, name)}: missing; {manifest.path} lists it "
                                   f"with {recorded[name]['records']} records (restore it, or convert again)")
    for name in sorted(set(present) - set(recorded)):
        raise DatasetMismatchError(f"{present[name]}: not listed in {manifest.path}; it is not part of this "
                                   "dataset (remove it, or convert again)")
    for name in sorted(recorded):
        size, expected = os.path.getsize(present[name]), int(recorded[name]["bytes"])
        if size != expected:
            raise DatasetMismatchError(f"{present[name]}: {size} bytes, but {manifest.path} records {expected}; "
                                       "the shard was truncated or changed after conversion (convert again)")
    listed = sum(int(entry["records"]) for entry in recorded.values())
    if listed != manifest.count(split, domain):
        raise DatasetMismatchError(f"{manifest.path}: counts {manifest.count(split, domain)} {split}/{domain} "
                                   f"slices but its shards hold {listed}; the manifest was edited or is not this "
                                   "dataset's (convert again)")
    return sorted(present[name] for name in recorded)


def expected_records(manifest: schema.Manifest, paths: list) -> list:
    """The recorded record count of each shard in `paths` (-1 where the manifest has none)."""
    recorded = manifest.raw.get(SHARDS_KEY) or {}
    return [int(recorded.get(relative_name(manifest.data_dir, p), {}).get("records", -1)) for p in paths]


def verify_checksums(manifest: schema.Manifest) -> list:
    """Every shard whose sha256 differs from the manifest's, as (path, problem); reads every byte."""
    problems = []
    for name, entry in sorted((manifest.raw.get(SHARDS_KEY) or {}).items()):
        path = os.path.join(manifest.data_dir, name)
        if not os.path.isfile(path):
            problems.append((path, "missing"))
        elif entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            problems.append((path, "sha256 differs from the manifest's"))
    return problems


def _check_complete_by_name(paths: list) -> None:
    """Shards named `<domain>-<i>-of-<n>` must all say the same n and hold every i below it."""
    by_count: dict = {}
    for path in paths:
        match = _SHARD_NAME.match(os.path.basename(path))
        if match:
            by_count.setdefault(int(match["count"]), set()).add(int(match["index"]))
    if len(by_count) > 1:
        raise DatasetMismatchError(f"{os.path.dirname(paths[0])}: shards of different sets side by side "
                                   f"(-of-{', -of-'.join(f'{n:05d}' for n in sorted(by_count))}); convert again")
    for count, indices in by_count.items():
        missing = sorted(set(range(count)) - indices)
        if missing:
            domain = _SHARD_NAME.match(os.path.basename(paths[0]))["domain"]
            path = os.path.join(os.path.dirname(paths[0]), schema.shard_name(domain, missing[0], count))
            raise DatasetMismatchError(f"{path}: missing ({len(missing)} of {count} shards missing); restore it, or "
                                       "convert again")
