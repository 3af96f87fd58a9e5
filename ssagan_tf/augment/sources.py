"""Where the real slices come from: the converter's TFRecords, or class folders of PNG slices or
NIfTI volumes preprocessed here as the converter does (per-volume percentile normalisation to
[-1, 1], the slices brought to the model's frame in the field of view `ssagan_tf.augment.framing`
chooses: `fit` or `pad`, as `data_prep.convert --field_of_view`).

A source lists the slices of each domain in a fixed order (`refs`; a slice's `position` is its
index in that order) and streams the images of requested positions in that order (`stream`), so
that a sampled plan is served by one sequential read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from absl import logging

from ssagan_tf.augment.framing import FramingChoice, converted_framing
from ssagan_tf.data import integrity, pipeline, preprocess, schema, volumes

_PNG = (".png",)
_NIFTI = (".nii", ".nii.gz")


@dataclass(frozen=True)
class SliceRef:
    """One real slice: its domain, its index in that domain's read order, and where it came from."""

    domain: str
    position: int
    case_id: str
    slice_index: int
    source: str


@dataclass(frozen=True)
class Geometry:
    """The physical grid of a fitted source volume, SimpleITK order (x, y, z)."""

    spacing: tuple
    origin: tuple
    direction: tuple


def _batched(pairs, batch_size: int):
    images, positions = [], []
    for image, position in pairs:
        images.append(image)
        positions.append(position)
        if len(images) == batch_size:
            yield np.stack(images), np.asarray(positions, np.int64)
            images, positions = [], []
    if images:
        yield np.stack(images), np.asarray(positions, np.int64)


class TFRecordSource:
    """A split of a converted dataset (`dataset`, the `schema.Dataset` `open_source` opened), read
    through `ssagan_tf.data.pipeline`."""

    kind = "tfrecord"

    def __init__(self, dataset: schema.Dataset, split: str):
        self.dataset = dataset
        self.data_dir = dataset.data_dir
        self.split = split
        manifest = dataset.manifest
        if split not in manifest.counts:
            raise ValueError(f"--split={split}: {self.data_dir} has no such split; its splits are "
                             f"{', '.join(sorted(manifest.counts))}")
        if integrity.legacy_warning(manifest):
            logging.warning(integrity.legacy_warning(manifest))
        self.image_shape = (dataset.image_size, dataset.image_size, dataset.channels)
        self.framing = preprocess.recorded_framing(manifest.raw)   # None: the manifest does not say
        self.framing_line = ""                                           # why (set by open_source)
        self._refs = {}

    def refs(self, domain: str) -> list:
        if domain not in self._refs:
            self._refs[domain] = self._read_refs(domain)
        return self._refs[domain]

    def _read_refs(self, domain: str) -> list:
        if not integrity.check_shards(self.dataset.manifest, self.split, domain):
            return []
        refs = []
        keys = ("case_id", "slice_index", "source")
        slices = pipeline.make_slice_dataset(self.dataset, self.split, domain, batch_size=512)
        slices = slices.map(lambda ex: {k: ex[k] for k in keys})
        with pipeline.shard_errors_named(self.dataset):
            for batch in slices.as_numpy_iterator():
                for case_id, slice_index, source in zip(batch["case_id"], batch["slice_index"], batch["source"]):
                    refs.append(SliceRef(domain, len(refs), case_id.decode("utf-8"), int(slice_index),
                                         source.decode("utf-8")))
        return refs

    def stream(self, domain: str, positions: np.ndarray, batch_size: int):
        """Yield (images [B, H, W, C] float32, positions [B]) for the sorted unique `positions`."""
        if len(positions) == 0:
            return
        wanted = np.zeros(len(self.refs(domain)), bool)
        wanted[positions] = True
        wanted = tf.constant(wanted)
        slices = pipeline.make_slice_dataset(self.dataset, self.split, domain, batch_size=256).unbatch()
        slices = (slices.enumerate()
                  .filter(lambda i, ex: wanted[i])
                  .map(lambda i, ex: (ex["image"], i))
                  .take(len(positions))
                  .batch(batch_size)
                  .prefetch(2))
        with pipeline.shard_errors_named(self.dataset):
            yield from slices.as_numpy_iterator()

    def geometry(self, case_id: str):
        """Unknown: the converter does not record the volumes' physical grid."""
        return None

    def checksum(self) -> str:
        """The identity of the split's data: the manifest's record of its shards (sizes and sha256)
        and normalisation, so a re-conversion with other settings reads as other data, wherever
        the folder lies. A manifest without shard records: its own bytes (`Manifest.sha256`)."""
        raw = self.dataset.manifest.raw
        if "shards" not in raw:
            return "manifest-sha256:" + self.dataset.manifest.sha256
        prefix = f"{self.split}/"
        identity = {"shards": {k: v for k, v in raw["shards"].items() if k.startswith(prefix)},
                    "counts": raw["counts"].get(self.split), "normalisation": raw.get("normalisation"),
                    "image_size": raw.get("image_size"), "channels": raw.get("channels"),
                    "modalities": raw.get("modalities")}
        return "shards-sha256:" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def description(self) -> dict:
        raw = self.dataset.manifest.raw
        return {"kind": self.kind, "data_dir": os.path.abspath(self.data_dir), "split": self.split,
                "modalities": list(raw.get("modalities", [])), "normalisation": raw.get("normalisation", {}),
                "field_of_view": self.framing["field_of_view"] if self.framing else None}


