"""What the converter leaves for a human: `conversion_report.md` (counts, every case, dropped
slices by reason, duplicates, the anatomy of tumor and normal slices) and `conversion_sheet.png`
(a few tumor and normal slices of each split with the tumor outlined), so the data is looked at
before anyone trains on it."""

from __future__ import annotations

import os

import numpy as np

from data_prep.preprocess import DROP_REASONS
from ssagan_tf import io as durable

REPORT_NAME = "conversion_report.md"
SHEET_NAME = "conversion_sheet.png"
FAILED_REPORT_NAME = "conversion_failed.md"   # a failed run's report beside an intact dataset
_REASON_TEXT = {"slice_range": "outside --slice_range", "little_brain": "too little brain (--min_brain_fraction)",
                "outside_brain_extent": "normal, outside the brain's axial extent (--min_brain_ratio, "
                                        "--brain_length_mm)",
                "ambiguous": "ambiguous (some tumor below --min_tumor_pixels, or within --normal_margin)",
                "anatomy": "normal, not drawn to the tumors' levels (--match_anatomy)",
                "duplicate": "exact duplicate of an earlier slice (--dedupe=drop)"}


def write_report(config, outcomes, manifest, cohort: dict, directory: str | None = None, name: str = REPORT_NAME,
                 temp_dir: str | None = None) -> None:
    """The report; `manifest` is None when the conversion failed, `cohort` holds what the
    cohort-level steps found (duplicates, anatomy), possibly empty."""
    prep = config.prep
    lines = ["# Conversion report", "", f"- input: `{config.input_dir}` (format `{config.format}`)",
             f"- output: `{config.output_dir}`", f"- image size {prep.image_size}, min tumor pixels "
             f"{prep.min_tumor_pixels}, normal margin {prep.normal_margin}, min brain fraction "
             f"{prep.min_brain_fraction}, min brain ratio {prep.min_brain_ratio}, brain length "
             f"{prep.brain_length_mm:g} mm below the vertex, field of view `{prep.field_of_view}`", ""]
    if manifest is None:
        kept = ("The dataset already in the output folder is unchanged (its own report is "
                f"`{REPORT_NAME}`). " if name == FAILED_REPORT_NAME else "")
        lines += [f"**The conversion did not complete: no dataset was written.** {kept}{cohort.get('failure', '')}",
                  ""]
    else:
        lines += ["| split | patients | normal slices | tumor slices |", "|---|---|---|---|"]
        lines += [f"| {s} | {len(manifest['patients'][s])} | {c['normal']} | {c['tumor']} |"
                  for s, c in manifest["counts"].items()] + [""]
        lines += [f"**Warning: {w}.**" for w in cohort.get("warnings", [])] + [""] * bool(cohort.get("warnings"))
        lines += [f"Look at `{SHEET_NAME}` (beside this report) before training: a few tumor and normal slices "
                  "of each split, first channel, tumor outlined in red; rows train, val, test, tumor above normal.",
                  ""]
    totals = {r: sum(o.dropped.get(r, 0) for o in outcomes) for r in DROP_REASONS}
    lines += ["## Dropped slices", "", "| reason | slices |", "|---|---|"]
    lines += [f"| {_REASON_TEXT[r]} | {n} |" for r, n in totals.items()] + [""]
    if "duplicates" in cohort:
        d = cohort["duplicates"]
        lines += ["## Exact duplicates", "", f"{d['groups']} group(s) of identical slices (hash of the decoded "
                  f"pixels), {d['slices']} slices in them; {d['cross_patient']} group(s) span several patients; "
                  f"mode `{config.dedupe}`: {d['action']}.", ""]
    if "anatomy" in cohort:
        lines += _anatomy_lines(cohort["anatomy"], config.match_anatomy)
    lines += ["## Cases", "", "| case | patient | split | tumor | normal | dropped | masks used | status |",
              "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        status = f"rejected: {o.error}" if o.error else "converted"
        dropped = ", ".join(f"{r} {n}" for r, n in o.dropped.items() if n) or "-"
        lines.append(f"| {o.case_id} | {o.patient_id} | {o.split} | {o.tumor} | {o.normal} | {dropped} | "
                     f"{'yes' if o.labelled else 'no'} | {status.replace('|', '/')} |")
    directory = directory or config.output_dir
    os.makedirs(directory, exist_ok=True)
    durable.atomic_write(os.path.join(directory, name), "\n".join(lines) + "\n", temp_dir=temp_dir)


def _anatomy_lines(anatomy: dict, matched: bool) -> list:
    from data_prep.selection import KS_P_VALUE, KS_WARNING, MATCH_TOLERANCE

    window = anatomy.get("window")
    lines = ["## Anatomy of the slices", "",
             "Position: place in the brain's axial extent, the slices normal ones may come from (0 = its first "
             "slice, 1 = its last, in the volume's slice order; a tumor slice beyond either end counts at that "
             "end); area: head area / the extent's largest head slice. Counts in ten bins from 0 to 1 (3-D and "
             "stacked cases only).", ""]
    if window:
        effect = (f"on: normal slices below that area ratio were dropped and the rest drawn per position bin in "
                  f"proportion to the tumor slices (histogram distance within {MATCH_TOLERANCE} of the least "
                  f"reachable)" if matched else "off: not applied")
        lines += [f"Tumor slices lie at positions {window['low']:.2f}-{window['high']:.2f} (5th-95th "
                  f"percentile of {window['tumor_slices']}) with area ratio >= {window['min_area_ratio']:.2f} "
                  f"(5th percentile); {anatomy.get('tumor_outside_extent', 0)} of them lie beyond the brain's "
                  f"extent. --match_anatomy {effect}.", ""]
    else:
        lines += ["Fewer than 5 tumor slices of 3-D cases: no anatomy window, nothing matched.", ""]
    lines += ["| slices | position histogram | area-ratio histogram |", "|---|---|---|"]
    for name, key in (("tumor", "tumor"), ("normal, before matching", "normal_before"),
                      ("normal, written", "normal_after")):
        if key in anatomy:
            lines.append(f"| {name} | {anatomy[key]['position']} | {anatomy[key]['area']} |")
    lines.append("")
    if anatomy.get("ks_after") is not None:
        before = anatomy.get("ks_before")
        lines += [f"Kolmogorov-Smirnov statistic of tumor against normal positions: "
                  f"{'-' if before is None else f'{before:.2f}'} before matching, {anatomy['ks_after']:.2f} written "
                  f"(p = {anatomy['ks_p_value']:.2g}; with --match_anatomy a warning above {KS_WARNING} when p < "
                  f"{KS_P_VALUE}); histogram distance written {anatomy['histogram_distance']:.2f}.", ""]
    return lines


def write_sheet(path: str, panels: list) -> None:
    """A grid of (title, image (S, S, C) in [-1, 1], mask (S, S)) panels: one row per split and
    label, the first channel in grey with the mask's outline in red. Titles go to the report,
    not the image: the row order is fixed (split, then tumor before normal)."""
    from skimage import io as skio
    from skimage.segmentation import find_boundaries

    if not panels:
        return
    rows: dict = {}
    for title, image, mask in panels:
        rows.setdefault(title, []).append((image, mask))
    size = panels[0][1].shape[0]
    columns = max(len(r) for r in rows.values())
    sheet = np.full((len(rows) * (size + 4), columns * (size + 4), 3), 255, np.uint8)
    for r, row in enumerate(rows.values()):
        for c, (image, mask) in enumerate(row):
            grey = np.clip((image[..., 0] + 1.0) * 127.5, 0, 255).astype(np.uint8)
            tile = np.repeat(grey[..., None], 3, axis=-1)
            tile[find_boundaries(mask > 0, mode="inner")] = (255, 0, 0)
            top, left = r * (size + 4) + 2, c * (size + 4) + 2
            sheet[top:top + size, left:left + size] = tile
    tmp = durable.temporary_path(path) + ".png"   # the suffix tells imsave the format
    skio.imsave(tmp, sheet, check_contrast=False)
    durable.replace_durably(tmp, path)
