"""figshare brain-tumor dataset (Cheng et al.): one `.mat` file per T1-weighted contrast-enhanced
slice, MATLAB v7.3 (HDF5), group `cjdata` with `image`, `label` (1 meningioma, 2 glioma,
3 pituitary tumor), `PID` (patient id as uint16 character codes) and `tumorMask`.

MATLAB stores arrays column-major, so h5py hands every matrix over transposed; they are
transposed back here. Every slice shows a tumor: label 1 (tumor) with its mask, Z = 1. The
patient is the PID, so that the slices of one patient stay in one split.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from data_prep.readers import common
from data_prep.scan import CaseError, CaseRef, Scan

TUMOR_TYPES = {1: "meningioma", 2: "glioma", 3: "pituitary"}
_GROUP = "cjdata"


def discover(input_dir: str, options) -> tuple[list[CaseRef], list[tuple[str, str]]]:
    """One case per `.mat` file; the PID is read now because patient grouping needs it."""
    files = [os.path.join(d, name) for d, name in common.walk_files(input_dir) if name.lower().endswith(".mat")]
    if not files:
        raise ValueError(f"no .mat files under {input_dir}")
    cases, problems = [], []
    for path in files:
        case_id = common.relative_id(path, input_dir)[: -len(".mat")]
        try:
            patient, tumor_type = _read_identity(path)
        except CaseError as err:
            problems.append((path, err.problem))
            continue
        cases.append(CaseRef(case_id=case_id, patient_id=patient or case_id, format="figshare",
                             paths={"image": path}, label=1, extra={"tumor_type": tumor_type}))
    cases.sort(key=lambda ref: ref.case_id)
    return cases, problems


def load(ref: CaseRef, options) -> Scan:
    """The slice as (1, H, W, 1) float32 and its tumor mask as (1, H, W) uint8."""
    path = ref.paths["image"]
    with _open(path) as f:
        group = _cjdata(f, path)
        image = _matrix(group, "image", path).astype(np.float32)
        mask = _matrix(group, "tumorMask", path)
    common.check_intensities(common.Volume(path, image, (1.0, 1.0)))
    if mask.shape != image.shape:
        raise CaseError(path, f"tumorMask shape {mask.shape} differs from image shape {image.shape}")
    whole = common.whole_tumor(common.Volume(path, mask, (1.0, 1.0)))
    return Scan(ref=ref, image=image[None, :, :, None], mask=whole[None], spacing=(1.0, 1.0, 1.0),
                is_3d=False)


def _read_identity(path: str) -> tuple[str, str]:
    """(patient id, tumor type name) of one file."""
    with _open(path) as f:
        group = _cjdata(f, path)
        patient = decode_matlab_string(_dataset(group, "PID", path))
        label = int(np.asarray(_dataset(group, "label", path)).ravel()[0])
    if label not in TUMOR_TYPES:
        raise CaseError(path, f"label {label}; figshare labels are 1, 2, 3 ({', '.join(TUMOR_TYPES.values())})")
    return patient, TUMOR_TYPES[label]


def decode_matlab_string(codes) -> str:
    """A MATLAB char array as h5py gives it (uint16 codes, any shape) -> a Python string."""
    return "".join(chr(int(c)) for c in np.asarray(codes).ravel() if int(c) != 0).strip()


def _open(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise CaseError(path, f"not a readable MATLAB v7.3 (HDF5) file: {err}") from None


def _cjdata(f: h5py.File, path: str) -> h5py.Group:
    if _GROUP not in f or not isinstance(f[_GROUP], h5py.Group):
        raise CaseError(path, f"no '{_GROUP}' group (found: {', '.join(f.keys()) or 'nothing'})")
    return f[_GROUP]


def _dataset(group: h5py.Group, name: str, path: str) -> np.ndarray:
    if name not in group or not isinstance(group[name], h5py.Dataset):
        raise CaseError(path, f"no '{_GROUP}/{name}' dataset")
    try:
        return group[name][()]
    except (OSError, ValueError) as err:
        raise CaseError(path, f"unreadable '{_GROUP}/{name}': {err}") from None


def _matrix(group: h5py.Group, name: str, path: str) -> np.ndarray:
    """A 2-D MATLAB matrix in row-major (H, W) order."""
    array = _dataset(group, name, path)
    if array.ndim != 2:
        raise CaseError(path, f"'{_GROUP}/{name}' has shape {array.shape}; a 2-D matrix is expected")
    return np.ascontiguousarray(array.T)
