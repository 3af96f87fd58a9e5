"""Cross-validated evaluation end to end on the tiny dataset: folds, augmenter leak refusal,
baselines and controls as rows, pooled CIs, and the output folder's lock, ledger and resume."""

import json
import os

import numpy as np
import pytest

from test_evaluation import save_fake_augmenter

from ssagan_tf.data import folds, schema
from ssagan_tf.evaluation import EvaluationConfig, run_evaluation


def _export_for(path, data_dir, fold, folds_k=2, tumor_fraction=1.0, cohort=None):
    """A fake export per fold, its export.json recording the fold's patients as ssagan_tf.export does."""
    version = os.path.join(save_fake_augmenter(path), "1")
    record = cohort if cohort is not None else folds.cohort_record(schema.open(data_dir), folds_k, fold, 0,
                                                                   tumor_fraction)
    with open(os.path.join(version, "export.json"), "w") as f:
        json.dump({"cohort": record}, f)
    return str(path)


def _config(data_dir, out, augmenters, **overrides):
    settings = dict(data_dir=data_dir, output_dir=str(out), augmenters=augmenters, folds=2,
                    arms=("none", "classic", "synthetic", "mixup"), seeds=(0, 1), epochs=1, batch_size=8, width=4,
                    sample_count=2, precision="fp32", bootstrap_resamples=200)
    settings.update(overrides)
    return EvaluationConfig(**settings)


@pytest.fixture(scope="module")
def crossval(tmp_path_factory, tiny_dataset):
    base = tmp_path_factory.mktemp("cv")
    for k in range(2):
        _export_for(base / f"ssa{k}", tiny_dataset, k)
    augmenters = (("ssa", str(base / "ssa{fold}")), ("copy_paste", ""), ("identity", ""))
    config = _config(tiny_dataset, base / "report", augmenters)
    return config, run_evaluation(config), base


@pytest.mark.slow
def test_two_fold_run_tests_every_patient_once_with_pooled_cis(crossval, tiny_dataset):
    config, results, _ = crossval
    per_fold = results["cross_validation"]["per_fold"]
    tested = [p for fold in per_fold for p in fold["patients"]["test"]]
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 6           # 6 cases, one patient each
    for fold in per_fold:
        trained = set(fold["patients"]["train"]) | set(fold["patients"]["val"])
        assert not trained & set(fold["patients"]["test"])
        assert fold["augmenters"]["ssa"]["cohort"] == "this dataset"
        assert fold["augmenters"]["copy_paste"]["cohort"] == "built in"
    names = [row["name"] for row in results["rows"]]
    assert names == ["none", "classic", "synthetic [ssa 1:1]", "synthetic [copy_paste 1:1]",
                     "synthetic [identity 1:1]", "mixup"]
    for row in results["rows"]:
        assert len(row["runs"]) == 2 and len(row["runs"][0]["test_probabilities"]) == 30     # 3 splits x 10
        ci = row["pooled"]["auc"]
        assert ci["low"] <= ci["estimate"] <= ci["high"] and ci["resamples"] == 200
    rows = {row["name"]: row for row in results["rows"]}
    # copy_paste adds tumor slices only: 4 per fold's tumor slices at 1:1, identity both classes.
    assert rows["synthetic [copy_paste 1:1]"]["fold_runs"][0][0]["train_tumor"] == 2 * rows["none"]["fold_runs"][0][0][
        "train_tumor"]
    paired = results["paired"]
    assert {p["baseline"] for p in paired} >= {"classic"}
    assert all(p["tests"]["units"] == 4 for p in paired)                       # 2 folds x 2 seeds
    report = open(os.path.join(config.output_dir, "report.md"), encoding="utf-8").read()
    assert "patient-level bootstrap" in report and "2-fold cross-validation" in report
    assert "Δ AUC [95% CI]" in report and "best cheap baseline" in report


@pytest.mark.slow
def test_a_rerun_reuses_every_classifier_and_rewrites_the_report(crossval):
    config, first, _ = crossval
    again = run_evaluation(config)
    assert again["classifiers_reused"] == 6 * 2 * 2                            # rows x folds x seeds
    assert [r["runs"][0]["auc"] for r in again["rows"]] == [r["runs"][0]["auc"] for r in first["rows"]]
    cached = os.listdir(os.path.join(config.output_dir, "cache"))
    assert len(cached) == 3 * 2                                                # augmenters x folds, made once


@pytest.mark.slow
@pytest.mark.parametrize("module, constant", [("ssagan_tf.lesions", "PLACEMENT_VERSION"),
                                              ("ssagan_tf.evaluation.controls", "DRAW_VERSION")])
