"""Tests of data_prep.readers: the dispatch API, options, the shared volume checks, the generic
pair reader (NIfTI, NRRD, MHA, DICOM series) and the real Brain-Tumor-Progression data. BraTS is
in test_readers_brats.py, 2-D folders and figshare .mat in test_readers_2d.py. Every fixture is
written here, in the real file formats, with SimpleITK."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import readers
from data_prep.readers import ReaderOptions
from data_prep.scan import CaseError

SHAPE = (8, 16, 12)  # (Z, Y, X), small and non-square so that transpositions show
# A sagittal-first storage: file axis i runs anterior, j inferior, k (the slice axis) left.
SAGITTAL_DIRECTION = (0.0, 0.0, 1.0,
                      -1.0, 0.0, 0.0,
                      0.0, -1.0, 0.0)


def ramp_volume(shape=SHAPE, offset=0.0) -> np.ndarray:
    """Every voxel a different value, so any flip or transposition is caught."""
    return (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + offset)


def blob_labels(shape=SHAPE, labels=(1, 2, 4)) -> np.ndarray:
    """Nested boxes carrying the given labels (outermost first); background 0."""
    seg = np.zeros(shape, np.uint8)
    for i, label in enumerate(labels):
        seg[2 + i // 2: 6 - i // 2, 4 + i: 12 - i, 3 + i: 9 - i] = label
    return seg


def write_volume(path, array, spacing=None, direction=None):
    """Write a (Z, Y, X) array stored axially in LPS (or with the given direction/spacing, in
    file axis order i, j, k)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = sitk.GetImageFromArray(array)
    if spacing is not None:
        image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return str(path)


def to_sagittal(axial: np.ndarray) -> np.ndarray:
    """The array a sagittal-first file (SAGITTAL_DIRECTION) stores for an LPS axial (Z, Y, X)
    array: s[k, j, i] = axial[Z-1-j, Y-1-i, k]."""
    return np.flip(axial, (0, 1)).transpose(2, 0, 1).copy()


def write_dicom_series(folder, volume, spacing=(0.8, 0.9, 2.5)):
    """One DICOM file per axial slice with the tags a scanner writes (position, orientation,
    spacing, UIDs). Files are named in reverse slice order, so only the positions give the order.
    `spacing` is (x, y, z)."""
    os.makedirs(folder, exist_ok=True)
    image = sitk.GetImageFromArray(volume.astype(np.int16))
    image.SetSpacing(spacing)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.8.498.1"
    for z in range(volume.shape[0]):
        slice_image = image[:, :, z]
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, value in (("0008|0060", "MR"), ("0010|0020", "P1"), ("0020|000d", uid + ".1"),
                           ("0020|000e", uid + ".2"), ("0008|0016", "1.2.840.10008.5.1.4.1.1.4"),
                           ("0008|0018", f"{uid}.3.{z}"), ("0020|0013", str(z + 1)),
                           ("0020|0032", "\\".join(f"{p:.4f}" for p in position)),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", str(spacing[2])),
                           ("0028|0030", f"{spacing[1]}\\{spacing[0]}")):
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(os.path.join(folder, f"img{volume.shape[0] - z:03d}.dcm"))
        writer.Execute(slice_image)
    return str(folder)


def pair_options(**overrides) -> ReaderOptions:
    return ReaderOptions(**{"image_glob": "*/scan.*", "mask_replace": ("scan.", "seg."), **overrides})


# ---------------------------------------------------------------- dispatch and options

def test_unknown_format_and_missing_input_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        readers.discover(str(tmp_path), "jpeg2000", ReaderOptions())
    with pytest.raises(ValueError, match="not found"):
        readers.discover(str(tmp_path / "nope"), "brats", ReaderOptions())
    assert readers.FORMATS == ("brats", "pairs", "folders", "figshare")


@pytest.mark.parametrize("bad", [dict(modalities=()), dict(modalities=("t1c",)), dict(modalities=("t1", "t1")),
                                 dict(mask_replace=("a",)), dict(mask_replace=("", "x")), dict(patient_level=-1),
                                 dict(class_folders=(("yes", 2),)), dict(mask_suffix="")])
