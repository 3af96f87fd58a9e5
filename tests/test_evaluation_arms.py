"""ssagan_tf/evaluation/arms.py and controls.py: the arms' training sets and the control augmenters (the
ratio arithmetic and the seeded selection are tested in test_synthetic.py; classic augmentation and
mixing in test_judge_datasets.py)."""

import numpy as np
import pytest

from ssagan_tf.evaluation import arms
from ssagan_tf.exported import Translation


def _translation(count, value, size=8):
    images = np.full((count, size, size, 1), value, np.float32)
    images[:, 0, 0, 0] = np.arange(count)   # tag each slice with its source index
    return Translation(source=images, image=images, attention=np.ones_like(images))


def test_synthetic_slices_count_and_label_per_class():
    labels = np.array([0] * 6 + [1] * 4)
    to_tumor, to_normal = _translation(6, 0.9), _translation(4, -0.5)   # from 6 normal, 4 tumor
    images, fake_labels, selected = arms.synthetic_slices(to_tumor, to_normal, labels, ratio=2.0, seed=1)
    assert (fake_labels == 1).sum() == 8 and (fake_labels == 0).sum() == 12
    assert np.all(images[fake_labels == 1, 1, 1, 0] == np.float32(0.9))   # synthetic tumors come from normal
    np.testing.assert_array_equal(images[fake_labels == 1, 0, 0, 0], selected["tumor"])
    again = arms.synthetic_slices(to_tumor, to_normal, labels, ratio=2.0, seed=1)
    assert np.array_equal(again[0], images)


def test_one_class_of_synthetic_slices_by_value():
    """--tumors_only / --normals_only: the kept class gets ratio x its real count, the other none."""
    labels = np.array([0] * 6 + [1] * 4)
    to_tumor, to_normal = _translation(6, 0.9), _translation(4, -0.5)
    tumors = arms.keep_classes((to_tumor, to_normal), ("tumor",))
    assert tumors[0] is to_tumor and tumors[1] is None
    images, fake_labels, selected = arms.synthetic_slices(*tumors, labels, ratio=1.0, seed=1)
    assert fake_labels.tolist() == [1] * 4 and len(selected["normal"]) == 0
    assert np.all(images[:, 1, 1, 0] == np.float32(0.9))
    normals = arms.keep_classes((to_tumor, to_normal), ("normal",))
    images, fake_labels, selected = arms.synthetic_slices(*normals, labels, ratio=1.0, seed=1)
    assert fake_labels.tolist() == [0] * 6 and len(selected["tumor"]) == 0
    assert np.all(images[:, 1, 1, 0] == np.float32(-0.5))      # synthetic normals come from tumors
    # The same seed draws the same normals as with both classes kept.
    both = arms.synthetic_slices(to_tumor, to_normal, labels, ratio=1.0, seed=1)
    np.testing.assert_array_equal(both[2]["normal"], selected["normal"])
    with pytest.raises(ValueError, match="no synthetic normal"):
        arms.keep_classes((to_tumor, None), ("normal",))           # copy-paste has no tumor->normal
    with pytest.raises(ValueError, match="choose from"):
        arms.keep_classes((to_tumor, to_normal), ("lesion",))
    with pytest.raises(ValueError, match="neither class"):
        arms.synthetic_slices(None, None, labels, ratio=1.0, seed=1)


def test_training_set_per_arm():
    train = {"image": np.zeros((10, 8, 8, 1), np.float32), "label": np.array([0] * 6 + [1] * 4)}
    for arm in ("none", "classic"):
        images, labels, selected = arms.training_set(train, arm)
        assert len(images) == 10 and selected is None
    synthetic = (_translation(6, 0.9), _translation(4, -0.5))
    images, labels, selected = arms.training_set(train, "synthetic", synthetic, ratio=0.5, seed=0)
    assert len(images) == 10 + 2 + 3 and labels.sum() == 4 + 2
    with pytest.raises(ValueError, match="needs synthetic"):
        arms.training_set(train, "synthetic+classic")


