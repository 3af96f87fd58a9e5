"""`run_evaluation(config)`: the paper's classifier evaluation (section IV) in one call.

For each row (arm, augmenter, ratio) and each seed, a fresh ResNet18 is trained on that arm's
training set, early-stopped on the real validation split and scored on the real, case-level test
split. The augmenters are also scored directly: attention against the true tumor masks, and the
change they make outside the attended region.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

from ssagan_tf import metrics
from ssagan_tf.data import combined, schema
from ssagan_tf.data.pipeline import load_split_arrays
from ssagan_tf.evaluation import arms, crossval, ledger
from ssagan_tf.evaluation.config import SYNTHETIC_ARMS, EvaluationConfig
from ssagan_tf.evaluation.controls import ControlAugmenter
from ssagan_tf.evaluation.in_masks import DrawnInMasks
from ssagan_tf.exported import Translation, attention_present, load_translator
from ssagan_tf.judge import datasets, scoring
from ssagan_tf.judge.classifier import Classifier, format_seconds, predict_probabilities, train_classifier
from ssagan_tf.locking import DirectoryLock
from ssagan_tf.precision import choose_precision

# The numbers summarised over seeds, compared between arms and tabulated, in the paper's order.
REPORTED_METRICS = ("sensitivity", "specificity", "accuracy", "auc", "balanced_accuracy", "auc_hard")


@dataclass(frozen=True)
class Row:
    """One line of the paper's table: a training arm, with its augmenter and ratio when synthetic."""

    arm: str
    augmenter: str = ""
    ratio: float = 0.0

    @property
    def name(self) -> str:
        if not self.augmenter:
            return self.arm
        return f"{self.arm} [{self.augmenter} {self.ratio:g}:1]"


def plan_rows(config: EvaluationConfig) -> list:
    """Every row the configuration asks for, in table order."""
    rows = []
    for arm in config.arms:
        if arm in SYNTHETIC_ARMS:
            rows += [Row(arm, name, float(r)) for name in config.augmenter_names for r in config.ratios]
        else:
            rows.append(Row(arm))
    return rows


def attention_metrics(to_normal: Translation, to_tumor: Translation, true_masks: np.ndarray,
                      mask_present: np.ndarray, tau: float, declared: bool | None = None) -> dict:
    """Dice and IoU of the thresholded `tumor_to_normal` attention (the paper's A_t) against the
    true whole-tumor masks of the test tumor slices that carry one, and the mean absolute change
    outside the attended region in both directions. Empty for systems without attention: those
    whose export.json says so (`declared`), or, when nothing says (a built-in control, a
    SavedModel without export.json), whose attention maps are all ones."""
    if declared is None:
        declared = attention_present(to_normal.attention) or attention_present(to_tumor.attention)
    if not declared:
        return {"has_attention": False}
    dice, iou = metrics.dice_iou(to_normal.attention[mask_present] >= tau, true_masks[mask_present])
    result = {"has_attention": True, "tau": tau, "masked_tumor_slices": int(mask_present.sum()),
              "dice": metrics.summarize(dice), "iou": metrics.summarize(iou)}
    for key, translation in (("outside_change_tumor_to_normal", to_normal),
                             ("outside_change_normal_to_tumor", to_tumor)):
        change = metrics.outside_change(translation.source, translation.image, translation.attention, tau)
        result[key] = metrics.summarize(change)
    return result


def translate_fold(augmenter, train: dict, test: dict, need_synthetic: bool) -> dict:
    """Translate what the evaluation needs with one augmenter: every train slice (the pools the
    synthetic arms draw from) and the test slices (attention metrics and the sample grid)."""
    directions = getattr(augmenter, "directions", ("normal_to_tumor", "tumor_to_normal"))
    out = {}
    if need_synthetic:
        out["synthetic_tumor"] = augmenter.translate("normal_to_tumor", train["image"][train["label"] == 0])
        if "tumor_to_normal" in directions:
            out["synthetic_normal"] = augmenter.translate("tumor_to_normal", train["image"][train["label"] == 1])
    tumor = test["label"] == 1
    out["test_to_normal"] = augmenter.translate("tumor_to_normal", test["image"][tumor])
    out["test_to_tumor"] = augmenter.translate("normal_to_tumor", test["image"][~tumor])
    return out


