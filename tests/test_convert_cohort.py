"""Converter: what is decided over the whole cohort (duplicates, splits among the cases
that converted, anatomy matching, own splits), interruptions (SIGTERM, stale temporaries,
overwrite that keeps the old dataset, a full disk) and the report and sheet."""

from __future__ import annotations

import errno
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import io as skio

from conftest import HANG_TIMEOUT, REPO_ROOT
from data_prep import phantom, writer
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions

QUIET = dict(log=lambda _: None)


def disc_slice(seed, size=24):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 2.5) ** 2)
    return (head * rng.uniform(80, 200, (size, size))).astype(np.uint8)


def write_class_folders(root, n=6, duplicate=True, seed=0):
    """yes/ and no/ images; with `duplicate`, one tumor image appears under three names."""
    for i in range(n):
        for cls, offset in (("yes", 0), ("no", 100)):
            path = root / cls / f"{cls}{i}.png"
            os.makedirs(path.parent, exist_ok=True)
            skio.imsave(str(path), disc_slice(seed + i + offset), check_contrast=False)
    if duplicate:
        for k in range(2):
            skio.imsave(str(root / "yes" / f"copy{k}.png"), disc_slice(0), check_contrast=False)


def folders_config(root, out, **kw):
    return ConvertConfig(input_dir=str(root), format="folders", output_dir=str(out),
                         prep=PrepOptions(image_size=24, min_tumor_pixels=1), workers=1, num_shards=1, **kw)


@pytest.mark.slow
def test_duplicates_are_grouped_into_one_split_dropped_or_reported(tmp_path):
    write_class_folders(tmp_path / "in")
    manifest = convert(folders_config(tmp_path / "in", tmp_path / "group"), **QUIET)
    assert manifest["duplicates"]["groups"] == 1 and manifest["duplicates"]["slices"] == 3
    where = {c: s for s, cases in manifest["cases"].items() for c in cases}
    assert len({where["yes/yes0"], where["yes/copy0"], where["yes/copy1"]}) == 1
    dropped = convert(folders_config(tmp_path / "in", tmp_path / "drop", dedupe="drop"), **QUIET)
    assert dropped["dropped"]["duplicate"] == 2
    total = lambda m: sum(sum(c.values()) for c in m["counts"].values())
    assert total(dropped) == total(manifest) - 2
    off = convert(folders_config(tmp_path / "in", tmp_path / "off", dedupe="off"), **QUIET)
    assert off["duplicates"]["groups"] == 1 and total(off) == total(manifest)
    assert "1 group(s) of identical slices" in open(tmp_path / "group" / "conversion_report.md", encoding="utf-8").read()


def test_splits_are_assigned_among_converted_cases_never_empty(tmp_path):
    write_class_folders(tmp_path / "in", n=3, duplicate=False)
    for i in range(3):     # three cases that fail: constant images
        skio.imsave(str(tmp_path / "in" / "no" / f"blank{i}.png"), np.full((24, 24), 9, np.uint8),
                    check_contrast=False)
    manifest = convert(folders_config(tmp_path / "in", tmp_path / "out"), **QUIET)
    assert len(manifest["rejected"]) == 3
    for split in ("train", "val", "test"):
        assert manifest["patients"][split], split
        assert sum(manifest["counts"][split].values()) > 0
    # rejected cases carry their relative path, not a basename shared with other folders
    assert {r["case"] for r in manifest["rejected"]} == {f"no/blank{i}" for i in range(3)}


def test_too_few_patients_fail_clearly_and_explain_patient_level(tmp_path):
    cohort = phantom.write_cohort(str(tmp_path / "cohort"), cases=2, size=24, slices=12, seed=3)
    pairs_root = tmp_path / "pairs" / "P"
    os.makedirs(pairs_root)
    for case in cohort:
        name = os.path.basename(case)
        for role in ("t1ce", "seg"):
            os.symlink(os.path.join(case, f"{name}_{role}.nii.gz"), pairs_root / f"{name}_{role}.nii.gz")
    config = ConvertConfig(input_dir=str(tmp_path / "pairs"), format="pairs", output_dir=str(tmp_path / "out"),
                           reader=ReaderOptions(image_glob="*/*_t1ce.nii.gz", mask_replace=("_t1ce", "_seg")),
                           prep=PrepOptions(image_size=24, min_tumor_pixels=1), workers=1)
    with pytest.raises(ValueError, match=r"would be empty: 1 patient\(s\).*--patient_level=1"):
        convert(config, **QUIET)
    assert not os.path.exists(tmp_path / "out" / "manifest.json")
    assert "did not complete" in open(tmp_path / "out" / "conversion_report.md", encoding="utf-8").read()


