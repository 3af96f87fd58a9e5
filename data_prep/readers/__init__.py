"""Format readers of the converter: find the cases of a dataset on disk, and read one case into a
`Scan` (raw intensities, axial slices in LPS orientation, whole-tumor mask).

    cases, problems = discover("/data/BraTS2021", "brats", ReaderOptions(modalities=("t1ce",)))
    scan = load(cases[0], options)      # CaseError(path, problem) on bad input

`discover` is cheap and runs once; `load` runs per case, possibly in a worker thread (CaseRef and
ReaderOptions are small, immutable values the threads share). See docs/formats.md for the layouts on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from data_prep.readers import brats, figshare, folders, pairs
from data_prep.scan import CaseRef, LayoutError, Scan

FORMATS = ("brats", "pairs", "folders", "figshare")
_READERS = {"brats": brats, "pairs": pairs, "folders": folders, "figshare": figshare}


@dataclass(frozen=True)
class ReaderOptions:
    """How to read a dataset. Lists are accepted and stored as tuples; bad values raise
    ValueError at construction, before any work.

    modalities:    brats: channels in order, from t1, t1ce, t2, flair (BraTS 2023 t1n, t1c, t2w, t2f
                   and the MSD channels FLAIR, T1w, T1gd, T2w map onto these names).
    image_glob:    pairs: glob relative to the input, e.g. "*/*_Scan_T1.nii.gz" (`**` recurses).
    mask_replace:  pairs: (OLD, NEW): the mask path is the image path with every OLD replaced by NEW.
    patient_level: pairs: the patient id is the first N folders of the path relative to the input.
    no_masks:      pairs/brats: the scans have no segmentation (healthy subjects): Scan.mask is None.
    class_folders: folders: class folder name -> label (0 normal, 1 tumor).
    mask_suffix:   folders: `name.tif` + `name<mask_suffix>.tif` pairs.
    channel_names: folders (figshare: one name): names of the channels stored in each image, in file order (e.g.
                   t1,flair,t1ce for the LGG TIFFs); `modalities` then picks and orders them.
                   ("rgb",) mixes colour pixels into one luminance channel. Empty: grey images only.
    modality_replace: pairs: ((name, OLD, NEW), ...): modality `name` is read from the image path
                   with OLD replaced by NEW; the first of `modalities` is the image_glob's file.
    stack_slices:  folders: "auto" (stack `<name>_<n>` slices of a folder into one volume when
                   every image of the folder is so numbered), "on" (always), "off" (never).
    keep_splits:   pairs/folders: top-level train/val/test folders (and their usual spellings)
                   fix the split of what is under them.
    """

    modalities: tuple = ("t1ce",)
    image_glob: str = "*"
    mask_replace: tuple | None = None
    patient_level: int = 1
    no_masks: bool = False
    class_folders: tuple = (("yes", 1), ("no", 0))
    mask_suffix: str = "_mask"
    channel_names: tuple = ()
    modality_replace: tuple = ()
    stack_slices: str = "auto"
    keep_splits: bool = False

    def __post_init__(self):
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "channel_names", tuple(self.channel_names))
        object.__setattr__(self, "modality_replace", tuple(tuple(item) for item in self.modality_replace))
        object.__setattr__(self, "class_folders", tuple(tuple(item) for item in self.class_folders))
        if self.mask_replace is not None:
            object.__setattr__(self, "mask_replace", tuple(self.mask_replace))
        _validate(self)


def _validate(options: ReaderOptions) -> None:
    """Checks that hold whatever the format; `check_for_format` adds the format's own."""
    if not options.modalities:
        raise ValueError("modalities is empty; choose from " + ", ".join(brats.MODALITIES))
    if len(set(options.modalities)) != len(options.modalities):
        raise ValueError(f"modalities repeat a name: {options.modalities}")
    if len(set(options.channel_names)) != len(options.channel_names) or "" in options.channel_names:
        raise ValueError(f"channel_names must be distinct non-empty names, got {options.channel_names}")
    if options.stack_slices not in ("auto", "on", "off"):
        raise ValueError(f"stack_slices must be auto, on or off, got {options.stack_slices!r}")
    for item in options.modality_replace:
        if len(item) != 3 or not all(isinstance(s, str) for s in item) or not item[0] or not item[1]:
            raise ValueError(f"modality_replace items must be (name, OLD, NEW) with a name and OLD, got {item!r}")
    if not options.image_glob:
        raise ValueError("image_glob is empty")
    if options.mask_replace is not None:
        if len(options.mask_replace) != 2 or not all(isinstance(s, str) for s in options.mask_replace):
            raise ValueError(f"mask_replace must be (OLD, NEW) strings, got {options.mask_replace!r}")
        if not options.mask_replace[0] or options.mask_replace[0] == options.mask_replace[1]:
            raise ValueError(f"mask_replace {options.mask_replace!r}: OLD must be non-empty and differ from NEW")
    if options.patient_level < 0:
        raise ValueError(f"patient_level must be >= 0, got {options.patient_level}")
    if not options.class_folders or any(len(item) != 2 or item[1] not in (0, 1) for item in options.class_folders):
        raise ValueError(f"class_folders must be (name, label) pairs with label 0 or 1, got {options.class_folders!r}")
    if not options.mask_suffix:
        raise ValueError("mask_suffix is empty")


