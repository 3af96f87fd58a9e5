"""Tests for ssagan_tf.augment and run_augment.py: every output format with manifest rows matching
the files, ratio arithmetic, the interrupted-and-rerun case, file inputs, path safety."""

from __future__ import annotations

import collections
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import tensorflow as tf

from conftest import HANG_TIMEOUT, REPO_ROOT, write_tiny_dataset
from ssagan_tf import export
from ssagan_tf.augment import AugmentConfig, augment_dataset, parse_directions, parse_ratio
from ssagan_tf.augment import ledger as ledger_lib
from ssagan_tf.augment.plan import plan_direction
from ssagan_tf.augment.writers import safe_name
from ssagan_tf.augment import run as run_lib
from ssagan_tf.data import integrity, pipeline, schema
from ssagan_tf.locking import DirectoryLock, DirectoryLockedError
from ssagan_tf.models import ModelConfig, build_models

SIZE = 32


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    """An export base dir holding version 1 of a tiny model (tau 0.1)."""
    models = build_models(ModelConfig(image_size=SIZE, channels=1, ngf=8, ndf=8, n_res_blocks=1))
    version_dir = export.write_export(models, str(tmp_path_factory.mktemp("export")), tau=0.1)
    return os.path.dirname(version_dir)


def _augment(model, data_dir, output_dir, **kwargs):
    kwargs.setdefault("batch_size", 4)
    return augment_dataset(AugmentConfig(model=model, data_dir=data_dir, output_dir=str(output_dir), **kwargs))


def _rows(output_dir):
    with open(os.path.join(output_dir, "manifest.csv")) as f:
        return list(csv.DictReader(f))


def _files_below(root):
    return {os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names}


def test_plan_refuses_a_direction_without_sources():
    with pytest.raises(ValueError, match="no tumor slices to translate"):
        plan_direction("tumor_to_normal", refs=[], real_target=33, ratio=1.0, seed=0)


def test_flag_parsers():
    assert parse_ratio("all") is None and parse_ratio("2") == 2.0
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(ValueError, match="ratio"):
            parse_ratio(bad)
    assert parse_directions("both") == ("normal_to_tumor", "tumor_to_normal")
    assert parse_directions("tumor_to_normal") == ("tumor_to_normal",)
    with pytest.raises(ValueError, match="directions"):
        parse_directions("a_to_b")


@pytest.mark.slow
def test_tfrecord_output_reads_like_real_data(model_base, tiny_dataset, tmp_path):
    out = str(tmp_path / "aug")
    result = _augment(model_base, tiny_dataset, out, format="tfrecord", chunk_size=3)
    assert result.counts == {"normal": 6, "tumor": 4} and result.model == "ssagan/1"
    rows = _rows(out)
    shards = collections.Counter(row["output_path"] for row in rows)
    assert _files_below(os.path.join(out, "train")) == {os.path.relpath(p, "train") for p in shards}
    for shard, count in shards.items():
        assert sum(1 for _ in tf.data.TFRecordDataset(os.path.join(out, shard))) == count
    manifest = schema.read_manifest(out)
    assert manifest.count("train", "tumor") == 4 and manifest.count("train", "normal") == 6
    # Each shard recorded as the converter records them, so readers check it the same way.
    assert {name: entry["records"] for name, entry in manifest.raw["shards"].items()} == dict(shards)
    assert all(entry["bytes"] == os.path.getsize(os.path.join(out, name))
               for name, entry in manifest.raw["shards"].items())
    assert integrity.verify_checksums(manifest) == []
    arrays = pipeline.load_split_arrays(schema.open(out), "train")
    assert sorted(arrays["label"].tolist()) == [0] * 6 + [1] * 4
    np.testing.assert_array_equal(arrays["has_mask"], arrays["label"].astype(np.float32))
    assert all(s.decode().startswith("synthetic:ssagan/1:train_case") for s in arrays["source"])
    _check_pseudo_masks(model_base, tiny_dataset, arrays)
    batch = next(iter(pipeline.make_unpaired_dataset(schema.open(out), "train", global_batch_size=2, seed=0)))
    assert batch["tumor"]["image"].shape == (2, SIZE, SIZE, 1)
    sheet = tf.io.decode_png(tf.io.read_file(result.contact_sheet)).numpy()
    assert sheet.shape[2] in (3, 4) and sheet.shape[0] > 8 * SIZE and sheet.shape[1] > 3 * SIZE


