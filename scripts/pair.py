"""Paired differences between rows of two evaluation reports made on the same patients:

    python -m scripts.pair --reference=REPORT_A:ROW --rows=REPORT_B:ROW[,REPORT_A:ROW2,...] [--seeds=0,1]

A run-wide setting (`run_evaluate.py --balance_classes`, another `--classic_strength`, ...) puts
its rows in a report of its own, whose paired differences cannot name the rows of the report
without it. This pairs them: each REPORT is an evaluation's `--output_dir` (or its
`results.json`), each ROW a row name as the report's tables print it (e.g. `classic` or
`synthetic+classic [ssa 1:1]`). The reports must hold the same test slices in the same order
(the same data, folds and fold seed: their `test_labels` and `test_patients` are compared) and
the same seeds (or hold every seed `--seeds` names, and only those are paired); then every row
is compared with the reference as one report compares its own rows
(`ssagan_tf.evaluation.crossval.paired_comparison`: the 95% CI of the paired patient bootstrap of
pooled AUC and balanced accuracy, and the paired tests over folds x seeds). Prints one JSON
object and a table.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("reference", None, "REPORT:ROW every row is compared with.")
    flags.DEFINE_list("rows", None, "REPORT:ROW entries to compare with the reference (commas inside a row name "
                      "are not supported).")
    flags.DEFINE_integer("resamples", 0, "Bootstrap resamples; 0 = the reference report's own.", lower_bound=0)
    flags.DEFINE_list("seeds", [], "Pair only these seeds (each in every report); empty = the reports' seeds, "
                      "which must then be the same.")


def load(report: str) -> dict:
    path = report if report.endswith(".json") else os.path.join(report, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (give an evaluation's --output_dir or its results.json)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def parse(entry: str) -> tuple:
    """'REPORT:ROW' -> (REPORT, ROW); the row name may itself hold ':' (a ratio such as 1:1)."""
    report, sep, row = entry.partition(":")
    if not sep or not report or not row:
        raise ValueError(f"{entry!r}: expected REPORT:ROW")
    return report, row


def find_row(results: dict, name: str, report: str) -> dict:
    for row in results["rows"]:
        if row["name"] == name:
            return row
    names = ", ".join(repr(r["name"]) for r in results["rows"])
    raise ValueError(f"{report}: no row {name!r}; it has {names}")


def check_same_test(reference: dict, other: dict, where: str, seeds: list | None = None) -> None:
    """Refuse reports whose test predictions cannot be paired slice by slice and seed by seed."""
    for key in ("test_labels", "test_patients"):
        if reference[key] != other[key]:
            raise ValueError(f"{where}: its {key} differ from the reference report's (other data, folds or fold "
                             "seed): its rows cannot be paired with the reference")
    if seeds:
        check_seeds(other, where, seeds)
    elif list(reference["config"]["seeds"]) != list(other["config"]["seeds"]):
        raise ValueError(f"{where}: seeds {other['config']['seeds']} differ from the reference report's "
                         f"{reference['config']['seeds']} (choose common ones with --seeds)")


def check_seeds(results: dict, where: str, seeds: list) -> None:
    """Refuse a report that lacks one of `seeds`."""
    missing = [s for s in seeds if s not in results["config"]["seeds"]]
    if missing:
        raise ValueError(f"{where}: has no seed {', '.join(map(str, missing))} (its seeds: "
                         f"{results['config']['seeds']})")


def with_seeds(row: dict, results: dict, seeds: list | None) -> dict:
    """The row with only the runs of `seeds` (in that order); all of them without `seeds`."""
    if not seeds:
        return row
    index = {seed: i for i, seed in enumerate(results["config"]["seeds"])}
    return dict(row, runs=[row["runs"][index[seed]] for seed in seeds])


def pair(reference_entry: str, entries: list, resamples: int = 0, seeds: list | None = None) -> dict:
    """{"reference", "comparisons": [crossval.paired_comparison of each row against it]}, over
    `seeds` only when given (each must be in every report)."""
    import numpy as np

    from ssagan_tf.evaluation import crossval

    report, name = parse(reference_entry)
    reference = load(report)
    seeds = [int(s) for s in seeds] if seeds else None
    if seeds:
        check_seeds(reference, report, seeds)
    base = with_seeds(find_row(reference, name, report), reference, seeds)
    labels, patients = np.asarray(reference["test_labels"]), np.asarray(reference["test_patients"], dtype=object)
    threshold = reference["config"]["threshold"]
    resamples = resamples or reference["config"]["bootstrap_resamples"]
    loaded, comparisons = {report: reference}, []
    for entry in entries:
        where, row_name = parse(entry)
        if where not in loaded:          # each report read once, however many of its rows are paired
            loaded[where] = load(where)
        results = loaded[where]
        check_same_test(reference, results, where, seeds)
        if results["config"]["threshold"] != threshold:
            raise ValueError(f"{where}: threshold {results['config']['threshold']} differs from the reference's "
                             f"{threshold}")
        row = with_seeds(find_row(results, row_name, where), results, seeds)
        compared = crossval.paired_comparison(row, base, labels, patients, threshold, resamples)
        comparisons.append(dict(compared, row=f"{where}:{row_name}", baseline=reference_entry))
    return {"reference": reference_entry, "resamples": resamples, "seeds": seeds or reference["config"]["seeds"],
            "comparisons": comparisons}


def table(result: dict) -> str:
    lines = [f"paired differences against {result['reference']} (percentage points, 95% paired patient-bootstrap "
             "CI; wins/losses/ties over folds x seeds, sign test p)"]
    for c in result["comparisons"]:
        auc, ba, tests = c["auc"], c["balanced_accuracy"], c["tests"]
        lines.append(f"{c['row']}: AUC {100 * auc['estimate']:+.1f} [{100 * auc['low']:+.1f}, {100 * auc['high']:+.1f}]"
                     f", balanced accuracy {100 * ba['estimate']:+.1f} [{100 * ba['low']:+.1f}, "
                     f"{100 * ba['high']:+.1f}], {tests['wins']}/{tests['losses']}/{tests['ties']}, "
                     f"p = {tests['sign_test_p']:.3g}")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    if not FLAGS.reference or not FLAGS.rows:
        raise app.UsageError("--reference and --rows are required")
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        raise app.UsageError(f"--seeds={','.join(FLAGS.seeds)}: integers expected") from None
    result = pair(FLAGS.reference, FLAGS.rows, FLAGS.resamples, seeds)
    print(json.dumps(result, indent=1, default=str).replace("NaN", "null"))
    print(table(result))


if __name__ == "__main__":
    from ssagan_tf import cli

    define_flags()
    cli.run(main, __doc__)
