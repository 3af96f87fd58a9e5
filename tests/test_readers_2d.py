"""Tests of the 2-D readers: class folders and name/name_mask pairs in PNG, TIFF and JPEG (8/16-bit,
RGB, messy names), and figshare MATLAB v7.3 `.mat` files written with h5py as MATLAB does."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import tifffile
from skimage import io as skio

from data_prep import readers
from data_prep.readers import ReaderOptions
from data_prep.readers.folders import LUMINANCE_WEIGHTS
from data_prep.scan import CaseError

H, W = 12, 20  # non-square, so a missed transposition shows


def ramp_image(dtype=np.uint8, scale=1) -> np.ndarray:
    return ((np.arange(H * W).reshape(H, W) % 200) * scale + 10).astype(dtype)


def save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    skio.imsave(str(path), array, check_contrast=False)
    return str(path)


def disc_mask(value=255) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (((yy - 6) ** 2 + (xx - 9) ** 2 <= 9) * value).astype(np.uint8)


def load_all(root, **option_values):
    options = ReaderOptions(**option_values)
    cases, problems = readers.discover(str(root), "folders", options)
    return cases, problems, {ref.case_id: readers.load(ref, options) for ref in cases}


# ---------------------------------------------------------------- class folders and pairs

def test_class_folders_read_8_and_16_bit_png_tiff_jpeg_and_messy_names(tmp_path):
    save(tmp_path / "yes" / "Y1 (2).png", ramp_image())
    save(tmp_path / "yes" / "y 16bit.png", ramp_image(np.uint16, 300))
    save(tmp_path / "no" / "No [3] scan.tif", ramp_image(np.uint16, 250))
    save(tmp_path / "no" / "N1.JPG", ramp_image())
    cases, problems, scans = load_all(tmp_path)
    assert problems == []
    assert {c.case_id: (c.label, c.patient_id) for c in cases} == {
        "yes/Y1 (2)": (1, "yes/Y1 (2)"), "yes/y 16bit": (1, "yes/y 16bit"),
        "no/No [3] scan": (0, "no/No [3] scan"), "no/N1": (0, "no/N1")}
    for scan in scans.values():
        assert scan.image.shape == (1, H, W, 1) and scan.image.dtype == np.float32
        assert scan.mask is None and not scan.is_3d
    np.testing.assert_array_equal(scans["yes/Y1 (2)"].image[0, ..., 0], ramp_image())
    np.testing.assert_array_equal(scans["yes/y 16bit"].image[0, ..., 0], ramp_image(np.uint16, 300))
    np.testing.assert_array_equal(scans["no/No [3] scan"].image[0, ..., 0], ramp_image(np.uint16, 250))
    assert scans["yes/y 16bit"].image.max() > 255
    assert np.abs(scans["no/N1"].image[0, ..., 0] - ramp_image()).mean() < 3  # lossy JPEG


def test_same_name_with_two_extensions_stays_two_cases_and_patients(tmp_path):
    save(tmp_path / "yes" / "Y92.jpg", ramp_image())
    save(tmp_path / "yes" / "Y92.png", ramp_image()[::-1].copy())
    save(tmp_path / "yes" / "Y1.png", ramp_image())
    save(tmp_path / "no" / "N1.png", ramp_image())
    cases, _, scans = load_all(tmp_path)
    assert {c.case_id: c.patient_id for c in cases} == {
        "yes/Y92.jpg": "yes/Y92.jpg", "yes/Y92.png": "yes/Y92.png", "yes/Y1": "yes/Y1", "no/N1": "no/N1"}
    np.testing.assert_array_equal(scans["yes/Y92.png"].image[0, ..., 0], ramp_image()[::-1])


def test_pairs_same_name_with_two_extensions_stay_two_cases(tmp_path):
    import SimpleITK as sitk

    os.makedirs(tmp_path / "01")
    for ext in (".nii.gz", ".nrrd"):
        volume = sitk.GetImageFromArray(np.ones((3, 4, 4), np.float32))
        sitk.WriteImage(volume, str(tmp_path / "01" / f"scan{ext}"))
    options = ReaderOptions(image_glob="*/scan.*", no_masks=True, patient_level=0)
    cases, _ = readers.discover(str(tmp_path), "pairs", options)
    assert sorted(c.case_id for c in cases) == ["01/scan.nii.gz", "01/scan.nrrd"]
    assert len({c.patient_id for c in cases}) == 2


def test_rgb_and_rgba_become_one_luminance_channel(tmp_path):
    rgb = np.stack([ramp_image(), ramp_image()[::-1], np.full((H, W), 40, np.uint8)], axis=-1)
    save(tmp_path / "yes" / "rgb.png", rgb)
    save(tmp_path / "yes" / "rgba.png", np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], axis=-1))
    _, _, scans = load_all(tmp_path, channel_names=("rgb",), class_folders=(("yes", 1),))
    expected = rgb.astype(np.float32) @ LUMINANCE_WEIGHTS
    for name in ("yes/rgb", "yes/rgba"):
        assert scans[name].image.shape == (1, H, W, 1)
        np.testing.assert_allclose(scans[name].image[0, ..., 0], expected, rtol=1e-6)


def test_tif_mask_pairs_label_from_mask_and_patient_from_folder(tmp_path):
    patient = tmp_path / "TCGA_CS_4941_19960909"
    save(patient / "TCGA_CS_4941_19960909_1.tif", ramp_image())
    save(patient / "TCGA_CS_4941_19960909_1_mask.tif", np.zeros((H, W), np.uint8))
    save(patient / "TCGA_CS_4941_19960909_2.tif", ramp_image())
    save(patient / "TCGA_CS_4941_19960909_2_mask.tif", disc_mask())
    save(tmp_path / "flat_7.tif", ramp_image())
    save(tmp_path / "flat_7_mask.tif", disc_mask(1))
    cases, problems, scans = load_all(tmp_path, stack_slices="off")
    assert problems == [] and all(c.label is None for c in cases)
    assert [c.patient_id for c in cases] == ["TCGA_CS_4941_19960909"] * 2 + ["flat"]
    normal, tumor, flat = (scans[c.case_id] for c in cases)
    assert normal.ref.label == 0 and normal.mask.sum() == 0
    assert tumor.ref.label == 1 and flat.ref.label == 1
    np.testing.assert_array_equal(tumor.mask[0], (disc_mask() > 0).astype(np.uint8))
    np.testing.assert_array_equal(flat.mask[0], disc_mask(1))


def test_jpeg_mask_ignores_compression_ringing(tmp_path):
    save(tmp_path / "p" / "a.png", ramp_image())
    save(tmp_path / "p" / "a_mask.jpg", disc_mask())
    _, _, scans = load_all(tmp_path)
    assert abs(int(scans["p/a"].mask.sum()) - int((disc_mask() > 0).sum())) <= 2


def test_custom_class_folders_and_mask_suffix(tmp_path):
    save(tmp_path / "glioma" / "g1.png", ramp_image())
    save(tmp_path / "glioma" / "g1-seg.png", disc_mask())
    save(tmp_path / "healthy" / "sub" / "h1.png", ramp_image())
    cases, problems, scans = load_all(tmp_path, class_folders=(("glioma", 1), ("healthy", 0)), mask_suffix="-seg")
    assert problems == []
    assert [(c.case_id, c.label, c.patient_id) for c in cases] == [
        ("glioma/g1", 1, "glioma/g1"), ("healthy/sub/h1", 0, "healthy/sub")]
    assert scans["glioma/g1"].mask.sum() == (disc_mask() > 0).sum()


def test_orphan_masks_and_unpaired_images_are_reported(tmp_path):
    save(tmp_path / "yes" / "ok.png", ramp_image())
    save(tmp_path / "no" / "ok.png", ramp_image())
    save(tmp_path / "p" / "lonely_mask.tif", disc_mask())
    save(tmp_path / "p" / "unpaired.tif", ramp_image())
    cases, problems = readers.discover(str(tmp_path), "folders", ReaderOptions())
    assert [c.case_id for c in cases] == ["no/ok", "yes/ok"]
    assert [(os.path.relpath(p, tmp_path), why.split(" (")[0]) for p, why in problems] == [
        ("p/lonely_mask.tif", "mask without its image"), ("p/unpaired.tif", "not in a class folder")]


def test_nothing_of_the_format_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        readers.discover(str(tmp_path), "folders", ReaderOptions())
    save(tmp_path / "misc" / "a.png", ramp_image())
    with pytest.raises(ValueError, match="none in a class folder"):
        readers.discover(str(tmp_path), "folders", ReaderOptions())


@pytest.mark.parametrize("bad", ["mask_shape", "constant", "corrupt", "multipage", "nan"])
def test_bad_2d_input_names_the_file(tmp_path, bad):
    image_path = tmp_path / "p" / ("a.tif")
    mask_path = tmp_path / "p" / "a_mask.tif"
    save(image_path, ramp_image())
    save(mask_path, disc_mask())
    target = str(mask_path if bad == "mask_shape" else image_path)
    if bad == "mask_shape":
        save(mask_path, np.zeros((H, W - 1), np.uint8))
    elif bad == "constant":
        save(image_path, np.full((H, W), 7, np.uint8))
    elif bad == "corrupt":
        image_path.write_bytes(b"II*\x00" + b"\x00" * 40)
    elif bad == "multipage":
        tifffile.imwrite(image_path, np.stack([ramp_image()] * 5))
    else:
        image = ramp_image(np.float32)
        image[2, 3] = np.nan
        tifffile.imwrite(image_path, image)
    options = ReaderOptions()
    with pytest.raises(CaseError) as err:
        readers.load(readers.discover(str(tmp_path), "folders", options)[0][0], options)
    assert err.value.path == target


# ---------------------------------------------------------------- figshare .mat (v7.3 = HDF5)

def write_figshare_mat(path, image, mask, pid="100360", label=2):
    """What MATLAB's `save -v7.3` writes: a 512-byte header as the HDF5 user block, column-major
    matrices (so h5py sees them transposed), char arrays as uint16 codes in an (n, 1) matrix."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        group = f.create_group("cjdata")
        group["image"] = image.T
        group["tumorMask"] = mask.T
        group["label"] = np.array([[float(label)]])
        group["PID"] = np.array([[ord(c)] for c in pid], np.uint16)
        group["tumorBorder"] = np.array([[1.0, 2.0, 3.0, 4.0]])
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Apr 10 10:00:00 2017 HDF5 schema 1.00 .")
    return str(path)


