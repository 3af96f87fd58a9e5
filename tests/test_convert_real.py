"""The shared real data (../shared/data), converted as the README shows: the LGG FLAIR slices
stacked per patient with matched anatomy, and Brain-Tumor-Progression. Skipped where absent.
Small image size (64) keeps them quick; the counts are those quoted in README.md and
docs/formats.md (default field of view `fit`)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import SHARED_DATA
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions
from ssagan_tf.data import pipeline, schema

LGG = os.path.join(SHARED_DATA, "lgg_kaggle_3m")
BTP = os.path.join(SHARED_DATA, "brain_tumor_progression")


def _need(path):
    if not os.path.isdir(path):
        pytest.skip(f"real data not found at {path} (see the README: it is never copied into the repository)")


def _totals(manifest):
    return (sum(c["tumor"] for c in manifest["counts"].values()),
            sum(c["normal"] for c in manifest["counts"].values()))


def lgg_config(out, **kw):
    return ConvertConfig(input_dir=LGG, format="folders", output_dir=str(out), workers=2,
                         reader=ReaderOptions(channel_names=("t1", "flair", "t1ce"), modalities=("flair",)),
                         prep=PrepOptions(image_size=64), **kw)


def test_lgg_flair_stacked_per_patient_with_matched_anatomy(tmp_path):
    _need(LGG)
    manifest = convert(lgg_config(tmp_path / "lgg"), log=lambda _: None)
    assert not manifest["rejected"] and manifest["modalities"] == ["flair"] and manifest["channels"] == 1
    cases = [c for s in schema.SPLITS for c in manifest["cases"][s]]
    assert len(cases) == 32                               # one stacked volume per patient, not 999 cases
    assert {s: len(manifest["patients"][s]) for s in schema.SPLITS} == {"train": 22, "val": 3, "test": 7}
    assert _totals(manifest) == (339, 96)
    dropped = manifest["dropped"]
    assert dropped == {"slice_range": 0, "little_brain": 44, "outside_brain_extent": 74, "ambiguous": 33,
                       "anatomy": 413, "duplicate": 0}
    assert sum(_totals(manifest)) + sum(dropped.values()) == 999      # every slice accounted for
    window = manifest["anatomy"]["window"]
    assert 0.3 < window["low"] < window["high"] <= 1.0
    # the normal slices drawn to the tumors' positions: far apart before, alike after
    assert manifest["anatomy"]["ks_before"] > 0.5 and manifest["anatomy"]["ks_after"] < 0.1
    assert not manifest["warnings"]
    arrays = pipeline.load_split_arrays(schema.open(str(tmp_path / "lgg")), "train")
    assert arrays["image"].shape[1:] == (64, 64, 1)
    # FLAIR, per-volume normalised: each patient's slices span the whole [-1, 1] range together
    assert arrays["image"].min() == -1.0 and arrays["image"].max() > 0.95   # (shrinking smooths the top)
    assert os.path.getsize(tmp_path / "lgg" / "conversion_sheet.png") > 1000


def test_lgg_without_match_anatomy_keeps_the_lower_normal_slices(tmp_path):
    _need(LGG)
    manifest = convert(lgg_config(tmp_path / "lgg", match_anatomy=False), log=lambda _: None)
    assert _totals(manifest) == (339, 509)
    before = manifest["anatomy"]["normal_before"]["position"]
    tumor = manifest["anatomy"]["tumor"]["position"]
    # the reason for matching: most normal slices lie below the levels where the tumors are
    assert sum(before[:3]) > 0.5 * sum(before) and sum(tumor[:3]) < 0.05 * sum(tumor)


def test_lgg_three_channels_without_names_are_refused(tmp_path):
    _need(LGG)
    config = ConvertConfig(input_dir=LGG, format="folders", output_dir=str(tmp_path / "out"), workers=2,
                           prep=PrepOptions(image_size=64))
    # every patient with three different sequences is refused; the one whose file holds a single
    # sequence copied into all three channels is grey, and one patient cannot fill three splits
    with pytest.raises(ValueError, match="would be empty: 1 patient"):
        convert(config, log=lambda _: None)
    report = open(tmp_path / "out" / "conversion_report.md", encoding="utf-8").read()
    assert report.count("different channels per pixel (") == 31
    assert report.count("if they are MR sequences, name them with --channel_names") == 31


def test_brain_tumor_progression_with_and_without_matched_anatomy(tmp_path):
    _need(BTP)
    reader = ReaderOptions(modalities=("t1ce",), image_glob="*/*_Scan_T1.nii.gz", mask_replace=("_Scan_T1", "_Mask"))
    counts = {}
    for match in (True, False):
        manifest = convert(ConvertConfig(input_dir=BTP, format="pairs", output_dir=str(tmp_path / str(match)),
                                         reader=reader, prep=PrepOptions(image_size=64, min_tumor_pixels=5),
                                         workers=2, match_anatomy=match), log=lambda _: None)
        counts[match] = _totals(manifest)
        assert manifest["modalities"] == ["t1ce"] and not manifest["rejected"]
        assert all(sum(manifest["counts"][s].values()) for s in schema.SPLITS)
    assert counts == {True: (144, 105), False: (144, 260)}
    # --field_of_view=pad is the earlier framing: the earlier 141 tumor slices at 64^2
    manifest = convert(ConvertConfig(input_dir=BTP, format="pairs", output_dir=str(tmp_path / "pad"), reader=reader,
                                     prep=PrepOptions(image_size=64, min_tumor_pixels=5, field_of_view="pad"),
                                     workers=2, match_anatomy=False), log=lambda _: None)
    assert _totals(manifest) == (141, 260)
