"""Models: shapes and channels, the Eq. 1 composition by value, spectral normalisation, configs."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from ssagan_tf.models import SYSTEMS, ModelConfig, build_models, compose_attention, translate

TINY = dict(image_size=32, ngf=8, ndf=8, n_res_blocks=1)


def constant_attention(value, size=32, channels=1):
    """A stand-in attention network returning `value` everywhere."""
    images = keras.Input((size, size, channels))
    out = keras.layers.Lambda(lambda x: keras.ops.zeros_like(x[..., :1]) + value)(images)
    return keras.Model(images, out)


@pytest.fixture(scope="module")
def ssa_models():
    return build_models(ModelConfig.for_system("ssa_cyclegan", channels=1, **TINY))


@pytest.mark.parametrize("channels", [1, 4])
def test_shapes_and_channels(channels):
    models = build_models(ModelConfig.for_system("ssa_cyclegan", channels=channels, **TINY))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, channels)).astype(np.float32)
    for generator, attention in ((models.normal_to_tumor, models.attention_normal),
                                 (models.tumor_to_normal, models.attention_tumor)):
        translated, attention_map = translate(generator, attention, x)
        assert translated.shape == x.shape and translated.dtype == tf.float32
        assert attention_map.shape == (2, 32, 32, 1)
        assert np.all((attention_map.numpy() >= 0) & (attention_map.numpy() <= 1))
        assert np.all(np.abs(generator(x).numpy()) <= 1)
    for disc in (models.disc_tumor, models.disc_normal):
        assert disc(x).shape == (2, 2, 2, 1)     # 32 -> 16 -> 8 -> 4 -> 3 -> 2 patches


def test_zero_attention_returns_input_exactly(ssa_models):
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    translated, attention_map = translate(ssa_models.normal_to_tumor, constant_attention(0.0), x)
    np.testing.assert_array_equal(translated.numpy(), x)
    np.testing.assert_array_equal(attention_map.numpy(), 0.0)


def test_full_attention_returns_generator_output(ssa_models):
    x = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    translated, _ = translate(ssa_models.normal_to_tumor, constant_attention(1.0), x)
    np.testing.assert_array_equal(translated.numpy(), ssa_models.normal_to_tumor(x).numpy())


def test_no_attention_means_generator_output_and_unit_map():
    models = build_models(ModelConfig.for_system("cyclegan", channels=1, **TINY))
    assert models.attention_normal is None and models.attention_tumor is None
    x = np.random.default_rng(3).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    translated, attention_map = translate(models.tumor_to_normal, None, x)
    np.testing.assert_array_equal(translated.numpy(), models.tumor_to_normal(x).numpy())
    np.testing.assert_array_equal(attention_map.numpy(), np.ones((1, 32, 32, 1)))


def test_compose_attention_is_eq1_by_value():
    x = np.array([[[[0.2]], [[-0.4]]]], np.float32)          # [1, 2, 1, 1]
    g = np.array([[[[1.0]], [[0.6]]]], np.float32)
    a = np.array([[[[0.25]], [[0.5]]]], np.float32)
    np.testing.assert_allclose(compose_attention(tf.constant(x), g, a).numpy(), a * g + (1 - a) * x)


def test_tau_zeroes_attention_below_threshold(ssa_models):
    x = np.random.default_rng(4).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    translated, attention_map = translate(ssa_models.normal_to_tumor, constant_attention(0.05), x, tau=0.1)
    np.testing.assert_array_equal(attention_map.numpy(), 0.0)
    np.testing.assert_array_equal(translated.numpy(), x)
    _, kept = translate(ssa_models.normal_to_tumor, constant_attention(0.3), x, tau=0.1)
    np.testing.assert_allclose(kept.numpy(), 0.3, rtol=1e-6)


def test_spectral_norm_bounds_discriminator_weights(ssa_models):
    disc = ssa_models.disc_tumor
    kernels = [v for v in disc.trainable_variables if v.path.endswith("kernel")]
    assert len(kernels) == 5
    for k in kernels:                      # blow the weights up far beyond norm 1
        k.assign(k * 300.0)
    x = np.random.default_rng(5).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    for _ in range(30):                    # the power iteration converges across calls
        disc(x, training=True)
    for k in kernels:
        matrix = k.numpy().reshape(-1, k.shape[-1])
        sigma = np.linalg.svd(matrix, compute_uv=False)[0]
        assert sigma < 1.05, (k.path, sigma)


def test_without_spectral_norm_weights_are_untouched():
    models = build_models(ModelConfig.for_system("attention_cyclegan", channels=1, **TINY))
    disc = models.disc_normal
    before = [v.numpy().copy() for v in disc.trainable_variables]
    disc(np.zeros((1, 32, 32, 1), np.float32), training=True)
    for b, v in zip(before, disc.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())


def test_systems_and_config_validation():
    assert set(SYSTEMS) == {"cyclegan", "spec_cyclegan", "attention_cyclegan", "specatte_cyclegan", "ssa_cyclegan"}
    ssa = ModelConfig.for_system("ssa_cyclegan", **TINY)
    assert (ssa.use_attention, ssa.spectral_norm, ssa.mask_loss) == (True, True, True)
    plain = ModelConfig.for_system("cyclegan", **TINY)
    assert (plain.use_attention, plain.spectral_norm, plain.mask_loss) == (False, False, False)
    assert ModelConfig.from_dict({**ssa.to_dict(), "unknown": 1}) == ssa
    with pytest.raises(ValueError, match="mask_loss needs use_attention"):
        ModelConfig(use_attention=False, mask_loss=True)
    with pytest.raises(ValueError, match="multiple of 4"):
        ModelConfig(image_size=30)
    with pytest.raises(ValueError, match="unknown system"):
        ModelConfig.for_system("pix2pix")


def test_attention_width_defaults_to_ngf_and_follows_attention_ngf():
    def widths(models):
        return {name: models.named()[name].get_layer("enc1_conv").filters
                for name in ("attention_normal", "attention_tumor")}

    def generator_width(models):
        return models.normal_to_tumor.get_layer("stem_conv").filters

    reference = build_models(ModelConfig.for_system("ssa_cyclegan", **TINY))
    assert widths(reference) == {"attention_normal": 8, "attention_tumor": 8}
    light = build_models(ModelConfig.for_system("ssa_cyclegan", **{**TINY, "attention_ngf": 4}))
    assert widths(light) == {"attention_normal": 4, "attention_tumor": 4}
    assert generator_width(light) == generator_width(reference) == 8
    assert light.attention_normal.count_params() < reference.attention_normal.count_params()
    # Configs written before attention_ngf existed read as the reference shape.
    old = {k: v for k, v in reference.config.to_dict().items() if k != "attention_ngf"}
    assert ModelConfig.from_dict(old).attention_filters == 8
    with pytest.raises(ValueError, match="attention_ngf must be >= 0"):
        ModelConfig(attention_ngf=-1)


def test_mixed_precision_keeps_float32_variables_and_outputs():
    models = build_models(ModelConfig.for_system("ssa_cyclegan", channels=1, mixed_precision=True, **TINY))
    x = np.zeros((1, 32, 32, 1), np.float32)
    translated, attention_map = translate(models.normal_to_tumor, models.attention_normal, x)
    assert translated.dtype == tf.float32 and attention_map.dtype == tf.float32
    assert models.disc_tumor(x, training=True).dtype == tf.float32
    assert all(v.dtype == "float32" for m in models.named().values() for v in m.weights)
    assert models.normal_to_tumor.get_layer("stem_conv").compute_dtype == "float16"