def test_figshare_mat_transposed_back_with_pid_patients(tmp_path):
    image = ramp_image(np.int16, 7)
    write_figshare_mat(tmp_path / "part1" / "1.mat", image, disc_mask(1), pid="100360", label=1)
    write_figshare_mat(tmp_path / "part1" / "2.mat", image, disc_mask(1), pid="100360", label=3)
    write_figshare_mat(tmp_path / "part2" / "900.mat", image, disc_mask(1), pid="MR040", label=2)
    options = ReaderOptions()
    cases, problems = readers.discover(str(tmp_path), "figshare", options)
    assert problems == []
    assert [(c.case_id, c.patient_id, c.label, c.extra["tumor_type"]) for c in cases] == [
        ("part1/1", "100360", 1, "meningioma"), ("part1/2", "100360", 1, "pituitary"),
        ("part2/900", "MR040", 1, "glioma")]
    scan = readers.load(cases[0], options)
    assert scan.image.shape == (1, H, W, 1) and scan.image.dtype == np.float32 and not scan.is_3d
    np.testing.assert_array_equal(scan.image[0, ..., 0], image)
    np.testing.assert_array_equal(scan.mask[0], disc_mask(1))
    assert scan.mask.dtype == np.uint8


@pytest.mark.parametrize("bad", ["matlab_v5", "no_cjdata", "mask_shape", "nan", "bad_label"])
def test_bad_figshare_files(tmp_path, bad):
    path = tmp_path / "1.mat"
    image = ramp_image(np.float64)
    if bad == "nan":
        image[1, 1] = np.nan
    mask = disc_mask(1)[:, :-1] if bad == "mask_shape" else disc_mask(1)
    write_figshare_mat(path, image, mask, label=9 if bad == "bad_label" else 1)
    if bad == "matlab_v5":
        path.write_bytes(b"MATLAB 5.0 MAT-file, Platform: PCWIN64".ljust(128, b" ") + b"\x00" * 64)
    elif bad == "no_cjdata":
        with h5py.File(path, "w") as f:
            f["other"] = np.zeros(3)
    options = ReaderOptions()
    cases, problems = readers.discover(str(tmp_path), "figshare", options)
    if bad in ("matlab_v5", "no_cjdata", "bad_label"):
        assert cases == [] and problems[0][0] == str(path)
        return
    with pytest.raises(CaseError, match="shape|NaN") as err:
        readers.load(cases[0], options)
    assert err.value.path == str(path)


def test_figshare_without_mat_files_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="no .mat files"):
        readers.discover(str(tmp_path), "figshare", ReaderOptions())
