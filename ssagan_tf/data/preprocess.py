"""Slice preprocessing shared by the converter (`data_prep`) and augmentation's file inputs, so a
slice augmented from a NIfTI volume or a PNG is prepared as conversion prepares it: the head
found per volume (`head_mask`), per-channel percentile normalisation over it to [-1, 1]
(`normalise_volume`), slices with little head dropped, and each slice brought to the model's
frame (`frame_slices`, `frame_region`: the converter's default `fit` field of view scales the
head's bounding box, `fit_box`, over the brain's axial extent, `brain_extent`, to a fixed fraction
of the frame; `pad` pads or shrinks as stored). Augmentation plans a file's preparation with
`plan_framing` and applies it with `apply_framing`, in the field of view of the model's training
data. Plain numpy, scipy and scikit-image; no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_triangle
from skimage.transform import resize

from ssagan_tf.data import schema

PERCENTILES = (0.5, 99.5)          # the converter's default percentile clip
MIN_BRAIN_FRACTION = 0.05          # the converter's default: slices with less head than this are dropped


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


BRAIN_LENGTH_MM = 120.0     # the default bound of the brain's extent below the vertex (see brain_extent)
VERTEX_AREA = 0.01          # the vertex: the highest slice whose head area is this fraction of the largest
CUT_TOP_AREA = 0.25         # a top slice with this much of the largest head area: the vertex is not in the volume
MIN_BRAIN_RATIO = 0.5       # the converter's default: normal slices' head area >= this x the largest


def axial_extent(area: np.ndarray, min_ratio: float, window: np.ndarray | None = None) -> np.ndarray:
    """Slices in the head's main axial extent: the longest unbroken run (one-slice gaps bridged)
    of slices in `window` (default: all) whose area is between `min_ratio` and 1.5 x the reference
    area of the window's slices. This drops the pure-noise and scalp-top slices, stops where the
    cross-section narrows and at slices whose mask is far larger than any head slice. A neck and
    shoulders as wide as the head do not stop it: `brain_extent` bounds the window for that."""
    inside = np.zeros(area.shape, bool)
    window = np.ones(area.shape, bool) if window is None else window
    ref = reference_area(area[window])
    if ref <= 0:
        return inside
    big = window & (area >= min_ratio * ref) & (area <= 1.5 * ref)
    bridged = big.copy()
    bridged[1:-1] |= big[:-2] & big[2:] & window[1:-1]
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


def below_vertex(area: np.ndarray, spacing_z: float, length_mm: float) -> np.ndarray:
    """Slices at most `length_mm` below the vertex, Z running inferior to superior: the brain
    spans about 110-130 mm from the vertex's inner table in adults, so slices farther down hold
    skull base, face, neck and shoulders. The vertex is the highest slice whose head area is
    VERTEX_AREA of the largest head slice within `length_mm` of the volume's top (shoulders below
    cannot set it). Every slice when `length_mm` is 0, when the volume holds no head, or when the
    head is cut at the top (the highest head slice has CUT_TOP_AREA of that largest area or more,
    blank padding slices above it or not: there is no vertex to measure from)."""
    everything = np.ones(area.shape, bool)
    if length_mm <= 0 or not area.size:
        return everything
    depth_from_top = (area.size - 1 - np.arange(area.size)) * float(spacing_z)
    largest = float(area[depth_from_top <= length_mm].max())
    headed = np.flatnonzero(area >= VERTEX_AREA * largest) if largest > 0 else []
    if not len(headed) or area[headed[-1]] >= CUT_TOP_AREA * largest:
        return everything
    depth_mm = (headed[-1] - np.arange(area.size)) * float(spacing_z)
    return depth_mm <= length_mm


def brain_extent(area: np.ndarray, min_ratio: float, spacing_z: float, length_mm: float) -> np.ndarray:
    """The brain's axial extent, where normal slices may come from: the head's main axial extent
    (`axial_extent`) within `length_mm` below the vertex (`below_vertex`)."""
    return axial_extent(area, min_ratio, below_vertex(area, spacing_z, length_mm))


FIELD_OF_VIEW_FRACTION = 0.9      # 'fit': the head's bounding box spans this fraction of the frame's side
FIELDS_OF_VIEW = ("fit", "pad")


def fit_to_size(images: np.ndarray, masks: np.ndarray, size: int):
    """The `pad` field of view: slices (N, Y, X, C) padded centrally with background (-1,
    `schema.BACKGROUND`) to a square of at least `size`; when that square is larger than `size`,
    shrunk (images linearly with anti-aliasing, masks by nearest neighbour). Smaller slices are
    padded, never enlarged, so pixel spacing is kept (BraTS 240^2 slices become 256^2 with an
    8-pixel border)."""
    return _crop_and_resize(images, masks, pad_region(images.shape[1:3], size), size)


def pad_region(shape_yx: tuple, size: int) -> tuple:
    """The region (first row, end row, first column, end column; it may reach outside the image)
    that `fit_to_size` resizes to `size` x `size` for slices of `shape_yx` (Y, X)."""
    height, width = shape_yx
    side = max(height, width, size)
    top, left = (side - height) // 2, (side - width) // 2
    return -top, -top + side, -left, -left + side


def head_box(head: np.ndarray):
    """The in-plane bounding box (top, bottom, left, right; ends exclusive) of a (Z, Y, X) mask
    over all its slices, or None when it is empty."""
    rows, cols = np.flatnonzero(head.any(axis=(0, 2))), np.flatnonzero(head.any(axis=(0, 1)))
    if not rows.size:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def fit_field_of_view(images: np.ndarray, masks: np.ndarray, size: int, box, spacing_yx=(1.0, 1.0),
                      fraction: float = FIELD_OF_VIEW_FRACTION):
    """The `fit` field of view: every slice (N, Y, X, C) cut to one square region centred on the
    head's bounding box `box` (top, bottom, left, right) whose side, in millimetres, is the box's
    longer side over `fraction` (background -1 where the region leaves the image), then resized to
    `size` x `size` (enlarged or shrunk; images linearly, anti-aliased when shrinking, masks by
    nearest neighbour). So the head spans `fraction` of the frame whatever the image's size or
    pixel spacing; non-square pixels come out square. One region for all slices of a volume."""
    return _crop_and_resize(images, masks, fit_region(box, spacing_yx, fraction), size)


def fit_region(box, spacing_yx=(1.0, 1.0), fraction: float = FIELD_OF_VIEW_FRACTION) -> tuple:
    """The region (first row, end row, first column, end column; it may reach outside the image)
    that `fit_field_of_view` cuts around the head's `box` and resizes to the frame."""
    top, bottom, left, right = box
    row_mm, col_mm = (float(s) for s in spacing_yx)
    side_mm = max((bottom - top) * row_mm, (right - left) * col_mm) / fraction
    rows, cols = max(1, int(round(side_mm / row_mm))), max(1, int(round(side_mm / col_mm)))
    first_row = int(round((top + bottom - rows) / 2))
    first_col = int(round((left + right - cols) / 2))
    return first_row, first_row + rows, first_col, first_col + cols


