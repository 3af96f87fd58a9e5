"""Settings declared once: a config dataclass's field carries its help text, and the command line
flags are generated from the fields.

    @dataclass(frozen=True)
    class RunConfig:
        epochs: int = setting(100, "Epochs (passes over the longer training domain).")

    names = settings.define_flags(RunConfig)    # --epochs, default 100, that help text; and the others
    values = settings.read_fields(RunConfig, names)   # {"epochs": FLAGS.epochs, ...}

A flag's kind follows the field's default: bool -> --[no]name, int, float, a string (an enum when
the field names `choices`), a tuple -> a comma-separated list. A flag may keep old spellings
(`aliases=`): an old spelling still works and, when read, prints one deprecation line. Plain
Python and absl only, so a command's `--help` and a bad flag cost no TensorFlow import; absl's
flags are imported only when flags are defined or read (importing `absl.flags` hooks the import
system, and importing the library changes nothing outside it).

Every config checks its values the same way: at construction, with a `Problems` collector, so that
one `ConfigError` names every value that cannot work; what lies outside the values (folders,
files, the data) is checked by the config's `check_inputs()`, before any work.
"""

from __future__ import annotations

import dataclasses
import sys


class ConfigError(ValueError):
    """Settings that cannot work: every problem found, in one message."""


class Problems:
    """Collects what is wrong with a config's values; `raise_any` raises one ConfigError naming
    them all.

        problems = Problems()
        problems.need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        problems.raise_any()
    """

    def __init__(self, heading: str = "", separator: str = "; "):
        self.messages, self.heading, self.separator = [], heading, separator

    def need(self, ok, message: str) -> None:
        if not ok:
            self.messages.append(message)

    def add(self, message: str) -> None:
        self.messages.append(message)

    def __bool__(self) -> bool:
        return bool(self.messages)

    def raise_any(self, error=ConfigError) -> None:
        if self.messages:
            raise error(self.heading + self.separator.join(self.messages))


HELP = "help"
CHOICES = "choices"
ALIASES = "aliases"
FLAG = "flag"
PARSE = "parse"
FLAG_DEFAULT = "flag_default"
KIND = "kind"


