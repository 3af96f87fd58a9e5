"""MRI volumes (or 2-D slices) -> sharded TFRecords, a manifest, a report and a contact sheet.

    python -m data_prep.convert --input=DIR --format=brats|pairs|folders|figshare --output_dir=DIR

Two passes. First, worker threads read and preprocess each case and the main thread stages its
candidate slices (under OUT/.staging-<pid>/); a bad case is reported (file and problem) and the
others still convert. Then, over the cases that converted: exact duplicates are found, patients
are split (duplicates kept in one split), normal slices are matched to the tumor slices' anatomy,
and the shards, manifest, report and sheet are written into the staging folder and swapped into
place. Exits non-zero when no case converted, a split would be empty, or with --strict on any error.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from data_prep import ownership, preprocess, selection
from data_prep.readers import FORMATS, ReaderOptions, check_for_format, check_own_splits, discover
from data_prep.report import (FAILED_REPORT_NAME, REPORT_NAME, SHEET_NAME, healthy_intensity, intensity_groups,
                              write_report, write_sheet)
from data_prep.scan import LayoutError
from data_prep.stage import Stage, results, signals_deferred, swap_into_place, terminate_as_interrupt
from data_prep.writer import ShardedWriter, labelled_patients
from ssagan_tf.choices import image_size_problem
from ssagan_tf import io as durable
from ssagan_tf.data import schema
from ssagan_tf.settings import Problems, setting

DEDUPE_MODES = ("group", "drop", "off")
SHEET_PER_ROW = 4
PROGRESS_SECONDS = 5.0     # at most one progress line this often (first, failed and last cases aside)


@dataclass(frozen=True)
class ConvertConfig:
    """One conversion; each field's help text is its flag's (`python -m data_prep.convert --help`,
    generated from the fields of this class, `ReaderOptions` and `PrepOptions`)."""

    input_dir: str = setting(help="Folder holding the dataset to convert.", flag="input")
    format: str = setting(help="Input layout: brats (BraTS 2013-2023 and MSD Task01 case folders), pairs (image + "
                               "mask volumes matched by name: NIfTI, NRRD, MHA or DICOM series folders), folders "
                               "(2-D class folders or name.tif + name_mask.tif pairs), figshare (brain-tumor .mat "
                               "files).", choices=FORMATS)
    output_dir: str = setting(help="Where shards, manifest.json and conversion_report.md are written: a new or "
                                   "empty folder, or one the converter wrote before; never --input, a folder inside "
                                   "it or holding it.")
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    prep: preprocess.PrepOptions = field(default_factory=preprocess.PrepOptions)
    train_fraction: float = setting(0.7, "Fraction of patients in the training split (the paper trains on half the "
                                         "cases to simulate scarce data: 0.5).")
    val_fraction: float = setting(0.1, "Fraction of patients in the validation split; the rest is test. With "
                                       "--keep_splits and no validation folder: the fraction of the dataset's "
                                       "training patients drawn for validation.")
    labelled_fraction: float = setting(1.0, "Fraction of training patients whose tumor masks are kept (has_mask = "
                                            "1); the others' are dropped, for semi-supervised runs. Val/test keep "
                                            "masks.")
    seed: int = setting(0, "Seed of the patient split and of the labelled subset.")
    num_shards: int = setting(8, "Shards per split and domain (fewer when there are fewer slices).")
    workers: int = setting(0, "Worker threads reading cases (>= 0); 0 = one per CPU core.")
    strict: bool = setting(False, "Fail (exit non-zero) when any case fails.")
    overwrite: bool = setting(False, "Replace a dataset the converter wrote in --output_dir, removing only the files "
                                     "its record (.conversion-files.json) lists. A folder holding anything else, or "
                                     "the input itself, is refused with or without it.")
    match_anatomy: bool = setting(
        True, "Draw normal slices of 3-D and stacked cases from the levels where the cohort's tumor slices lie: "
        "normal slices whose head area ratio (to the extent's largest head slice) is below the tumor slices' 5th "
        "percentile are dropped, and the rest are sampled (seeded by --seed) per tenth of the brain's axial extent "
        "in proportion to the tumor slices' positions. A warning (console and report) when the written normals' "
        "positions still differ from the tumors' by a Kolmogorov-Smirnov statistic above 0.15 (p < 0.05). The "
        "report shows both distributions.")
    dedupe: str = setting(
        "group", "Exact duplicate slices (same decoded pixels) and, among single 2-D images, near duplicates (the "
        "same scan at another size or JPEG quality: perceptual hashes at most 24 of 143 bits apart and thumbnails "
        "correlating >= 0.95): group keeps the patients sharing one in the same split, drop keeps only the first "
        "occurrence, off only reports them.", choices=DEDUPE_MODES)
    storage: str = setting(         # image dtype on disk (schema.IMAGE_DTYPES)
        schema.DEFAULT_STORAGE.image_dtype, "How slice images are stored: uint16 (default) quantises [-1, 1] to "
        "65536 levels, every value within 1.532e-5 of the float32 one, -1 (background) and 1 exact; uint8 to 256 "
        "levels (within 0.00393); float32 as computed (twice uint16's bytes). Readers take every storage, and "
        "datasets written before this flag.", choices=("uint16", "uint8", "float32"))
    compression: str = setting(     # shard files (schema.COMPRESSIONS)
        schema.DEFAULT_STORAGE.compression, "Shard files: gzip (default; background and masks shrink to almost "
        "nothing, docs/formats.md has the sizes and read speeds) or none.", choices=("gzip", "none"))

    def image_storage(self) -> schema.Storage:
        return schema.Storage(self.storage, self.compression)

    def __post_init__(self):
        """Check the values, naming each bad setting by its flag, every problem in one ConfigError
        (a ValueError); `check_inputs` checks the folders."""
        problems = Problems()
        need = problems.need
        prep = self.prep
        for flag, value in (("input", self.input_dir), ("format", self.format), ("output_dir", self.output_dir)):
            need(value, f"--{flag} is required")
        need(not self.format or self.format in FORMATS,
             f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        need(0.0 < self.train_fraction <= 1.0 and 0.0 <= self.val_fraction < 1.0
             and self.train_fraction + self.val_fraction <= 1.0,
             "--train_fraction in (0, 1] and --val_fraction in [0, 1) must add up to at most 1, "
             f"got {self.train_fraction} and {self.val_fraction}")
        need(0.0 <= self.labelled_fraction <= 1.0,
             f"--labelled_fraction must be in [0, 1], got {self.labelled_fraction}")
        need(prep.image_size >= 8, f"--image_size must be at least 8, got {prep.image_size}")
        need(self.num_shards >= 1, f"--num_shards must be >= 1, got {self.num_shards}")
        need(self.workers >= 0, f"--workers must be >= 0 (0: one per CPU core), got {self.workers}")
        need(0.0 <= prep.min_brain_fraction < 1.0,
             f"--min_brain_fraction must be in [0, 1), got {prep.min_brain_fraction}")
        need(0.0 <= prep.min_brain_ratio <= 1.0, f"--min_brain_ratio must be in [0, 1], got {prep.min_brain_ratio}")
        need(prep.brain_length_mm >= 0, f"--brain_length_mm must be >= 0 (0: no bound), got {prep.brain_length_mm}")
        need(prep.field_of_view in preprocess.FIELDS_OF_VIEW,
             f"--field_of_view must be one of {', '.join(preprocess.FIELDS_OF_VIEW)}, got {prep.field_of_view!r}")
        need(1 <= prep.min_tumor_pixels <= prep.image_size ** 2,
             f"--min_tumor_pixels must be in [1, image_size^2 = {prep.image_size ** 2}], got {prep.min_tumor_pixels}")
        need(prep.normal_margin >= 0, f"--normal_margin must be >= 0, got {prep.normal_margin}")
        if prep.slice_range is not None:
            start, stop = prep.slice_range
            need(not ((start is not None and start < 0) or (stop is not None and stop < 0)
                      or (start is not None and stop is not None and stop <= start)),
                 f"--slice_range must be START:STOP with 0 <= START < STOP, got {start}:{stop}")
        low, high = prep.percentiles
        need(0.0 <= low < high <= 100.0, f"--percentiles must be 0 <= low < high <= 100, got {low},{high}")
        need(self.storage in schema.IMAGE_DTYPES,
             f"--storage must be one of {', '.join(schema.IMAGE_DTYPES)}, got {self.storage!r}")
        need(self.compression in schema.COMPRESSIONS,
             f"--compression must be one of {', '.join(schema.COMPRESSIONS)}, got {self.compression!r}")
        need(self.dedupe in DEDUPE_MODES, f"--dedupe must be one of {', '.join(DEDUPE_MODES)}, got {self.dedupe!r}")
        need(not (self.reader.no_masks and not prep.assume_normal and self.format in ("brats", "pairs")),
             "--no_masks needs --assume_normal: without masks no slice can be labelled tumor, so every brain "
             "slice is taken as normal only when you say so")
        need(not (prep.assume_normal and not self.reader.no_masks),
             "--assume_normal goes with --no_masks (a healthy cohort without masks)")
        if self.format in FORMATS:
            try:
                check_for_format(self.reader, self.format)
            except ValueError as err:
                problems.add(str(err))
        problems.raise_any()

    def check_inputs(self) -> None:
        """The input is a folder, and the output one the converter may write (`ownership`); raises
        ValueError before any work."""
        if not os.path.isdir(self.input_dir):
            raise ValueError(f"--input: {self.input_dir} is not a directory")
        ownership.check_output(self.input_dir, self.output_dir, self.overwrite, "manifest.json")


@dataclass
class CaseOutcome:
    case_id: str
    patient_id: str
    paths: dict
    split: str = ""
    tumor: int = 0
    normal: int = 0
    labelled: bool = False
    error: str = ""
    seconds: float = 0.0
    dropped: dict = field(default_factory=dict)
    own_split: str | None = None
    staged: str = ""                  # the staged slices (.npz), when the case converted
    slices: dict = field(default_factory=dict)   # small per-slice arrays: labels, position, area_ratio, hash


def _modalities(config: ConvertConfig, channels: int) -> list:
    """The names of the written channels, as the reader produced them."""
    reader = config.reader
    if config.format in ("brats", "pairs") or (config.format == "folders" and reader.channel_names
                                                and reader.channel_names != ("rgb",)):
        return list(reader.modalities)
    if config.format == "figshare" and reader.channel_names:
        return list(reader.channel_names)
    return ["image"] * int(channels)


def untrainable_size_warning(size: int) -> str | None:
    """Said at the start of a conversion and recorded in its warnings: slices of a size the
    translation networks refuse suit the classifiers and the judge, not run_train.py."""
    problem = image_size_problem(size)
    return None if problem is None else (f"--image_size={size}: run_train.py will refuse these slices ({problem}); "
                                         "the classifiers and the judge take them")


class Progress:
    """The first pass's console lines: `[done/total] case: status (N converted, M failed; rate
    cases/s, ETA s)` at the first case, at the last, for every case that fails (as it happens),
    and otherwise only once `every` seconds have passed since the last line: a 2-D collection of
    thousands of images gives a line every few seconds, not one per image. `clock` gives seconds
    (injectable, for tests)."""

    def __init__(self, total: int, log=print, clock=time.perf_counter, every: float = PROGRESS_SECONDS):
        self.total, self.log, self.clock, self.every = total, log, clock, every
        self.start = self.last = clock()
        self.done = self.failed = 0

    def case(self, case_id: str, status: str, failed: bool = False) -> None:
        now = self.clock()
        self.done += 1
        self.failed += int(failed)
        if not (self.done == 1 or self.done == self.total or failed or now - self.last >= self.every):
            return
        elapsed = now - self.start
        rate = f"{self.done / elapsed:.1f} cases/s" if elapsed > 0 else "- cases/s"
        eta = elapsed / self.done * (self.total - self.done)
        self.log(f"[{self.done}/{self.total}] {case_id}: {status}  ({self.done - self.failed} converted, "
                 f"{self.failed} failed; {rate}, ETA {eta:.0f} s)")
        self.last = now


def convert(config: ConvertConfig, log=print, clock=time.perf_counter) -> dict:
    """Convert a dataset; returns the manifest dict. Raises ValueError on bad settings, when no
    case converted, when a split would be empty or the disk is full (after writing the report).
    `log` takes the console lines; `clock` (seconds) times the progress lines (`Progress`)."""
    config.check_inputs()
    cohort: dict = {}
    try:
        refs, problems = discover(config.input_dir, config.format, config.reader)
    except LayoutError:
        raise
    except ValueError as err:     # nothing of the format under --input: the flags point elsewhere
        raise LayoutError(str(err)) from None
    if not refs:
        raise LayoutError(f"--input: no usable {config.format} case found in {config.input_dir}"
                          + "".join(f"\n  {p}: {why}" for p, why in problems))
    if config.reader.keep_splits and check_own_splits(refs, config.input_dir, config.val_fraction):
        cohort["val_from_train"] = True
        log(f"--keep_splits: {config.input_dir} has no validation folder; validation takes "
            f"--val_fraction={config.val_fraction} of the dataset's training patients")
    os.makedirs(config.output_dir, exist_ok=True)
    ownership.check_not_in_use(config.output_dir)
    for removed in ownership.clean_stale(config.output_dir):
        log(f"removed {removed}, left by an interrupted conversion")
    outcomes = [CaseOutcome(case_id=_relative(p, config.input_dir), patient_id="", paths={"": p},
                            error=f"{p}: {why}") for p, why in problems]
    if untrainable_size_warning(config.prep.image_size):
        log(f"warning: {untrainable_size_warning(config.prep.image_size)}")
    stage = Stage(config.output_dir)
    restore = terminate_as_interrupt()
    try:
        channels, normalisation = _read_cases(config, refs, stage, outcomes, Progress(len(refs), log, clock))
        manifest = _write_dataset(config, stage, outcomes, channels, normalisation, cohort)
        for warning in cohort["warnings"]:
            log(f"warning: {warning}")
        with signals_deferred() as caught:
            swap_into_place(stage.dataset_dir, config.output_dir)
    except BaseException as err:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            cohort["failure"] = f"The disk is full: {err}."
        report = _write_report_safely(config, outcomes, cohort, stage)
        stage.remove()
        if "failure" in cohort:
            raise ValueError(f"{cohort['failure']} Nothing of this run was kept; free space and convert again "
                             f"(see {report})") from None
        raise
    finally:
        restore()
    stage.remove()
    if caught:      # the new dataset is complete and in place; the interruption still ends the run
        raise KeyboardInterrupt(f"signal {caught[0]}")
    return manifest


def _read_cases(config, refs, stage, outcomes, progress: Progress):
    """First pass: read and preprocess every case, stage its slices. Returns (channels, bounds)."""
    channels, normalisation = None, {}
    for ref, slices, error, seconds in results(refs, config.reader, config.prep, config.workers):
        outcome = CaseOutcome(ref.case_id, ref.patient_id, dict(ref.paths), seconds=seconds,
                              own_split=ref.extra.get("split"))
        if slices is not None and channels not in (None, slices.images.shape[-1]):
            slices, error = None, f"{ref.case_id}: {slices.images.shape[-1]} channels, others have {channels}"
        if slices is not None:
            channels = slices.images.shape[-1]
            normalisation[ref.case_id] = slices.normalisation
            outcome.staged = stage.save_case(len(outcomes), slices)
            outcome.dropped = dict(slices.dropped)
            outcome.slices = {"labels": slices.labels, "position": slices.position,
                              "area_ratio": slices.area_ratio, "hash": slices.pixel_hash,
                              "outside_extent": slices.outside_extent,
                              "near": selection.near_signatures(slices.images) if _single_image(ref) else None,
                              "index": slices.slice_index, "has_mask": slices.has_mask}
            outcome.tumor, outcome.normal = slices.n_tumor, slices.n_normal
        outcome.error = error
        outcomes.append(outcome)
        status = f"error: {error}" if error else f"{outcome.tumor} tumor, {outcome.normal} normal candidate slices"
        progress.case(ref.case_id, status, failed=bool(error))
    converted = [o for o in outcomes if not o.error]
    failed = [o for o in outcomes if o.error]
    if not converted or sum(o.tumor + o.normal for o in converted) == 0:
        raise ValueError(f"no case converted from {config.input_dir}; see "
                         f"{os.path.join(config.output_dir, REPORT_NAME)}")
    if config.strict and failed:
        raise ValueError(f"--strict: {len(failed)} case(s) failed; first: {failed[0].error}")
    return channels, normalisation


def _write_dataset(config, stage, outcomes, channels, normalisation, cohort) -> dict:
    """Second pass: duplicates, splits, anatomy, then shards, manifest, report and sheet."""
    converted = [o for o in outcomes if not o.error]
    keep = {id(o): np.ones(len(o.slices["labels"]), bool) for o in converted}
    links = _duplicates(config, converted, keep, cohort)
    _match_anatomy(config, converted, keep, cohort)
    # Splits go to the patients that still contribute a slice, so none is an empty seat.
    contributing = [o for o in converted if keep[id(o)].any()]
    split_of = selection.assign_splits([o.patient_id for o in contributing],
                                       {o.patient_id: o.own_split for o in contributing if o.own_split},
                                       links, config.train_fraction, config.val_fraction, config.seed,
                                       val_from_train=cohort.get("val_from_train", False))
    if cohort.get("val_from_train"):
        drawn = sorted({o.patient_id for o in contributing if o.own_split == "train"
                        and split_of.get(o.patient_id) == "val"})
        cohort["own_splits"] = {"validation": f"drawn from the dataset's training patients (--val_fraction="
                                              f"{config.val_fraction})", "val_patients": len(drawn)}
    for o in converted:
        o.split = split_of.get(o.patient_id, "")
        if not keep[id(o)].any():
            o.tumor = o.normal = 0      # every slice dropped (duplicates, anatomy): the report says why
    _check_splits(config, contributing, cohort)
    labelled = labelled_patients([p for p, s in split_of.items() if s == "train"], config.labelled_fraction,
                                 config.seed)
    storage = config.image_storage()
    writer = ShardedWriter(stage.dataset_dir, config.num_shards, storage)
    panels = _sheet_choice(config, contributing, keep)
    sheet, intensities = [], {}
    try:
        for o in contributing:
            o.labelled = o.slices["has_mask"] and (o.split != "train" or o.patient_id in labelled)
            data = stage.load_case(o.staged)
            source = f"real:{_relative(next(iter(o.paths.values())), config.input_dir)}"
            chosen = np.flatnonzero(keep[id(o)])
            for j in chosen:
                label = int(data["labels"][j])
                writer.write(o.split, schema.DOMAINS[label], schema.serialize_slice(
                    data["images"][j], data["masks"][j], o.labelled, label,
                    o.case_id, source, int(data["slice_index"][j]), storage))
                if (id(o), j) in panels:
                    sheet.append((panels[(id(o), j)], data["images"][j], data["masks"][j]))
            labels = data["labels"][chosen]
            o.tumor, o.normal = int((labels == 1).sum()), int((labels == 0).sum())
            intensities[id(o)] = healthy_intensity(data["images"][chosen], data["masks"][chosen])
        writer.close()
    except BaseException:
        writer.abort()
        raise
    _check_counts(config, writer.counts, cohort)
    cohort["intensity"] = intensity_groups(
        [{"case": o.case_id, "patient": o.patient_id, "tumor_free": o.tumor == 0, "mean": intensities[id(o)],
          "folder": _relative(next(iter(o.paths.values())), config.input_dir).split("/")[0]}
         for o in contributing if id(o) in intensities])
    cohort["warnings"] += [g["warning"] for g in cohort["intensity"] if g.get("warning")]
    if untrainable_size_warning(config.prep.image_size):
        cohort["warnings"].append(untrainable_size_warning(config.prep.image_size))
    manifest = _manifest(config, outcomes, writer.counts, channels, normalisation, labelled, cohort)
    manifest["shards"] = writer.shards
    durable.atomic_write(os.path.join(stage.dataset_dir, schema.MANIFEST_NAME),
                         json.dumps(manifest, indent=2, default=str))
    write_report(config, outcomes, manifest, cohort, directory=stage.dataset_dir)
    write_sheet(os.path.join(stage.dataset_dir, SHEET_NAME), sorted(sheet, key=lambda p: p[0]))
    return manifest


def _duplicates(config, converted, keep, cohort) -> list:
    """Exact duplicate slices and near duplicates among single 2-D images
    (`selection.near_duplicate_pairs`: the same scan at another size or JPEG quality), joined into one set of groups: reported either way; `group`
    links their patients (one split), `drop` keeps the first slice of each group only. Returns the
    patient links for the split."""
    groups = selection.duplicate_groups({i: o.slices["hash"] for i, o in enumerate(converted)})
    near = selection.near_duplicate_pairs({i: o.slices["near"] for i, o in enumerate(converted)
                                           if o.slices["near"] is not None})
    joined = selection.duplicate_components(groups, near)   # found in every mode, so "off" still reports them
    patients = lambda members: {converted[i].patient_id for i, _ in members}  # noqa: E731
    links = []
    if config.dedupe == "group":
        links = [(converted[m[0][0]].patient_id, converted[i].patient_id) for m, _ in joined for i, _ in m[1:]]
        action = "each group kept in one split"
    elif config.dedupe == "drop":
        for members, _ in joined:
            for i, j in members[1:]:
                if keep[id(converted[i])][j]:
                    keep[id(converted[i])][j] = False
                    converted[i].dropped["duplicate"] = converted[i].dropped.get("duplicate", 0) + 1
        action = "only the first slice of each group kept"
    else:
        action = "nothing done (duplicates may straddle splits)"
    near_groups = [m for m, has_near in joined if has_near]
    cohort["duplicates"] = {
        "groups": len(groups), "slices": sum(len(g) for g in groups),
        "cross_patient": sum(1 for g in groups if len(patients(g)) > 1),
        "near_groups": len(near_groups), "near_slices": sum(len(m) for m in near_groups),
        "near_pairs": len(near), "near_cross_patient": sum(1 for m in near_groups if len(patients(m)) > 1),
        "near_threshold_bits": selection.NEAR_DUPLICATE_BITS,
        "linked_cross_patient": sum(1 for m, _ in joined if len(patients(m)) > 1), "action": action}
    return links


def _single_image(ref) -> bool:
    """A case read from one 2-D image, whose slice may be the same picture as another case's at
    another size or JPEG quality (2-D collections travel between websites so). Slices of volumes
    are compared exactly only: the same level of different patients' brains looks alike by
    nature (the demo's phantom brains correlate above NEAR_CORRELATION), and volumes are not
    re-saved lossily."""
    return ref.format in ("folders", "figshare") and "slices" not in ref.extra


def _match_anatomy(config, converted, keep, cohort) -> None:
    """--match_anatomy over the converted cases (selection.match_anatomy): the normal slices it
    drops are counted per case; the distributions and any warning go to the report."""
    anatomy, dropped, warnings = selection.match_anatomy([o.slices for o in converted], [keep[id(o)] for o in converted],
                                                         config.match_anatomy, config.seed)
    for o, n in zip(converted, dropped):
        if n:
            o.dropped["anatomy"] = n
    cohort["anatomy"], cohort["warnings"] = anatomy, warnings


def _check_splits(config, converted, cohort) -> None:
    """Never write a dataset with an empty split: say how many patients there are and why."""
    patients = {s: {o.patient_id for o in converted if o.split == s} for s in ("train", "val", "test")}
    empty = [s for s, p in patients.items() if not p]
    if empty:
        n = len({o.patient_id for o in converted})
        hint = ""
        if config.format == "pairs" and config.reader.patient_level == 0:
            hint = ("; with --patient_level=0 every scan is already its own patient, so the dataset holds too few "
                    "scans (or too few that converted: see the rejected cases in the report)")
        elif config.format == "pairs":
            hint = (f"; patients are the first --patient_level={config.reader.patient_level} folder(s) of each path "
                    "under --input, so scans in one folder are one patient: lower it (0: each scan its own "
                    "patient) only if the scans really are of different patients")
        linked = cohort["duplicates"]["linked_cross_patient"] if config.dedupe == "group" else 0
        if linked:
            hint += (f"; {linked} group(s) of exact or near duplicate images span several patients, and "
                     "--dedupe=group keeps such patients in one split (--dedupe=drop removes the copies instead)")
        raise ValueError(f"split {', '.join(empty)} would be empty: {n} patient(s) converted, and splits hold whole "
                         f"patients (at least 3 are needed for train, val and test){hint}")


def _check_counts(config, counts, cohort) -> None:
    """An empty split fails; a split lacking one domain is written with a warning (a small
    cohort's validation patients may have no tumor slice large enough, for instance)."""
    empty = [s for s, c in counts.items() if sum(c.values()) == 0]
    if empty:
        raise ValueError(f"split {', '.join(empty)} has patients but no slice was kept for it; see the dropped "
                         f"slices in {os.path.join(config.output_dir, REPORT_NAME)}")
    cohort["warnings"] = cohort.get("warnings", []) + [f"split {s} has no {d} slices" for s, c in counts.items()
                                                       for d, n in c.items() if n == 0]


def _sheet_choice(config, converted, keep) -> dict:
    """(case, slice) -> row title for a few evenly spread tumor and normal slices of each split."""
    rows: dict = {}
    for o in converted:
        for j in np.flatnonzero(keep[id(o)]):
            label = int(o.slices["labels"][j])
            rows.setdefault(f"{('train', 'val', 'test').index(o.split)}-{o.split}-{1 - label}", []).append((id(o), j))
    chosen = {}
    for title, items in rows.items():
        picks = np.linspace(0, len(items) - 1, min(SHEET_PER_ROW, len(items))).round().astype(int)
        for k in picks:
            chosen[items[k]] = title
    return chosen


def _manifest(config, outcomes, counts, channels, normalisation, labelled, cohort) -> dict:
    converted = [o for o in outcomes if not o.error]
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "image_size": config.prep.image_size,
        "channels": int(channels),
        schema.STORAGE_KEY: config.image_storage().manifest_entry(),
        "modalities": _modalities(config, channels),
        "counts": counts,
        "cases": {s: sorted(o.case_id for o in converted if o.split == s) for s in schema.SPLITS},
        "patients": {s: sorted({o.patient_id for o in converted if o.split == s}) for s in schema.SPLITS},
        # Which scan is whose: cross-validation folds patients, never scans (ssagan_tf.data.folds).
        "case_patients": {o.case_id: o.patient_id for o in sorted(converted, key=lambda o: o.case_id)},
        "labelled_train_patients": sorted(labelled),
        "normalisation": {"method": "per-volume percentile clip over head voxels, scaled to [-1, 1]",
                          "percentiles": list(config.prep.percentiles), "background": schema.BACKGROUND,
                          "per_case_bounds": {k: v["bounds"] for k, v in normalisation.items()}},
        "rejected": [{"case": o.case_id, "problem": o.error} for o in outcomes if o.error],
        "dropped": {r: sum(o.dropped.get(r, 0) for o in outcomes) for r in preprocess.DROP_REASONS},
        "duplicates": cohort.get("duplicates", {}),
        "own_splits": cohort.get("own_splits", {}),
        "warnings": cohort.get("warnings", []),
        "anatomy": cohort.get("anatomy", {}),
        "settings": dataclasses.asdict(config),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _relative(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _write_report_safely(config, outcomes, cohort, stage) -> str:
    """The failure report, recorded as the converter's before it is written. Beside a dataset
    already in place (an interrupted or failed `--overwrite`) it is `conversion_failed.md`, so the
    intact dataset keeps its own report. On a full disk even it may not fit, which must not hide
    the cause. Returns its path."""
    name = FAILED_REPORT_NAME if os.path.isfile(os.path.join(config.output_dir, "manifest.json")) else REPORT_NAME
    try:
        owned = ownership.read_record(config.output_dir) or set()
        ownership.write_record(config.output_dir, owned | {name}, temp_dir=stage.root)
        write_report(config, outcomes, None, cohort, name=name, temp_dir=stage.root)
    except (OSError, ValueError) as err:
        print(f"convert: could not write the report: {err}", file=sys.stderr)
    return os.path.join(config.output_dir, name)
