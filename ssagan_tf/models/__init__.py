"""SSA-CycleGAN networks (docs/method.md, "Networks"): generators, attention networks, PatchGAN
discriminators, and the attention composition of paper Eq. 1.

Names are loaded on first use: `ModelConfig` and the choices come without TensorFlow (so configs
are checked before it loads), the networks and Eq. 1 (`ssa`) with it.
"""

import importlib

_HOMES = {"CYCLE_ATTENTIONS": "ssagan_tf.choices", "SYSTEMS": "ssagan_tf.choices",
          "ModelConfig": "ssagan_tf.models.config"}
_HOMES.update({name: "ssagan_tf.models.ssa" for name in (
    "SSAModels", "build_models", "compose_attention", "reconstruct", "threshold_attention", "translate",
    "translate_parts")})

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