def score_translations(out: dict, test: dict, tau: float, declared: bool | None = None) -> dict:
    """The translations plus their attention metrics (`declared`: whether the augmenter has
    attention, as its export.json says; None: told from the maps); `synthetic` = the pair the
    arms draw from."""
    tumor = test["label"] == 1
    scored = dict(out, attention=attention_metrics(out["test_to_normal"], out["test_to_tumor"], test["mask"][tumor],
                                                   test["has_mask"][tumor] > 0, tau, declared))
    if "synthetic_tumor" in out:
        scored["synthetic"] = (out["synthetic_tumor"], out.get("synthetic_normal"))
    return scored


def run_one(config: EvaluationConfig, classifier: Classifier, row: Row, seed: int, data: dict,
            synthetic, fold_label: str = "") -> dict:
    """Train and test one classifier; returns its test metrics and predictions."""
    images, labels, selected = arms.training_set(data["train"], row.arm, synthetic, row.ratio, seed)
    base, classic = arms.arm_parts(row.arm)
    weights = val_weights = None
    if config.balance_classes:
        weights = datasets.balanced_class_weights(labels)
        val_weights = datasets.balanced_class_weights(data["val"]["label"])
    started = time.time()
    trained = train_classifier(
        classifier, datasets.train_dataset(images, labels, config.batch_size, seed, classic,
                                           mixing=base if base in datasets.MIXING else "",
                                           classic_impl=config.classic_impl, classic_strength=config.classic_strength),
        datasets.eval_dataset(data["val"]["image"], data["val"]["label"], config.batch_size, val_weights),
        config.epochs, config.patience, seed, config.verbose, class_weight=weights)
    test = data["test"]
    probabilities = predict_probabilities(trained.model, datasets.eval_dataset(test["image"], test["label"],
                                                                              config.batch_size))
    result = metrics.classification_metrics(test["label"], probabilities, config.threshold)
    result.update(seed=seed, train_slices=int(len(labels)), train_tumor=int(np.sum(labels == 1)),
                  synthetic_slices=int(len(labels) - len(data["train"]["label"])),
                  epochs_run=trained.epochs_run, best_epoch=trained.best_epoch,
                  best_val_loss=trained.best_val_loss, seconds=round(time.time() - started, 2),
                  test_probabilities=[round(float(p), 6) for p in probabilities])
    if selected is not None:
        result["synthetic_sources"] = {k: v.tolist() for k, v in selected.items()}
    if weights is not None:
        result["class_weights"] = {"normal": weights[0], "tumor": weights[1]}
    return result


def split_summary(arrays: dict, patients: list | None) -> dict:
    """Slice and case counts per class (and the patient count when the manifest lists patients,
    who may have several scans), for the report's sample-size statement."""
    summary = {"patients": len(patients) if patients is not None else None}
    for name, label in schema.LABELS.items():
        selected = arrays["label"] == label
        summary[name] = {"slices": int(selected.sum()),
                         "cases": int(np.unique(arrays["case_id"][selected]).size)}
    summary["cases"] = int(np.unique(arrays["case_id"]).size)
    summary["tumor_with_mask"] = int(np.sum((arrays["label"] == 1) & (arrays["has_mask"] > 0)))
    return summary



def summarize_row(runs: list) -> dict:
    return {key: metrics.summarize([run[key] for run in runs]) for key in REPORTED_METRICS}


def compare_rows(rows: list, runs: dict, baseline: str | None) -> list:
    """Paired per-seed differences of every row against the baseline arm's row."""
    if baseline is None:
        return []
    reference = runs[Row(baseline).name]
    comparisons = []
    for row in rows:
        if row.arm == baseline:
            continue
        comparisons.append({
            "row": row.name, "baseline": baseline,
            "metrics": {key: metrics.paired_differences([r[key] for r in runs[row.name]],
                                                        [r[key] for r in reference])
                        for key in REPORTED_METRICS}})
    return comparisons


