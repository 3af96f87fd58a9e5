"""Peak memory of one serving request: export a full-size model (random weights) translating
`--chunk` slices at a time, then call `normal_to_tumor` once on `--batch` slices and report the
process's peak resident memory before and after the call (one process per measurement: the peak
only grows).

    python benchmarks/bench_serving_memory.py --chunk=16 --batch=512
    python benchmarks/bench_serving_memory.py --chunk=512 --batch=512     # the whole batch at once
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("chunk", 16, "Slices the exported signature translates at once.", lower_bound=1)
flags.DEFINE_integer("batch", 512, "Slices in the request.", lower_bound=1)
flags.DEFINE_integer("size", 64, "Slice size.", lower_bound=32)
flags.DEFINE_integer("ngf", 64, "Generator width.", lower_bound=1)
flags.DEFINE_integer("n_res_blocks", 9, "Residual blocks per generator.", lower_bound=0)
FLAGS = flags.FLAGS


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from ssagan_tf import export
    from ssagan_tf.models import ModelConfig, build_models

    models = build_models(ModelConfig(image_size=FLAGS.size, channels=1, ngf=FLAGS.ngf, ndf=FLAGS.ngf,
                                      n_res_blocks=FLAGS.n_res_blocks))
    with tempfile.TemporaryDirectory() as folder:
        version_dir = export.write_export(models, folder, tau=0.1, chunk_size=FLAGS.chunk)
        signature = tf.saved_model.load(version_dir).signatures["normal_to_tumor"]
        images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (FLAGS.batch, FLAGS.size, FLAGS.size, 1))
                             .astype(np.float32))
        signature(images=images[:2])                       # traced and warmed up on a small batch
        before, start = _peak_mb(), time.perf_counter()
        signature(images=images)["image"].numpy()
        print(f"chunk {FLAGS.chunk}, batch {FLAGS.batch} of {FLAGS.size}^2 (ngf {FLAGS.ngf}, {FLAGS.n_res_blocks} "
              f"blocks): peak RSS {before:.0f} MB before the request, {_peak_mb():.0f} MB after "
              f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    app.run(main)
