"""The outer training loop (docs/training.md): preflight, strategy, the training state
(`state.TrainingState`), resume, and the step loop: each step in the phase the schedule
(`schedule.Schedule`) gives it, then the periodic actions that are due (`actions`: log, images,
validation, checkpoint); at the end, the caller's `finish` (the entry point passes the export of
`--export_dir`, `ssagan_tf.export.export_after_training`: training itself never imports export).

Epochs are counted in global batches over the longer training domain. The learning-rate
schedule spans all `epochs`; `max_steps` only stops early, so a run stopped by it and resumed
follows the same schedule as one that was never stopped. On resume the data stream is
recreated from the seed and advanced by the steps already taken, so a resumed run sees exactly
the batches an uninterrupted one would have seen (random flips are keyed on each element's
position in the stream); `deterministic` adds TF op determinism for bitwise repeats.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from ssagan_tf.data import combined, integrity, pipeline
from ssagan_tf import run_dir
from ssagan_tf.locking import DirectoryLock
from ssagan_tf.models import ModelConfig, build_models
from ssagan_tf.training import averaging, checkpoints, resume, selection, summaries
from ssagan_tf.training.actions import (AnnounceFreeze, LogProgress, NonFiniteLossError, SaveCheckpoint, Throughput,
                                       WriteImages)
from ssagan_tf.training.config import ConfigError, RunConfig, labelled_tumors, load_config_dict, save_config
from ssagan_tf.training.interrupt import StopRequests
from ssagan_tf.training.schedule import Schedule
from ssagan_tf.training.state import TrainingState
from ssagan_tf.training.step import TrainStep
from ssagan_tf.training.validation import Validation
from ssagan_tf.training.strategy import cleanup_write_dir, is_chief, is_chief_process, make_strategy, write_dir

@dataclass
class TrainResult:
    step: int
    epoch: int
    total_steps: int
    resumed_from: int | None
    losses: dict = field(default_factory=dict)
    val_dice: dict = field(default_factory=dict)   # epoch -> Dice of the thresholded tumor attention
    val_normal_attention: dict = field(default_factory=dict)   # epoch -> validation_normal_attention stats
    val_judge: dict = field(default_factory=dict)   # epoch -> validation.judge_measures
    val_fill: dict = field(default_factory=dict)    # epoch -> validation.healthy_fill_measures (lesion levers)
    checkpoint: str | None = None
    chief: bool = True                             # whether this process wrote the run directory
    export: str | None = None                      # what `train`'s `finish` returned (the export's version dir)


def missing_masks_warning(config: RunConfig, manifest, extras=()) -> str | None:
    """A warning when the model's mask loss has no mask to learn from: the converter records the
    training patients whose tumor masks are kept (`labelled_train_patients`); with none, the
    loss is 0 on every step and ssa_cyclegan trains as specatte_cyclegan. An extra dataset
    whose train split has tumor slices with masks gives the loss masks too."""
    labelled = manifest.raw.get("labelled_train_patients")
    if not config.model.mask_loss or labelled is None or labelled:
        return None
    if labelled_tumors(extras):
        return None
    return (f"WARNING: --system={config.model.system} but {config.data_dir} has no tumor masks in its train split "
            "(no labelled training patient), so the semi-supervised mask loss is 0 on every step and this trains as "
            "specatte_cyclegan. Convert again with masks (--labelled_fraction above 0, without --no_masks), or "
            "train --system=specatte_cyclegan to say so.")


def data_line(config: RunConfig, manifest, extras=()) -> str:
    """The console's account of the training data: the main dataset alone, as it always was; with
    extra datasets, each with the train slices it adds, and the totals."""
    if not extras:
        return config.data_dir
    adds = " ".join(f"+ {m.data_dir} ({m.count('train', 'normal')} normal, {m.count('train', 'tumor')} tumor)"
                    for m in extras)
    counts = combined.combined_counts([manifest, *extras])
    return (f"{config.data_dir} ({manifest.count('train', 'normal')} normal, {manifest.count('train', 'tumor')} "
            f"tumor train slices; validated on) {adds} = {counts['normal']} normal, {counts['tumor']} tumor "
            "train slices")


def _prepare_model_dir(config: RunConfig, chief: bool, data_checksum: str, log):
    """Start over (--fresh), start a new run, or resume from the newest intact checkpoint with
    the saved settings (`resume`); returns the checkpoint to resume from, or None."""
    if config.fresh:
        if chief:
            resume.start_fresh(config.model_dir, log)
        return None
    latest = run_dir.newest_intact_checkpoint(config.model_dir, log)
    if latest is None:
        if os.path.exists(run_dir.config_path(config.model_dir)):
            load_config_dict(config.model_dir)      # a new run replaces only a config.json of ours
        return None
    resume.check_resume(config, data_checksum, log)
    if chief:
        checkpoints.record_resume_point(config.model_dir, latest)
    return latest


def _dataset(config: RunConfig, datasets: list, skip: int):
    # Always a deterministic element order: resuming replays the stream from the seed and skips
    # the batches already seen, and reading is far faster than training, so order costs nothing.
    main, *extras = datasets
    ds = pipeline.make_unpaired_dataset(main, "train", global_batch_size=config.batch_size, shuffle=True,
                                        flip=config.flip, seed=config.seed, deterministic=True, repeat=True,
                                        extras=extras)
    options = tf.data.Options()
    # Shard by element: a small dataset may have fewer shard files than there are workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.skip(skip).with_options(options)


def train(config: RunConfig, stream=None, finish=None, opened=()) -> TrainResult:
    """Train (or resume) the run described by `config`; see the module docstring. `finish(config,
    result, log)`, when given, runs once training is done and the run directory's lock released
    (e.g. the export of `config.export_dir`); its return value is the result's `export`.
    `opened`: the run's datasets as the caller opened them (`training.config.open_dataset`), if it did."""
    stream = stream or sys.stdout

    def log(message):
        print(message, file=stream, flush=True)

    log(f"Precision {config.model.precision}"
        + (f" ({config.precision_reason})" if config.precision_reason else ""))
    # The run's datasets, each opened once (here or by the caller) and handed to all that reads it.
    datasets = config.check_inputs(opened)
    manifests = [dataset.manifest for dataset in datasets]
    for one in manifests:
        for warning in config.data_warnings(one):
            log(warning)
    if config.fresh:
        resume.check_fresh(config.model_dir)        # before the lock: a refused folder is left as it was
    schedule = Schedule.for_run(config, manifests)
    # One trainer per run directory: two would write checkpoints under the same names. Only the
    # process that writes model_dir locks it (multi-worker peers save into temporary folders).
    lock = (DirectoryLock(config.model_dir, run_dir.LOCK_NAME, "a training run", "--model_dir")
            if is_chief_process(config.strategy) else contextlib.nullcontext())
    with lock:
        result = _train(config, datasets, schedule, log, stream)
    if finish is not None:
        result.export = finish(config, result, log)
    return result


