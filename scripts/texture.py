"""Period-2 texture of exported translators inside their attention: do they paint checkerboards
or stripes where they change a slice?

    python -m scripts.texture --data_dir=DATA --models=resize=EXPORT_A,transpose=EXPORT_B [--split=val]

For each model and direction (normal->tumor on the split's normal slices, tumor->normal on its
tumor slices): inside each translated slice's attended region (attention >= the export's tau),
the mean response of three period-2 detectors on the translation over the same on its input
(`ssagan_tf.metrics.period_two_ratios`: 1 = as much checkerboard / row / column texture as the
real slice there). Prints one JSON object, means with 95% bootstrap intervals over slices
(seeded), and a table.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

flags.DEFINE_string("data_dir", None, "Converted dataset whose --split is translated.")
flags.DEFINE_list("models", None, "NAME=EXPORT pairs: TF Serving model directories or version directories.")
flags.DEFINE_string("split", "val", "Split to translate.")
flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples of the intervals.", lower_bound=1)
FLAGS = flags.FLAGS


def texture(arrays: dict, translator, resamples: int) -> dict:
    """direction -> {slices, attended (share of pixels), pattern: [mean, low, high]}."""
    from ssagan_tf import metrics
    from ssagan_tf.data.schema import DIRECTIONS, LABELS, SOURCE_DOMAIN

    result = {}
    for direction in DIRECTIONS:
        sources = arrays["image"][arrays["label"] == LABELS[SOURCE_DOMAIN[direction]]]
        if not len(sources):
            continue
        out = translator.translate(direction, sources)
        regions = out.attention[..., 0] >= (translator.tau or 0.1)
        ratios = metrics.period_two_ratios(out.image, sources, regions)
        result[direction] = {"slices": int(len(sources)), "attended": float(regions.mean()),
                             **{name: metrics.mean_interval(ratios[name], resamples)
                                for name in metrics.PERIOD_TWO_PATTERNS}}
    return result


def main(argv) -> None:
    del argv
    from ssagan_tf.data import schema
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.exported import load_translator

    if not FLAGS.data_dir or not FLAGS.models:
        raise app.UsageError("--data_dir and --models are required")
    models = [item.partition("=")[::2] for item in FLAGS.models]
    if any(not name or not path for name, path in models):
        raise app.UsageError(f"--models: expected NAME=EXPORT pairs, got {','.join(FLAGS.models)}")
    arrays = load_split_arrays(schema.open(FLAGS.data_dir), FLAGS.split)
    results = {name: texture(arrays, load_translator(path, kinds=("version", "base")), FLAGS.resamples)
               for name, path in models}
    print(json.dumps(results, indent=1))
    print("\nmodel      direction         slices  attended  checker               rows                  cols")
    for name, directions in results.items():
        for direction, r in directions.items():
            cells = "  ".join(f"{r[p][0]:.2f} [{r[p][1]:.2f}, {r[p][2]:.2f}]" for p in ("checker", "rows", "cols"))
            print(f"{name:10} {direction:17} {r['slices']:6d}  {r['attended']:8.3f}  {cells}")


if __name__ == "__main__":
    from ssagan_tf import cli

    cli.run(main, __doc__)
