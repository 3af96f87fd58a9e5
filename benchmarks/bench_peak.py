"""Peak arithmetic throughput of this machine per precision, for judging the train step's
achieved FLOP/s (`bench_train.py` reports `tflops` per step).

Measures, in float32 and bfloat16 (and float16 with --precisions), interleaved round by round:

    matmul   an N x N by N x N matrix product (2 N^3 FLOPs)
    conv     the generators' dominant convolution: 3x3, 4 ngf -> 4 ngf channels at size/4
             (the residual blocks), batch 1, forward only
    conv_step that convolution's forward, input gradient and weight gradient (3x its FLOPs)

and prints a JSON document and a table (GFLOP/s, median of rounds, with min-max).

    python benchmarks/bench_peak.py [--precisions=fp32,bf16] [--matmul=2048] [--size=256] [--ngf=64]
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import result_file  # noqa: E402 - beside this file

flags.DEFINE_list("precisions", ["fp32", "bf16"], "fp32, bf16 and/or fp16.")
flags.DEFINE_integer("matmul", 2048, "Matrix size N of the matmul kernel.", lower_bound=64)
flags.DEFINE_integer("size", 256, "Image size whose residual-block convolution is timed (at size/4).",
                     lower_bound=32)
flags.DEFINE_integer("ngf", 64, "Generator width (the convolution has 4 ngf channels).", lower_bound=1)
flags.DEFINE_integer("rounds", 7, "Timed rounds (each runs every kernel once, in a shuffled order).",
                     lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Kernel calls per timing.", lower_bound=1)
flags.DEFINE_string("output_json", None, "Also write the JSON result here.")
FLAGS = flags.FLAGS

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def kernels(precision: str, n: int, size: int, ngf: int) -> dict:
    """name -> (tf.function running it `repeats` times, FLOPs per call)."""
    import numpy as np
    import tensorflow as tf

    dtype = DTYPES[precision]
    rng = np.random.default_rng(0)
    a = tf.constant(rng.normal(size=(n, n)), dtype)
    b = tf.constant(rng.normal(size=(n, n)), dtype)
    c = 4 * ngf
    side = size // 4
    x = tf.constant(rng.normal(size=(1, side, side, c)), dtype)
    w = tf.Variable(tf.constant(rng.normal(size=(3, 3, c, c)) * 0.02, dtype))
    repeats = FLAGS.repeats

    # Every repeat's input depends on the previous result (times 0): identical calls would otherwise
    # be merged into one by grappler's common-subexpression elimination.
    @tf.function
    def matmul():
        out = a
        for _ in range(repeats):
            out = tf.matmul(a + out[0, 0] * 0, b)
        return out[0, 0]

    @tf.function
    def conv():
        total = tf.zeros((), dtype)
        for _ in range(repeats):
            total += tf.reduce_sum(tf.nn.conv2d(x + total * 0, w, 1, "SAME"))
        return total

    @tf.function
    def conv_step():
        total = tf.zeros((), tf.float32)
        for _ in range(repeats):
            inputs = x + tf.cast(total, dtype) * 0
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                y = tf.nn.conv2d(inputs, w, 1, "SAME")
                loss = tf.reduce_sum(tf.square(tf.cast(y, tf.float32)))   # upstream gradient 2y: new each repeat
            gx, gw = tape.gradient(loss, [inputs, w])
            total += tf.cast(tf.reduce_sum(gx) + tf.reduce_sum(gw), tf.float32)
        return total

    conv_flops = 2 * 9 * c * c * side * side
    return {"matmul": (matmul, 2 * n ** 3 * repeats), "conv": (conv, conv_flops * repeats),
            "conv_step": (conv_step, 3 * conv_flops * repeats)}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for precision in FLAGS.precisions:
        if precision not in DTYPES:
            raise app.UsageError(f"--precisions: unknown precision {precision!r} (fp32, bf16, fp16)")
    result_file.check_or_exit(FLAGS.output_json, "bench_peak")
    import numpy as np
    import tensorflow as tf

    built = {}
    for precision in FLAGS.precisions:
        for name, (fn, flops) in kernels(precision, FLAGS.matmul, FLAGS.size, FLAGS.ngf).items():
            float(fn())                                     # trace and warm up
            built[(name, precision)] = (fn, flops)
    times = {key: [] for key in built}
    order = list(built)
    rng = np.random.default_rng(0)
    for _ in range(FLAGS.rounds):
        rng.shuffle(order)
        for key in order:
            began = time.perf_counter()
            float(built[key][0]())
            times[key].append(time.perf_counter() - began)
    rows = []
    for (name, precision), (_, flops) in built.items():
        rates = [flops / t / 1e9 for t in times[(name, precision)]]
        rows.append({"kernel": name, "precision": precision, "gflops": float(np.median(rates)),
                     "gflops_min": float(min(rates)), "gflops_max": float(max(rates)),
                     "flops_per_timing": flops})
    document = {"benchmark": "bench_peak", "matmul_n": FLAGS.matmul, "conv": f"3x3 {4 * FLAGS.ngf}->{4 * FLAGS.ngf} at "
                f"{FLAGS.size // 4}^2, batch 1", "tensorflow": tf.__version__, "cpus": os.cpu_count(), "rows": rows}
    text = json.dumps(document, indent=2)
    print(text)
    print("| kernel | precision | GFLOP/s (median) | min-max |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['kernel']} | {r['precision']} | {r['gflops']:.0f} | {r['gflops_min']:.0f}-{r['gflops_max']:.0f} |")
    if FLAGS.output_json:
        result_file.write(FLAGS.output_json, document, "bench_peak")


if __name__ == "__main__":
    app.run(main)
