"""Patient-level K-fold cross-validation over a converted dataset.

The patients of all three splits are pooled and dealt into K folds (sorted, shuffled with
`fold_seed`, then dealt in turn, so fold sizes differ by at most one). Fold k tests its own
patients; its training patients are all the others, of whom a fifth (`VAL_FRACTION`, at least
one) is held out for early stopping and any other choice, so nothing is chosen on the test
patients. Which fifth is drawn so that it holds a fair share of each class's slices: of
`VAL_CANDIDATES` seeded draws, the first that leaves no class without validation slices where it
can and whose worst class share is nearest `VAL_FRACTION` (validation draw 2). Draw 1 kept the
first draw, which on LGG FLAIR gave one fold 3 of its 71 normal slices for validation, so its
warm-up, checkpoint selection and early stopping each rested on 3 slices. The evaluation
(`run_evaluate.py --folds=K`) and the augmenters' training (`run_train.py --folds=K --fold=k`)
call the same functions, so both see the same patients.

The unit is the patient: a patient with several scans (cases) is never split across folds. The
converter records which case belongs to which patient (`case_patients` in manifest.json); a
dataset converted before that record existed works when each patient has one case. The functions
that read a dataset take the `schema.Dataset` their command opened.

This module imports no TensorFlow except where it reads the records (`write_fold_dataset` and
`cohort_record`).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from ssagan_tf import io as durable
from ssagan_tf.data import combined, integrity, schema

VAL_FRACTION = 0.2
VAL_CANDIDATES = 64              # seeded draws of the validation patients, the fairest kept
VAL_DRAW_VERSION = 2             # in each fold's cohort record; 1: the first draw, whatever its classes
FOLD_DATA_NAME = "fold_data"     # the fold's training data, inside run_train's --model_dir


def case_patients(manifest) -> dict:
    """case id -> patient id for every case of the dataset (all splits)."""
    cases = sorted({c for split in manifest.cases.values() for c in split})
    recorded = manifest.raw.get("case_patients")
    if recorded:
        missing = [c for c in cases if c not in recorded]
        if missing:
            raise ValueError(f"{manifest.path}: case_patients misses case(s) {missing[:3]}; convert again")
        return {c: str(recorded[c]) for c in cases}
    patients = manifest.raw.get("patients") or {}
    if any(len(patients.get(s, [])) not in (0, len(manifest.cases.get(s, []))) for s in manifest.cases):
        raise ValueError(f"{manifest.path}: some patients have several cases, and this manifest does not say "
                         "which case is whose (written by an older converter); convert the dataset again "
                         "for cross-validation")
    return {c: c for c in cases}


def assign_folds(patients, folds: int, seed: int = 0) -> dict:
    """patient -> fold index in [0, folds): sorted, shuffled with `seed`, dealt in turn."""
    patients = sorted(set(str(p) for p in patients))
    if folds < 2 or folds > len(patients):
        raise ValueError(f"folds={folds}: need 2 <= folds <= the {len(patients)} patients")
    order = np.random.default_rng(seed).permutation(len(patients))
    return {patients[j]: i % folds for i, j in enumerate(order)}


def fold_patients(patients, folds: int, fold: int, seed: int = 0, slices: dict | None = None) -> dict:
    """{"test", "val", "train"}: sorted patient lists of fold `fold` (disjoint, covering all).

    `slices`: patient -> (normal slices, tumor slices) (`patient_slices`). Of `VAL_CANDIDATES`
    draws of the validation patients (seeded by `seed` and `fold`), the one kept is the first
    that leaves the fewest classes without a validation slice and, among those, whose worst share
    of a class's training-patient slices is nearest `VAL_FRACTION`; a class the training patients
    lack does not count. None: every draw is as fair as any, so the first."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold={fold}: must be in [0, {folds})")
    assignment = assign_folds(patients, folds, seed)
    test = sorted(p for p, k in assignment.items() if k == fold)
    rest = sorted(p for p, k in assignment.items() if k != fold)
    count = max(1, int(round(VAL_FRACTION * len(rest))))
    if count >= len(rest):
        raise ValueError(f"folds={folds}: fold {fold} leaves {len(rest)} training patient(s), too few to hold "
                         "one out for validation")
    rng = np.random.default_rng([seed, fold])
    draws = [rng.permutation(rest)[:count].tolist() for _ in range(VAL_CANDIDATES if slices else 1)]
    val = sorted(min(draws, key=lambda draw: _unfairness(draw, rest, slices)) if slices else draws[0])
    return {"test": test, "val": val, "train": sorted(set(rest) - set(val))}


