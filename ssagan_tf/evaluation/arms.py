"""The training sets of the arms: the paper's four (section IV: real only, real + classic
augmentation, real + synthetic, real + synthetic + classic) and the cheap baselines MixUp and
CutMix (each with or without classic augmentation).

Synthetic slices come from the training slices only: real normal slices translated
`normal_to_tumor` become synthetic tumor slices and real tumor slices translated
`tumor_to_normal` become synthetic normal slices, `ratio` synthetic per real slice of each class
(an augmenter without a tumor -> normal direction, copy-paste, adds tumor slices only; the
evaluation's `--tumors_only` and `--normals_only` keep one class of an augmenter's slices). Classic
augmentation and mixing are applied later, by the classifiers' input pipeline
(`ssagan_tf.judge.datasets.train_dataset`).
"""

from __future__ import annotations

import numpy as np

from ssagan_tf.data import folds
from ssagan_tf.exported import Translation
from ssagan_tf.synthetic import STREAMS, select_sources, synthetic_count


def arm_parts(arm: str) -> tuple:
    """'cutmix+classic' -> ('cutmix', True); 'classic' -> ('none', True); 'synthetic' -> ('synthetic', False)."""
    base, _, extra = arm.partition("+")
    if base == "classic":
        return "none", True
    return base, extra == "classic"


def synthetic_slices(synthetic_tumor: Translation, synthetic_normal: Translation,
                     real_labels: np.ndarray, ratio: float, seed: int) -> tuple:
    """Images, labels and source indices of the synthetic part of a training set.

    synthetic_tumor: `normal_to_tumor` applied to every real train normal slice (in order), or
        None: no synthetic tumor slices (`--normals_only`).
    synthetic_normal: `tumor_to_normal` applied to every real train tumor slice (in order), or
        None: no synthetic normal slices (copy-paste, which cannot remove a lesion; `--tumors_only`).
    Returns (images [M, H, W, C], labels [M], selected: {"tumor": idx, "normal": idx}).
    """
    if synthetic_tumor is None and synthetic_normal is None:
        raise ValueError("synthetic_slices: neither class has synthetic slices")
    counts = {"tumor": synthetic_count(ratio, int(np.sum(real_labels == 1))),
              "normal": synthetic_count(ratio, int(np.sum(real_labels == 0)))}
    shape = (synthetic_tumor if synthetic_tumor is not None else synthetic_normal).image.shape[1:]
    empty = Translation(*(np.zeros((0,) + shape, np.float32),) * 3)
    if synthetic_tumor is None:
        counts["tumor"], synthetic_tumor = 0, empty
    if synthetic_normal is None:
        counts["normal"], synthetic_normal = 0, empty
    pools = {"tumor": synthetic_tumor.image, "normal": synthetic_normal.image}
    streams = {"tumor": STREAMS["normal_to_tumor"], "normal": STREAMS["tumor_to_normal"]}
    selected = {name: select_sources(len(pools[name]), counts[name], seed, streams[name])
                for name in ("tumor", "normal")}
    images = np.concatenate([pools["tumor"][selected["tumor"]], pools["normal"][selected["normal"]]])
    labels = np.r_[np.ones(counts["tumor"], np.int64), np.zeros(counts["normal"], np.int64)]
    return images.astype(np.float32), labels, selected


# The classes a synthetic arm may take from an augmenter, and which translation makes each.
SYNTHETIC_CLASSES = {"tumor": "normal_to_tumor", "normal": "tumor_to_normal"}


def keep_classes(synthetic: tuple, classes: tuple) -> tuple:
    """The pair (synthetic tumor, synthetic normal) with the classes not in `classes` set to None:
    ("tumor",) keeps the normal->tumor translations only, ("normal",) the tumor->normal ones."""
    unknown = set(classes) - set(SYNTHETIC_CLASSES)
    if unknown or not classes:
        raise ValueError(f"synthetic classes {sorted(classes)}: choose from {sorted(SYNTHETIC_CLASSES)}")
    to_tumor, to_normal = synthetic
    kept = (to_tumor if "tumor" in classes else None, to_normal if "normal" in classes else None)
    if all(part is None for part in kept):
        raise ValueError(f"the augmenter makes no synthetic {' or '.join(classes)} slices")
    return kept


def keep_tumor_cases(train: dict, fraction: float, seed: int = 0) -> tuple:
    """The low-data regime: `train` with the tumor slices of only round(fraction x cases with tumor
    slices) cases (at least one; cases drawn with `seed`). Normal slices all stay. Returns
    (arrays, sorted kept case ids)."""
    tumor = train["label"] == 1
    names = np.array([c.decode() if isinstance(c, bytes) else str(c) for c in train["case_id"]], dtype=object)
    kept = folds.kept_tumor_cases(names[tumor], fraction, seed)
    if fraction >= 1.0 or not kept:
        return train, kept
    keep = ~tumor | np.isin(names, kept)
    return {k: v[keep] for k, v in train.items()}, kept


def training_set(train: dict, arm: str, synthetic: tuple | None = None, ratio: float = 1.0,
                 seed: int = 0) -> tuple:
    """(images, labels, synthetic_selection) of one arm. `synthetic` is the pair
    (normal_to_tumor of all train normal slices, tumor_to_normal of all train tumor slices),
    required for the synthetic arms; the classic part is applied later, in
    `ssagan_tf.judge.datasets.train_dataset`."""
    images, labels = train["image"], train["label"]
    if arm_parts(arm)[0] != "synthetic":
        return images, labels, None
    if synthetic is None:
        raise ValueError(f"arm {arm!r} needs synthetic slices")
    fake_images, fake_labels, selected = synthetic_slices(*synthetic, labels, ratio, seed)
    return np.concatenate([images, fake_images]), np.r_[labels, fake_labels], selected