# Rows that cost nothing beyond the classifier: every one that is not an exported augmenter's.
def is_cheap(row: dict, controls: tuple) -> bool:
    return row["arm"] != "none" and (not row["augmenter"] or row["augmenter"] in controls) \
        and row["augmenter"] != "identity"


def run_key(config: EvaluationConfig, plan: dict, row: Row, seed: int, precision: str, manifest_sha: str,
            augmenter: dict | None) -> dict:
    """Every setting that decides one classifier's result (the ledger's key)."""
    fields = ("epochs", "batch_size", "patience", "width", "learning_rate", "threshold", "tumor_fraction", "folds",
              "fold_seed", "weight_decay", "lr_schedule", "classic_impl", "classic_strength")
    key = {"data": manifest_sha, "fold": plan["index"], "test_patients": plan["patients"]["test"],
           "val_patients": plan["patients"]["val"], "row": row.name, "seed": seed, "precision": precision,
           "augmenter": augmenter, **{name: getattr(config, name) for name in fields}}
    if config.balance_classes:          # only when on: classifiers trained before the flag existed are still found
        key["balance_classes"] = True
    return key


def build_augmenters(config: EvaluationConfig, plan: dict, low_data, image_shape: tuple, namespace: str) -> tuple:
    """This fold's augmenters (exports and built-in controls) and what each saw; `namespace` is the
    dataset's patient namespace (`combined.patient_namespace`)."""
    loaded, cohorts = [], {}
    for name, path in config.augmenters:
        if not path:
            augmenter = ControlAugmenter(name, plan["train"])
            cohorts[name] = {"cohort": "built in", "identity": ledger.augmenter_identity("")}
        else:
            version_dir = crossval.resolved(crossval.augmenter_path(path, plan["index"]))
            cohorts[name] = dict(crossval.check_cohort(name, version_dir, plan, low_data, bool(config.folds),
                                                       namespace),
                                 path=version_dir, identity=ledger.augmenter_identity(version_dir))
            augmenter = load_translator(version_dir, name=name, kinds=("version", "base"), require_info=False)
            if name in config.in_masks:
                augmenter = DrawnInMasks(augmenter, plan["train"])
                cohorts[name].update(in_masks=True, identity=ledger.in_masks_identity(cohorts[name]["identity"]))
        classes = config.synthetic_classes(name)
        if len(classes) == 1:
            cohorts[name]["synthetic_classes"] = list(classes)
        augmenter.check_input_shape(image_shape)
        loaded.append(augmenter)
    return loaded, cohorts


def run_evaluation(config: EvaluationConfig, dataset: schema.Dataset | None = None) -> dict:
    """Run the whole evaluation, holding the output folder's lock, and write `results.json`,
    `report.md` and the PNG plots to `config.output_dir`; finished classifiers and translations
    are kept there and reused by a rerun. Returns the results dictionary. `dataset`: what
    `config.check_inputs()` returned, when the caller checked already (else it is checked here)."""
    dataset = config.check_inputs() if dataset is None else dataset
    with DirectoryLock(config.output_dir, ledger.LOCK_NAME, "an evaluation", "--output_dir"):
        return _run(config, dataset)


