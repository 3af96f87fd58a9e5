"""Data benchmark: conversion time per case against the bare SimpleITK read of the same files,
tf.data pipeline throughput at 128^2 and 256^2, and the storage variants of converted slices
(bytes on disk, read speed). Prints tables and a JSON line.

    .venv/bin/python benchmarks/bench_data.py [--source=phantom|real] [--cases=4] [--slices=2000]
    .venv/bin/python benchmarks/bench_data.py --sections=storage [--storage_data=DIR] [--rounds=5]

`--source=phantom` writes BraTS-sized phantom volumes (240 x 240 x 155, four modalities);
`--source=real` uses ../shared/data/brain_tumor_progression (256 x 256 x 24, T1c + mask).
The storage section re-writes one converted dataset (`--storage_data`, by default the shared LGG
FLAIR slices converted at 256^2) record by record in every storage of `schema.Storage`, with the
converter's own writer, then reads each with the pipeline's ordered reader (`make_slice_dataset`,
decode and checks included) in interleaved rounds, since speed drifts between runs.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import result_file  # noqa: E402 - beside this file

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_enum("source", "phantom", ["phantom", "real"], "Volumes to convert.")
flags.DEFINE_integer("cases", 12, "phantom: number of BraTS-sized cases to write.")
flags.DEFINE_integer("slices", 2000, "Slices per domain written for the pipeline benchmark.")
flags.DEFINE_integer("batch_size", 16, "Global batch of the pipeline benchmark.")
flags.DEFINE_float("seconds", 5.0, "How long to stream each pipeline configuration.")
flags.DEFINE_string("json_out", None, "Also write the JSON result to this file.")
flags.DEFINE_list("sections", ["conversion", "pipeline", "storage"], "Which benchmarks to run.")
flags.DEFINE_string("storage_data", None, "storage: a converted dataset to re-write in each storage (default: "
                    "../shared/data/lgg_kaggle_3m converted, FLAIR at 256^2).")
flags.DEFINE_integer("rounds", 5, "storage: interleaved read rounds (each reads every variant once).")
flags.DEFINE_float("read_seconds", 3.0, "storage: how long each variant is read in each round.")
FLAGS = flags.FLAGS

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "brain_tumor_progression")
LGG = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "lgg_kaggle_3m")
STORAGES = [("float32", "none"), ("float32", "gzip"), ("uint16", "none"), ("uint16", "gzip"), ("uint8", "none"),
            ("uint8", "gzip")]


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
    from ssagan_tf.data import pipeline, schema

    data = write_tiny_dataset(os.path.join(work, f"pipe{size}"), size=size, n_normal=FLAGS.slices,
                              n_tumor=FLAGS.slices, splits=("train",))
    ds = pipeline.make_unpaired_dataset(schema.open(data), "train", FLAGS.batch_size, seed=0)
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


def _storage_source(work: str) -> str:
    if FLAGS.storage_data:
        return FLAGS.storage_data
    from data_prep.convert import ConvertConfig, convert
    from data_prep.preprocess import PrepOptions
    from data_prep.readers import ReaderOptions

    if not os.path.isdir(LGG):
        raise SystemExit(f"bench_data: the storage section needs --storage_data or {os.path.normpath(LGG)}")
    config = ConvertConfig(input_dir=LGG, format="folders", output_dir=os.path.join(work, "lgg"),
                           reader=ReaderOptions(channel_names=("t1", "flair", "t1ce"), modalities=("flair",)),
                           prep=PrepOptions(image_size=256), storage="float32", compression="none")
    convert(config, log=lambda _: None)
    return config.output_dir


def rewrite(source, out_dir: str, storage) -> str:
    """The dataset `source` (a `schema.Dataset`), record by record, in `storage` (the converter's
    writer and encoder)."""
    from data_prep.writer import ShardedWriter
    from ssagan_tf.data import pipeline, schema

    writer = ShardedWriter(out_dir, max(1, max(len(source.shards(s, d)) for s in schema.SPLITS
                                               for d in schema.DOMAINS)), storage)
    for split in schema.SPLITS:
        for domain in schema.DOMAINS:
            if not source.count(split, domain):
                continue
            arrays = pipeline.load_split_arrays(source, split, (domain,))
            for i in range(len(arrays["label"])):
                writer.write(split, domain, schema.serialize_slice(
                    arrays["image"][i], arrays["mask"][i, ..., 0].astype(np.uint8), bool(arrays["has_mask"][i]),
                    int(arrays["label"][i]), arrays["case_id"][i].decode(), arrays["source"][i].decode(),
                    int(arrays["slice_index"][i]), storage))
    writer.close()
    raw = dict(source.manifest.raw, schema_version=schema.SCHEMA_VERSION, counts=writer.counts, shards=writer.shards)
    raw[schema.STORAGE_KEY] = storage.manifest_entry()
    with open(os.path.join(out_dir, schema.MANIFEST_NAME), "w") as f:
        json.dump(raw, f)
    return out_dir


def _read_rate(dataset, seconds: float) -> float:
    """Slices per second through `make_slice_dataset` over the train split of `dataset` (a
    `schema.Dataset`; both domains, repeated)."""
    from ssagan_tf.data import pipeline

    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for domain in ("normal", "tumor"):
            for batch in pipeline.make_slice_dataset(dataset, "train", domain, batch_size=FLAGS.batch_size):
                count += int(batch["image"].shape[0])
    return count / (time.perf_counter() - start)


def bench_storage(work: str) -> dict:
    from ssagan_tf.data import pipeline, schema

    source = schema.open(_storage_source(work))
    reference = pipeline.load_split_arrays(source, "train")
    variants = {}
    for dtype, compression in STORAGES:
        storage = schema.Storage(dtype, compression)
        name = f"{dtype}/{compression}"
        data = schema.open(rewrite(source, os.path.join(work, "storage", name.replace("/", "-")), storage))
        back = pipeline.load_split_arrays(data, "train")
        variants[name] = {"bytes": sum(e["bytes"] for e in data.manifest.raw["shards"].values()),
                          "max_error": float(np.abs(back["image"] - reference["image"]).max()),
                          "stated_max_error": storage.max_error, "dataset": data, "rates": []}
        _read_rate(data, 0.5)      # warm-up: the first pass pays for graph building
    for _ in range(FLAGS.rounds):
        for entry in variants.values():
            entry["rates"].append(_read_rate(entry["dataset"], FLAGS.read_seconds))
    base = variants["float32/none"]["bytes"]
    for entry in variants.values():
        del entry["dataset"]
        entry["ratio_to_float32"] = base / entry["bytes"]
        entry["slices_per_s_median"] = float(np.median(entry["rates"]))
        # Within a round the variants share the machine's load: their speed relative to float32/none.
        entry["speed_vs_float32_median"] = float(np.median(np.divide(entry["rates"],
                                                                     variants["float32/none"]["rates"])))
    return {"source": os.path.abspath(source.data_dir) if FLAGS.storage_data else "lgg_kaggle_3m FLAIR 256",
            "image_size": source.image_size, "channels": source.channels,
            "slices": sum(source.count(s, d) for s in schema.SPLITS for d in schema.DOMAINS),
            "rounds": FLAGS.rounds, "read_seconds": FLAGS.read_seconds, "variants": variants}


def main(argv):
    del argv
    result_file.check_or_exit(FLAGS.json_out, "bench_data")
    result = {"benchmark": "bench_data", "cpu_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as work:
        if "conversion" in FLAGS.sections:
            result["conversion"] = bench_conversion(work)
        if "pipeline" in FLAGS.sections:
            result["pipeline"] = [bench_pipeline(work, s) for s in (128, 256)]
        if "storage" in FLAGS.sections:
            result["storage"] = bench_storage(work)
    if "conversion" in result:
        c = result["conversion"]
        print(f"\nconversion ({c['source']}, {c['cases']} cases)")
        print("| bare SimpleITK read s/case | convert s/case (1 worker) | ratio | convert s/case (all cores) | ratio |")
        print("|---|---|---|---|---|")
        print(f"| {c['bare_read_s_per_case']:.2f} | {c['convert_s_per_case_1_worker']:.2f} | "
              f"{c['ratio_1_worker']:.2f}x | {c['convert_s_per_case_all_cores']:.2f} | {c['ratio_all_cores']:.2f}x |")
    if "pipeline" in result:
        print("\npipeline (make_unpaired_dataset)")
        print("| image size | batch | slices/s | training pairs/s |")
        print("|---|---|---|---|")
        for p in result["pipeline"]:
            print(f"| {p['image_size']} | {p['batch_size']} | {p['slices_per_s']:.0f} | "
                  f"{p['training_pairs_per_s']:.0f} |")
    if "storage" in result:
        st = result["storage"]
        print(f"\nstorage ({st['source']}: {st['slices']} slices of {st['image_size']}^2 x {st['channels']}; "
              f"read: make_slice_dataset, median of {st['rounds']} interleaved rounds)")
        print("| storage | MB on disk | smaller than float32 | max error read back | slices/s (median) | "
              "slices/s (min-max) | speed vs float32/none (median of rounds) |")
        print("|---|---|---|---|---|---|---|")
        for name, v in st["variants"].items():
            print(f"| {name} | {v['bytes'] / 1e6:.1f} | {v['ratio_to_float32']:.2f}x | {v['max_error']:.3g} | "
                  f"{v['slices_per_s_median']:.0f} | {min(v['rates']):.0f}-{max(v['rates']):.0f} | "
                  f"{v['speed_vs_float32_median']:.2f} |")
    print("\n" + json.dumps(result))
    if FLAGS.json_out:
        result_file.write(FLAGS.json_out, result, "bench_data")


if __name__ == "__main__":
    app.run(main)