def test_bad_options_raise_at_construction(bad):
    with pytest.raises(ValueError):
        ReaderOptions(**bad)


def test_options_store_lists_as_tuples_and_pickle():
    options = ReaderOptions(modalities=["flair", "t1"], mask_replace=["_a", "_b"], class_folders=[["y", 1]])
    assert options.modalities == ("flair", "t1") and options.mask_replace == ("_a", "_b")
    assert options.class_folders == (("y", 1),)
    assert pickle.loads(pickle.dumps(options)) == options


# ---------------------------------------------------------------- generic pairs

def test_pairs_read_nifti_nrrd_mha_by_value(tmp_path):
    image, seg = ramp_volume(), blob_labels()
    for folder, ext in (("a", "nii"), ("b", "nii.gz"), ("c", "nrrd"), ("d", "mha")):
        write_volume(tmp_path / folder / f"scan.{ext}", image)
        write_volume(tmp_path / folder / f"seg.{ext}", seg)
    options = pair_options()
    cases, problems = readers.discover(str(tmp_path), "pairs", options)
    assert problems == [] and [c.case_id for c in cases] == ["a/scan", "b/scan", "c/scan", "d/scan"]
    for ref in cases:
        scan = readers.load(ref, options)
        assert scan.image.shape == SHAPE + (1,) and scan.image.dtype == np.float32
        np.testing.assert_array_equal(scan.image[..., 0], image)
        np.testing.assert_array_equal(scan.mask, (seg > 0).astype(np.uint8))
        assert scan.mask.dtype == np.uint8 and scan.is_3d and pickle.loads(pickle.dumps(ref)) == ref


def test_sagittal_first_volume_comes_out_axial(tmp_path):
    axial, seg = ramp_volume(), blob_labels()
    # File spacing is per file axis (i: anterior, j: inferior, k: left) = (y, z, x) of the result.
    stored = dict(spacing=(0.9, 2.5, 0.7), direction=SAGITTAL_DIRECTION)
    path = write_volume(tmp_path / "p1" / "scan.nii.gz", to_sagittal(axial), **stored)
    write_volume(tmp_path / "p1" / "seg.nii.gz", to_sagittal(seg), **stored)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(sitk.ReadImage(path).GetDirection()) == "AIL"
    options = pair_options()
    scan = readers.load(readers.discover(str(tmp_path), "pairs", options)[0][0], options)
    np.testing.assert_array_equal(scan.image[..., 0], axial)
    np.testing.assert_array_equal(scan.mask, (seg > 0).astype(np.uint8))
    np.testing.assert_allclose(scan.spacing, (2.5, 0.9, 0.7))


def test_pairs_read_a_dicom_series_folder_in_slice_position_order(tmp_path):
    volume = ramp_volume().astype(np.int16)
    write_dicom_series(str(tmp_path / "p1" / "T1"), volume)
    write_volume(tmp_path / "p1" / "T1_mask.nrrd", blob_labels(), spacing=(0.8, 0.9, 2.5))
    options = ReaderOptions(image_glob="*/T1", mask_replace=("T1", "T1_mask.nrrd"))
    cases, problems = readers.discover(str(tmp_path), "pairs", options)
    assert problems == [] and [(c.case_id, c.patient_id) for c in cases] == [("p1/T1", "p1")]
    scan = readers.load(cases[0], options)
    np.testing.assert_array_equal(scan.image[..., 0], volume)
    np.testing.assert_allclose(scan.spacing, (2.5, 0.9, 0.8), rtol=1e-4)
    assert scan.mask.sum() == (blob_labels() > 0).sum()


def test_pairs_group_patients_by_folder_level(tmp_path):
    for rel in ("p1/pre/scan.nii", "p1/post/scan.nii", "p2/pre/scan.nii"):
        write_volume(tmp_path / rel, ramp_volume())
    glob_ = "*/*/scan.nii"
    for level, expected in ((1, ["p1", "p1", "p2"]), (2, ["p1/post", "p1/pre", "p2/pre"]),
                            (0, ["p1/post/scan", "p1/pre/scan", "p2/pre/scan"])):
        options = ReaderOptions(image_glob=glob_, no_masks=True, patient_level=level)
        cases, _ = readers.discover(str(tmp_path), "pairs", options)
        assert [c.patient_id for c in cases] == expected
    write_volume(tmp_path / "flat.nii", ramp_volume())
    cases, _ = readers.discover(str(tmp_path), "pairs", ReaderOptions(image_glob="*.nii", no_masks=True))
    assert [(c.case_id, c.patient_id) for c in cases] == [("flat", "flat")]


