"""ssagan_tf/judge/resnet.py and classifier.py: ResNet18 shapes, parameter count, reuse."""

import numpy as np

from ssagan_tf.judge.classifier import Classifier
from ssagan_tf.judge.resnet import build_resnet18


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_width_64_has_the_known_resnet18_parameter_count():
    model = build_resnet18(64, channels=1, width=64)
    # torchvision's resnet18: 11,689,512 parameters with 3 input channels and a 1000-way head;
    # less the head (512*1000 + 1000) and two input channels (2*64*7*7), plus a one-logit head.
    assert _count(model.trainable_weights) == 11_689_512 - 513_000 - 6_272 + 513 == 11_170_753
    # BatchNorm moving means and variances: 2 per channel over 4,800 BN channels.
    assert _count(model.non_trainable_weights) == 9_600


def test_shapes_for_one_and_four_channels():
    for size, channels in ((32, 1), (64, 4)):
        model = build_resnet18(size, channels=channels, width=8)
        assert model.input_shape == (None, size, size, channels)
        assert model(np.zeros((3, size, size, channels), np.float32)).shape == (3, 1)
    assert model.get_layer("stage4_block2_out").output.shape[-1] == 64   # 8 * width


def test_reset_reproduces_seeded_initial_weights():
    classifier = Classifier(32, 1, 4, 1e-3)
    classifier.reset(7)
    first = [w.copy() for w in classifier.model.get_weights()]
    classifier.model.get_layer("tumor_logit").kernel.assign(np.ones((32, 1), np.float32))
    classifier.model.optimizer.iterations.assign(5)
    classifier.reset(7)
    assert all(np.array_equal(a, b) for a, b in zip(first, classifier.model.get_weights()))
    assert int(classifier.model.optimizer.iterations.numpy()) == 0
    classifier.reset(8)
    assert not np.array_equal(first[0], classifier.model.get_weights()[0])
