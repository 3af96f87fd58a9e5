"""run_train.py as users run it, in subprocesses: flag checking, a --flagfile run killed with
SIGKILL and rerun, one stopped with SIGTERM and rerun, two CPU replicas against one device, --precision, --jit_compile and
multi_worker with two local processes. The runs pin fp32 (what earlier results were computed in)
unless a test is about another precision."""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT, write_tiny_dataset
from ssagan_tf.models import ModelConfig
from ssagan_tf.training.config import RunConfig
from ssagan_tf.training.loop import train


TINY = ["--ngf=8", "--ndf=8", "--n_res_blocks=1", "--batch_size=2", "--log_every=1", "--pool_size=2",
        "--precision=fp32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp("cli_data")))


def command(*args):
    return [sys.executable, os.path.join(REPO_ROOT, "run_train.py"), *args]


def environment(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def run(*args, timeout=HANG_TIMEOUT, **env):
    done = subprocess.run(command(*args), cwd=REPO_ROOT, env=environment(**env), capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def load(model_dir, name):
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return tf.train.load_variable(path, name)


def model_variables(model_dir):
    """name -> value of every float variable of the networks and optimizers in the latest checkpoint."""
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {n: tf.train.load_variable(path, n) for n, _ in tf.train.list_variables(path)
            if "pools_" not in n and not n.startswith(("_CHECKPOINTABLE", "save_counter"))}


def summary_tags(log_dir):
    import tensorflow as tf

    tags = set()
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    return tags


@pytest.mark.slow
def test_bad_flags_fail_before_work(data_dir, tmp_path):
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path}", "--batch_size=0", timeout=HANG_TIMEOUT)
    assert code != 0 and "batch_size must be >= 1" in out
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path}", "--image_size=64", timeout=HANG_TIMEOUT)
    assert code != 0 and "--image_size=64 but" in out
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path}", "--batch_size=3", "--cpu_replicas=2",
                    timeout=HANG_TIMEOUT)
    assert code != 0 and "not divisible by cpu_replicas 2" in out
    assert not os.path.exists(tmp_path / "config.json") and not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("flagfile", ["brain.flags", "demo.flags", "lgg.flags"])
def test_shipped_flagfiles_parse(data_dir, tmp_path, flagfile):
    """Every flag in the shipped flagfiles exists: the command gets past flag parsing to the data
    check, which refuses the tiny 32^2 dataset for the flagfile's (or the given) image size."""
    size = ["--image_size=64"] if flagfile == "demo.flags" else []        # the others fix their size
    code, out = run(f"--flagfile={os.path.join(REPO_ROOT, flagfile)}", f"--data_dir={data_dir}",
                    f"--model_dir={tmp_path}", *size, timeout=HANG_TIMEOUT)
    assert "Unknown command line flag" not in out
    assert code != 0 and re.search(r"--image_size=(64|128|256) but .* holds 32\^2 slices", out), out
    assert not os.path.exists(tmp_path / "config.json")


