"""Real lesion masks transplanted onto normal slices (`--lesion_guidance`, `--lambda_fill`, the
healthy-fill measure, `run_augment.py --lesion_masks` and the evaluation's `--in_masks`).

A labelled tumor slice's whole-tumor mask, and the tumor's pixels under it, are moved onto a
normal slice: rotated by up to `MAX_ROTATION_DEGREES` either way and scaled by a factor in
`SCALE_RANGE` about the lesion's centroid, which lands on a head pixel of the normal slice at
least `margin` pixels (an eighth of the slice) from the background, drawn uniformly. The moved mask is
then cut to the head, so a transplanted mask never covers background. Every draw is stateless: the
same `seed` gives the same placements, in a training graph as in eager code.

The head of a normalised slice (`data_prep.convert`: background exactly `schema.BACKGROUND`, -1)
is every pixel above it in some channel, closed over small dark holes (CSF clipped to -1 inside the head).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ssagan_tf.data import schema

MAX_ROTATION_DEGREES = 45.0
MASK_ATTEMPTS = 8               # donors tried per slice by `LesionMasks` before it gives up on the slice
SCALE_RANGE = (0.8, 1.25)


def head_mask(images, closing: int = 5):
    """[B, H, W, C] slices in [-1, 1] -> [B, H, W, 1] float head mask (1 inside)."""
    images = tf.convert_to_tensor(images, tf.float32)
    head = tf.cast(tf.reduce_max(images, axis=-1, keepdims=True) > schema.BACKGROUND + 1e-3, tf.float32)
    dilated = tf.nn.max_pool2d(head, closing, 1, "SAME")
    return 1.0 - tf.nn.max_pool2d(1.0 - dilated, closing, 1, "SAME")


def _eroded(mask, size: int):
    return 1.0 - tf.nn.max_pool2d(1.0 - mask, size, 1, "SAME")


def _centroids(masks):
    """[B, H, W, 1] -> [B, 2] (x, y) centroid of each mask (the slice centre for an empty one)."""
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


def transplant(normal_images, tumor_images, tumor_masks, valid, seed, margin: int | None = None):
    """Move each tumor slice's lesion (its mask and the pixels under it) onto the normal slice at
    the same batch position. `valid` [B] says which pairs to use (a tumor slice with a mask);
    `seed` is a stateless seed (shape [2], int). Returns ``(lesioned [B, H, W, C], masks [B, H, W,
    1], placed [B])``: the normal slice with the lesion pasted in, the transplanted mask (0/1,
    inside the head) and whether a non-empty mask was placed (0 where `valid` is 0 or the head
    is empty)."""
    normal_images = tf.convert_to_tensor(normal_images, tf.float32)
    tumor_images = tf.convert_to_tensor(tumor_images, tf.float32)
    tumor_masks = tf.cast(tf.convert_to_tensor(tumor_masks) > 0.5, tf.float32)
    batch, height, width = tf.shape(normal_images)[0], normal_images.shape[1], normal_images.shape[2]
    margin = max(1, height // 8) if margin is None else margin
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    head = head_mask(normal_images)
    inner = _eroded(head, 2 * margin + 1)
    # Fewer than one pixel that far inside: any head pixel will do.
    inner = tf.where(tf.reduce_sum(inner, axis=[1, 2, 3], keepdims=True) > 0, inner, head)
    target = _random_pixel(inner, seeds[0])
    source = _centroids(tumor_masks)
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

    moved = tf.cast(warp(tumor_masks, 0.0) > 0.5, tf.float32) * head
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
    cannot be placed (it would fall outside the head) is replaced by the next, up to
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
        for k, position in enumerate(np.asarray(positions).tolist()):
            rng = np.random.default_rng([self.seed, int(position)])
            for attempt in range(MASK_ATTEMPTS):
                donor = int(rng.integers(len(self.masks)))
                _, mask, placed = transplant(images[k:k + 1], self.images[donor:donor + 1],
                                             self.masks[donor:donor + 1], np.ones(1, np.float32),
                                             tf.constant([self.seed, int(position) * MASK_ATTEMPTS + attempt],
                                                         tf.int64))
                if float(placed[0]) > 0:
                    out[k] = mask.numpy()[0]
                    break
            else:
                self.unplaced += 1
        return out
