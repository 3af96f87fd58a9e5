"""Export the trained generators as a TF Serving model (docs/export_and_serving.md).

The export is a `tf.Module` with explicit input signatures (as TF Model Garden's
`core/export_base.py` does), not `model.save`. It is written as a TF Serving model directory

    <export_dir>/<model_name>/<version>/saved_model.pb, variables/, export.json

with `version` the next integer. A version is written under a temporary name, verified by reloading
it and comparing every signature with the Keras models, and only then renamed to its number, so
TF Serving (which watches `<export_dir>/<model_name>`) never sees a half-written or unverified one.
Entries named like a version that are not folders (a stray file `2`) are stepped over; the
temporary folders of exports that were killed are removed by the next export.

Signatures (each takes the keyword `images`, float32 [None, H, W, C] in [-1, 1]):

    normal_to_tumor   paper Eq. 1 with G_n2t and A_n -> {"image", "attention"}
    tumor_to_normal   paper Eq. 1 with G_t2n and A_t -> {"image", "attention"}
    serving_default   = normal_to_tumor
    normal_to_tumor_in_masks   G_n2t with the caller's `masks` (float32 [None, H, W, 1] in [0, 1])
                      in A_n's place (Eq. 1) -> {"image", "attention" = the masks}: a synthetic
                      tumor where the caller says (`run_augment.py --lesion_masks`)
    tumor_to_normal_in_masks   G_t2n likewise, the masks in A_t's place: healthy tissue painted
                      where the caller says (`python -m scripts.fill`)

`attention` is [None, H, W, 1]: the attention map with the inference threshold tau applied (all
ones for systems without attention networks). A request of any size is translated
`SERVING_CHUNK` (16) slices at a time inside the signature, so its memory does not grow with the
batch beyond the inputs and outputs themselves; an empty batch returns empty outputs.

Precision (`--precision`, `ssagan_tf.precision`): the networks compute in fp32 (the default,
whatever precision the run trained in), bf16 or fp16, but every signature takes float32 `images`
and returns float32 outputs. The reload check compares the
SavedModel with the Keras models computing in the same precision, within a tolerance that fits it
(`TOLERANCES`); `export.json` records the precision and the tolerance used.

Command line: ``python -m ssagan_tf.export --model_dir=RUN_DIR --export_dir=DIR`` (also ``ssagan
export``), defined in `ssagan_tf.commands.export`.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Before TensorFlow loads: the command line answers --help and refuses bad flags in a second,
    # and only its work imports this module (again, under its own name) and TensorFlow. The only
    # import of the command line by the export, and it ends the process (`cli.run` exits) before
    # the body below runs as `__main__`, so the module is never executed twice.
    from ssagan_tf.commands.export import run

    run()

import contextlib
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from ssagan_tf.data import schema
from ssagan_tf.data.folds import run_datasets, training_cohort
from ssagan_tf.data.preprocess import recorded_framing
from ssagan_tf.export_layout import (DEFAULT_MODEL_NAME, DEFAULT_TOLERANCE, EXPORT_FORMAT_VERSION,  # noqa: F401
                                     EXPORT_INFO_NAME, FILL_IN_MASKS, IN_MASKS, MASKED_SIGNATURES, MODEL_NAME_PATTERN,
                                     STAGING_LOCK, STAGING_PREFIX, TOLERANCES, ExportError, commit_version,
                                     latest_version_dir, read_export_info, remove_stale_staging, validate_model_name,
                                     version_numbers)
from ssagan_tf.locking import DirectoryLock
from ssagan_tf.models import SSAModels, compose_attention, translate
from ssagan_tf.run_dir import best_checkpoint, chosen_checkpoint
from ssagan_tf.training.checkpoints import restore_models, uses_average

SIGNATURE_NAMES = schema.DIRECTIONS + ("serving_default",)
TRAINING_FRAMING = "training_framing"      # export.json: how the training slices were framed (or null)
# Slices a signature translates at once; a request of any size runs chunk by chunk (`_in_chunks`).
SERVING_CHUNK = 16


class TranslationModule(tf.Module):
    """The two translation directions of an `SSAModels`, as tf.functions with fixed signatures.

    Code names and paper names: `normal_to_tumor` uses G_n2t and A_n, `tumor_to_normal` uses G_t2n
    and A_t (paper Eq. 1). The discriminators are not exported.

    The module tracks the networks' `tf.Variable`s, not the Keras models: with a Keras 3 model as
    an attribute, the SavedModel's graph (what TF Serving and `saved_model_cli run` load) restores
    copies of the weights while the signatures read the originals, which stay uninitialised
    ("Could not find variable ..."; keras-team/keras#20095). `tf.saved_model.load` hides this.
    """

    def __init__(self, models: SSAModels, tau: float, chunk_size: int = SERVING_CHUNK):
        super().__init__(name="ssagan_translation")
        cfg = models.config
        self.image_shape = (cfg.image_size, cfg.image_size, cfg.channels)
        self.tau = float(tau)
        self.chunk_size = int(chunk_size)
        networks = [n for n in (models.normal_to_tumor, models.tumor_to_normal, models.attention_normal,
                                models.attention_tumor) if n is not None]
        self.network_variables = [weight.value for network in networks for weight in network.weights]
        spec = tf.TensorSpec((None,) + self.image_shape, tf.float32, name="images")
        self.normal_to_tumor = tf.function(
            _translation(models.normal_to_tumor, models.attention_normal, self.image_shape, self.tau, chunk_size),
            input_signature=[spec])
        self.tumor_to_normal = tf.function(
            _translation(models.tumor_to_normal, models.attention_tumor, self.image_shape, self.tau, chunk_size),
            input_signature=[spec])
        self.normal_to_tumor_in_masks = tf.function(self._in_masks(models.normal_to_tumor, chunk_size),
                                                    input_signature=self._masked_spec())
        self.tumor_to_normal_in_masks = tf.function(self._in_masks(models.tumor_to_normal, chunk_size),
                                                    input_signature=self._masked_spec())

    def _masked_spec(self) -> list:
        return [tf.TensorSpec((None,) + self.image_shape, tf.float32, name="images"),
                tf.TensorSpec((None,) + self.image_shape[:2] + (1,), tf.float32, name="masks")]

    def _in_masks(self, generator, chunk_size: int):
        """(images, masks) -> {"image", "attention"}: `generator`'s output composed inside `masks`."""
        channels = self.image_shape[-1]

        def in_masks(images, masks):
            images = _checked_range(_checked_shape(images, self.image_shape))
            masks = tf.ensure_shape(masks, (None,) + self.image_shape[:2] + (1,), name="check_masks_shape")
            check = tf.debugging.assert_equal(tf.reduce_all((masks >= 0.0) & (masks <= 1.0)), True,
                                              message="masks must lie in [0, 1]")
            with tf.control_dependencies([check]):
                stacked = tf.concat([images, masks], axis=-1)
            # The masks ride along as an extra channel, so `_in_chunks` splits both alike.
            translated, attention_map = _in_chunks(
                lambda part: (compose_attention(part[..., :channels], tf.cast(generator(part[..., :channels]),
                                                                              tf.float32), part[..., channels:]),
                              part[..., channels:]), stacked, chunk_size, self.image_shape)
            return {"image": tf.identity(translated, name="image"), "attention": tf.identity(attention_map,
                                                                                              name="attention")}

        return in_masks

    def signatures(self) -> dict:
        """Signature name -> concrete function, for `tf.saved_model.save`."""
        normal_to_tumor = self.normal_to_tumor.get_concrete_function()
        return {"normal_to_tumor": normal_to_tumor,
                "tumor_to_normal": self.tumor_to_normal.get_concrete_function(),
                "serving_default": normal_to_tumor,
                IN_MASKS: self.normal_to_tumor_in_masks.get_concrete_function(),
                FILL_IN_MASKS: self.tumor_to_normal_in_masks.get_concrete_function()}


def _translation(generator, attention, image_shape: tuple, tau: float, chunk_size: int):
    """images -> {"image", "attention"}: paper Eq. 1 with the inference threshold, inputs checked,
    `chunk_size` slices at a time."""

    def translate_images(images):
        images = _checked_range(_checked_shape(images, image_shape))
        translated, attention_map = _in_chunks(lambda part: translate(generator, attention, part, tau=tau), images,
                                               chunk_size, image_shape)
        return {"image": tf.identity(translated, name="image"),
                "attention": tf.identity(attention_map, name="attention")}

    return translate_images


def _in_chunks(translate_part, images, chunk_size: int, image_shape: tuple):
    """`translate_part` over `images` `chunk_size` slices at a time, one chunk after the other, so a
    request's working memory is that of one chunk however many slices it holds (a batch of 1024
    64^2 slices at once took 2.4 GB), and an empty batch gives empty outputs (the reflection
    padding fails on a batch of 0). The outputs are the inputs' slices in order."""
    height, width, channels = image_shape
    chunks = (tf.shape(images)[0] + chunk_size - 1) // chunk_size
    outputs = (tf.TensorArray(tf.float32, size=chunks, infer_shape=False,
                              element_shape=tf.TensorShape([None, height, width, channels])),
               tf.TensorArray(tf.float32, size=chunks, infer_shape=False,
                              element_shape=tf.TensorShape([None, height, width, 1])))

    def step(i, translated, attention_map):
        part = translate_part(images[i * chunk_size:(i + 1) * chunk_size])
        return i + 1, translated.write(i, part[0]), attention_map.write(i, part[1])

    _, translated, attention_map = tf.while_loop(lambda i, *_: i < chunks, step, (tf.constant(0), *outputs),
                                                 parallel_iterations=1)
    return translated.concat(), attention_map.concat()


def _checked_shape(images, image_shape):
    """Reject a batch whose shape is not [batch, H, W, C]. The Python wrapper of a signature checks
    this, but C++ callers (TF Serving, saved_model_cli) feed any shape, and graph optimisation
    trusts the declared one: an assertion computed from the shape is folded away, and a rank-3
    input then crashes the process in a convolution. `EnsureShape` checks the runtime shape and
    its output feeds the networks, so nothing runs before it."""
    return tf.ensure_shape(images, (None,) + tuple(image_shape), name="check_images_shape")


def _checked_range(images):
    """Reject images outside [-1, 1] (with the data pipeline's slack, `schema.RANGE_TOLERANCE`): a
    client sending 0-255 or raw MRI intensities would otherwise get a plausible-looking but
    meaningless translation."""
    largest = tf.reduce_max(tf.abs(tf.reshape(images, [-1])))
    check = tf.debugging.assert_less_equal(
        largest, 1.0 + schema.RANGE_TOLERANCE,
        message="images must be float32 scaled to [-1, 1] (per-volume percentile normalisation, "
                "as written by data_prep.convert); got values of magnitude")
    with tf.control_dependencies([check]):
        return tf.identity(images)


def verify_export(saved_model_dir: str, models: SSAModels, tau: float, batch_size: int = 2,
                  seed: int = 0, tolerance: float = 0.0, near_tau: list | None = None) -> dict:
    """Reload the SavedModel and compare every signature with the Keras models on a random batch
    in [-1, 1]; returns signature name -> max abs difference over `image` and `attention`.

    Pixels whose attention lies within `tolerance` of tau are left out of the comparison: there
    the threshold may fall either way between two computations that differ by rounding (as bf16
    ones do), and a flip changes the attention by tau and the image by up to 2 tau. The number
    left out (the most of any signature) is appended to `near_tau` when given."""
    cfg = models.config
    images = tf.constant(np.random.default_rng(seed).uniform(
        -1.0, 1.0, (batch_size, cfg.image_size, cfg.image_size, cfg.channels)).astype(np.float32))
    loaded = tf.saved_model.load(saved_model_dir)
    keras_pairs = {"normal_to_tumor": (models.normal_to_tumor, models.attention_normal),
                   "tumor_to_normal": (models.tumor_to_normal, models.attention_tumor)}
    keras_pairs["serving_default"] = keras_pairs["normal_to_tumor"]
    missing = (set(SIGNATURE_NAMES) | set(MASKED_SIGNATURES.values())) - set(loaded.signatures)
    if missing:
        raise ExportError(f"{saved_model_dir}: signatures {sorted(missing)} missing after reload")
    diffs, left_out = {}, 0
    for name in SIGNATURE_NAMES:
        generator, attention = keras_pairs[name]
        expected_image, expected_attention = translate(generator, attention, images, tau=tau)
        _, raw_attention = translate(generator, attention, images, tau=0.0)
        compared = tf.abs(raw_attention - tau) > tolerance if tau > 0 else tf.ones_like(raw_attention, tf.bool)
        left_out = max(left_out, int(tf.size(compared)) - int(tf.reduce_sum(tf.cast(compared, tf.int32))))
        served = loaded.signatures[name](images=images)
        image_diff = tf.where(compared, tf.abs(served["image"] - expected_image), 0.0)
        attention_diff = tf.where(compared, tf.abs(served["attention"] - expected_attention), 0.0)
        diffs[name] = max(float(tf.reduce_max(image_diff)), float(tf.reduce_max(attention_diff)))
    masks = tf.cast(tf.random.stateless_uniform((batch_size, cfg.image_size, cfg.image_size, 1), [seed, 1]) > 0.7,
                    tf.float32)
    for generator, name in ((models.normal_to_tumor, IN_MASKS), (models.tumor_to_normal, FILL_IN_MASKS)):
        expected = compose_attention(images, tf.cast(generator(images), tf.float32), masks)
        served = loaded.signatures[name](images=images, masks=masks)
        diffs[name] = max(float(tf.reduce_max(tf.abs(served["image"] - expected))),
                          float(tf.reduce_max(tf.abs(served["attention"] - masks))))
    if near_tau is not None:
        near_tau.append(left_out)
    return diffs


def write_export(models: SSAModels, export_dir: str, model_name: str = DEFAULT_MODEL_NAME, tau: float = 0.0,
                 metadata: dict | None = None, tolerance: float | None = None,
                 chunk_size: int = SERVING_CHUNK) -> str:
    """Export `models` as the next version of `<export_dir>/<model_name>`; returns its directory.

    The version is saved and verified under a temporary name in the same directory and renamed
    only when every signature matches the Keras models within `tolerance`; otherwise nothing is
    left behind and `ExportError` is raised. `tolerance` defaults to the one of the models'
    precision (`TOLERANCES`). `metadata` is merged into `export.json`. The signatures translate
    a request `chunk_size` slices at a time (`_in_chunks`).
    """
    validate_model_name(model_name)
    if tolerance is None:
        tolerance = TOLERANCES[models.config.precision]
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    base = os.path.join(export_dir, model_name)
    if os.path.exists(base) and not os.path.isdir(base):
        raise ExportError(f"{base}: is a file, not a folder; remove it or export under another --model_name")
    os.makedirs(base, exist_ok=True)
    remove_stale_staging(base)
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=base)
    # Held until the staging folder is renamed or removed: a later export removes the folder only
    # when its writer is gone (killed), never while it is being written.
    staging_lock = DirectoryLock(staging, STAGING_LOCK, "an export", "--export_dir").acquire()
    try:
        module = TranslationModule(models, tau, chunk_size)
        tf.saved_model.save(module, staging, signatures=module.signatures())
        near_tau = []
        diffs = verify_export(staging, models, tau, tolerance=tolerance, near_tau=near_tau)
        worst = max(diffs.values())
        if not worst <= tolerance:
            raise ExportError(f"export does not reproduce the Keras models: max abs difference {worst:.3g} "
                              f"> tolerance {tolerance:g} ({diffs}); nothing was written")
        info = _export_info(models, tau, diffs, tolerance, {"serving_chunk": chunk_size, **(metadata or {})},
                            near_tau[0] if near_tau else 0)
        _write_json(os.path.join(staging, EXPORT_INFO_NAME), info)
        os.chmod(staging, 0o755)
        version_dir = commit_version(staging, base)
        with contextlib.suppress(OSError):          # published already; the lock file is only litter
            os.remove(os.path.join(version_dir, STAGING_LOCK))
        return version_dir
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        staging_lock.release()