def test_contact_sheet_titles_columns_and_labels_rows_by_direction():
    from ssagan_tf import figures
    from ssagan_tf.augment import sheet

    image, attention = np.zeros((SIZE, SIZE, 1), np.float32), np.full((SIZE, SIZE, 1), 0.5, np.float32)
    groups = [("normal_to_tumor", [sheet.sheet_row(image, attention, image)] * 2),
              ("tumor_to_normal", [sheet.sheet_row(image, attention, image)])]
    words = figures.texts(sheet.contact_sheet(groups))
    assert {"input", "attention", "translation"} <= set(words)
    assert words.count("normal -> tumor") == 2 and words.count("tumor -> normal") == 1


def _check_pseudo_masks(model_base, data_dir, arrays):
    """Synthetic tumors' masks are their attention thresholded at tau (0.1)."""
    real = pipeline.load_split_arrays(schema.open(data_dir), "train", domains=("normal",))
    signature = tf.saved_model.load(export.latest_version_dir(model_base)).signatures["normal_to_tumor"]
    attention = signature(images=tf.constant(real["image"]))["attention"].numpy()
    expected = {(case, index): (a >= 0.1).astype(np.float32)
                for case, index, a in zip(real["case_id"], real["slice_index"], attention)}
    for i in np.flatnonzero(arrays["label"] == 1):
        np.testing.assert_array_equal(arrays["mask"][i], expected[(arrays["case_id"][i], arrays["slice_index"][i])])


@pytest.mark.slow
def test_png_output_with_masks(model_base, tiny_dataset, tmp_path):
    out = str(tmp_path / "aug")
    _augment(model_base, tiny_dataset, out, format="png", ratio=None, contact_rows=0)
    rows = _rows(out)
    assert len(rows) == 10                     # every real train slice once: 6 normal + 4 tumor
    named = {row["output_path"] for row in rows} | {row["mask_path"] for row in rows if row["mask_path"]}
    assert _files_below(os.path.join(out, "train")) == {os.path.relpath(p, "train") for p in named}
    for row in rows:
        image = tf.io.decode_png(tf.io.read_file(os.path.join(out, row["output_path"])), dtype=tf.uint16)
        assert image.dtype == tf.uint16 and image.shape == (SIZE, SIZE, 1)
        assert (row["label"] == "1") == (row["has_mask"] == "1") == bool(row["mask_path"])
    assert not os.path.exists(os.path.join(out, "contact_sheet.png"))


@pytest.mark.slow
def test_nifti_output_one_stack_per_case_and_direction(model_base, tiny_dataset, tmp_path):
    out = str(tmp_path / "aug")
    _augment(model_base, tiny_dataset, out, format="nifti", ratio=None, contact_rows=0)
    rows = _rows(out)
    by_file = collections.defaultdict(list)
    for row in rows:
        by_file[row["output_path"]].append(int(row["output_index"]))
    assert set(by_file) == {f"train/{d}/train_case{i}.nii.gz" for d in ("normal", "tumor") for i in (0, 1)}
    for path, indices in by_file.items():
        volume = sitk.ReadImage(os.path.join(out, path))
        assert volume.GetSize() == (SIZE, SIZE, len(indices)) and sorted(indices) == list(range(len(indices)))
    masks = {row["mask_path"] for row in rows if row["mask_path"]}
    assert masks == {f"train/tumor/train_case{i}_mask.nii.gz" for i in (0, 1)}


@pytest.mark.slow
def test_ratio_above_sources_repeats_balanced(model_base, tiny_dataset, tmp_path):
    out = str(tmp_path / "aug")
    result = _augment(model_base, tiny_dataset, out, format="png", ratio=2.0, directions=("normal_to_tumor",),
                      contact_rows=0)
    rows = _rows(out)
    assert result.counts == {"normal": 0, "tumor": 8} and len(rows) == 8    # 2 x 4 real tumors, from 6 normals
    uses = collections.Counter((row["source_case"], row["source_slice"]) for row in rows)
    assert len(uses) == 6 and sorted(uses.values()) == [1, 1, 1, 1, 2, 2]
    assert len({row["output_path"] for row in rows}) == 8
    assert result.slices_translated == 6                   # a repeated source is translated once


