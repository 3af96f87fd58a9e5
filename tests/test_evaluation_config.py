"""ssagan_tf/evaluation/config.py: settings are rejected before any work, with a clear message."""

import os

import pytest

from ssagan_tf.evaluation.config import EvaluationConfig, parse_augmenters
from ssagan_tf.exported import resolve_version_dir


def _config(**overrides):
    settings = dict(data_dir="data", output_dir="out", augmenters=(("ssa", "exports/ssa"),))
    settings.update(overrides)
    return EvaluationConfig(**settings)


@pytest.mark.parametrize("overrides, message", [
    ({"arms": ("none", "mixip")}, "unknown arm"),
    ({"folds": 1}, "folds=1"),
    ({"folds": 2, "judge": "J"}, "--judge with --folds"),
    ({"weight_decay": 1.0}, "weight_decay"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"classic_impl": "torch"}, "classic_impl"),
    ({"bootstrap_resamples": 10}, "bootstrap_resamples"),
    ({"arms": ()}, "at least one arm"),
    ({"augmenters": ()}, "synthetic arms need"),
    ({"ratios": (1.5,)}, "ratios"),
    ({"seeds": (1, 1)}, "seeds"),
    ({"epochs": 0}, "epochs"),
    ({"tau": 1.5}, "tau"),
    ({"data_dir": ""}, "data_dir is required"),
    ({"augmenters": (("a", "x"), ("a", "y"))}, "names repeat"),
    ({"in_masks": ("cyclegan",)}, "in_masks names 'cyclegan', which is not one of --augmenters"),
    ({"augmenters": (("ssa", "e"), ("copy_paste", "")), "in_masks": ("copy_paste",)}, "places its own lesions"),
])
def test_bad_values_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_real_only_arms_need_no_augmenter_and_baseline_follows_the_arms():
    assert _config(arms=("none",), augmenters=()).baseline_arm == "none"
    assert _config().baseline_arm == "classic"
    assert _config(arms=("synthetic",)).baseline_arm is None


def test_parse_augmenters():
    assert parse_augmenters("ssa=/e/ssa, cyclegan=/e/cg,") == (("ssa", "/e/ssa"), ("cyclegan", "/e/cg"))
    assert parse_augmenters("") == ()
    for bad in ("ssa", "=/e/ssa", "ssa=", "s s=/x", "identity=/e/x"):
        with pytest.raises(ValueError):
            parse_augmenters(bad)
    assert parse_augmenters("ssa=/e/{fold},copy_paste,identity") == (
        ("ssa", "/e/{fold}"), ("copy_paste", ""), ("identity", ""))


def test_resolve_version_dir_picks_the_highest_version(tmp_path):
    for version in ("1", "3", "20"):
        os.makedirs(tmp_path / "ssa" / version)
        (tmp_path / "ssa" / version / "saved_model.pb").write_bytes(b"")
    os.makedirs(tmp_path / "ssa" / "99")   # not a SavedModel: ignored
    assert resolve_version_dir(str(tmp_path / "ssa")) == str(tmp_path / "ssa" / "20")
    assert resolve_version_dir(str(tmp_path / "ssa" / "3")) == str(tmp_path / "ssa" / "3")
    with pytest.raises(FileNotFoundError, match="TF Serving"):
        resolve_version_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such"):
        resolve_version_dir(str(tmp_path / "missing"))


def test_check_inputs_needs_a_manifest_and_existing_exports(tmp_path, tiny_dataset):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        _config(data_dir=str(tmp_path)).check_inputs()
    with pytest.raises(FileNotFoundError, match="no such exported"):
        _config(data_dir=tiny_dataset, augmenters=(("ssa", str(tmp_path / "nope")),)).check_inputs()
    _config(data_dir=tiny_dataset, arms=("none",), augmenters=()).check_inputs()
