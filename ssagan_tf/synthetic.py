"""How many synthetic slices a class gets at a synthetic:real ratio, and which real slices they are
translated from. One home for the arithmetic that `run_augment.py` (the dataset it writes) and
`run_evaluate.py` (the synthetic arms it trains) share, so that the evaluation measures the
dataset augmentation writes. Plain numpy; no TensorFlow.

A direction that makes class K from the other class's slices makes ``floor(ratio * real_K + 0.5)``
slices (rounded half up: 0.5 x 5 real slices gives 3). When that is at most the number of source
slices, distinct sources are drawn without replacement; beyond it every source is used
``floor(count / n)`` times and a random ``count mod n`` of them once more (balanced: no source is
left out while another repeats). Draws are seeded by (seed, stream); stream 0 makes tumor slices
(normal_to_tumor), stream 1 normal slices (tumor_to_normal).
"""

from __future__ import annotations

import math

import numpy as np

STREAMS = {"normal_to_tumor": 0, "tumor_to_normal": 1}


def synthetic_count(ratio, real_target: int, sources: int = 0) -> int:
    """Synthetic slices of a class: ratio x its real slices, rounded half up; with ratio None,
    every one of `sources` once."""
    if ratio is None:
        return int(sources)
    return int(math.floor(float(ratio) * int(real_target) + 0.5))


def sample_positions(sources: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` source positions out of `sources`, sorted: distinct when count <= sources, else
    balanced repeats (see the module docstring)."""
    if count == 0:
        return np.zeros(0, np.int64)
    if sources == 0:
        raise ValueError(f"{count} synthetic slices requested from an empty source class")
    repeats, remainder = divmod(count, sources)
    positions = np.repeat(np.arange(sources, dtype=np.int64), repeats)
    extra = rng.choice(sources, size=remainder, replace=False) if remainder else np.zeros(0, np.int64)
    return np.sort(np.concatenate([positions, extra.astype(np.int64)]), kind="stable")


def select_sources(sources: int, count: int, seed: int, stream: int) -> np.ndarray:
    """`sample_positions` under the generator of (seed, stream)."""
    return sample_positions(sources, count, np.random.default_rng([seed, stream]))
