"""The outer training loop (DESIGN.md section 5): strategy, models and optimizers, resume,
the step loop, checkpoints, summaries, samples and validation Dice.

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
import shutil
import sys
import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from ssagan_tf.data import integrity, pipeline, schema
from ssagan_tf.locking import DirectoryLock
from ssagan_tf.models import ModelConfig, build_models, translate
from ssagan_tf.training import checkpoints, summaries
from ssagan_tf.training.config import ConfigError, RunConfig, load_config_dict, save_config
from ssagan_tf.training.pool import make_pools
from ssagan_tf.training.step import TrainStep, make_optimizers
from ssagan_tf.training.strategy import cleanup_write_dir, is_chief, is_chief_process, make_strategy, write_dir

OWNED_SUBDIRS = ("checkpoints", "logs", "samples")
LOCK_NAME = "train.lock"          # in model_dir; held while a trainer runs (ssagan_tf.locking)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the last checkpoint (from before) is left as it was."""


@dataclass
class TrainResult:
    step: int
    epoch: int
    total_steps: int
    resumed_from: int | None
    losses: dict = field(default_factory=dict)
    val_dice: dict = field(default_factory=dict)   # epoch -> Dice of the thresholded tumor attention
    val_normal_attention: dict = field(default_factory=dict)   # epoch -> validation_normal_attention stats
    val_judge: dict = field(default_factory=dict)   # epoch -> summaries.judge_measures
    checkpoint: str | None = None
    chief: bool = True                             # whether this process wrote the run directory


def plan(config: RunConfig, manifest) -> tuple:
    """(steps_per_epoch, total_steps, stop_step) of a run over `manifest`."""
    longest = max(manifest.count("train", d) for d in schema.DOMAINS)
    steps_per_epoch = longest // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"batch_size {config.batch_size} is larger than the training set "
                         f"({longest} slices in the longer domain)")
    total = config.epochs * steps_per_epoch
    return steps_per_epoch, total, min(total, config.max_steps) if config.max_steps else total


def check_data(config: RunConfig):
    """Fail before any work when the data and the model disagree."""
    manifest = schema.read_manifest(config.data_dir)
    m = config.model
    if (manifest.image_size, manifest.channels) != (m.image_size, m.channels):
        raise ConfigError(f"{config.data_dir}: data are {manifest.image_size}^2 x {manifest.channels} channels but the "
                         f"model is configured for {m.image_size}^2 x {m.channels}")
    for domain in schema.DOMAINS:
        if manifest.count("train", domain) == 0:
            raise ConfigError(f"{config.data_dir}: the train split has no {domain} slices")
    # Shards present, none extra, sizes as recorded; record counts are checked on the first pass.
    for split in ("train", "val"):
        for domain in schema.DOMAINS:
            integrity.check_shards(manifest, split, domain)
    if config.judge_dir:
        from ssagan_tf.evaluation.judge import check_judge_for

        try:
            check_judge_for(config.judge_dir, m.image_size, m.channels)
        except ValueError as err:
            raise ConfigError(f"--judge_dir: {err}")
    return manifest


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


def missing_masks_warning(config: RunConfig, manifest) -> str | None:
    """A warning when the model's mask loss has no mask to learn from: the converter records the
    training patients whose tumor masks are kept (`labelled_train_patients`); with none, the
    loss is 0 on every step and ssa_cyclegan trains as specatte_cyclegan."""
    labelled = manifest.raw.get("labelled_train_patients")
    if not config.model.mask_loss or labelled is None or labelled:
        return None
    return (f"WARNING: --model={config.model.system} but {config.data_dir} has no tumor masks in its train split "
            "(no labelled training patient), so the semi-supervised mask loss is 0 on every step and this trains as "
            "specatte_cyclegan. Convert again with masks (--labelled_fraction above 0, without --no_masks), or "
            "train --model=specatte_cyclegan to say so.")


