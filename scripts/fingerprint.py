"""A fingerprint of the whole workflow's results, to check that a refactor changes no number.

Runs the chain users run, small and in fp32 with op determinism, on a fresh phantom cohort in
one fixed folder (outputs record their own paths, and checksums cover them, so every run must use
the same one):
conversion, the judge, training (every optional loss the ssa_cyclegan system has, generator
averaging, best-checkpoint selection by the judge), export, augmentation and evaluation. Then it
writes one JSON of what they produced:

    steps        every logged scalar of training, per tag and step (the per-step losses)
    checkpoints  a sha256 of every variable of every checkpoint (training and selection)
    files        a sha256 of every other output file: binary files as written, JSON files with
                 their run-dependent values (times, paths, versions, host) left out, text reports
                 with every line that holds a time or a path left out

    python -m scripts.fingerprint --fingerprint=before.json
    (change the code)
    python -m scripts.fingerprint --fingerprint=after.json
    python -m scripts.fingerprint --compare=before.json,after.json

The chain goes to --work_dir, which must be new or one this script made (it is then emptied).

`--compare` prints every entry that differs and exits 1 if any does. A run takes a few minutes on
2 CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

from absl import flags

flags.DEFINE_string("work_dir", "/tmp/ssagan_fingerprint", "The chain's outputs: a new folder, or one an earlier "
                    "run of this script made (it is emptied first). Keep it the same for runs you compare.")
flags.DEFINE_string("fingerprint", None, "Where the fingerprint JSON goes.")
flags.DEFINE_list("compare", None, "Two fingerprint JSON files to compare (before,after) instead of running.")
FLAGS = flags.FLAGS

# JSON keys whose values depend on the run, not on the numbers: when, where, on what, how long.
VOLATILE_KEY = re.compile(r"(time|seconds|date|created|elapsed|host|path|dir|version|command|argv|python|"
                          r"tensorflow|keras|numpy|platform|machine|cpu|device|pid|started|finished|duration|"
                          r"eta|speed|per_s|_s$|sha256|checksum|^bytes$)", re.IGNORECASE)
# Lines of text reports that name a time or a path.
VOLATILE_LINE = re.compile(r"(\d+(\.\d+)? ?(s|min|h|ms)\b|/|\d{4}-\d{2}-\d{2}|seconds|version)")
BINARY_SUFFIXES = (".tfrecord", ".png", ".npz", ".npy", ".pb", ".nii.gz", ".keras", ".tif", ".csv", ".pdf")
SKIPPED_SUFFIXES = (".lock", ".log", "fingerprint.pb")    # a SavedModel's fingerprint.pb hashes its own pb
SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
HASH_NAMED = re.compile(r"^[0-9a-f]{16,}\.")
MARKER = ".fingerprint-chain"                                # says this script made the work folder
SPEED_TAG = re.compile(r"(per_second|seconds|per_s$|_time)")


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items()) if not VOLATILE_KEY.search(str(k))}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str) and os.sep in value:
        return "<path>"
    if isinstance(value, str) and SHA256.match(value):
        return "<sha256>"             # a checksum of files hashed here themselves, or of a dated manifest
    return value


def file_digest(path: str) -> str | None:
    """sha256 of a file's run-independent content; None for files that hold none. Checksums
    recorded in JSON files are left out (they cover compressed bytes; the files themselves are
    hashed here, decompressed)."""
    name = os.path.basename(path)
    if name.endswith(SKIPPED_SUFFIXES) or name.startswith("events.out.tfevents"):
        return None
    if name.endswith(".pdf"):
        return None                       # matplotlib stamps its creation date into PDFs
    with open(path, "rb") as f:
        data = f.read()
    if name.endswith(".tfrecord"):
        data = _records_digest(path, gzip=data[:2] == b"\x1f\x8b")
    elif name.endswith(".npz"):               # arrays by value; a JSON string among them as JSON
        import numpy as np

        with np.load(path, allow_pickle=False) as arrays:
            data = b"".join(_array_digest(arrays[n]) for n in sorted(arrays.files))
    elif name.endswith(".keras"):                # a zip: its members, without the date it was saved
        import zipfile

        with zipfile.ZipFile(path) as archive:
            data = b"".join(hashlib.sha256(archive.read(n)).digest() for n in sorted(archive.namelist())
                            if n != "metadata.json")
    elif name.endswith(".json"):
        try:
            data = json.dumps(_stable(json.loads(data)), sort_keys=True).encode()
        except ValueError:
            pass
    elif name.endswith((".md", ".txt", ".flags")):
        lines = data.decode("utf-8", "replace").splitlines()
        data = "\n".join(line for line in lines if not VOLATILE_LINE.search(line)).encode()
    return hashlib.sha256(data).hexdigest()


def _array_digest(array) -> bytes:
    if array.dtype.kind == "U" and array.ndim == 0:
        try:
            return hashlib.sha256(json.dumps(_stable(json.loads(str(array))), sort_keys=True).encode()).digest()
        except ValueError:
            pass
    return hashlib.sha256(array.tobytes()).digest()


def _records_digest(path: str, gzip: bool) -> bytes:
    """The records of a TFRecord file of tf.train.Example, each serialized with its features in
    name order: a GZIP header holds the time it was written, and protobuf writes a map's entries
    in an order that changes from process to process."""
    import tensorflow as tf

    digest = hashlib.sha256()
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else ""):
        example = tf.train.Example.FromString(record.numpy())
        digest.update(example.SerializeToString(deterministic=True))
    return digest.digest()


def checkpoint_digests(prefix: str) -> dict:
    """variable name -> sha256 of its value, for one checkpoint prefix."""
    import numpy as np
    import tensorflow as tf

    digests = {}
    for name, _ in tf.train.list_variables(prefix):
        value = np.asarray(tf.train.load_variable(prefix, name))
        digests[name] = hashlib.sha256(value.tobytes() if value.dtype != object else repr(value).encode()).hexdigest()
    return digests


def scalar_steps(log_dir: str) -> dict:
    """tag -> {step: value repr} of every scalar TensorBoard summary under `log_dir`."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    steps = {}
    for root, _, names in os.walk(log_dir):
        for name in sorted(names):
            if not name.startswith("events.out.tfevents"):
                continue
            for record in tf.data.TFRecordDataset(os.path.join(root, name)):
                event = event_pb2.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if SPEED_TAG.search(value.tag):
                        continue
                    if value.HasField("tensor") and value.tensor.dtype in (1, 2):   # float32, float64
                        number = tf.make_ndarray(value.tensor)
                        if number.ndim == 0:
                            key = os.path.relpath(os.path.join(root, value.tag), log_dir)
                            steps.setdefault(key, {})[str(event.step)] = repr(float(number))
                    elif value.HasField("simple_value"):
                        key = os.path.relpath(os.path.join(root, value.tag), log_dir)
                        steps.setdefault(key, {})[str(event.step)] = repr(value.simple_value)
    return steps


