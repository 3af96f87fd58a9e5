"""ssagan_tf.lesions: the head and brain masks follow a slice's outline through background noise,
scalp and skull; transplanted lesion masks stay inside the brain, carry the lesion's pixels, keep
their size within the scale limits, and are reproducible from their seed."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from ssagan_tf import lesions

SIZE = 64


def slices(n=4, seed=0):
    """n slices of one head: a bright scalp ring, a dark skull ring, tissue (a different level per
    slice) with a dark hole, on a background whose noise reaches -0.9 in a third of its pixels
    and a few bright specks; lesions of radius 3 at the corners and centre of tumor slices.
    Returns (normal, tumor, masks, head, skull_inside)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    radius = np.sqrt(((yy - 32) / 27.0) ** 2 + ((xx - 30) / 23.0) ** 2)
    head, inside_skull = radius <= 1, radius <= 0.82
    normal = np.where(rng.random((n, SIZE, SIZE)) < 1 / 3, rng.uniform(-1.0, -0.9, (n, SIZE, SIZE)), -1.0)
    normal[:, 5, 6] = normal[:, 58, 8] = 0.5                        # specks of noise in the background
    normal[:, head] = 0.8                                           # scalp
    normal[:, (radius <= 0.88) & ~inside_skull] = -0.95             # skull
    normal[:, inside_skull] = np.linspace(-0.2, 0.4, n)[:, None]
    normal[:, 30:33, 28:31] = -1.0                                  # a dark hole inside the brain (clipped CSF)
    normal = normal[..., None].astype(np.float32)
    tumor = np.zeros((n, SIZE, SIZE, 1), np.float32)
    masks = np.zeros((n, SIZE, SIZE, 1), np.float32)
    for i, (cy, cx) in enumerate([(14, 14), (48, 50), (30, 30), (8, 56)][:n]):
        lesion = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
        masks[i, lesion], tumor[i, lesion] = 1.0, 0.95
    return normal, tumor, masks, head, inside_skull


def _outline(mask, width=1):
    return ndimage.binary_dilation(mask, iterations=width) & ~ndimage.binary_erosion(mask, iterations=width)


def test_head_mask_follows_the_scalp_through_background_noise_and_fills_dark_regions_inside():
    normal, _, _, head, _ = slices(2)
    found = lesions.head_mask(normal).numpy()[..., 0] > 0
    for k in range(2):
        wrong = found[k] ^ head
        assert not (wrong & ~_outline(head)).any()        # right everywhere but at the outline
        assert found[k, 31, 29] and found[k, 32, 10]      # the dark hole and the dark skull: filled
        assert not found[k, 5, 6] and not found[k, 58, 8]  # background specks: not head


def test_a_ghosting_band_across_the_frame_is_not_head():
    """A faint band of signal crossing the frame (motion ghosting along the phase-encoding
    direction) passes the background threshold; the head is cut to within CORE_REACH of its core,
    so the band outside the head goes and the brain stays inside the head."""
    normal, _, _, head, _ = slices(2)
    band = np.zeros((SIZE, SIZE), bool)
    band[28:37, :] = True
    ghosted = normal.copy()
    ghosted[:, band & ~head, 0] = -0.6
    threshold = lesions._background_thresholds(tf.reshape(tf.constant(ghosted), [2, -1])).numpy()
    assert (threshold < -0.6).all()                                 # the band passes the first threshold
    found = lesions.head_mask(ghosted).numpy()[..., 0] > 0
    reach = ndimage.binary_dilation(head, iterations=int(round(lesions.CORE_REACH * SIZE)) + 1)
    for k in range(2):
        assert not (found[k] & ~reach).any()                         # nothing far from the head is head
        assert not found[k][:, [0, SIZE - 1]].any()                  # the band no longer reaches the borders
        assert not (head & ~found[k] & ~_outline(head)).any()        # none of the head itself is lost
    brain = lesions.brain_mask(ghosted).numpy()[..., 0] > 0
    assert not (brain & ~head).any()


def test_a_head_too_thin_for_a_core_stays_uncut_and_the_median_is_the_lower_one():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    radius = np.hypot(yy - 32, xx - 32)
    arc = (radius >= 20) & (radius < 24) & (yy < 40)                  # 4 pixels wide: opened away by 5
    image = np.where(arc, 0.5, -1.0)[None, ..., None].astype(np.float32)
    found = lesions.head_mask(image).numpy()[0, ..., 0] > 0
    assert found.sum() > 0.8 * arc.sum() and not (found & ~ndimage.binary_dilation(arc)).any()
    values = tf.constant([[0.1, 0.4, 0.2, 0.3, 0.9], [0.5, 0.5, 0.5, 0.5, 0.5]])
    mask = tf.constant([[True, True, True, True, False], [False] * 5])
    np.testing.assert_allclose(lesions._masked_medians(values, mask).numpy(), [0.2, 2.0])


