"""Augmenters that need no training, run in the same harness as the exported ones:

- `copy_paste`: a real lesion, cut out with its mask from a training tumor slice, pasted into a
  normal slice inside the head, intensity-matched and slightly rotated and scaled; the result is
  labelled tumor and its attention is the pasted mask. It has no tumor -> normal direction (it
  cannot remove a tumor), so its synthetic arm adds tumor slices only.
- `identity`: the control that changes nothing. normal -> tumor returns the normal slice itself
  (labelled tumor by the synthetic arm) with a pseudo-mask, a real lesion mask placed in the head
  as copy-paste would place it; tumor -> normal returns the tumor slice itself (labelled normal).
  Whatever the synthetic arm gains with it comes from label noise and extra copies, not realism.

Both draw from the training tumor slices that carry a mask, never from the test split, with a
fixed seed, so a fold's synthetic slices are the same for every classifier seed and arm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ssagan_tf.data import schema
from ssagan_tf.exported import Translation

CONTROLS = ("copy_paste", "identity")
MAX_ROTATION_DEGREES = 30.0     # lesions keep their shape; a mild turn and resize make each paste new
SCALE_RANGE = (0.8, 1.2)
PLACEMENT_TRIES = 50            # random centres tried inside the head before a smaller lesion is tried
MIN_LESION_PIXELS = 4
HEAD_MARGIN = 2                 # pixels: the lesion stays this far inside the head's outline
HEAD_THRESHOLD = schema.BACKGROUND + 0.05      # -0.95: the head is what lies above this


def head_mask(image: np.ndarray) -> np.ndarray:
    """[H, W] bool: the head, i.e. pixels above the background in any channel, holes filled."""
    return ndimage.binary_fill_holes(np.any(image > HEAD_THRESHOLD, axis=-1))


def _lesion(image: np.ndarray, mask: np.ndarray, angle: float, scale: float) -> tuple:
    """The donor's lesion (pixels, mask) cropped to its bounding box, rotated and scaled."""
    rows, cols = np.nonzero(mask)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    # A margin around the box, so that interpolating the turned mask does not clip its edges.
    patch = np.pad(image[box], ((2, 2), (2, 2), (0, 0)), mode="edge")
    patch_mask = np.pad(mask[box].astype(np.float32), 2)
    patch = ndimage.zoom(ndimage.rotate(patch, angle, axes=(0, 1), order=1, mode="nearest"),
                         (scale, scale, 1), order=1, mode="nearest")
    patch_mask = ndimage.zoom(ndimage.rotate(patch_mask, angle, order=1), scale, order=1) >= 0.5
    return patch[:patch_mask.shape[0], :patch_mask.shape[1]], patch_mask


def _match_intensity(lesion: np.ndarray, donor: np.ndarray, donor_tissue: np.ndarray,
                     target: np.ndarray, target_tissue: np.ndarray) -> np.ndarray:
    """Map lesion values from the donor's tissue statistics to the target's, per channel:
    (v - mean_donor) / std_donor * std_target + mean_target, clipped to [-1, 1]."""
    out = np.empty_like(lesion)
    for c in range(lesion.shape[-1]):
        d, t = donor[..., c][donor_tissue], target[..., c][target_tissue]
        scale = max(float(t.std()), 1e-3) / max(float(d.std()), 1e-3)
        out[..., c] = (lesion[..., c] - d.mean()) * scale + t.mean()
    return np.clip(out, -1.0, 1.0)


