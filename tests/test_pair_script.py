"""scripts/pair.py: paired differences between rows of two evaluation reports on the same test
slices, by value, the refusals, and the command line."""

import json
import subprocess
import sys

import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT
from scripts import pair

LABELS = [0, 0, 1, 1]


def _report(tmp_path, name, rows, seeds=(0,), patients=("p1", "p1", "p2", "p3")):
    """A results.json as run_evaluate.py writes it, with only what pairing reads: each row's runs
    (one per seed) with their pooled test probabilities and per-fold AUCs."""
    results = {"config": {"seeds": list(seeds), "threshold": 0.5, "bootstrap_resamples": 200},
               "test_labels": LABELS, "test_patients": list(patients),
               "rows": [{"name": row, "runs": [{"test_probabilities": p, "fold_auc": [auc]} for p, auc in runs]}
                        for row, runs in rows.items()]}
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    return str(folder)


def test_rows_of_two_reports_are_paired_by_value(tmp_path):
    # AUC of [0.1, 0.2, 0.8, 0.9] against labels 0, 0, 1, 1 is 1; of [0.8, 0.2, 0.1, 0.9] it is 0.5.
    a = _report(tmp_path, "a", {"classic": [([0.8, 0.2, 0.1, 0.9], 0.5)]})
    b = _report(tmp_path, "b", {"synthetic+classic [ssa 1:1]": [([0.1, 0.2, 0.8, 0.9], 1.0)]})
    result = pair.pair(f"{a}:classic", [f"{b}:synthetic+classic [ssa 1:1]", f"{a}:classic"])
    first, itself = result["comparisons"]
    assert first["row"] == f"{b}:synthetic+classic [ssa 1:1]" and first["baseline"] == f"{a}:classic"
    assert first["auc"]["estimate"] == pytest.approx(0.5)
    # balanced accuracy at 0.5: the row 1.0 (both normals below, both tumors above), the reference 0.5
    # (its 0.8 normal and 0.1 tumor are wrong)
    assert first["balanced_accuracy"]["estimate"] == pytest.approx(0.5)
    assert first["auc"]["low"] <= 0.5 <= first["auc"]["high"] and result["resamples"] == 200
    assert (first["tests"]["wins"], first["tests"]["losses"]) == (1, 0)
    assert itself["auc"]["estimate"] == 0.0 and itself["tests"]["ties"] == 1
    assert "+50.0" in pair.table(result)


def test_common_seeds_of_reports_with_other_seeds_are_paired(tmp_path):
    # The reference has seeds 0 and 1; the row seed 1 only: --seeds=1 pairs seed 1 of each.
    a = _report(tmp_path, "a", {"classic": [([0.1, 0.2, 0.8, 0.9], 1.0), ([0.8, 0.2, 0.1, 0.9], 0.5)]}, seeds=(0, 1))
    b = _report(tmp_path, "b", {"ssa": [([0.1, 0.2, 0.8, 0.9], 1.0)]}, seeds=(1,))
    with pytest.raises(ValueError, match="choose common ones with --seeds"):
        pair.pair(f"{a}:classic", [f"{b}:ssa"])
    result = pair.pair(f"{a}:classic", [f"{b}:ssa"], seeds=[1])
    assert result["seeds"] == [1] and result["comparisons"][0]["auc"]["estimate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="has no seed 0"):
        pair.pair(f"{a}:classic", [f"{b}:ssa"], seeds=[0])


def test_reports_that_cannot_be_paired_are_refused(tmp_path):
    a = _report(tmp_path, "a", {"classic": [([0.8, 0.2, 0.1, 0.9], 0.5)]})
    other = _report(tmp_path, "other", {"classic": [([0.8, 0.2, 0.1, 0.9], 0.5)]}, patients=("p1", "p2", "p2", "p3"))
    seeds = _report(tmp_path, "seeds", {"classic": [([0.8, 0.2, 0.1, 0.9], 0.5)]}, seeds=(1,))
    with pytest.raises(ValueError, match="test_patients differ"):
        pair.pair(f"{a}:classic", [f"{other}:classic"])
    with pytest.raises(ValueError, match=r"seeds \[1\] differ"):
        pair.pair(f"{a}:classic", [f"{seeds}:classic"])
    with pytest.raises(ValueError, match="no row 'mixup'; it has 'classic'"):
        pair.pair(f"{a}:mixup", [f"{a}:classic"])
    with pytest.raises(ValueError, match="expected REPORT:ROW"):
        pair.pair("classic", [f"{a}:classic"])
    with pytest.raises(ValueError, match="no such file"):
        pair.pair(f"{tmp_path / 'missing'}:classic", [f"{a}:classic"])


def test_the_command_prints_json_and_a_table(tmp_path):
    a = _report(tmp_path, "a", {"classic": [([0.8, 0.2, 0.1, 0.9], 0.5)]})
    b = _report(tmp_path, "b", {"classic": [([0.1, 0.2, 0.8, 0.9], 1.0)]})
    done = subprocess.run([sys.executable, "-m", "scripts.pair", f"--reference={a}:classic", f"--rows={b}:classic",
                           "--resamples=50"], capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[:done.stdout.index("\npaired differences")])
    assert result["resamples"] == 50 and result["comparisons"][0]["auc"]["estimate"] == pytest.approx(0.5)
    refused = subprocess.run([sys.executable, "-m", "scripts.pair", f"--reference={a}:nope", f"--rows={b}:classic"],
                             capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=REPO_ROOT)
    assert refused.returncode != 0 and "no row 'nope'" in refused.stderr
