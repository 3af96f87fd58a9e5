"""BraTS reader: every BraTS release layout under one `--format=brats`, told apart file by file.

- BraTS 2018-2021 NIfTI: `<case>_{flair,t1,t1ce,t2,seg}.nii[.gz]`, labels 1, 2, 4.
- BraTS 2023: `<case>-{t1c,t1n,t2f,t2w,seg}.nii.gz`, labels 1-3.
- BraTS 2013/2015 MHA: `<case>/VSD.Brain.XX.O.MR_T1c.54513/VSD.Brain.XX.O.MR_T1c.54513.mha`, the
  segmentation `VSD.Brain_3more.XX.O.OT.54517/...OT...mha`, labels 1-4.
- MSD Task01_BrainTumour: `imagesTr/BRATS_001.nii.gz` (4-D: FLAIR, T1w, T1gd, T2w) and
  `labelsTr/BRATS_001.nii.gz`, labels 1-3. `imagesTs` is skipped: it has no labels.
Whatever the release, the channels are called t1, t1ce, t2, flair and the whole tumor is label > 0.
"""

from __future__ import annotations

import os
import re
from collections import Counter

import SimpleITK as sitk

from data_prep.readers import common
from data_prep.scan import CaseError, CaseRef, Scan

MODALITIES = ("t1", "t1ce", "t2", "flair")
MSD_CHANNELS = ("flair", "t1", "t1ce", "t2")
# Every BraTS release labels within 0-4 (2013/2015: 1-4; 2018-2021: 1, 2, 4; 2023 and MSD: 1-3).
BRATS_LABELS = (0, 1, 2, 3, 4)

_NIFTI_2021 = re.compile(r"^(?P<case>.+)_(?P<role>flair|t1ce|t1|t2|seg)\.nii(\.gz)?$", re.IGNORECASE)
_NIFTI_2023 = re.compile(r"^(?P<case>.+)-(?P<role>t1c|t1n|t2f|t2w|seg)\.nii(\.gz)?$", re.IGNORECASE)
_MHA_TOKEN = re.compile(r"\.(?P<role>MR_Flair|MR_T1c|MR_T1|MR_T2|OT)\.", re.IGNORECASE)
_ROLE_2023 = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"}
_ROLE_MHA = {"mr_flair": "flair", "mr_t1": "t1", "mr_t1c": "t1ce", "mr_t2": "t2", "ot": "seg"}
# A trailing time point shared by several scans of one patient: BraTS 2023 `BraTS-GLI-00005-001`
# and BraTS 2015 `brats_tcia_pat105_0001`.
_TIMEPOINT_2023 = re.compile(r"^(?P<patient>BraTS-[A-Za-z]+-\d+)-\d+$")
_TIMEPOINT_MHA = re.compile(r"^(?P<patient>.*pat\d+)_\d+$", re.IGNORECASE)

_NOTHING_FOUND = ("no BraTS cases under {dir}: looked for case folders with <case>_{{flair,t1,t1ce,t2,seg}}"
                  ".nii[.gz] (2018-2021), <case>-{{t1c,t1n,t2f,t2w,seg}}.nii.gz (2023), VSD.*.MR_*.mha "
                  "(2013/2015) or MSD imagesTr/ + labelsTr/")


def discover(input_dir: str, options) -> tuple[list[CaseRef], list[tuple[str, str]]]:
    """Group the files under `input_dir` into cases; report cases that lack a requested modality
    or their segmentation, or hold a role twice."""
    groups = _group_files(input_dir)
    if not groups:
        raise ValueError(_NOTHING_FOUND.format(dir=input_dir) + _pairs_hint(input_dir))
    name_counts = Counter(name for (_, _, name) in groups)
    cases, problems = [], []
    for (variant, case_dir, name), roles in sorted(groups.items()):
        problem = _group_problem(variant, roles, options)
        if problem:
            problems.append((case_dir, problem))
            continue
        case_id = name if name_counts[name] == 1 else _path_id(case_dir, name, input_dir)
        paths = {role: found[0] for role, found in roles.items()}
        if options.no_masks:
            paths.pop("seg", None)
        cases.append(CaseRef(case_id=case_id, patient_id=_patient_of(variant, name, case_id),
                             format="brats", paths=paths, extra={"variant": variant, "case_dir": case_dir}))
    cases.sort(key=lambda ref: ref.case_id)
    return cases, problems


def load(ref: CaseRef, options) -> Scan:
    """Read the requested modalities (in order) and the segmentation of one case."""
    if ref.extra["variant"] == "msd":
        volumes = _read_msd_channels(ref.paths["image"], options.modalities)
    else:
        volumes = [common.read_volume(_modality_path(ref, m)) for m in options.modalities]
    for volume in volumes:
        common.check_intensities(volume)
    for volume in volumes[1:]:
        common.check_same_grid(volumes[0], volume, "modality")
    mask = None
    if not options.no_masks:
        if "seg" not in ref.paths:
            raise CaseError(ref.extra["case_dir"], "no segmentation file")
        seg = common.read_mask(ref.paths["seg"], volumes[0], "segmentation")
        mask = common.whole_tumor(seg, allowed=BRATS_LABELS)
    return Scan(ref=ref, image=common.stack_channels(volumes), mask=mask,
                spacing=volumes[0].spacing, is_3d=True)


