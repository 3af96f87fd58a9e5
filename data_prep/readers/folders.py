"""2-D image folders: class folders (`yes/`, `no/`, configurable) and `name.tif` + `name_mask.tif`
pairs, in 8- or 16-bit PNG, TIFF, JPEG or BMP, read with SimpleITK. Each image is one scan with
Z = 1, except numbered slices of one folder, which are stacked into a volume (below).

Channels: a grey image is one channel (an RGB file is grey when nearly all its pixels have equal
channels: `coloured_fraction`). Images with
several different channels are refused unless `channel_names` names them (the LGG TIFFs hold
pre-contrast T1, FLAIR and post-contrast T1: t1,flair,t1ce); `modalities` then picks and orders
the channels. Only `channel_names=("rgb",)` mixes colour pixels into BT.709 luminance (colour
photographs of films, screenshots): luminance of three MR sequences is no MR contrast.

Stacking: the mask-paired images of one folder named `<prefix>_<n>` (same prefix, n a number)
are the slices of one volume, in numeric order (LGG: `TCGA_CS_4941_19960909_1.tif` ...), so that
normalisation, brain fraction and slice range work per volume as for 3-D scans.
`stack_slices`: "auto" stacks a folder when every paired image in it is so numbered, "on" stacks
the numbered ones whatever else is there, "off" keeps one case per image.

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
from data_prep.scan import CaseError, CaseRef, LayoutError, Scan

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
# Same luminance weights as skimage.color.rgb2gray (ITU-R BT.709).
LUMINANCE_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], np.float32)
# An RGB image is grey when at most COLOURED_FRACTION of its non-background pixels have channels
# spreading by more than COLOURED_SPREAD of its intensity range (see `coloured_fraction`).
# Measured on the LGG TIFFs (three MR sequences): at least 41% of the non-background pixels of
# every slice whose channels differ spread by more than 4% of the range; JPEG chroma noise of a
# few levels and a logo of a few hundred pixels on a grey scan stay below 5%.
COLOURED_SPREAD = 0.04
COLOURED_FRACTION = 0.1
_SLICE_NUMBER = re.compile(r"_\d+$")
_NUMBERED = re.compile(r"^(?P<prefix>.+)_(?P<n>\d+)$")


def discover(input_dir: str, options) -> tuple[list[CaseRef], list[tuple[str, str]]]:
    """Class-folder images and image/mask pairs under `input_dir`; masks without an image and
    images that are neither in a class folder nor paired are reported. With keep_splits, a
    top-level train/val/test folder (or Training, validation, Testing, ...) sets the split of
    everything under it and the layout below it is read as usual."""
    files = [common.relative_id(os.path.join(d, name), input_dir)
             for d, name in common.walk_files(input_dir) if name.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {input_dir}")
    mask_of, orphan_masks = _pair_masks(files, options.mask_suffix)
    class_label = dict(options.class_folders)
    _check_class_folders(input_dir, files, class_label, options.keep_splits)
    _check_unlisted_folders(input_dir, files, set(mask_of) | set(mask_of.values()) | set(orphan_masks),
                            class_label, options)
    cases = []
    problems = [(os.path.join(input_dir, m), "mask without its image") for m in orphan_masks]
    masks = set(orphan_masks) | set(mask_of.values())
    ids = common.case_ids([rel for rel in files if rel not in masks], lambda rel: os.path.splitext(rel)[0])
    for rel in files:
        if rel in masks:
            continue
        split, inner = common.own_split(rel) if options.keep_splits else (None, rel)
        top = _top(inner)
        if top not in class_label and rel not in mask_of:
            problems.append((os.path.join(input_dir, rel), _unpaired_problem(rel, options)))
            continue
        paths = {"image": os.path.join(input_dir, rel)}
        if rel in mask_of:
            paths["mask"] = os.path.join(input_dir, mask_of[rel])
        case_id = ids[rel]
        in_class = top in class_label
        patient = _patient_of(inner, case_id[len(rel) - len(inner):], in_class)
        cases.append(CaseRef(case_id=case_id, patient_id=f"{split}/{patient}" if split else patient,
                             format="folders", paths=paths, label=class_label.get(top) if in_class else None,
                             extra={"split": split} if split else {}))
    if not cases and not mask_of and not any(_top(f) in class_label for f in files):
        raise LayoutError(_nothing_found(input_dir, files, class_label, options))
    return _stack(cases, input_dir, options.stack_slices), problems


def _check_class_folders(input_dir: str, files: list, class_label: dict, keep_splits: bool) -> None:
    """A class folder named in the options but absent while others are present would drop that
    class without a word (`No=0` against `no/`): refuse, listing the folders that are there."""
    tops = {_top(common.own_split(f)[1] if keep_splits else f) for f in files} - {None}
    present = [name for name in class_label if name in tops]
    missing = [name for name in class_label if name not in tops]
    if present and missing:
        raise LayoutError(f"--class_folders: no folder named {', '.join(missing)} under {input_dir} "
                         f"(folders present: {', '.join(sorted(tops))}); names are case-sensitive")


def _folder_counts(files: list, keep_splits: bool) -> dict:
    """Top-level folder (below a split folder with keep_splits) -> images in it."""
    counts: dict = {}
    for rel in files:
        top = _top(common.own_split(rel)[1] if keep_splits else rel)
        if top is not None:
            counts[top] = counts.get(top, 0) + 1
    return counts


def _check_unlisted_folders(input_dir: str, files: list, paired: set, class_label: dict, options) -> None:
    """Class folders beside the listed ones but left out of --class_folders (a 4-class set read
    with two of its classes) would reject every image in them one line each: refuse once,
    naming them. A folder holding mask pairs is a patient folder, not a class folder."""
    inner = {rel: common.own_split(rel)[1] if options.keep_splits else rel for rel in files}
    tops = {_top(i) for i in inner.values()}
    if not any(name in tops for name in class_label):
        return
    with_pairs = {_top(inner[rel]) for rel in paired}
    counts = _folder_counts(files, options.keep_splits)
    unlisted = sorted(t for t in counts if t not in class_label and t not in with_pairs)
    if unlisted:
        listed = ",".join(f"{name}={label}" for name, label in class_label.items())
        raise LayoutError(
            f"--class_folders={listed}: folder(s) " + ", ".join(f"{t}/ ({counts[t]} images)" for t in unlisted)
            + f" under {input_dir} are not listed and hold no <name>{options.mask_suffix} mask pairs; add each "
            f"with its label (1 tumor, 0 normal), e.g. --class_folders={listed},"
            + ",".join(f"{t}=1" for t in unlisted) + ", or move them out of --input")


def _nothing_found(input_dir: str, files: list, class_label: dict, options) -> str:
    """Why no image is usable: which folders there are, where class folders must sit, and where
    the listed ones were found when they sit deeper."""
    counts = _folder_counts(files, options.keep_splits)
    splits = sorted(t for t in counts if t.lower() in common.SPLIT_FOLDERS)
    if splits and not options.keep_splits:
        return (f"{', '.join(t + '/' for t in splits)} under {input_dir} are the dataset's split folders, and "
                "class folders are read directly under --input: keep the dataset's split with --keep_splits "
                "(class folders inside each split folder), or split by patient: move the class folders out of the "
                "split folders")
    found = ", ".join(f"{t}/ ({n})" for t, n in sorted(counts.items())) or "none (every image is directly in it)"
    where = f"directly under --input ({os.path.join(input_dir, next(iter(class_label)))}/)"
    if options.keep_splits:
        where += " or directly under its split folders (train/, test/, ...)"
    deeper = sorted({"/".join(rel.split("/")[:k + 1]) for rel in files for k, part in enumerate(rel.split("/")[:-1])
                     if part in class_label and k > 0})
    hint = ""
    if deeper:
        parent = os.path.join(input_dir, deeper[0].rsplit("/", 1)[0])
        hint = f"; found {', '.join(d + '/' for d in deeper[:4])} deeper down: give --input={parent}"
    if counts and not hint:
        hint = ("; if these are the classes, name them with their labels (1 tumor, 0 normal): --class_folders="
                + ",".join(f"{t}=LABEL" for t in sorted(counts)))
    return (f"{len(files)} images under {input_dir}, but none in a class folder and no <name>{options.mask_suffix} "
            f"mask pairs: --class_folders names {', '.join(class_label)}, which must sit {where}; folders found "
            f"there: {found}{hint}")


def _stack(cases: list, input_dir: str, mode: str) -> list:
    """Merge the numbered mask pairs of a folder into one case per (folder, prefix)."""
    if mode == "off":
        return cases
    groups: dict = {}
    for ref in cases:
        folder, name = os.path.split(ref.case_id)
        match = _NUMBERED.match(name)
        if ref.label is None and "mask" in ref.paths and match:
            groups.setdefault(folder, {}).setdefault(match["prefix"], []).append((int(match["n"]), ref))
    merged, out = set(), []
    for folder, by_prefix in groups.items():
        in_folder = [r for r in cases if os.path.split(r.case_id)[0] == folder]
        if mode == "auto" and (len(by_prefix) != 1 or sum(map(len, by_prefix.values())) != len(in_folder)):
            continue
        for prefix, numbered in by_prefix.items():
            if len(numbered) < 2:
                continue
            numbered.sort(key=lambda item: item[0])
            first = numbered[0][1]
            case_id = f"{folder}/{prefix}" if folder else prefix
            slices = tuple((r.paths["image"], r.paths["mask"]) for _, r in numbered)
            out.append(CaseRef(case_id=case_id, patient_id=first.patient_id, format="folders",
                               paths={"image": os.path.join(input_dir, case_id) + "_*"},
                               extra={**first.extra, "slices": slices,
                                      "numbers": tuple(n for n, _ in numbered)}))
            merged.update(r.case_id for _, r in numbered)
    return [r for r in cases if r.case_id not in merged] + out


def load(ref: CaseRef, options) -> Scan:
    """Read one 2-D image (and its mask), or the numbered slices of a stacked case. A pair's
    label, unknown at discovery, is set on the returned scan's ref from its mask."""
    if "slices" in ref.extra:
        return _load_stack(ref, options)
    image, spacing = read_slice(ref.paths["image"], options)
    mask = None
    if "mask" in ref.paths:
        mask = _read_mask(ref.paths["mask"], image.shape[:2])
    if ref.label is None:
        ref = dataclasses.replace(ref, label=int(mask is not None and mask.any()))
    return Scan(ref=ref, image=image[None], mask=None if mask is None else mask[None],
                spacing=(1.0,) + spacing, is_3d=False)


