"""The command line of `ssagan_tf.export` (`python -m ssagan_tf.export`, `ssagan export`): a training
run's latest checkpoint -> a TF Serving model directory (the export itself: ssagan_tf/export.py).

    python -m ssagan_tf.export --model_dir=RUN_DIR --export_dir=DIR [--model_name=ssagan] [--tau=T]

Writes <export_dir>/<model_name>/<next integer version>/ (saved_model.pb, variables/, export.json),
verified against the Keras models before it is published; prints the version directory. Flags are
checked, and --help answered, before TensorFlow loads. Errors end in one line and exit 1 (--debug:
the traceback). docs/export_and_serving.md has the signatures and a client.
"""

from __future__ import annotations

import os
import sys

from ssagan_tf import cli, run_dir
from ssagan_tf import precision as precisions
from ssagan_tf.export_layout import DEFAULT_MODEL_NAME, MODEL_NAME_PATTERN, TOLERANCES


def define_flags(flag_values=None):
    """Define the command-line flags on `flag_values` (default: absl's global FLAGS); called only
    when the command line runs, so importing the library defines no flags."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    define = dict(flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "Training run directory (holds config.json and checkpoints/); its "
                        "latest checkpoint is exported.", **define)
    flags.DEFINE_string("export_dir", None, "Base directory for TF Serving models; the export is written to "
                        "<export_dir>/<model_name>/<next integer version>/.", **define)
    flags.DEFINE_string("model_name", DEFAULT_MODEL_NAME, "Model name: the directory under --export_dir, and "
                        "the MODEL_NAME TF Serving serves it as.", **define)
    flags.DEFINE_float("tau", None, "Inference attention threshold baked into the signatures (attention below "
                       "tau is zeroed); default: the run's tau from config.json.", **define)
    flags.DEFINE_float("tolerance", None, "Largest allowed max-abs difference between the reloaded SavedModel and "
                       "the Keras models; the export fails above it. Default: by precision, "
                       + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items()) + ".", **define)
    precisions.define_flag(
        "of the exported signatures (inputs, outputs and weights stay float32)", "The default, fp32, serves the "
        "same on every machine; bf16 or fp16 are faster where the hardware has them, within their tolerance.",
        default="fp32", flag_values=flag_values)
    flags.DEFINE_enum("checkpoint", "auto", list(run_dir.CHECKPOINT_CHOICES),
                      "Which checkpoint to export: latest (the newest intact one), best (the one --select_best kept "
                      "in <model_dir>/selection/), or auto (best when the run kept one, else latest).", **define)
    flags.mark_flags_as_required(["model_dir", "export_dir"], **define)
    flags.register_validator("model_name", lambda v: bool(MODEL_NAME_PATTERN.match(v or "")),
                             "--model_name: use letters, digits, '.', '_' or '-', starting with a letter or "
                             "digit", **define)
    flags.register_validator("tau", lambda v: v is None or 0.0 <= v < 1.0, "--tau must be in [0, 1)", **define)
    flags.register_validator("tolerance", lambda v: v is None or v > 0, "--tolerance must be > 0", **define)
    flags.register_validator("model_dir", lambda v: v is None or os.path.isfile(run_dir.config_path(v)),
                             "--model_dir must be a training run directory holding config.json", **define)
    return flag_values


def _main(argv, flag_values):
    from absl import app, logging

    from ssagan_tf.precision import choose_precision

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    choice = choose_precision(flag_values.precision)
    print(choice.describe(), flush=True)
    from ssagan_tf.export import export_models, read_export_info

    version_dir = export_models(flag_values.model_dir, flag_values.export_dir, flag_values.model_name,
                                tau=flag_values.tau, tolerance=flag_values.tolerance, precision=choice.precision,
                                checkpoint=flag_values.checkpoint, log=print)
    info = read_export_info(version_dir)
    diffs = info["verification"]["max_abs_diff"]
    shown = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) if isinstance(diffs, dict) else f"{diffs:.1e}"
    logging.info("exported %s (tau %g, step %s, %s checkpoint, %s weights, %s); max abs difference from Keras: %s",
                 version_dir, info["tau"], info.get("step"), info["checkpoint"], info["weights"], info["precision"],
                 shown)
    print(version_dir)


def run(argv=None) -> None:
    """The command line: `ssagan_tf.cli`'s endings; exits."""
    flag_values = define_flags()
    cli.run(lambda args: _main(args, flag_values), __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