def test_keep_splits_convert_into_the_dataset_own_splits(tmp_path):
    for k, top in enumerate(("train", "val", "test")):
        write_class_folders(tmp_path / "in" / top, n=2, duplicate=False, seed=1000 * k)
    manifest = convert(folders_config(tmp_path / "in", tmp_path / "out", reader=ReaderOptions(keep_splits=True)),
                       **QUIET)
    for split in ("train", "val", "test"):
        assert manifest["cases"][split] and all(c.startswith(split + "/") for c in manifest["cases"][split])


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    cases = phantom.write_cohort(str(tmp_path_factory.mktemp("cohort")), cases=6, size=32, slices=24, seed=2)
    return os.path.dirname(cases[0])


def brats_config(cohort, out, **kw):
    return ConvertConfig(input_dir=cohort, format="brats", output_dir=str(out), workers=1, num_shards=1,
                         prep=PrepOptions(image_size=32, min_tumor_pixels=5), **kw)


@pytest.mark.slow
def test_match_anatomy_keeps_normal_slices_at_tumor_levels_and_reports_both(cohort_dir, tmp_path):
    on = convert(brats_config(cohort_dir, tmp_path / "on"), **QUIET)
    off = convert(brats_config(cohort_dir, tmp_path / "off", match_anatomy=False), **QUIET)
    normal = lambda m: sum(c["normal"] for c in m["counts"].values())
    tumor = lambda m: sum(c["tumor"] for c in m["counts"].values())
    assert tumor(on) == tumor(off) and normal(on) < normal(off)
    assert on["dropped"]["anatomy"] == normal(off) - normal(on)
    window = on["anatomy"]["window"]
    assert 0.0 <= window["low"] < window["high"]
    assert sum(on["anatomy"]["normal_after"]["position"]) == normal(on)
    report = open(tmp_path / "on" / "conversion_report.md", encoding="utf-8").read()
    assert "## Anatomy of the slices" in report and "normal, before matching" in report and "tumor |" in report


@pytest.mark.slow
def test_conversion_sheet_shows_slices_with_outlines(cohort_dir, tmp_path):
    convert(brats_config(cohort_dir, tmp_path / "out"), **QUIET)
    sheet = skio.imread(str(tmp_path / "out" / "conversion_sheet.png"))
    assert sheet.ndim == 3 and sheet.shape[0] >= 3 * 36        # at least tumor rows of three splits
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 80) & (sheet[..., 2] < 80)
    assert red.sum() > 20                                        # tumor outlines drawn


def test_full_disk_gives_one_error_removes_what_it_wrote_and_keeps_the_report(cohort_dir, tmp_path, monkeypatch):
    written = {"n": 0}
    original = writer.ShardedWriter.write

    def failing_write(self, split, domain, record):
        written["n"] += 1
        if written["n"] > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, split, domain, record)

    monkeypatch.setattr(writer.ShardedWriter, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="disk is full"):
        convert(brats_config(cohort_dir, out), **QUIET)
    assert sorted(os.listdir(out)) == [".conversion-files.json", "conversion_report.md"]
    assert "disk is full" in open(out / "conversion_report.md", encoding="utf-8").read()


