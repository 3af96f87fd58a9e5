"""`train_judge`: the judge trained once per dataset, a ResNet18 on the real training slices only
(classic augmentation, early stopping on the real validation split), its validation and test
scores recorded, and its folder (`config.JUDGE_MODEL`, `config.JUDGE_INFO`) written whole."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict

import numpy as np
import tensorflow as tf

from ssagan_tf import io as durable
from ssagan_tf import metrics
from ssagan_tf.data import schema
from ssagan_tf.data.pipeline import load_split_arrays
from ssagan_tf.judge import datasets
from ssagan_tf.judge.classifier import Classifier, predict_probabilities, train_classifier
from ssagan_tf.judge.config import FEATURE_LAYER, FORMAT, JUDGE_INFO, JUDGE_MODEL, JudgeConfig, check_output_dir
from ssagan_tf.precision import choose_precision


def _dataset_summary(manifest, data: dict) -> dict:
    return {"image_size": manifest.image_size, "channels": manifest.channels,
            "slices": {split: {"normal": int(np.sum(a["label"] == 0)), "tumor": int(np.sum(a["label"] == 1))}
                       for split, a in data.items()}}


def train_judge(config: JudgeConfig, log=print, dataset: schema.Dataset | None = None) -> dict:
    """Train the judge on `config.data_dir`'s real training slices and write it to
    `config.output_dir` (staged next to it and moved into place whole). Returns judge.json.
    `dataset`: what `config.check_inputs()` returned, when the caller checked already."""
    dataset = config.check_inputs() if dataset is None else dataset
    manifest, data = dataset.manifest, {split: load_split_arrays(dataset, split) for split in schema.SPLITS}
    for split in ("train", "val"):
        missing = [name for name, label in schema.LABELS.items() if not np.any(data[split]["label"] == label)]
        if missing:
            raise ValueError(f"{config.data_dir}: the {split} split has no {' or '.join(missing)} slices; the judge "
                             "trains on train and selects its epoch on val")
    choice = choose_precision(config.precision)
    log(f"{choice.describe()} for the judge")
    started = time.time()
    classifier = Classifier(manifest.image_size, manifest.channels, config.width, config.learning_rate,
                            choice.precision)
    train, val = data["train"], data["val"]
    weights = {split: datasets.balanced_class_weights(data[split]["label"]) if config.balance_classes else None
               for split in ("train", "val")}
    if config.balance_classes:
        log("judge: class-balanced loss (weights normal {0:.3f} / tumor {1:.3f} on train, {2:.3f} / {3:.3f} on val)"
            .format(weights["train"][0], weights["train"][1], weights["val"][0], weights["val"][1]))
    trained = train_classifier(
        classifier,
        datasets.train_dataset(train["image"], train["label"], config.batch_size, config.seed, config.classic),
        datasets.eval_dataset(val["image"], val["label"], config.batch_size, weights["val"]), config.epochs,
        config.patience, config.seed, progress="judge", log=log, class_weight=weights["train"])
    scores = {}
    for split in ("val", "test"):
        arrays = data[split]
        if len(arrays["label"]) == 0:
            continue
        probabilities = predict_probabilities(trained.model, datasets.eval_dataset(arrays["image"], arrays["label"],
                                                                                   config.batch_size))
        scores[split] = metrics.classification_metrics(arrays["label"], probabilities, config.threshold)
    info = {"format": FORMAT, "config": asdict(config), "precision": choice.precision,
            "precision_reason": choice.reason, "tensorflow": tf.__version__,
            "dataset": _dataset_summary(manifest, data), "epochs_run": trained.epochs_run,
            "best_epoch": trained.best_epoch, "best_val_loss": trained.best_val_loss,
            "class_weights": {split: ({str(k): v for k, v in w.items()} if w else None) for split, w in weights.items()},
            "threshold": config.threshold, "feature_layer": FEATURE_LAYER, "scores": scores,
            "seconds": round(time.time() - started, 1)}
    parent = os.path.dirname(os.path.abspath(config.output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-judge-", dir=parent)
    try:
        trained.model.save(os.path.join(staging, JUDGE_MODEL))
        with open(os.path.join(staging, JUDGE_INFO), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        check_output_dir(config.output_dir)         # again: nothing else appeared meanwhile
        durable.fsync_tree(staging)
        if os.path.isdir(config.output_dir):
            shutil.rmtree(config.output_dir)
        durable.replace_durably(staging, config.output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info
