"""scripts/fill.py: healthy fill of an export's tumor->normal inside transplanted lesion masks,
beside the references (no fill; the brain's median; biharmonic inpainting), by value and from the
command line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT
from scripts import fill


def _arrays(size=48):
    """Three normal slices (a textured head disc on -1) and two labelled tumor slices."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.42 * size) ** 2
    images = np.full((5, size, size, 1), -1.0, np.float32)
    images[:, head, 0] = rng.uniform(-0.4, 0.2, (5, int(head.sum())))
    masks = np.zeros((5, size, size, 1), np.float32)
    masks[3:, 20:27, 18:25] = 1.0
    images[3:][masks[3:] > 0] = 0.9
    return {"image": images, "mask": masks, "has_mask": np.array([0, 0, 0, 1, 1], np.float32),
            "label": np.array([0, 0, 0, 1, 1])}


class MedianPainter:
    """An export stand-in whose tumor->normal paints exactly what `fill.median_fill` paints."""

    def in_masks(self, images, masks, direction):
        assert direction == "tumor_to_normal"
        return fill.median_fill(images, masks), masks


def test_median_fill_puts_the_brains_median_inside_the_mask_only():
    arrays = _arrays()
    images, masks = arrays["image"][:1].copy(), np.zeros((1, 48, 48, 1), np.float32)
    masks[0, 22:26, 22:26] = 1.0
    out = fill.median_fill(images, masks)
    inside = masks[0, ..., 0] > 0
    from ssagan_tf import lesions

    brain = lesions.brain_mask(images).numpy()[0, ..., 0] > 0
    np.testing.assert_allclose(out[0, inside, 0], np.median(images[0, brain & ~inside, 0]))
    np.testing.assert_array_equal(out[0, ~inside], images[0, ~inside])


def test_biharmonic_fill_meets_a_smooth_surface_inside_the_mask_only():
    """A plane a + b row + c column is biharmonic, so inpainting a hole in it restores it; outside
    the mask nothing moves."""
    rows, columns = np.mgrid[:40, :40]
    plane = (-0.3 + 0.01 * rows - 0.02 * columns).astype(np.float32)
    images = np.stack([plane, plane[::-1]])[..., None].repeat(2, axis=-1)
    masks = np.zeros((2, 40, 40, 1), np.float32)
    masks[:, 15:24, 12:22] = 1.0
    holed = images.copy()
    holed[masks[..., 0] > 0] = 0.9
    out = fill.biharmonic_fill(holed, masks)
    np.testing.assert_allclose(out, images, atol=1e-4)
    np.testing.assert_array_equal(out[masks[..., 0] == 0], holed[masks[..., 0] == 0])
    np.testing.assert_array_equal(fill.biharmonic_fill(holed, np.zeros_like(masks)), holed)


def test_fill_scores_the_model_and_the_references_by_value():
    from ssagan_tf.training.validation import transplanted_pairs

    arrays = _arrays()
    result = fill.fill(arrays, MedianPainter(), seed=0, resamples=50)
    assert result["slices"] == 3
    # The stand-in paints the median: its scores are the median reference's.
    assert result["model"] == result["median"]
    originals, lesioned, masks = transplanted_pairs(arrays, 0)
    inside = masks[..., 0] > 0
    unfilled_l1 = np.mean([np.abs(lesioned[k][inside[k]] - originals[k][inside[k]]).mean() for k in range(3)])
    assert result["unfilled"]["l1"][0] == pytest.approx(unfilled_l1, rel=1e-6)
    # The bright lesion left in place is far worse than the median fill.
    assert result["unfilled"]["l1"][0] > result["median"]["l1"][0] + 0.5
    assert result["biharmonic"]["l1"][0] < result["unfilled"]["l1"][0] - 0.5
    low, mean, high = result["median"]["psnr"][1], result["median"]["psnr"][0], result["median"]["psnr"][2]
    assert low <= mean <= high
    assert fill.fill({k: v[:3] for k, v in arrays.items()}, MedianPainter(), 0, 10) is None      # no tumor slices