def _train(config: RunConfig, datasets: list, schedule: Schedule, log, stream) -> TrainResult:
    manifest, *extras = (dataset.manifest for dataset in datasets)
    for warning in (missing_masks_warning(config, manifest, extras),
                    *(integrity.legacy_warning(m) for m in (manifest, *extras))):
        if warning:
            log(warning)
    # The strategy comes first: multi_worker must configure collectives (and cpu_replicas the
    # devices) before TensorFlow runs anything.
    strategy = make_strategy(config.strategy, config.cpu_replicas)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {replicas} replicas")
    chief = is_chief(strategy)
    data_checksum = combined.combined_checksum([manifest, *extras])
    resume_from = _prepare_model_dir(config, chief, data_checksum, log)
    out_dir = write_dir(config.model_dir, strategy)

    state = TrainingState.build(config, strategy, schedule)
    ckpt = state.checkpoint()
    manager = tf.train.CheckpointManager(ckpt, run_dir.checkpoint_dir(out_dir), max_to_keep=config.keep_checkpoints)
    resumed = None
    if resume_from:
        _restore(ckpt, state, resume_from, log)
        resumed = int(state.step.numpy())
        log(f"Resuming from step {resumed} (epoch {int(state.epoch.numpy())}) of {resume_from}")

    def record_config():
        save_config(config, config.model_dir, data_checksum)

    # A new run records its config before writing anything else (so --fresh can tell the folder
    # for a run); a resume only once it has taken a step, so one that fails changes nothing.
    if chief and not resume_from:
        record_config()
    # New checkpoints are numbered above every existing one (an unreadable newer one skipped on
    # resume is neither overwritten nor mistaken for the latest); normally the number is the step.
    number_offset = max(0, run_dir.highest_checkpoint_number(config.model_dir) - int(state.step.numpy()))
    total_steps, stop_step = schedule.total_steps, schedule.stop_step
    log(f"Training {config.model.system} on {data_line(config, manifest, extras)}: {replicas} replica(s) "
        f"({config.strategy}), "
        f"global batch {config.batch_size}, {schedule.steps_per_epoch} steps/epoch, {total_steps} steps in all"
        + (f", stopping at step {stop_step}" if stop_step < total_steps else ""))
    log(f"Checkpoints in {run_dir.checkpoint_dir(config.model_dir)}; TensorBoard: "
        f"tensorboard --logdir {run_dir.logs_dir(config.model_dir)}")

    result = TrainResult(step=int(state.step.numpy()), epoch=int(state.epoch.numpy()), total_steps=total_steps,
                         resumed_from=resumed, chief=chief)
    try:
        _run(config, datasets, schedule, strategy, chief, state, manager, result, log, stream,
             record_config if chief and resume_from else None, number_offset)
    finally:
        cleanup_write_dir(out_dir, config.model_dir)
    return result


