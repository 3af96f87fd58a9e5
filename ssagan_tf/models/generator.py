"""The translation generators G_n2t and G_t2n: CycleGAN's ResNet generator (docs/method.md, "Networks").

    c7s1-ngf, d(2 ngf), d(4 ngf), R(4 ngf) x n_res_blocks, u(2 ngf), u(ngf), c7s1-C, tanh

u_k is CycleGAN's stride-2 transposed convolution (`upsample="transpose"`, the default) or, with
`upsample="resize"`, nearest-neighbour x2 then a 3x3 convolution (Odena et al. 2016), which cannot
leave the checkerboard a transposed convolution's uneven kernel overlap paints into flat regions.
"""

from __future__ import annotations

import keras
from keras import layers

from ssagan_tf.choices import UPSAMPLING
from ssagan_tf.models.layers import ReflectionPadding2D, conv, conv_init, norm_relu, residual_block


def downsample(x, filters: int, name: str, dtype=None):
    """d_k: 3x3 stride-2 convolution, IN, ReLU."""
    x = conv(filters, 3, f"{name}_conv", strides=2, use_bias=False, dtype=dtype)(x)
    return norm_relu(x, name, dtype=dtype)


def upsample(x, filters: int, name: str, dtype=None, mode: str = "transpose"):
    """u_k: 3x3 stride-2 transposed convolution (transpose) or nearest x2 + 3x3 convolution
    (resize), then IN, ReLU."""
    if mode == "transpose":
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=conv_init(), dtype=dtype, name=f"{name}_deconv")(x)
    elif mode == "resize":
        x = layers.UpSampling2D(2, dtype=dtype, name=f"{name}_up")(x)
        x = conv(filters, 3, f"{name}_conv", use_bias=False, dtype=dtype)(x)
    else:
        raise ValueError(f"upsample must be one of {UPSAMPLING}, got {mode!r}")
    return norm_relu(x, name, dtype=dtype)


def resnet_generator(image_size: int, channels: int, ngf: int = 64, n_res_blocks: int = 9,
                     dtype=None, name: str = "generator", upsampling: str = "transpose") -> keras.Model:
    """[B, S, S, C] in [-1, 1] -> [B, S, S, C] in [-1, 1] (tanh, float32)."""
    images = keras.Input((image_size, image_size, channels), name="images")
    x = ReflectionPadding2D(3, dtype=dtype, name="stem_pad")(images)
    x = conv(ngf, 7, "stem_conv", padding="valid", use_bias=False, dtype=dtype)(x)
    x = norm_relu(x, "stem", dtype=dtype)
    x = downsample(x, 2 * ngf, "down1", dtype=dtype)
    x = downsample(x, 4 * ngf, "down2", dtype=dtype)
    for i in range(n_res_blocks):
        x = residual_block(x, 4 * ngf, f"res{i + 1}", dtype=dtype)
    x = upsample(x, 2 * ngf, "up1", dtype=dtype, mode=upsampling)
    x = upsample(x, ngf, "up2", dtype=dtype, mode=upsampling)
    x = ReflectionPadding2D(3, dtype=dtype, name="head_pad")(x)
    x = conv(channels, 7, "head_conv", padding="valid", dtype=dtype)(x)
    outputs = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(images, outputs, name=name)
