"""Cohort-level choices made once every case is read: exact duplicates, the patient split among
the cases that converted, and the anatomical window normal slices are drawn from.

    groups = duplicate_groups(hashes_by_case)          # [[(case, slice), ...], ...]
    split_of = assign_splits(patients, fixed, links, 0.7, 0.1, seed)
    window = anatomy_window(tumor_positions, tumor_area_ratios)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.writer import split_patients


def duplicate_groups(hashes: dict) -> list:
    """Groups (two or more members) of identical slices: `hashes` maps a case key to its per-slice
    pixel hashes; each group lists (case key, slice position) in input order."""
    where: dict = {}
    for key, case_hashes in hashes.items():
        for j, digest in enumerate(case_hashes):
            where.setdefault(digest, []).append((key, j))
    return [members for members in where.values() if len(members) > 1]


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
