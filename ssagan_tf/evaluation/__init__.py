"""The paper's classifier evaluation (section IV): does the augmentation help a ResNet18?

    from ssagan_tf.evaluation import EvaluationConfig, run_evaluation
    run_evaluation(EvaluationConfig(data_dir=..., output_dir=..., augmenters=(("ssa", export_dir),)))

Importing this package does not import TensorFlow, so settings can be checked instantly.
"""

from ssagan_tf.evaluation.config import ALLOWED_RATIOS, ARMS, EvaluationConfig, parse_augmenters


def run_evaluation(config: EvaluationConfig, dataset=None) -> dict:
    """Train and test every (arm, augmenter, ratio, seed) classifier and write `report.md`,
    `results.json` and the figures to `config.output_dir`; see `runner.run_evaluation`."""
    from ssagan_tf.evaluation.runner import run_evaluation as run

    return run(config, dataset)


__all__ = ["ALLOWED_RATIOS", "ARMS", "EvaluationConfig", "parse_augmenters", "run_evaluation"]
