"""Classifier benchmark: what the evaluation's protocol costs, in classifiers per hour, for each
ResNet18 width and slice size on this machine, and an estimate for a GPU.

    python benchmarks/bench_classifier.py [--widths=16,64] [--sizes=64,128] [--batches=4]
        [--train_slices=1000] [--val_slices=250] [--epochs=25] [--precision=auto]
        [--gpu_tflops=20] [--output=runs/bench/bench_classifier.json]

Each configuration trains the evaluation's own compiled classifier (`ssagan_tf.evaluation.
classifier`) on random slices: one untimed epoch of `--batches` batches (tracing), then `--batches`
timed training batches and as many validation batches. A classifier of the protocol costs
epochs x (train_slices / train rate + val_slices / inference rate); classifiers per hour follow.
The GPU column is an estimate, not a measurement: per batch the analytic FLOPs of a training step
(3x the forward convolutions and dense layer) over an assumed sustained `--gpu_tflops`, but no
less than an assumed latency floor `--gpu_step_ms`, plus `--gpu_epoch_s` per epoch.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import result_file  # noqa: E402 - beside this file

from ssagan_tf import precision as precisions  # noqa: E402 - after the repository joins the path

flags.DEFINE_list("widths", ["16", "64"], "ResNet18 base widths (64 = the standard ResNet18).")
flags.DEFINE_list("sizes", ["64", "128"], "Slice sizes (square).")
flags.DEFINE_integer("channels", 1, "Input channels.")
flags.DEFINE_integer("batch_size", 32, "Classifier batch size (the evaluation's default).")
flags.DEFINE_integer("batches", 4, "Timed batches per configuration, for training and for inference.")
flags.DEFINE_integer("train_slices", 1000, "Training slices per classifier the estimate assumes.")
flags.DEFINE_integer("val_slices", 250, "Validation slices scored after every epoch.")
flags.DEFINE_integer("epochs", 25, "Epochs per classifier the estimate assumes (early stopping included).")
precisions.define_flag("of the classifiers")
flags.DEFINE_float("gpu_tflops", 20.0, "Sustained TFLOP/s assumed for the GPU estimate (a data-centre GPU in "
                   "mixed precision reaches ~5-15% of its peak on 64-128 px slices at batch 32).")
flags.DEFINE_float("gpu_step_ms", 4.0, "Latency floor per batch assumed for the GPU estimate (kernel launches, "
                   "Keras' step loop): small networks are latency-bound, not FLOP-bound, on a GPU.")
flags.DEFINE_float("gpu_epoch_s", 0.5, "Fixed cost per epoch assumed for the GPU estimate (epoch loop, callbacks).")
flags.DEFINE_string("output", "runs/bench/bench_classifier.json", "JSON output path.")
FLAGS = flags.FLAGS


def forward_flops(model) -> float:
    """Multiply-adds x 2 of the convolutions and the dense layer for one slice."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2.0 * h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2.0 * cin * cout
    return total


def measure(width: int, size: int, precision: str) -> dict:
    import numpy as np
    import tensorflow as tf

    from ssagan_tf.judge.classifier import Classifier

    n = FLAGS.batch_size * FLAGS.batches
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (n, size, size, FLAGS.channels)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.float32)[:, None]
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(FLAGS.batch_size).cache()
    classifier = Classifier(size, FLAGS.channels, width, 1e-3, precision)
    model = classifier.model
    model.fit(data, epochs=1, verbose=0)                       # tracing
    model.predict(data, verbose=0)
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    train_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    model.predict(data, verbose=0)
    infer_rate = n / (time.perf_counter() - start)
    per_classifier = FLAGS.epochs * (FLAGS.train_slices / train_rate + FLAGS.val_slices / infer_rate)
    flops = forward_flops(model)
    # GPU estimate: each batch costs its FLOPs at the assumed rate, but never less than the latency floor.
    batch_s = lambda slices, factor: max(factor * flops * FLAGS.batch_size / (FLAGS.gpu_tflops * 1e12),  # noqa: E731
                                         FLAGS.gpu_step_ms / 1000) * -(-slices // FLAGS.batch_size)
    gpu_seconds = FLAGS.epochs * (batch_s(FLAGS.train_slices, 3) + batch_s(FLAGS.val_slices, 1) + FLAGS.gpu_epoch_s)
    return {"width": width, "size": size, "precision": precision, "parameters": int(model.count_params()),
            "forward_gflops_per_slice": round(flops / 1e9, 4), "train_slices_per_s": round(train_rate, 1),
            "inference_slices_per_s": round(infer_rate, 1),
            "cpu_tflops_achieved": round(3 * flops * train_rate / 1e12, 4),
            "seconds_per_classifier": round(per_classifier, 1),
            "classifiers_per_hour": round(3600 / per_classifier, 2),
            "gpu_estimate_classifiers_per_hour": round(3600 / gpu_seconds, 1)}


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ssagan_tf.precision import choose_precision

    result_file.check_or_exit(FLAGS.output, "bench_classifier")
    precision = choose_precision(FLAGS.precision).precision
    rows = [measure(int(w), int(s), precision) for w in FLAGS.widths for s in FLAGS.sizes]
    result = {"assumptions": {"train_slices": FLAGS.train_slices, "val_slices": FLAGS.val_slices,
                              "epochs": FLAGS.epochs, "batch_size": FLAGS.batch_size,
                              "gpu_tflops_assumed": FLAGS.gpu_tflops, "gpu_step_ms_assumed": FLAGS.gpu_step_ms,
                              "gpu_epoch_s_assumed": FLAGS.gpu_epoch_s, "cpu_count": os.cpu_count(),
                              "load_average": os.getloadavg()[0]},
              "rows": rows}
    result_file.write(FLAGS.output, result, "bench_classifier")
    print(f"| width | size | params | train slices/s | classifiers/h (this CPU, {precision}) | "
          f"classifiers/h (GPU, estimate at {FLAGS.gpu_tflops:g} TFLOP/s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['width']} | {r['size']} | {r['parameters'] / 1e6:.2f} M | {r['train_slices_per_s']} | "
              f"{r['classifiers_per_hour']} | {r['gpu_estimate_classifiers_per_hour']} |")
    print(f"(a classifier = {FLAGS.epochs} epochs of {FLAGS.train_slices} training + {FLAGS.val_slices} validation "
          f"slices; JSON: {FLAGS.output})")


if __name__ == "__main__":
    app.run(main)
