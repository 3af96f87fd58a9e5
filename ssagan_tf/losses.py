"""The SSA-CycleGAN losses as pure functions of tensors (docs/method.md, "Losses").

Every function returns a per-example loss of shape [B] (reduce it against the global batch with
`tf.nn.compute_average_loss`), except `semi_supervised_attention_loss`, whose denominator is the
number of labelled examples rather than the batch. Weights (lambda_cyc, lambda_idt, lambda_mask)
are applied by the caller, so each function here is one term of the paper's objective.
"""

from __future__ import annotations

import tensorflow as tf

from ssagan_tf.choices import D_MODE_ALIASES, D_MODES, GAN_LOSSES, MASK_LOSS_TYPES, canonical_d_mode  # noqa: F401
from ssagan_tf.data import schema


def per_example_mean(x):
    """Mean over every axis but the batch axis."""
    x = tf.cast(x, tf.float32)
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _check_gan_loss(gan_loss: str):
    if gan_loss not in GAN_LOSSES:
        raise ValueError(f"unknown gan_loss {gan_loss!r}; choose one of {GAN_LOSSES}")


def generator_adversarial_loss(fake_logits, gan_loss: str = "lsgan"):
    """Adversarial loss, generator side: how far D's patch outputs on translated images are from
    "real". lsgan: mean (D(G(x)) - 1)^2; vanilla: mean -log sigmoid(D(G(x)))."""
    _check_gan_loss(gan_loss)
    fake_logits = tf.cast(fake_logits, tf.float32)
    if gan_loss == "lsgan":
        return per_example_mean(tf.square(fake_logits - 1.0))
    return per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits))


def discriminator_adversarial_loss(real_logits, fake_logits, gan_loss: str = "lsgan"):
    """Adversarial loss, discriminator side: 0.5 * (real term + fake term).
    lsgan: 0.5 * (mean (D(y) - 1)^2 + mean D(G(x))^2); vanilla: the same with log-loss."""
    _check_gan_loss(gan_loss)
    real_logits = tf.cast(real_logits, tf.float32)
    fake_logits = tf.cast(fake_logits, tf.float32)
    if gan_loss == "lsgan":
        real = per_example_mean(tf.square(real_logits - 1.0))
        fake = per_example_mean(tf.square(fake_logits))
    else:
        real = per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits))
        fake = per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits))
    return 0.5 * (real + fake)


def discriminator_fake_loss(fake_logits, gan_loss: str = "lsgan"):
    """The fake half of `discriminator_adversarial_loss` alone, 0.5 * its fake term (lsgan: 0.5 *
    mean D(G(x))^2; vanilla: the same with log-loss): what a discriminator adds for a further kind
    of fake (`--lambda_paint`'s painted slices)."""
    _check_gan_loss(gan_loss)
    fake_logits = tf.cast(fake_logits, tf.float32)
    if gan_loss == "lsgan":
        return 0.5 * per_example_mean(tf.square(fake_logits))
    return 0.5 * per_example_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits))


def cycle_consistency_loss(real, reconstructed):
    """Cycle-consistency loss, one direction: mean |x - F(G(x))| (L1), before the lambda_cyc weight."""
    return per_example_mean(tf.abs(tf.cast(real, tf.float32) - tf.cast(reconstructed, tf.float32)))


def identity_loss(real, mapped):
    """CycleGAN's identity term (not in the paper; weight lambda_idt * lambda_cyc, default 0):
    mean |y - G(y)| for a generator fed an image already of its target domain."""
    return per_example_mean(tf.abs(tf.cast(real, tf.float32) - tf.cast(mapped, tf.float32)))


def attention_mask_l1(attention, mask):
    """Per-example mean |A_t(x_t) - M(x_t)|: the term inside the paper's semi-supervised attention loss."""
    return per_example_mean(tf.abs(tf.cast(attention, tf.float32) - tf.cast(mask, tf.float32)))


def soft_dice_loss(attention, mask, smooth: float = 1.0):
    """Per-example 1 - (2 sum(A M) + s) / (sum(A) + sum(M) + s), with the attention as a soft mask.

    Unlike L1 it does not depend on how much of the slice is background: L1 is minimised by the
    per-pixel median, so wherever the network is less than 50% sure of tumor it is pulled to 0,
    and a tumor covering ~1% of a slice is learned only once it is already found.
    """
    a = tf.reshape(tf.cast(attention, tf.float32), [tf.shape(attention)[0], -1])
    m = tf.reshape(tf.cast(mask, tf.float32), [tf.shape(mask)[0], -1])
    overlap = tf.reduce_sum(a * m, axis=1)
    return 1.0 - (2.0 * overlap + smooth) / (tf.reduce_sum(a, axis=1) + tf.reduce_sum(m, axis=1) + smooth)


def attention_mask_l1_dice(attention, mask):
    """Per-example L1 of the paper's attention loss plus `soft_dice_loss`."""
    return attention_mask_l1(attention, mask) + soft_dice_loss(attention, mask)


def _mask_loss_fn(mask_loss_type: str):
    if mask_loss_type not in MASK_LOSS_TYPES:
        raise ValueError(f"unknown mask_loss_type {mask_loss_type!r}; choose one of {MASK_LOSS_TYPES}")
    return attention_mask_l1 if mask_loss_type == "l1" else attention_mask_l1_dice