def _prepare_model_dir(config: RunConfig, chief: bool, log):
    """Resume, start fresh, or refuse when model_dir holds a run of another architecture."""
    latest = checkpoints.latest_checkpoint(config.model_dir)
    if config.fresh:
        if chief:
            for sub in OWNED_SUBDIRS:
                shutil.rmtree(os.path.join(config.model_dir, sub), ignore_errors=True)
            if latest:
                log(f"--fresh: removed the previous run's checkpoints, logs and samples in {config.model_dir}")
        return None
    if latest is None:
        return None
    saved_model = ModelConfig.from_dict(load_config_dict(config.model_dir)["model"])
    if (saved_model.precision == "fp16") != (config.precision == "fp16"):
        raise ConfigError(f"{config.model_dir} holds a run trained in {saved_model.precision}, this one is "
                          f"{config.precision}: fp16 runs keep loss-scaled optimizers that other precisions do not "
                          f"have; resume with --precision={saved_model.precision}, or use --fresh")
    saved = _architecture(saved_model)
    wanted = _architecture(config.model)
    if saved != wanted:
        changes = ", ".join(f"{k} {saved[k]!r} there, {wanted[k]!r} now"
                            for k in sorted(saved) if saved[k] != wanted[k])
        raise ConfigError(f"{config.model_dir} holds a run of another model ({changes}); "
                         "use --fresh to start over there, or another --model_dir")
    return latest


def _architecture(model: ModelConfig) -> dict:
    """What must match to resume: the model config, with attention_ngf resolved (0 and the value of
    ngf build the same networks; runs saved before the field existed read as 0) and without
    the precision (variables are float32 in every precision; `resolve_precision` decides which
    changes a resume allows)."""
    values = model.to_dict()
    values["attention_ngf"] = model.attention_filters if model.use_attention else 0
    values.pop("precision")
    return values


def _dataset(config: RunConfig, skip: int):
    # Always a deterministic element order: resuming replays the stream from the seed and skips
    # the batches already seen, and reading is far faster than training, so order costs nothing.
    ds = pipeline.make_unpaired_dataset(config.data_dir, "train", global_batch_size=config.batch_size, shuffle=True,
                                        flip=config.flip, seed=config.seed, deterministic=True, repeat=True)
    options = tf.data.Options()
    # Shard by element: a small dataset may have fewer shard files than there are workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.skip(skip).with_options(options)


def train(config: RunConfig, stream=None) -> TrainResult:
    """Train (or resume) the run described by `config`; see the module docstring."""
    stream = stream or sys.stdout

    def log(message):
        print(message, file=stream, flush=True)

    config.validate()
    log(f"Precision {config.precision}" + (f" ({config.precision_reason})" if config.precision_reason else ""))
    manifest = check_data(config)
    # One trainer per run directory: two would write checkpoints under the same names. Only the
    # process that writes model_dir locks it (multi-worker peers save into temporary folders).
    lock = (DirectoryLock(config.model_dir, LOCK_NAME, "a training run", "--model_dir")
            if is_chief_process(config.strategy) else contextlib.nullcontext())
    with lock:
        return _train(config, manifest, log, stream)