def place(target: np.ndarray, lesion_mask: np.ndarray, preferred: tuple, rng) -> tuple | None:
    """Top-left corner (row, col) at which `lesion_mask` lies wholly inside the target's head
    (eroded by HEAD_MARGIN): the donor's own position first (brains are roughly aligned after
    conversion, so it is anatomically plausible), then random centres on the head. None if no try fits."""
    inside = ndimage.binary_erosion(head_mask(target), iterations=HEAD_MARGIN)
    height, width = lesion_mask.shape
    size_y, size_x = inside.shape
    candidates = [preferred]
    head_pixels = np.argwhere(inside)
    if len(head_pixels):
        picks = head_pixels[rng.integers(0, len(head_pixels), PLACEMENT_TRIES)]
        candidates += [(int(y) - height // 2, int(x) - width // 2) for y, x in picks]
    for top, left in candidates:
        if top < 0 or left < 0 or top + height > size_y or left + width > size_x:
            continue
        if np.all(inside[top:top + height, left:left + width][lesion_mask]):
            return top, left
    return None


class ControlAugmenter:
    """`copy_paste` or `identity` over the donor lesions of `train` (arrays of `load_split_arrays`)."""

    def __init__(self, name: str, train: dict, seed: int = 0):
        if name not in CONTROLS:
            raise ValueError(f"unknown control augmenter {name!r}; choose from {list(CONTROLS)}")
        self.name, self.path, self.seed = name, f"(built in: {name})", seed
        masks = train["mask"][..., 0] >= 0.5
        usable = (train["label"] == 1) & (train["has_mask"] > 0) & (masks.sum(axis=(1, 2)) >= MIN_LESION_PIXELS)
        self._donors = np.flatnonzero(usable)
        if len(self._donors) == 0:
            raise ValueError(f"augmenter {name!r} needs training tumor slices with a mask of at least "
                             f"{MIN_LESION_PIXELS} pixels; this training set has none")
        self._images, self._masks = train["image"], masks
        self.directions = ("normal_to_tumor",) if name == "copy_paste" else ("normal_to_tumor", "tumor_to_normal")
        self.placements: list = []

    def check_input_shape(self, image_shape: tuple) -> None:
        if tuple(self._images.shape[1:]) != tuple(image_shape):
            raise ValueError(f"augmenter {self.name!r}: donors are {self._images.shape[1:]}, slices {image_shape}")

    def paste(self, target: np.ndarray, rng) -> tuple:
        """(pasted image, pasted mask [H, W], placement record) for one normal slice."""
        for attempt in range(len(self._donors) * 2 + 1):
            donor = int(self._donors[rng.integers(len(self._donors))])
            angle = float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
            scale = float(rng.uniform(*SCALE_RANGE)) * (0.5 if attempt > len(self._donors) else 1.0)
            lesion, lesion_mask = _lesion(self._images[donor], self._masks[donor], angle, scale)
            if lesion_mask.sum() < MIN_LESION_PIXELS:
                continue
            rows, cols = np.nonzero(self._masks[donor])
            preferred = (int(rows.mean()) - lesion_mask.shape[0] // 2, int(cols.mean()) - lesion_mask.shape[1] // 2)
            corner = place(target, lesion_mask, preferred, rng)
            if corner is None:
                continue
            top, left = corner
            full = np.zeros(target.shape[:2], bool)
            full[top:top + lesion_mask.shape[0], left:left + lesion_mask.shape[1]] = lesion_mask
            head = head_mask(target)
            donor_tissue = head_mask(self._images[donor]) & ~self._masks[donor]
            matched = _match_intensity(lesion, self._images[donor], donor_tissue, target, head & ~full)
            out = target.copy()
            region = out[top:top + lesion_mask.shape[0], left:left + lesion_mask.shape[1]]
            region[lesion_mask] = matched[lesion_mask]
            return out, full, {"donor": donor, "angle": round(angle, 2), "scale": round(scale, 3),
                               "top": top, "left": left}
        raise ValueError(f"augmenter {self.name!r}: no donor lesion fits inside the head of a normal slice "
                         f"after {len(self._donors) * 2 + 1} tries (is the slice blank?)")

    def translate(self, direction: str, images: np.ndarray) -> Translation:
        if direction not in ("normal_to_tumor", "tumor_to_normal"):
            raise ValueError(f"unknown direction {direction!r}")
        images = np.asarray(images, np.float32)
        if direction == "tumor_to_normal":
            # Neither control removes a tumor: the input comes back; identity's synthetic arm labels
            # it normal, copy_paste's never uses this direction. Attention all ones = no attention.
            return Translation(source=images, image=images.copy(), attention=np.ones(images.shape[:-1] + (1,),
                                                                                     np.float32))
        rng = np.random.default_rng([self.seed, len(images)])
        out, masks, self.placements = images.copy(), np.zeros(images.shape[:-1] + (1,), np.float32), []
        for i, image in enumerate(images):
            pasted, mask, record = self.paste(image, rng)
            if self.name == "copy_paste":
                out[i] = pasted
            masks[i, ..., 0] = mask
            self.placements.append(record)
        return Translation(source=images, image=out, attention=masks)
