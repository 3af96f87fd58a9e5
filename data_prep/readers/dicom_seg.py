"""DICOM Segmentation objects (SEG: what 3D Slicer, OHIF and most clinical tools export) as masks.

A SEG is not a volume on the image's grid: it holds one binary (or fractional) frame per
segment and plane it covers, usually leaving out the empty ones, positioned in the patient's
frame of reference. Read as an image series it would be a few slices of the wrong size. Here it
is decoded with highdicom, its segments are combined into the whole tumor (any segment counts),
and it is placed on the image's grid in physical space (SimpleITK, nearest neighbour).

    path = seg_file(mask_path)          # the SEG file when mask_path is one (or a folder of one)
    volume = read_seg_on_grid(path, image)   # a uint8 0/1 Volume on image's grid, or CaseError

A SEG that cannot be placed on the image (another frame of reference, or segmented voxels
outside the image) is refused with a CaseError naming the SEG and the conversion to use.
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from ssagan_tf.data.errors import CaseError
from ssagan_tf.data.volumes import Volume

# Segmentation Storage and Label Map Segmentation Storage (both decoded by highdicom).
SEG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
                   "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage"}
FRACTION_THRESHOLD = 0.5    # a fractional SEG's voxel is tumor from this fraction up (as float label maps)
_DICM_OFFSET = 128          # DICOM Part 10 files: a 128-byte preamble, then b"DICM"

EXPORT_HINT = ("pair it with the image series it was drawn on, or export the segmentation as a label map on this "
               "image's grid (3D Slicer: Segmentations > Export to files, or Export to label map with this image "
               "as the reference geometry) and give that NIfTI/NRRD file as the mask")


def _is_dicom_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(_DICM_OFFSET)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _header(path: str):
    """The two attributes of a DICOM file's header used here (pydicom), or None when it does not
    parse."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "FrameOfReferenceUID"])
    except Exception:   # noqa: BLE001 - any unparsable file is "not a SEG" here; SimpleITK then says why
        return None


def _sop_class(header) -> str:
    uid = header.get("SOPClassUID") or getattr(header, "file_meta", {}).get("MediaStorageSOPClassUID", "")
    return str(uid)


def seg_file(path: str) -> str | None:
    """The DICOM SEG file at `path`: `path` itself when it is a SEG file, the one SEG file of a
    folder whose DICOM files are all SEG; None when `path` is no SEG (a NIfTI, a DICOM image
    series, ...). A folder holding several SEG files, or SEG and image files, raises CaseError:
    which of them is the mask is not for the converter to guess."""
    if os.path.isfile(path):
        header = _header(path) if _is_dicom_file(path) else None
        return path if header is not None and _sop_class(header) in SEG_SOP_CLASSES else None
    if not os.path.isdir(path):
        return None
    segs, others = [], 0
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        if name.startswith(".") or not os.path.isfile(file) or not _is_dicom_file(file):
            continue
        header = _header(file)
        if header is not None and _sop_class(header) in SEG_SOP_CLASSES:
            segs.append(file)
        else:
            others += 1
    if not segs:
        return None
    if len(segs) > 1 or others:
        raise CaseError(path, f"{len(segs)} DICOM SEG file(s) and {others} other DICOM file(s) in one mask folder; "
                              "keep the one SEG of this image alone in its folder, or name the SEG file as the mask")
    return segs[0]


def frame_of_reference(path: str) -> str | None:
    """The Frame of Reference UID of a DICOM image (a file, or the first DICOM file of a series
    folder that has one); None for other formats (NIfTI, NRRD, ...), which carry none."""
    if os.path.isdir(path):
        files = [os.path.join(path, n) for n in sorted(os.listdir(path)) if not n.startswith(".")]
    else:
        files = [path] if os.path.isfile(path) else []
    for file in files:
        if os.path.isfile(file) and _is_dicom_file(file):
            header = _header(file)
            uid = header.get("FrameOfReferenceUID") if header is not None else None
            if uid:
                return str(uid)
    return None


