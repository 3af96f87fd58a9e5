"""The one client of an exported model (docs/export_and_serving.md): find a SavedModel version,
load it, and call its signatures on numpy batches. Augmentation (`run_augment.py --model`) and
evaluation (`run_evaluate.py --augmenters`) both translate through `Translator`.

What `load_translator` accepts as a model:

    version   a folder holding saved_model.pb (`<export_dir>/<model_name>/<version>`)
    base      a folder of integer versions (`<export_dir>/<model_name>`): its newest complete one,
              the one TF Serving serves
    run       a training run directory (config.json + checkpoints/): exported by the caller's
              `export_run` (augmentation passes `ssagan_tf.export.export_models`) to a temporary
              folder, verified, loaded, and the folder removed

Every signature takes `images` [N, H, W, C] float32 in [-1, 1] and returns `image` (the
translation) and `attention` ([N, H, W, 1] in [0, 1]; all ones for systems without attention).

What the export is comes from its `export.json` (`info`): the slice shape, tau, the precision and
whether it has attention networks (`has_attention`, written by every version of
`ssagan_tf.export`). A SavedModel without export.json (one written by other code to the same
signatures) loads where the caller allows it (`require_info=False`, as the evaluation does): its
slice shape is read from the signatures, and `has_attention` is None, so whether it has
attention is told from the attention maps it returns (`attention_present`: all ones is none),
as the evaluation always did for such models.

TensorFlow is imported when a model is loaded, not with this module. This module reads exports
and never writes one (so it imports neither `ssagan_tf.export` nor training).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from ssagan_tf import run_dir
from ssagan_tf.precision import choose_precision
from ssagan_tf.data.schema import DIRECTIONS
from ssagan_tf.export_layout import (MASKED_SIGNATURES, SAVED_MODEL_FILE, latest_version_dir, read_export_info,
                                     saved_model_dir, validate_model_name, version_numbers)

TRANSLATE_BATCH = 64       # slices per signature call in `Translator.translate`
MODEL_KINDS = ("version", "base", "run")


@dataclass(frozen=True)
class Translation:
    """One direction applied to a set of slices."""

    source: np.ndarray     # [N, H, W, C], the real slices
    image: np.ndarray      # [N, H, W, C], their translations
    attention: np.ndarray  # [N, H, W, 1]


def attention_present(attention: np.ndarray) -> bool:
    """False for the all-ones map that systems without attention return."""
    return bool(np.any(np.asarray(attention) < 1.0 - 1e-6))


@dataclass
class Translator:
    """One loaded export. `name`/`version` identify it in provenance (`<name>/<version>`)."""

    name: str
    version: str
    path: str
    info: dict                     # export.json ({} for a SavedModel without one)
    functions: dict                # signature name -> concrete function
    saved_model: object = None     # keeps the loaded SavedModel (which owns the variables) alive

    @property
    def image_shape(self) -> tuple:
        """(H, W, C) of the slices the export takes."""
        cfg = self.info.get("model_config")
        if cfg:
            return (int(cfg["image_size"]), int(cfg["image_size"]), int(cfg["channels"]))
        return tuple(self._images_spec(DIRECTIONS[0]).shape[1:])

    @property
    def tau(self) -> float:
        return float(self.info["tau"])

    @property
    def precision(self) -> str:
        """The precision the export computes in (exports written before the field: fp32)."""
        return str(self.info.get("precision", "fp32"))

    @property
    def has_attention(self) -> bool | None:
        """export.json's `has_attention`; None for a SavedModel without it (see the module docstring)."""
        value = self.info.get("has_attention")
        return None if value is None else bool(value)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    def _images_spec(self, direction: str):
        _, kwargs = self.functions[direction].structured_input_signature
        spec = kwargs.get("images")
        if spec is None:
            raise ValueError(f"augmenter {self.name!r}: {direction} has no `images` input ({sorted(kwargs)})")
        return spec

    def check_input_shape(self, image_shape: tuple) -> None:
        """Refuse, before any work, an export whose signatures cannot take slices of `image_shape`
        (H, W, C), e.g. one trained at another image size or channel count."""
        for direction in DIRECTIONS:
            spec = self._images_spec(direction)
            if not spec.shape.is_compatible_with((None,) + tuple(image_shape)):
                raise ValueError(f"augmenter {self.name!r}: {direction} takes images {spec.shape}, "
                                 f"the dataset's slices are {tuple(image_shape)}")

    def _check_shape(self, images: np.ndarray) -> None:
        """Refuse slices the signatures cannot take (a dimension the export leaves open takes any)."""
        expected = self.image_shape
        if len(images.shape) != 4 or any(e is not None and e != g for e, g in zip(expected, images.shape[1:])):
            raise ValueError(f"images of shape {images.shape[1:]} given to a model of {expected}")

    def __call__(self, direction: str, images: np.ndarray):
        """images [B, H, W, C] float32 in [-1, 1] -> (translated [B, H, W, C], attention [B, H, W, 1]),
        in one signature call."""
        import tensorflow as tf

        self._check_shape(images)
        out = self.functions[direction](images=tf.constant(images, tf.float32))
        return out["image"].numpy(), out["attention"].numpy()

    def in_masks(self, images: np.ndarray, masks: np.ndarray, direction: str = "normal_to_tumor"):
        """`direction` drawn inside `masks` [B, H, W, 1] (in A_n's or A_t's place) -> (translated,
        masks), in one signature call."""
        import tensorflow as tf

        name = MASKED_SIGNATURES[direction]
        if name not in self.functions:
            raise ValueError(f"{self.path}: this export has no {name} signature (written by an older "
                             "version); export the training run again to draw inside lesion masks")
        self._check_shape(images)
        out = self.functions[name](images=tf.constant(images, tf.float32), masks=tf.constant(masks, tf.float32))
        return out["image"].numpy(), out["attention"].numpy()

    def translate(self, direction: str, images: np.ndarray) -> Translation:
        """Translate `images` [N, H, W, C] in batches of `TRANSLATE_BATCH`, checking what the
        signature returns (a SavedModel written by other code may not keep to the contract)."""
        import tensorflow as tf

        signature = self.functions[direction]
        translated, attention = [], []
        for start in range(0, len(images), TRANSLATE_BATCH):
            outputs = signature(images=tf.constant(images[start:start + TRANSLATE_BATCH], tf.float32))
            for key in ("image", "attention"):
                if key not in outputs:
                    raise ValueError(f"augmenter {self.name!r}: {direction} returns {sorted(outputs)}, "
                                     f"not {key!r}")
            translated.append(outputs["image"].numpy())
            attention.append(outputs["attention"].numpy())
        empty = np.zeros((0,) + images.shape[1:], np.float32)
        result = Translation(
            source=images,
            image=np.concatenate(translated) if translated else empty,
            attention=np.concatenate(attention) if attention else empty[..., :1])
        if result.image.shape != images.shape:
            raise ValueError(f"augmenter {self.name!r}: {direction} maps {images.shape} to "
                             f"{result.image.shape}; it must keep the slice shape")
        return result


