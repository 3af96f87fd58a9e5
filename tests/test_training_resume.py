"""Resuming a run, in-process on tiny data: which checkpoint (a missing or garbage state file, an
unreadable latest checkpoint, none readable), with which settings (changed ones refused unless
allowed; config.json untouched by a resume that fails), --fresh deleting only what training
wrote, and Ctrl-C/SIGTERM saving the last finished step. (The same through run_train.py, with
SIGTERM from outside: test_training_cli.py.)"""

import dataclasses
import io
import json
import os
import shutil
import signal

import pytest
import tensorflow as tf

from conftest import write_tiny_dataset
from ssagan_tf import export
from ssagan_tf import run_dir as layout
from ssagan_tf.models import ModelConfig
from ssagan_tf.training import checkpoints, resume
from ssagan_tf.training.config import ConfigError, RunConfig
from ssagan_tf.training.loop import train
from ssagan_tf.training.step import TrainStep


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 6 normal / 4 tumor slices, batch 2: 3 steps per epoch.
    return write_tiny_dataset(str(tmp_path_factory.mktemp("resume_data")))


def tiny_config(data_dir, model_dir, **overrides):
    model = ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
    values = dict(data_dir=data_dir, model_dir=str(model_dir), model=model, batch_size=2, epochs=4,
                  attention_epochs=4, flip=False, pool_size=2, log_every=100, image_every=100, checkpoint_every=1,
                  keep_checkpoints=10, strategy="one_device")
    values.update(overrides)
    return RunConfig(**values)


def run(config):
    """train(config) -> (result or the exception raised, the console output); with
    `config.export_dir`, exported after training as run_train.py does."""
    out = io.StringIO()
    try:
        return train(config, stream=out, finish=export.export_after_training), out.getvalue()
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - the tests look at what was raised
        return err, out.getvalue()


@pytest.fixture(scope="module")
def three_checkpoints(data_dir, tmp_path_factory):
    """A run of 3 steps with a checkpoint after each: ckpt-1, ckpt-2, ckpt-3."""
    model_dir = tmp_path_factory.mktemp("three_checkpoints")
    result, _ = run(tiny_config(data_dir, model_dir, max_steps=3))
    assert result.step == 3
    return str(model_dir)


