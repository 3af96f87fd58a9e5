"""What a run shows: TensorBoard scalars and image grids, sample PNGs, and one console line per
interval (the validation measures are in `validation.py`)."""

from __future__ import annotations

import datetime
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.framework.summary_pb2 import DataClass, SummaryMetadata

from ssagan_tf import figures
from ssagan_tf.data import pipeline
from ssagan_tf.data import schema
from ssagan_tf.models import reconstruct, translate

def _metadata(plugin: str, data_class: int, description: str = ""):
    return SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin), data_class=data_class,
                           summary_description=description)


# What each TensorBoard tag shows (its description in the dashboard); the train step's terms are
# global-batch means, weighted as they enter the generator's or discriminators' loss.
DESCRIPTIONS = {
    "loss/generator_total": "Generator objective: adversarial + cycle + identity + attention terms, as weighted.",
    "loss/discriminator_total": "Both discriminators' adversarial losses (D_t on tumor slices, D_n on normal).",
    "loss/adversarial_normal_to_tumor": "Generator adversarial loss of normal->tumor against D_t.",
    "loss/adversarial_tumor_to_normal": "Generator adversarial loss of tumor->normal against D_n.",
    "loss/cycle_normal": "lambda_cycle x L1(normal, its reconstruction normal->tumor->normal).",
    "loss/cycle_tumor": "lambda_cycle x L1(tumor, its reconstruction tumor->normal->tumor).",
    "loss/identity": "lambda_identity x lambda_cycle x identity L1 of both generators.",
    "loss/attention_mask": "lambda_mask x the semi-supervised loss of A_t against the tumor masks (labelled slices).",
    "loss/attention_area": "lambda_attention_area x how far A_n falls below --attention_area of the head (warm-up only).",
    "loss/lesion_guidance": "lesion_guidance x the --mask_loss_type loss of A_n against transplanted lesion masks.",
    "loss/healthy_fill": "lambda_fill x L1 inside pasted real lesions between tumor->normal's fill and the normal slice.",
    "loss/lesion_painting": "lambda_paint x generator adversarial loss of normal->tumor painted inside transplanted "
                            "lesion masks, against D_t.",
    "loss/disc_tumor": "D_t's loss: real tumor slices against pooled synthetic tumors.",
    "loss/disc_tumor_painted": "D_t's added loss on normal slices painted inside transplanted lesion masks (fakes).",
    "loss/disc_normal": "D_n's loss: real normal slices against pooled synthetic normals.",
    "loss/local_adversarial": "Generator adversarial loss of both directions against the local discriminators "
                              "(--d_local crops where the attention points).",
    "loss/disc_tumor_local": "Local D_t's loss: crops of real lesions against crops of this step's synthetic ones.",
    "loss/disc_normal_local": "Local D_n's loss: crops of real normal tissue against crops of removed lesions.",
    "attention/attention_normal_mean": "Mean A_n on the step's normal slices (0: normal->tumor is the identity).",
    "attention/attention_tumor_mean": "Mean A_t on the step's tumor slices.",
    "train/learning_rate": "Learning rate of both players (constant, then linear decay to 0).",
    "train/slices_per_second": "Training throughput, train steps only.",
    "train/warmup": "1 while the attention networks train (warm-up), 0 once they are frozen.",
    "val/attention_tumor_dice": "Validation Dice of A_t >= tau against the true tumor masks.",
    "val/attention_tumor_attended": "Fraction of validation tumor-slice pixels with A_t >= tau.",
    "val/attention_tumor_inside": "Mean A_t inside the validation tumors.",
    "val/attention_tumor_outside": "Mean A_t outside the validation tumors.",
    "val/attention_normal_mean": "Mean A_n on the validation normal slices.",
    "val/attention_normal_max": "Largest A_n on the validation normal slices.",
    "val/attention_normal_attended": "Fraction of validation normal-slice pixels with A_n >= tau.",
    "val/attention_normal_change": "Mean |normal->tumor(x) - x| on the validation normal slices.",
    "config": "The run's settings (config.json) as this invocation started.",
}
_PREFIX_DESCRIPTIONS = {"val/judge_": "The judge's view of the validation translations: rates called the target "
                                      "class, KID against the real target slices (see the console's judge lines)."}


