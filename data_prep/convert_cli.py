"""Command-line flags of `python -m data_prep.convert`, turned into a `ConvertConfig` once. Every
flag is a setting of `ConvertConfig`, `ReaderOptions` or `PrepOptions`: its help, default, choices
and parsing are declared in the field (`ssagan_tf.settings`) and the flags generated from them."""

from __future__ import annotations

import sys

from absl import app

from data_prep import convert as converter
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions
from data_prep.scan import LayoutError
from ssagan_tf import cli, settings

# class -> the names of its fields that are flags (the flags they define, in --help under this module)
SETTINGS = {cls: settings.define_flags(cls) for cls in (converter.ConvertConfig, ReaderOptions, PrepOptions)}


def default_modalities(fmt: str | None, channel_names: tuple) -> tuple:
    """--modalities when not given: the format's default."""
    if fmt == "brats":
        return ("t1ce",)
    if fmt == "folders" and channel_names and channel_names != ("rgb",):
        return tuple(channel_names)
    return ("image",)


def _read_flags() -> dict:
    """class -> its fields' values from the flags; one ConfigError naming every flag that does not parse."""
    values, problems = {}, settings.Problems()
    for cls, names in SETTINGS.items():
        try:
            values[cls] = settings.read_fields(cls, names)
        except settings.ConfigError as err:
            problems.add(str(err))
    problems.raise_any()
    return values


def config_from_flags() -> converter.ConvertConfig:
    """The flags' ConvertConfig, its folders checked; ValueError (ConfigError) naming the bad flags."""
    values = _read_flags()
    options, reader = values[converter.ConvertConfig], values[ReaderOptions]
    reader["modalities"] = reader["modalities"] or default_modalities(options["format"], reader["channel_names"])
    config = converter.ConvertConfig(reader=ReaderOptions(**reader), prep=PrepOptions(**values[PrepOptions]),
                                     **options)
    config.check_inputs()
    return config


def _run(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    try:
        manifest = converter.convert(config, log=lambda line: print(line, flush=True))
    except LayoutError as err:     # the flags do not fit the layout on disk: a bad flag value, exit 2
        raise app.UsageError(str(err)) from None
    counts = manifest["counts"]
    print(f"wrote {config.output_dir}: " + ", ".join(
        f"{s} {c['normal']} normal / {c['tumor']} tumor" for s, c in counts.items()))
    if manifest["rejected"]:
        print(f"{len(manifest['rejected'])} case(s) rejected; see {config.output_dir}/{converter.REPORT_NAME}",
              file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """The command line (`ssagan_tf.cli`: one-line errors, `--help` listing this module's flags);
    returns the exit code."""
    try:
        cli.run(_run, converter.__doc__, argv, help_module=sys.modules[__name__])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0
