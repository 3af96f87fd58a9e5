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
from ssagan_tf.training.config import load_config_dict

CHECKPOINT_SUBDIR = "checkpoints"


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def model_checkpoint(models: SSAModels, **extra) -> tf.train.Checkpoint:
    """A checkpoint of the networks (by their code names) plus any `extra` trackables. Export and
    training use the same names, so a model-only checkpoint reads a training one."""
    return tf.train.Checkpoint(**models.named(), **extra)


def training_checkpoint(models: SSAModels, gen_optimizer, disc_optimizer, step, epoch, pools_tumor,
                        pools_normal) -> tf.train.Checkpoint:
    return model_checkpoint(models, generator_optimizer=gen_optimizer, discriminator_optimizer=disc_optimizer,
                            step=step, epoch=epoch, pools_tumor=list(pools_tumor), pools_normal=list(pools_normal))


def latest_checkpoint(model_dir: str):
    """The newest checkpoint prefix under `model_dir`, or None."""
    return tf.train.latest_checkpoint(checkpoint_dir(model_dir))


def restore_models(model_dir: str):
    """Build the networks of the run in `model_dir` from its `config.json` and load the latest
    checkpoint's weights. Returns ``(SSAModels, ModelConfig, run_config_dict)``; the run config
    holds `tau`, the inference threshold. Models are built in float32 whatever the run's
    precision (the stored variables are float32 either way)."""
    run_config = load_config_dict(model_dir)
    cfg = ModelConfig.from_dict({**run_config["model"], "mixed_precision": False})
    path = latest_checkpoint(model_dir)
    if path is None:
        raise FileNotFoundError(f"{checkpoint_dir(model_dir)}: no checkpoint; has this run saved one yet?")
    models = build_models(cfg)
    model_checkpoint(models).restore(path).expect_partial().assert_existing_objects_matched()
    return models, cfg, run_config
