"""`--lesion_masks`: the lesion mask each synthetic tumor is drawn in.

Each normal source slice (by its position in the split, so a re-run or another batch size gives
the same mask) gets the whole-tumor mask of a labelled tumor slice of the same split transplanted
onto it (`ssagan_tf.lesions.transplant`: inside the head, rotated and scaled within its limits).
The donor and the placement are drawn from (seed, position); a donor whose mask cannot be placed
(it would fall outside the head) is replaced by the next, up to `ATTEMPTS`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ssagan_tf import lesions
from ssagan_tf.data import pipeline

ATTEMPTS = 8


class LesionMasks:
    """The lesion masks of the `split` of `dataset` (the source's `schema.Dataset`)."""

    def __init__(self, dataset, split: str, seed: int):
        tumors = pipeline.load_split_arrays(dataset, split, domains=("tumor",))
        labelled = (tumors["has_mask"] > 0) & (tumors["mask"].sum(axis=(1, 2, 3)) > 0)
        if not labelled.any():
            raise ValueError(f"--lesion_masks: the {split} split of {dataset.data_dir} has no tumor slice with a "
                             "mask to take lesions from")
        self.images, self.masks = tumors["image"][labelled], tumors["mask"][labelled]
        self.seed = int(seed)
        self.unplaced = 0

    def __call__(self, images: np.ndarray, positions) -> np.ndarray:
        """[B, H, W, C] normal slices at split `positions` -> their lesion masks [B, H, W, 1] (0/1)."""
        out = np.zeros(images.shape[:3] + (1,), np.float32)
        for k, position in enumerate(np.asarray(positions).tolist()):
            rng = np.random.default_rng([self.seed, int(position)])
            for attempt in range(ATTEMPTS):
                donor = int(rng.integers(len(self.masks)))
                _, mask, placed = lesions.transplant(images[k:k + 1], self.images[donor:donor + 1],
                                                     self.masks[donor:donor + 1], np.ones(1, np.float32),
                                                     tf.constant([self.seed, int(position) * ATTEMPTS + attempt],
                                                                 tf.int64))
                if float(placed[0]) > 0:
                    out[k] = mask.numpy()[0]
                    break
            else:
                self.unplaced += 1
        return out
