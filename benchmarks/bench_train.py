"""Train-step benchmark: step time and slices/s of the real train step (TrainStep under a
one-replica MirroredStrategy, synthetic batch, batch 1, 1 channel) for each image size x system
x graph/XLA x precision, with the peak resident memory and achieved FLOP/s of each configuration.

    python benchmarks/bench_train.py [--sizes=128,256] [--systems=cyclegan,ssa_cyclegan] [--modes=graph,xla]
        [--precisions=fp32,bf16] [--steps=5] [--ngf=64] [--n_res_blocks=9] [--phases=warmup,frozen]
        [--attention_ngf=0,32] [--torch_path=DIR] [--output=runs/bench/bench_train.json]

Each configuration runs in its own process, so that peak memory and XLA caches are its own.

    python benchmarks/bench_train.py --interleave [--sizes=128] [--modes=graph] [--steps=12] [--torch_path=DIR] ...

instead builds every configuration of a size in one process and times one step of each in turn, in
a new random order each round: each configuration's cost relative to our fp32 `cyclegan` is then
the median of ratios of steps taken seconds apart, which the speed drift of a shared machine
barely affects (peak memory is then the process's, for all configurations together). With
`--torch_path` the PyTorch reference steps (`bench_torch.py`: fp32 eager and bf16 autocast, for
each system and phase) are built in the same process and take part in the same rounds, and each
of our rows gets `vs_torch_best`: its speed-up over the faster of the two PyTorch steps of the
same system and phase, median of per-round ratios.

Every row has `framework` (tf/torch), `precision`, `step_s` (median) and `tflops` (achieved: the
step's FLOPs, counted analytically by `step_flops`, over its median time); compare with
`benchmarks/bench_peak.py`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import result_file  # noqa: E402 - beside this file

flags.DEFINE_list("sizes", ["128", "256"], "Image sizes (square).")
flags.DEFINE_list("systems", ["cyclegan", "ssa_cyclegan"], "Systems to time (names of ssagan_tf.models.SYSTEMS).")
flags.DEFINE_list("modes", ["graph", "xla"], "graph: tf.function; xla: the per-replica step compiled with XLA.")
flags.DEFINE_list("precisions", ["fp32", "bf16"], "Compute precisions of our step (fp32, bf16, fp16); with "
                  "--torch_path also PyTorch's fp32 eager and bf16 autocast steps.")
flags.DEFINE_integer("steps", 5, "Timed steps per configuration (after 2 untimed warm-up steps).")
flags.DEFINE_integer("ngf", 64, "Generator filters (64 = the paper).")
flags.DEFINE_integer("ndf", 64, "Discriminator filters.")
flags.DEFINE_integer("n_res_blocks", 9, "Residual blocks per generator.")
flags.DEFINE_string("output", "runs/bench/bench_train.json", "Where to write the JSON results.")
flags.DEFINE_string("torch_path", "", "Directory of a PyTorch install kept out of this venv (e.g. `pip install "
                    "--target DIR torch==2.13.0`): also time the reference PyTorch CycleGAN step at each size, "
                    "side by side. Empty: skip.")
flags.DEFINE_list("phases", ["warmup", "frozen"], "Training phases timed for systems with attention: warmup "
                  "(attention networks trained, full images to D) and frozen (after --attention_epochs: attention "
                  "only evaluated, D sees attended regions). Systems without attention have one phase.")
flags.DEFINE_list("attention_ngf", ["0"], "Attention-network widths timed for systems with attention "
                  "(run_train.py --attention_ngf; 0 = --ngf, the reference shape).")
flags.DEFINE_boolean("interleave", False, "Time all configurations of a size in one process, one step of each in "
                     "turn, and report each one's median step-time ratio to cyclegan (robust to machine drift).")
flags.DEFINE_string("one", None, "Internal: run the single configuration SIZE:SYSTEM:MODE:PHASE:ATTENTION_NGF:PRECISION "
                    "and print its JSON.")

FLAGS = flags.FLAGS


def build_step(strategy, size: int, system: str, mode: str, ngf: int, ndf: int, n_res_blocks: int,
               attention_ngf: int = 0, precision: str = "fp32", d_local: int = 0):
    """The real TrainStep of one configuration on a fixed synthetic batch: (run(phase) -> None,
    ModelConfig, SSAModels). `d_local`: run_train.py --d_local (local discriminators' crop side)."""
    import numpy as np
    import tensorflow as tf

    from ssagan_tf.models import ModelConfig
    from ssagan_tf.training.config import RunConfig
    from ssagan_tf.training.schedule import Schedule
    from ssagan_tf.training.state import TrainingState
    from ssagan_tf.training.step import TrainStep

    model = ModelConfig.for_system(system, image_size=size, channels=1, ngf=ngf, ndf=ndf, n_res_blocks=n_res_blocks,
                                   attention_ngf=attention_ngf, precision=precision, d_local=d_local)
    config = RunConfig(data_dir="synthetic", model_dir="unused", model=model, batch_size=1, jit_compile=mode == "xla",
                       epochs=1, attention_epochs=1)
    # One epoch of 1000 steps, all of it warm-up: step 0 is in the warm-up, step 1000 after it.
    schedule = Schedule.from_config(config, steps_per_epoch=1000)
    state = TrainingState.build(config, strategy, schedule)
    models, shape = state.models, (size, size, 1)
    train_step = TrainStep(strategy, state, config)
    rng = np.random.default_rng(0)
    mask = np.zeros((1, size, size, 1), np.float32)
    mask[:, size // 3: size // 2, size // 3: size // 2] = 1
    batch = {"normal": {"image": tf.constant(rng.uniform(-1, 1, (1, *shape)), tf.float32)},
             "tumor": {"image": tf.constant(rng.uniform(-1, 1, (1, *shape)), tf.float32), "mask": tf.constant(mask),
                       "has_mask": tf.constant([1.0])}}

    def run(phase: str):
        float(train_step(batch, schedule.phase(0 if phase == "warmup" else 1000))["generator_total"])

    return run, model, models


def forward_flops(model) -> int:
    """Multiply-add FLOPs (2 per MAC) of one batch-1 forward pass through the convolutions and dense
    layers of a Keras functional model (everything else is a few percent at most)."""
    from keras import layers

    from ssagan_tf.models.layers import SpectralConv2D

    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, SpectralConv2D)) and not isinstance(layer, layers.Conv2DTranspose):
            k = layer.kernel.shape
            out = layer.output.shape
            total += 2 * k[0] * k[1] * k[2] * k[3] * out[1] * out[2]
        elif isinstance(layer, layers.Conv2DTranspose):
            k = layer.kernel.shape                      # (kh, kw, out, in)
            inp = layer.input.shape
            total += 2 * k[0] * k[1] * k[2] * k[3] * inp[1] * inp[2]
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def step_flops(models, phase: str) -> int:
    """FLOPs of one train step (batch 1), counted from the networks' forward FLOPs F. A pass that
    trains the network's weights costs 3F (forward, activation gradients, weight gradients); a pass
    that only carries gradients through to its input costs 2F (forward, activation gradients); a
    pass without any gradient costs F. (The first layer's input gradient, not needed when the
    input is real data, is a small overcount.) Per step: the two generators twice each (3F);
    each discriminator once in the generator loss (2F) and twice in its own loss (3F); with
    attention, each attention network on a real slice (3F warm-up, F frozen) and on a fake in the
    cycle (3F warm-up, 2F frozen)."""
    generator = forward_flops(models.normal_to_tumor)
    discriminator = forward_flops(models.disc_tumor)
    total = 4 * 3 * generator + 2 * (2 + 2 * 3) * discriminator
    if models.attention_normal is not None:
        attention = forward_flops(models.attention_normal)
        total += 2 * ((3 + 3) if phase == "warmup" else (1 + 2)) * attention
    return total