def frame_region(shape_yx: tuple, size: int, field_of_view: str = "pad", box=None, spacing_yx=(1.0, 1.0)) -> tuple:
    """The region of slices of `shape_yx` that `frame_slices` brings to the `size` x `size` frame:
    output pixel (i, j) has its centre at source row r0 + (i + 0.5) (r1 - r0) / size - 0.5 and
    column c0 + (j + 0.5) (c1 - c0) / size - 0.5 (the resize keeps the region's corners)."""
    if field_of_view not in FIELDS_OF_VIEW:
        raise ValueError(f"field of view must be one of {', '.join(FIELDS_OF_VIEW)}, got {field_of_view!r}")
    if field_of_view == "fit" and box is not None:
        return fit_region(box, spacing_yx)
    return pad_region(shape_yx, size)


def fit_box(image: np.ndarray, head: np.ndarray, extent: np.ndarray, is_3d: bool):
    """The head's box that the `fit` field of view frames (`head_box`): for a (Z, Y, X, C) volume,
    over the slices of the brain's axial extent (`extent`, all slices when it is empty) of its
    `head` mask (`head_mask`); for a 2-D image (`is_3d` False), over its own `head_mask`."""
    if not is_3d:
        return head_box(head_mask(image))
    return head_box(head[extent] if extent.any() else head)


def frame_slices(images: np.ndarray, masks: np.ndarray, size: int, field_of_view: str = "pad", box=None,
                 spacing_yx=(1.0, 1.0)):
    """Slices brought to the model's frame: `fit` (`fit_field_of_view` on the head's box; `pad`
    when there is no box) or `pad` (`fit_to_size`)."""
    return _crop_and_resize(images, masks, frame_region(images.shape[1:3], size, field_of_view, box, spacing_yx),
                            size)


