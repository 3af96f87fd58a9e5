"""The attention networks A_n and A_t (docs/method.md, "Networks"): a small encoder-decoder returning a
one-channel map in [0, 1] of where the translation may change the image.

    c7s2-ngf, c3s2-2ngf, R(2 ngf), up2 + c3-2ngf, up2 + c3-ngf, c7-1, sigmoid
"""

from __future__ import annotations

import keras
from keras import layers

from ssagan_tf.models.layers import conv, norm_relu, residual_block


def attention_network(image_size: int, channels: int, ngf: int = 64, dtype=None,
                      name: str = "attention") -> keras.Model:
    """[B, S, S, C] -> [B, S, S, 1] attention in [0, 1] (sigmoid, float32)."""
    images = keras.Input((image_size, image_size, channels), name="images")
    x = conv(ngf, 7, "enc1_conv", strides=2, use_bias=False, dtype=dtype)(images)
    x = norm_relu(x, "enc1", dtype=dtype)
    x = conv(2 * ngf, 3, "enc2_conv", strides=2, use_bias=False, dtype=dtype)(x)
    x = norm_relu(x, "enc2", dtype=dtype)
    x = residual_block(x, 2 * ngf, "res1", dtype=dtype)
    for i, filters in enumerate((2 * ngf, ngf), start=1):
        # Nearest upsampling then a conv avoids the checkerboard a transposed conv leaves in a map
        # that is thresholded later.
        x = layers.UpSampling2D(2, dtype=dtype, name=f"dec{i}_up")(x)
        x = conv(filters, 3, f"dec{i}_conv", use_bias=False, dtype=dtype)(x)
        x = norm_relu(x, f"dec{i}", dtype=dtype)
    x = conv(1, 7, "head_conv", dtype=dtype)(x)
    attention = layers.Activation("sigmoid", dtype="float32", name="sigmoid")(x)
    return keras.Model(images, attention, name=name)
