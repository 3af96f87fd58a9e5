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
from ssagan_tf.settings import Problems, setting

FORMATS = ("brats", "pairs", "folders", "figshare")
STACK_SLICES = ("auto", "on", "off")
_READERS = {"brats": brats, "pairs": pairs, "folders": folders, "figshare": figshare}


def _pair(text: str, sep: str, form: str) -> tuple:
    parts = text.split(sep)
    if len(parts) != 2 or not parts[0]:
        raise ValueError(f"{text!r} is not {form}")
    return parts[0], parts[1]


def _mask_replace(text) -> tuple | None:
    """--mask_replace OLD:NEW -> (OLD, NEW); not given: None."""
    return _pair(text, ":", "OLD:NEW") if text else None


def _class_folders(items) -> tuple:
    """--class_folders NAME=LABEL,... -> ((name, label), ...)."""
    pairs = []
    for item in items:
        name, label = _pair(item, "=", "NAME=LABEL")
        if label not in ("0", "1"):
            raise ValueError(f"{item!r}: the label must be 0 or 1")
        pairs.append((name, int(label)))
    return tuple(pairs)


def _modality_replace(items) -> tuple:
    """--modality_replace NAME=OLD:NEW,... -> ((name, OLD, NEW), ...)."""
    rules = []
    for item in items:
        name, _, rule = item.partition("=")
        old, sep, new = rule.partition(":")
        if not name or not old or not sep:
            raise ValueError(f"{item!r} is not NAME=OLD:NEW")
        rules.append((name, old, new))
    return tuple(rules)


@dataclass(frozen=True)
class ReaderOptions:
    """How to read a dataset. Lists are accepted and stored as tuples; bad values raise one
    ConfigError (a ValueError) naming them all, at construction, before any work. Each field's
    help text is its flag's (`python -m data_prep.convert --help`); as values:

    modalities:    brats: channels in order, from t1, t1ce, t2, flair (BraTS 2023 t1n, t1c, t2w, t2f
                   and the MSD channels FLAIR, T1w, T1gd, T2w map onto these names).
    image_glob:    pairs: glob relative to the input, e.g. "*/*_Scan_T1.nii.gz" (`**` recurses).
    mask_replace:  pairs: (OLD, NEW): the mask path is the image path with every OLD replaced by NEW.
    no_masks:      pairs/brats: Scan.mask is None.
    class_folders: folders: class folder name -> label (0 normal, 1 tumor).
    channel_names: ("rgb",) mixes colour pixels into one luminance channel. Empty: grey images only.
    modality_replace: pairs: ((name, OLD, NEW), ...): modality `name` is read from the image path
                   with OLD replaced by NEW; the first of `modalities` is the image_glob's file.
    """

    modalities: tuple = setting(
        ("t1ce",), "Channels to write, in order. brats: from flair, t1, t1ce, t2 (default t1ce; flair,t1,t1ce,t2 "
        "for four channels). pairs: the --image_glob file's modality first, then any read by --modality_replace "
        "(default: one unnamed channel, 'image'). folders: names from --channel_names (default: all of them, in "
        "stored order).", flag_default=None, kind=tuple)     # the command line's default follows --format
    image_glob: str = setting("*", "pairs: glob of image files or DICOM folders, relative to --input.")
    mask_replace: tuple | None = setting(
        None, "pairs: OLD:NEW; a mask's path is its image's path with OLD replaced by NEW (e.g. _Scan_T1:_Mask); a "
        "label volume on the image's grid, or a DICOM SEG (placed on the image's grid, every segment tumor).",
        parse=_mask_replace)
    patient_level: int = setting(
        1, "pairs: the patient id is the first N path components under --input (below the split folder with "
        "--keep_splits); scans of one patient never straddle two splits. Fewer than 3 patients cannot fill train, "
        "val and test: the conversion stops and says so.")
    no_masks: bool = setting(False, "pairs/brats: the scans have no tumor masks (healthy subjects); needs "
                                    "--assume_normal.")
    class_folders: tuple = setting(
        (("yes", 1), ("no", 0)), "folders: class folder names and labels (1 tumor, 0 normal), as NAME=LABEL.",
        flag_default=("yes=1", "no=0"), parse=_class_folders)
    mask_suffix: str = setting("_mask", "folders: a mask is the image's name with this suffix.")
    channel_names: tuple = setting(
        (), "folders (figshare: one name): names of the channels stored in each image, in file order, e.g. "
        "t1,flair,t1ce for the LGG TIFFs (pre-contrast T1, FLAIR, post-contrast T1); --modalities picks and orders "
        "them. Images with several different channels are refused without it. 'rgb': mix colour pixels into one "
        "BT.709 luminance channel, only for colour photographs of films or screenshots (luminance of MR sequences "
        "is no MR contrast).")
    modality_replace: tuple = setting(
        (), "pairs: NAME=OLD:NEW per extra modality: its file is the image's path with OLD replaced by NEW (e.g. "
        "--modalities=t1ce,flair --modality_replace=flair=_t1ce:_flair).", parse=_modality_replace)
    stack_slices: str = setting(
        "auto", "folders: stack the mask-paired slices <prefix>_<n> of one folder into one volume in numeric order "
        "(per-volume normalisation, brain extent, --slice_range). auto: when every paired image of the folder is "
        "so numbered; on: the numbered ones always; off: one case per image.", choices=STACK_SLICES)
    keep_splits: bool = setting(
        False, "pairs/folders: keep the dataset's own split: top-level folders train/Training, "
        "val/valid/validation, test/Testing (any case) go to train, val, test; without a validation folder "
        "(Training/ + Testing/), validation is --val_fraction of the dataset's training patients; cases outside "
        "such folders are split by the fractions. The layout is checked before any image is read.")

    def __post_init__(self):
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "channel_names", tuple(self.channel_names))
        object.__setattr__(self, "modality_replace", tuple(tuple(item) for item in self.modality_replace))
        object.__setattr__(self, "class_folders", tuple(tuple(item) for item in self.class_folders))
        if self.mask_replace is not None:
            object.__setattr__(self, "mask_replace", tuple(self.mask_replace))
        _validate(self)


