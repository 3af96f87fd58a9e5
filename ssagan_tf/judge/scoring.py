"""The judge at work: a trained judge loaded (`Judge`), and `measure`, the one way training's
validation, augmentation and evaluation translate real slices and have the judge score them.

Two measures of each translation direction:

- **rate**: the fraction of the translations the judge calls the target class (the **tumor
  rate** of normal->tumor outputs, the **normal rate** of tumor->normal ones). The unchanged
  inputs give the floor, real slices of the target class the ceiling.
- **KID** (kernel inception distance) between the translations and real slices of the target
  class in the judge's feature space (the ResNet18's global-average-pooled features), with the
  inputs against the target (what no translation scores) and two case-disjoint halves of the real
  target slices (what a perfect translation scores) as references.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from ssagan_tf import metrics
from ssagan_tf.data.schema import DIRECTIONS, LABELS, SOURCE_DOMAIN, TARGET_DOMAIN
from ssagan_tf.judge.config import JUDGE_MODEL, read_judge_info


class Judge:
    """A trained judge, loaded: `score(images)` -> (tumor probabilities [N], features [N, d])."""

    def __init__(self, path: str):
        self.path = path
        self.info = read_judge_info(path)
        model = keras.models.load_model(os.path.join(path, JUDGE_MODEL), compile=False)
        both = keras.Model(model.inputs, [model.outputs[0], model.get_layer(self.info["feature_layer"]).output])
        self._call = tf.function(lambda x: both(x, training=False), reduce_retracing=True)
        self.image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        self.threshold = float(self.info["threshold"])

    @property
    def test_auc(self) -> float:
        return float(self.info["scores"].get("test", {}).get("auc", float("nan")))

    def check_shape(self, image_shape) -> None:
        if tuple(image_shape) != self.image_shape:
            raise ValueError(f"the judge at {self.path} takes slices {self.image_shape}, these are "
                             f"{tuple(image_shape)}: train a judge on this dataset")

    def score(self, images, batch_size: int = 64) -> tuple:
        images = np.asarray(images, np.float32)
        self.check_shape(images.shape[1:])
        logits, features = [], []
        for start in range(0, len(images), batch_size):
            logit, feature = self._call(tf.constant(images[start:start + batch_size]))
            logits.append(np.asarray(logit, np.float64).ravel())
            features.append(np.asarray(feature, np.float64))
        if not logits:
            return np.zeros(0), np.zeros((0, 0))
        return 1.0 / (1.0 + np.exp(-np.concatenate(logits))), np.concatenate(features)


def translation_measures(judge: Judge, synthetic, inputs, real_target, target_is_tumor: bool,
                         target_case_ids=None, seed: int = 0, subsets: int = 100, subset_size: int = 1000) -> dict:
    """How one translation direction looks to the judge. `synthetic` are the translations of
    `inputs` (real slices of the source class); `real_target` are real slices of the target class.

    Returns the rate (fraction called the target class) of the synthetic slices, of the inputs
    (the floor) and of the real target slices (the ceiling), and KID (mean, std over subsets) of
    synthetic vs target, of inputs vs target and of two case-disjoint halves of the target."""
    p_synthetic, f_synthetic = judge.score(synthetic)
    p_inputs, f_inputs = judge.score(inputs)
    p_target, f_target = judge.score(real_target)
    rate = {name: metrics.class_rate(p, target_is_tumor, judge.threshold)
            for name, p in (("synthetic", p_synthetic), ("inputs", p_inputs), ("real_target", p_target))}
    cases = np.arange(len(f_target)) if target_case_ids is None else np.asarray(target_case_ids)
    first, second = metrics.split_by_case(cases, seed)
    kid = {"synthetic": metrics.kernel_inception_distance(f_synthetic, f_target, subsets, subset_size, seed),
           "inputs": metrics.kernel_inception_distance(f_inputs, f_target, subsets, subset_size, seed),
           "real_halves": metrics.kernel_inception_distance(f_target[first], f_target[second], subsets,
                                                            subset_size, seed)}
    return {"target": "tumor" if target_is_tumor else "normal", "slices": int(len(p_synthetic)),
            "rate": rate, "kid": kid}


def _translations(translator, direction: str, arrays: dict, rows: np.ndarray, batch_size: int | None) -> np.ndarray:
    """The translations of `arrays`' slices at `rows` by `direction` (see `measure`)."""
    if isinstance(translator, Mapping):
        made = np.asarray(translator[direction])
        if len(made) != len(rows):
            raise ValueError(f"{direction}: {len(made)} translations given for {len(rows)} source slices")
        return made
    step = batch_size or len(rows)
    return np.concatenate([np.asarray(translator(direction, {key: value[rows[start:start + step]]
                                                             for key, value in arrays.items()}))
                           for start in range(0, len(rows), step)])


def measure(judge: Judge, translator, arrays: dict, directions=DIRECTIONS, batch_size: int | None = None,
            seed: int = 0) -> dict:
    """Translate, then score: {direction: `translation_measures`} for each of `directions` on the
    real slices `arrays` ({"image", "label", "case_id"} of a split as `pipeline.load_split_arrays`
    gives it, or of a sample; further keys ride along to the translator). A direction translates
    the slices of its source class, in order, and compares them with those of its target class;
    a direction with fewer than 2 slices of either is left out.

    `translator` is either a function `translator(direction, part)` -> the translations of
    `part["image"]`, called with `part` = `arrays` at up to `batch_size` (None: all) of the
    direction's source slices at a time, in order; or a mapping direction -> the translations of
    all of them, in order, when they are made already. The chunks are the caller's, so that each
    translates in the batches it always has (a generator's output may differ in its last bits
    with the batch it runs in)."""
    out = {}
    for direction in directions:
        source = np.asarray(arrays["label"]) == LABELS[SOURCE_DOMAIN[direction]]
        target = np.asarray(arrays["label"]) == LABELS[TARGET_DOMAIN[direction]]
        if source.sum() < 2 or target.sum() < 2:
            continue
        synthetic = _translations(translator, direction, arrays, np.flatnonzero(source), batch_size)
        out[direction] = translation_measures(judge, synthetic, arrays["image"][source], arrays["image"][target],
                                              target_is_tumor=TARGET_DOMAIN[direction] == "tumor",
                                              target_case_ids=arrays["case_id"][target], seed=seed)
    return out
