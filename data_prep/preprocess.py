"""From a read scan to labelled 2-D slices (DESIGN.md section 3).

Per volume: percentile intensity normalisation to [-1, 1] over the brain; per slice: drop
near-empty slices, pad to `image_size` (or shrink larger slices, masks by nearest neighbour), and sort
into tumor slices (at least `min_tumor_pixels` of whole tumor), normal slices (no tumor, and
optionally `normal_margin` slices away from any tumor) and ambiguous slices (dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import resize

from data_prep.scan import CaseError, Scan


@dataclass(frozen=True)
class PrepOptions:
    image_size: int = 256
    min_tumor_pixels: int = 20
    normal_margin: int = 0
    slice_range: tuple | None = None       # (start, stop) axial indices, Python slice semantics
    min_brain_fraction: float = 0.05
    percentiles: tuple = (0.5, 99.5)
    assume_normal: bool = False


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

    @property
    def n_tumor(self) -> int:
        return int((self.labels == 1).sum())

    @property
    def n_normal(self) -> int:
        return int((self.labels == 0).sum())


def foreground(image: np.ndarray) -> np.ndarray:
    """Brain voxels: above the volume's background value in any channel. Skull-stripped MRI has
    an exact background (usually 0); the minimum is used so that shifted backgrounds work too."""
    background = image.reshape(-1, image.shape[-1]).min(axis=0)
    if image.shape[-1] == 1:
        return image[..., 0] > background[0]
    return (image > background).any(axis=-1)


# Percentiles of a regular subsample of this many brain voxels differ from the exact ones by far
# less than the noise, at a fraction of the cost on BraTS-sized volumes.
_PERCENTILE_SAMPLES = 1 << 18


def intensity_bounds(image: np.ndarray, brain: np.ndarray, percentiles=(0.5, 99.5)) -> list:
    """Per channel, the (low, high) intensity percentiles over brain voxels."""
    bounds = []
    for c in range(image.shape[-1]):
        channel = image[..., c]
        values = channel[brain] if brain.any() else channel.ravel()
        values = values[::max(1, values.size // _PERCENTILE_SAMPLES)]
        low, high = (float(v) for v in np.percentile(values, percentiles))
        bounds.append((low, high if high > low else low + 1.0))
    return bounds


def scale_to_unit(image: np.ndarray, bounds) -> np.ndarray:
    """Map each channel's [low, high] linearly onto [-1, 1] and clip (in place on a float32 copy)."""
    out = np.array(image, dtype=np.float32)
    for c, (low, high) in enumerate(bounds):
        channel = out[..., c]
        channel -= low
        channel *= 2.0 / (high - low)
        channel -= 1.0
    return np.clip(out, -1.0, 1.0, out=out)


def normalise_volume(image: np.ndarray, brain: np.ndarray, percentiles=(0.5, 99.5)):
    """Per-channel percentile clip over brain voxels, then linear scaling to [-1, 1].
    Returns the scaled volume and the (low, high) intensities used for each channel."""
    bounds = intensity_bounds(image, brain, percentiles)
    return scale_to_unit(image, bounds), bounds


def fit_to_size(images: np.ndarray, masks: np.ndarray, size: int):
    """Pad slices (N, Y, X, C) centrally with background (-1) to a square of at least `size`;
    when that square is larger than `size`, shrink it (images linearly with anti-aliasing, masks
    by nearest neighbour). Smaller slices are padded, never enlarged, so pixel spacing is kept
    (BraTS 240^2 slices become 256^2 with an 8-pixel border)."""
    n, height, width, channels = images.shape
    side = max(height, width, size)
    top, left = (side - height) // 2, (side - width) // 2
    square = np.full((n, side, side, channels), -1.0, np.float32)
    square[:, top:top + height, left:left + width] = images
    square_masks = np.zeros((n, side, side), np.uint8)
    square_masks[:, top:top + height, left:left + width] = masks
    if side == size:
        return square, square_masks
    # One 2-D resize of all slices and channels stacked on the last axis: interpolating in 2-D
    # only, not across slices, is both right and several times faster than a 4-D zoom.
    stacked = square.transpose(1, 2, 0, 3).reshape(side, side, n * channels)
    resized = resize(stacked, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    images = resized.reshape(size, size, n, channels).transpose(2, 0, 1, 3).astype(np.float32)
    mask_stack = resize(square_masks.transpose(1, 2, 0), (size, size), order=0, anti_aliasing=False,
                        preserve_range=True)
    return np.clip(images, -1.0, 1.0), mask_stack.transpose(2, 0, 1).astype(np.uint8)


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
    """Normalise, select, fit and label the slices of one scan."""
    image = scan.image
    if image.ndim != 4:
        raise CaseError(_main_path(scan), f"expected a (Z, Y, X, C) image, got shape {image.shape}")
    mask = scan.mask if scan.mask is not None else np.zeros(image.shape[:3], np.uint8)
    brain = foreground(image)
    bounds = intensity_bounds(image, brain, options.percentiles)
    keep = np.ones(image.shape[0], bool)
    if options.slice_range is not None:
        start, stop = options.slice_range
        keep[:] = False
        keep[slice(start, stop)] = True
    if scan.is_3d:
        brain_fraction = brain.reshape(brain.shape[0], -1).mean(axis=1)
        keep &= brain_fraction >= options.min_brain_fraction
    index = np.flatnonzero(keep)
    # Scale only the slices kept: the bounds come from the whole brain, the work from what is used.
    images, masks = fit_to_size(scale_to_unit(image[index], bounds), (mask[index] > 0).astype(np.uint8),
                                options.image_size)
    labels_all = np.full(image.shape[0], -1, np.int64)
    fitted_masks = np.zeros((image.shape[0],) + masks.shape[1:], np.uint8)
    fitted_masks[index] = masks
    labels_all[index] = slice_labels(scan, fitted_masks, options)[index]
    chosen = labels_all[index] >= 0
    return SliceSet(images=images[chosen], masks=masks[chosen], labels=labels_all[index][chosen],
                    slice_index=index[chosen].astype(np.int64), has_mask=scan.mask is not None,
                    normalisation={"percentiles": list(options.percentiles),
                                   "bounds": [list(b) for b in bounds]})
