"""Horizontal streaks, in real slices and in a training run's networks, by spatial frequency:

    python -m scripts.stripes --data_dir=DATA [--run=MODEL_DIR] [--split=val]

The measure is `metrics.stripe_ratios`: per slice, inside a region, the Fourier power of
intensity varying from row to row (horizontal streaks) over that of intensity varying from column
to column (vertical streaks), in each band of `metrics.STRIPE_BANDS` (cycles per pixel: 0.5 is
period 2, 0.25 period 4). Each cell of the table is the median over slices (a ratio of powers is
skewed) with a 95% bootstrap interval of the median. Compare a region with the real lesions' row:
real MR slices are often smoother from row to row than across, so their ratio sits below 1.

Without `--run`, the real slices of the split: inside their lesions (labelled tumor slices), in the
brain around the lesions (`lesions.brain_mask`, less the lesion grown by 3 pixels), in the brain of
normal slices. With `--run` (a `run_train.py` model directory; its newest checkpoint, the
generators' weight average where it has one, the discriminators' trained weights), on the split's
normal slices: the input and G_n2t's raw output (before the attention composes it), inside the
thresholded A_n and in the brain; what the composition changes (translation - input) inside A_n;
and the gradient, with respect to the translation, of the generator's adversarial loss through D_t
(the change D_t asks G_n2t for), inside A_n and in the brain; and the same gradient on the split's
real tumor slices. A generator that paints streaks a discriminator asks for shows them in both.
Prints one JSON object and a table.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
BATCH = 32
GROWN = 3          # pixels the lesion is grown by before "the brain around it" is taken


def define_flags() -> None:
    """The command line's flags, defined when run as a command only (tests import the module)."""
    from ssagan_tf.data.schema import SPLITS

    flags.DEFINE_string("data_dir", None, "Converted dataset whose --split is read.")
    flags.DEFINE_string("run", None, "A run_train.py model directory: measure its G_n2t and D_t too.")
    flags.DEFINE_enum("split", "val", list(SPLITS), "Split whose slices are measured.")
    flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples of the intervals.", lower_bound=1)


def _brains(images: np.ndarray) -> np.ndarray:
    from ssagan_tf import lesions

    if not len(images):
        return np.zeros((0,) + images.shape[1:3], bool)
    return np.concatenate([lesions.brain_mask(images[i:i + BATCH, ..., :1]).numpy()[..., 0] > 0.5
                           for i in range(0, len(images), BATCH)])


