"""Training checkpoints: everything needed to continue a run exactly (DESIGN.md section 5), and
`restore_models` for export and evaluation.

A checkpoint holds the six networks, both optimizers (moments, iteration counts, loss scales),
the global step and epoch, and every replica's image pools (whose query counters are their
random state; the data order is reproduced by seed and step, see `loop.py`).
"""

from __future__ import annotations

import os

import tensorflow as tf

from ssagan_tf.models import ModelConfig, SSAModels, build_models
from ssagan_tf.training import averaging
from ssagan_tf.training.config import load_config_dict

CHECKPOINT_SUBDIR = "checkpoints"


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


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


def latest_checkpoint(model_dir: str):
    """The newest checkpoint prefix under `model_dir`, or None."""
    return tf.train.latest_checkpoint(checkpoint_dir(model_dir))


CHECKPOINT_CHOICES = ("auto", "best", "latest")


def chosen_checkpoint(model_dir: str, which: str = "latest"):
    """The checkpoint prefix export reads: `latest`, `best` (the one `--select_best` kept;
    FileNotFoundError without one) or `auto` (best when the run kept one, else latest)."""
    from ssagan_tf.training.selection import best_checkpoint, selection_dir

    if which not in CHECKPOINT_CHOICES:
        raise ValueError(f"checkpoint must be one of {CHECKPOINT_CHOICES}, got {which!r}")
    best = best_checkpoint(model_dir) if which != "latest" else None
    if which == "best" and best is None:
        raise FileNotFoundError(f"{selection_dir(model_dir)}: no best checkpoint; train with --select_best and "
                                "--judge_dir, or export --checkpoint=latest")
    return best or latest_checkpoint(model_dir)


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


def restore_models(model_dir: str, precision: str = "fp32", discriminators: bool = False, path: str | None = None,
                   average: bool = True):
    """Build the networks of the run in `model_dir` from its `config.json` and load the weights of
    the checkpoint at `path` (default: the latest). Returns ``(SSAModels, ModelConfig,
    run_config_dict)``; the run config holds `tau`, the inference threshold. The models compute in
    `precision` whatever the run trained in (variables are float32 in every precision). The
    discriminators keep their initial weights unless `discriminators` (export and augmentation do
    not need them). When the checkpoint holds a weight average (`--ema_decay`) and `average`, the
    generators and attention networks get the averaged weights (`uses_average` tells)."""
    run_config = load_config_dict(model_dir)
    if not isinstance(run_config.get("model"), dict):
        raise ValueError(f"{os.path.join(model_dir, 'config.json')}: no 'model' section; not the config.json of a "
                         "training run (run_train.py writes it)")
    cfg = ModelConfig.from_dict({**run_config["model"], "precision": precision})
    path = path or latest_checkpoint(model_dir)
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
