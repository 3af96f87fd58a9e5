"""A benchmark writes its JSON result whole, replaces only a result of the same benchmark, and refuses
any other file at its output path before it measures anything (`benchmarks/result_file.py`)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
import result_file  # noqa: E402

BENCHMARKS = ["bench_augment", "bench_classifier", "bench_data", "bench_local", "bench_peak", "bench_placement",
              "bench_train"]
OUTPUT_FLAG = {"bench_augment": "output_json", "bench_peak": "output_json", "bench_data": "json_out"}


def test_a_result_is_written_with_its_benchmark_and_replaces_only_its_own(tmp_path):
    path = str(tmp_path / "sub" / "result.json")
    written = result_file.write(path, {"rows": [1, 2], "benchmark": "spoofed"}, "bench_x")
    assert list(written) == ["benchmark", "rows"] and written["benchmark"] == "bench_x"
    with open(path) as f:
        assert json.load(f) == {"benchmark": "bench_x", "rows": [1, 2]}
    result_file.write(path, {"rows": [3]}, "bench_x")                 # a rerun replaces its own result
    with open(path) as f:
        assert json.load(f)["rows"] == [3]
    assert os.listdir(tmp_path / "sub") == ["result.json"]             # no temporary left beside it
    with pytest.raises(result_file.ForeignFileError, match="is a result of bench_x"):
        result_file.write(path, {"rows": []}, "bench_y")               # another benchmark's result stays
    with open(path) as f:
        assert json.load(f)["rows"] == [3]


@pytest.mark.parametrize("content, message", [
    ("my notes, not JSON\n", "is not a JSON result of bench_x"),
    ("[1, 2, 3]\n", "is not a result of bench_x"),
    ('{"rows": [1]}\n', "is not a result of bench_x"),
    ('{"benchmark": 7}\n', "is not a result of bench_x"),
])
def test_a_file_the_benchmark_did_not_write_is_refused_and_kept(tmp_path, content, message):
    path = tmp_path / "result.json"
    path.write_text(content)
    with pytest.raises(result_file.ForeignFileError, match=message):
        result_file.write(str(path), {"rows": []}, "bench_x")
    assert path.read_text() == content
    assert os.listdir(tmp_path) == ["result.json"]


def test_a_folder_or_link_at_the_output_path_is_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(result_file.ForeignFileError, match="is a folder"):
        result_file.check(str(tmp_path / "folder"), "bench_x")
    target = tmp_path / "target.json"
    target.write_text('{"benchmark": "bench_x"}')
    os.symlink(target, tmp_path / "link.json")
    with pytest.raises(result_file.ForeignFileError, match="is a link"):
        result_file.write(str(tmp_path / "link.json"), {"rows": []}, "bench_x")
    assert target.read_text() == '{"benchmark": "bench_x"}'


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_every_benchmark_refuses_a_foreign_output_before_measuring(tmp_path, benchmark):
    """Each benchmark's command, pointed at a user's file, exits with 2 naming it, before its first
    measurement (fast: a measurement would take seconds to minutes), and leaves the file as it was."""
    path = tmp_path / "notes.json"
    path.write_text('{"mine": true}')
    flag = OUTPUT_FLAG.get(benchmark, "output")
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", benchmark + ".py"),
                           f"--{flag}={path}"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{path}: exists and is not a result of {benchmark}" in done.stderr
    assert path.read_text() == '{"mine": true}'
    assert os.listdir(tmp_path) == ["notes.json"]


@pytest.mark.slow
def test_a_benchmark_run_writes_its_result_and_a_rerun_replaces_it(tmp_path):
    """bench_placement at its smallest: the JSON names the benchmark and holds the rows the table
    printed; a second run replaces the first result in place."""
    path = tmp_path / "placement.json"
    command = [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "bench_placement.py"), "--sizes=32",
               "--batches=1", "--rounds=1", f"--output={path}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    with open(path) as f:
        result = json.load(f)
    assert result["benchmark"] == "bench_placement"
    assert result["rows"] and all(row["size"] == 32 and row["batch"] == 1 for row in result["rows"])
    assert sorted(os.listdir(tmp_path)) == ["placement.json"]
