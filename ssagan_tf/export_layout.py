"""The TF Serving model directory layout, `<export_dir>/<model_name>/<version>/saved_model.pb`,
without importing TensorFlow (so entry points can check paths before any heavy import)."""

from __future__ import annotations

import os

SAVED_MODEL_FILE = "saved_model.pb"


def version_numbers(model_base_dir: str) -> list:
    """The integer version directories under `<export_dir>/<model_name>`, ascending."""
    if not os.path.isdir(model_base_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_base_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(model_base_dir, name)))


def latest_version_dir(model_base_dir: str) -> str:
    """The newest version directory holding a SavedModel, the one TF Serving serves."""
    complete = [v for v in version_numbers(model_base_dir)
                if os.path.isfile(os.path.join(model_base_dir, str(v), SAVED_MODEL_FILE))]
    if not complete:
        raise FileNotFoundError(
            f"{model_base_dir}: neither a SavedModel nor a TF Serving model directory "
            f"(<model_name>/<version>/{SAVED_MODEL_FILE}); is it the output of `python -m ssagan_tf.export`?")
    return os.path.join(model_base_dir, str(complete[-1]))


def saved_model_dir(path: str) -> str:
    """`path` itself when it holds a SavedModel, else its newest version directory."""
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such exported model directory")
    return latest_version_dir(path)
