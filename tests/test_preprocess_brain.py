"""The brain, not the head: a synthetic head with brain, skull and scalp above a neck and shoulders
as wide as the head, at 1 mm and 2 mm slice spacing, with its known brain mask; and the common
field of view (`--field_of_view=fit`) against the stored one (`pad`)."""

import numpy as np
import pytest
from skimage.transform import resize

from data_prep import preprocess
from data_prep.scan import CaseRef, Scan

BRAIN_CENTER, BRAIN_AXES = 160.0, (60.0, 80.0, 65.0)   # mm: brain from z = 100 to 220, the vertex at 232
SKULL, SCALP = 7.0, 12.0                             # mm added to the brain's semi-axes


def synthetic_head(spacing, z_mm=(0.0, 240.0), fov_mm=200.0, seed=0):
    """(image (Z, Y, X, 1), brain mask (Z, Y, X)) of a head in LPS order (Z inferior -> superior):
    brain ellipsoid, darker skull, bright scalp, and below them a neck (13,200 mm^2, 0.59 of the
    head's widest slice) on shoulders as wide as the field of view; Rician-like noise outside."""
    rng = np.random.default_rng(seed)
    dz, dy, dx = spacing
    z = np.arange(z_mm[0] + dz / 2, z_mm[1], dz)[:, None, None]
    y = np.arange(-fov_mm / 2 + dy / 2, fov_mm / 2, dy)[None, :, None]
    x = np.arange(-fov_mm / 2 + dx / 2, fov_mm / 2, dx)[None, None, :]

    def ellipsoid(grow):
        az, ay, ax = (a + grow for a in BRAIN_AXES)
        return ((z - BRAIN_CENTER) / az) ** 2 + (y / ay) ** 2 + (x / ax) ** 2 <= 1.0

    shape = np.broadcast_shapes(z.shape, y.shape, x.shape)
    image = np.abs(rng.normal(0.0, 8.0, shape)).astype(np.float32)
    neck = (z <= 120.0) & (((y - 10.0) / 60.0) ** 2 + (x / 70.0) ** 2 <= 1.0)
    shoulders = (z <= 45.0) & ((y / 70.0) ** 2 + (x / 100.0) ** 2 <= 1.0)
    body = np.broadcast_to(neck | shoulders, shape)
    image[body] = 280.0 + rng.normal(0.0, 10.0, int(body.sum()))
    image[np.broadcast_to(ellipsoid(SCALP), shape)] = 500.0
    image[np.broadcast_to(ellipsoid(SKULL), shape)] = 40.0
    brain = np.broadcast_to(ellipsoid(0.0), shape)
    image[brain] = 320.0 + 60.0 * rng.random(int(brain.sum()))
    return image[..., None], brain.copy()


def _scan(image, spacing, is_3d=True, label=None):
    ref = CaseRef(case_id="head", patient_id="p", format="test", paths={"image": "/data/head.nii.gz"}, label=label)
    return Scan(ref=ref, image=image, mask=None, spacing=spacing, is_3d=is_3d)


def _healthy(image, spacing, **kw):
    options = preprocess.PrepOptions(**{"image_size": 64, "assume_normal": True, **kw})
    return preprocess.prepare(_scan(image, spacing), options)


@pytest.mark.parametrize("dz", [1.0, 2.0])
def test_no_brain_free_normal_slice_from_a_head_with_neck_and_shoulders(dz):
    spacing = (dz, 2.0, 2.0)
    image, brain = synthetic_head(spacing)
    has_brain = brain.reshape(brain.shape[0], -1).any(axis=1)
    slices = _healthy(image, spacing)
    normal = slices.slice_index[slices.labels == 0]
    assert not (~has_brain[normal]).any(), "brain-free slices written as normal brain"
    # most brain slices stay: all but the thin top (area ratio < 0.5) and the lowest ~12 mm
    assert normal.size >= 0.75 * has_brain.sum()
    assert np.all((slices.position >= 0.0) & (slices.position <= 1.0))
    # without the bound (the earlier rule) neck and shoulders pass as brain: the fixture shows the fault
    unbounded = _healthy(image, spacing, brain_length_mm=0.0)
    unbounded_normal = unbounded.slice_index[unbounded.labels == 0]
    assert (~has_brain[unbounded_normal]).mean() > 0.3


def test_below_vertex_measures_from_the_top_of_the_head_in_millimetres():
    area = np.array([90, 95, 100, 100, 98, 90, 70, 40, 10, 0, 0], float)   # vertex at index 8
    assert np.flatnonzero(preprocess.below_vertex(area, 2.0, 10.0)).tolist() == [3, 4, 5, 6, 7, 8, 9, 10]
    assert preprocess.below_vertex(area, 2.0, 0.0).all()                  # 0: no bound
    cut = np.array([90, 95, 100, 100, 98, 90], float)                     # head cut at the top: no vertex
    assert preprocess.below_vertex(cut, 2.0, 4.0).all()
    assert preprocess.below_vertex(np.append(cut, [0, 0]), 2.0, 4.0).all()   # blank padding above the cut
    # shoulders twice the head's area far below do not hide the vertex
    shoulders = np.array([200, 200, 60, 90, 100, 100, 98, 90, 70, 40, 10, 0], float)
    assert np.flatnonzero(~preprocess.below_vertex(shoulders, 10.0, 60.0)).tolist() == [0, 1, 2, 3]


