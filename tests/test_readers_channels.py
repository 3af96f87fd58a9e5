"""2-D readers: named channels of multi-sequence TIFFs, stacked numbered slices, class
folders that match nothing, mask labels out of range, symlinked folders, several pairs modalities,
a dataset's own split folders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import io as skio

from data_prep import readers
from data_prep.readers import ReaderOptions
from data_prep.scan import CaseError

H, W = 12, 20


def save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    skio.imsave(str(path), array, check_contrast=False)
    return str(path)


def three_sequences(seed=0):
    """A TIFF pixel array whose channels differ, as pre-contrast T1, FLAIR and post-contrast T1 do."""
    rng = np.random.default_rng(seed)
    return rng.integers(10, 250, (H, W, 3)).astype(np.uint8)


def load_all(root, **option_values):
    options = ReaderOptions(**option_values)
    cases, problems = readers.discover(str(root), "folders", options)
    return cases, problems, {ref.case_id: readers.load(ref, options) for ref in cases}


def lgg_patient(root, name="TCGA_CS_0001_20000101", n=4, tumor_at=(2,)):
    arrays = []
    for i in range(1, n + 1):
        array = three_sequences(i)
        arrays.append(array)
        save(root / name / f"{name}_{i}.tif", array)
        mask = np.zeros((H, W), np.uint8)
        if i in tumor_at:
            mask[3:7, 4:9] = 255
        save(root / name / f"{name}_{i}_mask.tif", mask)
    return arrays


def test_three_channel_tiff_is_refused_without_channel_names(tmp_path):
    save(tmp_path / "p" / "a.tif", three_sequences())
    save(tmp_path / "p" / "a_mask.tif", np.zeros((H, W), np.uint8))
    options = ReaderOptions()
    cases, _ = readers.discover(str(tmp_path), "folders", options)
    with pytest.raises(CaseError, match="--channel_names") as err:
        readers.load(cases[0], options)
    assert "a.tif" in str(err.value) and "rgb" in str(err.value)


def test_channel_names_pick_and_order_the_sequences(tmp_path):
    array = three_sequences()
    save(tmp_path / "p" / "a.tif", array)
    save(tmp_path / "p" / "a_mask.tif", np.zeros((H, W), np.uint8))
    _, _, scans = load_all(tmp_path, channel_names=("t1", "flair", "t1ce"), modalities=("flair",))
    np.testing.assert_array_equal(scans["p/a"].image[0, ..., 0], array[..., 1])
    _, _, scans = load_all(tmp_path, channel_names=("t1", "flair", "t1ce"), modalities=("t1ce", "t1"))
    np.testing.assert_array_equal(scans["p/a"].image[0], array[..., [2, 0]])


def test_grey_saved_as_rgb_stays_one_channel(tmp_path):
    grey = three_sequences()[..., 0]
    save(tmp_path / "p" / "a.png", np.stack([grey] * 3, axis=-1))
    save(tmp_path / "p" / "a_mask.png", np.zeros((H, W), np.uint8))
    _, _, scans = load_all(tmp_path)
    np.testing.assert_array_equal(scans["p/a"].image[0, ..., 0], grey)


def test_channel_count_must_match_channel_names(tmp_path):
    save(tmp_path / "p" / "a.tif", three_sequences())
    save(tmp_path / "p" / "a_mask.tif", np.zeros((H, W), np.uint8))
    options = ReaderOptions(channel_names=("t1", "flair"), modalities=("flair",))
    cases, _ = readers.discover(str(tmp_path), "folders", options)
    with pytest.raises(CaseError, match="3 channel"):
        readers.load(cases[0], options)


def test_numbered_slices_of_a_folder_stack_into_one_volume_in_numeric_order(tmp_path):
    arrays = lgg_patient(tmp_path, n=11, tumor_at=(10,))
    cases, problems, scans = load_all(tmp_path, channel_names=("t1", "flair", "t1ce"), modalities=("flair",))
    assert problems == [] and [c.case_id for c in cases] == ["TCGA_CS_0001_20000101/TCGA_CS_0001_20000101"]
    scan = scans[cases[0].case_id]
    assert scan.is_3d and scan.image.shape == (11, H, W, 1)
    # numeric, not alphabetical, order: _10 is the tenth slice, not the second
    np.testing.assert_array_equal(scan.image[9, ..., 0], arrays[9][..., 1])
    assert scan.mask[9].sum() == 20 and scan.mask.sum() == 20
    assert cases[0].extra["numbers"] == tuple(range(1, 12))


def test_stack_slices_off_and_auto_with_mixed_names(tmp_path):
    lgg_patient(tmp_path, n=3)
    cases, _, _ = load_all(tmp_path, channel_names=("t1", "flair", "t1ce"), stack_slices="off")
    assert len(cases) == 3
    save(tmp_path / "TCGA_CS_0001_20000101" / "other.tif", three_sequences())
    save(tmp_path / "TCGA_CS_0001_20000101" / "other_mask.tif", np.zeros((H, W), np.uint8))
    assert len(load_all(tmp_path, channel_names=("t1", "flair", "t1ce"))[0]) == 4      # auto: not all numbered
    assert len(load_all(tmp_path, channel_names=("t1", "flair", "t1ce"), stack_slices="on")[0]) == 2


def test_stacked_slices_of_different_shapes_are_refused(tmp_path):
    lgg_patient(tmp_path, n=2)
    save(tmp_path / "TCGA_CS_0001_20000101" / "TCGA_CS_0001_20000101_3.tif", np.zeros((H + 1, W, 3), np.uint8))
    save(tmp_path / "TCGA_CS_0001_20000101" / "TCGA_CS_0001_20000101_3_mask.tif", np.zeros((H + 1, W), np.uint8))
    options = ReaderOptions(channel_names=("t1", "flair", "t1ce"))
    cases, _ = readers.discover(str(tmp_path), "folders", options)
    with pytest.raises(CaseError, match="_3.tif: slice shape"):
        readers.load(cases[0], options)


def test_class_folder_name_matching_no_folder_is_refused(tmp_path):
    save(tmp_path / "yes" / "a.png", three_sequences()[..., 0])
    save(tmp_path / "no" / "b.png", three_sequences()[..., 0])
    with pytest.raises(ValueError, match=r"--class_folders: no folder named No .*folders present: no, yes"):
        readers.discover(str(tmp_path), "folders", ReaderOptions(class_folders=(("yes", 1), ("No", 0))))


@pytest.mark.parametrize("value", [-1, 7])
def test_mask_labels_out_of_range_reject_the_case(tmp_path, value):
    """Negative labels anywhere; labels above 4 in BraTS (here: a pairs mask and a BraTS seg)."""
    image = np.random.default_rng(0).uniform(1, 100, (4, 8, 8)).astype(np.float32)
    labels = np.zeros((4, 8, 8), np.int16)
    labels[1, 2:5, 2:5] = value
    os.makedirs(tmp_path / "01")
    sitk.WriteImage(sitk.GetImageFromArray(image), str(tmp_path / "01" / "x_img.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "01" / "x_seg.nii.gz"))
    case = tmp_path / "brats" / "C1"
    os.makedirs(case)
    sitk.WriteImage(sitk.GetImageFromArray(image), str(case / "C1_t1ce.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(case / "C1_seg.nii.gz"))
    pairs = ReaderOptions(image_glob="01/*_img.nii.gz", mask_replace=("_img", "_seg"))
    brats = ReaderOptions()
    for fmt, root, options in (("pairs", tmp_path, pairs), ("brats", tmp_path / "brats", brats)):
        if fmt == "pairs" and value > 0:
            continue   # generic pairs take any non-negative label as tumor
        cases, _ = readers.discover(str(root), fmt, options)
        with pytest.raises(CaseError, match=f"unexpected mask labels {value}"):
            readers.load(cases[0], options)


def test_negative_labels_in_a_2d_mask_reject_the_case(tmp_path):
    save(tmp_path / "p" / "a.tif", three_sequences()[..., 0])
    mask = np.zeros((H, W), np.int16)
    mask[2, 2] = -3
    save(tmp_path / "p" / "a_mask.tif", mask)
    options = ReaderOptions()
    cases, _ = readers.discover(str(tmp_path), "folders", options)
    with pytest.raises(CaseError, match="a_mask.tif: unexpected mask labels -3"):
        readers.load(cases[0], options)


def test_symlinked_patient_folders_and_files_are_followed_without_looping(tmp_path):
    real = tmp_path / "real"
    lgg_patient(real, n=3)
    data = tmp_path / "data"
    os.makedirs(data)
    os.symlink(real / "TCGA_CS_0001_20000101", data / "TCGA_CS_0001_20000101")
    os.makedirs(data / "P2")
    for name in ("P2_1.tif", "P2_1_mask.tif", "P2_2.tif", "P2_2_mask.tif"):
        os.symlink(real / "TCGA_CS_0001_20000101" / name.replace("P2", "TCGA_CS_0001_20000101"), data / "P2" / name)
    os.symlink(data, data / "P2" / "back_up")   # a loop
    cases, problems = readers.discover(str(data), "folders", ReaderOptions(channel_names=("t1", "flair", "t1ce")))
    assert sorted(c.case_id for c in cases) == ["P2/P2", "TCGA_CS_0001_20000101/TCGA_CS_0001_20000101"]
    assert problems == []


def test_pairs_read_several_modalities_by_replacement(tmp_path):
    rng = np.random.default_rng(1)
    t1ce, flair = (rng.uniform(1, 100, (4, 8, 8)).astype(np.float32) for _ in range(2))
    os.makedirs(tmp_path / "s1")
    for name, array in (("s1_t1ce", t1ce), ("s1_flair", flair), ("s1_seg", np.zeros((4, 8, 8), np.uint8))):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "s1" / f"{name}.nii.gz"))
    options = ReaderOptions(modalities=("flair", "t1ce"), image_glob="*/*.nii.gz", mask_replace=("_flair", "_seg"),
                            modality_replace=(("t1ce", "_flair", "_t1ce"),))
    readers.check_for_format(options, "pairs")
    cases, problems = readers.discover(str(tmp_path), "pairs", options)
    assert [c.case_id for c in cases] == ["s1/s1_flair"] and problems == []
    scan = readers.load(cases[0], options)
    assert scan.image.shape[-1] == 2
    assert np.isclose(np.sort(scan.image[..., 0].ravel()), np.sort(flair.ravel())).all()
    assert np.isclose(np.sort(scan.image[..., 1].ravel()), np.sort(t1ce.ravel())).all()


def test_keep_splits_reads_the_dataset_own_split_folders(tmp_path):
    for top in ("Training", "validation", "Testing"):
        for cls in ("yes", "no"):
            save(tmp_path / top / cls / f"{top}_{cls}.png", three_sequences()[..., 0])
    cases, problems = readers.discover(str(tmp_path), "folders", ReaderOptions(keep_splits=True))
    assert problems == []
    assert {c.case_id: c.extra["split"] for c in cases} == {
        "Training/yes/Training_yes": "train", "Training/no/Training_no": "train",
        "validation/yes/validation_yes": "val", "validation/no/validation_no": "val",
        "Testing/yes/Testing_yes": "test", "Testing/no/Testing_no": "test"}
    assert {c.label for c in cases if "/yes/" in c.case_id} == {1}


def test_float_masks_tolerate_interpolation_noise_but_not_negative_labels(tmp_path):
    image = np.random.default_rng(0).uniform(1, 100, (4, 8, 8)).astype(np.float32)
    os.makedirs(tmp_path / "01")
    sitk.WriteImage(sitk.GetImageFromArray(image), str(tmp_path / "01" / "x_img.nii.gz"))
    options = ReaderOptions(image_glob="01/*_img.nii.gz", mask_replace=("_img", "_seg"))
    labels = np.zeros((4, 8, 8), np.float32)
    labels[1, 2:5, 2:5] = 1.0
    labels[2, 0, 0] = -0.01                        # resampling noise
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "01" / "x_seg.nii.gz"))
    cases, _ = readers.discover(str(tmp_path), "pairs", options)
    assert readers.load(cases[0], options).mask.sum() == 9
    labels[2, 0, 0] = -1.0
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "01" / "x_seg.nii.gz"))
    with pytest.raises(CaseError, match="unexpected mask labels -1"):
        readers.load(cases[0], options)


def grey_head(size=128, seed=0):
    """A grey axial slice: a disc of textured tissue on a black background, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    tissue = 60 + 80 * np.cos(radius / 7) ** 2 + rng.normal(0, 5, (size, size))
    return np.clip(np.where(radius < size * 0.4, tissue, 0), 0, 255).astype(np.uint8)


