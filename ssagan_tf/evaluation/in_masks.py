"""`--in_masks`: an exported augmenter whose normal->tumor paints inside real lesion masks.

Where an augmenter's own attention (A_n) puts its synthetic tumors is learnt, and may collapse to
one place for every slice. Drawn in masks instead, each synthetic tumor has a real lesion's shape
at a plausible place: the mask of one of the fold's labelled training tumor slices transplanted
onto the normal slice (`lesions.LesionMasks`, seed 0, by the slice's position among those
translated), painted through the export's `normal_to_tumor_in_masks` signature; its attention is
that mask. Tumor->normal is the export's own. Beside `copy_paste`, which pastes the donor's real
pixels into masks placed alike, it tells the generator's painting from the masks' shapes.
"""

from __future__ import annotations

import numpy as np

from ssagan_tf import lesions
from ssagan_tf.export_layout import IN_MASKS
from ssagan_tf.exported import Translation


class DrawnInMasks:
    """`translator` (an `exported.Translator`) with normal->tumor drawn inside lesion masks of the
    labelled tumor slices of `train` (arrays of `load_split_arrays`, the fold's training split)."""

    def __init__(self, translator, train: dict, seed: int = 0):
        if IN_MASKS not in translator.functions:     # refused before anything is translated
            raise ValueError(f"--in_masks {translator.name}: {translator.path} has no {IN_MASKS} signature (written "
                             "by an older version); export the training run again to draw inside lesion masks")
        tumor = train["label"] == 1
        self.masks = lesions.LesionMasks({k: v[tumor] for k, v in train.items()}, seed,
                                         f"--in_masks {translator.name}: the training split")
        self.translator, self.name, self.path = translator, translator.name, translator.path
        self.has_attention = translator.has_attention

    def check_input_shape(self, image_shape: tuple) -> None:
        self.translator.check_input_shape(image_shape)

    def translate(self, direction: str, images: np.ndarray) -> Translation:
        if direction != "normal_to_tumor":
            return self.translator.translate(direction, images)
        images = np.asarray(images, np.float32)
        unplaced = self.masks.unplaced
        masks = self.masks(images, np.arange(len(images)))
        if self.masks.unplaced > unplaced:
            print(f"WARNING: --in_masks {self.name}: no lesion fits inside the brain of "
                  f"{self.masks.unplaced - unplaced} of {len(images)} normal slices; those stay unchanged", flush=True)
        image, attention = self.translator.in_masks(images, masks)
        return Translation(source=images, image=image, attention=attention)
