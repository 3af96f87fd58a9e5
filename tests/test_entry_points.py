"""Every entry point answers --help, absl's --helpshort/--helpfull/--helpxml and a bad flag before
TensorFlow is imported (it takes ~9 s to load), and `ssagan VERB` is the same command line as the
verb's own entry point. Each case runs the entry point as __main__ in a fresh interpreter and reports
its exit code and whether TensorFlow was imported."""

import json
import os
import subprocess
import sys

import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT

PROBE = """
import json, runpy, sys
kind, target, args = json.loads(sys.argv[1])
code = 0
try:
    if kind == "path":
        sys.argv = [target] + args
        runpy.run_path(target, run_name="__main__")
    elif kind == "ssagan":
        from ssagan_tf.commands import main
        code = main(["ssagan"] + args)
    else:
        sys.argv = [target] + args
        runpy.run_module(target, run_name="__main__", alter_sys=True)
except SystemExit as end:
    code = end.code
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""
# entry point -> (how the probe runs it, what it runs, a flag of its own that its help lists)
ENTRY_POINTS = {
    "run_train.py": ("path", "run_train.py", "--attention_epochs"),
    "run_augment.py": ("path", "run_augment.py", "--ratio"),
    "run_evaluate.py": ("path", "run_evaluate.py", "--augmenters"),
    "-m ssagan_tf.export": ("module", "ssagan_tf.export", "--tolerance"),
    "-m data_prep.convert": ("module", "data_prep.convert", "--image_size"),
    "-m ssagan_tf.judge": ("module", "ssagan_tf.judge", "--patience"),
    "-m ssagan_tf.evaluation.judge": ("module", "ssagan_tf.evaluation.judge", "--patience"),     # the former name
    "-m data_prep.phantom": ("module", "data_prep.phantom", "--slices"),
    "-m scripts.demo": ("module", "scripts.demo", "--cases"),
    "-m scripts.crossval": ("module", "scripts.crossval", "--train_flagfile"),
}


def probe(kind, target, args):
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps([kind, target, args])], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    return json.loads(lines[-1]), "\n".join(lines[:-1]), done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_helpfull_lists_every_flag_and_exits_0_without_tensorflow(entry_point):
    kind, target, own_flag = ENTRY_POINTS[entry_point]
    result, out, err = probe(kind, target, ["--helpfull"])
    assert result == {"code": 0, "tensorflow": False}, err[-3000:]
    # its own flags, absl's (--flagfile) and the logging module's (--verbosity): every loaded module's
    assert own_flag in out and "--flagfile" in out and "--verbosity" in out, out[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("entry_point, flag", [("run_train.py", "--helpshort"), ("-m ssagan_tf.export", "--helpshort"),
                                               ("run_augment.py", "--helpxml")])
def test_helpshort_and_helpxml_exit_0_without_tensorflow(entry_point, flag):
    kind, target, own_flag = ENTRY_POINTS[entry_point]
    result, out, err = probe(kind, target, [flag])
    assert result == {"code": 0, "tensorflow": False}, err[-3000:]
    assert (f"<name>{own_flag[2:]}</name>" if flag == "--helpxml" else f"{own_flag}:") in out, out[-3000:]
    if flag == "--helpshort":
        assert "--verbosity" not in out       # the entry point's own flags only, as --help


@pytest.mark.slow
@pytest.mark.parametrize("entry_point, args, code, expected", [
    ("run_augment.py", ["--help"], 0, "--chunk_size"),
    ("run_augment.py", ["--model=m", "--data_dir=d", "--output_dir=o", "--ratio=-1"], 2,
     "run_augment.py: --ratio=-1: ratio must be a positive number or 'all', got '-1' (try --help)"),
    ("run_augment.py", ["--model=/nonexistent", "--data_dir=/nonexistent", "--output_dir=/tmp/o"], 2, "/nonexistent"),
    ("-m ssagan_tf.export", ["--help"], 0, "--model_name"),
    ("-m ssagan_tf.export", ["--model_dir=/nonexistent", "--export_dir=x"], 2,
     "python -m ssagan_tf.export: --model_dir must be a training run directory"),
])
def test_augment_and_export_answer_before_tensorflow(entry_point, args, code, expected):
    kind, target, _ = ENTRY_POINTS[entry_point]
    result, out, err = probe(kind, target, args)
    assert result == {"code": code, "tensorflow": False}, err[-3000:]
    assert expected in out + err, (out + err)[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("args, code, expected", [
    (["--help"], 0, "judge     train the judge"),
    ([], 2, "usage: ssagan VERB [flags]"),
    (["tran"], 2, "ssagan: unknown verb 'tran'; one of convert, judge, train, export, augment, evaluate, demo"),
    (["train", "--help"], 0, "--attention_epochs"),
    (["export", "--help"], 0, "--tolerance"),
    (["augment", "--helpfull"], 0, "--chunk_size"),
    (["train", "--system=nope"], 2, "ssagan train: flag --system=nope: value should be one of"),
    (["demo", "--help"], 0, "--image_size"),
])
def test_ssagan_verbs_are_the_entry_points(args, code, expected):
    result, out, err = probe("ssagan", "ssagan", args)
    assert result == {"code": code, "tensorflow": False}, err[-3000:]
    assert expected in out + err, (out + err)[-3000:]


@pytest.mark.slow
def test_ssagan_train_reads_a_flagfile_and_names_itself_in_errors(tmp_path):
    """A flagfile's settings are checked like flags: here a missing dataset, refused before TensorFlow."""
    flagfile = tmp_path / "bad.flags"
    flagfile.write_text(f"# a recipe\n--data_dir={tmp_path / 'nowhere'}\n--model_dir={tmp_path / 'run'}\n--ngf=8\n")
    result, out, err = probe("ssagan", "ssagan", ["train", f"--flagfile={flagfile}"])
    assert result == {"code": 2, "tensorflow": False}, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ssagan train: ") and "nowhere" in lines[0], err
