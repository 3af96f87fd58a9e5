"""The converter end to end: phantom BraTS cohort and real data -> shards, manifest, report."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import HANG_TIMEOUT, REPO_ROOT
from data_prep import phantom
from data_prep.convert import PROGRESS_SECONDS, ConvertConfig, Progress, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions
from ssagan_tf.data import integrity, pipeline, schema


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return phantom.write_cohort(str(tmp_path_factory.mktemp("cohort")), cases=6, size=32, slices=16, seed=1)


def _config(cohort_dir, out, **kw):
    prep = kw.pop("prep", PrepOptions(image_size=32, min_tumor_pixels=10))
    return ConvertConfig(input_dir=cohort_dir, format="brats", output_dir=str(out), prep=prep, workers=1,
                         num_shards=2, **kw)


def test_phantom_cohort_converts_with_counts_cases_and_report(cohort, tmp_path):
    cohort_dir = os.path.dirname(cohort[0])
    manifest = convert(_config(cohort_dir, tmp_path / "out", seed=0), log=lambda _: None)
    on_disk = schema.read_manifest(str(tmp_path / "out"))
    assert on_disk.image_size == 32 and on_disk.channels == 1
    cases = [c for s in schema.SPLITS for c in manifest["cases"][s]]
    assert sorted(cases) == [f"Phantom_{i:03d}" for i in range(6)]
    for split in schema.SPLITS:
        for domain in schema.DOMAINS:
            compression = on_disk.storage.tf_compression      # the default storage is gzip-compressed
            n = sum(1 for shard in on_disk.shards(split, domain)
                    for _ in pipeline.tf.data.TFRecordDataset(shard, compression))
            assert n == on_disk.count(split, domain)
            # Each shard is in the manifest with its own record count and size (swapped into place intact).
            for shard in on_disk.shards(split, domain):
                entry = on_disk.raw["shards"][os.path.relpath(shard, tmp_path / "out")]
                assert entry["records"] == sum(1 for _ in pipeline.tf.data.TFRecordDataset(shard, compression))
                assert entry["bytes"] == os.path.getsize(shard)
    assert len(on_disk.raw["shards"]) == sum(len(on_disk.shards(s, d)) for s in schema.SPLITS for d in schema.DOMAINS)
    assert integrity.verify_checksums(on_disk) == []
    assert sum(on_disk.count(s, "tumor") for s in schema.SPLITS) > 10
    report = open(tmp_path / "out" / "conversion_report.md", encoding="utf-8").read()
    assert "Phantom_004" in report and "converted" in report
    arrays = pipeline.load_split_arrays(schema.open(str(tmp_path / "out")), "train")
    assert arrays["image"].min() >= -1.0 and arrays["image"].max() <= 1.0
    tumor = arrays["label"] == 1
    assert np.all(arrays["mask"][tumor].reshape(tumor.sum(), -1).sum(1) >= 10)
    assert np.all(arrays["mask"][~tumor] == 0)


def test_four_channel_stack(cohort, tmp_path):
    cohort_dir = os.path.dirname(cohort[0])
    config = _config(cohort_dir, tmp_path / "out", reader=ReaderOptions(modalities=("flair", "t1", "t1ce", "t2")))
    manifest = convert(config, log=lambda _: None)
    assert manifest["channels"] == 4 and manifest["modalities"] == ["flair", "t1", "t1ce", "t2"]
    assert pipeline.load_split_arrays(schema.open(str(tmp_path / "out")), "train")["image"].shape[-1] == 4


def test_parallel_workers_write_the_same_dataset(cohort, tmp_path):
    cohort_dir = os.path.dirname(cohort[0])
    convert(_config(cohort_dir, tmp_path / "serial"), log=lambda _: None)
    convert(ConvertConfig(input_dir=cohort_dir, format="brats", output_dir=str(tmp_path / "parallel"),
                          prep=PrepOptions(image_size=32, min_tumor_pixels=10), workers=2, num_shards=2),
            log=lambda _: None)
    a = pipeline.load_split_arrays(schema.open(str(tmp_path / "serial")), "train")
    b = pipeline.load_split_arrays(schema.open(str(tmp_path / "parallel")), "train")
    np.testing.assert_array_equal(a["image"], b["image"])


def test_labelled_fraction_drops_masks_of_some_training_patients(cohort, tmp_path):
    cohort_dir = os.path.dirname(cohort[0])
    manifest = convert(_config(cohort_dir, tmp_path / "out", train_fraction=0.8, val_fraction=0.0,
                               labelled_fraction=0.5), log=lambda _: None)
    train = manifest["patients"]["train"]
    assert len(manifest["labelled_train_patients"]) == int(np.ceil(0.5 * len(train)))
    arrays = pipeline.load_split_arrays(schema.open(str(tmp_path / "out")), "train", domains=("tumor",))
    labelled = set(manifest["labelled_train_patients"])
    for case, has_mask in zip(arrays["case_id"], arrays["has_mask"]):
        assert has_mask == (case.decode() in labelled)
    test = pipeline.load_split_arrays(schema.open(str(tmp_path / "out")), "test", domains=("tumor",))
    assert np.all(test["has_mask"] == 1.0)


def test_bad_case_is_reported_and_the_others_convert(cohort, tmp_path):
    cohort_dir = tmp_path / "cohort"
    os.makedirs(cohort_dir)
    for folder in cohort[:3]:
        shutil.copytree(folder, cohort_dir / os.path.basename(folder))
    bad = cohort_dir / "Phantom_bad"
    os.makedirs(bad)
    for m in ("flair", "t1", "t1ce", "t2", "seg"):
        shape = (16, 32, 30) if m == "seg" else (16, 32, 32)  # a segmentation on another grid
        image = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
        sitk.WriteImage(sitk.GetImageFromArray(image), str(bad / f"Phantom_bad_{m}.nii.gz"))
    manifest = convert(_config(str(cohort_dir), tmp_path / "out"), log=lambda _: None)
    assert [r["case"] for r in manifest["rejected"]] == ["Phantom_bad"]
    assert "Phantom_bad_seg.nii.gz" in manifest["rejected"][0]["problem"]
    assert "shape" in manifest["rejected"][0]["problem"]
    assert "Phantom_bad_seg.nii.gz" in open(tmp_path / "out" / "conversion_report.md", encoding="utf-8").read()
    with pytest.raises(ValueError, match="--strict"):
        convert(_config(str(cohort_dir), tmp_path / "strict", strict=True), log=lambda _: None)
    assert not os.path.exists(tmp_path / "strict" / "manifest.json")
    assert not [f for _, _, fs in os.walk(tmp_path / "strict") for f in fs if "tfrecord" in f or ".tmp" in f]


class FakeClock:
    """Seconds that advance by `step` at every reading."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_progress_lines_are_throttled_with_count_rate_and_eta():
    """A line at the first case, then only once PROGRESS_SECONDS have passed since the last line,
    for a failed case whenever it comes, and always at the last case."""
    assert PROGRESS_SECONDS == 5.0
    lines = []
    times = iter([100.0, 100.5, 101.0, 104.0, 105.6, 106.0, 107.0, 107.5, 120.0, 121.0, 121.5])
    progress = Progress(10, lines.append, clock=lambda: next(times))
    for k in range(1, 11):
        progress.case(f"c{k}", "error: broken" if k == 7 else "1 tumor, 2 normal candidate slices", failed=k == 7)
    assert lines == [
        "[1/10] c1: 1 tumor, 2 normal candidate slices  (1 converted, 0 failed; 2.0 cases/s, ETA 4 s)",
        "[4/10] c4: 1 tumor, 2 normal candidate slices  (4 converted, 0 failed; 0.7 cases/s, ETA 8 s)",
        "[7/10] c7: error: broken  (6 converted, 1 failed; 0.9 cases/s, ETA 3 s)",
        "[8/10] c8: 1 tumor, 2 normal candidate slices  (7 converted, 1 failed; 0.4 cases/s, ETA 5 s)",
        "[10/10] c10: 1 tumor, 2 normal candidate slices  (9 converted, 1 failed; 0.5 cases/s, ETA 0 s)"]


