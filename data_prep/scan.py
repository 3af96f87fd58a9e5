"""What a reader hands to preprocessing: one scan (a 3-D volume or a single 2-D slice)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssagan_tf.data.errors import CaseError

__all__ = ["CaseError", "CaseRef", "LayoutError", "Scan"]


class LayoutError(ValueError):
    """The dataset on disk does not fit the flags given (class folders left out of
    --class_folders, split folders read as patients, no file of the format, ...), found before
    any image is read. The message names the flag that fixes it; the command line exits 2, as
    for any bad flag value."""


@dataclass(frozen=True)
class CaseRef:
    """A case found on disk, before reading: small and immutable, so reading threads can share it.
    `paths` maps a role ('t1ce', 'flair', 'seg', 'image', 'mask', ...) to a file or a
    DICOM folder; `label` is set for 2-D class folders, where the folder says the class."""

    case_id: str
    patient_id: str
    format: str
    paths: dict
    label: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Scan:
    """A read case. `image` is (Z, Y, X, C) float32 in raw intensities, axial slices along Z in a
    canonical orientation (LPS: Z inferior->superior); a 2-D image has Z = 1. `mask` is the
    whole-tumor mask (Z, Y, X) uint8 in {0, 1}, or None when the case has no segmentation.
    `is_3d` says whether per-volume steps (near-empty slice removal, margins) apply."""

    ref: CaseRef
    image: np.ndarray
    mask: np.ndarray | None
    spacing: tuple = (1.0, 1.0, 1.0)
    is_3d: bool = True

    @property
    def case_id(self) -> str:
        return self.ref.case_id

    @property
    def patient_id(self) -> str:
        return self.ref.patient_id
