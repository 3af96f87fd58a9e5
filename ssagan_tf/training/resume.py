"""What a run directory allows before training touches it: resume (from its newest intact
checkpoint, with the settings it was trained with), start over (`--fresh`, deleting only what
training wrote), or refuse.

A resume is explicit. Every setting that changes what a step computes (`config.RESUME_GUARDED`:
the seed, the schedule, the batch, tau, the loss weights, the precision, ... and the data, by
`combined.combined_checksum`: every dataset of `--data_dir`, so adding or dropping an extra
dataset is a change of the data) must equal the saved run's, or be named in `allow_changes`; the
others (`config.FREE_ON_RESUME`) may change freely. The model's shape never may: the checkpoint
would not load into other networks.
"""

from __future__ import annotations

import os
import re
import shutil

from ssagan_tf import io as durable
from ssagan_tf import run_dir
from ssagan_tf.models import ModelConfig
from ssagan_tf.run_dir import CONFIG_NAME
from ssagan_tf.training.config import (DATA_CHECKSUM_KEY, RESUME_GUARDED, ConfigError, RunConfig,
                                       load_config_dict)

# What training writes in its run directory, by folder: only such entries are deleted by --fresh.
# A file written whole may have left its temporary (ssagan_tf.io), or one of the versions before it
# (`.tmp` appended; samples: `step_<N>.tmp-<pid>.png`).
_TEMPORARY = rf"(\.tmp|{durable.TEMPORARY_MARK})?"
WRITTEN = {
    run_dir.CHECKPOINT_SUBDIR: re.compile(r"^(checkpoint|checkpoint\.tmp[0-9a-f]*|ckpt-\d+(\.index|\.data-\d+-of-\d+)"
                                              r"|ckpt-\d+_temp)$"),
    run_dir.LOGS_SUBDIR: re.compile(r"^events\.out\.tfevents\.\d+\..+$"),
    run_dir.SAMPLES_SUBDIR: re.compile(rf"^step_\d{{8}}(\.png({durable.TEMPORARY_MARK}\.png)?|\.tmp-\d+\.png)$"),
    # --select_best: the scores and the kept copy of the best checkpoint (training.selection)
    run_dir.SELECTION_SUBDIR: re.compile(rf"^(scores\.json|ckpt-\d+(\.index|\.data-\d+-of-\d+)){_TEMPORARY}$"),
}
WRITTEN_FILES = re.compile(rf"^{re.escape(CONFIG_NAME)}{_TEMPORARY}$")


def check_fresh(model_dir: str) -> None:
    """Refuse `--fresh` (ConfigError) for a folder not proven to be a training run: its config.json
    is not a run's, or it holds `checkpoints/`, `logs/` or `samples/` content without one. Reads
    only; run before the run directory is locked (so a refused folder gets no lock file)."""
    if not os.path.isdir(model_dir):
        return
    config_path = run_dir.config_path(model_dir)
    if os.path.exists(config_path):
        try:
            load_config_dict(model_dir)
        except (OSError, ValueError) as err:
            raise ConfigError(f"--fresh refused, nothing was deleted: {err}. Choose another --model_dir, or clear "
                              "this one yourself") from err
    else:
        occupied = [sub for sub in WRITTEN if os.path.isdir(os.path.join(model_dir, sub))
                    and os.listdir(os.path.join(model_dir, sub))]
        if occupied:
            raise ConfigError(f"--fresh refused, nothing was deleted: {model_dir} holds {', '.join(occupied)}/ but no "
                              f"{CONFIG_NAME}, so it is not a training run of run_train.py. Choose another "
                              "--model_dir, or clear this one yourself")