def _train(config: RunConfig, manifest, log, stream) -> TrainResult:
    for warning in (missing_masks_warning(config, manifest), integrity.legacy_warning(manifest)):
        if warning:
            log(warning)
    steps_per_epoch, total_steps, stop_step = plan(config, manifest)
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
    resume_from = _prepare_model_dir(config, chief, log)
    out_dir = write_dir(config.model_dir, strategy)

    with strategy.scope():
        models = build_models(config.model)
        gen_opt, disc_opt = make_optimizers(config, total_steps)
        # Built before the first step: under MirroredStrategy, slot variables cannot be created
        # inside strategy.run.
        gen_opt.build(models.generator_variables + models.attention_variables)
        disc_opt.build(models.discriminator_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    shape = (config.model.image_size, config.model.image_size, config.model.channels)
    pools_tumor = make_pools(strategy, config.pool_size, shape, config.seed, "pool_tumor")
    pools_normal = make_pools(strategy, config.pool_size, shape, config.seed + 1, "pool_normal")
    ckpt = checkpoints.training_checkpoint(models, gen_opt, disc_opt, step, epoch, pools_tumor, pools_normal)
    manager = tf.train.CheckpointManager(ckpt, checkpoints.checkpoint_dir(out_dir), max_to_keep=config.keep_checkpoints)
    resumed = None
    if resume_from:
        try:
            checkpoints.check_format(resume_from, need_discriminators=True, need_pools=True)
        except checkpoints.IncompatibleCheckpointError as err:
            raise ConfigError(str(err)) from err
        saved_pools = sum(1 for name, _ in tf.train.list_variables(resume_from)
                          if name.startswith("pools_tumor/") and "/images/" in name)
        status = ckpt.restore(resume_from)
        if saved_pools == len(pools_tumor):
            status.assert_existing_objects_matched()
        else:
            # Resuming on another number of replicas: pools are per replica, so the extra ones
            # start empty (or the surplus saved ones are dropped); everything else must match.
            status.expect_partial()
            log(f"Note: the checkpoint has image pools for {saved_pools} replica(s), this run has {len(pools_tumor)}")
        resumed = int(step.numpy())
        log(f"Resuming from step {resumed} (epoch {int(epoch.numpy())}) of {resume_from}")
    if chief:
        save_config(config, config.model_dir)
    log(f"Training {config.model.system} on {config.data_dir}: {replicas} replica(s) ({config.strategy}), "
        f"global batch {config.batch_size}, {steps_per_epoch} steps/epoch, {total_steps} steps in all"
        + (f", stopping at step {stop_step}" if stop_step < total_steps else ""))
    log(f"Checkpoints in {checkpoints.checkpoint_dir(config.model_dir)}; TensorBoard: "
        f"tensorboard --logdir {os.path.join(config.model_dir, 'logs')}")

    result = TrainResult(step=int(step.numpy()), epoch=int(epoch.numpy()), total_steps=total_steps, resumed_from=resumed,
                         chief=chief)
    try:
        _run(config, strategy, chief, models, gen_opt, disc_opt, step, epoch, pools_tumor, pools_normal,
             manager, steps_per_epoch, total_steps, stop_step, result, log, stream)
    finally:
        cleanup_write_dir(out_dir, config.model_dir)
    return result


def _run(config, strategy, chief, models, gen_opt, disc_opt, step, epoch, pools_tumor, pools_normal, manager,
         steps_per_epoch, total_steps, stop_step, result, log, stream):
    log_dir = os.path.join(config.model_dir, "logs") if chief else None
    board = summaries.Summaries(log_dir)
    progress = summaries.ProgressLine(stop_step, steps_per_epoch, stream)
    train_step = TrainStep(strategy, models, config, gen_opt, disc_opt, pools_tumor, pools_normal, step)
    start = int(step.numpy())
    iterator = iter(strategy.experimental_distribute_dataset(_dataset(config, skip=start)))
    with pipeline.shard_errors_named(config.data_dir):
        grid_inputs = summaries.sample_batch(config.data_dir) if chief else None
    attention_fn = (tf.function(lambda x: models.attention_tumor(x, training=False), reduce_retracing=True)
                    if models.attention_tumor is not None else None)
    normal_fn = (tf.function(lambda x: translate(models.normal_to_tumor, models.attention_normal, x, training=False),
                             reduce_retracing=True) if models.attention_normal is not None else None)
    slices_per_step = 2 * config.batch_size          # one normal and one tumor slice per example
    size, channels = config.model.image_size, config.model.channels
    probe = tf.constant(np.random.default_rng(0).uniform(-1, 1, (1, size, size, channels)), tf.float32)

    warned = []
    judge = val_arrays = None
    if chief and config.judge_dir:
        from ssagan_tf.evaluation.judge import Judge

        judge, val_arrays = Judge(config.judge_dir), pipeline.load_split_arrays(config.data_dir, "val")
        log(f"Judge {config.judge_dir} (its test AUC {judge.test_auc:.3f}) scores the validation translations "
            "each epoch")

    def record_dice(at_step: int, at_epoch: int):
        with pipeline.shard_errors_named(config.data_dir):
            _record_dice(at_step, at_epoch)

    def _record_dice(at_step: int, at_epoch: int):
        stats = summaries.validation_attention(attention_fn, config.data_dir, config.tau)
        if stats is not None:
            result.val_dice[at_epoch] = stats["dice"]
            board.scalars(at_step, {f"attention_tumor_{k}": v for k, v in stats.items()}, prefix="val/")
            log(f"epoch {at_epoch}: validation Dice of A_t >= {config.tau} vs mask = {stats['dice']:.4f} "
                f"({100 * stats['attended']:.1f}% of pixels attended)")
        normal = summaries.validation_normal_attention(normal_fn, config.data_dir, config.tau)
        if normal is not None:
            result.val_normal_attention[at_epoch] = normal
            board.scalars(at_step, {f"attention_normal_{k}": v for k, v in normal.items()}, prefix="val/")
            log(f"epoch {at_epoch}: validation normal->tumor: mean A_n {normal['mean']:.4f} (max {normal['max']:.3f}, "
                f"{100 * normal['attended']:.1f}% of pixels >= tau), mean |change| {normal['change']:.4f}")
        if judge is not None:
            measures = summaries.judge_measures(judge, models, val_arrays, tau=config.tau)
            if measures:
                result.val_judge[at_epoch] = measures
                board.scalars(at_step, summaries.judge_scalars(measures), prefix="val/")
                for line in summaries.describe_judge(measures):
                    log(f"epoch {at_epoch}: {line}")
        if stats is not None:
            # Warn once while the attention trains, and again if it is still failing when it freezes.
            frozen = at_epoch == config.attention_epochs
            if at_epoch >= 1 and summaries.attention_failing(stats) and (frozen or not warned):
                warned.append(at_epoch)
                log(summaries.collapse_warning(config, stats, at_epoch, frozen))

    if chief and start == 0:
        record_dice(0, 0)                            # the untrained baseline
    # Throughput counts train steps only, not the validation, images and saving in between.
    last_saved, interval_seconds, interval_steps = start, 0.0, 0
    current = start
    while current < stop_step:
        warmup = models.config.use_attention and current // steps_per_epoch < config.attention_epochs
        began = time.perf_counter()
        with pipeline.shard_errors_named(config.data_dir):     # a bad shard: one error naming it
            batch = next(iterator)
        values = train_step(batch, warmup)
        values = {k: float(v) for k, v in values.items()}
        interval_seconds += time.perf_counter() - began
        current += 1
        interval_steps += 1
        bad = sorted(k for k, v in values.items() if not np.isfinite(v))
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss at step {current}: " + ", ".join(f"{k}={values[k]}" for k in bad)
                + f". Training stopped; the last good checkpoint ({manager.latest_checkpoint or 'none'}) is intact. "
                "Try a lower --learning_rate, or --precision=fp32.")
        result.losses = values
        if current % config.log_every == 0 or current == stop_step:
            seconds = interval_seconds / interval_steps
            lr = float(gen_opt.learning_rate.numpy() if hasattr(gen_opt.learning_rate, "numpy")
                       else gen_opt.learning_rate)
            progress.show(current, values, slices_per_step / seconds, seconds)
            board.scalars(current, values, prefix="loss/")
            board.scalars(current, {"learning_rate": lr, "slices_per_second": slices_per_step / seconds,
                                    "warmup": float(warmup)}, prefix="train/")
            interval_seconds, interval_steps = 0.0, 0
        if chief and (current % config.image_every == 0 or current == stop_step):
            grid = summaries.translation_grid(models, *grid_inputs, tau=config.tau,
                                                cycle_attention=config.cycle_attention)
            board.image(current, "translations", grid)
            summaries.write_png(os.path.join(config.model_dir, "samples", f"step_{current:08d}.png"), grid)
        if current % steps_per_epoch == 0:
            epoch.assign(current // steps_per_epoch)
            if chief:
                record_dice(current, current // steps_per_epoch)
        if current % config.checkpoint_every == 0 or current % steps_per_epoch == 0 or current == stop_step:
            if current != last_saved:
                # The loss is checked before the update it drives: a blow-up shows in the weights one
                # step before it shows in a loss, so the weights are checked before every save.
                bad = non_finite_state(models, (gen_opt, disc_opt), probe)
                if bad:
                    raise NonFiniteLossError(
                        f"non-finite training state after step {current} ({len(bad)} problems, e.g. "
                        f"{', '.join(bad[:3])}). "
                        f"Training stopped without saving them; the last finite checkpoint "
                        f"({manager.latest_checkpoint or 'none'}) is the latest, and a rerun resumes from it. "
                        "Try a lower --learning_rate, or --precision=fp32.")
                manager.save(checkpoint_number=current)
                last_saved = current
        board.flush()
    board.close()
    result.step, result.epoch = current, int(epoch.numpy())
    if chief:
        result.checkpoint = checkpoints.latest_checkpoint(config.model_dir)
        log(f"Done at step {current}; checkpoint {result.checkpoint}")
    else:
        log(f"Done at step {current} (this worker's checkpoints were temporary; the chief keeps them)")
