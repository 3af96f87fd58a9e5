"""Tests for ssagan_tf.export: reload equality, signatures as saved_model_cli reports them, bad
input rejected, version directories, the command line."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import HANG_TIMEOUT, REPO_ROOT
from ssagan_tf import export
from ssagan_tf.models import ModelConfig, build_models, translate
from ssagan_tf.run_dir import checkpoint_dir
from ssagan_tf.training.checkpoints import model_checkpoint
from ssagan_tf.training.config import RunConfig, save_config

TINY = dict(image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
SHAPE_ERROR = r"Shape of tensor images .* is not compatible with expected shape \[\?,32,32,1\]"


def make_run_dir(path: str, cfg: ModelConfig, tau: float = 0.25, step: int = 7):
    """A training run directory as run_train.py leaves it: config.json and one checkpoint."""
    save_config(RunConfig(data_dir="unused", model_dir=path, model=cfg, tau=tau), path)
    models = build_models(cfg)
    checkpoint = model_checkpoint(models, step=tf.Variable(step, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, checkpoint_dir(path), max_to_keep=1).save()
    return models


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("run"))
    make_run_dir(path, ModelConfig(**TINY))
    return path


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(run_dir, export_dir):
    """Version 1, written by the command line (`python -m ssagan_tf.export`) in fp32."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO_ROOT}
    result = subprocess.run([sys.executable, "-m", "ssagan_tf.export", f"--model_dir={run_dir}",
                             f"--export_dir={export_dir}", "--precision=fp32"], capture_output=True, text=True,
                            timeout=HANG_TIMEOUT, cwd=REPO_ROOT, env=env)
    assert result.stdout.startswith("Precision fp32 (--precision: as requested)"), result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    version_dir = result.stdout.strip().splitlines()[-1]
    assert version_dir == os.path.join(export_dir, "ssagan", "1")
    summary = result.stdout.strip().splitlines()[-2]          # a plain line, rounded, no absl prefix or dict
    assert re.fullmatch(rf"exported {re.escape(version_dir)} \(tau [\d.]+, step \d+, latest checkpoint, raw weights, fp32\); max abs difference from "
                        r"Keras: normal_to_tumor \d\.\de[-+]\d\d, .*", summary), summary
    return version_dir


@pytest.fixture(scope="module")
def normal_to_tumor_signature(exported):
    loaded = tf.saved_model.load(exported)
    return loaded, loaded.signatures["normal_to_tumor"]


def _batch(n=3, seed=1, size=32):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)


@pytest.mark.slow
def test_export_reload_matches_keras(exported, run_dir):
    from ssagan_tf.training.checkpoints import restore_models

    assert os.path.basename(exported) == "1"
    info = export.read_export_info(exported)
    assert info["tau"] == 0.25 and info["step"] == 7
    assert info["source_model_dir"] == os.path.abspath(run_dir)
    assert info["model_config"]["ngf"] == 8 and info["has_attention"]
    assert max(info["verification"]["max_abs_diff"].values()) <= 1e-5
    assert info["precision"] == "fp32" and info["verification"]["tolerance"] == 1e-5
    models, _, _ = restore_models(run_dir)
    loaded = tf.saved_model.load(exported)
    images = _batch()
    pairs = {"normal_to_tumor": (models.normal_to_tumor, models.attention_normal),
             "tumor_to_normal": (models.tumor_to_normal, models.attention_tumor),
             "serving_default": (models.normal_to_tumor, models.attention_normal)}
    for name, (generator, attention) in pairs.items():
        expected_image, expected_attention = translate(generator, attention, images, tau=0.25)
        out = loaded.signatures[name](images=tf.constant(images))
        assert set(out) == {"image", "attention"}
        np.testing.assert_allclose(out["image"].numpy(), expected_image.numpy(), atol=1e-5)
        np.testing.assert_allclose(out["attention"].numpy(), expected_attention.numpy(), atol=1e-5)
        below = out["attention"].numpy()
        assert np.all((below == 0) | (below >= 0.25)), "tau not applied"


