"""What a run shows: TensorBoard scalars and image grids, sample PNGs, the validation Dice of
the tumor attention, and one console line per interval."""

from __future__ import annotations

import datetime
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.framework.summary_pb2 import DataClass, SummaryMetadata

from ssagan_tf import losses
from ssagan_tf.data import pipeline
from ssagan_tf.models import reconstruct, translate

# Columns of an image grid, for both directions (normal -> tumor row first).
GRID_COLUMNS = ("input", "attention", "translation", "reconstruction")


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
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


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


def validation_attention(attention_tumor, data_dir: str, tau: float, batch_size: int = 8):
    """How well the tumor attention A_t finds the tumor on the validation tumor slices that carry a
    mask. Returns {"dice": mean Dice of A_t >= tau (the pseudo-mask augmentation writes) against
    the true whole-tumor mask, "attended": fraction of their pixels with A_t >= tau, "inside" /
    "outside": mean A_t over their tumor / non-tumor pixels}, or None when there is no attention
    network or no such slice. `attention_tumor` maps images to attention (a model, or a
    tf.function around one)."""
    from ssagan_tf.data import schema

    if attention_tumor is None or schema.read_manifest(data_dir).count("val", "tumor") == 0:
        return None
    dice_sum, attended_sum, count = 0.0, 0.0, 0
    inside = outside = tumor_pixels = other_pixels = 0.0
    for batch in pipeline.make_slice_dataset(data_dir, "val", "tumor", batch_size):
        keep = batch["has_mask"].numpy() > 0
        if not keep.any():
            continue
        attention = np.asarray(attention_tumor(batch["image"]))[keep].astype(np.float64)
        mask = batch["mask"].numpy()[keep] > 0.5
        binary = losses.binarize_attention(attention, tau)
        dice_sum += float(losses.dice_coefficient(binary, mask).numpy().sum())
        attended_sum += float((attention >= tau).mean(axis=(1, 2, 3)).sum())
        inside, tumor_pixels = inside + attention[mask].sum(), tumor_pixels + mask.sum()
        outside, other_pixels = outside + attention[~mask].sum(), other_pixels + (~mask).sum()
        count += int(keep.sum())
    if not count:
        return None
    return {"dice": dice_sum / count, "attended": attended_sum / count,
            "inside": float(inside / max(tumor_pixels, 1)), "outside": float(outside / max(other_pixels, 1))}


def validation_normal_attention(normal_to_tumor, data_dir: str, tau: float, batch_size: int = 8):
    """What the normal->tumor direction does to the validation normal slices. `normal_to_tumor`
    maps images to (translation, attention A_n) (paper Eq. 1, no threshold). Returns {"mean": mean
    A_n, "max": its largest value, "attended": fraction of pixels with A_n >= tau, "change": mean
    |translation - input|}, or None when there is no attention network or no such slice. A_n
    exactly 0 everywhere means every "synthetic tumor" equals its input."""
    from ssagan_tf.data import schema

    if normal_to_tumor is None or schema.read_manifest(data_dir).count("val", "normal") == 0:
        return None
    total = {"mean": 0.0, "attended": 0.0, "change": 0.0}
    largest, count = 0.0, 0
    for batch in pipeline.make_slice_dataset(data_dir, "val", "normal", batch_size):
        images = batch["image"].numpy()
        translated, attention = (np.asarray(t, np.float64) for t in normal_to_tumor(batch["image"]))
        total["mean"] += float(attention.mean(axis=(1, 2, 3)).sum())
        total["attended"] += float((attention >= tau).mean(axis=(1, 2, 3)).sum())
        total["change"] += float(np.abs(translated - images).mean(axis=(1, 2, 3)).sum())
        largest = max(largest, float(attention.max()))
        count += len(images)
    return {**{k: v / count for k, v in total.items()}, "max": largest}


def judge_measures(judge, models, arrays: dict, tau: float = 0.0, seed: int = 0) -> dict:
    """The judge's view of both directions on a split's slices (`arrays` from
    `pipeline.load_split_arrays`), translated with the inference threshold `tau` as augmentation
    does: `judge.both_directions`."""
    from ssagan_tf.evaluation.judge import both_directions

    def translated(generator, attention, images):
        parts = [np.asarray(translate(generator, attention, images[i:i + 16], tau=tau)[0])
                 for i in range(0, len(images), 16)]
        return np.concatenate(parts) if parts else np.zeros_like(images)

    tumor = arrays["label"] == 1
    return both_directions(judge, arrays,
                           translated(models.normal_to_tumor, models.attention_normal, arrays["image"][~tumor]),
                           translated(models.tumor_to_normal, models.attention_tumor, arrays["image"][tumor]),
                           seed=seed)


def judge_scalars(measures: dict) -> dict:
    """Flat TensorBoard scalars of `judge_measures`."""
    flat = {}
    for direction, m in measures.items():
        for key, value in m["rate"].items():
            flat[f"judge_{direction}_rate_{key}"] = value
        for key, value in m["kid"].items():
            flat[f"judge_{direction}_kid_{key}"] = value["mean"]
    return flat


def describe_judge(measures: dict) -> list:
    """One console line per direction of `judge_measures`."""
    lines = []
    for direction, m in measures.items():
        rate, kid = m["rate"], m["kid"]
        lines.append(
            f"judge {direction.replace('_to_', '->')}: {m['target']} rate {rate['synthetic']:.3f} (inputs "
            f"{rate['inputs']:.3f}, real {rate['real_target']:.3f}); KID vs real {m['target']} "
            f"{kid['synthetic']['mean']:.4f} +- {kid['synthetic']['std']:.4f} (inputs {kid['inputs']['mean']:.4f}, "
            f"real halves {kid['real_halves']['mean']:.4f})")
    return lines


def attention_failing(stats: dict) -> bool:
    """The tumor attention does not find the tumors: no validation pixel reaches tau, or A_t is no
    stronger on the tumors than elsewhere (what the paper's L1 mask loss leads to when tumors are
    small: A_t near 0 everywhere, or left on the background)."""
    return stats["attended"] == 0.0 or stats["inside"] <= stats["outside"]


def collapse_warning(config, stats: dict, epoch: int, frozen: bool) -> str:
    """What to tell a user whose tumor attention does not find the tumors after `epoch`."""
    if not config.model.mask_loss:
        advice = ("this system learns the attention without masks; --model=ssa_cyclegan supervises it with the "
                  "tumor masks")
    elif config.lambda_mask == 0:
        advice = "--lambda_mask is 0, so the tumor masks are not used; set it to 1 (the paper's weight)"
    elif config.mask_loss_type == "l1":
        advice = ("with small tumors the paper's L1 mask loss drives it there; train with --mask_loss_type=l1_dice "
                  "(docs/training.md, 'When the attention collapses')")
    else:
        advice = "check the masks of the labelled slices, or train with a higher --lambda_mask"
    state = ("The attention networks are now frozen like this, so translations will change the wrong region "
             "or nothing." if frozen else "If this persists to the end of the attention warm-up "
             f"(epoch {config.attention_epochs}), translations will change the wrong region or nothing.")
    return (f"WARNING: after epoch {epoch} the tumor attention A_t does not find the validation tumors (Dice "
            f"{stats['dice']:.3f}, {100 * stats['attended']:.1f}% of pixels >= tau, mean A_t {stats['inside']:.3f} "
            f"inside the tumors vs {stats['outside']:.3f} outside). {state} {advice[0].upper()}{advice[1:]}.")


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
