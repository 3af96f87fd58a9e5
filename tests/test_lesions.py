"""ssagan_tf.lesions: transplanted lesion masks stay inside the head, carry the lesion's pixels,
keep their size within the scale limits, and are reproducible from their seed."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ssagan_tf import lesions

SIZE = 64


def slices(n=4):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    normal = np.full((n, SIZE, SIZE, 1), -1.0, np.float32)
    head = ((yy - 32) / 27.0) ** 2 + ((xx - 30) / 21.0) ** 2 <= 1
    normal[:, head] = np.linspace(-0.2, 0.6, n)[:, None, None]
    normal[:, 30:33, 28:31] = -1.0                      # a dark hole inside the head (clipped CSF)
    tumor = np.zeros((n, SIZE, SIZE, 1), np.float32)
    masks = np.zeros((n, SIZE, SIZE, 1), np.float32)
    for i, (cy, cx) in enumerate([(14, 14), (48, 50), (30, 30), (8, 56)][:n]):
        lesion = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        masks[i, lesion], tumor[i, lesion] = 1.0, 0.95
    return normal, tumor, masks, head


def test_transplanted_masks_stay_inside_the_head_and_carry_the_lesion():
    normal, tumor, masks, head = slices()
    valid = np.array([1, 1, 1, 0], np.float32)
    for seed in range(6):
        lesioned, moved, placed = (t.numpy() for t in lesions.transplant(normal, tumor, masks, valid,
                                                                         tf.constant([seed, 1])))
        inside = moved[..., 0] > 0
        assert not (inside & ~head).any()                                  # never on the background
        assert set(np.unique(moved)) <= {0.0, 1.0}
        np.testing.assert_array_equal(placed, [1, 1, 1, 0])
        assert not inside[3].any()                                         # no mask to give: nothing placed
        np.testing.assert_array_equal(lesioned[~inside], normal[~inside])  # untouched outside the mask
        # The lesion's pixels: 0.95, blended with its own surround (0) at the edge, where the
        # bilinear mask is >= 0.5 so the pixel keeps at least half the lesion.
        assert lesioned[inside].min() >= 0.95 * 0.5 - 1e-4 and abs(np.median(lesioned[inside]) - 0.95) < 1e-5
        area, before = moved.sum(axis=(1, 2, 3))[:3], masks.sum(axis=(1, 2, 3))[:3]
        low, high = lesions.SCALE_RANGE
        assert ((area >= 0.8 * low ** 2 * before) & (area <= 1.2 * high ** 2 * before)).all(), (area, before)


def test_transplants_are_reproducible_from_their_seed_and_work_in_a_graph():
    normal, tumor, masks, _ = slices()
    valid = np.ones(4, np.float32)
    eager = lesions.transplant(normal, tumor, masks, valid, tf.constant([3, 7]))[1].numpy()
    graph = tf.function(lesions.transplant)(normal, tumor, masks, valid, tf.constant([3, 7]))[1].numpy()
    other = lesions.transplant(normal, tumor, masks, valid, tf.constant([3, 8]))[1].numpy()
    np.testing.assert_array_equal(eager, graph)
    assert not np.array_equal(eager, other)


def test_head_mask_closes_small_holes_and_excludes_the_background():
    normal, _, _, head = slices(1)
    found = lesions.head_mask(normal).numpy()[0, ..., 0] > 0
    assert found[31, 29]                                  # the dark hole
    assert not found[0, 0] and not found[SIZE - 1, SIZE - 1]