def describe(tag: str) -> str:
    if tag in DESCRIPTIONS:
        return DESCRIPTIONS[tag]
    return next((text for prefix, text in _PREFIX_DESCRIPTIONS.items() if tag.startswith(prefix)), "")


def zero_weight_terms(config) -> set:
    """Loss terms that are 0 at every step of this run (their weight, or what they act on, is
    off): not logged, so no flat curve suggests they were measured."""
    model = config.model
    terms = set()
    if config.lambda_identity <= 0:
        terms.add("identity")
    if not model.use_attention or config.attention_area <= 0 or config.lambda_attention_area <= 0:
        terms.add("attention_area")
    if not model.mask_loss or config.lambda_mask <= 0:
        terms.add("attention_mask")
    return terms


def hparams(config) -> dict:
    """The settings runs are compared by in TensorBoard's HParams dashboard: the model's and the
    run's scalar settings (str, int, float, bool), flattened with a `model.` prefix, and the extra
    datasets (when there are any) comma-joined; where the run writes and why a precision was
    picked are no settings to compare by."""
    flat = {}
    for key, value in config.to_dict().items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in items:
            name = f"{key}.{sub}" if sub else key
            if isinstance(item, (bool, int, float, str)) and name not in ("model_dir", "export_dir", "precision_reason"):
                flat[name] = item
    if getattr(config, "extra_data_dirs", ()):
        # A list is no hparam value: the extra datasets as one string, so runs compare by them too.
        flat["extra_data_dirs"] = ",".join(config.extra_data_dirs)
    return flat


class Summaries:
    """TensorBoard writer under `<log_dir>`; a no-op when `log_dir` is None (non-chief workers).

    Events are written with TF's own `tf.summary.write` and the scalar/image plugin metadata
    TensorBoard expects, so that training does not need the `tensorboard` package installed
    (`tf.summary.scalar` does); only viewing the logs does.
    """

    def __init__(self, log_dir: str | None):
        self.log_dir = log_dir
        self.writer = tf.summary.create_file_writer(log_dir) if log_dir else tf.summary.create_noop_writer()

    def scalars(self, step: int, values: dict, prefix: str = ""):
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.write(prefix + name, tf.constant(float(value), tf.float32),
                                 metadata=_metadata("scalars", DataClass.DATA_CLASS_SCALAR, describe(prefix + name)))

    def image(self, step: int, name: str, grid: np.ndarray, description: str = ""):
        """One [H, W, 1] image in [0, 1], as TensorBoard's image plugin stores it."""
        png = tf.io.encode_png(figures.to_uint8(grid))
        height, width = grid.shape[:2]
        with self.writer.as_default(step=step):
            tf.summary.write(name, tf.stack([tf.constant(str(width)), tf.constant(str(height)), png]),
                             metadata=_metadata("images", DataClass.DATA_CLASS_BLOB_SEQUENCE, description))

    def text(self, step: int, name: str, markdown: str):
        """A text summary (TensorBoard's Text dashboard renders it as markdown)."""
        with self.writer.as_default(step=step):
            tf.summary.write(name, tf.constant(markdown),
                             metadata=_metadata("text", DataClass.DATA_CLASS_TENSOR, describe(name)))

    def run_settings(self, step: int, config, fresh: bool):
        """The configuration as a text table at `step`; on a fresh run also the hparams of
        `hparams(config)`, so the HParams dashboard lines runs up by setting."""
        rows = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(_flatten(config.to_dict()).items()))
        self.text(step, "config", "| setting | value |\n|---|---|\n" + rows)
        if fresh and self.log_dir:
            from tensorboard.plugins.hparams import api as hp

            with self.writer.as_default(step=step):
                hp.hparams(hparams(config))

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def _flatten(settings: dict) -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in _flatten(value).items()})
        else:
            flat[key] = value
    return flat


GRID_COLUMNS = ("input", "attention", "translation", "reconstruction")


def grid_description(rows_per_direction: int) -> str:
    return (f"Rows: {rows_per_direction} normal->tumor example(s), then {rows_per_direction} tumor->normal. "
            "Columns: input | attention (black 0, white 1) | translation | reconstruction (the cycle's way back). "
            "First channel, [-1, 1] shown as black to white.")


