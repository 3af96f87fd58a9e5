"""From a read scan to labelled 2-D slices (docs/formats.md).

Per volume: find the head (`head_mask`: a background-noise threshold, holes filled, the largest
connected component), percentile intensity normalisation to [-1, 1] over it, and the brain's
axial extent (`brain_extent`: at most `brain_length_mm` below the vertex, and the slices with
enough head); per slice: drop slices with little head, bring the rest to the common field of view
(`field_of_view`: `fit` scales the head's bounding box to a fixed fraction of the frame, `pad`
pads or shrinks as stored), and sort into tumor slices (at least `min_tumor_pixels` of whole
tumor), normal slices (no tumor, optionally `normal_margin` slices away from any tumor, and inside
the brain's axial extent) and ambiguous slices (dropped). Every dropped slice is counted under its
reason (DROP_REASONS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.scan import CaseError, Scan
from ssagan_tf.data.preprocess import (BRAIN_LENGTH_MM, CUT_TOP_AREA, FIELDS_OF_VIEW, PERCENTILES,  # noqa: F401
                                       VERTEX_AREA, axial_extent, below_vertex, brain_extent, fit_box, fit_to_size,
                                       foreground, frame_slices, head_box, head_mask, intensity_bounds,
                                       normalise_volume, reference_area, scale_to_unit)
from ssagan_tf.settings import setting


def _slice_range(text) -> tuple | None:
    """--slice_range START:STOP (either may be empty) -> (start, stop); not given: None."""
    if not text:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return tuple(int(p) if p else None for p in parts)
    except ValueError:
        raise ValueError("must be START:STOP with integers (either may be empty)") from None


def _percentiles(values) -> tuple:
    """--percentiles LOW,HIGH -> (low, high)."""
    try:
        numbers = tuple(float(v) for v in values)
    except ValueError:
        numbers = ()
    if len(numbers) != 2:
        raise ValueError("must be two numbers")
    return numbers


@dataclass(frozen=True)
class PrepOptions:
    """How one scan becomes slices; each field's help text is its flag's (`python -m
    data_prep.convert --help`). ConvertConfig checks the values."""

    image_size: int = setting(256, "Output slices are image_size x image_size (see --field_of_view; masks are "
                                   "resized by nearest neighbour). run_train.py takes multiples of 4 from 32 on; "
                                   "other sizes convert, with a warning, for the classifiers and the judge.")
    min_tumor_pixels: int = setting(20, "A tumor slice has at least this many whole-tumor pixels (after resizing; 1 "
                                        "to image_size^2); slices with fewer but some tumor are dropped.")
    normal_margin: int = setting(0, "Normal slices must be at least this many slices away from any slice with tumor.")
    slice_range: tuple | None = setting(       # (start, stop) axial indices, Python slice semantics
        None, "START:STOP, axial slices to consider (Python slice; either may be empty), after reorientation.",
        parse=_slice_range)
    min_brain_fraction: float = setting(0.05, "Drop slices of a volume whose head covers less than this fraction of "
                                              "the slice, in [0, 1).")
    percentiles: tuple = setting((0.5, 99.5), "Per-volume intensity clip percentiles over brain voxels.",
                                 flag_default=("0.5", "99.5"), parse=_percentiles)
    assume_normal: bool = setting(False, "With --no_masks: every brain slice is a normal slice.")
    min_brain_ratio: float = setting(
        0.5, "Normal slices of a volume must lie in the brain's axial extent: the unbroken run of slices with at "
        "least this fraction of the largest head slice's area, within --brain_length_mm of the vertex (drops "
        "noise-only and scalp-top slices).")
    brain_length_mm: float = setting(
        BRAIN_LENGTH_MM, "Normal slices of a volume must lie at most this many mm (by the volume's slice spacing) "
        "below the vertex, the top of the head: an adult brain spans about 110-130 mm from it, so neck, shoulders "
        "and face below are no normal brain. 0: no bound. Not applied when the head is cut at the volume's top.")
    field_of_view: str = setting(
        "fit", "How slices fill the image_size frame. fit: the head's bounding box (over the brain's extent; per "
        "image for 2-D slices) is scaled to 0.9 of the frame, enlarging or shrinking by the pixel spacing, one "
        "scale per volume, so image size and field of view do not tell classes apart. pad: as stored, padded "
        "centrally and shrunk only when larger than the frame (the earlier behaviour).", choices=FIELDS_OF_VIEW)


DROP_REASONS = ("slice_range", "little_brain", "outside_brain_extent", "ambiguous", "anatomy", "duplicate")


@dataclass
class SliceSet:
    """The slices one case contributes: images (N, S, S, C) float32 in [-1, 1], masks (N, S, S)
    uint8, labels (N,) int64 (0 normal, 1 tumor), slice indices (N,) in the source volume."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    slice_index: np.ndarray
    has_mask: bool
    normalisation: dict
    position: np.ndarray = None      # (N,) place in the brain's axial extent, 0 (first) .. 1; NaN for 2-D
    area_ratio: np.ndarray = None    # (N,) head area / the volume's largest head slice; NaN for 2-D
    pixel_hash: list = None          # (N,) hash of the slice's raw pixels, for duplicate detection
    dropped: dict = None             # reason -> number of slices dropped
    outside_extent: np.ndarray = None  # (N,) bool: a (tumor) slice outside the brain's extent, position 0 or 1

    @property
    def n_tumor(self) -> int:
        return int((self.labels == 1).sum())

    @property
    def n_normal(self) -> int:
        return int((self.labels == 0).sum())


