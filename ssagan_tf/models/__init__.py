"""SSA-CycleGAN networks (DESIGN.md section 2): generators, attention networks, PatchGAN
discriminators, and the attention composition of paper Eq. 1."""

from ssagan_tf.models.ssa import (CYCLE_ATTENTIONS, SYSTEMS, ModelConfig, SSAModels, build_models,
                                  compose_attention, reconstruct, threshold_attention, translate)

__all__ = ["CYCLE_ATTENTIONS", "SYSTEMS", "ModelConfig", "SSAModels", "build_models", "compose_attention",
           "reconstruct", "threshold_attention", "translate"]
