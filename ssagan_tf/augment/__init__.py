"""Augmented datasets from exported generators (DESIGN.md section 6): `augment_dataset(config)`
translates real slices in batches and writes synthetic slices with labels, provenance and (for
synthetic tumors) the thresholded attention as a pseudo-mask. See docs/export_and_serving.md."""

from ssagan_tf.augment.config import DIRECTIONS, FORMATS, AugmentConfig, parse_directions, parse_ratio
from ssagan_tf.synthetic import sample_positions, synthetic_count
from ssagan_tf.augment.run import AugmentResult, augment_dataset

__all__ = ["DIRECTIONS", "FORMATS", "AugmentConfig", "AugmentResult", "augment_dataset", "parse_directions",
           "parse_ratio", "sample_positions", "synthetic_count"]
