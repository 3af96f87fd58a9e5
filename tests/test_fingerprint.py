"""scripts/fingerprint.py, the refactor check: what it leaves out of a file (times, paths,
checksums, a GZIP header, protobuf's map order) and what it must still see (every value)."""

import json

import numpy as np
import pytest

from scripts import fingerprint


def write_json(path, value):
    path.write_text(json.dumps(value))
    return fingerprint.file_digest(str(path))


def test_json_digest_ignores_run_dependent_values_and_sees_every_other(tmp_path):
    base = {"created": "2026-12-03T06:45:35Z", "data_dir": "/a/data", "counts": {"train": 3},
            "data": "a" * 64, "shards": {"x": {"records": 2, "bytes": 2863, "sha256": "b" * 64}}}
    moved = dict(base, created="2027-01-01T00:00:00Z", data_dir="/b/data", data="c" * 64,
                 shards={"x": {"records": 2, "bytes": 2800, "sha256": "d" * 64}})
    assert write_json(tmp_path / "a.json", base) == write_json(tmp_path / "b.json", moved)
    assert write_json(tmp_path / "a.json", base) != write_json(tmp_path / "c.json", dict(base, counts={"train": 4}))
    changed_records = dict(base, shards={"x": {"records": 3, "bytes": 2863, "sha256": "b" * 64}})
    assert write_json(tmp_path / "a.json", base) != write_json(tmp_path / "d.json", changed_records)


def test_text_digest_ignores_lines_with_times_or_paths(tmp_path):
    (tmp_path / "a.md").write_text("AUC 0.81\ntook 12 s\nin /a/b\n")
    (tmp_path / "b.md").write_text("AUC 0.81\ntook 40 s\nin /c/d\n")
    (tmp_path / "c.md").write_text("AUC 0.82\ntook 12 s\nin /a/b\n")
    digests = [fingerprint.file_digest(str(tmp_path / n)) for n in ("a.md", "b.md", "c.md")]
    assert digests[0] == digests[1] != digests[2]


def test_npz_digest_by_value_with_its_json_key_made_stable(tmp_path):
    def write(name, key, value):
        np.savez(tmp_path / name, key=np.array(json.dumps(key)), x=np.array(value, np.float32))
        return fingerprint.file_digest(str(tmp_path / name))

    a = write("a.npz", {"path": "/a/x", "seed": 0}, [1.0, 2.0])
    assert a == write("b.npz", {"path": "/b/y", "seed": 0}, [1.0, 2.0])
    assert a != write("c.npz", {"path": "/a/x", "seed": 1}, [1.0, 2.0])
    assert a != write("d.npz", {"path": "/a/x", "seed": 0}, [1.0, np.nextafter(np.float32(2), np.float32(3))])


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_tfrecord_digest_by_example_whatever_the_map_order_and_compression(tmp_path, compression):
    import tensorflow as tf

    def example(order, value):
        features = {"label": tf.train.Feature(int64_list=tf.train.Int64List(value=[value])),
                    "case_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"case"]))}
        message = tf.train.Example()
        for key in order:                       # the map's insertion order differs
            message.features.feature[key].CopyFrom(features[key])
        return message.SerializeToString()

    def write(name, order, value, options):
        with tf.io.TFRecordWriter(str(tmp_path / name), options) as writer:
            writer.write(example(order, value))
        return fingerprint.file_digest(str(tmp_path / name))

    options = tf.io.TFRecordOptions(compression_type=compression)
    a = write("a.tfrecord", ["label", "case_id"], 1, options)
    assert a == write("b.tfrecord", ["case_id", "label"], 1, tf.io.TFRecordOptions(compression_type=""))
    assert a != write("c.tfrecord", ["label", "case_id"], 0, options)


def test_compare_names_every_differing_entry():
    before = {"steps": {"loss/G": {"1": "0.5", "2": "0.4"}}, "files": {"a.png": "x", "b.png": "y"}}
    after = {"steps": {"loss/G": {"1": "0.5", "2": "0.41"}}, "files": {"a.png": "x", "c.png": "y"}}
    lines = fingerprint.compare(before, after)
    assert lines == ["files: b.png: y -> None", "files: c.png: None -> y", "steps: loss/G: 1 differ, e.g. ['2']"]
    assert fingerprint.compare(before, before) == []


def test_refuses_a_work_folder_it_did_not_make(tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    (tmp_path / "user_file").write_text("mine")
    done = subprocess.run([sys.executable, "-m", "scripts.fingerprint", f"--work_dir={tmp_path}",
                           f"--fingerprint={tmp_path / 'f.json'}"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and "was not made by this script" in done.stderr
    assert (tmp_path / "user_file").read_text() == "mine" and not (tmp_path / "f.json").exists()