@pytest.mark.slow
def test_interrupted_run_completes_without_duplicates(model_base, tiny_dataset, tmp_path, monkeypatch):
    out = str(tmp_path / "aug")
    commit = ledger_lib.Ledger.commit
    calls = []

    def failing_commit(self, chunk, files, rows):
        if len(calls) == 2:
            raise KeyboardInterrupt("injected after two chunks")
        calls.append(chunk.name)
        commit(self, chunk, files, rows)

    monkeypatch.setattr(ledger_lib.Ledger, "commit", failing_commit)
    with pytest.raises(KeyboardInterrupt):
        _augment(model_base, tiny_dataset, out, format="tfrecord", chunk_size=2)
    assert not os.path.exists(os.path.join(out, "manifest.csv"))
    first = {p: os.path.getmtime(os.path.join(out, "train", p)) for p in _files_below(os.path.join(out, "train"))}
    assert len(first) == 2
    monkeypatch.setattr(ledger_lib.Ledger, "commit", commit)
    result = _augment(model_base, tiny_dataset, out, format="tfrecord", chunk_size=2)
    assert result.chunks == 5 and result.chunks_skipped == 2
    rows = _rows(out)
    assert len(rows) == 10 and len({(r["output_path"], r["output_index"]) for r in rows}) == 10
    assert len(schema.read_manifest(out).shards("train", "tumor")) == 2
    assert all(os.path.getmtime(os.path.join(out, "train", p)) == t for p, t in first.items())
    assert not os.listdir(os.path.join(out, ".augment", "staging"))
    assert len(pipeline.load_split_arrays(schema.open(out), "train")["label"]) == 10
    with pytest.raises(ValueError, match="other settings.*seed"):
        _augment(model_base, tiny_dataset, out, format="tfrecord", chunk_size=2, seed=1)
    _augment(model_base, tiny_dataset, out, format="tfrecord", chunk_size=3, seed=1, overwrite=True)
    assert len(_rows(out)) == 10 and len(_files_below(os.path.join(out, "train"))) == 4   # no 2-chunk shards left


@pytest.mark.slow
def test_run_killed_with_sigkill_completes_without_duplicates(model_base, tiny_dataset, tmp_path):
    """kill -9 at any moment (here: once a few of 400 one-slice chunks are committed); the re-run
    keeps what was committed, redoes the rest once, and holds every planned slice exactly once."""
    import signal
    import time

    out = tmp_path / "aug"
    args = [sys.executable, os.path.join(REPO_ROOT, "run_augment.py"), f"--model={model_base}",
            f"--data_dir={tiny_dataset}", f"--output_dir={out}", "--ratio=100", "--chunk_size=1", "--contact_rows=0",
            "--directions=normal_to_tumor"]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / ledger_lib.STATE_DIR / "chunks"
    deadline = time.time() + 240
    try:
        while len(list(records.glob("*.json"))) < 3:
            assert proc.poll() is None and time.time() < deadline, "the run ended before it was killed"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=HANG_TIMEOUT)
    committed = {p.name for p in records.glob("*.json")}
    assert 3 <= len(committed) < 400 and not (out / "manifest.csv").exists()
    result = _augment(model_base, tiny_dataset, out, ratio=100.0, chunk_size=1, contact_rows=0,
                      directions=("normal_to_tumor",))
    assert result.chunks == 400 and result.chunks_skipped >= len(committed)
    rows = _rows(str(out))
    assert len(rows) == 400 and len({(r["output_path"], r["output_index"]) for r in rows}) == 400
    assert len(_files_below(str(out / "train"))) == 400
    assert len(pipeline.load_split_arrays(schema.open(str(out)), "train")["label"]) == 400


def _write_volume(path, shape_zyx, spacing, origin, seed):
    rng = np.random.default_rng(seed)
    array = np.zeros(shape_zyx, np.int16)
    array[:, 4:-4, 4:-4] = rng.integers(100, 1000, (shape_zyx[0], shape_zyx[1] - 8, shape_zyx[2] - 8))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sitk.WriteImage(image, path)


