"""From a read scan to labelled 2-D slices (DESIGN.md section 3).

Per volume: find the head (`head_mask`: a background-noise threshold, holes filled, the largest
connected component), percentile intensity normalisation to [-1, 1] over it; per slice: drop
slices with little head, pad to `image_size` (or shrink larger slices, masks by nearest
neighbour), and sort into tumor slices (at least `min_tumor_pixels` of whole tumor), normal
slices (no tumor, optionally `normal_margin` slices away from any tumor, and inside the head's
main axial extent: see `axial_extent`) and ambiguous slices (dropped). Every dropped slice is
counted under its reason (DROP_REASONS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_triangle
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
    min_brain_ratio: float = 0.5           # normal slices: head area >= this x the volume's largest


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
    position: np.ndarray = None      # (N,) place in the head's axial extent, 0 (first) .. 1; NaN for 2-D
    area_ratio: np.ndarray = None    # (N,) head area / the volume's largest head slice; NaN for 2-D
    pixel_hash: list = None          # (N,) hash of the slice's raw pixels, for duplicate detection
    dropped: dict = None             # reason -> number of slices dropped

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


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head (or the brain, when skull-stripped): (Z, Y, X) bool. Voxels above a background
    noise threshold (the triangle method on the histogram, whose tallest peak is the background:
    it sits just above the noise, so dark CSF and skull marrow stay in), of the channels scaled to
    their 99th percentile and combined by max; holes filled slice by slice (ventricles, sinuses);
    then the largest 3-D connected component, which drops noise specks and background streaks.
    A skull-stripped volume with an exact 0 background gives the brain itself. Slices of 128
    pixels or more are processed at every second pixel and the mask repeated back: the mask sets
    percentiles, areas and extents, none of which needs full resolution, and it is 4x faster."""
    step = 2 if min(image.shape[1:3]) >= 128 else 1
    small = image[:, ::step, ::step]
    scaled = np.zeros(small.shape[:-1], np.float32)
    for c in range(small.shape[-1]):
        channel = small[..., c].astype(np.float32)
        low = float(channel.min())
        high = float(np.percentile(channel.ravel()[::max(1, channel.size // _PERCENTILE_SAMPLES)], 99.0))
        np.maximum(scaled, (channel - low) / max(high - low, 1e-6), out=scaled)
    values = scaled.ravel()[::max(1, scaled.size // _PERCENTILE_SAMPLES)]
    if values.max() <= values.min():
        return np.zeros(image.shape[:3], bool)
    mask = scaled > threshold_triangle(values, nbins=256)
    mask = ndimage.binary_opening(mask, structure=np.ones((1, 3, 3), bool))
    mask = _fill_holes_per_slice(mask)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == (1 + int(np.argmax(sizes)))
    if step > 1:
        mask = mask.repeat(step, axis=1).repeat(step, axis=2)[:, :image.shape[1], :image.shape[2]]
    return mask


def reference_area(area: np.ndarray) -> float:
    """The volume's largest head slice, robustly: the median of the five largest slice areas, so
    one or two slices whose mask failed (a bright artefact filling the slice) do not set it."""
    top = np.sort(area)[-5:]
    return float(np.median(top)) if top.size else 0.0


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill each axial slice's holes: background pieces (4-connected within the slice) that do not
    touch the slice's border. One labelling of the whole volume, several times faster than
    `binary_fill_holes` slice by slice, which dilates iteratively."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(~mask, structure=in_plane)
    border = np.unique(np.concatenate([labels[:, 0, :].ravel(), labels[:, -1, :].ravel(),
                                       labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    return mask | ((labels > 0) & ~np.isin(labels, border))


def axial_extent(area: np.ndarray, min_ratio: float) -> np.ndarray:
    """Slices in the head's main axial extent: the longest unbroken run (one-slice gaps bridged)
    of slices whose area is between `min_ratio` and 1.5 x the reference area. This drops the
    pure-noise and scalp-top slices and stops at the neck, where the cross-section narrows, and
    at slices whose mask is far larger than any head slice; a face-level slice as wide as the
    brain can still pass, which --match_anatomy then removes."""
    inside = np.zeros(area.shape, bool)
    ref = reference_area(area)
    if ref <= 0:
        return inside
    big = (area >= min_ratio * ref) & (area <= 1.5 * ref)
    bridged = big.copy()
    bridged[1:-1] |= big[:-2] & big[2:]
    best, start = (0, 0), None
    for i, value in enumerate(np.append(bridged, False)):
        if value and start is None:
            start = i
        elif not value and start is not None:
            best = max(best, (i - start, -start))
            start = None
    length, first = best[0], -best[1]
    inside[first:first + length] = True
    return inside


def pixel_hashes(image: np.ndarray) -> list:
    """Per slice, a hash of its decoded raw pixels (dtype-independent: float32 values)."""
    import hashlib

    return [hashlib.blake2b(np.ascontiguousarray(s, np.float32).tobytes(), digest_size=16).hexdigest()
            for s in image]


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
        extent = axial_extent(area, options.min_brain_ratio)
        first, last = np.flatnonzero(extent)[[0, -1]] if extent.any() else (0, max(z - 1, 1))
        position = (np.arange(z) - first) / max(last - first, 1)
        area_ratio = area / max(reference_area(area), 1.0)
    index = np.flatnonzero(reason == "")
    # Scale only the slices kept: the bounds come from the whole head, the work from what is used.
    images, masks = fit_to_size(scale_to_unit(image[index], bounds), (mask[index] > 0).astype(np.uint8),
                                options.image_size)
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
                    dropped={r: int((reason == r).sum()) for r in DROP_REASONS if (reason == r).any()})
