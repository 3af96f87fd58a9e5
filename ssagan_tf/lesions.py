"""Real lesion masks transplanted onto normal slices (`--lesion_guidance`, `--lambda_fill`,
`--lambda_paint`, the healthy-fill measure, `run_augment.py --lesion_masks` and the evaluation's
`--in_masks`), and the head and brain masks they are placed by (also copy-paste's).

A labelled tumor slice's whole-tumor mask, and the tumor's pixels under it, are moved onto a
normal slice: rotated by up to `MAX_ROTATION_DEGREES` either way and scaled by a factor in
`SCALE_RANGE` about the lesion's centroid, which lands on a brain pixel of the normal slice at
least `margin` pixels (a sixteenth of the slice) inside the brain's outline, drawn uniformly. The
moved mask is then cut to the brain, so a transplanted mask never covers background, scalp or
skull (where a head is too small to keep a brain, its head stands in). Every draw is stateless: the same `seed` gives the same placements, in a training graph as
in eager code.

The head of a slice is found without trusting the background to be exactly `schema.BACKGROUND`
(-1): a converted slice's background keeps the scanner's noise wherever it lies above the
intensity bounds' low end (on LGG FLAIR at 128^2 half the background pixels do). Per slice, a
threshold just above the background's histogram peak (the triangle method, on the maximum over
channels) separates it from tissue, so that dark CSF and skull stay in; a closing bridges small
gaps, every dark region the image border does not reach (ventricles, the skull inside the scalp)
is filled, and an opening then removes noise specks. Ghosting (the bands of faint signal that
motion copies along the phase-encoding direction, often across the whole frame) passes that
threshold; so the head is then cut to within `CORE_REACH` x the frame's side of its core: the
part above a second threshold, `CORE_LEVEL` of the way from the first to the head's median level,
closed, filled and opened by 5 pixels, which keeps tissue, a bright scalp and the dark skull
between them and drops the faint bands (a head too thin to keep a core is left uncut). The brain
is the head less its outer `BRAIN_DEPTH` x the frame's side (scalp and skull, about 10 mm: the
converter's default field of view fits the head's box to 0.9 of the frame); on a skull-stripped
slice it trims that much cortex instead, which only makes placements more conservative.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ssagan_tf.data import schema

MAX_ROTATION_DEGREES = 45.0
BRAIN_DEPTH = 0.06              # scalp and skull, as a fraction of the frame's side (~10 mm; see the docstring)
HISTOGRAM_BINS = 128
CORE_LEVEL = 0.5                # the core's threshold: this far from the background's to the head's median level
CORE_REACH = 0.03               # the head is kept within this fraction of the frame's side of its core
PLACEMENT_VERSION = 3           # what identifies these placements in caches; 3: ghosting cut off (2: inside
                                # the brain; 1: the head)
MASK_ATTEMPTS = 8               # donors tried per slice by `LesionMasks` before it gives up on the slice
SCALE_RANGE = (0.8, 1.25)


def _background_thresholds(values, bins: int = HISTOGRAM_BINS):
    """[B, N] values in [-1, 1] -> [B] threshold of each row just above its background: the
    triangle method on the row's histogram, between the background's peak (the tallest bin in the
    lower quarter of the range, where normalisation puts the background) and the brightest
    occupied bin; the bin farthest below the line joining them, or the lower quarter's last bin
    if that is lower, ends the background."""
    batch = tf.shape(values)[0]
    index = tf.clip_by_value(tf.cast(tf.floor((values + 1.0) * (bins / 2.0)), tf.int32), 0, bins - 1)
    index += tf.range(batch)[:, None] * bins
    hist = tf.reshape(tf.math.bincount(tf.reshape(index, [-1]), minlength=batch * bins, maxlength=batch * bins,
                                       dtype=tf.float32), [batch, bins])
    bin_index = tf.range(bins, dtype=tf.float32)[None, :]
    peak = tf.argmax(hist[:, :bins // 4], axis=1, output_type=tf.int32)
    last = bins - 1 - tf.argmax(tf.cast(hist[:, ::-1] > 0, tf.int32), axis=1, output_type=tf.int32)
    peak_height = tf.gather(hist, peak, batch_dims=1)
    last_height = tf.gather(hist, last, batch_dims=1)
    peak_f, last_f = tf.cast(peak, tf.float32)[:, None], tf.cast(last, tf.float32)[:, None]
    line = peak_height[:, None] + (last_height - peak_height)[:, None] * (bin_index - peak_f) / tf.maximum(
        last_f - peak_f, 1.0)
    between = (bin_index > peak_f) & (bin_index <= last_f)
    best = tf.argmax(tf.where(between, line - hist, -1.0), axis=1, output_type=tf.int32)
    # The background ends in the lower quarter too: in a slice with no background (noise everywhere,
    # or a bright lesion towering over a flat histogram) the threshold stays low, and the closing
    # and the filling then make nearly all of it head.
    best = tf.minimum(tf.where(last > peak, best, peak), bins // 4 - 1)
    return -1.0 + tf.cast(best + 1, tf.float32) * (2.0 / bins)


def _fill_holes(mask):
    """[B, H, W, 1] 0/1 -> the mask with every region of 0s that the image border does not reach
    through 0s (8-connected) set to 1. The flood stops after 2 (H + W) steps: background a path
    that long has not reached yet (none in a head's image) counts as a hole."""
    outside = 1.0 - mask
    height, width = mask.shape[1], mask.shape[2]
    border = np.ones((1, height, width, 1), np.float32)
    border[:, 1:-1, 1:-1] = 0.0
    reached = outside * border

    def grow(reached, _):
        return tf.nn.max_pool2d(reached, 3, 1, "SAME") * outside, reached

    reached, _ = tf.while_loop(lambda new, old: tf.reduce_any(new != old), grow,
                               (grow(reached, None)[0], reached), maximum_iterations=2 * (height + width))
    return 1.0 - reached


def head_mask(images, closing: int = 5):
    """[B, H, W, C] slices in [-1, 1] -> [B, H, W, 1] float head mask (1 inside; the module's
    docstring says how it is found)."""
    images = tf.convert_to_tensor(images, tf.float32)
    grey = tf.reduce_max(images, axis=-1, keepdims=True)
    batch = tf.shape(grey)[0]
    threshold = _background_thresholds(tf.reshape(grey, [batch, -1]))
    head = tf.cast(grey > tf.maximum(threshold, schema.BACKGROUND + 1e-3)[:, None, None, None], tf.float32)
    head = _opened(_closed_and_filled(head, closing), 3)                     # specks go
    flat = tf.reshape(grey, [batch, -1])
    level = threshold + CORE_LEVEL * (_masked_medians(flat, tf.reshape(head, [batch, -1]) > 0.5) - threshold)
    core = _opened(_closed_and_filled(head * tf.cast(grey > level[:, None, None, None], tf.float32), 5), 5)
    reach = 2 * int(round(CORE_REACH * max(head.shape[1], head.shape[2]))) + 1
    cut = head * tf.nn.max_pool2d(core, reach, 1, "SAME")                   # ghosting bands go
    # A head too thin to keep a core after the opening (a few pixels wide) stays as it was.
    return tf.where(tf.reduce_max(core, axis=[1, 2, 3], keepdims=True) > 0, cut, head)


def _masked_medians(values, mask):
    """[B, N] values in [-1, 1] and a [B, N] bool mask -> [B] the lower median of each row's
    values under its mask (2, above every value, for an empty mask)."""
    ordered = tf.sort(tf.where(mask, values, 2.0), axis=1)
    middle = tf.maximum(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1) - 1, 0) // 2
    return tf.gather(ordered, middle, batch_dims=1)