@pytest.mark.slow
def test_nifti_inputs_keep_geometry(model_base, tmp_path):
    data = tmp_path / "volumes"
    _write_volume(str(data / "normal" / "site A" / "scan1.nii.gz"), (3, 40, 48), (0.8, 0.8, 2.5), (10.0, 20.0, 30.0), 0)
    _write_volume(str(data / "tumor" / "scan2.nii"), (2, 48, 48), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), 1)
    out = str(tmp_path / "aug")
    result = _augment(model_base, str(data), out, format="nifti", ratio=None)
    assert result.counts == {"normal": 2, "tumor": 3}
    rows = _rows(out)
    tumor_file = {row["output_path"] for row in rows if row["label"] == "1"}
    assert len(tumor_file) == 1
    volume = sitk.ReadImage(os.path.join(out, tumor_file.pop()))
    assert volume.GetSize() == (SIZE, SIZE, 3)
    np.testing.assert_allclose(volume.GetSpacing(), (0.8 * 48 / SIZE, 0.8 * 48 / SIZE, 2.5), rtol=1e-5)
    # Padding 40 -> 48 rows (4 above), resizing 48 -> 32: voxel (0, 0) centre is source index (x 0.25, y -3.75).
    np.testing.assert_allclose(volume.GetOrigin(), (10.0 + 0.25 * 0.8, 20.0 - 3.75 * 0.8, 30.0), atol=1e-4)
    assert {row["source_case"] for row in rows} == {"site A/scan1", "scan2"}
    assert all(" " not in row["output_path"] and ".." not in row["output_path"] for row in rows)


def test_nifti_inputs_are_prepared_as_the_converter_prepares_them(tmp_path):
    """One preparation for both: a FileSource slice of a NIfTI volume equals the converter's
    (`data_prep.preprocess.prepare`, with the `pad` field of view, a FileSource's default) for the
    same volume, and a volume with NaN voxels is refused
    naming the file (the converter's reader guards)."""
    from data_prep.preprocess import PrepOptions, prepare
    from data_prep.scan import CaseRef, Scan
    from ssagan_tf.augment.sources import FileSource

    path = tmp_path / "vols" / "normal" / "scan.nii.gz"
    _write_volume(str(path), (6, 40, 48), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), 3)
    source = FileSource(str(tmp_path / "vols"), (SIZE, SIZE, 1))
    refs = source.refs("normal")
    streamed = np.concatenate([batch for batch, _ in source.stream("normal", np.arange(len(refs)), 16)])
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)[..., None]
    ref = CaseRef(case_id="scan", patient_id="scan", format="pairs", paths={"image": str(path)})
    prepared = prepare(Scan(ref=ref, image=array, mask=None, spacing=(2.0, 1.0, 1.0)),
                       PrepOptions(image_size=SIZE, assume_normal=True, min_brain_ratio=0.0, field_of_view="pad"))
    assert [r.slice_index for r in refs] == prepared.slice_index.tolist()
    np.testing.assert_allclose(streamed, prepared.images, atol=1e-6)
    bad = tmp_path / "nan" / "tumor" / "bad.nii.gz"
    os.makedirs(bad.parent)
    nan = np.ones((3, 20, 20), np.float32)
    nan[1, 5, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(bad))
    with pytest.raises(ValueError, match=r"bad\.nii\.gz: 1 NaN/Inf voxels"):
        FileSource(str(tmp_path / "nan"), (SIZE, SIZE, 1)).refs("tumor")


@pytest.mark.slow
def test_png_inputs(model_base, tmp_path):
    data = tmp_path / "pngs"
    rng = np.random.default_rng(0)
    for domain, n in (("normal", 3), ("tumor", 2)):
        os.makedirs(data / domain)
        for i in range(n):
            image = rng.integers(0, 255, (40, 36, 1)).astype(np.uint8)
            tf.io.write_file(str(data / domain / f"img{i}.png"), tf.io.encode_png(image))
        tf.io.write_file(str(data / domain / "img0_mask.png"), tf.io.encode_png(np.zeros((40, 36, 1), np.uint8)))
    out = str(tmp_path / "aug")
    result = _augment(model_base, str(data), out, format="tfrecord", ratio=1.0)
    assert result.counts == {"normal": 3, "tumor": 2}
    arrays = pipeline.load_split_arrays(schema.open(out), "train")
    assert arrays["image"].shape == (5, SIZE, SIZE, 1)


