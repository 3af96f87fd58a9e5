"""The room of a training run: what `run_train.py --model_dir=DIR` writes, and where.

    DIR/config.json          the run's settings (`training.config.RunConfig`), written atomically
    DIR/checkpoints/         ckpt-<N>.index, ckpt-<N>.data-*, and TensorFlow's `checkpoint` state file
    DIR/logs/                TensorBoard event files
    DIR/samples/             step_<NNNNNNNN>.png sample grids
    DIR/selection/           --select_best: scores.json and the kept copy of the best checkpoint
    DIR/train.lock           held while a trainer runs (`ssagan_tf.locking`)
"""

from __future__ import annotations

import os

CONFIG_NAME = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"
LOGS_SUBDIR = "logs"
SAMPLES_SUBDIR = "samples"
SELECTION_SUBDIR = "selection"
LOCK_NAME = "train.lock"


def is_run_dir(path: str) -> bool:
    """Whether `path` looks like a training run: config.json and a checkpoints folder."""
    return os.path.isfile(os.path.join(path, CONFIG_NAME)) and os.path.isdir(os.path.join(path, CHECKPOINT_SUBDIR))