def test_conversion_prints_throttled_progress_and_every_failed_case(cohort, tmp_path):
    """Through convert with an injected clock (3 s a reading): of 7 cases, lines for the first,
    the third and sixth (6 s after the previous line), the failed fourth and the last."""
    cohort_dir = tmp_path / "cohort"
    os.makedirs(cohort_dir)
    for folder in cohort:
        shutil.copytree(folder, cohort_dir / os.path.basename(folder))
    bad = cohort_dir / "Phantom_002x"          # sorts fourth
    os.makedirs(bad)
    for m in ("flair", "t1", "t1ce", "t2", "seg"):
        image = np.random.default_rng(0).uniform(0, 100, (16, 32, 30) if m == "seg" else (16, 32, 32))
        sitk.WriteImage(sitk.GetImageFromArray(image.astype(np.float32)), str(bad / f"Phantom_002x_{m}.nii.gz"))
    lines = []
    convert(_config(str(cohort_dir), tmp_path / "out"), log=lines.append, clock=FakeClock(3.0))
    progress = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] + "]" for line in progress] == ["[1/7]", "[3/7]", "[4/7]", "[6/7]", "[7/7]"]
    assert progress[0].startswith("[1/7] Phantom_000: ") and progress[0].endswith(
        "(1 converted, 0 failed; 0.3 cases/s, ETA 18 s)")
    assert progress[2].startswith("[4/7] Phantom_002x: error: ") and "Phantom_002x_seg.nii.gz" in progress[2]
    assert progress[2].endswith("(3 converted, 1 failed; 0.3 cases/s, ETA 9 s)")
    assert progress[-1].startswith("[7/7] Phantom_005: ") and progress[-1].endswith(
        "(6 converted, 1 failed; 0.3 cases/s, ETA 0 s)")


