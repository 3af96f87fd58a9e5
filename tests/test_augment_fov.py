"""Augmentation's field of view (`run_augment.py --field_of_view`, ssagan_tf/augment/framing.py):
file inputs framed as the converter frames them, NIfTI outputs on the right physical grid, `auto`
following the model's training data, and refusals."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import HANG_TIMEOUT, REPO_ROOT, write_tiny_dataset
from ssagan_tf import export
from ssagan_tf.augment import AugmentConfig, augment_dataset
from ssagan_tf.augment import ledger as ledger_lib
from ssagan_tf.augment.framing import FramingChoice, choose_framing
from ssagan_tf.augment.sources import FileSource
from ssagan_tf.data import schema, volumes
from ssagan_tf.models import ModelConfig, build_models

SIZE = 32
FIT_RECORD = {"field_of_view": "fit", "min_brain_ratio": 0.5, "brain_length_mm": 120.0,
              "source_manifest": "/data/brats/manifest.json"}


def _identity_models():
    """A tiny model whose attention is ~0 everywhere (the last convolution of both attention
    networks zero with bias -30): below tau every output pixel is its input pixel (paper Eq. 1),
    so what is written shows where each input voxel went."""
    models = build_models(ModelConfig(image_size=SIZE, channels=1, ngf=8, ndf=8, n_res_blocks=1))
    for network in (models.attention_normal, models.attention_tumor):
        last = [layer for layer in network.layers if layer.weights][-1]
        kernel, bias = last.get_weights()
        last.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])
    return models


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{"fit": an export recording fit-framed training data, "old": one without the record}."""
    root = str(tmp_path_factory.mktemp("exports"))
    models = _identity_models()
    fit = export.write_export(models, root, model_name="fit", tau=0.1, metadata={"training_framing": FIT_RECORD})
    old = export.write_export(models, root, model_name="old", tau=0.1)
    return {"fit": os.path.dirname(fit), "old": os.path.dirname(old)}


