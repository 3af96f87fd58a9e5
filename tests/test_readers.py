"""Tests of data_prep.readers: the dispatch API, options, the shared volume checks, the generic
pair reader (NIfTI, NRRD, MHA, DICOM series) and the real Brain-Tumor-Progression data. BraTS is
in test_readers_brats.py, 2-D folders and figshare .mat in test_readers_2d.py. Every fixture is
written here, in the real file formats, with SimpleITK."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import readers
from data_prep.readers import ReaderOptions
from data_prep.readers import common
from data_prep.readers.common import read_image
from ssagan_tf.data.nifti import read_float_nifti
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


def test_brats_modalities_checked_for_the_format():
    with pytest.raises(ValueError, match="--modalities"):
        readers.check_for_format(ReaderOptions(modalities=("t1c",)), "brats")


@pytest.mark.parametrize("bad", [dict(modalities=()), dict(stack_slices="maybe"), dict(modalities=("t1", "t1")),
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
@pytest.mark.parametrize("ext", ["nrrd", "mha", "nii", "nii.gz"])
def test_nan_or_inf_voxels(tmp_path, poison, ext):
    image = ramp_volume()
    image[3, 4, 5] = poison
    ref, options, image_path, _ = _bad_pair(tmp_path, image=image, ext=ext)
    with pytest.raises(CaseError, match="1 NaN/Inf voxels") as err:
        readers.load(ref, options)
    assert err.value.path == image_path and image_path in str(err.value)


@pytest.mark.parametrize("ext", ["nii", "nii.gz"])
def test_nifti_nan_and_inf_are_counted_though_itk_zeroes_them(tmp_path, ext):
    """ITK's NIfTI library replaces NaN/Inf with 0 while reading (pinned here: that is why float
    NIfTI payloads are read by ssagan_tf.data.nifti); the reader counts them all."""
    image = ramp_volume().astype(np.float64) + 1
    image[0, 0, 0], image[3, 4, 5], image[7, 15, 11] = np.nan, np.inf, -np.inf
    path = write_volume(tmp_path / f"scan.{ext}", image)
    assert sitk.GetArrayFromImage(sitk.ReadImage(path))[3, 4, 5] == 0
    with pytest.raises(CaseError, match="3 NaN/Inf voxels") as err:
        read_image(path)
    assert err.value.path == path


# ---------------------------------------------------------------- float NIfTI read without ITK's data path

def _nifti_header(array, version=1, endian="<", slope=0.0, inter=0.0, affine=None) -> bytes:
    """A single-file NIfTI-1 or NIfTI-2 header (plus the 4-byte extension flag) for a (.., Z, Y, X)
    float array, placing the voxels by an sform `affine` (3x4, in RAS as NIfTI stores it)."""
    datatype = {np.dtype(np.float32): 16, np.dtype(np.float64): 64}[array.dtype]
    dims = [array.ndim] + list(reversed(array.shape)) + [1] * (7 - array.ndim)
    affine = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]) if affine is None else np.asarray(affine)
    pixdim = [1.0] + list(np.linalg.norm(affine[:, :3], axis=0)) + [1.0] * 4
    e = endian
    if version == 1:
        head = bytearray(352)
        struct.pack_into(e + "i", head, 0, 348)
        struct.pack_into(e + "8h", head, 40, *dims)
        struct.pack_into(e + "hh", head, 70, datatype, array.itemsize * 8)
        struct.pack_into(e + "8f", head, 76, *pixdim)
        struct.pack_into(e + "3f", head, 108, 352.0, slope, inter)
        struct.pack_into(e + "hh", head, 252, 0, 2)  # qform_code 0, sform_code 2 (aligned)
        struct.pack_into(e + "12f", head, 280, *affine.ravel())
        head[344:348] = b"n+1\0"
    else:
        head = bytearray(544)
        struct.pack_into(e + "i8s", head, 0, 540, b"n+2\0\r\n\032\n")
        struct.pack_into(e + "hh", head, 12, datatype, array.itemsize * 8)
        struct.pack_into(e + "8q", head, 16, *dims)
        struct.pack_into(e + "8d", head, 104, *pixdim)
        struct.pack_into(e + "q2d", head, 168, 544, slope, inter)
        struct.pack_into(e + "ii", head, 344, 0, 2)
        struct.pack_into(e + "12d", head, 400, *affine.ravel())
    return bytes(head)


def write_raw_nifti(path, array, compress=False, **header) -> str:
    data = _nifti_header(array, **header) + array.astype(array.dtype.newbyteorder(header.get("endian", "<"))).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return str(path)


def assert_same_as_sitk(path):
    """The new path reads `path` (it does not fall back) into what sitk.ReadImage gives."""
    ours, theirs = read_float_nifti(str(path)), sitk.ReadImage(str(path))
    assert ours is not None
    assert ours.GetPixelID() == theirs.GetPixelID() and ours.GetSize() == theirs.GetSize()
    assert ours.GetNumberOfComponentsPerPixel() == theirs.GetNumberOfComponentsPerPixel() == 1
    assert ours.GetOrigin() == theirs.GetOrigin() and ours.GetSpacing() == theirs.GetSpacing()
    assert ours.GetDirection() == theirs.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
    assert read_image(str(path)).GetSize() == theirs.GetSize()
    return ours


@pytest.mark.parametrize("ext", ["nii", "nii.gz"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_nifti_equals_sitk_3d(tmp_path, ext, dtype):
    image = assert_same_as_sitk(write_volume(tmp_path / f"a.{ext}", ramp_volume().astype(dtype) - 100.25))
    assert image.GetDimension() == 3


def test_float_nifti_equals_sitk_oblique_sagittal(tmp_path):
    path = write_volume(tmp_path / "s.nii.gz", to_sagittal(ramp_volume()), spacing=(0.9, 2.5, 0.7),
                        direction=SAGITTAL_DIRECTION)
    image = sitk.ReadImage(path)
    image.SetOrigin((12.5, -30.0, 7.25))
    rotation = sitk.VersorTransform((0.2, 0.3, 0.9), 0.4).GetMatrix()  # oblique, not a permutation
    image.SetDirection(np.ravel(np.reshape(rotation, (3, 3)) @ np.reshape(SAGITTAL_DIRECTION, (3, 3))))
    sitk.WriteImage(image, path)
    ours = assert_same_as_sitk(path)
    assert ours.GetDirection() != (1, 0, 0, 0, 1, 0, 0, 0, 1)


def test_float_nifti_equals_sitk_4d_msd(tmp_path):
    """An MSD-style 4-D file: 4 modalities stacked along the 4th NIfTI axis."""
    array = np.stack([ramp_volume(offset=1000.0 * c) for c in range(4)])
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing((0.9, 0.8, 2.5, 1.0))
    image.SetOrigin((-10.0, 20.0, 5.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "msd.nii.gz"))
    ours = assert_same_as_sitk(tmp_path / "msd.nii.gz")
    assert ours.GetSize() == (12, 16, 8, 4)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_nifti_equals_sitk_with_slope_intercept(tmp_path, endian, dtype, version=1):
    affine = [[0.0, 0.0, -2.5, 30.0], [-0.9, 0.0, 0.0, 12.0], [0.0, 0.8, 0.0, -5.0]]
    array = ramp_volume().astype(dtype) * 0.37 - 5
    for compress in (False, True):
        path = tmp_path / f"v{version}{'be' if endian == '>' else 'le'}.nii{'.gz' if compress else ''}"
        write_raw_nifti(path, array, compress, version=version, endian=endian, slope=1.5, inter=-3.25,
                        affine=affine)
        ours = sitk.GetArrayFromImage(assert_same_as_sitk(path))
        np.testing.assert_allclose(ours, array * 1.5 - 3.25, rtol=1e-6)
    unscaled = write_raw_nifti(tmp_path / "unscaled.nii", array, version=version, endian=endian, slope=1.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(assert_same_as_sitk(unscaled)), array)


def test_big_endian_scaled_nifti_with_nan_is_rejected(tmp_path):
    array = ramp_volume()
    array[1, 2, 3] = np.nan
    path = write_raw_nifti(tmp_path / "x.nii.gz", array, True, endian=">", slope=2.0)
    with pytest.raises(CaseError, match="1 NaN/Inf voxels"):
        read_image(path)


def test_nifti2_is_unreadable_as_itk_says(tmp_path):
    """ITK 5.4's NIfTI reader knows NIfTI-1 only; a NIfTI-2 file is reported, not misread."""
    path = write_raw_nifti(tmp_path / "n2.nii.gz", ramp_volume(), True, version=2)
    assert read_float_nifti(path) is None
    with pytest.raises(CaseError, match="unreadable") as err:
        read_image(path)
    assert err.value.path == path


