"""The training loop in-process on tiny data: exact resume, attention freezing after the warm-up,
non-finite losses, restore_models, the train step by value, the image pool and config validation.
(Multi-process behaviour - replicas, workers, SIGKILL, flags - is in test_training_cli.py.)"""

import dataclasses
import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_tiny_dataset
from ssagan_tf import losses, run_dir
from ssagan_tf.data import schema
from ssagan_tf.models import ModelConfig, build_models
from ssagan_tf.training import checkpoints
from ssagan_tf.training.config import ConfigError, RunConfig, save_config
from ssagan_tf.training.loop import NonFiniteLossError, train
from ssagan_tf.training.pool import ImagePool
from ssagan_tf.training.schedule import Phase, Schedule



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 6 normal / 4 tumor slices, batch 2: 3 steps per epoch.
    return write_tiny_dataset(str(tmp_path_factory.mktemp("train_data")))


def tiny_config(data_dir, model_dir, **overrides):
    model = ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
    values = dict(data_dir=data_dir, model_dir=str(model_dir), model=model, batch_size=2, epochs=4,
                  attention_epochs=4, flip=False, pool_size=2, log_every=1, image_every=100, checkpoint_every=1,
                  keep_checkpoints=10, strategy="one_device")
    values.update(overrides)
    return RunConfig(**values)


def quiet_train(config):
    return train(config, stream=io.StringIO())


def checkpoint_values(path):
    return {name: tf.train.load_variable(path, name) for name, _ in tf.train.list_variables(path)
            if not name.startswith("_CHECKPOINTABLE") and "save_counter" not in name}


@pytest.fixture(scope="module")
def two_step_run(data_dir, tmp_path_factory):
    """A run stopped by max_steps after 2 steps (the pools of size 2 are full by then)."""
    model_dir = tmp_path_factory.mktemp("two_step_run")
    result = quiet_train(tiny_config(data_dir, model_dir, max_steps=2))
    assert result.step == 2 and result.resumed_from is None
    return str(model_dir)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(data_dir, two_step_run, tmp_path):
    straight = quiet_train(tiny_config(data_dir, tmp_path / "straight", max_steps=4))
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(two_step_run, resumed_dir)
    resumed = quiet_train(tiny_config(data_dir, resumed_dir, max_steps=4))
    assert resumed.resumed_from == 2 and resumed.step == straight.step == 4
    a, b = checkpoint_values(straight.checkpoint), checkpoint_values(resumed.checkpoint)
    assert a.keys() == b.keys()
    assert any("pools_tumor/0/images" in k for k in a) and any("generator_optimizer" in k for k in a)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert int(a["pools_tumor/0/queries/.ATTRIBUTES/VARIABLE_VALUE"]) == 8      # 4 steps x 2 images


@pytest.mark.slow
def test_bf16_run_trains_and_resumes_exactly(data_dir, tmp_path):
    """bf16: N + M steps in two runs equal N + M in one, bit for bit, and the losses fall."""
    model = dataclasses.replace(tiny_config(data_dir, tmp_path).model, precision="bf16")
    config = dict(model=model, learning_rate=1e-3, attention_epochs=2, epochs=4)
    log = io.StringIO()
    straight = train(tiny_config(data_dir, tmp_path / "straight", max_steps=12, **config), stream=log)
    first = quiet_train(tiny_config(data_dir, tmp_path / "resumed", max_steps=5, **config))
    resumed = quiet_train(tiny_config(data_dir, tmp_path / "resumed", max_steps=12, **config))
    assert first.step == 5 and resumed.resumed_from == 5 and resumed.step == straight.step == 12
    a, b = checkpoint_values(straight.checkpoint), checkpoint_values(resumed.checkpoint)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Variables stay float32 in bf16.
    assert all(v.dtype != np.dtype("bfloat16") for v in a.values() if hasattr(v, "dtype"))
    losses_by_step = []
    for line in log.getvalue().splitlines():
        if line.startswith("step "):
            losses_by_step.append(float(line.split("cyc_t ")[1].split()[0]) + float(line.split("cyc_n ")[1].split()[0]))
    assert log.getvalue().startswith("Precision bf16")
    assert len(losses_by_step) == 12
    assert np.mean(losses_by_step[-3:]) < 0.7 * np.mean(losses_by_step[:3]), losses_by_step


def model_weights(path, config):
    """{model name: [weights]} of the networks stored in the checkpoint at `path` (checkpoint keys
    follow the object graph, where a variable may be named through an optimizer instead)."""
    models = build_models(config.model)
    checkpoints.model_checkpoint(models).restore(path).expect_partial()
    return {name: [v.numpy() for v in model.weights] for name, model in models.named().items()}


@pytest.mark.slow
def test_attention_frozen_after_warmup(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, attention_epochs=1, max_steps=5)
    assert quiet_train(config).step == 5
    w = {s: model_weights(f"{tmp_path}/checkpoints/ckpt-{s}", config) for s in (1, 3, 5)}

    def changed(name, a, b):
        return any(not np.array_equal(x, y) for x, y in zip(w[a][name], w[b][name]))

    # Trained during the warm-up epoch (steps 1-3), untouched afterwards (steps 4-5).
    for name in ("attention_normal", "attention_tumor"):
        assert changed(name, 1, 3) and not changed(name, 3, 5), name
    assert changed("normal_to_tumor", 3, 5) and changed("disc_tumor", 3, 5)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_checkpoint(data_dir, two_step_run, tmp_path, monkeypatch):
    shutil.copytree(two_step_run, tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    monkeypatch.setattr(losses, "cycle_consistency_loss", lambda real, rec: tf.fill([tf.shape(real)[0]], np.nan))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3: .*cycle_normal=nan.*ckpt-2"):
        quiet_train(tiny_config(data_dir, tmp_path / "run", max_steps=4))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
    assert run_dir.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-2")


@pytest.mark.slow
def test_other_architecture_is_refused_and_fresh_starts_over(data_dir, two_step_run, tmp_path):
    shutil.copytree(two_step_run, tmp_path / "run")
    wider = dataclasses.replace(tiny_config(data_dir, tmp_path / "run").model, ngf=16)
    with pytest.raises(ValueError, match="holds a run of another model .*, ngf 8 there, 16 now\\).*--fresh"):
        quiet_train(tiny_config(data_dir, tmp_path / "run", model=wider, max_steps=1))
    result = quiet_train(tiny_config(data_dir, tmp_path / "run", model=wider, max_steps=1, fresh=True))
    assert result.resumed_from is None and result.step == 1
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.index")) == ["ckpt-1.index"]


@pytest.mark.slow
def test_run_saved_before_attention_ngf_existed_resumes(data_dir, two_step_run, tmp_path):
    """config.json of an older run has no attention_ngf; it resumes, also when asked for the
    same width explicitly (attention_ngf = ngf), and refuses a different width."""
    import json

    shutil.copytree(two_step_run, tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    del saved["model"]["attention_ngf"]
    path.write_text(json.dumps(saved))
    base = tiny_config(data_dir, tmp_path / "run").model
    same = dataclasses.replace(base, attention_ngf=base.ngf)
    assert quiet_train(tiny_config(data_dir, tmp_path / "run", model=same, max_steps=3)).resumed_from == 2
    with pytest.raises(ValueError, match="attention_ngf 8 there, 4 now"):
        quiet_train(tiny_config(data_dir, tmp_path / "run", model=dataclasses.replace(base, attention_ngf=4),
                                max_steps=4))


@pytest.mark.slow
def test_restore_models_reads_config_and_latest_weights(data_dir, two_step_run):
    models, cfg, run_config = checkpoints.restore_models(two_step_run)
    assert cfg.image_size == 32 and cfg.system == "ssa_cyclegan" and run_config["tau"] == 0.1
    expected = model_weights(run_dir.latest_checkpoint(two_step_run), tiny_config(data_dir, two_step_run))
    fresh = build_models(cfg)
    for name, model in models.named().items():
        if name.startswith("disc_"):      # export and augmentation need no discriminator
            continue
        for got, want in zip(model.weights, expected[name]):
            np.testing.assert_array_equal(got.numpy(), want)
    with_discriminators, _, _ = checkpoints.restore_models(two_step_run, discriminators=True)
    for name, model in with_discriminators.named().items():
        for got, want in zip(model.weights, expected[name]):
            np.testing.assert_array_equal(got.numpy(), want)
    bf16, bf16_cfg, _ = checkpoints.restore_models(two_step_run, precision="bf16")
    assert bf16_cfg.precision == "bf16" and bf16.normal_to_tumor.get_layer("stem_conv").compute_dtype == "bfloat16"
    for got, want in zip(bf16.normal_to_tumor.weights, expected["normal_to_tumor"]):
        np.testing.assert_array_equal(got.numpy(), want)
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(models.attention_tumor.weights, fresh.attention_tumor.weights))


@pytest.mark.slow
def test_light_attention_run_restores_at_its_width(data_dir, tmp_path):
    model = dataclasses.replace(ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=8, ndf=8,
                                                       n_res_blocks=1), attention_ngf=4)
    quiet_train(tiny_config(data_dir, tmp_path, model=model, max_steps=1))
    models, cfg, _ = checkpoints.restore_models(str(tmp_path))
    assert cfg.attention_ngf == 4
    assert models.attention_tumor.get_layer("enc1_conv").filters == 4
    assert models.normal_to_tumor.get_layer("stem_conv").filters == 8


