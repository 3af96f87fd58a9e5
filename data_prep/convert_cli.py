"""Command-line flags of `python -m data_prep.convert`, turned into a `ConvertConfig` once."""

from __future__ import annotations

import sys

from absl import app, flags

from data_prep import preprocess
from ssagan_tf import cli
from data_prep.readers import FORMATS, ReaderOptions

FLAGS = flags.FLAGS

flags.DEFINE_string("input", None, "Folder holding the dataset to convert.")
flags.DEFINE_enum("format", None, list(FORMATS),
                  "Input layout: brats (BraTS 2013-2023 and MSD Task01 case folders), pairs (image + mask "
                  "volumes matched by name: NIfTI, NRRD, MHA or DICOM series folders), folders (2-D class "
                  "folders or name.tif + name_mask.tif pairs), figshare (brain-tumor .mat files).")
flags.DEFINE_string("output_dir", None, "Where shards, manifest.json and conversion_report.md are written: a new "
                    "or empty folder, or one the converter wrote before; never --input, a folder inside it or "
                    "holding it.")
flags.DEFINE_list("modalities", None, "Channels to write, in order. brats: from flair, t1, t1ce, t2 (default "
                  "t1ce; flair,t1,t1ce,t2 for four channels). pairs: the --image_glob file's modality first, "
                  "then any read by --modality_replace (default: one unnamed channel, 'image'). folders: "
                  "names from --channel_names (default: all of them, in stored order).")
flags.DEFINE_list("channel_names", [], "folders (figshare: one name): names of the channels stored in each image, "
                  "in file order, "
                  "e.g. t1,flair,t1ce for the LGG TIFFs (pre-contrast T1, FLAIR, post-contrast T1); "
                  "--modalities picks and orders them. Images with several different channels are refused "
                  "without it. 'rgb': mix colour pixels into one BT.709 luminance channel, only for colour "
                  "photographs of films or screenshots (luminance of MR sequences is no MR contrast).")
flags.DEFINE_list("modality_replace", [], "pairs: NAME=OLD:NEW per extra modality: its file is the image's "
                  "path with OLD replaced by NEW (e.g. --modalities=t1ce,flair "
                  "--modality_replace=flair=_t1ce:_flair).")
flags.DEFINE_enum("stack_slices", "auto", ["auto", "on", "off"], "folders: stack the mask-paired slices "
                  "<prefix>_<n> of one folder into one volume in numeric order (per-volume normalisation, "
                  "brain extent, --slice_range). auto: when every paired image of the folder is so "
                  "numbered; on: the numbered ones always; off: one case per image.")
flags.DEFINE_bool("keep_splits", False, "pairs/folders: keep the dataset's own split: top-level folders "
                  "train/Training, val/valid/validation, test/Testing (any case) go to train, val, test; "
                  "without a validation folder (Training/ + Testing/), validation is --val_fraction of the "
                  "dataset's training patients; cases outside such folders are split by the fractions. The "
                  "layout is checked before any image is read.")
flags.DEFINE_bool("match_anatomy", True, "Draw normal slices of 3-D and stacked cases from the levels "
                  "where the cohort's tumor slices lie: normal slices whose head area ratio (to the extent's "
                  "largest head slice) is below the tumor slices' 5th percentile are dropped, and the rest are "
                  "sampled (seeded by --seed) per tenth of the brain's axial extent in proportion to the tumor "
                  "slices' positions. A warning (console and report) when the written normals' positions still "
                  "differ from the tumors' by a Kolmogorov-Smirnov statistic above 0.15 (p < 0.05). The report "
                  "shows both distributions.")
flags.DEFINE_enum("dedupe", "group", ["group", "drop", "off"], "Exact duplicate slices (same decoded pixels) "
                  "and, among single 2-D images, near duplicates (the same scan at another size or JPEG "
                  "quality: perceptual hashes at most 24 of 143 bits apart and thumbnails correlating >= 0.95): "
                  "group keeps the patients sharing one in the same split, drop keeps only the first "
                  "occurrence, off only reports them.")
flags.DEFINE_float("min_brain_ratio", 0.5, "Normal slices of a volume must lie in the brain's axial "
                   "extent: the unbroken run of slices with at least this fraction of the largest head slice's "
                   "area, within --brain_length_mm of the vertex (drops noise-only and scalp-top slices).")
flags.DEFINE_float("brain_length_mm", preprocess.BRAIN_LENGTH_MM, "Normal slices of a volume must lie at "
                   "most this many mm (by the volume's slice spacing) below the vertex, the top of the head: "
                   "an adult brain spans about 110-130 mm from it, so neck, shoulders and face below are no "
                   "normal brain. 0: no bound. Not applied when the head is cut at the volume's top.")