@pytest.mark.slow
def test_saved_model_cli_reports_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--all", "--dir", exported], capture_output=True, text=True, timeout=HANG_TIMEOUT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    blocks = dict(re.findall(r"signature_def\['(\w+)'\]:(.*?)Method name is", result.stdout, re.S))
    assert {"normal_to_tumor", "tumor_to_normal", "serving_default"} <= set(blocks)
    for name in ("normal_to_tumor", "tumor_to_normal", "serving_default"):
        tensors = re.findall(r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: \(([^)]*)\)",
                             blocks[name])
        assert sorted(tensors) == [("inputs", "images", "DT_FLOAT", "-1, 32, 32, 1"),
                                   ("outputs", "attention", "DT_FLOAT", "-1, 32, 32, 1"),
                                   ("outputs", "image", "DT_FLOAT", "-1, 32, 32, 1")], name


@pytest.mark.slow
def test_graph_loader_as_tf_serving_uses_it(exported):
    """TF Serving loads the SavedModel's graph and runs its restore op (TF1 loader), not the object
    graph `tf.saved_model.load` uses; every signature must run and agree with the reloaded module."""
    images = _batch(2)
    signatures = tf.saved_model.load(exported).signatures
    expected = {name: signatures[name](images=tf.constant(images)) for name in export.SIGNATURE_NAMES}
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], exported)
        for name in export.SIGNATURE_NAMES:
            signature = meta_graph.signature_def[name]
            fetches = {key: info.name for key, info in signature.outputs.items()}
            out = session.run(fetches, {signature.inputs["images"].name: images})
            for key in ("image", "attention"):
                np.testing.assert_allclose(out[key], expected[name][key].numpy(), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 64, 64, 1), np.float32), SHAPE_ERROR),
    (np.zeros((32, 32, 1), np.float32), SHAPE_ERROR),
    (np.zeros((1, 64, 16, 1), np.float32), SHAPE_ERROR),
    (np.full((1, 32, 32, 1), 255.0, np.float32), "scaled to \\[-1, 1\\]"),
    (np.where(np.arange(32 * 32).reshape(1, 32, 32, 1) == 5, np.nan, 0.0).astype(np.float32), "scaled to \\[-1, 1\\]"),
    (np.where(np.arange(32 * 32).reshape(1, 32, 32, 1) == 5, -np.inf, 0.0).astype(np.float32), "scaled to \\[-1, 1\\]"),
    (np.zeros((1, 32, 32, 1), np.float64), "expected to be a float tensor but is a double"),
])
def test_bad_input_rejected(normal_to_tumor_signature, bad, message):
    """The signatures as TF Serving calls them (no Python-side shape check) reject bad input by name."""
    _, signature = normal_to_tumor_signature
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signature(images=tf.constant(bad))


@pytest.mark.slow
def test_versions_increment_and_never_overwrite(exported, run_dir, export_dir):
    base = os.path.join(export_dir, "ssagan")
    os.makedirs(os.path.join(base, ".tmp-export-stale"))   # a crashed export's leftovers
    before = {name: os.path.getmtime(os.path.join(exported, name)) for name in os.listdir(exported)}
    second = export.export_models(run_dir, export_dir, tau=0.5)
    assert second == os.path.join(base, "2")
    assert export.version_numbers(base) == [1, 2]
    assert export.latest_version_dir(base) == second
    assert before == {name: os.path.getmtime(os.path.join(exported, name)) for name in os.listdir(exported)}
    assert export.read_export_info(second)["tau"] == 0.5
    assert export.read_export_info(exported)["tau"] == 0.25


@pytest.mark.slow
def test_failed_verification_leaves_no_version(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "verify_export", lambda *a, **k: {name: 1.0 for name in export.SIGNATURE_NAMES})
    with pytest.raises(export.ExportError, match="does not reproduce"):
        export.export_models(run_dir, str(tmp_path))
    assert os.listdir(os.path.join(str(tmp_path), "ssagan")) == []