class FileSource:
    """Class folders `<data_dir>/normal/` and `<data_dir>/tumor/`, each holding 2-D PNG slices (8- or
    16-bit grayscale; one case per file) and/or NIfTI volumes (`.nii`, `.nii.gz`; one case per
    file, its axial slices after reorientation to LPS, near-empty slices dropped). Files whose name
    ends in `_mask` are skipped. Every slice in a folder belongs to that folder's class. Each file
    is prepared as the converter prepares a case (`preprocess.plan_framing`) in the field of view
    of `framing` (default `pad`): with `fit`, the head's box over the volume's brain extent (a PNG:
    its own head mask), scaled by the pixel spacing to a fixed fraction of the frame."""

    kind = "files"

    def __init__(self, data_dir: str, image_shape: tuple, framing: FramingChoice | None = None):
        if image_shape[2] != 1:
            raise ValueError(f"{data_dir}: PNG/NIfTI inputs are single-channel but the model takes "
                             f"{image_shape[2]} channels; convert multi-modal data with data_prep.convert "
                             "and augment from its TFRecords")
        self.data_dir = data_dir
        self.image_shape = image_shape
        self.choice = framing or FramingChoice("pad")
        self.framing = self.choice.record()
        self.framing_line = self.choice.reason
        self.files = {d: _class_files(os.path.join(data_dir, d)) for d in schema.DOMAINS}
        if not any(self.files.values()):
            raise FileNotFoundError(f"{data_dir}: neither a converted dataset (manifest.json) nor class folders "
                                    "normal/ and tumor/ with .png, .nii or .nii.gz files")
        self._refs, self._kept, self._geometry, self._plans = {}, {}, {}, {}

    def refs(self, domain: str) -> list:
        if domain not in self._refs:
            refs = []
            for path in self.files[domain]:
                case_id = _case_id(path, os.path.join(self.data_dir, domain))
                kept, geometry = self._index(path)
                self._kept[path] = kept
                self._geometry[case_id] = geometry
                refs += [SliceRef(domain, len(refs) + i, case_id, z, f"file:{os.path.abspath(path)}")
                         for i, z in enumerate(kept)]
            self._refs[domain] = refs
        return self._refs[domain]

    def stream(self, domain: str, positions: np.ndarray, batch_size: int):
        wanted = set(int(p) for p in positions)
        return _batched(self._wanted_slices(domain, wanted), batch_size)

    def _wanted_slices(self, domain: str, wanted: set):
        position = 0
        for path in self.files[domain]:
            count = len(self._kept[path])
            if wanted.intersection(range(position, position + count)):
                for i, (_, image) in enumerate(self._read(path)):
                    if position + i in wanted:
                        yield image, position + i
            position += count

    def _plan(self, path: str, volume: np.ndarray, spacing_zyx: tuple, is_3d: bool):
        """The file's preparation (`preprocess.Framing`: kept slices, bounds, frame region), planned
        once, when the file is indexed, and kept (it is small) for the reads that follow."""
        if path not in self._plans:
            choice = self.choice
            self._plans[path] = preprocess.plan_framing(
                volume, self.image_shape[0], is_3d, choice.field_of_view, spacing_zyx,
                min_brain_ratio=choice.min_brain_ratio, brain_length_mm=choice.brain_length_mm)
        return self._plans[path]

    def _index(self, path: str):
        """The slice indices a file contributes, and its fitted grid (None for PNG), without the
        normalisation and resizing that `_read` does."""
        if path.lower().endswith(_PNG):
            self._plan(path, _read_png(path)[None], (1.0,) + _png_spacing(path), is_3d=False)
            return [0], None
        volume, geometry = _read_nifti(path)
        plan = self._plan(path, volume, tuple(reversed(geometry.spacing)), is_3d=True)
        return plan.kept.tolist(), _fitted_geometry(geometry, plan.region, self.image_shape[0])

    def _read(self, path: str):
        """[(slice_index, fitted image [H, W, 1])] of a file, prepared as the converter prepares it
        (`ssagan_tf.data.preprocess.plan_framing`, `apply_framing`)."""
        if path.lower().endswith(_PNG):
            image = _read_png(path)[None]
            plan = self._plan(path, image, (1.0,) + _png_spacing(path), is_3d=False)
            return [(0, preprocess.apply_framing(image, plan)[0])]
        volume, geometry = _read_nifti(path)
        plan = self._plan(path, volume, tuple(reversed(geometry.spacing)), is_3d=True)
        return list(zip(plan.kept.tolist(), preprocess.apply_framing(volume, plan)))

    def geometry(self, case_id: str):
        return self._geometry.get(case_id)

    def checksum(self) -> str:
        """The identity of the input: every file's class, path below its class folder and bytes."""
        digest = hashlib.sha256()
        for domain in schema.DOMAINS:
            for path in self.files[domain]:
                digest.update(f"{domain}/{_case_id(path, os.path.join(self.data_dir, domain))}\0".encode())
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
        return "files-sha256:" + digest.hexdigest()

    def description(self) -> dict:
        return {"kind": self.kind, "data_dir": os.path.abspath(self.data_dir), "modalities": ["image"],
                "normalisation": {"method": "per-volume percentile clip over brain voxels, scaled to [-1, 1]",
                                  "percentiles": list(preprocess.PERCENTILES), "background": schema.BACKGROUND},
                "field_of_view": self.choice.field_of_view}