flags.DEFINE_enum("field_of_view", "fit", list(preprocess.FIELDS_OF_VIEW), "How slices fill the "
                  "image_size frame. fit: the head's bounding box (over the brain's extent; per image for 2-D "
                  "slices) is scaled to 0.9 of the frame, enlarging or shrinking by the pixel spacing, one "
                  "scale per volume, so image size and field of view do not tell classes apart. pad: as "
                  "stored, padded centrally and shrunk only when larger than the frame (the earlier behaviour).")
flags.DEFINE_integer("image_size", 256, "Output slices are image_size x image_size (see --field_of_view; "
                     "masks are resized by nearest neighbour). run_train.py takes multiples of 4 from 32 on; "
                     "other sizes convert, with a warning, for the classifiers and the judge.")
flags.DEFINE_string("image_glob", "*", "pairs: glob of image files or DICOM folders, relative to --input.")
flags.DEFINE_string("mask_replace", None, "pairs: OLD:NEW; a mask's path is its image's path with OLD "
                    "replaced by NEW (e.g. _Scan_T1:_Mask); a label volume on the image's grid, or a DICOM SEG "
                    "(placed on the image's grid, every segment tumor).")
flags.DEFINE_integer("patient_level", 1, "pairs: the patient id is the first N path components under "
                     "--input (below the split folder with --keep_splits); scans of one patient never straddle "
                     "two splits. Fewer than 3 patients cannot fill train, val and test: the conversion stops "
                     "and says so.")
flags.DEFINE_bool("no_masks", False, "pairs/brats: the scans have no tumor masks (healthy subjects); needs "
                  "--assume_normal.")
flags.DEFINE_bool("assume_normal", False, "With --no_masks: every brain slice is a normal slice.")
flags.DEFINE_list("class_folders", ["yes=1", "no=0"], "folders: class folder names and labels "
                  "(1 tumor, 0 normal), as NAME=LABEL.")
flags.DEFINE_string("mask_suffix", "_mask", "folders: a mask is the image's name with this suffix.")
flags.DEFINE_integer("min_tumor_pixels", 20, "A tumor slice has at least this many whole-tumor pixels "
                     "(after resizing; 1 to image_size^2); slices with fewer but some tumor are dropped.")
flags.DEFINE_integer("normal_margin", 0, "Normal slices must be at least this many slices away from any "
                     "slice with tumor.")
flags.DEFINE_string("slice_range", None, "START:STOP, axial slices to consider (Python slice; either may be "
                    "empty), after reorientation.")
flags.DEFINE_float("min_brain_fraction", 0.05, "Drop slices of a volume whose head covers less than this "
                   "fraction of the slice, in [0, 1).")
flags.DEFINE_list("percentiles", ["0.5", "99.5"], "Per-volume intensity clip percentiles over brain voxels.")
flags.DEFINE_float("train_fraction", 0.7, "Fraction of patients in the training split (the paper trains on "
                   "half the cases to simulate scarce data: 0.5).")
flags.DEFINE_float("val_fraction", 0.1, "Fraction of patients in the validation split; the rest is test. "
                   "With --keep_splits and no validation folder: the fraction of the dataset's training "
                   "patients drawn for validation.")
flags.DEFINE_float("labelled_fraction", 1.0, "Fraction of training patients whose tumor masks are kept "
                   "(has_mask = 1); the others' are dropped, for semi-supervised runs. Val/test keep masks.")
flags.DEFINE_integer("seed", 0, "Seed of the patient split and of the labelled subset.")
flags.DEFINE_integer("num_shards", 8, "Shards per split and domain (fewer when there are fewer slices).")
flags.DEFINE_enum("storage", "uint16", ["uint16", "uint8", "float32"], "How slice images are stored: "
                 "uint16 (default) quantises [-1, 1] to 65536 levels, every value within 1.532e-5 of the float32 "
                 "one, -1 (background) and 1 exact; uint8 to 256 levels (within 0.00393); float32 as computed "
                 "(twice uint16's bytes). Readers take every storage, and datasets written before this flag.")
flags.DEFINE_enum("compression", "gzip", ["gzip", "none"], "Shard files: gzip (default; background and masks "
                  "shrink to almost nothing, docs/formats.md has the sizes and read speeds) or none.")
flags.DEFINE_integer("workers", 0, "Worker threads reading cases (>= 0); 0 = one per CPU core.")
flags.DEFINE_bool("strict", False, "Fail (exit non-zero) when any case fails.")
flags.DEFINE_bool("overwrite", False, "Replace a dataset the converter wrote in --output_dir, removing only the "
                  "files its record (.conversion-files.json) lists. A folder holding anything else, or the input "
                  "itself, is refused with or without it.")


def _parse_pair(text: str, flag: str, sep: str = ":") -> tuple:
    parts = text.split(sep)
    if len(parts) != 2 or not parts[0]:
        raise ValueError(f"--{flag} must be OLD{sep}NEW, got {text!r}")
    return parts[0], parts[1]


