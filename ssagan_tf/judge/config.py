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
