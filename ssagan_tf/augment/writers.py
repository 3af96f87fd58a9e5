"""Writing one chunk of synthetic slices in each output format, into a staging directory; the
caller moves the files into place (see `ledger.Ledger.commit`).

    tfrecord  <split>/<domain>-<i>-of-<n>.tfrecord   the real data's schema, float32 images, uncompressed
    png       <split>/<domain>/<case>_s<slice>[_r<k>].png (16-bit) and, for synthetic tumors with
              a pseudo-mask, <...>_mask.png (8-bit, 0/255)
    nifti     <split>/<domain>/<case>.nii.gz (float32 stack in slice order) and <case>_mask.nii.gz

`domain` is the synthetic slices' class. Every name component derived from data (case ids) goes
through `safe_name`, so no input can place a file outside the output directory.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ssagan_tf.data import schema

MANIFEST_COLUMNS = ("output_path", "output_index", "mask_path", "label", "has_mask", "direction",
                    "source_case", "source_slice", "source_record", "model", "model_version")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, limit: int = 80) -> str:
    """A file-name component for `text`: unsafe characters replaced, no leading dots; when anything
    changed, a hash of the original keeps distinct ids distinct. A name ending in `_mask` is also
    hashed, so that no image can be taken for another image's mask."""
    cleaned = _UNSAFE.sub("_", text).strip("._-")[:limit]
    if cleaned == text and cleaned and not cleaned.endswith("_mask"):
        return cleaned
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned or 'case'}-{digest}"


@dataclass(frozen=True)
class WriteContext:
    """What every chunk writer needs besides the chunk."""

    split: str
    model: str
    model_version: str
    mask_threshold: float
    has_attention: bool
    ambiguous: frozenset = frozenset()   # (domain, case_id, slice_index) seen more than once
    geometry: object = None              # case_id -> sources.Geometry or None

    def source_string(self, item) -> str:
        ref = item.ref
        return f"synthetic:{self.model}/{self.model_version}:{ref.case_id}:{ref.slice_index}:{item.direction}"


def pseudo_mask(item, attention: np.ndarray, ctx: WriteContext):
    """(mask [H, W] uint8, has_mask): thresholded attention for synthetic tumors of an attention
    model, an empty mask otherwise."""
    if item.target_domain == "tumor" and ctx.has_attention:
        return (attention[..., 0] >= ctx.mask_threshold).astype(np.uint8), True
    return np.zeros(attention.shape[:2], np.uint8), False


def _row(item, ctx, output_path, output_index, mask_path, has_mask) -> dict:
    return {"output_path": output_path, "output_index": output_index, "mask_path": mask_path,
            "label": schema.LABELS[item.target_domain], "has_mask": int(has_mask), "direction": item.direction,
            "source_case": item.ref.case_id, "source_slice": item.ref.slice_index, "source_record": item.ref.source,
            "model": ctx.model, "model_version": ctx.model_version}


def write_tfrecord_chunk(chunk, outputs, ctx: WriteContext, staging: str):
    """One shard per chunk; `outputs` is [(image [H, W, C], attention [H, W, 1])] in item order."""
    domain = chunk.items[0].target_domain
    relative = f"{ctx.split}/{schema.shard_name(domain, chunk.index, chunk.count)}"
    temp = os.path.join(staging, "shard.tfrecord")
    rows = []
    with tf.io.TFRecordWriter(temp) as writer:
        for index, (item, (image, attention)) in enumerate(zip(chunk.items, outputs)):
            mask, has_mask = pseudo_mask(item, attention, ctx)
            writer.write(schema.serialize_slice(image, mask, has_mask, schema.LABELS[domain], item.ref.case_id,
                                                ctx.source_string(item), item.ref.slice_index))
            rows.append(_row(item, ctx, relative, index, "", has_mask))
    return [(temp, relative)], rows


