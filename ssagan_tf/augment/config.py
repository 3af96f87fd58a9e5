"""The frozen configuration of one augmentation run (built once, from flags or in code)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ssagan_tf.data.schema import DIRECTIONS
from ssagan_tf.judge.config import read_judge_info
from ssagan_tf.precision import PRECISIONS

FORMATS = ("tfrecord", "png", "nifti")
FIELD_OF_VIEW_CHOICES = ("auto", "fit", "pad")     # auto: the framing of the model's training data
_SPLIT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def parse_directions(value: str) -> tuple:
    """`both`, `normal_to_tumor` or `tumor_to_normal` (also a comma list) -> tuple of directions."""
    if value == "both":
        return DIRECTIONS
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in DIRECTIONS]
    if not names or unknown:
        raise ValueError(f"directions must be 'both' or a comma list of {DIRECTIONS}, got {value!r}")
    return tuple(d for d in DIRECTIONS if d in names)


def parse_ratio(value: str):
    """`all` (every input slice once, None) or a positive number (synthetic:real per class)."""
    if str(value).strip().lower() == "all":
        return None
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError(f"ratio must be a positive number or 'all', got {value!r}") from None
    if not ratio > 0 or ratio != ratio or ratio == float("inf"):
        raise ValueError(f"ratio must be a positive number or 'all', got {value!r}")
    return ratio


@dataclass(frozen=True)
class AugmentConfig:
    """One augmentation run.

    model          an export base dir (`<export_dir>/<model_name>`, newest version used), one version
                   dir, or a training run dir (exported to a temporary directory first)
    data_dir       converted TFRecords (a dir with `manifest.json`), or class folders
                   `normal/` and `tumor/` holding PNG slices or NIfTI volumes
    output_dir     everything is written below it, nothing elsewhere
    ratio          synthetic:real per class (None: translate every input slice once)
    format         `tfrecord`, `png` or `nifti`
    split          the TFRecord split to read (ignored for file inputs), and the output split name
    mask_threshold attention at or above it is the synthetic tumors' pseudo-mask (None: the
                   model's tau, or 0.5 when the model was exported with tau 0)
    chunk_size     slices per committed chunk (one TFRecord shard or PNG batch); the unit a
                   re-run skips (NIfTI: one chunk per source case and direction)
    overwrite      remove an earlier augmentation's outputs in output_dir first (otherwise a re-run
                   must have the same settings, and completes the earlier run)
    precision      compute precision (`ssagan_tf.precision`): a training run given as `model` is
                   exported in it (`auto`: by hardware); an export computes in the precision it was
                   exported in, and another explicit precision is refused
    judge          a judge (`python -m ssagan_tf.judge`) that scores up to `judge_slices`
                   planned synthetic slices per direction (rate and KID, in augment.json); "" = none
    lesion_masks   synthetic tumors are drawn inside real lesion masks transplanted from the
                   split's labelled tumor slices (`ssagan_tf.lesions`), in A_n's place, and each
                   written mask is the mask it was asked to fill (converted TFRecord input only)
    field_of_view  how PNG/NIfTI inputs are brought to the model's frame (`fit` or `pad`, as
                   `data_prep.convert --field_of_view`); `auto`: as the model's training data was
                   (its export.json's `training_framing`), `pad` when the export does not say.
                   Converted TFRecord inputs are framed already: an explicit value must match
                   their manifest's
    """

    model: str
    data_dir: str
    output_dir: str
    ratio: float | None = 1.0
    format: str = "tfrecord"
    split: str = "train"
    batch_size: int = 16
    directions: tuple = DIRECTIONS
    seed: int = 0
    mask_threshold: float | None = None
    chunk_size: int = 256
    contact_rows: int = 4
    overwrite: bool = False
    precision: str = "auto"
    judge: str = ""
    judge_slices: int = 256
    lesion_masks: bool = False
    field_of_view: str = "auto"

    def __post_init__(self):
        """Check the values (every problem in one ValueError); `check_inputs` checks the folders."""
        problems = []

        def need(ok, message):
            if not ok:
                problems.append(message)

        need(bool(self.model), "model is required")
        need(bool(self.data_dir), "data_dir is required")
        need(bool(self.output_dir), "output_dir is required")
        need(self.ratio is None or self.ratio > 0, f"ratio must be > 0 or None (all), got {self.ratio}")
        need(self.format in FORMATS, f"format must be one of {FORMATS}, got {self.format!r}")
        need(bool(_SPLIT_PATTERN.match(self.split or "")),
             f"split must be a simple name (letters, digits, '_', '-'), got {self.split!r}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(len(self.directions) >= 1 and set(self.directions) <= set(DIRECTIONS),
             f"directions must be a non-empty subset of {DIRECTIONS}, got {self.directions}")
        need(self.mask_threshold is None or 0.0 < self.mask_threshold <= 1.0,
             f"mask_threshold must be in (0, 1], got {self.mask_threshold}")
        need(self.chunk_size >= 1, f"chunk_size must be >= 1, got {self.chunk_size}")
        need(self.contact_rows >= 0, f"contact_rows must be >= 0, got {self.contact_rows}")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        need(self.judge_slices >= 2, f"judge_slices must be >= 2, got {self.judge_slices}")
        need(self.field_of_view in FIELD_OF_VIEW_CHOICES,
             f"field_of_view must be one of {', '.join(FIELD_OF_VIEW_CHOICES)}, got {self.field_of_view!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def check_inputs(self) -> None:
        """The folders exist and the output is not the input dataset, a folder inside it, or a file;
        the judge, if any, is one. Raises ValueError before any work."""
        if not os.path.isdir(self.model):
            raise ValueError(f"model {self.model!r}: no such directory")
        if not os.path.isdir(self.data_dir):
            raise ValueError(f"data_dir {self.data_dir!r}: no such directory")
        data, output = os.path.realpath(self.data_dir), os.path.realpath(self.output_dir)
        if os.path.commonpath([data, output]) == data:
            raise ValueError(f"output_dir must differ from data_dir and lie outside it ({self.output_dir!r} is "
                             f"{'' if output == data else 'inside '}the input dataset): synthetic slices would mix "
                             "with the real ones")
        if os.path.commonpath([data, output]) == output:
            raise ValueError(f"data_dir {self.data_dir!r} lies inside output_dir {self.output_dir!r}: an "
                             "augmentation replaces files in its output folder and must never reach its input; "
                             "choose an output_dir outside the data")
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(f"output_dir {self.output_dir!r}: is a file, not a folder")
        if self.lesion_masks and not os.path.isfile(os.path.join(self.data_dir, "manifest.json")):
            raise ValueError(f"--lesion_masks takes its lesions from the tumor masks of a converted dataset; "
                             f"{self.data_dir} has no manifest.json")
        if self.judge:
            read_judge_info(self.judge)