def test_pairs_broad_glob_skips_masks_and_reports_missing_ones(tmp_path):
    for rel in ("p1/scan.nii.gz", "p1/seg.nii.gz", "p2/scan.nii.gz", "p3/other.nii.gz"):
        write_volume(tmp_path / rel, ramp_volume())
    options = ReaderOptions(image_glob="*/*.nii.gz", mask_replace=("scan.", "seg."))
    cases, problems = readers.discover(str(tmp_path), "pairs", options)
    assert [c.case_id for c in cases] == ["p1/scan"]
    assert [(os.path.relpath(p, tmp_path), "not found" in why or "does not occur" in why)
            for p, why in problems] == [("p2/scan.nii.gz", True), ("p3/other.nii.gz", True)]


def test_pairs_no_masks_gives_mask_none(tmp_path):
    write_volume(tmp_path / "h1" / "scan.nii.gz", ramp_volume())
    options = ReaderOptions(image_glob="*/scan.nii.gz", no_masks=True)
    scan = readers.load(readers.discover(str(tmp_path), "pairs", options)[0][0], options)
    assert scan.mask is None and scan.image.shape == SHAPE + (1,)


def test_pairs_discovery_errors(tmp_path):
    with pytest.raises(ValueError, match="match image_glob"):
        readers.discover(str(tmp_path), "pairs", pair_options())
    with pytest.raises(ValueError, match="mask_replace"):
        readers.discover(str(tmp_path), "pairs", ReaderOptions(image_glob="*"))


def test_pairs_float_mask_counts_from_one_half(tmp_path):
    write_volume(tmp_path / "p" / "scan.nii", ramp_volume())
    seg = np.zeros(SHAPE, np.float64)
    seg[1, 1, 1], seg[2, 2, 2], seg[3, 3, 3] = 1.0, 1e-6, 0.6
    write_volume(tmp_path / "p" / "seg.nii", seg)
    options = pair_options()
    scan = readers.load(readers.discover(str(tmp_path), "pairs", options)[0][0], options)
    assert scan.mask.sum() == 2 and scan.mask[1, 1, 1] == 1 and scan.mask[2, 2, 2] == 0


# ---------------------------------------------------------------- bad input, each naming the file

def _bad_pair(tmp_path, image=None, seg=None, image_spacing=None, seg_spacing=None, ext="nii.gz"):
    image_path = write_volume(tmp_path / "p" / f"scan.{ext}", ramp_volume() if image is None else image,
                              spacing=image_spacing)
    seg_path = write_volume(tmp_path / "p" / f"seg.{ext}", blob_labels() if seg is None else seg,
                            spacing=seg_spacing)
    options = pair_options()
    return readers.discover(str(tmp_path), "pairs", options)[0][0], options, image_path, seg_path


@pytest.mark.parametrize("poison", [np.nan, np.inf])
@pytest.mark.parametrize("ext", ["nrrd", "mha"])
def test_nan_or_inf_voxels(tmp_path, poison, ext):
    image = ramp_volume()
    image[3, 4, 5] = poison
    ref, options, image_path, _ = _bad_pair(tmp_path, image=image, ext=ext)
    with pytest.raises(CaseError, match="NaN/Inf") as err:
        readers.load(ref, options)
    assert err.value.path == image_path


def test_nifti_library_turns_nan_into_zero(tmp_path):
    """ITK's NIfTI library replaces NaN/Inf with 0 while reading, so they never reach the checks;
    documented in docs/formats.md. This pins that behaviour: if it changes, the check takes over."""
    image = ramp_volume() + 1
    image[3, 4, 5] = np.nan
    ref, options, _, _ = _bad_pair(tmp_path, image=image)
    assert readers.load(ref, options).image[3, 4, 5, 0] == 0