def _png_stem(item, ctx: WriteContext) -> str:
    ref = item.ref
    stem = f"{safe_name(ref.case_id)}_s{ref.slice_index:04d}"
    if (ref.domain, ref.case_id, ref.slice_index) in ctx.ambiguous:
        stem += f"_p{ref.position}"
    return stem + (f"_r{item.replicate}" if item.replicate else "")


def to_uint16(image: np.ndarray) -> np.ndarray:
    """[-1, 1] -> 0..65535."""
    return np.round((np.clip(image, -1.0, 1.0) + 1.0) * 32767.5).astype(np.uint16)


def write_png_chunk(chunk, outputs, ctx: WriteContext, staging: str):
    files, rows = [], []
    for i, (item, (image, attention)) in enumerate(zip(chunk.items, outputs)):
        folder = f"{ctx.split}/{item.target_domain}"
        stem = _png_stem(item, ctx)
        temp = os.path.join(staging, f"{i}.png")
        tf.io.write_file(temp, tf.io.encode_png(to_uint16(image)))
        files.append((temp, f"{folder}/{stem}.png"))
        mask, has_mask = pseudo_mask(item, attention, ctx)
        mask_path = ""
        if has_mask:
            mask_temp = os.path.join(staging, f"{i}_mask.png")
            tf.io.write_file(mask_temp, tf.io.encode_png(mask[..., None] * np.uint8(255)))
            mask_path = f"{folder}/{stem}_mask.png"
            files.append((mask_temp, mask_path))
        rows.append(_row(item, ctx, f"{folder}/{stem}.png", 0, mask_path, has_mask))
    return files, rows


def write_nifti_chunk(chunk, outputs, ctx: WriteContext, staging: str):
    """One volume (and mask volume) per source case and direction: slices stacked along z in
    slice order; the source volume's grid where it is known, else 1 mm isotropic at the origin."""
    import SimpleITK as sitk

    folder = f"{ctx.split}/{chunk.items[0].target_domain}"
    stem = safe_name(chunk.case_id)
    images = np.stack([image for image, _ in outputs]).astype(np.float32)
    masks = [pseudo_mask(item, attention, ctx) for item, (_, attention) in zip(chunk.items, outputs)]
    has_mask = masks[0][1]
    volume = sitk.GetImageFromArray(images if images.shape[-1] > 1 else images[..., 0],
                                    isVector=images.shape[-1] > 1)
    geometry = ctx.geometry(chunk.case_id) if ctx.geometry else None
    geometry = _from_slice(geometry, chunk.items[0].ref.slice_index)
    _set_grid(volume, geometry)
    files = [(os.path.join(staging, "image.nii.gz"), f"{folder}/{stem}.nii.gz")]
    sitk.WriteImage(volume, files[0][0], useCompression=True)
    mask_path = ""
    if has_mask:
        mask_volume = sitk.GetImageFromArray(np.stack([m for m, _ in masks]))
        _set_grid(mask_volume, geometry)
        mask_path = f"{folder}/{stem}_mask.nii.gz"
        files.append((os.path.join(staging, "mask.nii.gz"), mask_path))
        sitk.WriteImage(mask_volume, files[1][0], useCompression=True)
    rows = [_row(item, ctx, files[0][1], z, mask_path, has_mask) for z, item in enumerate(chunk.items)]
    return files, rows


def _from_slice(geometry, first_slice: int):
    """The grid with its origin moved to the stack's first source slice (z spacing is the source's;
    manifest.csv gives the source slice of every z when the stack skips slices)."""
    if geometry is None:
        return None
    direction = np.asarray(geometry.direction, float).reshape(3, 3)
    origin = np.asarray(geometry.origin, float) + direction @ np.array([0.0, 0.0, first_slice * geometry.spacing[2]])
    return type(geometry)(geometry.spacing, tuple(float(v) for v in origin), geometry.direction)


def _set_grid(image, geometry) -> None:
    if geometry is None:
        return
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)


WRITERS = {"tfrecord": write_tfrecord_chunk, "png": write_png_chunk, "nifti": write_nifti_chunk}