@pytest.mark.slow
def test_the_command_scores_a_real_export_on_a_split(tmp_path, tiny_dataset):
    from test_export import TINY, make_run_dir

    from ssagan_tf.data import schema
    from ssagan_tf.data.pipeline import load_split_arrays
    from ssagan_tf.models import ModelConfig

    run = str(tmp_path / "run")
    make_run_dir(run, ModelConfig(**TINY))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO_ROOT}
    exported = subprocess.run([sys.executable, "-m", "ssagan_tf.export", f"--model_dir={run}",
                               f"--export_dir={tmp_path / 'export'}", "--precision=fp32"], capture_output=True,
                              text=True, timeout=HANG_TIMEOUT, cwd=REPO_ROOT, env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    done = subprocess.run([sys.executable, "-m", "scripts.fill", f"--data_dir={tiny_dataset}",
                           f"--model={tmp_path / 'export' / 'ssagan'}", "--split=val", "--resamples=20"],
                          capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[:done.stdout.index("\nhealthy fill")])
    normals = int((load_split_arrays(schema.open(tiny_dataset), "val")["label"] == 0).sum())
    assert result["slices"] == normals and set(result) == {"slices", *fill.FILLS}
    assert all(np.isfinite(result[name]["l1"][0]) for name in fill.FILLS)
    assert f"healthy fill inside {normals} transplanted lesion masks (val split, seed 0)" in done.stdout
    # --split=unseen: the export records whom it saw (here: rewritten to every patient but the test
    # split's), and the command scores the others.
    from ssagan_tf.data import folds

    dataset = schema.open(tiny_dataset)
    owners = folds.case_patients(dataset.manifest)
    info_path = tmp_path / "export" / "ssagan" / "1" / "export.json"
    info = json.loads(info_path.read_text())
    info["cohort"] = {"seen_patients": sorted({owners[c] for s in ("train", "val") for c in dataset.manifest.cases[s]})}
    info_path.write_text(json.dumps(info))
    unseen = subprocess.run([sys.executable, "-m", "scripts.fill", f"--data_dir={tiny_dataset}",
                             f"--model={tmp_path / 'export' / 'ssagan'}", "--split=unseen", "--resamples=20"],
                            capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=REPO_ROOT, env=env)
    assert unseen.returncode == 0, unseen.stderr[-3000:]
    tests = int((load_split_arrays(dataset, "test")["label"] == 0).sum())
    assert json.loads(unseen.stdout[:unseen.stdout.index("\nhealthy fill")])["slices"] == tests
    assert "patients, unseen in training, seed 0" in unseen.stdout
    missing = subprocess.run([sys.executable, "-m", "scripts.fill", f"--data_dir={tiny_dataset}"],
                             capture_output=True, text=True, timeout=HANG_TIMEOUT, cwd=REPO_ROOT, env=env)
    assert missing.returncode == 2 and "--data_dir and --model are required" in missing.stderr


def _export_recording(path, cohort):
    version = path / "1"
    version.mkdir(parents=True)
    with open(version / "export.json", "w") as f:
        json.dump({} if cohort is None else {"cohort": cohort}, f)
    return str(version)


def test_unseen_takes_every_split_of_the_patients_the_export_never_saw(tmp_path, tiny_dataset):
    from ssagan_tf.data import folds, schema
    from ssagan_tf.data.pipeline import load_split_arrays

    dataset = schema.open(tiny_dataset)
    owners = folds.case_patients(dataset.manifest)
    test_patients = {owners[c] for c in dataset.manifest.cases["test"]}
    seen = sorted(set(owners.values()) - test_patients)
    arrays, patients = fill.unseen_arrays(dataset, _export_recording(tmp_path / "a", {"seen_patients": seen}))
    expected = load_split_arrays(dataset, "test")
    assert patients == {"patients": len(test_patients), "of": len(set(owners.values()))}
    np.testing.assert_array_equal(arrays["image"], expected["image"])
    np.testing.assert_array_equal(arrays["case_id"], expected["case_id"])
    # One test patient seen as well: only the other test patients' slices are left.
    one = sorted(test_patients)[0]
    arrays, patients = fill.unseen_arrays(dataset, _export_recording(tmp_path / "b", {"seen_patients": seen + [one]}))
    assert patients["patients"] == len(test_patients) - 1
    assert all(owners[c.decode()] not in set(seen + [one]) for c in arrays["case_id"]) and len(arrays["image"])
    # Trained on another input: every patient is unseen.
    other = {"seen_patients": sorted(owners.values()), "patient_namespace": "/elsewhere"}
    arrays, patients = fill.unseen_arrays(dataset, _export_recording(tmp_path / "c", other))
    assert patients["patients"] == patients["of"] and len(arrays["image"]) == 30          # 3 splits x 10
    with pytest.raises(ValueError, match="trained on every patient"):
        fill.unseen_arrays(dataset, _export_recording(tmp_path / "d", {"seen_patients": sorted(owners.values())}))
    with pytest.raises(ValueError, match="does not say which patients"):
        fill.unseen_arrays(dataset, _export_recording(tmp_path / "e", None))