def check_for_format(options: ReaderOptions, fmt: str) -> None:
    """The modality names a format can honour, raising ValueError naming the flag."""
    if fmt == "brats":
        unknown = [m for m in options.modalities if m not in brats.MODALITIES]
        if unknown:
            raise ValueError(f"--modalities: unknown {unknown}; choose from {', '.join(brats.MODALITIES)} "
                             "(BraTS 2023 t1n, t1c, t2w, t2f are read as t1, t1ce, t2, flair)")
    if fmt == "pairs":
        named = {item[0] for item in options.modality_replace}
        missing = [m for m in options.modalities[1:] if m not in named]
        if missing:
            raise ValueError(f"--modalities: {missing} need --modality_replace NAME=OLD:NEW (the first modality, "
                             f"{options.modalities[0]}, is the --image_glob file)")
        stray = sorted(named - set(options.modalities[1:]))
        if stray:
            raise ValueError(f"--modality_replace names {stray}, which are not among --modalities after the first")
    elif options.modality_replace:
        raise ValueError("--modality_replace applies to --format=pairs only")
    if fmt == "folders" and options.channel_names and options.channel_names != ("rgb",):
        unknown = [m for m in options.modalities if m not in options.channel_names]
        if unknown:
            raise ValueError(f"--modalities {list(options.modalities)}: {unknown} not among --channel_names "
                             f"{list(options.channel_names)}")
    elif fmt == "figshare" and len(options.channel_names) > 1:
        raise ValueError("--channel_names: figshare slices are grey (post-contrast T1); give at most one name")
    elif fmt in ("brats", "pairs") and options.channel_names:
        raise ValueError("--channel_names applies to --format=folders and figshare; brats and pairs volumes are "
                         "named by --modalities")


def discover(input_dir: str, fmt: str, options: ReaderOptions) -> tuple[list[CaseRef], list[tuple[str, str]]]:
    """Cases found under `input_dir` (sorted by case id) and (path, problem) pairs for what was
    found but cannot be used (a case missing a modality or its segmentation, an image without
    its mask, ...). Raises ValueError when `input_dir` does not exist or holds nothing of `fmt`;
    when everything found is unusable, the case list is empty and the problems say why."""
    reader = _reader(fmt)
    if not os.path.isdir(input_dir):
        raise ValueError(f"input directory not found: {input_dir}")
    cases, problems = reader.discover(os.path.normpath(input_dir), options)
    if not options.keep_splits and fmt in ("pairs", "folders"):
        _refuse_split_folders_as_patients(cases, input_dir, fmt, options)
    return sorted(cases, key=lambda ref: ref.case_id), sorted(problems)


