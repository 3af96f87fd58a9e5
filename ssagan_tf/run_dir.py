"""The room of a training run: what `run_train.py --model_dir=DIR` writes, and where.

    DIR/config.json          the run's settings (`training.config.RunConfig`), written atomically
    DIR/checkpoints/         ckpt-<N>.index, ckpt-<N>.data-*, and TensorFlow's `checkpoint` state file
    DIR/logs/                TensorBoard event files
    DIR/samples/             step_<NNNNNNNN>.png sample grids
    DIR/selection/           --select_best: scores.json and the kept copy of the best checkpoint
    DIR/train.lock           held while a trainer runs (`ssagan_tf.locking`)

Here are the names and paths of that layout, and reading a run back: its config.json as written
(`config_path`; what it means and how it is checked is `training.config`'s `load_config_dict`),
its checkpoints (`list_checkpoints`, `newest_intact_checkpoint`, `chosen_checkpoint`) and its
selection's scores (`read_scores`, `best_checkpoint`). How a checkpoint is restored into networks
is `training.checkpoints.restore_models`. TensorFlow is imported only by the functions that read
checkpoint contents.

Which checkpoint to continue from (or export) is decided from the checkpoint files themselves,
not from TensorFlow's `checkpoints/checkpoint` state file alone: a missing or garbage state file
makes `tf.train.latest_checkpoint` answer None (training would restart from step 0 over the
existing checkpoints), and a truncated latest checkpoint fails deep inside TensorFlow without its
name. `newest_intact_checkpoint` reads every tensor of the newest `ckpt-<N>` (CRCs included) and
steps back to older ones until one reads, naming what it skipped.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from dataclasses import dataclass

CONFIG_NAME = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"
CHECKPOINT_PREFIX = "ckpt"      # tf.train.CheckpointManager's: ckpt-<N>.index, ckpt-<N>.data-<i>-of-<n>
LOGS_SUBDIR = "logs"
SAMPLES_SUBDIR = "samples"
SELECTION_SUBDIR = "selection"
SCORES_NAME = "scores.json"     # in selection/
LOCK_NAME = "train.lock"        # held while a trainer runs (ssagan_tf.locking)
SAMPLE_NAME = "step_{step:08d}.png"


def config_path(model_dir: str) -> str:
    return os.path.join(model_dir, CONFIG_NAME)


def logs_dir(model_dir: str) -> str:
    return os.path.join(model_dir, LOGS_SUBDIR)


def samples_dir(model_dir: str) -> str:
    return os.path.join(model_dir, SAMPLES_SUBDIR)


def sample_path(model_dir: str, step: int) -> str:
    return os.path.join(samples_dir(model_dir), SAMPLE_NAME.format(step=step))


def selection_dir(model_dir: str) -> str:
    return os.path.join(model_dir, SELECTION_SUBDIR)


def is_run_dir(path: str) -> bool:
    """Whether `path` looks like a training run: config.json and a checkpoints folder."""
    return os.path.isfile(os.path.join(path, CONFIG_NAME)) and os.path.isdir(os.path.join(path, CHECKPOINT_SUBDIR))


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def has_checkpoint_index(model_dir: str) -> bool:
    """Whether any `ckpt-<N>.index` file is in the checkpoints folder (readable or not)."""
    return bool(glob.glob(os.path.join(glob.escape(checkpoint_dir(model_dir)), f"{CHECKPOINT_PREFIX}-*.index")))


def latest_checkpoint(model_dir: str):
    """The checkpoint prefix TensorFlow's state file names as the latest, or None (see
    `newest_intact_checkpoint` for the one to continue from)."""
    import tensorflow as tf

    return tf.train.latest_checkpoint(checkpoint_dir(model_dir))


_CHECKPOINT_FILE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)(\.index|\.data-\d+-of-\d+)$")


@dataclass(frozen=True)
class CheckpointFiles:
    """The files of one `ckpt-<number>` in a run's checkpoints folder."""

    number: int
    prefix: str             # the path TensorFlow reads: <model_dir>/checkpoints/ckpt-<number>
    files: tuple            # the file names present (index and data shards)

    @property
    def name(self) -> str:
        return os.path.basename(self.prefix)