def pixel_hashes(image: np.ndarray) -> list:
    """Per slice, a hash of its decoded raw pixels (dtype-independent: float32 values)."""
    import hashlib

    return [hashlib.blake2b(np.ascontiguousarray(s, np.float32).tobytes(), digest_size=16).hexdigest()
            for s in image]


def _near_tumor(tumor_any: np.ndarray, margin: int) -> np.ndarray:
    """Slices within `margin` slices of a slice with any tumor."""
    near = tumor_any.copy()
    for shift in range(1, margin + 1):
        near[shift:] |= tumor_any[:-shift]
        near[:-shift] |= tumor_any[shift:]
    return near


def slice_labels(scan: Scan, masks: np.ndarray, options: PrepOptions) -> np.ndarray:
    """Per slice: 1 tumor, 0 normal, -1 dropped (some tumor, but fewer than min_tumor_pixels, or
    too close to a tumor slice)."""
    z = masks.shape[0]
    if scan.mask is None:
        if options.assume_normal:
            return np.zeros(z, np.int64)
        if scan.ref.label is not None:
            return np.full(z, scan.ref.label, np.int64)
        raise CaseError(_main_path(scan), "no tumor mask: give masks, or --no_masks --assume_normal "
                                          "for a healthy cohort")
    tumor_pixels = masks.reshape(z, -1).sum(axis=1)
    labels = np.full(z, -1, np.int64)
    labels[tumor_pixels >= options.min_tumor_pixels] = 1
    native_any = scan.mask.reshape(scan.mask.shape[0], -1).any(axis=1)
    labels[~_near_tumor(native_any, options.normal_margin)] = 0
    return labels


def _main_path(scan: Scan) -> str:
    return str(next(iter(scan.ref.paths.values()), scan.case_id))


def prepare(scan: Scan, options: PrepOptions) -> SliceSet:
    """Normalise, select, fit and label the slices of one scan, counting the dropped ones."""
    image = scan.image
    if image.ndim != 4:
        raise CaseError(_main_path(scan), f"expected a (Z, Y, X, C) image, got shape {image.shape}")
    mask = scan.mask if scan.mask is not None else np.zeros(image.shape[:3], np.uint8)
    z = image.shape[0]
    head = head_mask(image) if scan.is_3d else foreground(image)
    bounds = intensity_bounds(image, head if head.any() else foreground(image), options.percentiles)
    reason = np.full(z, "", object)
    if options.slice_range is not None:
        outside = np.ones(z, bool)
        outside[slice(*options.slice_range)] = False
        reason[outside] = "slice_range"
    area = head.reshape(z, -1).sum(axis=1).astype(np.float64)
    position = np.full(z, np.nan)
    area_ratio = np.full(z, np.nan)
    extent = np.ones(z, bool)
    if scan.is_3d:
        reason[(reason == "") & (area / head[0].size < options.min_brain_fraction)] = "little_brain"
        extent = brain_extent(area, options.min_brain_ratio, scan.spacing[0], options.brain_length_mm)
        first, last = np.flatnonzero(extent)[[0, -1]] if extent.any() else (0, max(z - 1, 1))
        # 0 and 1 are the extent's ends: a tumor slice beyond them (kept wherever it is) counts at its end.
        position = np.clip((np.arange(z) - first) / max(last - first, 1), 0.0, 1.0)
        area_ratio = area / max(reference_area(area[extent] if extent.any() else area), 1.0)
    box = fit_box(image, head, extent, scan.is_3d) if options.field_of_view == "fit" else None
    index = np.flatnonzero(reason == "")
    # Scale only the slices kept: the bounds come from the whole head, the work from what is used.
    images, masks = frame_slices(scale_to_unit(image[index], bounds), (mask[index] > 0).astype(np.uint8),
                                 options.image_size, options.field_of_view, box, scan.spacing[1:3])
    fitted_masks = np.zeros((z,) + masks.shape[1:], np.uint8)
    fitted_masks[index] = masks
    labels_all = np.full(z, -1, np.int64)
    labels_all[index] = slice_labels(scan, fitted_masks, options)[index]
    reason[index[labels_all[index] < 0]] = "ambiguous"
    outside = index[(labels_all[index] == 0) & ~extent[index]]
    reason[outside] = "outside_brain_extent"
    labels_all[outside] = -1
    chosen = labels_all[index] >= 0
    kept = index[chosen]
    hashes = pixel_hashes(image[kept])
    return SliceSet(images=images[chosen], masks=masks[chosen], labels=labels_all[kept],
                    slice_index=kept.astype(np.int64), has_mask=scan.mask is not None,
                    normalisation={"percentiles": list(options.percentiles), "bounds": [list(b) for b in bounds]},
                    position=position[kept], area_ratio=area_ratio[kept], pixel_hash=hashes,
                    outside_extent=(~extent[kept]) if scan.is_3d else np.zeros(kept.size, bool),
                    dropped={r: int((reason == r).sum()) for r in DROP_REASONS if (reason == r).any()})