def _unfairness(val, rest, slices: dict) -> tuple:
    """(classes of which the patients `val` hold no slice though `rest` do, the largest distance
    from `VAL_FRACTION` of the share of a class's slices over `rest` that `val` hold): smaller is
    fairer, a class left out of validation first."""
    counts = np.array([slices.get(p, (0, 0)) for p in rest], np.float64)
    held = counts[np.isin(np.asarray(rest, dtype=object), list(val))].sum(axis=0)
    totals = counts.sum(axis=0)
    shares = [abs(h / t - VAL_FRACTION) for h, t in zip(held, totals) if t > 0]
    return int(np.sum((held == 0) & (totals > 0))), max(shares, default=0.0)


def patient_slices(case_ids, labels, owners: dict) -> dict:
    """patient -> (normal slices, tumor slices), from each slice's case id and label (1 = tumor)
    and `owners` (case -> patient, `case_patients`)."""
    out = {}
    for case, label in zip(case_ids, labels):
        normal, tumor = out.get(owners[case], (0, 0))
        out[owners[case]] = (normal + (int(label) != 1), tumor + (int(label) == 1))
    return out


def kept_tumor_cases(cases_with_tumor, fraction: float, seed: int = 0) -> list:
    """The low-data regime's cases: round(fraction x cases) of them (at least one), drawn with
    `seed` from the sorted cases; all of them when fraction >= 1. Sorted."""
    cases = np.unique(np.asarray([str(c) for c in cases_with_tumor], dtype=object).astype(str))
    if fraction >= 1.0 or len(cases) == 0:
        return sorted(cases.tolist())
    count = max(1, int(round(fraction * len(cases))))
    return sorted(np.random.default_rng(seed).permutation(cases)[:count].tolist())


def cohort_record(dataset, folds: int, fold: int, seed: int, tumor_fraction: float) -> dict:
    """What a fold's training run records (config.json `cohort`, export.json): the source dataset
    (a `schema.Dataset`), the folds and their seed, the fold's patients, and the low-data regime's
    kept tumor cases."""
    manifest = dataset.manifest
    owners = case_patients(manifest)
    # Each slice's case and label, read from the records once (the manifest counts by split).
    labelled = [(case, label) for _, _, _, case, label in _records(manifest)]
    slices = patient_slices([c for c, _ in labelled], [lab for _, lab in labelled], owners)
    split = fold_patients(owners.values(), folds, fold, seed, slices)
    train_cases = sorted(c for c, p in owners.items() if p in set(split["train"]))
    record = {"source_data_dir": os.path.abspath(dataset.data_dir), "source_manifest_sha256": manifest.sha256,
              "folds": folds, "fold": fold, "fold_seed": seed, "val_draw": VAL_DRAW_VERSION,
              "test_patients": split["test"], "val_patients": split["val"], "train_patients": split["train"],
              "seen_patients": sorted(split["train"] + split["val"]), "tumor_fraction": float(tumor_fraction)}
    if tumor_fraction < 1.0:
        training = set(train_cases)
        with_tumor = sorted({case for case, label in labelled if label == 1 and case in training})
        record["kept_tumor_cases"] = kept_tumor_cases(with_tumor, tumor_fraction)
    return record


def _records(manifest):
    """(split, domain, raw record, case id, label) of every record of the dataset, in order."""
    import tensorflow as tf

    for split in schema.SPLITS:
        for domain in schema.DOMAINS:
            for path in integrity.check_shards(manifest, split, domain):
                for raw in tf.data.TFRecordDataset(path, manifest.storage.tf_compression).as_numpy_iterator():
                    features = tf.train.Example.FromString(raw).features.feature
                    yield (split, domain, raw, features["case_id"].bytes_list.value[0].decode(),
                           int(features["label"].int64_list.value[0]))