@pytest.mark.slow
def test_system_without_attention_returns_ones(tmp_path):
    models = build_models(ModelConfig.for_system("cyclegan", **TINY))
    version = export.write_export(models, str(tmp_path), tau=0.1)
    assert not export.read_export_info(version)["has_attention"]
    out = tf.saved_model.load(version).signatures["tumor_to_normal"](images=tf.constant(_batch(2)))
    np.testing.assert_array_equal(out["attention"].numpy(), np.ones((2, 32, 32, 1), np.float32))
    expected = models.tumor_to_normal(_batch(2), training=False).numpy()
    np.testing.assert_allclose(out["image"].numpy(), expected, atol=1e-5)


def test_model_name_and_tau_validated(tmp_path):
    models = build_models(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="model name"):
        export.write_export(models, str(tmp_path), model_name="../escape")
    with pytest.raises(ValueError, match="tau"):
        export.write_export(models, str(tmp_path), tau=1.5)


@pytest.mark.parametrize("argv, message", [
    (["--model_dir=/nonexistent", "--export_dir=out"], "--model_dir must be a training run directory"),
    (["--model_dir={run}", "--export_dir=out", "--model_name=../up"], "--model_name: use letters"),
    (["--model_dir={run}", "--export_dir=out", "--tau=1.5"], "--tau must be in"),
    (["--model_dir={run}", "--export_dir=out", "--tau=1.5", "--tolerance=0"], "--tau must be in .*; --tolerance must"),
])
def test_bad_flags_rejected_before_work(run_dir, argv, message):
    from absl import flags

    from ssagan_tf.commands.export import config_from_flags, define_flags

    flag_values = define_flags(flags.FlagValues())
    flag_values(["export"] + [arg.format(run=run_dir) for arg in argv])
    with pytest.raises(ValueError, match=message):
        config_from_flags(flag_values)


@pytest.mark.slow
def test_bf16_export_takes_and_returns_float32_and_matches_keras_within_its_tolerance(run_dir, tmp_path):
    from ssagan_tf.training.checkpoints import restore_models

    version_dir = export.export_models(run_dir, str(tmp_path), precision="bf16")
    info = export.read_export_info(version_dir)
    assert info["precision"] == "bf16" and info["verification"]["tolerance"] == export.TOLERANCES["bf16"]
    assert max(info["verification"]["max_abs_diff"].values()) <= export.TOLERANCES["bf16"]
    signature = tf.saved_model.load(version_dir).signatures["normal_to_tumor"]
    assert signature.structured_input_signature[1]["images"].dtype == tf.float32
    images = _batch()
    out = signature(images=tf.constant(images))
    assert out["image"].dtype == tf.float32 and out["attention"].dtype == tf.float32
    bf16, cfg, _ = restore_models(run_dir, precision="bf16")
    expected, _ = translate(bf16.normal_to_tumor, bf16.attention_normal, images, tau=0.25)
    assert np.abs(out["image"].numpy() - expected.numpy()).max() <= export.TOLERANCES["bf16"]
    fp32, _, _ = restore_models(run_dir)
    reference, _ = translate(fp32.normal_to_tumor, fp32.attention_normal, images, tau=0.25)
    difference = np.abs(out["image"].numpy() - reference.numpy()).max()
    assert 0 < difference < 0.05           # computed in bfloat16, so close to fp32 but not equal


@pytest.mark.slow
def test_bf16_export_verifies_with_attention_at_tau(run_dir, tmp_path):
    """With tau at the median attention half the pixels sit near the threshold, where bf16
    rounding can flip it between the SavedModel and Keras; those pixels are left out of the
    check (and counted), the rest must match within the bf16 tolerance."""
    from ssagan_tf.training.checkpoints import restore_models

    models, cfg, _ = restore_models(run_dir, precision="bf16")
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)   # verify_export's batch
    tau = float(np.median(models.attention_normal(images).numpy()))
    version_dir = export.export_models(run_dir, str(tmp_path), tau=tau, precision="bf16")
    verification = export.read_export_info(version_dir)["verification"]
    assert verification["near_tau_pixels_left_out"] > 0
    assert max(verification["max_abs_diff"].values()) <= export.TOLERANCES["bf16"]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """An export translating 4 slices at a time, and the Keras models it came from."""
    models = build_models(ModelConfig(**TINY))
    return models, export.write_export(models, str(tmp_path_factory.mktemp("chunked")), tau=0.25, chunk_size=4)


