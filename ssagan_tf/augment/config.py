"""The frozen configuration of one augmentation run (built once, from flags or in code)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ssagan_tf.data.schema import DIRECTIONS
from ssagan_tf.judge.config import read_judge_info
from ssagan_tf.precision import PRECISIONS
from ssagan_tf.settings import Problems, setting

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


def _directions(value) -> tuple:
    return parse_directions(value)


@dataclass(frozen=True)
class AugmentConfig:
    """One augmentation run; each field's help text (`run_augment.py --help`, generated from the
    fields) says what it is. `ratio` None translates every input slice once; `directions` is a
    tuple of `DIRECTIONS`; `precision` (its flag is `ssagan_tf.precision`'s): a training run given
    as `model` is exported in it, an export computes in the precision it was exported in and
    another explicit precision is refused; `judge_slices`: how many planned synthetic slices per
    direction the judge scores."""

    model: str = setting(help="An exported model: its base dir <export_dir>/<model_name> (newest version used), "
                              "one version dir, or a training run dir (exported to a temporary dir first).")
    data_dir: str = setting(help="Real slices: a converted dataset (manifest.json + TFRecords), or class folders "
                                 "normal/ and tumor/ of PNG slices or NIfTI volumes.")
    output_dir: str = setting(help="Where the synthetic dataset goes; nothing is written outside it. Must be new, "
                                   "empty, or an earlier augmentation's holding only what it wrote (a folder "
                                   "holding other files, inside --data_dir or holding it, is refused); one run at a "
                                   "time. Re-running with the same settings on the same input data completes an "
                                   "interrupted (or killed) run.")
    ratio: float | None = setting(1.0, "Synthetic:real slices per class (the paper's 1:1 is 1.0; above the number "
                                       "of source slices, sources repeat), or 'all' to translate every input slice "
                                       "once.", flag_default="1.0", parse=lambda value: parse_ratio(value))
    format: str = setting("tfrecord", "Output: TFRecords in the real data's schema, 16-bit PNG folders with masks, "
                                      "or NIfTI stacks (one per source case and direction).", choices=FORMATS)
    split: str = setting("train", "Split of a converted dataset to read; also the output's split folder.")
    batch_size: int = setting(16, "Slices per forward pass.")
    directions: tuple = setting(DIRECTIONS, "both, normal_to_tumor (synthetic tumors) or tumor_to_normal "
                                            "(synthetic normals).", flag_default="both", parse=_directions)
    seed: int = setting(0, "Seed of the source sampling (same seed, same synthetic set).")
    mask_threshold: float | None = setting(None, "Attention at or above this is a synthetic tumor's pseudo-mask; "
                                                 "default: the model's tau (0.5 if it was exported with tau 0).",
                                           kind=float)
    chunk_size: int = setting(256, "Slices per committed chunk (one TFRecord shard); an interrupted run redoes at "
                                   "most the chunks in flight. NIfTI output commits one case at a time.")
    contact_rows: int = setting(4, "Rows per direction in contact_sheet.png (0: no sheet).")
    overwrite: bool = setting(False, "Remove an earlier augmentation's outputs in --output_dir first (exactly the "
                                     "files its record in .augment/ lists); without it a re-run must use the same "
                                     "settings and input data (and completes the earlier run).")
    precision: str = "auto"
    judge: str = setting("", "A judge trained on this dataset (python -m ssagan_tf.judge): it scores up "
                             "to 256 of the planned synthetic slices per direction (tumor rate, normal rate, KID "
                             "against the input's real slices of the target class) into augment.json. Empty = no "
                             "judge.")
    judge_slices: int = 256
    lesion_masks: bool = setting(False, "Synthetic tumors are drawn inside real lesion masks transplanted from the "
                                        "split's labelled tumor slices (inside the brain, rotated and scaled within "
                                        "limits; ssagan_tf/lesions.py) instead of where A_n points, and each "
                                        "written mask is exactly the mask the model was asked to fill. Converted "
                                        "TFRecord input only.")
    field_of_view: str = setting(
        "auto", "How PNG/NIfTI inputs are brought to the model's frame, as data_prep.convert --field_of_view does: "
        "fit (the head's bounding box scaled to a fixed fraction of the frame, by pixel spacing) or pad (padded to "
        "a square, shrunk when larger). auto: as the model's training data was framed (export.json's "
        "training_framing, from the training run's dataset manifest); pad, with a line saying so, for an export "
        "that does not record it. A converted dataset's slices are framed already: a value other than its "
        "manifest's is refused.", choices=FIELD_OF_VIEW_CHOICES)

    def __post_init__(self):
        """Check the values (every problem in one ConfigError, a ValueError); `check_inputs` checks
        the folders."""
        problems = Problems()
        need = problems.need

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
        problems.raise_any()

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
