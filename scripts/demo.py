"""`make demo`: the whole workflow on the embedded phantom cohort, no download.

Each step runs the same command a user runs, printed before it runs, with outputs under
--output_dir (default runs/demo/):

    phantom/   the synthetic BraTS-layout cohort        (python -m data_prep.phantom)
    data/      TFRecord shards + manifest + report      (python -m data_prep.convert)
    stream     a pass of the training pipeline          (ssagan_tf.data.pipeline)
    judge/     the judge classifier                     (python -m ssagan_tf.judge)
    train/     checkpoints, TensorBoard logs, samples   (python run_train.py --flagfile=demo.flags)
    export/    the TF Serving model directory           (python -m ssagan_tf.export)
    augmented/ synthetic slices + contact sheet         (python run_augment.py)
    report/    the classifier evaluation report         (python run_evaluate.py)
    crossval/  a 2-fold patient-level cross-validation (python -m scripts.crossval --folds=2):
               per fold a judge and a short SSA-CycleGAN run on the fold's training patients
               only (the export above saw test patients of both folds), then the cheap
               baselines, the controls and SSA's synthetic slices, with 95% bootstrap CIs
    demo.json  the settings these outputs were made with

Run again with the same settings, it resumes (training continues from its checkpoint). With other
settings (--image_size, --cases) it refuses at start, before anything is written: pass --fresh to
remove what an earlier demo wrote there (only the folders above and demo.json) and start over, or
choose another --output_dir.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import flags

from ssagan_tf import io as durable

flags.DEFINE_string("output_dir", "runs/demo", "Where every demo output goes.")
flags.DEFINE_integer("cases", 16, "Phantom cases (every fifth is tumor-free).")
flags.DEFINE_integer("image_size", 64, "Slice size of the demo dataset.")
flags.DEFINE_integer("epochs", 8, "Training epochs of the demo model.")
flags.DEFINE_boolean("fresh", False, "Remove what an earlier demo wrote in --output_dir (its step folders and "
                     "demo.json, nothing else) and start over.")
FLAGS = flags.FLAGS

OUTPUTS = ("phantom", "data", "judge", "train", "export", "augmented", "report", "crossval")
RECORD = "demo.json"


def check_output_dir(out: str, settings: dict, fresh: bool) -> None:
    """Make `out` ready for a demo with `settings` (what its data and model depend on), or refuse
    before anything is written. Another demo's outputs are removed only with `fresh`; folders of
    the demo's names without its record are never removed (nothing says the demo wrote them)."""
    record = os.path.join(out, RECORD)
    present = [name for name in OUTPUTS if os.path.exists(os.path.join(out, name))]
    if os.path.isfile(record):
        with open(record) as f:
            earlier = json.load(f)
        if fresh:
            for name in present:
                shutil.rmtree(os.path.join(out, name))
            os.remove(record)
            present = []
        elif earlier != settings:
            differ = ", ".join(f"--{k}={earlier.get(k)}" for k in settings if earlier.get(k) != settings[k])
            raise ValueError(f"--output_dir {out} holds a demo made with {differ}; pass --fresh to remove it and "
                             "start over, or choose another --output_dir")
    elif present:
        raise ValueError(f"--output_dir {out} holds {', '.join(p + '/' for p in present)} but no {RECORD}, so "
                         "they are not known to be a demo's outputs; choose another --output_dir (--fresh removes "
                         "only what a demo recorded)")
    os.makedirs(out, exist_ok=True)
    durable.atomic_write(record, json.dumps(settings))


def converted(data_dir: str) -> bool:
    """Whether an earlier run of this demo (same settings: `check_output_dir`) finished converting:
    the converter writes its manifest last, so a manifest means a whole dataset."""
    from ssagan_tf.data import schema

    return os.path.isfile(os.path.join(data_dir, schema.MANIFEST_NAME))


