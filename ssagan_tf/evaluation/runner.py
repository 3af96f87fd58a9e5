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

from ssagan_tf.data import schema
from ssagan_tf.data.pipeline import load_split_arrays
from ssagan_tf.evaluation import arms, metrics
from ssagan_tf.evaluation.augmenters import Augmenter, Translation, has_attention
from ssagan_tf.evaluation.classifier import Classifier, format_seconds, predict_probabilities, train_classifier
from ssagan_tf.evaluation.config import SYNTHETIC_ARMS, EvaluationConfig, check_inputs
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
                      mask_present: np.ndarray, tau: float) -> dict:
    """Dice and IoU of the thresholded `tumor_to_normal` attention (the paper's A_t) against the
    true whole-tumor masks of the test tumor slices that carry one, and the mean absolute change
    outside the attended region in both directions. Empty for systems without attention."""
    if not (has_attention(to_normal.attention) or has_attention(to_tumor.attention)):
        return {"has_attention": False}
    dice, iou = metrics.dice_iou(to_normal.attention[mask_present] >= tau, true_masks[mask_present])
    result = {"has_attention": True, "tau": tau, "masked_tumor_slices": int(mask_present.sum()),
              "dice": metrics.summarize(dice), "iou": metrics.summarize(iou)}
    for key, translation in (("outside_change_tumor_to_normal", to_normal),
                             ("outside_change_normal_to_tumor", to_tumor)):
        change = metrics.outside_change(translation.source, translation.image, translation.attention, tau)
        result[key] = metrics.summarize(change)
    return result


def score_augmenter(augmenter: Augmenter, train: dict, test: dict, tau: float,
                    need_synthetic: bool) -> dict:
    """Translate what the evaluation needs with one augmenter: every train slice (the pools the
    synthetic arms draw from) and the test slices (attention metrics and the sample grid)."""
    out = {}
    if need_synthetic:
        out["synthetic"] = (augmenter.translate("normal_to_tumor", train["image"][train["label"] == 0]),
                            augmenter.translate("tumor_to_normal", train["image"][train["label"] == 1]))
    tumor = test["label"] == 1
    out["test_to_normal"] = augmenter.translate("tumor_to_normal", test["image"][tumor])
    out["test_to_tumor"] = augmenter.translate("normal_to_tumor", test["image"][~tumor])
    out["attention"] = attention_metrics(out["test_to_normal"], out["test_to_tumor"], test["mask"][tumor],
                                         test["has_mask"][tumor] > 0, tau)
    return out


def run_one(config: EvaluationConfig, classifier: Classifier, row: Row, seed: int, data: dict,
            synthetic) -> dict:
    """Train and test one classifier; returns its test metrics and predictions."""
    images, labels, selected = arms.training_set(data["train"], row.arm, synthetic, row.ratio, seed)
    classic = row.arm in ("classic", "synthetic+classic")
    started = time.time()
    trained = train_classifier(
        classifier, arms.train_dataset(images, labels, config.batch_size, seed, classic),
        arms.eval_dataset(data["val"]["image"], data["val"]["label"], config.batch_size),
        config.epochs, config.patience, seed, config.verbose)
    test = data["test"]
    probabilities = predict_probabilities(trained.model, arms.eval_dataset(test["image"], test["label"],
                                                                          config.batch_size))
    result = metrics.classification_metrics(test["label"], probabilities, config.threshold)
    result.update(seed=seed, train_slices=int(len(labels)), train_tumor=int(np.sum(labels == 1)),
                  synthetic_slices=int(len(labels) - len(data["train"]["label"])),
                  epochs_run=trained.epochs_run, best_epoch=trained.best_epoch,
                  best_val_loss=trained.best_val_loss, seconds=round(time.time() - started, 2),
                  test_probabilities=[round(float(p), 6) for p in probabilities])
    if selected is not None:
        result["synthetic_sources"] = {k: v.tolist() for k, v in selected.items()}
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