def translation_rows(models, normal, tumor, tau: float, cycle_attention: str = "recompute") -> list:
    """(direction, [input, attention, translation, reconstruction] as [B, H, W] in [0, 1]) for
    normal -> tumor, then tumor -> normal; the reconstruction is the cycle's way back as training
    runs it (`cycle_attention`)."""
    rows = []
    for direction, images, forward, backward in (
            ("normal -> tumor", normal, (models.normal_to_tumor, models.attention_normal),
             (models.tumor_to_normal, models.attention_tumor)),
            ("tumor -> normal", tumor, (models.tumor_to_normal, models.attention_tumor),
             (models.normal_to_tumor, models.attention_normal))):
        translated, attention = translate(*forward, images, tau=tau)
        reconstructed = reconstruct(*backward, translated, attention, cycle_attention, tau=tau)
        rows.append((direction, [figures.to_unit(images), figures.to_unit(attention, 0.0, 1.0),
                                 figures.to_unit(translated), figures.to_unit(reconstructed)]))
    return rows


def translation_grid(models, normal, tumor, tau: float, cycle_attention: str = "recompute") -> np.ndarray:
    """[rows * H, 4 * W, 1] float image in [0, 1], laid out as `grid_description` says (a plain
    tiling for TensorBoard's image dashboard, which shows no labels)."""
    return grid_image(translation_rows(models, normal, tumor, tau, cycle_attention))


def grid_image(rows: list) -> np.ndarray:
    tiles = [column[i] for _, columns in rows for i in range(len(columns[0])) for column in columns]
    return figures.tile(np.stack(tiles), columns=len(GRID_COLUMNS), padding=0)[..., None].astype(np.float32)


def translation_figure(rows: list, step: int):
    """The labelled `samples/step_*.png`: a row per example, labelled with its direction."""
    tiles, labels = [], []
    for direction, columns in rows:
        for i in range(len(columns[0])):
            tiles.append([column[i] for column in columns])
            labels.append(direction)
    return figures.labelled_grid(tiles, list(GRID_COLUMNS), labels, title=f"Translations at step {step}")


def sample_batch(dataset, count: int = 2) -> tuple:
    """Up to `count` normal and tumor slices of `dataset` (a `schema.Dataset`) for image grids:
    from the validation split when it has both domains, else from the training split."""
    split = "val" if all(dataset.count("val", d) for d in schema.DOMAINS) else "train"
    picked = []
    for domain in schema.DOMAINS:
        n = min(count, dataset.count(split, domain))
        batch = next(iter(pipeline.make_slice_dataset(dataset, split, domain, n)))
        picked.append(batch["image"].numpy())
    n = min(len(picked[0]), len(picked[1]))
    return picked[0][:n], picked[1][:n]


class ProgressLine:
    """One console line per interval: step, epoch, the main losses, throughput and ETA."""

    SHOWN = (("G", "generator_total"), ("D", "discriminator_total"), ("cyc_n", "cycle_normal"),
             ("cyc_t", "cycle_tumor"), ("mask", "attention_mask"), ("A_n", "attention_normal_mean"),
             ("A_t", "attention_tumor_mean"), ("guide", "lesion_guidance"), ("fill", "healthy_fill"),
             ("paint", "lesion_painting"), ("local", "local_adversarial"))

    def __init__(self, total_steps: int, steps_per_epoch: int, stream=None):
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.stream = stream or sys.stdout

    def line(self, step: int, values: dict, slices_per_second: float, seconds_per_step: float) -> str:
        epoch = step / max(self.steps_per_epoch, 1)
        eta = datetime.timedelta(seconds=int(max(self.total_steps - step, 0) * seconds_per_step))
        terms = " ".join(f"{short} {values[name]:.4f}" for short, name in self.SHOWN if name in values)
        return (f"step {step}/{self.total_steps} (epoch {epoch:.2f}) | {terms} | "
                f"{slices_per_second:.1f} slices/s, {seconds_per_step:.3f} s/step | ETA {eta}")

    def show(self, *args):
        print(self.line(*args), file=self.stream, flush=True)