def open_source(data_dir: str, split: str, image_shape: tuple, framing: FramingChoice | None = None,
                requested: str = "auto"):
    """A TFRecordSource when `data_dir` holds a converted dataset (`--field_of_view=requested`
    checked against its manifest, `framing.converted_framing`), else a FileSource framed as
    `framing` says (default `pad`). Logs the field of view used and why."""
    framing = framing or FramingChoice("pad", reason="field of view pad")
    if os.path.isfile(os.path.join(data_dir, schema.MANIFEST_NAME)):
        source = TFRecordSource(schema.open(data_dir), split)
        if source.image_shape != tuple(image_shape):
            raise ValueError(f"{data_dir}: slices are {source.image_shape} (H, W, C) but the model takes "
                             f"{tuple(image_shape)}")
        _, source.framing_line = converted_framing(requested, framing, source.dataset.manifest.raw, data_dir)
        logging.info("%s", source.framing_line)
        return source
    source = FileSource(data_dir, tuple(image_shape), framing)
    source.framing_line = framing.reason
    (logging.warning if framing.trained is None and requested == "auto" else logging.info)("%s", framing.reason)
    return source


def _class_files(folder: str) -> list:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            lower = name.lower()
            if name.startswith(".") or not lower.endswith(_PNG + _NIFTI):
                continue
            if _strip_extension(name).endswith("_mask"):
                continue
            found.append(os.path.join(root, name))
    return found


def _strip_extension(name: str) -> str:
    for ext in (".nii.gz", ".nii", ".png"):
        if name.lower().endswith(ext):
            return name[:-len(ext)]
    return name


def _case_id(path: str, folder: str) -> str:
    relative = os.path.relpath(path, folder)
    return _strip_extension(relative).replace(os.sep, "/")


def _read_png(path: str) -> np.ndarray:
    """[H, W, 1] float32 raw intensities of an 8- or 16-bit PNG (colour is converted to gray)."""
    data = tf.io.read_file(path)
    return tf.io.decode_png(data, channels=1, dtype=tf.uint16).numpy().astype(np.float32)


def _png_spacing(path: str) -> tuple:
    """The (row, column) pixel spacing a PNG records, read as the converter reads it (SimpleITK:
    its pHYs chunk, 1 mm without one)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ValueError(f"{path}: unreadable: {volumes.sitk_reason(err)}") from None
    spacing = tuple(float(v) for v in reader.GetSpacing()[:2])
    return spacing[1], spacing[0]


def _read_nifti(path: str):
    """(Z, Y, X, 1) float32 in LPS orientation, and its Geometry, read and checked (NaN/Inf,
    truncation, empty volumes) as the converter reads volumes (`ssagan_tf.data.volumes`)."""
    try:
        volume = volumes.read_volume(path)
        volumes.check_intensities(volume)
    except volumes.CaseError as err:
        raise ValueError(str(err)) from None
    geometry = Geometry(tuple(reversed(volume.spacing)), volume.origin, volume.direction)
    return np.asarray(volume.array, np.float32)[..., None], geometry


def _fitted_geometry(geometry: Geometry, region: tuple, size: int) -> Geometry:
    """The grid of the framed slices: the frame `region` (first row, end row, first column, end
    column, in source pixels; `preprocess.frame_region`, `pad` or `fit`) resized to `size` x
    `size`. Output voxel (i, j) has its centre at source column c0 + (j + 0.5) (c1 - c0) / size
    - 0.5 and row r0 + (i + 0.5) (r1 - r0) / size - 0.5, which gives spacing and origin."""
    r0, r1, c0, c1 = region
    scale_x, scale_y = (c1 - c0) / size, (r1 - r0) / size
    first = np.array([c0 + 0.5 * scale_x - 0.5, r0 + 0.5 * scale_y - 0.5, 0.0])
    spacing = np.asarray(geometry.spacing, float)
    direction = np.asarray(geometry.direction, float).reshape(3, 3)
    origin = np.asarray(geometry.origin, float) + direction @ (first * spacing)
    new_spacing = (spacing[0] * scale_x, spacing[1] * scale_y, spacing[2])
    return Geometry(tuple(float(v) for v in new_spacing), tuple(float(v) for v in origin), geometry.direction)