def _head_slice(size=48, value=0.0, seed=0):
    """A slice with a disc-shaped head of textured tissue on the -1 background."""
    yy, xx = np.mgrid[:size, :size]
    head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    image = np.full((size, size, 1), -1.0, np.float32)
    image[head, 0] = value + np.random.default_rng(seed).normal(0, 0.05, head.sum())
    return image, head


def _donor_train(size=48):
    image, _ = _head_slice(size, value=-0.2, seed=1)
    mask = np.zeros((size, size, 1), np.float32)
    mask[20:27, 18:26] = 1.0
    image[mask[..., 0] > 0] = 0.6                       # a bright lesion on darker tissue
    normal, _ = _head_slice(size, seed=2)
    return {"image": np.stack([normal, image]), "mask": np.stack([np.zeros_like(mask), mask]),
            "has_mask": np.array([0.0, 1.0]), "label": np.array([0, 1])}


def test_copy_paste_writes_the_lesion_where_its_mask_says_inside_the_brain():
    from ssagan_tf.evaluation.controls import ControlAugmenter, _match_intensity, brain_mask

    train = _donor_train()
    normal = np.stack([_head_slice(seed=s)[0] for s in (3, 4, 5)])
    out = ControlAugmenter("copy_paste", train, seed=0).translate("normal_to_tumor", normal)
    for source, pasted, mask in zip(normal, out.image, out.attention[..., 0] > 0):
        assert 0.8 ** 2 * 56 * 0.7 <= mask.sum() <= 1.2 ** 2 * 56 * 1.3           # the 7x8 lesion, scaled
        np.testing.assert_array_equal(pasted[~mask], source[~mask])              # outside: unchanged
        assert np.all(brain_mask(source)[mask])                                  # inside the brain
        # Inside: the lesion's constant 0.6, mapped from the donor's tissue statistics to this slice's.
        donor = train["image"][1]
        donor_tissue = brain_mask(donor) & (train["mask"][1, ..., 0] == 0)
        expected = _match_intensity(np.full((1, 1, 1), 0.6, np.float32), donor, donor_tissue,
                                    source, brain_mask(source) & ~mask)[0, 0, 0]
        np.testing.assert_allclose(pasted[mask, 0], expected, atol=1e-5)
        assert expected > source[brain_mask(source), 0].mean() + 0.5             # still brighter than tissue
    again = ControlAugmenter("copy_paste", train, seed=0).translate("normal_to_tumor", normal)
    np.testing.assert_array_equal(again.image, out.image)                        # seeded


def test_intensity_matching_moves_the_lesion_by_the_difference_of_tissue_medians():
    from ssagan_tf.evaluation.controls import _match_intensity

    lesion = np.array([[[0.5, 0.1]], [[0.9, -0.3]]], np.float32)                # 2 x 1 pixels, 2 channels
    donor = np.stack([np.full((4, 4), -0.2), np.full((4, 4), -0.5)], axis=-1).astype(np.float32)
    donor[0, 0] = [0.9, 0.9]                                                    # an outlier: the median ignores it
    target = np.stack([np.full((4, 4), 0.3), np.full((4, 4), -0.6)], axis=-1).astype(np.float32)
    tissue = np.ones((4, 4), bool)
    out = _match_intensity(lesion, donor, tissue, target, tissue)
    np.testing.assert_allclose(out[..., 0], np.clip(lesion[..., 0] + 0.5, -1, 1), atol=1e-6)   # 0.9 + 0.5 clipped
    np.testing.assert_allclose(out[..., 1], lesion[..., 1] - 0.1, atol=1e-6)
    # No tissue in the donor: its whole slice's median stands in.
    np.testing.assert_allclose(_match_intensity(lesion, donor, np.zeros((4, 4), bool), target, tissue)[..., 1],
                               lesion[..., 1] - 0.1, atol=1e-6)


