"""Several converted datasets trained on together (`run_train.py --data_dir=MAIN,EXTRA,...`).

The first dataset is the main one: its train split trains, its validation split is what training
validates, judges and selects on, and its patients are the export's cohort. Each further dataset
(an *extra*, e.g. a healthy cohort converted with `--no_masks --assume_normal`) contributes the
slices of its **train split only**, by class: its normal slices join the normal domain, its tumor
slices (with their masks, where it has them) the tumor domain. Its val and test splits are not
read.

Patient ids are compared within a *namespace*: the input folder the converter read (the
manifest's `settings.input_dir`; a dataset that does not record one is its own namespace). Two
datasets converted from the same input share patient ids by construction, so one of an extra's
training patients found in the main dataset's val or test split is the same person on both sides
of the split, and is refused. Datasets from different inputs may share ids by accident
(`sub-01` in two cohorts): those are different people, never refused, and recorded under their
namespace in the export's cohort.

Plain Python (no TensorFlow): run_train.py checks all this before TensorFlow loads.
"""

from __future__ import annotations

import hashlib
import os

from ssagan_tf.data import integrity, schema


def patient_namespace(manifest: schema.Manifest) -> str:
    """Where the dataset's patient ids come from: the input folder it was converted from, as its
    manifest records it; for a manifest that records none, the dataset's own folder."""
    recorded = (manifest.raw.get("settings") or {}).get("input_dir")
    if isinstance(recorded, str) and recorded:
        return os.path.realpath(recorded) if os.path.isabs(recorded) else os.path.normpath(recorded)
    return "dataset:" + os.path.realpath(manifest.data_dir)


def split_patients(manifest: schema.Manifest) -> dict:
    """split -> sorted patient ids of that split (a case's patient from `case_patients` when the
    manifest records it, else the case id itself)."""
    recorded = manifest.raw.get("case_patients") or {}
    return {split: sorted({str(recorded.get(case, case)) for case in manifest.cases.get(split, [])})
            for split in schema.SPLITS}


def combined_counts(manifests, split: str = "train") -> dict:
    """domain -> slices of `split` summed over `manifests` (what the training pipeline reads)."""
    return {domain: sum(m.count(split, domain) for m in manifests) for domain in schema.DOMAINS}


def combined_checksum(manifests) -> str:
    """The identity of the training data: one dataset's `integrity.dataset_checksum` as it is (so
    a run on one dataset records what it always did); for several, the sha256 of their
    checksums in order."""
    checksums = [integrity.dataset_checksum(m) for m in manifests]
    if len(checksums) == 1:
        return checksums[0]
    return "sha256:" + hashlib.sha256("\n".join(checksums).encode()).hexdigest()


def extra_problem(main: schema.Manifest, extra: schema.Manifest, earlier=()) -> str | None:
    """Why `extra` cannot train beside `main` (and the extras before it, `earlier`), as one
    message naming it, or None: another slice size, channel count or modalities; the same
    dataset given twice (the same folder, or the same content elsewhere); no training slices;
    or a training patient that is in `main`'s val or test split (same namespace)."""
    name = f"--data_dir {extra.data_dir} (extra dataset)"
    if (extra.image_size, extra.channels) != (main.image_size, main.channels):
        return (f"{name} holds {extra.image_size}^2 x {extra.channels}-channel slices, the main dataset "
                f"{main.data_dir} {main.image_size}^2 x {main.channels}; convert both alike (--image_size, "
                "--modalities)")
    if extra.modalities and main.modalities and tuple(extra.modalities) != tuple(main.modalities):
        return (f"{name} holds the modalities {','.join(extra.modalities)}, the main dataset {main.data_dir} "
                f"{','.join(main.modalities)}; its channels would be other sequences (convert it with "
                f"--modalities={','.join(main.modalities)})")
    checksum = integrity.dataset_checksum(extra)
    for other in (main, *earlier):
        if os.path.realpath(other.data_dir) == os.path.realpath(extra.data_dir):
            return f"{name} is given twice in --data_dir; list each dataset once"
        if integrity.dataset_checksum(other) == checksum:
            return (f"{name} holds the same slices as {other.data_dir} (the same conversion, copied); "
                    "list each dataset once")
    if not any(extra.count("train", d) for d in schema.DOMAINS):
        return f"{name} has no slices in its train split, the only split an extra dataset contributes"
    if patient_namespace(extra) == patient_namespace(main):
        held_out = split_patients(main)
        train = set(split_patients(extra)["train"])
        for split in ("val", "test"):
            shared = sorted(train & set(held_out[split]))
            if shared:
                return (f"{name} trains on {len(shared)} patient(s) of the main dataset's {split} split "
                        f"({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''}; both were converted from "
                        f"{patient_namespace(main)}), which would put one patient in two splits; convert both "
                        "with the same --seed and split fractions, or leave it out")
    return None


def extra_cohorts(main: schema.Manifest, extras) -> tuple:
    """What the extras add to the patients a run saw (the export's cohort): (the train patients
    of extras converted from the main dataset's input, in its namespace; for each extra from
    another input, {"source_data_dir", "patient_namespace", "seen_patients"})."""
    namespace = patient_namespace(main)
    same, others = set(), []
    for extra in extras:
        train = split_patients(extra)["train"]
        if patient_namespace(extra) == namespace:
            same |= set(train)
        else:
            others.append({"source_data_dir": os.path.abspath(extra.data_dir),
                           "patient_namespace": patient_namespace(extra), "seen_patients": train})
    return sorted(same), others
