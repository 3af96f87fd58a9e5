"""ssagan_tf/data/folds.py: patient-level folds, and a fold's training data written for run_train."""

import hashlib
import json
import os

import numpy as np
import pytest

from ssagan_tf.data import folds, schema


def test_folds_are_disjoint_by_patient_cover_everyone_and_are_seeded():
    patients = [f"P{i:02d}" for i in range(23)]
    seen_in_test = []
    for k in range(5):
        split = folds.fold_patients(patients, 5, k, seed=3)
        assert not set(split["test"]) & set(split["train"]) and not set(split["test"]) & set(split["val"])
        assert not set(split["train"]) & set(split["val"])
        assert sorted(split["test"] + split["val"] + split["train"]) == patients
        assert len(split["val"]) == round(0.2 * (23 - len(split["test"])))
        seen_in_test += split["test"]
    assert sorted(seen_in_test) == patients                       # every patient tested exactly once
    sizes = [len(folds.fold_patients(patients, 5, k, 3)["test"]) for k in range(5)]
    assert max(sizes) - min(sizes) <= 1
    assert folds.fold_patients(patients, 5, 0, 3) == folds.fold_patients(patients, 5, 0, 3)
    assert folds.fold_patients(patients, 5, 0, 3)["test"] != folds.fold_patients(patients, 5, 0, 4)["test"]
    with pytest.raises(ValueError, match="folds=30"):
        folds.assign_folds(patients, 30)


def _unfairness_by_hand(val, rest, slices):
    shares, empty = [], 0
    for c in (0, 1):
        total, held = sum(slices[p][c] for p in rest), sum(slices[p][c] for p in val)
        if total:
            shares.append(abs(held / total - 0.2))
            empty += held == 0
    return empty, max(shares)


def test_validation_patients_hold_a_fair_share_of_each_class():
    """Normal slices sit in 4 of 20 patients. The first seeded draw of a fold's validation
    patients (draw 1) is what `fold_patients` gives without slice counts; with them it keeps the
    fairest of the 64 seeded draws (the first of the fairest): fewest classes left without
    validation slices, then the worst class share's distance from a fifth, computed here by hand;
    test patients and the training pool stay as they were."""
    patients = [f"P{i:02d}" for i in range(20)]
    slices = {p: ((10, 5) if i < 4 else (0, 5)) for i, p in enumerate(patients)}
    changed = 0
    for k in range(4):
        first, fair = folds.fold_patients(patients, 4, k, 0), folds.fold_patients(patients, 4, k, 0, slices)
        assert fair["test"] == first["test"] and sorted(fair["val"] + fair["train"]) == sorted(
            first["val"] + first["train"])
        rest = sorted(first["val"] + first["train"])
        rng = np.random.default_rng([0, k])
        draws = [sorted(rng.permutation(rest)[:len(first["val"])].tolist()) for _ in range(64)]
        assert first["val"] == draws[0]
        scores = [_unfairness_by_hand(d, rest, slices) for d in draws]
        assert fair["val"] == draws[scores.index(min(scores))]
        assert sum(slices[p][0] for p in fair["val"]) > 0          # some normal slices to validate on
        changed += fair["val"] != first["val"]
    assert changed >= 1, "every first draw was already the fairest: the cohort tests nothing"
    # Equal counts: every draw is as fair, so the first stays.
    even = {p: (3, 3) for p in patients}
    assert folds.fold_patients(patients, 4, 1, 0, even) == folds.fold_patients(patients, 4, 1, 0)
    owners = {"a/1": "a", "a/2": "a", "b/1": "b"}
    assert folds.patient_slices(["a/1", "a/2", "a/2", "b/1"], [0, 1, 1, 0], owners) == {"a": (1, 2), "b": (1, 0)}


def test_training_and_evaluation_draw_the_same_validation_patients(tiny_dataset):
    import types

    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.evaluation.crossval import plan_folds

    source = schema.open(tiny_dataset)
    data = {s: load_split_arrays(source, s) for s in schema.SPLITS}
    plans = plan_folds(types.SimpleNamespace(folds=3, fold_seed=1), source.manifest, data)
    for k in range(3):
        cohort = folds.cohort_record(source, 3, k, 1, tumor_fraction=1.0)
        assert cohort["val_draw"] == folds.VAL_DRAW_VERSION == 2
        assert plans[k]["patients"] == {s: cohort[f"{s}_patients"] for s in ("test", "val", "train")}


