"""What every volume reader shares: reading a volume (`ssagan_tf.data.volumes`, re-exported here),
reading a mask onto its image's grid (a label volume, or a DICOM SEG placed by `dicom_seg`) and
the checks a case's volumes must pass together (image and mask on the same grid, tumor labels)."""

from __future__ import annotations

import fnmatch
import os
import re

import numpy as np

from ssagan_tf.data.errors import CaseError
from ssagan_tf.data.volumes import (CANONICAL_ORIENTATION, VOLUME_EXTENSIONS, Volume, check_intensities,  # noqa: F401
                                    read_image, read_volume, reorient, require_3d_scalar, sitk_reason,
                                    volume_from_image)

SPACING_RTOL = 1e-3


def check_same_grid(reference: Volume, other: Volume, what: str) -> None:
    """`other` must match `reference` voxel for voxel: same shape and spacing (relative tolerance
    SPACING_RTOL, which absorbs the rounding of float spacings written by different tools)."""
    if other.array.shape != reference.array.shape:
        raise CaseError(other.path, f"{what} shape {other.array.shape} differs from "
                                    f"{reference.array.shape} of {reference.path}")
    if not np.allclose(other.spacing, reference.spacing, rtol=SPACING_RTOL, atol=0.0):
        raise CaseError(other.path, f"{what} spacing {_fmt(other.spacing)} differs from "
                                    f"{_fmt(reference.spacing)} of {reference.path}")


def read_mask(path: str, image: Volume, what: str = "mask") -> Volume:
    """A case's mask on its image's grid. A DICOM Segmentation object (a SEG file, or a folder
    holding one) is decoded and placed on the image's grid in space (`dicom_seg`), every segment
    counting as tumor; any other mask is read as a volume, which must already share the image's
    grid (`check_same_grid`). Raises CaseError naming the mask file and the problem."""
    from data_prep.readers import dicom_seg

    seg = dicom_seg.seg_file(path)
    labels = dicom_seg.read_seg_on_grid(seg, image) if seg else read_volume(path)
    check_same_grid(image, labels, what)
    return labels


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


def case_ids(paths, strip=None) -> dict:
    """path -> case id: the path without its extension, or the whole path where two paths would
    lose their extensions to one id (`yes/Y92.jpg` and `yes/Y92.png` are different images, and
    must stay different cases and patients)."""
    strip = strip or strip_extension
    stems: dict = {}
    for path in paths:
        stems.setdefault(strip(path), []).append(path)
    return {path: stem if len(group) == 1 else path for stem, group in stems.items() for path in group}


def is_hidden(name: str) -> bool:
    """Dot files, including the macOS `._name` forks that ship inside the MSD archives."""
    return name.startswith(".")


def walk_files(root: str):
    """Yield (directory, file name) under `root` in a deterministic order, skipping hidden entries.
    Symlinked folders are followed (datasets are often assembled from links), each real folder
    once, so a link back up the tree cannot loop; a dangling link is skipped."""
    for directory, _, files in _walk(root):
        for name in files:
            yield directory, name


def walk_paths(root: str, max_depth: int | None = None):
    """Yield (path relative to `root` with '/' separators, is_folder) for every file and folder
    under `root`, as `walk_files` finds them (loop-safe, hidden entries skipped), down to
    `max_depth` components (None: all)."""
    for directory, subdirs, files in _walk(root, max_depth):
        rel = relative_id(directory, root)
        prefix = "" if rel == "." else rel + "/"
        for name in subdirs:
            yield prefix + name, True
        for name in files:
            yield prefix + name, False


def _walk(root: str, max_depth: int | None = None):
    seen = set()
    for directory, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        depth = 0 if os.path.samefile(directory, root) else relative_id(directory, root).count("/") + 1
        subdirs[:] = sorted(d for d in subdirs if not is_hidden(d)
                            and os.path.realpath(os.path.join(directory, d)) not in seen)
        names = [n for n in sorted(files) if not is_hidden(n) and os.path.exists(os.path.join(directory, n))]
        yield directory, list(subdirs), names
        if max_depth is not None and depth + 1 >= max_depth:
            subdirs[:] = []


def glob_relative(root: str, pattern: str) -> list:
    """The sorted paths under `root` (relative, '/' separators) that match the glob `pattern`
    (`*`, `?`, `[...]` within one component; `**` any number of components), found by a
    loop-safe walk: a symbolic link back up the tree is followed once, never round and round as
    `glob.glob(recursive=True)` does. Hidden entries never match."""
    parts = [p for p in pattern.replace(os.sep, "/").split("/") if p not in ("", ".")]
    depth = None if "**" in parts else len(parts)
    compiled = [None if p == "**" else re.compile(fnmatch.translate(p)) for p in parts]
    return sorted(rel for rel, _ in walk_paths(root, depth) if _matches(compiled, rel.split("/")))


def _matches(pattern: list, components: list) -> bool:
    if not pattern:
        return not components
    if pattern[0] is None:                                   # `**`: zero or more components
        return any(_matches(pattern[1:], components[k:]) for k in range(len(components) + 1))
    return bool(components) and bool(pattern[0].match(components[0])) and _matches(pattern[1:], components[1:])


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
