"""The judge's settings (`JudgeConfig`) and its folder: `judge.keras` (the trained ResNet18) and
`judge.json` (settings, dataset, validation and test scores).

Plain Python, without TensorFlow: training, augmentation and evaluation check the judge they are
given (`read_judge_info`, `check_judge_for`) while they check their flags, before TensorFlow loads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ssagan_tf.data import schema
from ssagan_tf.precision import PRECISIONS
from ssagan_tf.settings import Problems, setting

JUDGE_MODEL = "judge.keras"
JUDGE_INFO = "judge.json"
FEATURE_LAYER = "pool"
FORMAT = 1


@dataclass(frozen=True)
class JudgeConfig:
    """One judge's training; each field's help text is its flag's (`python -m ssagan_tf.judge
    --help`, generated from the fields; `precision` has `ssagan_tf.precision`'s one flag)."""

    data_dir: str = setting(help="Converted dataset (train, val and test splits) the judge learns and scores.")
    output_dir: str = setting(help=f"Where {JUDGE_MODEL} and {JUDGE_INFO} go: a new or empty folder, or an "
                                   "earlier judge, which is replaced.")
    width: int = setting(32, "ResNet18 base width.")
    epochs: int = setting(30, "Maximum training epochs.")
    patience: int = setting(5, "Early stopping patience on the validation loss (the best epoch is kept).")
    batch_size: int = setting(32, "Batch size.")
    learning_rate: float = setting(1e-3, "Adam learning rate.")
    seed: int = setting(0, "Seed of the initialisation, shuffling and augmentation.")
    classic: bool = setting(True, "Classic augmentation (flip, rotation, translation, crop) while training.")
    threshold: float = setting(0.5, "Tumor probability at and above which the judge calls a slice tumor.")
    precision: str = "auto"
    balance_classes: bool = setting(False, "Weight each slice's loss by n / (2 n_class) of its class, in training "
                                           "and in the validation loss that stops it, so that the rarer class "
                                           "(often the normals) counts as much as the other.")

    def __post_init__(self):
        """Check the values, every problem in one ConfigError, a ValueError (`check_inputs`
        checks the folders)."""
        problems = Problems()
        for name in ("width", "epochs", "batch_size"):
            problems.need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        problems.need(self.patience >= 0, f"patience must be >= 0, got {self.patience}")
        problems.need(np.isfinite(self.learning_rate) and self.learning_rate > 0,
                      f"learning_rate must be finite and > 0, got {self.learning_rate}")
        problems.need(0.0 < self.threshold < 1.0, f"threshold must be in (0, 1), got {self.threshold}")
        problems.need(self.precision in PRECISIONS,
                      f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        problems.raise_any()

    def check_inputs(self) -> schema.Dataset:
        """The output folder may be written (`check_output_dir`) and the data are a converted
        dataset; raises ValueError before any work. Returns the dataset, opened once here."""
        check_output_dir(self.output_dir)
        return schema.open(self.data_dir)


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


def read_judge_info(path: str) -> dict:
    """judge.json of the judge at `path`; ValueError naming what is missing."""
    if not is_judge_dir(path):
        raise ValueError(f"{path} is not a judge: it needs {JUDGE_MODEL} and {JUDGE_INFO} "
                         "(make one with `python -m ssagan_tf.judge`)")
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
