"""Cohort-level choices made once every case is read: exact and near duplicates, the patient
split among the cases that converted, and the anatomical window normal slices are drawn from.

    groups = duplicate_groups(hashes_by_case)          # [[(case, slice), ...], ...]
    near = near_duplicate_pairs(signatures_by_case)    # [((case, slice), (case, slice)), ...]
    split_of = assign_splits(patients, fixed, links, 0.7, 0.1, seed)
    window = anatomy_window(tumor_positions, tumor_area_ratios)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.writer import split_patients

# Near duplicates (the same scan saved at another size or JPEG quality). Each slice's content box
# (Otsu foreground, 1st-99th percentile of its rows and columns, so the frame, the padding and
# stray speckles do not count) gives two signatures: a DCT perceptual hash of the box resampled to
# NEAR_HASH_SIZE^2 (the signs against their median of the NEAR_HASH_FREQUENCIES^2 lowest
# frequencies, DC left out: 143 bits), and a NEAR_THUMB_SIZE^2 thumbnail of the box, as ranks.
# Two slices of different cases are near duplicates when their hashes differ in at most
# NEAR_DUPLICATE_BITS bits and their thumbnails correlate (Spearman) by at least NEAR_CORRELATION.
# Both ignore monotonic changes of intensity, so per-image normalisation does not matter. The hash
# alone lets slices of different patients at one anatomical level through (the head's outline
# dominates its low frequencies); the correlation tells them from copies. Measured on the 999
# shared LGG FLAIR slices with at least 5% head, each against itself at 200 instead of 256 px, at
# JPEG quality 60 instead of 95, or both: 99.2%, 99.8% and 98.6% are caught; no two slices of
# different patients pass both tests (3 pairs pass the hash, the closest correlation is 0.946).
# The converter applies this to single 2-D images only (`convert._single_image`).
NEAR_HASH_SIZE = 32
NEAR_HASH_FREQUENCIES = 12
NEAR_DUPLICATE_BITS = 24
NEAR_THUMB_SIZE = 24
NEAR_CORRELATION = 0.95
# A content box smaller than the hash's own grid on either side would be invented detail when
# resampled (and near-blank slices all look alike): such slices are compared exactly only.
_HASH_WORDS = 3          # 143 bits packed into three uint64 words
_UNUSABLE = np.iinfo(np.uint64).max


def duplicate_groups(hashes: dict) -> list:
    """Groups (two or more members) of identical slices: `hashes` maps a case key to its per-slice
    pixel hashes; each group lists (case key, slice position) in input order."""
    where: dict = {}
    for key, case_hashes in hashes.items():
        for j, digest in enumerate(case_hashes):
            where.setdefault(digest, []).append((key, j))
    return [members for members in where.values() if len(members) > 1]


def near_signatures(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes (N, 3) uint64, thumbnails (N, NEAR_THUMB_SIZE^2) uint8) of (N, H, W, C) slices in
    [-1, 1] (channels averaged). A slice whose content box is under NEAR_HASH_SIZE pixels on a side
    gets all-ones hash words, which `near_duplicate_pairs` skips."""
    from scipy.fft import dctn
    from scipy.stats import rankdata
    from skimage.filters import threshold_otsu
    from skimage.transform import resize

    hashes = np.full((len(images), _HASH_WORDS), _UNUSABLE, np.uint64)
    thumbs = np.zeros((len(images), NEAR_THUMB_SIZE ** 2), np.uint8)
    for i, image in enumerate(images):
        grey = np.asarray(image, np.float32).mean(axis=-1)
        if grey.max() <= grey.min():
            continue
        ys, xs = np.nonzero(grey > threshold_otsu(grey))
        y0, y1 = np.percentile(ys, [1, 99]).astype(int)
        x0, x1 = np.percentile(xs, [1, 99]).astype(int)
        if min(y1 - y0, x1 - x0) + 1 < NEAR_HASH_SIZE:
            continue
        box = grey[y0:y1 + 1, x0:x1 + 1]
        small = resize(box, (NEAR_HASH_SIZE, NEAR_HASH_SIZE), order=1, anti_aliasing=True)
        low = dctn(small, norm="ortho")[:NEAR_HASH_FREQUENCIES, :NEAR_HASH_FREQUENCIES].ravel()[1:]
        bits = np.zeros(64 * _HASH_WORDS, bool)
        bits[:low.size] = low > np.median(low)
        hashes[i] = np.packbits(bits).view(">u8").astype(np.uint64)
        # Ranks, so that the correlation (Spearman's) ignores any monotonic change of intensities:
        # a JPEG's noisy background shifts the normalisation bounds of a 2-D image, a PNG's does not.
        thumb = resize(box, (NEAR_THUMB_SIZE, NEAR_THUMB_SIZE), order=1, anti_aliasing=True).ravel()
        thumbs[i] = np.round((rankdata(thumb) - 1) * 255.0 / (thumb.size - 1)).astype(np.uint8)
    return hashes, thumbs


