"""ssagan_tf/io.py: a file written whole appears whole or not at all. A writer failing mid-write, or
a rename that cannot happen, leaves the final path as it was and no temporary behind; temporaries
carry the name their recognisers expect (`TEMPORARY_MARK`, the writer's suffix)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from ssagan_tf import io as durable


class WriterFailed(Exception):
    pass


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    assert durable.atomic_write(str(target), '{"step": 2}') == str(target)
    assert target.read_text() == '{"step": 2}' and os.listdir(tmp_path) == ["state.json"]
    durable.atomic_write(str(target), b"\x00\xffbytes")
    assert target.read_bytes() == b"\x00\xffbytes" and os.listdir(tmp_path) == ["state.json"]


def test_atomic_write_cut_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("the old report")
    seen = []

    def fsync(fd):                 # the data is written, the disk fails before the rename
        seen.append(sorted(os.listdir(tmp_path)))
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        durable.atomic_write(str(target), "the new report, half written")
    assert target.read_text() == "the old report" and os.listdir(tmp_path) == ["report.md"]
    temporary = [name for name in seen[0] if name != "report.md"]
    assert len(temporary) == 1 and re.fullmatch(r"report\.md" + durable.TEMPORARY_MARK, temporary[0])


def test_atomic_output_puts_what_the_writer_wrote_in_place(tmp_path):
    target = tmp_path / "ckpt-3.index"
    with durable.atomic_output(str(target)) as temp:
        assert os.path.dirname(temp) == str(tmp_path) and not target.exists()
        assert re.fullmatch(r"ckpt-3\.index" + durable.TEMPORARY_MARK, os.path.basename(temp))
        with open(temp, "wb") as f:
            f.write(b"index")
    assert target.read_bytes() == b"index" and os.listdir(tmp_path) == ["ckpt-3.index"]


def test_atomic_output_writer_failing_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "scan.nii.gz"
    target.write_bytes(b"old volume")
    with pytest.raises(WriterFailed):
        with durable.atomic_output(str(target), suffix=".nii.gz") as temp:
            assert temp.endswith(".nii.gz") and os.path.basename(temp).startswith("scan.nii.gz.tmp-")
            with open(temp, "wb") as f:
                f.write(b"half a vol")
            raise WriterFailed
    assert target.read_bytes() == b"old volume" and os.listdir(tmp_path) == ["scan.nii.gz"]


def test_atomic_output_writer_failing_before_creating_its_file_leaves_nothing(tmp_path):
    with pytest.raises(WriterFailed):
        with durable.atomic_output(str(tmp_path / "new.png"), suffix=".png"):
            raise WriterFailed
    assert os.listdir(tmp_path) == []


def test_atomic_output_rename_refused_leaves_no_temporary(tmp_path):
    (tmp_path / "taken").mkdir()                    # a folder where the file should go
    with pytest.raises(OSError):
        with durable.atomic_output(str(tmp_path / "taken")) as temp:
            with open(temp, "w") as f:
                f.write("x")
    assert os.listdir(tmp_path) == ["taken"] and os.listdir(tmp_path / "taken") == []


def test_atomic_output_suffix_lets_np_savez_write_the_temporary_itself(tmp_path):
    """np.savez adds `.npz` to a name not ending in it: without the suffix its file would not be
    the one renamed into place."""
    target = tmp_path / "cache.npz"
    with durable.atomic_output(str(target), suffix=".npz") as temp:
        np.savez(temp, x=np.arange(3))
    with np.load(target) as stored:
        np.testing.assert_array_equal(stored["x"], [0, 1, 2])
    assert os.listdir(tmp_path) == ["cache.npz"]


def test_atomic_output_in_a_temporary_folder_of_ones_own(tmp_path):
    own = tmp_path / ".state"
    own.mkdir()
    with durable.atomic_output(str(tmp_path / "sheet.png"), temp_dir=str(own), suffix=".png") as temp:
        assert os.path.dirname(temp) == str(own)
        with open(temp, "wb") as f:
            f.write(b"png")
        assert os.listdir(tmp_path) == [".state"]
    assert (tmp_path / "sheet.png").read_bytes() == b"png" and os.listdir(own) == []
    with pytest.raises(WriterFailed):
        with durable.atomic_output(str(tmp_path / "sheet.png"), temp_dir=str(own), suffix=".png") as temp:
            open(temp, "wb").close()
            raise WriterFailed
    assert (tmp_path / "sheet.png").read_bytes() == b"png" and os.listdir(own) == []


def test_two_temporaries_of_one_file_have_different_names(tmp_path):
    first, second = (durable.temporary_path(str(tmp_path / "a.json")) for _ in range(2))
    assert first != second
    assert all(re.fullmatch(r"a\.json" + durable.TEMPORARY_MARK, os.path.basename(p)) for p in (first, second))