def _validate(options: ReaderOptions) -> None:
    """Checks that hold whatever the format, each naming its flag; `check_for_format` adds the
    format's own."""
    problems = Problems()
    need = problems.need
    need(options.modalities, "--modalities is empty; choose from " + ", ".join(brats.MODALITIES))
    need(len(set(options.modalities)) == len(options.modalities),
         f"--modalities repeat a name: {options.modalities}")
    need(len(set(options.channel_names)) == len(options.channel_names) and "" not in options.channel_names,
         f"--channel_names must be distinct non-empty names, got {options.channel_names}")
    need(options.stack_slices in STACK_SLICES, f"--stack_slices must be auto, on or off, got {options.stack_slices!r}")
    for item in options.modality_replace:
        need(len(item) == 3 and all(isinstance(s, str) for s in item) and item[0] and item[1],
             f"--modality_replace items must be (name, OLD, NEW) with a name and OLD, got {item!r}")
    need(options.image_glob, "--image_glob is empty")
    if options.mask_replace is not None:
        if len(options.mask_replace) != 2 or not all(isinstance(s, str) for s in options.mask_replace):
            problems.add(f"--mask_replace must be (OLD, NEW) strings, got {options.mask_replace!r}")
        elif not options.mask_replace[0] or options.mask_replace[0] == options.mask_replace[1]:
            problems.add(f"--mask_replace {options.mask_replace!r}: OLD must be non-empty and differ from NEW")
    need(options.patient_level >= 0, f"--patient_level must be >= 0, got {options.patient_level}")
    need(options.class_folders and all(len(item) == 2 and item[1] in (0, 1) for item in options.class_folders),
         f"--class_folders must be (name, label) pairs with label 0 or 1, got {options.class_folders!r}")
    need(options.mask_suffix, "--mask_suffix is empty")
    problems.raise_any()


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