def test_output_paths_stay_inside(tmp_path):
    for case in ("../../etc/passwd", "/abs/path", ".hidden", "a b\\c", ""):
        name = safe_name(case)
        assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert safe_name("case_01") == "case_01"
    assert safe_name("a/b") != safe_name("a_b")
    assert safe_name("x_mask") != "x_mask"                 # never mistaken for the mask of case "x"
    with pytest.raises(ValueError, match="outside the output directory"):
        ledger_lib.inside(str(tmp_path), "../escape.png")


@pytest.mark.slow
def test_refuses_to_write_into_real_data(model_base, tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="output_dir must differ"):
        AugmentConfig(model=model_base, data_dir=tiny_dataset, output_dir=tiny_dataset).check_inputs()
    with pytest.raises(ValueError, match="output_dir must differ .* is inside the input dataset"):
        AugmentConfig(model=model_base, data_dir=tiny_dataset,
                      output_dir=os.path.join(tiny_dataset, "train", "aug")).check_inputs()
    other = write_tiny_dataset(str(tmp_path / "real"), splits=("train",))
    with pytest.raises(ValueError, match="holds a real converted dataset"):
        _augment(model_base, tiny_dataset, other)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="output_dir .*file': is a file, not a folder"):
        AugmentConfig(model=model_base, data_dir=tiny_dataset, output_dir=str(tmp_path / "file")).check_inputs()


@pytest.mark.slow
def test_refuses_a_folder_holding_files_it_did_not_write(model_base, tiny_dataset, tmp_path):
    """A user's shard under one of the names an augmentation writes stays as it was, even with
    --overwrite (which removes only an earlier augmentation's files)."""
    out = tmp_path / "aug"
    (out / "train").mkdir(parents=True)
    mine = out / "train" / "tumor-00000-of-00001.tfrecord"
    mine.write_bytes(b"the user's own shard")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is not empty and holds no augmentation of ours .* it has train"):
            _augment(model_base, tiny_dataset, out, overwrite=overwrite)
    assert mine.read_bytes() == b"the user's own shard" and sorted(os.listdir(out)) == ["train"]


@pytest.mark.slow
def test_one_augmentation_per_output_folder(model_base, tiny_dataset, tmp_path):
    out = tmp_path / "aug"
    with DirectoryLock(str(out), run_lib.LOCK_NAME, "an augmentation run", "--output_dir"):
        with pytest.raises(DirectoryLockedError, match=f"aug is in use by an augmentation run \\(pid {os.getpid()} "):
            _augment(model_base, tiny_dataset, out, format="png", directions=("tumor_to_normal",), contact_rows=0)
    assert sorted(os.listdir(out)) == [run_lib.LOCK_NAME]                 # nothing written meanwhile
    result = _augment(model_base, tiny_dataset, out, format="png", directions=("tumor_to_normal",), contact_rows=0)
    assert result.counts["normal"] == 6                                   # free again once released


@pytest.mark.slow
def test_model_from_training_run(tiny_dataset, tmp_path):
    from test_export import make_run_dir

    run = str(tmp_path / "run")
    make_run_dir(run, ModelConfig(image_size=SIZE, channels=1, ngf=8, ndf=8, n_res_blocks=1), step=11)
    result = _augment(run, tiny_dataset, str(tmp_path / "aug"), format="tfrecord", contact_rows=0)
    assert result.model == "run/step-11"
    assert _rows(str(tmp_path / "aug"))[0]["model_version"] == "step-11"


