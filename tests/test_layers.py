"""models/layers.py: spectral normalisation as a reparameterisation (forward, power iteration and
gradient against hand computations), reflection padding and instance norm in float32."""

import numpy as np
import pytest
import tensorflow as tf

from ssagan_tf.models.layers import ReflectionPadding2D, SpectralConv2D, instance_norm


def built_layer(filters=3, kernel=3, channels=2, strides=1, padding="valid", dtype=None, seed=0):
    layer = SpectralConv2D(filters, kernel, strides=strides, padding=padding, dtype=dtype)
    layer.build((None, 8, 8, channels))
    rng = np.random.default_rng(seed)
    layer.kernel.assign(rng.normal(0, 1, layer.kernel.shape).astype(np.float32))
    layer.bias.assign(rng.normal(0, 1, layer.bias.shape).astype(np.float32))
    return layer


def hand_power_iteration(kernel, u, v):
    """One iteration as torch.nn.utils.spectral_norm does it, on W = [filters, k*k*in]."""
    w = kernel.reshape(-1, kernel.shape[-1]).T
    normalize = lambda x: x / (np.linalg.norm(x) + 1e-12)  # noqa: E731
    u, v = normalize(u), normalize(v)
    v = normalize(w.T @ u)
    u = normalize(w @ v)
    return u, v, float(u @ w @ v)


def test_training_call_runs_one_power_iteration_and_divides_by_sigma():
    layer = built_layer()
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    u0, v0 = layer.u.numpy(), layer.v.numpy()
    x = np.random.default_rng(1).normal(0, 1, (2, 8, 8, 2)).astype(np.float32)
    out = layer(x, training=True).numpy()
    u1, v1, sigma = hand_power_iteration(kernel, u0, v0)
    np.testing.assert_allclose(layer.u.numpy(), u1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.v.numpy(), v1, rtol=1e-5, atol=1e-6)
    expected = tf.nn.conv2d(x, kernel / sigma, 1, "VALID").numpy() + bias
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # The variable keeps W itself: the normalisation is a reparameterisation, not an overwrite.
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)


def test_inference_call_reuses_the_stored_vectors():
    layer = built_layer()
    x = np.ones((1, 8, 8, 2), np.float32)
    layer(x, training=True)
    u, v = layer.u.numpy().copy(), layer.v.numpy().copy()
    sigma = float(u @ layer.kernel.numpy().reshape(-1, 3).T @ v)
    out = layer(x, training=False).numpy()
    np.testing.assert_array_equal(layer.u.numpy(), u)
    expected = tf.nn.conv2d(x, layer.kernel.numpy() / sigma, 1, "VALID").numpy() + layer.bias.numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_power_iteration_converges_to_the_largest_singular_value():
    layer = built_layer(filters=4, kernel=4, channels=3, seed=3)
    for _ in range(60):
        sigma = float(layer.sigma(training=True))
    true_sigma = np.linalg.svd(layer.kernel.numpy().reshape(-1, 4), compute_uv=False)[0]
    assert sigma == pytest.approx(true_sigma, rel=1e-4)


def test_gradient_flows_through_sigma_with_u_and_v_constant():
    """d/dW of sum(g * conv(x, W / sigma(W))) with sigma = u^T W v and u, v constant:
    G / sigma - <G, W> / sigma^2 * (u v^T), G the gradient w.r.t. the effective kernel."""
    layer = built_layer(seed=4)
    x = tf.constant(np.random.default_rng(5).normal(0, 1, (2, 8, 8, 2)).astype(np.float32))
    g = tf.constant(np.random.default_rng(6).normal(0, 1, (2, 6, 6, 3)).astype(np.float32))
    layer(x, training=True)                      # settle u, v; the next call iterates once more
    kernel = layer.kernel.numpy()
    u, v, sigma = hand_power_iteration(kernel, layer.u.numpy(), layer.v.numpy())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(g * layer(x, training=True))
    grad = tape.gradient(loss, layer.kernel).numpy()

    effective = tf.Variable(kernel / sigma)
    with tf.GradientTape() as tape:
        plain = tf.reduce_sum(g * tf.nn.conv2d(x, effective, 1, "VALID"))
    g_eff = tape.gradient(plain, effective).numpy()
    # W^T in the layer's [k*k*in, filters] layout; d sigma / d W^T = v u^T.
    d_sigma = np.outer(v, u).reshape(kernel.shape)
    expected = g_eff / sigma - np.sum(g_eff * kernel) / sigma ** 2 * d_sigma
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    # Keras' SpectralNormalization would give g_eff / sigma only: the sigma term is not small here.
    assert np.abs(expected - g_eff / sigma).max() > 1e-3


@pytest.mark.parametrize("padding,strides", [("valid", 2), ("same", 1), ("same", 2)])
def test_output_shape_matches_a_plain_convolution(padding, strides):
    layer = built_layer(padding=padding, strides=strides)
    x = np.zeros((1, 8, 8, 2), np.float32)
    expected = tf.nn.conv2d(x, layer.kernel.numpy(), strides, padding.upper()).shape
    assert tuple(layer(x).shape) == tuple(expected)
    assert layer.compute_output_shape((1, 8, 8, 2)) == tuple(expected)


def test_bf16_computes_in_bfloat16_and_keeps_the_iteration_float32():
    layer = built_layer(dtype="mixed_bfloat16")
    out = layer(np.ones((1, 8, 8, 2), np.float32), training=True)
    assert out.dtype == tf.bfloat16
    assert all(w.dtype == "float32" for w in layer.weights)
    assert layer.sigma().dtype == tf.float32


def test_reflection_padding_and_float32_instance_norm():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    padded = ReflectionPadding2D(1)(x).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(padded[0], [4, 3, 4, 5, 4])
    norm = instance_norm("n")
    out = norm(tf.cast(x, tf.bfloat16))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy().mean(), 0.0, atol=1e-3)


REPLICA_SCRIPT = r"""
import sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from ssagan_tf.models.layers import SpectralConv2D
x = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype(np.float32)
results = []
for n in (1, 2):
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")][:n])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        layer = SpectralConv2D(4, 3)
        layer.build((None, 8, 8, 2))
    batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(2))

    @tf.function
    def step(images):
        def replica(images):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(images, training=True) ** 2) + tf.reduce_sum(layer(2 * images, training=True))
            return tf.distribute.get_replica_context().all_reduce("sum", tape.gradient(loss, layer.kernel.value))
        return strategy.run(replica, args=(images,))

    gradient = strategy.experimental_local_results(step(next(iter(batches))))[0].numpy()
    results.append((gradient, layer.u.numpy(), layer.v.numpy()))
for one, two in zip(*results):
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-4)
print("replicas agree")
"""


def test_two_replicas_compute_the_same_power_iteration_and_gradient_as_one(tmp_path):
    """Under MirroredStrategy every replica iterates u and v from the same W (the first replica's
    result is kept), and the all-reduced gradient equals one device's on the whole batch."""
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    done = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT))
    assert done.returncode == 0 and "replicas agree" in done.stdout, done.stdout + done.stderr
