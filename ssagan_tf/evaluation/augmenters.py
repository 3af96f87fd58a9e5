"""Exported augmenters (docs/export_and_serving.md): a SavedModel with the signatures `normal_to_tumor`
and `tumor_to_normal`, each taking `images` [N, H, W, C] in [-1, 1] and returning `image` (the
translation) and `attention` ([N, H, W, 1] in [0, 1]; all ones for systems without attention)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ssagan_tf.evaluation.config import resolve_saved_model_dir

DIRECTIONS = ("normal_to_tumor", "tumor_to_normal")
TRANSLATE_BATCH = 64


@dataclass(frozen=True)
class Translation:
    """One direction applied to a set of slices."""

    source: np.ndarray     # [N, H, W, C], the real slices
    image: np.ndarray      # [N, H, W, C], their translations
    attention: np.ndarray  # [N, H, W, 1]


class Augmenter:
    """A loaded exported model, called in batches on numpy slices."""

    def __init__(self, name: str, path: str):
        self.name = name
        self.path = resolve_saved_model_dir(path)
        self._loaded = tf.saved_model.load(self.path)
        missing = [d for d in DIRECTIONS if d not in self._loaded.signatures]
        if missing:
            raise ValueError(f"augmenter {name!r} at {self.path}: missing signature(s) {missing}; "
                             f"it has {sorted(self._loaded.signatures)}")

    def check_input_shape(self, image_shape: tuple) -> None:
        """Refuse, before any work, an export whose signatures cannot take slices of `image_shape`
        (H, W, C), e.g. one trained at another image size or channel count."""
        for direction in DIRECTIONS:
            _, kwargs = self._loaded.signatures[direction].structured_input_signature
            spec = kwargs.get("images")
            if spec is None:
                raise ValueError(f"augmenter {self.name!r}: {direction} has no `images` input ({sorted(kwargs)})")
            if not spec.shape.is_compatible_with((None,) + tuple(image_shape)):
                raise ValueError(f"augmenter {self.name!r}: {direction} takes images {spec.shape}, "
                                 f"the dataset's slices are {tuple(image_shape)}")

    def translate(self, direction: str, images: np.ndarray) -> Translation:
        """Translate `images` [N, H, W, C] in batches of `TRANSLATE_BATCH`."""
        signature = self._loaded.signatures[direction]
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


def has_attention(attention: np.ndarray) -> bool:
    """False for the all-ones map that systems without attention return."""
    return bool(np.any(np.asarray(attention) < 1.0 - 1e-6))
