"""Augmenters that need no training, run in the same harness as the exported ones:

- `copy_paste`: a real lesion, cut out with its mask from a training tumor slice, pasted into a
  normal slice wholly inside the brain (`lesions.brain_mask`: the head less its scalp and skull),
  at the donor's own position where it fits there, moved to the level of the target's brain
  tissue and slightly rotated and scaled; the result is
  labelled tumor and its attention is the pasted mask. It has no tumor -> normal direction (it
  cannot remove a tumor), so its synthetic arm adds tumor slices only.
- `identity`: the control that changes nothing. normal -> tumor returns the normal slice itself
  (labelled tumor by the synthetic arm) with a pseudo-mask, a real lesion mask placed in the brain
  as copy-paste would place it; tumor -> normal returns the tumor slice itself (labelled normal).
  Whatever the synthetic arm gains with it comes from label noise and extra copies, not realism.

Both draw from the training tumor slices that carry a mask, never from the test split, with a
fixed seed, so a fold's synthetic slices are the same for every classifier seed and arm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ssagan_tf import lesions
from ssagan_tf.exported import Translation

CONTROLS = ("copy_paste", "identity")
DRAW_VERSION = 2                # what identifies the controls' slices in caches; 2: median-level matching
MAX_ROTATION_DEGREES = 30.0     # lesions keep their shape; a mild turn and resize make each paste new
SCALE_RANGE = (0.8, 1.2)
PLACEMENT_TRIES = 50            # random centres tried inside the brain before a smaller lesion is tried
MIN_LESION_PIXELS = 4


def brain_mask(image: np.ndarray) -> np.ndarray:
    """[H, W, C] slice -> [H, W] bool brain (`lesions.brain_mask`)."""
    return brain_masks(image[None])[0]


def brain_masks(images: np.ndarray) -> np.ndarray:
    """[N, H, W, C] slices -> [N, H, W] bool: each slice's brain (`lesions.brain_mask`), or its
    head where the head is too small to keep a brain, or the whole slice where no head is found."""
    out = []
    for i in range(0, len(images), 64):
        region = lesions.placement_region(images[i:i + 64]).numpy()[..., 0] > 0.5
        out.append(np.where(region.any(axis=(1, 2), keepdims=True), region, True))
    return np.concatenate(out) if out else np.zeros(images.shape[:3], bool)


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
    """Move lesion values from the donor's brain tissue level to the target's, per channel:
    v - median_donor + median_target, clipped to [-1, 1]. Converted slices share one intensity
    scale (each volume's percentiles mapped to [-1, 1]), so the lesion keeps its contrast to the
    tissue around it; scaling by the ratio of the tissues' spreads instead inflated lesions pasted
    into slices of the skull base, whose "brain" holds bone and air (on LGG FLAIR 16% of pasted
    pixels saturated, against 0.1% of real lesion pixels)."""
    out = np.empty_like(lesion)
    for c in range(lesion.shape[-1]):
        d, t = donor[..., c][donor_tissue], target[..., c][target_tissue]
        # No tissue beside the lesion (a brain all lesion): the whole slice's level stands in.
        d, t = (d if d.size else donor[..., c].ravel()), (t if t.size else target[..., c].ravel())
        out[..., c] = lesion[..., c] - float(np.median(d)) + float(np.median(t))
    return np.clip(out, -1.0, 1.0)


def place(inside: np.ndarray, lesion_mask: np.ndarray, preferred: tuple, rng) -> tuple | None:
    """Top-left corner (row, col) at which `lesion_mask` lies wholly inside `inside` (the target's
    brain, [H, W] bool): the donor's own position first (brains are roughly aligned after
    conversion, so it is anatomically plausible), then random centres in the brain. None if no try fits."""
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
        self._brain_cache: dict = {}

    def check_input_shape(self, image_shape: tuple) -> None:
        if tuple(self._images.shape[1:]) != tuple(image_shape):
            raise ValueError(f"augmenter {self.name!r}: donors are {self._images.shape[1:]}, slices {image_shape}")

    def paste(self, target: np.ndarray, rng, brain: np.ndarray | None = None) -> tuple:
        """(pasted image, pasted mask [H, W], placement record) for one normal slice (`brain`: its
        `brain_mask`, computed when not given)."""
        brain = brain_mask(target) if brain is None else brain
        for attempt in range(len(self._donors) * 2 + 1):
            donor = int(self._donors[rng.integers(len(self._donors))])
            angle = float(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
            scale = float(rng.uniform(*SCALE_RANGE)) * (0.5 if attempt > len(self._donors) else 1.0)
            lesion, lesion_mask = _lesion(self._images[donor], self._masks[donor], angle, scale)
            if lesion_mask.sum() < MIN_LESION_PIXELS:
                continue
            rows, cols = np.nonzero(self._masks[donor])
            preferred = (int(rows.mean()) - lesion_mask.shape[0] // 2, int(cols.mean()) - lesion_mask.shape[1] // 2)
            corner = place(brain, lesion_mask, preferred, rng)
            if corner is None:
                continue
            return self._write(target, brain, donor, lesion, lesion_mask, corner,
                               {"donor": donor, "angle": round(angle, 2), "scale": round(scale, 3)})
        # No lesion fits wholly inside this brain (a small brain, large lesions): a half-size one,
        # centred on the brain and cut to it, as transplanted lesions are cut.
        donor = int(self._donors[rng.integers(len(self._donors))])
        lesion, lesion_mask = _lesion(self._images[donor], self._masks[donor], 0.0, 0.5)
        rows, cols = np.nonzero(brain)
        height, width = lesion_mask.shape
        corner = (int(np.clip(rows.mean() - height // 2, 0, max(brain.shape[0] - height, 0))),
                  int(np.clip(cols.mean() - width // 2, 0, max(brain.shape[1] - width, 0))))
        cut = lesion_mask[:brain.shape[0] - corner[0], :brain.shape[1] - corner[1]]
        cut = cut & brain[corner[0]:corner[0] + cut.shape[0], corner[1]:corner[1] + cut.shape[1]]
        if cut.sum() < MIN_LESION_PIXELS:
            raise ValueError(f"augmenter {self.name!r}: no donor lesion fits inside the brain of a normal slice, "
                             f"even cut to it ({int(brain.sum())} brain pixels)")
        return self._write(target, brain, donor, lesion[:cut.shape[0], :cut.shape[1]], cut, corner,
                           {"donor": donor, "angle": 0.0, "scale": 0.5, "cut_to_brain": True})

    def _write(self, target, brain, donor, lesion, lesion_mask, corner, record) -> tuple:
        """The target with `lesion` written under `lesion_mask` at `corner`, intensity-matched."""
        top, left = corner
        full = np.zeros(target.shape[:2], bool)
        full[top:top + lesion_mask.shape[0], left:left + lesion_mask.shape[1]] = lesion_mask
        donor_tissue = self._brains(donor) & ~self._masks[donor]
        matched = _match_intensity(lesion, self._images[donor], donor_tissue, target, brain & ~full)
        out = target.copy()
        region = out[top:top + lesion_mask.shape[0], left:left + lesion_mask.shape[1]]
        region[lesion_mask] = matched[lesion_mask]
        return out, full, {**record, "top": top, "left": left}

    def _brains(self, donor: int) -> np.ndarray:
        if donor not in self._brain_cache:
            self._brain_cache[donor] = brain_mask(self._images[donor])
        return self._brain_cache[donor]

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
        brains = brain_masks(images)
        for i, image in enumerate(images):
            pasted, mask, record = self.paste(image, rng, brains[i])
            if self.name == "copy_paste":
                out[i] = pasted
            masks[i, ..., 0] = mask
            self.placements.append(record)
        return Translation(source=images, image=out, attention=masks)
