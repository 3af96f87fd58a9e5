"""Cohort-level choices made once every case is read: exact duplicates, the patient split among
the cases that converted, and the anatomy normal slices are drawn from.

    groups = duplicate_groups(hashes_by_case)          # [[(case, slice), ...], ...]
    split_of = assign_splits(patients, fixed, links, 0.7, 0.1, seed)
    window = anatomy_window(tumor_positions, tumor_area_ratios)
    anatomy, dropped, warnings = match_anatomy(case_slices, keep, True, seed)
        # normals sampled per position bin to the tumors' histogram (match_positions), a warning when
        # their positions still differ (positions_differ)
"""

from __future__ import annotations

import dataclasses
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


POSITION_BINS = 10       # bins of the position histogram over [0, 1], matched and reported
MATCH_TOLERANCE = 0.05   # histogram distance (total variation) the sampling may accept to keep more normals
KS_WARNING = 0.15        # two-sample Kolmogorov-Smirnov statistic of the positions above which to warn,
KS_P_VALUE = 0.05        # when its p-value is below this too (a few slices differ by chance alone)


@dataclass(frozen=True)
class AnatomyWindow:
    """What the tumor slices of 3-D cases span, over every converted case: positions in the
    brain's axial extent from `low` to `high` (5th-95th percentile, for the report) and head area
    ratios from `min_area_ratio` up (5th percentile). A normal slice with a smaller area ratio
    (the thin top or bottom of the head) is not admitted; positions are matched by
    `match_positions`, as a distribution rather than a window."""

    low: float
    high: float
    min_area_ratio: float
    tumor_slices: int

    def admits(self, position: np.ndarray, area_ratio: np.ndarray) -> np.ndarray:
        return np.isnan(position) | (area_ratio >= self.min_area_ratio)   # 2-D images: left alone


def anatomy_window(positions: np.ndarray, area_ratios: np.ndarray) -> AnatomyWindow | None:
    """The window from the tumor slices' positions and area ratios (NaN for 2-D images, ignored);
    None when fewer than 5 tumor slices of 3-D cases exist, too few to bound anything."""
    finite = np.isfinite(positions) & np.isfinite(area_ratios)
    if finite.sum() < 5:
        return None
    low, high = np.percentile(positions[finite], [5.0, 95.0])
    return AnatomyWindow(float(low), float(high), float(np.percentile(area_ratios[finite], 5.0)), int(finite.sum()))


def _bin_of(positions: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.clip(positions, 0.0, 1.0) * bins).astype(int), bins - 1)


def histogram_distance(counts_a, counts_b) -> float:
    """Total-variation distance between two histograms (0 alike .. 1 disjoint)."""
    a, b = np.asarray(counts_a, float), np.asarray(counts_b, float)
    if a.sum() == 0 or b.sum() == 0:
        return 1.0
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def bin_quotas(tumor_counts, normal_counts, tolerance: float = MATCH_TOLERANCE) -> np.ndarray:
    """How many normal slices to take from each position bin so that their histogram follows the
    tumor slices' one: quota_b = min(available_b, round(s * p_b)) for tumor fractions p_b, at the
    scale s giving the most slices whose histogram distance to the tumors' is within `tolerance`
    of the least any scale reaches (bins without normal slices, or with few, keep it above 0)."""
    tumor = np.asarray(tumor_counts, float)
    normal = np.asarray(normal_counts, int)
    usable = (tumor > 0) & (normal > 0)
    if not usable.any():
        return np.zeros(normal.shape, int)
    share = tumor / tumor.sum()
    # Every scale at which a bin's quota saturates, and a fine grid up to the last: the best is among them.
    limits = normal[usable] / share[usable]
    scales = np.unique(np.concatenate([limits, np.linspace(0.0, limits.max(), 400)[1:]]))
    quotas = [np.minimum(normal, np.round(scale * share).astype(int)) for scale in scales]
    quotas = [q for q in quotas if q.sum() > 0]
    distances = np.array([histogram_distance(tumor, q) for q in quotas])
    admissible = np.flatnonzero(distances <= distances.min() + tolerance)
    return quotas[max(admissible, key=lambda i: quotas[i].sum())]


def match_positions(tumor_positions: np.ndarray, normal_positions: np.ndarray, seed: int,
                    bins: int = POSITION_BINS, tolerance: float = MATCH_TOLERANCE) -> np.ndarray:
    """Which normal slices to keep (bool, aligned with `normal_positions`) so that their positions
    follow the tumor slices' histogram (`bin_quotas`); within a bin the kept ones are a seeded
    random choice. Slices without a position (NaN: 2-D images) are kept."""
    keep = ~np.isfinite(normal_positions)
    tumor = tumor_positions[np.isfinite(tumor_positions)]
    finite = np.flatnonzero(np.isfinite(normal_positions))
    if not tumor.size:
        return np.ones(normal_positions.shape, bool)
    if not finite.size:
        return keep
    normal_bin = _bin_of(normal_positions[finite], bins)
    quotas = bin_quotas(np.bincount(_bin_of(tumor, bins), minlength=bins),
                        np.bincount(normal_bin, minlength=bins), tolerance)
    rng = np.random.default_rng(seed)
    for b, quota in enumerate(quotas):
        members = finite[normal_bin == b]
        if quota:
            keep[np.sort(rng.choice(members, size=quota, replace=False))] = True
    return keep