@pytest.mark.slow
def test_overwrite_keeps_the_old_dataset_until_the_new_one_is_complete(cohort_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    convert(brats_config(cohort_dir, out), **QUIET)
    before = {p: os.path.getsize(p) for p in glob.glob(str(out / "*" / "*.tfrecord"))}
    manifest_before = open(out / "manifest.json").read()

    def fail(*args, **kwargs):
        raise RuntimeError("the writer failed")

    monkeypatch.setattr(writer.ShardedWriter, "close", fail)
    with pytest.raises(RuntimeError):
        convert(brats_config(cohort_dir, out, overwrite=True), **QUIET)
    assert {p: os.path.getsize(p) for p in glob.glob(str(out / "*" / "*.tfrecord"))} == before
    assert open(out / "manifest.json").read() == manifest_before
    assert not glob.glob(str(out / ".staging-*"))


def test_stale_staging_of_a_dead_run_is_removed(cohort_dir, tmp_path):
    """Recognised by the lock file inside (this host, a dead pid); see test_convert_ownership for
    folders merely named like one, and other machines'."""
    import socket

    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(out / f".staging-{dead.pid}-x" / "cases")
    (out / f".staging-{dead.pid}-x" / ".convert.lock").write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    convert(brats_config(cohort_dir, out), **QUIET)
    assert not (out / f".staging-{dead.pid}-x").exists()


@pytest.mark.slow
def test_sigterm_cleans_up_like_ctrl_c(cohort_dir, tmp_path):
    out = tmp_path / "out"
    code = (f"import time, data_prep.stage as st\n"
            f"orig = st._process\n"
            f"def slow(args):\n    time.sleep(0.5)\n    return orig(args)\n"
            f"st._process = slow\n"
            f"from data_prep.convert_cli import main\n"
            f"import sys; sys.exit(main(['convert', '--input={cohort_dir}', '--format=brats', '--output_dir={out}',"
            f" '--image_size=32', '--workers=1']))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(str(out / ".staging-*" / "cases" / "*.npz")):
        time.sleep(0.1)
    assert glob.glob(str(out / ".staging-*" / "cases" / "*.npz")), "the conversion never started staging"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=HANG_TIMEOUT)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "convert: interrupted"
    assert not glob.glob(str(out / ".staging-*")) and not glob.glob(str(out / "**" / "*.tmp-*"), recursive=True)
    assert not (out / "manifest.json").exists() and (out / "conversion_report.md").exists()


def test_a_split_missing_a_domain_is_a_warning_an_empty_split_an_error():
    from data_prep.convert import _check_counts

    cohort = {}
    _check_counts(folders_config("in", "out"), {"train": {"normal": 3, "tumor": 2}, "val": {"normal": 2, "tumor": 0},
                                                "test": {"normal": 1, "tumor": 1}}, cohort)
    assert cohort["warnings"] == ["split val has no tumor slices"]
    with pytest.raises(ValueError, match="split test has patients but no slice"):
        _check_counts(folders_config("in", "out"), {"train": {"normal": 3, "tumor": 2},
                                                    "val": {"normal": 2, "tumor": 1},
                                                    "test": {"normal": 0, "tumor": 0}}, cohort)


def test_pairs_keep_splits_and_record_modality_names(tmp_path):
    rng = np.random.default_rng(4)
    for k, top in enumerate(("Training", "Validation", "Testing")):
        for p in range(2):
            folder = tmp_path / "in" / top / f"P{k}{p}"
            os.makedirs(folder)
            image = np.zeros((10, 24, 24), np.float32)
            image[:, 4:20, 4:20] = rng.uniform(50, 100, (10, 16, 16))
            seg = np.zeros((10, 24, 24), np.uint8)
            seg[3:6, 8:14, 8:14] = 1
            image[seg > 0] = 200
            for name, array in (("flair", image), ("t2", image * 0.5 + 10), ("seg", seg)):
                sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / f"scan_{name}.nii.gz"))
    reader = ReaderOptions(modalities=("flair", "t2"), image_glob="*/*/scan_flair.nii.gz",
                           mask_replace=("_flair", "_seg"), modality_replace=(("t2", "_flair", "_t2"),),
                           keep_splits=True)   # patient: the first folder below the split folder
    config = ConvertConfig(input_dir=str(tmp_path / "in"), format="pairs", output_dir=str(tmp_path / "out"),
                           reader=reader, prep=PrepOptions(image_size=24, min_tumor_pixels=5), workers=1,
                           num_shards=1)
    manifest = convert(config, **QUIET)
    assert manifest["modalities"] == ["flair", "t2"] and manifest["channels"] == 2
    assert manifest["patients"] == {"train": ["train/P00", "train/P01"], "val": ["val/P10", "val/P11"],
                                    "test": ["test/P20", "test/P21"]}


@pytest.mark.slow
def test_swap_never_shows_shards_without_a_manifest(cohort_dir, tmp_path, monkeypatch):
    from data_prep import stage

    out = tmp_path / "out"
    states = []
    real_replace = os.replace

    def watching_replace(src, dst):
        real_replace(src, dst)
        shards = glob.glob(str(out / "*" / "*.tfrecord"))
        states.append((bool(shards), (out / "manifest.json").exists()))

    monkeypatch.setattr(stage.os, "replace", watching_replace)
    convert(brats_config(cohort_dir, out), **QUIET)                        # a fresh dataset
    convert(brats_config(cohort_dir, out, overwrite=True), **QUIET)        # replacing it
    assert (True, True) in states and (False, True) in states
    assert all(manifest for shards, manifest in states if shards)
    assert json.loads((out / "manifest.json").read_text())["counts"]


def test_duplicates_linking_every_patient_explain_the_empty_split(tmp_path):
    write_class_folders(tmp_path / "in", n=2, duplicate=False)
    for name in ("yes/yes0.png", "yes/yes1.png", "no/no0.png", "no/no1.png"):
        skio.imsave(str(tmp_path / "in" / name), disc_slice(7), check_contrast=False)    # all identical
    with pytest.raises(ValueError, match="exact or near duplicate images span several patients"):
        convert(folders_config(tmp_path / "in", tmp_path / "out"), **QUIET)
    write_class_folders(tmp_path / "more", n=4, duplicate=False, seed=50)
    for name in ("yes/yes0.png", "yes/yes1.png", "no/no0.png", "no/no1.png"):
        skio.imsave(str(tmp_path / "more" / name), disc_slice(7), check_contrast=False)
    manifest = convert(folders_config(tmp_path / "more", tmp_path / "drop", dedupe="drop"), **QUIET)
    assert manifest["dropped"]["duplicate"] == 3 and manifest["duplicates"]["cross_patient"] == 1