def test_new_built_in_versions_make_the_built_in_rows_again(crossval, monkeypatch, tmp_path, module, constant):
    """The built-in controls' slices and classifiers are keyed by the versions of the lesion
    placement and of what they draw: after a change to either, a rerun (in a copy of the first
    run's folder) makes their slices and trains their rows again, and reuses every other row."""
    import importlib
    import shutil

    config, first, _ = crossval
    copy = shutil.copytree(config.output_dir, tmp_path / "report")
    config = _config(config.data_dir, copy, config.augmenters)
    cached = len(os.listdir(os.path.join(config.output_dir, "cache")))
    monkeypatch.setattr(importlib.import_module(module), constant, 100)
    again = run_evaluation(config)
    assert again["classifiers_reused"] == (6 - 2) * 2 * 2                      # copy_paste and identity retrained
    assert len(os.listdir(os.path.join(config.output_dir, "cache"))) == cached + 2 * 2


@pytest.mark.slow
def test_an_interrupted_rerun_leaves_no_report_that_looks_current(crossval, monkeypatch):
    from ssagan_tf.evaluation import runner

    config, _, _ = crossval
    changed = _config(config.data_dir, config.output_dir, config.augmenters, epochs=2)   # nothing reusable

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(changed)
    assert not os.path.exists(os.path.join(config.output_dir, "report.md"))
    assert not os.path.exists(os.path.join(config.output_dir, "results.json"))


@pytest.mark.slow
def test_the_output_folder_is_locked(crossval):
    from ssagan_tf.locking import DirectoryLock, DirectoryLockedError

    config, _, _ = crossval
    with DirectoryLock(config.output_dir, "evaluate.lock", "a test", "--output_dir"):
        with pytest.raises(DirectoryLockedError, match="in use by a test"):
            run_evaluation(config)


def test_a_report_this_program_did_not_write_is_left_alone(tmp_path, tiny_dataset):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    with pytest.raises(ValueError, match="not a report this evaluation wrote"):
        run_evaluation(_config(tiny_dataset, out, (), arms=("none",), folds=0))
    assert (out / "report.md").read_text() == "my notes"


@pytest.mark.slow
def test_a_leaking_or_mismatched_augmenter_is_refused(tmp_path, tiny_dataset):
    # One export for both folds, trained on fold 0's patients: it saw fold 1's test patients.
    _export_for(tmp_path / "ssa", tiny_dataset, 0)
    config = _config(tiny_dataset, tmp_path / "out", (("ssa", str(tmp_path / "ssa")),), arms=("synthetic",))
    with pytest.raises(ValueError, match="trained on .* of the test patients"):
        run_evaluation(config)
    # The right fold, but trained on every tumor while the classifiers keep half of the cases.
    for k in range(2):
        _export_for(tmp_path / f"full{k}", tiny_dataset, k)
    low = _config(tiny_dataset, tmp_path / "low", (("ssa", str(tmp_path / "full{fold}")),), arms=("synthetic",),
                  tumor_fraction=0.5)
    with pytest.raises(ValueError, match="same --tumor_fraction"):
        run_evaluation(low)
    # An older export without `cohort`: its training run's config.json says which dataset it read,
    # whose train and val patients include some fold's test patients.
    run = tmp_path / "old_run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data_dir": tiny_dataset}))
    old = save_fake_augmenter(tmp_path / "old")
    with open(os.path.join(old, "1", "export.json"), "w") as f:
        json.dump({"source_model_dir": str(run)}, f)
    with pytest.raises(ValueError, match="trained on 2 of the test patients"):
        run_evaluation(_config(tiny_dataset, tmp_path / "old_out", (("ssa", old),), arms=("synthetic",)))
    # No record of its patients: cross-validation cannot rule out a leak.
    bare = save_fake_augmenter(tmp_path / "bare")
    with pytest.raises(ValueError, match="does not say which patients"):
        run_evaluation(_config(tiny_dataset, tmp_path / "bare_out", (("ssa", bare),), arms=("synthetic",)))


@pytest.mark.slow
def test_an_augmenter_from_another_cohort_is_labelled_as_such(tmp_path, tiny_dataset):
    other = {"seen_patients": ["elsewhere-1", "elsewhere-2"], "folds": 0, "tumor_fraction": 1.0}
    _export_for(tmp_path / "ext", tiny_dataset, 0, cohort=other)
    config = _config(tiny_dataset, tmp_path / "out", (("ext", str(tmp_path / "ext")),), arms=("synthetic",),
                     seeds=(0,), tumor_fraction=0.5)
    results = run_evaluation(config)
    assert {f["augmenters"]["ext"]["cohort"] for f in results["cross_validation"]["per_fold"]} == {"another cohort"}
    assert "another cohort" in open(os.path.join(config.output_dir, "report.md"), encoding="utf-8").read()
    assert np.isfinite(results["rows"][0]["pooled"]["auc"]["estimate"])
