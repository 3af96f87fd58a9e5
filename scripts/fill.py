"""Healthy fill of an exported tumor->normal, measured where the truth is known:

    python -m scripts.fill --data_dir=DATA --model=EXPORT [--split=test|unseen] [--seed=0]

`--split=unseen` takes the slices of every split whose patients the export's training never saw
(as its export.json records them): a fold's export of `run_train.py --folds=K --fold=k` is then
scored on that fold's test patients, an export from another cohort on every patient.
Every normal slice of the split gets the lesion of one of the split's labelled tumor slices
transplanted into its brain (a slice where none can be placed is left out) (`validation.transplanted_pairs`, as training's validation does:
seeded, the k-th normal slice taking the (k mod n)-th such tumor slice). The export's
tumor->normal paints inside the lesion's mask (its `tumor_to_normal_in_masks` signature: the mask
in A_t's place), and what it paints is compared with the real tissue there (`metrics.fill_scores`,
as the BraTS 2023 inpainting task scores: L1, PSNR and SSIM inside the mask). Three references
are scored alike: the lesioned slice left as it is (no fill at all), the mask filled with the
median of the slice's brain tissue around it (a fill that knows nothing), and the mask filled by
biharmonic inpainting from its border (scikit-image's `inpaint_biharmonic`: the smoothest surface
that meets the tissue around the mask, a classical fill that learns nothing). Prints one JSON
object (means with 95% bootstrap intervals over slices, seeded) and a table. A fill worth having
beats every reference.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
FILL_BATCH = 64
UNSEEN = "unseen"


def define_flags() -> None:
    """The command line's flags, defined when run as a command only (so that tests may import the
    module beside other entry points that define flags of the same names)."""
    from ssagan_tf.data.schema import SPLITS

    flags.DEFINE_string("data_dir", None, "Converted dataset whose --split is used.")
    flags.DEFINE_string("model", None, "Exported model: a TF Serving model directory or a version directory.")
    flags.DEFINE_enum("split", "test", [*SPLITS, UNSEEN], "Split whose normal slices get the lesions and whose "
                      f"tumor slices give them; {UNSEEN}: every split's slices of the patients the export's "
                      "training never saw (its export.json).")
    flags.DEFINE_integer("seed", 0, "Seed of the transplants.")
    flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples of the intervals.", lower_bound=1)


def median_fill(lesioned: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each mask filled, per channel, with the median of the slice's brain outside it."""
    from ssagan_tf import lesions

    brains = np.concatenate([lesions.brain_mask(lesioned[i:i + FILL_BATCH]).numpy()[..., 0] > 0.5
                             for i in range(0, len(lesioned), FILL_BATCH)])
    out = lesioned.copy()
    for k, (image, mask, brain) in enumerate(zip(lesioned, masks[..., 0] > 0.5, brains)):
        tissue = brain & ~mask if (brain & ~mask).any() else ~mask
        for c in range(image.shape[-1]):
            out[k, ..., c][mask] = np.median(image[..., c][tissue])
    return out