def run_evaluation(config: EvaluationConfig) -> dict:
    """Run the whole evaluation and write `results.json`, `report.md` and the PNG plots to
    `config.output_dir`. Returns the results dictionary (as written to `results.json`)."""
    from ssagan_tf.evaluation import plots, report

    check_inputs(config)
    started = time.time()
    manifest = schema.read_manifest(config.data_dir)
    image_shape = (manifest.image_size, manifest.image_size, manifest.channels)
    augmenters = [Augmenter(name, path) for name, path in config.augmenters]
    for augmenter in augmenters:
        augmenter.check_input_shape(image_shape)
    os.makedirs(config.output_dir, exist_ok=True)
    data = {split: load_split_arrays(config.data_dir, split) for split in schema.SPLITS}
    low_data = None
    if config.tumor_fraction < 1.0:
        all_tumor = int(np.sum(data["train"]["label"] == 1))
        data["train"], kept = arms.keep_tumor_cases(data["train"], config.tumor_fraction)
        low_data = {"tumor_fraction": config.tumor_fraction, "kept_tumor_cases": kept,
                    "tumor_slices": int(np.sum(data["train"]["label"] == 1)), "tumor_slices_before": all_tumor}
        print(f"Low-data regime: the tumor slices of {len(kept)} training case(s) kept "
              f"({low_data['tumor_slices']} of {all_tumor})", flush=True)
    need_synthetic = any(arm in SYNTHETIC_ARMS for arm in config.arms)
    translations = {a.name: score_augmenter(a, data["train"], data["test"], config.tau, need_synthetic)
                    for a in augmenters}
    judged = {}
    if config.judge:
        from ssagan_tf.evaluation.judge import Judge, both_directions

        judge = Judge(config.judge)
        judged = {"judge": config.judge, "judge_test_auc": judge.test_auc, "augmenters": {
            a.name: both_directions(judge, data["test"], translations[a.name]["test_to_tumor"].image,
                                    translations[a.name]["test_to_normal"].image) for a in augmenters}}
    rows = plan_rows(config)
    choice = choose_precision(config.precision)
    print(f"{choice.describe()} for the ResNet18 classifiers", flush=True)
    classifier = Classifier(image_shape[0], image_shape[2], config.width, config.learning_rate, choice.precision)
    runs, total, began = {}, len(rows) * len(config.seeds), time.time()
    for row in rows:
        synthetic = translations[row.augmenter].get("synthetic") if row.augmenter else None
        runs[row.name] = []
        for seed in config.seeds:
            result = run_one(config, classifier, row, seed, data, synthetic)
            runs[row.name].append(result)
            done = sum(len(r) for r in runs.values())
            eta = (time.time() - began) / done * (total - done)
            print(f"classifier {done} of {total}: {row.name} seed {seed}: sensitivity {result['sensitivity']:.2f}, "
                  f"specificity {result['specificity']:.2f}, AUC {result['auc']:.3f} ({result['epochs_run']} epochs, "
                  f"{result['seconds']:.1f} s; ETA {format_seconds(eta)})", flush=True)
    results = {
        "config": asdict(config),
        "tensorflow": tf.__version__,
        "precision": {"classifier": choice.precision, "reason": choice.reason},
        "data": {split: split_summary(arrays, manifest.raw.get("patients", {}).get(split))
                 for split, arrays in data.items()},
        "image_shape": list(image_shape),
        "test_labels": data["test"]["label"].tolist(),
        "rows": [dict(asdict(row), name=row.name, summary=summarize_row(runs[row.name]),
                      runs=runs[row.name]) for row in rows],
        "comparisons": compare_rows(rows, runs, config.baseline_arm),
        "attention": {name: t["attention"] for name, t in translations.items()},
        "judged": judged,
        "low_data": low_data,
    }
    figures = plots.write_figures(config.output_dir, results, translations, data["test"],
                                  REPORTED_METRICS, config.sample_count)
    results["figures"] = figures
    results["seconds"] = round(time.time() - started, 1)
    report.write_results_json(os.path.join(config.output_dir, "results.json"), results)
    report.write_report(os.path.join(config.output_dir, "report.md"), results)
    return results
