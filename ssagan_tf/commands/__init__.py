"""`ssagan VERB [flags]`: one command for the seven steps of the workflow, each the same command line
as its own entry point (same flags, `--help`, errors and exit codes):

    ssagan convert   ==  python -m data_prep.convert
    ssagan judge     ==  python -m ssagan_tf.judge       (ssagan_tf/commands/judge.py)
    ssagan train     ==  python run_train.py            (ssagan_tf/commands/train.py)
    ssagan export    ==  python -m ssagan_tf.export      (ssagan_tf/commands/export.py)
    ssagan augment   ==  python run_augment.py          (ssagan_tf/commands/augment.py)
    ssagan evaluate  ==  python run_evaluate.py         (ssagan_tf/commands/evaluate.py)
    ssagan demo      ==  python -m scripts.demo         (in a source checkout)

`pip install .` puts `ssagan` on the PATH; `python -m ssagan_tf VERB` is the same without it.
Only the chosen verb's module is imported, so `--help` and bad flags stay fast.
"""

from __future__ import annotations

import importlib
import os
import sys

# verb -> (module, its command-line function, what it does)
VERBS = {
    "convert": ("data_prep.convert_cli", "main", "MRI volumes or slices -> TFRecord shards, manifest.json, "
                "conversion_report.md and conversion_sheet.png"),
    "judge": ("ssagan_tf.commands.judge", "run", "train the judge, a ResNet18 tumor/normal classifier that "
              "scores translations"),
    "train": ("ssagan_tf.commands.train", "run", "train SSA-CycleGAN (or one of the four other systems)"),
    "export": ("ssagan_tf.commands.export", "run", "a training run -> a TF Serving model directory"),
    "augment": ("ssagan_tf.commands.augment", "run", "an exported model + real slices -> a synthetic dataset"),
    "evaluate": ("ssagan_tf.commands.evaluate", "run", "ResNet18 classifiers with and without the synthetic "
                 "slices -> report.md"),
    "demo": ("scripts.demo", None, "the whole workflow on a synthetic phantom cohort, in a source checkout "
             "(what `make demo` runs)"),
}
USAGE_EXIT = 2


def usage(program: str) -> str:
    width = max(map(len, VERBS))
    lines = [f"usage: {program} VERB [flags]    ({program} VERB --help lists the verb's flags)", "",
             "SSA-CycleGAN for brain-MRI data augmentation; the verbs, in workflow order:", ""]
    lines += [f"  {verb:<{width}}  {about}" for verb, (_, _, about) in VERBS.items()]
    lines += ["", "Flags may also come from a file: --flagfile=FILE (e.g. ssagan train --flagfile=brain.flags)."]
    return "\n".join(lines)


def _run_demo(argv) -> None:
    """The demo drives the checkout's own entry points and recipe (run_train.py, demo.flags), so it
    runs from the root of a source checkout, whatever is installed."""
    root = os.getcwd()
    needed = [name for name in ("scripts/demo.py", "demo.flags", "run_train.py")
              if not os.path.isfile(os.path.join(root, name))]
    if needed:
        print(f"{argv[0]}: error: run it in the root of a source checkout of ssagan_tf ({', '.join(needed)} "
              f"not found in {root})", file=sys.stderr, flush=True)
        sys.exit(1)
    if root not in sys.path:
        sys.path.insert(0, root)
    from ssagan_tf import cli

    demo = importlib.import_module("scripts.demo")
    cli.run(demo.main, demo.__doc__, argv, help_module=demo)


def main(argv=None, program: str | None = None) -> int:
    """`ssagan VERB ...`: runs the verb's command line with argv[0] = "ssagan VERB" (so its messages
    name the command the user typed); exits with its code."""
    argv = list(sys.argv if argv is None else argv)
    program = program or os.path.basename(argv[0] if argv else "ssagan")
    args = argv[1:]
    if not args or args[0] in ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?", "help"):
        print(usage(program))
        return 0 if args else USAGE_EXIT
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        print(f"{program}: unknown verb {verb!r}; one of {', '.join(VERBS)} (try --help)", file=sys.stderr,
              flush=True)
        return USAGE_EXIT
    verb_argv = [f"{program} {verb}", *rest]
    module_name, function, _ = VERBS[verb]
    if function is None:
        _run_demo(verb_argv)
        return 0
    code = getattr(importlib.import_module(module_name), function)(verb_argv)
    return int(code or 0)