def _export_info(models: SSAModels, tau: float, diffs: dict, tolerance: float, metadata: dict,
                 near_tau_pixels: int = 0) -> dict:
    cfg = models.config
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "model_config": cfg.to_dict(),
        "tau": float(tau),
        "has_attention": models.attention_normal is not None,
        "precision": cfg.precision,
        "signatures": {name: {"inputs": {"images": ["float32", [None, cfg.image_size, cfg.image_size, cfg.channels]]},
                              "outputs": {"image": ["float32", [None, cfg.image_size, cfg.image_size, cfg.channels]],
                                          "attention": ["float32", [None, cfg.image_size, cfg.image_size, 1]]}}
                       for name in SIGNATURE_NAMES},
        # normal_to_tumor_in_masks, tumor_to_normal_in_masks: inputs images and masks [None, H, W,
        # 1], the outputs above.
        "masked_signatures": sorted(MASKED_SIGNATURES.values()),
        "verification": {"max_abs_diff": diffs, "tolerance": tolerance,
                         # attention within `tolerance` of tau: the threshold may fall either way there
                         "near_tau_pixels_left_out": near_tau_pixels},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensorflow": tf.__version__,
        **metadata,
    }


def _write_json(path: str, value: dict) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def export_models(model_dir: str, export_dir: str, model_name: str = DEFAULT_MODEL_NAME, tau: float | None = None,
                  tolerance: float | None = None, precision: str = "fp32", checkpoint: str = "auto", log=None) -> str:
    """Export a checkpoint of the training run in `model_dir` as the next version of
    `<export_dir>/<model_name>`, computing in `precision` (fp32 by default, what serving wants;
    bf16 or fp16 when asked; resolve `auto` with `ssagan_tf.precision.choose_precision` first);
    returns the version directory. `checkpoint` is `latest` (the newest intact one: unreadable
    newer checkpoints are skipped and named through `log`), `best` (the one `--select_best` kept)
    or `auto` (best when there is one, else latest). `tau` defaults to the run's inference
    threshold, `tolerance` to the precision's."""
    path = chosen_checkpoint(model_dir, checkpoint, log)
    models, _, run_config = restore_models(model_dir, precision=precision, checkpoint=path)
    tau = run_tau(run_config) if tau is None else float(tau)
    dataset, extras = run_datasets(run_config)
    # "average": the checkpoint's moving average of the weights (--ema_decay), else the raw weights.
    # "cohort": the patients it saw; the evaluation refuses an augmenter that saw the patients it tests on.
    # "training_framing": how its training slices were framed; augmentation frames file inputs alike.
    metadata = {"source_model_dir": os.path.abspath(model_dir), "step": restored_step(path),
                "checkpoint": "best" if path == best_checkpoint(model_dir) else "latest",
                "checkpoint_file": os.path.basename(path), "weights": "average" if uses_average(path) else "raw",
                "cohort": training_cohort(run_config, dataset, extras), TRAINING_FRAMING: training_framing(dataset)}
    return write_export(models, export_dir, model_name, tau, metadata, tolerance)