def test_image_pool_fills_then_mixes_and_restores_exactly(tmp_path):
    pool = ImagePool(2, (1, 1, 1), seed=3)

    def query(values):
        images = tf.constant(np.array(values, np.float32).reshape(-1, 1, 1, 1))
        # Each image travels with its own attention map (here: the image's value / 100).
        got, attention = pool.query(images, images / 100.0)
        np.testing.assert_allclose(attention.numpy(), got.numpy() / 100.0, rtol=1e-6)
        return got.numpy().ravel().tolist()

    assert query([1.0, 2.0]) == [1, 2]                                 # filling: returned as is
    assert int(pool.stored.numpy()) == 2
    path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / "pool"))
    later = [query([float(v)])[0] for v in range(10, 30)]
    assert set(later) - set(range(10, 30)), "a full pool must sometimes return an older image"
    assert all(v in (1.0, 2.0) or v >= 10 for v in later)
    tf.train.Checkpoint(pool=pool).restore(path)
    again = [query([float(v)])[0] for v in range(10, 30)]
    assert again == later


def make_train_step(config, pool_size=2):
    from ssagan_tf.training.state import TrainingState
    from ssagan_tf.training.step import TrainStep

    config = dataclasses.replace(config, pool_size=pool_size)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    state = TrainingState.build(config, strategy, Schedule.from_config(config, steps_per_epoch=3))
    return TrainStep(strategy, state, config), state.models, (state.pools_tumor, state.pools_normal)


def test_adam_betas_reach_both_optimizers():
    """--beta_1 / --beta_2 are the betas of the generators' and the discriminators' Adam alike."""
    from ssagan_tf.training.state import make_optimizers

    config = tiny_config("unused", "unused", beta_1=0.3, beta_2=0.95)
    made = make_optimizers(config, Schedule.from_config(config, steps_per_epoch=3))
    assert [(float(o.beta_1), float(o.beta_2)) for o in made] == [(0.3, 0.95), (0.3, 0.95)]


def phase(config, warmup: bool) -> Phase:
    """The phase `config`'s schedule gives a step of the warm-up, or one after it."""
    return Schedule.from_config(config, steps_per_epoch=1).phase(0 if warmup else config.attention_epochs)


