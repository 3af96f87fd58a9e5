"""The evaluation's folds, the patients its augmenters saw, and the statistics pooled over folds.

Without --folds the dataset's own train/val/test split is the one "fold". With --folds=K the
patients of all splits are pooled and dealt by `ssagan_tf.data.folds`, every patient tested
exactly once. A fold's augmenter is refused when it saw any of that fold's test patients (read
from its export.json, written by `ssagan_tf.export`), or when in the low-data regime it trained on
other tumor cases than the fold's classifiers get; one that saw none of this dataset's patients
is a legitimate arm labelled "another cohort".
"""

from __future__ import annotations

import json
import os

import numpy as np

from ssagan_tf import metrics, run_dir
from ssagan_tf.data import folds as folding
from ssagan_tf.evaluation import arms, stats
from ssagan_tf.exported import resolve_version_dir

SPLITS = ("train", "val", "test")


def _names(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _take(arrays: dict, keep: np.ndarray) -> dict:
    return {k: v[keep] for k, v in arrays.items()}


def plan_folds(config, manifest, data: dict) -> list:
    """[{"index", "train", "val", "test", "patients": {split: [...]}, "owners"}] for every fold;
    `data` holds the dataset's three splits as arrays."""
    owners = folding.case_patients(manifest)
    if not config.folds:
        plan = {"index": None, **{s: data[s] for s in SPLITS}}
        plan["patients"] = {s: sorted({owners[c] for c in _names(data[s]["case_id"])}) for s in SPLITS}
        return [dict(plan, owners=owners)]
    pooled = {k: np.concatenate([data[s][k] for s in SPLITS]) for k in data["train"]}
    patient_of = np.array([owners[c] for c in _names(pooled["case_id"])], dtype=object)
    slices = folding.patient_slices(_names(pooled["case_id"]), pooled["label"], owners)
    plans = []
    for k in range(config.folds):
        split = folding.fold_patients(owners.values(), config.folds, k, config.fold_seed, slices)
        plan = {"index": k, "patients": split, "owners": owners}
        for name in SPLITS:
            plan[name] = _take(pooled, np.isin(patient_of, split[name]))
        plans.append(plan)
    return plans


def reduce_tumors(plan: dict, fraction: float) -> dict | None:
    """The low-data regime on a fold's train arrays (in place); returns its record or None."""
    if fraction >= 1.0:
        return None
    before = int(np.sum(plan["train"]["label"] == 1))
    plan["train"], kept = arms.keep_tumor_cases(plan["train"], fraction)
    return {"tumor_fraction": fraction, "kept_tumor_cases": kept,
            "tumor_slices": int(np.sum(plan["train"]["label"] == 1)), "tumor_slices_before": before}


def augmenter_path(path: str, fold) -> str:
    return path.replace("{fold}", str(fold)) if fold is not None else path


def export_cohort(version_dir: str) -> dict | None:
    """The `cohort` an export recorded in its export.json; for an export written before it did, the
    patients read from its training run's config.json (`source_model_dir`) when that is still
    there; None when neither says."""
    try:
        with open(os.path.join(version_dir, "export.json")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    if info.get("cohort"):
        return info["cohort"]
    try:
        with open(run_dir.config_path(info.get("source_model_dir") or "")) as f:
            run_config = json.load(f)
        return folding.training_cohort(run_config, *folding.run_datasets(run_config))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def patients_seen(cohort: dict, namespace: str | None = None) -> set:
    """The patient ids of a dataset from `namespace` (`combined.patient_namespace`; None: the ids
    are compared as they are) that an export's `cohort` record (`export_cohort`, with
    `seen_patients`) says its training saw. An export trained on several datasets records the
    patients of each input apart (`other_cohorts`): those of the dataset's input count, the ids of
    another input are other people, whatever they are."""
    seen = set(cohort["seen_patients"])
    if namespace is not None and cohort.get("patient_namespace"):
        if cohort["patient_namespace"] != namespace:
            seen = set()
        seen |= {p for other in cohort.get("other_cohorts") or [] if other.get("patient_namespace") == namespace
                 for p in other.get("seen_patients") or []}
    return seen


def check_cohort(name: str, version_dir: str, plan: dict, low_data: dict | None, cross_validated: bool,
                 namespace: str | None = None) -> dict:
    """{"cohort": "this dataset" | "another cohort" | "unknown", ...}, or ValueError when the
    augmenter saw the fold's test patients or, in the low-data regime, other tumor cases.
    `namespace` is where the evaluated dataset's patient ids come from
    (`combined.patient_namespace`): an export trained on several datasets records the patients
    of each input apart (`other_cohorts`, `patients_seen`)."""
    where = f"augmenter {name!r} ({version_dir})" + (f" for fold {plan['index']}" if plan["index"] is not None else "")
    cohort = export_cohort(version_dir)
    if not cohort or cohort.get("seen_patients") is None:
        if cross_validated:
            raise ValueError(f"{where}: its export.json does not say which patients it was trained on, so a leak "
                             "of the fold's test patients cannot be ruled out; export it again with this version "
                             "(python -m ssagan_tf.export)")
        return {"cohort": "unknown", "note": "its export.json does not record its training patients"}
    seen, test = patients_seen(cohort, namespace), set(plan["patients"]["test"])
    leaked = sorted(seen & test)
    if leaked:
        raise ValueError(f"{where}: it was trained on {len(leaked)} of the test patients ({', '.join(leaked[:5])}"
                         f"{', ...' if len(leaked) > 5 else ''}); train one per fold with run_train.py "
                         f"--folds=K --fold=k and give --augmenters=NAME=DIR_WITH_{{fold}}")
    everyone = set(plan["owners"].values())
    if not seen & everyone:
        return {"cohort": "another cohort", "seen_patients": len(seen)}
    wanted = low_data["kept_tumor_cases"] if low_data else None
    trained = cohort.get("kept_tumor_cases") if float(cohort.get("tumor_fraction", 1.0)) < 1.0 else None
    if wanted != trained:
        said = (f"the tumor slices of {len(trained)} case(s)" if trained is not None else "every tumor slice")
        need = (f"those of the {len(wanted)} case(s) the classifiers keep" if wanted is not None else "every one")
        raise ValueError(f"{where}: it was trained on {said} of its training patients, the classifiers here on "
                         f"{need}; train it with the same --tumor_fraction (run_train.py --folds=K --fold=k "
                         "--tumor_fraction=F)")
    return {"cohort": "this dataset", "seen_patients": len(seen), "fold": cohort.get("fold"),
            "tumor_fraction": cohort.get("tumor_fraction", 1.0)}


def resolved(path: str) -> str:
    return resolve_version_dir(path) if path else ""


def pool_seed(fold_runs: list, fold_tests: list, threshold: float) -> dict:
    """One seed's runs over the folds -> its test predictions pooled (in fold order) and their metrics."""
    if len(fold_runs) == 1:                  # the dataset's own split: the run as it is
        return dict(fold_runs[0], fold_auc=[fold_runs[0]["auc"]])
    labels = np.concatenate([t["label"] for t in fold_tests])
    probabilities = np.concatenate([r["test_probabilities"] for r in fold_runs])
    result = metrics.classification_metrics(labels, probabilities, threshold)
    def join(key):    # "a/b/c" in fold order
        return "/".join(str(r[key]) for r in fold_runs)

    result.update(seed=fold_runs[0]["seed"], epochs_run=join("epochs_run"), best_epoch=join("best_epoch"),
                  train_slices=join("train_slices"), synthetic_slices=join("synthetic_slices"),
                  fold_auc=[r["auc"] for r in fold_runs], test_probabilities=probabilities.tolist(),
                  synthetic_sources=[r.get("synthetic_sources") for r in fold_runs])
    return result


def pooled_statistics(name: str, seeds_pooled: list, labels, patients, threshold: float, resamples: int) -> dict:
    scores = np.array([run["test_probabilities"] for run in seeds_pooled])
    return {metric: stats.bootstrap_ci(metric, labels, patients, scores, threshold, resamples)
            for metric in ("auc", "balanced_accuracy")}


def paired_comparison(row: dict, baseline: dict, labels, patients, threshold: float, resamples: int) -> dict:
    """Row vs baseline on the same patients, folds and seeds: bootstrap CIs of the pooled
    differences and the paired tests over folds x seeds of the per-fold AUC."""
    a = np.array([run["test_probabilities"] for run in row["runs"]])
    b = np.array([run["test_probabilities"] for run in baseline["runs"]])
    out = {"row": row["name"], "baseline": baseline["name"]}
    for metric in ("auc", "balanced_accuracy"):
        out[metric] = stats.paired_bootstrap_ci(metric, labels, patients, a, b, threshold, resamples)
    units = [x - y for ra, rb in zip(row["runs"], baseline["runs"]) for x, y in zip(ra["fold_auc"], rb["fold_auc"])]
    out["tests"] = stats.paired_tests(units)
    return out
