"""ssagan_tf/training/schedule.py: the phase, epoch and learning rate of every step, and the
steps of a run over a dataset."""

import dataclasses

import numpy as np
import pytest

from ssagan_tf.data import schema
from ssagan_tf.models import ModelConfig
from ssagan_tf.training.config import ConfigError, RunConfig
from ssagan_tf.training.schedule import LinearDecaySchedule, Phase, Schedule

SSA = ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)


def test_learning_rate_constant_then_linear_to_zero():
    schedule = LinearDecaySchedule(2e-4, decay_start=50, total=100)
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 49, 50, 75, 100, 120)],
                               [2e-4, 2e-4, 2e-4, 1e-4, 0.0, 0.0], rtol=1e-6, atol=1e-12)


def test_schedule_gives_each_step_its_phase_epoch_and_learning_rate(tmp_path):
    """The one place that decides the warm-up: 3 steps an epoch, 2 warm-up epochs, 4 epochs."""
    config = RunConfig(data_dir="data", model_dir=str(tmp_path), model=SSA, attention_epochs=2, epochs=4, max_steps=10,
                       decay_start_fraction=0.5)
    schedule = Schedule.from_config(config, steps_per_epoch=3)
    assert (schedule.total_steps, schedule.stop_step, schedule.freeze_epoch) == (12, 10, 2)
    warm, frozen = Phase(train_attention=True, mask_discriminators=False), Phase(False, True)
    assert [schedule.phase(s) for s in range(9)] == [warm] * 6 + [frozen] * 3
    assert [schedule.epoch_of(s) for s in (0, 2, 3, 11)] == [0, 0, 1, 3]
    assert [s for s in range(13) if schedule.ends_epoch(s)] == [0, 3, 6, 9, 12]
    full = Schedule.from_config(dataclasses.replace(config, d_mode="full"), steps_per_epoch=3)
    assert full.phase(5) == warm and full.phase(6) == Phase(False, False)      # frozen, D sees full images
    cyclegan = dataclasses.replace(config, model=ModelConfig.for_system(
        "cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1))
    plain = Schedule.from_config(cyclegan, steps_per_epoch=3)
    assert plain.phase(0) == Phase(False, False) and plain.freeze_epoch is None
    rate = schedule.learning_rate_schedule()
    assert (rate.base, rate.decay_start, rate.total) == (config.learning_rate, 6, 12)
    assert Schedule.from_config(dataclasses.replace(config, max_steps=0), 3).stop_step == 12


def test_an_epoch_is_a_pass_over_the_longer_domain(tiny_dataset, tmp_path):
    """The tiny dataset has 6 normal and 4 tumor training slices: 3 steps of 2, or 1 step of 5."""
    manifest = schema.read_manifest(tiny_dataset)
    config = RunConfig(data_dir=tiny_dataset, model_dir=str(tmp_path), model=SSA, batch_size=2, epochs=4)
    assert Schedule.for_run(config, manifest).steps_per_epoch == 3
    assert Schedule.for_run(dataclasses.replace(config, batch_size=5), manifest).total_steps == 4
    with pytest.raises(ConfigError, match="batch_size 7 is larger than the training set"):
        Schedule.for_run(dataclasses.replace(config, batch_size=7), manifest)
