import os

import numpy as np
import SimpleITK as sitk

from data_prep import phantom


def _read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def test_cohort_is_brats_layout_deterministic_and_has_lesions(tmp_path):
    folders = phantom.write_cohort(str(tmp_path / "a"), cases=5, size=32, slices=16, seed=7)
    again = phantom.write_cohort(str(tmp_path / "b"), cases=5, size=32, slices=16, seed=7)
    names = sorted(os.listdir(folders[0]))
    assert names == [f"Phantom_000_{m}.nii.gz" for m in ("flair", "seg", "t1", "t1ce", "t2")]
    for a, b in zip(folders, again):
        np.testing.assert_array_equal(_read(os.path.join(a, os.path.basename(a) + "_t1ce.nii.gz")),
                                      _read(os.path.join(b, os.path.basename(b) + "_t1ce.nii.gz")))
    segs = [_read(os.path.join(f, os.path.basename(f) + "_seg.nii.gz")) for f in folders]
    assert segs[0].shape == (16, 32, 32)
    assert set(np.unique(segs[0])) == {0, 1, 2, 4}  # BraTS labels
    assert not segs[4].any()  # every fifth case is tumor-free
    image = _read(os.path.join(folders[0], "Phantom_000_t1ce.nii.gz"))
    assert image[segs[0] == 0].min() == 0.0  # skull-stripped background
    # the enhancing rim is visibly brighter than the surrounding brain on T1c
    brain = (image > 0) & (segs[0] == 0)
    assert image[segs[0] == 4].mean() > 1.5 * image[brain].mean()


def test_bad_sizes_are_rejected(tmp_path):
    import pytest
    with pytest.raises(ValueError, match="size >= 16"):
        phantom.write_cohort(str(tmp_path), cases=1, size=8)


def test_healthy_and_tumor_heads_normalise_alike_away_from_the_lesion():
    """The converter clips each volume at its head's 0.5th-99.5th percentiles: a tumor-free head
    must not come out brighter (or darker) than a tumor-bearing one where both are healthy."""
    from scipy import ndimage

    from ssagan_tf.data import preprocess

    means = {}
    for index in range(10):
        rng = np.random.default_rng([0, index])
        tissues = phantom.tissue_map(rng, (24, 48, 48), with_tumor=index % 5 != 4)
        lesion = ndimage.binary_dilation(phantom.segmentation(tissues) > 0, iterations=3)
        for modality in phantom.MODALITIES:
            volume = phantom.render(rng, tissues, modality)[..., None]
            head = preprocess.head_mask(volume)
            normalised, _ = preprocess.normalise_volume(volume, head)
            means.setdefault((modality, index % 5 != 4), []).append(normalised[..., 0][head & ~lesion].mean())
    for modality in phantom.MODALITIES:
        healthy, tumor = np.mean(means[(modality, False)]), np.mean(means[(modality, True)])
        assert abs(healthy - tumor) < 0.1, (modality, healthy, tumor)
