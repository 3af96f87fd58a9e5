"""DICOM SEG masks: a real DICOM MR series written with pydicom and a SEG referencing it written
with highdicom, both here; the reader places the SEG on the image's grid (data_prep.readers.dicom_seg
through common.read_mask), the converter writes its slices, and a SEG that cannot be placed on
the image is refused naming the file."""

from __future__ import annotations

import os

import highdicom
import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from data_prep import phantom, readers
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions, common, dicom_seg
from data_prep.scan import CaseError
from ssagan_tf.data import pipeline, schema

SHAPE = (16, 32, 32)                 # (Z, Y, X)
SPACING = (3.0, 1.0, 1.0)            # mm, (Z, Y, X)
ORIGIN = (-15.7, -16.2, -21.9)       # mm, LPS: off the integer grid, so nearest neighbour never ties
LESION_VALUE = 5000                  # above every tissue: after normalisation exactly the top of the range


def head(seed: int) -> np.ndarray:
    """A tumor-free phantom head (t1ce contrast) as int16 scanner values."""
    rng = np.random.default_rng(seed)
    return phantom.render(rng, phantom.tissue_map(rng, SHAPE, with_tumor=False), "t1ce").astype(np.int16)


def sphere(center, radius, shape=SHAPE) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return ((zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= radius ** 2).astype(np.uint8)


def write_series(folder, volume, spacing=SPACING, origin=ORIGIN, frame_uid=None, study_uid=None,
                 patient="P1") -> list:
    """One MR Image Storage file per axial slice (identity orientation, slice z at origin + z *
    spacing along +S), named in reverse order so that only the positions give the order. Returns
    the datasets, in slice order."""
    os.makedirs(folder, exist_ok=True)
    frame_uid, study_uid, series_uid = frame_uid or generate_uid(), study_uid or generate_uid(), generate_uid()
    datasets = []
    for z in range(volume.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient, f"Test^{patient}", "", "O"
        ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName, ds.AccessionNumber, ds.StudyID = \
            "20240101", "120000", "", "", "1"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, z + 1
        ds.ImagePositionPatient = [origin[2], origin[1], origin[0] + z * spacing[0]]   # x, y, z
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[2]]                                  # row, column spacing
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(volume[z], np.int16).tobytes()
        ds.save_as(os.path.join(folder, f"im{volume.shape[0] - z:03d}.dcm"), enforce_file_format=True)
        datasets.append(ds)
    return datasets


def write_seg(path, sources, segments, kind="BINARY") -> str:
    """A SEG of `sources` (slice order) with `segments`: a list of (Z, Y, X) arrays, one per
    segment (BINARY: 0/1; FRACTIONAL: fractions in [0, 1]; LABELMAP: 0/1, disjoint)."""
    descriptions = [highdicom.seg.SegmentDescription(
        segment_number=i + 1, segment_label=f"lesion part {i + 1}",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i in range(len(segments))]
    if kind == "FRACTIONAL":
        pixels = np.stack(segments, -1).astype(np.float32)
    elif kind == "LABELMAP":
        pixels = sum((i + 1) * s.astype(np.uint8) for i, s in enumerate(segments)).astype(np.uint8)
    else:
        pixels = np.stack(segments, -1).astype(bool)
    seg = highdicom.seg.Segmentation(
        source_images=sources, pixel_array=pixels,
        segmentation_type=getattr(highdicom.seg.SegmentationTypeValues, kind),
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="tests", manufacturer_model_name="tests",
        software_versions="0", device_serial_number="0",
        **({"max_fractional_value": 100} if kind == "FRACTIONAL" else {}))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    seg.save_as(path)
    return path


def lesion_case(root, name, seed, center, radius=4.5, other_frame=False):
    """`root/name/T1/` (a DICOM series of a head with a bright spherical lesion) and
    `root/name/T1_seg.dcm` (its SEG). With `other_frame`, the SEG is drawn on a copy of the series
    in another frame of reference. Returns the lesion (Z, Y, X) 0/1."""
    lesion = sphere(center, radius)
    volume = head(seed)
    volume[lesion > 0] = LESION_VALUE
    sources = write_series(os.path.join(root, name, "T1"), volume, patient=name)
    if other_frame:
        sources = write_series(f"{root}_elsewhere/{name}", volume, patient=name)
    write_seg(os.path.join(root, name, "T1_seg.dcm"), sources, [lesion])
    return lesion


# ---------------------------------------------------------------- reading

def test_seg_file_tells_a_seg_from_an_image_series_and_a_nifti(tmp_path):
    volume = head(0)
    sources = write_series(str(tmp_path / "T1"), volume)
    seg = write_seg(str(tmp_path / "SEG" / "seg.dcm"), sources, [sphere((8, 16, 16), 3)])
    assert dicom_seg.seg_file(seg) == seg
    assert dicom_seg.seg_file(str(tmp_path / "SEG")) == seg          # a folder holding one SEG
    assert dicom_seg.seg_file(str(tmp_path / "T1")) is None           # an image series
    nifti = tmp_path / "mask.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(SHAPE, np.uint8)), str(nifti))
    assert dicom_seg.seg_file(str(nifti)) is None
    # A SEG among image files: which is the mask is not guessed.
    write_seg(str(tmp_path / "T1" / "seg.dcm"), sources, [sphere((8, 16, 16), 3)])
    with pytest.raises(CaseError, match="1 DICOM SEG file.* and 16 other DICOM file"):
        dicom_seg.seg_file(str(tmp_path / "T1"))


@pytest.mark.parametrize("kind", ["BINARY", "FRACTIONAL", "LABELMAP"])
def test_segments_combine_into_the_whole_tumor_on_the_series_grid(tmp_path, kind):
    """Two segments (core and a shell around it) are one tumor; a fractional voxel counts from
    one half up. The SEG leaves out its empty frames, so only its placement in space puts the
    lesion at the right slices."""
    sources = write_series(str(tmp_path / "T1"), head(1))
    core, whole = sphere((6, 12, 20), 2.5), sphere((6, 12, 20), 4.5)
    shell = whole - core
    if kind == "FRACTIONAL":
        faint = sphere((11, 20, 10), 2.0)                  # fraction 0.4: below one half, not tumor
        segments = [core * 1.0, shell * 0.6 + faint * 0.4]
    else:
        segments = [core, shell]
    path = write_seg(str(tmp_path / "SEG" / "seg.dcm"), sources, segments, kind)
    image = common.read_volume(str(tmp_path / "T1"))
    labels = common.read_mask(str(tmp_path / "SEG"), image)
    assert labels.array.shape == SHAPE and labels.path == path
    np.testing.assert_array_equal(labels.array, whole)
    np.testing.assert_array_equal(common.whole_tumor(labels), whole)


def test_seg_drawn_on_another_series_is_resampled_by_nearest_neighbour(tmp_path):
    """A SEG drawn on a coarser series of the same frame of reference (another slab, pixel size
    and slice spacing) lands on the image's voxels by nearest neighbour in patient space,
    computed here independently of SimpleITK."""
    frame, study = generate_uid(), generate_uid()
    write_series(str(tmp_path / "T1"), head(2), frame_uid=frame, study_uid=study)
    coarse_shape, coarse_spacing, coarse_origin = (12, 20, 18), (4.1, 1.7, 1.9), (-20.3, -17.05, -23.35)
    coarse_lesion = sphere((6, 9, 8), 3.2, coarse_shape)
    sources = write_series(str(tmp_path / "FLAIR"), head(3)[:12, :20, :18], coarse_spacing, coarse_origin,
                           frame_uid=frame, study_uid=study)
    write_seg(str(tmp_path / "seg.dcm"), sources, [coarse_lesion])
    image = common.read_volume(str(tmp_path / "T1"))
    placed = common.read_mask(str(tmp_path / "seg.dcm"), image).array
    zz, yy, xx = np.indices(SHAPE)
    expected = np.zeros(SHAPE, np.uint8)
    index = [np.rint((np.array(ORIGIN)[a] + (zz, yy, xx)[a] * SPACING[a] - coarse_origin[a]) / coarse_spacing[a])
             .astype(int) for a in range(3)]
    inside = np.all([(i >= 0) & (i < n) for i, n in zip(index, coarse_shape)], axis=0)
    expected[inside] = coarse_lesion[index[0][inside], index[1][inside], index[2][inside]]
    assert expected.sum() > 100
    np.testing.assert_array_equal(placed, expected)


def test_seg_in_another_frame_of_reference_is_refused_naming_the_file(tmp_path):
    lesion_case(str(tmp_path), "P1", seed=4, center=(8, 16, 16), other_frame=True)
    image = common.read_volume(str(tmp_path / "P1" / "T1"))
    with pytest.raises(CaseError) as caught:
        common.read_mask(str(tmp_path / "P1" / "T1_seg.dcm"), image)
    assert caught.value.path == str(tmp_path / "P1" / "T1_seg.dcm")
    message = str(caught.value)
    assert "frame of reference" in message and str(tmp_path / "P1" / "T1") in message
    assert "export the segmentation as a label map on this image's grid" in message


def test_seg_outside_the_image_is_refused(tmp_path):
    """Same frame of reference, but drawn 400 mm away (no overlap), or reaching past the image's
    edge: refused, never a mask cut at the border or an empty one."""
    frame, study = generate_uid(), generate_uid()
    write_series(str(tmp_path / "T1"), head(5), frame_uid=frame, study_uid=study)
    image = common.read_volume(str(tmp_path / "T1"))
    far = write_series(str(tmp_path / "far"), head(5), origin=(ORIGIN[0] + 400, ORIGIN[1], ORIGIN[2]),
                       frame_uid=frame, study_uid=study)
    write_seg(str(tmp_path / "far.dcm"), far, [sphere((8, 16, 16), 3)])
    with pytest.raises(CaseError, match="outside the image .*no overlap"):
        common.read_mask(str(tmp_path / "far.dcm"), image)
    shifted = write_series(str(tmp_path / "shifted"), head(5), origin=(ORIGIN[0], ORIGIN[1], ORIGIN[2] + 20),
                           frame_uid=frame, study_uid=study)
    write_seg(str(tmp_path / "edge.dcm"), shifted, [sphere((8, 16, 16), 5)])
    with pytest.raises(CaseError, match=r"\d+ of the \d+ segmented voxels .* outside the image"):
        common.read_mask(str(tmp_path / "edge.dcm"), image)


# ---------------------------------------------------------------- converting

def test_pairs_conversion_writes_the_seg_lesion_and_refuses_the_misplaced_seg(tmp_path):
    """Four patients with a SEG each convert; the written masks are the drawn lesions slice for
    slice, on the lesion's bright pixels in the written images. A fifth patient's SEG in another
    frame of reference is one rejected case, naming its file, with nothing of it written."""
    data = tmp_path / "data"
    lesions = {name: lesion_case(str(data), name, seed=10 + i, center=(7 + i, 13 + i, 18 - i))
               for i, name in enumerate(("P1", "P2", "P3", "P4"))}
    lesion_case(str(data), "P5", seed=20, center=(8, 16, 16), other_frame=True)
    config = ConvertConfig(input_dir=str(data), format="pairs", output_dir=str(tmp_path / "out"),
                           reader=ReaderOptions(image_glob="*/T1", mask_replace=("T1", "T1_seg.dcm")),
                           prep=PrepOptions(image_size=32, min_tumor_pixels=10, field_of_view="pad"),
                           train_fraction=0.5, val_fraction=0.25, workers=1, num_shards=1, match_anatomy=False)
    manifest = convert(config, log=lambda _: None)
    [rejected] = manifest["rejected"]
    assert rejected["case"] == "P5/T1" and str(data / "P5" / "T1_seg.dcm") in rejected["problem"]
    assert "frame of reference" in rejected["problem"]
    written = {"P1/T1": 0, "P2/T1": 0, "P3/T1": 0, "P4/T1": 0}
    for split in schema.SPLITS:
        arrays = pipeline.load_split_arrays(schema.open(str(tmp_path / "out")), split)
        for k, case in enumerate(arrays["case_id"].astype(str)):
            assert case != "P5/T1"
            lesion = lesions[case.split("/")[0]][arrays["slice_index"][k]]
            mask = arrays["mask"][k, ..., 0]
            np.testing.assert_array_equal(mask, lesion)
            assert arrays["label"][k] == int(lesion.sum() >= 10)
            # Alignment: the lesion's bright voxels are the top of the normalised range, exactly under the mask.
            np.testing.assert_array_equal(arrays["image"][k, ..., 0] > 0.999, lesion > 0)
            written[case] += int(arrays["label"][k])
    for case, n in written.items():
        lesion = lesions[case.split("/")[0]]
        assert n == int((lesion.reshape(SHAPE[0], -1).sum(1) >= 10).sum()) > 0, case
    assert "T1_seg.dcm" in open(tmp_path / "out" / "conversion_report.md", encoding="utf-8").read()


def test_readers_load_of_a_pairs_case_with_a_seg_folder(tmp_path):
    """Through the reader API: the mask path is a folder holding the SEG."""
    lesion = lesion_case(str(tmp_path), "P1", seed=30, center=(7, 15, 17))
    os.makedirs(tmp_path / "P1" / "SEG")
    os.replace(tmp_path / "P1" / "T1_seg.dcm", tmp_path / "P1" / "SEG" / "export.dcm")
    options = ReaderOptions(image_glob="*/T1", mask_replace=("T1", "SEG"))
    [ref], problems = readers.discover(str(tmp_path), "pairs", options)
    assert problems == []
    scan = readers.load(ref, options)
    assert scan.image.shape == SHAPE + (1,)
    np.testing.assert_array_equal(scan.mask, lesion)


def test_seg_on_a_nifti_of_the_series_is_placed_by_its_coordinates(tmp_path):
    """A NIfTI image carries no frame of reference: the SEG is placed by its coordinates alone
    (here the NIfTI is the series itself, so the lesion lands where it was drawn)."""
    lesion = lesion_case(str(tmp_path), "P1", seed=6, center=(8, 14, 19))
    sitk.WriteImage(sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "P1" / "T1"))),
                    str(tmp_path / "T1.nii.gz"))
    image = common.read_volume(str(tmp_path / "T1.nii.gz"))
    assert dicom_seg.frame_of_reference(str(tmp_path / "T1.nii.gz")) is None
    np.testing.assert_array_equal(common.read_mask(str(tmp_path / "P1" / "T1_seg.dcm"), image).array, lesion)


def test_a_seg_with_nothing_segmented_is_a_tumor_free_mask(tmp_path):
    sources = write_series(str(tmp_path / "T1"), head(7))
    write_seg(str(tmp_path / "seg.dcm"), sources, [np.zeros(SHAPE, np.uint8)])
    image = common.read_volume(str(tmp_path / "T1"))
    placed = common.read_mask(str(tmp_path / "seg.dcm"), image)
    assert placed.array.shape == SHAPE and not placed.array.any()
