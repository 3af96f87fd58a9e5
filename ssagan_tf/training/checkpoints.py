"""Training checkpoints: everything needed to continue a run exactly (docs/training.md, "Resuming
exactly"), and `restore_models` for export and evaluation. Where checkpoints are and which one to
read (the newest intact one, the best one) is the run directory's (`ssagan_tf.run_dir`).

A checkpoint holds the six networks, both optimizers (moments, iteration counts, loss scales),
the global step and epoch, and every replica's image pools (whose query counters are their
random state; the data order is reproduced by seed and step, see `loop.py`).

`record_resume_point` makes TensorFlow's state file agree with the checkpoint a run continues
from (`run_dir.newest_intact_checkpoint`).
"""

from __future__ import annotations

import os

import tensorflow as tf

from ssagan_tf.models import ModelConfig, SSAModels, build_models
from ssagan_tf.run_dir import checkpoint_dir, checkpoint_problem, list_checkpoints, newest_intact_checkpoint
from ssagan_tf.training import averaging
from ssagan_tf.training.config import load_config_dict


def model_checkpoint(models: SSAModels, **extra) -> tf.train.Checkpoint:
    """A checkpoint of the networks (by their code names) plus any `extra` trackables. Export and
    training use the same names, so a model-only checkpoint reads a training one."""
    return tf.train.Checkpoint(**models.named(), **extra)


def training_checkpoint(models: SSAModels, gen_optimizer, disc_optimizer, step, epoch, pools_tumor,
                        pools_normal, average=None, warmup_end=None) -> tf.train.Checkpoint:
    """The whole training state; the weight average (`averaging.WeightAverage`, with `--ema_decay`)
    and the epoch the warm-up ends (with `--warmup_patience`) only when there are, so runs
    without them keep their checkpoint layout."""
    extra = {averaging.CHECKPOINT_KEY: average.trackable()} if average is not None else {}
    if warmup_end is not None:
        extra["attention_end_epoch"] = warmup_end
    return model_checkpoint(models, generator_optimizer=gen_optimizer, discriminator_optimizer=disc_optimizer,
                            step=step, epoch=epoch, pools_tumor=list(pools_tumor), pools_normal=list(pools_normal),
                            **extra)


def record_resume_point(model_dir: str, prefix: str) -> None:
    """Make TensorFlow's state file name `prefix` as the latest and every readable checkpoint up to
    it as kept (with their file times), so that `tf.train.CheckpointManager` continues from there
    and rotates the old ones as usual (with a missing or garbage state file it would know none of
    them and keep them all forever). Unreadable ones stay out of the list and on disk."""
    # The manager's own writer: the public v1 `update_checkpoint_state` writes no timestamps, and
    # the manager keeps forever the checkpoints listed without one.
    from tensorflow.python.checkpoint import checkpoint_management

    number = int(prefix.rsplit("-", 1)[1])
    kept = [c for c in list_checkpoints(model_dir) if c.number < number and checkpoint_problem(c.prefix) is None]
    wanted = [c.name for c in kept] + [os.path.basename(prefix)]
    try:
        state = tf.train.get_checkpoint_state(checkpoint_dir(model_dir))
    except Exception:  # noqa: BLE001 - binary garbage raises UnicodeDecodeError; rewritten below
        state = None
    if state and [os.path.basename(p) for p in state.all_model_checkpoint_paths] == wanted \
            and os.path.basename(state.model_checkpoint_path) == wanted[-1] \
            and len(state.all_model_checkpoint_timestamps) == len(wanted):
        return
    times = [os.path.getmtime(prefix + ".index") for prefix in [c.prefix for c in kept] + [prefix]]
    checkpoint_management.update_checkpoint_state_internal(
        checkpoint_dir(model_dir), wanted[-1], all_model_checkpoint_paths=wanted, save_relative_paths=True,
        all_model_checkpoint_timestamps=times, last_preserved_timestamp=min(times) - 1)


class IncompatibleCheckpointError(ValueError):
    """A checkpoint written by an older version of this code that cannot be read as it is."""


def check_format(path: str, need_discriminators: bool = True, need_pools: bool = False) -> None:
    """Refuse, with what to do, a checkpoint that predates the current variable layout:
    discriminators spectrally normalised by Keras' `SpectralNormalization` (it stored W / sigma and
    a `vector_u`; `SpectralConv2D` stores W, u and v) and image pools without the attention maps.
    Generators and attention networks are unchanged, so such runs still export."""
    names = [name for name, _ in tf.train.list_variables(path)]
    if need_discriminators and any("vector_u" in name for name in names):
        raise IncompatibleCheckpointError(
            f"{path}: saved with Keras' SpectralNormalization, whose discriminator weights are the normalised "
            "W / sigma, not W: training cannot continue from it with the reparameterised spectral norm. Export "
            "and augmentation still read it (they need no discriminator); to train, start over with --fresh")
    if need_pools and any(name.startswith("pools_tumor/") for name in names) and not any(
            name.startswith("pools_tumor/") and "/attention/" in name for name in names):
        raise IncompatibleCheckpointError(
            f"{path}: its image pools hold no attention maps (saved by an older version), so training cannot "
            "resume exactly; start over with --fresh")


def restore_models(model_dir: str, precision: str = "fp32", discriminators: bool = False, checkpoint: str | None = None,
                   log=None, average: bool = True):
    """Build the networks of the run in `model_dir` from its `config.json` and load the weights of
    `checkpoint` (default: its newest intact one, `newest_intact_checkpoint`, which names through
    `log` the unreadable ones it skipped). Returns ``(SSAModels, ModelConfig, run_config_dict)``;
    the run config holds `tau`, the inference threshold. The models compute in `precision`
    whatever the run trained in (variables are float32 in every precision). The discriminators
    keep their initial weights unless `discriminators` (export and augmentation do not need them).
    When the checkpoint holds a weight average (`--ema_decay`) and `average`, the generators and
    attention networks get the averaged weights (`uses_average` tells)."""
    run_config = load_config_dict(model_dir)
    cfg = ModelConfig.from_dict({**run_config["model"], "precision": precision})
    path = checkpoint or newest_intact_checkpoint(model_dir, log)
    if path is None:
        raise FileNotFoundError(f"{checkpoint_dir(model_dir)}: no checkpoint; has this run saved one yet?")
    check_format(path, need_discriminators=discriminators)
    models = build_models(cfg)
    named = models.named()
    if not discriminators:
        named = {k: v for k, v in named.items() if not k.startswith("disc_")}
    tf.train.Checkpoint(**named).restore(path).expect_partial().assert_existing_objects_matched()
    if average and uses_average(path):
        averaging.load_average_into(models, path)
    return models, cfg, run_config


def uses_average(path: str) -> bool:
    """Whether `restore_models` gives the checkpoint at `path` its averaged weights."""
    return averaging.has_average(path)
