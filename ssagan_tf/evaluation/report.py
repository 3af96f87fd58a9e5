"""`results.json` and `report.md`: the paper's Table I layout, the paired comparison with the
baseline arm, the attention metrics, and a plain statement of how much the numbers can carry."""

from __future__ import annotations

import json
import math
import os

from ssagan_tf import io as durable
from ssagan_tf.evaluation.ledger import to_json_safe

# Paper Table I, ResNet18 (%): real + classic augmentation -> real + SSA-CycleGAN synthetic at 1:1.
PAPER_TABLE_I = (("BraTS19", 67.66, 77.44, 72.69, 78.66), ("BraTS18", 69.83, 78.38, 73.77, 80.16),
                 ("BraTS15", 69.45, 80.93, 71.32, 80.43))
TABLE_METRICS = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"),
                 ("accuracy", "Accuracy"), ("auc", "AUC"))


def write_results_json(path: str, results: dict) -> None:
    durable.atomic_write(path, json.dumps(to_json_safe(results), indent=1, allow_nan=False))


def percent(summary: dict, signed: bool = False) -> str:
    """'77.4 ± 2.1' (percent, mean ± sample std over seeds); the std is left out when n < 2."""
    mean, std = summary.get("mean"), summary.get("std")
    if mean is None or not math.isfinite(mean):
        return "n/a"
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return f"{text} ± {100 * std:.1f}" if std is not None and math.isfinite(std) else text


def plain(summary: dict, digits: int = 3) -> str:
    mean, std = summary.get("mean"), summary.get("std")
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None and math.isfinite(std) else f"{mean:.{digits}f}"


def table(header: list, lines: list) -> list:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(str(cell) for cell in line) + " |" for line in lines]


def cases_and_patients(split: dict) -> str:
    """'6 cases (scans) of 3 patients', or '4 cases' when patients are unknown or one scan each."""
    cases, patients = split["cases"], split.get("patients")
    if patients and patients != cases:
        return f"{cases} cases (scans) of {patients} patients"
    return f"{cases} cases"


def sample_size_section(results: dict) -> list:
    """What the test set and the number of seeds allow one to conclude."""
    test, seeds = results["data"]["test"], len(results["config"]["seeds"])
    tumor, normal = test["tumor"]["slices"], test["normal"]["slices"]
    # Binomial standard error of a rate near 75% over independent slices: a floor on the real
    # uncertainty, since slices of one case are correlated.
    se_sens = 100 * math.sqrt(0.75 * 0.25 / max(tumor, 1))
    se_spec = 100 * math.sqrt(0.75 * 0.25 / max(normal, 1))
    unit = "patients" if test.get("patients") else "cases"
    cv = results.get("cross_validation") or {}
    resamples = results["config"].get("bootstrap_resamples", 2000)
    where = (f"Patient-level {cv['folds']}-fold cross-validation: every one of the {cv['patients']} patients is "
             "tested exactly once, by classifiers whose training, validation and augmenters never saw them; the "
             "test numbers below pool the folds. " if cv.get("folds") else "")
    lines = [
        "## Read this first: how much these numbers can carry", "",
        f"- {where}**The 95% confidence intervals** (CI) come from a patient-level bootstrap: the test patients "
        f"are resampled with replacement {resamples} times (seeded), the pooled AUC or balanced accuracy (mean "
        "over seeds) is recomputed on each resample, and the interval holds its middle 95%. It says how much "
        "the number would move with another set of patients like these; it does not cover the spread between "
        "training seeds (the ± below) or a cohort unlike this one. A paired difference's CI uses the same "
        "resamples for both rows: a CI wholly above 0 means the row beats its reference on these patients "
        "beyond what the choice of patients explains.",
        f"- The test {'folds have' if cv.get('folds') else 'split has'} {tumor} tumor and {normal} normal slices "
        f"from {cases_and_patients(test)} "
        f"({test['tumor']['cases']} cases with tumor slices). Slices of one patient are correlated, so the "
        f"effective sample size is closer to the number of {unit} than to the number of slices.",
        f"- Even counting slices as independent, a sensitivity near 75% carries a standard error of "
        f"about ±{se_sens:.1f} points and a specificity near 75% about ±{se_spec:.1f} points.",
        f"- {seeds} seed(s) per row. The ± is the sample standard deviation over seeds: it measures "
        "training randomness (initialisation, batch order, augmentation draws) on one fixed test set, "
        "not the sampling uncertainty of the test set."
        + (" With one seed no spread can be given." if seeds < 2 else ""),
        (f"- The sign test over {seeds} paired seeds cannot give a two-sided p below "
         f"{2.0 ** (1 - seeds):.3g}; below 6 seeds no difference can reach p < 0.05, whatever its size."
         if not cv.get("folds") else
         f"- The paired tests run over {cv['folds']} folds x {seeds} seed(s) = {cv['folds'] * seeds} units; the "
         f"sign test cannot give a two-sided p below {2.0 ** (1 - cv['folds'] * seeds):.3g} (below 6 units no "
         "difference can reach p < 0.05). Units share patients across seeds, so the CIs, not these p-values, "
         "carry the claim."),
        "- The paper's differences (about 8-11 points, Table I) were measured on thousands of BraTS "
        "slices; a difference of a few points here is within noise.", ""]
    return lines


