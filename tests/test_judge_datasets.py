"""ssagan_tf/judge/datasets.py: the classifiers' input pipelines: classic augmentation (the warp and
Keras' layers), the seeded shuffle, MixUp/CutMix labels, class weights."""

import numpy as np
import pytest
import tensorflow as tf

from ssagan_tf.judge import datasets


def test_classic_augment_is_seeded_keeps_shape_and_range():
    yy, xx = np.mgrid[:32, :32]
    disc = np.where((yy - 16) ** 2 + (xx - 10) ** 2 < 25, 0.9, -1.0).astype(np.float32)
    batch = tf.constant(np.stack([disc] * 8)[..., None])
    seed = tf.constant([1, 2], tf.int64)
    out = datasets.classic_augment(batch, seed).numpy()
    assert out.shape == (8, 32, 32, 1)
    assert out.min() >= -1.0 - 1e-6 and out.max() <= 0.9 + 1e-6
    np.testing.assert_array_equal(out, datasets.classic_augment(batch, seed).numpy())
    assert not np.allclose(out[0], out[1])   # each slice draws its own warp
    assert not np.allclose(out, datasets.classic_augment(batch, tf.constant([1, 3], tf.int64)).numpy())


def test_train_dataset_order_is_seeded_and_epochs_differ():
    images = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1) * np.ones((1, 4, 4, 1), np.float32)
    labels = np.arange(12) % 2

    def epoch_orders(seed, classic=False):
        dataset = datasets.train_dataset(images, labels, 4, seed, classic)
        return [np.concatenate([x[:, 0, 0, 0] for x, _ in dataset.as_numpy_iterator()]) for _ in range(2)]

    first, second = epoch_orders(0)
    assert sorted(first) == list(range(12)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(epoch_orders(0)[0], first)
    augmented = epoch_orders(5, classic=True)
    np.testing.assert_array_equal(augmented[0], epoch_orders(5, classic=True)[0])


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixup_and_cutmix_labels_are_the_mixed_share_of_tumor(kind):
    # Tumor slices all ones, normal all zeros: a mixed slice's mean is the share of tumor in it,
    # which must be its label (MixUp: the same weight mixes image and label; CutMix: the box area).
    images = np.r_[np.ones((8, 16, 16, 1)), np.zeros((8, 16, 16, 1))].astype(np.float32)
    labels = np.r_[np.ones(8), np.zeros(8)]
    dataset = datasets.train_dataset(images, labels, 16, seed=3, classic=False, mixing=kind)
    batches = list(dataset.as_numpy_iterator())
    x, y = batches[0]
    assert y.shape == (16, 1) and 0 < np.mean((y > 0) & (y < 1))                # some labels are mixed
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), y[:, 0], atol=1e-5)
    second = next(datasets.train_dataset(images, labels, 16, seed=3, classic=False, mixing=kind).as_numpy_iterator())
    np.testing.assert_allclose(second[1], y)                                     # seeded


def test_keras_classic_layers_keep_shape_range_and_strength_zero_is_identity_up_to_flips():
    yy, xx = np.mgrid[:32, :32]
    disc = np.where((yy - 16) ** 2 + (xx - 10) ** 2 < 25, 0.9, -1.0).astype(np.float32)[None, ..., None]
    images, labels = np.repeat(disc, 8, axis=0), np.zeros(8)
    x, _ = next(datasets.train_dataset(images, labels, 8, 0, True, classic_impl="keras").as_numpy_iterator())
    assert x.shape == (8, 32, 32, 1) and x.min() >= -1.0 - 1e-5 and x.max() <= 0.9 + 1e-5
    assert not np.allclose(x[0], disc[0])
    still, _ = next(datasets.train_dataset(images, labels, 8, 0, True, classic_impl="keras",
                                       classic_strength=0.0).as_numpy_iterator())
    for slice_ in still:
        assert np.allclose(slice_, disc[0], atol=1e-5) or np.allclose(slice_, disc[0, :, ::-1], atol=1e-5)
    zero = datasets.classic_augment(tf.constant(images), tf.constant([1, 2], tf.int64), strength=0.0).numpy()
    for slice_ in zero:
        assert np.allclose(slice_, disc[0], atol=1e-4) or np.allclose(slice_, disc[0, :, ::-1], atol=1e-4)


def test_balanced_class_weights_by_value():
    weights = datasets.balanced_class_weights(np.array([0, 1, 1, 1]))
    assert weights == {0: pytest.approx(2.0), 1: pytest.approx(4 / 6)}
    # Each class then weighs half of the weighted total.
    assert 1 * weights[0] == pytest.approx(3 * weights[1])
    assert datasets.balanced_class_weights(np.array([1, 1])) == {0: 1.0, 1: 1.0}