def _load_stack(ref: CaseRef, options) -> Scan:
    """(Z, H, W, C) from the numbered slices, in numeric order; every slice must have one shape."""
    images, masks, spacing = [], [], None
    for image_path, mask_path in ref.extra["slices"]:
        image, spacing_ = read_slice(image_path, options, check=False)
        if images and image.shape != images[0].shape:
            raise CaseError(image_path, f"slice shape {image.shape} differs from {images[0].shape} of "
                                        f"{ref.extra['slices'][0][0]}; cannot stack the folder into one volume")
        images.append(image)
        masks.append(_read_mask(mask_path, image.shape[:2]))
        spacing = spacing or spacing_
    volume = np.stack(images)
    common.check_intensities(common.Volume(ref.paths["image"], volume, (1.0,) + spacing))
    return Scan(ref=ref, image=volume, mask=np.stack(masks), spacing=(1.0,) + spacing, is_3d=True)


def read_slice(path: str, options, check: bool = True) -> tuple[np.ndarray, tuple]:
    """(H, W, C) float32 raw intensities and (row, column) spacing of a single-slice image, with
    the channels chosen as the module docstring says. `check` rejects a blank image (a slice of a
    stack may be blank: the stack is checked as a whole)."""
    array, spacing = _read_pixels(path)
    array = _channels(array, path, options)
    if check:
        common.check_intensities(common.Volume(path, array, spacing))
    return array.astype(np.float32, copy=False), spacing


