"""ssagan_tf/evaluation/report.py: formatting and honest statements."""

import json
import math

import numpy as np

from ssagan_tf.evaluation import ledger, report


def test_percent_formats_mean_and_std_and_leaves_out_undefined():
    assert report.percent({"mean": 0.7744, "std": 0.021}) == "77.4 ± 2.1"
    assert report.percent({"mean": 0.05, "std": float("nan")}, signed=True) == "+5.0"
    assert report.percent({"mean": None, "std": None}) == "n/a"


def test_json_has_no_nan():
    value = ledger.to_json_safe({"a": float("nan"), "b": np.float32(0.5), "c": (np.int64(3), math.inf)})
    assert value == {"a": None, "b": 0.5, "c": [3, None]}
    json.dumps(value, allow_nan=False)


def test_cases_and_patients():
    assert report.cases_and_patients({"cases": 6, "patients": 3}) == "6 cases (scans) of 3 patients"
    assert report.cases_and_patients({"cases": 4, "patients": 4}) == "4 cases"
    assert report.cases_and_patients({"cases": 4, "patients": None}) == "4 cases"


def test_sample_size_section_states_the_sign_test_floor():
    results = {"config": {"seeds": [0, 1, 2]},
               "data": {"test": {"cases": 3, "patients": None, "tumor": {"slices": 30, "cases": 2},
                                 "normal": {"slices": 40, "cases": 3}}}}
    text = "\n".join(report.sample_size_section(results))
    assert "cannot give a two-sided p below 0.25" in text and "30 tumor and 40 normal" in text


def test_slices_painted_in_masks_are_keyed_by_the_placement(monkeypatch):
    """An export's `--in_masks` slices are cached under a key that differs from its own-attention
    slices and changes with the lesion placement, so a new placement paints them again."""
    from ssagan_tf import lesions

    weights = {"path": "/exports/ssa/1", "saved_model.pb": "ab12"}
    drawn = ledger.in_masks_identity(weights)
    assert drawn == dict(weights, in_masks=True, placement=lesions.PLACEMENT_VERSION)
    assert ledger.digest(drawn) != ledger.digest(weights)
    monkeypatch.setattr(lesions, "PLACEMENT_VERSION", lesions.PLACEMENT_VERSION + 1)
    assert ledger.digest(ledger.in_masks_identity(weights)) != ledger.digest(drawn)
    assert weights == {"path": "/exports/ssa/1", "saved_model.pb": "ab12"}        # not changed in place