def _group_files(input_dir: str) -> dict:
    """(variant, case folder, case name) -> {role: [paths]} for every file that looks like BraTS."""
    groups: dict = {}
    for directory, filename in common.walk_files(input_dir):
        found = _classify(directory, filename)
        if found:
            variant, case_dir, name, role = found
            roles = groups.setdefault((variant, case_dir, name), {})
            roles.setdefault(role, []).append(os.path.join(directory, filename))
    return groups


def _classify(directory: str, filename: str):
    """(variant, case folder, case name, role) of one file, or None when it is not BraTS."""
    folder = os.path.basename(directory)
    is_nifti = filename.lower().endswith((".nii", ".nii.gz"))
    if is_nifti and folder in ("imagesTr", "labelsTr"):
        role = "image" if folder == "imagesTr" else "seg"
        return "msd", os.path.dirname(directory), common.strip_extension(filename), role
    token = _MHA_TOKEN.search(filename)
    if token and filename.lower().endswith(".mha"):
        # Each .mha sits in a folder named like itself, one level below the case folder.
        case_dir = os.path.dirname(directory) if _MHA_TOKEN.search(folder) else directory
        return "mha", case_dir, os.path.basename(case_dir), _ROLE_MHA[token["role"].lower()]
    for variant, pattern, roles in (("nifti2023", _NIFTI_2023, _ROLE_2023), ("nifti", _NIFTI_2021, None)):
        match = pattern.match(filename)
        if match:
            role = match["role"].lower()
            return variant, directory, match["case"], roles[role] if roles else role
    return None


def _pairs_hint(input_dir: str) -> str:
    """When volumes are there in another naming (renamed BraTS files, `sub-01_T1c.nii.gz`), the
    pairs reader reads them: say so, with one of the files found."""
    volumes = [common.relative_id(os.path.join(d, name), input_dir) for d, name in common.walk_files(input_dir)
               if name.lower().endswith(common.VOLUME_EXTENSIONS)]
    if not volumes:
        return ""
    return (f"; found {len(volumes)} volume file(s) in another naming (e.g. {volumes[0]}): read them with "
            "--format=pairs --image_glob=<glob of the images> --mask_replace=OLD:NEW (the mask's name from the "
            "image's) and --modality_replace=NAME=OLD:NEW per extra modality (docs/formats.md, section 2)")


def _group_problem(variant: str, roles: dict, options) -> str | None:
    doubles = sorted(role for role, found in roles.items() if len(found) > 1)
    if doubles:
        return f"more than one file for {', '.join(doubles)}: " + "; ".join(
            os.path.basename(p) for role in doubles for p in roles[role])
    wanted = ("image",) if variant == "msd" else tuple(options.modalities)
    missing = [role for role in wanted if role not in roles]
    if not options.no_masks and "seg" not in roles:
        missing.append("seg")
    if missing:
        present = ", ".join(sorted(roles)) or "nothing"
        return f"missing {', '.join(missing)} (found {present})"
    return None


def _path_id(case_dir: str, name: str, input_dir: str) -> str:
    """A case id that tells apart case folders of the same name (e.g. under HGG/ and LGG/)."""
    folder = common.relative_id(case_dir, input_dir)
    return folder if os.path.basename(case_dir) == name else f"{folder}/{name}"


def _patient_of(variant: str, name: str, case_id: str) -> str:
    """Scans that share a patient and differ only by time point share a patient id."""
    pattern = {"nifti2023": _TIMEPOINT_2023, "mha": _TIMEPOINT_MHA}.get(variant)
    match = pattern.match(name) if pattern else None
    return match["patient"] if match else case_id


def _modality_path(ref: CaseRef, modality: str) -> str:
    if modality not in ref.paths:
        raise CaseError(ref.extra["case_dir"], f"no {modality} file")
    return ref.paths[modality]


def _read_msd_channels(path: str, modalities) -> list[common.Volume]:
    """Split a 4-D MSD volume (X, Y, Z, 4 channels FLAIR, T1w, T1gd, T2w) into 3-D volumes."""
    image = common.read_image(path)
    size = image.GetSize()
    if image.GetDimension() != 4 or image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(path, f"{image.GetDimension()}-D image of size {size}; MSD images are 4-D "
                              f"with channels {', '.join(MSD_CHANNELS)}")
    if size[3] != len(MSD_CHANNELS):
        raise CaseError(path, f"{size[3]} channels; MSD images have {len(MSD_CHANNELS)} "
                              f"({', '.join(MSD_CHANNELS)})")
    volumes = []
    for modality in modalities:
        channel = sitk.Extract(image, list(size[:3]) + [0], [0, 0, 0, MSD_CHANNELS.index(modality)])
        volumes.append(common.volume_from_image(channel, path))
    return volumes
