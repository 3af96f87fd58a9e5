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


def test_reconstruct_reuses_or_recomputes_the_attention_by_value(ssa_models):
    from ssagan_tf.models import reconstruct

    images = tf.constant(np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 1)), tf.float32)
    constant = lambda x, training=False: tf.fill(tf.shape(x), 0.5)      # a generator drawing 0.5 everywhere
    ones = lambda x, training=False: tf.ones_like(x[..., :1])
    source = np.zeros((2, 32, 32, 1), np.float32)
    source[:, :16] = 0.25
    # source: the forward map decides where the way back may change the image.
    got = reconstruct(constant, ones, images, source, "source").numpy()
    np.testing.assert_allclose(got, source * 0.5 + (1 - source) * images.numpy(), atol=1e-6)
    # recompute: the attention network run on the translation decides (here: everywhere).
    np.testing.assert_allclose(reconstruct(constant, ones, images, source, "recompute").numpy(), 0.5, atol=1e-6)
    # Without attention networks it is the generator's output either way.
    np.testing.assert_allclose(reconstruct(constant, None, images, source, "source").numpy(), 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="cycle_attention"):
        reconstruct(constant, ones, images, source, "other")


def test_tau_zeroes_attention_below_threshold(ssa_models):
    x = np.random.default_rng(4).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    translated, attention_map = translate(ssa_models.normal_to_tumor, constant_attention(0.05), x, tau=0.1)
    np.testing.assert_array_equal(attention_map.numpy(), 0.0)
    np.testing.assert_array_equal(translated.numpy(), x)
    _, kept = translate(ssa_models.normal_to_tumor, constant_attention(0.3), x, tau=0.1)
    np.testing.assert_allclose(kept.numpy(), 0.3, rtol=1e-6)


def test_spectral_systems_normalise_every_discriminator_conv_as_a_reparameterisation(ssa_models):
    from ssagan_tf.models.layers import SpectralConv2D

    disc = ssa_models.disc_tumor
    convs = [layer for layer in disc.layers if isinstance(layer, SpectralConv2D)]
    assert len(convs) == 5
    for layer in convs:                    # blow the weights up far beyond norm 1
        layer.kernel.assign(layer.kernel * 300.0)
    before = [layer.kernel.numpy().copy() for layer in convs]
    x = np.random.default_rng(5).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    for _ in range(30):                    # the power iteration converges across calls
        disc(x, training=True)
    for layer, kernel in zip(convs, before):
        np.testing.assert_array_equal(layer.kernel.numpy(), kernel)   # W is kept, not overwritten
        true_sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert float(layer.sigma()) == pytest.approx(true_sigma, rel=0.05), layer.name
    # The effective weights W / sigma(W) have spectral norm ~1, so D's outputs stay bounded.
    assert np.abs(disc(x).numpy()).max() < 100


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


def test_resize_upsampling_builds_the_same_shapes_without_transposed_convolutions():
    resize = build_models(ModelConfig(image_size=32, ngf=8, ndf=8, n_res_blocks=1, upsample="resize"))
    transpose = build_models(ModelConfig(image_size=32, ngf=8, ndf=8, n_res_blocks=1))
    kinds = lambda model: {type(layer).__name__ for layer in model.layers}
    assert "Conv2DTranspose" in kinds(transpose.normal_to_tumor)
    assert "Conv2DTranspose" not in kinds(resize.normal_to_tumor) and "UpSampling2D" in kinds(resize.normal_to_tumor)
    x = tf.zeros((2, 32, 32, 1))
    assert resize.normal_to_tumor(x).shape == transpose.normal_to_tumor(x).shape == (2, 32, 32, 1)
    assert ModelConfig.from_dict({"image_size": 32}).upsample == "transpose"      # runs saved before the field
    with pytest.raises(ValueError, match="upsample"):
        ModelConfig(upsample="bilinear")


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


@pytest.mark.parametrize("precision,compute", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_reduced_precision_keeps_float32_variables_and_outputs(precision, compute):
    models = build_models(ModelConfig.for_system("ssa_cyclegan", channels=1, precision=precision, **TINY))
    x = np.zeros((1, 32, 32, 1), np.float32)
    translated, attention_map = translate(models.normal_to_tumor, models.attention_normal, x)
    assert translated.dtype == tf.float32 and attention_map.dtype == tf.float32
    assert models.disc_tumor(x, training=True).dtype == tf.float32
    assert all(v.dtype == "float32" for m in models.named().values() for v in m.weights)
    assert models.normal_to_tumor.get_layer("stem_conv").compute_dtype == compute
    assert models.normal_to_tumor.get_layer("stem_in").compute_dtype == "float32"
    assert models.attention_tumor.get_layer("sigmoid").compute_dtype == "float32"


def test_precision_config_and_old_mixed_precision_field():
    assert ModelConfig().precision == "fp32" and ModelConfig().dtype_policy == "float32"
    assert ModelConfig(precision="bf16").dtype_policy == "mixed_bfloat16"
    base = {k: v for k, v in ModelConfig(**TINY).to_dict().items() if k != "precision"}
    assert ModelConfig.from_dict({**base, "mixed_precision": True}).precision == "fp16"
    assert ModelConfig.from_dict({**base, "mixed_precision": False}).precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        ModelConfig(precision="auto")


def test_bf16_translation_is_close_to_fp32_with_the_same_weights():
    fp32 = build_models(ModelConfig.for_system("ssa_cyclegan", channels=1, **TINY))
    bf16 = build_models(ModelConfig.for_system("ssa_cyclegan", channels=1, precision="bf16", **TINY))
    for name, model in fp32.named().items():
        bf16.named()[name].set_weights(model.get_weights())
    x = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    a = translate(fp32.normal_to_tumor, fp32.attention_normal, x)
    b = translate(bf16.normal_to_tumor, bf16.attention_normal, x)
    for full, reduced in zip(a, b):
        difference = np.abs(full.numpy() - reduced.numpy()).max()
        assert 0 < difference < 0.05      # bf16 differs (it is computed differently), but only slightly