def random_batch(seed=3):
    rng = np.random.default_rng(seed)
    mask = np.zeros((2, 32, 32, 1), np.float32)
    mask[:, 10:14, 12:20] = 1
    return {"normal": {"image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 1)), tf.float32)},
            "tumor": {"image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 1)), tf.float32), "mask": tf.constant(mask),
                      "has_mask": tf.constant([1.0, 0.0])}}


@pytest.mark.slow
def test_pools_store_unmasked_fakes_with_their_source_attention_after_the_warmup(data_dir, tmp_path):
    """After the warm-up D sees masked fakes, but the pool keeps the fake itself and its source
    attention, so a fake pooled in one phase is shown as the phase that draws it requires."""
    from ssagan_tf.models import translate

    # tau above the untrained attention (~0.5): D's masked views are all zero, the pooled fakes not.
    config = tiny_config(data_dir, tmp_path, d_mode="own_attention", tau=0.9)
    train_step, models, (pools_tumor, pools_normal) = make_train_step(config)
    batch = random_batch()
    x_n, x_t = batch["normal"]["image"], batch["tumor"]["image"]
    fake_t, att_n = translate(models.normal_to_tumor, models.attention_normal, x_n, training=True)
    fake_n, att_t = translate(models.tumor_to_normal, models.attention_tumor, x_t, training=True)
    train_step(batch, phase(config, False))                         # a masked (post-warm-up) step, pools filling
    for pool, fake, attention in ((pools_tumor[0], fake_t, att_n), (pools_normal[0], fake_n, att_t)):
        np.testing.assert_allclose(pool.images.numpy(), fake.numpy(), atol=1e-5)
        np.testing.assert_allclose(pool.attention.numpy(), attention.numpy(), atol=1e-6)
        below = attention.numpy()[..., 0] < config.tau
        assert below.any() and np.abs(pool.images.numpy()[..., 0][below]).max() > 0.01   # not masked


@pytest.mark.slow
@pytest.mark.parametrize("mask_loss_type", ["l1", "l1_dice"])
def test_train_step_attention_loss_is_the_configured_form(data_dir, tmp_path, mask_loss_type):
    """The step's attention_mask value equals lambda_mask x the chosen loss of A_t on the batch,
    computed by hand from the weights before the step (one labelled, one unlabelled example)."""
    config = tiny_config(data_dir, tmp_path, mask_loss_type=mask_loss_type, lambda_mask=2.0)
    train_step, models, _ = make_train_step(config)
    rng = np.random.default_rng(3)
    x_t = rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    mask = np.zeros((2, 32, 32, 1), np.float32)
    mask[:, 10:14, 12:20] = 1
    has_mask = np.array([1.0, 0.0], np.float32)
    attention = models.attention_tumor(x_t, training=True).numpy()
    a, m = attention[0].ravel(), mask[0].ravel()
    expected = np.abs(a - m).mean()
    if mask_loss_type == "l1_dice":
        expected += 1 - (2 * (a * m).sum() + 1) / (a.sum() + m.sum() + 1)
    batch = {"normal": {"image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 1)), tf.float32)},
             "tumor": {"image": tf.constant(x_t), "mask": tf.constant(mask), "has_mask": tf.constant(has_mask)}}
    values = train_step(batch, phase(config, True))
    assert float(values["attention_mask"]) == pytest.approx(2.0 * expected, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("cycle_attention", ["recompute", "source"])
def test_train_step_cycle_loss_follows_cycle_attention(data_dir, tmp_path, cycle_attention):
    """cycle_normal equals lambda_cyc x mean |x_n - rec_n|, with rec_n computed by hand from the
    weights before the step: the other direction's attention recomputed on the translation
    (recompute), or the forward attention map reused (source)."""
    from ssagan_tf.models import compose_attention

    config = tiny_config(data_dir, tmp_path, cycle_attention=cycle_attention, lambda_cycle=3.0)
    train_step, m, _ = make_train_step(config)
    rng = np.random.default_rng(4)
    x_n = rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    a_n = m.attention_normal(x_n, training=True).numpy()
    fake_t = compose_attention(x_n, m.normal_to_tumor(x_n, training=True).numpy(), a_n)
    back = a_n if cycle_attention == "source" else m.attention_tumor(fake_t, training=True).numpy()
    rec_n = compose_attention(fake_t, m.tumor_to_normal(fake_t, training=True).numpy(), back)
    expected = 3.0 * np.abs(x_n - rec_n).mean()
    batch = {"normal": {"image": tf.constant(x_n)},
             "tumor": {"image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 1)), tf.float32),
                       "mask": tf.zeros((2, 32, 32, 1)), "has_mask": tf.zeros(2)}}
    assert float(train_step(batch, phase(config, True))["cycle_normal"]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_attention_area_term_trains_a_n_during_the_warmup_only(data_dir, tmp_path):
    config = tiny_config(data_dir, tmp_path, attention_area=0.5, lambda_attention_area=2.0)
    train_step, m, _ = make_train_step(config)
    rng = np.random.default_rng(5)
    x_n = rng.uniform(-0.5, 1, (2, 32, 32, 1)).astype(np.float32)        # all head
    expected = 2.0 * np.mean(np.maximum(0.0, 1.0 - m.attention_normal(x_n, training=True).numpy().mean((1, 2, 3)) / 0.5))
    batch = {"normal": {"image": tf.constant(x_n)},
             "tumor": {"image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 1)), tf.float32),
                       "mask": tf.zeros((2, 32, 32, 1)), "has_mask": tf.zeros(2)}}
    assert float(train_step(batch, phase(config, True))["attention_area"]) == pytest.approx(expected, rel=1e-4)
    assert float(train_step(batch, phase(config, False))["attention_area"]) == 0.0
    assert tiny_config(data_dir, tmp_path).attention_area == 0.0        # the paper's default: off
    with pytest.raises(Exception, match="attention_area must be in"):
        tiny_config(data_dir, tmp_path, attention_area=1.5)


def test_validation_attention_by_value(data_dir):
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.training import validation

    dataset = schema.open(data_dir)
    val = load_split_arrays(dataset, "val", ("tumor",))
    masks = val["mask"].reshape(4, -1)
    zero = validation.validation_attention(lambda x: tf.zeros_like(x[..., :1]), dataset, 0.1)
    assert zero == {"dice": pytest.approx(0.0, abs=1e-6), "attended": 0.0, "inside": 0.0, "outside": 0.0}
    assert validation.attention_failing(zero)
    full = validation.validation_attention(lambda x: tf.ones_like(x[..., :1]), dataset, 0.1)
    expected = np.mean(2 * masks.sum(1) / (masks.shape[1] + masks.sum(1)))
    assert full["attended"] == 1.0 and full["dice"] == pytest.approx(expected, rel=1e-5)
    # The tiny dataset's tumors are bright discs (0.9) on a darker background: an attention equal to
    # (image + 1) / 2 is stronger inside them, and its complement is stronger outside.
    bright = validation.validation_attention(lambda x: (x[..., :1] + 1) / 2, dataset, 0.1)
    tumor = val["mask"] > 0.5
    assert bright["inside"] == pytest.approx(0.95, rel=1e-5)
    assert bright["outside"] == pytest.approx(((val["image"][~tumor] + 1) / 2).mean(), rel=1e-4)
    assert not validation.attention_failing(bright)
    assert validation.attention_failing(validation.validation_attention(lambda x: (1 - x[..., :1]) / 2, dataset, 0.1))
    assert validation.validation_attention(None, dataset, 0.1) is None


def test_validation_normal_attention_by_value(data_dir):
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.training import validation

    dataset = schema.open(data_dir)
    images = load_split_arrays(dataset, "val", ("normal",))["image"].astype(np.float64)

    def half_open(x):          # attention 0.5 on the left half, 0 elsewhere; translation = input + 0.25
        attention = np.zeros(x.shape[:3] + (1,), np.float32)
        attention[:, :, : x.shape[2] // 2] = 0.5
        return x + 0.25, tf.constant(attention)

    stats = validation.validation_normal_attention(half_open, dataset, 0.1)
    assert stats == {"mean": pytest.approx(0.25), "max": 0.5, "attended": pytest.approx(0.5),
                     "change": pytest.approx(0.25, rel=1e-6)}
    # A collapsed A_n: exactly zero and no change, the state a run falls into when normal->tumor draws nothing.
    shut = validation.validation_normal_attention(lambda x: (x, tf.zeros_like(x[..., :1])), dataset, 0.1)
    assert shut == {"mean": 0.0, "max": 0.0, "attended": 0.0, "change": 0.0}
    flipped = validation.validation_normal_attention(lambda x: (-x, tf.ones_like(x[..., :1])), dataset, 0.1)
    assert flipped["change"] == pytest.approx(2 * np.abs(images).mean(), rel=1e-5)
    assert validation.validation_normal_attention(None, dataset, 0.1) is None


@pytest.mark.slow
def test_training_reports_the_attention_of_both_directions(data_dir, tmp_path):
    stream = io.StringIO()
    result = train(tiny_config(data_dir, tmp_path / "run", max_steps=3, epochs=1, attention_epochs=1), stream=stream)
    assert 0.0 <= result.losses["attention_normal_mean"] <= 1.0 and 0.0 <= result.losses["attention_tumor_mean"] <= 1.0
    assert set(result.val_normal_attention) == {0, 1}
    assert "validation normal->tumor: mean A_n" in stream.getvalue() and " A_n " in stream.getvalue()
    plain = train(tiny_config(data_dir, tmp_path / "plain", max_steps=1, epochs=1, attention_epochs=0,
                              model=ModelConfig.for_system("cyclegan", image_size=32, channels=1, ngf=8, ndf=8,
                                                           n_res_blocks=1)), stream=io.StringIO())
    assert "attention_normal_mean" not in plain.losses and plain.val_normal_attention == {}


@pytest.mark.slow
def test_a_judge_scores_each_epoch_and_a_mismatched_one_is_refused(data_dir, tmp_path):
    from types import SimpleNamespace

    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.judge.config import JudgeConfig
    from ssagan_tf.judge.scoring import Judge
    from ssagan_tf.judge.train import train_judge
    from ssagan_tf.training import validation
    from ssagan_tf.training.config import ConfigError

    judge_dir = str(tmp_path / "judge")
    train_judge(JudgeConfig(data_dir=data_dir, output_dir=judge_dir, width=8, epochs=1, precision="fp32"),
                log=lambda _: None)
    stream = io.StringIO()
    result = train(tiny_config(data_dir, tmp_path / "run", max_steps=3, epochs=1, attention_epochs=1,
                               judge_dir=judge_dir), stream=stream)
    assert set(result.val_judge) == {0, 1}
    assert set(result.val_judge[1]) == {"normal_to_tumor", "tumor_to_normal"}
    assert "judge normal->tumor: tumor rate" in stream.getvalue()
    assert "judge tumor->normal: normal rate" in stream.getvalue()
    # By construction: a direction whose attention is zero returns its inputs, so its rate is theirs.
    judge, val = Judge(judge_dir), load_split_arrays(schema.open(data_dir), "val")
    shut = SimpleNamespace(normal_to_tumor=lambda x, training=False: tf.ones_like(x),
                           attention_normal=lambda x, training=False: tf.zeros_like(x[..., :1]),
                           tumor_to_normal=lambda x, training=False: -tf.ones_like(x),
                           attention_tumor=lambda x, training=False: tf.ones_like(x[..., :1]))
    measures = validation.judge_measures(judge, shut, val, tau=0.1)
    assert measures["normal_to_tumor"]["rate"]["synthetic"] == measures["normal_to_tumor"]["rate"]["inputs"]
    assert measures["normal_to_tumor"]["kid"]["synthetic"] == measures["normal_to_tumor"]["kid"]["inputs"]
    p_black, _ = judge.score(-np.ones((1, 32, 32, 1)))
    called_normal = float(p_black[0] < judge.threshold)
    assert measures["tumor_to_normal"]["rate"]["synthetic"] == called_normal       # every output is all -1
    assert set(validation.judge_scalars(measures)) >= {"judge_normal_to_tumor_rate_synthetic",
                                                      "judge_tumor_to_normal_kid_real_halves"}
    other = write_tiny_dataset(str(tmp_path / "data48"), size=48)
    with pytest.raises(ConfigError, match="the judge takes 32"):
        train(tiny_config(other, tmp_path / "run48", max_steps=1, judge_dir=judge_dir,
                          model=ModelConfig.for_system("ssa_cyclegan", image_size=48, channels=1, ngf=8, ndf=8,
                                                       n_res_blocks=1)), stream=io.StringIO())
    with pytest.raises(ConfigError, match="is not a judge"):
        train(tiny_config(data_dir, tmp_path / "run_nojudge", max_steps=1, judge_dir=str(tmp_path)),
              stream=io.StringIO())


@pytest.mark.slow
def test_failing_attention_is_reported_while_training_and_when_frozen(data_dir, tmp_path, monkeypatch):
    from ssagan_tf.training import validation

    stats = {"dice": 0.0, "attended": 0.03, "inside": 0.003, "outside": 0.016}
    monkeypatch.setattr(validation, "validation_attention", lambda *args, **kwargs: stats)
    out = io.StringIO()
    # 3 steps an epoch: epochs 0 (baseline), 1, 2 (attention frozen from here) and 3.
    train(tiny_config(data_dir, tmp_path, max_steps=9, attention_epochs=2, checkpoint_every=100), stream=out)
    text = out.getvalue()
    warnings = [line for line in text.splitlines() if line.startswith("WARNING: after epoch")]
    assert len(warnings) == 2, text
    assert warnings[0].startswith("WARNING: after epoch 1 ") and "If this persists" in warnings[0]
    assert warnings[1].startswith("WARNING: after epoch 2 ") and "now frozen" in warnings[1]
    assert "0.003 inside the tumors vs 0.016 outside" in warnings[0] and "--mask_loss_type=l1_dice" in warnings[0]
    assert "(3.0% of pixels attended)" in text
    config = tiny_config(data_dir, tmp_path)
    assert "--lambda_mask is 0" in validation.collapse_warning(dataclasses.replace(config, lambda_mask=0.0), stats, 1,
                                                               False, 2)
    assert "higher --lambda_mask" in validation.collapse_warning(dataclasses.replace(config, mask_loss_type="l1_dice"),
                                                                 stats, 1, False, 2)
    unsupervised = dataclasses.replace(config, model=ModelConfig.for_system(
        "attention_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1))
    assert "--system=ssa_cyclegan" in validation.collapse_warning(unsupervised, stats, 1, False, 2)


@pytest.mark.slow
def test_config_validation_messages(data_dir, tmp_path, monkeypatch):
    """Values are checked at construction, every problem in one message; the environment
    (TF_CONFIG) and the data by check_inputs()."""
    good = tiny_config(data_dir, tmp_path)
    assert RunConfig.from_dict(good.to_dict()) == good
    for change, message in ((dict(batch_size=0), "batch_size must be >= 1"), (dict(d_mode="x"), "d_mode must be"),
                            (dict(tau=1.5), "tau must be in"), (dict(attention_epochs=0), "attention_epochs"),
                            (dict(gan_loss="wgan"), "gan_loss must be"), (dict(strategy="tpu"), "strategy must be"),
                            (dict(mask_loss_type="bce"), "mask_loss_type must be one of"),
                            (dict(beta_1=1.0), "betas must be in"), (dict(beta_2=-0.1), "betas must be in")):
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(good, **change)
    with pytest.raises(ConfigError, match=r"batch_size must be >= 1.*; tau must be in.*; log_every must be >= 1"):
        dataclasses.replace(good, batch_size=0, tau=1.5, log_every=0)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    multi_worker = dataclasses.replace(good, strategy="multi_worker")        # a value that can work
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        multi_worker.check_inputs()
    [main] = good.check_inputs()
    assert (main.data_dir, main.image_size) == (data_dir, 32)
    with pytest.raises(ConfigError, match="32\\^2 x 1 channels but the model is configured for 64\\^2"):
        dataclasses.replace(good, model=dataclasses.replace(good.model, image_size=64)).check_inputs()


@pytest.mark.slow
def test_checkpoint_of_keras_spectral_norm_exports_but_does_not_resume(data_dir, two_step_run, tmp_path):
    """A run saved before SpectralConv2D (discriminators wrapped in Keras' SpectralNormalization,
    which stores W / sigma and a vector_u): its generators and attention still restore for export;
    resuming training is refused with what to do."""
    import keras

    shutil.copytree(two_step_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
    config = tiny_config(data_dir, tmp_path / "run")
    models = build_models(config.model)

    def old_discriminator():
        images = keras.Input((32, 32, 1))
        layer = keras.layers.SpectralNormalization(keras.layers.Conv2D(4, 4, strides=2))
        return keras.Model(images, layer(images))

    old = tf.train.Checkpoint(**{**models.named(), "disc_tumor": old_discriminator(),
                                 "disc_normal": old_discriminator()}, step=tf.Variable(2, dtype=tf.int64))
    tf.train.CheckpointManager(old, str(tmp_path / "run" / "checkpoints"), max_to_keep=1).save(checkpoint_number=2)
    restored, _, _ = checkpoints.restore_models(str(tmp_path / "run"))
    for got, want in zip(restored.normal_to_tumor.weights, models.normal_to_tumor.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(checkpoints.IncompatibleCheckpointError, match="Keras' SpectralNormalization"):
        checkpoints.restore_models(str(tmp_path / "run"), discriminators=True)
    with pytest.raises(ValueError, match="start over with --fresh"):
        quiet_train(tiny_config(data_dir, tmp_path / "run", max_steps=3))


@pytest.mark.slow
def test_checkpoint_whose_pools_hold_no_attention_is_refused_for_resume(data_dir, tmp_path):
    class OldPool(tf.Module):
        def __init__(self):
            super().__init__()
            self.images = tf.Variable(tf.zeros([2, 32, 32, 1]))

    config = tiny_config(data_dir, tmp_path, model=ModelConfig.for_system(
        "cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1))
    quiet_train(dataclasses.replace(config, max_steps=1))
    models = build_models(config.model)
    old = tf.train.Checkpoint(**models.named(), pools_tumor=[OldPool()], step=tf.Variable(1, dtype=tf.int64))
    shutil.rmtree(tmp_path / "checkpoints")
    tf.train.CheckpointManager(old, str(tmp_path / "checkpoints"), max_to_keep=1).save(checkpoint_number=1)
    with pytest.raises(ValueError, match="image pools hold no attention maps"):
        quiet_train(dataclasses.replace(config, max_steps=2))


@pytest.mark.slow
def test_ssa_on_data_without_masks_warns_at_start(tmp_path):
    import json

    from ssagan_tf.training.loop import missing_masks_warning

    data = write_tiny_dataset(str(tmp_path / "data"), labelled=False)
    path = tmp_path / "data" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "labelled_train_patients": []}))
    config = tiny_config(data, tmp_path / "run")
    warning = missing_masks_warning(config, schema.read_manifest(data))
    assert "has no tumor masks in its train split" in warning and "--system=specatte_cyclegan" in warning
    assert "trains as specatte_cyclegan" in warning
    # Not for systems without the mask loss, nor for manifests that name labelled patients.
    plain = dataclasses.replace(config, model=ModelConfig.for_system("specatte_cyclegan", image_size=32, channels=1))
    assert missing_masks_warning(plain, schema.read_manifest(data)) is None
    path.write_text(json.dumps({**manifest, "labelled_train_patients": ["p1"]}))
    assert missing_masks_warning(config, schema.read_manifest(data)) is None
    path.write_text(json.dumps({**manifest, "labelled_train_patients": []}))
    log = io.StringIO()
    train(dataclasses.replace(config, max_steps=1), stream=log)
    assert "WARNING: --system=ssa_cyclegan" in log.getvalue().splitlines()[1]


@pytest.fixture(scope="module")
def phantom_data(tmp_path_factory):
    """The demo's phantom cohort (16 cases, every fifth tumor-free, 64^2), converted as `make demo` does."""
    import os

    from data_prep import phantom
    from data_prep.convert import ConvertConfig, convert
    from data_prep.preprocess import PrepOptions

    cohort = phantom.write_cohort(str(tmp_path_factory.mktemp("phantom")), cases=16, size=64, slices=40, seed=0)
    out = tmp_path_factory.mktemp("phantom_data")
    convert(ConvertConfig(input_dir=os.path.dirname(cohort[0]), format="brats", output_dir=str(out),
                          prep=PrepOptions(image_size=64), train_fraction=0.6, val_fraction=0.15,
                          workers=1, num_shards=1, overwrite=True), log=lambda _: None)
    return str(out)


@pytest.mark.slow
def test_bf16_attention_dice_on_the_phantom_is_within_tolerance_of_fp32(phantom_data, tmp_path):
    """The demo's data and model (`demo.flags`: 64^2, ngf/ndf 16, 3 residual blocks, batch 2) on
    half its schedule (4 epochs, attention trained for 2), fp32 and bf16 from the same seed: the
    validation Dice of the thresholded tumor attention ends within 0.1 of each other, and both
    runs learn (Dice above the step-0 baseline). Measured figures are in docs/training.md. The
    runs stop (`max_steps`, which leaves the schedule as it is) where the attention freezes:
    A_t, and so its Dice, cannot change after that."""
    results = {}
    for precision in ("fp32", "bf16"):
        model = ModelConfig.for_system("ssa_cyclegan", image_size=64, channels=1, ngf=16, ndf=16, n_res_blocks=3,
                                       precision=precision)
        config = RunConfig(data_dir=phantom_data, model_dir=str(tmp_path / precision), model=model, batch_size=2,
                           epochs=4, attention_epochs=2, strategy="one_device", log_every=1000, image_every=10000,
                           checkpoint_every=10000)
        schedule = Schedule.for_run(config, schema.read_manifest(phantom_data))
        config = dataclasses.replace(config, max_steps=schedule.attention_epochs * schedule.steps_per_epoch)
        results[precision] = quiet_train(config).val_dice
    fp32, bf16 = results["fp32"], results["bf16"]
    assert sorted(fp32) == sorted(bf16) == [0, 1, 2], results   # stopped at the freeze, each epoch validated
    assert fp32[0] == pytest.approx(bf16[0], abs=1e-3)          # same initial weights
    assert fp32[2] > fp32[0] + 0.1 and bf16[2] > bf16[0] + 0.1, results
    assert abs(fp32[2] - bf16[2]) <= 0.1, results


@pytest.mark.slow
@pytest.mark.parametrize("d_mode", ["full", "source_attention", "own_attention"])
def test_after_the_warmup_d_sees_the_pooled_fake_masked_by_its_stored_attention(data_dir, tmp_path, d_mode):
    """The step's routing by value: a (fake, attention) pair pooled earlier is drawn by a forced
    swap, and D_t's loss equals a hand computation from the views `d_mode` prescribes: the pooled
    fake masked by its stored (source) attention, the real masked by that same map
    (source_attention) or by its own A_t (own_attention), nothing masked with full."""
    model = ModelConfig.for_system("attention_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
    config = tiny_config(data_dir, tmp_path, model=model, batch_size=1, d_mode=d_mode, tau=0.1)
    train_step, models, (pools_tumor, _) = make_train_step(config, pool_size=1)
    pool = pools_tumor[0]
    rng = np.random.default_rng(7)
    stored_fake = rng.uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
    stored_attention = np.where(np.arange(32)[None, :, None, None] < 16, 0.9, 0.02).repeat(32, 2).astype(np.float32)
    stored_attention = np.transpose(stored_attention, (0, 2, 1, 3))            # left half attended
    pool.images.assign(stored_fake)
    pool.attention.assign(stored_attention)
    pool.stored.assign(1)
    query = next(q for q in range(100) if float(tf.random.stateless_uniform(
        [2], seed=tf.constant([pool.seed, q], tf.int64))[0]) < 0.5)            # this draw swaps
    pool.queries.assign(query)
    batch = random_batch()
    batch = {d: {k: v[:1] for k, v in batch[d].items()} for d in batch}
    x_t = batch["tumor"]["image"].numpy()
    own = models.attention_tumor(x_t).numpy()
    source = stored_attention
    real_mask = {"full": 1.0, "source_attention": source >= 0.1, "own_attention": own >= 0.1}[d_mode]
    fake_mask = 1.0 if d_mode == "full" else source >= 0.1
    expected = losses.discriminator_adversarial_loss(models.disc_tumor(x_t * real_mask),
                                                     models.disc_tumor(stored_fake * fake_mask)).numpy()[0]
    values = train_step(batch, phase(config, False))
    assert float(values["disc_tumor"]) == pytest.approx(float(expected), rel=1e-5)
    # The routes differ on these inputs, so a swapped map could not pass.
    assert np.any(own >= 0.1) and not np.all(source >= 0.1)


@pytest.mark.slow
def test_non_finite_weights_are_never_saved(data_dir, two_step_run, tmp_path):
    """The reported failure, reproduced: resume with a finite but huge learning rate and a checkpoint every
    step. The weights blow up one step before a loss shows it; nothing non-finite is saved, the
    message names the last finite checkpoint, and every checkpoint on disk is finite. (Each
    change of the learning rate on resume is named in allow_changes.)"""
    shutil.copytree(two_step_run, tmp_path / "run")
    with pytest.raises(NonFiniteLossError, match=r"non-finite .*last finite checkpoint|last good checkpoint") as error:
        quiet_train(tiny_config(data_dir, tmp_path / "run", max_steps=12, learning_rate=3e38, checkpoint_every=1,
                                allow_changes=("learning_rate",)))
    latest = run_dir.latest_checkpoint(str(tmp_path / "run"))
    assert latest in str(error.value)
    for index in sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.index")):
        values = checkpoint_values(str(index)[:-len(".index")])
        bad = [n for n, v in values.items() if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]
        assert not bad, (index.name, bad[:3])
    # A rerun with a sane learning rate resumes from that checkpoint.
    resumed = quiet_train(tiny_config(data_dir, tmp_path / "run", max_steps=int(latest.rsplit("-", 1)[1]) + 1,
                                      allow_changes=("learning_rate",)))
    assert resumed.resumed_from == int(latest.rsplit("-", 1)[1])


@pytest.mark.slow
def test_learning_rate_must_be_finite(data_dir, tmp_path):
    from ssagan_tf.training.config import ConfigError

    for bad in (float("inf"), float("nan"), 0.0):
        with pytest.raises(ConfigError, match="learning_rate must be finite and > 0"):
            tiny_config(data_dir, tmp_path, learning_rate=bad)


def floats_of(networks: dict) -> dict:
    return {name: [w.numpy().copy() for w in net.weights if tf.as_dtype(w.dtype).is_floating]
            for name, net in networks.items()}


@pytest.mark.slow
def test_weight_average_is_the_recursion_of_the_raw_weights(data_dir, tmp_path):
    """After each of n steps the shadow equals s_k = d s_{k-1} + (1 - d) w_k, s_0 = the initial
    weights, for every weight of the generators (not the attention networks or discriminators)."""
    from ssagan_tf.training.averaging import averaged_networks

    decay = 0.8
    config = tiny_config(data_dir, tmp_path, ema_decay=decay, learning_rate=1e-2)
    train_step, models, _ = make_train_step(config)
    state = train_step.state
    assert set(averaged_networks(models)) == {"normal_to_tumor", "tumor_to_normal"}
    expected = floats_of(averaged_networks(models))
    for k in range(3):
        train_step(random_batch(seed=10 + k), phase(config, k < 2))      # two warm-up steps, one frozen
        raw = floats_of(averaged_networks(models))
        expected = {n: [decay * s + (1 - decay) * w for s, w in zip(expected[n], raw[n])] for n in raw}
    shown = build_models(config.model)
    state.average.copy_to(shown)
    got = floats_of(averaged_networks(shown))
    for name in expected:
        for e, g, r in zip(expected[name], got[name], raw[name]):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=name)
    # The raw weights moved (lr 1e-2), so the average is not them.
    assert any(not np.allclose(g, r) for g, r in zip(got["normal_to_tumor"], raw["normal_to_tumor"]))


def _two_averaged_steps_saved(config, tmp_path, seed: int):
    """Two warm-up steps of a run with a weight average, saved as checkpoint 2 with its config.
    Returns (train_step, models, checkpoint path, networks holding the average)."""
    train_step, models, _ = make_train_step(config)
    for k in range(2):
        train_step(random_batch(seed=seed + k), phase(config, True))
    manager = tf.train.CheckpointManager(train_step.state.checkpoint(), run_dir.checkpoint_dir(str(tmp_path)), 3)
    path = manager.save(checkpoint_number=2)
    save_config(config, str(tmp_path))
    shadows = build_models(config.model)
    train_step.state.average.copy_to(shadows)
    return train_step, models, path, shadows


@pytest.mark.slow
def test_weight_average_checkpoint_round_trip_and_restore_models_uses_it(data_dir, tmp_path):
    """The average is saved with the training state and restored exactly by a resume (raw weights
    and shadows as saved); restore_models (export, augmentation) gives the averaged weights; a run
    saved without an average starts one from its weights."""
    from ssagan_tf.training import loop
    from ssagan_tf.training.averaging import averaged_networks

    config = tiny_config(data_dir, tmp_path, ema_decay=0.5, learning_rate=1e-2)
    train_step, models, path, shadows = _two_averaged_steps_saved(config, tmp_path, seed=20)
    shadows = floats_of(averaged_networks(shadows))
    raw = floats_of(averaged_networks(models))
    assert any(not np.allclose(a, b) for a, b in zip(shadows["tumor_to_normal"], raw["tumor_to_normal"]))

    fresh_step, fresh_models, _ = make_train_step(config)
    loop._restore(fresh_step.state.checkpoint(), fresh_step.state, path, log=lambda _: None)
    for name, weights in floats_of(averaged_networks(fresh_models)).items():
        for a, b in zip(weights, raw[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    again = build_models(config.model)
    fresh_step.state.average.copy_to(again)
    for name, weights in floats_of(averaged_networks(again)).items():
        for a, b in zip(weights, shadows[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)

    restored, _, _ = checkpoints.restore_models(str(tmp_path))
    assert checkpoints.uses_average(path)
    for name, weights in floats_of(averaged_networks(restored)).items():
        for a, b in zip(weights, shadows[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    # The attention networks are not averaged: restored raw.
    for a, b in zip(restored.attention_tumor.weights, models.attention_tumor.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    plain, _, _ = checkpoints.restore_models(str(tmp_path), average=False)
    np.testing.assert_array_equal(plain.normal_to_tumor.weights[0].numpy(), raw["normal_to_tumor"][0])

    # A checkpoint without an average, resumed with --ema_decay: the average starts at its weights.
    plain_step, _, _ = make_train_step(tiny_config(data_dir, tmp_path))
    plain_path = plain_step.state.checkpoint().write(str(tmp_path / "plain" / "ckpt-0"))
    notes = []
    loop._restore(fresh_step.state.checkpoint(), fresh_step.state, plain_path, log=notes.append)
    assert notes and "no weight average" in notes[0]
    fresh_step.state.average.copy_to(again)
    np.testing.assert_array_equal(again.normal_to_tumor.weights[0].numpy(),
                                  plain_step.state.models.normal_to_tumor.weights[0].numpy())


@pytest.mark.slow
def test_a_run_with_a_weight_average_validates_with_it(data_dir, tmp_path):
    """End to end: the epoch's validation Dice is that of the trained A_t the checkpoint holds
    (the attention is not averaged), and export's generators are the averaged ones, not the raw."""
    from ssagan_tf.training.validation import validation_attention

    config = tiny_config(data_dir, tmp_path, ema_decay=0.5, epochs=1, max_steps=3, attention_epochs=1,
                         learning_rate=1e-2)
    result = quiet_train(config)
    averaged, _, _ = checkpoints.restore_models(str(tmp_path))
    raw, _, _ = checkpoints.restore_models(str(tmp_path), average=False)
    expected = validation_attention(lambda x: raw.attention_tumor(x, training=False), schema.open(data_dir),
                                    config.tau)
    assert result.val_dice[1] == pytest.approx(expected["dice"], abs=1e-6)
    np.testing.assert_array_equal(averaged.attention_tumor.weights[0].numpy(), raw.attention_tumor.weights[0].numpy())
    assert not np.allclose(averaged.normal_to_tumor.weights[0].numpy(), raw.normal_to_tumor.weights[0].numpy())


@pytest.fixture(scope="module")
def tiny_judge(data_dir, tmp_path_factory):
    from ssagan_tf.judge.config import JudgeConfig
    from ssagan_tf.judge.train import train_judge

    judge_dir = str(tmp_path_factory.mktemp("judge"))
    train_judge(JudgeConfig(data_dir=data_dir, output_dir=judge_dir, width=8, epochs=1, precision="fp32"),
                log=lambda _: None)
    return judge_dir


@pytest.mark.slow
def test_selection_and_a_validation_ended_warmup_end_to_end(data_dir, tiny_judge, tmp_path):
    """--warmup_patience=1 with a min_delta no rise can pass ends the warm-up after epoch 1 (cap
    3): the attention is frozen from then on and the checkpoint says so; --select_best scores
    every epoch, keeps the best checkpoint, and export uses it."""
    import os

    from ssagan_tf import export
    from ssagan_tf.training import selection

    config = tiny_config(data_dir, tmp_path, epochs=3, attention_epochs=3, judge_dir=tiny_judge, select_best=True,
                         warmup_patience=1, warmup_min_delta=1.0, keep_checkpoints=2, checkpoint_every=100)
    stream = io.StringIO()
    result = train(config, stream=stream)
    assert result.step == 9
    assert "the attention warm-up ends here" in stream.getvalue()
    scores = run_dir.read_scores(str(tmp_path))
    assert [r["epoch"] for r in scores["records"]] == [0, 1, 2, 3] and scores["warmup_ended_at_epoch"] == 1
    assert tf.train.load_variable(result.checkpoint, "attention_end_epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
    best = selection.best_record(scores["records"])
    assert scores["best"]["step"] == best["checkpoint_step"]
    kept = run_dir.chosen_checkpoint(str(tmp_path), "best")
    assert kept and os.path.isfile(kept + ".index")
    assert int(tf.train.load_variable(kept, "step/.ATTRIBUTES/VARIABLE_VALUE")) == best["checkpoint_step"]
    # The attention trained in epoch 0 (steps 1-3) only: steps 6 and 9 hold the same A_n, not the same G.
    w = {s: model_weights(os.path.join(str(tmp_path), "checkpoints", f"ckpt-{s}"), config) for s in (6, 9)}
    assert all(np.array_equal(a, b) for a, b in zip(w[6]["attention_normal"], w[9]["attention_normal"]))
    assert not all(np.array_equal(a, b) for a, b in zip(w[6]["normal_to_tumor"], w[9]["normal_to_tumor"]))
    version = export.export_models(str(tmp_path), str(tmp_path / "export"), checkpoint="best")
    info = export.read_export_info(version)
    assert info["checkpoint"] == "best" and info["step"] == best["checkpoint_step"]


@pytest.mark.slow
def test_each_manifest_is_read_once_from_the_config_check_through_the_epochs_validation(data_dir, tiny_judge,
                                                                                          tmp_path, monkeypatch):
    """The run's datasets are opened once, by the config check, and handed on: through the set-up of
    the first step (data stream, sample grids, validation's arrays and judge, selection's counts)
    and two validations (the untrained baseline and epoch 1's), each data_dir's manifest.json is
    read once and opened once, the extra dataset's as the main one's."""
    import builtins
    import collections
    import os

    extra = write_tiny_dataset(str(tmp_path / "extra"), n_normal=3, n_tumor=0, splits=("train",), seed=1)
    reads, opens = collections.Counter(), collections.Counter()
    read_manifest, real_open = schema.read_manifest, builtins.open

    def counted_read(folder):
        reads[os.path.realpath(folder)] += 1
        return read_manifest(folder)

    def counted_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.basename(os.fspath(file)) == schema.MANIFEST_NAME:
            opens[os.path.realpath(os.path.dirname(os.fspath(file)))] += 1
        return real_open(file, *args, **kwargs)

    config = tiny_config(data_dir, tmp_path / "run", extra_data_dirs=(extra,), batch_size=3, max_steps=3, epochs=1,
                         attention_epochs=1, judge_dir=tiny_judge, select_best=True, lambda_fill=1.0)
    monkeypatch.setattr(schema, "read_manifest", counted_read)
    monkeypatch.setattr(builtins, "open", counted_open)
    result = quiet_train(config)
    monkeypatch.undo()
    # 6 + 3 normal train slices in batches of 3: epoch 1 ends at step 3.
    assert result.step == 3 and set(result.val_dice) == set(result.val_judge) == set(result.val_fill) == {0, 1}
    expected = {os.path.realpath(data_dir): 1, os.path.realpath(extra): 1}
    assert dict(reads) == expected and dict(opens) == expected


@pytest.mark.slow
def test_run_train_opens_each_dataset_once_and_hands_it_to_the_config_and_to_training(data_dir, tmp_path,
                                                                                     monkeypatch):
    """What `run_train.py` does: the datasets opened once (`open_dataset`), the flags' config built
    from them and training handed them: through one step and its validations each manifest is read
    once. A config built without them opens each for itself, and training again."""
    import collections
    import os

    from ssagan_tf.training.config import build_run_config, open_dataset

    extra = write_tiny_dataset(str(tmp_path / "extra"), n_normal=3, n_tumor=0, splits=("train",), seed=1)
    reads = collections.Counter()
    read_manifest = schema.read_manifest
    monkeypatch.setattr(schema, "read_manifest",
                        lambda folder: reads.update([os.path.realpath(folder)]) or read_manifest(folder))
    settings = dict(model_dir=str(tmp_path / "run"), precision="fp32", ngf=8, ndf=8, n_res_blocks=1, batch_size=3,
                    max_steps=1, epochs=1, attention_epochs=1, pool_size=2, strategy="one_device")
    opened = [open_dataset(data_dir), open_dataset(extra, what=" (extra dataset)")]
    config = build_run_config([data_dir, extra], opened=opened, **settings)
    assert train(config, stream=io.StringIO(), opened=opened).step == 1
    assert dict(reads) == {os.path.realpath(data_dir): 1, os.path.realpath(extra): 1}
    reads.clear()
    build_run_config([data_dir, extra], **dict(settings, model_dir=str(tmp_path / "other")))
    assert dict(reads) == {os.path.realpath(data_dir): 1, os.path.realpath(extra): 1}


def lesion_step_inputs():
    """Two normal slices (a head disc on background -1), two tumor slices, their masks, only the
    first labelled: the inputs of the lesion levers' by-value step tests."""
    yy, xx = np.mgrid[:32, :32]
    rng = np.random.default_rng(6)
    x_n = np.where(((yy - 16) ** 2 + (xx - 16) ** 2 <= 196)[None, ..., None], rng.uniform(-0.5, 0.5, (2, 32, 32, 1)),
                   -1.0).astype(np.float32)
    x_t = rng.uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    mask = np.zeros((2, 32, 32, 1), np.float32)
    mask[:, 10:15, 12:18] = 1
    return x_n, x_t, mask, np.array([1.0, 0.0], np.float32)


@pytest.mark.slow
def test_train_step_lesion_guidance_and_healthy_fill_by_value(data_dir, tmp_path):
    """With --lesion_guidance and --lambda_fill the step's two terms equal, computed by hand from
    the weights before the step and the transplants the step's seed draws: the mask loss of A_n
    against the transplanted masks, and the L1 inside them between tumor->normal's fill of the
    lesioned slice and the real one."""
    from ssagan_tf import lesions
    from ssagan_tf.models import compose_attention

    config = tiny_config(data_dir, tmp_path, lesion_guidance=2.0, lambda_fill=3.0, mask_loss_type="l1_dice")
    train_step, m, _ = make_train_step(config)
    x_n, x_t, mask, has_mask = lesion_step_inputs()
    lesioned, moved, placed = (t.numpy() for t in lesions.transplant(x_n, x_t, mask, has_mask,
                                                                     tf.constant([0, 0], tf.int64)))
    assert placed.tolist() == [1.0, 0.0] and moved[0].sum() > 0
    a, mm = m.attention_normal(x_n, training=True).numpy()[0].ravel(), moved[0].ravel()
    guidance = np.abs(a - mm).mean() + 1 - (2 * (a * mm).sum() + 1) / (a.sum() + mm.sum() + 1)
    filled = np.asarray(compose_attention(lesioned, m.tumor_to_normal(lesioned, training=True).numpy(), moved))
    inside = moved[0] > 0
    fill = np.abs(filled[0] - x_n[0])[inside].mean()
    batch = {"normal": {"image": tf.constant(x_n)},
             "tumor": {"image": tf.constant(x_t), "mask": tf.constant(mask), "has_mask": tf.constant(has_mask)}}
    values = train_step(batch, phase(config, True))
    assert float(values["lesion_guidance"]) == pytest.approx(2.0 * guidance, rel=1e-4)
    assert float(values["healthy_fill"]) == pytest.approx(3.0 * fill, rel=1e-4)
    # After the warm-up A_n no longer trains: no guidance; the fill term stays.
    values = train_step(batch, phase(config, False))
    assert float(values["lesion_guidance"]) == 0.0 and float(values["healthy_fill"]) > 0


@pytest.mark.slow
def test_train_step_lesion_painting_by_value(data_dir, tmp_path):
    """With --lambda_paint, G_n2t(x_n) composed inside each transplanted lesion mask is judged by
    D_t: the generator's term is lambda_paint x the mean over placed lesions of mean (D_t(painted) -
    1)^2 and D_t's added term the same mean of 0.5 x mean D_t(painted)^2, both from the weights
    before the step (networks without spectral norm, whose power iteration would move between the
    calls), and D's total holds it."""
    from ssagan_tf import lesions
    from ssagan_tf.models import compose_attention

    model = ModelConfig.for_system("attention_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
    config = tiny_config(data_dir, tmp_path, model=model, lambda_paint=2.0)
    train_step, m, _ = make_train_step(config)
    x_n, x_t, mask, has_mask = lesion_step_inputs()
    _, moved, placed = (t.numpy() for t in lesions.transplant(x_n, x_t, mask, has_mask, tf.constant([0, 0], tf.int64)))
    assert placed.tolist() == [1.0, 0.0] and moved[0].sum() > 0
    painted = np.asarray(compose_attention(x_n, m.normal_to_tumor(x_n, training=True).numpy(), moved))
    np.testing.assert_array_equal(painted[moved > 0] != x_n[moved > 0], True)     # painted inside the mask
    np.testing.assert_array_equal(painted[moved == 0], x_n[moved == 0])           # and nowhere else
    d = m.disc_tumor(painted, training=True).numpy()
    batch = {"normal": {"image": tf.constant(x_n)},
             "tumor": {"image": tf.constant(x_t), "mask": tf.constant(mask), "has_mask": tf.constant(has_mask)}}
    values = train_step(batch, phase(config, True))
    assert float(values["lesion_painting"]) == pytest.approx(2.0 * ((d[0] - 1) ** 2).mean(), rel=1e-4)
    assert float(values["disc_tumor_painted"]) == pytest.approx(0.5 * (d[0] ** 2).mean(), rel=1e-4)
    assert float(values["discriminator_total"]) == pytest.approx(
        float(values["disc_tumor"]) + float(values["disc_normal"]) + float(values["disc_tumor_painted"]), rel=1e-5)


@pytest.mark.parametrize("lever", ["lesion_guidance", "lambda_fill", "lambda_paint"])
def test_the_lesion_levers_need_tumor_masks_to_transplant(tmp_path, lever):
    import json
    import os

    unlabelled = write_tiny_dataset(str(tmp_path / "data"), labelled=False)
    path = os.path.join(unlabelled, schema.MANIFEST_NAME)
    with open(path) as f:
        manifest = json.load(f)
    with open(path, "w") as f:           # as the converter records a train split without masks
        json.dump(dict(manifest, labelled_train_patients=[]), f)
    config = tiny_config(unlabelled, tmp_path / "run", **{lever: 1.0})
    assert config.transplants_lesions
    with pytest.raises(ConfigError, match="no lesions to transplant for --lesion_guidance / --lambda_fill / "
                                          "--lambda_paint"):
        config.check_inputs()
    assert not tiny_config(unlabelled, tmp_path / "run").transplants_lesions


def test_generator_objective_total_is_the_sum_of_its_named_terms(data_dir, tmp_path):
    """With every optional term on, the generator objective's total is the sum of the terms it
    names (each already weighted), and each of them is in play (non-zero)."""
    from ssagan_tf import lesions

    model = ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1,
                                   d_local=24)
    config = tiny_config(data_dir, tmp_path, model=model, lambda_identity=0.5, attention_area=0.9,
                         lesion_guidance=1.5, lambda_fill=2.0, lambda_paint=0.5)
    train_step, _, _ = make_train_step(config)
    batch = random_batch()
    x_n, tumor = batch["normal"]["image"], batch["tumor"]
    lesioned, moved, placed = lesions.transplant(x_n, tumor["image"], tumor["mask"], tumor["has_mask"],
                                                 tf.constant([0, 0], tf.int64))
    batch["lesion"] = {"image": lesioned, "mask": moved, "placed": placed, "count": tf.reduce_sum(placed)}
    cycle = train_step.translations(x_n, tumor["image"], moved)
    total, terms = train_step.generator_objective(batch, cycle, tf.reduce_sum(tumor["has_mask"]), phase(config, True))
    assert set(terms) == {"adversarial_normal_to_tumor", "adversarial_tumor_to_normal", "cycle_normal", "cycle_tumor",
                          "identity", "attention_mask", "attention_area", "lesion_guidance", "healthy_fill",
                          "lesion_painting", "local_adversarial"}
    assert all(float(v) > 0 for v in terms.values()), terms
    assert float(total) == pytest.approx(sum(float(v) for v in terms.values()), rel=1e-6)


def test_one_discriminator_objective_serves_both_discriminators(data_dir, tmp_path):
    """`discriminator_objective(disc, real, fake)` is 0.5 x (mean (D(real) - 1)^2 + mean D(fake)^2)
    per example, for D_t and D_n alike (networks without spectral norm, whose power iteration
    would move between the calls)."""
    model = ModelConfig.for_system("attention_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
    train_step, models, _ = make_train_step(tiny_config(data_dir, tmp_path, model=model))
    batch = random_batch()
    real, fake = batch["tumor"]["image"], batch["normal"]["image"]
    for disc in (models.disc_tumor, models.disc_normal):
        d_real, d_fake = disc(real, training=True).numpy(), disc(fake, training=True).numpy()
        expected = 0.5 * (((d_real - 1) ** 2).mean(axis=(1, 2, 3)) + (d_fake ** 2).mean(axis=(1, 2, 3)))
        np.testing.assert_allclose(train_step.discriminator_objective(disc, real, fake).numpy(), expected, rtol=1e-5)


def test_healthy_fill_measures_compare_the_fill_inside_transplanted_masks(data_dir):
    """Every validation normal slice gets a lesion from a labelled validation tumor slice; a
    tumor->normal that paints a constant scores as fill_scores says it does, inside the masks."""
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.metrics import fill_scores
    from ssagan_tf.training.validation import healthy_fill_measures, transplanted_pairs

    arrays = load_split_arrays(schema.open(data_dir), "val")
    originals, lesioned, masks = transplanted_pairs(arrays, seed=0)
    assert len(originals) == int((arrays["label"] == 0).sum())
    assert (masks.sum(axis=(1, 2, 3)) > 0).all()
    again = transplanted_pairs(arrays, seed=0)
    np.testing.assert_array_equal(again[2], masks)                  # the same set every epoch
    measured = healthy_fill_measures(lambda x, training=False: tf.fill(tf.shape(x), -0.6),
                                     (originals, lesioned, masks))
    filled = np.where(masks > 0, -0.6, lesioned)
    expected = fill_scores(originals, filled, masks)
    assert measured["slices"] == len(originals)
    for name in ("l1", "psnr", "ssim"):
        assert measured[name] == pytest.approx(float(np.mean(expected[name])), rel=1e-5)
    assert transplanted_pairs({**arrays, "has_mask": np.zeros_like(arrays["has_mask"])}) is None


def test_validation_reads_the_validation_split_once_for_the_fill_pairs_and_the_judge(data_dir, tmp_path,
                                                                                   monkeypatch):
    """With a lesion lever and a judge both on, the validation split is read whole once and serves
    both: the healthy-fill pairs are those of its arrays, and the judge scores the same arrays."""
    from types import SimpleNamespace

    from ssagan_tf.data import pipeline
    from ssagan_tf.training import validation

    dataset = schema.open(data_dir)
    expected = pipeline.load_split_arrays(dataset, "val")
    loads = []
    load = pipeline.load_split_arrays
    monkeypatch.setattr(pipeline, "load_split_arrays", lambda *args, **kwargs: loads.append(args[1:]) or load(
        *args, **kwargs))
    monkeypatch.setattr(validation.scoring, "Judge", lambda path: SimpleNamespace(test_auc=0.9))
    config = tiny_config(data_dir, tmp_path, lambda_fill=1.0, judge_dir=str(tmp_path / "judge"))
    shown = SimpleNamespace(attention_tumor=None, attention_normal=None)
    checked = validation.Validation(config, dataset, None, shown, None, None, lambda line: None)
    assert loads == [("val",)]
    for key in ("image", "label", "mask"):
        np.testing.assert_array_equal(checked.val_arrays[key], expected[key])
    for got, want in zip(checked.fill_pairs, validation.transplanted_pairs(expected, config.seed)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_validation_shows_the_averaged_generators_and_the_raw_attention(data_dir, tmp_path):
    """ShowAverage gives the shown networks the generators' shadows and the attention networks'
    trained weights (during the warm-up, when the two differ)."""
    from ssagan_tf.training.averaging import ShowAverage

    config = tiny_config(data_dir, tmp_path, ema_decay=0.8, learning_rate=1e-2)
    train_step, models, _ = make_train_step(config)
    for k in range(2):
        train_step(random_batch(seed=30 + k), phase(config, True))
    shown = build_models(config.model)
    ShowAverage(train_step.state.average, models, shown, [])
    shadows = build_models(config.model)
    train_step.state.average.copy_to(shadows)
    for name in ("attention_normal", "attention_tumor"):
        for a, b in zip(getattr(shown, name).weights, getattr(models, name).weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    for name in ("normal_to_tumor", "tumor_to_normal"):
        got, want, raw = (floats_of({name: getattr(m, name)})[name] for m in (shown, shadows, models))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=name)
        assert any(not np.allclose(g, r) for g, r in zip(got, raw))


@pytest.mark.slow
def test_a_checkpoint_with_averaged_attention_networks_restores_them_raw(data_dir, tmp_path, monkeypatch):
    """Runs saved when the attention networks were averaged too still restore: the generators get
    their average, the attention networks their trained weights."""
    from ssagan_tf.training import averaging

    config = tiny_config(data_dir, tmp_path, ema_decay=0.5, learning_rate=1e-2)
    monkeypatch.setattr(averaging, "AVERAGED", averaging.AVERAGED + averaging.SHOWN_RAW)
    _, models, path, shadows = _two_averaged_steps_saved(config, tmp_path, seed=40)
    assert any("weight_average/attention_tumor" in name for name, _ in tf.train.list_variables(path))
    monkeypatch.undo()
    restored, _, _ = checkpoints.restore_models(str(tmp_path))
    for a, b in zip(restored.attention_tumor.weights, models.attention_tumor.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(restored.normal_to_tumor.weights, shadows.normal_to_tumor.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_local_crops_are_whole_pixel_windows_where_the_attention_points():
    """`attention_centres` is a map's weighted centroid (the slice's centre for an empty map), and
    `crop_at` cuts the window of that centre, moved inside the slice at its edges; its gradient
    is 1 inside the window and 0 outside."""
    from ssagan_tf.training.step import attention_centres, crop_at

    maps = np.zeros((4, 32, 32, 1), np.float32)
    maps[0, 5, 20] = 1.0
    maps[1, 10, 10] = maps[1, 10, 14] = 2.0             # centroid (10, 12)
    maps[2, 31, 0] = 0.5                                  # a corner: the window moves inside
    centres = attention_centres(tf.constant(maps)).numpy()
    np.testing.assert_allclose(centres, [[5, 20], [10, 12], [31, 0], [15.5, 15.5]])
    images = tf.constant(np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 2)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        crops = crop_at(images, tf.constant(centres), 8)
        total = tf.reduce_sum(crops)
    x = images.numpy()
    # top-left = round(centre - 3.5) (half to even), clipped to [0, 24]
    for crop, (top, left), image in zip(crops.numpy(), [(2, 16), (6, 8), (24, 0), (12, 12)], x):
        np.testing.assert_array_equal(crop, image[top:top + 8, left:left + 8])
    grad = tape.gradient(total, images).numpy()
    assert grad.sum() == 4 * 8 * 8 * 2 and set(np.unique(grad)) == {0.0, 1.0}
    assert grad[0, 2:10, 16:24].min() == 1.0


@pytest.mark.slow
def test_train_step_local_discriminators_by_value(data_dir, tmp_path):
    """With --d_local the generator's added term is, per example, mean (D_t^loc(crop of fake_t
    where A_n points) - 1)^2 + mean (D_n^loc(crop of fake_n at the lesion) - 1)^2, the lesion being
    the mask of a labelled tumor slice and A_t's centroid of an unlabelled one; the local
    discriminators' terms are 0.5 x (mean (D(real crop) - 1)^2 + mean D(fake crop)^2), from the
    weights before the step (networks without spectral norm), and D's total holds them."""
    from ssagan_tf.models import translate

    model = ModelConfig.for_system("attention_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1,
                                   d_local=24)
    config = tiny_config(data_dir, tmp_path, model=model)
    train_step, m, _ = make_train_step(config)
    assert {"disc_tumor_local", "disc_normal_local"} <= set(m.named())
    batch = random_batch()
    x_n, x_t = batch["normal"]["image"].numpy(), batch["tumor"]["image"].numpy()
    mask = batch["tumor"]["mask"].numpy()
    fake_t, att_n = (t.numpy() for t in translate(m.normal_to_tumor, m.attention_normal, x_n, training=True))
    fake_n, att_t = (t.numpy() for t in translate(m.tumor_to_normal, m.attention_tumor, x_t, training=True))

    def window(image, weights):
        rows, columns = np.mgrid[:32, :32]
        w = weights[..., 0]
        top = int(np.clip(np.round((w * rows).sum() / w.sum() - 11.5), 0, 8))
        left = int(np.clip(np.round((w * columns).sum() / w.sum() - 11.5), 0, 8))
        return image[top:top + 24, left:left + 24]

    lesion = [mask[0], att_t[1]]                          # the first tumor slice is labelled
    crops = {"fake_tumor": np.stack([window(fake_t[i], att_n[i]) for i in range(2)]),
             "real_normal": np.stack([window(x_n[i], att_n[i]) for i in range(2)]),
             "fake_normal": np.stack([window(fake_n[i], lesion[i]) for i in range(2)]),
             "real_tumor": np.stack([window(x_t[i], lesion[i]) for i in range(2)])}
    d = {name: (m.disc_tumor_local if "tumor" in name else m.disc_normal_local)(crop, training=True).numpy()
         for name, crop in crops.items()}
    generator = (((d["fake_tumor"] - 1) ** 2).mean(axis=(1, 2, 3)) + ((d["fake_normal"] - 1) ** 2).mean(axis=(1, 2, 3)))
    values = train_step(batch, phase(config, True))
    assert float(values["local_adversarial"]) == pytest.approx(generator.mean(), rel=1e-4)
    assert float(values["disc_tumor_local"]) == pytest.approx(
        0.5 * (((d["real_tumor"] - 1) ** 2).mean() + (d["fake_tumor"] ** 2).mean()), rel=1e-4)
    assert float(values["disc_normal_local"]) == pytest.approx(
        0.5 * (((d["real_normal"] - 1) ** 2).mean() + (d["fake_normal"] ** 2).mean()), rel=1e-4)
    assert float(values["discriminator_total"]) == pytest.approx(
        sum(float(values[k]) for k in ("disc_tumor", "disc_normal", "disc_tumor_local", "disc_normal_local")),
        rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("trains_attention", [True, False])
def test_local_terms_train_the_attention_only_when_asked(data_dir, tmp_path, trains_attention):
    """--nolocal_trains_attention: the local crops hold the same values, the local terms still
    train both generators, and no gradient of theirs reaches the attention networks; by default
    it does (and the whole step runs either way)."""
    from ssagan_tf.training import step as steps
    from ssagan_tf.losses import generator_adversarial_loss

    model = ModelConfig.for_system("attention_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1,
                                   d_local=24)
    config = tiny_config(data_dir, tmp_path, model=model, local_trains_attention=trains_attention)
    train_step, m, _ = make_train_step(config)
    batch = random_batch()
    x_n, x_t = batch["normal"]["image"], batch["tumor"]["image"]
    with tf.GradientTape(persistent=True) as tape:
        cycle = train_step.translations(x_n, x_t)
        views = train_step._local_views(batch, cycle)
        local = tf.reduce_mean(generator_adversarial_loss(m.disc_tumor_local(views["fake_tumor"], training=True),
                                                          "lsgan")
                               + generator_adversarial_loss(m.disc_normal_local(views["fake_normal"], training=True),
                                                            "lsgan"))
    assert (cycle.generated_t is None) == trains_attention
    as_composed = steps.local_views(x_n, x_t, cycle, batch["tumor"]["mask"], batch["tumor"]["has_mask"], 24)
    for name in views:
        np.testing.assert_allclose(views[name].numpy(), as_composed[name].numpy(), rtol=0, atol=1e-6, err_msg=name)

    def norm(gradients):
        return sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients if g is not None)

    attention = m.attention_normal.trainable_variables + m.attention_tumor.trainable_variables
    assert norm(tape.gradient(local, m.normal_to_tumor.trainable_variables)) > 0
    assert norm(tape.gradient(local, m.tumor_to_normal.trainable_variables)) > 0
    assert (norm(tape.gradient(local, attention)) > 0) == trains_attention
    values = train_step(batch, phase(config, True))
    assert np.isfinite(float(values["local_adversarial"]))


@pytest.mark.slow
def test_a_run_with_local_discriminators_resumes_exactly_and_exports(data_dir, tmp_path):
    """2 + 2 steps with --d_local equal 4 in one run (the local discriminators and their optimizer
    slots are checkpointed), and the export needs none of them."""
    from ssagan_tf.export import export_models

    model = ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1, d_local=24)
    straight = quiet_train(tiny_config(data_dir, tmp_path / "straight", model=model, max_steps=4))
    quiet_train(tiny_config(data_dir, tmp_path / "resumed", model=model, max_steps=2))
    resumed = quiet_train(tiny_config(data_dir, tmp_path / "resumed", model=model, max_steps=4))
    assert resumed.resumed_from == 2 and resumed.step == 4
    a, b = checkpoint_values(straight.checkpoint), checkpoint_values(resumed.checkpoint)
    assert a.keys() == b.keys() and any(k.startswith("disc_tumor_local/") for k in a)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert os.path.isdir(export_models(str(tmp_path / "resumed"), str(tmp_path / "export")))


def test_d_local_is_checked_and_ignored_without_attention():
    for bad in (16, 40):
        with pytest.raises(ValueError, match="d_local must be 0"):
            ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, d_local=bad)
    assert ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, d_local=24).local_discriminators
    plain = ModelConfig.for_system("cyclegan", image_size=32, channels=1, d_local=24)
    assert not plain.local_discriminators
    from ssagan_tf.training.config import unused_settings

    assert unused_settings(plain, ["d_local"]) == [("d_local", "the systems with attention")]
    assert unused_settings(plain, ["local_trains_attention"]) == [
        ("local_trains_attention", "--d_local in the systems with attention")]
    assert unused_settings(ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1),
                           ["local_trains_attention"]) == [
        ("local_trains_attention", "--d_local in the systems with attention")]
    assert unused_settings(ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, d_local=24),
                           ["local_trains_attention"]) == []
    from ssagan_tf.training.resume import architecture

    # Resuming compares what builds networks: a d_local the system ignores is no change of model.
    assert architecture(plain) == architecture(dataclasses.replace(plain, d_local=0))
    with_attention = ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, d_local=24)
    assert architecture(with_attention)["d_local"] == 24


def test_transpose_at_random_swaps_rows_and_columns_of_the_drawn_slices_only():
    from ssagan_tf.training.step import transpose_at_random

    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2000, 4, 4, 2)), tf.float32)
    seed = tf.constant([7, 3], tf.int64)
    out = transpose_at_random(images, 0.3, seed).numpy()
    same = np.all(out == images.numpy(), axis=(1, 2, 3))
    swapped = np.all(out == np.transpose(images.numpy(), (0, 2, 1, 3)), axis=(1, 2, 3))
    assert np.all(same ^ swapped)                                  # each slice is itself or its transpose
    assert swapped.mean() == pytest.approx(0.3, abs=0.04)
    np.testing.assert_array_equal(transpose_at_random(images, 0.3, seed).numpy(), out)      # seeded
    assert not np.array_equal(transpose_at_random(images, 0.3, seed + 1).numpy(), out)
    np.testing.assert_array_equal(transpose_at_random(images, 0.0, seed).numpy(), images.numpy())


@pytest.mark.slow
def test_train_step_d_transpose_by_value(data_dir, tmp_path):
    """With --d_transpose the generator's adversarial term normal->tumor is mean (D_t(T(fake_t)) -
    1)^2, T transposing the slices the step's seed draws for that view, from the weights before
    the step (networks without spectral norm); the cycle terms do not change."""
    from ssagan_tf.models import translate
    from ssagan_tf.training.step import D_VIEWS, transpose_at_random

    model = ModelConfig.for_system("attention_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
    config = tiny_config(data_dir, tmp_path, model=model, d_transpose=0.45, seed=2)
    train_step, m, _ = make_train_step(config)
    batch = random_batch()
    x_n = batch["normal"]["image"]
    fake_t, _ = translate(m.normal_to_tumor, m.attention_normal, x_n, training=True)
    seed = tf.constant([2 * 1024 + D_VIEWS["generator_fake_tumor"] * 2 ** 40, 0], tf.int64)
    seen = transpose_at_random(fake_t, 0.45, seed)
    drawn = ~np.all(seen.numpy() == fake_t.numpy(), axis=(1, 2, 3))
    assert drawn.any()                                             # the check below sees a transposed slice
    expected = ((m.disc_tumor(seen, training=True).numpy() - 1) ** 2).mean()
    plain = ((m.disc_tumor(fake_t, training=True).numpy() - 1) ** 2).mean()
    assert abs(expected - plain) > 1e-6
    values = train_step(batch, phase(config, True))
    assert float(values["adversarial_normal_to_tumor"]) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ConfigError, match="d_transpose must be in"):
        tiny_config(data_dir, tmp_path, d_transpose=0.5)
