"""An evaluation's output folder: its lock, the ledger of finished classifiers, the cache of
synthetic slices, and atomic report files, so that a rerun resumes and never looks current early.

- `evaluate.lock` (ssagan_tf.locking): one evaluation per --output_dir.
- `classifiers/<key>.json`: one finished classifier (fold, seed, row) with every setting that
  changes its result (`key`); a rerun with the same settings reuses it instead of retraining.
- `cache/<key>.npz`: one augmenter's translations of one fold's slices, made once and reused by
  every seed and arm, and by reruns.
- At start the previous `report.md` and `results.json` (when this program wrote them) are
  removed, so an interrupted rerun leaves no report that looks current; the new ones are written
  to a temporary file, flushed to disk and renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from ssagan_tf import io as durable
from ssagan_tf.exported import Translation

LOCK_NAME = "evaluate.lock"
REPORT_TITLE = "# Classifier evaluation"
OWN_FILES = ("report.md", "results.json")


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def to_json_safe(value):
    """Plain JSON types, with NaN and infinities as null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_safe(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _written_by_us(path: str) -> bool:
    try:
        with open(path) as f:
            if path.endswith(".md"):
                return f.readline().startswith(REPORT_TITLE)
            return isinstance(json.load(f).get("config"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def retire_report(output_dir: str) -> list:
    """Remove the previous report.md/results.json of an evaluation from `output_dir` (they are
    rewritten at the end; the classifiers stay in the ledger). A file of that name this program
    did not write is refused, not touched. Returns the names removed."""
    removed = []
    for name in OWN_FILES:
        path = os.path.join(output_dir, name)
        if not os.path.exists(path):
            continue
        if not _written_by_us(path):
            raise ValueError(f"--output_dir {output_dir}: {name} is not a report this evaluation wrote; "
                             "it is left alone: choose another --output_dir")
        os.remove(path)
        removed.append(name)
    return removed


class Ledger:
    """Finished classifiers, one JSON file each, keyed by the settings that decide their result."""

    def __init__(self, output_dir: str):
        self.directory = os.path.join(output_dir, "classifiers")
        os.makedirs(self.directory, exist_ok=True)
        self.reused = 0

    def _path(self, key: dict) -> str:
        return os.path.join(self.directory, f"{digest(key)}.json")

    def get(self, key: dict) -> dict | None:
        try:
            with open(self._path(key)) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            return None                   # missing, or cut short by an interruption: train again
        if entry.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        self.reused += 1
        return entry["result"]

    def put(self, key: dict, result: dict) -> None:

        durable.atomic_write(self._path(key), json.dumps(to_json_safe({"key": key, "result": result}), allow_nan=False))


class TranslationCache:
    """One augmenter's translations of one fold's slices, as .npz files keyed by what made them."""

    def __init__(self, output_dir: str):
        self.directory = os.path.join(output_dir, "cache")
        os.makedirs(self.directory, exist_ok=True)

    def load(self, key: dict) -> dict | None:
        path = os.path.join(self.directory, f"{digest(key)}.npz")
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) != json.dumps(key, sort_keys=True, default=str):
                    return None
                names = sorted({n.split("/")[0] for n in stored.files if "/" in n})
                return {name: Translation(*(stored[f"{name}/{part}"] for part in ("source", "image", "attention")))
                        for name in names}
        except (OSError, ValueError, KeyError):
            return None

    def save(self, key: dict, translations: dict) -> None:
        path = os.path.join(self.directory, f"{digest(key)}.npz")
        arrays = {"key": np.array(json.dumps(key, sort_keys=True, default=str))}
        for name, t in translations.items():
            arrays.update({f"{name}/source": t.source, f"{name}/image": t.image, f"{name}/attention": t.attention})
        with durable.atomic_output(path, suffix=".npz") as temp:
            np.savez(temp, **arrays)


def in_masks_identity(identity: dict) -> dict:
    """What identifies an export's slices painted inside transplanted lesion masks (`--in_masks`):
    its weights' `identity` and the version of the lesion placement, so that a new placement makes
    them again instead of reusing slices painted in the masks of an earlier one."""
    from ssagan_tf import lesions

    return dict(identity, in_masks=True, placement=lesions.PLACEMENT_VERSION)


def classes_identity(identity: dict, classes: tuple) -> dict:
    """What identifies the synthetic slices a classifier takes from an augmenter: its `identity`,
    and the classes kept when `--tumors_only` or `--normals_only` keeps one (both classes: the
    identity unchanged, so classifiers trained before these flags existed are still found)."""
    from ssagan_tf.evaluation.arms import SYNTHETIC_CLASSES

    return identity if set(classes) == set(SYNTHETIC_CLASSES) else dict(identity, classes=sorted(classes))


def augmenter_identity(path: str) -> dict:
    """What identifies an exported augmenter's weights: its version folder and the checksums of
    saved_model.pb and the variables index (built-in controls: the versions of their lesion
    placement and of what they draw, so that slices cached by an earlier version are made again)."""
    if not path:
        from ssagan_tf import lesions       # here: the ledger's other users need no TensorFlow
        from ssagan_tf.evaluation import controls

        return {"builtin": True, "placement": lesions.PLACEMENT_VERSION, "draw": controls.DRAW_VERSION}
    identity = {"path": os.path.abspath(path)}
    for name in ("saved_model.pb", os.path.join("variables", "variables.index")):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                identity[name] = hashlib.sha256(f.read()).hexdigest()
    return identity
