import numpy as np
import pytest

from data_prep import preprocess
from data_prep.scan import CaseError, CaseRef, Scan


def _scan(image, mask=None, label=None, is_3d=True):
    ref = CaseRef(case_id="c", patient_id="p", format="test", paths={"image": "/data/c.nii.gz"}, label=label)
    return Scan(ref=ref, image=image, mask=mask, is_3d=is_3d)


def _volume(z=10, size=16, value=100.0):
    image = np.zeros((z, size, size, 1), np.float32)
    image[:, 2:14, 2:14] = value + np.arange(12, dtype=np.float32)[None, :, None, None]
    return image


def test_normalisation_maps_percentiles_to_minus_one_and_one():
    image = np.arange(1, 101, dtype=np.float32).reshape(1, 10, 10, 1)
    brain = np.ones((1, 10, 10), bool)
    scaled, bounds = preprocess.normalise_volume(image, brain, (0.0, 100.0))
    assert bounds == [(1.0, 100.0)]
    assert scaled.min() == -1.0 and scaled.max() == 1.0
    np.testing.assert_allclose(scaled.ravel(), (np.arange(1, 101) - 1) / 99 * 2 - 1, atol=1e-6)


def test_normalisation_clips_outliers_and_ignores_background():
    image = np.zeros((1, 20, 20, 1), np.float32)      # rows 0-9: background (0)
    image[0, 10:] = np.linspace(10.0, 20.0, 200).reshape(10, 20, 1)
    image[0, 19, 19] = 1e6  # a hot voxel
    scaled, (bounds,) = preprocess.normalise_volume(image, preprocess.foreground(image), (1.0, 99.0))
    assert 10.0 < bounds[0] < 10.2 and 19.8 < bounds[1] < 20.0  # brain only; the outlier did not set the scale
    assert np.all(scaled[0, :10] == -1.0)
    assert scaled[0, 19, 19, 0] == 1.0 and scaled[0, 19, 18, 0] == 1.0


def test_fit_pads_when_smaller_and_resizes_when_larger():
    images = np.ones((2, 12, 8, 1), np.float32)
    masks = np.ones((2, 12, 8), np.uint8)
    out, out_masks = preprocess.fit_to_size(images, masks, 12)
    assert out.shape == (2, 12, 12, 1)
    assert np.all(out[:, :, :2] == -1.0) and np.all(out[:, :, 2:10] == 1.0)
    assert out_masks.sum() == 2 * 12 * 8
    out, out_masks = preprocess.fit_to_size(images, masks, 16)  # smaller: padded, not enlarged
    assert out.shape == (2, 16, 16, 1) and out_masks.sum() == 2 * 12 * 8
    out, out_masks = preprocess.fit_to_size(images, masks, 6)
    assert out.shape == (2, 6, 6, 1) and set(np.unique(out_masks)) <= {0, 1}
    assert out.min() >= -1.0 and out.max() <= 1.0
    # slice by slice: no mixing across slices, and the mask covers the middle 4 of 6 columns
    images[1] = -1.0
    out, out_masks = preprocess.fit_to_size(images, masks, 6)
    assert np.all(out[1] == -1.0) and out[0].max() == 1.0
    assert out_masks[0, 3].tolist() == [0, 1, 1, 1, 1, 0]


def test_tumor_normal_and_ambiguous_slices():
    image = _volume()
    mask = np.zeros((10, 16, 16), np.uint8)
    mask[4, 4:10, 4:10] = 1   # 36 pixels: tumor
    mask[6, 4:6, 4:6] = 1     # 4 pixels: ambiguous, dropped
    # pad keeps the pixel grid, so the tumor's 36 pixels stay 36 (fit enlarges the 12-pixel head)
    options = preprocess.PrepOptions(image_size=16, min_tumor_pixels=20, field_of_view="pad")
    slices = preprocess.prepare(_scan(image, mask), options)
    assert list(slices.slice_index[slices.labels == 1]) == [4]
    assert 6 not in slices.slice_index
    assert slices.n_normal == 8
    assert slices.images.shape == (9, 16, 16, 1) and slices.masks[slices.labels == 1].sum() == 36


def test_normal_margin_keeps_normal_slices_away_from_tumor():
    mask = np.zeros((10, 16, 16), np.uint8)
    mask[4, 4:10, 4:10] = 1
    slices = preprocess.prepare(_scan(_volume(), mask), preprocess.PrepOptions(image_size=16, normal_margin=2))
    normal = set(slices.slice_index[slices.labels == 0].tolist())
    assert normal == {0, 1, 7, 8, 9}


def test_near_empty_slices_are_dropped_in_volumes_only():
    image = _volume()
    image[0] = 0.0  # no brain
    image[1, :, :] = 0.0
    image[1, 8, 8] = 50.0  # a single voxel of brain
    mask = np.zeros((10, 16, 16), np.uint8)
    slices = preprocess.prepare(_scan(image, mask), preprocess.PrepOptions(image_size=16))
    assert 0 not in slices.slice_index and 1 not in slices.slice_index


def test_slice_range_limits_the_axial_slices():
    mask = np.zeros((10, 16, 16), np.uint8)
    slices = preprocess.prepare(_scan(_volume(), mask), preprocess.PrepOptions(image_size=16, slice_range=(2, 5)))
    assert list(slices.slice_index) == [2, 3, 4]


def test_unmasked_scan_needs_a_label_or_assume_normal():
    with pytest.raises(CaseError, match="/data/c.nii.gz: no tumor mask"):
        preprocess.prepare(_scan(_volume()), preprocess.PrepOptions(image_size=16))
    slices = preprocess.prepare(_scan(_volume()), preprocess.PrepOptions(image_size=16, assume_normal=True))
    assert slices.n_normal == 10 and not slices.has_mask
    slice2d = preprocess.prepare(_scan(_volume(z=1), label=1, is_3d=False), preprocess.PrepOptions(image_size=16))
    assert slice2d.n_tumor == 1 and not slice2d.has_mask