def _restore(ckpt, state: TrainingState, path: str, log):
    try:
        checkpoints.check_format(path, need_discriminators=True, need_pools=True)
    except checkpoints.IncompatibleCheckpointError as err:
        raise ConfigError(str(err)) from err
    saved_pools = sum(1 for name, _ in tf.train.list_variables(path)
                      if name.startswith("pools_tumor/") and "/images/" in name)
    status = ckpt.restore(path)
    saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    # Levers added to a run saved without them: the average starts from the restored weights, the
    # warm-up's end from the fixed schedule.
    added = [name for name, part in ((averaging.CHECKPOINT_KEY, state.average),
                                     ("attention_end_epoch", state.warmup_end)) if part is not None and name not in saved]
    if averaging.CHECKPOINT_KEY in added:
        state.average.reset()
        log("Note: the checkpoint holds no weight average; --ema_decay starts one from its weights")
    if "attention_end_epoch" in added:
        log("Note: the checkpoint has no warm-up end; --warmup_patience starts from the fixed schedule")
    if saved_pools == len(state.pools_tumor):
        if added:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()
    else:
        # Resuming on another number of replicas: pools are per replica, so the extra ones
        # start empty (or the surplus saved ones are dropped); everything else must match.
        status.expect_partial()
        log(f"Note: the checkpoint has image pools for {saved_pools} replica(s), this run has {len(state.pools_tumor)}")


def _run(config, datasets, schedule, strategy, chief, state, manager, result, log, stream, record_config,
         number_offset):
    # Ctrl-C and SIGTERM stop the loop between steps, after a checkpoint of the last finished one
    # (multi-worker saves are collective: there they stop at once, without saving).
    with StopRequests(enabled=config.strategy != "multi_worker") as stop:
        _loop(config, datasets, schedule, strategy, chief, state, manager, result, log, stream, record_config,
              number_offset, stop)