def _combined(seg, path: str):
    """The SEG as one highdicom Volume (slices, rows, columns) of uint8 0/1: a voxel is tumor
    where any segment covers it (a fractional segment from FRACTION_THRESHOLD up)."""
    try:
        volume = seg.get_volume(combine_segments=False, rescale_fractional=True)
    except (ValueError, RuntimeError) as err:
        raise CaseError(path, f"DICOM SEG whose frames do not form one regularly spaced 3-D volume ({err}); "
                              f"{EXPORT_HINT}") from None
    array = np.asarray(volume.array)
    covered = array >= FRACTION_THRESHOLD if array.dtype.kind == "f" else array > 0
    if covered.ndim == 4:                   # one binary channel per segment
        covered = covered.any(axis=-1)
    return volume.get_geometry().with_array(covered.astype(np.uint8))


def read_seg_on_grid(path: str, image: Volume, image_path: str | None = None) -> Volume:
    """The whole tumor of the DICOM SEG at `path` on `image`'s grid: a Volume with the image's
    shape, spacing, origin and direction and a uint8 0/1 array. `image_path` (default
    image.path) is where the image's frame of reference is looked up. Raises CaseError when the
    SEG does not decode, is in another frame of reference than a DICOM image, or has segmented
    voxels outside the image."""
    import highdicom

    image_path = image_path or image.path
    if image.origin is None or image.direction is None:
        raise CaseError(path, f"the image {image_path} has no position in space to place the DICOM SEG on; "
                              f"{EXPORT_HINT}")
    try:
        seg = highdicom.seg.segread(path)
    except Exception as err:   # noqa: BLE001 - pydicom/highdicom raise many kinds on a malformed SEG
        raise CaseError(path, f"unreadable DICOM SEG: {err}") from None
    seg_for = str(seg.get("FrameOfReferenceUID", "") or "")
    image_for = frame_of_reference(image_path)
    if image_for is not None and seg_for != image_for:
        raise CaseError(path, f"DICOM SEG in frame of reference {seg_for or '(none)'}, the image {image_path} in "
                              f"{image_for}: the two are not in one patient coordinate system, so the SEG cannot be "
                              f"placed on the image; {EXPORT_HINT}")
    shape = image.array.shape
    if int(seg.get("NumberOfFrames", 0) or 0) == 0:
        return Volume(path, np.zeros(shape, np.uint8), image.spacing, image.origin, image.direction)
    combined = _combined(seg, path)
    reference = _grid(image)
    _check_inside(combined, reference, path, image_path)
    source = combined.to_simpleitk()
    placed = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return Volume(path, sitk.GetArrayFromImage(placed), image.spacing, image.origin, image.direction)


def _grid(image: Volume) -> sitk.Image:
    """An empty SimpleITK image with `image`'s grid (Volume arrays are (Z, Y, X); SimpleITK is x, y, z)."""
    grid = sitk.Image([int(n) for n in reversed(image.array.shape)], sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in reversed(image.spacing)])
    grid.SetOrigin([float(o) for o in image.origin])
    grid.SetDirection([float(d) for d in image.direction])
    return grid


def _check_inside(combined, reference: sitk.Image, path: str, image_path: str) -> None:
    """Refuse a SEG whose segmented voxels (their centres) fall outside the image: none inside is
    a SEG of something else, some outside would cut the lesion at the image's border."""
    indices = np.argwhere(np.asarray(combined.array) > 0)
    if not indices.size:
        return
    points = (combined.affine @ np.c_[indices, np.ones(len(indices))].T)[:3]     # (3, N) LPS mm
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    spacing = np.array(reference.GetSpacing())
    continuous = (np.linalg.inv(direction @ np.diag(spacing)) @ (points - np.array(reference.GetOrigin())[:, None]))
    size = np.array(reference.GetSize())[:, None]
    outside = int(np.count_nonzero(((continuous < -0.5) | (continuous > size - 0.5)).any(axis=0)))
    if outside == len(indices):
        raise CaseError(path, f"DICOM SEG lies outside the image {image_path}: none of its {len(indices)} segmented "
                              f"voxels falls inside the image's grid (no overlap), so it is not this image's "
                              f"segmentation; {EXPORT_HINT}")
    if outside:
        raise CaseError(path, f"{outside} of the {len(indices)} segmented voxels of the DICOM SEG lie outside the "
                              f"image {image_path}, so the lesion would be cut at the image's border; {EXPORT_HINT}")
