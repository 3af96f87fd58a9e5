"""Near duplicates: the same scan saved at another size or JPEG quality is found by a perceptual
hash, grouped with the exact duplicates so that no copy crosses a split, and counted apart from
them in the manifest and the report. Fixtures: synthetic grey heads written with PIL as PNG and
JPEG, one of them again at a smaller size and at two JPEG qualities."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from data_prep import selection
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions

QUIET = dict(log=lambda _: None)


def head(seed, size=256):
    """A grey axial 'scan': an ellipse of smooth random tissue with a dark rim, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    ry, rx = rng.uniform(0.3, 0.42, 2)
    inside = ((yy - 0.5) / ry) ** 2 + ((xx - 0.5) / rx) ** 2 <= 1
    tissue = ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 40)
    tissue = 120 + 90 * tissue / np.abs(tissue).max()
    return np.clip(np.where(inside, tissue, 0), 0, 255).astype(np.uint8)


def save(path, array, size=None, quality=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array)
    if size:
        image = image.resize((size, size), Image.LANCZOS)
    if quality:
        image.save(path, "JPEG", quality=quality)
    else:
        image.save(path)


def signatures_of(arrays):
    """Each array as the converter would see it (normalised to [-1, 1], padded to 256): its
    `near_signatures`, one case per array."""
    from data_prep.preprocess import fit_to_size

    out = []
    for a in arrays:
        grey = a.astype(np.float32)[None, ..., None] / 127.5 - 1
        images, _ = fit_to_size(grey, np.zeros(grey.shape[:3], np.uint8), 256)
        out.append(selection.near_signatures(images))
    return out


def jpeg_roundtrip(array, quality, size=None):
    image = Image.fromarray(array)
    if size:
        image = image.resize((size, size), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def test_one_slice_at_two_sizes_and_two_qualities_is_near_itself_and_far_from_others():
    scan = head(0)
    copies = [scan, jpeg_roundtrip(scan, 95), jpeg_roundtrip(scan, 50), jpeg_roundtrip(scan, 90, size=180),
              jpeg_roundtrip(scan, 50, size=180)]
    others = [head(seed) for seed in range(1, 9)]
    signatures = signatures_of(copies + others)
    pairs = selection.near_duplicate_pairs(dict(enumerate(signatures)))
    found = {tuple(sorted((a[0], b[0]))) for a, b in pairs}
    assert found == {(i, j) for i in range(5) for j in range(i + 1, 5)}     # every copy with every other, nothing else
    hashes = np.concatenate([h for h, _ in signatures])
    distance = lambda a, b: int(sum(np.bitwise_count(hashes[a] ^ hashes[b])))  # noqa: E731
    assert max(distance(0, k) for k in range(1, 5)) <= selection.NEAR_DUPLICATE_BITS
    assert min(distance(a, b) for a in range(5, 13) for b in range(a + 1, 13)) > selection.NEAR_DUPLICATE_BITS


def test_the_thumbnail_correlation_tells_lookalikes_from_copies():
    # two scans with the same outline and coarse anatomy, whose fine texture differs (a checker of
    # 8 cycles across the head, finer than the hash's frequencies): the hash lets them through,
    # the correlation does not
    base = head(3)
    inside = base > 0
    ys, xs = np.nonzero(inside)
    yy, xx = np.mgrid[:256, :256] / (xs.max() - xs.min())
    checker = np.sign(np.sin(2 * np.pi * 8 * (xx - xs.min() / 256))) * np.sign(np.sin(2 * np.pi * 8 * (yy - ys.min() / 256)))
    other = np.clip(np.where(inside, base + 80.0 * checker, 0), 0, 255).astype(np.uint8)
    signatures = signatures_of([base, other])
    hashes = [h for h, _ in signatures]
    assert int(sum(np.bitwise_count(hashes[0][0] ^ hashes[1][0]))) <= selection.NEAR_DUPLICATE_BITS
    assert selection.near_duplicate_pairs(dict(enumerate(signatures)), min_correlation=-1.0)
    assert selection.near_duplicate_pairs(dict(enumerate(signatures))) == []


def test_slices_of_one_case_are_never_near_duplicates_of_each_other():
    (h1, t1), (h2, t2) = signatures_of([head(0), head(0)])
    both = (np.concatenate([h1, h2]), np.concatenate([t1, t2]))
    assert selection.near_duplicate_pairs({"case": both}) == []
    assert len(selection.near_duplicate_pairs({"a": (h1, t1), "b": (h2, t2)})) == 1


def test_near_blank_slices_are_compared_exactly_only():
    blank = np.zeros((256, 256), np.uint8)
    blank[120:130, 120:130] = 200          # a content box of 10 px, under the hash's 32 px grid
    assert selection.near_duplicate_pairs(dict(enumerate(signatures_of([blank, blank])))) == []


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """yes/ and no/ with 8 distinct heads each; yes/t0 also as yes/t0_small.jpg (180 px, quality
    90) and yes/t0_q40.jpg (quality 40), and as an exact copy yes/t0_copy.png."""
    root = tmp_path_factory.mktemp("near") / "in"
    for i in range(8):
        save(str(root / "yes" / f"t{i}.png"), head(100 + i))
        save(str(root / "no" / f"n{i}.jpg"), head(200 + i), quality=90)
    save(str(root / "yes" / "t0_small.jpg"), head(100), size=180, quality=90)
    save(str(root / "yes" / "t0_q40.jpg"), head(100), quality=40)
    save(str(root / "yes" / "t0_copy.png"), head(100))
    return root


def config(root, out, **kw):
    return ConvertConfig(input_dir=str(root), format="folders", output_dir=str(out), workers=1, num_shards=1,
                         prep=PrepOptions(image_size=128, min_tumor_pixels=1), **kw)


@pytest.mark.parametrize("seed", [0, 1])
def test_near_duplicates_never_cross_splits_and_are_counted_apart(cohort, tmp_path, seed):
    manifest = convert(config(cohort, tmp_path / "out", seed=seed), **QUIET)
    where = {c: s for s, cases in manifest["cases"].items() for c in cases}
    assert len({where[c] for c in ("yes/t0", "yes/t0_small", "yes/t0_q40", "yes/t0_copy")}) == 1
    d = manifest["duplicates"]
    assert (d["groups"], d["slices"]) == (1, 2)                      # t0 and its exact copy
    assert (d["near_groups"], d["near_slices"], d["near_cross_patient"]) == (1, 4, 1)
    assert d["near_threshold_bits"] == selection.NEAR_DUPLICATE_BITS
    report = open(tmp_path / "out" / "conversion_report.md", encoding="utf-8").read()
    assert "Exact: 1 group(s)" in report and "Near, among single 2-D images (the same scan at another size or JPEG quality" in report


def test_near_duplicates_dropped_with_dedupe_drop(cohort, tmp_path):
    manifest = convert(config(cohort, tmp_path / "out", dedupe="drop"), **QUIET)
    cases = {c for cases in manifest["cases"].values() for c in cases}
    assert manifest["dropped"]["duplicate"] == 3 and "yes/t0" in cases
    assert sum(sum(c.values()) for c in manifest["counts"].values()) == 16
