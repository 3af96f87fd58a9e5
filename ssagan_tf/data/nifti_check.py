"""Parse NIfTI headers and detect truncated NIfTI files before SimpleITK reads them.

ITK's NIfTI reader fills the missing part of a truncated `.nii` or `.nii.gz` with zeros and
reports nothing, so an interrupted download would convert silently into half-blank volumes. The
other formats we read (MHA, NRRD, DICOM) raise on a short read by themselves.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

_HEADER_BYTES = 540  # the NIfTI-2 header; NIfTI-1 uses the first 348 of them
# More voxels than any volume read here may have (2^31: a 1290^3 grid, 8 GiB as float32), so that
# a damaged or hostile header cannot make a reader allocate terabytes.
MAX_VOXELS = 2 ** 31
# deflate cannot compress better than about 1032:1, so a gzip stream of N bytes holds at most
# this many times N bytes: a header promising more is wrong before a byte is inflated.
_MAX_DEFLATE_RATIO = 1100


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that locate and scale the voxel data."""

    version: int          # 1 or 2
    endian: str           # "<" or ">", the byte order of header and data
    magic: bytes          # b"n+1\0" / b"n+2\0..." for a single .nii file
    dims: tuple           # dim[0..7]
    datatype: int
    bitpix: int
    vox_offset: float
    scl_slope: float
    scl_inter: float

    @property
    def shape(self) -> tuple | None:
        """dim[1..dim[0]] with non-positive sizes taken as 1 (as nifti_clib does), or None when
        dim[0] is out of range."""
        rank = self.dims[0]
        if not 1 <= rank <= 7:
            return None
        return tuple(max(int(d), 1) for d in self.dims[1:rank + 1])


def nifti_problem(path: str) -> str | None:
    """Return why the NIfTI file at `path` holds fewer voxel bytes than its header promises, or
    None when it is complete (or not a NIfTI file we can judge: SimpleITK then has the last word)."""
    compressed = path.lower().endswith(".gz")
    try:
        head = read_head(path, compressed)
    except (OSError, EOFError, zlib.error) as err:
        return f"corrupt file: {err}"
    header = parse_header(head)
    expected = None if header is None else expected_length(header)
    if expected is None:
        return None
    problem = size_problem(header, path, compressed)
    if problem:
        return problem
    actual = _uncompressed_length(path, expected) if compressed else os.path.getsize(path)
    if actual is None:
        return "corrupt file: the compressed stream is truncated or damaged"
    if actual < expected:
        return truncation_message(actual, expected)
    return None


def size_problem(header: NiftiHeader, path: str, compressed: bool) -> str | None:
    """Why the sizes the header claims cannot be true (more voxels than `MAX_VOXELS`, or more
    bytes than the file can hold), checked before anything is allocated; None when plausible."""
    shape, expected = header.shape, expected_length(header)
    if shape is None or expected is None:
        return None
    voxels = int(np.prod(shape, dtype=object))
    grid = " x ".join(str(d) for d in shape)
    if voxels > MAX_VOXELS:
        return (f"implausible header: it claims {grid} = {voxels} voxels, more than the {MAX_VOXELS} a volume "
                "may have; the header is damaged or not a volume's")
    size = os.path.getsize(path)
    if compressed and expected > size * _MAX_DEFLATE_RATIO:
        return (f"truncated or damaged file: its header claims {grid} voxels ({expected} bytes), more than a "
                f"{size}-byte gzip stream can hold")
    return None


def truncation_message(actual: int, expected: int) -> str:
    return f"truncated file: {actual} bytes of the {expected} its header promises"


def read_head(path: str, compressed: bool) -> bytes:
    opener = gzip.open if compressed else open
    with opener(path, "rb") as f:
        return f.read(_HEADER_BYTES)


def parse_header(head: bytes) -> NiftiHeader | None:
    """A NIfTI-1 or NIfTI-2 header in either byte order, or None when `head` is neither."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            return NiftiHeader(
                version=1, endian=endian, magic=head[344:348],
                dims=struct.unpack(endian + "8h", head[40:56]),
                datatype=struct.unpack(endian + "h", head[70:72])[0],
                bitpix=struct.unpack(endian + "h", head[72:74])[0],
                vox_offset=struct.unpack(endian + "f", head[108:112])[0],
                scl_slope=struct.unpack(endian + "f", head[112:116])[0],
                scl_inter=struct.unpack(endian + "f", head[116:120])[0])
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            return NiftiHeader(
                version=2, endian=endian, magic=head[4:12],
                dims=struct.unpack(endian + "8q", head[16:80]),
                datatype=struct.unpack(endian + "h", head[12:14])[0],
                bitpix=struct.unpack(endian + "h", head[14:16])[0],
                vox_offset=float(struct.unpack(endian + "q", head[168:176])[0]),
                scl_slope=struct.unpack(endian + "d", head[176:184])[0],
                scl_inter=struct.unpack(endian + "d", head[184:192])[0])
    return None


def expected_length(header: NiftiHeader) -> int | None:
    """Voxel-data offset plus voxel bytes, or None when the header does not tell."""
    shape, offset = header.shape, int(header.vox_offset) if np.isfinite(header.vox_offset) else -1
    if shape is None or header.bitpix <= 0 or offset < 0:
        return None
    voxels = int(np.prod(shape, dtype=object))     # exact: 7 dims of up to 2^63 overflow int64
    return max(offset, 348) + voxels * header.bitpix // 8


def _uncompressed_length(path: str, expected: int) -> int | None:
    """Length of the decompressed stream. The gzip trailer stores it (mod 2**32) for free; only
    when that disagrees with the header (a truncated file, or a multi-member stream written by
    some tools) is the stream inflated to find out, which also proves it is intact."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:
            return None
        f.seek(-4, os.SEEK_END)
        trailer_size = struct.unpack("<I", f.read(4))[0]
    if trailer_size == expected % 2**32:
        return expected
    return _inflate_length(path)


def _inflate_length(path: str) -> int | None:
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return total
