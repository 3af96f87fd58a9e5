"""ResNet18 (He et al., CVPR 2016, Table 1), the paper's tumor/normal classifier, built from
scratch in Keras: no pretrained weights exist for 1- or 4-channel MRI, and none are downloaded.

Layout as in the reference implementation: 7x7/2 stem conv, 3x3/2 max-pool, four stages of two
BasicBlocks (3x3 conv - BN - ReLU - 3x3 conv - BN, plus the shortcut) with widths w, 2w, 4w, 8w
and strides 1, 2, 2, 2, global average pooling and one logit (tumor vs normal). At w = 64 and one
input channel it has 11,170,753 trainable parameters: the 11,689,512 of the ImageNet model less
its 1000-way head (513,000) and two of its three input channels (6,272), plus a one-logit head
(513).
"""

from __future__ import annotations

import keras
from keras import layers

from ssagan_tf.precision import dtype_policy

STAGE_BLOCKS = (2, 2, 2, 2)
STAGE_STRIDES = (1, 2, 2, 2)
# Momentum 0.9 (Keras' default is 0.99) as in the reference implementation: with the few hundred
# steps of a small-data run, slower moving statistics would leave evaluation-mode BN unusable.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv_bn(x, filters: int, kernel_size: int, strides: int, name: str, relu: bool = True, dtype=None):
    """Convolution without bias (BN follows), batch normalisation (statistics in float32), optional
    ReLU."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", dtype=dtype, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype="float32", name=f"{name}_bn")(x)
    return layers.ReLU(dtype=dtype, name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters: int, strides: int, name: str, dtype=None):
    """The two-conv residual block of ResNet18/34; a 1x1 projection shortcut when the shape
    changes (He et al., option B)."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, strides, f"{name}_down", relu=False, dtype=dtype)
    x = conv_bn(x, filters, 3, strides, f"{name}_a", dtype=dtype)
    x = conv_bn(x, filters, 3, 1, f"{name}_b", relu=False, dtype=dtype)
    x = layers.Add(dtype=dtype, name=f"{name}_add")([x, shortcut])
    return layers.ReLU(dtype=dtype, name=f"{name}_out")(x)


def build_resnet18(image_size: int, channels: int = 1, width: int = 64, precision: str = "fp32") -> keras.Model:
    """ResNet18 mapping [N, image_size, image_size, channels] slices in [-1, 1] to one tumor
    logit per slice ([N, 1], float32 in every precision; sigmoid gives the tumor probability)."""
    dtype = dtype_policy(precision)
    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = conv_bn(inputs, width, 7, 2, "stem", dtype=dtype)
    x = layers.MaxPooling2D(3, strides=2, padding="same", dtype=dtype, name="stem_pool")(x)
    for stage, (blocks, strides) in enumerate(zip(STAGE_BLOCKS, STAGE_STRIDES), start=1):
        filters = width * 2 ** (stage - 1)
        for block in range(blocks):
            x = basic_block(x, filters, strides if block == 0 else 1, f"stage{stage}_block{block + 1}", dtype=dtype)
    x = layers.GlobalAveragePooling2D(dtype=dtype, name="pool")(x)
    logits = layers.Dense(1, dtype="float32", name="tumor_logit")(x)
    return keras.Model(inputs, logits, name=f"resnet18_w{width}")