def _loop(config, datasets, schedule, strategy, chief, state, manager, result, log, stream, record_config,
          number_offset, stop):
    main = datasets[0]          # the one validated, judged and selected on
    board = summaries.Summaries(run_dir.logs_dir(config.model_dir) if chief else None)
    train_step = TrainStep(strategy, state, config)
    start = int(state.step.numpy())
    iterator = iter(strategy.experimental_distribute_dataset(_dataset(config, datasets, skip=start)))
    throughput = Throughput()
    actions = [LogProgress(config, schedule, state, board, throughput, stream)]
    validation = None
    if chief:
        with pipeline.shard_errors_named(main):
            grid_inputs = summaries.sample_batch(main)
        # With --ema_decay, validation and the samples show the averaged generators and the raw
        # attention networks (what export uses).
        shown = state.models if state.average is None else build_models(config.model)
        validation = Validation(config, main, schedule, shown, board, result, log)
        shown_actions = [WriteImages(config, schedule, shown, board, grid_inputs), validation]
        if state.average is not None:
            shown_actions.insert(0, averaging.ShowAverage(state.average, state.models, shown, shown_actions))
        actions += shown_actions + [AnnounceFreeze(schedule, log)]
        board.run_settings(start, config, fresh=start == 0)
        if config.select_best or config.warmup_patience:
            actions.append(selection.RecordValidation(config, main, schedule, result, log))
    saver = SaveCheckpoint(config, schedule, state, manager, start, number_offset)
    actions.append(saver)
    if chief and config.select_best:
        actions.append(selection.KeepBest(config, schedule, run_dir.checkpoint_dir(config.model_dir), log,
                                          number_offset))

    if validation is not None and start == 0:
        validation(0)                                # the untrained baseline
    current = start
    while current < schedule.stop_step:
        if stop.requested:
            _stop(stop, saver, current, log)
        phase = schedule.phase(current)
        began = time.perf_counter()
        with pipeline.shard_errors_named(datasets):    # a bad shard: one error naming it
            batch = next(iterator)
        values = {k: float(v) for k, v in train_step(batch, phase).items()}
        throughput.add(time.perf_counter() - began)
        current += 1
        bad = sorted(k for k, v in values.items() if not np.isfinite(v))
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss at step {current}: " + ", ".join(f"{k}={values[k]}" for k in bad)
                + f". Training stopped; the last good checkpoint ({manager.latest_checkpoint or 'none'}) is intact. "
                "Try a lower --learning_rate, or --precision=fp32.")
        result.losses = values
        if record_config is not None:
            record_config()
            record_config = None
        if schedule.ends_epoch(current):
            state.epoch.assign(schedule.epoch_of(current))
        for action in actions:
            if action.due(current):
                action(current, values)
        board.flush()
    board.close()
    if stop.requested:
        _stop(stop, saver, current, log)
    result.step, result.epoch = current, int(state.epoch.numpy())
    if chief:
        result.checkpoint = run_dir.latest_checkpoint(config.model_dir)
        log(f"Done at step {current}; checkpoint {result.checkpoint}")
    else:
        log(f"Done at step {current} (this worker's checkpoints were temporary; the chief keeps them)")


def _stop(stop, saver: SaveCheckpoint, step: int, log):
    """End the loop after `step` for the signal received: save it (unless saved already, or not
    finite), say so, and raise KeyboardInterrupt (the command line's "interrupted", exit 130)."""
    if saver.last_saved != step:
        try:
            saver(step, {})
        except NonFiniteLossError as err:
            log(f"{stop.requested} after step {step}; not saved: {err}")
            raise KeyboardInterrupt(stop.requested) from err
    log(f"{stop.requested} after step {step}: checkpoint {saver.manager.latest_checkpoint} holds it; run the same "
        "command again to resume")
    raise KeyboardInterrupt(stop.requested)