def model_kind(path: str) -> str:
    """'version', 'base' (integer versions inside) or 'run' (a training run); ValueError otherwise."""
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return "version"
    if version_numbers(path):
        return "base"
    if run_dir.is_run_dir(path):
        return "run"
    raise ValueError(f"--model {path!r} is neither an export version dir (saved_model.pb), an export base dir "
                     "(integer version dirs) nor a training run dir (config.json + checkpoints/)")


def resolve_version_dir(path: str) -> str:
    """The SavedModel version behind an exported model path: the path itself when it holds
    saved_model.pb, else its newest complete integer version (FileNotFoundError when none)."""
    return saved_model_dir(path)


def load_version(version_dir: str, name: str | None = None, version: str | None = None,
                 require_info: bool = True) -> Translator:
    """Load one SavedModel version. Its export.json is required unless `require_info` is False
    (then a missing or unreadable one counts as none: `info` is {})."""
    import tensorflow as tf

    if require_info:
        info = read_export_info(version_dir)
    else:
        try:
            info = read_export_info(version_dir)
        except (OSError, ValueError):
            info = {}
    loaded = tf.saved_model.load(version_dir)
    version_dir = os.path.abspath(version_dir)
    name = name or os.path.basename(os.path.dirname(version_dir))
    missing = [d for d in DIRECTIONS if d not in loaded.signatures]
    if missing:
        raise ValueError(f"augmenter {name!r} at {version_dir}: missing signature(s) {missing}; "
                         f"it has {sorted(loaded.signatures)}")
    functions = {d: loaded.signatures[d] for d in DIRECTIONS + tuple(MASKED_SIGNATURES.values())
                 if d in loaded.signatures}
    return Translator(name=name, version=version or os.path.basename(version_dir), path=version_dir, info=info,
                      functions=functions, saved_model=loaded)


def load_translator(model: str, scratch_dir: str | None = None, precision: str = "auto", name: str | None = None,
                    kinds: tuple = MODEL_KINDS, require_info: bool = True, export_run=None) -> Translator:
    """Resolve `model` (version dir, base dir -> newest version, or training run dir; `kinds` says
    which are accepted) and load it. A training run is exported (and verified) in `precision`
    (`auto`: by hardware) by `export_run(model_dir, export_dir, model_name=..., precision=...)`
    (`ssagan_tf.export.export_models`; without it a run is refused) to a temporary directory under
    `scratch_dir`, removed after loading; its version reads `step-<N>` and its name is the run
    directory's name. An export computes in the
    precision it was exported in: asking for another one explicitly is refused. `name` names the
    translator (default: the base directory's name)."""
    kind = model_kind(model)
    if kind not in kinds:
        raise ValueError(f"{model}: a {kind} directory; this takes {' or '.join(kinds)} directories")
    if kind in ("version", "base"):
        translator = load_version(model if kind == "version" else latest_version_dir(model), name=name,
                                  require_info=require_info)
        if precision not in ("auto", translator.precision):
            raise ValueError(f"--model {model}: this export computes in {translator.precision}, not {precision}; "
                             f"export again with --precision={precision}, or pass the training run directory "
                             "as --model")
        return translator
    if export_run is None:
        raise ValueError(f"{model}: a training run directory; export it first (python -m ssagan_tf.export)")
    return _load_run(model, scratch_dir, precision, name, export_run)


def _load_run(model: str, scratch_dir: str | None, precision: str, name: str | None, export_run) -> Translator:
    if scratch_dir:
        os.makedirs(scratch_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="export-", dir=scratch_dir)
    try:
        model_name = os.path.basename(os.path.abspath(model).rstrip(os.sep)) or "run"
        model_name = validate_model_name(_sanitised_model_name(model_name))
        version_dir = export_run(model, scratch, model_name=model_name, precision=choose_precision(precision).precision)
        step = read_export_info(version_dir).get("step")
        translator = load_version(version_dir, name=name or model_name, version=f"step-{step}")
        translator.path = os.path.abspath(model)
        return translator
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sanitised_model_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip("._-")
    return cleaned or "run"
