"""Augmented datasets from exported generators (docs/method.md, "Augmentation and evaluation"):
`augment_dataset(config)` translates real slices in batches and writes synthetic slices with
labels, provenance and (for synthetic tumors) the thresholded attention as a pseudo-mask. See
docs/export_and_serving.md.

Importing this package does not import TensorFlow (the command line checks its flags first):
`augment_dataset` and `AugmentResult` load `ssagan_tf.augment.run` when first used."""

from ssagan_tf.augment.config import FORMATS, AugmentConfig, parse_directions, parse_ratio
from ssagan_tf.data.schema import DIRECTIONS
from ssagan_tf.synthetic import sample_positions, synthetic_count

_FROM_RUN = ("AugmentResult", "augment_dataset")


def __getattr__(name):
    if name in _FROM_RUN:
        from ssagan_tf.augment import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DIRECTIONS", "FORMATS", "AugmentConfig", "AugmentResult", "augment_dataset", "parse_directions",
           "parse_ratio", "sample_positions", "synthetic_count"]