def main_tables(results: dict) -> list:
    rows = results["rows"]
    lines = ["## Table 1: test metrics (%, mean ± std over seeds), in the paper's layout", ""]
    lines += table(["Arm", "Augmenter", "Synthetic:real", "Sensitivity", "Specificity", "Accuracy", "AUC", "Seeds"],
                   [[r["arm"], r["augmenter"] or "-", f"{r['ratio']:g}:1" if r["augmenter"] else "-"]
                    + [percent(r["summary"][key]) for key, _ in TABLE_METRICS]
                    + [r["summary"]["sensitivity"]["n"]] for r in rows])
    lines += ["", "## Table 2: balanced accuracy, AUC from hard labels, training", "",
              "AUC (hard labels) is the area under the one-point ROC of the thresholded predictions, "
              "which equals balanced accuracy, (sensitivity + specificity) / 2; some papers report it "
              "as \"AUC\".", ""]
    lines += table(["Row", "Balanced accuracy", "AUC (hard labels)", "Epochs run (best)", "Train slices (synthetic)"],
                   [[r["name"], percent(r["summary"]["balanced_accuracy"]), percent(r["summary"]["auc_hard"]),
                     ", ".join(f"{run['epochs_run']} ({run['best_epoch']})" for run in r["runs"]),
                     f"{r['runs'][0]['train_slices']} ({r['runs'][0]['synthetic_slices']})"] for r in rows])
    return lines + [""]


def interval(ci: dict, signed: bool = False) -> str:
    """'81.2 [74.0, 87.9]' in percent; n/a when undefined."""
    if not ci or ci.get("estimate") is None or ci.get("low") is None:
        return "n/a"
    form = "+.1f" if signed else ".1f"
    return f"{100 * ci['estimate']:{form}} [{100 * ci['low']:{form}}, {100 * ci['high']:{form}}]"


def pooled_section(results: dict) -> list:
    rows = results["rows"]
    if not rows or "pooled" not in rows[0]:
        return []
    lines = ["## Pooled over folds, with 95% patient-bootstrap CIs (%)", "",
             "AUC and balanced accuracy of the test predictions pooled over folds, mean over seeds, with the "
             "95% CI of a patient-level bootstrap (see Read this first).", ""]
    cohorts = {}
    for fold in (results.get("cross_validation") or {}).get("per_fold", []):
        for name, c in fold.get("augmenters", {}).items():
            cohorts.setdefault(name, set()).add(c.get("cohort", "unknown"))
    body = [[r["name"], interval(r["pooled"]["auc"]), interval(r["pooled"]["balanced_accuracy"]),
             ", ".join(sorted(cohorts.get(r["augmenter"], []))) or "-"] for r in rows]
    lines += table(["Row", "AUC [95% CI]", "Balanced accuracy [95% CI]", "Augmenter trained on"], body)
    paired = results.get("paired") or []
    if paired:
        best = results.get("best_cheap_baseline")
        lines += ["", "### Paired differences (row - reference, percentage points)", "",
                  f"Same patients, folds and seeds; 95% CI of the paired patient bootstrap. The best cheap baseline "
                  f"(highest pooled AUC among the rows that need no trained augmenter) is `{best}`. Tests over "
                  "folds x seeds of the per-fold AUC differences: wins/losses/ties, the exact sign test "
                  "(scipy.stats.binomtest) and the Wilcoxon signed-rank test.", ""]
        body = []
        for p in paired:
            t = p["tests"]
            body.append([p["row"], p["baseline"] + (" (best cheap)" if p.get("best_cheap") else ""),
                         interval(p["auc"], signed=True), interval(p["balanced_accuracy"], signed=True),
                         f"{t['wins']}/{t['losses']}/{t['ties']}", f"{t['sign_test_p']:.3g}",
                         "n/a" if t["wilcoxon_p"] is None else f"{t['wilcoxon_p']:.3g}"])
        lines += table(["Row", "Reference", "Δ AUC [95% CI]", "Δ Balanced accuracy [95% CI]", "W/L/T",
                        "Sign test p", "Wilcoxon p"], body)
    return lines + [""]


