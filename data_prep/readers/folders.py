"""2-D image folders: class folders (`yes/`, `no/`, configurable) and `name.tif` + `name_mask.tif`
pairs, in 8- or 16-bit PNG, TIFF, JPEG or BMP, read with SimpleITK. Each image is one scan with
Z = 1; colour images become one luminance channel.

Labels: an image in a class folder takes the folder's label; a pair outside class folders is
tumor (1) when its mask has any tumor pixel, normal (0) otherwise.
Patients: an image in a class folder is its own patient (these collections carry no patient
identity), unless it sits in a subfolder of the class folder, which then is the patient. A pair
in a folder belongs to that folder (the LGG layout `TCGA_CS_4941_19960909/..._12.tif`); a pair at
the top level belongs to its name without a trailing `_<slice number>`.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import SimpleITK as sitk

from data_prep.readers import common
from data_prep.scan import CaseError, CaseRef, Scan

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
# Same luminance weights as skimage.color.rgb2gray (ITU-R BT.709).
LUMINANCE_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], np.float32)
_SLICE_NUMBER = re.compile(r"_\d+$")


def discover(input_dir: str, options) -> tuple[list[CaseRef], list[tuple[str, str]]]:
    """Class-folder images and image/mask pairs under `input_dir`; masks without an image and
    images that are neither in a class folder nor paired are reported."""
    files = [common.relative_id(os.path.join(d, name), input_dir)
             for d, name in common.walk_files(input_dir) if name.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {input_dir}")
    mask_of, orphan_masks = _pair_masks(files, options.mask_suffix)
    class_label = dict(options.class_folders)
    cases = []
    problems = [(os.path.join(input_dir, m), "mask without its image") for m in orphan_masks]
    masks = set(orphan_masks) | set(mask_of.values())
    for rel in files:
        if rel in masks:
            continue
        top = _top(rel)
        if top not in class_label and rel not in mask_of:
            problems.append((os.path.join(input_dir, rel), _unpaired_problem(rel, options)))
            continue
        paths = {"image": os.path.join(input_dir, rel)}
        if rel in mask_of:
            paths["mask"] = os.path.join(input_dir, mask_of[rel])
        case_id = os.path.splitext(rel)[0]
        in_class = top in class_label
        cases.append(CaseRef(case_id=case_id, patient_id=_patient_of(rel, case_id, in_class), format="folders",
                             paths=paths, label=class_label.get(top) if in_class else None))
    if not cases and not mask_of and not any(_top(f) in class_label for f in files):
        raise ValueError(f"{len(files)} images under {input_dir}, but none in a class folder "
                         f"({', '.join(class_label)}) and no <name>{options.mask_suffix} mask pairs")
    return cases, problems


def load(ref: CaseRef, options) -> Scan:
    """Read one 2-D image (and its mask). A pair's label, unknown at discovery, is set on the
    returned scan's ref from its mask."""
    image, spacing = read_slice(ref.paths["image"])
    common.check_intensities(common.Volume(ref.paths["image"], image, spacing))
    mask = None
    if "mask" in ref.paths:
        mask = _read_mask(ref.paths["mask"], image.shape)
    if ref.label is None:
        ref = dataclasses.replace(ref, label=int(mask is not None and mask.any()))
    return Scan(ref=ref, image=image[None, :, :, None], mask=None if mask is None else mask[None],
                spacing=(1.0,) + spacing, is_3d=False)


def read_slice(path: str) -> tuple[np.ndarray, tuple]:
    """(H, W) float32 raw intensities and (row, column) spacing of a single-slice image."""
    image = common.read_image(path)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        image = image[:, :, 0]
    if image.GetDimension() != 2:
        raise CaseError(path, f"{image.GetDimension()}-D image of size {image.GetSize()}; "
                              "one 2-D slice per file is expected")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3:
        array = _luminance(array, path)
    return array.astype(np.float32, copy=False), tuple(reversed(image.GetSpacing()))


def _luminance(array: np.ndarray, path: str) -> np.ndarray:
    """One channel from grey+alpha, RGB or RGBA pixels; alpha is dropped."""
    channels = array.shape[-1]
    if channels == 2:
        return array[..., 0]
    if channels in (3, 4):
        return array[..., :3].astype(np.float32) @ LUMINANCE_WEIGHTS
    raise CaseError(path, f"{channels} components per pixel; grey, RGB or RGBA is expected")


def _read_mask(path: str, shape: tuple) -> np.ndarray:
    """Binary (H, W) uint8 mask. Lossless masks: any non-zero pixel is tumor. JPEG masks: from
    half of the 8-bit range up, because compression rings around the edges with small values."""
    labels, _ = read_slice(path)
    if labels.shape != shape:
        raise CaseError(path, f"mask shape {labels.shape} differs from image shape {shape}")
    if not np.isfinite(labels).all():
        raise CaseError(path, "NaN/Inf pixels in the mask")
    threshold = 127.5 if path.lower().endswith(LOSSY_EXTENSIONS) else 0.0
    return (labels > threshold).astype(np.uint8)


def _pair_masks(files: list[str], suffix: str) -> tuple[dict, list[str]]:
    """image -> mask for every `<stem><suffix>.<ext>` next to a `<stem>.<ext>` (same extension
    preferred), and the masks that have no image."""
    by_stem: dict = {}
    for rel in files:
        by_stem.setdefault(os.path.splitext(rel)[0], []).append(rel)
    mask_of, orphans = {}, []
    for rel in files:
        stem, ext = os.path.splitext(rel)
        if not stem.endswith(suffix) or os.path.basename(stem) == suffix:
            continue
        partners = by_stem.get(stem[: -len(suffix)], [])
        if not partners:
            orphans.append(rel)
            continue
        same_ext = [p for p in partners if os.path.splitext(p)[1].lower() == ext.lower()]
        mask_of[(same_ext or partners)[0]] = rel
    return mask_of, orphans


def _unpaired_problem(rel: str, options) -> str:
    stem, ext = os.path.splitext(os.path.basename(rel))
    folders = ", ".join(name for name, _ in options.class_folders)
    return f"not in a class folder ({folders}) and no mask {stem}{options.mask_suffix}{ext} beside it"


def _patient_of(rel: str, case_id: str, in_class: bool) -> str:
    parts = rel.split("/")
    if in_class:
        return "/".join(parts[:2]) if len(parts) > 2 else case_id
    if len(parts) > 1:
        return "/".join(parts[:-1])
    return _SLICE_NUMBER.sub("", case_id)


def _top(rel: str) -> str | None:
    return rel.split("/")[0] if "/" in rel else None
