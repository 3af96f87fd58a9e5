"""The training state: everything a checkpoint holds to continue a run exactly (docs/training.md,
"Resuming exactly") - the six networks, one optimizer per player, the step and epoch counters and the
per-replica image pools (whose counters are their random state), and with `--ema_decay` the
average of the translation networks' weights (`averaging.WeightAverage`)."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from ssagan_tf.models import SSAModels, build_models
from ssagan_tf.training import checkpoints
from ssagan_tf.training.averaging import WeightAverage
from ssagan_tf.training.pool import make_pools
from ssagan_tf.training.schedule import Schedule


def make_optimizers(config, schedule: Schedule):
    """Adam for generators+attention and Adam for discriminators, on the schedule's learning rate,
    each wrapped for loss scaling under fp16 (one loss scale per player; bf16 has float32's range
    and needs none)."""
    learning_rate = schedule.learning_rate_schedule()
    made = []
    for name in ("generator_adam", "discriminator_adam"):
        opt = keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, name=name)
        if config.model.precision == "fp16":
            opt = keras.optimizers.LossScaleOptimizer(opt, name=f"{name}_loss_scale")
        made.append(opt)
    return made


@dataclass
class TrainingState:
    models: SSAModels
    generator_optimizer: object
    discriminator_optimizer: object
    step: tf.Variable
    epoch: tf.Variable
    pools_tumor: list
    pools_normal: list
    average: WeightAverage | None = None      # with ema_decay > 0
    warmup_end: tf.Variable | None = None     # with warmup_patience > 0: the epoch the warm-up ends

    @classmethod
    def build(cls, config, strategy, schedule: Schedule) -> "TrainingState":
        """A fresh state under `strategy`: models and optimizers in its scope, one pool pair per
        local replica."""
        with strategy.scope():
            models = build_models(config.model)
            gen_opt, disc_opt = make_optimizers(config, schedule)
            # Built before the first step: under MirroredStrategy, slot variables cannot be created
            # inside strategy.run.
            gen_opt.build(models.generator_variables + models.attention_variables)
            disc_opt.build(models.discriminator_variables)
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            average = WeightAverage(models, config.ema_decay) if config.ema_decay > 0 else None
            warmup_end = None
            if config.warmup_patience and config.model.use_attention:
                # Where --warmup_patience ended the warm-up, checkpointed (schedule.WarmupEnd).
                warmup_end = tf.Variable(config.attention_epochs, dtype=tf.int64, trainable=False,
                                         name="attention_end_epoch")
                schedule.warmup_end.variable = warmup_end
        shape = (config.model.image_size, config.model.image_size, config.model.channels)
        pools_tumor = make_pools(strategy, config.pool_size, shape, config.seed, "pool_tumor")
        pools_normal = make_pools(strategy, config.pool_size, shape, config.seed + 1, "pool_normal")
        return cls(models, gen_opt, disc_opt, step, epoch, pools_tumor, pools_normal, average, warmup_end)

    @property
    def optimizers(self) -> tuple:
        return self.generator_optimizer, self.discriminator_optimizer

    def checkpoint(self) -> tf.train.Checkpoint:
        return checkpoints.training_checkpoint(self.models, self.generator_optimizer, self.discriminator_optimizer,
                                               self.step, self.epoch, self.pools_tumor, self.pools_normal,
                                               average=self.average, warmup_end=self.warmup_end)
