"""The cost of `--d_local` (local discriminators on crops where the attention points): the real
train step of `ssa_cyclegan` with and without them, timed interleaved.

    python benchmarks/bench_local.py [--sizes=128,256] [--crops=32,64] [--ngf=32] [--ndf=32]
        [--n_res_blocks=6] [--rounds=8] [--output=runs/bench/bench_local.json]

(--sizes, --ngf, --ndf, --n_res_blocks and --output are bench_train.py's flags, with lgg.flags'
networks as defaults here.)

For each size, the step without local discriminators and one step per crop side that fits
(24 <= crop <= size) are built in one process (`bench_train.build_step`: batch 1, a fixed
synthetic batch, graph mode, fp32) and one step of each configuration and phase (warm-up, when
the attention trains; frozen, after it) is timed in turn, in a new random order each round. Each
row's `vs_off` is the median over rounds of its step time over that of the step without local
discriminators of the same phase in the same round, with a 95% bootstrap interval, which the
speed drift of a shared machine barely moves. Prints one JSON object and a table.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import result_file  # noqa: E402 - beside this file

# Importing bench_train defines --sizes, --ngf, --ndf, --n_res_blocks and --output (defaults set below).
from bench_train import build_step, median_with_interval  # noqa: E402

flags.DEFINE_list("crops", ["32", "64"], "Crop sides of --d_local to time (those from 24 to the size).")
flags.DEFINE_integer("rounds", 8, "Timed rounds (after two untimed steps of each configuration).", lower_bound=2)
flags.register_validator("crops", lambda v: all(s.isdigit() and int(s) >= 24 for s in v), "--crops: integers >= 24")
# lgg.flags' networks by default (the paper's are --ngf=64 --ndf=64 --n_res_blocks=9).
for name, value in (("ngf", 32), ("ndf", 32), ("n_res_blocks", 6), ("output", "runs/bench/bench_local.json")):
    flags.FLAGS.set_default(name, value)
FLAGS = flags.FLAGS
PHASES = ("warmup", "frozen")


def measure(size: int, crops: list, rounds: int) -> list:
    """Rows (size, d_local, phase, step_s, vs_off and its interval) of one size, timed interleaved."""
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    runs = {}
    for crop in [0] + crops:
        runs[crop] = build_step(strategy, size, "ssa_cyclegan", "graph", FLAGS.ngf, FLAGS.ndf, FLAGS.n_res_blocks,
                                d_local=crop)[0]
        for phase in PHASES:
            for _ in range(2):
                runs[crop](phase)
    configurations = [(crop, phase) for crop in runs for phase in PHASES]
    times = {c: [] for c in configurations}
    rng = np.random.default_rng(0)
    order = list(configurations)
    for _ in range(rounds):
        rng.shuffle(order)
        for crop, phase in order:
            began = time.perf_counter()
            runs[crop](phase)
            times[(crop, phase)].append(time.perf_counter() - began)
    rows = []
    for crop, phase in configurations:
        ratio = np.array(times[(crop, phase)]) / np.array(times[(0, phase)])
        median, low, high = median_with_interval(ratio)
        rows.append({"size": size, "d_local": crop, "phase": phase, "ngf": FLAGS.ngf, "ndf": FLAGS.ndf,
                     "n_res_blocks": FLAGS.n_res_blocks, "step_s": float(np.median(times[(crop, phase)])),
                     "vs_off": median, "vs_off_low": low, "vs_off_high": high, "rounds": rounds,
                     "step_seconds": times[(crop, phase)]})
    return rows


def table(rows: list) -> str:
    lines = [f"{'size':>5} {'d_local':>8} {'phase':>7} {'step s':>8} {'vs off [95% CI]':>22}"]
    for r in rows:
        lines.append(f"{r['size']:>5} {r['d_local'] or 'off':>8} {r['phase']:>7} {r['step_s']:>8.3f} "
                     f"{r['vs_off']:>8.3f} [{r['vs_off_low']:.3f}, {r['vs_off_high']:.3f}]")
    return "\n".join(lines)


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result_file.check_or_exit(FLAGS.output, "bench_local")
    rows = []
    for size in (int(s) for s in FLAGS.sizes):
        crops = sorted({int(c) for c in FLAGS.crops if 24 <= int(c) <= size})
        rows += measure(size, crops, FLAGS.rounds)
    result = {"benchmark": "bench_local", "rows": rows}
    result_file.write(FLAGS.output, result, "bench_local")
    print(json.dumps(result))
    print(table(rows))


if __name__ == "__main__":
    app.run(main)