def brain_mask(images, head=None):
    """[B, H, W, C] slices -> [B, H, W, 1] float brain mask: the head (`head_mask`, or `head` when
    given) less the pixels within `BRAIN_DEPTH` x the frame's side of its outline (the distance is
    counted by alternating 3x3 and cross-shaped erosions, an octagonal approximation of the
    Euclidean one)."""
    head = head_mask(images) if head is None else tf.convert_to_tensor(head, tf.float32)
    depth = int(round(BRAIN_DEPTH * max(head.shape[1], head.shape[2])))
    for k in range(depth):
        if k % 2:
            head = tf.minimum(_eroded_by(head, [1, 3, 1, 1]), _eroded_by(head, [1, 1, 3, 1]))
        else:
            head = _eroded(head, 3)
    return head


def _closed_and_filled(mask, size: int):
    return _fill_holes(_eroded(tf.nn.max_pool2d(mask, size, 1, "SAME"), size))


def _opened(mask, size: int):
    return tf.nn.max_pool2d(_eroded(mask, size), size, 1, "SAME")


def _eroded(mask, size: int):
    return 1.0 - tf.nn.max_pool2d(1.0 - mask, size, 1, "SAME")


def _eroded_by(mask, ksize: list):
    return 1.0 - tf.nn.max_pool2d(1.0 - mask, ksize, 1, "SAME")


