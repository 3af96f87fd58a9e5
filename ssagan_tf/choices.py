"""The named choices of the method's settings: the paper's five systems, the adversarial and
attention-mask losses, what the discriminators see, the cycle's attention, the generator's decoder;
and of the evaluation's: the implementations of the classic augmentation.

Plain Python, without TensorFlow, so that flags and configs are checked before TensorFlow loads
(`run_train.py --help` and a bad flag answer at once); `losses` and `models` re-export them.
"""

from __future__ import annotations

# The systems of the paper's Table I, as overrides of the three switches that tell them apart.
SYSTEMS = {
    "cyclegan": dict(use_attention=False, spectral_norm=False, mask_loss=False),
    "spec_cyclegan": dict(use_attention=False, spectral_norm=True, mask_loss=False),
    "attention_cyclegan": dict(use_attention=True, spectral_norm=False, mask_loss=False),
    "specatte_cyclegan": dict(use_attention=True, spectral_norm=True, mask_loss=False),
    "ssa_cyclegan": dict(use_attention=True, spectral_norm=True, mask_loss=True),
}

GAN_LOSSES = ("lsgan", "vanilla")
# Per-example forms of the semi-supervised attention loss: the paper's L1, or that L1 plus
# a soft Dice term for masks too small for L1 alone (see `losses.attention_mask_l1_dice`).
MASK_LOSS_TYPES = ("l1", "l1_dice")

# What the discriminators see after the attention warm-up (docs/method.md, "Attention-guided discriminators", `--d_mode`):
#   full              never masked
#   source_attention  real and fake both masked by the fake's source attention (the paper's form)
#   own_attention     fake masked by its source attention, real by its own (Mejjati et al.)
D_MODES = ("full", "source_attention", "own_attention")
D_MODE_ALIASES = {"paper": "source_attention", "mejjati": "own_attention"}

# Where the cycle's way back may change the translation: "recompute" runs the other direction's
# attention network on the translation (the paper); "source" reuses the forward attention map.
CYCLE_ATTENTIONS = ("recompute", "source")

# The generator's decoder: stride-2 transposed convolutions (CycleGAN's), or nearest x2 + conv.
UPSAMPLING = ("transpose", "resize")


def canonical_d_mode(d_mode: str) -> str:
    """A d_mode by its descriptive name (the old names `paper` and `mejjati` are aliases)."""
    d_mode = D_MODE_ALIASES.get(d_mode, d_mode)
    if d_mode not in D_MODES:
        raise ValueError(f"unknown d_mode {d_mode!r}; choose one of {D_MODES} "
                         f"(or the aliases {sorted(D_MODE_ALIASES)})")
    return d_mode


def image_size_problem(size: int) -> str | None:
    """Why the translation networks cannot take `size`^2 slices (None when they can): the
    generators downsample twice and the PatchGAN discriminators by 8. The converter warns with it,
    the model config refuses with it."""
    if size < 32 or size % 4:
        return (f"image_size must be a multiple of 4 (the generators downsample twice) and at least 32 (the "
                f"PatchGAN downsamples by 8), got {size}")
    return None


# The evaluation's classic augmentation (`run_evaluate.py --classic_impl`, ssagan_tf.judge.datasets).
CLASSIC_IMPLEMENTATIONS = ("warp", "keras")