def _head_width(image, threshold=-0.5):
    """Columns of the frame (first channel) holding head pixels, at the middle row."""
    row = image[image.shape[0] // 2, :, 0]
    inside = np.flatnonzero(row > threshold)
    return inside[-1] - inside[0] + 1


def _disc_image(side, seed):
    """A 2-D slice: a bright disc of diameter 0.7 x side in a noisy dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    image = np.abs(rng.normal(0.0, 6.0, (side, side))).astype(np.float32)
    disc = (yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 <= (0.35 * side) ** 2
    image[disc] = 200.0 + 20.0 * rng.random(int(disc.sum()))
    return image[None, :, :, None]


def test_small_and_large_images_of_one_class_come_out_with_heads_of_one_size():
    widths = {}
    for fov in ("fit", "pad"):
        options = preprocess.PrepOptions(image_size=64, field_of_view=fov)
        widths[fov] = [_head_width(preprocess.prepare(_scan(_disc_image(side, side), (1.0, 1.0, 1.0), is_3d=False,
                                                            label=0), options).images[0]) for side in (40, 200)]
    small, large = widths["fit"]
    assert abs(small - large) <= 2 and abs(large - 0.9 * 64) <= 2     # the head spans 0.9 of the frame
    small, large = widths["pad"]
    assert large - small >= 15                   # pad: the small image's head stays small (28 against 45 px)


def test_a_2mm_and_a_1mm_head_come_out_alike():
    """The same head, 5 mm slices, at 1 mm and 2 mm in-plane spacing (the 1 mm one with a larger
    field of view of 240 mm, the 2 mm one 200 mm: under pad, 240 px padded to 256 and 100 px padded
    to 256, a head half as wide)."""
    fine, _ = synthetic_head((5.0, 1.0, 1.0), z_mm=(130.0, 240.0), fov_mm=240.0)
    coarse, _ = synthetic_head((5.0, 2.0, 2.0), z_mm=(130.0, 240.0), fov_mm=200.0)
    level = 6                                          # z = 162.5 mm, near the brain's widest slice
    out = {}
    for fov in ("fit", "pad"):
        out[fov] = [_healthy(volume, spacing, field_of_view=fov, image_size=256) for volume, spacing in
                    ((fine, (5.0, 1.0, 1.0)), (coarse, (5.0, 2.0, 2.0)))]
        assert all(level in s.slice_index for s in out[fov])
    fine_fit, coarse_fit = (s.images[list(s.slice_index).index(level)] for s in out["fit"])
    assert abs(_head_width(fine_fit) - _head_width(coarse_fit)) <= 2
    # the box's longer side (front to back, 2 x 92 mm) spans 0.9 of the frame; left to right is 2 x 77 mm
    assert abs(_head_width(fine_fit) - 0.9 * 256 * 77 / 92) <= 3
    assert np.mean(np.abs(fine_fit - coarse_fit)) < 0.1
    fine_pad, coarse_pad = (s.images[list(s.slice_index).index(level)] for s in out["pad"])
    assert _head_width(fine_pad) > 1.8 * _head_width(coarse_pad)    # pad: the pixel spacing sets the head's size


def test_pad_reproduces_the_stored_field_of_view():
    """`--field_of_view=pad` is the earlier output: the normalised slices padded centrally to a square
    and shrunk to the frame (a reference written here with numpy and scikit-image)."""
    image, _ = synthetic_head((10.0, 4.0, 4.0), fov_mm=200.0)
    image = image[:, :, 5:45]                          # 50 x 40 pixels: padded to 50, shrunk to 32
    slices = preprocess.prepare(_scan(image, (10.0, 4.0, 4.0)),
                                preprocess.PrepOptions(image_size=32, assume_normal=True, field_of_view="pad"))
    head = preprocess.head_mask(image)
    bounds = preprocess.intensity_bounds(image, head)
    scaled = preprocess.scale_to_unit(image[slices.slice_index], bounds)
    square = np.pad(scaled, ((0, 0), (0, 0), (5, 5), (0, 0)), constant_values=-1.0)
    expected = np.stack([resize(s, (32, 32), order=1, anti_aliasing=True, preserve_range=True) for s in square])
    np.testing.assert_allclose(slices.images, np.clip(expected, -1.0, 1.0), atol=1e-5)


def test_positions_lie_in_0_1_of_the_brain_extent_even_for_tumor_slices_beyond_it():
    spacing = (2.0, 4.0, 4.0)
    image, brain = synthetic_head(spacing)
    mask = np.zeros(brain.shape, np.uint8)
    mask[28:32, 20:30, 20:30] = 1      # z = 56-64 mm: in the neck, below the brain's extent (tumors stay)
    mask[73:77, 20:30, 20:30] = 1      # z = 146-154 mm: in the brain
    slices = preprocess.prepare(Scan(ref=CaseRef("head", "p", "test", {"image": "/data/head.nii.gz"}), image=image,
                                     mask=mask, spacing=spacing, is_3d=True),
                                preprocess.PrepOptions(image_size=64, min_tumor_pixels=5))
    assert np.all((slices.position >= 0.0) & (slices.position <= 1.0))
    tumor = slices.labels == 1
    low = tumor & (slices.slice_index < 40)
    assert low.sum() == 4 and np.all(slices.position[low] == 0.0) and slices.outside_extent[low].all()
    high = tumor & (slices.slice_index >= 40)
    assert high.sum() == 4 and np.all((slices.position[high] > 0.2) & (slices.position[high] < 0.6))
    assert not slices.outside_extent[high].any() and not slices.outside_extent[slices.labels == 0].any()
