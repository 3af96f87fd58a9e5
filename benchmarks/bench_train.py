"""Train-step benchmark: step time and slices/s of the real train step (TrainStep under a
one-replica MirroredStrategy, synthetic batch, batch 1, 1 channel) for each image size x system
x graph/XLA, with the peak resident memory of each configuration.

    python benchmarks/bench_train.py [--sizes=128,256] [--systems=cyclegan,ssa_cyclegan] [--modes=graph,xla]
        [--steps=5] [--ngf=64] [--n_res_blocks=9] [--phases=warmup,frozen] [--attention_ngf=0,32]
        [--output=runs/bench/bench_train.json]

Each configuration runs in its own process, so that peak memory and XLA caches are its own.

    python benchmarks/bench_train.py --interleave [--sizes=128] [--modes=graph] [--steps=12] ...

instead builds every configuration of a size in one process and times one step of each in turn, in
a new random order each round: each configuration's cost relative to our `cyclegan` is then the
median of ratios of steps taken seconds apart, which the speed drift of a shared machine barely
affects (peak memory is then the process's, for all configurations together).
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

flags.DEFINE_list("sizes", ["128", "256"], "Image sizes (square).")
flags.DEFINE_list("systems", ["cyclegan", "ssa_cyclegan"], "Systems to time (names of ssagan_tf.models.SYSTEMS).")
flags.DEFINE_list("modes", ["graph", "xla"], "graph: tf.function; xla: the per-replica step compiled with XLA.")
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
flags.DEFINE_string("one", None, "Internal: run the single configuration SIZE:SYSTEM:MODE:PHASE:ATTENTION_NGF and "
                    "print its JSON.")

FLAGS = flags.FLAGS


def build_step(strategy, size: int, system: str, mode: str, ngf: int, ndf: int, n_res_blocks: int,
               attention_ngf: int = 0):
    """The real TrainStep of one configuration on a fixed synthetic batch: (run(phase) -> None, ModelConfig)."""
    import numpy as np
    import tensorflow as tf

    from ssagan_tf.models import ModelConfig, build_models
    from ssagan_tf.training.config import RunConfig
    from ssagan_tf.training.pool import make_pools
    from ssagan_tf.training.step import TrainStep, make_optimizers

    model = ModelConfig.for_system(system, image_size=size, channels=1, ngf=ngf, ndf=ndf, n_res_blocks=n_res_blocks,
                                   attention_ngf=attention_ngf)
    config = RunConfig(data_dir="synthetic", model_dir="unused", model=model, batch_size=1, jit_compile=mode == "xla")
    with strategy.scope():
        models = build_models(model)
        gen_opt, disc_opt = make_optimizers(config, total_steps=1000)
        gen_opt.build(models.generator_variables + models.attention_variables)
        disc_opt.build(models.discriminator_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False)
    shape = (size, size, 1)
    pools = [make_pools(strategy, config.pool_size, shape, 0, name) for name in ("pool_tumor", "pool_normal")]
    train_step = TrainStep(strategy, models, config, gen_opt, disc_opt, *pools, step)
    rng = np.random.default_rng(0)
    mask = np.zeros((1, size, size, 1), np.float32)
    mask[:, size // 3: size // 2, size // 3: size // 2] = 1
    batch = {"normal": {"image": tf.constant(rng.uniform(-1, 1, (1, *shape)), tf.float32)},
             "tumor": {"image": tf.constant(rng.uniform(-1, 1, (1, *shape)), tf.float32), "mask": tf.constant(mask),
                       "has_mask": tf.constant([1.0])}}

    def run(phase: str):
        float(train_step(batch, phase == "warmup")["generator_total"])

    return run, model


def _row(size, system, mode, phase, ngf, n_res_blocks, model, steps, times, warmup_seconds) -> dict:
    import numpy as np
    import tensorflow as tf

    seconds = float(np.median(times))
    return {"size": size, "system": system, "mode": mode, "phase": phase, "ngf": ngf,
            "attention_ngf": model.attention_filters if model.use_attention else None,
            "n_res_blocks": n_res_blocks, "batch": 1,
            "steps": steps, "step_seconds_median": seconds, "step_seconds_min": float(min(times)),
            "slices_per_second": 2 / seconds, "trace_and_warmup_seconds": warmup_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tf_version": tf.__version__, "cpu_count": os.cpu_count()}


def measure(size: int, system: str, mode: str, steps: int, ngf: int, ndf: int, n_res_blocks: int,
            phase: str = "warmup", attention_ngf: int = 0) -> dict:
    """Time `steps` train steps of one configuration in this process."""
    import tensorflow as tf

    run, model = build_step(tf.distribute.MirroredStrategy(), size, system, mode, ngf, ndf, n_res_blocks,
                            attention_ngf)
    began = time.perf_counter()
    for _ in range(2):
        run(phase)
    warmup_seconds = time.perf_counter() - began
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        run(phase)
        times.append(time.perf_counter() - began)
    return _row(size, system, mode, phase, ngf, n_res_blocks, model, steps, times, warmup_seconds)


def median_with_interval(values, rounds: int = 2000, seed: int = 0) -> tuple:
    """Median of `values` and its 95% bootstrap interval (percentiles of resampled medians)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(rounds, len(values)), replace=True), axis=1)
    return float(np.median(values)), float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def measure_interleaved(size: int, configurations: list, steps: int, ngf: int, ndf: int, n_res_blocks: int) -> list:
    """Time `steps` rounds of one step of every (system, mode, phase, attention_ngf) in turn, in this
    process, in a new random order each round; each row gets `vs_cyclegan`, the median over rounds of
    its step time divided by that of `cyclegan` (same mode) in the same round, with a 95% bootstrap
    interval (`vs_cyclegan_low`, `vs_cyclegan_high`), and its per-round times."""
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    built, warmup_seconds = {}, {}
    for system, mode, phase, width in configurations:
        key = (system, mode, width)                      # both phases of one model share its networks
        if key not in built:
            built[key] = build_step(strategy, size, system, mode, ngf, ndf, n_res_blocks, width)
        run = built[key][0]
        began = time.perf_counter()
        for _ in range(2):
            run(phase)
        warmup_seconds[(system, mode, phase, width)] = time.perf_counter() - began
    times = {c: [] for c in configurations}
    order = list(configurations)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        rng.shuffle(order)               # a new order each round: no configuration keeps a position
        for system, mode, phase, width in order:
            run = built[(system, mode, width)][0]
            began = time.perf_counter()
            run(phase)
            times[(system, mode, phase, width)].append(time.perf_counter() - began)
    rows = []
    for c in configurations:
        system, mode, phase, width = c
        row = _row(size, system, mode, phase, ngf, n_res_blocks, built[(system, mode, width)][1], steps, times[c],
                   warmup_seconds[c])
        base = times.get(("cyclegan", mode, "warmup", 0))
        row["vs_cyclegan"], row["vs_cyclegan_low"], row["vs_cyclegan_high"] = (
            median_with_interval(np.array(times[c]) / np.array(base)) if base else (None, None, None))
        row["step_seconds"] = times[c]                # per round, in round order
        row["interleaved"] = True
        rows.append(row)
    return rows


