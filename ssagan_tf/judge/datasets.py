"""The input pipelines of the ResNet18 classifiers, the judge's and the evaluation's: seeded,
shuffled training batches with classic augmentation and, for the evaluation's baselines, MixUp or
CutMix; evaluation batches, optionally class-weighted.

Classic augmentation is drawn afresh every epoch inside tf.data: by default one random affine warp
per slice (`warp`); `keras` runs Keras 3's RandomFlip, RandomRotation, RandomTranslation and
RandomZoom layers over the same ranges. They are not equivalent (four interpolations instead of
one, and the translation range does not grow with the crop), so the warp stays the default and
results of earlier runs do not change silently. MixUp and CutMix are Keras 3's own layers
(`keras.layers.MixUp`, `keras.layers.CutMix`), applied to each shuffled batch after classic
augmentation; the labels become the mixed (soft) labels.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from ssagan_tf.choices import CLASSIC_IMPLEMENTATIONS
from ssagan_tf.data import schema

# Classic augmentation ranges. The paper names the operations but not their ranges; these are
# the mild ones common for brain MRI, which keep the whole brain in view.
FLIP_PROBABILITY = 0.5        # left-right: the brain is roughly symmetric, tumors occur on both sides
MAX_ROTATION_DEGREES = 15.0
MAX_TRANSLATION = 0.1         # fraction of the side
MIN_CROP_FRACTION = 0.85      # a random square crop of 85-100% of the side, resized back
MIXUP_ALPHA = 0.2             # Zhang et al. 2018's ImageNet value, Keras' default
CUTMIX_FACTOR = 1.0           # Yun et al. 2019: the box area ratio drawn from Beta(1, 1), Keras' default
MIXING = ("mixup", "cutmix")


def _affine_transforms(batch: int, size: float, seed, strength: float = 1.0) -> tf.Tensor:
    """[batch, 8] projective transforms (output pixel -> input pixel) combining a flip, a rotation,
    a translation and a random crop about the slice centre; `strength` scales the rotation,
    translation and crop ranges (1 = the documented ones)."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    flip = tf.where(tf.random.stateless_uniform([batch], seeds[0]) < FLIP_PROBABILITY, -1.0, 1.0)
    angle = tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0) * (
        strength * MAX_ROTATION_DEGREES * math.pi / 180)
    crop = tf.random.stateless_uniform([batch], seeds[2], 1.0 - strength * (1.0 - MIN_CROP_FRACTION), 1.0)
    # A crop of fraction `crop` may sit anywhere inside the slice: its centre moves by up to
    # (1 - crop) / 2 of the side, on top of the translation.
    limit = (1.0 - crop)[:, None] * 0.5 + strength * MAX_TRANSLATION
    shift = tf.random.stateless_uniform([batch, 2], seeds[3], -1.0, 1.0) * limit * size
    cos, sin = tf.cos(angle) * crop, tf.sin(angle) * crop
    m00, m01, m10, m11 = cos * flip, -sin, sin * flip, cos
    centre = (size - 1.0) / 2.0
    tx = centre + shift[:, 0] - m00 * centre - m01 * centre
    ty = centre + shift[:, 1] - m10 * centre - m11 * centre
    zeros = tf.zeros([batch])
    return tf.stack([m00, m01, tx, m10, m11, ty, zeros, zeros], axis=1)


def classic_augment(images: tf.Tensor, seed, strength: float = 1.0) -> tf.Tensor:
    """Randomly flip, rotate, translate and crop a batch [N, H, W, C] (square slices) with one
    bilinear warp; pixels warped in from outside the slice get the background value."""
    shape = tf.shape(images)
    transforms = _affine_transforms(shape[0], tf.cast(shape[2], tf.float32), seed, strength)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3],
        fill_value=tf.constant(schema.BACKGROUND, tf.float32), interpolation="BILINEAR", fill_mode="CONSTANT")
    # Keep the static shape: a batch of unknown height and width would retrace the train step.
    return tf.ensure_shape(warped, images.shape)


