"""SSA-CycleGAN networks (DESIGN.md section 2): generators, attention networks, PatchGAN
discriminators, and the attention composition of paper Eq. 1."""

from ssagan_tf.models.ssa import (SYSTEMS, ModelConfig, SSAModels, build_models, compose_attention,
                                  threshold_attention, translate)

__all__ = ["SYSTEMS", "ModelConfig", "SSAModels", "build_models", "compose_attention", "threshold_attention",
           "translate"]
