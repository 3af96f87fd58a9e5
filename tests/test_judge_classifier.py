"""ssagan_tf/judge/classifier.py and resnet.py: the ResNet18 in each precision, and a bf16 classifier
that trains."""

import numpy as np
import pytest
import tensorflow as tf

from ssagan_tf.judge.classifier import Classifier, predict_probabilities, train_classifier
from ssagan_tf.judge.resnet import build_resnet18


def separable(n=32, size=32, seed=0):
    """Tumor slices carry a bright square, normal ones do not."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, -0.5, (n, size, size, 1)).astype(np.float32)
    labels = np.arange(n) % 2
    images[labels == 1, 10:20, 10:20] = 0.9
    return images, labels.astype(np.float32)


@pytest.mark.parametrize("precision,compute", [("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16")])
def test_resnet18_computes_in_its_precision_with_float32_statistics_and_logits(precision, compute):
    model = build_resnet18(32, 1, 4, precision)
    assert model.get_layer("stem_conv").compute_dtype == compute
    assert model.get_layer("stem_bn").compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.weights)
    assert model(np.zeros((2, 32, 32, 1), np.float32)).dtype == tf.float32


@pytest.mark.slow
def test_bf16_classifier_trains():
    images, labels = separable()
    train = tf.data.Dataset.from_tensor_slices((images, labels[:, None])).shuffle(32, seed=0).batch(8)
    val = tf.data.Dataset.from_tensor_slices((images, labels[:, None])).batch(8)
    classifier = Classifier(32, 1, width=4, learning_rate=3e-3, precision="bf16")
    trained = train_classifier(classifier, train, val, epochs=8, patience=8, seed=0)
    losses = trained.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    probabilities = predict_probabilities(trained.model, val)
    assert ((probabilities >= 0.5) == labels.astype(bool)).mean() >= 0.9


@pytest.mark.slow
def test_cosine_schedule_and_weight_decay_are_what_fit_uses():
    images, labels = separable(n=16)
    data = tf.data.Dataset.from_tensor_slices((images, labels[:, None])).batch(8)
    classifier = Classifier(32, 1, width=4, learning_rate=1e-2, weight_decay=0.05, lr_schedule="cosine")
    assert classifier.model.optimizer.weight_decay == pytest.approx(0.05)       # AdamW
    assert [classifier.epoch_learning_rate(e, 4) for e in range(4)] == pytest.approx(
        [1e-2, 1e-2 * (1 + np.cos(np.pi / 4)) / 2, 0.5e-2, 1e-2 * (1 + np.cos(3 * np.pi / 4)) / 2])
    trained = train_classifier(classifier, data, data, epochs=3, patience=3, seed=0)
    assert trained.history["learning_rate"] == pytest.approx([classifier.epoch_learning_rate(e, 3) for e in range(3)])
    flat = Classifier(32, 1, width=4, learning_rate=1e-3)
    assert flat.epoch_learning_rate(5, 10) == 1e-3 and not getattr(flat.model.optimizer, "weight_decay", None)
