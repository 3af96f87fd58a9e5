"""Data benchmark: conversion time per case against the bare SimpleITK read of the same files,
and tf.data pipeline throughput at 128^2 and 256^2. Prints a table and a JSON line.

    .venv/bin/python benchmarks/bench_data.py [--source=phantom|real] [--cases=4] [--slices=2000]

`--source=phantom` writes BraTS-sized phantom volumes (240 x 240 x 155, four modalities);
`--source=real` uses ../shared/data/brain_tumor_progression (256 x 256 x 24, T1c + mask).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_enum("source", "phantom", ["phantom", "real"], "Volumes to convert.")
flags.DEFINE_integer("cases", 12, "phantom: number of BraTS-sized cases to write.")
flags.DEFINE_integer("slices", 2000, "Slices per domain written for the pipeline benchmark.")
flags.DEFINE_integer("batch_size", 16, "Global batch of the pipeline benchmark.")
flags.DEFINE_float("seconds", 5.0, "How long to stream each pipeline configuration.")
flags.DEFINE_string("json_out", None, "Also write the JSON result to this file.")
FLAGS = flags.FLAGS

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "brain_tumor_progression")


def _conversion_setup(work: str):
    from data_prep import phantom
    from data_prep.convert import ConvertConfig
    from data_prep.preprocess import PrepOptions
    from data_prep.readers import ReaderOptions

    if FLAGS.source == "real":
        if not os.path.isdir(REAL):
            raise SystemExit(f"bench_data: --source=real needs {os.path.normpath(REAL)}")
        reader = ReaderOptions(image_glob="*/*_Scan_T1.nii.gz", mask_replace=("_Scan_T1", "_Mask"))
        return ConvertConfig(input_dir=REAL, format="pairs", output_dir=os.path.join(work, "out"), reader=reader,
                             prep=PrepOptions(image_size=256), workers=1)
    cohort = os.path.join(work, "cohort")
    # BraTS geometry: 155 axial slices of 240 x 240. Phantoms this size take a while to draw, so
    # two are drawn and copied under new case names (same bytes, same reading cost).
    import shutil

    drawn = [phantom.write_case(cohort, i, size=240, slices=155, seed=0) for i in range(min(2, FLAGS.cases))]
    for i in range(len(drawn), FLAGS.cases):
        source = drawn[i % len(drawn)]
        target = os.path.join(cohort, f"Phantom_{i:03d}")
        os.makedirs(target)
        for name in os.listdir(source):
            shutil.copy(os.path.join(source, name),
                        os.path.join(target, name.replace(os.path.basename(source), os.path.basename(target))))
    # The copies are exact duplicates by design: --dedupe=off, or they would all share one split.
    return ConvertConfig(input_dir=cohort, format="brats", output_dir=os.path.join(work, "out"),
                         prep=PrepOptions(image_size=256), workers=1, dedupe="off")


def bench_conversion(work: str) -> dict:
    from data_prep.convert import convert
    from data_prep.readers import discover

    import tensorflow  # noqa: F401  (imported before timing: the writer needs it, a one-off cost)

    config = _conversion_setup(work)
    refs, _ = discover(config.input_dir, config.format, config.reader)
    files = [p for ref in refs for role, p in ref.paths.items()
             if role in ("seg", "mask", "image") or role in config.reader.modalities]
    start = time.perf_counter()
    for path in files:
        sitk.GetArrayFromImage(sitk.ReadImage(path))
    bare = time.perf_counter() - start
    start = time.perf_counter()
    convert(config, log=lambda _: None)
    serial = time.perf_counter() - start
    parallel_config = type(config)(**{**config.__dict__, "workers": 0, "overwrite": True})
    start = time.perf_counter()
    convert(parallel_config, log=lambda _: None)
    parallel = time.perf_counter() - start
    n = len(refs)
    return {"source": FLAGS.source, "cases": n, "bare_read_s_per_case": bare / n,
            "convert_s_per_case_1_worker": serial / n, "convert_s_per_case_all_cores": parallel / n,
            "ratio_1_worker": serial / bare, "ratio_all_cores": parallel / bare}


def bench_pipeline(work: str, size: int) -> dict:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from conftest import write_tiny_dataset
    from ssagan_tf.data import pipeline

    data = write_tiny_dataset(os.path.join(work, f"pipe{size}"), size=size, n_normal=FLAGS.slices,
                              n_tumor=FLAGS.slices, splits=("train",))
    ds = pipeline.make_unpaired_dataset(data, "train", FLAGS.batch_size, seed=0)
    iterator = iter(ds)
    for _ in range(5):  # warm-up: fill the shuffle buffers
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < FLAGS.seconds:
        next(iterator)
        count += 1
    elapsed = time.perf_counter() - start
    # Each element carries a normal and a tumor batch: two slices per batch position.
    return {"image_size": size, "batch_size": FLAGS.batch_size,
            "slices_per_s": 2 * count * FLAGS.batch_size / elapsed,
            "training_pairs_per_s": count * FLAGS.batch_size / elapsed}


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as work:
        result = {"conversion": bench_conversion(work),
                  "pipeline": [bench_pipeline(work, s) for s in (128, 256)],
                  "cpu_cores": os.cpu_count()}
    c = result["conversion"]
    print(f"\nconversion ({c['source']}, {c['cases']} cases)")
    print("| bare SimpleITK read s/case | convert s/case (1 worker) | ratio | convert s/case (all cores) | ratio |")
    print("|---|---|---|---|---|")
    print(f"| {c['bare_read_s_per_case']:.2f} | {c['convert_s_per_case_1_worker']:.2f} | "
          f"{c['ratio_1_worker']:.2f}x | {c['convert_s_per_case_all_cores']:.2f} | {c['ratio_all_cores']:.2f}x |")
    print("\npipeline (make_unpaired_dataset)")
    print("| image size | batch | slices/s | training pairs/s |")
    print("|---|---|---|---|")
    for p in result["pipeline"]:
        print(f"| {p['image_size']} | {p['batch_size']} | {p['slices_per_s']:.0f} | {p['training_pairs_per_s']:.0f} |")
    print("\n" + json.dumps(result))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
