"""The evaluation's settings, checked once before any work (docs/method.md, "Augmentation and evaluation"; docs/evaluation.md).

This module imports neither TensorFlow nor Keras, so that `run_evaluate.py` can reject a bad flag
in a fraction of a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ssagan_tf.choices import CLASSIC_IMPLEMENTATIONS
from ssagan_tf.precision import PRECISIONS

# The paper's four training arms (real only, real + classic augmentation, real + synthetic,
# real + synthetic + classic) and the cheap baselines MixUp and CutMix, alone or after classic.
PAPER_ARMS = ("none", "classic", "synthetic", "synthetic+classic")
ARMS = PAPER_ARMS + ("mixup", "mixup+classic", "cutmix", "cutmix+classic")
SYNTHETIC_ARMS = ("synthetic", "synthetic+classic")
# Augmenters built in (ssagan_tf.evaluation.controls), named without a path in --augmenters.
CONTROL_AUGMENTERS = ("copy_paste", "identity")
LR_SCHEDULES = ("constant", "cosine")
# Synthetic:real ratios the paper tried (section IV); 1:1 was its best.
ALLOWED_RATIOS = (0.5, 1.0, 2.0, 3.0)


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything `run_evaluation` needs; built once (from flags or by hand) and never mutated.

    augmenters: (name, exported model directory) pairs, one per system compared (the paper's
        CycleGAN, Spec-CycleGAN, ..., SSA-CycleGAN). A directory is a TF Serving version
        directory or its model base directory (the highest integer version is used).
    arms: a subset of `ARMS`; the synthetic arms need at least one augmenter.
    ratios: synthetic:real ratios per class, each in `ALLOWED_RATIOS`.
    seeds: one classifier per (arm, augmenter, ratio, seed); the spread over seeds is reported.
    width: ResNet18 base width (64 = the paper's ResNet18; 8-16 for demos on CPU).
    tau: attention threshold for the attention metrics (docs/method.md, "The composition"; default 0.1).
    precision: compute precision of the classifiers (`ssagan_tf.precision`; auto picks by hardware).
        The augmenters compute in the precision they were exported in.
    judge: a judge directory (`python -m ssagan_tf.evaluation.judge`) that scores each augmenter's
        test translations (tumor/normal rate, KID); "" = none.
    tumor_fraction: the low-data regime: keep the tumor slices of only this fraction of the
        training cases (at least one case, chosen with a fixed seed; their normal slices and every
        other case's normal slices stay). 1 = all.
    folds: patient-level K-fold cross-validation over the patients of all splits (0 = the
        dataset's own split); an augmenter path may hold `{fold}`, replaced by the fold index.
    fold_seed: the seed of the fold assignment (run_train.py --fold_seed must match).
    weight_decay: decoupled weight decay (AdamW) of the classifier; 0 = Adam.
    lr_schedule: constant, or cosine (from learning_rate to 0 over `epochs`, per epoch).
    classic_impl / classic_strength: classic augmentation by one warp or Keras layers, and a
        factor on its rotation, translation and crop ranges (arms.py).
    bootstrap_resamples: patient-level bootstrap replicates of the confidence intervals.
    """

    data_dir: str
    output_dir: str
    augmenters: tuple = ()
    arms: tuple = ("none", "classic", "synthetic", "synthetic+classic")
    ratios: tuple = (1.0,)
    seeds: tuple = (0, 1, 2)
    epochs: int = 30
    batch_size: int = 32
    patience: int = 5
    width: int = 64
    learning_rate: float = 1e-3
    tau: float = 0.1
    threshold: float = 0.5
    sample_count: int = 4
    verbose: int = 0
    precision: str = "auto"
    judge: str = ""
    tumor_fraction: float = 1.0
    folds: int = 0
    fold_seed: int = 0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    classic_impl: str = "warp"
    classic_strength: float = 1.0
    bootstrap_resamples: int = 2000

    def __post_init__(self):
        check_values(self)

    @property
    def augmenter_names(self) -> tuple:
        return tuple(name for name, _ in self.augmenters)

    @property
    def baseline_arm(self) -> str | None:
        """The arm every other row is compared with: classic augmentation, as in the paper's
        Table I, or real-only when classic was not run."""
        for arm in ("classic", "none"):
            if arm in self.arms:
                return arm
        return None