def fingerprint(out: str) -> dict:
    """The fingerprint of a finished chain's outputs under `out`."""
    import tensorflow as tf

    result = {"steps": scalar_steps(os.path.join(out, "train")), "checkpoints": {}, "files": {}}
    prefixes = set()
    for root, _, names in os.walk(out):
        for name in names:
            if name.endswith(".index"):
                prefixes.add(os.path.join(root, name[:-len(".index")]))
    for prefix in sorted(prefixes):
        result["checkpoints"][os.path.relpath(prefix, out)] = checkpoint_digests(prefix)
    for root, dirs, names in os.walk(out):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if any(path.startswith(p + ".") for p in prefixes) or name == "checkpoint":
                continue
            if name == MARKER:
                continue
            digest = file_digest(path)
            if digest is None:
                continue
            key = os.path.relpath(path, out)
            if HASH_NAMED.match(name):        # a cache entry named by a hash of run-dependent settings
                key = os.path.join(os.path.dirname(key), "<hash>" + name[name.index("."):])
                result["files"][key] = sorted(result["files"].get(key, []) + [digest])
            else:
                result["files"][key] = digest
    del tf
    return result


def compare(before: dict, after: dict) -> list:
    """Every differing entry, as 'section: key: before -> after' lines."""
    lines = []
    for section in sorted(set(before) | set(after)):
        a, b = before.get(section, {}), after.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                    inner = sorted(k for k in set(a[key]) | set(b[key]) if a[key].get(k) != b[key].get(k))
                    lines.append(f"{section}: {key}: {len(inner)} differ, e.g. {inner[:3]}")
                else:
                    lines.append(f"{section}: {key}: {a.get(key)} -> {b.get(key)}")
    return lines