def test_brain_mask_is_the_head_less_its_outer_depth():
    """The brain is the head eroded by BRAIN_DEPTH x the frame (to within the octagonal distance's
    error): here the scalp and skull rings and nothing of the tissue well inside them."""
    normal, _, _, head, inside_skull = slices(1)
    brain = lesions.brain_mask(normal).numpy()[0, ..., 0] > 0
    depth = lesions.BRAIN_DEPTH * SIZE
    distance = ndimage.distance_transform_edt(head)
    assert not (brain & (distance < depth - 1.0)).any()
    assert brain[distance >= depth + 1.5].all()
    assert brain.sum() < inside_skull.sum() * 1.1 and brain[20:44, 15:45].all()
    # The same brain from a given head mask; none from an empty slice.
    np.testing.assert_array_equal(lesions.brain_mask(normal, lesions.head_mask(normal)).numpy()[0, ..., 0] > 0, brain)
    assert not lesions.brain_mask(np.full((1, SIZE, SIZE, 1), -1.0, np.float32)).numpy().any()


def test_background_threshold_lies_between_the_noise_and_the_darkest_tissue():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.full(3000, -1.0), rng.uniform(-1.0, -0.92, 1500), rng.uniform(-0.6, 0.9, 3000)])
    threshold = float(lesions._background_thresholds(tf.constant(values[None], tf.float32)).numpy()[0])
    assert -0.92 <= threshold <= -0.6
    # A constant slice has no threshold above its one bin.
    flat = float(lesions._background_thresholds(tf.fill([1, 100], -1.0)).numpy()[0])
    assert flat == pytest.approx(-1.0 + 2.0 / lesions.HISTOGRAM_BINS)


def test_transplanted_masks_stay_inside_the_brain_and_carry_the_lesion():
    normal, tumor, masks, _, _ = slices()
    brain = lesions.brain_mask(normal).numpy()[..., 0] > 0
    valid = np.array([1, 1, 1, 0], np.float32)
    for seed in range(6):
        lesioned, moved, placed = (t.numpy() for t in lesions.transplant(normal, tumor, masks, valid,
                                                                         tf.constant([seed, 1])))
        inside = moved[..., 0] > 0
        assert not (inside & ~brain).any()                                 # never on scalp, skull or background
        assert set(np.unique(moved)) <= {0.0, 1.0}
        np.testing.assert_array_equal(placed, [1, 1, 1, 0])
        assert not inside[3].any()                                         # no mask to give: nothing placed
        np.testing.assert_array_equal(lesioned[~inside], normal[~inside])  # untouched outside the mask
        # The lesion's pixels: 0.95, blended with its own surround (0) at the edge, where the
        # bilinear mask is >= 0.5 so the pixel keeps at least half the lesion.
        assert lesioned[inside].min() >= 0.95 * 0.5 - 1e-4 and lesioned[inside].max() == pytest.approx(0.95, abs=1e-5)
        # The centroid lands `margin` inside the brain, farther than the scaled radius: nothing is cut.
        area, before = moved.sum(axis=(1, 2, 3))[:3], masks.sum(axis=(1, 2, 3))[:3]
        low, high = lesions.SCALE_RANGE
        assert ((area >= 0.7 * low ** 2 * before) & (area <= 1.3 * high ** 2 * before)).all(), (area, before)


def test_transplants_are_reproducible_from_their_seed_and_work_in_a_graph():
    normal, tumor, masks, _, _ = slices()
    valid = np.ones(4, np.float32)
    eager = lesions.transplant(normal, tumor, masks, valid, tf.constant([3, 7]))[1].numpy()
    graph = tf.function(lesions.transplant)(normal, tumor, masks, valid, tf.constant([3, 7]))[1].numpy()
    other = lesions.transplant(normal, tumor, masks, valid, tf.constant([3, 8]))[1].numpy()
    np.testing.assert_array_equal(eager, graph)
    assert not np.array_equal(eager, other)


def test_a_slice_without_background_is_all_head():
    noise = np.random.default_rng(1).uniform(-1, -0.2, (2, SIZE, SIZE, 1)).astype(np.float32)
    assert lesions.head_mask(noise).numpy().mean() > 0.95