@pytest.mark.slow
def test_empty_batch_gives_empty_outputs(normal_to_tumor_signature, exported):
    loaded, _ = normal_to_tumor_signature
    for name in export.SIGNATURE_NAMES:
        out = loaded.signatures[name](images=tf.zeros((0, 32, 32, 1)))
        assert out["image"].shape == (0, 32, 32, 1) and out["attention"].shape == (0, 32, 32, 1), name


@pytest.mark.slow
def test_large_batches_are_translated_chunk_by_chunk(chunked):
    """9 slices through a 4-slice chunk loop (4 + 4 + 1) equal the Keras models slice by slice,
    in order; the loop is in the saved graph, so TF Serving runs it too."""
    models, version_dir = chunked
    assert export.read_export_info(version_dir)["serving_chunk"] == 4
    images = _batch(9, seed=4)
    loaded = tf.saved_model.load(version_dir)
    for name, (generator, attention) in {"normal_to_tumor": (models.normal_to_tumor, models.attention_normal),
                                         "tumor_to_normal": (models.tumor_to_normal, models.attention_tumor)}.items():
        out = loaded.signatures[name](images=tf.constant(images))
        expected_image, expected_attention = translate(generator, attention, images, tau=0.25)
        np.testing.assert_allclose(out["image"].numpy(), expected_image.numpy(), atol=1e-5)
        np.testing.assert_allclose(out["attention"].numpy(), expected_attention.numpy(), atol=1e-5)
    graph = loaded.signatures["normal_to_tumor"].graph.as_graph_def()
    ops = {node.op for function in graph.library.function for node in function.node_def}
    assert ops & {"While", "StatelessWhile"}, sorted(ops)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
        signature = meta_graph.signature_def["serving_default"]
        fetch = signature.outputs["image"].name
        served = session.run(fetch, {signature.inputs["images"].name: images})
        empty = session.run(fetch, {signature.inputs["images"].name: images[:0]})
    expected = loaded.signatures["serving_default"](images=tf.constant(images))["image"].numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert empty.shape == (0, 32, 32, 1)


@pytest.mark.slow
def test_a_stray_file_named_like_a_version_is_stepped_over(chunked, tmp_path):
    models, _ = chunked
    base = tmp_path / "ssagan"
    base.mkdir()
    (base / "1").write_text("a note someone left")
    version_dir = export.write_export(models, str(tmp_path), tau=0.25)
    assert version_dir == str(base / "2") and export.latest_version_dir(str(base)) == version_dir
    assert (base / "1").read_text() == "a note someone left"


