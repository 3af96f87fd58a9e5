"""What a run shows: TensorBoard scalars and image grids, sample PNGs, and one console line per
interval (the validation measures are in `validation.py`)."""

from __future__ import annotations

import datetime
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.framework.summary_pb2 import DataClass, SummaryMetadata

from ssagan_tf import io as durable
from ssagan_tf.data import pipeline
from ssagan_tf.models import reconstruct, translate

def _metadata(plugin: str, data_class: int):
    return SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin), data_class=data_class)


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
                                 metadata=_metadata("scalars", DataClass.DATA_CLASS_SCALAR))

    def image(self, step: int, name: str, grid: np.ndarray):
        """One [H, W, 1] image in [0, 1], as TensorBoard's image plugin stores it."""
        png = tf.io.encode_png(tf.cast(np.round(np.clip(grid, 0, 1) * 255), tf.uint8))
        height, width = grid.shape[:2]
        with self.writer.as_default(step=step):
            tf.summary.write(name, tf.stack([tf.constant(str(width)), tf.constant(str(height)), png]),
                             metadata=_metadata("images", DataClass.DATA_CLASS_BLOB_SEQUENCE))

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def _display(images) -> np.ndarray:
    """First channel of [-1, 1] images -> [0, 1] grayscale, [B, H, W, 1]."""
    return np.clip((np.asarray(images)[..., :1] + 1.0) / 2.0, 0.0, 1.0)


def translation_grid(models, normal, tumor, tau: float, cycle_attention: str = "recompute") -> np.ndarray:
    """[rows * H, 4 * W, 1] float image in [0, 1]: each row is input | attention | translation |
    reconstruction (the cycle's way back as training runs it, `cycle_attention`); normal -> tumor
    rows first, then tumor -> normal."""
    rows = []
    for images, forward, backward in ((normal, (models.normal_to_tumor, models.attention_normal),
                                       (models.tumor_to_normal, models.attention_tumor)),
                                      (tumor, (models.tumor_to_normal, models.attention_tumor),
                                       (models.normal_to_tumor, models.attention_normal))):
        translated, attention = translate(*forward, images, tau=tau)
        reconstructed = reconstruct(*backward, translated, attention, cycle_attention, tau=tau)
        columns = [_display(images), np.asarray(attention), _display(translated), _display(reconstructed)]
        rows.append(np.concatenate(columns, axis=2))
    grid = np.concatenate(rows, axis=0)          # [2B, H, 4W, 1]
    return np.concatenate(list(grid), axis=0).astype(np.float32)


def write_png(path: str, grid: np.ndarray):
    """Write a [H, W, 1] image in [0, 1] as an 8-bit PNG (atomically)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = tf.io.encode_png(tf.cast(np.round(np.clip(grid, 0, 1) * 255), tf.uint8)).numpy()
    durable.atomic_write(path, data)


def sample_batch(data_dir: str, count: int = 2) -> tuple:
    """Up to `count` normal and tumor slices for image grids: from the validation split when it
    has both domains, else from the training split."""
    from ssagan_tf.data import schema

    manifest = schema.read_manifest(data_dir)
    split = "val" if all(manifest.count("val", d) for d in schema.DOMAINS) else "train"
    picked = []
    for domain in schema.DOMAINS:
        n = min(count, manifest.count(split, domain))
        batch = next(iter(pipeline.make_slice_dataset(data_dir, split, domain, n)))
        picked.append(batch["image"].numpy())
    n = min(len(picked[0]), len(picked[1]))
    return picked[0][:n], picked[1][:n]


class ProgressLine:
    """One console line per interval: step, epoch, the main losses, throughput and ETA."""

    SHOWN = (("G", "generator_total"), ("D", "discriminator_total"), ("cyc_n", "cycle_normal"),
             ("cyc_t", "cycle_tumor"), ("mask", "attention_mask"), ("A_n", "attention_normal_mean"),
             ("A_t", "attention_tumor_mean"))

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