def _read_pixels(path: str) -> tuple[np.ndarray, tuple]:
    """(H, W, C) as stored, and the (row, column) spacing."""
    image = common.read_image(path)
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        image = image[:, :, 0]
    if image.GetDimension() != 2:
        raise CaseError(path, f"{image.GetDimension()}-D image of size {image.GetSize()}; "
                              "one 2-D slice per file is expected")
    array = sitk.GetArrayFromImage(image)
    return (array if array.ndim == 3 else array[..., None]), tuple(reversed(image.GetSpacing()))


def _channels(array: np.ndarray, path: str, options) -> np.ndarray:
    names = tuple(options.channel_names)
    stored = array.shape[-1]
    if names == ("rgb",):
        if stored in (3, 4):
            return (array[..., :3].astype(np.float32) @ LUMINANCE_WEIGHTS)[..., None]
        return array[..., :1]
    if names:
        if stored != len(names):
            raise CaseError(path, f"{stored} channel(s) per pixel, but --channel_names names {len(names)} "
                                  f"({','.join(names)})")
        return array[..., [names.index(m) for m in options.modalities]]
    if stored == 2:          # grey + alpha
        return array[..., :1]
    if stored in (3, 4):
        fraction = coloured_fraction(array[..., :3])
        if fraction <= COLOURED_FRACTION:
            # Grey saved as RGB: the per-pixel median of the channels is the grey level (exact when
            # the channels are equal), deaf to chroma noise and to the few pixels of a logo.
            return np.sort(array[..., :3], axis=-1)[..., 1:2]
        raise CaseError(path, f"{stored} different channels per pixel ({fraction:.0%} of the non-background "
                              "pixels differ by more than 4% of the range): if they are MR sequences, name "
                              "them with --channel_names (e.g. t1,flair,t1ce for the LGG TIFFs) and pick with "
                              "--modalities; --channel_names=rgb mixes a colour photograph into luminance")
    if stored != 1:
        raise CaseError(path, f"{stored} components per pixel; grey, RGB or RGBA is expected, or name them "
                              "with --channel_names")
    return array


