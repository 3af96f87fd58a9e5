"""The contact sheet: one row per example, columns input | attention | output, rows of
normal_to_tumor first, then tumor_to_normal, so a person can look before trusting the data."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

GAP = 2          # pixels between tiles
GROUP_GAP = 8    # pixels between directions


def _to_uint8(image: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (np.clip(image, low, high) - low) / (high - low)
    return np.round(scaled * 255.0).astype(np.uint8)


def sheet_row(image: np.ndarray, attention: np.ndarray, translated: np.ndarray) -> np.ndarray:
    """[H, 3W + 2 GAP] uint8: the first channel of input and output in [-1, 1], attention in [0, 1]."""
    height = image.shape[0]
    gap = np.full((height, GAP), 255, np.uint8)
    return np.concatenate([_to_uint8(image[..., 0], -1, 1), gap, _to_uint8(attention[..., 0], 0, 1), gap,
                           _to_uint8(translated[..., 0], -1, 1)], axis=1)


def contact_sheet(groups: list) -> np.ndarray:
    """`groups`: one list of rows (from `sheet_row`) per direction -> one [H', W', 1] uint8 image."""
    parts = []
    for rows in groups:
        if not rows:
            continue
        if parts:
            parts.append(np.full((GROUP_GAP, rows[0].shape[1]), 255, np.uint8))
        for i, row in enumerate(rows):
            if i:
                parts.append(np.full((GAP, row.shape[1]), 255, np.uint8))
            parts.append(row)
    return np.concatenate(parts, axis=0)[..., None]


def write_png(path: str, image: np.ndarray) -> str:
    tf.io.write_file(path, tf.io.encode_png(image))
    return path