def save_jpeg(path, rgb, quality=85):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(str(path), "JPEG", quality=quality)
    return str(path)


def test_grey_jpeg_with_chroma_noise_and_a_small_logo_is_one_grey_channel(tmp_path):
    from skimage.transform import resize

    grey = grey_head()
    rng = np.random.default_rng(1)
    # blotchy chroma noise: each channel shifted by up to 4 levels (spread up to 8), as a colour JPEG
    # encoder leaves on a grey scan, and a 12 x 24 red logo in a corner
    shift = resize(rng.uniform(-4, 4, (8, 8, 3)), (128, 128, 3), order=1)
    rgb = np.clip(np.stack([grey] * 3, axis=-1) + shift, 0, 255)
    rgb[4:16, 100:124] = (230, 40, 40)
    path = save_jpeg(tmp_path / "yes" / "Y1.jpg", rgb.astype(np.uint8))
    stored = sitk.GetArrayFromImage(sitk.ReadImage(path))      # decoded as the reader decodes it
    spread = stored.max(-1).astype(int) - stored.min(-1)
    assert np.percentile(spread[grey > 0], 99) >= 5 and spread.max() > 100       # the fixture is noisy and has a logo
    _, _, scans = load_all(tmp_path, class_folders=(("yes", 1),))
    image = scans["yes/Y1"].image[0]
    assert image.shape == (128, 128, 1)
    # the grey level is the per-pixel median of the channels (deaf to one shifted channel)
    np.testing.assert_array_equal(image[..., 0], np.median(stored, axis=-1))
    inside = grey > 0
    assert np.corrcoef(image[..., 0][inside], grey[inside])[0, 1] > 0.95


def test_a_colour_image_is_still_refused(tmp_path):
    grey = grey_head().astype(np.float32)
    # a colour rendering: hue follows intensity over the whole head
    rgb = np.stack([grey, 255 - grey, grey * 0.3], axis=-1) * (grey[..., None] > 0)
    save_jpeg(tmp_path / "yes" / "colour.jpg", rgb.astype(np.uint8), quality=95)
    options = ReaderOptions(class_folders=(("yes", 1),))
    cases, _ = readers.discover(str(tmp_path), "folders", options)
    with pytest.raises(CaseError, match=r"colour.jpg: 3 different channels per pixel \(\d+% of the non-background"):
        readers.load(cases[0], options)
    # and so are three MR sequences that differ on only part of the head
    sequences = np.stack([grey, grey, grey], axis=-1)
    sequences[40:80, 40:80, 1] = np.clip(grey[40:80, 40:80] * 1.5, 0, 255)
    save(tmp_path / "p" / "a.tif", sequences.astype(np.uint8))
    save(tmp_path / "p" / "a_mask.tif", np.zeros((128, 128), np.uint8))
    cases, _ = readers.discover(str(tmp_path / "p"), "folders", options)
    with pytest.raises(CaseError, match="different channels"):
        readers.load(cases[0], options)