def near_duplicate_pairs(signatures: dict, max_bits: int = NEAR_DUPLICATE_BITS,
                         min_correlation: float = NEAR_CORRELATION) -> list:
    """Pairs ((case key, slice), (case key, slice)) of slices of different cases that are near
    duplicates: `signatures` maps a case key to its `near_signatures`. Every pair of hashes is
    compared (vectorised, in blocks), so none is missed; the thumbnails then confirm each
    candidate."""
    keys, slices, words, thumbs = [], [], [], []
    for key, (case_hashes, case_thumbs) in signatures.items():
        case_hashes = np.asarray(case_hashes, np.uint64).reshape(-1, _HASH_WORDS)
        usable = np.flatnonzero(~(case_hashes == _UNUSABLE).all(axis=1))
        keys += [key] * len(usable)
        slices += usable.tolist()
        words.append(case_hashes[usable])
        thumbs.append(np.asarray(case_thumbs)[usable])
    if not keys:
        return []
    words, thumbs = np.concatenate(words), np.concatenate(thumbs).astype(np.float32)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    thumbs /= np.maximum(np.linalg.norm(thumbs, axis=1, keepdims=True), 1e-6)
    owner = np.unique(np.asarray([str(k) for k in keys]), return_inverse=True)[1]
    pairs = []
    block = max(1, 4_000_000 // len(words))
    for start in range(0, len(words), block):
        stop = min(start + block, len(words))
        distance = np.zeros((stop - start, len(words)), np.int32)
        for w in range(_HASH_WORDS):
            distance += np.bitwise_count(words[start:stop, w, None] ^ words[None, :, w])
        close = (distance <= max_bits) & (owner[start:stop, None] != owner[None, :])
        close &= np.arange(start, stop)[:, None] < np.arange(len(words))[None, :]
        for a, b in zip(*np.nonzero(close)):
            if float(thumbs[start + a] @ thumbs[b]) >= min_correlation:
                pairs.append(((keys[start + a], slices[start + a]), (keys[b], slices[b])))
    return pairs


def duplicate_components(groups: list, near_pairs: list) -> list:
    """Exact groups and near-duplicate pairs joined into components (two or more members, each
    listed in input order), each with whether a near pair joined it: [(members, has_near), ...]."""
    union = _UnionFind()
    near_nodes = set()
    for members in groups:
        for member in members[1:]:
            union.union(members[0], member)
    for a, b in near_pairs:
        union.union(a, b)
        near_nodes.update((a, b))
    components: dict = {}
    for node in sorted(union.parent):
        components.setdefault(union.find(node), []).append(node)
    return [(members, any(m in near_nodes for m in members)) for members in components.values() if len(members) > 1]


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def assign_splits(patients, fixed: dict, links, train_fraction: float, val_fraction: float, seed: int,
                  val_from_train: bool = False) -> dict:
    """patient -> split. Patients joined by `links` (pairs sharing a duplicate image) form one unit
    that goes to one split; a unit holding a patient with a `fixed` split (--keep_splits) goes
    there; the other units are split by `split_patients` (a seeded shuffle of their sorted ids).
    `val_from_train` (a dataset's own split without a validation folder): `val_fraction` of the
    units fixed to train (at least one, never all) go to val instead, by a seeded draw."""
    union = _UnionFind()
    for p in patients:
        union.find(p)
    for a, b in links:
        union.union(a, b)
    units: dict = {}
    for p in sorted(set(patients)):
        units.setdefault(union.find(p), []).append(p)
    split_of_unit = {}
    free = []
    for root, members in units.items():
        own = sorted({fixed[p] for p in members if fixed.get(p)})
        if own:
            split_of_unit[root] = own[0] if len(own) == 1 else _first_split(own)
        else:
            free.append(root)
    if free:
        split_of_unit.update(split_patients(free, train_fraction, val_fraction, seed))
    if val_from_train:
        split_of_unit.update(_draw_validation(sorted(r for r, s in split_of_unit.items() if s == "train"),
                                              val_fraction, seed))
    return {p: split_of_unit[root] for root, members in units.items() for p in members}


def _draw_validation(train_units: list, val_fraction: float, seed: int) -> dict:
    """unit -> "val" for a seeded `val_fraction` of the training units, at least one, never all."""
    if len(train_units) < 2:
        return {}
    count = min(max(int(round(val_fraction * len(train_units))), 1), len(train_units) - 1)
    order = np.random.default_rng(seed + 2).permutation(len(train_units))
    return {train_units[i]: "val" for i in order[:count]}


def _first_split(splits) -> str:
    """A duplicate linking a dataset's own train and test folders: train wins, so test stays clean."""
    for split in ("train", "val", "test"):
        if split in splits:
            return split
    return splits[0]


@dataclass(frozen=True)
class AnatomyWindow:
    """Normal slices of 3-D cases are kept when their position in the head's axial extent lies in
    [low, high] and their head area ratio is at least `min_area_ratio`: the 5th-95th percentiles
    of the tumor slices' positions and the 5th percentile of their area ratios, over every
    converted case, so that normal slices come from the levels where tumors are."""

    low: float
    high: float
    min_area_ratio: float
    tumor_slices: int

    def admits(self, position: np.ndarray, area_ratio: np.ndarray) -> np.ndarray:
        inside = (position >= self.low) & (position <= self.high) & (area_ratio >= self.min_area_ratio)
        return np.isnan(position) | inside   # 2-D images have no axial position: left alone


def anatomy_window(positions: np.ndarray, area_ratios: np.ndarray) -> AnatomyWindow | None:
    """The window from the tumor slices' positions and area ratios (NaN for 2-D images, ignored);
    None when fewer than 5 tumor slices of 3-D cases exist, too few to bound anything."""
    finite = np.isfinite(positions) & np.isfinite(area_ratios)
    if finite.sum() < 5:
        return None
    low, high = np.percentile(positions[finite], [5.0, 95.0])
    return AnatomyWindow(float(low), float(high), float(np.percentile(area_ratios[finite], 5.0)), int(finite.sum()))


def histogram(values: np.ndarray, bins: int = 10) -> list:
    """Counts of finite values in `bins` equal bins over [0, 1] (positions and area ratios)."""
    values = values[np.isfinite(values)]
    return np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))[0].astype(int).tolist()
