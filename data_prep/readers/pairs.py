"""Generic image/mask pairs: any volume SimpleITK reads (NIfTI, NRRD, MHA, ...) or a folder
holding one DICOM series, found by a glob; each mask at the image's path with OLD replaced by NEW.
A mask may also be a DICOM SEG (a file, or a folder holding one), placed on the image's grid.

For the shared Brain-Tumor-Progression data:
    image_glob="*/*_Scan_T1.nii.gz", mask_replace=("_Scan_T1", "_Mask")
gives `01/Pre_Scan_T1.nii.gz` + `01/Pre_Mask.nii.gz`, patient `01`.

Several modalities: the glob finds the first of `modalities`; each other one is found the way
the mask is, by `modality_replace` (name, OLD, NEW): e.g. modalities ("t1ce", "flair") with
("flair", "_t1ce", "_flair") reads `a/x_t1ce.nii.gz` and `a/x_flair.nii.gz` as two channels.
With keep_splits, a top-level train/val/test folder sets the split of the scans under it.
"""

from __future__ import annotations

import os

from data_prep.readers import common
from data_prep.scan import CaseRef, Scan


def discover(input_dir: str, options) -> tuple[list[CaseRef], list[tuple[str, str]]]:
    """Every glob hit is a scan, except hits that are the mask of another hit (a broad glob such
    as `*/*.nii.gz` matches the masks too). Images whose mask is missing are reported."""
    if options.mask_replace is None and not options.no_masks:
        raise ValueError("pairs needs mask_replace=(OLD, NEW) to find each image's mask, "
                         "or no_masks for scans without segmentation")
    hits = _glob_hits(input_dir, options.image_glob)
    if not hits:
        raise ValueError(f"no files or DICOM folders under {input_dir} match image_glob "
                         f"{options.image_glob!r}")
    mask_of = {hit: _mask_relpath(hit, options) for hit in hits}
    masks = {mask for mask in mask_of.values() if mask}
    # A broad glob also matches the other modalities' files: they are channels, not scans.
    masks |= {hit.replace(old, new) for hit in hits for _, old, new in options.modality_replace if old in hit}
    cases, problems = [], []
    # A DICOM folder's name is kept whole: its dots are not an extension.
    ids = common.case_ids([hit for hit in hits if hit not in masks],
                          lambda hit: hit if os.path.isdir(os.path.join(input_dir, hit)) else common.strip_extension(hit))
    for hit in hits:
        if hit in masks:
            continue
        image_path = os.path.join(input_dir, hit)
        paths = {"image": image_path}
        if not options.no_masks:
            problem = _mask_problem(input_dir, mask_of[hit], options)
            if problem:
                problems.append((image_path, problem))
                continue
            paths["mask"] = os.path.join(input_dir, mask_of[hit])
        problem = _modality_paths(input_dir, hit, options, paths)
        if problem:
            problems.append((image_path, problem))
            continue
        case_id = ids[hit]
        split, inner = common.own_split(hit) if options.keep_splits else (None, hit)
        patient = _patient_of(inner, case_id, options.patient_level)
        cases.append(CaseRef(case_id=case_id, patient_id=f"{split}/{patient}" if split and patient != case_id
                             else patient, format="pairs", paths=paths, extra={"split": split} if split else {}))
    return cases, problems


def _modality_paths(input_dir: str, hit: str, options, paths: dict) -> str | None:
    """Add the path of every modality after the first to `paths`; the problem when one is missing."""
    for name, old, new in options.modality_replace:
        if old not in hit:
            return f"{old!r} does not occur in the path, so there is no {name} path to derive"
        path = os.path.join(input_dir, hit.replace(old, new))
        if not os.path.exists(path):
            return f"{name} not found: {path}"
        paths[name] = path
    return None


def load(ref: CaseRef, options) -> Scan:
    """Read the image and, unless the scans have no masks, its mask on the same grid."""
    image = common.read_volume(ref.paths["image"])
    common.check_intensities(image)
    volumes = [image]
    for name in options.modalities[1:]:
        volume = common.read_volume(ref.paths[name])
        common.check_intensities(volume)
        common.check_same_grid(image, volume, name)
        volumes.append(volume)
    mask = None
    if not options.no_masks and "mask" in ref.paths:
        labels = common.read_mask(ref.paths["mask"], image)
        mask = common.whole_tumor(labels)
    return Scan(ref=ref, image=common.stack_channels(volumes), mask=mask, spacing=image.spacing,
                is_3d=True)


def _glob_hits(input_dir: str, pattern: str) -> list[str]:
    """Sorted hits relative to `input_dir` ('/' separators), by a loop-safe walk (a symbolic link
    back up the tree, with a `**` glob, would otherwise never end); hidden entries never match."""
    return common.glob_relative(input_dir, pattern)


def _mask_relpath(hit: str, options) -> str | None:
    """The mask's path relative to the input: every OLD in the image's relative path becomes NEW
    (the input folder's own name is left alone)."""
    if options.no_masks or not options.mask_replace:
        return None
    old, new = options.mask_replace
    return hit.replace(old, new) if old in hit else None


def _mask_problem(input_dir: str, mask: str | None, options) -> str | None:
    if mask is None:
        return f"{options.mask_replace[0]!r} does not occur in the path, so there is no mask path to derive"
    if not os.path.exists(os.path.join(input_dir, mask)):
        return f"mask not found: {os.path.join(input_dir, mask)}"
    return None


def _patient_of(hit: str, case_id: str, patient_level: int) -> str:
    """The first `patient_level` folders of the relative path; a scan with no folder above it (or
    patient_level 0) is its own patient."""
    folders = hit.split("/")[:-1]
    if patient_level <= 0 or not folders:
        return case_id
    return "/".join(folders[:patient_level])