def write_fold_dataset(dataset, out_dir: str, cohort: dict) -> str:
    """A converted dataset at `out_dir` holding the fold's training patients of `dataset` (a
    `schema.Dataset`) only (`cohort` from `cohort_record`): train = its train patients (in the
    low-data regime with the tumor slices of the kept cases only), val = its validation patients,
    no test slices. Written once, atomically; a folder already holding this fold's data is
    reused, one holding anything else refused."""
    import tensorflow as tf

    marker = os.path.join(out_dir, schema.MANIFEST_NAME)
    if os.path.exists(out_dir):
        try:
            with open(marker) as f:
                existing = json.load(f).get("fold")
        except (OSError, ValueError):
            existing = None
        if existing == cohort:
            return out_dir
        if isinstance(existing, dict) and existing.get("val_draw", 1) != cohort.get("val_draw", 1):
            raise ValueError(f"{out_dir}: holds this fold's data with the validation patients of an earlier "
                             f"version (validation draw {existing.get('val_draw', 1)}, now {cohort['val_draw']}); "
                             "train this fold in a new --model_dir, or move this folder out of the way")
        raise ValueError(f"{out_dir}: holds {'another fold' if existing else 'something other than fold data'}; "
                         "use another --model_dir, or move this folder out of the way")
    manifest = dataset.manifest
    owners = case_patients(manifest)
    role = {p: r for r in ("train", "val") for p in cohort[f"{r}_patients"]}
    kept = set(cohort.get("kept_tumor_cases", [])) if cohort["tumor_fraction"] < 1.0 else None
    staging = f"{out_dir}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    writers, counts, cases = {}, {s: {d: 0 for d in schema.DOMAINS} for s in schema.SPLITS}, {s: set() for s in
                                                                                             schema.SPLITS}
    try:
        for split in schema.SPLITS:
            os.makedirs(os.path.join(staging, split))
        for _, domain, raw, case, label in _records(manifest):
            target = role.get(owners[case])
            if target is None or (target == "train" and label == 1 and kept is not None and case not in kept):
                continue
            key = (target, domain)
            if key not in writers:
                # The records are copied as they are, so the fold's shards keep the dataset's storage
                # (and its manifest entry, copied below).
                writers[key] = tf.io.TFRecordWriter(os.path.join(staging, target, schema.shard_name(domain, 0, 1)),
                                                    manifest.storage.writer_options())
            writers[key].write(raw)
            counts[target][domain] += 1
            cases[target].add(case)
        for writer in writers.values():
            writer.close()
        shards = {f"{s}/{schema.shard_name(d, 0, 1)}": integrity.describe_shard(
            os.path.join(staging, s, schema.shard_name(d, 0, 1)), n) for (s, d) in writers for n in [counts[s][d]]}
        raw_manifest = dict(manifest.raw, counts=counts, shards=shards, fold=cohort,
                            cases={s: sorted(c) for s, c in cases.items()},
                            patients={s: sorted({owners[c] for c in cases[s]}) for s in schema.SPLITS},
                            case_patients={c: owners[c] for s in cases.values() for c in s})
        if "labelled_train_patients" in raw_manifest:
            raw_manifest["labelled_train_patients"] = sorted(set(raw_manifest["labelled_train_patients"])
                                                             & set(cohort["train_patients"]))
        with open(os.path.join(staging, schema.MANIFEST_NAME), "w") as f:
            json.dump(raw_manifest, f, indent=2)
        durable.fsync_tree(staging)        # shards and manifest on disk before the folder's rename
        durable.replace_durably(staging, out_dir)
    except BaseException:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def run_datasets(run_config: dict) -> tuple:
    """The datasets a training run read (its config's `data_dir`, then its `extra_data_dirs`), each
    opened once, for what its export records (`training_cohort`): (main, [extras]), None in place
    of one that is no longer there (or no longer readable)."""
    def opened(data_dir):
        try:
            return schema.open(data_dir)
        except (OSError, ValueError):
            return None

    return opened(run_config.get("data_dir", "")), [opened(d) for d in run_config.get("extra_data_dirs") or []]


def training_cohort(run_config: dict, dataset, extras=()) -> dict:
    """The patients a training run saw, for its export's `export.json`: a fold run's `cohort`
    record as is; otherwise those of its dataset, `dataset` (the `schema.Dataset` of the run's
    `data_dir`): its train and validation patients (the ones training and its monitoring read).
    With extra datasets (`extras`, the Datasets of the run's `extra_data_dirs`,
    `ssagan_tf.data.combined`), their train patients too: in `seen_patients` those of extras
    converted from the main dataset's input (the same ids, the same people), in `other_cohorts`
    (one entry per extra from another input: source_data_dir, patient_namespace, seen_patients)
    the rest. {"seen_patients": None, ...} when a dataset is no longer there to ask (None in
    place of its Dataset, as `run_datasets` gives)."""
    if run_config.get("cohort"):
        return dict(run_config["cohort"])
    data_dir = run_config.get("data_dir", "")
    record = {"source_data_dir": os.path.abspath(data_dir) if data_dir else "", "folds": 0, "tumor_fraction": 1.0}
    if dataset is None:
        return dict(record, seen_patients=None)
    manifest = dataset.manifest
    try:
        owners = case_patients(manifest)
    except ValueError:
        return dict(record, seen_patients=None)
    seen = {owners[c] for s in ("train", "val") for c in manifest.cases.get(s, [])}
    record = dict(record, source_manifest_sha256=manifest.sha256)
    if not extras:
        return dict(record, seen_patients=sorted(seen))
    if any(extra is None for extra in extras):
        return dict(record, seen_patients=None)        # an extra dataset is gone: who it held is unknown
    same, others = combined.extra_cohorts(manifest, [extra.manifest for extra in extras])
    checksums = {os.path.abspath(extra.manifest.data_dir): extra.manifest.sha256 for extra in extras}
    for entry in others:
        entry["source_manifest_sha256"] = checksums[entry["source_data_dir"]]
    # The extras' train patients of the main dataset's input are its own ids; those of other inputs
    # are other people whatever their ids, recorded apart under their namespace.
    return dict(record, seen_patients=sorted(seen | set(same)), patient_namespace=combined.patient_namespace(manifest),
                extra_data_dirs=[os.path.abspath(extra.data_dir) for extra in extras], other_cohorts=others)