@pytest.mark.slow
def test_precision_of_a_training_run_and_of_an_export(model_base, tiny_dataset, tmp_path):
    """A training run is exported in the requested precision; an export computes in its own, and
    asking for another one explicitly is refused before anything is written."""
    from test_export import make_run_dir

    run = str(tmp_path / "run")
    make_run_dir(run, ModelConfig(image_size=SIZE, channels=1, ngf=8, ndf=8, n_res_blocks=1), step=3)
    _augment(run, tiny_dataset, str(tmp_path / "bf16"), contact_rows=0, precision="bf16")
    with open(os.path.join(str(tmp_path / "bf16"), ledger_lib.STATE_DIR, "plan.json")) as f:
        assert json.load(f)["precision"] == "bf16"
    _augment(model_base, tiny_dataset, str(tmp_path / "own"), contact_rows=0, precision="auto")
    with pytest.raises(ValueError, match="this export computes in fp32, not bf16; export again with --precision=bf16"):
        _augment(model_base, tiny_dataset, str(tmp_path / "refused"), contact_rows=0, precision="bf16")
    assert not os.path.exists(tmp_path / "refused" / "manifest.csv")
    with pytest.raises(ValueError, match="precision must be one of"):
        AugmentConfig(model=model_base, data_dir=tiny_dataset, output_dir=str(tmp_path / "x"), precision="fp64")


@pytest.mark.slow
def test_command_line(model_base, tiny_dataset, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    script = os.path.join(REPO_ROOT, "run_augment.py")
    common = [f"--model={model_base}", f"--data_dir={tiny_dataset}", f"--output_dir={tmp_path / 'aug'}"]
    bad = subprocess.run([sys.executable, script, *common, "--ratio=-1"], capture_output=True, text=True,
                         timeout=HANG_TIMEOUT, env=env, cwd=REPO_ROOT)
    assert bad.returncode != 0 and "--ratio=-1: ratio must be a positive number or 'all'" in bad.stderr
    assert not os.path.exists(tmp_path / "aug")
    good = subprocess.run([sys.executable, script, *common, "--format=png", "--directions=tumor_to_normal",
                           "--split=val"], capture_output=True, text=True, timeout=HANG_TIMEOUT, env=env, cwd=REPO_ROOT)
    assert good.returncode == 0, good.stderr[-3000:]
    rows = _rows(str(tmp_path / "aug"))
    assert len(rows) == 6 and {row["direction"] for row in rows} == {"tumor_to_normal"}
    assert all(row["output_path"].startswith("val/normal/") for row in rows)


@pytest.mark.slow
def test_judge_scores_the_synthetic_slices_into_the_summary(model_base, tiny_dataset, tmp_path):
    """With --judge, augment.json holds the judge's measures of the planned synthetic slices; the
    measured translations are those written (the generator is deterministic)."""
    import json

    from ssagan_tf import metrics
    from ssagan_tf.judge.config import JudgeConfig
    from ssagan_tf.judge.scoring import Judge
    from ssagan_tf.judge.train import train_judge

    judge_dir = str(tmp_path / "judge")
    train_judge(JudgeConfig(data_dir=tiny_dataset, output_dir=judge_dir, width=4, epochs=1, precision="fp32"),
                log=lambda _: None)
    out = str(tmp_path / "aug")
    _augment(model_base, tiny_dataset, out, format="tfrecord", ratio=None, judge=judge_dir, contact_rows=0)
    judged = json.load(open(os.path.join(out, "augment.json")))["judge"]
    assert judged["judge"] == judge_dir and set(judged["directions"]) == {"normal_to_tumor", "tumor_to_normal"}
    written = pipeline.load_split_arrays(schema.open(out), "train")
    p_tumor, _ = Judge(judge_dir).score(written["image"][written["label"] == 1])
    n2t = judged["directions"]["normal_to_tumor"]
    assert n2t["slices"] == 6 and n2t["rate"]["synthetic"] == pytest.approx(metrics.class_rate(p_tumor, True))
    with pytest.raises(ValueError, match="is not a judge"):
        AugmentConfig(model=model_base, data_dir=tiny_dataset, output_dir=str(tmp_path / "x"),
                      judge=str(tmp_path)).check_inputs()


def _write_pngs(data, seed=0):
    rng = np.random.default_rng(seed)
    for domain, n in (("normal", 3), ("tumor", 2)):
        os.makedirs(data / domain, exist_ok=True)
        for i in range(n):
            image = rng.integers(0, 255, (SIZE, SIZE, 1)).astype(np.uint8)
            tf.io.write_file(str(data / domain / f"img{i}.png"), tf.io.encode_png(image))
    return str(data)


@pytest.mark.slow
def test_overwrite_removes_exactly_the_files_it_wrote_and_refuses_user_files_beside(model_base, tiny_dataset,
                                                                                     tmp_path):
    """--overwrite deletes by its own record, never by pattern: user PNGs beside its own (named
    like them) make the folder refused, with or without --overwrite, and are kept."""
    out = tmp_path / "aug"
    _augment(model_base, tiny_dataset, out, format="png", ratio=None, contact_rows=0)
    written = _files_below(out)
    owned = ledger_lib.Ledger(str(out)).owned()
    assert {p for p in written if not p.startswith((".augment", run_lib.LOCK_NAME))} == owned
    user = out / "train" / "normal" / "my_own_slice.png"
    user.write_bytes(b"a user's png")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="holds files no augmentation wrote .*my_own_slice.png"):
            _augment(model_base, tiny_dataset, out, format="png", ratio=None, contact_rows=0, overwrite=overwrite)
    assert user.read_bytes() == b"a user's png" and _files_below(out) == written | {os.path.relpath(user, out)}
    os.remove(user)
    removed = ledger_lib.clear_previous(str(out))
    assert removed == len(owned) and sorted(os.listdir(out)) == [run_lib.LOCK_NAME]