def test_existing_dataset_is_not_overwritten_without_the_flag(cohort, tmp_path):
    cohort_dir = os.path.dirname(cohort[0])
    convert(_config(cohort_dir, tmp_path / "out"), log=lambda _: None)
    with pytest.raises(ValueError, match="--overwrite"):
        convert(_config(cohort_dir, tmp_path / "out"), log=lambda _: None)
    convert(_config(cohort_dir, tmp_path / "out", overwrite=True, seed=5), log=lambda _: None)
    assert json.load(open(tmp_path / "out" / "manifest.json"))["settings"]["seed"] == 5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "data_prep.convert", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)


def test_cli_rejects_bad_flags_before_work(tmp_path):
    out = tmp_path / "out"
    result = _cli(f"--input={tmp_path}", "--format=brats", f"--output_dir={out}", "--train_fraction=1.5")
    assert result.returncode != 0 and "--train_fraction" in result.stderr
    result = _cli(f"--input={tmp_path / 'missing'}", "--format=brats", f"--output_dir={out}")
    assert result.returncode != 0 and "is not a directory" in result.stderr
    result = _cli(f"--input={tmp_path}", "--format=pairs", f"--output_dir={out}", "--mask_replace=nocolon")
    assert result.returncode != 0 and "--mask_replace" in result.stderr
    assert not out.exists()