def test_multi_member_gzip_nifti(tmp_path):
    plain = write_volume(tmp_path / "a.nii", ramp_volume())
    data = open(plain, "rb").read()
    with open(tmp_path / "a.nii.gz", "wb") as f:
        f.write(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    assert_same_as_sitk(tmp_path / "a.nii.gz")


@pytest.mark.parametrize("ext", ["nii", "nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32])
def test_integer_nifti_goes_to_sitk_unchanged(tmp_path, ext, dtype):
    array = (ramp_volume() % 200).astype(dtype)
    path = write_volume(tmp_path / f"i.{ext}", array)
    assert read_float_nifti(path) is None
    image = read_image(path)
    assert image.GetPixelID() == sitk.ReadImage(path).GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)


@pytest.mark.parametrize("damage", ["truncated.nii", "truncated.nii.gz", "damaged.nii.gz"])
def test_truncated_or_damaged_float_nifti(tmp_path, damage):
    path = write_volume(tmp_path / f"t_{damage}", ramp_volume((24, 64, 64)))
    data = bytearray(open(path, "rb").read())
    if damage.startswith("truncated"):
        data = data[: len(data) * 2 // 3]
    else:
        data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(CaseError, match="truncated|corrupt") as err:
        read_image(path)
    assert err.value.path == path
    with pytest.raises(CaseError, match="truncated|corrupt"):
        common.read_volume(path)


@pytest.mark.parametrize("direction", [None, "oblique", "sagittal"])
def test_read_volume_of_float_nifti_equals_sitk_route(tmp_path, direction):
    """read_volume skips the image for LPS float NIfTI; the volume is what the image route gives."""
    path = write_volume(tmp_path / "v.nii.gz", ramp_volume().astype(np.float64) * 0.5, spacing=(0.9, 0.8, 2.5))
    if direction:
        image = sitk.ReadImage(path)
        rotation = np.reshape(sitk.VersorTransform((0.2, 0.3, 0.9), 0.1 if direction == "oblique" else 0.0)
                              .GetMatrix(), (3, 3))
        base = np.eye(3) if direction == "oblique" else np.reshape(SAGITTAL_DIRECTION, (3, 3))
        image.SetDirection(np.ravel(rotation @ base))
        sitk.WriteImage(image, path)
    ours = common.read_volume(path)
    theirs = common.volume_from_image(sitk.ReadImage(path), path)
    assert ours.array.dtype == theirs.array.dtype == np.float64
    np.testing.assert_array_equal(ours.array, theirs.array)
    assert ours.spacing == theirs.spacing


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


def test_real_float_nifti_read_as_sitk_reads_it(real_data_dir):
    """The real files are float64 .nii.gz: the own read path gives SimpleITK's image exactly."""
    for patient in ("01", "07"):
        for name in ("Pre_Scan_T1.nii.gz", "Post_Mask.nii.gz"):
            path = os.path.join(real_data_dir, patient, name)
            assert_same_as_sitk(path)
            np.testing.assert_array_equal(common.read_volume(path).array,
                                          sitk.GetArrayFromImage(sitk.ReadImage(path)))