def test_a_version_that_cannot_be_claimed_names_the_offender(tmp_path, monkeypatch):
    base = tmp_path / "ssagan"
    staging = base / ".tmp-export-x"
    staging.mkdir(parents=True)
    (staging / "saved_model.pb").write_text("")
    for number in range(1, 101):
        (base / str(number)).write_text("")
    with pytest.raises(export.ExportError, match=r"could not claim a new version folder .*not version folders: "
                                                 r"\S+ssagan/1, \S+ssagan/2, \S+ssagan/3"):
        export.commit_version(str(staging), str(base))
    for number in range(1, 101):
        (base / str(number)).unlink()
    monkeypatch.setattr(os, "rename", lambda *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(export.ExportError, match=r"cannot rename the verified export to \S+ssagan/1: Permission"):
        export.commit_version(str(staging), str(base))


def test_staging_folders_of_dead_exports_are_removed_and_live_ones_kept(tmp_path):
    """Staging folders are recognised by the lock file inside them (host and pid), not by name:
    a dead local writer's is removed; a live one's, another machine's, and a lockless folder
    named like one (a user's, however old) are kept."""
    import json

    from ssagan_tf.locking import DirectoryLock

    base = tmp_path / "ssagan"
    dead, live, old, remote = (base / f".tmp-export-{name}" for name in ("dead", "live", "old", "remote"))
    for folder in (dead, live, old, remote):
        folder.mkdir(parents=True)
    DirectoryLock(str(dead), export.STAGING_LOCK, "an export", "--export_dir").acquire().release()
    holder = DirectoryLock(str(live), export.STAGING_LOCK, "an export", "--export_dir").acquire()
    (remote / export.STAGING_LOCK).write_text(json.dumps({"pid": 999999, "host": "another-machine"}))
    (old / "notes.txt").write_text("a user's")
    os.utime(old, (0, 0))                  # no lock file, hours old
    try:
        assert export.remove_stale_staging(str(base)) == [str(dead)]
    finally:
        holder.release()
    assert sorted(os.listdir(base)) == [".tmp-export-live", ".tmp-export-old", ".tmp-export-remote"]
    assert (old / "notes.txt").read_text() == "a user's"


@pytest.mark.slow
def test_staging_folder_of_an_export_killed_with_sigkill_is_removed_by_the_next(run_dir, tmp_path):
    import signal
    import time

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "ssagan_tf.export", f"--model_dir={run_dir}",
                             f"--export_dir={tmp_path}", "--precision=fp32"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = tmp_path / "ssagan"
    deadline = time.time() + 240
    try:
        while not list(base.glob(".tmp-export-*/variables")):
            assert proc.poll() is None and time.time() < deadline, "the export ended before it was caught staging"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=HANG_TIMEOUT)
    staged = list(base.glob(".tmp-export-*"))
    assert len(staged) == 1 and export.version_numbers(str(base)) == []
    version_dir = export.export_models(run_dir, str(tmp_path))
    assert version_dir == str(base / "1") and not staged[0].exists()


@pytest.mark.slow
def test_export_of_a_run_with_a_weight_average_serves_the_averaged_weights(tmp_path):
    """The export of a checkpoint holding a weight average (--ema_decay) translates exactly as the
    averaged generators under the trained (not averaged) attention do, not as the raw generators,
    and says so in export.json."""
    from ssagan_tf.training.averaging import CHECKPOINT_KEY, WeightAverage

    cfg = ModelConfig(**TINY)
    path = str(tmp_path / "run")
    save_config(RunConfig(data_dir="unused", model_dir=path, model=cfg, tau=0.25, ema_decay=0.9), path)
    raw = build_models(cfg)
    averaged = build_models(cfg)              # other initial weights: the shadows start as these
    average = WeightAverage(averaged, 0.9)
    checkpoint = model_checkpoint(raw, step=tf.Variable(5, dtype=tf.int64), **{CHECKPOINT_KEY: average.trackable()})
    tf.train.CheckpointManager(checkpoint, checkpoint_dir(path), max_to_keep=1).save()
    version = export.export_models(path, str(tmp_path / "export"))
    assert export.read_export_info(version)["weights"] == "average"
    served = tf.saved_model.load(version).signatures["normal_to_tumor"](images=tf.constant(_batch()))
    expected, _ = translate(averaged.normal_to_tumor, raw.attention_normal, _batch(), tau=0.25)
    not_expected, _ = translate(raw.normal_to_tumor, raw.attention_normal, _batch(), tau=0.25)
    np.testing.assert_allclose(served["image"].numpy(), expected.numpy(), atol=1e-5)
    assert np.abs(served["image"].numpy() - not_expected.numpy()).max() > 1e-3


