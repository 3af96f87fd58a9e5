"""Lesion-placement cost: milliseconds per slice of the head and brain masks and the transplant
that `--lesion_guidance`, `--lambda_fill`, `--lambda_paint`, copy-paste and `--in_masks` run
(`ssagan_tf/lesions.py`), each compiled with `tf.function` as a training step compiles it, on
head-like random slices (a bright disc on noise, with a faint band across the frame as motion
ghosting leaves).

    python benchmarks/bench_placement.py [--sizes=128,256] [--batches=1,16] [--rounds=7]

For each size and batch, every operation is timed once per round, in a new random order each
round, and the median over rounds is reported, so the speed drift of a shared machine shows as
spread, not as a bias between operations. Compare a row with the training step it runs in
(`benchmarks/bench_train.py`; batch 1 is the training step's case): the placement runs once per
step on the step's normal slices.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import result_file  # noqa: E402 - beside this file

flags.DEFINE_list("sizes", ["128", "256"], "Image sizes (square).")
flags.DEFINE_list("batches", ["1", "16"], "Slices per call (1 = a training step at batch 1).")
flags.DEFINE_integer("rounds", 7, "Timed calls of each operation (after one untimed tracing call).", lower_bound=1)
flags.DEFINE_string("output", "runs/bench/bench_placement.json", "Where to write the JSON results.")
flags.register_validator("sizes", lambda v: all(s.isdigit() and int(s) >= 32 for s in v), "--sizes: integers >= 32")
flags.register_validator("batches", lambda v: all(s.isdigit() and int(s) >= 1 for s in v), "--batches: integers >= 1")
FLAGS = flags.FLAGS


def head_like(batch: int, size: int, seed: int):
    """[batch, size, size, 1] slices in [-1, 1]: background noise near -1, a faint band across
    the frame, and a disc of tissue (a darker ring inside it as skull) filling ~0.7 of the frame."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    radius = np.hypot(yy, xx)
    images = rng.normal(-0.97, 0.01, (batch, size, size, 1))
    band = (np.abs(yy) < 0.08)[None, ..., None]
    images = np.where(band, images + 0.06, images)
    tissue = (radius < 0.35)[None, ..., None]
    images = np.where(tissue, rng.normal(0.0, 0.15, images.shape), images)
    images = np.where(((radius > 0.30) & (radius < 0.32))[None, ..., None], -0.8, images)
    return np.clip(images, -1, 1).astype(np.float32)


def operations(size: int, batch: int) -> dict:
    """name -> a no-argument callable running that compiled operation once (results fetched)."""
    import numpy as np
    import tensorflow as tf

    from ssagan_tf import lesions

    images = tf.constant(head_like(batch, size, seed=0))
    donors = head_like(batch, size, seed=1)
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size * 0.4) ** 2 + (xx - size * 0.55) ** 2 <= (size * 0.08) ** 2).astype(np.float32)
    masks = tf.constant(np.broadcast_to(mask[None, ..., None], (batch, size, size, 1)).copy())
    donors = tf.constant(np.where(masks.numpy() > 0, 0.8, donors))
    valid = tf.ones([batch])
    seed = tf.constant([0, 1], tf.int64)
    region = lesions.placement_region(images)
    compiled = {
        "head_mask": tf.function(lambda: lesions.head_mask(images)),
        "brain_mask": tf.function(lambda: lesions.brain_mask(images)),
        "placement_region": tf.function(lambda: lesions.placement_region(images)),
        "transplant": tf.function(lambda: lesions.transplant(images, donors, masks, valid, seed)[0]),
        "transplant_given_region": tf.function(lambda: lesions.transplant(images, donors, masks, valid, seed,
                                                                            region=region)[0]),
    }
    return {name: (lambda f=f: f().numpy()) for name, f in compiled.items()}


def measure(size: int, batch: int) -> list:
    ops = operations(size, batch)
    for run in ops.values():                  # tracing
        run()
    times = {name: [] for name in ops}
    order = list(ops)
    rng = random.Random(0)
    for _ in range(FLAGS.rounds):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            ops[name]()
            times[name].append(time.perf_counter() - start)
    rows = []
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rows.append({"operation": name, "size": size, "batch": batch, "ms_per_call": round(1000 * median, 2),
                     "ms_per_slice": round(1000 * median / batch, 2),
                     "spread_ms": round(1000 * (max(seconds) - min(seconds)), 2)})
    return rows


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result_file.check_or_exit(FLAGS.output, "bench_placement")
    rows = [row for s in FLAGS.sizes for b in FLAGS.batches for row in measure(int(s), int(b))]
    result = {"benchmark": "bench_placement", "rounds": FLAGS.rounds, "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg()[0], "rows": rows}
    result_file.write(FLAGS.output, result, "bench_placement")
    print(json.dumps(result, indent=1))
    print("| operation | size | batch | ms per call | ms per slice | spread (ms) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['operation']} | {r['size']} | {r['batch']} | {r['ms_per_call']} | {r['ms_per_slice']} | "
              f"{r['spread_ms']} |")


if __name__ == "__main__":
    app.run(main)