def start_fresh(model_dir: str, log) -> None:
    """`--fresh`: delete what training wrote in `model_dir` (its config.json, checkpoints, event
    files and sample grids: `WRITTEN`) and nothing else, once `check_fresh` allows it."""
    check_fresh(model_dir)
    if not os.path.isdir(model_dir):
        return
    removed, kept = 0, []
    for sub, pattern in WRITTEN.items():
        folder = os.path.join(model_dir, sub)
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not pattern.match(name) or os.path.islink(path):
                kept.append(os.path.join(sub, name))
            elif os.path.isdir(path):
                shutil.rmtree(path)
                removed += 1
            else:
                os.remove(path)
                removed += 1
        if not os.listdir(folder):
            os.rmdir(folder)
    for name in sorted(os.listdir(model_dir)):
        if WRITTEN_FILES.match(name) and os.path.isfile(os.path.join(model_dir, name)):
            os.remove(os.path.join(model_dir, name))
            removed += 1
    if removed:
        log(f"--fresh: removed the previous run's config, checkpoints, logs and samples in {model_dir}"
            + (f"; kept {len(kept)} file(s) training did not write: {', '.join(kept[:5])}" if kept else ""))


def check_resume(config: RunConfig, data_checksum: str, log) -> None:
    """Refuse to resume the run saved in `config.model_dir` with `config` when a setting that
    changes the result differs (unless `config.allow_changes` names it) or the model's shape
    does; name the allowed changes through `log`."""
    saved_values = load_config_dict(config.model_dir)
    saved = RunConfig.from_dict(saved_values)
    path = run_dir.config_path(config.model_dir)
    if (saved.model.precision == "fp16") != (config.model.precision == "fp16"):
        raise ConfigError(f"{config.model_dir} holds a run trained in {saved.model.precision}, this one is "
                          f"{config.model.precision}: fp16 runs keep loss-scaled optimizers that other precisions do "
                          f"not have; resume with --precision={saved.model.precision}, or use --fresh")
    shape_saved, shape_now = architecture(saved.model), architecture(config.model)
    if shape_saved != shape_now:
        changes = ", ".join(f"{k} {shape_saved[k]!r} there, {shape_now[k]!r} now"
                            for k in sorted(shape_saved) if shape_saved[k] != shape_now[k])
        raise ConfigError(f"{config.model_dir} holds a run of another model ({changes}); "
                          "use --fresh to start over there, or another --model_dir")
    changes = setting_changes(saved, saved_values.get(DATA_CHECKSUM_KEY), config, data_checksum)
    refused = [change for change in changes if change[0] not in config.allow_changes]
    if refused:
        raise ConfigError(
            f"{config.model_dir} holds a run trained with other settings ({path}): "
            + "; ".join(f"{name} {before} there, {now} now" for name, before, now in refused)
            + ". Resume with the saved settings, name the changes you mean in --allow_changes="
            + ",".join(name for name, _, _ in refused) + ", or use --fresh (or another --model_dir) to start over")
    if changes:
        log("Resuming with changed settings (--allow_changes): "
            + "; ".join(f"{name} {before} -> {now}" for name, before, now in changes))
    if DATA_CHECKSUM_KEY not in saved_values:
        log(f"Note: {path} records no data checksum (written by an older version), so the data cannot be compared "
            "with the saved run's; this run records it")


def setting_changes(saved: RunConfig, saved_checksum: str | None, config: RunConfig, data_checksum: str) -> list:
    """(name, saved value, value now) of every `RESUME_GUARDED` setting that differs."""
    changes = []
    for name in RESUME_GUARDED:
        if name == "data":
            if saved_checksum and saved_checksum != data_checksum:
                changes.append(("data", f"{saved_checksum[:19]}... ({', '.join(saved.data_dirs)})",
                                f"{data_checksum[:19]}... ({', '.join(config.data_dirs)}; another conversion"
                                + (", or other datasets?)" if saved.data_dirs != config.data_dirs else "?)")))
            continue
        before, now = ((saved.model.precision, config.model.precision) if name == "precision"
                       else (getattr(saved, name), getattr(config, name)))
        if before != now:
            changes.append((name, repr(before), repr(now)))
    return changes


def architecture(model: ModelConfig) -> dict:
    """What must match to resume: the model config, with attention_ngf resolved (0 and the value of
    ngf build the same networks; runs saved before the field existed read as 0) and without
    the precision (variables are float32 in every precision); d_local counts only where it builds
    local discriminators (systems with attention; runs saved before it existed read as 0)."""
    values = model.to_dict()
    values["attention_ngf"] = model.attention_filters if model.use_attention else 0
    values["d_local"] = model.d_local if model.local_discriminators else 0
    values.pop("precision")
    return values
