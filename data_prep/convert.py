"""MRI volumes (or 2-D slices) -> sharded TFRecords, a manifest and a conversion report.

    python -m data_prep.convert --input=DIR --format=brats|pairs|folders|figshare --output_dir=DIR

Cases are read and preprocessed by parallel worker threads; the main thread writes the shards.
A bad case is reported (file and problem) and the others still convert; the command exits
non-zero when no case converted, or with --strict on any error.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from data_prep import preprocess
from data_prep.readers import FORMATS, ReaderOptions, discover, load
from data_prep.scan import CaseError
from data_prep.writer import ShardedWriter, labelled_patients, split_patients

REPORT_NAME = "conversion_report.md"


@dataclass(frozen=True)
class ConvertConfig:
    input_dir: str
    format: str
    output_dir: str
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    prep: preprocess.PrepOptions = field(default_factory=preprocess.PrepOptions)
    train_fraction: float = 0.7
    val_fraction: float = 0.1
    labelled_fraction: float = 1.0
    seed: int = 0
    num_shards: int = 8
    workers: int = 0          # 0: one per CPU core
    strict: bool = False
    overwrite: bool = False

    def check(self) -> None:
        """Reject bad settings before any work, naming the setting."""
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not os.path.isdir(self.input_dir):
            raise ValueError(f"--input: {self.input_dir} is not a directory")
        if not 0.0 < self.train_fraction <= 1.0 or not 0.0 <= self.val_fraction < 1.0 \
                or self.train_fraction + self.val_fraction > 1.0:
            raise ValueError("--train_fraction in (0, 1] and --val_fraction in [0, 1) must add up to at most 1, "
                             f"got {self.train_fraction} and {self.val_fraction}")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError(f"--labelled_fraction must be in [0, 1], got {self.labelled_fraction}")
        if self.prep.image_size < 8:
            raise ValueError(f"--image_size must be at least 8, got {self.prep.image_size}")
        if self.num_shards < 1:
            raise ValueError(f"--num_shards must be >= 1, got {self.num_shards}")
        low, high = self.prep.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"--percentiles must be 0 <= low < high <= 100, got {low},{high}")
        manifest = os.path.join(self.output_dir, "manifest.json")
        if os.path.exists(manifest) and not self.overwrite:
            raise ValueError(f"--output_dir: {self.output_dir} already holds a converted dataset; "
                             "pass --overwrite to replace it")


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


def _process(args):
    """Worker: read and preprocess one case. Returns (ref, SliceSet or None, error, seconds)."""
    ref, reader_options, prep_options = args
    start = time.perf_counter()
    try:
        scan = load(ref, reader_options)
        slices = preprocess.prepare(scan, prep_options)
        return ref, slices, "", time.perf_counter() - start
    except CaseError as err:
        return ref, None, str(err), time.perf_counter() - start
    except Exception as err:  # an unexpected failure of one case must not stop the others
        path = next(iter(ref.paths.values()), ref.case_id)
        return ref, None, f"{path}: {type(err).__name__}: {err}", time.perf_counter() - start


def _results(config: ConvertConfig, refs):
    """Per-case results in input order. Threads, not processes: SimpleITK's readers and numpy
    release the GIL, and threads cost no start-up imports and no pickling of volumes. At most
    two cases per worker are in flight, so memory stays bounded however fast the readers are."""
    jobs = [(ref, config.reader, config.prep) for ref in refs]
    workers = config.workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) <= 1:
        yield from map(_process, jobs)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for job in jobs:
            pending.append(pool.submit(_process, job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _clear_previous(output_dir: str) -> None:
    import glob

    for path in glob.glob(os.path.join(output_dir, "*", "*.tfrecord")) + \
            [os.path.join(output_dir, n) for n in ("manifest.json", REPORT_NAME)]:
        if os.path.exists(path):
            os.remove(path)


def _write_json_atomic(path: str, payload) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(tmp, path)


def convert(config: ConvertConfig, log=print) -> dict:
    """Convert a dataset; returns the manifest dict. Raises ValueError on bad settings or when no
    case converted (after writing the report)."""
    from ssagan_tf.data import schema

    config.check()
    refs, problems = discover(config.input_dir, config.format, config.reader)
    if not refs:
        raise ValueError(f"--input: no usable {config.format} case found in {config.input_dir}"
                         + "".join(f"\n  {p}: {why}" for p, why in problems))
    split_of = split_patients([r.patient_id for r in refs], config.train_fraction, config.val_fraction, config.seed)
    labelled = labelled_patients([p for p, s in split_of.items() if s == "train"], config.labelled_fraction,
                                 config.seed)
    os.makedirs(config.output_dir, exist_ok=True)
    writer = ShardedWriter(config.output_dir, config.num_shards)
    outcomes = [CaseOutcome(case_id=os.path.basename(p), patient_id="", paths={"": p}, error=f"{p}: {why}")
                for p, why in problems]
    channels, normalisation, start = None, {}, time.perf_counter()
    try:
        for done, (ref, slices, error, seconds) in enumerate(_results(config, refs), 1):
            split = split_of[ref.patient_id]
            outcome = CaseOutcome(ref.case_id, ref.patient_id, dict(ref.paths), split=split, seconds=seconds)
            if slices is not None and channels not in (None, slices.images.shape[-1]):
                slices, error = None, f"{ref.case_id}: {slices.images.shape[-1]} channels, others have {channels}"
            if slices is not None:
                channels = slices.images.shape[-1]
                outcome.labelled = slices.has_mask and (split != "train" or ref.patient_id in labelled)
                normalisation[ref.case_id] = slices.normalisation
                for image, mask, label, index in zip(slices.images, slices.masks, slices.labels, slices.slice_index):
                    domain = schema.DOMAINS[int(label)]
                    writer.write(split, domain, schema.serialize_slice(
                        image, mask, outcome.labelled, int(label), ref.case_id,
                        f"real:{os.path.relpath(next(iter(ref.paths.values())), config.input_dir)}", int(index)))
                outcome.tumor, outcome.normal = slices.n_tumor, slices.n_normal
            outcome.error = error
            outcomes.append(outcome)
            status = f"error: {error}" if error else f"{outcome.tumor} tumor, {outcome.normal} normal slices"
            eta = (time.perf_counter() - start) / done * (len(refs) - done)
            log(f"[{done}/{len(refs)}] {ref.case_id} ({split}): {status}  ({seconds:.1f} s, ETA {eta:.0f} s)")
        converted = [o for o in outcomes if not o.error]
        failed = [o for o in outcomes if o.error]
        if not converted or sum(o.tumor + o.normal for o in converted) == 0:
            raise ValueError(f"no case converted from {config.input_dir}; see {os.path.join(config.output_dir, REPORT_NAME)}")
        if config.strict and failed:
            raise ValueError(f"--strict: {len(failed)} case(s) failed; first: {failed[0].error}")
    except BaseException:
        writer.abort()
        _write_report(config, outcomes, None)
        raise
    if config.overwrite:
        _clear_previous(config.output_dir)
    writer.close()
    manifest = _manifest(config, outcomes, writer.counts, channels, normalisation, labelled)
    _write_json_atomic(os.path.join(config.output_dir, schema.MANIFEST_NAME), manifest)
    _write_report(config, outcomes, manifest)
    return manifest


def _manifest(config, outcomes, counts, channels, normalisation, labelled) -> dict:
    from ssagan_tf.data import schema

    converted = [o for o in outcomes if not o.error]
    settings = dataclasses.asdict(config)
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "image_size": config.prep.image_size,
        "channels": int(channels),
        "modalities": list(config.reader.modalities) if config.format == "brats" else ["image"] * int(channels),
        "counts": counts,
        "cases": {s: sorted(o.case_id for o in converted if o.split == s) for s in schema.SPLITS},
        "patients": {s: sorted({o.patient_id for o in converted if o.split == s}) for s in schema.SPLITS},
        "labelled_train_patients": sorted(labelled),
        "normalisation": {"method": "per-volume percentile clip over brain voxels, scaled to [-1, 1]",
                          "percentiles": list(config.prep.percentiles), "background": -1.0,
                          "per_case_bounds": {k: v["bounds"] for k, v in normalisation.items()}},
        "rejected": [{"case": o.case_id, "problem": o.error} for o in outcomes if o.error],
        "settings": settings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _write_report(config, outcomes, manifest) -> None:
    lines = ["# Conversion report", "", f"- input: `{config.input_dir}` (format `{config.format}`)",
             f"- output: `{config.output_dir}`", f"- image size {config.prep.image_size}, "
             f"min tumor pixels {config.prep.min_tumor_pixels}, normal margin {config.prep.normal_margin}", ""]
    if manifest is None:
        lines += ["**The conversion did not complete: no dataset was written.**", ""]
    else:
        lines += ["| split | normal slices | tumor slices |", "|---|---|---|"]
        lines += [f"| {s} | {c['normal']} | {c['tumor']} |" for s, c in manifest["counts"].items()] + [""]
    lines += ["| case | patient | split | tumor | normal | masks used | status |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        status = f"rejected: {o.error}" if o.error else "converted"
        lines.append(f"| {o.case_id} | {o.patient_id} | {o.split} | {o.tumor} | {o.normal} | "
                     f"{'yes' if o.labelled else 'no'} | {status.replace('|', '/')} |")
    os.makedirs(config.output_dir, exist_ok=True)
    tmp = os.path.join(config.output_dir, REPORT_NAME + ".tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(config.output_dir, REPORT_NAME))


if __name__ == "__main__":
    from data_prep.convert_cli import main

    sys.exit(main())