def centroids(masks):
    """[B, H, W, 1] -> [B, 2] (x, y) centroid of each mask, weighted by its values (the slice
    centre for an empty one)."""
    height, width = masks.shape[1], masks.shape[2]
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    area = tf.reduce_sum(masks, axis=[1, 2, 3])
    safe = tf.maximum(area, 1e-6)
    cx = tf.reduce_sum(masks[..., 0] * xs, axis=[1, 2]) / safe
    cy = tf.reduce_sum(masks[..., 0] * ys, axis=[1, 2]) / safe
    centre = tf.constant([(width - 1) / 2.0, (height - 1) / 2.0])
    found = (area > 0)[:, None]
    return tf.where(found, tf.stack([cx, cy], axis=1), centre[None, :])


def _random_pixel(weights, seed):
    """[B, H, W, 1] 0/1 weights -> [B, 2] (x, y) of one pixel drawn uniformly among the ones (the
    Gumbel-max trick: stateless and in-graph)."""
    batch, height, width = tf.shape(weights)[0], weights.shape[1], weights.shape[2]
    flat = tf.reshape(weights, [batch, height * width])
    noise = tf.random.stateless_uniform(tf.shape(flat), seed, minval=1e-6, maxval=1.0)
    index = tf.argmax(tf.where(flat > 0.5, -tf.math.log(-tf.math.log(noise)), -1e9), axis=1, output_type=tf.int32)
    return tf.cast(tf.stack([index % width, index // width], axis=1), tf.float32)


def placement_region(images):
    """[B, H, W, C] -> [B, H, W, 1] where lesions go: the brain (`brain_mask`), or the head where a
    head is too small to keep a brain once its scalp is taken off."""
    head = head_mask(images)
    brain = brain_mask(images, head)
    return tf.where(tf.reduce_sum(brain, axis=[1, 2, 3], keepdims=True) > 0, brain, head)


def transplant(normal_images, tumor_images, tumor_masks, valid, seed, margin: int | None = None, region=None):
    """Move each tumor slice's lesion (its mask and the pixels under it) onto the normal slice at
    the same batch position. `valid` [B] says which pairs to use (a tumor slice with a mask);
    `seed` is a stateless seed (shape [2], int). Returns ``(lesioned [B, H, W, C], masks [B, H, W,
    1], placed [B])``: the normal slice with the lesion pasted in, the transplanted mask (0/1,
    inside the brain) and whether a non-empty mask was placed (0 where `valid` is 0 or the head
    is empty). `region`: the normal slices' `placement_region`, when the caller has it already."""
    normal_images = tf.convert_to_tensor(normal_images, tf.float32)
    tumor_images = tf.convert_to_tensor(tumor_images, tf.float32)
    tumor_masks = tf.cast(tf.convert_to_tensor(tumor_masks) > 0.5, tf.float32)
    batch, height, width = tf.shape(normal_images)[0], normal_images.shape[1], normal_images.shape[2]
    margin = max(1, height // 16) if margin is None else margin
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    brain = placement_region(normal_images) if region is None else tf.convert_to_tensor(region, tf.float32)
    inner = _eroded(brain, 2 * margin + 1)
    # Fewer than one pixel that far inside: any brain pixel will do.
    inner = tf.where(tf.reduce_sum(inner, axis=[1, 2, 3], keepdims=True) > 0, inner, brain)
    target = _random_pixel(inner, seeds[0])
    source = centroids(tumor_masks)
    angle = tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0) * math.radians(MAX_ROTATION_DEGREES)
    scale = tf.exp(tf.random.stateless_uniform([batch], seeds[2], math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])))
    # ImageProjectiveTransformV3 maps each output pixel to the input pixel it samples:
    # in = R(-angle) (out - target) / scale + source.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = source[:, 0] - (a0 * target[:, 0] + a1 * target[:, 1])
    b2 = source[:, 1] - (b0 * target[:, 0] + b1 * target[:, 1])
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def warp(images, fill):
        return tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=transforms,
                                                     output_shape=tf.constant([height, width]),
                                                     fill_value=fill, interpolation="BILINEAR", fill_mode="CONSTANT")

    moved = tf.cast(warp(tumor_masks, 0.0) > 0.5, tf.float32) * brain
    moved *= tf.reshape(tf.cast(valid, tf.float32), [-1, 1, 1, 1])
    placed = tf.cast(tf.reduce_sum(moved, axis=[1, 2, 3]) > 0, tf.float32)
    lesion = warp(tumor_images, schema.BACKGROUND)
    return moved * lesion + (1.0 - moved) * normal_images, moved, placed


