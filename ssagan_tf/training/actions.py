"""The periodic actions of the training loop, kept apart from the step as Orbit keeps them: each
action says *when* it is due (`due(step)`) and does *what* it does (`action(step, values)`), and the
loop runs, after every step, the due ones in list order: log, images, validation
(`validation.Validation`), checkpoint.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from ssagan_tf import figures, run_dir
from ssagan_tf.training import summaries


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the last checkpoint (from before) is left as it was."""


class Throughput:
    """Seconds spent in train steps since the last report: throughput counts train steps only, not
    the validation, images and saving in between."""

    def __init__(self):
        self.seconds, self.steps = 0.0, 0

    def add(self, seconds: float):
        self.seconds += seconds
        self.steps += 1

    def take(self) -> float:
        """Mean seconds per step since the last call."""
        mean = self.seconds / self.steps
        self.seconds, self.steps = 0.0, 0
        return mean


class LogProgress:
    """The console line and TensorBoard scalars (every loss term, learning rate, throughput, the
    phase) every `log_every` steps and at the stop step."""

    def __init__(self, config, schedule, state, board, throughput: Throughput, stream):
        self.config, self.schedule, self.state, self.board = config, schedule, state, board
        self.throughput = throughput
        self.progress = summaries.ProgressLine(schedule.stop_step, schedule.steps_per_epoch, stream)
        self.slices_per_step = 2 * config.batch_size          # one normal and one tumor slice per example
        self.unlogged = summaries.zero_weight_terms(config)

    def due(self, step: int) -> bool:
        return step % self.config.log_every == 0 or step == self.schedule.stop_step

    def __call__(self, step: int, values: dict):
        seconds = self.throughput.take()
        rate = self.state.generator_optimizer.learning_rate
        lr = float(rate.numpy() if hasattr(rate, "numpy") else rate)
        values = {k: v for k, v in values.items() if k not in self.unlogged}
        self.progress.show(step, values, self.slices_per_step / seconds, seconds)
        attention = {k: v for k, v in values.items() if k.startswith("attention_") and k.endswith("_mean")}
        self.board.scalars(step, {k: v for k, v in values.items() if k not in attention}, prefix="loss/")
        self.board.scalars(step, attention, prefix="attention/")
        # `warmup` is the phase of the step just taken (step - 1 steps before it).
        self.board.scalars(step, {"learning_rate": lr, "slices_per_second": self.slices_per_step / seconds,
                                  "warmup": float(self.schedule.in_warmup(step - 1))}, prefix="train/")


class AnnounceFreeze:
    """One console line when the attention warm-up ends, so the identical validation lines of the
    attention that follow do not look like a hung run."""

    def __init__(self, schedule, log):
        self.schedule, self.log = schedule, log

    def due(self, step: int) -> bool:
        freeze = self.schedule.freeze_epoch
        return freeze is not None and 0 < freeze < self.schedule.epochs and step == freeze * self.schedule.steps_per_epoch

    def __call__(self, step: int, values: dict):
        self.log(f"attention frozen at epoch {self.schedule.freeze_epoch} (step {step}); from here A_n and A_t "
                 "no longer change")


class WriteImages:
    """The image grid (input | attention | translation | reconstruction, a row per example) to
    TensorBoard (a plain tiling, its layout in the tag's description) and, labelled, to
    `samples/step_*.png` every `image_every` steps and at the stop step (chief only)."""

    def __init__(self, config, schedule, models, board, grid_inputs):
        self.config, self.schedule, self.models, self.board = config, schedule, models, board
        self.grid_inputs = grid_inputs

    def due(self, step: int) -> bool:
        return step % self.config.image_every == 0 or step == self.schedule.stop_step

    def __call__(self, step: int, values: dict):
        rows = summaries.translation_rows(self.models, *self.grid_inputs, tau=self.config.tau,
                                          cycle_attention=self.config.cycle_attention)
        self.board.image(step, "translations", summaries.grid_image(rows),
                         description=summaries.grid_description(len(self.grid_inputs[0])))
        os.makedirs(run_dir.samples_dir(self.config.model_dir), exist_ok=True)
        figures.save(summaries.translation_figure(rows, step),
                     run_dir.sample_path(self.config.model_dir, step))


def non_finite_state(models, optimizers, probe) -> list:
    """What makes the training state unfit to save: the networks' and optimizers' float variables
    holding NaN or Inf, and the networks whose output on `probe` (a fixed batch, the same on every
    worker) is not finite. Weights can be finite yet so large that the next forward pass overflows
    (a huge learning rate does that), so the outputs are checked too."""
    variables = [v for m in models.named().values() for v in m.weights]
    variables += [v for opt in optimizers for v in opt.variables]
    bad = [getattr(v, "path", v.name) for v in variables
           if tf.as_dtype(v.dtype).is_floating and not bool(tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))))]
    for name, network in models.named().items():
        output = tf.cast(network(probe, training=False), tf.float32)
        if not bool(tf.reduce_all(tf.math.is_finite(output))):
            bad.append(f"{name} output")
    return bad


class SaveCheckpoint:
    """A checkpoint every `checkpoint_every` steps, at every epoch end and at the stop step, once
    the state is checked finite (every process takes part: multi-worker saves are collective)."""

    def __init__(self, config, schedule, state, manager, start: int, number_offset: int = 0):
        self.config, self.schedule, self.state, self.manager = config, schedule, state, manager
        self.last_saved = start
        self.number_offset = number_offset      # checkpoint number - step (0 unless resumed below a newer file)
        size, channels = config.model.image_size, config.model.channels
        self.probe = tf.constant(np.random.default_rng(0).uniform(-1, 1, (1, size, size, channels)), tf.float32)

    def due(self, step: int) -> bool:
        return ((step % self.config.checkpoint_every == 0 or self.schedule.ends_epoch(step)
                 or step == self.schedule.stop_step) and step != self.last_saved)

    def __call__(self, step: int, values: dict):
        # The loss is checked before the update it drives: a blow-up shows in the weights one
        # step before it shows in a loss, so the weights are checked before every save.
        bad = non_finite_state(self.state.models, self.state.optimizers, self.probe)
        if bad:
            raise NonFiniteLossError(
                f"non-finite training state after step {step} ({len(bad)} problems, e.g. {', '.join(bad[:3])}). "
                f"Training stopped without saving them; the last finite checkpoint "
                f"({self.manager.latest_checkpoint or 'none'}) is the latest, and a rerun resumes from it. "
                "Try a lower --learning_rate, or --precision=fp32.")
        self.manager.save(checkpoint_number=step + self.number_offset)
        self.last_saved = step
