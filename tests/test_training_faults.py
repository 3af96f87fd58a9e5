"""The training loop under faults, in-process on tiny data: a run directory in use, shards that
disagree with the manifest (checked at start, and record counts on the first pass), corrupt
shards named, flags the chosen system does not use. (The same through run_train.py, with
SIGKILL and a second starter, is in test_training_cli.py.)"""

import json
import os

import pytest

from conftest import write_tiny_dataset
from ssagan_tf import run_dir
from ssagan_tf.data import integrity, pipeline
from ssagan_tf.locking import DirectoryLock, DirectoryLockedError
from ssagan_tf.models import ModelConfig
from ssagan_tf.training import loop, strategy
from ssagan_tf.training.config import unused_settings
from test_training import quiet_train, tiny_config



def _edit_manifest(data, edit):
    path = os.path.join(data, "manifest.json")
    manifest = json.load(open(path))
    edit(manifest)
    json.dump(manifest, open(path, "w"))


def test_a_run_directory_in_use_is_refused_before_any_work(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "data"), splits=("train", "val"))
    model_dir = tmp_path / "run"
    with DirectoryLock(str(model_dir), run_dir.LOCK_NAME, "a training run", "--model_dir"):
        with pytest.raises(DirectoryLockedError, match=f"run is in use by a training run \\(pid {os.getpid()} "):
            quiet_train(tiny_config(data, model_dir, max_steps=1))
    assert sorted(os.listdir(model_dir)) == [run_dir.LOCK_NAME]          # nothing else was written


def test_only_the_chief_locks_the_run_directory():
    def env(task_type, index, chief=False):
        cluster = {"worker": ["a:1", "b:2"], **({"chief": ["c:3"]} if chief else {})}
        return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}

    assert strategy.is_chief_process("mirrored", env("worker", 1))      # single process: always
    assert strategy.is_chief_process("multi_worker", env("worker", 0))
    assert not strategy.is_chief_process("multi_worker", env("worker", 1))
    assert not strategy.is_chief_process("multi_worker", env("worker", 0, chief=True))
    assert strategy.is_chief_process("multi_worker", env("chief", 0, chief=True))


@pytest.mark.parametrize("fault, message", [
    ("counts", "counts 5000 train/normal slices but its shards hold 6"),
    ("deleted", "train/tumor-00000-of-00001.tfrecord: missing; .* lists it with 4 records"),
    ("truncated", r"train/normal-00000-of-00001.tfrecord: \d+ bytes, but .* records \d+"),
])
def test_shards_disagreeing_with_the_manifest_stop_training_at_start(tmp_path, fault, message):
    data = write_tiny_dataset(str(tmp_path / "data"), splits=("train", "val"))
    if fault == "counts":
        _edit_manifest(data, lambda m: m["counts"]["train"].update(normal=5000))
    elif fault == "deleted":
        os.remove(os.path.join(data, "train", "tumor-00000-of-00001.tfrecord"))
    else:
        shard = os.path.join(data, "train", "normal-00000-of-00001.tfrecord")
        open(shard, "r+b").truncate(os.path.getsize(shard) - 100)
    with pytest.raises(integrity.DatasetMismatchError, match=message):
        tiny_config(data, tmp_path / "run").check_inputs()
    with pytest.raises(integrity.DatasetMismatchError, match=message):
        quiet_train(tiny_config(data, tmp_path / "run", max_steps=1))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.slow
def test_record_counts_are_checked_on_the_first_pass(tmp_path):
    """A manifest consistent with itself (split count = sum of its shards' counts) but not with
    the shard: the first pass stops, naming the shard, before any checkpoint."""
    data = write_tiny_dataset(str(tmp_path / "data"), splits=("train", "val"))

    def edit(manifest):
        manifest["counts"]["train"]["normal"] = 7
        manifest["shards"]["train/normal-00000-of-00001.tfrecord"]["records"] = 7

    _edit_manifest(data, edit)
    tiny_config(data, tmp_path / "run").check_inputs()                 # presence and sizes agree
    with pytest.raises(pipeline.DataCheckError,
                       match="train/normal-00000-of-00001.tfrecord: holds 6 records but the manifest records 7"):
        quiet_train(tiny_config(data, tmp_path / "run", max_steps=3))
    assert not list((tmp_path / "run" / "checkpoints").glob("*.index"))


@pytest.mark.slow
def test_truncated_shard_of_an_old_manifest_is_named_during_training(tmp_path):
    """Without recorded sizes the truncation shows only when read: one error naming the shard,
    and the old manifest is warned about at start."""
    data = write_tiny_dataset(str(tmp_path / "data"), splits=("train", "val"), record_shards=False)
    shard = os.path.join(data, "train", "tumor-00000-of-00001.tfrecord")
    open(shard, "r+b").truncate(os.path.getsize(shard) - 50)
    stream = __import__("io").StringIO()
    with pytest.raises(pipeline.CorruptShardError, match="train/tumor-00000-of-00001.tfrecord: corrupt, truncated"):
        loop.train(tiny_config(data, tmp_path / "run", max_steps=2), stream=stream)
    assert "does not record its shards' record counts" in stream.getvalue()


def test_system_specific_settings_are_named_when_the_system_lacks_them():
    cyclegan = ModelConfig.for_system("cyclegan", image_size=32)
    attention = ModelConfig.for_system("attention_cyclegan", image_size=32)
    ssa = ModelConfig.for_system("ssa_cyclegan", image_size=32)
    every = ["lambda_mask", "mask_loss_type", "attention_epochs", "d_mode", "attention_ngf", "tau", "cycle_attention",
             "attention_area", "lambda_attention_area", "batch_size"]
    assert [name for name, _ in unused_settings(cyclegan, every)] == every[:-1]
    assert unused_settings(attention, every) == [("lambda_mask", "ssa_cyclegan"), ("mask_loss_type", "ssa_cyclegan")]
    assert unused_settings(ssa, every) == []
    assert unused_settings(cyclegan, ["batch_size"]) == []
