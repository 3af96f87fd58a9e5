"""Detect truncated NIfTI files before SimpleITK reads them.

ITK's NIfTI reader fills the missing part of a truncated `.nii` or `.nii.gz` with zeros and
reports nothing, so an interrupted download would convert silently into half-blank volumes. The
other formats we read (MHA, NRRD, DICOM) raise on a short read by themselves.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

_HEADER_BYTES = 540  # the NIfTI-2 header; NIfTI-1 uses the first 348 of them


def nifti_problem(path: str) -> str | None:
    """Return why the NIfTI file at `path` holds fewer voxel bytes than its header promises, or
    None when it is complete (or not a NIfTI file we can judge: SimpleITK then has the last word)."""
    compressed = path.lower().endswith(".gz")
    try:
        header = _read_head(path, compressed)
    except (OSError, EOFError, zlib.error) as err:
        return f"corrupt file: {err}"
    expected = _expected_length(header)
    if expected is None:
        return None
    actual = _uncompressed_length(path, expected) if compressed else os.path.getsize(path)
    if actual is None:
        return "corrupt file: the compressed stream is truncated or damaged"
    if actual < expected:
        return f"truncated file: {actual} bytes of the {expected} its header promises"
    return None


def _read_head(path: str, compressed: bool) -> bytes:
    opener = gzip.open if compressed else open
    with opener(path, "rb") as f:
        return f.read(_HEADER_BYTES)


def _expected_length(header: bytes) -> int | None:
    """Voxel-data offset plus voxel bytes, from a NIfTI-1 or NIfTI-2 header in either byte order."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            return _data_end(dims, bitpix, offset)
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            return _data_end(dims, bitpix, offset)
    return None


def _data_end(dims, bitpix: int, offset: int) -> int | None:
    rank = dims[0]
    if not 1 <= rank <= 7 or bitpix <= 0 or offset < 0:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:rank + 1]], dtype=np.int64))
    return max(offset, 348) + voxels * bitpix // 8


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
