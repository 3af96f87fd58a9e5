"""Files that cannot hurt: a NIfTI header claiming absurd sizes is one rejected case, symbolic-link
loops end every walk, planted symbolic links under a lock's name are refused, and atomic writes
reach the disk before their rename."""

from __future__ import annotations

import gzip
import json
import os
import struct
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import readers
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions, common
from ssagan_tf import io as durable
from ssagan_tf.data import nifti_check, volumes
from ssagan_tf.locking import DirectoryLock, is_held, read_holder


def _volume(rng, tumor=True):
    image = np.zeros((10, 24, 24), np.float32)
    image[:, 4:20, 4:20] = rng.uniform(50, 100, (10, 16, 16))
    seg = np.zeros((10, 24, 24), np.uint8)
    if tumor:
        seg[3:6, 8:14, 8:14] = 1
        image[seg > 0] = 200
    return image, seg


def write_pairs(root, patients=4, seed=0):
    rng = np.random.default_rng(seed)
    for p in range(patients):
        folder = root / f"P{p}"
        os.makedirs(folder)
        image, seg = _volume(rng)
        sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / "scan_img.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(seg), str(folder / "scan_seg.nii.gz"))
    return root


def claim_absurd_size(path, dims=(32767, 32767, 32767)):
    """Rewrite the dim field of a NIfTI-1 header (bytes 40-56) in place, gzip or not."""
    compressed = str(path).endswith(".gz")
    data = bytearray(gzip.decompress(open(path, "rb").read()) if compressed else open(path, "rb").read())
    data[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    open(path, "wb").write(gzip.compress(bytes(data)) if compressed else bytes(data))


@pytest.mark.parametrize("name,dtype", [("v.nii", np.int16), ("v.nii.gz", np.int16), ("v.nii", np.float32),
                                        ("v.nii.gz", np.float32)])
def test_absurd_header_is_rejected_before_allocating(tmp_path, name, dtype):
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), dtype)), str(path))
    claim_absurd_size(path)
    with pytest.raises(volumes.CaseError, match="implausible header: it claims 32767 x 32767 x 32767"):
        volumes.read_volume(str(path))


def test_a_gzip_stream_too_small_for_its_header_is_rejected_before_inflating(tmp_path):
    """Within the voxel limit, but more than deflate could have packed into the file."""
    path = tmp_path / "v.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(path))
    claim_absurd_size(path, dims=(1200, 1200, 1200))
    assert "more than a" in nifti_check.nifti_problem(str(path))
    with pytest.raises(volumes.CaseError, match=r"claims 1200 x 1200 x 1200 voxels .* more than a \d+-byte gzip"):
        volumes.read_volume(str(path))


def test_conversion_rejects_the_absurd_case_and_converts_the_others(tmp_path):
    data = write_pairs(tmp_path / "in", patients=4)
    claim_absurd_size(data / "P2" / "scan_img.nii.gz")
    config = ConvertConfig(input_dir=str(data), format="pairs", output_dir=str(tmp_path / "out"),
                           reader=ReaderOptions(image_glob="*/scan_img.nii.gz", mask_replace=("_img", "_seg")),
                           prep=PrepOptions(image_size=24, min_tumor_pixels=5), workers=1, num_shards=1,
                           val_fraction=0.34, train_fraction=0.33)
    manifest = convert(config, log=lambda _: None)
    assert [r["case"] for r in manifest["rejected"]] == ["P2/scan_img"]
    assert "implausible header" in manifest["rejected"][0]["problem"]
    assert sorted(c for cases in manifest["cases"].values() for c in cases) == ["P0/scan_img", "P1/scan_img",
                                                                                 "P3/scan_img"]


def _finishes(function, seconds=60):
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=function()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function} did not end: a symbolic-link loop was followed round and round"
    return result["value"]


def test_symlink_loops_end_the_pairs_glob_and_every_walk(tmp_path):
    """`**` with two links back up the tree made glob.glob(recursive=True) walk 2^40 paths."""
    data = write_pairs(tmp_path / "in", patients=3)
    os.symlink("..", data / "P0" / "up")
    os.symlink("..", data / "P1" / "up_again")
    os.symlink(str(data), data / "P2" / "root")
    options = ReaderOptions(image_glob="**/*_img.nii.gz", mask_replace=("_img", "_seg"))
    cases, problems = _finishes(lambda: readers.discover(str(data), "pairs", options))
    assert sorted(c.case_id for c in cases) == ["P0/scan_img", "P1/scan_img", "P2/scan_img"] and not problems
    walked = _finishes(lambda: sorted(os.path.join(d, n) for d, n in common.walk_files(str(data))))
    assert len(walked) == 6
    assert common.glob_relative(str(data), "*/scan_*.nii.gz") == [f"P{p}/scan_{k}.nii.gz" for p in range(3)
                                                                   for k in ("img", "seg")]
    assert common.glob_relative(str(data), "**/P1") == ["P1"]


def test_a_lock_planted_as_a_symlink_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("must survive")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(victim, run / "train.lock")
    with pytest.raises(OSError, match="train.lock: the lock file is a symbolic link; refusing to follow it"):
        DirectoryLock(str(run), "train.lock", "a training run", "--model_dir").acquire()
    assert victim.read_text() == "must survive"
    assert read_holder(str(run / "train.lock")) == {}
    with pytest.raises(OSError, match="symbolic link"):
        is_held(str(run / "train.lock"))
    assert victim.read_text() == "must survive"


def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")) else "file"))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "state.json"
    durable.atomic_write(str(target), json.dumps({"step": 1}))
    assert events == [("fsync", "file"), ("replace", "state.json"), ("fsync", "dir")]
    assert json.loads(target.read_text()) == {"step": 1} and os.listdir(tmp_path) == ["state.json"]
    events.clear()
    staged = tmp_path / "staged.bin"
    staged.write_bytes(b"x")
    durable.replace_durably(str(staged), str(tmp_path / "final.bin"))
    assert events == [("fsync", "file"), ("replace", "final.bin"), ("fsync", "dir")]


def test_atomic_write_into_a_temporary_folder_of_ones_own_leaves_nothing_beside(tmp_path, monkeypatch):
    own = tmp_path / ".state"
    own.mkdir()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        durable.atomic_write(str(tmp_path / "report.md"), "text", temp_dir=str(own))
    assert os.listdir(tmp_path) == [".state"] and os.listdir(own) == []
