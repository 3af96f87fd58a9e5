"""ssagan_tf/evaluation/arms.py: the arms' training sets and classic augmentation (the ratio arithmetic
and the seeded selection are tested in test_synthetic.py)."""

import numpy as np
import pytest

from ssagan_tf.evaluation import arms
from ssagan_tf.evaluation.augmenters import Translation


def _translation(count, value, size=8):
    images = np.full((count, size, size, 1), value, np.float32)
    images[:, 0, 0, 0] = np.arange(count)   # tag each slice with its source index
    return Translation(source=images, image=images, attention=np.ones_like(images))


def test_synthetic_slices_count_and_label_per_class():
    labels = np.array([0] * 6 + [1] * 4)
    to_tumor, to_normal = _translation(6, 0.9), _translation(4, -0.5)   # from 6 normal, 4 tumor
    images, fake_labels, selected = arms.synthetic_slices(to_tumor, to_normal, labels, ratio=2.0, seed=1)
    assert (fake_labels == 1).sum() == 8 and (fake_labels == 0).sum() == 12
    assert np.all(images[fake_labels == 1, 1, 1, 0] == np.float32(0.9))   # synthetic tumors come from normal
    np.testing.assert_array_equal(images[fake_labels == 1, 0, 0, 0], selected["tumor"])
    again = arms.synthetic_slices(to_tumor, to_normal, labels, ratio=2.0, seed=1)
    assert np.array_equal(again[0], images)


def test_training_set_per_arm():
    train = {"image": np.zeros((10, 8, 8, 1), np.float32), "label": np.array([0] * 6 + [1] * 4)}
    for arm in ("none", "classic"):
        images, labels, selected = arms.training_set(train, arm)
        assert len(images) == 10 and selected is None
    synthetic = (_translation(6, 0.9), _translation(4, -0.5))
    images, labels, selected = arms.training_set(train, "synthetic", synthetic, ratio=0.5, seed=0)
    assert len(images) == 10 + 2 + 3 and labels.sum() == 4 + 2
    with pytest.raises(ValueError, match="needs synthetic"):
        arms.training_set(train, "synthetic+classic")


def test_classic_augment_is_seeded_keeps_shape_and_range():
    import tensorflow as tf

    yy, xx = np.mgrid[:32, :32]
    disc = np.where((yy - 16) ** 2 + (xx - 10) ** 2 < 25, 0.9, -1.0).astype(np.float32)
    batch = tf.constant(np.stack([disc] * 8)[..., None])
    seed = tf.constant([1, 2], tf.int64)
    out = arms.classic_augment(batch, seed).numpy()
    assert out.shape == (8, 32, 32, 1)
    assert out.min() >= -1.0 - 1e-6 and out.max() <= 0.9 + 1e-6
    np.testing.assert_array_equal(out, arms.classic_augment(batch, seed).numpy())
    assert not np.allclose(out[0], out[1])   # each slice draws its own warp
    assert not np.allclose(out, arms.classic_augment(batch, tf.constant([1, 3], tf.int64)).numpy())


def test_train_dataset_order_is_seeded_and_epochs_differ():
    images = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1) * np.ones((1, 4, 4, 1), np.float32)
    labels = np.arange(12) % 2

    def epoch_orders(seed, classic=False):
        dataset = arms.train_dataset(images, labels, 4, seed, classic)
        return [np.concatenate([x[:, 0, 0, 0] for x, _ in dataset.as_numpy_iterator()]) for _ in range(2)]

    first, second = epoch_orders(0)
    assert sorted(first) == list(range(12)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(epoch_orders(0)[0], first)
    augmented = epoch_orders(5, classic=True)
    np.testing.assert_array_equal(augmented[0], epoch_orders(5, classic=True)[0])
