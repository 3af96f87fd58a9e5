"""Layouts people download, and the one refusal each gets when the flags do not fit it: the
message points at the fix (the folders found, where they must sit, the flag to use), and the
command line exits 2 as for any bad flag value, before any image is read."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from absl import flags
from skimage import io as skio

from data_prep import convert_cli
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions, discover
from data_prep.scan import LayoutError

QUIET = dict(log=lambda _: None)


def head_slice(seed, size=24):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 2.5) ** 2)
    return (head * rng.uniform(80, 200, (size, size))).astype(np.uint8)


def write_images(folder, n, seed=0, ext="png"):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        skio.imsave(os.path.join(folder, f"img{i}.{ext}"), head_slice(seed + i), check_contrast=False)


def run_cli(*args) -> int:
    flags.FLAGS.unparse_flags()
    try:
        return convert_cli.main(["convert", *args])
    finally:
        flags.FLAGS.unparse_flags()


# --- messages that point the right way -------------------------------------------------------

def test_class_folders_left_out_are_refused_once_naming_them(tmp_path, capsys):
    for name, seed in (("glioma", 0), ("meningioma", 100), ("pituitary", 200), ("no_tumor", 300)):
        write_images(tmp_path / "in" / name, 3, seed)
    options = ReaderOptions(class_folders=(("glioma", 1), ("no_tumor", 0)))
    with pytest.raises(LayoutError, match=r"meningioma/ \(3 images\), pituitary/ \(3 images\).*"
                                          r"--class_folders=glioma=1,no_tumor=0,meningioma=1,pituitary=1"):
        discover(str(tmp_path / "in"), "folders", options)
    code = run_cli(f"--input={tmp_path / 'in'}", "--format=folders", f"--output_dir={tmp_path / 'out'}",
                   "--class_folders=glioma=1,no_tumor=0")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "meningioma/" in err
    assert not (tmp_path / "out").exists()
    # all four listed: they convert
    cases, problems = discover(str(tmp_path / "in"), "folders", ReaderOptions(
        class_folders=(("glioma", 1), ("meningioma", 1), ("pituitary", 1), ("no_tumor", 0))))
    assert len(cases) == 12 and not problems


def test_a_patient_folder_of_mask_pairs_beside_class_folders_is_not_an_unlisted_class(tmp_path):
    write_images(tmp_path / "in" / "yes", 2)
    write_images(tmp_path / "in" / "no", 2, 50)
    os.makedirs(tmp_path / "in" / "P1")
    skio.imsave(str(tmp_path / "in" / "P1" / "s_1.png"), head_slice(9), check_contrast=False)
    skio.imsave(str(tmp_path / "in" / "P1" / "s_1_mask.png"), (head_slice(9) > 150).astype(np.uint8) * 255,
                check_contrast=False)
    cases, _ = discover(str(tmp_path / "in"), "folders", ReaderOptions())
    assert {c.case_id for c in cases} >= {"P1/s_1", "yes/img0", "no/img1"}


def test_no_class_folder_says_which_folders_exist_and_where_class_folders_must_sit(tmp_path):
    write_images(tmp_path / "in" / "glioma", 2)
    write_images(tmp_path / "in" / "no_tumor", 2, 50)
    with pytest.raises(LayoutError) as err:
        discover(str(tmp_path / "in"), "folders", ReaderOptions())
    message = str(err.value)
    assert "glioma/ (2), no_tumor/ (2)" in message and "directly under --input" in message
    assert "--class_folders=glioma=LABEL,no_tumor=LABEL" in message


def test_class_folders_one_level_too_deep_name_the_input_to_give(tmp_path):
    write_images(tmp_path / "in" / "brain_tumor_dataset" / "yes", 2)
    write_images(tmp_path / "in" / "brain_tumor_dataset" / "no", 2, 50)
    with pytest.raises(LayoutError, match=r"found brain_tumor_dataset/no/, brain_tumor_dataset/yes/ deeper down: "
                                          r"give --input=.*in/brain_tumor_dataset"):
        discover(str(tmp_path / "in"), "folders", ReaderOptions())


def test_brats_format_on_renamed_files_suggests_pairs(tmp_path):
    import SimpleITK as sitk

    os.makedirs(tmp_path / "in" / "sub-01")
    volume = sitk.GetImageFromArray(np.ones((4, 8, 8), np.float32))
    sitk.WriteImage(volume, str(tmp_path / "in" / "sub-01" / "sub-01_T1c.nii.gz"))
    sitk.WriteImage(volume, str(tmp_path / "in" / "sub-01" / "sub-01_label.nii.gz"))
    with pytest.raises(ValueError, match=r"no BraTS cases.*found 2 volume file\(s\) in another naming "
                                         r"\(e.g. sub-01/sub-01_T1c.nii.gz\): read them with --format=pairs"):
        discover(str(tmp_path / "in"), "brats", ReaderOptions())


def test_too_few_scans_at_patient_level_0_do_not_say_lower_it(tmp_path):
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    for i in range(2):
        image = np.zeros((6, 24, 24), np.float32)
        image[:, 4:20, 4:20] = rng.uniform(50, 100, (6, 16, 16))
        mask = np.zeros((6, 24, 24), np.uint8)
        mask[2:4, 8:14, 8:14] = 1
        sitk.WriteImage(sitk.GetImageFromArray(image), str(tmp_path / f"s{i}_img.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(tmp_path / f"s{i}_seg.nii.gz"))
    config = ConvertConfig(input_dir=str(tmp_path), format="pairs", output_dir=str(tmp_path / "out"), workers=1,
                           reader=ReaderOptions(image_glob="*_img.nii.gz", mask_replace=("_img", "_seg"),
                                                patient_level=0),
                           prep=PrepOptions(image_size=24, min_tumor_pixels=1))
    with pytest.raises(ValueError) as err:
        convert(config, **QUIET)
    assert "every scan is already its own patient" in str(err.value) and "lower it" not in str(err.value)


def test_no_images_of_the_format_exit_2_before_any_output(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    code = run_cli(f"--input={tmp_path / 'in'}", "--format=folders", f"--output_dir={tmp_path / 'out'}")
    assert code == 2 and "no images" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --- a dataset's own split: Training/ + Testing/ only ----------------------------------------

def write_training_testing(root, n_train=10, n_test=3):
    for top, n, seed in (("Training", n_train, 0), ("Testing", n_test, 500)):
        write_images(root / top / "yes", n, seed)
        write_images(root / top / "no", n, seed + 100)


def test_keep_splits_with_training_and_testing_draws_validation_from_training_patients(tmp_path):
    write_training_testing(tmp_path / "in")
    lines = []
    config = ConvertConfig(input_dir=str(tmp_path / "in"), format="folders", output_dir=str(tmp_path / "out"),
                           reader=ReaderOptions(keep_splits=True), prep=PrepOptions(image_size=24, min_tumor_pixels=1),
                           workers=1, num_shards=1, val_fraction=0.25)
    manifest = convert(config, log=lines.append)
    cases = manifest["cases"]
    assert all(c.startswith("Testing/") for c in cases["test"]) and len(cases["test"]) == 6
    assert all(c.startswith("Training/") for c in cases["train"] + cases["val"])
    assert len(cases["val"]) == 5 and len(cases["train"]) == 15          # 25% of the 20 training patients
    assert manifest["own_splits"]["val_patients"] == 5
    assert any("no validation folder" in line for line in lines)
    again = convert(dataclasses.replace(config, output_dir=str(tmp_path / "again")), **QUIET)
    assert again["cases"]["val"] == cases["val"]                           # seeded


@pytest.mark.parametrize("layout, message", [
    ("Training", r"has no test/ or Testing/ folder"),
    ("none", r"no top-level split folder.*folders there: no, yes"),
])
def test_keep_splits_layout_is_checked_before_any_image_is_read(tmp_path, monkeypatch, layout, message):
    from data_prep import stage

    if layout == "Training":
        write_images(tmp_path / "in" / "Training" / "yes", 3)
        write_images(tmp_path / "in" / "Training" / "no", 3, 50)
    else:
        write_images(tmp_path / "in" / "yes", 3)
        write_images(tmp_path / "in" / "no", 3, 50)
    monkeypatch.setattr(stage, "load", lambda *a: pytest.fail("an image was read"))
    config = ConvertConfig(input_dir=str(tmp_path / "in"), format="folders", output_dir=str(tmp_path / "out"),
                           reader=ReaderOptions(keep_splits=True), prep=PrepOptions(image_size=24), workers=1)
    with pytest.raises(LayoutError, match=message):
        convert(config, **QUIET)
    assert not (tmp_path / "out").exists()


def test_keep_splits_without_validation_needs_a_val_fraction(tmp_path):
    write_training_testing(tmp_path / "in", n_train=2, n_test=1)
    config = ConvertConfig(input_dir=str(tmp_path / "in"), format="folders", output_dir=str(tmp_path / "out"),
                           reader=ReaderOptions(keep_splits=True), prep=PrepOptions(image_size=24), workers=1,
                           val_fraction=0.0)
    with pytest.raises(LayoutError, match=r"needs --val_fraction > 0"):
        convert(config, **QUIET)


# --- split-named folders where patients are expected -----------------------------------------

def write_split_pairs(root):
    import SimpleITK as sitk

    rng = np.random.default_rng(1)
    for split in ("train", "validation", "test"):
        for p in range(2):
            folder = root / split / f"P{p}"
            os.makedirs(folder)
            image = rng.uniform(50, 100, (4, 8, 8)).astype(np.float32)
            sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / "scan_img.nii.gz"))
            sitk.WriteImage(sitk.GetImageFromArray((image > 90).astype(np.uint8)), str(folder / "scan_seg.nii.gz"))


def test_split_folders_read_as_patients_are_refused_with_both_fixes(tmp_path):
    write_split_pairs(tmp_path / "in")
    options = dict(image_glob="**/scan_img.nii.gz", mask_replace=("_img", "_seg"))
    with pytest.raises(LayoutError) as err:
        discover(str(tmp_path / "in"), "pairs", ReaderOptions(**options))
    message = str(err.value)
    assert "split folders test/ (2 scans), train/ (2 scans), validation/ (2 scans)" in message
    assert "--keep_splits" in message and "--patient_level=2" in message
    # both fixes work
    kept, _ = discover(str(tmp_path / "in"), "pairs", ReaderOptions(**options, keep_splits=True))
    assert {c.patient_id for c in kept} == {f"{s}/P{p}" for s in ("train", "val", "test") for p in range(2)}
    level2, _ = discover(str(tmp_path / "in"), "pairs", ReaderOptions(**options, patient_level=2))
    assert len({c.patient_id for c in level2}) == 6


def test_split_folders_one_level_down_name_the_input_for_keep_splits(tmp_path):
    write_split_pairs(tmp_path / "in" / "site")
    with pytest.raises(LayoutError, match=r"site/train/.*--input=.*in/site --keep_splits.*--patient_level=3"):
        discover(str(tmp_path / "in"), "pairs", ReaderOptions(image_glob="**/scan_img.nii.gz",
                                                               mask_replace=("_img", "_seg"), patient_level=2))


def test_split_folders_inside_or_around_class_folders_are_refused(tmp_path):
    for split in ("train", "test"):
        write_images(tmp_path / "inside" / "yes" / split, 2)
        write_images(tmp_path / "inside" / "no" / split, 2, 50)
        write_images(tmp_path / "around" / split / "yes", 2)
        write_images(tmp_path / "around" / split / "no", 2, 50)
    with pytest.raises(LayoutError, match=r"split folders no/test/ \(2 images\).*yes/train/ \(2 images\).*"
                                          r"--keep_splits"):
        discover(str(tmp_path / "inside"), "folders", ReaderOptions())
    with pytest.raises(LayoutError, match=r"test/, train/ under .* are the dataset's split folders.*--keep_splits"):
        discover(str(tmp_path / "around"), "folders", ReaderOptions())
    cases, _ = discover(str(tmp_path / "around"), "folders", ReaderOptions(keep_splits=True))
    assert len(cases) == 8