def coloured_fraction(rgb: np.ndarray) -> float:
    """The fraction of non-background pixels (brighter than 5% of the image's range) whose
    channels spread by more than COLOURED_SPREAD of the range. A robust statistic over pixels:
    JPEG chroma noise of a few levels and a small coloured logo on a grey scan stay far below
    COLOURED_FRACTION; three MR sequences or a colour photograph lie far above it."""
    colour = rgb.astype(np.float32)
    low = float(colour.min())
    # 8-bit files: the full scale, so that a dark image's chroma noise is not magnified
    span = 255.0 if rgb.dtype == np.uint8 else float(colour.max()) - low or 1.0
    foreground = colour.max(axis=-1) > low + 0.05 * span
    if not foreground.any():
        return 0.0
    spread = colour.max(axis=-1) - colour.min(axis=-1)
    return float((spread[foreground] > COLOURED_SPREAD * span).mean())


def _read_mask(path: str, shape: tuple) -> np.ndarray:
    """Binary (H, W) uint8 mask. Lossless masks: any non-zero pixel is tumor. JPEG masks: from
    half of the 8-bit range up, because compression rings around the edges with small values."""
    labels, _ = _read_pixels(path)
    labels = labels.max(axis=-1)    # an RGB mask is tumor wherever any channel is
    if labels.shape != shape:
        raise CaseError(path, f"mask shape {labels.shape} differs from image shape {shape}")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise CaseError(path, "NaN/Inf pixels in the mask")
    common.check_labels(labels, path)
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