def measure_torch(size: int, steps: int, ngf: int, ndf: int, n_res_blocks: int, torch_path: str) -> dict:
    """The same CycleGAN step in PyTorch eager (junyanz/pytorch-CycleGAN-and-pix2pix structure:
    G update, then D update on pooled fakes; ResNet generators, PatchGANs, LSGAN, L1 cycle 10)."""
    sys.path.insert(0, torch_path)
    import numpy as np
    import torch
    from torch import nn

    def norm_relu(c):
        return [nn.InstanceNorm2d(c), nn.ReLU(True)]

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=False), *norm_relu(c),
                                      nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=False), nn.InstanceNorm2d(c))

        def forward(self, x):
            return x + self.body(x)

    def generator():
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(1, ngf, 7, bias=False), *norm_relu(ngf)]
        for m in (1, 2):
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=False), *norm_relu(ngf * m * 2)]
        layers += [Residual(ngf * 4) for _ in range(n_res_blocks)]
        for m in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1, bias=False),
                       *norm_relu(ngf * m // 2)]
        return nn.Sequential(*layers, nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Tanh())

    def discriminator():
        layers, c = [nn.Conv2d(1, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], ndf
        for stride in (2, 2, 1):
            layers += [nn.Conv2d(c, c * 2, 4, stride, 1, bias=False), nn.InstanceNorm2d(c * 2), nn.LeakyReLU(0.2, True)]
            c *= 2
        return nn.Sequential(*layers, nn.Conv2d(c, 1, 4, 1, 1))

    torch.manual_seed(0)
    g_n2t, g_t2n, d_t, d_n = generator(), generator(), discriminator(), discriminator()
    opt_g = torch.optim.Adam(list(g_n2t.parameters()) + list(g_t2n.parameters()), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_t.parameters()) + list(d_n.parameters()), 2e-4, betas=(0.5, 0.999))
    x_n, x_t = torch.rand(1, 1, size, size) * 2 - 1, torch.rand(1, 1, size, size) * 2 - 1
    pools = {"t": [], "n": []}

    def pooled(key, image):
        pool = pools[key]
        if len(pool) < 50:
            pool.append(image)
            return image
        if np.random.rand() < 0.5:
            i = np.random.randint(50)
            pool[i], image = image, pool[i]
        return image

    def step():
        fake_t, fake_n = g_n2t(x_n), g_t2n(x_t)
        rec_n, rec_t = g_t2n(fake_t), g_n2t(fake_n)
        opt_g.zero_grad()
        loss_g = ((d_t(fake_t) - 1) ** 2).mean() + ((d_n(fake_n) - 1) ** 2).mean() \
            + 10 * ((rec_n - x_n).abs().mean() + (rec_t - x_t).abs().mean())
        loss_g.backward()
        opt_g.step()
        opt_d.zero_grad()
        loss_d = 0.0
        for disc, real, fake in ((d_t, x_t, pooled("t", fake_t.detach())), (d_n, x_n, pooled("n", fake_n.detach()))):
            loss_d = loss_d + 0.5 * (((disc(real) - 1) ** 2).mean() + (disc(fake) ** 2).mean())
        loss_d.backward()
        opt_d.step()
        return float(loss_g)

    began = time.perf_counter()
    for _ in range(2):
        step()
    warmup_seconds = time.perf_counter() - began
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    seconds = float(np.median(times))
    return {"size": size, "system": "cyclegan", "mode": "torch", "phase": "warmup", "ngf": ngf, "n_res_blocks": n_res_blocks, "batch": 1,
            "steps": steps, "step_seconds_median": seconds, "step_seconds_min": float(min(times)),
            "slices_per_second": 2 / seconds, "trace_and_warmup_seconds": warmup_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def label(r: dict) -> str:
    width = r.get("attention_ngf")
    return f"{r['system']} (attention ngf {width})" if width else r["system"]


def table(rows: list) -> str:
    lines = ["| size | system | mode | phase | step s (median) | slices/s | vs cyclegan [95%] | peak RSS MB | "
             "trace+warm-up s |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {label(r)} | {r['mode']} | {r['phase']} | "
                         f"failed: {r['error'][:60]} | | | | |")
            continue
        ratio = r.get("vs_cyclegan")
        if ratio is None:
            ratio = "-"
        elif r.get("system") == "cyclegan" and r.get("vs_cyclegan_low") is not None:
            ratio = "(base)"
        else:
            ratio = f"{100 * (ratio - 1):+.1f}%"
            if r.get("vs_cyclegan_low") is not None:
                ratio += f" [{100 * (r['vs_cyclegan_low'] - 1):+.1f}, {100 * (r['vs_cyclegan_high'] - 1):+.1f}]"
        lines.append(f"| {r['size']} | {label(r)} | {r['mode']} | {r['phase']} | {r['step_seconds_median']:.3f} | "
                     f"{r['slices_per_second']:.2f} | {ratio} | {r['peak_rss_mb']:.0f} | "
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
    if FLAGS.steps < 1:
        raise app.UsageError("--steps must be >= 1")
    sizes = [int(s) for s in FLAGS.sizes]
    if FLAGS.torch_path and FLAGS.interleave:
        raise app.UsageError("--interleave times our configurations only; run --torch_path without it")
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
        size, system, mode, phase, attention_ngf = FLAGS.one.split(":")
        if mode == "torch":
            row = measure_torch(int(size), FLAGS.steps, FLAGS.ngf, FLAGS.ndf, FLAGS.n_res_blocks, FLAGS.torch_path)
        else:
            row = measure(int(size), system, mode, FLAGS.steps, FLAGS.ngf, FLAGS.ndf, FLAGS.n_res_blocks, phase,
                          int(attention_ngf))
        print(json.dumps(row))
        return 0
    rows = []
    for size in sizes:
        ours = []
        for system in FLAGS.systems:
            attention = SYSTEMS[system]["use_attention"]
            ours += [(system, mode, phase, width) for mode in FLAGS.modes
                     for width in (attention_ngfs if attention else [0])
                     for phase in (FLAGS.phases if attention else ["warmup"])]
        if FLAGS.interleave:
            for row in measure_interleaved(size, ours, FLAGS.steps, FLAGS.ngf, FLAGS.ndf, FLAGS.n_res_blocks):
                rows.append(row)
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            continue
        # The PyTorch reference first at each size, then ours, so that both see similar machine load.
        runs = ([("cyclegan", "torch", "warmup", 0)] if FLAGS.torch_path else []) + ours
        for system, mode, phase, width in runs:
            cmd = [sys.executable, os.path.abspath(__file__), f"--one={size}:{system}:{mode}:{phase}:{width}",
                   f"--steps={FLAGS.steps}", f"--ngf={FLAGS.ngf}", f"--ndf={FLAGS.ndf}",
                   f"--n_res_blocks={FLAGS.n_res_blocks}", f"--torch_path={FLAGS.torch_path}"]
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            if done.returncode == 0:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            else:
                rows.append({"size": size, "system": system, "mode": mode, "phase": phase,
                             "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(rows, f, indent=2)
    print(table(rows))
    print(f"wrote {FLAGS.output}")
    return 0


if __name__ == "__main__":
    app.run(main)
