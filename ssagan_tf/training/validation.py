"""The end-of-epoch validation of a training run: how well the tumor attention A_t finds the
validation tumors (Dice of its pseudo-mask), what normal->tumor does to the validation normal
slices, the judge's view of both directions (with --judge), and the warning a user gets when
the attention collapses. `Validation` is the periodic action the training loop runs."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ssagan_tf import lesions, metrics
from ssagan_tf.data import pipeline
from ssagan_tf.judge import scoring
from ssagan_tf.models import compose_attention, translate

JUDGE_BATCH = 16        # validation slices per translation call when the judge scores them


def validation_attention(attention_tumor, dataset, tau: float, batch_size: int = 8):
    """How well the tumor attention A_t finds the tumor on the validation tumor slices of `dataset`
    (a `schema.Dataset`) that carry a mask. Returns {"dice": mean Dice of A_t >= tau (the
    pseudo-mask augmentation writes) against the true whole-tumor mask, "attended": fraction of
    their pixels with A_t >= tau, "inside" / "outside": mean A_t over their tumor / non-tumor
    pixels}, or None when there is no attention network or no such slice. `attention_tumor` maps
    images to attention (a model, or a tf.function around one)."""
    if attention_tumor is None or dataset.count("val", "tumor") == 0:
        return None
    dice_sum, attended_sum, count = 0.0, 0.0, 0
    inside = outside = tumor_pixels = other_pixels = 0.0
    for batch in pipeline.make_slice_dataset(dataset, "val", "tumor", batch_size):
        keep = batch["has_mask"].numpy() > 0
        if not keep.any():
            continue
        attention = np.asarray(attention_tumor(batch["image"]))[keep].astype(np.float64)
        mask = batch["mask"].numpy()[keep] > 0.5
        attended = attention >= tau
        dice_sum += float(metrics.dice_iou(attended, mask)[0].sum())
        attended_sum += float(attended.mean(axis=(1, 2, 3)).sum())
        inside, tumor_pixels = inside + attention[mask].sum(), tumor_pixels + mask.sum()
        outside, other_pixels = outside + attention[~mask].sum(), other_pixels + (~mask).sum()
        count += int(keep.sum())
    if not count:
        return None
    return {"dice": dice_sum / count, "attended": attended_sum / count,
            "inside": float(inside / max(tumor_pixels, 1)), "outside": float(outside / max(other_pixels, 1))}


def validation_normal_attention(normal_to_tumor, dataset, tau: float, batch_size: int = 8):
    """What the normal->tumor direction does to the validation normal slices of `dataset` (a
    `schema.Dataset`). `normal_to_tumor` maps images to (translation, attention A_n) (paper Eq. 1,
    no threshold). Returns {"mean": mean A_n, "max": its largest value, "attended": fraction of
    pixels with A_n >= tau, "change": mean |translation - input|}, or None when there is no
    attention network or no such slice. A_n exactly 0 everywhere means every "synthetic tumor"
    equals its input."""
    if normal_to_tumor is None or dataset.count("val", "normal") == 0:
        return None
    total = {"mean": 0.0, "attended": 0.0, "change": 0.0}
    largest, count = 0.0, 0
    for batch in pipeline.make_slice_dataset(dataset, "val", "normal", batch_size):
        images = batch["image"].numpy()
        translated, attention = (np.asarray(t, np.float64) for t in normal_to_tumor(batch["image"]))
        total["mean"] += float(attention.mean(axis=(1, 2, 3)).sum())
        total["attended"] += float((attention >= tau).mean(axis=(1, 2, 3)).sum())
        total["change"] += float(np.abs(translated - images).mean(axis=(1, 2, 3)).sum())
        largest = max(largest, float(attention.max()))
        count += len(images)
    return {**{k: v / count for k, v in total.items()}, "max": largest}


def transplanted_pairs(arrays: dict, seed: int = 0):
    """The healthy-fill test set of a split's slices (`arrays` from `pipeline.load_split_arrays`):
    every normal slice with a lesion transplanted from a tumor slice with a mask (the k-th normal
    slice takes the (k mod n)-th of the n such tumor slices; `lesions.transplant`, seeded, so
    every call gives the same set). Returns ``(originals, lesioned, masks)`` as numpy arrays (the
    slices where no lesion could be placed left out), or None without either kind of slice."""
    normal = arrays["image"][arrays["label"] == 0]
    labelled = (arrays["label"] == 1) & (arrays["has_mask"] > 0) & (arrays["mask"].sum(axis=(1, 2, 3)) > 0)
    if not len(normal) or not labelled.any():
        return None
    donors = np.flatnonzero(labelled)[np.arange(len(normal)) % int(labelled.sum())]
    lesioned, masks, placed = (np.asarray(t) for t in lesions.transplant(
        normal, arrays["image"][donors], arrays["mask"][donors], np.ones(len(normal), np.float32),
        tf.constant([seed, 0], tf.int64)))
    keep = placed > 0
    return (normal[keep], lesioned[keep], masks[keep]) if keep.any() else None


def healthy_fill_measures(tumor_to_normal, pairs) -> dict | None:
    """How tumor->normal fills a lesion with brain where the truth is known: on `pairs`
    (`transplanted_pairs`), G_t2n translates each lesioned normal slice with the transplanted mask
    as its attention (paper Eq. 1 with the mask in place of A_t), and `metrics.fill_scores`
    compares what it paints inside the mask with the real tissue there. Returns the mean L1,
    PSNR and SSIM and the number of slices, or None without pairs."""
    if pairs is None:
        return None
    originals, lesioned, masks = pairs
    filled = np.concatenate([np.asarray(compose_attention(
        lesioned[i:i + 16], tf.cast(tumor_to_normal(lesioned[i:i + 16], training=False), tf.float32),
        masks[i:i + 16])) for i in range(0, len(lesioned), 16)])
    scores = metrics.fill_scores(originals, filled, masks)
    finite = {k: v[np.isfinite(v)] for k, v in scores.items()}
    return {**{k: float(v.mean()) if v.size else float("nan") for k, v in finite.items()},
            "slices": int(len(originals))}


def judge_measures(judge, models, arrays: dict, tau: float = 0.0, seed: int = 0) -> dict:
    """The judge's view of both directions on a split's slices (`arrays` from
    `pipeline.load_split_arrays`), translated with the inference threshold `tau` as augmentation
    does, `JUDGE_BATCH` slices at a time: `scoring.measure`."""
    networks = {"normal_to_tumor": (models.normal_to_tumor, models.attention_normal),
                "tumor_to_normal": (models.tumor_to_normal, models.attention_tumor)}

    def translator(direction, part):
        return translate(*networks[direction], part["image"], tau=tau)[0]

    return scoring.measure(judge, translator, arrays, batch_size=JUDGE_BATCH, seed=seed)


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
            f"judge {direction.replace('_to_', '->')}: {m['target']} rate {rate['synthetic']:.2f} (inputs "
            f"{rate['inputs']:.2f}, real {rate['real_target']:.2f}); KID vs real {m['target']} "
            f"{kid['synthetic']['mean']:.2f} +- {kid['synthetic']['std']:.2f} (inputs {kid['inputs']['mean']:.2f}, "
            f"real halves {kid['real_halves']['mean']:.2f})")
    return lines


def attention_failing(stats: dict) -> bool:
    """The tumor attention does not find the tumors: no validation pixel reaches tau, or A_t is no
    stronger on the tumors than elsewhere (what the paper's L1 mask loss leads to when tumors are
    small: A_t near 0 everywhere, or left on the background)."""
    return stats["attended"] == 0.0 or stats["inside"] <= stats["outside"]


def collapse_warning(config, stats: dict, epoch: int, frozen: bool, freeze_epoch: int) -> str:
    """What to tell a user whose tumor attention does not find the tumors after `epoch`; the
    attention networks freeze at `freeze_epoch` (`Schedule.freeze_epoch`)."""
    if not config.model.mask_loss:
        advice = ("this system learns the attention without masks; --system=ssa_cyclegan supervises it with the "
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
             f"(epoch {freeze_epoch}), translations will change the wrong region or nothing.")
    return (f"WARNING: after epoch {epoch} the tumor attention A_t does not find the validation tumors (Dice "
            f"{stats['dice']:.3f}, {100 * stats['attended']:.1f}% of pixels >= tau, mean A_t {stats['inside']:.3f} "
            f"inside the tumors vs {stats['outside']:.3f} outside). {state} {advice[0].upper()}{advice[1:]}.")


class Validation:
    """The chief's validation at the end of every epoch (and of epoch 0, the untrained baseline):
    records each measure in `result` (a `TrainResult`) by epoch, writes it to `board` under
    `val/` and logs it. Warns once if the tumor attention fails while it trains, and again if it
    still fails when the schedule freezes it. `dataset` is the run's main dataset (the
    `schema.Dataset` training opened), whose validation split it reads."""

    def __init__(self, config, dataset, schedule, models, board, result, log):
        self.config, self.dataset, self.schedule, self.models = config, dataset, schedule, models
        self.board, self.result, self.log = board, result, log
        self.attention_fn = (tf.function(lambda x: models.attention_tumor(x, training=False), reduce_retracing=True)
                             if models.attention_tumor is not None else None)
        self.normal_fn = (tf.function(lambda x: translate(models.normal_to_tumor, models.attention_normal, x,
                                                          training=False), reduce_retracing=True)
                          if models.attention_normal is not None else None)
        self.warned = []
        self.judge = self.val_arrays = self.fill_pairs = None
        levers = config.transplants_lesions
        # The validation split read whole once, for the healthy-fill pairs and the judge alike.
        arrays = pipeline.load_split_arrays(dataset, "val") if levers or config.judge_dir else None
        if levers:
            # The same transplants every epoch, so the healthy-fill figures compare across epochs.
            self.fill_pairs = transplanted_pairs(arrays, config.seed)
        if config.judge_dir:
            self.judge = scoring.Judge(config.judge_dir)
            self.val_arrays = arrays
            log(f"Judge {config.judge_dir} (its test AUC {self.judge.test_auc:.3f}) scores the validation "
                "translations each epoch")

    def due(self, step: int) -> bool:
        return self.schedule.ends_epoch(step)

    def __call__(self, step: int, values=None):
        with pipeline.shard_errors_named(self.dataset):
            self._validate(step, self.schedule.epoch_of(step))

    def _validate(self, at_step: int, at_epoch: int):
        config, board, result, log = self.config, self.board, self.result, self.log
        stats = validation_attention(self.attention_fn, self.dataset, config.tau)
        if stats is not None:
            result.val_dice[at_epoch] = stats["dice"]
            board.scalars(at_step, {f"attention_tumor_{k}": v for k, v in stats.items()}, prefix="val/")
            log(f"epoch {at_epoch}: validation Dice of A_t >= {config.tau} vs mask = {stats['dice']:.4f} "
                f"({100 * stats['attended']:.1f}% of pixels attended)")
        normal = validation_normal_attention(self.normal_fn, self.dataset, config.tau)
        if normal is not None:
            result.val_normal_attention[at_epoch] = normal
            board.scalars(at_step, {f"attention_normal_{k}": v for k, v in normal.items()}, prefix="val/")
            log(f"epoch {at_epoch}: validation normal->tumor: mean A_n {normal['mean']:.4f} (max {normal['max']:.3f}, "
                f"{100 * normal['attended']:.1f}% of pixels >= tau), mean |change| {normal['change']:.4f}")
        if self.fill_pairs is not None:
            fill = healthy_fill_measures(self.models.tumor_to_normal, self.fill_pairs)
            result.val_fill[at_epoch] = fill
            board.scalars(at_step, {f"healthy_fill_{k}": v for k, v in fill.items()}, prefix="val/")
            log(f"epoch {at_epoch}: validation healthy fill inside {fill['slices']} transplanted lesion masks: L1 "
                f"{fill['l1']:.4f}, PSNR {fill['psnr']:.2f} dB, SSIM {fill['ssim']:.4f}")
        if self.judge is not None:
            measures = judge_measures(self.judge, self.models, self.val_arrays, tau=config.tau)
            if measures:
                result.val_judge[at_epoch] = measures
                board.scalars(at_step, judge_scalars(measures), prefix="val/")
                for line in describe_judge(measures):
                    log(f"epoch {at_epoch}: {line}")
        if stats is not None:
            # Warn once while the attention trains, and again if it is still failing when it freezes.
            frozen = at_epoch == self.schedule.freeze_epoch
            if at_epoch >= 1 and attention_failing(stats) and (frozen or not self.warned):
                self.warned.append(at_epoch)
                log(collapse_warning(config, stats, at_epoch, frozen, self.schedule.freeze_epoch))