def check_values(config: EvaluationConfig) -> None:
    """Raise ValueError with a readable message for any setting that cannot work."""
    problems = []
    if not config.data_dir:
        problems.append("data_dir is required")
    if not config.output_dir:
        problems.append("output_dir is required")
    unknown = [arm for arm in config.arms if arm not in ARMS]
    if unknown:
        problems.append(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    if not config.arms:
        problems.append("at least one arm is required")
    if len(set(config.arms)) != len(config.arms):
        problems.append(f"arms repeat: {list(config.arms)}")
    if any(arm in SYNTHETIC_ARMS for arm in config.arms) and not config.augmenters:
        problems.append("the synthetic arms need --augmenters=NAME=EXPORTED_DIR,... (or copy_paste, identity)")
    names = config.augmenter_names
    if len(set(names)) != len(names):
        problems.append(f"augmenter names repeat: {list(names)}")
    bad_ratios = [r for r in config.ratios if float(r) not in ALLOWED_RATIOS]
    if bad_ratios or not config.ratios:
        problems.append(f"ratios {list(config.ratios)}: each must be one of {list(ALLOWED_RATIOS)}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        problems.append(f"seeds {list(config.seeds)}: need at least one, without repeats")
    for name, value, low in (("epochs", config.epochs, 1), ("batch_size", config.batch_size, 1),
                             ("patience", config.patience, 0), ("width", config.width, 1),
                             ("sample_count", config.sample_count, 1)):
        if int(value) != value or value < low:
            problems.append(f"{name}={value}: must be an integer >= {low}")
    if not 0.0 < config.learning_rate < 1.0:
        problems.append(f"learning_rate={config.learning_rate}: must be in (0, 1)")
    if not 0.0 < config.tau < 1.0:
        problems.append(f"tau={config.tau}: must be in (0, 1)")
    if not 0.0 < config.threshold < 1.0:
        problems.append(f"threshold={config.threshold}: must be in (0, 1)")
    if not 0.0 < config.tumor_fraction <= 1.0:
        problems.append(f"tumor_fraction={config.tumor_fraction}: must be in (0, 1]")
    if config.folds and not 2 <= config.folds:
        problems.append(f"folds={config.folds}: need at least 2 (or 0 for the dataset's own split)")
    if config.folds and config.judge:
        problems.append("--judge with --folds: the judge was trained on the dataset's train split, which holds "
                        "test patients of some fold; run the judge without cross-validation")
    if not config.folds and any("{fold}" in path for _, path in config.augmenters):
        problems.append("an augmenter path holds {fold}, which only --folds fills in")
    if not 0.0 <= config.weight_decay < 1.0:
        problems.append(f"weight_decay={config.weight_decay}: must be in [0, 1)")
    if config.lr_schedule not in LR_SCHEDULES:
        problems.append(f"lr_schedule={config.lr_schedule!r}: choose from {', '.join(LR_SCHEDULES)}")
    if config.classic_impl not in CLASSIC_IMPLEMENTATIONS:
        problems.append(f"classic_impl={config.classic_impl!r}: choose from {', '.join(CLASSIC_IMPLEMENTATIONS)}")
    if not 0.0 <= config.classic_strength <= 3.0:
        problems.append(f"classic_strength={config.classic_strength}: must be in [0, 3]")
    if int(config.bootstrap_resamples) != config.bootstrap_resamples or config.bootstrap_resamples < 100:
        problems.append(f"bootstrap_resamples={config.bootstrap_resamples}: must be an integer >= 100")
    if config.precision not in PRECISIONS:
        problems.append(f"precision={config.precision!r}: must be one of {', '.join(PRECISIONS)}")
    if problems:
        raise ValueError("bad evaluation settings:\n  " + "\n  ".join(problems))


def parse_augmenters(text: str) -> tuple:
    """'ssa=/exports/ssa,cyclegan=/exports/cg,copy_paste' -> (('ssa', '/exports/ssa'), ('cyclegan', ...),
    ('copy_paste', '')): the built-in controls take no path."""
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep and name in CONTROL_AUGMENTERS:
            pairs.append((name, ""))           # built in: no exported model
            continue
        if not sep or not name or not path:
            raise ValueError(f"augmenter {item!r}: expected NAME=EXPORTED_DIR, or one of "
                             f"{', '.join(CONTROL_AUGMENTERS)}")
        if name in CONTROL_AUGMENTERS:
            raise ValueError(f"augmenter name {name!r} is the built-in control's; name the export otherwise")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"augmenter name {name!r}: use letters, digits, '_' or '-'")
        pairs.append((name, path))
    return tuple(pairs)


def check_inputs(config: EvaluationConfig):
    """Check that the dataset and every exported model exist, and that the output folder can be
    written without touching the dataset or a file, before any training starts. Returns the
    dataset, opened once here (a `schema.Dataset`)."""
    from ssagan_tf.data import integrity, schema
    from ssagan_tf.exported import resolve_version_dir

    dataset = schema.open(config.data_dir)
    data, output = os.path.realpath(config.data_dir), os.path.realpath(config.output_dir)
    if os.path.commonpath([data, output]) == data:
        raise ValueError(f"--output_dir {config.output_dir} is {'' if data == output else 'inside '}the dataset "
                         f"{config.data_dir}; write the report elsewhere (the dataset stays as converted)")
    if os.path.exists(config.output_dir) and not os.path.isdir(config.output_dir):
        raise ValueError(f"--output_dir {config.output_dir}: is a file, not a folder; the report is not written "
                         "over it")
    for split in schema.SPLITS:
        for domain in schema.DOMAINS:
            if dataset.count(split, domain) <= 0 or not integrity.check_shards(dataset.manifest, split, domain):
                raise ValueError(f"{config.data_dir}: split {split!r} has no {domain} slices; "
                                 "the evaluation needs both classes in train, val and test")
    for _, path in config.augmenters:
        for fold in (range(config.folds) if config.folds and "{fold}" in path else [None]):
            if path:
                resolve_version_dir(path.replace("{fold}", str(fold)) if fold is not None else path)
    if config.judge:
        from ssagan_tf.evaluation.judge import check_judge_for

        check_judge_for(config.judge, dataset.image_size, dataset.channels)
    return dataset