def setting(default=dataclasses.MISSING, help="", *, choices=None, flag=None, aliases=(), parse=None,
            flag_default=dataclasses.MISSING, kind=None, default_factory=None):
    """A dataclass field with its command-line help (and enum `choices`; `flag`, the flag's name
    when it is not the field's, as for a name every command shares; old flag spellings `aliases`).
    `help` may be a function returning the text, for a text built from names defined later. A
    field whose value the command line spells otherwise (numbers in a comma list, NAME=PATH pairs)
    gives the flag's default as spelled (`flag_default`, which also chooses the flag's kind) and
    `parse`, which turns the flag's value into the field's (raising ValueError for a bad one).
    `kind` (int, float or tuple: a comma-separated list) is the flag's kind where the default (None:
    unset) does not say it."""
    metadata = {HELP: help, CHOICES: tuple(choices) if choices is not None else None, ALIASES: tuple(aliases),
                FLAG: flag, PARSE: parse, FLAG_DEFAULT: flag_default, KIND: kind}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_of(cls, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


def default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _flags():
    from absl import flags

    return flags


def define(name: str, default, help: str, choices=None, aliases=(), flag_values=None,
           module_name: str | None = None, kind=None) -> None:
    """One absl flag on `flag_values` (default: absl's FLAGS), its kind chosen by `default`'s type
    (see the module docstring) or by `kind`, listed by `--help` among the flags of `module_name`
    (default: the module calling this)."""
    flags = _flags()
    flag_values = flags.FLAGS if flag_values is None else flag_values
    if not help:
        raise ValueError(f"--{name}: a setting without help text")
    where = {"flag_values": flag_values, "module_name": module_name or _caller()}
    if choices is not None:
        flags.DEFINE_enum(name, default, list(choices), help, **where)
    elif isinstance(default, bool):
        flags.DEFINE_boolean(name, default, help, **where)
    elif kind is int or isinstance(default, int):
        flags.DEFINE_integer(name, default, help, **where)
    elif kind is float or isinstance(default, float):
        flags.DEFINE_float(name, default, help, **where)
    elif kind is tuple or isinstance(default, (tuple, list)):
        flags.DEFINE_list(name, None if default is None else list(default), help, **where)
    elif default is None or isinstance(default, str):
        flags.DEFINE_string(name, default, help, **where)
    else:
        raise TypeError(f"--{name}: no flag kind for a default of type {type(default).__name__}")
    for alias in aliases:
        flags.DEFINE_alias(alias, name, **where)
    if aliases:
        _OLD_SPELLINGS[name] = tuple(aliases)


def flag_names(cls) -> tuple:
    """The fields of `cls` that are settings (declared with `setting`, help text and all), in order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(HELP))


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get(FLAG) or f.name


def define_flags(cls, names=None, flag_values=None, module_name: str | None = None) -> tuple:
    """The flags of `cls`'s fields `names` (default: every `flag_names(cls)`), each with its
    field's default, help and choices, listed among `module_name`'s flags (default: the calling
    module's); returns the field names (`read_fields` reads them back)."""
    names = flag_names(cls) if names is None else tuple(names)
    module_name = module_name or _caller()
    for name in names:
        f = field_of(cls, name)
        help = f.metadata.get(HELP, "")
        default = f.metadata.get(FLAG_DEFAULT, dataclasses.MISSING)
        default = default_of(f) if default is dataclasses.MISSING else default
        define(flag_name(f), default, help() if callable(help) else help, f.metadata.get(CHOICES),
               f.metadata.get(ALIASES, ()), flag_values, module_name, f.metadata.get(KIND))
    return names


def _caller() -> str:
    """The name of the first module on the stack outside this one (and `ssagan_tf.precision`,
    whose `define_flag` defines for its caller)."""
    frame = sys._getframe(1)
    while frame.f_globals.get("__name__") in (__name__, "ssagan_tf.precision"):
        frame = frame.f_back
    return frame.f_globals.get("__name__", "__main__")


def read_flags(names, flag_values=None) -> dict:
    """name -> parsed value of each flag in `names` (lists as tuples, as the configs hold them);
    an old spelling used prints its deprecation line."""
    flag_values = _flags().FLAGS if flag_values is None else flag_values
    warn_old_spellings(names, flag_values)
    values = {}
    for name in names:
        value = flag_values[name].value
        values[name] = tuple(value) if isinstance(value, list) else value
    return values


def read_fields(cls, names, flag_values=None) -> dict:
    """field name -> value of the flag of each of `cls`'s fields `names` (`define_flags`), turned
    into the field's value by its `parse`. A value `parse` refuses raises ConfigError naming the
    flag; every such problem is named at once."""
    by_flag = {flag_name(field_of(cls, name)): name for name in names}
    values, problems = {}, Problems()
    for flag, value in read_flags(tuple(by_flag), flag_values).items():
        parse = field_of(cls, by_flag[flag]).metadata.get(PARSE)
        try:
            values[by_flag[flag]] = parse(value) if parse is not None else value
        except ValueError as err:
            problems.add(f"--{flag}={_spelled(value)}: {err}")
    problems.raise_any()
    return values


def _spelled(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def deprecation_line(alias: str, name: str) -> str:
    return f"WARNING: --{alias} is an old spelling of --{name}; it still works, and may go in a later release"


def warn_old_spellings(names, flag_values=None, out=None) -> list:
    """Print one deprecation line for each old spelling of `names` the command line used; returns
    the lines."""
    flag_values = _flags().FLAGS if flag_values is None else flag_values
    lines = [deprecation_line(alias, name) for name in names
             for alias in _OLD_SPELLINGS.get(name, ()) if alias in flag_values and flag_values[alias].present]
    for line in lines:
        print(line, file=out or sys.stderr, flush=True)
    return lines


_OLD_SPELLINGS: dict = {}      # flag name -> its old spellings (absl aliases), as defined here