def add_same_precision_ratios(rows: list) -> list:
    """`vs_cyclegan_same_precision` for interleaved rows: the median (95% bootstrap interval) over
    rounds of the step time over that of our `cyclegan` in the same precision and mode."""
    import numpy as np

    base = {(r["precision"], r["mode"], r["size"]): r["step_seconds"] for r in rows
            if r.get("framework") == "tf" and r["system"] == "cyclegan" and "step_seconds" in r}
    for r in rows:
        reference = base.get((r.get("precision"), r.get("mode"), r.get("size")))
        if r.get("framework") == "tf" and reference and "step_seconds" in r:
            ratios = np.array(r["step_seconds"]) / np.array(reference)
            (r["vs_cyclegan_same_precision"], r["vs_cyclegan_same_precision_low"],
             r["vs_cyclegan_same_precision_high"]) = median_with_interval(ratios)
    return rows


def _row(size, system, mode, phase, ngf, n_res_blocks, model, steps, times, warmup_seconds, flops=None,
         framework="tf", precision="fp32", extra=None) -> dict:
    import numpy as np

    seconds = float(np.median(times))
    row = {"size": size, "system": system, "framework": framework, "precision": precision, "mode": mode,
           "phase": phase, "ngf": ngf,
           "attention_ngf": (model.attention_filters if model.use_attention else None) if model else None,
           "n_res_blocks": n_res_blocks, "batch": 1,
           "steps": steps, "step_s": seconds, "step_seconds_median": seconds, "step_seconds_min": float(min(times)),
           "slices_per_second": 2 / seconds, "trace_and_warmup_seconds": warmup_seconds,
           "step_flops": flops, "tflops": flops / seconds / 1e12 if flops else None,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_count": os.cpu_count()}
    if framework == "tf":
        import tensorflow as tf

        row["tf_version"] = tf.__version__
    row.update(extra or {})
    return row


def measure(size: int, system: str, mode: str, steps: int, ngf: int, ndf: int, n_res_blocks: int,
            phase: str = "warmup", attention_ngf: int = 0, precision: str = "fp32") -> dict:
    """Time `steps` train steps of one configuration in this process."""
    import tensorflow as tf

    run, model, models = build_step(tf.distribute.MirroredStrategy(), size, system, mode, ngf, ndf, n_res_blocks,
                                    attention_ngf, precision)
    began = time.perf_counter()
    for _ in range(2):
        run(phase)
    warmup_seconds = time.perf_counter() - began
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        run(phase)
        times.append(time.perf_counter() - began)
    return _row(size, system, mode, phase, ngf, n_res_blocks, model, steps, times, warmup_seconds,
                step_flops(models, phase), precision=precision)


def measure_torch(size: int, system: str, phase: str, precision: str, steps: int, ngf: int, ndf: int,
                  n_res_blocks: int, attention_ngf: int, torch_path: str, flops=None) -> dict:
    """Time `steps` PyTorch reference steps (`bench_torch.py`) in this process."""
    from bench_torch import build_torch_step

    run, info = build_torch_step(torch_path, size, system, phase, precision, ngf, ndf, n_res_blocks, attention_ngf)
    began = time.perf_counter()
    for _ in range(2):
        run()
    warmup_seconds = time.perf_counter() - began
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return _row(size, system, "eager", phase, ngf, n_res_blocks, None, steps, times, warmup_seconds, flops,
                framework="torch", precision=precision, extra=info)


def median_with_interval(values, rounds: int = 2000, seed: int = 0) -> tuple:
    """Median of `values` and its 95% bootstrap interval (percentiles of resampled medians)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(rounds, len(values)), replace=True), axis=1)
    return float(np.median(values)), float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def measure_interleaved(size: int, configurations: list, steps: int, ngf: int, ndf: int, n_res_blocks: int,
                        torch_path: str = "") -> list:
    """Time `steps` rounds of one step of every configuration (framework, system, mode, phase,
    attention_ngf, precision) in turn, in this process, in a new random order each round. Each of
    our rows gets `vs_cyclegan`, the median over rounds of its step time divided by that of our fp32
    `cyclegan` (same mode) in the same round, with a 95% bootstrap interval; with PyTorch rows
    present also `vs_torch_best` (speed-up over the faster PyTorch step of its system and phase)."""
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    built, warmup_seconds, flops = {}, {}, {}
    for c in configurations:
        framework, system, mode, phase, width, precision = c
        if framework == "torch":
            from bench_torch import build_torch_step

            run, info = build_torch_step(torch_path, size, system, phase, precision, ngf, ndf, n_res_blocks, width)
            built[c] = (lambda r: (lambda _phase: r()))(run), None, info
        else:
            key = (system, mode, width, precision)          # both phases of one model share its networks
            if key not in built:
                built[key] = build_step(strategy, size, system, mode, ngf, ndf, n_res_blocks, width, precision)
            run, _, models = built[key]
            flops[(system, phase, width)] = step_flops(models, phase)
        began = time.perf_counter()
        for _ in range(2):
            _runner(built, c)(phase)
        warmup_seconds[c] = time.perf_counter() - began
    times = {c: [] for c in configurations}
    order = list(configurations)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        rng.shuffle(order)               # a new order each round: no configuration keeps a position
        for c in order:
            began = time.perf_counter()
            _runner(built, c)(c[3])
            times[c].append(time.perf_counter() - began)
    rows = []
    for c in configurations:
        framework, system, mode, phase, width, precision = c
        model = None if framework == "torch" else built[(system, mode, width, precision)][1]
        extra = built[c][2] if framework == "torch" else None
        row = _row(size, system, mode if framework == "tf" else "eager", phase, ngf, n_res_blocks, model, steps,
                   times[c], warmup_seconds[c], flops.get((system, phase, width)), framework, precision, extra)
        base = times.get(("tf", "cyclegan", mode, "warmup", 0, "fp32"))
        row["vs_cyclegan"], row["vs_cyclegan_low"], row["vs_cyclegan_high"] = (
            median_with_interval(np.array(times[c]) / np.array(base)) if base and framework == "tf"
            else (None, None, None))
        torch_times = [times[t] for t in configurations if t[0] == "torch" and t[1] == system and t[3] == phase]
        if torch_times and framework == "tf":
            best = np.minimum.reduce([np.array(t) for t in torch_times])     # the faster PyTorch step, per round
            row["vs_torch_best"], row["vs_torch_best_low"], row["vs_torch_best_high"] = \
                median_with_interval(best / np.array(times[c]))
        row["step_seconds"] = times[c]                # per round, in round order
        row["interleaved"] = True
        rows.append(row)
    return add_same_precision_ratios(rows)


def _runner(built: dict, c: tuple):
    framework, system, mode, phase, width, precision = c
    return built[c][0] if framework == "torch" else built[(system, mode, width, precision)][0]


def label(r: dict) -> str:
    width = r.get("attention_ngf")
    name = f"{r['system']} (attention ngf {width})" if width else r["system"]
    return f"{name}, {r.get('framework', 'tf')} {r.get('precision', 'fp32')}"


def _percent(r: dict, key: str) -> str:
    if r.get(key) is None:
        return "-"
    text = f"{100 * (r[key] - 1):+.1f}%"
    if r.get(f"{key}_low") is not None:
        text += f" [{100 * (r[f'{key}_low'] - 1):+.1f}, {100 * (r[f'{key}_high'] - 1):+.1f}]"
    return text


def table(rows: list) -> str:
    lines = ["| size | system | mode | phase | step s (median) | slices/s | TFLOP/s | vs fp32 cyclegan [95%] | "
             "vs cyclegan, same precision [95%] | vs faster PyTorch [95%] | peak RSS MB | trace+warm-up s |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {label(r)} | {r['mode']} | {r['phase']} | "
                         f"failed: {r['error'][:60]} | | | | | | | |")
            continue
        ratio = _percent(r, "vs_cyclegan")
        if r.get("system") == "cyclegan" and r.get("precision") == "fp32" and r.get("framework") == "tf" \
                and r.get("vs_cyclegan_low") is not None:
            ratio = "(base)"
        torch = f"{r['vs_torch_best']:.2f}x [{r['vs_torch_best_low']:.2f}, {r['vs_torch_best_high']:.2f}]" \
            if r.get("vs_torch_best") is not None else "-"
        tflops = f"{r['tflops']:.3f}" if r.get("tflops") else "-"
        lines.append(f"| {r['size']} | {label(r)} | {r['mode']} | {r['phase']} | {r['step_seconds_median']:.3f} | "
                     f"{r['slices_per_second']:.2f} | {tflops} | {ratio} | {_percent(r, 'vs_cyclegan_same_precision')} | "
                     f"{torch} | {r['peak_rss_mb']:.0f} | "
                     f"{r['trace_and_warmup_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    for mode in FLAGS.modes:
        if mode not in ("graph", "xla"):
            raise app.UsageError(f"--modes: unknown mode {mode!r} (graph, xla)")
    from ssagan_tf.models import SYSTEMS

    for system in FLAGS.systems:
        if system not in SYSTEMS:
            raise app.UsageError(f"--systems: unknown system {system!r}; choose from {sorted(SYSTEMS)}")
    for precision in FLAGS.precisions:
        if precision not in ("fp32", "bf16", "fp16"):
            raise app.UsageError(f"--precisions: unknown precision {precision!r} (fp32, bf16, fp16)")
    if FLAGS.steps < 1:
        raise app.UsageError("--steps must be >= 1")
    sizes = [int(s) for s in FLAGS.sizes]
    if FLAGS.torch_path and not os.path.isdir(os.path.join(FLAGS.torch_path, "torch")):
        raise app.UsageError(f"--torch_path: no torch package in {FLAGS.torch_path}")
    for phase in FLAGS.phases:
        if phase not in ("warmup", "frozen"):
            raise app.UsageError(f"--phases: unknown phase {phase!r} (warmup, frozen)")
    try:
        attention_ngfs = [int(a) for a in FLAGS.attention_ngf]
    except ValueError:
        raise app.UsageError(f"--attention_ngf: integers expected, got {FLAGS.attention_ngf}") from None
    if any(a < 0 for a in attention_ngfs):
        raise app.UsageError("--attention_ngf: values must be >= 0 (0 = --ngf)")
    if FLAGS.one:
        size, system, mode, phase, attention_ngf, precision = FLAGS.one.split(":")
        if mode == "torch":
            row = measure_torch(int(size), system, phase, precision, FLAGS.steps, FLAGS.ngf, FLAGS.ndf,
                                FLAGS.n_res_blocks, int(attention_ngf), FLAGS.torch_path)
        else:
            row = measure(int(size), system, mode, FLAGS.steps, FLAGS.ngf, FLAGS.ndf, FLAGS.n_res_blocks, phase,
                          int(attention_ngf), precision)
        print(json.dumps(row))
        return 0
    result_file.check_or_exit(FLAGS.output, "bench_train")
    rows = []
    for size in sizes:
        ours, theirs = [], []
        for system in FLAGS.systems:
            attention = SYSTEMS[system]["use_attention"]
            phases = FLAGS.phases if attention else ["warmup"]
            ours += [("tf", system, mode, phase, width, precision) for precision in FLAGS.precisions
                     for mode in FLAGS.modes for width in (attention_ngfs if attention else [0]) for phase in phases]
            if FLAGS.torch_path and system in ("cyclegan", "ssa_cyclegan"):
                theirs += [("torch", system, "torch", phase, width, precision) for precision in ("fp32", "bf16")
                           for width in (attention_ngfs if attention else [0]) for phase in phases]
        if ("tf", "cyclegan", FLAGS.modes[0], "warmup", 0, "fp32") not in ours:
            ours.insert(0, ("tf", "cyclegan", FLAGS.modes[0], "warmup", 0, "fp32"))   # the ratios' base
        if FLAGS.interleave:
            for row in measure_interleaved(size, ours + theirs, FLAGS.steps, FLAGS.ngf, FLAGS.ndf, FLAGS.n_res_blocks,
                                           FLAGS.torch_path):
                rows.append(row)
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            continue
        for framework, system, mode, phase, width, precision in theirs + ours:
            cmd = [sys.executable, os.path.abspath(__file__), f"--one={size}:{system}:{mode}:{phase}:{width}:{precision}",
                   f"--steps={FLAGS.steps}", f"--ngf={FLAGS.ngf}", f"--ndf={FLAGS.ndf}",
                   f"--n_res_blocks={FLAGS.n_res_blocks}", f"--torch_path={FLAGS.torch_path}"]
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            if done.returncode == 0:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            else:
                rows.append({"size": size, "system": system, "mode": mode, "phase": phase, "framework": framework,
                             "precision": precision,
                             "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    result_file.write(FLAGS.output, {"rows": rows}, "bench_train")
    print(table(rows))
    print(f"wrote {FLAGS.output}")
    return 0


if __name__ == "__main__":
    app.run(main)