def test_empty_volume(tmp_path):
    ref, options, image_path, _ = _bad_pair(tmp_path, image=np.zeros(SHAPE, np.float32))
    with pytest.raises(CaseError, match="empty volume") as err:
        readers.load(ref, options)
    assert err.value.path == image_path


def test_two_d_volume_where_3d_is_needed(tmp_path):
    ref, options, image_path, _ = _bad_pair(tmp_path, image=ramp_volume((16, 12)), seg=blob_labels()[0])
    with pytest.raises(CaseError, match="3-D volume is needed") as err:
        readers.load(ref, options)
    assert err.value.path == image_path


def test_single_slice_3d_volume_is_2d(tmp_path):
    ref, options, image_path, _ = _bad_pair(tmp_path, image=ramp_volume((1, 16, 12)))
    with pytest.raises(CaseError, match="single 2-D slice"):
        readers.load(ref, options)


def test_mask_shape_mismatch(tmp_path):
    ref, options, _, seg_path = _bad_pair(tmp_path, seg=blob_labels((8, 16, 10)))
    with pytest.raises(CaseError, match="shape") as err:
        readers.load(ref, options)
    assert err.value.path == seg_path


def test_mask_spacing_mismatch_beyond_tolerance(tmp_path):
    ref, options, _, seg_path = _bad_pair(tmp_path, image_spacing=(1.0, 1.0, 1.0), seg_spacing=(1.0, 1.0, 1.01))
    with pytest.raises(CaseError, match="spacing") as err:
        readers.load(ref, options)
    assert err.value.path == seg_path


def test_mask_spacing_within_tolerance_is_accepted(tmp_path):
    ref, options, _, _ = _bad_pair(tmp_path, image_spacing=(1.0, 1.0, 1.0), seg_spacing=(1.0, 1.0, 1.0005))
    assert readers.load(ref, options).mask.any()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "truncated_plain"])
def test_unreadable_or_corrupt_file(tmp_path, damage):
    ref, options, image_path, seg_path = _bad_pair(tmp_path, ext="nii" if damage == "truncated_plain" else "nii.gz")
    target = image_path if damage == "garbage" else seg_path
    data = open(target, "rb").read()
    with open(target, "wb") as f:
        f.write(b"not a medical image" * 20 if damage == "garbage" else data[: len(data) * 2 // 3])
    with pytest.raises(CaseError, match="unreadable|truncated|corrupt") as err:
        readers.load(ref, options)
    assert err.value.path == target


def test_missing_file_at_load(tmp_path):
    ref, options, image_path, _ = _bad_pair(tmp_path)
    os.remove(image_path)
    with pytest.raises(CaseError, match="not found"):
        readers.load(ref, options)


def test_dicom_folder_without_series(tmp_path):
    (tmp_path / "p1" / "T1").mkdir(parents=True)
    (tmp_path / "p1" / "T1" / "notes.txt").write_text("no images here")
    options = ReaderOptions(image_glob="*/T1", no_masks=True)
    with pytest.raises(CaseError, match="no DICOM series"):
        readers.load(readers.discover(str(tmp_path), "pairs", options)[0][0], options)


# ---------------------------------------------------------------- the real data

def test_real_brain_tumor_progression_pairs(real_data_dir):
    options = ReaderOptions(image_glob="*/*_Scan_T1.nii.gz", mask_replace=("_Scan_T1", "_Mask"))
    cases, problems = readers.discover(real_data_dir, "pairs", options)
    assert problems == [] and len(cases) == 22
    assert len({c.patient_id for c in cases}) == 11
    assert {c.patient_id for c in cases if c.case_id.endswith(("Pre_Scan_T1", "Post_Scan_T1"))} == \
        {f"{i:02d}" for i in range(1, 12)}
    for ref in cases:
        scan = readers.load(ref, options)
        assert scan.image.shape == (24, 256, 256, 1) and scan.image.dtype == np.float32
        assert scan.mask.shape == (24, 256, 256) and scan.mask.dtype == np.uint8
        tumor_slices = int((scan.mask.reshape(24, -1).sum(1) > 0).sum())
        assert 3 <= tumor_slices <= 11, (ref.case_id, tumor_slices)