# Pixels above this value (-0.98; images in [-1, 1], the background at `schema.BACKGROUND`) count
# as head.
HEAD_THRESHOLD = schema.BACKGROUND + 0.02


def attention_area_loss(attention, images, target: float):
    """Per-example hinge keeping an attention map open over at least `target` of the head:
    max(0, 1 - area / target), area = sum(A * head) / sum(head), head = first channel >
    HEAD_THRESHOLD. 0 once the map covers the target fraction, 1 for an all-zero map, and its
    gradient does not vanish as the map closes (unlike the adversarial and cycle terms, which
    reach A_n only through G(x) - x). Not in the paper: `--attention_area` (docs/training.md)."""
    if target <= 0:
        raise ValueError(f"attention_area target must be > 0, got {target}")
    attention = tf.cast(attention, tf.float32)
    head = tf.cast(tf.cast(images, tf.float32)[..., :1] > HEAD_THRESHOLD, tf.float32)
    area = tf.reduce_sum(attention * head, axis=[1, 2, 3]) / tf.maximum(tf.reduce_sum(head, axis=[1, 2, 3]), 1.0)
    return tf.nn.relu(1.0 - area / target)


def semi_supervised_attention_loss(attention, mask, has_mask, labelled_count=None, mask_loss_type: str = "l1"):
    """The paper's semi-supervised attention loss: the L1 between the tumor attention and the
    whole-tumor mask, summed over the examples that carry a mask (`has_mask = 1`) and divided by
    `labelled_count`, the number of such examples (in the global batch when distributed; by
    default those of this batch). A batch without masks gives 0 with zero gradient: unmasked
    examples are selected out with `tf.where`, so not even a NaN can leak through them.
    `mask_loss_type="l1_dice"` adds a soft Dice term to each example's L1.

    Returns a scalar; across replicas the per-replica values add up to the global mean.
    """
    has_mask = tf.cast(has_mask, tf.float32)
    per_example = _mask_loss_fn(mask_loss_type)(attention, mask)
    masked = tf.where(has_mask > 0, per_example, tf.zeros_like(per_example))
    if labelled_count is None:
        labelled_count = tf.reduce_sum(has_mask)
    return tf.reduce_sum(masked) / tf.maximum(tf.cast(labelled_count, tf.float32), 1.0)


def healthy_fill_loss(filled, original, mask, placed, placed_count=None):
    """`--lambda_fill`'s self-supervised fill term: the L1 between a healthy region restored by
    tumor->normal (`filled`, with a transplanted lesion `mask` as its attention) and the real
    normal slice (`original`), averaged per example over the masked pixels and channels, summed
    over the examples with a lesion placed (`placed = 1`) and divided by `placed_count` (in the
    global batch when distributed; by default those of this batch). Scalar; 0 without lesions."""
    mask = tf.cast(mask, tf.float32)
    channels = tf.cast(tf.shape(original)[-1], tf.float32)
    error = tf.reduce_sum(tf.abs(tf.cast(filled, tf.float32) - tf.cast(original, tf.float32)) * mask, axis=[1, 2, 3])
    per_example = error / tf.maximum(tf.reduce_sum(mask, axis=[1, 2, 3]) * channels, 1.0)
    return placed_mean(per_example, placed, placed_count)


def placed_mean(per_example, placed, placed_count=None):
    """A per-example term [B] summed over the examples with a lesion placed (`placed = 1`) and
    divided by `placed_count` (in the global batch when distributed; by default those of this
    batch): this replica's share of the mean over the placed lesions. Scalar; 0 without lesions."""
    placed = tf.cast(placed, tf.float32)
    if placed_count is None:
        placed_count = tf.reduce_sum(placed)
    return tf.reduce_sum(tf.where(placed > 0, per_example, 0.0)) / tf.maximum(tf.cast(placed_count, tf.float32), 1.0)


def binarize_attention(attention, tau: float):
    """1 where attention >= tau, else 0: the region an attention-guided discriminator sees."""
    return tf.cast(tf.cast(attention, tf.float32) >= tau, tf.float32)


def attention_guided_input(images, attention, tau: float):
    """The attention-guided discriminator's view of an image after the attention warm-up, the image
    where the binarised attention is 1 and 0 elsewhere."""
    return tf.cast(images, tf.float32) * binarize_attention(attention, tau)


def discriminator_views(d_mode: str, masked: bool, real, fake, fake_attention, real_attention, tau: float):
    """Attention-guided discriminator inputs routed by `d_mode`: the (real, fake) pair one discriminator compares.

    `fake` was translated from a slice whose attention is `fake_attention` (its source
    attention); `real` is a slice of the discriminator's own domain and `real_attention` the
    attention of that domain's network on it (A_t(x_t) for D_t). While `masked` is False (the
    attention warm-up) both pass unchanged; so they do in mode `full`.
    """
    d_mode = canonical_d_mode(d_mode)
    real, fake = tf.cast(real, tf.float32), tf.cast(fake, tf.float32)
    if not masked or d_mode == "full":
        return real, fake
    real_mask = real_attention if d_mode == "own_attention" else fake_attention
    return attention_guided_input(real, real_mask, tau), attention_guided_input(fake, fake_attention, tau)
