"""Tests of the BraTS reader on every release layout, written here in the real formats: BraTS
2018-2021 NIfTI, BraTS 2023 naming, BraTS 2013/2015 nested MHA, MSD Task01 4-D NIfTI."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk
from test_readers import (SAGITTAL_DIRECTION, SHAPE, blob_labels, ramp_volume, to_sagittal,
                          write_volume)

from data_prep import readers
from data_prep.readers import ReaderOptions
from data_prep.scan import CaseError

# A distinct offset per modality, so the channel order can be read off the values.
OFFSET = {"t1": 1000.0, "t1ce": 2000.0, "t2": 3000.0, "flair": 4000.0}
ALL4 = ("flair", "t1", "t1ce", "t2")
NAME_2023 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
TOKEN_MHA = {"t1": "MR_T1", "t1ce": "MR_T1c", "t2": "MR_T2", "flair": "MR_Flair"}


def write_brats2021_case(root, case, ext="nii.gz", skip=(), seg_labels=(1, 2, 4), shapes=None, **stored):
    folder = os.path.join(root, case)
    for modality in OFFSET:
        if modality not in skip:
            shape = (shapes or {}).get(modality, SHAPE)
            write_volume(os.path.join(folder, f"{case}_{modality}.{ext}"), ramp_volume(shape, OFFSET[modality]),
                         **stored)
    if "seg" not in skip:
        write_volume(os.path.join(folder, f"{case}_seg.{ext}"), blob_labels(labels=seg_labels), **stored)
    return folder


def write_brats2023_case(root, case):
    folder = os.path.join(root, case)
    for modality, name in NAME_2023.items():
        write_volume(os.path.join(folder, f"{case}-{name}.nii.gz"), ramp_volume(offset=OFFSET[modality]))
    write_volume(os.path.join(folder, f"{case}-seg.nii.gz"), blob_labels(labels=(1, 2, 3)))


def write_brats2013_case(root, case, number=54510):
    """`<case>/VSD.Brain.XX.O.MR_T1c.54513/VSD.Brain.XX.O.MR_T1c.54513.mha`, seg `VSD.Brain_3more...OT`."""
    for i, (modality, token) in enumerate(TOKEN_MHA.items()):
        name = f"VSD.Brain.XX.O.{token}.{number + i}"
        write_volume(os.path.join(root, case, name, name + ".mha"), ramp_volume(offset=OFFSET[modality]))
    name = f"VSD.Brain_3more.XX.O.OT.{number + 4}"
    write_volume(os.path.join(root, case, name, name + ".mha"), blob_labels(labels=(1, 2, 3, 4)))


def write_msd_case(task_dir, case, channels=4, label=True):
    """4-D NIfTI: channel c is filled with the offset of MSD_CHANNELS[c] (FLAIR, T1w, T1gd, T2w)."""
    volumes = [sitk.GetImageFromArray(ramp_volume(offset=OFFSET[m])) for m in ALL4[:channels]]
    os.makedirs(os.path.join(task_dir, "imagesTr"), exist_ok=True)
    sitk.WriteImage(sitk.JoinSeries(volumes), os.path.join(task_dir, "imagesTr", f"{case}.nii.gz"))
    if label:
        write_volume(os.path.join(task_dir, "labelsTr", f"{case}.nii.gz"), blob_labels(labels=(1, 2, 3)))


def assert_channels(scan, modalities):
    for c, modality in enumerate(modalities):
        np.testing.assert_array_equal(scan.image[..., c], ramp_volume(offset=OFFSET[modality]))


def discover_and_load(root, **option_values):
    options = ReaderOptions(**option_values)
    cases, problems = readers.discover(str(root), "brats", options)
    return cases, problems, [readers.load(ref, options) for ref in cases]


def test_brats2021_nifti_channels_in_requested_order_and_whole_tumor(tmp_path):
    write_brats2021_case(tmp_path / "HGG", "BraTS20_Training_001")
    write_brats2021_case(tmp_path / "LGG", "BraTS20_Training_002", ext="nii")
    modalities = ("t2", "flair", "t1ce", "t1")
    cases, problems, scans = discover_and_load(tmp_path, modalities=modalities)
    assert problems == [] and [c.case_id for c in cases] == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert [c.patient_id for c in cases] == [c.case_id for c in cases]
    for scan in scans:
        assert scan.image.shape == SHAPE + (4,) and scan.image.dtype == np.float32 and scan.is_3d
        assert_channels(scan, modalities)
        np.testing.assert_array_equal(scan.mask, (blob_labels() > 0).astype(np.uint8))


def test_default_modality_is_t1ce_only(tmp_path):
    write_brats2021_case(tmp_path, "case1")
    _, _, (scan,) = discover_and_load(tmp_path)
    assert scan.image.shape == SHAPE + (1,)
    assert_channels(scan, ("t1ce",))


def test_brats2023_naming_maps_onto_channel_names_and_groups_time_points(tmp_path):
    write_brats2023_case(tmp_path, "BraTS-GLI-00005-000")
    write_brats2023_case(tmp_path, "BraTS-GLI-00005-001")
    write_brats2023_case(tmp_path, "BraTS-GLI-00006-000")
    cases, problems, scans = discover_and_load(tmp_path, modalities=ALL4)
    assert problems == [] and [c.extra["variant"] for c in cases] == ["nifti2023"] * 3
    assert [c.patient_id for c in cases] == ["BraTS-GLI-00005", "BraTS-GLI-00005", "BraTS-GLI-00006"]
    assert_channels(scans[0], ALL4)
    assert scans[0].mask.sum() == (blob_labels(labels=(1, 2, 3)) > 0).sum()


def test_brats2013_nested_mha_layout(tmp_path):
    write_brats2013_case(tmp_path / "HGG", "brats_2013_pat0001_1")
    write_brats2013_case(tmp_path / "HGG", "brats_tcia_pat105_0001")
    write_brats2013_case(tmp_path / "HGG", "brats_tcia_pat105_0002")
    cases, problems, scans = discover_and_load(tmp_path, modalities=("t1ce", "flair"))
    assert problems == [] and [c.case_id for c in cases] == [
        "brats_2013_pat0001_1", "brats_tcia_pat105_0001", "brats_tcia_pat105_0002"]
    assert [c.patient_id for c in cases] == ["brats_2013_pat0001", "brats_tcia_pat105", "brats_tcia_pat105"]
    assert cases[0].paths["seg"].endswith("VSD.Brain_3more.XX.O.OT.54514.mha")
    assert_channels(scans[0], ("t1ce", "flair"))
    np.testing.assert_array_equal(scans[0].mask, (blob_labels(labels=(1, 2, 3, 4)) > 0).astype(np.uint8))


def test_msd_4d_nifti_channel_order_and_skipped_files(tmp_path):
    task = tmp_path / "Task01_BrainTumour"
    write_msd_case(str(task), "BRATS_001")
    write_msd_case(str(task), "BRATS_002")
    (task / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")
    (task / "labelsTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")
    os.makedirs(task / "imagesTs")
    unlabelled = sitk.JoinSeries([sitk.GetImageFromArray(ramp_volume())] * 4)
    sitk.WriteImage(unlabelled, str(task / "imagesTs" / "BRATS_500.nii.gz"))
    modalities = ("t1ce", "flair", "t2")
    cases, problems, scans = discover_and_load(tmp_path, modalities=modalities)
    assert problems == [] and [c.case_id for c in cases] == ["BRATS_001", "BRATS_002"]
    assert scans[0].image.shape == SHAPE + (3,)
    assert_channels(scans[0], modalities)
    assert scans[0].mask.sum() == (blob_labels(labels=(1, 2, 3)) > 0).sum()


def test_sagittal_brats_case_is_reoriented(tmp_path):
    folder = tmp_path / "sag"
    stored = dict(spacing=(1.0, 2.0, 1.5), direction=SAGITTAL_DIRECTION)
    write_volume(folder / "sag_t1ce.nii.gz", to_sagittal(ramp_volume()), **stored)
    write_volume(folder / "sag_seg.nii.gz", to_sagittal(blob_labels()), **stored)
    _, _, (scan,) = discover_and_load(tmp_path)
    np.testing.assert_array_equal(scan.image[..., 0], ramp_volume())
    np.testing.assert_array_equal(scan.mask, (blob_labels() > 0).astype(np.uint8))
    assert scan.spacing == (2.0, 1.0, 1.5)


def test_missing_modality_or_seg_is_reported_at_discovery(tmp_path):
    write_brats2021_case(tmp_path, "ok")
    write_brats2021_case(tmp_path, "no_flair", skip=("flair",))
    write_brats2021_case(tmp_path, "no_seg", skip=("seg",))
    cases, problems = readers.discover(str(tmp_path), "brats", ReaderOptions(modalities=("flair", "t1ce")))
    assert [c.case_id for c in cases] == ["ok"]
    assert [(os.path.basename(path), why.split(" (")[0]) for path, why in problems] == [
        ("no_flair", "missing flair"), ("no_seg", "missing seg")]
    # The missing flair does not matter when only t1ce is asked for.
    cases, _ = readers.discover(str(tmp_path), "brats", ReaderOptions(modalities=("t1ce",)))
    assert [c.case_id for c in cases] == ["no_flair", "ok"]


def test_no_masks_ignores_segmentations(tmp_path):
    write_brats2021_case(tmp_path, "healthy", skip=("seg",))
    write_brats2021_case(tmp_path, "with_seg")
    cases, problems, scans = discover_and_load(tmp_path, no_masks=True)
    assert problems == [] and len(cases) == 2 and all(s.mask is None for s in scans)


def test_duplicate_role_is_reported(tmp_path):
    folder = write_brats2021_case(tmp_path, "dup")
    write_volume(os.path.join(folder, "dup_t1ce.nii"), ramp_volume())
    cases, problems = readers.discover(str(tmp_path), "brats", ReaderOptions())
    assert cases == [] and "more than one file for t1ce" in problems[0][1]


def test_nothing_of_the_format_raises_value_error(tmp_path):
    (tmp_path / "readme.txt").write_text("not brats")
    with pytest.raises(ValueError, match="no BraTS cases"):
        readers.discover(str(tmp_path), "brats", ReaderOptions())


def test_modality_shape_mismatch_names_the_file(tmp_path):
    write_brats2021_case(tmp_path, "odd", shapes={"t2": (8, 16, 10)})
    options = ReaderOptions(modalities=("t1ce", "t2"))
    with pytest.raises(CaseError, match="modality shape") as err:
        readers.load(readers.discover(str(tmp_path), "brats", options)[0][0], options)
    assert err.value.path.endswith("odd_t2.nii.gz")


def test_segmentation_spacing_mismatch_names_the_seg(tmp_path):
    folder = write_brats2021_case(tmp_path, "case")
    write_volume(os.path.join(folder, "case_seg.nii.gz"), blob_labels(), spacing=(1.0, 1.0, 3.0))
    options = ReaderOptions()
    with pytest.raises(CaseError, match="segmentation spacing") as err:
        readers.load(readers.discover(str(tmp_path), "brats", options)[0][0], options)
    assert err.value.path.endswith("case_seg.nii.gz")


def test_corrupt_modality_file(tmp_path):
    folder = write_brats2021_case(tmp_path, "case")
    with open(os.path.join(folder, "case_t1ce.nii.gz"), "wb") as f:
        f.write(b"\x1f\x8b" + b"broken" * 50)
    options = ReaderOptions()
    with pytest.raises(CaseError) as err:
        readers.load(readers.discover(str(tmp_path), "brats", options)[0][0], options)
    assert err.value.path.endswith("case_t1ce.nii.gz")


def test_msd_image_that_is_not_4d_or_lacks_channels(tmp_path):
    write_msd_case(str(tmp_path / "three"), "BRATS_001", channels=3)
    write_volume(str(tmp_path / "flat" / "imagesTr" / "BRATS_002.nii.gz"), ramp_volume())
    write_volume(str(tmp_path / "flat" / "labelsTr" / "BRATS_002.nii.gz"), blob_labels())
    options = ReaderOptions()
    cases, _ = readers.discover(str(tmp_path), "brats", options)
    messages = []
    for ref in cases:
        with pytest.raises(CaseError) as err:
            readers.load(ref, options)
        messages.append(err.value.problem)
    assert "3 channels" in messages[0] and "3-D image" in messages[1]


def test_sagittal_msd_channels_are_reoriented(tmp_path):
    stored = dict(spacing=(1.0, 2.0, 1.5), direction=SAGITTAL_DIRECTION)
    channels = []
    for modality in ALL4:
        channel = sitk.GetImageFromArray(to_sagittal(ramp_volume(offset=OFFSET[modality])))
        channel.SetSpacing(stored["spacing"])
        channel.SetDirection(stored["direction"])
        channels.append(channel)
    task = tmp_path / "Task01_BrainTumour"
    os.makedirs(task / "imagesTr")
    sitk.WriteImage(sitk.JoinSeries(channels), str(task / "imagesTr" / "BRATS_003.nii.gz"))
    write_volume(task / "labelsTr" / "BRATS_003.nii.gz", to_sagittal(blob_labels(labels=(1, 2, 3))), **stored)
    _, _, (scan,) = discover_and_load(tmp_path, modalities=("t2", "t1ce"))
    assert_channels(scan, ("t2", "t1ce"))
    np.testing.assert_array_equal(scan.mask, (blob_labels(labels=(1, 2, 3)) > 0).astype(np.uint8))
    assert scan.spacing == (2.0, 1.0, 1.5)


def test_case_folders_sharing_a_name_get_path_ids(tmp_path):
    write_brats2021_case(tmp_path / "HGG", "case1")
    write_brats2021_case(tmp_path / "LGG", "case1")
    cases, problems = readers.discover(str(tmp_path), "brats", ReaderOptions())
    assert problems == [] and [c.case_id for c in cases] == ["HGG/case1", "LGG/case1"]
    assert len({c.patient_id for c in cases}) == 2
