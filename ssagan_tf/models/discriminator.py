"""The discriminators D_t and D_n: 70x70 PatchGAN (docs/method.md, "Networks").

    C64 (no norm), C128, C256 (stride 2), C512 (stride 1), 1-channel 4x4 conv; LeakyReLU 0.2;
    every convolution spectrally normalised in the `spec_*` and `ssa_*` systems.
"""

from __future__ import annotations

import keras
from keras import layers

from ssagan_tf.models.layers import conv, instance_norm


def patch_block(x, filters: int, strides: int, normalize: bool, name: str, spectral_norm: bool, dtype=None):
    """C_k: zero-pad 1, 4x4 conv (stride 2 or 1), IN (except the first block), LeakyReLU 0.2."""
    x = layers.ZeroPadding2D(1, dtype=dtype, name=f"{name}_pad")(x)
    # A bias before instance norm is cancelled by it; keep it only where there is no norm.
    x = conv(filters, 4, f"{name}_conv", strides=strides, padding="valid", use_bias=not normalize,
             dtype=dtype, spectral_norm=spectral_norm)(x)
    if normalize:
        x = instance_norm(f"{name}_in")(x)
    return layers.LeakyReLU(0.2, dtype=dtype, name=f"{name}_lrelu")(x)


def patch_discriminator(image_size: int | None, channels: int, ndf: int = 64, spectral_norm: bool = False,
                        dtype=None, name: str = "discriminator") -> keras.Model:
    """[B, S, S, C] -> [B, S/8 - 2, S/8 - 2, 1] patch logits (float32). `image_size` None takes any
    side of at least 24 (the local discriminators: crops, and the full slices of the checks)."""
    images = keras.Input((image_size, image_size, channels), name="images")
    x = patch_block(images, ndf, 2, False, "c1", spectral_norm, dtype)
    x = patch_block(x, 2 * ndf, 2, True, "c2", spectral_norm, dtype)
    x = patch_block(x, 4 * ndf, 2, True, "c3", spectral_norm, dtype)
    x = patch_block(x, 8 * ndf, 1, True, "c4", spectral_norm, dtype)
    x = layers.ZeroPadding2D(1, dtype=dtype, name="head_pad")(x)
    x = conv(1, 4, "head_conv", padding="valid", dtype=dtype, spectral_norm=spectral_norm)(x)
    logits = layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(images, logits, name=name)
