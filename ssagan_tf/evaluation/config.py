"""The evaluation's settings, checked once before any work (docs/method.md, "Augmentation and evaluation"; docs/evaluation.md).

This module imports neither TensorFlow nor Keras, so that `run_evaluate.py` can reject a bad flag
in a fraction of a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ssagan_tf.choices import CLASSIC_IMPLEMENTATIONS
from ssagan_tf.data import integrity, schema
from ssagan_tf.exported import resolve_version_dir
from ssagan_tf.judge.config import check_judge_for
from ssagan_tf.precision import PRECISIONS
from ssagan_tf.settings import Problems, setting

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


def _numbers(kind):
    """A comma list of `kind` values (the flag's strings) -> a tuple of them."""
    def parse(values) -> tuple:
        try:
            return tuple(kind(v) for v in values if str(v).strip())
        except ValueError:
            raise ValueError(f"expected comma-separated {kind.__name__} values") from None
    return parse


def _names(values) -> tuple:
    return tuple(v.strip() for v in values if v.strip())


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything `run_evaluation` needs; built once (from flags or by hand) and never mutated.
    Each field's help text (`run_evaluate.py --help`, generated from the fields) says what it is.

    augmenters: (name, exported model directory) pairs, one per system compared (the paper's
        CycleGAN, Spec-CycleGAN, ..., SSA-CycleGAN); a built-in control has the path "".
    precision: compute precision of the classifiers (`ssagan_tf.precision`; auto picks by hardware).
        The augmenters compute in the precision they were exported in.
    """

    data_dir: str = setting(help="Converted dataset (the --output_dir of `python -m data_prep.convert`) with "
                                 "train, val and test splits, each holding normal and tumor slices.")
    output_dir: str = setting(help="Where report.md, results.json and the PNG figures are written; not the "
                                   "dataset folder, nor inside it, nor a file.")
    augmenters: tuple = setting(
        (), "Comma-separated NAME=EXPORTED_DIR pairs, one per system compared, e.g. "
        "ssa=exports/ssa_cyclegan,cyclegan=exports/cyclegan. EXPORTED_DIR is a TF Serving model directory (its "
        "highest version is used) or one version directory; with --folds it may hold {fold}. The built-in "
        "copy_paste (a real lesion pasted into a normal slice) and identity (the control: the slice itself, "
        "relabelled) take no path. Needed by the synthetic arms; also scored by the attention metrics.",
        flag_default="", parse=lambda text: parse_augmenters(text))
    in_masks: tuple = setting(
        (), "Names of exported --augmenters whose normal->tumor paints inside real lesion masks instead of where "
        "its own attention points: each normal slice gets the mask of a labelled training tumor slice "
        "transplanted onto it (inside the brain, rotated and scaled; ssagan_tf/lesions.py, as run_augment.py "
        "--lesion_masks draws them), through the export's normal_to_tumor_in_masks signature. Name one export "
        "twice in --augmenters to compare both ways.", parse=_names)
    tumors_only: tuple = setting(
        (), "Names of --augmenters whose synthetic arms add synthetic tumor slices only (their normal->tumor "
        "translations), none of their synthetic normal slices. With --normals_only and one export named "
        "several times in --augmenters, it says which direction of the translation the classifiers gain "
        "from.", parse=_names)
    normals_only: tuple = setting(
        (), "Names of --augmenters whose synthetic arms add synthetic normal slices only (their tumor->normal "
        "translations), none of their synthetic tumor slices; not copy_paste, which makes tumor slices only.",
        parse=_names)
    arms: tuple = setting(
        ("none", "classic", "synthetic", "synthetic+classic"), lambda: (
            f"Training arms to run, any of {', '.join(ARMS)}: real slices only, + classic augmentation (flip, "
            "rotation, translation, crop), + synthetic slices from each augmenter, + both; MixUp or CutMix (Keras "
            "3's layers) of the real batches, alone or after classic augmentation."), parse=_names)
    ratios: tuple = setting(
        (1.0,), "Synthetic:real ratios per class for the synthetic arms, each one of "
        f"{', '.join(f'{r:g}' for r in ALLOWED_RATIOS)} (the paper's; 1 was its best).", flag_default=("1",),
        parse=_numbers(float))
    seeds: tuple = setting(
        (0, 1, 2), "Integer seeds; one classifier per seed and row. Mean and std over seeds are reported, and "
        "arms are compared seed by seed.", flag_default=("0", "1", "2"), parse=_numbers(int))
    epochs: int = setting(30, "Maximum training epochs per classifier.")
    batch_size: int = setting(32, "Classifier batch size.")
    patience: int = setting(5, "Early stopping: epochs without a lower validation loss before training stops; the "
                               "best epoch's weights are kept.")
    width: int = setting(64, "ResNet18 base width (stem and first stage channels); 64 is the standard ResNet18 of "
                             "the paper, 8-16 suits CPU demos.")
    learning_rate: float = setting(1e-3, "Adam learning rate of the classifier.")
    tau: float = setting(0.1, "Attention threshold: pixels with attention >= tau count as attended in the "
                              "Dice/IoU and background-change metrics.")
    threshold: float = setting(0.5, "Decision threshold on the tumor probability for sensitivity, specificity "
                                    "and accuracy (AUC uses all thresholds).")
    sample_count: int = setting(4, "Test slices per class shown in each augmenter's sample grid.")
    verbose: int = setting(0, "Keras fit verbosity (0 silent, 1 progress bar, 2 one line per epoch).")
    precision: str = "auto"
    judge: str = setting("", "A judge trained on this dataset (python -m ssagan_tf.judge): it scores "
                             "each augmenter's test translations (tumor rate of normal->tumor, normal rate of "
                             "tumor->normal, KID against real slices). Empty = no judge.")
    tumor_fraction: float = setting(1.0, "Low-data regime: keep the tumor slices of only this fraction of the "
                                         "training cases (at least one, fixed seed); normal slices all stay. "
                                         "1 = all.")
    folds: int = setting(0, "Patient-level K-fold cross-validation: the patients of all splits pooled and dealt "
                            "into K folds (seeded); each fold tested once, early stopping on a fifth of its "
                            "training patients. Augmenter paths may hold {fold} (one export per fold, trained "
                            "with run_train.py --folds=K --fold=k); a fold whose augmenter saw its test patients "
                            "is refused. 0 = the dataset's own split.")
    fold_seed: int = setting(0, "Seed of the fold assignment (run_train.py --fold_seed must be the same).")
    weight_decay: float = setting(0.0, "Decoupled weight decay of the classifier (AdamW); 0 = plain Adam.")
    lr_schedule: str = setting("constant", "Classifier learning rate per epoch: constant, or cosine from "
                                           "--learning_rate towards 0 over --epochs.", choices=LR_SCHEDULES)
    classic_impl: str = setting(
        "warp", "Classic augmentation: one bilinear warp per slice (warp, the default and earlier releases' path) "
        "or Keras 3 RandomFlip/RandomRotation/RandomTranslation/RandomZoom layers over the same ranges (keras; not "
        "bit-identical: four interpolations, translation range independent of the crop).",
        choices=CLASSIC_IMPLEMENTATIONS)
    classic_strength: float = setting(1.0, "Factor on the classic augmentation's rotation, translation and crop "
                                           "ranges (1 = ±15°, ±10%, 85-100%; 0 = flips only), in [0, 3].")
    balance_classes: bool = setting(
        False, "Weight each training slice's loss by n / (2 n_class) of its class in the row's training set "
        "(real and synthetic slices), and the validation loss that stops training alike, so that the rarer "
        "class counts as much as the other; not with the MixUp and CutMix arms, whose labels are mixed.")
    bootstrap_resamples: int = setting(2000, "Patient-level bootstrap replicates of the 95% confidence intervals "
                                             "(seeded).")

    def __post_init__(self):
        check_values(self)

    @property
    def augmenter_names(self) -> tuple:
        return tuple(name for name, _ in self.augmenters)

    def synthetic_classes(self, name: str) -> tuple:
        """The classes augmenter `name`'s synthetic arms take (`--tumors_only`, `--normals_only`)."""
        if name in self.tumors_only:
            return ("tumor",)
        if name in self.normals_only:
            return ("normal",)
        return ("tumor", "normal")

    @property
    def baseline_arm(self) -> str | None:
        """The arm every other row is compared with: classic augmentation, as in the paper's
        Table I, or real-only when classic was not run."""
        for arm in ("classic", "none"):
            if arm in self.arms:
                return arm
        return None

    def check_inputs(self):
        """Check that the dataset and every exported model exist, and that the output folder can be
        written without touching the dataset or a file, before any training starts. Returns the
        dataset, opened once here (a `schema.Dataset`)."""
        dataset = schema.open(self.data_dir)
        data, output = os.path.realpath(self.data_dir), os.path.realpath(self.output_dir)
        if os.path.commonpath([data, output]) == data:
            raise ValueError(f"--output_dir {self.output_dir} is {'' if data == output else 'inside '}the dataset "
                             f"{self.data_dir}; write the report elsewhere (the dataset stays as converted)")
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(f"--output_dir {self.output_dir}: is a file, not a folder; the report is not written "
                             "over it")
        for split in schema.SPLITS:
            for domain in schema.DOMAINS:
                if dataset.count(split, domain) <= 0 or not integrity.check_shards(dataset.manifest, split, domain):
                    raise ValueError(f"{self.data_dir}: split {split!r} has no {domain} slices; "
                                     "the evaluation needs both classes in train, val and test")
        for _, path in self.augmenters:
            for fold in (range(self.folds) if self.folds and "{fold}" in path else [None]):
                if path:
                    resolve_version_dir(path.replace("{fold}", str(fold)) if fold is not None else path)
        if self.judge:
            check_judge_for(self.judge, dataset.image_size, dataset.channels)
        return dataset


def check_values(config: EvaluationConfig) -> None:
    """Raise one ConfigError (a ValueError) naming every setting that cannot work."""
    problems = Problems("bad evaluation settings:\n  ", "\n  ")
    if not config.data_dir:
        problems.add("data_dir is required")
    if not config.output_dir:
        problems.add("output_dir is required")
    unknown = [arm for arm in config.arms if arm not in ARMS]
    if unknown:
        problems.add(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    if not config.arms:
        problems.add("at least one arm is required")
    if len(set(config.arms)) != len(config.arms):
        problems.add(f"arms repeat: {list(config.arms)}")
    if any(arm in SYNTHETIC_ARMS for arm in config.arms) and not config.augmenters:
        problems.add("the synthetic arms need --augmenters=NAME=EXPORTED_DIR,... (or copy_paste, identity)")
    names = config.augmenter_names
    if len(set(names)) != len(names):
        problems.add(f"augmenter names repeat: {list(names)}")
    for name in config.in_masks:
        if name not in names:
            problems.add(f"in_masks names {name!r}, which is not one of --augmenters")
        elif name in CONTROL_AUGMENTERS:
            problems.add(f"in_masks names the built-in {name!r}; it places its own lesions")
    for flag, chosen in (("tumors_only", config.tumors_only), ("normals_only", config.normals_only)):
        for name in chosen:
            if name not in names:
                problems.add(f"{flag} names {name!r}, which is not one of --augmenters")
    both = sorted(set(config.tumors_only) & set(config.normals_only))
    if both:
        problems.add(f"{', '.join(both)}: named by both tumors_only and normals_only, which would leave no "
                     "synthetic slices")
    if "copy_paste" in config.normals_only:
        problems.add("normals_only names copy_paste, which makes synthetic tumor slices only")
    painted = sorted(set(config.in_masks) & set(config.normals_only))
    if painted:
        problems.add(f"{', '.join(painted)}: in_masks changes normal->tumor, which normals_only leaves out")
    bad_ratios = [r for r in config.ratios if float(r) not in ALLOWED_RATIOS]
    if bad_ratios or not config.ratios:
        problems.add(f"ratios {list(config.ratios)}: each must be one of {list(ALLOWED_RATIOS)}")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        problems.add(f"seeds {list(config.seeds)}: need at least one, without repeats")
    for name, value, low in (("epochs", config.epochs, 1), ("batch_size", config.batch_size, 1),
                             ("patience", config.patience, 0), ("width", config.width, 1),
                             ("sample_count", config.sample_count, 1)):
        if int(value) != value or value < low:
            problems.add(f"{name}={value}: must be an integer >= {low}")
    if not 0.0 < config.learning_rate < 1.0:
        problems.add(f"learning_rate={config.learning_rate}: must be in (0, 1)")
    if not 0.0 < config.tau < 1.0:
        problems.add(f"tau={config.tau}: must be in (0, 1)")
    if not 0.0 < config.threshold < 1.0:
        problems.add(f"threshold={config.threshold}: must be in (0, 1)")
    if not 0.0 < config.tumor_fraction <= 1.0:
        problems.add(f"tumor_fraction={config.tumor_fraction}: must be in (0, 1]")
    if config.folds and not 2 <= config.folds:
        problems.add(f"folds={config.folds}: need at least 2 (or 0 for the dataset's own split)")
    if config.folds and config.judge:
        problems.add("--judge with --folds: the judge was trained on the dataset's train split, which holds "
                        "test patients of some fold; run the judge without cross-validation")
    if not config.folds and any("{fold}" in path for _, path in config.augmenters):
        problems.add("an augmenter path holds {fold}, which only --folds fills in")
    if not 0.0 <= config.weight_decay < 1.0:
        problems.add(f"weight_decay={config.weight_decay}: must be in [0, 1)")
    if config.lr_schedule not in LR_SCHEDULES:
        problems.add(f"lr_schedule={config.lr_schedule!r}: choose from {', '.join(LR_SCHEDULES)}")
    if config.classic_impl not in CLASSIC_IMPLEMENTATIONS:
        problems.add(f"classic_impl={config.classic_impl!r}: choose from {', '.join(CLASSIC_IMPLEMENTATIONS)}")
    if not 0.0 <= config.classic_strength <= 3.0:
        problems.add(f"classic_strength={config.classic_strength}: must be in [0, 3]")
    mixed = [arm for arm in config.arms if arm.split("+")[0] in ("mixup", "cutmix")]
    if config.balance_classes and mixed:
        problems.add(f"balance_classes with {', '.join(mixed)}: a mixed slice has no one class to weigh it by")
    if int(config.bootstrap_resamples) != config.bootstrap_resamples or config.bootstrap_resamples < 100:
        problems.add(f"bootstrap_resamples={config.bootstrap_resamples}: must be an integer >= 100")
    if config.precision not in PRECISIONS:
        problems.add(f"precision={config.precision!r}: must be one of {', '.join(PRECISIONS)}")
    problems.raise_any()


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