class LesionMasks:
    """The lesion mask each synthetic tumor is drawn in (`run_augment.py --lesion_masks`, the
    evaluation's `--in_masks`), from the labelled tumor slices `tumors` (arrays of
    `pipeline.load_split_arrays`; `where` names them in errors).

    Each normal slice, by its `position` among the slices it is drawn for (so a re-run or another
    batch size gives the same mask), gets the whole-tumor mask of one of them transplanted onto it
    (`transplant`). The donor and the placement are drawn from (seed, position); a donor whose mask
    cannot be placed (it would fall outside the brain) is replaced by the next, up to
    `MASK_ATTEMPTS`; a slice none fits is counted in `unplaced` and gets an empty mask."""

    def __init__(self, tumors: dict, seed: int, where: str):
        labelled = (tumors["has_mask"] > 0) & (tumors["mask"].sum(axis=(1, 2, 3)) > 0)
        if not labelled.any():
            raise ValueError(f"{where} has no tumor slice with a mask to take lesions from")
        self.images, self.masks = tumors["image"][labelled], tumors["mask"][labelled]
        self.seed = int(seed)
        self.unplaced = 0

    def __call__(self, images: np.ndarray, positions) -> np.ndarray:
        """[B, H, W, C] normal slices at `positions` -> their lesion masks [B, H, W, 1] (0/1)."""
        out = np.zeros(images.shape[:3] + (1,), np.float32)
        # Once per slice, not per try; 64 slices at a time.
        regions = np.concatenate([placement_region(images[i:i + 64]).numpy() for i in range(0, len(images), 64)]
                                 or [out])
        for k, position in enumerate(np.asarray(positions).tolist()):
            rng = np.random.default_rng([self.seed, int(position)])
            for attempt in range(MASK_ATTEMPTS):
                donor = int(rng.integers(len(self.masks)))
                _, mask, placed = transplant(images[k:k + 1], self.images[donor:donor + 1],
                                             self.masks[donor:donor + 1], np.ones(1, np.float32),
                                             tf.constant([self.seed, int(position) * MASK_ATTEMPTS + attempt],
                                                         tf.int64), region=regions[k:k + 1])
                if float(placed[0]) > 0:
                    out[k] = mask.numpy()[0]
                    break
            else:
                self.unplaced += 1
        return out