def _refuse_split_folders_as_patients(cases: list, input_dir: str, fmt: str, options) -> None:
    """A dataset's train/validation/test folders where patients are expected (`train/P01/...`
    read at --patient_level=1) would become three "patients", shuffled so that the dataset's train
    folder may land in our test split. Refuse, with the two ways out."""
    from data_prep.readers.common import SPLIT_FOLDERS

    found: dict = {}
    for ref in cases:
        parts = ref.patient_id.split("/")
        if parts[-1].lower() in SPLIT_FOLDERS and ref.patient_id != ref.case_id:
            found[ref.patient_id] = found.get(ref.patient_id, 0) + 1
    if not found:
        return
    named = ", ".join(f"{p}/ ({n} {'scans' if fmt == 'pairs' else 'images'})" for p, n in sorted(found.items()))
    depth = len(next(iter(found)).split("/")) - 1
    parent = os.path.join(input_dir, *next(iter(found)).split("/")[:-1])
    keep = "--keep_splits" if depth == 0 else f"--input={parent} --keep_splits"
    if fmt == "pairs":
        fixes = (f"keep the dataset's split with {keep} (the folders below them are then the patients), or split "
                 f"by patient with --patient_level={depth + 2} (the folders below them are the patients; the "
                 "dataset's split is ignored)")
        what = f"--patient_level={options.patient_level} makes"
    else:
        fixes = ("keep the dataset's split: put the class folders inside the split folders (train/yes/, test/no/) "
                 "and pass --keep_splits; or split by patient: move the images out of the split folders")
        what = "the subfolders of class folders make"
    raise LayoutError(f"{what} the dataset's split folders {named} into patients, so its split would be shuffled "
                      f"into ours; {fixes}")


def check_own_splits(refs: list, input_dir: str, val_fraction: float) -> bool:
    """With --keep_splits, before any image is read: the dataset's own split folders must give
    train and test (cases outside them are split by the fractions and may fill the rest). Returns
    whether validation is to be drawn from the dataset's training patients (no validation
    folder, as in the common Training/ + Testing/ layout). Raises LayoutError naming the fix."""
    own = {ref.extra.get("split") for ref in refs} - {None}
    free = [ref for ref in refs if not ref.extra.get("split")]
    leave_out = "leave out --keep_splits to split the patients by --train_fraction and --val_fraction"
    if not own:
        tops = sorted({ref.case_id.split("/")[0] for ref in refs if "/" in ref.case_id})
        raise LayoutError(f"--keep_splits: no top-level split folder (train/Training, val/valid/validation, "
                          f"test/Testing, any case) under {input_dir}; folders there: {', '.join(tops) or 'none'}; "
                          f"{leave_out}")
    if free:
        return False
    missing = [name for name in ("train", "test") if name not in own]
    if missing:
        folder = {"train": "train/ or Training/", "test": "test/ or Testing/"}
        raise LayoutError(f"--keep_splits: {input_dir} has no {' and no '.join(folder[m] for m in missing)} folder, "
                          f"so that split would be empty; {leave_out}")
    if "val" in own:
        return False
    train_patients = {ref.patient_id for ref in refs if ref.extra.get("split") == "train"}
    if val_fraction <= 0 or len(train_patients) < 2:
        raise LayoutError(f"--keep_splits: {input_dir} has no validation folder, and validation is drawn from "
                          f"the dataset's training patients by --val_fraction, which needs --val_fraction > 0 and "
                          f"at least 2 training patients (got {val_fraction} and {len(train_patients)})")
    return True


def load(ref: CaseRef, options: ReaderOptions) -> Scan:
    """Read one case. Scan.image is (Z, Y, X, C) float32 raw intensities, axial slices in LPS
    orientation; Scan.mask is the (Z, Y, X) uint8 whole tumor or None; Scan.spacing is in mm in
    (Z, Y, X) order. Raises CaseError(path, problem) on bad input."""
    return _reader(ref.format).load(ref, options)


def _reader(fmt: str):
    if fmt not in _READERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return _READERS[fmt]
