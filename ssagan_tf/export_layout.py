"""The TF Serving model directory layout, `<export_dir>/<model_name>/<version>/saved_model.pb`,
without importing TensorFlow (so entry points can check paths before any heavy import): reading
versions, reading a version's `export.json`, and claiming the next one for an export
(`ssagan_tf.export`)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from dataclasses import dataclass

from ssagan_tf import io as durable
from ssagan_tf import run_dir
from ssagan_tf.locking import is_stale
from ssagan_tf.precision import PRECISIONS
from ssagan_tf.settings import Problems, setting

SAVED_MODEL_FILE = "saved_model.pb"
EXPORT_INFO_NAME = "export.json"      # beside saved_model.pb: what the export is (ssagan_tf.export)
EXPORT_FORMAT_VERSION = 1
IN_MASKS = "normal_to_tumor_in_masks"      # the signature whose input `masks` takes A_n's place
FILL_IN_MASKS = "tumor_to_normal_in_masks"  # and the one whose `masks` take A_t's place
MASKED_SIGNATURES = {"normal_to_tumor": IN_MASKS, "tumor_to_normal": FILL_IN_MASKS}
STAGING_PREFIX = ".tmp-export-"       # an export being written, beside the versions (TF Serving ignores it)
STAGING_LOCK = ".export.lock"         # in a staging folder, held by its writer
DEFAULT_MODEL_NAME = "ssagan"
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_TOLERANCE = 1e-5
# Reload-check tolerances (max abs difference on outputs in [-1, 1]) by compute precision: the
# SavedModel runs the same graph as Keras, but graph optimisation may fuse and reorder reduced-
# precision arithmetic, whose rounding step is 2^-8 (bf16) or 2^-11 (fp16) of the value.
TOLERANCES = {"fp32": DEFAULT_TOLERANCE, "bf16": 3e-2, "fp16": 5e-3}


@dataclass(frozen=True)
class ExportConfig:
    """One export of a training run; each field's help text is its flag's (`python -m
    ssagan_tf.export --help`, generated from the fields; `precision` has `ssagan_tf.precision`'s
    one flag, and must be resolved from `auto` before exporting)."""

    model_dir: str = setting(help="Training run directory (holds config.json and checkpoints/); its latest "
                                  "checkpoint is exported.")
    export_dir: str = setting(help="Base directory for TF Serving models; the export is written to "
                                   "<export_dir>/<model_name>/<next integer version>/.")
    model_name: str = setting(DEFAULT_MODEL_NAME, "Model name: the directory under --export_dir, and the "
                                                  "MODEL_NAME TF Serving serves it as.")
    tau: float | None = setting(None, "Inference attention threshold baked into the signatures (attention below "
                                      "tau is zeroed); default: the run's tau from config.json.", kind=float)
    tolerance: float | None = setting(None, "Largest allowed max-abs difference between the reloaded SavedModel "
                                            "and the Keras models; the export fails above it. Default: by "
                                            "precision, " + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items())
                                      + ".", kind=float)
    precision: str = "fp32"
    checkpoint: str = setting("auto", "Which checkpoint to export: latest (the newest intact one), best (the one "
                                      "--select_best kept in <model_dir>/selection/), or auto (best when the run "
                                      "kept one, else latest).", choices=run_dir.CHECKPOINT_CHOICES)

    def __post_init__(self):
        """Every bad value in one ConfigError (a ValueError); `check_inputs` checks the run folder."""
        problems = Problems()
        problems.need(bool(self.model_dir) and bool(self.export_dir), "--model_dir and --export_dir are required")
        problems.need(bool(MODEL_NAME_PATTERN.match(self.model_name or "")),
                      "--model_name: use letters, digits, '.', '_' or '-', starting with a letter or digit, "
                      f"got {self.model_name!r}")
        problems.need(self.tau is None or 0.0 <= self.tau < 1.0, f"--tau must be in [0, 1), got {self.tau}")
        problems.need(self.tolerance is None or self.tolerance > 0, f"--tolerance must be > 0, got {self.tolerance}")
        problems.need(self.precision in PRECISIONS,
                      f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        problems.need(self.checkpoint in run_dir.CHECKPOINT_CHOICES,
                      f"--checkpoint must be one of {', '.join(run_dir.CHECKPOINT_CHOICES)}, got {self.checkpoint!r}")
        problems.raise_any()

    def check_inputs(self) -> None:
        """`model_dir` is a training run; raises ValueError before any work."""
        if not os.path.isfile(run_dir.config_path(self.model_dir)):
            raise ValueError(f"--model_dir must be a training run directory holding config.json, got "
                             f"{self.model_dir!r}")


class ExportError(RuntimeError):
    """An export that could not be written or did not reproduce the Keras models."""


def validate_model_name(model_name: str) -> str:
    """A model name is one path component that TF Serving accepts as `MODEL_NAME`."""
    if not MODEL_NAME_PATTERN.match(model_name or ""):
        raise ValueError(f"model name {model_name!r}: use letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return model_name


def read_export_info(version_dir: str) -> dict:
    """The `export.json` written beside a SavedModel by `ssagan_tf.export.write_export`."""
    path = os.path.join(version_dir, EXPORT_INFO_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; {version_dir} is not a version written by ssagan_tf.export")
    with open(path) as f:
        info = json.load(f)
    if info.get("format_version") != EXPORT_FORMAT_VERSION:
        raise ValueError(f"{path}: export format {info.get('format_version')!r}, this code reads "
                         f"{EXPORT_FORMAT_VERSION}")
    return info


def version_numbers(model_base_dir: str) -> list:
    """The integer version directories under `<export_dir>/<model_name>`, ascending."""
    if not os.path.isdir(model_base_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_base_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(model_base_dir, name)))


def latest_version_dir(model_base_dir: str) -> str:
    """The newest version directory holding a SavedModel, the one TF Serving serves."""
    complete = [v for v in version_numbers(model_base_dir)
                if os.path.isfile(os.path.join(model_base_dir, str(v), SAVED_MODEL_FILE))]
    if not complete:
        raise FileNotFoundError(
            f"{model_base_dir}: neither a SavedModel nor a TF Serving model directory "
            f"(<model_name>/<version>/{SAVED_MODEL_FILE}); is it the output of `python -m ssagan_tf.export`?")
    return os.path.join(model_base_dir, str(complete[-1]))


def saved_model_dir(path: str) -> str:
    """`path` itself when it holds a SavedModel, else its newest version directory."""
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such exported model directory")
    return latest_version_dir(path)


def commit_version(staging: str, base: str) -> str:
    """Rename `staging` to the next free integer version: one above the highest version folder,
    stepping over any other entry of that name (a stray file `2`, say). `os.rename` of a folder
    fails when the target exists and is not empty, so two exports racing for one number cannot
    overwrite each other: the loser takes the next number."""
    durable.fsync_tree(staging)          # a power cut after the rename must not leave empty files
    number, skipped = max(version_numbers(base), default=0) + 1, []
    for _ in range(100):
        target = os.path.join(base, str(number))
        if os.path.lexists(target):
            if not os.path.isdir(target):
                skipped.append(target)
        else:
            try:
                os.rename(staging, target)
                durable.fsync_dir(base)
                return target
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise ExportError(f"{base}: cannot rename the verified export to {target}: {err.strerror}") \
                        from err
        number = max(number + 1, max(version_numbers(base), default=0) + 1)
    raise ExportError(f"{base}: could not claim a new version folder (up to {number - 1} taken"
                      + (f"; not version folders: {', '.join(skipped[:3])}" if skipped else "") + ")")


def remove_stale_staging(base: str) -> list:
    """Remove the staging folders that killed exports left in `base`, recognised by the lock file
    inside (`.export.lock`, naming the writer's host and pid), never by their name: those whose
    lock names this machine and no live process holds (`locking.is_stale`). A folder without that
    lock file (a user's, or an older version's), or one another machine writes on a shared file
    system, is left alone. Returns the paths removed."""
    removed = []
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if not name.startswith(STAGING_PREFIX) or os.path.islink(path) or not os.path.isdir(path):
            continue
        if is_stale(os.path.join(path, STAGING_LOCK)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