def export_after_training(config, result, log=print) -> str | None:
    """The export at the end of `run_train.py --export_dir` (`training.loop.train`'s `finish`): the
    run's generators in float32, for serving, whatever the training precision (`python -m
    ssagan_tf.export --precision` exports in another); only by the process that wrote the run
    directory (one of a multi-worker run). Returns the version directory, or None."""
    if not config.export_dir or not result.chief:
        return None
    version_dir = export_models(config.model_dir, config.export_dir, precision="fp32", log=log)
    log(f"Exported to {config.export_dir}")
    return version_dir


def training_framing(dataset):
    """How the slices a training run trained on were framed (`preprocess.recorded_framing` of its
    dataset's manifest, with that manifest's path as `source_manifest`), for `export.json`; None
    when the dataset is no longer there (`dataset` None, `folds.run_datasets`) or its manifest does
    not say."""
    if dataset is None:
        return None
    framing = recorded_framing(dataset.manifest.raw)
    return None if framing is None else dict(framing, source_manifest=os.path.abspath(dataset.manifest.path))


def run_tau(run_config: dict) -> float:
    """The inference threshold stored in a training run's `config.json` (`RunConfig.tau`)."""
    if "tau" not in run_config:
        raise ExportError("the run config has no 'tau'; pass tau explicitly (--tau)")
    return float(run_config["tau"])


def restored_step(checkpoint_path: str) -> int | None:
    """The global step held by the checkpoint at `checkpoint_path` (None when it has none)."""
    try:
        return int(tf.train.load_variable(checkpoint_path, "step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError, TypeError):
        return None