def median_interval(values, resamples: int, seed: int = 0) -> list:
    """[median, low, high]: the median of the finite values and its 95% bootstrap interval."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return [float("nan")] * 3
    medians = np.median(np.random.default_rng(seed).choice(finite, (resamples, len(finite))), axis=1)
    return [float(np.median(finite)), float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def _row(images, regions, resamples: int) -> dict:
    """{"slices", "bands": {"low-high": [median, low, high]}} of `metrics.stripe_ratios`."""
    from ssagan_tf import metrics

    regions = np.asarray(regions, bool)
    bands = {f"{low:g}-{high:g}": median_interval(metrics.stripe_ratios(images, regions, (low, high)), resamples)
             for low, high in metrics.STRIPE_BANDS}
    counted = int((regions.reshape(len(regions), -1).sum(axis=1) >= metrics.STRIPE_MIN_PIXELS).sum()) \
        if len(regions) else 0
    return {"slices": counted, "bands": bands}


def real_slices(arrays: dict, resamples: int) -> dict:
    """name -> row for the real slices (lesions, the brain around them, normal slices' brain)."""
    import scipy.ndimage as ndi

    tumor = (arrays["label"] == 1) & (arrays["has_mask"] > 0)
    normal = arrays["label"] == 0
    lesions_ = arrays["mask"][tumor][..., 0] > 0.5
    brain_t = _brains(arrays["image"][tumor])
    around = np.stack([b & ~ndi.binary_dilation(m, iterations=GROWN) for b, m in zip(brain_t, lesions_)]) \
        if len(lesions_) else lesions_
    return {"real lesions": _row(arrays["image"][tumor], lesions_, resamples),
            "real brain around lesions": _row(arrays["image"][tumor], around, resamples),
            "real brain of normal slices": _row(arrays["image"][normal], _brains(arrays["image"][normal]), resamples)}


def adversarial_gradient(discriminator, images: np.ndarray, gan_loss: str) -> np.ndarray:
    """d(generator's adversarial loss through `discriminator`) / d(images), per slice."""
    import tensorflow as tf

    from ssagan_tf import losses

    parts = []
    for i in range(0, len(images), BATCH):
        x = tf.constant(images[i:i + BATCH], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(losses.generator_adversarial_loss(discriminator(x), gan_loss))
        parts.append(tape.gradient(loss, x).numpy())
    return np.concatenate(parts)


def run_networks(arrays: dict, model_dir: str, resamples: int) -> dict:
    """name -> row for a training run's G_n2t and D_t on the split's normal (and tumor) slices."""
    import tensorflow as tf

    from ssagan_tf.models.ssa import translate
    from ssagan_tf.training.checkpoints import restore_models

    models, cfg, run_config = restore_models(model_dir, discriminators=True)
    if models.attention_normal is None:
        raise ValueError(f"{model_dir}: a run without attention networks (system {cfg.system!r}); this measures "
                         "inside A_n")
    tau = float(run_config["tau"])
    gan_loss = run_config.get("gan_loss", "lsgan")
    normal = arrays["image"][arrays["label"] == 0]
    tumor = arrays["image"][arrays["label"] == 1]
    if not len(normal):
        raise ValueError("the split has no normal slices to translate")
    raw, fake, attention = [], [], []
    for i in range(0, len(normal), BATCH):
        x = tf.constant(normal[i:i + BATCH], tf.float32)
        raw.append(models.normal_to_tumor(x).numpy())
        out, att = translate(models.normal_to_tumor, models.attention_normal, x, tau=tau)
        fake.append(out.numpy())
        attention.append(att.numpy()[..., 0] >= tau)
    raw, fake, attended = np.concatenate(raw), np.concatenate(fake), np.concatenate(attention)
    brain = _brains(normal)
    grad = adversarial_gradient(models.disc_tumor, fake, gan_loss)
    result = {"input, in A_n": _row(normal, attended, resamples),
              "G_n2t raw output, in A_n": _row(raw, attended, resamples),
              "input, brain": _row(normal, brain, resamples),
              "G_n2t raw output, brain": _row(raw, brain, resamples),
              "translation - input, in A_n": _row(fake - normal, attended, resamples),
              "D_t gradient on translations, in A_n": _row(grad, attended, resamples),
              "D_t gradient on translations, brain": _row(grad, brain, resamples)}
    if len(tumor):
        result["D_t gradient on real tumors, brain"] = _row(adversarial_gradient(models.disc_tumor, tumor, gan_loss),
                                                            _brains(tumor), resamples)
    result["A_n share of pixels"] = float(attended.mean())
    return result


def main(argv) -> None:
    del argv
    from ssagan_tf.data import schema
    from ssagan_tf.data.pipeline import load_split_arrays

    if not FLAGS.data_dir:
        raise app.UsageError("--data_dir is required")
    arrays = load_split_arrays(schema.open(FLAGS.data_dir), FLAGS.split)
    result = {"split": FLAGS.split, **real_slices(arrays, FLAGS.resamples)}
    if FLAGS.run:
        result.update(run_networks(arrays, FLAGS.run, FLAGS.resamples))
    # NaN (no finite ratio) as null: strict JSON readers refuse NaN.
    print(json.dumps(result, indent=1).replace("NaN", "null"))
    from ssagan_tf import metrics

    bands = [f"{low:g}-{high:g}" for low, high in metrics.STRIPE_BANDS]
    print(f"\nhorizontal over vertical streak power ({FLAGS.split} split), by band in cycles per pixel; median "
          "[95% CI] over slices")
    print(f"{'region':40} {'slices':>6}  " + "  ".join(f"{b:^19}" for b in bands))
    for name, row in result.items():
        if isinstance(row, dict):
            cells = "  ".join(f"{m:5.2f} [{lo:5.2f}, {hi:5.2f}]" for m, lo, hi in (row["bands"][b] for b in bands))
            print(f"{name:40} {row['slices']:6d}  {cells}")


if __name__ == "__main__":
    from ssagan_tf import cli

    define_flags()
    cli.run(main, __doc__)