def run_chain(out: str) -> None:
    """The small fp32 chain, each step the command a user runs."""
    data, judge = os.path.join(out, "data"), os.path.join(out, "judge")
    train, export = os.path.join(out, "train"), os.path.join(out, "export")
    steps = [
        ["-m", "data_prep.phantom", f"--output_dir={os.path.join(out, 'phantom')}", "--cases=6", "--size=32",
         "--slices=24"],
        ["-m", "data_prep.convert", f"--input={os.path.join(out, 'phantom')}", "--format=brats",
         f"--output_dir={data}", "--modalities=t1ce", "--image_size=32", "--train_fraction=0.5",
         "--val_fraction=0.25", "--num_shards=2"],
        ["-m", "ssagan_tf.evaluation.judge", f"--data_dir={data}", f"--output_dir={judge}", "--width=8",
         "--epochs=2", "--precision=fp32"],
        ["run_train.py", f"--data_dir={data}", f"--model_dir={train}", f"--judge_dir={judge}", "--model=ssa_cyclegan",
         "--ngf=8", "--ndf=8", "--n_res_blocks=1", "--batch_size=2", "--epochs=3", "--attention_epochs=1",
         "--precision=fp32", "--deterministic", "--log_every=1", "--image_every=10", "--checkpoint_every=10",
         "--pool_size=2", "--ema_decay=0.9", "--select_best", "--lesion_guidance=1", "--lambda_fill=10",
         "--lambda_attention_area=1", "--attention_area=0.06", "--cycle_attention=source", "--upsample=resize"],
        ["-m", "ssagan_tf.export", f"--model_dir={train}", f"--export_dir={export}", "--model_name=ssagan"],
        ["run_augment.py", f"--model={os.path.join(export, 'ssagan')}", f"--data_dir={data}",
         f"--output_dir={os.path.join(out, 'augmented')}", "--split=train", "--ratio=1.0", "--format=tfrecord",
         f"--judge={judge}", "--precision=fp32"],
        ["run_evaluate.py", f"--data_dir={data}", f"--augmenters=ssa={os.path.join(export, 'ssagan')}",
         f"--output_dir={os.path.join(out, 'report')}", "--arms=none,classic,synthetic,mixup", "--seeds=0",
         "--epochs=2", "--patience=2", "--width=8", f"--judge={judge}", "--precision=fp32"],
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_DETERMINISTIC_OPS="1")
    for args in steps:
        print("$ python", " ".join(args), flush=True)
        subprocess.run([sys.executable, *args], check=True, env=env)


def main(argv) -> None:
    del argv
    if FLAGS.compare:
        with open(FLAGS.compare[0]) as f:
            before = json.load(f)
        with open(FLAGS.compare[1]) as f:
            after = json.load(f)
        lines = compare(before, after)
        counts = {s: sum(len(v) if isinstance(v, dict) else 1 for v in before.get(s, {}).values())
                  for s in before}
        print(f"compared {counts}: {len(lines)} entries differ")
        for line in lines:
            print("  " + line)
        sys.exit(1 if lines else 0)
    if not FLAGS.fingerprint:
        sys.exit("give --fingerprint, or --compare=before.json,after.json")
    work = os.path.abspath(FLAGS.work_dir)
    if os.path.exists(work):
        if not os.path.isfile(os.path.join(work, MARKER)):
            sys.exit(f"{work} exists and was not made by this script: give a new --work_dir")
        shutil.rmtree(work)
    os.makedirs(work)
    open(os.path.join(work, MARKER), "w").close()
    run_chain(work)
    result = fingerprint(work)
    with open(FLAGS.fingerprint, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"{FLAGS.fingerprint}: {sum(len(v) for v in result['steps'].values())} logged values, "
          f"{sum(len(v) for v in result['checkpoints'].values())} checkpoint variables, "
          f"{len(result['files'])} files")


if __name__ == "__main__":
    from ssagan_tf import cli

    cli.run(main, __doc__)