def keras_classic_layers(seed: int, strength: float = 1.0) -> list:
    """Keras 3 preprocessing layers over the classic ranges (scaled by `strength`), seeded; see the
    module docstring for how they differ from the single warp."""
    fill = {"fill_mode": "constant", "fill_value": schema.BACKGROUND, "interpolation": "bilinear"}
    # RandomFlip flips with probability 1/2, FLIP_PROBABILITY; a negative zoom factor zooms in (crops).
    return [keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(strength * MAX_ROTATION_DEGREES / 360.0, seed=seed + 1, **fill),
            keras.layers.RandomTranslation(strength * MAX_TRANSLATION, strength * MAX_TRANSLATION, seed=seed + 2,
                                           **fill),
            keras.layers.RandomZoom((-strength * (1.0 - MIN_CROP_FRACTION), 0.0), seed=seed + 3, **fill)]


def mixing_layer(kind: str, seed: int):
    """Keras 3's MixUp or CutMix, seeded: called on {"images", "labels"} batches."""
    if kind == "mixup":
        return keras.layers.MixUp(alpha=MIXUP_ALPHA, seed=seed)
    if kind == "cutmix":
        return keras.layers.CutMix(factor=CUTMIX_FACTOR, seed=seed)
    raise ValueError(f"unknown mixing {kind!r}; choose from {list(MIXING)}")


def _as_tensors(images: np.ndarray, labels: np.ndarray):
    return tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), labels.astype(np.float32).reshape(-1, 1)))


def train_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                  classic: bool, mixing: str = "", classic_impl: str = "warp",
                  classic_strength: float = 1.0) -> tf.data.Dataset:
    """Shuffled (reshuffled each epoch, seeded) batches of (image, label), classic-augmented when
    asked, then mixed (`mixup`/`cutmix`) when asked, with fresh draws every epoch."""
    dataset = _as_tensors(images, labels).shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if classic and classic_impl == "warp":
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, pair: (classic_augment(batch[0], pair, classic_strength), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    elif classic:
        if classic_impl not in CLASSIC_IMPLEMENTATIONS:
            raise ValueError(f"classic_impl {classic_impl!r}: choose from {list(CLASSIC_IMPLEMENTATIONS)}")
        layers = keras_classic_layers(seed, classic_strength)

        def apply(x, y):
            for layer in layers:
                x = layer(x, training=True)
            return tf.ensure_shape(x, [None, *images.shape[1:]]), y

        dataset = dataset.map(apply)
    if mixing:
        mixer = mixing_layer(mixing, seed)

        def mix(x, y):
            if mixing == "cutmix":
                # Keras labels a CutMix slice by its box's continuous area, but pastes whole pixels
                # (off by up to one row and one column: 12 points at 16 px, 3 at 64). Carrying each
                # slice's label as an extra image channel through the same paste gives the label of
                # the pixels actually pasted.
                plane = tf.ones_like(x[..., :1]) * tf.reshape(y, [-1, 1, 1, 1])
                out = mixer({"images": tf.concat([x, plane], axis=-1), "labels": y}, training=True)
                mixed, y = out["images"][..., :-1], tf.reduce_mean(out["images"][..., -1], axis=[1, 2])[:, None]
            else:
                out = mixer({"images": x, "labels": y}, training=True)
                mixed, y = out["images"], out["labels"]
            return tf.ensure_shape(mixed, [None, *images.shape[1:]]), y

        dataset = dataset.map(mix)
    return dataset.prefetch(tf.data.AUTOTUNE)


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int,
                 class_weight: dict | None = None) -> tf.data.Dataset:
    """Batches of (image, label), or of (image, label, weight) with each slice weighted by its
    class's `class_weight` (Keras then reports a class-weighted validation loss)."""
    if class_weight is None:
        return _as_tensors(images, labels).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    weights = np.asarray([class_weight[int(label)] for label in labels], np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), labels.astype(np.float32).reshape(-1, 1), weights))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def balanced_class_weights(labels: np.ndarray) -> dict:
    """{label: n / (2 n_label)} for labels 0 and 1: each class weighs half of a weighted mean
    (all 1.0 when a class has no slices: there is nothing to balance)."""
    labels = np.asarray(labels).ravel()
    counts = {label: int(np.sum(labels == label)) for label in (0, 1)}
    if not all(counts.values()):
        return {0: 1.0, 1: 1.0}
    return {label: len(labels) / (2.0 * count) for label, count in counts.items()}