class _Manifest:
    def __init__(self, cases, raw):
        self.cases, self.raw, self.path = cases, raw, "m/manifest.json"


def test_patients_with_several_scans_stay_together():
    manifest = _Manifest({"train": ["a/1", "a/2", "b/1"], "val": ["c/1"], "test": ["d/1", "d/2"]},
                         {"case_patients": {"a/1": "a", "a/2": "a", "b/1": "b", "c/1": "c", "d/1": "d", "d/2": "d"}})
    owners = folds.case_patients(manifest)
    assert owners["a/2"] == "a" and sorted(set(owners.values())) == ["a", "b", "c", "d"]
    old = _Manifest(manifest.cases, {"patients": {"train": ["a", "b"], "val": ["c"], "test": ["d"]}})
    with pytest.raises(ValueError, match="several cases"):
        folds.case_patients(old)
    assert folds.case_patients(_Manifest({"train": ["x"], "val": [], "test": ["y"]}, {})) == {"x": "x", "y": "y"}


def test_kept_tumor_cases_are_the_evaluations():
    from ssagan_tf.evaluation.arms import keep_tumor_cases

    cases = np.array([b"c%d" % i for i in range(8) for _ in range(2)])
    train = {"label": np.ones(16, np.int64), "case_id": cases}
    assert keep_tumor_cases(train, 0.25)[1] == folds.kept_tumor_cases([c.decode() for c in cases], 0.25)
    assert len(folds.kept_tumor_cases(cases, 0.25)) == 2


def test_fold_dataset_holds_only_the_folds_training_patients(tmp_path, tiny_dataset):
    from ssagan_tf.data.pipeline import load_split_arrays

    source = schema.open(tiny_dataset)
    cohort = folds.cohort_record(source, 2, 1, 0, tumor_fraction=0.5)
    assert sorted(cohort["seen_patients"] + cohort["test_patients"]) == sorted(
        c for s in schema.SPLITS for c in source.manifest.cases[s])
    assert cohort["source_manifest_sha256"] == hashlib.sha256(
        open(os.path.join(tiny_dataset, schema.MANIFEST_NAME), "rb").read()).hexdigest()
    out = folds.write_fold_dataset(source, str(tmp_path / "fold"), cohort)
    fold = schema.open(out)
    assert fold.manifest.raw["fold"] == cohort
    train, val = load_split_arrays(fold, "train"), load_split_arrays(fold, "val")
    assert {c.decode() for c in train["case_id"]} == set(cohort["train_patients"])
    assert {c.decode() for c in val["case_id"]} == set(cohort["val_patients"])
    assert {c.decode() for c in train["case_id"][train["label"] == 1]} == set(cohort["kept_tumor_cases"])
    assert fold.count("test", "tumor") == fold.count("test", "normal") == 0
    assert folds.write_fold_dataset(source, out, cohort) == out            # the same fold: reused
    with pytest.raises(ValueError, match="another fold"):
        folds.write_fold_dataset(source, out, folds.cohort_record(source, 2, 0, 0, 0.5))
    earlier = folds.write_fold_dataset(source, str(tmp_path / "earlier"), dict(cohort, val_draw=1))
    with pytest.raises(ValueError, match=r"earlier version \(validation draw 1, now 2\)"):
        folds.write_fold_dataset(source, earlier, cohort)
    assert not [n for n in os.listdir(tmp_path) if "staging" in n]
    record = folds.training_cohort({"data_dir": tiny_dataset}, *folds.run_datasets({"data_dir": tiny_dataset}))
    assert record["folds"] == 0 and len(record["seen_patients"]) == 4          # train + val cases, one patient each
    assert record["source_manifest_sha256"] == cohort["source_manifest_sha256"]
    gone, [there] = folds.run_datasets({"data_dir": str(tmp_path / "nowhere"), "extra_data_dirs": [tiny_dataset]})
    assert gone is None and there.data_dir == tiny_dataset
    assert folds.training_cohort({"data_dir": tiny_dataset}, gone)["seen_patients"] is None      # no longer there
    assert folds.training_cohort({"cohort": cohort}, None) == cohort
    assert json.loads(json.dumps(cohort)) == cohort
