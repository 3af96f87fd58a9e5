"""The model configuration: everything needed to rebuild the six networks, stored in a run's
`config.json`. Plain Python (no TensorFlow), so that it is checked before TensorFlow loads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ssagan_tf import precision as precisions
from ssagan_tf.choices import SYSTEMS, UPSAMPLING, image_size_problem
from ssagan_tf.settings import Problems, setting


# The smallest local crop: the 70x70 PatchGAN leaves it one logit (24 -> 12 -> 6 -> 3 -> 2 -> 1).
MIN_LOCAL_CROP = 24


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the six networks; its values are checked at construction,
    every problem named in one ConfigError (a ValueError)."""

    image_size: int = 256
    channels: int = 1
    ngf: int = setting(64, "Filters of the generators' first layer (and of the attention networks', unless "
                           "--attention_ngf is set).")
    ndf: int = setting(64, "Filters of the discriminators' first layer.")
    attention_ngf: int = setting(0, "Filters of the attention networks' first layer; 0 = --ngf (the reference "
                                    "shape). 32 (the width of Mejjati et al.'s attention network) cuts the "
                                    "attention cost ~3x. Systems with attention only.")
    n_res_blocks: int = setting(9, "Residual blocks in each generator (9 in CycleGAN at 256^2).")
    upsample: str = setting("transpose", "Generator decoder: stride-2 transposed convolutions (transpose, "
                                         "CycleGAN's) or nearest x2 + 3x3 convolution (resize), which does not "
                                         "paint a checkerboard into filled regions.", choices=UPSAMPLING)
    d_local: int = setting(0, "Not in the paper. > 0: two local discriminators, one per domain, each seeing "
                              "d_local x d_local crops centred where the attention points (the translated lesion "
                              "and the real one, the removed lesion and the healthy tissue where a lesion is "
                              "drawn), beside the whole-slice D_t and D_n; their adversarial terms join the "
                              "generators' objective with the global ones' weight. At least 24 and at most the "
                              "slice's side; systems with attention only. 0 = off.")
    use_attention: bool = True
    spectral_norm: bool = True
    mask_loss: bool = True
    system: str = "ssa_cyclegan"
    precision: str = "fp32"            # compute precision, resolved: fp32, bf16 or fp16 (never auto)

    def __post_init__(self):
        problems = Problems()
        problems.need(not image_size_problem(self.image_size), image_size_problem(self.image_size))
        for field in ("channels", "ngf", "ndf"):
            problems.need(getattr(self, field) >= 1, f"{field} must be >= 1, got {getattr(self, field)}")
        problems.need(self.attention_ngf >= 0, f"attention_ngf must be >= 0 (0 = ngf), got {self.attention_ngf}")
        problems.need(self.upsample in UPSAMPLING, f"upsample must be one of {UPSAMPLING}, got {self.upsample!r}")
        problems.need(self.n_res_blocks >= 0, f"n_res_blocks must be >= 0, got {self.n_res_blocks}")
        problems.need(self.d_local == 0 or MIN_LOCAL_CROP <= self.d_local <= self.image_size,
                      f"d_local must be 0 (off) or between {MIN_LOCAL_CROP} and the image size {self.image_size}, "
                      f"got {self.d_local}")
        problems.need(not (self.mask_loss and not self.use_attention),
                      "mask_loss needs use_attention: the mask supervises the tumor attention")
        problems.need(self.system in SYSTEMS, f"unknown system {self.system!r}; choose one of {sorted(SYSTEMS)}")
        problems.need(self.precision in precisions.PRECISIONS[1:],
                      f"precision must be one of {', '.join(precisions.PRECISIONS[1:])}, got {self.precision!r}")
        problems.raise_any()

    @classmethod
    def for_system(cls, system: str, **kwargs) -> "ModelConfig":
        """The configuration of one of the paper's five systems (`SYSTEMS`), with sizes from kwargs."""
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; choose one of {sorted(SYSTEMS)}")
        return cls(system=system, **{**kwargs, **SYSTEMS[system]})

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Read a stored config; runs saved before `precision` existed stored `mixed_precision`
        (True meant mixed_float16, i.e. fp16)."""
        values = dict(values)
        if "precision" not in values and "mixed_precision" in values:
            values["precision"] = "fp16" if values["mixed_precision"] else "fp32"
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def local_discriminators(self) -> bool:
        """Whether the local discriminators exist: `d_local` > 0 in a system with attention (their
        crops are centred by the attention maps; systems without attention ignore `d_local`)."""
        return self.d_local > 0 and self.use_attention

    @property
    def attention_filters(self) -> int:
        """Width of the attention networks: attention_ngf, or ngf when that is 0 (docs/method.md, "Networks")."""
        return self.attention_ngf or self.ngf

    @property
    def dtype_policy(self) -> str:
        """The Keras dtype policy every layer is built with (`ssagan_tf.precision`)."""
        return precisions.dtype_policy(self.precision)