def copy_run(source, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def step_of(prefix):
    return int(tf.train.load_variable(str(prefix), "step/.ATTRIBUTES/VARIABLE_VALUE"))


def data_file(run_dir, number):
    return next((run_dir / "checkpoints").glob(f"ckpt-{number}.data-*"))


@pytest.mark.slow
@pytest.mark.parametrize("state", ["missing", "garbage", "binary"])
def test_a_missing_or_garbage_state_file_resumes_from_the_newest_checkpoint(data_dir, three_checkpoints, tmp_path,
                                                                             state):
    """TensorFlow alone would restart at step 0 here, over ckpt-1..3; the run continues from
    ckpt-3, leaves the old checkpoints as they were and keeps rotating them."""
    run_dir = copy_run(three_checkpoints, tmp_path)
    state_file = run_dir / "checkpoints" / "checkpoint"
    if state == "missing":
        state_file.unlink()
    elif state == "garbage":                             # TensorFlow: "Checkpoint ignored"
        state_file.write_text("model_checkpoint_path: {{{ not a state\n")
    else:                                                # TensorFlow: UnicodeDecodeError
        state_file.write_bytes(b"\x00\xff\xfe garbage")
    if state != "binary":
        assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")) is None
    before = {k: v for k, v in contents(run_dir / "checkpoints").items() if k.startswith("ckpt-")}
    result, _ = run(tiny_config(data_dir, run_dir, max_steps=4, keep_checkpoints=3))
    assert result.resumed_from == 3 and result.step == 4
    after = contents(run_dir / "checkpoints")
    assert all(after[name] == data for name, data in before.items() if not name.startswith("ckpt-1."))
    assert step_of(run_dir / "checkpoints" / "ckpt-4") == 4
    # The manager knew the old ones: keeping 3, it rotated ckpt-1 away as usual.
    assert sorted(n for n in after if n.endswith(".index")) == ["ckpt-2.index", "ckpt-3.index", "ckpt-4.index"]


@pytest.mark.slow
def test_an_unreadable_latest_checkpoint_is_skipped_by_name_in_training_and_export(data_dir, three_checkpoints,
                                                                                   tmp_path):
    run_dir = copy_run(three_checkpoints, tmp_path)
    truncated = data_file(run_dir, 3)
    truncated.write_bytes(truncated.read_bytes()[:100])
    said = []
    version = export.export_models(str(run_dir), str(tmp_path / "export"), log=said.append)
    info = export.read_export_info(version)
    assert info["step"] == 2 and info["checkpoint_file"] == "ckpt-2" and info["precision"] == "fp32"
    assert len(said) == 1 and said[0].startswith("Skipped unreadable checkpoint(s) newer than ckpt-2") \
        and "ckpt-3 (" in said[0], said

    result, out = run(tiny_config(data_dir, run_dir, max_steps=4))
    assert result.resumed_from == 2 and result.step == 4, out
    lines = [line for line in out.splitlines() if "ckpt-3" in line]
    assert len(lines) == 1 and lines[0].startswith("Skipped unreadable checkpoint(s) newer than ckpt-2"), out
    # ckpt-3 is left as it was; the new checkpoints are numbered above it and hold steps 3 and 4.
    assert len(truncated.read_bytes()) == 100
    assert step_of(run_dir / "checkpoints" / "ckpt-4") == 3 and step_of(run_dir / "checkpoints" / "ckpt-5") == 4
    assert layout.newest_intact_checkpoint(str(run_dir), log=said.append).endswith("ckpt-5")


@pytest.mark.slow
def test_checkpoint_problems_are_named(three_checkpoints, tmp_path):
    run_dir = copy_run(three_checkpoints, tmp_path)
    folder = run_dir / "checkpoints"
    assert layout.checkpoint_problem(str(folder / "ckpt-1")) is None
    (folder / "ckpt-1.index").write_bytes(b"garbage")
    assert "sstable" in layout.checkpoint_problem(str(folder / "ckpt-1"))
    data = data_file(run_dir, 2)
    raw = bytearray(data.read_bytes())
    raw[-10] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert "Checksum does not match" in layout.checkpoint_problem(str(folder / "ckpt-2"))
    (folder / "ckpt-3.index").unlink()
    assert layout.checkpoint_problem(str(folder / "ckpt-3")).startswith("no index file")
    assert [c.number for c in layout.list_checkpoints(str(run_dir))] == [1, 2, 3]


@pytest.mark.slow
def test_no_readable_checkpoint_is_refused_naming_them(data_dir, three_checkpoints, tmp_path):
    run_dir = copy_run(three_checkpoints, tmp_path)
    for number in (1, 2, 3):
        data_file(run_dir, number).write_bytes(b"")
    before = contents(run_dir / "checkpoints"), (run_dir / "config.json").read_bytes()
    error, _ = run(tiny_config(data_dir, run_dir, max_steps=4))
    assert isinstance(error, layout.NoIntactCheckpointError), error
    message = str(error)
    assert all(f"ckpt-{n} (" in message for n in (1, 2, 3)) and "--fresh" in message
    assert (contents(run_dir / "checkpoints"), (run_dir / "config.json").read_bytes()) == before
    with pytest.raises(layout.NoIntactCheckpointError, match="ckpt-3"):
        export.export_models(str(run_dir), str(tmp_path / "export"))


@pytest.mark.slow
def test_changed_settings_are_refused_and_config_json_is_written_only_once_training_continues(
        data_dir, three_checkpoints, tmp_path, monkeypatch):
    run_dir = copy_run(three_checkpoints, tmp_path)
    saved = (run_dir / "config.json").read_bytes()
    error, _ = run(tiny_config(data_dir, run_dir, max_steps=4, seed=1, tau=0.5, lambda_cycle=5.0))
    assert isinstance(error, ConfigError)
    assert "seed 0 there, 1 now" in str(error) and "tau 0.1 there, 0.5 now" in str(error) \
        and "lambda_cycle 10.0 there, 5.0 now" in str(error) and "--allow_changes=lambda_cycle,tau,seed" in str(error)
    assert (run_dir / "config.json").read_bytes() == saved
    # Allowed, but failing before its first step: config.json is still the saved run's.
    original_call = TrainStep.__call__

    def failing_step(self, batch, phase):
        raise RuntimeError("injected before the first step")

    monkeypatch.setattr(TrainStep, "__call__", failing_step)
    error, _ = run(tiny_config(data_dir, run_dir, max_steps=4, tau=0.5, allow_changes=("tau",)))
    assert isinstance(error, RuntimeError) and "injected" in str(error)
    assert (run_dir / "config.json").read_bytes() == saved
    assert export.read_export_info(export.export_models(str(run_dir), str(tmp_path / "export")))["tau"] == 0.1
    # Allowed and training: recorded after the first step. Intervals change freely.
    monkeypatch.setattr(TrainStep, "__call__", original_call)
    result, out = run(tiny_config(data_dir, run_dir, max_steps=4, tau=0.5, allow_changes=("tau",), log_every=2,
                                  keep_checkpoints=5))
    assert result.step == 4 and "Resuming with changed settings (--allow_changes): tau 0.1 -> 0.5" in out, out
    assert json.loads((run_dir / "config.json").read_text())["tau"] == 0.5


@pytest.mark.slow
def test_other_data_is_refused_and_an_old_config_without_a_checksum_resumes(data_dir, three_checkpoints, tmp_path):
    run_dir = copy_run(three_checkpoints, tmp_path)
    other = write_tiny_dataset(str(tmp_path / "other_data"), seed=1)        # same shape, other slices
    error, _ = run(tiny_config(other, run_dir, max_steps=4))
    assert isinstance(error, ConfigError) and "data sha256:" in str(error) and "--allow_changes=data" in str(error)
    values = json.loads((run_dir / "config.json").read_text())
    del values["data_checksum"], values["allow_changes"]                    # as written by an older version
    (run_dir / "config.json").write_text(json.dumps(values))
    result, out = run(tiny_config(data_dir, run_dir, max_steps=4))
    assert result.resumed_from == 3 and "records no data checksum" in out, out
    assert json.loads((run_dir / "config.json").read_text())["data_checksum"].startswith("sha256:")


def test_allow_changes_names_only_checked_settings(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="allow_changes: 'ngf', 'log_every' cannot be named"):
        tiny_config(data_dir, tmp_path, allow_changes=("ngf", "log_every"))


def _plant_run(model_dir, data_dir):
    """A run directory as training leaves it, with user files beside and inside its folders."""
    from ssagan_tf.training.config import save_config

    save_config(tiny_config(data_dir, model_dir), str(model_dir))
    files = {"checkpoints/checkpoint": "x", "checkpoints/ckpt-2.index": "x",
             "checkpoints/ckpt-2.data-00000-of-00001": "x", "logs/events.out.tfevents.1796205726.host.12.0.v2": "x",
             "samples/step_00000002.png": "x", "checkpoints/my_notes.txt": "mine", "logs/baseline.csv": "mine",
             "samples/figure.png": "mine", "README.txt": "mine"}
    for name, text in files.items():
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / name).write_text(text)
    return files