def _head_volume(path, shape_zyx, spacing_xyz, origin, centre_zyx, radii_zyx, marker_zyx=None, textured=False):
    """A head-like ellipsoid on an exact 0 background, off the image centre: intensity 300 (after
    normalisation all -1, so only a marker stands out), or `textured` (random 200..800); and,
    optionally, a bright 3 x 3 in-plane marker (3000) centred on voxel `marker_zyx`."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    inside = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre_zyx, radii_zyx)) <= 1.0
    head = np.random.default_rng(0).integers(200, 800, shape_zyx) if textured else 300
    array = np.where(inside, head, 0).astype(np.int16)
    if marker_zyx is not None:
        mz, my, mx = marker_zyx
        array[mz, my - 1:my + 2, mx - 1:mx + 2] = 3000
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sitk.WriteImage(image, path)
    return image


def _augment(model, data_dir, output_dir, **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("contact_rows", 0)
    return augment_dataset(AugmentConfig(model=model, data_dir=str(data_dir), output_dir=str(output_dir), **kwargs))


def _rows(output_dir):
    with open(os.path.join(output_dir, "manifest.csv")) as f:
        return list(csv.DictReader(f))


def _summary(output_dir):
    with open(os.path.join(output_dir, "augment.json")) as f:
        return json.load(f)


def test_fit_slices_equal_the_converters_framing(tmp_path):
    """A NIfTI volume (off-centre head, non-square pixels) augmented with `fit` is prepared as the
    converter (`data_prep.preprocess.prepare --field_of_view=fit`) prepares the same volume, and
    differently from `pad`."""
    from data_prep.preprocess import PrepOptions, prepare
    from data_prep.scan import CaseRef, Scan

    path = str(tmp_path / "vols" / "normal" / "scan.nii.gz")
    _head_volume(path, (14, 60, 50), (1.2, 0.9, 2.0), (5.0, -3.0, 7.0), (6, 24, 20), (7, 16, 11), textured=True)
    source = FileSource(str(tmp_path / "vols"), (SIZE, SIZE, 1), FramingChoice("fit"))
    refs = source.refs("normal")
    streamed = np.concatenate([batch for batch, _ in source.stream("normal", np.arange(len(refs)), 16)])
    volume = volumes.read_volume(path)
    ref = CaseRef(case_id="scan", patient_id="scan", format="pairs", paths={"image": path})
    prepared = prepare(Scan(ref=ref, image=np.asarray(volume.array, np.float32)[..., None], mask=None,
                            spacing=volume.spacing), PrepOptions(image_size=SIZE, assume_normal=True))
    assert PrepOptions().field_of_view == "fit"
    ours = {r.slice_index: image for r, image in zip(refs, streamed)}
    common = [int(i) for i in prepared.slice_index if int(i) in ours]
    assert len(common) >= 5
    assert np.std(streamed) > 0.2                     # the head's texture, not a blank frame
    for z, image in zip(prepared.slice_index.tolist(), prepared.images):
        if z in ours:
            np.testing.assert_allclose(ours[z], image, atol=1e-6, err_msg=f"slice {z}")
    padded = FileSource(str(tmp_path / "vols"), (SIZE, SIZE, 1), FramingChoice("pad"))
    assert [r.slice_index for r in padded.refs("normal")] == [r.slice_index for r in refs]
    padded_images = np.concatenate([b for b, _ in padded.stream("normal", np.arange(len(refs)), 16)])
    assert np.abs(padded_images - streamed).max() > 0.5


@pytest.mark.parametrize("field_of_view, shape, centre, radii, marker", [
    ("fit", (12, 64, 56), (5, 36, 24), (6, 18, 13), (5, 30, 29)),
    ("pad", (8, 26, 22), (4, 13, 11), (5, 10, 8), (4, 9, 14)),     # smaller than the frame: padded only
])
@pytest.mark.slow
def test_written_nifti_maps_a_marked_voxel_to_its_physical_point(exports, tmp_path, field_of_view, shape, centre,
                                                                 radii, marker):
    data = tmp_path / "vols"
    image = _head_volume(str(data / "normal" / "scan.nii.gz"), shape, (0.8, 1.1, 2.5), (-40.0, 12.0, 30.0),
                         centre, radii, marker)
    expected = np.array(image.TransformIndexToPhysicalPoint((marker[2], marker[1], marker[0])))
    out = tmp_path / "aug"
    _augment(exports["fit"], data, out, format="nifti", ratio=None, directions=("normal_to_tumor",),
             field_of_view=field_of_view)
    rows = _rows(str(out))
    row = next(r for r in rows if int(r["source_slice"]) == marker[0])
    written = sitk.ReadImage(os.path.join(str(out), row["output_path"]))
    array = sitk.GetArrayFromImage(written)
    plane = array[int(row["output_index"])]
    assert plane.max() > 0.9                       # the marker, passed through by the identity model
    weights = np.where(plane > 0.0, plane + 1.0, 0.0)
    iy, ix = (np.indices(plane.shape) * weights).reshape(2, -1).sum(axis=1) / weights.sum()
    found = np.array(written.TransformContinuousIndexToPhysicalPoint((float(ix), float(iy),
                                                                      float(row["output_index"]))))
    np.testing.assert_allclose(found, expected, atol=0.25 * min(written.GetSpacing()[:2]))
    summary = _summary(str(out))
    assert summary["field_of_view"]["used"] == field_of_view and summary["source"]["field_of_view"] == field_of_view


@pytest.mark.slow
def test_auto_follows_the_export_and_falls_back_to_pad_saying_so(exports, tmp_path, monkeypatch):
    fit = choose_framing("auto", {"training_framing": FIT_RECORD}, "fit/1")
    assert fit.field_of_view == "fit" and "/data/brats/manifest.json" in fit.reason
    old = choose_framing("auto", {}, "old/1")
    assert old.field_of_view == "pad" and old.trained is None
    assert "old/1 does not record how its training data was framed (exported before export.json recorded it)" \
        in old.reason
    gone = choose_framing("auto", {"training_framing": None}, "gone/1")
    assert gone.field_of_view == "pad" and "was not there" in gone.reason
    assert "not be the size it learned" in choose_framing("pad", {"training_framing": FIT_RECORD}, "fit/1").reason
    data = tmp_path / "vols"
    _head_volume(str(data / "normal" / "scan.nii.gz"), (10, 60, 50), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0),
                 (5, 24, 20), (6, 16, 11), textured=True)
    from absl import logging

    lines = []
    for level in ("info", "warning"):
        monkeypatch.setattr(logging, level, lambda fmt, *args, level=level: lines.append(f"{level}: {fmt % args}"))
    outputs = {}
    for name in ("fit", "old"):
        outputs[name] = tmp_path / f"aug-{name}"
        lines.clear()
        _augment(exports[name], data, outputs[name], format="tfrecord", ratio=None, directions=("normal_to_tumor",))
        assert _summary(str(outputs[name]))["field_of_view"]["requested"] == "auto"
        text = "\n".join(lines)
        if name == "fit":
            assert "info: field of view fit (--field_of_view=auto: fit/1 was trained on slices framed so" in text
        else:
            assert "warning: field of view pad (--field_of_view=auto): old/1 does not record how its training" in text
    assert _summary(str(outputs["fit"]))["field_of_view"]["used"] == "fit"
    assert _summary(str(outputs["old"]))["field_of_view"]["used"] == "pad"
    with open(os.path.join(str(outputs["fit"]), "manifest.json")) as f:
        assert json.load(f)["framing"]["field_of_view"] == "fit"
    with open(os.path.join(str(outputs["fit"]), ledger_lib.STATE_DIR, "plan.json")) as f:
        assert json.load(f)["field_of_view"]["field_of_view"] == "fit"
    # The same input framed otherwise is other data: the fit output differs from the pad one.
    from ssagan_tf.data import pipeline

    fitted = pipeline.load_split_arrays(schema.open(str(outputs["fit"])), "train")["image"]
    padded = pipeline.load_split_arrays(schema.open(str(outputs["old"])), "train")["image"]
    assert fitted.shape == padded.shape and np.abs(fitted - padded).max() > 0.5


def _fit_dataset(path):
    """The tiny dataset with a converter's settings record saying `fit`."""
    data = write_tiny_dataset(str(path))
    manifest_path = os.path.join(data, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["settings"] = {"prep": {"field_of_view": "fit", "min_brain_ratio": 0.4, "brain_length_mm": 100.0}}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    return data


@pytest.mark.slow
def test_a_training_run_exports_the_framing_of_its_data(tmp_path):
    """export_models records the run's dataset framing in export.json, which `auto` then reads;
    a dataset from before --field_of_view (settings without it) was framed with pad."""
    from ssagan_tf.training.config import RunConfig, save_config
    from test_export import make_run_dir

    data = _fit_dataset(tmp_path / "data")
    run = str(tmp_path / "run")
    make_run_dir(run, ModelConfig(image_size=SIZE, channels=1, ngf=8, ndf=8, n_res_blocks=1), step=2)
    with open(os.path.join(run, "config.json")) as f:
        saved = json.load(f)
    save_config(RunConfig.from_dict({**saved, "data_dir": data}), run)
    info = export.read_export_info(export.export_models(run, str(tmp_path / "exports")))
    assert info["training_framing"] == {"field_of_view": "fit", "min_brain_ratio": 0.4, "brain_length_mm": 100.0,
                                        "source_manifest": os.path.abspath(os.path.join(data, "manifest.json"))}
    choice = choose_framing("auto", info, "run/1")
    assert (choice.field_of_view, choice.min_brain_ratio, choice.brain_length_mm) == ("fit", 0.4, 100.0)
    assert export.training_framing(None) is None
    older = str(tmp_path / "older")
    shutil.copytree(data, older)
    with open(os.path.join(older, "manifest.json")) as f:
        manifest = json.load(f)
    manifest["settings"]["prep"].pop("field_of_view")
    with open(os.path.join(older, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    assert export.training_framing(schema.open(older))["field_of_view"] == "pad"


@pytest.mark.slow
def test_invalid_and_contradicting_values_are_refused(exports, tmp_path):
    with pytest.raises(ValueError, match="field_of_view must be one of auto, fit, pad, got 'crop'"):
        AugmentConfig(model=exports["fit"], data_dir=str(tmp_path), output_dir=str(tmp_path / "x"),
                      field_of_view="crop")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    bad = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run_augment.py"), f"--model={exports['fit']}",
                          f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'aug'}", "--field_of_view=crop"],
                         capture_output=True, text=True, timeout=HANG_TIMEOUT, env=env, cwd=REPO_ROOT)
    assert bad.returncode != 0 and "--field_of_view" in bad.stderr and "auto" in bad.stderr and "fit" in bad.stderr
    assert not os.path.exists(tmp_path / "aug")
    # Converted slices are framed already: a contradicting explicit value names their manifest.
    data = _fit_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match=r"--field_of_view=pad: the slices of .*data were converted with "
                                         r"--field_of_view=fit \(.*manifest\.json\)"):
        _augment(exports["fit"], data, tmp_path / "refused", field_of_view="pad")
    assert not os.path.exists(tmp_path / "refused")
    result = _augment(exports["fit"], data, tmp_path / "agreed", field_of_view="fit", directions=("tumor_to_normal",))
    assert result.counts["normal"] > 0
    assert _summary(str(tmp_path / "agreed"))["field_of_view"]["used"] == "fit"
