"""The exported generators as augmentation uses them: resolve `--model` to one SavedModel version
and call its signatures on numpy batches."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ssagan_tf import export


@dataclass
class Translator:
    """One loaded export. `name`/`version` identify it in provenance (`<name>/<version>`)."""

    name: str
    version: str
    path: str
    info: dict
    functions: dict
    saved_model: object = None     # keeps the loaded SavedModel (which owns the variables) alive

    @property
    def image_shape(self) -> tuple:
        cfg = self.info["model_config"]
        return (int(cfg["image_size"]), int(cfg["image_size"]), int(cfg["channels"]))

    @property
    def tau(self) -> float:
        return float(self.info["tau"])

    @property
    def precision(self) -> str:
        """The precision the export computes in (exports written before the field: fp32)."""
        return str(self.info.get("precision", "fp32"))

    @property
    def has_attention(self) -> bool:
        return bool(self.info["has_attention"])

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    def __call__(self, direction: str, images: np.ndarray):
        """images [B, H, W, C] float32 in [-1, 1] -> (translated [B, H, W, C], attention [B, H, W, 1])."""
        if images.shape[1:] != self.image_shape:
            raise ValueError(f"images of shape {images.shape[1:]} given to a model of {self.image_shape}")
        out = self.functions[direction](images=tf.constant(images, tf.float32))
        return out["image"].numpy(), out["attention"].numpy()

    def in_masks(self, images: np.ndarray, masks: np.ndarray):
        """normal->tumor drawn inside `masks` [B, H, W, 1] (in A_n's place) -> (translated, masks)."""
        if export.IN_MASKS not in self.functions:
            raise ValueError(f"{self.path}: this export has no {export.IN_MASKS} signature (written by an older "
                             "version); export the training run again to use --lesion_masks")
        if images.shape[1:] != self.image_shape:
            raise ValueError(f"images of shape {images.shape[1:]} given to a model of {self.image_shape}")
        out = self.functions[export.IN_MASKS](images=tf.constant(images, tf.float32),
                                             masks=tf.constant(masks, tf.float32))
        return out["image"].numpy(), out["attention"].numpy()


def _is_version_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(os.path.join(path, "checkpoints"))


def model_kind(path: str) -> str:
    """'version', 'base' (integer versions inside) or 'run' (a training run); ValueError otherwise."""
    if _is_version_dir(path):
        return "version"
    if export.version_numbers(path):
        return "base"
    if _is_run_dir(path):
        return "run"
    raise ValueError(f"--model {path!r} is neither an export version dir (saved_model.pb), an export base dir "
                     "(integer version dirs) nor a training run dir (config.json + checkpoints/)")


def load_version(version_dir: str, name: str | None = None, version: str | None = None) -> Translator:
    info = export.read_export_info(version_dir)
    loaded = tf.saved_model.load(version_dir)
    functions = {d: loaded.signatures[d] for d in export.DIRECTIONS + (export.IN_MASKS,) if d in loaded.signatures}
    version_dir = os.path.abspath(version_dir)
    return Translator(name=name or os.path.basename(os.path.dirname(version_dir)),
                      version=version or os.path.basename(version_dir), path=version_dir, info=info,
                      functions=functions, saved_model=loaded)


def load_translator(model: str, scratch_dir: str | None = None, precision: str = "auto") -> Translator:
    """Resolve `model` (version dir, base dir -> newest version, or training run dir) and load it.
    A training run is exported (and verified) in `precision` (`auto`: by hardware) to a temporary
    directory under `scratch_dir`, removed after loading; its version reads `step-<N>` and its name
    is the run directory's name. An export computes in the precision it was exported in: asking
    for another one explicitly is refused."""
    from ssagan_tf.precision import choose_precision

    kind = model_kind(model)
    if kind in ("version", "base"):
        translator = load_version(model if kind == "version" else export.latest_version_dir(model))
        if precision not in ("auto", translator.precision):
            raise ValueError(f"--model {model}: this export computes in {translator.precision}, not {precision}; "
                             f"export again with --precision={precision}, or pass the training run directory "
                             "as --model")
        return translator
    if scratch_dir:
        os.makedirs(scratch_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="export-", dir=scratch_dir)
    try:
        name = os.path.basename(os.path.abspath(model).rstrip(os.sep)) or "run"
        name = export.validate_model_name(_sanitised_model_name(name))
        version_dir = export.export_models(model, scratch, model_name=name,
                                           precision=choose_precision(precision).precision)
        step = export.read_export_info(version_dir).get("step")
        translator = load_version(version_dir, name=name, version=f"step-{step}")
        translator.path = os.path.abspath(model)
        return translator
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sanitised_model_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip("._-")
    return cleaned or "run"