def biharmonic_fill(lesioned: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each mask filled by biharmonic inpainting from the pixels around it, every channel alike
    (`skimage.restoration.inpaint_biharmonic`); the pixels outside the masks are unchanged."""
    from skimage.restoration import inpaint_biharmonic

    out = lesioned.copy()
    for k, (image, mask) in enumerate(zip(lesioned, masks[..., 0] > 0.5)):
        if mask.any():
            painted = inpaint_biharmonic(image.astype(np.float64), mask, channel_axis=-1)
            out[k][mask] = painted[mask].astype(out.dtype)
    return out


# The fills scored, in the table's order: the model's and the references'.
FILLS = ("model", "unfilled", "median", "biharmonic")


def unseen_arrays(dataset, version_dir: str) -> tuple[dict, dict]:
    """The slices of every split of `dataset` (a `schema.Dataset`) whose patients the export in
    `version_dir` never saw in training (`load_split_arrays`' arrays), and {"patients": unseen,
    "of": all patients of the dataset}; ValueError when its export.json does not say whom it saw,
    or when it saw every patient."""
    from ssagan_tf.data import combined, folds, schema
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.evaluation.crossval import export_cohort, patients_seen

    cohort = export_cohort(version_dir)
    if not cohort or cohort.get("seen_patients") is None:
        raise ValueError(f"{version_dir}: its export.json does not say which patients it was trained on; export "
                         f"the training run again (python -m ssagan_tf.export), or choose a --split")
    seen = patients_seen(cohort, combined.patient_namespace(dataset.manifest))
    owners = folds.case_patients(dataset.manifest)
    unseen = sorted({p for p in owners.values() if p not in seen})
    if not unseen:
        raise ValueError(f"{dataset.data_dir}: the export in {version_dir} was trained on every patient of this "
                         "dataset; no patient is left to score it on")
    parts = [load_split_arrays(dataset, split) for split in schema.SPLITS]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = np.array([owners[c.decode() if isinstance(c, bytes) else str(c)] not in seen for c in arrays["case_id"]],
                    bool)
    return {k: v[keep] for k, v in arrays.items()}, {"patients": len(unseen), "of": len(set(owners.values()))}


def fill(arrays: dict, translator, seed: int, resamples: int) -> dict | None:
    """{"slices", and per fill of `FILLS`: {l1, psnr, ssim: [mean, low, high]}}, or None when the
    split lacks normal slices or labelled tumor slices."""
    from ssagan_tf import metrics
    from ssagan_tf.training.validation import transplanted_pairs

    pairs = transplanted_pairs(arrays, seed)
    if pairs is None:
        return None
    originals, lesioned, masks = pairs
    filled = np.concatenate([translator.in_masks(lesioned[i:i + FILL_BATCH], masks[i:i + FILL_BATCH],
                                                 "tumor_to_normal")[0] for i in range(0, len(lesioned), FILL_BATCH)])
    result = {"slices": int(len(originals))}
    fills = {"model": filled, "unfilled": lesioned, "median": median_fill(lesioned, masks),
             "biharmonic": biharmonic_fill(lesioned, masks)}
    for name in FILLS:
        images = fills[name]
        scores = metrics.fill_scores(originals, images, masks)
        result[name] = {k: metrics.mean_interval(v, resamples, seed) for k, v in scores.items()}
    return result


def main(argv) -> None:
    del argv
    from ssagan_tf.data import schema
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.export_layout import FILL_IN_MASKS
    from ssagan_tf.exported import load_translator

    if not FLAGS.data_dir or not FLAGS.model:
        raise app.UsageError("--data_dir and --model are required")
    dataset = schema.open(FLAGS.data_dir)
    translator = load_translator(FLAGS.model, kinds=("version", "base"))
    if FILL_IN_MASKS not in translator.functions:       # refused before the split is read
        raise ValueError(f"{FLAGS.model}: this export has no {FILL_IN_MASKS} signature (written by an "
                         "older version); export the training run again (python -m ssagan_tf.export)")
    translator.check_input_shape((dataset.image_size, dataset.image_size, dataset.channels))
    if FLAGS.split == UNSEEN:
        arrays, patients = unseen_arrays(dataset, translator.path)
        where = f"{patients['patients']} of {patients['of']} patients, unseen in training"
    else:
        arrays, patients, where = load_split_arrays(dataset, FLAGS.split), None, f"{FLAGS.split} split"
    result = fill(arrays, translator, FLAGS.seed, FLAGS.resamples)
    if result is None:
        raise ValueError(f"{FLAGS.data_dir}: the {where} needs normal slices and tumor slices with masks to "
                         "transplant lesions")
    if patients:
        result["unseen_patients"] = patients
    # NaN (no finite score) as null: strict JSON readers refuse NaN.
    print(json.dumps(result, indent=1, default=str).replace("NaN", "null"))
    print(f"\nhealthy fill inside {result['slices']} transplanted lesion masks ({where}, seed {FLAGS.seed}); "
          "mean [95% CI]")
    print("fill       L1                    PSNR (dB)             SSIM")
    for name in FILLS:
        r = result[name]
        print(f"{name:10} " + "  ".join(f"{r[k][0]:.3f} [{r[k][1]:.3f}, {r[k][2]:.3f}]" for k in ("l1", "psnr", "ssim")))


if __name__ == "__main__":
    from ssagan_tf import cli

    define_flags()
    cli.run(main, __doc__)
