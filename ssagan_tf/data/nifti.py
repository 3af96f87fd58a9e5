"""Read NIfTI files without losing NaN/Inf voxels.

ITK's NIfTI library replaces every non-finite voxel of a float image with 0 while reading, so a
volume full of NaNs would convert silently. For the common case, a single-file `.nii`/`.nii.gz`
holding float32 or float64 scalars, this module therefore reads the voxel payload itself (once:
one decompression, as ITK would do), rejects non-finite voxels, applies scl_slope/scl_inter the way
ITK does, and builds the SimpleITK image with the geometry ITK derives from the header
(`ImageFileReader.ReadImageInformation`, which reads the header only). Everything else (integer
types, Analyze or two-file headers, vector intents, odd offsets) is left to the caller, which checks
truncation with `nifti_check` and reads with `sitk.ReadImage`; ITK leaves integer voxels alone.
NIfTI-2 headers are recognised, but ITK 5.4 cannot read them, so they too go to the caller (which
reports them unreadable).
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import SimpleITK as sitk

from ssagan_tf.data.nifti_check import (NiftiHeader, expected_length, parse_header, read_head, size_problem,
                                           truncation_message)
from ssagan_tf.data.errors import CaseError

try:  # optional: ISA-L inflates about twice as fast as zlib, which puts this reader below ITK's time
    from isal import isal_zlib as _inflater
    _INFLATE_ERRORS = (zlib.error, _inflater.error)
except ImportError:  # pragma: no cover - depends on the environment
    _inflater = zlib
    _INFLATE_ERRORS = (zlib.error,)

# NIfTI datatype code -> (numpy kind, bitpix, SimpleITK pixel id ITK reads it as)
_FLOAT_TYPES = {16: ("f4", 32, sitk.sitkFloat32), 64: ("f8", 64, sitk.sitkFloat64)}
_MAGIC = {1: b"n+1\0", 2: b"n+2\0\r\n\032\n"}
_MIN_OFFSET = {1: 352, 2: 544}  # header plus the 4-byte extension flag
_EPS = np.finfo(np.float64).eps


def read_float_nifti(path: str) -> sitk.Image | None:
    """Read a single-file float32/float64 NIfTI-1 file (`.nii`/`.nii.gz`) ourselves into the image
    sitk.ReadImage would give, raising CaseError when it is truncated, corrupt or holds NaN/Inf
    voxels. None for any other file (or one whose header ITK reads differently), which the caller
    then hands to SimpleITK."""
    loaded = load_float_nifti(path)
    return None if loaded is None else image_from_array(*loaded)


def load_float_nifti(path: str) -> tuple[np.ndarray, sitk.ImageFileReader] | None:
    """`read_float_nifti` without building the image: the voxels as a finite (..., Z, Y, X) array
    in native byte order (read-only when it is the decompressed buffer itself) and the reader
    holding ITK's header information (size, spacing, origin, direction, metadata)."""
    compressed = path.lower().endswith(".gz")
    try:
        header = parse_header(read_head(path, compressed))
    except (OSError, EOFError, zlib.error):
        return None  # nifti_problem / SimpleITK report it
    if header is None or not _own_path_applies(header):
        return None
    problem = size_problem(header, path, compressed)
    if problem:
        raise CaseError(path, problem)
    info = sitk.ImageFileReader()
    info.SetImageIO("NiftiImageIO")
    info.SetFileName(path)
    try:
        info.ReadImageInformation()
    except RuntimeError:
        return None
    if not _information_agrees(info, header):
        return None
    return _read_float(path, header, info.GetSize(), compressed), info


def image_from_array(array: np.ndarray, info: sitk.ImageFileReader) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetOrigin(info.GetOrigin())
    image.SetSpacing(info.GetSpacing())
    image.SetDirection(info.GetDirection())
    for key in info.GetMetaDataKeys():
        image.SetMetaData(key, info.GetMetaData(key))
    return image


def _own_path_applies(header: NiftiHeader) -> bool:
    offset = header.vox_offset
    return (header.datatype in _FLOAT_TYPES and header.bitpix == _FLOAT_TYPES[header.datatype][1]
            and header.magic == _MAGIC[header.version] and header.shape is not None
            and np.isfinite(offset) and offset == int(offset) and offset >= _MIN_OFFSET[header.version])


def _information_agrees(info: sitk.ImageFileReader, header: NiftiHeader) -> bool:
    """ITK sees one float scalar per voxel, of the on-disk type, and as many voxels as the header."""
    return (info.GetNumberOfComponents() == 1 and info.GetPixelID() == _FLOAT_TYPES[header.datatype][2]
            and int(np.prod(info.GetSize(), dtype=np.int64)) == int(np.prod(header.shape, dtype=np.int64)))


def _read_float(path: str, header: NiftiHeader, size: tuple, compressed: bool) -> np.ndarray:
    """The voxels ITK would return (shape reversed(size)), or CaseError for a short or damaged
    stream or non-finite voxels (counted after scaling, which keeps NaN/Inf as they are)."""
    expected = expected_length(header)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise CaseError(path, f"unreadable: {err}") from None
    if compressed:
        data = _inflate(path, data, expected)
    if len(data) < expected:
        raise CaseError(path, truncation_message(len(data), expected))
    dtype = np.dtype(header.endian + _FLOAT_TYPES[header.datatype][0])
    array = np.frombuffer(data, dtype, int(np.prod(size, dtype=np.int64)), int(header.vox_offset))
    array = array.reshape(tuple(reversed(size)))
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    slope, inter = _rescale(header)
    if slope is not None:
        # ITK: double(value) * slope + intercept, cast back to the pixel type.
        array = (array.astype(np.float64) * slope + inter).astype(array.dtype)
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise CaseError(path, f"{bad} NaN/Inf voxels")
    return array


def _inflate(path: str, data: bytes, expected: int) -> bytes:
    """The decompressed gzip stream, inflated in one call into a buffer of the expected size."""
    try:
        out = _inflater.decompress(data, 31, expected)
        if len(out) < expected:  # a multi-member stream (the one-call inflate stops after one)
            out = gzip.decompress(data)
    except (*_INFLATE_ERRORS, EOFError, gzip.BadGzipFile) as err:
        raise CaseError(path, f"corrupt file: the compressed stream is truncated or damaged ({err})") from None
    return out


def _rescale(header: NiftiHeader):
    """(slope, intercept) when ITK rescales (NiftiImageIO::MustRescale), else (None, None).
    nifti_clib drops non-finite scaling values."""
    slope = header.scl_slope if np.isfinite(header.scl_slope) else 0.0
    inter = header.scl_inter if np.isfinite(header.scl_inter) else 0.0
    if abs(slope) > _EPS and (abs(slope - 1.0) > _EPS or abs(inter) > _EPS):
        return float(slope), float(inter)
    return None, None
