"""Reading one 3-D scalar volume (a NIfTI, NRRD or MHA file, or the single DICOM series in a
folder) with SimpleITK, in the canonical LPS orientation (axial slices along Z), with the checks
every volume must pass (finite, not empty, 3-D, scalar). The converter (`data_prep.readers`) and
augmentation's volume inputs both read through here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ssagan_tf.data.errors import CaseError
from ssagan_tf.data.nifti import image_from_array, load_float_nifti, read_float_nifti
from ssagan_tf.data.nifti_check import nifti_problem

CANONICAL_ORIENTATION = "LPS"
VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


@dataclass
class Volume:
    """One 3-D scalar volume after reorientation: `array` is (Z, Y, X) in the file's own dtype,
    `spacing` is in millimetres in the same (Z, Y, X) order. Treat `array` as read-only (for a
    float NIfTI file it may be a view of the decompressed file). `origin` and `direction` are the
    reoriented grid's, in SimpleITK's (x, y, z) order, when read from a file (None otherwise)."""

    path: str
    array: np.ndarray
    spacing: tuple
    origin: tuple | None = None
    direction: tuple | None = None


def read_image(path: str) -> sitk.Image:
    """Read a file, or the single DICOM series in a folder, raising CaseError when unreadable."""
    if os.path.isdir(path):
        return _read_dicom_series(path)
    if not os.path.isfile(path):
        raise CaseError(path, "file not found")
    if _is_nifti(path):
        # ITK would turn NaN/Inf voxels of a float NIfTI into 0: such files are read here.
        image = read_float_nifti(path)
        if image is not None:
            return image
        problem = nifti_problem(path)
        if problem:
            raise CaseError(path, problem)
    try:
        return sitk.ReadImage(path)
    except RuntimeError as err:
        raise CaseError(path, f"unreadable: {sitk_reason(err)}") from None


def _read_dicom_series(folder: str) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if not series:
        raise CaseError(folder, "no DICOM series in this folder")
    if len(series) > 1:
        raise CaseError(folder, f"{len(series)} DICOM series in one folder; keep one series per folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series[0]))
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise CaseError(folder, f"unreadable DICOM series: {sitk_reason(err)}") from None


def sitk_reason(err: RuntimeError) -> str:
    """The informative part of a SimpleITK exception (its first line is a source location)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        for prefix in ("sitk::ERROR:", "ITK ERROR:", "[nrrd]"):
            if line.startswith(prefix):
                return line[len(prefix):].strip() if prefix != "[nrrd]" else line
    return lines[-1] if lines else "unknown error"


def _is_nifti(path: str) -> bool:
    return path.lower().endswith((".nii", ".nii.gz"))


def read_volume(path: str) -> Volume:
    """Read a 3-D scalar volume and reorient it so that Z runs along the axial direction."""
    if _is_nifti(path) and os.path.isfile(path):
        loaded = load_float_nifti(path)
        if loaded is not None:
            array, info = loaded
            _require_3d_scalar(info.GetDimension(), info.GetSize(), 1, path)
            if _orientation(info.GetDirection()) == CANONICAL_ORIENTATION:
                # What volume_from_image would return, without the round trip through an image.
                return Volume(path, array, tuple(reversed(info.GetSpacing())), tuple(info.GetOrigin()),
                              tuple(info.GetDirection()))
            return volume_from_image(image_from_array(array, info), path)
    return volume_from_image(read_image(path), path)


def volume_from_image(image: sitk.Image, path: str) -> Volume:
    """Check that `image` is a 3-D scalar volume, reorient it to LPS and take its array."""
    require_3d_scalar(image, path)
    image = reorient(image)
    return Volume(path, sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing())),
                  tuple(image.GetOrigin()), tuple(image.GetDirection()))


def require_3d_scalar(image: sitk.Image, path: str) -> None:
    _require_3d_scalar(image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel(), path)


def _require_3d_scalar(dimension: int, size: tuple, components: int, path: str) -> None:
    if components != 1:
        raise CaseError(path, f"{components} components per voxel; a scalar volume is needed")
    if dimension != 3:
        raise CaseError(path, f"{dimension}-D image of size {size}; a 3-D volume is needed")
    if min(size) < 2:
        raise CaseError(path, f"a single 2-D slice (size {size}); a 3-D volume is needed")


def reorient(image: sitk.Image) -> sitk.Image:
    """Permute and flip axes (no resampling) to LPS, so a sagittal- or coronal-first acquisition
    comes out with axial slices along Z. Images already in LPS are returned as they are, which
    saves a copy of the commonest case."""
    if _orientation(image.GetDirection()) == CANONICAL_ORIENTATION:
        return image
    return sitk.DICOMOrient(image, CANONICAL_ORIENTATION)


def _orientation(direction) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)


def check_intensities(volume: Volume) -> None:
    """Reject NaN/Inf voxels and volumes without any contrast (all voxels equal)."""
    array = volume.array
    if array.size == 0:
        raise CaseError(volume.path, "empty volume (no voxels)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise CaseError(volume.path, f"{bad} NaN/Inf voxels")
    low, high = array.min(), array.max()
    if low == high:
        raise CaseError(volume.path, f"empty volume (every voxel is {low})")