@pytest.mark.slow
def test_refuses_data_inside_the_output_folder(model_base, tmp_path):
    data = write_tiny_dataset(str(tmp_path / "project" / "data"), splits=("train",))
    before = _files_below(data)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="data_dir .* lies inside output_dir"):
            _augment(model_base, data, tmp_path / "project", overwrite=overwrite)
    assert _files_below(data) == before


@pytest.mark.slow
def test_resume_refuses_other_input_data(model_base, tmp_path):
    """A re-conversion with other values under the same path (or edited PNGs) is other data: a
    re-run refuses to mix it with the committed chunks, naming the fix."""
    data = write_tiny_dataset(str(tmp_path / "data"), splits=("train",), seed=0)
    out = tmp_path / "aug"
    _augment(model_base, data, out, chunk_size=3, contact_rows=0)
    write_tiny_dataset(data, splits=("train",), seed=1)                    # re-converted in place
    with pytest.raises(ValueError, match="other input data.*checksum changed.*--overwrite.*another --output_dir"):
        _augment(model_base, data, out, chunk_size=3, contact_rows=0)
    _augment(model_base, data, out, chunk_size=3, contact_rows=0, overwrite=True)

    pngs = _write_pngs(tmp_path / "pngs")
    _augment(model_base, pngs, tmp_path / "aug_png", format="png", contact_rows=0)
    _write_pngs(tmp_path / "pngs", seed=1)
    with pytest.raises(ValueError, match="other input data"):
        _augment(model_base, pngs, tmp_path / "aug_png", format="png", contact_rows=0)


@pytest.mark.slow
def test_a_moved_project_completes_its_interrupted_run(model_base, tmp_path, monkeypatch):
    import shutil

    project = tmp_path / "project"
    data = write_tiny_dataset(str(project / "data"), splits=("train",))
    shutil.copytree(model_base, project / "export")
    commit, calls = ledger_lib.Ledger.commit, []

    def failing_commit(self, chunk, files, rows):
        if len(calls) == 2:
            raise KeyboardInterrupt("injected after two chunks")
        calls.append(chunk.name)
        commit(self, chunk, files, rows)

    monkeypatch.setattr(ledger_lib.Ledger, "commit", failing_commit)
    with pytest.raises(KeyboardInterrupt):
        _augment(str(project / "export"), data, project / "aug", chunk_size=2, contact_rows=0)
    monkeypatch.setattr(ledger_lib.Ledger, "commit", commit)
    moved = tmp_path / "elsewhere" / "project"
    shutil.move(str(project), str(moved))
    result = _augment(str(moved / "export"), str(moved / "data"), moved / "aug", chunk_size=2, contact_rows=0)
    assert result.chunks == 5 and result.chunks_skipped == 2 and len(_rows(str(moved / "aug"))) == 10


