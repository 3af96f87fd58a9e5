"""Training ResNet18 tumor/normal classifiers (the judge, and the evaluation's arms), with early
stopping on the validation split.

Tracing a ResNet18 train step costs several seconds on CPU, more than training one on a few
hundred small slices, so one compiled model is reused for every (arm, seed) run: each run
overwrites its weights with a freshly seeded initialisation and resets the optimizer, which makes
it equivalent to building a new model.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import keras

import numpy as np
import tensorflow as tf

from ssagan_tf.judge.resnet import build_resnet18


@dataclass(frozen=True)
class TrainedClassifier:
    model: keras.Model
    epochs_run: int
    best_epoch: int          # 1-based epoch whose weights were kept
    best_val_loss: float
    history: dict


class Classifier:
    """A compiled ResNet18 (Adam, binary cross-entropy on the tumor logit) that `reset` returns
    to a seeded fresh start."""

    def __init__(self, image_size: int, channels: int, width: int, learning_rate: float, precision: str = "fp32",
                 weight_decay: float = 0.0, lr_schedule: str = "constant"):
        self._shape = (image_size, channels, width, precision)
        self.learning_rate, self.lr_schedule = learning_rate, lr_schedule
        self.model = build_resnet18(image_size, channels, width, precision)
        # XLA off: on CPU its compile time outweighs its speed-up at these sizes. Loss scaling only
        # for fp16 (bf16 has float32's exponent range). Weight decay decoupled from the gradient
        # (AdamW, Loshchilov & Hutter 2019), as modern ResNet recipes use it.
        optimizer = (keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay) if weight_decay
                     else keras.optimizers.Adam(learning_rate))
        if precision == "fp16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.model.compile(optimizer=optimizer,
                           loss=keras.losses.BinaryCrossentropy(from_logits=True), jit_compile=False)
        self.model.optimizer.build(self.model.trainable_variables)
        self._optimizer_start = [v.numpy() for v in self.model.optimizer.variables]

    def epoch_learning_rate(self, epoch: int, epochs: int) -> float:
        """The learning rate of 0-based `epoch`: constant, or cosine from the base rate towards 0."""
        if self.lr_schedule == "cosine":
            return float(self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1))))
        return float(self.learning_rate)

    def reset(self, seed: int) -> None:
        """Seeded initial weights (those of `build_resnet18` under `seed`) and a fresh optimizer."""
        # Keras initialisers without an explicit seed draw theirs from Python's `random`. Not
        # `keras.utils.set_random_seed`: its `tf.random.set_seed` clears TensorFlow's kernel cache,
        # and re-optimising the train step graph afterwards costs seconds per run.
        random.seed(seed)
        self.model.set_weights(build_resnet18(*self._shape).get_weights())
        for variable, value in zip(self.model.optimizer.variables, self._optimizer_start):
            variable.assign(value)


class EpochLines(keras.callbacks.Callback):
    """One console line per epoch: `<label> epoch k of N: loss .., val loss .. (s/epoch, ETA)`;
    the ETA is for all N epochs (early stopping may end sooner)."""

    def __init__(self, label: str, epochs: int, log=print):
        super().__init__()
        self.label, self.epochs, self.log = label, epochs, log
        self.started = None

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        done = epoch + 1
        per_epoch = (time.perf_counter() - self.started) / done
        self.log(f"{self.label} epoch {done} of {self.epochs}: loss {logs.get('loss', float('nan')):.3f}, "
                 f"val loss {logs.get('val_loss', float('nan')):.3f} ({per_epoch:.1f} s/epoch, "
                 f"ETA {format_seconds(per_epoch * (self.epochs - done))} at most)")


def format_seconds(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = int(round(max(seconds, 0.0)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def train_classifier(classifier: Classifier, train: tf.data.Dataset, val: tf.data.Dataset, epochs: int,
                     patience: int, seed: int, verbose: int = 0, progress: str = "", log=print,
                     class_weight: dict | None = None) -> TrainedClassifier:
    """Fit the classifier from a fresh start under `seed`; keep the weights of the epoch with the
    lowest validation loss. `progress`: a label for one console line per epoch (`EpochLines`).
    `class_weight` ({label: weight}) weights each training slice's loss by its class (give `val`
    the same weights, `datasets.eval_dataset(..., class_weight)`, to stop on a weighted loss too)."""
    classifier.reset(seed)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                            restore_best_weights=True)
    callbacks = [stopper] + ([EpochLines(progress, epochs, log)] if progress else [])
    # shuffle=False: `train` is already shuffled, seeded, inside tf.data.
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch: classifier.epoch_learning_rate(epoch, epochs))
    history = classifier.model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks + [schedule],
                                   shuffle=False, class_weight=class_weight,
                                   verbose=verbose).history
    val_loss = np.asarray(history["val_loss"], np.float64)
    best = int(np.nanargmin(val_loss)) if np.isfinite(val_loss).any() else len(val_loss) - 1
    return TrainedClassifier(model=classifier.model, epochs_run=len(val_loss), best_epoch=best + 1,
                             best_val_loss=float(val_loss[best]),
                             history={k: [float(v) for v in vals] for k, vals in history.items()})


def predict_probabilities(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """Tumor probabilities [N] for a dataset of (image, label) batches."""
    logits = model.predict(dataset, verbose=0)
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64).ravel()))