def run(title: str, args: list) -> None:
    print(f"\n== {title}\n$ {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable if a == "python" else a for a in args])
    if result.returncode != 0:
        raise SystemExit(f"demo: step '{title}' failed (exit {result.returncode})")
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def stream(data_dir: str) -> None:
    """One pass of the unpaired training pipeline over the demo training split."""
    from ssagan_tf.data import pipeline, schema

    print("\n== stream the training split through the tf.data pipeline", flush=True)
    dataset = schema.open(data_dir)
    ds = pipeline.make_unpaired_dataset(dataset, "train", global_batch_size=8, seed=0, repeat=False)
    batches, start = 0, time.perf_counter()
    for batch in ds:
        batches += 1
    shape = tuple(batch["normal"]["image"].shape)
    print(f"   {batches} batches of {shape} normal + tumor slices with masks "
          f"({dataset.count('train', 'normal')} normal, {dataset.count('train', 'tumor')} tumor training "
          f"slices) in {time.perf_counter() - start:.1f} s")


def main(argv) -> None:
    del argv
    out = FLAGS.output_dir
    check_output_dir(out, {"image_size": FLAGS.image_size, "cases": FLAGS.cases}, FLAGS.fresh)
    cohort, data = os.path.join(out, "phantom"), os.path.join(out, "data")
    start = time.perf_counter()
    if converted(data):
        # A conversion records when and where it was written, so converting again would make the
        # data another dataset to the training run, and an interrupted demo could not resume.
        print(f"\n== reuse the phantom cohort converted by the earlier demo run ({data})", flush=True)
    else:
        run("write the phantom cohort (BraTS NIfTI layout)",
            ["python", "-m", "data_prep.phantom", f"--output_dir={cohort}", f"--cases={FLAGS.cases}", "--size=64",
             "--slices=40"])
        run("convert it to TFRecords",
            ["python", "-m", "data_prep.convert", f"--input={cohort}", "--format=brats", f"--output_dir={data}",
             "--modalities=t1ce", f"--image_size={FLAGS.image_size}", "--train_fraction=0.6",
             "--val_fraction=0.15", "--num_shards=2", "--overwrite"])
    stream(data)
    judge = os.path.join(out, "judge")
    run("train the judge, a ResNet18 on the real training slices that scores the translations",
        ["python", "-m", "ssagan_tf.judge", f"--data_dir={data}", f"--output_dir={judge}", "--width=16"])
    train, export = os.path.join(out, "train"), os.path.join(out, "export")
    augmented, report = os.path.join(out, "augmented"), os.path.join(out, "report")
    run("train SSA-CycleGAN (resumes if run before)",
        ["python", "run_train.py", "--flagfile=demo.flags", f"--data_dir={data}", f"--model_dir={train}",
         f"--epochs={FLAGS.epochs}", f"--judge={judge}"])
    run("export the generators for TF Serving",
        ["python", "-m", "ssagan_tf.export", f"--model_dir={train}", f"--export_dir={export}", "--model_name=ssagan"])
    run("augment the training split 1:1 with synthetic slices",
        ["python", "run_augment.py", f"--model={os.path.join(export, 'ssagan')}", f"--data_dir={data}",
         f"--output_dir={augmented}", "--split=train", "--ratio=1.0", "--format=tfrecord", "--overwrite"])
    run("evaluate: ResNet18 trained on real vs real + synthetic slices",
        ["python", "run_evaluate.py", f"--data_dir={data}", f"--augmenters=ssa={os.path.join(export, 'ssagan')}",
         f"--output_dir={report}", "--arms=none,classic,synthetic", "--seeds=0,1", "--epochs=6", "--patience=3",
         "--width=16", f"--judge={judge}"])
    crossval = os.path.join(out, "crossval")
    run("cross-validate by patient (2 folds): per fold a judge and SSA-CycleGAN trained on its training patients, "
        "then the cheap baselines, the controls and SSA, with 95% bootstrap CIs",
        ["python", "-m", "scripts.crossval", f"--data_dir={data}", f"--output_dir={crossval}", "--folds=2",
         "--systems=ssa_cyclegan", "--train_flagfile=demo.flags",
         f"--train_flags=--epochs={max(2, FLAGS.epochs // 2)} --attention_epochs=1 --warmup_patience=0",
         # Width 16, as the judge and classifiers above: at width 8 TensorFlow 2.21's oneDNN kernels
         # crashed in training (double free, segmentation fault) on an AMD EPYC, in fp32 and bf16
         # alike, and ran with TF_ENABLE_ONEDNN_OPTS=0.
         "--judge_flags=--width=16 --epochs=10 --patience=3",
         "--arms=none,classic,mixup,synthetic",
         "--evaluate_flags=--seeds=0 --epochs=4 --patience=2 --width=16 --bootstrap_resamples=500"])
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; outputs under {out}/")
    print(f"   conversion report:  {os.path.join(data, 'conversion_report.md')}")
    print(f"   TensorBoard:        .venv/bin/tensorboard --logdir={train}")
    print(f"   sample translations: {os.path.join(train, 'samples')}/")
    print(f"   contact sheet:      {os.path.join(augmented, 'contact_sheet.png')}")
    print(f"   evaluation report:  {os.path.join(report, 'report.md')}")
    print(f"   cross-validated:    {os.path.join(crossval, 'report', 'report.md')}")


if __name__ == "__main__":
    from ssagan_tf import cli

    cli.run(main, __doc__)
