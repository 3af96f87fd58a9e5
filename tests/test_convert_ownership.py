"""The converter touches only what it wrote: output folders that are, hold or lie inside the input,
or hold anything not in its record of written files, are refused before any work (with or without
--overwrite); --overwrite removes only recorded files; staging folders are recognised by the lock
inside them (host and pid), never by name; an interrupted --overwrite keeps the old report."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import io as skio

from data_prep import ownership, stage
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions

QUIET = dict(log=lambda _: None)


def write_keep_splits_pairs(root):
    """The documented --keep_splits layout: Training/, Validation/, Testing/ of NIfTI pairs."""
    rng = np.random.default_rng(4)
    for k, top in enumerate(("Training", "Validation", "Testing")):
        for p in range(2):
            folder = root / top / f"P{k}{p}"
            os.makedirs(folder)
            image = np.zeros((10, 24, 24), np.float32)
            image[:, 4:20, 4:20] = rng.uniform(50, 100, (10, 16, 16))
            seg = np.zeros((10, 24, 24), np.uint8)
            seg[3:6, 8:14, 8:14] = 1
            image[seg > 0] = 200
            sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / "scan_flair.nii.gz"))
            sitk.WriteImage(sitk.GetImageFromArray(seg), str(folder / "scan_seg.nii.gz"))
    return root


def pairs_config(root, out, **kw):
    reader = ReaderOptions(modalities=("flair",), image_glob="*/*/scan_flair.nii.gz", mask_replace=("_flair", "_seg"),
                           keep_splits=True)
    return ConvertConfig(input_dir=str(root), format="pairs", output_dir=str(out), reader=reader,
                         prep=PrepOptions(image_size=24, min_tumor_pixels=5), workers=1, num_shards=1, **kw)


def write_class_folders(root, n=4):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:24, :24]
    head = (yy - 12) ** 2 + (xx - 12) ** 2 <= 9 ** 2
    for i in range(n):
        for cls in ("yes", "no"):
            os.makedirs(root / cls, exist_ok=True)
            skio.imsave(str(root / cls / f"{cls}{i}.png"), (head * rng.uniform(80, 200, (24, 24))).astype(np.uint8),
                        check_contrast=False)
    return root


def folders_config(root, out, **kw):
    return ConvertConfig(input_dir=str(root), format="folders", output_dir=str(out),
                         prep=PrepOptions(image_size=24, min_tumor_pixels=1), workers=1, num_shards=1, **kw)


def snapshot(root) -> dict:
    """Every file under `root` with its sha256 (links by their target)."""
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            out[os.path.relpath(path, root)] = (os.readlink(path) if os.path.islink(path)
                                                else hashlib.sha256(open(path, "rb").read()).hexdigest())
    return out


@pytest.mark.parametrize("where", ["equal", "inside", "holding"])
def test_output_equal_to_inside_or_holding_the_input_is_refused_and_the_input_kept(tmp_path, where):
    """The documented --keep_splits layout with --output_dir == --input (it lost all its volumes),
    a folder inside it, and a folder holding it: refused before any work, every input file intact."""
    data = write_keep_splits_pairs(tmp_path / "in")
    out = {"equal": data, "inside": data / "tfrecords", "holding": tmp_path}[where]
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="--output_dir .* (is|lies inside|holds) --input"):
            convert(pairs_config(data, out, overwrite=overwrite), **QUIET)
    assert snapshot(tmp_path) == before and len(before) == 12


@pytest.mark.parametrize("planted", ["notes.txt", "train/mine.tfrecord", "x.tmp-123", ".staging-999/keep.txt",
                                     "empty_folder/"])
def test_a_folder_holding_anything_else_is_refused_with_or_without_overwrite(tmp_path, planted):
    """Files the converter did not write, including ones named like its temporaries and staging
    folders, are never replaced nor deleted; the folder is refused before any work."""
    data = write_class_folders(tmp_path / "in")
    out = tmp_path / "out"
    path = out / planted
    os.makedirs(path if planted.endswith("/") else path.parent, exist_ok=True)
    if not planted.endswith("/"):
        path.write_text("a user's")
    before = snapshot(out)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="holds files the converter did not write .*" + planted.split("/")[0]):
            convert(folders_config(data, out, overwrite=overwrite), **QUIET)
    assert snapshot(out) == before and os.path.exists(path)


def test_overwrite_replaces_only_its_own_dataset(tmp_path):
    data = write_class_folders(tmp_path / "in")
    out = tmp_path / "out"
    convert(folders_config(data, out), **QUIET)
    record = ownership.read_record(str(out))
    assert {"manifest.json", "conversion_report.md"} <= record and any(f.startswith("train/") for f in record)
    assert set(ownership.present_files(str(out))) == record        # it records exactly what it wrote
    with pytest.raises(ValueError, match="already holds a converted dataset; pass --overwrite"):
        convert(folders_config(data, out), **QUIET)
    convert(folders_config(data, out, overwrite=True, seed=3), **QUIET)
    assert json.loads((out / "manifest.json").read_text())["settings"]["seed"] == 3

    (out / "train" / "my_notes.txt").write_text("a user's")       # now the folder is not only ours
    before = snapshot(out)
    with pytest.raises(ValueError, match="train/my_notes.txt"):
        convert(folders_config(data, out, overwrite=True), **QUIET)
    assert snapshot(out) == before


def test_a_dataset_without_the_record_is_not_replaced(tmp_path):
    """A dataset the converter cannot prove it wrote (an older version's, or copied in by hand)."""
    data = write_class_folders(tmp_path / "in")
    out = tmp_path / "out"
    convert(folders_config(data, out), **QUIET)
    os.remove(out / ownership.RECORD_NAME)
    before = snapshot(out)
    with pytest.raises(ValueError, match="no record of the converter's files"):
        convert(folders_config(data, out, overwrite=True), **QUIET)
    assert snapshot(out) == before
    (out / ownership.RECORD_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable record"):
        convert(folders_config(data, out, overwrite=True), **QUIET)


def _plant_staging(out, name, host, pid):
    folder = out / name
    os.makedirs(folder / "cases")
    (folder / ownership.STAGING_LOCK).write_text(json.dumps({"pid": pid, "host": host, "what": "a conversion"}))
    return folder


def test_staging_is_recognised_by_its_lock_not_its_name(tmp_path):
    """A live conversion's staging folder (its lock held) makes a second conversion refused; a
    dead conversion of this machine leaves one that the next run removes; another machine's is
    left alone (and does not make the folder foreign)."""
    data = write_class_folders(tmp_path / "in")
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = _plant_staging(out, f".staging-{dead.pid}-abc", socket.gethostname(), dead.pid)
    remote = _plant_staging(out, ".staging-4242-xyz", "another-machine", 4242)
    live = _plant_staging(out, ".staging-1-live", socket.gethostname(), 1)
    holder = ownership.staging_lock(str(live))         # held: a live conversion
    try:
        with pytest.raises(ValueError, match=f"is in use by a conversion \\(pid {os.getpid()} on "):
            convert(folders_config(data, out), **QUIET)
        assert stale.exists() and remote.exists() and live.exists() and not (out / "manifest.json").exists()
    finally:
        holder.release()                               # now it is a dead conversion's too
    convert(folders_config(data, out), **QUIET)
    assert not stale.exists() and not live.exists() and remote.exists()
    assert (out / "manifest.json").exists()


def test_an_interrupted_overwrite_keeps_the_old_dataset_and_its_report(tmp_path, monkeypatch):
    data = write_class_folders(tmp_path / "in")
    out = tmp_path / "out"
    convert(folders_config(data, out), **QUIET)
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "_process", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(folders_config(data, out, overwrite=True), **QUIET)
    after = snapshot(out)
    failed = after.pop("conversion_failed.md")
    after.pop(ownership.RECORD_NAME), before.pop(ownership.RECORD_NAME)
    assert after == before                                   # the dataset and its report untouched
    text = (out / "conversion_failed.md").read_text()
    assert "did not complete" in text and "unchanged" in text and failed
    monkeypatch.undo()
    convert(folders_config(data, out, overwrite=True), **QUIET)   # the next success removes it
    assert not (out / "conversion_failed.md").exists()
    assert "conversion_failed.md" not in ownership.read_record(str(out))
