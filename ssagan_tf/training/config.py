"""The frozen configuration of one training run, written to `<model_dir>/config.json`.

Built once (`build_run_config` from `run_train.py`'s flags and the dataset's manifest, or directly
in tests); the library reads only this object. As every config of the project
(`ssagan_tf.settings`): its values are checked at construction, every problem named in one
`ConfigError`; what lies outside it (the data, the judge, `TF_CONFIG`) is checked by
`check_inputs()`, which opens the run's datasets once and returns them for training to hand on.
Its fields carry the help text of `run_train.py`'s flags, which are generated from them. No
TensorFlow is imported here until the precision is resolved, so a bad flag is refused at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from ssagan_tf import io as durable
from ssagan_tf import precision as precisions
from ssagan_tf.settings import ConfigError, Problems, setting  # noqa: F401 - ConfigError: training's name for it
from ssagan_tf.choices import CYCLE_ATTENTIONS, D_MODE_ALIASES, D_MODES, GAN_LOSSES, MASK_LOSS_TYPES
from ssagan_tf.data import combined, integrity, schema
from ssagan_tf.judge.config import check_judge_for
from ssagan_tf.models.config import ModelConfig
from ssagan_tf.run_dir import config_path, has_checkpoint_index

STRATEGIES = ("mirrored", "one_device", "multi_worker")


# Settings that only some of the systems use: name -> (the ModelConfig switch they need, who has it).
SYSTEM_SPECIFIC = {
    "lambda_mask": ("mask_loss", "ssa_cyclegan"),
    "mask_loss_type": ("mask_loss", "ssa_cyclegan"),
    "attention_epochs": ("use_attention", "the systems with attention"),
    "d_mode": ("use_attention", "the systems with attention"),
    "attention_ngf": ("use_attention", "the systems with attention"),
    "d_local": ("use_attention", "the systems with attention"),
    "local_trains_attention": ("local_discriminators", "--d_local in the systems with attention"),
    "tau": ("use_attention", "the systems with attention"),
    "cycle_attention": ("use_attention", "the systems with attention"),
    "attention_area": ("use_attention", "the systems with attention"),
    "lambda_attention_area": ("use_attention", "the systems with attention"),
    "warmup_patience": ("use_attention", "the systems with attention"),
    "lesion_guidance": ("use_attention", "the systems with attention"),
    "lambda_paint": ("use_attention", "the systems with attention"),
    "warmup_min_delta": ("use_attention", "the systems with attention"),
}


def unused_settings(model: ModelConfig, names) -> list:
    """The settings among `names` (those the user set) that `model`'s system does not use, as
    (name, who uses it) pairs, in `SYSTEM_SPECIFIC` order."""
    names = set(names)
    return [(name, who) for name, (switch, who) in SYSTEM_SPECIFIC.items()
            if name in names and not getattr(model, switch)]


class RunConfigFileError(ValueError):
    """A `config.json` that is not valid JSON or not the config of a training run."""


# Settings a resumed run may change freely: where its inputs and outputs are, how often it
# reports and saves, when it stops, and how it runs (devices, XLA, op determinism: these may
# change the numbers by rounding, not the method). Every other setting, and the data (by
# `integrity.dataset_checksum`), must be as saved unless `allow_changes` names it.
FREE_ON_RESUME = ("data_dir", "extra_data_dirs", "model_dir", "max_steps", "checkpoint_every", "keep_checkpoints",
                  "log_every", "image_every", "export_dir", "judge_dir", "fresh", "allow_changes", "precision_reason",
                  "strategy", "cpu_replicas", "jit_compile", "deterministic")


@dataclass(frozen=True)
class RunConfig:
    """One training run. `tau` is also the inference threshold that export and augment read."""

    data_dir: str                      # the main dataset: trains, validates, judges, selects
    model_dir: str = setting(help="Run directory: config.json, checkpoints/, logs/ (TensorBoard), samples/; "
                                  "locked while a trainer runs (train.lock), so a second trainer there is refused.")
    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = setting(1, "Global batch size (split evenly across replicas; the paper uses 1).")
    epochs: int = setting(100, "Epochs (passes over the longer training domain); the learning-rate schedule spans "
                               "all of them.")
    max_steps: int = setting(0, "Stop at this global step (0 = train all epochs). Does not change the "
                                "learning-rate schedule, so a stopped run can be resumed with a larger value.")
    learning_rate: float = setting(2e-4, "Adam learning rate of both players.")
    beta_1: float = setting(0.5, "Adam beta_1.")
    beta_2: float = setting(0.999, "Adam beta_2.")
    decay_start_fraction: float = setting(0.5, "Fraction of the steps at constant learning rate before the linear "
                                               "decay to 0.")
    gan_loss: str = setting("lsgan", "Adversarial loss: least squares or log-loss.", choices=GAN_LOSSES)
    lambda_cycle: float = setting(10.0, "Weight of each direction's L1 cycle loss.")
    lambda_identity: float = setting(0.0, "Identity loss weight, relative to lambda_cycle (0 = none, as the "
                                          "paper).")
    lambda_mask: float = setting(1.0, "Weight of the semi-supervised attention (mask) loss; ssa_cyclegan only.")
    mask_loss_type: str = setting("l1", "Form of the attention (mask) loss; ssa_cyclegan only. l1 = "
                                        "the paper's L1; l1_dice adds a soft Dice term, for tumors covering a few "
                                        "percent of a slice or less, where L1 alone drives the attention off the "
                                        "tumors (training warns when it does).", choices=MASK_LOSS_TYPES)
    d_mode: str = setting(
        "own_attention", "What the discriminators see after the attention warm-up: full images (full); real and "
        "fake both masked by the fake's source attention (source_attention, the paper's form; alias paper); or fakes "
        "masked by their source attention and reals by their own attention (own_attention, Mejjati et al.; alias "
        "mejjati).", choices=D_MODES + tuple(D_MODE_ALIASES))
    attention_area: float = setting(
        0.0, "Not in the paper. > 0: while the attention trains, a hinge loss keeps the normal->tumor attention A_n "
        "open over at least this fraction of the head (e.g. the median tumor area of the labelled slices), so it "
        "cannot close to 0 and make normal->tumor the identity "
        "(docs/training.md, 'When normal->tumor draws nothing'). 0 = off.")
    lambda_attention_area: float = setting(1.0, "Weight of the --attention_area hinge (which lies in [0, 1]).")
    cycle_attention: str = setting(
        "recompute", "Attention of the cycle's way back. recompute (the paper; docs/method.md): the other "
        "direction's attention network is run on the translation, so a change survives the cycle only where that "
        "network sees it. source: the way back changes the region the forward attention changed, reusing that map "
        "(docs/training.md, 'When normal->tumor draws nothing').", choices=CYCLE_ATTENTIONS)
    attention_epochs: int = setting(30, "Epochs during which the attention networks train; afterwards they are "
                                        "frozen and (d_mode other than full) the discriminators see attended "
                                        "regions only.")
    tau: float = setting(0.1, "Attention threshold: discriminator masks during training, and the inference "
                              "threshold stored in config.json for export and augmentation.")
    pool_size: int = setting(50, "Image history pool size per replica (0 = no pool).")
    flip: bool = setting(True, "Random left-right flips of training slices.")
    strategy: str = setting(
        "mirrored", "mirrored: all local GPUs (or the CPU); one_device: the first GPU (or the CPU); multi_worker: "
        "MultiWorkerMirroredStrategy across machines, configured by TF_CONFIG.", choices=STRATEGIES)
    cpu_replicas: int = setting(0, "Split the CPU into this many logical devices, one replica each (tests the "
                                   "distributed path without GPUs; 0 = off).")
    judge_dir: str = setting("", "A judge trained on this dataset (python -m ssagan_tf.judge): each "
                                 "epoch it scores the validation translations (tumor rate of normal->tumor, "
                                 "normal rate of tumor->normal, KID against real slices). Empty = no judge.",
                             flag="judge", aliases=("judge_dir",))
    precision_reason: str = ""         # why model.precision was chosen (auto's reasoning), for the record
    jit_compile: bool = setting(False, "Compile each replica's step with XLA.")
    deterministic: bool = setting(False, "TF op determinism, for bitwise-repeatable runs (slower). The data order "
                                         "and flips are deterministic from --seed either way.")
    seed: int = setting(0, "Seed of weights, data order and image pools.")
    checkpoint_every: int = setting(500, "Save a checkpoint every this many steps (and at every epoch end).")
    keep_checkpoints: int = setting(3, "Checkpoints kept on disk.")
    log_every: int = setting(50, "Console line and TensorBoard scalars every this many steps.")
    image_every: int = setting(500, "TensorBoard image grid and samples/step_*.png every this many steps.")
    fresh: bool = setting(False, "Start over: delete what training wrote in --model_dir (config.json, "
                                 "checkpoints, TensorBoard event files, sample grids), nothing else; refused for "
                                 "a folder that is not a training run.")
    export_dir: str = setting("", "After training, export the generators for TF Serving here (`ssagan_tf.export`, "
                                  "computing in float32); checked before training starts.")
    allow_changes: tuple = setting((), lambda: (
        "On resume, the settings that may differ from the saved run's (comma-separated names among "
        + ", ".join(RESUME_GUARDED) + "; data = the dataset's checksum). These may always change: "
        + ", ".join(n for n in FREE_ON_RESUME if n not in ("fresh", "allow_changes", "precision_reason")) + "."))
    # The patients of a cross-validation fold's run (ssagan_tf.data.folds.cohort_record); {} = the
    # whole train split of data_dir. Recorded here and in the export's export.json.
    cohort: dict = field(default_factory=dict)
    ema_decay: float = setting(0.0, "Not in the paper. > 0: keep an exponential moving average of the generators' "
                                    "weights (e.g. 0.999: about the last 1000 steps; the attention networks, "
                                    "frozen after the warm-up, are not averaged), checkpointed with the run; "
                                    "validation, samples, export and augmentation use it, the raw weights train "
                                    "(docs/training.md, 'Levers'). 0 = off.")
    select_best: bool = setting(False, "Not in the paper. Score every epoch's validation translations with "
                                       "--judge (mean of both directions' judge rates minus a KID penalty; "
                                       "docs/training.md, 'Levers'), record the scores in "
                                       "<model_dir>/selection/scores.json and keep the best checkpoint there "
                                       "(never deleted by --keep_checkpoints); export then uses it.")
    warmup_patience: int = setting(0, "Not in the paper. > 0: end the attention warm-up early, after the epoch "
                                      "where neither A_t's validation Dice nor the judge's tumor rate of "
                                      "normal->tumor has risen by more than --warmup_min_delta for this many "
                                      "epochs (needs --judge; --attention_epochs is the cap). 0 = the fixed "
                                      "--attention_epochs.")
    warmup_min_delta: float = setting(0.02, "The rise of a validation measure that counts as progress for "
                                            "--warmup_patience.")
    lesion_guidance: float = setting(0.0, "Not in the paper. > 0: while the attention trains, each normal slice "
                                          "gets the whole-tumor mask of the batch's labelled tumor slice "
                                          "transplanted onto it (inside the brain, rotated and scaled within "
                                          "limits; ssagan_tf/lesions.py), and A_n is pulled towards it by the "
                                          "--mask_loss_type loss with this weight. 0 = off.")
    lambda_fill: float = setting(0.0, "Not in the paper. > 0: weight of a self-supervised healthy-fill term: a "
                                      "real lesion is pasted into a normal slice and tumor->normal, given its "
                                      "mask as attention, must restore the original (L1 inside the mask). 0 = off.")
    lambda_paint: float = setting(0.0, "Not in the paper. > 0: normal->tumor also paints inside a real lesion "
                                       "mask transplanted onto each normal slice (the mask in A_n's place, as "
                                       "run_augment.py --lesion_masks and the evaluation's --in_masks draw), D_t "
                                       "learns to tell those painted slices from real tumors, and the generator's "
                                       "adversarial loss on them joins its objective with this weight. 0 = off.")
    d_transpose: float = setting(0.0, "Not in the paper. > 0: each slice a discriminator sees (real or translated, "
                                      "in its own update and in the generators' adversarial terms) is transposed, "
                                      "rows and columns swapped, with this probability, drawn per slice from --seed, "
                                      "the step and the replica. Below 0.5 the discriminators still learn the "
                                      "untransposed slices' distribution; they can no longer tell real slices by "
                                      "row-to-row texture alone (docs/training.md, horizontal streaks). 0 = off.")
    local_trains_attention: bool = setting(
        True, "Not in the paper. With --d_local: whether the generators' terms against the local "
        "discriminators also train the attention networks (where A_n and A_t point), as well as the generators "
        "(how they paint). --nolocal_trains_attention composes the crops with attention that takes no gradient "
        "(the same values), so the local terms train the painting only (docs/training.md, local discriminators).")
    # Further converted datasets whose train splits train beside data_dir's, by class (a healthy
    # cohort's normals join the normal domain); their val and test splits are not read
    # (ssagan_tf.data.combined). () = data_dir alone.
    extra_data_dirs: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "d_mode", D_MODE_ALIASES.get(self.d_mode, self.d_mode))
        object.__setattr__(self, "export_dir", self.export_dir or "")
        object.__setattr__(self, "allow_changes", tuple(self.allow_changes or ()))
        object.__setattr__(self, "extra_data_dirs", tuple(self.extra_data_dirs or ()))
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def data_dirs(self) -> tuple:
        """Every dataset the run trains on, the main one (`data_dir`) first."""
        return (self.data_dir,) + self.extra_data_dirs

    @property
    def transplants_lesions(self) -> bool:
        """Whether the steps transplant real lesions onto the normal slices (the lesion levers)."""
        return self.lesion_guidance > 0 or self.lambda_fill > 0 or self.lambda_paint > 0

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["model"] = self.model.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        values["model"] = ModelConfig.from_dict(values.get("model", {}))
        return cls(**values)

    def problems(self) -> list:
        """Every value that cannot work, one message each (pure: no file or environment is read)."""
        problems = Problems()
        need = problems.need
        need(bool(self.data_dir), "data_dir is required")
        need(bool(self.model_dir), "model_dir is required")
        need(all(isinstance(d, str) and d for d in self.extra_data_dirs),
             f"extra_data_dirs must be non-empty paths, got {list(self.extra_data_dirs)}")
        need(not (self.extra_data_dirs and self.cohort),
             "a cross-validation fold (cohort) trains on one dataset's patients; it takes no extra_data_dirs")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.max_steps >= 0, f"max_steps must be >= 0 (0 = no limit), got {self.max_steps}")
        need(math.isfinite(self.learning_rate) and self.learning_rate > 0,
             f"learning_rate must be finite and > 0, got {self.learning_rate}")
        need(0 <= self.beta_1 < 1 and 0 <= self.beta_2 < 1, f"betas must be in [0, 1), got {self.beta_1}, {self.beta_2}")
        need(0 <= self.decay_start_fraction <= 1,
             f"decay_start_fraction must be in [0, 1], got {self.decay_start_fraction}")
        need(self.gan_loss in GAN_LOSSES, f"gan_loss must be one of {GAN_LOSSES}, got {self.gan_loss!r}")
        need(0 <= self.attention_area < 1, f"attention_area must be in [0, 1), got {self.attention_area}")
        for name in ("lambda_cycle", "lambda_identity", "lambda_mask", "lambda_attention_area", "lesion_guidance",
                     "lambda_fill", "lambda_paint"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.mask_loss_type in MASK_LOSS_TYPES,
             f"mask_loss_type must be one of {MASK_LOSS_TYPES}, got {self.mask_loss_type!r}")
        need(self.d_mode in D_MODES, f"d_mode must be one of {D_MODES}, got {self.d_mode!r}")
        need(0 <= self.d_transpose < 0.5, f"d_transpose must be in [0, 0.5) (at 0.5 a discriminator could not tell a "
                                          f"slice from its transpose), got {self.d_transpose}")
        need(self.cycle_attention in CYCLE_ATTENTIONS,
             f"cycle_attention must be one of {CYCLE_ATTENTIONS}, got {self.cycle_attention!r}")
        need(self.attention_epochs >= 1 or not self.model.use_attention,
             f"attention_epochs must be >= 1 when the model has attention (0 would freeze untrained attention "
             f"networks), got {self.attention_epochs}")
        need(0 <= self.tau < 1, f"tau must be in [0, 1), got {self.tau}")
        need(self.pool_size >= 0, f"pool_size must be >= 0 (0 = no pool), got {self.pool_size}")
        need(self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        need(self.cpu_replicas >= 0, f"cpu_replicas must be >= 0, got {self.cpu_replicas}")
        need(not self.cpu_replicas or self.batch_size % self.cpu_replicas == 0,
             f"batch_size {self.batch_size} is not divisible by cpu_replicas {self.cpu_replicas}")
        need(not (self.cpu_replicas and self.strategy == "one_device"),
             "cpu_replicas splits the CPU for a mirrored or multi_worker strategy; one_device uses one device")
        need(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1) (0 = no average), got {self.ema_decay}")
        need(self.warmup_patience >= 0, f"warmup_patience must be >= 0 (0 = fixed warm-up), got {self.warmup_patience}")
        need(self.warmup_min_delta >= 0, f"warmup_min_delta must be >= 0, got {self.warmup_min_delta}")
        for name in ("select_best", "warmup_patience"):
            need(not getattr(self, name) or bool(self.judge_dir),
                 f"{name} scores the validation translations with a judge: set --judge "
                 "(python -m ssagan_tf.judge makes one)")
        need(not (self.warmup_patience and self.strategy == "multi_worker"),
             "warmup_patience needs the chief's validation to change every worker's schedule; with multi_worker "
             "use a fixed --attention_epochs")
        for name in ("checkpoint_every", "keep_checkpoints", "log_every", "image_every"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            need(not isinstance(value, float) or math.isfinite(value), f"{f.name} must be finite, got {value}")
        unknown = [name for name in self.allow_changes if name not in RESUME_GUARDED]
        need(not unknown, f"allow_changes: {', '.join(map(repr, unknown))} cannot be named; the settings a resume "
                          f"checks are {', '.join(RESUME_GUARDED)} (the others may change freely; the model's shape "
                          "never: its checkpoint would not load)")
        return problems.messages

    def data_warnings(self, manifest: schema.Manifest) -> list:
        """What the data lack for training without being wrong: an augmentation's output
        (`run_augment.py`, its manifest has `synthetic`) holds synthetic slices only, in one split,
        with no validation split to watch. `manifest` is any of the run's datasets (the main
        one's validation split is the one that matters; an extra's is not read)."""
        warnings = []
        if "synthetic" in manifest.raw:
            main = os.path.realpath(manifest.data_dir) == os.path.realpath(self.data_dir)
            empty = [split for split in ("val",)
                     if main and not any(manifest.count(split, d) for d in schema.DOMAINS)]
            warnings.append(f"WARNING: {manifest.data_dir} is an augmentation's output (run_augment.py): synthetic "
                            "slices only, made by " + str(manifest.raw["synthetic"].get("model", "an exported model"))
                            + (f", and no {', '.join(empty)} split, so no validation is run" if empty else "")
                            + ". Train on the converted real data it was made from; synthetic slices are meant "
                            "for the classifiers (run_evaluate.py)")
        return warnings

    def extra_datasets(self, main: schema.Dataset, opened=()) -> list:
        """The datasets of `extra_data_dirs` (`schema.Dataset`s: those among `opened`, the others
        opened once here), each checked against the main dataset `main` and the extras before it
        (`combined.extra_problem`: slice size, channels, modalities, a dataset given twice, no
        training slices, a patient in two splits); ConfigError names the dataset and its problem.
        Reads the manifests only."""
        extras = []
        for data_dir in self.extra_data_dirs:
            extra = open_dataset(data_dir, opened, " (extra dataset)")
            problem = combined.extra_problem(main.manifest, extra.manifest, [e.manifest for e in extras])
            if problem:
                raise ConfigError(problem)
            extras.append(extra)
        return extras

    def check_inputs(self, opened=()) -> list:
        """What the values cannot tell: the data agree with the model and their shards with their
        manifest (every dataset's: the extras' train splits are checked as the main one's, and
        against it by `extra_datasets`), the judge fits the data, and TF_CONFIG describes a
        multi_worker cluster. Raises ConfigError (or `integrity.DatasetMismatchError` for shards
        that disagree with their manifest) before any work. Returns the run's datasets
        (`data_dirs`, each a `schema.Dataset`: those among `opened`, which the caller opened, the
        others opened once here), the main one first."""
        if self.strategy == "multi_worker":
            if "TF_CONFIG" not in os.environ:
                raise ConfigError("strategy=multi_worker needs the TF_CONFIG environment variable "
                                  "(cluster spec and this process's task)")
            try:
                json.loads(os.environ["TF_CONFIG"])
            except json.JSONDecodeError as err:
                raise ConfigError(f"TF_CONFIG is not valid JSON: {err}") from err
        if self.export_dir:
            problem = export_dir_problem(self.export_dir)
            if problem:
                raise ConfigError(f"--export_dir {self.export_dir}: {problem} (checked before training, which "
                                  "exports there at its end)")
        main = open_dataset(self.data_dir, opened)
        m = self.model
        if (main.image_size, main.channels) != (m.image_size, m.channels):
            raise ConfigError(f"{self.data_dir}: data are {main.image_size}^2 x {main.channels} channels but "
                              f"the model is configured for {m.image_size}^2 x {m.channels}")
        for domain in schema.DOMAINS:
            if main.count("train", domain) == 0:
                raise ConfigError(f"{self.data_dir}: the train split has no {domain} slices"
                                  + (" (the main dataset, the first --data_dir, needs both classes)"
                                     if self.extra_data_dirs else ""))
        extras = self.extra_datasets(main, opened)
        # Shards present, none extra, sizes as recorded; record counts are checked on the first pass.
        for split in ("train", "val"):
            for domain in schema.DOMAINS:
                integrity.check_shards(main.manifest, split, domain)
        for extra in extras:
            for domain in schema.DOMAINS:
                integrity.check_shards(extra.manifest, "train", domain)
        if self.transplants_lesions and not labelled_tumors([d.manifest for d in (main, *extras)]):
            raise ConfigError(f"{', '.join(self.data_dirs)}: no tumor masks in the train split, so there are no "
                              "lesions to transplant for --lesion_guidance / --lambda_fill / --lambda_paint")
        if self.select_best or self.warmup_patience:
            few = [d for d in schema.DOMAINS if main.count("val", d) < 2]
            if few:
                raise ConfigError(f"{self.data_dir}: the val split has fewer than 2 {' or '.join(few)} slices, so the "
                                  "judge cannot score both directions for --select_best / --warmup_patience")
        if self.judge_dir:
            try:
                check_judge_for(self.judge_dir, m.image_size, m.channels)
            except ValueError as err:
                raise ConfigError(f"--judge: {err}") from err
        return [main, *extras]


def open_dataset(data_dir: str, opened=(), what: str = "") -> schema.Dataset:
    """The dataset in `data_dir`: the one among `opened` (`schema.Dataset`s a caller opened) that
    is that folder, else opened here; ConfigError when it cannot be read."""
    for dataset in opened:
        if os.path.realpath(dataset.data_dir) == os.path.realpath(data_dir):
            return dataset
    try:
        return schema.open(data_dir)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"--data_dir {data_dir}{what}: {err}" if what else str(err)) from err


def labelled_tumors(manifests) -> bool:
    """Whether any of the datasets' train splits holds tumor slices with masks (a manifest that
    does not record `labelled_train_patients` is taken to, as before it was recorded)."""
    return any(m.count("train", "tumor") and m.raw.get("labelled_train_patients", True) for m in manifests)


# What a resume compares with the saved run (see FREE_ON_RESUME): RunConfig's other fields, the
# precision, and the data's checksum. The model's shape is compared apart: it cannot change.
RESUME_GUARDED = tuple(f.name for f in dataclasses.fields(RunConfig)
                       if f.name not in FREE_ON_RESUME and f.name != "model") + ("precision", "data")
DATA_CHECKSUM_KEY = "data_checksum"


def export_dir_problem(export_dir: str) -> str | None:
    """Why the export at the end of training could not be written to `export_dir` (a file in the
    way, a folder we may not write), or None."""
    path = os.path.abspath(export_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        return "is a file, not a folder"
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable" if existing == path else f"cannot create it: {existing} is not writable"
    return None


def save_config(config: RunConfig, directory: str, data_checksum: str | None = None) -> str:
    """Write `config` (and the checksum of its data, `integrity.dataset_checksum`) as
    `<directory>/config.json`, atomically."""
    os.makedirs(directory, exist_ok=True)
    values = config.to_dict()
    values["allow_changes"] = list(config.allow_changes)
    if data_checksum:
        values[DATA_CHECKSUM_KEY] = data_checksum
    return durable.atomic_write(config_path(directory), json.dumps(values, indent=2, sort_keys=True))


# What every run's config.json has held since the first version (newer fields may be missing).
_REQUIRED = ("data_dir", "model_dir", "tau", "model")
_REQUIRED_MODEL = ("system", "image_size", "channels", "ngf", "ndf", "n_res_blocks")
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "tuple": (list, tuple)}


def run_config_problem(values) -> str | None:
    """What makes `values` (a parsed config.json) unlike the config of a training run: not an
    object, keys missing, values of the wrong type, values the checks refuse; None when it is one."""
    if not isinstance(values, dict):
        return f"holds a JSON {type(values).__name__}, not an object"
    if not isinstance(values.get("model"), dict):
        return "no 'model' section"
    missing = [k for k in _REQUIRED if k not in values] + [f"model.{k}" for k in _REQUIRED_MODEL
                                                           if k not in values["model"]]
    if missing:
        return f"missing {', '.join(missing)}"
    wrong = []
    for cls, section, prefix in ((RunConfig, values, ""), (ModelConfig, values["model"], "model.")):
        for f in dataclasses.fields(cls):
            types = _TYPES.get(f.type)
            value = section.get(f.name)
            if f.name in section and types and (not isinstance(value, types) or (bool not in types and
                                                                                 isinstance(value, bool))):
                wrong.append(f"{prefix}{f.name} is {json.dumps(value)} (wants {f.type})")
    if wrong:
        return "wrong types: " + ", ".join(wrong)
    try:
        RunConfig.from_dict(values)
    except (ValueError, TypeError) as err:
        return str(err)
    return None


def load_config_dict(model_dir: str) -> dict:
    """The checked contents of `<model_dir>/config.json`: `RunConfigFileError` names the file and
    what is wrong with it (bad JSON, a missing key, a value of the wrong type or refused)."""
    path = config_path(model_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no run config; is {model_dir!r} the --model_dir of a training run?")
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunConfigFileError(f"{path}: not valid JSON ({err}); damaged, or not written by run_train.py") from err
    problem = run_config_problem(values)
    if problem:
        raise RunConfigFileError(f"{path}: {problem}; not the config.json of a training run (run_train.py "
                                 "writes it), or damaged")
    return values


def load_run_config(model_dir: str) -> RunConfig:
    """The RunConfig saved in `<model_dir>/config.json` (checked as `load_config_dict` does)."""
    return RunConfig.from_dict(load_config_dict(model_dir))


def saved_precision(model_dir: str) -> str | None:
    """The precision of the run saved in `model_dir` (None when it holds no checkpoint)."""
    # The checkpoint files, not TensorFlow's state file, which may be missing or garbage.
    if not has_checkpoint_index(model_dir):
        return None
    try:
        return ModelConfig.from_dict(load_config_dict(model_dir)["model"]).precision
    except (FileNotFoundError, ValueError):
        return None             # named when training reads it


def resolve_precision(requested: str, model_dir: str, fresh: bool = False, **hardware) -> precisions.PrecisionChoice:
    """`--precision` for a run in `model_dir`: `auto` continues a saved run in its own precision
    (one run, one precision), and otherwise picks by hardware (`precision.choose_precision`, whose
    fake-hardware keywords `hardware` passes on)."""
    saved = None if fresh else saved_precision(model_dir)
    if requested == "auto" and saved:
        return precisions.PrecisionChoice(saved, requested, f"resuming a run trained in {saved}")
    return precisions.choose_precision(requested, **hardware)


MODEL_SETTINGS = ("ngf", "attention_ngf", "ndf", "n_res_blocks", "upsample", "d_local")


def build_run_config(data_dir, model_dir: str, model: str = "ssa_cyclegan", image_size: int = 0,
                     precision: str = "auto", opened=(), **settings) -> RunConfig:
    """The RunConfig of `run_train.py`'s settings (its flags by name): `data_dir` is one converted
    dataset or a list of them (`--data_dir=MAIN,EXTRA,...`: the first is the main dataset, the
    others become `extra_data_dirs`), `model` names one of the paper's systems, `settings` holds
    the `MODEL_SETTINGS` and RunConfig's own fields. Image size and channels come from the main
    dataset's manifest (`image_size`, when not 0, must match it), and every extra dataset must
    match it (`RunConfig.extra_datasets`). `opened`: datasets the caller opened already
    (`open_dataset`), read here instead of opening them again. Every value is checked before
    `precision` is resolved (`auto`, and resuming, read the hardware and the run directory through
    TensorFlow), so a bad one costs no TensorFlow import."""
    if isinstance(data_dir, (list, tuple)):
        if any(not d for d in data_dir):
            raise ConfigError(f"--data_dir={','.join(data_dir)}: an empty entry in the list of datasets")
        if len(data_dir) > 1 and settings.get("extra_data_dirs"):
            raise ConfigError("give the extra datasets either in the data_dir list or as extra_data_dirs, not both")
        data_dir, extras = (data_dir[0], tuple(data_dir[1:])) if data_dir else ("", ())
        if extras:
            settings["extra_data_dirs"] = extras
    if not data_dir or not model_dir:
        raise ConfigError("--data_dir and --model_dir are required")
    main = open_dataset(data_dir, opened)
    if image_size and image_size != main.image_size:
        raise ConfigError(f"--image_size={image_size} but {data_dir} holds {main.image_size}^2 slices "
                          "(convert again with --image_size, or leave this flag at 0)")
    try:
        precisions.check_precision(precision)
        network = ModelConfig.for_system(model, image_size=main.image_size, channels=main.channels,
                                         **{k: settings.pop(k) for k in MODEL_SETTINGS if k in settings})
    except ValueError as err:
        raise ConfigError(str(err)) from err
    config = RunConfig(data_dir=data_dir, model_dir=model_dir, model=network, **settings)
    config.extra_datasets(main, opened)
    choice = resolve_precision(precision, model_dir, config.fresh)
    return dataclasses.replace(config, model=dataclasses.replace(network, precision=choice.precision),
                               precision_reason=choice.why)


def unused_settings_warning(model: ModelConfig, names) -> str | None:
    """A warning naming the settings among `names` (those the user set) that `model`'s system does
    not use; None when there are none."""
    unused = unused_settings(model, names)
    if not unused:
        return None
    named = ", ".join(f"--{name} (only {who})" for name, who in unused)
    return f"WARNING: --system={model.system} does not use {named}; ignored"