def _run(config: EvaluationConfig, dataset: schema.Dataset) -> dict:
    from ssagan_tf.evaluation import plots, report

    started = time.time()
    removed = ledger.retire_report(config.output_dir)
    if removed:
        print(f"Removed the previous {' and '.join(removed)} (rewritten at the end)", flush=True)
    manifest = dataset.manifest
    manifest_sha, namespace = manifest.sha256, combined.patient_namespace(manifest)
    image_shape = (dataset.image_size, dataset.image_size, dataset.channels)
    data = {split: load_split_arrays(dataset, split) for split in schema.SPLITS}
    plans = crossval.plan_folds(config, manifest, data)
    rows = plan_rows(config)
    need_synthetic = any(arm in SYNTHETIC_ARMS for arm in config.arms)
    choice = choose_precision(config.precision)
    print(f"{choice.describe()} for the ResNet18 classifiers", flush=True)
    classifier = Classifier(image_shape[0], image_shape[2], config.width, config.learning_rate, choice.precision,
                            config.weight_decay, config.lr_schedule)
    book, cache = ledger.Ledger(config.output_dir), ledger.TranslationCache(config.output_dir)
    fold_runs = {row.name: [] for row in rows}       # row -> per fold, per seed
    folds_record, first_translations, judged = [], {}, {}
    total, done, trained, began = len(plans) * len(rows) * len(config.seeds), 0, 0, time.time()
    for plan in plans:
        low_data = crossval.reduce_tumors(plan, config.tumor_fraction)
        label = f" (fold {plan['index']})" if plan["index"] is not None else ""
        if low_data:
            print(f"Low-data regime{label}: the tumor slices of {len(low_data['kept_tumor_cases'])} training case(s) "
                  f"kept ({low_data['tumor_slices']} of {low_data['tumor_slices_before']})", flush=True)
        augmenters, cohorts = build_augmenters(config, plan, low_data, image_shape, namespace)
        translations = {}
        for augmenter in augmenters:
            key = {"augmenter": cohorts[augmenter.name]["identity"], "name": augmenter.name, "data": manifest_sha,
                   "fold": plan["index"], "train_cases": sorted(set(crossval._names(plan["train"]["case_id"]))),
                   "test_patients": plan["patients"]["test"], "tumor_fraction": config.tumor_fraction,
                   "synthetic": need_synthetic}
            made = cache.load(key)
            if made is None:
                made = translate_fold(augmenter, plan["train"], plan["test"], need_synthetic)
                cache.save(key, made)
            translations[augmenter.name] = score_translations(made, plan["test"], config.tau,
                                                              getattr(augmenter, "has_attention", None))
        if plan is plans[0]:
            first_translations = translations
            if config.judge:
                judge = scoring.Judge(config.judge)
                judged = {"judge": config.judge, "judge_test_auc": judge.test_auc, "augmenters": {
                    name: scoring.measure(judge, {"normal_to_tumor": t["test_to_tumor"].image,
                                                  "tumor_to_normal": t["test_to_normal"].image}, plan["test"])
                    for name, t in translations.items()}}
        for row in rows:
            synthetic, identity = None, None
            if row.augmenter:
                classes = config.synthetic_classes(row.augmenter)
                synthetic = translations[row.augmenter].get("synthetic")
                if synthetic is not None:
                    synthetic = arms.keep_classes(synthetic, classes)
                identity = ledger.classes_identity(cohorts[row.augmenter]["identity"], classes)
            per_seed = []
            for seed in config.seeds:
                key = run_key(config, plan, row, seed, choice.precision, manifest_sha, identity)
                result = book.get(key)
                reused = result is not None
                if result is None:
                    result = run_one(config, classifier, row, seed, plan, synthetic, label)
                    book.put(key, result)
                per_seed.append(result)
                done += 1
                trained += 0 if reused else 1
                eta = (time.time() - began) / max(trained, 1) * (total - done)
                print(f"classifier {done} of {total}: {row.name}{label} seed {seed}: sensitivity "
                      f"{result['sensitivity']:.2f}, specificity {result['specificity']:.2f}, AUC {result['auc']:.3f} "
                      f"({result['epochs_run']} epochs, {result['seconds']:.1f} s{', reused' if reused else ''}; "
                      f"ETA {format_seconds(eta)})", flush=True)
            fold_runs[row.name].append(per_seed)
        folds_record.append({"fold": plan["index"], "patients": plan["patients"], "low_data": low_data,
                             "augmenters": {n: {k: v for k, v in c.items() if k != "identity"}
                                            for n, c in cohorts.items()},
                             "data": {split: split_summary(plan[split], sorted({plan["owners"][c] for c in
                                      crossval._names(plan[split]["case_id"])})) for split in schema.SPLITS},
                             "attention": {n: t["attention"] for n, t in translations.items()}})
    if book.reused:
        print(f"Reused {book.reused} finished classifier(s) from {book.directory}", flush=True)
    results = assemble(config, plans, rows, fold_runs, folds_record, choice, image_shape, judged)
    figures = plots.write_figures(config.output_dir, results, first_translations, plans[0]["test"],
                                  REPORTED_METRICS, config.sample_count)
    results["figures"] = figures
    results["classifiers_reused"] = book.reused
    results["seconds"] = round(time.time() - started, 1)
    report.write_results_json(os.path.join(config.output_dir, "results.json"), results)
    report.write_report(os.path.join(config.output_dir, "report.md"), results)
    return results