def _parse_slice_range(text):
    if not text:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        return tuple(int(p) if p else None for p in parts)
    except ValueError:
        raise ValueError(f"--slice_range must be START:STOP with integers (either may be empty), "
                         f"got {text!r}") from None


def _parse_class_folders(items) -> tuple:
    pairs = []
    for item in items:
        name, label = _parse_pair(item, "class_folders", "=")
        if label not in ("0", "1"):
            raise ValueError(f"--class_folders labels must be 0 or 1, got {item!r}")
        pairs.append((name, int(label)))
    return tuple(pairs)


def _modalities() -> tuple:
    """--modalities, or the format's default when not given."""
    if FLAGS.modalities:
        return tuple(FLAGS.modalities)
    if FLAGS.format == "brats":
        return ("t1ce",)
    if FLAGS.format == "folders" and FLAGS.channel_names and FLAGS.channel_names != ["rgb"]:
        return tuple(FLAGS.channel_names)
    return ("image",)


def _parse_modality_replace(item: str) -> tuple:
    name, _, rule = item.partition("=")
    old, sep, new = rule.partition(":")
    if not name or not old or not sep:
        raise ValueError(f"--modality_replace items must be NAME=OLD:NEW, got {item!r}")
    return name, old, new


def config_from_flags():
    from data_prep.convert import ConvertConfig

    for name in ("input", "format", "output_dir"):
        if not getattr(FLAGS, name):
            raise ValueError(f"--{name} is required")
    if FLAGS.assume_normal and not FLAGS.no_masks:
        raise ValueError("--assume_normal goes with --no_masks (a healthy cohort without masks)")
    try:
        percentiles = tuple(float(p) for p in FLAGS.percentiles)
    except ValueError:
        raise ValueError(f"--percentiles must be two numbers, got {FLAGS.percentiles}") from None
    if len(percentiles) != 2:
        raise ValueError(f"--percentiles must be two numbers, got {FLAGS.percentiles}")
    try:
        reader = ReaderOptions(
            modalities=_modalities(), image_glob=FLAGS.image_glob,
            mask_replace=_parse_pair(FLAGS.mask_replace, "mask_replace") if FLAGS.mask_replace else None,
            patient_level=FLAGS.patient_level, no_masks=FLAGS.no_masks,
            class_folders=_parse_class_folders(FLAGS.class_folders), mask_suffix=FLAGS.mask_suffix,
            channel_names=tuple(FLAGS.channel_names),
            modality_replace=tuple(_parse_modality_replace(item) for item in FLAGS.modality_replace),
            stack_slices=FLAGS.stack_slices, keep_splits=FLAGS.keep_splits)
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith("--") else f"--modalities/--channel_names: {message}") \
            from None
    prep = preprocess.PrepOptions(
        image_size=FLAGS.image_size, min_tumor_pixels=FLAGS.min_tumor_pixels, normal_margin=FLAGS.normal_margin,
        slice_range=_parse_slice_range(FLAGS.slice_range), min_brain_fraction=FLAGS.min_brain_fraction,
        percentiles=percentiles, assume_normal=FLAGS.assume_normal, min_brain_ratio=FLAGS.min_brain_ratio,
        brain_length_mm=FLAGS.brain_length_mm, field_of_view=FLAGS.field_of_view)
    config = ConvertConfig(
        input_dir=FLAGS.input, format=FLAGS.format, output_dir=FLAGS.output_dir, reader=reader, prep=prep,
        train_fraction=FLAGS.train_fraction, val_fraction=FLAGS.val_fraction,
        labelled_fraction=FLAGS.labelled_fraction, seed=FLAGS.seed, num_shards=FLAGS.num_shards,
        workers=FLAGS.workers, strict=FLAGS.strict, overwrite=FLAGS.overwrite,
        match_anatomy=FLAGS.match_anatomy, dedupe=FLAGS.dedupe, storage=FLAGS.storage,
        compression=FLAGS.compression)
    config.check_inputs()
    return config


def _run(argv) -> int:
    from data_prep.convert import REPORT_NAME, convert
    from data_prep.scan import LayoutError

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    try:
        manifest = convert(config, log=lambda line: print(line, flush=True))
    except LayoutError as err:     # the flags do not fit the layout on disk: a bad flag value, exit 2
        raise app.UsageError(str(err)) from None
    counts = manifest["counts"]
    print(f"wrote {config.output_dir}: " + ", ".join(
        f"{s} {c['normal']} normal / {c['tumor']} tumor" for s, c in counts.items()))
    if manifest["rejected"]:
        print(f"{len(manifest['rejected'])} case(s) rejected; see {config.output_dir}/{REPORT_NAME}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """The command line (`ssagan_tf.cli`: one-line errors, `--help` listing this module's flags);
    returns the exit code."""
    from data_prep import convert

    try:
        cli.run(_run, convert.__doc__, argv, help_module=sys.modules[__name__])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0
