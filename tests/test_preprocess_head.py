"""Slice selection on heads that are not skull-stripped: a phantom head with
scalp, skull, brain, a neck below and noise-only slices above, in Rician-like background noise."""

import numpy as np

from data_prep import preprocess
from data_prep.scan import CaseRef, Scan

Z, S = 40, 48
NECK, HEAD_CENTER, NOISE_FROM = range(0, 14), 26, 38


def phantom_head(seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:Z, :S, :S].astype(np.float32)
    image = np.abs(rng.normal(0, 8, (Z, S, S)))                 # background noise, never exactly 0
    r = np.sqrt(((zz - HEAD_CENTER) / 12) ** 2 + ((yy - 24) / 20) ** 2 + ((xx - 24) / 17) ** 2)
    neck = (zz < 17) & (((yy - 26) / 9) ** 2 + ((xx - 24) / 8) ** 2 <= 1)
    image[neck] = 280 + rng.normal(0, 10, neck.sum())
    image[(r <= 1.0) & (zz < NOISE_FROM)] = 500                   # scalp
    image[(r <= 0.9) & (zz < NOISE_FROM)] = 40                    # skull: darker than the scalp, not zero
    brain = (r <= 0.8) & (zz < NOISE_FROM)
    image[brain] = 320 + 60 * rng.random(brain.sum())
    mask = np.zeros((Z, S, S), np.uint8)
    tumor = np.sqrt(((zz - 27) / 2.5) ** 2 + ((yy - 20) / 5) ** 2 + ((xx - 28) / 5) ** 2) <= 1
    image[tumor] = 600
    mask[tumor] = 1
    return image[..., None].astype(np.float32), mask


def _scan(image, mask):
    ref = CaseRef(case_id="head", patient_id="p", format="test", paths={"image": "/data/head.nii.gz"})
    return Scan(ref=ref, image=image, mask=mask, is_3d=True)


def test_head_mask_is_the_head_with_skull_and_without_noise():
    image, _ = phantom_head()
    head = preprocess.head_mask(image)
    area = head.reshape(Z, -1).mean(axis=1)
    assert area[NOISE_FROM:].max() < 0.01                          # noise-only slices: no head
    assert head[HEAD_CENTER, 24, 24] and head[HEAD_CENTER, 24, 24 + 16]   # brain centre and the skull ring
    assert not head[HEAD_CENTER, 2, 2]                              # background corner
    # the old "brighter than the darkest voxel" foreground takes the noise for brain
    assert preprocess.foreground(image).reshape(Z, -1).mean(axis=1)[NOISE_FROM:].min() > 0.5


def test_normal_slices_only_inside_the_brain_extent_and_drops_counted_by_reason():
    image, mask = phantom_head()
    slices = preprocess.prepare(_scan(image, mask), preprocess.PrepOptions(image_size=48, min_tumor_pixels=10))
    normal = slices.slice_index[slices.labels == 0]
    tumor = slices.slice_index[slices.labels == 1]
    assert set(tumor) <= {25, 26, 27, 28, 29} and len(tumor) >= 3
    assert normal.size > 5
    assert normal.min() > max(NECK) and normal.max() < NOISE_FROM    # no neck, no noise-only slice
    assert slices.dropped["little_brain"] >= Z - NOISE_FROM
    assert slices.dropped["outside_brain_extent"] >= len(NECK)
    assert sum(slices.dropped.values()) + len(slices.labels) == Z
    # positions and area ratios of the kept slices, used by --match_anatomy
    assert np.all((slices.position >= 0) & (slices.position <= 1)) and np.all(slices.area_ratio >= 0.5)


def test_slice_range_drops_are_counted():
    image, mask = phantom_head()
    slices = preprocess.prepare(_scan(image, mask), preprocess.PrepOptions(image_size=48, slice_range=(20, 30)))
    assert slices.dropped["slice_range"] == Z - 10
    assert slices.slice_index.min() >= 20 and slices.slice_index.max() < 30


def test_reference_area_ignores_a_few_junk_slices():
    area = np.array([0, 10, 40, 50, 52, 51, 50, 49, 40, 10, 100, 98, 0], float)
    assert preprocess.reference_area(area) == 52   # median of 52, 51, 50 and the junk 100, 98
    extent = preprocess.axial_extent(area, 0.5)
    assert np.flatnonzero(extent).tolist() == [2, 3, 4, 5, 6, 7, 8]
