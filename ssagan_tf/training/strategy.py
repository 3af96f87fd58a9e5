"""Distribution strategies (docs/training.md, "Hardware and strategies") and who writes what under them.

`mirrored` takes every local GPU (or the CPU), `one_device` the first GPU (or the CPU),
`multi_worker` is `MultiWorkerMirroredStrategy` configured by `TF_CONFIG`. Under
`multi_worker` every worker must take part in saving (the save reads distributed variables
collectively), so non-chief workers save into a temporary directory that they delete afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import tensorflow as tf


def split_cpu(replicas: int):
    """Split the CPU into `replicas` logical devices so that `mirrored` runs real replicas without
    GPUs (tests, and checking a multi-GPU configuration on a laptop). Must run before TF first
    touches a device."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as err:
        raise RuntimeError("cpu_replicas must be set before TensorFlow initialises its devices "
                           "(start a fresh process)") from err


def make_strategy(name: str, cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The strategy called `name` ("mirrored", "one_device" or "multi_worker")."""
    if cpu_replicas:
        split_cpu(cpu_replicas)
    if name == "multi_worker":
        # Before anything lists logical devices: that initialises the runtime, and collectives
        # must be configured before it is.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        if gpus or not cpu_replicas:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    raise ValueError(f"unknown strategy {name!r}")


def local_devices(strategy: tf.distribute.Strategy) -> list:
    """The devices of this process's replicas, in replica order."""
    return list(strategy.extended.worker_devices)


def first_replica_index(strategy: tf.distribute.Strategy) -> int:
    """Global index of this process's first replica (0 unless multi_worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0
    return int(resolver.task_id or 0) * len(local_devices(strategy))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the process that writes checkpoints, summaries and samples."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return _chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def is_chief_process(strategy_name: str, environ=None) -> bool:
    """`is_chief` before any strategy exists, from `TF_CONFIG`: whether this process will write
    the run directory (and so must hold its lock). Creating a multi-worker strategy waits for
    every worker, so a run refused for its directory should be refused before that."""
    environ = os.environ if environ is None else environ
    if strategy_name != "multi_worker" or not environ.get("TF_CONFIG"):
        return True
    tf_config = json.loads(environ["TF_CONFIG"])
    cluster = tf_config.get("cluster") or {}
    if not cluster:
        return True
    task = tf_config.get("task") or {}
    return _chief_task(task.get("type"), task.get("index", 0), cluster)


def _chief_task(task_type, task_id, cluster: dict) -> bool:
    """The chief is the `chief` task, or worker 0 of a cluster without one (TensorFlow's rule)."""
    if task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and "chief" not in cluster


def write_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process saves: `model_dir` on the chief, a fresh temporary directory elsewhere
    (delete it with `cleanup_write_dir`)."""
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return tempfile.mkdtemp(prefix=f"ssagan_{resolver.task_type}{resolver.task_id}_")


def cleanup_write_dir(directory: str, model_dir: str):
    if os.path.abspath(directory) != os.path.abspath(model_dir):
        shutil.rmtree(directory, ignore_errors=True)
