r"""Exported generators -> an augmented dataset (docs/method.md, "Augmentation and evaluation").

    python run_augment.py --model=exports/ssagan --data_dir=data/brats --output_dir=runs/aug \
        --ratio=1.0 --format=tfrecord

See docs/export_and_serving.md for the inputs, outputs and resuming, docs/reliability.md for what
happens under faults. Errors end in one line and exit 1 (--debug: the traceback).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from ssagan_tf import cli
# Only plain-Python modules here: --help and a bad flag are answered before TensorFlow loads.
from ssagan_tf.augment.config import FIELD_OF_VIEW_CHOICES, FORMATS, AugmentConfig, parse_directions, parse_ratio

flags.DEFINE_string("model", None, "An exported model: its base dir <export_dir>/<model_name> (newest version "
                    "used), one version dir, or a training run dir (exported to a temporary dir first).")
flags.DEFINE_string("data_dir", None, "Real slices: a converted dataset (manifest.json + TFRecords), or class "
                    "folders normal/ and tumor/ of PNG slices or NIfTI volumes.")
flags.DEFINE_string("output_dir", None, "Where the synthetic dataset goes; nothing is written outside it. "
                    "Must be new, empty, or an earlier augmentation's holding only what it wrote (a folder holding "
                    "other files, inside --data_dir or holding it, is refused); one run at a time. Re-running with "
                    "the same settings on the same input data completes an interrupted (or killed) run.")
flags.DEFINE_string("ratio", "1.0", "Synthetic:real slices per class (the paper's 1:1 is 1.0; above the "
                    "number of source slices, sources repeat), or 'all' to translate every input slice once.")
flags.DEFINE_enum("format", "tfrecord", list(FORMATS), "Output: TFRecords in the real data's schema, 16-bit PNG "
                  "folders with masks, or NIfTI stacks (one per source case and direction).")
flags.DEFINE_string("split", "train", "Split of a converted dataset to read; also the output's split folder.")
flags.DEFINE_integer("batch_size", 16, "Slices per forward pass.", lower_bound=1)
flags.DEFINE_string("directions", "both", "both, normal_to_tumor (synthetic tumors) or tumor_to_normal "
                    "(synthetic normals).")
flags.DEFINE_integer("seed", 0, "Seed of the source sampling (same seed, same synthetic set).")
flags.DEFINE_float("mask_threshold", None, "Attention at or above this is a synthetic tumor's pseudo-mask; "
                   "default: the model's tau (0.5 if it was exported with tau 0).")
flags.DEFINE_integer("chunk_size", 256, "Slices per committed chunk (one TFRecord shard); an interrupted run "
                     "redoes at most the chunks in flight. NIfTI output commits one case at a time.",
                     lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Remove an earlier augmentation's outputs in --output_dir first (exactly the "
                  "files its record in .augment/ lists); without it a re-run must use the same settings and input "
                  "data (and completes the earlier run).")
flags.DEFINE_integer("contact_rows", 4, "Rows per direction in contact_sheet.png (0: no sheet).", lower_bound=0)
flags.DEFINE_enum("precision", "auto", ["auto", "fp32", "bf16", "fp16"],
                  "Compute precision when --model is a training run (exported in it; auto picks by hardware: bf16 "
                  "on CPUs with AMX/AVX-512 BF16 and GPUs of capability >= 8.0, fp16 on 7.x, else fp32). An export "
                  "computes in the precision it was exported in (python -m ssagan_tf.export --precision); asking "
                  "for another one is refused.")
flags.DEFINE_string("judge", "", "A judge trained on this dataset (python -m ssagan_tf.judge): it scores up "
                    "to 256 of the planned synthetic slices per direction (tumor rate, normal rate, KID against the "
                    "input's real slices of the target class) into augment.json. Empty = no judge.")
flags.DEFINE_bool("lesion_masks", False, "Synthetic tumors are drawn inside real lesion masks transplanted from the "
                  "split's labelled tumor slices (inside the head, rotated and scaled within limits; "
                  "ssagan_tf/lesions.py) instead of where A_n points, and each written mask is exactly the mask the "
                  "model was asked to fill. Converted TFRecord input only.")
flags.DEFINE_enum("field_of_view", "auto", list(FIELD_OF_VIEW_CHOICES), "How PNG/NIfTI inputs are brought to the "
                  "model's frame, as data_prep.convert --field_of_view does: fit (the head's bounding box scaled to a "
                  "fixed fraction of the frame, by pixel spacing) or pad (padded to a square, shrunk when larger). "
                  "auto: as the model's training data was framed (export.json's training_framing, from the training "
                  "run's dataset manifest); pad, with a line saying so, for an export that does not record it. A "
                  "converted dataset's slices are framed already: a value other than its manifest's is refused.")
flags.mark_flags_as_required(["model", "data_dir", "output_dir"])
flags.register_validator("ratio", lambda v: _valid(parse_ratio, v), "--ratio must be a positive number or 'all'")
flags.register_validator("directions", lambda v: _valid(parse_directions, v),
                         "--directions must be both, normal_to_tumor or tumor_to_normal")
flags.register_validator("mask_threshold", lambda v: v is None or 0.0 < v <= 1.0, "--mask_threshold must be in (0, 1]")

FLAGS = flags.FLAGS


def _valid(parse, value) -> bool:
    try:
        parse(value)
        return True
    except ValueError:
        return False


def config_from_flags() -> AugmentConfig:
    return AugmentConfig(model=FLAGS.model, data_dir=FLAGS.data_dir, output_dir=FLAGS.output_dir,
                         ratio=parse_ratio(FLAGS.ratio), format=FLAGS.format, split=FLAGS.split,
                         batch_size=FLAGS.batch_size, directions=parse_directions(FLAGS.directions), seed=FLAGS.seed,
                         mask_threshold=FLAGS.mask_threshold, chunk_size=FLAGS.chunk_size,
                         contact_rows=FLAGS.contact_rows, overwrite=FLAGS.overwrite, precision=FLAGS.precision,
                         judge=FLAGS.judge, lesion_masks=FLAGS.lesion_masks, field_of_view=FLAGS.field_of_view)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags()
        config.check_inputs()
    except ValueError as err:
        raise app.UsageError(str(err)) from None

    from ssagan_tf.augment.run import augment_dataset

    result = augment_dataset(config)
    sheet = f"contact sheet {result.contact_sheet}" if result.contact_sheet else "no contact sheet"
    logging.info("augment: %d synthetic slices (%d normal, %d tumor) in %s; %.1f slices/s this run; manifest %s; %s",
                 sum(result.counts.values()), result.counts.get("normal", 0), result.counts.get("tumor", 0),
                 result.output_dir, result.slices_per_second, result.manifest_csv, sheet)


def run(argv=None) -> None:
    """The command line (run_augment.py, `ssagan augment`): `ssagan_tf.cli`'s endings; exits."""
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