def test_cli_exits_non_zero_when_no_case_converts(tmp_path):
    (tmp_path / "in" / "case1").mkdir(parents=True)
    (tmp_path / "in" / "case1" / "case1_t1ce.nii.gz").write_bytes(b"not a nifti")
    result = _cli(f"--input={tmp_path / 'in'}", "--format=brats", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode != 0
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_real_data_converts_through_the_pair_reader(real_data_dir, tmp_path):
    config = ConvertConfig(input_dir=real_data_dir, format="pairs", output_dir=str(tmp_path / "real"),
                           reader=ReaderOptions(image_glob="*/*_Scan_T1.nii.gz", mask_replace=("_Scan_T1", "_Mask")),
                           prep=PrepOptions(image_size=256), workers=2)
    manifest = convert(config, log=lambda _: None)
    assert not manifest["rejected"]
    patients = {s: set(manifest["patients"][s]) for s in schema.SPLITS}
    assert sum(len(p) for p in patients.values()) == 11
    assert not (patients["train"] & patients["test"]) and not (patients["train"] & patients["val"])
    for split in schema.SPLITS:  # both exams of a patient land in the same split
        for case in manifest["cases"][split]:
            assert case.split("/")[0] in patients[split]
    # Which scan is whose, for cross-validation by patient: both exams of each of the 11 patients.
    owners = manifest["case_patients"]
    assert owners == {case: case.split("/")[0] for s in schema.SPLITS for case in manifest["cases"][s]}
    assert len(set(owners.values())) == 11 and len(owners) == 22
    tumor = sum(manifest["counts"][s]["tumor"] for s in schema.SPLITS)
    normal = sum(manifest["counts"][s]["normal"] for s in schema.SPLITS)
    # 273 normal slices before the head extent and --match_anatomy (see test_convert_real.py), 138 with
    # the 5th-95th percentile window of the tumors' positions, 105 drawn to their position histogram
    assert (tumor, normal) == (160, 105)
    assert manifest["modalities"] == ["t1ce"] and manifest["dropped"]["anatomy"] == 155
    arrays = pipeline.load_split_arrays(schema.open(str(tmp_path / "real")), "test", domains=("tumor",))
    assert arrays["image"].shape[1:] == (256, 256, 1) and np.all(arrays["has_mask"] == 1)


def test_report_warns_when_tumor_free_cases_normalise_brighter(tmp_path):
    """Tumor-free cases whose healthy tissue comes out brighter than the tumor-bearing cases' are
    a shortcut: the report and the manifest warn; the phantom as written gives no warning."""
    folders = phantom.write_cohort(str(tmp_path / "cohort"), cases=10, size=32, slices=16, seed=2)
    cohort_dir = os.path.dirname(folders[0])
    manifest = convert(_config(cohort_dir, tmp_path / "alike"), log=lambda _: None)
    assert not [w for w in manifest["warnings"] if "intensity" in w]
    report = open(tmp_path / "alike" / "conversion_report.md", encoding="utf-8").read()
    assert "## In-head intensity by group" in report and "| tumor-free cases | 2 |" in report
    for index in (4, 9):                          # the tumor-free ones: mid-tones brightened
        path = os.path.join(folders[index], f"Phantom_{index:03d}_t1ce.nii.gz")
        volume = sitk.GetArrayFromImage(sitk.ReadImage(path))
        sitk.WriteImage(sitk.GetImageFromArray(np.sqrt(volume / volume.max()) * volume.max()), path)
    logged = []
    manifest = convert(_config(cohort_dir, tmp_path / "apart"), log=logged.append)
    warnings = [w for w in manifest["warnings"] if "intensity" in w]
    assert len(warnings) == 1 and warnings[0].startswith("tumor-free cases (2) differ in healthy in-head intensity")
    assert any(line.startswith("warning: tumor-free cases (2)") for line in logged)
    assert "**(warning)**" in open(tmp_path / "apart" / "conversion_report.md", encoding="utf-8").read()


def test_intensity_groups_by_source_folder():
    from data_prep.report import INTENSITY_GAP, intensity_groups

    cases = [{"case": f"{site}/p{i}", "patient": f"{site}/p{i}", "tumor_free": False, "folder": site,
              "mean": (0.3 if site == "b" else -0.2) + 0.01 * i} for site in ("a", "b") for i in range(3)]
    groups = {g["group"]: g for g in intensity_groups(cases)}
    assert set(groups) == {"cases under a/", "cases under b/"}   # no tumor-free cases: that group is left out
    assert groups["cases under b/"]["mean"] - groups["cases under b/"]["rest_mean"] > INTENSITY_GAP
    assert "warning" in groups["cases under b/"]
    # one case per folder: folders are patients, not sources, and are not compared
    assert intensity_groups([dict(c, folder=c["case"]) for c in cases]) == []


def test_conversion_sheet_labels_rows_by_split_and_class_and_outlines_tumors(tmp_path):
    from skimage import io as skio

    from data_prep.report import sheet_figure, write_sheet
    from ssagan_tf import figures

    image = np.full((32, 32, 1), -1.0, np.float32)
    image[8:24, 8:24] = 0.5
    mask = np.zeros((32, 32), np.uint8)
    mask[12:18, 12:18] = 1
    panels = [("0-train-0", image, mask), ("0-train-0", image, mask), ("0-train-1", image, 0 * mask),
              ("2-test-0", image, mask)]
    words = figures.texts(sheet_figure(panels))
    assert {"train\ntumor", "train\nnormal", "test\ntumor", "slice 1", "slice 2"} <= set(words)
    assert "tumor outlined in red" in " ".join(words)
    write_sheet(str(tmp_path / "conversion_sheet.png"), panels)
    sheet = skio.imread(str(tmp_path / "conversion_sheet.png"))
    assert sheet.ndim == 3 and 150 < sheet.shape[0] < 1500 and 150 < sheet.shape[1] < 1500
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 80) & (sheet[..., 2] < 80)
    assert red.sum() > 20
    assert os.listdir(tmp_path) == ["conversion_sheet.png"]


def test_a_size_training_refuses_is_said_at_the_start_and_recorded(cohort, tmp_path):
    """Slices of a size the translation networks refuse are no surprise at training time: the
    conversion says so before reading, and the manifest and report keep the warning."""
    from data_prep.convert import untrainable_size_warning

    assert untrainable_size_warning(32) is None and untrainable_size_warning(64) is None
    assert "multiple of 4" in untrainable_size_warning(30) and "at least 32" in untrainable_size_warning(24)
    logged = []
    manifest = convert(_config(os.path.dirname(cohort[0]), tmp_path / "small",
                               prep=PrepOptions(image_size=24, min_tumor_pixels=5)), log=logged.append)
    assert logged[0].startswith("warning: --image_size=24: run_train.py will refuse these slices")
    assert any(w.startswith("--image_size=24: run_train.py will refuse") for w in manifest["warnings"])
    assert "run_train.py will refuse" in open(tmp_path / "small" / "conversion_report.md", encoding="utf-8").read()
