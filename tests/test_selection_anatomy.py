"""Normal slices drawn to the tumor slices' axial positions (--match_anatomy): the sampling follows
the tumors' histogram, and a difference left after it is a warning in the console and report."""

import os

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import report, selection
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions


def test_bin_quotas_follow_the_tumor_histogram():
    tumor = [0, 0, 10, 20, 30, 20, 10, 5, 5, 0]
    quotas = selection.bin_quotas(tumor, [50] * 10)
    assert selection.histogram_distance(tumor, quotas) <= selection.MATCH_TOLERANCE
    assert quotas[[0, 1, 9]].tolist() == [0, 0, 0]        # no normal slice from levels without tumors
    assert quotas.sum() >= 150                            # bin 4 (30% of tumors, 50 normals) sets the scale
    # a bin short of normal slices lowers the others' quotas instead of skewing the histogram
    short = selection.bin_quotas(tumor, [50, 50, 50, 50, 6, 50, 50, 50, 50, 50])
    assert short.sum() < quotas.sum() and selection.histogram_distance(tumor, short) <= 0.3 + 0.05
    assert selection.bin_quotas(tumor, [50, 50, 0, 0, 0, 0, 0, 0, 0, 50]).sum() == 0   # nothing at tumor levels


def test_match_positions_samples_normals_to_the_tumor_distribution_seeded():
    rng = np.random.default_rng(0)
    tumor = np.clip(rng.normal(0.65, 0.12, 300), 0, 1)
    normal = np.concatenate([rng.uniform(0, 1, 2000), [np.nan, np.nan]])      # two 2-D images: no position
    keep = selection.match_positions(tumor, normal, seed=3)
    assert keep[-2:].all()
    kept = normal[keep & np.isfinite(normal)]
    assert kept.size > 500
    tumor_hist, kept_hist = selection.histogram(tumor), selection.histogram(kept)
    assert selection.histogram_distance(tumor_hist, kept_hist) <= selection.MATCH_TOLERANCE + 0.01
    assert selection.position_difference(tumor, kept) < 0.1 < selection.position_difference(tumor, normal)
    np.testing.assert_array_equal(keep, selection.match_positions(tumor, normal, seed=3))
    assert (keep != selection.match_positions(tumor, normal, seed=4)).any()


def _case(labels, positions):
    labels = np.asarray(labels)
    return {"labels": labels, "position": np.asarray(positions, float), "area_ratio": np.ones(labels.size),
            "outside_extent": np.zeros(labels.size, bool)}


@pytest.mark.parametrize("normals_at_tumor_levels, warned", [(150, False), (5, True)])
def test_a_difference_left_after_matching_is_a_warning_above_the_threshold(normals_at_tumor_levels, warned):
    rng = np.random.default_rng(1)
    tumor = rng.uniform(0.6, 0.9, 200)
    # normal slices: many far below the tumors, and some (or few) at the tumors' levels
    normal = np.concatenate([rng.uniform(0.0, 0.3, 200), rng.uniform(0.6, 0.9, normals_at_tumor_levels)])
    # the few at the tumors' levels sit in one bin (0.6-0.7), the tumors spread over three
    normal[200:] = np.minimum(normal[200:], 0.69) if warned else normal[200:]
    keep = [np.ones(200 + normal.size, bool)]
    anatomy, dropped, warnings = selection.match_anatomy([_case([1] * 200 + [0] * normal.size,
                                                                np.concatenate([tumor, normal]))], keep, True, 0)
    ks, p_value = anatomy["ks_after"], anatomy["ks_p_value"]
    assert (ks > selection.KS_WARNING and p_value < selection.KS_P_VALUE) == warned
    assert anatomy["ks_before"] > 0.5 and dropped == [normal.size - int(keep[0][200:].sum())]
    assert keep[0][:200].all() and sum(anatomy["normal_after"]["position"]) == keep[0][200:].sum()
    assert len(warnings) == int(warned)
    assert all("Kolmogorov-Smirnov statistic" in w for w in warnings)
    lines = "\n".join(report._anatomy_lines(anatomy, True))
    assert f"{ks:.2f} written (p = {p_value:.2g}; with --match_anatomy a warning above 0.15 when p < 0.05)" in lines


def _write_cohort(root, cases=6, z=20, size=32):
    """Pairs volumes whose tumors fill the upper half of the head (slices 10-19) in four cases and
    slices 10-13 in two: the only normal slices at the tumors' levels are the top six of those two."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:z, :size, :size]
    for i in range(cases):
        head = ((yy - 16) / 12.0) ** 2 + ((xx - 16) / 10.0) ** 2 <= 1.0
        image = np.abs(rng.normal(0, 5, (z, size, size))) + 300.0 * head
        top = z if i < 4 else 14
        mask = (head & (zz >= 10) & (zz < top) & (((yy - 16) / 6.0) ** 2 + ((xx - 16) / 5.0) ** 2 <= 1.0))
        mask = mask.astype(np.uint8)
        os.makedirs(os.path.join(root, f"P{i}"))
        for name, array in (("image", image.astype(np.float32)), ("mask", mask)):
            volume = sitk.GetImageFromArray(array)
            volume.SetSpacing((2.0, 2.0, 5.0))
            sitk.WriteImage(volume, os.path.join(root, f"P{i}", f"{name}.nii.gz"))


def test_the_warning_reaches_the_console_and_the_report(tmp_path):
    _write_cohort(str(tmp_path / "in"))
    lines = []
    config = ConvertConfig(input_dir=str(tmp_path / "in"), format="pairs", output_dir=str(tmp_path / "out"),
                           reader=ReaderOptions(image_glob="*/image.nii.gz", mask_replace=("image", "mask")),
                           prep=PrepOptions(image_size=32, min_tumor_pixels=5), workers=1, num_shards=1,
                           train_fraction=0.5, val_fraction=0.2)
    manifest = convert(config, log=lines.append)
    assert any(line.startswith("warning: the written normal slices' axial positions") for line in lines)
    assert manifest["anatomy"]["ks_after"] > selection.KS_WARNING
    text = open(tmp_path / "out" / "conversion_report.md", encoding="utf-8").read()
    assert "**Warning: the written normal slices' axial positions still differ" in text
    positions = np.concatenate([manifest["anatomy"]["window"][k] * np.ones(1) for k in ("low", "high")])
    assert np.all((positions >= 0.0) & (positions <= 1.0))
