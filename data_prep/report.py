"""What the converter leaves for a human: `conversion_report.md` (counts, every case, dropped
slices by reason, duplicates, the anatomy of tumor and normal slices) and `conversion_sheet.png`
(a few tumor and normal slices of each split with the tumor outlined), so the data is looked at
before anyone trains on it."""

from __future__ import annotations

import os

import numpy as np

from data_prep.preprocess import DROP_REASONS
from ssagan_tf import io as durable
from ssagan_tf.data import schema

# A group of cases whose healthy in-head tissue differs in mean normalised intensity ([-1, 1]) from
# the other cases' by more than this is a shortcut a classifier can learn (tumor-free cases that
# all come out brighter, one site darker than the rest): the report warns.
INTENSITY_GAP = 0.15
REPORT_NAME = "conversion_report.md"
SHEET_NAME = "conversion_sheet.png"
FAILED_REPORT_NAME = "conversion_failed.md"   # a failed run's report beside an intact dataset
_REASON_TEXT = {"slice_range": "outside --slice_range", "little_brain": "too little brain (--min_brain_fraction)",
                "outside_brain_extent": "normal, outside the brain's axial extent (--min_brain_ratio, "
                                        "--brain_length_mm)",
                "ambiguous": "ambiguous (some tumor below --min_tumor_pixels, or within --normal_margin)",
                "anatomy": "normal, not drawn to the tumors' levels (--match_anatomy)",
                "duplicate": "exact or near duplicate of an earlier slice (--dedupe=drop)"}


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
                  "of each split, first channel, tumor outlined in red; each row labelled with its split and class.",
                  ""]
    totals = {r: sum(o.dropped.get(r, 0) for o in outcomes) for r in DROP_REASONS}
    lines += ["## Dropped slices", "", "| reason | slices |", "|---|---|"]
    lines += [f"| {_REASON_TEXT[r]} | {n} |" for r, n in totals.items()] + [""]
    if "duplicates" in cohort:
        d = cohort["duplicates"]
        lines += ["## Duplicates", "", f"Exact: {d['groups']} group(s) of identical slices (hash of the decoded "
                  f"pixels), {d['slices']} slices in them; {d['cross_patient']} group(s) span several patients.", "",
                  f"Near, among single 2-D images (the same scan at another size or JPEG quality: perceptual "
                  f"hashes at most {d.get('near_threshold_bits', '?')} of 143 bits apart, thumbnails correlating "
                  f"at least 0.95): {d.get('near_groups', 0)} group(s), "
                  f"{d.get('near_slices', 0)} slices in them; {d.get('near_cross_patient', 0)} group(s) span several "
                  f"patients.", "", f"Mode `{config.dedupe}`, for exact and near duplicates alike: {d['action']}.", ""]
    if cohort.get("intensity"):
        lines += _intensity_lines(cohort["intensity"])
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


def healthy_intensity(images: np.ndarray, masks: np.ndarray) -> float:
    """Mean normalised intensity (all channels) of a case's written slices over head pixels at
    least 2 pixels away from any tumor; NaN when there are none. Background is -1
    (`schema.BACKGROUND`) after normalisation, so the head is what lies above it."""
    from scipy import ndimage

    if not len(images):
        return float("nan")
    near_tumor = ndimage.binary_dilation(masks > 0, structure=np.ones((1, 5, 5), bool))
    healthy = (images.max(axis=-1) > schema.BACKGROUND + 1e-3) & ~near_tumor
    return float(images[healthy].mean()) if healthy.any() else float("nan")


def intensity_groups(cases: list) -> list:
    """Each group of cases (the tumor-free cases; each source folder, when the input's top-level
    folders hold several patients each) against the other cases: `cases` are dicts with case,
    patient, tumor_free, folder and mean (`healthy_intensity`). A group needs 2 cases on each side;
    a warning when the means differ by more than INTENSITY_GAP."""
    cases = [c for c in cases if np.isfinite(c["mean"])]
    groups = [("tumor-free cases", [c["tumor_free"] for c in cases])]
    folders = sorted({c["folder"] for c in cases})
    patients = {c["patient"] for c in cases}
    if 1 < len(folders) < len(patients):
        groups += [(f"cases under {folder}/", [c["folder"] == folder for c in cases]) for folder in folders]
    out = []
    for name, member in groups:
        member = np.asarray(member, bool)
        if member.sum() < 2 or (~member).sum() < 2:
            continue
        means = np.array([c["mean"] for c in cases])
        inside, rest = float(means[member].mean()), float(means[~member].mean())
        group = {"group": name, "cases": int(member.sum()), "mean": inside, "rest_cases": int((~member).sum()),
                 "rest_mean": rest}
        if abs(inside - rest) > INTENSITY_GAP:
            group["warning"] = (f"{name} ({group['cases']}) differ in healthy in-head intensity from the other "
                                f"{group['rest_cases']} cases: mean {inside:+.2f} against {rest:+.2f} on the [-1, 1] "
                                f"scale (more than {INTENSITY_GAP}); a classifier can tell them apart by brightness "
                                "alone: check their scanner, sequence and normalisation (--percentiles)")
        out.append(group)
    return out


def _intensity_lines(groups: list) -> list:
    lines = ["## In-head intensity by group", "",
             "Mean normalised intensity ([-1, 1]) of the written slices' head pixels at least 2 pixels from any "
             f"tumor, per case, averaged over a group's cases. A gap above {INTENSITY_GAP} is warned about: the "
             "group could be told apart by brightness alone.", "",
             "| group | cases | mean | other cases | their mean | gap |", "|---|---|---|---|---|---|"]
    for g in groups:
        gap = f"{g['mean'] - g['rest_mean']:+.2f}" + (" **(warning)**" if g.get("warning") else "")
        lines.append(f"| {g['group']} | {g['cases']} | {g['mean']:+.2f} | {g['rest_cases']} | {g['rest_mean']:+.2f} "
                     f"| {gap} |")
    return lines + [""]


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


def sheet_figure(panels: list):
    """The conversion sheet as a labelled figure: `panels` are (row key, image (S, S, C) in [-1, 1],
    mask (S, S)) with row keys `<i>-<split>-<0 tumor | 1 normal>`, sorted; one row per split and
    class, labelled so, the first channel in grey with the tumor outlined in red."""
    from ssagan_tf import figures

    rows: dict = {}
    for key, image, mask in panels:
        rows.setdefault(key, []).append((image, mask))
    labels = [f"{key.split('-')[1]}\n{('tumor', 'normal')[int(key.split('-')[2])]}" for key in rows]
    tiles = [[figures.to_unit(image) for image, _ in row] for row in rows.values()]
    outlines = [[mask > 0 for _, mask in row] for row in rows.values()]
    columns = max(len(row) for row in tiles)
    return figures.labelled_grid(tiles, [f"slice {i + 1}" for i in range(columns)], labels,
                                 title="Converted slices per split and class (first channel; tumor outlined in red)",
                                 outlines=outlines)


def write_sheet(path: str, panels: list) -> None:
    """`conversion_sheet.png` (see `sheet_figure`); nothing when there are no panels."""
    from ssagan_tf import figures

    if panels:
        figures.save(sheet_figure(panels), path)