@pytest.mark.slow
def test_unknown_split_is_refused_and_a_failed_run_leaves_nothing(model_base, tiny_dataset, tmp_path):
    out = tmp_path / "aug"
    with pytest.raises(ValueError, match="--split=tset: .* has no such split; its splits are test, train, val"):
        _augment(model_base, tiny_dataset, out, split="tset")
    assert not out.exists()                        # no folder left holding only a lock file
    out.mkdir()                                    # a folder the user made: kept, emptied of ours
    with pytest.raises(ValueError, match="no such split"):
        _augment(model_base, tiny_dataset, out, split="tset")
    assert out.is_dir() and os.listdir(out) == []


@pytest.mark.slow
def test_a_chunk_cut_short_after_its_files_moved_is_still_owned(model_base, tiny_dataset, tmp_path, monkeypatch):
    """Killed between moving a chunk's files into place and recording it: the files were claimed
    first, so the re-run neither refuses them as a user's nor loses track of them."""
    out = tmp_path / "aug"
    real_replace = ledger_lib.durable.replace_durably

    def cut(staged, final):
        real_replace(staged, final)
        raise KeyboardInterrupt("cut after the first file moved")

    monkeypatch.setattr(ledger_lib.durable, "replace_durably", cut)
    with pytest.raises(KeyboardInterrupt):
        _augment(model_base, tiny_dataset, out, chunk_size=3, contact_rows=0)
    monkeypatch.undo()
    moved = {p for p in _files_below(out) if p.startswith("train")}
    assert moved and moved <= ledger_lib.Ledger(str(out)).owned()     # (two chunks may be in flight)
    result = _augment(model_base, tiny_dataset, out, chunk_size=3, contact_rows=0)
    assert result.chunks_skipped == 0 and len(_rows(str(out))) == 10
    ledger_lib.clear_previous(str(out))
    assert sorted(os.listdir(out)) == [run_lib.LOCK_NAME]


@pytest.mark.slow
def test_lesion_masks_are_the_masks_written_with_each_synthetic_tumor(model_base, tiny_dataset, tmp_path):
    """--lesion_masks: every synthetic tumor's mask is exactly the lesion mask transplanted onto its
    source slice (inside the brain), the slice is unchanged outside it, and a re-run draws the same."""
    from ssagan_tf import lesions

    out = str(tmp_path / "aug")
    _augment(model_base, tiny_dataset, out, format="tfrecord", directions=("normal_to_tumor",), lesion_masks=True,
             ratio=None, seed=3, batch_size=4)
    source = schema.open(tiny_dataset)
    normal = pipeline.load_split_arrays(source, "train", domains=("normal",))
    tumors = pipeline.load_split_arrays(source, "train", domains=("tumor",))
    expected = lesions.LesionMasks(tumors, 3, "train")(normal["image"], np.arange(len(normal["image"])))
    assert (expected.sum(axis=(1, 2, 3)) > 0).all()
    brain = lesions.brain_mask(normal["image"]).numpy()
    assert not (expected * (1 - brain)).any()
    synthetic = pipeline.load_split_arrays(schema.open(out), "train")
    assert len(synthetic["image"]) == len(normal["image"]) and (synthetic["label"] == 1).all()
    position = {(c, int(s)): i for i, (c, s) in enumerate(zip(normal["case_id"], normal["slice_index"]))}
    for k in range(len(synthetic["image"])):
        i = position[(synthetic["case_id"][k], int(synthetic["slice_index"][k]))]
        assert synthetic["has_mask"][k] == 1
        np.testing.assert_array_equal(synthetic["mask"][k], expected[i])
        outside = expected[i][..., 0] == 0
        np.testing.assert_array_equal(synthetic["image"][k][outside], normal["image"][i][outside])
    # Another batch size draws the same masks (they depend on the slice, not the batch).
    again = lesions.LesionMasks(tumors, 3, "train")(normal["image"][1:3], np.arange(1, 3))
    np.testing.assert_array_equal(again, expected[1:3])
    # The run records where lesions went, so a run resumed after the placement changed is refused.
    plans = [os.path.join(d, "plan.json") for d, _, names in os.walk(out) if "plan.json" in names]
    with open(plans[0]) as f:
        assert json.load(f)["lesion_placement"] == lesions.PLACEMENT_VERSION