def _crop_and_resize(images: np.ndarray, masks: np.ndarray, region, size: int):
    """The pixels of `region` (first row, end row, first column, end column; it may reach outside
    the image, where background -1 and mask 0 fill in) of every slice, resized to size x size."""
    n, height, width, channels = images.shape
    r0, r1, c0, c1 = region
    canvas = np.full((n, r1 - r0, c1 - c0, channels), schema.BACKGROUND, np.float32)
    canvas_masks = np.zeros((n, r1 - r0, c1 - c0), np.uint8)
    src_r, src_c = slice(max(r0, 0), min(r1, height)), slice(max(c0, 0), min(c1, width))
    dst_r = slice(src_r.start - r0, src_r.stop - r0)
    dst_c = slice(src_c.start - c0, src_c.stop - c0)
    if src_r.stop > src_r.start and src_c.stop > src_c.start:
        canvas[:, dst_r, dst_c] = images[:, src_r, src_c]
        canvas_masks[:, dst_r, dst_c] = masks[:, src_r, src_c]
    if canvas.shape[1:3] == (size, size):
        return canvas, canvas_masks
    # One 2-D resize of all slices and channels stacked on the last axis: interpolating in 2-D
    # only, not across slices, is both right and several times faster than a 4-D zoom.
    rows, cols = canvas.shape[1:3]
    stacked = canvas.transpose(1, 2, 0, 3).reshape(rows, cols, n * channels)
    resized = resize(stacked, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    out = resized.reshape(size, size, n, channels).transpose(2, 0, 1, 3).astype(np.float32)
    mask_stack = resize(canvas_masks.transpose(1, 2, 0), (size, size), order=0, anti_aliasing=False,
                        preserve_range=True)
    return np.clip(out, -1.0, 1.0), mask_stack.transpose(2, 0, 1).astype(np.uint8)


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


@dataclass(frozen=True)
class Framing:
    """How one raw volume (or 2-D image) becomes model slices, as the converter prepares it:
    the slices kept (indices), each channel's intensity bounds, and the region of every slice
    that is resized to the `size` x `size` frame (`frame_region`)."""

    kept: np.ndarray
    bounds: list
    region: tuple
    size: int
    field_of_view: str


def plan_framing(volume: np.ndarray, size: int, is_3d: bool = True, field_of_view: str = "pad",
                 spacing=(1.0, 1.0, 1.0), percentiles=PERCENTILES, min_brain_fraction: float = MIN_BRAIN_FRACTION,
                 min_brain_ratio: float = MIN_BRAIN_RATIO, brain_length_mm: float = BRAIN_LENGTH_MM) -> Framing:
    """The converter's preparation (`data_prep.preprocess.prepare`) of a raw (Z, Y, X, C) volume,
    or a (1, Y, X, C) 2-D image with `is_3d` False, of (Z, Y, X) `spacing` in millimetres: the
    head (`head_mask` for volumes, `foreground` for single images) sets the intensity bounds;
    volume slices with less head than `min_brain_fraction` of their area are dropped; `fit`
    frames the head's box (`fit_box`: over the brain's axial extent, `brain_extent` with
    `min_brain_ratio` and `brain_length_mm`, for a volume), `pad` pads or shrinks as stored."""
    head = head_mask(volume) if is_3d else foreground(volume)
    bounds = intensity_bounds(volume, head if head.any() else foreground(volume), percentiles)
    kept = _enough_head(head, min_brain_fraction) if is_3d else np.arange(volume.shape[0])
    box = None
    if field_of_view == "fit":
        extent = np.ones(volume.shape[0], bool)
        if is_3d:
            area = head.reshape(volume.shape[0], -1).sum(axis=1).astype(np.float64)
            extent = brain_extent(area, min_brain_ratio, spacing[0], brain_length_mm)
        box = fit_box(volume, head, extent, is_3d)
    region = frame_region(volume.shape[1:3], size, field_of_view, box, tuple(spacing)[1:3])
    return Framing(kept=kept, bounds=bounds, region=region, size=size, field_of_view=field_of_view)


def apply_framing(volume: np.ndarray, framing: Framing) -> np.ndarray:
    """[N, size, size, C] float32 in [-1, 1]: the kept slices of the raw `volume` that `framing`
    was planned on, scaled by its bounds and brought to its frame."""
    kept = framing.kept
    images, _ = _crop_and_resize(scale_to_unit(volume[kept], framing.bounds),
                                 np.zeros((len(kept),) + volume.shape[1:3], np.uint8), framing.region, framing.size)
    return images


def volume_slices(volume: np.ndarray, size: int, is_3d: bool = True, percentiles=PERCENTILES,
                  min_brain_fraction: float = MIN_BRAIN_FRACTION, field_of_view: str = "pad",
                  spacing=(1.0, 1.0, 1.0)) -> tuple:
    """(kept slice indices, [N, size, size, C] float32 in [-1, 1]) of a raw volume prepared as the
    converter prepares it (`plan_framing`, `apply_framing`)."""
    framing = plan_framing(volume, size, is_3d, field_of_view, spacing, percentiles, min_brain_fraction)
    return framing.kept, apply_framing(volume, framing)


def _enough_head(head: np.ndarray, min_brain_fraction: float) -> np.ndarray:
    return np.flatnonzero(head.reshape(head.shape[0], -1).mean(axis=1) >= min_brain_fraction)


def recorded_framing(manifest: dict):
    """How a converted dataset's slices were framed, from its raw manifest: {"field_of_view",
    "min_brain_ratio", "brain_length_mm"} (the converter's settings that set the frame), or None
    when the manifest does not say (not written by the converter, nor by an augmentation).
    A converter's manifest from before `--field_of_view` existed records `pad`, the only framing
    it had; an augmentation's records the framing of its source slices (`framing`)."""
    if isinstance(manifest.get("framing"), dict) and manifest["framing"].get("field_of_view") in FIELDS_OF_VIEW:
        return dict(manifest["framing"])
    prep = (manifest.get("settings") or {}).get("prep") if isinstance(manifest.get("settings"), dict) else None
    if not isinstance(prep, dict) or prep.get("field_of_view", "pad") not in FIELDS_OF_VIEW:
        return None
    return {"field_of_view": prep.get("field_of_view", "pad"),
            "min_brain_ratio": float(prep.get("min_brain_ratio", MIN_BRAIN_RATIO)),
            "brain_length_mm": float(prep.get("brain_length_mm", BRAIN_LENGTH_MM))}
