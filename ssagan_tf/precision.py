"""Compute precision: `--precision=auto|fp32|bf16|fp16` and what `auto` picks on this machine.

    fp32   float32 everywhere (reproduces earlier results exactly)
    bf16   Keras `mixed_bfloat16`: convolutions in bfloat16, variables float32; no loss scaling
           (bfloat16 has float32's exponent range)
    fp16   Keras `mixed_float16`: convolutions in float16, variables float32; each optimizer scales
           its loss (float16 gradients underflow otherwise)

Under bf16 and fp16 the models keep in float32 what needs the range or the accuracy: instance and
batch normalisation statistics, the output activations (tanh, sigmoid, logits), the losses, the
attention composition (paper Eq. 1), spectral normalisation's power iteration and the optimizer
state (`ssagan_tf/models/layers.py`).

`auto` picks bf16 where the hardware computes bfloat16 fast (a CPU with `amx_bf16` or `avx512_bf16`,
a GPU of compute capability >= 8.0), fp16 on GPUs of capability 7.x, and fp32 otherwise. This
module imports no TensorFlow: the hardware is read from /proc/cpuinfo and, for GPUs, from
`tf.config` by the caller (`detect_gpus`).
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPE_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# CPU feature flags (as /proc/cpuinfo names them) of native bfloat16 matrix arithmetic.
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run computes in, and why (shown on the first console line, stored in
    config.json and export.json)."""

    precision: str
    requested: str
    reason: str

    @property
    def why(self) -> str:
        """How the precision was set and why: `auto: <reason>` or `--precision: as requested`."""
        return f"{'auto' if self.requested == 'auto' else '--precision'}: {self.reason}"

    def describe(self) -> str:
        return f"Precision {self.precision} ({self.why})"


def check_precision(name: str, allow_auto: bool = True) -> str:
    allowed = PRECISIONS if allow_auto else PRECISIONS[1:]
    if name not in allowed:
        raise ValueError(f"precision must be one of {', '.join(allowed)}, got {name!r}")
    return name


def dtype_policy(precision: str) -> str:
    """The Keras dtype policy of a resolved precision (fp32, bf16 or fp16)."""
    return DTYPE_POLICIES[check_precision(precision, allow_auto=False)]


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags of the first processor listed in `path` (empty where unreadable)."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def detect_gpus() -> list:
    """Compute capabilities [(major, minor), ...] of the visible GPUs (imports TensorFlow)."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        found.append(tuple(capability) if capability else (0, 0))
    return found


def choose_precision(requested: str = "auto", gpus: list | None = None,
                     flags: frozenset | None = None) -> PrecisionChoice:
    """Resolve `requested` for this machine. `gpus` (compute capabilities) and `flags` (CPU
    feature flags) default to the real hardware; tests pass fakes."""
    check_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, requested, "as requested")
    gpus = detect_gpus() if gpus is None else list(gpus)
    if gpus:
        lowest = min(gpus)
        name = f"GPU compute capability {lowest[0]}.{lowest[1]}"
        if lowest >= (8, 0):
            return PrecisionChoice("bf16", requested, f"{name} has fast bfloat16")
        if lowest >= (7, 0):
            return PrecisionChoice("fp16", requested, f"{name} has float16 tensor cores but no bfloat16")
        return PrecisionChoice("fp32", requested, f"{name} has neither fast float16 nor bfloat16")
    flags = cpu_flags() if flags is None else frozenset(flags)
    fast = [f for f in FAST_BF16_CPU_FLAGS if f in flags]
    if fast:
        return PrecisionChoice("bf16", requested, f"no GPU; the CPU has {' and '.join(fast)}")
    return PrecisionChoice("fp32", requested, "no GPU, and the CPU has no amx_bf16 or avx512_bf16")


CHOICES_HELP = ("fp32: float32 everywhere (reproduces earlier results exactly); bf16: mixed bfloat16 (CPUs with "
                "AMX/AVX-512 BF16, GPUs of compute capability >= 8.0); fp16: mixed float16 with loss scaling "
                "(GPUs of capability 7.x); auto: bf16 where the hardware computes bfloat16 fast, fp16 on GPUs of "
                "capability 7.x, else fp32 (the choice and its reason are printed first).")


def define_flag(what: str, note: str = "", default: str = "auto", flag_values=None) -> None:
    """Every command's one `--precision` flag: the choices and what they mean, said once here;
    `what` says what computes in it, `note` adds what holds for this command alone. Listed by
    `--help` among the calling module's flags."""
    from absl import flags

    from ssagan_tf.settings import define

    define("precision", default, f"Compute precision {what}. {CHOICES_HELP}" + (f" {note}" if note else ""),
           choices=PRECISIONS, flag_values=flag_values or flags.FLAGS)
