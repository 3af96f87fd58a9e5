"""The training schedule: where a run is, and what the method does there.

The attention warm-up is where SSA-CycleGAN departs from CycleGAN (docs/method.md, "The schedule"): for its
first `attention_epochs` epochs the attention networks train and the discriminators see full
images; afterwards the attention networks are frozen and (every `d_mode` but `full`) the
discriminators see attention-guided views. `Schedule` is the one place that decides this, and
what else follows from the step: the epoch, the learning rate, when the run stops.

Steps are counted as the training loop counts them: `phase(s)` is the phase of the step taken
after `s` steps, so step `s` belongs to epoch `s // steps_per_epoch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import tensorflow as tf

from ssagan_tf.data import combined, schema
from ssagan_tf.training.config import ConfigError, RunConfig


@dataclass(frozen=True)
class Phase:
    """What one train step does; the train step traces one graph per phase."""

    train_attention: bool          # the attention networks get gradients (the warm-up)
    mask_discriminators: bool      # the discriminators see attention-guided views, not full images


class WarmupEnd:
    """Where a validation criterion ended the attention warm-up before `attention_epochs`
    (`--warmup_patience`, `selection.RecordValidation`). Holds a checkpointed int64 variable (the
    epoch from which the attention is frozen) once `TrainingState.build` attaches one; without it
    the warm-up lasts `attention_epochs`, as the fixed schedule says."""

    def __init__(self):
        self.variable = None

    def epoch(self, cap: int) -> int:
        return cap if self.variable is None else min(cap, int(self.variable.numpy()))

    def end_at(self, epoch: int):
        self.variable.assign(epoch)


class LinearDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Constant `base` for the first `decay_start` steps, then linear decay to 0 at `total`."""

    def __init__(self, base: float, decay_start: int, total: int):
        self.base, self.decay_start, self.total = float(base), int(decay_start), int(total)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        span = max(self.total - self.decay_start, 1)
        fraction = tf.clip_by_value((step - self.decay_start) / span, 0.0, 1.0)
        return self.base * (1.0 - fraction)

    def get_config(self):
        return {"base": self.base, "decay_start": self.decay_start, "total": self.total}


@dataclass(frozen=True)
class Schedule:
    """The steps of one run and the method's phase at each of them."""

    steps_per_epoch: int
    epochs: int
    max_steps: int                 # 0 = no early stop
    use_attention: bool
    attention_epochs: int
    d_mode: str
    learning_rate: float
    decay_start_fraction: float
    warmup_end: WarmupEnd = field(default_factory=WarmupEnd, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: RunConfig, steps_per_epoch: int) -> "Schedule":
        return cls(steps_per_epoch=steps_per_epoch, epochs=config.epochs, max_steps=config.max_steps,
                   use_attention=config.model.use_attention, attention_epochs=config.attention_epochs,
                   d_mode=config.d_mode, learning_rate=config.learning_rate,
                   decay_start_fraction=config.decay_start_fraction)

    @classmethod
    def for_run(cls, config: RunConfig, manifests) -> "Schedule":
        """The schedule of `config` over the data of `manifests` (one `schema.Manifest`, or the
        run's datasets', main first): an epoch is one pass, in global batches, over the longer
        training domain, counted over every dataset's train split together."""
        manifests = [manifests] if isinstance(manifests, schema.Manifest) else list(manifests)
        longest = max(combined.combined_counts(manifests, "train").values())
        steps_per_epoch = longest // config.batch_size
        if steps_per_epoch < 1:
            raise ConfigError(f"batch_size {config.batch_size} is larger than the training set "
                              f"({longest} slices in the longer domain)")
        return cls.from_config(config, steps_per_epoch)

    @property
    def total_steps(self) -> int:
        """The steps of all epochs; the learning rate decays to 0 over them."""
        return self.epochs * self.steps_per_epoch

    @property
    def stop_step(self) -> int:
        """Where this invocation stops: `max_steps` if set (and earlier), else `total_steps`."""
        return min(self.total_steps, self.max_steps) if self.max_steps else self.total_steps

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def ends_epoch(self, step: int) -> bool:
        """Whether `step` steps complete an epoch."""
        return step % self.steps_per_epoch == 0

    @property
    def freeze_epoch(self) -> int | None:
        """The epoch from whose start the attention networks are frozen (None without attention)."""
        return self.warmup_end.epoch(self.attention_epochs) if self.use_attention else None

    def in_warmup(self, step: int) -> bool:
        """Whether the step taken after `step` steps trains the attention networks."""
        return self.use_attention and self.epoch_of(step) < self.freeze_epoch

    def phase(self, step: int) -> Phase:
        warmup = self.in_warmup(step)
        return Phase(train_attention=warmup,
                     mask_discriminators=self.use_attention and self.d_mode != "full" and not warmup)

    def learning_rate_schedule(self) -> LinearDecaySchedule:
        """Both players' learning rate: constant for `decay_start_fraction` of the total steps,
        then linear to 0 (it spans all epochs, so `max_steps` never changes it)."""
        return LinearDecaySchedule(self.learning_rate, int(self.total_steps * self.decay_start_fraction),
                                   self.total_steps)
