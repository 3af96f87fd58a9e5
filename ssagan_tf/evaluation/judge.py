"""The judge: an independent tumor/normal classifier that says whether translations work.

It is a ResNet18 trained once per dataset on the real training slices only (classic
augmentation, early stopping on the real validation split), and its own test AUC is recorded.
Training, augmentation and evaluation then reuse it for two measures of a translation:

- **tumor rate**: the fraction of normal->tumor outputs it calls tumor (and the **normal rate**,
  the fraction of tumor->normal outputs it calls normal). The unchanged inputs give the floor,
  real slices of the target class the ceiling.
- **KID** (kernel inception distance) between synthetic and real slices of the target class in
  its feature space (the ResNet18's global-average-pooled features), with the inputs against the
  target (what no translation scores) and two case-disjoint halves of the real target slices
  (what a perfect translation scores) as references.

    python -m ssagan_tf.evaluation.judge --data_dir=DATA --output_dir=JUDGE

writes JUDGE/judge.keras and JUDGE/judge.json (settings, validation and test metrics).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from ssagan_tf import io as durable
from ssagan_tf.precision import PRECISIONS

JUDGE_MODEL = "judge.keras"
JUDGE_INFO = "judge.json"
FEATURE_LAYER = "pool"
FORMAT = 1


@dataclass(frozen=True)
class JudgeConfig:
    data_dir: str
    output_dir: str
    width: int = 32
    epochs: int = 30
    patience: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    classic: bool = True
    threshold: float = 0.5
    precision: str = "auto"
    balance_classes: bool = False

    def __post_init__(self):
        """Check the values, every problem in one ValueError (`check_output_dir` checks the folder)."""
        problems = [f"{name} must be >= 1, got {getattr(self, name)}" for name in ("width", "epochs", "batch_size")
                    if getattr(self, name) < 1]
        if self.patience < 0:
            problems.append(f"patience must be >= 0, got {self.patience}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning_rate must be finite and > 0, got {self.learning_rate}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold must be in (0, 1), got {self.threshold}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if problems:
            raise ValueError("; ".join(problems))


def is_judge_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, JUDGE_INFO)) and os.path.isfile(os.path.join(path, JUDGE_MODEL))


def check_output_dir(path: str) -> None:
    """The output may be new, empty, or an earlier judge holding nothing but the judge's two files
    (replaced whole); nothing else, so that replacing it never removes a file the judge did not write."""
    if os.path.isfile(path):
        raise ValueError(f"--output_dir {path} is a file")
    if os.path.isdir(path) and os.listdir(path) and not is_judge_dir(path):
        raise ValueError(f"--output_dir {path} is not empty and holds no judge ({JUDGE_INFO}); "
                         "choose a new folder")
    others = sorted(set(os.listdir(path)) - {JUDGE_MODEL, JUDGE_INFO}) if os.path.isdir(path) else []
    if others:
        raise ValueError(f"--output_dir {path} holds files besides a judge ({', '.join(others[:3])}); nothing there "
                         "is replaced: move them out or choose a new folder")


def _dataset_summary(manifest, data: dict) -> dict:
    return {"image_size": manifest.image_size, "channels": manifest.channels,
            "slices": {split: {"normal": int(np.sum(a["label"] == 0)), "tumor": int(np.sum(a["label"] == 1))}
                       for split, a in data.items()}}


def train_judge(config: JudgeConfig, log=print) -> dict:
    """Train the judge on `config.data_dir`'s real training slices and write it to
    `config.output_dir` (staged next to it and moved into place whole). Returns judge.json."""
    import tensorflow as tf

    from ssagan_tf import metrics
    from ssagan_tf.data import schema
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.evaluation import arms
    from ssagan_tf.evaluation.classifier import Classifier, predict_probabilities, train_classifier
    from ssagan_tf.precision import choose_precision

    check_output_dir(config.output_dir)
    dataset = schema.open(config.data_dir)
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
    weights = {split: arms.balanced_class_weights(data[split]["label"]) if config.balance_classes else None
               for split in ("train", "val")}
    if config.balance_classes:
        log("judge: class-balanced loss (weights normal {0:.3f} / tumor {1:.3f} on train, {2:.3f} / {3:.3f} on val)"
            .format(weights["train"][0], weights["train"][1], weights["val"][0], weights["val"][1]))
    trained = train_classifier(
        classifier, arms.train_dataset(train["image"], train["label"], config.batch_size, config.seed, config.classic),
        arms.eval_dataset(val["image"], val["label"], config.batch_size, weights["val"]), config.epochs,
        config.patience, config.seed, progress="judge", log=log, class_weight=weights["train"])
    scores = {}
    for split in ("val", "test"):
        arrays = data[split]
        if len(arrays["label"]) == 0:
            continue
        probabilities = predict_probabilities(trained.model, arms.eval_dataset(arrays["image"], arrays["label"],
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


def read_judge_info(path: str) -> dict:
    """judge.json of the judge at `path`; ValueError naming what is missing."""
    if not is_judge_dir(path):
        raise ValueError(f"{path} is not a judge: it needs {JUDGE_MODEL} and {JUDGE_INFO} "
                         "(make one with `python -m ssagan_tf.evaluation.judge`)")
    try:
        with open(os.path.join(path, JUDGE_INFO)) as f:
            info = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{os.path.join(path, JUDGE_INFO)}: unreadable ({err})")
    if info.get("format") != FORMAT:
        raise ValueError(f"{os.path.join(path, JUDGE_INFO)}: format {info.get('format')!r}, this version reads "
                         f"{FORMAT}; train the judge again")
    return info


def check_judge_for(path: str, image_size: int, channels: int) -> dict:
    """judge.json of the judge at `path`, which must take `image_size`^2 x `channels` slices;
    ValueError otherwise."""
    info = read_judge_info(path)
    shape = info["dataset"]["image_size"], info["dataset"]["channels"]
    if shape != (image_size, channels):
        raise ValueError(f"{path}: the judge takes {shape[0]}^2 x {shape[1]} channel slices, the data are "
                         f"{image_size}^2 x {channels}; train a judge on this dataset")
    return info


class Judge:
    """A trained judge, loaded: `score(images)` -> (tumor probabilities [N], features [N, d])."""

    def __init__(self, path: str):
        import keras
        import tensorflow as tf

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
        import tensorflow as tf

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
    from ssagan_tf import metrics

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


def both_directions(judge: Judge, arrays: dict, to_tumor, to_normal, seed: int = 0) -> dict:
    """`translation_measures` of both directions on one split's slices (`arrays` as from
    `pipeline.load_split_arrays`): `to_tumor` are the translations of its normal slices (in order),
    `to_normal` those of its tumor slices. A direction whose source or target class has fewer than 2
    slices is left out."""
    tumor = np.asarray(arrays["label"]) == 1
    out = {}
    for name, synthetic, source in (("normal_to_tumor", to_tumor, ~tumor), ("tumor_to_normal", to_normal, tumor)):
        if source.sum() < 2 or (~source).sum() < 2:
            continue
        out[name] = translation_measures(judge, synthetic, arrays["image"][source], arrays["image"][~source],
                                         target_is_tumor=name == "normal_to_tumor",
                                         target_case_ids=arrays["case_id"][~source], seed=seed)
    return out


def main(argv):
    from absl import app, flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        config = JudgeConfig(data_dir=f.data_dir, output_dir=f.output_dir, width=f.width, epochs=f.epochs,
                             patience=f.patience, batch_size=f.batch_size, learning_rate=f.learning_rate,
                             seed=f.seed, classic=f.classic, threshold=f.threshold, precision=f.precision,
                             balance_classes=f.balance_classes)
        check_output_dir(config.output_dir)
        from ssagan_tf.data import schema

        schema.open(config.data_dir)
    except (OSError, ValueError) as err:
        raise app.UsageError(str(err))
    info = train_judge(config)
    shown = ", ".join(f"{split} AUC {s['auc']:.3f} (sensitivity {s['sensitivity']:.3f}, specificity "
                      f"{s['specificity']:.3f})" for split, s in info["scores"].items())
    print(f"judge: {config.output_dir} ({info['epochs_run']} epochs, best {info['best_epoch']}; {shown}; "
          f"{info['seconds']} s)")
    return 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string("data_dir", None, "Converted dataset (train, val and test splits) the judge learns and "
                        "scores.")
    flags.DEFINE_string("output_dir", None, f"Where {JUDGE_MODEL} and {JUDGE_INFO} go: a new or empty folder, or "
                        "an earlier judge, which is replaced.")
    flags.DEFINE_integer("width", 32, "ResNet18 base width.")
    flags.DEFINE_integer("epochs", 30, "Maximum training epochs.")
    flags.DEFINE_integer("patience", 5, "Early stopping patience on the validation loss (the best epoch is kept).")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
    flags.DEFINE_integer("seed", 0, "Seed of the initialisation, shuffling and augmentation.")
    flags.DEFINE_bool("classic", True, "Classic augmentation (flip, rotation, translation, crop) while training.")
    flags.DEFINE_float("threshold", 0.5, "Tumor probability at and above which the judge calls a slice tumor.")
    flags.DEFINE_enum("precision", "auto", ["auto", "fp32", "bf16", "fp16"],
                      "Compute precision (auto: bf16 on CPUs with AMX/AVX-512 BF16 and GPUs of capability >= 8.0, "
                      "fp16 on 7.x, else fp32).")
    flags.DEFINE_bool("balance_classes", False, "Weight each slice's loss by n / (2 n_class) of its class, in training "
                      "and in the validation loss that stops it, so that the rarer class (often the normals) counts "
                      "as much as the other.")
    flags.mark_flags_as_required(["data_dir", "output_dir"])


def run(argv=None) -> None:
    """The command line (`python -m ssagan_tf.evaluation.judge`, `ssagan judge`): `ssagan_tf.cli`'s
    endings; exits."""
    import sys

    from ssagan_tf import cli

    _define_flags()
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