def test_fresh_removes_only_what_training_wrote(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    _plant_run(run_dir, data_dir)
    said = []
    resume.start_fresh(str(run_dir), said.append)
    left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    assert left == ["README.txt", "checkpoints/my_notes.txt", "logs/baseline.csv", "samples/figure.png"]
    assert len(said) == 1 and "kept 3 file(s) training did not write" in said[0], said


def test_fresh_removes_the_temporaries_of_this_and_of_earlier_versions(data_dir, tmp_path):
    """A writer killed before its rename leaves a temporary: ssagan_tf.io's `<name>.tmp-<hex>`
    (a sample PNG's also ends in `.png`), or the `<name>.tmp` (samples: `step_<N>.tmp-<pid>.png`)
    of the versions before it. --fresh removes both kinds, and still nothing of the user's."""
    run_dir = tmp_path / "run"
    _plant_run(run_dir, data_dir)
    temporaries = ["config.json.tmp", "config.json.tmp-0123456789ab", "selection/scores.json.tmp",
                   "selection/scores.json.tmp-0123456789ab", "selection/ckpt-2.index.tmp",
                   "selection/ckpt-2.data-00000-of-00001.tmp-0123456789ab", "samples/step_00000002.tmp-4242.png",
                   "samples/step_00000002.png.tmp-0123456789ab.png"]
    users = ["config.json.bak", "selection/notes.tmp", "samples/step_2.png.tmp-0123456789ab.png"]
    for name in temporaries + users:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("x")
    resume.start_fresh(str(run_dir), print)
    left = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    assert left == sorted(["README.txt", "checkpoints/my_notes.txt", "logs/baseline.csv", "samples/figure.png"] + users)


@pytest.mark.parametrize("config_json", [None, "{not json", '{"model": 3}', '{"data_dir": "d"}'])
def test_fresh_on_a_folder_that_is_not_a_run_deletes_nothing(data_dir, tmp_path, config_json):
    folder = tmp_path / "someone_elses"
    files = _plant_run(folder, data_dir)
    if config_json is None:
        (folder / "config.json").unlink()
    else:
        (folder / "config.json").write_text(config_json)
    before = sorted(p for p in folder.rglob("*"))
    with pytest.raises(ConfigError, match="--fresh refused, nothing was deleted: .*(config.json|not a training run)"):
        resume.start_fresh(str(folder), print)
    assert sorted(p for p in folder.rglob("*")) == before and len(files) == 9
    if config_json is None:                              # and through train(), before any deletion
        error, _ = run(tiny_config(data_dir, folder, max_steps=1, fresh=True))
        assert isinstance(error, ConfigError) and sorted(p for p in folder.rglob("*")) == before


@pytest.mark.slow
def test_sigterm_saves_the_last_finished_step_and_stops(data_dir, tmp_path, monkeypatch):
    original_call = TrainStep.__call__
    calls = []

    def step_then_signal(self, batch, phase):
        values = original_call(self, batch, phase)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)        # arrives mid-loop, as from `kill`
        return values

    monkeypatch.setattr(TrainStep, "__call__", step_then_signal)
    previous = signal.getsignal(signal.SIGTERM)
    error, out = run(tiny_config(data_dir, tmp_path / "run", max_steps=6, checkpoint_every=100))
    assert isinstance(error, KeyboardInterrupt), (error, out)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert f"SIGTERM after step 2: checkpoint {tmp_path / 'run' / 'checkpoints' / 'ckpt-2'} holds it" in out, out
    assert len(calls) == 2 and step_of(tmp_path / "run" / "checkpoints" / "ckpt-2") == 2
    monkeypatch.setattr(TrainStep, "__call__", original_call)
    result, _ = run(tiny_config(data_dir, tmp_path / "run", max_steps=3, checkpoint_every=100))
    assert result.resumed_from == 2 and result.step == 3


@pytest.mark.slow
def test_training_exports_in_float32_whatever_it_trained_in(data_dir, tmp_path):
    model = dataclasses.replace(tiny_config(data_dir, tmp_path).model, precision="bf16")
    result, out = run(tiny_config(data_dir, tmp_path / "run", model=model, max_steps=1,
                                  export_dir=str(tmp_path / "export")))
    assert result.step == 1, out
    assert export.read_export_info(result.export)["precision"] == "fp32"
