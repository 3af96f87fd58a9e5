"""The SSA-CycleGAN model: configuration, the paper's five systems, the six networks, and the
attention composition of paper Eq. 1.

Code names and paper names:

    normal_to_tumor   G_n2t   generator N -> T
    tumor_to_normal   G_t2n   generator T -> N
    attention_normal  A_n     where to add a tumor to a normal slice
    attention_tumor   A_t     where the tumor is in a tumor slice (the one the mask supervises)
    disc_tumor        D_t     real tumor slices vs translated normal ones
    disc_normal       D_n     real normal slices vs translated tumor ones

and, with `d_local` (not in the paper), `disc_tumor_local` and `disc_normal_local`: the same
PatchGAN on crops where the attention points (`ssagan_tf.training.step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from ssagan_tf.choices import CYCLE_ATTENTIONS, SYSTEMS  # noqa: F401  (re-exported by ssagan_tf.models)
from ssagan_tf.models.attention import attention_network
from ssagan_tf.models.config import ModelConfig
from ssagan_tf.models.discriminator import patch_discriminator
from ssagan_tf.models.generator import resnet_generator

@dataclass
class SSAModels:
    """The six networks; the attention networks are None in systems without attention."""

    config: ModelConfig
    normal_to_tumor: keras.Model
    tumor_to_normal: keras.Model
    attention_normal: keras.Model | None
    attention_tumor: keras.Model | None
    disc_tumor: keras.Model
    disc_normal: keras.Model
    disc_tumor_local: keras.Model | None = None
    disc_normal_local: keras.Model | None = None

    def named(self) -> dict:
        """name -> model for every network present (checkpoints and summaries iterate this)."""
        names = ("normal_to_tumor", "tumor_to_normal", "attention_normal", "attention_tumor",
                 "disc_tumor", "disc_normal", "disc_tumor_local", "disc_normal_local")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @property
    def generator_variables(self) -> list:
        return self.normal_to_tumor.trainable_variables + self.tumor_to_normal.trainable_variables

    @property
    def attention_variables(self) -> list:
        if self.attention_normal is None:
            return []
        return self.attention_normal.trainable_variables + self.attention_tumor.trainable_variables

    @property
    def discriminator_variables(self) -> list:
        local = [v for d in (self.disc_tumor_local, self.disc_normal_local) if d is not None
                 for v in d.trainable_variables]
        return self.disc_tumor.trainable_variables + self.disc_normal.trainable_variables + local


def build_models(cfg: ModelConfig) -> SSAModels:
    """Build the six networks of `cfg` (call inside `strategy.scope()` to distribute them)."""
    dtype = cfg.dtype_policy
    size, channels = cfg.image_size, cfg.channels
    attention = {}
    for direction in ("normal", "tumor"):
        attention[direction] = (attention_network(size, channels, cfg.attention_filters, dtype=dtype,
                                                  name=f"attention_{direction}")
                                if cfg.use_attention else None)
    return SSAModels(
        config=cfg,
        normal_to_tumor=resnet_generator(size, channels, cfg.ngf, cfg.n_res_blocks, dtype=dtype,
                                         name="normal_to_tumor", upsampling=cfg.upsample),
        tumor_to_normal=resnet_generator(size, channels, cfg.ngf, cfg.n_res_blocks, dtype=dtype,
                                         name="tumor_to_normal", upsampling=cfg.upsample),
        attention_normal=attention["normal"],
        attention_tumor=attention["tumor"],
        disc_tumor=patch_discriminator(size, channels, cfg.ndf, cfg.spectral_norm, dtype=dtype, name="disc_tumor"),
        disc_normal=patch_discriminator(size, channels, cfg.ndf, cfg.spectral_norm, dtype=dtype, name="disc_normal"),
        **({name: patch_discriminator(None, channels, cfg.ndf, cfg.spectral_norm, dtype=dtype, name=name)
            for name in ("disc_tumor_local", "disc_normal_local")} if cfg.local_discriminators else {}),
    )


def compose_attention(images, generated, attention):
    """Paper Eq. 1: ``A(x) * G(x) + (1 - A(x)) * x``; the input passes through unchanged where the
    attention is 0. `attention` is [B, H, W, 1] and broadcasts over the image channels."""
    return attention * generated + (1.0 - attention) * images


def threshold_attention(attention, tau: float):
    """Zero attention below `tau` (the inference threshold; docs/method.md, "The composition"), so faint
    attention far from the lesion leaves those pixels exactly as they were."""
    return tf.where(attention >= tau, attention, tf.zeros_like(attention))


def translate(generator, attention, images, tau: float = 0.0, training: bool = False):
    """Translate `images` with `generator` guided by `attention` (paper Eq. 1).

    Returns ``(translated, attention_map)``. Without an attention network the map is all ones
    and the translation is the generator's output. With `tau > 0` attention below tau is zeroed
    before composing.
    """
    return translate_parts(generator, attention, images, tau, training)[:2]


def translate_parts(generator, attention, images, tau: float = 0.0, training: bool = False):
    """`translate`, also returning what the generator drew before the composition:
    ``(translated, attention_map, generated)``, all float32."""
    images = tf.convert_to_tensor(images, tf.float32)
    generated = tf.cast(generator(images, training=training), tf.float32)
    if attention is None:
        return generated, tf.ones_like(images[..., :1]), generated
    attention_map = tf.cast(attention(images, training=training), tf.float32)
    if tau > 0:
        attention_map = threshold_attention(attention_map, tau)
    return compose_attention(images, generated, attention_map), attention_map, generated


def reconstruct(generator, attention, translated, source_attention, cycle_attention: str = "recompute",
                training: bool = False, tau: float = 0.0):
    """The cycle's way back: `generator` (guided by `attention`, the other direction's network)
    applied to `translated`, whose forward translation used `source_attention`.

    recompute (the paper): ``A(y) * G(y) + (1 - A(y)) * y`` with A run on the translation y, so a
    change survives the cycle only where that network sees it. source: ``A_src * G(y) + (1 - A_src)
    * y``, the way back changes exactly the region the way there changed. Without attention
    networks both are the generator's output. `tau` thresholds a recomputed attention."""
    if cycle_attention not in CYCLE_ATTENTIONS:
        raise ValueError(f"cycle_attention must be one of {CYCLE_ATTENTIONS}, got {cycle_attention!r}")
    if attention is None or cycle_attention == "recompute":
        return translate(generator, attention, translated, tau=tau, training=training)[0]
    translated = tf.convert_to_tensor(translated, tf.float32)
    generated = tf.cast(generator(translated, training=training), tf.float32)
    return compose_attention(translated, generated, tf.cast(source_attention, tf.float32))
