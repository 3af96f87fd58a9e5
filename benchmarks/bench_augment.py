"""Augmentation throughput against the bare forward pass (the aim: >= 90%), and across
compute precisions (`--precisions=fp32,bf16`: the same weights exported in each; the aim: bf16
>= 1.8x fp32).

For each image size: build a full-size model (default ngf 64, 9 residual blocks, randomly
initialised: speed does not depend on the weights), export it, write a converted dataset of
`--slices` normal slices, then measure

    forward   the exported `normal_to_tumor` signature called on an in-memory batch (after a
              warm-up call)
    augment   `augment_dataset` over the dataset (read, translate, write, commit), timed by the
              run itself (model loading and planning excluded; `end_to_end` includes them)

alternately (`--rounds`), reporting medians (see `measure`). Both are also measured per CPU-second
of this process: on a machine shared with other jobs the wall-clock rates vary with their load,
while CPU time per slice shows the work augmentation adds to the forward pass.

and print a JSON document and a table. With several precisions, each round runs every precision's
forward and augmentation in turn (shuffled), and `vs_fp32` is the median over rounds of the
augmentation throughput ratio to fp32 in the same round; peak memory is the process's.

    python benchmarks/bench_augment.py --sizes=128,256 --slices=64 --batch_size=16 --precisions=fp32,bf16
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import result_file  # noqa: E402 - beside this file

flags.DEFINE_list("sizes", ["128", "256"], "Image sizes (pixels, square) to measure.")
flags.DEFINE_integer("batch_size", 16, "Slices per forward pass, for both measurements.", lower_bound=1)
flags.DEFINE_integer("slices", 64, "Real slices to augment per size (all translated once).", lower_bound=1)
flags.DEFINE_integer("forward_repeats", 4, "Timed forward passes per size (after one warm-up).", lower_bound=1)
flags.DEFINE_integer("ngf", 64, "Generator width (64 = the paper's full size).", lower_bound=1)
flags.DEFINE_integer("n_res_blocks", 9, "Generator residual blocks (9 = the paper's full size).", lower_bound=0)
flags.DEFINE_integer("rounds", 2, "Augmentation runs per size, each between two forward timings.", lower_bound=1)
flags.DEFINE_enum("format", "tfrecord", ["tfrecord", "png", "nifti"], "Augmentation output format.")
flags.DEFINE_list("precisions", ["fp32"], "Compute precisions to export and compare (fp32, bf16, fp16).")
flags.DEFINE_string("work_dir", None, "Scratch directory (default: a temporary one, removed afterwards).")
flags.DEFINE_string("output_json", None, "Also write the JSON result to this file.")
flags.register_validator("sizes", lambda v: all(s.isdigit() and int(s) >= 32 and int(s) % 4 == 0 for s in v),
                         "--sizes must be integers >= 32 and multiples of 4")
FLAGS = flags.FLAGS


def write_dataset(data_dir: str, size: int, count: int) -> str:
    """A converted dataset with `count` normal slices (random brain-like noise) and one tumor slice."""
    import numpy as np
    import tensorflow as tf

    from ssagan_tf.data import schema

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(data_dir, "train"), exist_ok=True)
    for domain, n in (("normal", count), ("tumor", 1)):
        with tf.io.TFRecordWriter(os.path.join(data_dir, "train", schema.shard_name(domain, 0, 1))) as writer:
            for i in range(n):
                image = rng.uniform(-1, 1, (size, size, 1)).astype(np.float32)
                writer.write(schema.serialize_slice(image, None, False, schema.LABELS[domain], f"case{i // 16}",
                                                    f"real:bench/{i}", i % 16))
    manifest = {"schema_version": schema.SCHEMA_VERSION, "image_size": size, "channels": 1, "modalities": ["t1ce"],
                schema.STORAGE_KEY: schema.LEGACY_STORAGE.manifest_entry(),
                "counts": {"train": {"normal": count, "tumor": 1}}, "cases": {"train": []}}
    with open(os.path.join(data_dir, schema.MANIFEST_NAME), "w") as f:
        json.dump(manifest, f)
    return data_dir


def time_forward(version_dir: str, size: int, batch_size: int, repeats: int) -> tuple:
    """(slices/s, slices per CPU-second of this process) of the exported signature on one
    in-memory batch, after a warm-up call."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(version_dir).signatures["normal_to_tumor"]
    images = tf.constant(np.random.default_rng(1).uniform(-1, 1, (batch_size, size, size, 1)).astype(np.float32))
    signature(images=images)["image"].numpy()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        signature(images=images)["image"].numpy()
    slices = repeats * batch_size
    return slices / (time.perf_counter() - start), slices / (time.process_time() - cpu_start)


def augment_once(version_dir: str, data_dir: str, output_dir: str) -> tuple:
    """(slices/s, slices per CPU-second) of the run's translate-and-write phase, and the wall
    seconds of the whole call (model loading and planning included)."""
    from ssagan_tf.augment import AugmentConfig, augment_dataset

    start = time.perf_counter()
    result = augment_dataset(AugmentConfig(model=version_dir, data_dir=data_dir, output_dir=output_dir, ratio=None,
                                           format=FLAGS.format, batch_size=FLAGS.batch_size,
                                           directions=("normal_to_tumor",), contact_rows=0))
    return (result.slices_per_second, result.slices_translated / result.cpu_seconds,
            time.perf_counter() - start)