def position_test(tumor_positions: np.ndarray, normal_positions: np.ndarray):
    """(statistic, p-value) of the two-sample Kolmogorov-Smirnov test of the tumor and normal
    slices' positions (statistic 0: the same distribution .. 1: disjoint), or (None, None) when
    either has none."""
    from scipy.stats import ks_2samp

    tumor, normal = (p[np.isfinite(p)] for p in (tumor_positions, normal_positions))
    if not tumor.size or not normal.size:
        return None, None
    result = ks_2samp(tumor, normal)
    return float(result.statistic), float(result.pvalue)


def position_difference(tumor_positions: np.ndarray, normal_positions: np.ndarray) -> float | None:
    """The Kolmogorov-Smirnov statistic of `position_test`."""
    return position_test(tumor_positions, normal_positions)[0]


def positions_differ(statistic, p_value) -> bool:
    """The warning's rule: a statistic above KS_WARNING with a p-value below KS_P_VALUE."""
    return statistic is not None and statistic > KS_WARNING and p_value < KS_P_VALUE


def match_anatomy(cases: list, keep: list, match: bool, seed: int):
    """Normal slices of 3-D cases drawn to the tumor slices' anatomy. `cases`: per case its slice
    arrays (`labels`, `position`, `area_ratio`, `outside_extent`); `keep`: per case the slices
    still kept, updated in place. With `match`, normal slices below the tumors' area-ratio floor
    (`AnatomyWindow`) are dropped and the rest sampled to the tumors' position histogram
    (`match_positions`, seeded). Returns (the anatomy for report and manifest: histograms, window,
    Kolmogorov-Smirnov statistics; per case the normal slices dropped; warnings)."""
    def gather(label, what):
        return np.concatenate([c[what][(c["labels"] == label) & k] for c, k in zip(cases, keep)])

    tumor_pos, tumor_area = gather(1, "position"), gather(1, "area_ratio")
    window = anatomy_window(tumor_pos, tumor_area)
    anatomy = {"tumor": _histograms(tumor_pos, tumor_area),
               "normal_before": _histograms(gather(0, "position"), gather(0, "area_ratio")),
               "window": dataclasses.asdict(window) if window else None,
               "tumor_outside_extent": int(sum((c["outside_extent"] & (c["labels"] == 1) & k).sum()
                                               for c, k in zip(cases, keep))),
               "ks_before": position_difference(tumor_pos, gather(0, "position"))}
    dropped = [0] * len(cases)
    if match and window is not None:
        before = [k.copy() for k in keep]
        for c, k in zip(cases, keep):
            k &= ~((c["labels"] == 0) & k & ~window.admits(c["position"], c["area_ratio"]))
        where = [(i, j) for i, (c, k) in enumerate(zip(cases, keep)) for j in np.flatnonzero((c["labels"] == 0) & k)]
        chosen = match_positions(tumor_pos, np.array([cases[i]["position"][j] for i, j in where], float), seed)
        for (i, j), kept in zip(where, chosen):
            keep[i][j] = kept
        dropped = [int((b & ~k).sum()) for b, k in zip(before, keep)]
    anatomy["normal_after"] = _histograms(gather(0, "position"), gather(0, "area_ratio"))
    anatomy["ks_after"], anatomy["ks_p_value"] = position_test(tumor_pos, gather(0, "position"))
    anatomy["histogram_distance"] = histogram_distance(anatomy["tumor"]["position"],
                                                       anatomy["normal_after"]["position"])
    warnings = []
    if match and window is not None and positions_differ(anatomy["ks_after"], anatomy["ks_p_value"]):
        warnings.append(f"the written normal slices' axial positions still differ from the tumor slices' "
                        f"(Kolmogorov-Smirnov statistic {anatomy['ks_after']:.2f} > {KS_WARNING}, p = "
                        f"{anatomy['ks_p_value']:.2g}): too few normal slices at the tumors' levels; see the "
                        "anatomy histograms in the report")
    elif match and window is not None and anatomy["ks_after"] is None and sum(anatomy["normal_before"]["position"]):
        warnings.append("no normal slice of a 3-D case lies at the tumor slices' levels, so --match_anatomy dropped "
                        f"all {sum(anatomy['normal_before']['position'])}; add tumor-free scans, or convert with "
                        "--nomatch_anatomy")
    return anatomy, dropped, warnings


def _histograms(position, area) -> dict:
    return {"position": histogram(position), "area": histogram(area)}


def histogram(values: np.ndarray, bins: int = POSITION_BINS) -> list:
    """Counts of finite values in `bins` equal bins over [0, 1] (positions and area ratios)."""
    values = values[np.isfinite(values)]
    return np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))[0].astype(int).tolist()