def test_identity_control_returns_its_inputs_with_a_pseudo_mask_in_the_brain():
    from ssagan_tf.evaluation.controls import ControlAugmenter, brain_mask

    train = _donor_train()
    normal = np.stack([_head_slice(seed=s)[0] for s in (3, 4)])
    identity = ControlAugmenter("identity", train)
    out = identity.translate("normal_to_tumor", normal)
    np.testing.assert_array_equal(out.image, normal)
    for source, mask in zip(normal, out.attention[..., 0] > 0):
        assert mask.sum() > 20 and np.all(brain_mask(source)[mask])
    back = identity.translate("tumor_to_normal", train["image"][1:])
    np.testing.assert_array_equal(back.image, train["image"][1:])
    assert identity.directions == ("normal_to_tumor", "tumor_to_normal")
    with pytest.raises(ValueError, match="needs training tumor slices with a mask"):
        ControlAugmenter("copy_paste", {k: v[:1] for k, v in train.items()})


def test_copy_paste_adds_tumor_slices_only():
    labels = np.array([0] * 6 + [1] * 4)
    images, fake_labels, selected = arms.synthetic_slices(_translation(6, 0.9), None, labels, ratio=1.0, seed=0)
    assert fake_labels.tolist() == [1] * 4 and len(selected["normal"]) == 0


def test_copy_paste_stays_finite_on_slices_without_background():
    """Slices of noise with no background (and a donor whose bright lesion towers over its flat
    histogram): the brain falls back to the head or the slice, and every pasted value is finite."""
    from ssagan_tf.evaluation.controls import ControlAugmenter, brain_masks

    rng = np.random.default_rng(0)
    normal = rng.uniform(-1, -0.2, (3, 32, 32, 1)).astype(np.float32)
    donor = rng.uniform(-1, -0.2, (32, 32, 1)).astype(np.float32)
    mask = np.zeros((32, 32, 1), np.float32)
    mask[12:18, 12:18] = 1.0
    donor[mask[..., 0] > 0] = 0.9
    train = {"image": np.stack([normal[0], donor]), "mask": np.stack([np.zeros_like(mask), mask]),
             "has_mask": np.array([0.0, 1.0]), "label": np.array([0, 1])}
    assert brain_masks(np.full((1, 32, 32, 1), -1.0, np.float32)).all()        # nothing found: the slice
    out = ControlAugmenter("copy_paste", train, seed=0).translate("normal_to_tumor", normal)
    assert np.isfinite(out.image).all() and (out.attention.sum(axis=(1, 2, 3)) > 0).all()


def test_copy_paste_cuts_a_lesion_to_a_brain_too_small_for_any_whole_one():
    from ssagan_tf.evaluation.controls import ControlAugmenter, brain_mask

    size = 48
    yy, xx = np.mgrid[:size, :size]
    small = np.full((size, size, 1), -1.0, np.float32)
    small[(yy - 24) ** 2 + (xx - 24) ** 2 < 100, 0] = 0.0               # a head of radius 10
    donor, _ = _head_slice(size, value=-0.2, seed=1)
    mask = np.zeros((size, size, 1), np.float32)
    mask[10:38, 10:38] = 1.0                                             # a 28 x 28 lesion
    donor[mask[..., 0] > 0] = 0.6
    train = {"image": np.stack([small, donor]), "mask": np.stack([np.zeros_like(mask), mask]),
             "has_mask": np.array([0.0, 1.0]), "label": np.array([0, 1])}
    augmenter = ControlAugmenter("copy_paste", train, seed=0)
    out = augmenter.translate("normal_to_tumor", small[None])
    pasted = out.attention[0, ..., 0] > 0
    assert augmenter.placements[0]["cut_to_brain"] and pasted.sum() >= 4
    assert np.all(brain_mask(small)[pasted])
    np.testing.assert_array_equal(out.image[0][~pasted], small[~pasted])