class NoIntactCheckpointError(RuntimeError):
    """Checkpoint files exist, but none of them can be read."""


def list_checkpoints(model_dir: str) -> list:
    """Every `ckpt-<N>` with files in `<model_dir>/checkpoints`, intact or not, oldest (lowest N)
    first. TensorFlow's state file is not read."""
    folder = checkpoint_dir(model_dir)
    found = {}
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        match = _CHECKPOINT_FILE.match(name)
        if match and os.path.isfile(os.path.join(folder, name)):
            found.setdefault(int(match.group(1)), []).append(name)
    return [CheckpointFiles(number, os.path.join(folder, f"{CHECKPOINT_PREFIX}-{number}"), tuple(files))
            for number, files in sorted(found.items())]


def checkpoint_problem(prefix: str) -> str | None:
    """Why the checkpoint at `prefix` cannot be read (None when it can): its index must parse and
    every tensor must read with its checksum. Reading all of it costs about one restore."""
    import tensorflow as tf

    if not os.path.isfile(prefix + ".index"):
        return "no index file (the save did not finish)"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as err:  # noqa: BLE001 - any failure to read means: not intact (IndexError, OpError, ...)
        text = getattr(err, "message", None) or str(err) or type(err).__name__
        return " ".join(text.replace(prefix, "").split())[:200] or type(err).__name__
    return None


def newest_intact_checkpoint(model_dir: str, log=None):
    """The prefix of the newest checkpoint of the run in `model_dir` that reads completely, or None
    when there are no checkpoint files. Newer ones that do not read are named in one line through
    `log` (default: stderr) and left on disk as they are; when none reads,
    `NoIntactCheckpointError` names them."""
    found = list_checkpoints(model_dir)
    skipped = []
    for candidate in reversed(found):
        problem = checkpoint_problem(candidate.prefix)
        if problem is None:
            if skipped:
                (log or _to_stderr)(f"Skipped unreadable checkpoint(s) newer than {candidate.name} (left as they are): "
                                    + "; ".join(skipped))
            return candidate.prefix
        skipped.append(f"{candidate.name} ({problem})")
    if skipped:
        raise NoIntactCheckpointError(
            f"{checkpoint_dir(model_dir)}: no checkpoint can be read: " + "; ".join(skipped)
            + ". Nothing was changed; to start this run over, pass --fresh (it deletes them)")
    return None


def highest_checkpoint_number(model_dir: str) -> int:
    """The highest N of any `ckpt-<N>` file present, readable or not (0 when none), so that new
    checkpoints can be numbered above every existing one."""
    found = list_checkpoints(model_dir)
    return found[-1].number if found else 0


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


CHECKPOINT_CHOICES = ("auto", "best", "latest")


def chosen_checkpoint(model_dir: str, which: str = "latest", log=None):
    """The checkpoint prefix export reads: `latest`, `best` (the one `--select_best` kept;
    FileNotFoundError without one) or `auto` (best when the run kept one, else latest); latest is the newest intact
    checkpoint (`newest_intact_checkpoint`, which names through `log` the unreadable ones it skipped)."""
    if which not in CHECKPOINT_CHOICES:
        raise ValueError(f"checkpoint must be one of {CHECKPOINT_CHOICES}, got {which!r}")
    best = best_checkpoint(model_dir) if which != "latest" else None
    if which == "best" and best is None:
        raise FileNotFoundError(f"{selection_dir(model_dir)}: no best checkpoint; train with --select_best and "
                                "--judge, or export --checkpoint=latest")
    return best or newest_intact_checkpoint(model_dir, log)


def read_scores(model_dir: str) -> dict:
    path = os.path.join(selection_dir(model_dir), SCORES_NAME)
    if not os.path.isfile(path):
        return {"rule": None, "records": [], "best": None}
    with open(path) as f:
        return json.load(f)


def best_checkpoint(model_dir: str) -> str | None:
    """The checkpoint prefix the selection kept, or None (no selection, or its files are gone)."""
    best = read_scores(model_dir).get("best")
    if not best:
        return None
    prefix = os.path.join(selection_dir(model_dir), best["checkpoint"])
    return prefix if os.path.isfile(prefix + ".index") else None
