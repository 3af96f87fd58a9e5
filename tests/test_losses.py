"""Losses by value against hand computations, and the semi-supervised attention loss' gradients."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from ssagan_tf import losses, metrics

RNG = np.random.default_rng(0)


def logits(shape=(3, 2, 2, 1)):
    return RNG.normal(size=shape).astype(np.float32)


def softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def test_lsgan_generator_loss():
    f = logits()
    expected = ((f - 1) ** 2).reshape(3, -1).mean(1)
    np.testing.assert_allclose(losses.generator_adversarial_loss(f, "lsgan").numpy(), expected, rtol=1e-6)


def test_lsgan_discriminator_loss():
    r, f = logits(), logits()
    expected = 0.5 * (((r - 1) ** 2).reshape(3, -1).mean(1) + (f ** 2).reshape(3, -1).mean(1))
    np.testing.assert_allclose(losses.discriminator_adversarial_loss(r, f, "lsgan").numpy(), expected, rtol=1e-6)


def test_vanilla_losses():
    r, f = logits(), logits()
    # -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x)
    np.testing.assert_allclose(losses.generator_adversarial_loss(f, "vanilla").numpy(),
                               softplus(-f).reshape(3, -1).mean(1), rtol=1e-5)
    expected = 0.5 * (softplus(-r).reshape(3, -1).mean(1) + softplus(f).reshape(3, -1).mean(1))
    np.testing.assert_allclose(losses.discriminator_adversarial_loss(r, f, "vanilla").numpy(), expected, rtol=1e-5)


def test_unknown_gan_loss_is_refused():
    with pytest.raises(ValueError, match="unknown gan_loss"):
        losses.generator_adversarial_loss(logits(), "wgan")


def test_cycle_and_identity_are_per_example_l1():
    x, y = RNG.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32), RNG.uniform(-1, 1, (2, 4, 4, 3)).astype(np.float32)
    expected = np.abs(x - y).reshape(2, -1).mean(1)
    np.testing.assert_allclose(losses.cycle_consistency_loss(x, y).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(losses.identity_loss(x, y).numpy(), expected, rtol=1e-6)


def test_semi_supervised_attention_loss_averages_over_labelled_examples():
    attention = RNG.uniform(0, 1, (3, 4, 4, 1)).astype(np.float32)
    mask = (RNG.uniform(0, 1, (3, 4, 4, 1)) > 0.5).astype(np.float32)
    has_mask = np.array([1, 0, 1], np.float32)
    l1 = np.abs(attention - mask).reshape(3, -1).mean(1)
    expected = (l1[0] + l1[2]) / 2
    np.testing.assert_allclose(losses.semi_supervised_attention_loss(attention, mask, has_mask).numpy(),
                               expected, rtol=1e-6)
    # Distributed: the denominator is the global labelled count (here 4 across replicas).
    np.testing.assert_allclose(losses.semi_supervised_attention_loss(attention, mask, has_mask, 4.0).numpy(),
                               (l1[0] + l1[2]) / 4, rtol=1e-6)


def test_soft_dice_and_l1_dice_equal_hand_computation():
    attention = RNG.uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    mask = np.zeros((2, 4, 4, 1), np.float32)
    mask[0, 1:3, 1:3] = 1
    mask[1, 0, 0] = 1
    a, m = attention.reshape(2, -1), mask.reshape(2, -1)
    dice = 1 - (2 * (a * m).sum(1) + 1) / (a.sum(1) + m.sum(1) + 1)
    l1 = np.abs(a - m).mean(1)
    np.testing.assert_allclose(losses.soft_dice_loss(attention, mask).numpy(), dice, rtol=1e-5)
    np.testing.assert_allclose(losses.attention_mask_l1_dice(attention, mask).numpy(), l1 + dice, rtol=1e-5)
    # A perfect attention map gives 0; the paper's L1 stays the default form.
    np.testing.assert_allclose(losses.soft_dice_loss(mask, mask).numpy(), 0.0, atol=1e-6)
    has_mask = np.array([0, 1], np.float32)
    np.testing.assert_allclose(
        losses.semi_supervised_attention_loss(attention, mask, has_mask, mask_loss_type="l1_dice").numpy(),
        l1[1] + dice[1], rtol=1e-5)
    np.testing.assert_allclose(losses.semi_supervised_attention_loss(attention, mask, has_mask).numpy(),
                               l1[1], rtol=1e-5)
    with pytest.raises(ValueError, match="mask_loss_type"):
        losses.semi_supervised_attention_loss(attention, mask, has_mask, mask_loss_type="bce")


def test_l1_prefers_empty_attention_on_a_small_tumor_and_l1_dice_does_not():
    """Why l1_dice exists: for a tumor of 1% of the slice, an all-zero attention has a lower L1
    than an attention covering the tumor and 6 background pixels; Dice reverses that."""
    mask = np.zeros((1, 20, 20, 1), np.float32)
    mask[0, :2, :2] = 1                                   # 4 of 400 pixels
    empty = np.zeros_like(mask)
    loose = mask.copy()
    loose[0, 2:4, :3] = 1                                 # the tumor plus 6 background pixels
    assert losses.attention_mask_l1(empty, mask).numpy()[0] < losses.attention_mask_l1(loose, mask).numpy()[0]
    assert losses.attention_mask_l1_dice(loose, mask).numpy()[0] < losses.attention_mask_l1_dice(empty, mask).numpy()[0]


@pytest.mark.parametrize("mask_loss_type", losses.MASK_LOSS_TYPES)
def test_no_masks_give_zero_loss_and_zero_attention_gradient(mask_loss_type):
    images = keras.Input((8, 8, 1))
    net = keras.Model(images, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(images))
    x = RNG.uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    mask = np.ones((2, 8, 8, 1), np.float32)
    with tf.GradientTape() as tape:
        loss = losses.semi_supervised_attention_loss(net(x), mask, np.zeros(2, np.float32),
                                                     mask_loss_type=mask_loss_type)
    grads = tape.gradient(loss, net.trainable_variables)
    assert float(loss) == 0.0
    for g in grads:
        np.testing.assert_array_equal(g.numpy(), 0.0)
    with tf.GradientTape() as tape:
        loss = losses.semi_supervised_attention_loss(net(x), mask, np.array([1, 0], np.float32),
                                                     mask_loss_type=mask_loss_type)
    assert any(np.abs(g.numpy()).sum() > 0 for g in tape.gradient(loss, net.trainable_variables))


@pytest.mark.parametrize("mask_loss_type", losses.MASK_LOSS_TYPES)
def test_unlabelled_example_cannot_leak_nan(mask_loss_type):
    attention = np.full((2, 2, 2, 1), 0.5, np.float32)
    attention[1] = np.nan
    loss = losses.semi_supervised_attention_loss(attention, np.zeros_like(attention), np.array([1, 0], np.float32),
                                                 mask_loss_type=mask_loss_type)
    # l1_dice: L1 0.5, Dice 1 - 1 / (2 + 0 + 1) on the labelled example.
    assert float(loss) == pytest.approx(0.5 if mask_loss_type == "l1" else 0.5 + 2 / 3, rel=1e-5)


def test_attention_area_loss_by_value_and_its_gradient_survives_a_closed_map():
    images = -np.ones((3, 4, 4, 1), np.float32)
    images[:, :, :2] = 0.0                                   # head: the left half, 8 pixels
    attention = np.zeros((3, 4, 4, 1), np.float32)
    attention[1, :2, :2] = 1.0                               # 4 of 8 head pixels: area 0.5
    attention[2, :, 2:] = 1.0                                # background only: area 0
    attention[2, 0, 0] = 0.4                                 # 0.4 / 8 = 0.05
    got = losses.attention_area_loss(attention, images, 0.25).numpy()
    np.testing.assert_allclose(got, [1.0, 0.0, 1.0 - 0.05 / 0.25], atol=1e-6)
    # The gradient at an all-zero map pushes every head pixel open, none of the background.
    closed = tf.Variable(np.zeros((1, 4, 4, 1), np.float32))
    with tf.GradientTape() as tape:
        loss = losses.attention_area_loss(closed, images[:1], 0.25)
    grad = tape.gradient(loss, closed).numpy()[0, ..., 0]
    np.testing.assert_allclose(grad[:, :2], -1.0 / (8 * 0.25), atol=1e-6)
    assert np.all(grad[:, 2:] == 0)
    with pytest.raises(ValueError, match="> 0"):
        losses.attention_area_loss(attention, images, 0.0)


def test_attention_guided_input():
    images = np.array([[[[0.5], [-0.5]]]], np.float32)        # [1, 1, 2, 1]
    attention = np.array([[[[0.2], [0.05]]]], np.float32)
    np.testing.assert_array_equal(losses.attention_guided_input(images, attention, 0.1).numpy(),
                                  [[[[0.5], [0.0]]]])


def views_fixture():
    """Distinct values so that every (image, mask) routing gives a different result."""
    real = np.full((1, 2, 2, 1), 3.0, np.float32)
    fake = np.full((1, 2, 2, 1), 5.0, np.float32)
    fake_attention = np.array([0.9, 0.0, 0.9, 0.0], np.float32).reshape(1, 2, 2, 1)   # source attention
    real_attention = np.array([0.0, 0.0, 0.5, 0.5], np.float32).reshape(1, 2, 2, 1)   # the real's own
    return real, fake, fake_attention, real_attention


@pytest.mark.parametrize("d_mode,real_expected,fake_expected", [
    ("full", [3, 3, 3, 3], [5, 5, 5, 5]),
    ("source_attention", [3, 0, 3, 0], [5, 0, 5, 0]),
    ("own_attention", [0, 0, 3, 3], [5, 0, 5, 0]),
    ("paper", [3, 0, 3, 0], [5, 0, 5, 0]),          # alias of source_attention
    ("mejjati", [0, 0, 3, 3], [5, 0, 5, 0]),        # alias of own_attention
])
def test_discriminator_views_route_each_mode(d_mode, real_expected, fake_expected):
    real, fake, fake_attention, real_attention = views_fixture()
    real_view, fake_view = losses.discriminator_views(d_mode, True, real, fake, fake_attention, real_attention, 0.1)
    np.testing.assert_array_equal(real_view.numpy().ravel(), real_expected)
    np.testing.assert_array_equal(fake_view.numpy().ravel(), fake_expected)
    # During the warm-up every mode shows whole images.
    real_view, fake_view = losses.discriminator_views(d_mode, False, real, fake, fake_attention, real_attention, 0.1)
    np.testing.assert_array_equal(real_view.numpy(), real)
    np.testing.assert_array_equal(fake_view.numpy(), fake)


def test_d_mode_names():
    assert losses.canonical_d_mode("paper") == "source_attention"
    assert losses.canonical_d_mode("mejjati") == "own_attention"
    with pytest.raises(ValueError, match="unknown d_mode"):
        losses.canonical_d_mode("both")


# Fixed small inputs for the golden values: two examples of 2x2 pixels.
X = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 2, 2, 1)       # images; X[0] has one background pixel
Y = np.cos(np.arange(8, dtype=np.float32)).reshape(2, 2, 2, 1)
A = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 2, 2, 1)         # an attention map: k/7
M = np.array([0, 1, 1, 0, 0, 0, 1, 1], np.float32).reshape(2, 2, 2, 1)  # a tumor mask
HAS_MASK = np.array([1, 0], np.float32)

# One pinned number per loss (TF-GAN style), written out rather than re-derived, so that a change of
# any formula or reduction - or a misconception shared with a numpy re-derivation - shows. Where a
# value is a simple fraction it is given as one: e.g. the L1 of A[0] = (0, 1/7, 2/7, 3/7) against
# M[0] = (0, 1, 1, 0) is (0 + 6/7 + 5/7 + 3/7) / 4 = 1/2.
GOLDEN = {
    "generator lsgan": (lambda: losses.generator_adversarial_loss(X, "lsgan"), [2.571429, 0.285714]),
    "generator vanilla": (lambda: losses.generator_adversarial_loss(X, "vanilla"), [1.030840, 0.459411]),
    "discriminator lsgan": (lambda: losses.discriminator_adversarial_loss(X, Y, "lsgan"), [1.591363, 0.392608]),
    "discriminator vanilla": (lambda: losses.discriminator_adversarial_loss(X, Y, "vanilla"), [0.907313, 0.690660]),
    "cycle": (lambda: losses.cycle_consistency_loss(X, Y), [1.028537, 0.358348]),
    "identity": (lambda: losses.identity_loss(Y, X), [1.028537, 0.358348]),
    "attention mask l1": (lambda: losses.attention_mask_l1(A, M), [1 / 2, 5 / 14]),
    "soft dice": (lambda: losses.soft_dice_loss(A, M), [14 / 27, 0.232558]),
    "attention mask l1_dice": (lambda: losses.attention_mask_l1_dice(A, M), [1 / 2 + 14 / 27, 0.589701]),
    # X[0]'s head is its last 3 pixels, where A covers (1+2+3)/7/3 = 2/7: 1 - (2/7) / 0.5 = 3/7.
    "attention area": (lambda: losses.attention_area_loss(A, X, 0.5), [3 / 7, 0.0]),
    "semi-supervised l1": (lambda: losses.semi_supervised_attention_loss(A, M, HAS_MASK), [1 / 2]),
    "semi-supervised l1_dice, 2 labelled globally": (
        lambda: losses.semi_supervised_attention_loss(A, M, HAS_MASK, 2, "l1_dice"), [(1 / 2 + 14 / 27) / 2]),
    "dice of A >= 0.5": (lambda: tf.constant(metrics.dice_iou(losses.binarize_attention(A, 0.5).numpy() > 0.5, M > 0.5)[0]),
                         [0.0, 2 / 3]),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_value(name):
    compute, expected = GOLDEN[name]
    np.testing.assert_allclose(np.atleast_1d(compute().numpy()), expected, rtol=1e-5, atol=1e-6)


def test_healthy_fill_loss_by_value():
    """Per example the mean |filled - original| over the masked pixels, averaged over the examples
    with a lesion placed; an example without one contributes nothing."""
    original = np.zeros((3, 4, 4, 1), np.float32)
    filled = original.copy()
    mask = np.zeros((3, 4, 4, 1), np.float32)
    mask[0, :2, :2] = 1                     # 4 pixels, errors 0.4 each
    filled[0, :2, :2] = 0.4
    mask[1, 0, 0] = 1                       # 1 pixel, error 1.0
    filled[1, 0, 0] = -1.0
    filled[1, 3, 3] = 5.0                   # outside the mask: ignored
    filled[2] = 9.0                         # not placed: ignored
    mask[2] = 1
    got = losses.healthy_fill_loss(filled, original, mask, placed=[1.0, 1.0, 0.0])
    assert float(got) == pytest.approx((0.4 + 1.0) / 2)
    assert float(losses.healthy_fill_loss(filled, original, mask, [1.0, 1.0, 0.0], placed_count=4)) == \
        pytest.approx(1.4 / 4)
    assert float(losses.healthy_fill_loss(filled, original, mask, [0.0, 0.0, 0.0])) == 0.0
