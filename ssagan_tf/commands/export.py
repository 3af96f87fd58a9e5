"""The command line of `ssagan_tf.export` (`python -m ssagan_tf.export`, `ssagan export`): a training
run's latest checkpoint -> a TF Serving model directory (the export itself: ssagan_tf/export.py).

    python -m ssagan_tf.export --model_dir=RUN_DIR --export_dir=DIR [--model_name=ssagan] [--tau=T]

Writes <export_dir>/<model_name>/<next integer version>/ (saved_model.pb, variables/, export.json),
verified against the Keras models before it is published; prints the version directory. Flags are
checked, and --help answered, before TensorFlow loads. Errors end in one line and exit 1 (--debug:
the traceback). docs/export_and_serving.md has the signatures and a client.
"""

from __future__ import annotations

import sys

from ssagan_tf import cli, settings
from ssagan_tf import precision as precisions
from ssagan_tf.export_layout import ExportConfig

CONFIG_FLAGS = settings.flag_names(ExportConfig)


def define_flags(flag_values=None):
    """Define the command-line flags on `flag_values` (default: absl's global FLAGS): every
    ExportConfig field with help text, and the one --precision (fp32 by default here); called only
    when the command line runs, so importing the library defines no flags."""
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    settings.define_flags(ExportConfig, CONFIG_FLAGS, flag_values=flag_values)
    precisions.define_flag(
        "of the exported signatures (inputs, outputs and weights stay float32)", "The default, fp32, serves the "
        "same on every machine; bf16 or fp16 are faster where the hardware has them, within their tolerance.",
        default="fp32", flag_values=flag_values)
    flags.mark_flags_as_required(["model_dir", "export_dir"], flag_values=flag_values)
    return flag_values


def config_from_flags(flag_values) -> ExportConfig:
    """The flags' ExportConfig, its run folder checked; ConfigError/ValueError naming every bad flag."""
    config = ExportConfig(precision=flag_values.precision,
                          **settings.read_fields(ExportConfig, CONFIG_FLAGS, flag_values))
    config.check_inputs()
    return config


def _main(argv, flag_values):
    from absl import app, logging

    from ssagan_tf.precision import choose_precision

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags(flag_values)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    choice = choose_precision(config.precision)
    print(choice.describe(), flush=True)
    from ssagan_tf.export import export_models, read_export_info

    version_dir = export_models(config.model_dir, config.export_dir, config.model_name, tau=config.tau,
                                tolerance=config.tolerance, precision=choice.precision,
                                checkpoint=config.checkpoint, log=print)
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