@pytest.mark.slow
def test_flagfile_run_killed_and_rerun_finishes(data_dir, tmp_path):
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text("\n".join([f"--data_dir={data_dir}", f"--model_dir={model_dir}", *TINY, "--epochs=4",
                                   "--attention_epochs=4", "--checkpoint_every=2", "--image_every=3", "--noflip",
                                   f"--export_dir={export_dir}"]) + "\n")
    proc = subprocess.Popen(command(f"--flagfile={flagfile}"), cwd=REPO_ROOT, env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (model_dir / "checkpoints" / "ckpt-4.index").exists():
        assert proc.poll() is None and time.time() < deadline, "first run ended before two checkpoints"
        time.sleep(0.2)
    # A second trainer on the same run directory (the first paused, so that it still runs) is
    # refused with one line naming the first; killing the first frees the directory.
    proc.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(command(f"--flagfile={flagfile}"), cwd=REPO_ROOT, env=environment(),
                                capture_output=True, text=True, timeout=HANG_TIMEOUT)
    finally:
        proc.send_signal(signal.SIGKILL)
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert re.search(rf"^run_train.py: error: {re.escape(str(model_dir))} is in use by a training run "
                     rf"\(pid {proc.pid} on [^,]+, started [^)]+\); .* choose another --model_dir", second.stderr, re.M)
    assert not list(model_dir.glob("checkpoints/ckpt-1[0-9].index"))
    out, _ = proc.communicate(timeout=HANG_TIMEOUT)
    reached = max(int(s) for s in re.findall(r"^step (\d+)/", out, re.M))

    code, out = run(f"--flagfile={flagfile}")
    assert code == 0, out
    resumed = int(re.search(r"Resuming from step (\d+)", out).group(1))
    assert reached - 2 <= resumed < 12                        # at most one checkpoint interval lost
    assert "Done at step 12" in out and "validation Dice" in out
    config = json.loads((model_dir / "config.json").read_text())
    assert config["tau"] == 0.1 and config["model"]["system"] == "ssa_cyclegan"
    assert int(load(str(model_dir), "step/.ATTRIBUTES/VARIABLE_VALUE")) == 12
    assert {"loss/generator_total", "loss/attention_mask", "attention/attention_normal_mean", "config",
            "train/learning_rate", "train/slices_per_second",
            "val/attention_tumor_dice", "val/attention_tumor_attended", "val/attention_tumor_inside",
            "val/attention_tumor_outside", "translations"} <= summary_tags(model_dir / "logs")
    assert (model_dir / "samples" / "step_00000012.png").exists()
    assert list(export_dir.rglob("saved_model.pb")), "--export_dir wrote no SavedModel"
    # Bit-identical to a run never killed (flips off: their draws are not part of the state).
    uninterrupted = tmp_path / "uninterrupted"
    train(RunConfig(data_dir=data_dir, model_dir=str(uninterrupted), model=ModelConfig(
        image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1), batch_size=2, epochs=4, attention_epochs=4,
        pool_size=2, flip=False, log_every=100, image_every=100, checkpoint_every=12), stream=io.StringIO())
    resumed, straight = model_variables(str(model_dir)), model_variables(str(uninterrupted))
    assert sorted(resumed) == sorted(straight)
    different = [name for name in straight if not np.array_equal(resumed[name], straight[name])]
    assert not different, different[:5]


@pytest.mark.slow
def test_sigterm_saves_the_last_step_exits_130_and_the_rerun_matches_an_uninterrupted_run(data_dir, tmp_path):
    """SIGTERM (a scheduler, `kill`, `docker stop`) mid-run: a checkpoint of the last finished step
    (checkpoint_every is far away), one line saying so, `interrupted`, exit 130; the rerun ends
    bit-identical to a --deterministic run never stopped."""
    flags = [f"--data_dir={data_dir}", *TINY, "--epochs=2", "--attention_epochs=2", "--checkpoint_every=100",
             "--image_every=100", "--noflip", "--deterministic"]
    model_dir = tmp_path / "run"
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen(command(*flags, f"--model_dir={model_dir}"), cwd=REPO_ROOT, env=environment(),
                                stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("step 1/"):
                proc.send_signal(signal.SIGTERM)
                break
        lines += proc.stdout.readlines()
        proc.wait(timeout=HANG_TIMEOUT)
    out, err = "".join(lines), (tmp_path / "stderr").read_text()
    assert proc.returncode == 130, (proc.returncode, out[-2000:], err[-2000:])
    assert err.strip().splitlines()[-1] == "run_train.py: interrupted" and "Traceback" not in err, err[-2000:]
    said = re.search(r"^SIGTERM after step (\d+): checkpoint (\S+) holds it; run the same command again", out, re.M)
    assert said, out
    stopped = int(said.group(1))
    assert 1 <= stopped < 6 and said.group(2).endswith(f"ckpt-{stopped}")
    assert int(load(str(model_dir), "step/.ATTRIBUTES/VARIABLE_VALUE")) == stopped

    code, out = run(*flags, f"--model_dir={model_dir}")
    assert code == 0 and f"Resuming from step {stopped}" in out and "Done at step 6" in out, out
    code, out = run(*flags, f"--model_dir={tmp_path / 'straight'}")
    assert code == 0, out
    resumed, straight = model_variables(str(model_dir)), model_variables(str(tmp_path / "straight"))
    assert sorted(resumed) == sorted(straight)
    different = [name for name in straight if not np.array_equal(resumed[name], straight[name])]
    assert not different, different[:5]


@pytest.mark.slow
@pytest.mark.parametrize("model,steps,rtol,atol,loose_share", [
    # One step each: after a second, Adam's sign-like first step has spread the replicas' rounding
    # differences (measured here: up to 2e-4 on 10% of one generator moment after two steps).
    ("attention_cyclegan", 1, 1e-4, 5e-5, 1e-4),
    # Spectral norm's gradient through sigma (G/sigma - <G, W>/sigma^2 u v^T) cancels, which
    # magnifies the batch-1 versus batch-2 rounding of the convolutions (measured: 3e-5 on Adam's
    # first moments after one step; Adam's first, sign-like step then spreads it), so the default
    # system is compared after one step, more loosely; spectral norm itself across replicas is
    # in test_layers.py.
    ("ssa_cyclegan", 1, 1e-3, 2e-4, 1e-3),
])
def test_two_cpu_replicas_match_one_device(data_dir, tmp_path, model, steps, rtol, atol, loose_share):
    # Pools large enough not to fill in 2 steps: a full pool swaps images at random, and one pool
    # per replica fills at a different rate than a single one.
    common = [f"--data_dir={data_dir}", *TINY, "--pool_size=50", f"--max_steps={steps}", "--flip=false",
              "--deterministic", f"--model={model}"]
    procs = [subprocess.Popen(command(*common, f"--model_dir={tmp_path / name}", *extra), cwd=REPO_ROOT,
                              env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, extra in (("one", ["--strategy=one_device"]), ("two", ["--cpu_replicas=2"]))]
    outs = [p.communicate(timeout=HANG_TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "2 replica(s) (mirrored)" in outs[1]
    losses = [[line.split("|")[1] for line in out.splitlines() if line.startswith("step ")] for out in outs]
    assert losses[0] == losses[1] and len(losses[0]) == steps        # the same losses to 4 decimals
    one, two = model_variables(str(tmp_path / "one")), model_variables(str(tmp_path / "two"))
    assert one.keys() == two.keys()
    # Same global batch, same maths; only the order of the cross-replica gradient sum differs, which
    # Adam's normalisation can magnify for the odd element whose gradient is almost zero.
    total = loose = 0
    for name in one:
        a, b = np.asarray(one[name]), np.asarray(two[name])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
            total += a.size
            loose += int((np.abs(a - b) > 1e-5 + 1e-4 * np.abs(a)).sum())
    assert loose <= total * loose_share, f"{loose} of {total} values differ by more than 1e-5"


@pytest.mark.slow
def test_fp16_precision_scales_the_loss_and_cannot_resume_as_another(data_dir, tmp_path):
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path}", *TINY, "--max_steps=2", "--precision=fp16")
    assert code == 0, out
    assert "Done at step 2" in out
    assert json.loads((tmp_path / "config.json").read_text())["model"]["precision"] == "fp16"
    names = model_variables(str(tmp_path)).keys()
    assert any("dynamic_scale" in n for n in names), "no loss-scale state in the checkpoint"
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path}", *TINY, "--max_steps=3", "--precision=bf16")
    assert code != 0 and "resume with --precision=fp16, or use --fresh" in out


@pytest.mark.slow
def test_auto_precision_says_what_it_picked_first_and_in_config(data_dir, tmp_path):
    done = subprocess.run(command(f"--data_dir={data_dir}", f"--model_dir={tmp_path}",
                                  *[a for a in TINY if not a.startswith("--precision")], "--max_steps=1"),
                          cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    from ssagan_tf.precision import choose_precision

    expected = choose_precision("auto")
    assert first == f"Precision {expected.precision} (auto: {expected.reason})"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["precision"] == expected.precision
    assert config["precision_reason"] == f"auto: {expected.reason}"
    # Resuming with auto keeps the run's precision, whatever the hardware would pick now.
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path}",
                    *[a for a in TINY if not a.startswith("--precision")], "--max_steps=2")
    assert code == 0 and f"resuming a run trained in {expected.precision}" in out, out


@pytest.mark.slow
def test_jit_compile_flag_with_light_attention_and_l1_dice(data_dir, tmp_path):
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path}", *TINY, "--max_steps=3", "--jit_compile",
                    "--attention_ngf=4", "--mask_loss_type=l1_dice")
    assert code == 0, out
    assert "Done at step 3" in out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["mask_loss_type"] == "l1_dice" and config["model"]["attention_ngf"] == 4
    # The generator optimizer tracks every trained kernel: the two generators' 7x7 stems have ngf=8
    # filters, the two attention networks' first 7x7 convs attention_ngf=4.
    shapes = [np.shape(v) for n, v in model_variables(str(tmp_path)).items()
              if n.startswith("generator_optimizer/_trainable_variables/")]
    assert shapes.count((7, 7, 1, 8)) == 2 and shapes.count((7, 7, 1, 4)) == 2, shapes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_local_processes(data_dir, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    model_dir = tmp_path / "run"
    procs, temps = [], []
    for index in range(2):
        temp = tmp_path / f"tmp{index}"
        temp.mkdir()
        temps.append(temp)
        env = environment(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                          TMPDIR=str(temp))
        procs.append(subprocess.Popen(
            command(f"--data_dir={data_dir}", f"--model_dir={model_dir}", *TINY, "--max_steps=3",
                    "--checkpoint_every=2", "--strategy=multi_worker"),
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=HANG_TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "2 replica(s) (multi_worker)" in outs[0]
    # Only the chief took the run directory's lock (the other worker would have been refused).
    assert json.loads((model_dir / "train.lock").read_text())["pid"] == procs[0].pid
    assert sorted(p.name for p in (model_dir / "checkpoints").glob("*.index")) == ["ckpt-2.index", "ckpt-3.index"]
    # The non-chief saved into its temporary directory and removed it.
    assert not [p for p in temps[1].iterdir() if p.name.startswith("ssagan_")]


@pytest.mark.slow
def test_garbage_shard_stops_training_with_one_line_naming_it(tmp_path):
    """Random bytes of a shard's recorded size pass the start check; the first read fails with one
    line naming the shard, no traceback, exit 1."""
    data = write_tiny_dataset(str(tmp_path / "data"), splits=("train", "val"))
    shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
    garbage = np.random.default_rng(0).integers(0, 256, os.path.getsize(shard), dtype=np.uint8).tobytes()
    with open(shard, "wb") as f:
        f.write(garbage)
    code, out = run(f"--data_dir={data}", f"--model_dir={tmp_path / 'run'}", *TINY, "--max_steps=2")
    assert code == 1 and "Traceback" not in out, out[-3000:]
    assert re.search(r"^run_train.py: error: \S+train/normal-00000-of-00001.tfrecord: corrupt, truncated.*$", out, re.M)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_flags_the_system_does_not_use_are_named(data_dir, tmp_path):
    """Set on the command line or in a flagfile: named; left at their defaults: not named."""
    flagfile = tmp_path / "more.flags"
    flagfile.write_text("--tau=0.2\n")
    code, out = run(f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'run'}", "--model=cyclegan",
                    "--lambda_mask=5", "--d_mode=full", f"--flagfile={flagfile}", "--batch_size=1000", timeout=HANG_TIMEOUT)
    warning = [line for line in out.splitlines() if line.startswith("WARNING: --system=cyclegan")]
    assert warning == ["WARNING: --system=cyclegan does not use --lambda_mask (only ssa_cyclegan), --d_mode (only the "
                       "systems with attention), --tau (only the systems with attention); ignored"], out[-2000:]
    assert code == 2 and "batch_size 1000 is larger than the training set" in out


@pytest.mark.slow
def test_a_fold_run_trains_on_its_patients_only_and_its_export_says_so(tmp_path):
    """run_train --folds=2 --fold=1: fold data without the fold's test patients, the cohort in
    config.json and export.json, and the evaluation refusing that export for fold 0's patients."""
    data = write_tiny_dataset(str(tmp_path / "data"), n_normal=4, n_tumor=4)
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    code, out = run(f"--data_dir={data}", f"--model_dir={model_dir}", *TINY, "--model=cyclegan", "--max_steps=1",
                    "--epochs=1", "--folds=2", "--fold=1", "--tumor_fraction=0.5", f"--export_dir={export_dir}")
    assert code == 0, out[-3000:]
    cohort = json.loads((model_dir / "config.json").read_text())["cohort"]
    assert (cohort["folds"], cohort["fold"], cohort["tumor_fraction"]) == (2, 1, 0.5)
    assert not set(cohort["seen_patients"]) & set(cohort["test_patients"]) and len(cohort["test_patients"]) == 3
    fold_data = json.loads((model_dir / "fold_data" / "manifest.json").read_text())
    trained_on = set(fold_data["cases"]["train"]) | set(fold_data["cases"]["val"])
    assert trained_on == set(cohort["seen_patients"]) and not fold_data["cases"]["test"]
    assert f"Fold 1 of 2: training on {len(cohort['train_patients'])} patients" in out
    (export_json,) = export_dir.rglob("export.json")
    assert json.loads(export_json.read_text())["cohort"] == cohort
    evaluate = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run_evaluate.py"), f"--data_dir={data}",
                               f"--output_dir={tmp_path / 'report'}", f"--augmenters=cg={export_dir}/ssagan",
                               "--folds=2", "--arms=synthetic", "--tumor_fraction=0.5", "--epochs=1", "--width=4"],
                              cwd=REPO_ROOT, env=environment(), capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert evaluate.returncode == 1 and "for fold 0" in evaluate.stderr and "of the test patients" in evaluate.stderr