def comparison_section(results: dict) -> list:
    comparisons = results["comparisons"]
    if not comparisons:
        return []
    seeds = results["config"]["seeds"]
    lines = [f"## Paired comparison with the `{comparisons[0]['baseline']}` arm", "",
             "Differences row - baseline in percentage points, per seed (same seed, same test set), "
             f"mean ± std over {len(seeds)} seed(s); wins/losses/ties count seeds where the row's AUC "
             "is higher/lower/equal, with the exact two-sided sign-test p.", ""]
    body = []
    for comparison in comparisons:
        m = comparison["metrics"]
        body.append([comparison["row"]] + [percent(m[key], signed=True) for key, _ in TABLE_METRICS]
                    + [f"{m['auc']['wins']}/{m['auc']['losses']}/{m['auc']['ties']}",
                       f"{m['auc']['sign_test_p']:.3g}"])
    header = ["Row", "Δ Sensitivity", "Δ Specificity", "Δ Accuracy", "Δ AUC", "AUC W/L/T", "Sign test p"]
    lines += table(header, body)
    return lines + [""]


def attention_section(results: dict) -> list:
    attention = results["attention"]
    if not attention:
        return []
    lines = ["## Attention of the augmenters (test split)", "",
             "Dice and IoU: the `tumor_to_normal` attention (the paper's A_t), thresholded at tau, against "
             "the true whole-tumor mask of each test tumor slice that has one (mean ± std over slices). "
             "Outside change: mean |translated - real| in [-1, 1] intensity units over the pixels with "
             "attention < tau (0 = background untouched); n/a when every pixel is attended or no test "
             "tumor slice has a mask.", ""]
    body = []
    for name, a in attention.items():
        if not a.get("has_attention"):
            body.append([name, "no attention (map is all ones)", "", "", "", ""])
            continue
        body.append([name, plain(a["dice"]), plain(a["iou"]), a["masked_tumor_slices"],
                     plain(a["outside_change_tumor_to_normal"]), plain(a["outside_change_normal_to_tumor"])])
    lines += table(["Augmenter", "Dice", "IoU", "Masked slices", "Outside change tumor->normal",
                    "Outside change normal->tumor"], body)
    return lines + ["", f"tau = {results['config']['tau']}.", ""]


def judge_section(results: dict) -> list:
    judged = results.get("judged") or {}
    if not judged:
        return []
    lines = ["## The judge's view of the augmenters (test split)", "",
             f"The judge is a ResNet18 trained on the real training slices only ({judged['judge']}; its test AUC "
             f"{judged['judge_test_auc']:.3f}). Rate: the fraction of translations it calls the target class; "
             "the unchanged inputs are the floor and real slices of the target class the ceiling. KID (mean ± std "
             "over subsets) between the translations and the real target slices in its feature "
             "space; inputs vs target is what no translation scores, and two case-disjoint halves of the "
             "real target slices what a perfect one scores.", ""]
    body = []
    for name, directions in judged["augmenters"].items():
        for direction, m in directions.items():
            rate, kid = m["rate"], m["kid"]
            body.append([name, direction.replace("_to_", " -> "), f"{rate['synthetic']:.3f}",
                         f"{rate['inputs']:.3f}", f"{rate['real_target']:.3f}",
                         f"{kid['synthetic']['mean']:.4f} ± {kid['synthetic']['std']:.4f}",
                         f"{kid['inputs']['mean']:.4f}", f"{kid['real_halves']['mean']:.4f}"])
    lines += table(["Augmenter", "Direction", "Rate", "Rate of inputs", "Rate of real target", "KID",
                    "KID inputs", "KID real halves"], body)
    return lines + [""]