def assemble(config, plans, rows, fold_runs, folds_record, choice, image_shape, judged) -> dict:
    """Pool each row's folds per seed, summarise, bootstrap and compare."""
    tests = [plan["test"] for plan in plans]
    labels = np.concatenate([t["label"] for t in tests])
    patients = np.array([plans[0]["owners"][c] for t in tests for c in crossval._names(t["case_id"])], dtype=object)
    runs = {row.name: [crossval.pool_seed([fold[i] for fold in fold_runs[row.name]], tests, config.threshold)
                       for i in range(len(config.seeds))] for row in rows}
    result_rows = []
    for row in rows:
        entry = dict(asdict(row), name=row.name, summary=summarize_row(runs[row.name]), runs=runs[row.name],
                     fold_runs=fold_runs[row.name])
        entry["pooled"] = crossval.pooled_statistics(row.name, runs[row.name], labels, patients, config.threshold,
                                                     config.bootstrap_resamples)
        result_rows.append(entry)
    by_name = {r["name"]: r for r in result_rows}
    paired = []
    baseline = config.baseline_arm
    controls = tuple(n for n, p in config.augmenters if not p)
    cheap = [r for r in result_rows if is_cheap(r, controls)]
    best = max(cheap, key=lambda r: r["pooled"]["auc"]["estimate"], default=None)
    references = [by_name[Row(baseline).name]] if baseline else []
    if best is not None and (not references or best["name"] != references[0]["name"]):
        references.append(best)
    for reference in references:
        for row in result_rows:
            if row["name"] != reference["name"] and row["arm"] != "none":
                paired.append(dict(crossval.paired_comparison(row, reference, labels, patients, config.threshold,
                                                              config.bootstrap_resamples),
                                   best_cheap=reference is best))
    return {
        "config": asdict(config),
        "tensorflow": tf.__version__,
        "precision": {"classifier": choice.precision, "reason": choice.reason},
        "cross_validation": {"folds": config.folds, "fold_seed": config.fold_seed, "per_fold": folds_record,
                             "patients": int(len(set(patients)))},
        "data": folds_record[0]["data"] if not config.folds else pooled_summary(folds_record),
        "image_shape": list(image_shape),
        "test_labels": labels.tolist(),
        "test_patients": patients.tolist(),
        "rows": result_rows,
        "comparisons": compare_rows(rows, runs, baseline),
        "paired": paired,
        "best_cheap_baseline": best["name"] if best else None,
        "attention": folds_record[0]["attention"],
        "judged": judged,
        "low_data": folds_record[0]["low_data"],
    }


def pooled_summary(folds_record: list) -> dict:
    """Split sizes summed over folds (each patient is tested once, trained on K-1 times)."""
    out = {}
    for split in schema.SPLITS:
        parts = [f["data"][split] for f in folds_record]
        out[split] = {"patients": sum(p["patients"] or 0 for p in parts), "cases": sum(p["cases"] for p in parts),
                      "tumor_with_mask": sum(p["tumor_with_mask"] for p in parts),
                      **{name: {"slices": sum(p[name]["slices"] for p in parts),
                                "cases": sum(p[name]["cases"] for p in parts)} for name in schema.LABELS}}
    return out
