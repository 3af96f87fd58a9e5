"""Training checkpoints: everything needed to continue a run exactly (docs/training.md, "Resuming exactly"), and
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


def restore_models(model_dir: str, precision: str = "fp32", discriminators: bool = False):
    """Build the networks of the run in `model_dir` from its `config.json` and load the latest
    checkpoint's weights. Returns ``(SSAModels, ModelConfig, run_config_dict)``; the run config
    holds `tau`, the inference threshold. The models compute in `precision` whatever the run
    trained in (variables are float32 in every precision). The discriminators keep their initial
    weights unless `discriminators` (export and augmentation do not need them)."""
    run_config = load_config_dict(model_dir)
    if not isinstance(run_config.get("model"), dict):
        raise ValueError(f"{os.path.join(model_dir, 'config.json')}: no 'model' section; not the config.json of a "
                         "training run (run_train.py writes it)")
    cfg = ModelConfig.from_dict({**run_config["model"], "precision": precision})
    path = latest_checkpoint(model_dir)
    if path is None:
        raise FileNotFoundError(f"{checkpoint_dir(model_dir)}: no checkpoint; has this run saved one yet?")
    check_format(path, need_discriminators=discriminators)
    models = build_models(cfg)
    named = models.named()
    if not discriminators:
        named = {k: v for k, v in named.items() if not k.startswith("disc_")}
    tf.train.Checkpoint(**named).restore(path).expect_partial().assert_existing_objects_matched()
    return models, cfg, run_config