def setup_section(results: dict) -> list:
    config, data = results["config"], results["data"]
    lines = ["## Setup", ""]
    for split in ("train", "val", "test"):
        d = data[split]
        lines.append(f"- {split}: {d['normal']['slices']} normal + {d['tumor']['slices']} tumor slices "
                     f"from {cases_and_patients(d)} ({d['tumor_with_mask']} tumor slices with a mask)")
    low = results.get("low_data")
    if low:
        fold = " in fold 0 (each fold keeps its own)" if config.get("folds") else ""
        lines.append(f"- low-data regime (--tumor_fraction={low['tumor_fraction']:g}){fold}: training keeps the tumor "
                     f"slices of {len(low['kept_tumor_cases'])} case(s) only ({low['tumor_slices']} of "
                     f"{low['tumor_slices_before']}): {', '.join(low['kept_tumor_cases'])}; the train line above "
                     "counts what remains")
    optimizer = f"AdamW (weight decay {config['weight_decay']})" if config.get("weight_decay") else "Adam"
    in_masks = set(config.get("in_masks") or ())
    only = {**{n: "synthetic tumor slices only" for n in config.get("tumors_only") or ()},
            **{n: "synthetic normal slices only" for n in config.get("normals_only") or ()}}

    def notes(name: str) -> str:
        said = (["normal->tumor drawn in transplanted lesion masks"] if name in in_masks else []) + \
            ([only[name]] if name in only else [])
        return f" ({'; '.join(said)})" if said else ""

    augmenters = ", ".join((f"`{name}` = `{path}`" if path else f"`{name}` (built in)") + notes(name)
                           for name, path in config["augmenters"]) or "none"
    lines += [f"- data: `{config['data_dir']}`, slices {'x'.join(map(str, results['image_shape']))}",
              f"- augmenters: {augmenters}",
              f"- classifier: ResNet18, base width {config['width']} (the paper's is 64), trained from "
              f"scratch with {optimizer} "
              f"(lr {config['learning_rate']}, {config.get('lr_schedule', 'constant')}), classic augmentation "
              f"{config.get('classic_impl', 'warp')} at strength {config.get('classic_strength', 1.0):g}, "
              f"batch {config['batch_size']}, at most "
              f"{config['epochs']} epochs, early stopping on validation loss (patience {config['patience']}, "
              f"best weights kept){'; class-balanced loss' if config.get('balance_classes') else ''}; "
              f"tumor predicted when p >= {config['threshold']}; computed in "
              f"{results.get('precision', {}).get('classifier', 'fp32')}",
              f"- seeds: {', '.join(map(str, config['seeds']))}; TensorFlow {results['tensorflow']}; "
              f"{results['seconds']} s in total", ""]
    return lines


def figures_section(results: dict) -> list:
    captions = {"roc": "ROC curves on the test split (mean over seeds, band ± 1 std)",
                "metrics": "Metrics with ± 1 std error bars"}
    lines = ["## Figures", "", "Each figure is also written as PDF (same name, `.pdf`) for print.", ""]
    for key, file_name in results.get("figures", {}).items():
        caption = captions.get(key, f"Samples of `{key[len('samples_'):]}`: real | translation | attention")
        pdf = os.path.splitext(file_name)[0] + ".pdf"
        lines += [f"{caption} ([PDF]({pdf})):", "", f"![{caption}]({file_name})", ""]
    return lines


def paper_section() -> list:
    lines = ["## For reference: the paper's Table I (ResNet18, %)", "",
             "Real + classic augmentation -> real + SSA-CycleGAN synthetic at 1:1 (Xu et al., BIBM 2019), "
             "on BraTS with thousands of training slices.", ""]
    return lines + table(["Dataset", "Sensitivity", "Specificity"],
                         [[name, f"{s0} -> {s1}", f"{p0} -> {p1}"] for name, s0, s1, p0, p1 in PAPER_TABLE_I]) + [""]


def write_report(path: str, results: dict) -> None:
    """Write `report.md` from the results dictionary (atomically: a temporary file renamed)."""
    results = to_json_safe(results)
    lines = ["# Classifier evaluation: does the augmentation help?", ""]
    lines += sample_size_section(results) + pooled_section(results) + main_tables(results) + comparison_section(results)
    lines += attention_section(results) + judge_section(results) + setup_section(results)
    lines += figures_section(results) + paper_section()
    durable.atomic_write(path, "\n".join(lines))
