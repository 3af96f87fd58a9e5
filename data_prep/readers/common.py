"""What every volume reader shares: read a file or a DICOM series with SimpleITK, bring it to the
canonical LPS orientation, turn it into a (Z, Y, X) array, and the checks each case must pass
(finite, not empty, 3-D, image and mask on the same grid)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from data_prep.readers.nifti import image_from_array, load_float_nifti, read_float_nifti
from data_prep.readers.nifti_check import nifti_problem
from data_prep.scan import CaseError

CANONICAL_ORIENTATION = "LPS"
SPACING_RTOL = 1e-3
VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


@dataclass
class Volume:
    """One 3-D scalar volume after reorientation: `array` is (Z, Y, X) in the file's own dtype,
    `spacing` is in millimetres in the same (Z, Y, X) order. Treat `array` as read-only (for a
    float NIfTI file it may be a view of the decompressed file)."""

    path: str
    array: np.ndarray
    spacing: tuple


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
                return Volume(path, array, tuple(reversed(info.GetSpacing())))
            return volume_from_image(image_from_array(array, info), path)
    return volume_from_image(read_image(path), path)


def volume_from_image(image: sitk.Image, path: str) -> Volume:
    """Check that `image` is a 3-D scalar volume, reorient it to LPS and take its array."""
    require_3d_scalar(image, path)
    image = reorient(image)
    return Volume(path, sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing())))


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


def check_same_grid(reference: Volume, other: Volume, what: str) -> None:
    """`other` must match `reference` voxel for voxel: same shape and spacing (relative tolerance
    SPACING_RTOL, which absorbs the rounding of float spacings written by different tools)."""
    if other.array.shape != reference.array.shape:
        raise CaseError(other.path, f"{what} shape {other.array.shape} differs from "
                                    f"{reference.array.shape} of {reference.path}")
    if not np.allclose(other.spacing, reference.spacing, rtol=SPACING_RTOL, atol=0.0):
        raise CaseError(other.path, f"{what} spacing {_fmt(other.spacing)} differs from "
                                    f"{_fmt(reference.spacing)} of {reference.path}")


def whole_tumor(volume: Volume, allowed=None) -> np.ndarray:
    """Whole-tumor mask (uint8 0/1) from a label volume: any label > 0. Float label maps count a
    voxel from 0.5 up, so interpolation noise around 0 is not tumor. Negative labels, and labels
    outside `allowed` (a format's label set) when given, reject the case: read as "not tumor"
    they would turn tumor slices into normal ones without a word."""
    labels = volume.array
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise CaseError(volume.path, "NaN/Inf voxels in the segmentation")
    check_labels(labels, volume.path, allowed)
    if labels.dtype.kind == "f":
        return (labels >= 0.5).astype(np.uint8)
    return (labels > 0).astype(np.uint8)


def check_labels(labels: np.ndarray, path: str, allowed=None) -> None:
    """Raise CaseError naming the unexpected labels: negative ones, or (when the format has a
    label set `allowed`) ones above its largest. Only min and max scan the whole volume; the
    labels are listed from the offending voxels alone."""
    if not labels.size:
        return
    # Float label maps tolerate interpolation noise of less than half a label either way.
    slack = 0.5 if labels.dtype.kind == "f" else 0
    found = None
    if labels.min() < -slack:
        found = np.unique(labels[labels < -slack])
    elif allowed is not None and labels.max() > max(allowed) + slack:
        found = np.unique(labels[labels > max(allowed) + slack])
    if found is not None:
        shown = ", ".join(f"{v:g}" for v in found[:8].tolist()) + (" ..." if found.size > 8 else "")
        expected = "labels >= 0" if allowed is None else "labels " + ", ".join(str(a) for a in sorted(allowed))
        raise CaseError(path, f"unexpected mask labels {shown} (expected {expected}); refusing to read them "
                              "as background")


def stack_channels(volumes: list[Volume]) -> np.ndarray:
    """(Z, Y, X, C) float32 from same-shape volumes, converting each once into its channel."""
    shape = volumes[0].array.shape
    image = np.empty(shape + (len(volumes),), np.float32)
    for channel, volume in enumerate(volumes):
        image[..., channel] = volume.array
    return image


def strip_extension(name: str) -> str:
    lower = name.lower()
    for ext in VOLUME_EXTENSIONS:
        if lower.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def is_hidden(name: str) -> bool:
    """Dot files, including the macOS `._name` forks that ship inside the MSD archives."""
    return name.startswith(".")


def walk_files(root: str):
    """Yield (directory, file name) under `root` in a deterministic order, skipping hidden entries.
    Symlinked folders are followed (datasets are often assembled from links), each real folder
    once, so a link back up the tree cannot loop; a dangling link is skipped."""
    seen = set()
    for directory, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        subdirs[:] = sorted(d for d in subdirs if not is_hidden(d)
                            and os.path.realpath(os.path.join(directory, d)) not in seen)
        for name in sorted(files):
            if not is_hidden(name) and os.path.exists(os.path.join(directory, name)):
                yield directory, name


# Top-level folder names that carry a dataset's own split (--keep_splits), lower-cased.
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def own_split(rel: str) -> tuple[str | None, str]:
    """(our split, the rest of the path) when the first folder of `rel` names a split, else (None, rel)."""
    first, _, rest = rel.partition("/")
    if rest and first.lower() in SPLIT_FOLDERS:
        return SPLIT_FOLDERS[first.lower()], rest
    return None, rel


def relative_id(path: str, root: str) -> str:
    """A path relative to `root`, with '/' separators: the readable, portable form used in ids."""
    return os.path.relpath(path, root).replace(os.sep, "/")


def _fmt(spacing) -> str:
    return "(" + ", ".join(f"{s:g}" for s in spacing) + ")"