@pytest.mark.slow
def test_export_of_the_best_checkpoint_serves_its_weights(tmp_path):
    """--checkpoint=best exports the checkpoint the selection kept, latest the newest, auto the
    kept one when there is one; best without a selection is refused, naming what to do."""
    import json

    from ssagan_tf.run_dir import SCORES_NAME, selection_dir

    cfg = ModelConfig(**TINY)
    path = str(tmp_path / "run")
    save_config(RunConfig(data_dir="unused", model_dir=path, model=cfg, tau=0.25), path)
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        export.export_models(path, str(tmp_path / "none"), checkpoint="best")
    kept, newest = build_models(cfg), build_models(cfg)
    for step, models in ((3, kept), (6, newest)):
        checkpoint = model_checkpoint(models, step=tf.Variable(step, dtype=tf.int64))
        saved = tf.train.CheckpointManager(checkpoint, checkpoint_dir(path), max_to_keep=1).save(checkpoint_number=step)
        if step == 3:     # as selection.KeepBest leaves it
            os.makedirs(selection_dir(path))
            for name in os.listdir(checkpoint_dir(path)):
                if name.startswith("ckpt-3."):
                    os.link(os.path.join(checkpoint_dir(path), name), os.path.join(selection_dir(path), name))
            with open(os.path.join(selection_dir(path), SCORES_NAME), "w") as f:
                json.dump({"records": [], "best": {"epoch": 1, "step": 3, "score": 0.5, "checkpoint": "ckpt-3"}}, f)
    assert saved.endswith("ckpt-6") and not os.path.exists(os.path.join(checkpoint_dir(path), "ckpt-3.index"))
    images = _batch()
    for which, models, step in (("best", kept, 3), ("auto", kept, 3), ("latest", newest, 6)):
        version = export.export_models(path, str(tmp_path / which), checkpoint=which)
        info = export.read_export_info(version)
        assert info["step"] == step and info["checkpoint"] == ("latest" if which == "latest" else "best")
        served = tf.saved_model.load(version).signatures["normal_to_tumor"](images=tf.constant(images))
        expected, _ = translate(models.normal_to_tumor, models.attention_normal, images, tau=0.25)
        np.testing.assert_allclose(served["image"].numpy(), expected.numpy(), atol=1e-5, err_msg=which)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["normal_to_tumor", "tumor_to_normal"])
def test_the_in_masks_signatures_draw_where_the_caller_says(exported, run_dir, direction):
    """normal_to_tumor_in_masks (tumor_to_normal_in_masks) is Eq. 1 with G_n2t (G_t2n) and the
    caller's masks in A_n's (A_t's) place; its attention output is those masks; masks outside
    [0, 1] are refused; export.json names both and records their reload check."""
    from ssagan_tf.models import compose_attention
    from ssagan_tf.training.checkpoints import restore_models

    models, _, _ = restore_models(run_dir)
    name = export.MASKED_SIGNATURES[direction]
    images = _batch(20)                          # more than one serving chunk
    masks = np.zeros((20, 32, 32, 1), np.float32)
    masks[:, 8:20, 10:16] = 1.0
    served = tf.saved_model.load(exported).signatures[name](images=tf.constant(images), masks=tf.constant(masks))
    expected = compose_attention(images, getattr(models, direction)(images).numpy(), masks)
    np.testing.assert_allclose(served["image"].numpy(), np.asarray(expected), atol=1e-5)
    np.testing.assert_array_equal(served["attention"].numpy(), masks)
    np.testing.assert_array_equal(served["image"].numpy()[masks[..., 0] == 0], images[masks[..., 0] == 0])
    info = export.read_export_info(exported)
    assert name in info["verification"]["max_abs_diff"] and name in info["masked_signatures"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"masks must lie in \[0, 1\]"):
        tf.saved_model.load(exported).signatures[name](images=tf.constant(images), masks=tf.constant(masks * 2))


def test_the_export_after_training_is_the_callers_and_only_the_chiefs(tmp_path, monkeypatch):
    """run_train.py passes `export_after_training` as train's `finish`: it exports the run in
    float32 when the config names an export_dir and this process wrote the run directory."""
    from types import SimpleNamespace

    calls = []
    monkeypatch.setattr(export, "export_models", lambda *args, **kwargs: calls.append((args, kwargs)) or "v/1")
    config = RunConfig(data_dir="unused", model_dir=str(tmp_path / "run"), model=ModelConfig(**TINY),
                       export_dir=str(tmp_path / "export"))
    lines = []
    assert export.export_after_training(config, SimpleNamespace(chief=False), lines.append) is None
    assert export.export_after_training(dataclasses.replace(config, export_dir=""), SimpleNamespace(chief=True),
                                        lines.append) is None
    assert calls == [] and lines == []
    assert export.export_after_training(config, SimpleNamespace(chief=True), lines.append) == "v/1"
    assert calls == [((config.model_dir, config.export_dir), {"precision": "fp32", "log": lines.append})]
    assert lines == [f"Exported to {config.export_dir}"]