def measure(size: int, work_dir: str) -> list:
    """Alternate forward and augmentation timings (F A F A ... F) for each precision, the
    precisions in a shuffled order each round; each augmentation is compared with the mean of the
    forward timings either side of it and the median ratio is reported, so that load from other
    processes on a shared machine shows up as spread, not as a bias."""
    import random
    import resource
    import statistics

    from ssagan_tf import export
    from ssagan_tf.models import ModelConfig, build_models

    reference = build_models(ModelConfig(image_size=size, channels=1, ngf=FLAGS.ngf, n_res_blocks=FLAGS.n_res_blocks))
    version_dirs = {}
    for precision in FLAGS.precisions:
        models = build_models(ModelConfig(image_size=size, channels=1, ngf=FLAGS.ngf, n_res_blocks=FLAGS.n_res_blocks,
                                          precision=precision))
        for name, model in reference.named().items():         # the same weights in every precision
            models.named()[name].set_weights(model.get_weights())
        version_dirs[precision] = export.write_export(models, os.path.join(work_dir, f"export{size}-{precision}"),
                                                      tau=0.1)
    data_dir = write_dataset(os.path.join(work_dir, f"data{size}"), size, FLAGS.slices)
    forwards = {p: [time_forward(version_dirs[p], size, FLAGS.batch_size, FLAGS.forward_repeats)]
                for p in FLAGS.precisions}
    augments = {p: [] for p in FLAGS.precisions}
    order = list(FLAGS.precisions)
    shuffler = random.Random(0)
    for round_index in range(FLAGS.rounds):
        shuffler.shuffle(order)
        for p in order:
            augments[p].append(augment_once(version_dirs[p], data_dir,
                                            os.path.join(work_dir, f"aug{size}-{p}-{round_index}")))
            forwards[p].append(time_forward(version_dirs[p], size, FLAGS.batch_size, FLAGS.forward_repeats))
    median = statistics.median
    rows = []
    for p in FLAGS.precisions:
        f, a = forwards[p], augments[p]
        wall = [x[0] / ((f[i][0] + f[i + 1][0]) / 2) for i, x in enumerate(a)]
        cpu = [x[1] / ((f[i][1] + f[i + 1][1]) / 2) for i, x in enumerate(a)]
        row = {"image_size": size, "precision": p, "batch_size": FLAGS.batch_size, "slices": FLAGS.slices,
               "forward_slices_per_s": round(median(x[0] for x in f), 2),
               "augment_slices_per_s": round(median(x[0] for x in a), 2),
               "augment_vs_forward": round(median(wall), 3),
               "augment_vs_forward_cpu": round(median(cpu), 3),
               "end_to_end_s": round(median(x[2] for x in a), 2),
               "rounds": {"forward_slices_per_s": [round(x[0], 2) for x in f],
                          "augment_slices_per_s": [round(x[0], 2) for x in a],
                          "ratio": [round(r, 3) for r in wall], "ratio_cpu": [round(r, 3) for r in cpu]},
               "peak_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "load_average_1m_after": round(os.getloadavg()[0], 2)}
        if "fp32" in augments and p != "fp32":
            ratios = [x[0] / y[0] for x, y in zip(a, augments["fp32"])]
            row["vs_fp32"] = round(median(ratios), 3)
            row["rounds"]["vs_fp32"] = [round(r, 3) for r in ratios]
        rows.append(row)
    return rows


def table(rows: list) -> str:
    lines = ["| size | precision | batch | slices | forward (slices/s) | augment (slices/s) | augment/forward | "
             "same, per CPU-second | vs fp32 | end to end (s) | peak RSS MB (process) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['image_size']} | {r['precision']} | {r['batch_size']} | {r['slices']} | "
              f"{r['forward_slices_per_s']:.2f} | {r['augment_slices_per_s']:.2f} | {100 * r['augment_vs_forward']:.0f}% | "
              f"{100 * r['augment_vs_forward_cpu']:.0f}% | {str(r['vs_fp32']) + 'x' if 'vs_fp32' in r else '-'} | "
              f"{r['end_to_end_s']:.1f} | {r['peak_rss_mb_process']} |" for r in rows]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import tensorflow as tf

    logging.set_verbosity(logging.WARNING)
    result_file.check_or_exit(FLAGS.output_json, "bench_augment")
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench-augment-")
    load_start = round(os.getloadavg()[0], 2)
    try:
        rows = [row for size in FLAGS.sizes for row in measure(int(size), work_dir)]
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    document = {"benchmark": "bench_augment", "format": FLAGS.format, "ngf": FLAGS.ngf,
                "n_res_blocks": FLAGS.n_res_blocks, "tensorflow": tf.__version__, "cpus": os.cpu_count(),
                "load_average_1m_before": load_start,
                "results": rows}
    text = json.dumps(document, indent=2)
    print(text)
    print(table(rows))
    if FLAGS.output_json:
        result_file.write(FLAGS.output_json, document, "bench_augment")


if __name__ == "__main__":
    app.run(main)
