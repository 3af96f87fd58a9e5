"""Small building blocks shared by the generators, attention networks and discriminators.

Instance normalisation is Keras' `GroupNormalization` with one group per channel and no affine
parameters (equal to per-sample, per-channel instance norm); reflection padding is one small
layer over `keras.ops.pad`; spectral normalisation is `SpectralConv2D`, Miyato et al.'s
reparameterisation. Normalisation statistics and the power iteration always run in float32, so
that bf16/fp16 compute (`ssagan_tf.precision`) keeps them accurate.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


def conv_init():
    """N(0, 0.02), the CycleGAN/pix2pix weight initialisation."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


@keras.saving.register_keras_serializable(package="ssagan_tf")
class ReflectionPadding2D(layers.Layer):
    """Pad height and width by mirroring (no edge repeat), as CycleGAN's ResNet generator does:
    zero padding would give the 7x7 and residual convolutions a dark frame to learn around."""

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, inputs):
        p = self.padding
        return keras.ops.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.padding  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def instance_norm(name: str):
    """Instance normalisation without affine parameters, in float32 under mixed precision."""
    return layers.GroupNormalization(groups=-1, center=False, scale=False, epsilon=1e-5,
                                     dtype="float32", name=name)


@keras.saving.register_keras_serializable(package="ssagan_tf")
class SpectralConv2D(layers.Layer):
    """A 2-D convolution whose kernel is spectrally normalised as a reparameterisation (Miyato et
    al., ICLR 2018; `torch.nn.utils.spectral_norm`): the variable `kernel` holds W, the
    convolution uses W / sigma(W), and gradients flow through sigma.

    sigma is estimated by power iteration on W as a [filters, k*k*in] matrix: every call with
    `training=True` runs one iteration from the persisted vectors `u` (length filters) and `v`
    (length k*k*in), stores them, and computes sigma = u^T W v with u and v held constant in the
    gradient; other calls reuse the stored vectors. The iteration runs in float32 whatever the
    compute dtype. Keras' `SpectralNormalization` wrapper differs: it overwrites the kernel with
    W / sigma, so the optimizer steps the normalised weights and no gradient flows through sigma.
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, padding: str = "valid",
                 use_bias: bool = True, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
        self.padding, self.use_bias, self.epsilon = padding, bool(use_bias), float(epsilon)

    def build(self, input_shape):
        k, channels = self.kernel_size, int(input_shape[-1])
        # autocast=False: the weights are read in float32 and cast only after normalising.
        self.kernel = self.add_weight(shape=(k, k, channels, self.filters), initializer=conv_init(),
                                      name="kernel", autocast=False)
        self.bias = (self.add_weight(shape=(self.filters,), initializer="zeros", name="bias", autocast=False)
                     if self.use_bias else None)
        # The power-iteration vectors depend on W alone (mirrored), so every replica computes the
        # same update: each keeps its own copy (on_read: no cross-replica sync point inside the
        # step, which an XLA-compiled step could not hold) and checkpoints save the first one's.
        vector = dict(trainable=False, autocast=False, aggregation="only_first_replica", synchronization="on_read")
        normal = keras.initializers.RandomNormal(stddev=1.0)
        self.u = keras.Variable(normal, shape=(self.filters,), name="u", **vector)
        self.v = keras.Variable(normal, shape=(k * k * channels,), name="v", **vector)

    def _normalize(self, x):
        return x / (keras.ops.norm(x) + self.epsilon)

    def sigma(self, training: bool = False):
        """The spectral-norm estimate of W; with `training`, after one power iteration (which
        updates the stored u and v)."""
        matrix = keras.ops.reshape(keras.ops.convert_to_tensor(self.kernel), (-1, self.filters))  # W^T
        u, v = self._normalize(self.u.value), self._normalize(self.v.value)
        if training:
            v = self._normalize(keras.ops.matmul(matrix, u))                       # W^T u
            u = self._normalize(keras.ops.matmul(keras.ops.transpose(matrix), v))  # W v
            self.u.assign(u)
            self.v.assign(v)
        u, v = keras.ops.stop_gradient(u), keras.ops.stop_gradient(v)
        return keras.ops.sum(v * keras.ops.matmul(matrix, u))

    def call(self, inputs, training=False):
        kernel = keras.ops.convert_to_tensor(self.kernel) / self.sigma(bool(training))
        outputs = keras.ops.conv(inputs, keras.ops.cast(kernel, self.compute_dtype), strides=self.strides,
                                 padding=self.padding)
        if self.bias is not None:
            # bias_add, not "+": grappler's remapper fuses conv + BiasAdd + activation, and on an
            # Add it fails the fusion with an error line in the console.
            outputs = tf.nn.bias_add(outputs, keras.ops.cast(self.bias, self.compute_dtype))
        return outputs

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape

        def size(n):
            if n is None:
                return None
            n = n if self.padding == "same" else n - self.kernel_size + 1
            return -(-n // self.strides)
        return (b, size(h), size(w), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "use_bias": self.use_bias,
                "epsilon": self.epsilon}


def conv(filters: int, kernel: int, name: str, strides: int = 1, padding: str = "same",
         use_bias: bool = True, dtype=None, spectral_norm: bool = False):
    """A 2-D convolution with the N(0, 0.02) initialisation, optionally spectrally normalised."""
    if spectral_norm:
        return SpectralConv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias, dtype=dtype,
                              name=name)
    return layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias,
                         kernel_initializer=conv_init(), dtype=dtype, name=name)


def norm_relu(x, name: str, dtype=None):
    """Instance norm then ReLU: the hidden-layer pattern of the generator and attention nets."""
    x = instance_norm(f"{name}_in")(x)
    return layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)


def residual_block(x, filters: int, name: str, dtype=None):
    """CycleGAN residual block: reflect-pad, 3x3 conv, IN, ReLU, reflect-pad, 3x3 conv, IN, add."""
    y = ReflectionPadding2D(1, dtype=dtype, name=f"{name}_pad1")(x)
    y = conv(filters, 3, f"{name}_conv1", padding="valid", use_bias=False, dtype=dtype)(y)
    y = norm_relu(y, f"{name}_1", dtype=dtype)
    y = ReflectionPadding2D(1, dtype=dtype, name=f"{name}_pad2")(y)
    y = conv(filters, 3, f"{name}_conv2", padding="valid", use_bias=False, dtype=dtype)(y)
    y = instance_norm(f"{name}_2_in")(y)
    return layers.Add(dtype="float32", name=f"{name}_add")([x, y])
