"""Small building blocks shared by the generators, attention networks and discriminators.

Instance normalisation is Keras' `GroupNormalization` with one group per channel and no affine
parameters (equal to per-sample, per-channel instance norm); reflection padding is one small
layer over `keras.ops.pad`. Normalisation always runs in float32 so that mixed precision keeps
its statistics accurate.
"""

from __future__ import annotations

import keras
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


def conv(filters: int, kernel: int, name: str, strides: int = 1, padding: str = "same",
         use_bias: bool = True, dtype=None, spectral_norm: bool = False):
    """A 2-D convolution with the N(0, 0.02) initialisation, optionally spectrally normalised."""
    layer = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias,
                          kernel_initializer=conv_init(), dtype=dtype, name=name)
    if spectral_norm:
        return layers.SpectralNormalization(layer, power_iterations=1, dtype=dtype, name=f"{name}_sn")
    return layer


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
