"""ssagan_tf/cli.py: every entry point's --help lists its own flags and exits 0 (absl's exits 1);
the project's own errors end in one line and exit 1 (--debug shows the traceback); a usage error
is one line with a --help hint, exit 2."""

import os
import re
import subprocess
import sys

import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT

ENTRY_POINTS = {
    "run_train.py": ["--data_dir", "--model_dir", "--precision", "--d_mode", "--judge", "--system", "--cycle_attention",
                     "--attention_area", "--lambda_attention_area", "--upsample", "--export_dir", "--folds", "--fold",
                     "--fold_seed", "--tumor_fraction", "--d_local"],
    "run_augment.py": ["--model", "--output_dir", "--precision", "--judge"],
    "run_evaluate.py": ["--augmenters", "--precision", "--judge", "--tumor_fraction", "--folds", "--fold_seed",
                        "--weight_decay", "--lr_schedule", "--classic_impl", "--classic_strength",
                        "--bootstrap_resamples", "--tumors_only", "--normals_only", "--[no]balance_classes"],
    "-m ssagan_tf.export": ["--model_dir", "--export_dir", "--precision", "--tolerance"],
    "-m data_prep.convert": ["--input", "--channel_names", "--[no]match_anatomy"],
    "-m ssagan_tf.judge": ["--data_dir", "--output_dir", "--width", "--[no]classic"],
    "-m data_prep.phantom": ["--output_dir", "--cases", "--size", "--slices", "--seed"],
    "-m scripts.demo": ["--output_dir", "--cases", "--image_size", "--epochs", "--[no]fresh"],
    "-m scripts.crossval": ["--data_dir", "--output_dir", "--folds", "--systems", "--train_flagfile",
                            "--tumor_fraction", "--evaluate_flags"],
    "-m scripts.texture": ["--data_dir", "--models", "--split", "--resamples"],
    "-m scripts.fill": ["--data_dir", "--model", "--split", "--seed", "--resamples"],
    "-m scripts.stripes": ["--data_dir", "--run", "--split", "--resamples"],
    "-m scripts.fingerprint": ["--work_dir", "--fingerprint", "--compare"],
    "-m scripts.pair": ["--reference", "--rows", "--resamples", "--seeds"],
}


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_help_lists_the_flags_and_exits_0(entry_point):
    done = subprocess.run([sys.executable, *entry_point.split(), "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    for flag in ENTRY_POINTS[entry_point]:
        assert f"{flag}:" in done.stdout or f"{flag}=" in done.stdout, (flag, done.stdout[-2000:])


def _run(*args, timeout=HANG_TIMEOUT):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def _our_lines(stderr, program):
    """The lines we wrote (TensorFlow's C++ start-up lines aside)."""
    return [line for line in stderr.splitlines() if line.startswith(program + ":")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from conftest import write_tiny_dataset

    return write_tiny_dataset(str(tmp_path_factory.mktemp("cli_data")), splits=("train", "val"))


def _errors(data_dir, tmp):
    """entry point -> (arguments that fail in the library, the one line expected)."""
    (tmp / "a_file").write_text("x")
    (tmp / "run_without_checkpoint").mkdir()
    (tmp / "run_without_checkpoint" / "config.json").write_text("{}")
    (tmp / "empty").mkdir()
    (tmp / "not_a_model").mkdir()
    (tmp / "corrupt" / "Case1").mkdir(parents=True)                   # a case whose files do not read
    for name in ("Case1_t1ce.nii.gz", "Case1_seg.nii.gz"):
        (tmp / "corrupt" / "Case1" / name).write_text("garbage")
    return {
        "run_train.py": ([f"--data_dir={data_dir}", f"--model_dir={tmp / 'a_file'}", "--precision=fp32"],
                         r"error: --model_dir \S+a_file: is a file, not a folder$"),
        "run_augment.py": ([f"--model={tmp / 'not_a_model'}", f"--data_dir={data_dir}", f"--output_dir={tmp / 'aug'}"],
                           r"error: --model '\S+not_a_model' is neither an export version dir"),
        "-m ssagan_tf.export": ([f"--model_dir={tmp / 'run_without_checkpoint'}", f"--export_dir={tmp / 'x'}",
                                 "--precision=fp32"],
                                r"error: \S+run_without_checkpoint/config.json: no 'model' section"),
        "-m data_prep.convert": ([f"--input={tmp / 'corrupt'}", "--format=brats", "--modalities=t1ce",
                                  f"--output_dir={tmp / 'out'}"], r"error: no case converted from \S+corrupt; see "),
    }


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ["run_train.py", "run_augment.py", "-m ssagan_tf.export",
                                         "-m data_prep.convert"])
def test_project_errors_are_one_line_and_exit_1(entry_point, data_dir, tmp_path):
    args, expected = _errors(data_dir, tmp_path)[entry_point]
    done = _run(*entry_point.split(), *args)
    program = "python -m " + entry_point[3:] if entry_point.startswith("-m ") else entry_point
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = _our_lines(done.stderr, program)
    assert len(lines) == 1 and re.search(expected, lines[0]), done.stderr[-3000:]


@pytest.mark.slow
def test_debug_shows_the_traceback(data_dir, tmp_path):
    args, _ = _errors(data_dir, tmp_path)["run_augment.py"]
    done = _run("run_augment.py", *args, "--debug")
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
    assert "ValueError: --model" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["--epochs=many"], r"flag --epochs=many: invalid literal for int\(\)"),
    (["--no_such_flag=1"], r"Unknown command line flag 'no_such_flag'"),
    (["--data_dir=/nonexistent"], r"flag --output_dir=None: Flag --output_dir must have a value other than None"),
])
def test_usage_errors_are_one_line_with_a_help_hint(args, expected):
    done = _run("run_evaluate.py", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("run_evaluate.py: ") and lines[0].endswith("(try --help)"), lines
    assert re.search(expected, lines[0]), lines


QUIET_PROBE = """
import sys
from ssagan_tf import cli


def main(argv):
    import tensorflow as tf

    from ssagan_tf.training.strategy import make_strategy

    strategy = make_strategy("mirrored")
    with strategy.scope():
        variable = tf.Variable(1.0)
    tf.train.Checkpoint(v=variable).save(sys.argv[1])
    raise ValueError("the real problem")


cli.run(main, "probe", argv=["probe"])
"""
NOISE = ("failed call to cuInit", "oneDNN custom operations", "Could not find cuda drivers",
         "Using MirroredStrategy with devices", "Sharding callback duration", "absl::InitializeLog")


@pytest.mark.slow
@pytest.mark.parametrize("level", [None, "0"])
def test_tensorflow_start_up_chatter_is_quiet_and_real_errors_show(tmp_path, level):
    """A command that imports TensorFlow, makes the strategy and saves a checkpoint: none of
    TensorFlow's start-up or INFO lines, and the error in one line. A user who sets
    TF_CPP_MIN_LOG_LEVEL=0 gets TensorFlow's lines back."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    done = subprocess.run([sys.executable, "-c", QUIET_PROBE, str(tmp_path / "ckpt")], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "probe: error: the real problem" in done.stderr, out
    if level is None:
        assert not [word for word in NOISE if word in out], out
    else:
        assert "Using MirroredStrategy with devices" in out and "oneDNN custom operations" in out, out


SLEEP_PROBE = """
import pathlib, sys, time
from ssagan_tf import cli


def main(argv):
    pathlib.Path(sys.argv[1]).write_text("ready")
    time.sleep(600)


cli.run(main, "probe", argv=["probe"])
"""


def _wait_for(condition, proc, what, seconds=240):
    import time

    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, f"ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.time() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_end_a_command_with_one_line_and_exit_130(tmp_path, name):
    """What every entry point shares (ssagan_tf.cli): SIGTERM ends as Ctrl-C does, never with -15."""
    import signal

    ready = tmp_path / "ready"
    # A shell's background job starts with SIGINT ignored, and Python then keeps it ignored: give
    # the probe the default disposition, as a terminal's foreground command has.
    proc = subprocess.Popen([sys.executable, "-c", SLEEP_PROBE, str(ready)], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(ready.exists, proc, "the probe started")
    proc.send_signal(getattr(signal, name))
    out, err = proc.communicate(timeout=HANG_TIMEOUT)
    assert proc.returncode == 130 and err.strip().splitlines() == ["probe: interrupted"], (proc.returncode, err)


@pytest.mark.slow
def test_augmentation_stopped_with_sigterm_says_interrupted_and_exits_130(data_dir, tmp_path):
    import signal

    from ssagan_tf import export
    from ssagan_tf.locking import is_held
    from ssagan_tf.models import ModelConfig, build_models

    models = build_models(ModelConfig(image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1))
    model = os.path.dirname(export.write_export(models, str(tmp_path / "export"), tau=0.1))
    out = tmp_path / "aug"
    proc = subprocess.Popen([sys.executable, "run_augment.py", f"--model={model}", f"--data_dir={data_dir}",
                             f"--output_dir={out}", "--ratio=100", "--chunk_size=1", "--contact_rows=0",
                             "--directions=normal_to_tumor"], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    _wait_for(lambda: len(list((out / ".augment" / "chunks").glob("*.json"))) >= 2, proc, "two committed chunks")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_TIMEOUT)
    assert proc.returncode == 130 and "Traceback" not in err, (proc.returncode, err[-3000:])
    assert _our_lines(err, "run_augment.py") == ["run_augment.py: interrupted"], err[-3000:]
    lock = out / ".augment.lock"
    assert not (out / "manifest.csv").exists() and lock.exists() and not is_held(str(lock))


@pytest.mark.slow
def test_demo_with_other_settings_refuses_at_start_and_fresh_removes_only_its_own(tmp_path):
    import json

    out = tmp_path / "demo"
    for name in ("data", "train", "crossval"):
        (out / name).mkdir(parents=True)
        (out / name / "kept_until_fresh").write_text("x")
    (out / "notes.txt").write_text("the user's")
    (out / "demo.json").write_text(json.dumps({"image_size": 64, "cases": 16}))
    done = _run("-m", "scripts.demo", f"--output_dir={out}", "--image_size=32")
    assert done.returncode == 1, done.stderr[-2000:]
    assert _our_lines(done.stderr, "python -m scripts.demo") == [
        f"python -m scripts.demo: error: --output_dir {out} holds a demo made with --image_size=64; pass --fresh "
        "to remove it and start over, or choose another --output_dir"]
    assert (out / "data" / "kept_until_fresh").exists() and "==" not in done.stdout   # no step ran
    code = ("import sys; from scripts import demo; "
            "demo.check_output_dir(sys.argv[1], {'image_size': 32, 'cases': 16}, fresh=True)")
    done = _run("-c", code, str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["demo.json", "notes.txt"]
    assert json.loads((out / "demo.json").read_text()) == {"image_size": 32, "cases": 16}


@pytest.mark.slow
def test_demo_refuses_folders_it_did_not_record(tmp_path):
    (tmp_path / "train").mkdir()
    done = _run("-m", "scripts.demo", f"--output_dir={tmp_path}", "--fresh")
    assert done.returncode == 1 and (tmp_path / "train").is_dir()
    assert "holds train/ but no demo.json" in done.stderr


def test_a_rerun_demo_reuses_its_finished_conversion(tmp_path, data_dir):
    """A finished conversion (its manifest written last) is reused, not converted again: a new
    conversion records another time and place, so the demo's training run could not resume on it."""
    code = "import sys; from scripts import demo; print(demo.converted(sys.argv[1]), demo.converted(sys.argv[2]))"
    done = _run("-c", code, data_dir, str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]
