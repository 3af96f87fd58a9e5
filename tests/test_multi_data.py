"""Training on several converted datasets (`run_train.py --data_dir=MAIN,EXTRA`): a healthy cohort
(converted with --no_masks --assume_normal) joins the normal domain; the extras are checked
against the main dataset; counts, checksum, resume and the export's cohort follow the list."""

import dataclasses
import hashlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from conftest import write_tiny_dataset
from data_prep import phantom
from data_prep.convert import ConvertConfig, convert
from data_prep.preprocess import PrepOptions
from data_prep.readers import ReaderOptions
from ssagan_tf.data import combined, folds, integrity, schema
from ssagan_tf.training.config import ConfigError, RunConfig, build_run_config, load_run_config, save_config


def _convert(cohort_dir, out, healthy=False, seed=0):
    prep = PrepOptions(image_size=32, assume_normal=True) if healthy else PrepOptions(image_size=32,
                                                                                       min_tumor_pixels=10)
    reader = ReaderOptions(no_masks=True) if healthy else ReaderOptions()
    convert(ConvertConfig(input_dir=cohort_dir, format="brats", output_dir=str(out), prep=prep, reader=reader,
                          workers=1, num_shards=1, seed=seed), log=lambda _: None)
    return str(out)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """main: a phantom cohort with masks (tumor + normal); healthy: another phantom cohort (other
    input folder, the same case ids Phantom_000...) converted as healthy subjects; same_input: the
    main cohort converted again as healthy with another seed, so its splits hold other patients."""
    root = tmp_path_factory.mktemp("cohorts")
    first = os.path.dirname(phantom.write_cohort(str(root / "cohort_a"), cases=6, size=32, slices=16, seed=1)[0])
    second = os.path.dirname(phantom.write_cohort(str(root / "cohort_b"), cases=6, size=32, slices=16, seed=4)[0])
    return {"main": _convert(first, root / "main"),
            "healthy": _convert(second, root / "healthy", healthy=True, seed=5),
            "same_input": _convert(first, root / "same_input", healthy=True, seed=5)}


def _images(dataset, key):
    return [bytes(np.asarray(im).tobytes()) for batch in dataset for im in batch[key]["image"].numpy()]


def test_the_healthy_cohort_s_train_normals_join_the_normal_domain(cohorts):
    from ssagan_tf.data import pipeline

    main, healthy = (schema.open(cohorts[k]) for k in ("main", "healthy"))
    assert healthy.count("train", "tumor") == 0 and healthy.count("train", "normal") > 0
    total = main.count("train", "normal") + healthy.count("train", "normal")
    assert total > main.count("train", "tumor")                 # normal is now the longer domain
    ds = pipeline.make_unpaired_dataset(main, global_batch_size=1, shuffle=True, flip=False, seed=3,
                                        deterministic=True, repeat=False, extras=[healthy])
    normals = _images(ds, "normal")
    # One pass over the longer domain: every normal slice of both train splits exactly once.
    expected = [bytes(im.tobytes()) for d in (main, healthy)
                for im in pipeline.load_split_arrays(d, "train", domains=("normal",))["image"]]
    assert len(normals) == total and sorted(normals) == sorted(expected)
    healthy_val = {bytes(im.tobytes()) for s in ("val", "test")
                   for im in pipeline.load_split_arrays(healthy, s, domains=("normal",))["image"]}
    assert healthy_val and not healthy_val & set(normals)       # an extra's val and test splits are not read
    tumors = _images(ds, "tumor")
    assert len(tumors) == total and len(set(tumors)) == main.count("train", "tumor")   # the shorter one repeats

    assert pipeline.steps_per_epoch(main, 2, extras=[healthy]) == total // 2
    assert pipeline.steps_per_epoch(main, 2) == max(main.count("train", d) for d in schema.DOMAINS) // 2


def test_the_schedule_counts_the_combined_slices(cohorts):
    from ssagan_tf.training.schedule import Schedule

    main, healthy = (schema.read_manifest(cohorts[k]) for k in ("main", "healthy"))
    config = build_run_config(data_dir=[cohorts["main"], cohorts["healthy"]], model_dir="unused", precision="fp32",
                              batch_size=2, epochs=3)
    assert config.data_dir == cohorts["main"] and config.extra_data_dirs == (cohorts["healthy"],)
    assert combined.combined_counts([main, healthy]) == {
        "normal": main.count("train", "normal") + healthy.count("train", "normal"),
        "tumor": main.count("train", "tumor")}
    schedule = Schedule.for_run(config, [main, healthy])
    longest = main.count("train", "normal") + healthy.count("train", "normal")
    assert (schedule.steps_per_epoch, schedule.total_steps) == (longest // 2, 3 * (longest // 2))
    assert Schedule.for_run(config, main).steps_per_epoch == max(main.count("train", d) for d in schema.DOMAINS) // 2


def test_one_data_dir_is_as_before(cohorts, tmp_path):
    listed = build_run_config(data_dir=[cohorts["main"]], model_dir=str(tmp_path), precision="fp32")
    plain = build_run_config(data_dir=cohorts["main"], model_dir=str(tmp_path), precision="fp32")
    assert listed == plain and listed.extra_data_dirs == () and listed.data_dirs == (cohorts["main"],)
    manifest = schema.read_manifest(cohorts["main"])
    assert combined.combined_checksum([manifest]) == integrity.dataset_checksum(manifest)
    from ssagan_tf.training.summaries import hparams

    assert "extra_data_dirs" not in hparams(plain)
    both = build_run_config(data_dir=[cohorts["main"], cohorts["healthy"]], model_dir=str(tmp_path), precision="fp32")
    assert hparams(both)["extra_data_dirs"] == cohorts["healthy"]
    assert combined.combined_checksum([manifest, schema.read_manifest(cohorts["healthy"])]) != \
        integrity.dataset_checksum(manifest)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"main": write_tiny_dataset(str(root / "main")),
            "healthy": write_tiny_dataset(str(root / "healthy"), n_normal=5, n_tumor=0, splits=("train",), seed=1),
            "size": write_tiny_dataset(str(root / "size"), size=64, n_tumor=0, seed=2),
            "channels": write_tiny_dataset(str(root / "channels"), channels=2, n_tumor=0, seed=3),
            "empty": write_tiny_dataset(str(root / "empty"), n_normal=0, n_tumor=0, seed=4)}


def _refusal(data_dirs, tmp_path):
    with pytest.raises(ConfigError) as error:
        build_run_config(data_dir=data_dirs, model_dir=str(tmp_path / "run"), precision="fp32")
    return str(error.value)


def test_mismatched_extra_datasets_are_refused_naming_them(tiny, cohorts, tmp_path):
    main = tiny["main"]
    message = _refusal([main, tiny["size"]], tmp_path)
    assert tiny["size"] in message and "64^2 x 1-channel" in message and "32^2 x 1" in message
    message = _refusal([main, tiny["channels"]], tmp_path)
    assert tiny["channels"] in message and "32^2 x 2-channel" in message
    path = os.path.join(tiny["healthy"], schema.MANIFEST_NAME)
    other = str(tmp_path / "flair")
    shutil.copytree(tiny["healthy"], other)
    values = json.load(open(path))
    values["modalities"] = ["flair"]
    json.dump(values, open(os.path.join(other, schema.MANIFEST_NAME), "w"))
    message = _refusal([main, other], tmp_path)
    assert other in message and "modalities flair" in message and "--modalities=t1ce" in message
    assert "given twice" in _refusal([main, tiny["healthy"], tiny["healthy"]], tmp_path)
    assert "given twice" in _refusal([main, main], tmp_path)
    copy = str(tmp_path / "copy")
    shutil.copytree(tiny["healthy"], copy)
    message = _refusal([main, tiny["healthy"], copy], tmp_path)
    assert copy in message and f"the same slices as {tiny['healthy']}" in message
    assert "no manifest" in _refusal([main, str(tmp_path)], tmp_path) and str(tmp_path) in _refusal(
        [main, str(tmp_path)], tmp_path)
    assert "no slices in its train split" in _refusal([main, tiny["empty"]], tmp_path)
    assert "empty entry" in _refusal([main, ""], tmp_path)
    # Every check also runs at check_inputs, for a config made without build_run_config.
    config = build_run_config(data_dir=main, model_dir=str(tmp_path / "run"), precision="fp32")
    with pytest.raises(ConfigError, match="64\\^2"):
        dataclasses.replace(config, extra_data_dirs=(tiny["size"],)).check_inputs()


def test_a_patient_in_two_splits_is_refused_but_other_cohorts_ids_are_namespaced(cohorts, tmp_path):
    main, same = (schema.read_manifest(cohorts[k]) for k in ("main", "same_input"))
    leaked = set(combined.split_patients(same)["train"]) & (set(combined.split_patients(main)["val"])
                                                           | set(combined.split_patients(main)["test"]))
    assert leaked                                   # the other seed dealt the patients differently
    message = _refusal([cohorts["main"], cohorts["same_input"]], tmp_path)
    assert cohorts["same_input"] in message and "one patient in two splits" in message
    assert sorted(leaked)[0] in message
    # The healthy cohort's ids are the main one's (Phantom_000, ...) but come from another input.
    healthy = schema.read_manifest(cohorts["healthy"])
    assert set(combined.split_patients(healthy)["train"]) & set(combined.split_patients(main)["val"]
                                                                 + combined.split_patients(main)["test"])
    config = build_run_config(data_dir=[cohorts["main"], cohorts["healthy"]], model_dir=str(tmp_path / "run"),
                              precision="fp32")
    record = folds.training_cohort(config.to_dict(), schema.open(cohorts["main"]),
                                   [schema.open(cohorts["healthy"])])
    seen = sorted({p for s in ("train", "val") for p in combined.split_patients(main)[s]})
    assert record["seen_patients"] == seen and record["patient_namespace"] == combined.patient_namespace(main)
    [other] = record["other_cohorts"]
    assert other["patient_namespace"] == combined.patient_namespace(healthy) != record["patient_namespace"]
    assert other["seen_patients"] == combined.split_patients(healthy)["train"]
    assert other["source_manifest_sha256"] == hashlib.sha256(
        open(os.path.join(cohorts["healthy"], schema.MANIFEST_NAME), "rb").read()).hexdigest()
    # A dataset no longer there: who the run saw is unknown.
    assert folds.training_cohort(config.to_dict(), schema.open(cohorts["main"]), [None])["seen_patients"] is None

    # The evaluation compares the ids of the input it evaluates on: on the main dataset the healthy
    # cohort's Phantom_00x are other people; on the healthy cohort's own input they are its patients.
    from ssagan_tf.evaluation import crossval

    version = tmp_path / "export" / "1"
    version.mkdir(parents=True)
    (version / "export.json").write_text(json.dumps({"cohort": record}))
    def plan(manifest):
        patients = combined.split_patients(manifest)
        return {"index": None, "patients": patients,
                "owners": {p: p for s in schema.SPLITS for p in patients[s]}}
    verdict = crossval.check_cohort("ssa", str(version), plan(main), None, False, combined.patient_namespace(main))
    assert verdict["cohort"] == "this dataset"
    with pytest.raises(ValueError, match="trained on .* of the test patients"):
        crossval.check_cohort("ssa", str(version), {**plan(healthy), "patients": {
            **plan(healthy)["patients"], "test": combined.split_patients(healthy)["train"][:1]}}, None, False,
            combined.patient_namespace(healthy))


def test_each_dataset_gets_the_data_warnings(tiny, tmp_path):
    synthetic = str(tmp_path / "synthetic")
    shutil.copytree(tiny["healthy"], synthetic)
    path = os.path.join(synthetic, schema.MANIFEST_NAME)
    values = json.load(open(path))
    values["synthetic"] = {"model": "ssagan/2"}
    json.dump(values, open(path, "w"))
    config = build_run_config(data_dir=[tiny["main"], synthetic], model_dir=str(tmp_path / "run"), precision="fp32")
    assert config.data_warnings(schema.read_manifest(tiny["main"])) == []
    [warning] = config.data_warnings(schema.read_manifest(synthetic))
    # An extra's validation split is not read, so it is not missed.
    assert synthetic in warning and "made by ssagan/2" in warning and "no val split" not in warning


def _tiny_run(data_dirs, model_dir, **overrides):
    from ssagan_tf.models import ModelConfig

    model = ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=8, ndf=8, n_res_blocks=1)
    values = dict(data_dir=data_dirs[0], extra_data_dirs=tuple(data_dirs[1:]), model_dir=str(model_dir),
                  model=model, batch_size=2, epochs=2, attention_epochs=1, flip=False, pool_size=2, log_every=1,
                  image_every=100, checkpoint_every=100, strategy="one_device", max_steps=2)
    values.update(overrides)
    return RunConfig(**values)


@pytest.mark.slow
def test_training_on_two_datasets_end_to_end_records_and_resumes_them(tiny, tmp_path):
    from ssagan_tf.training.loop import train

    run = tmp_path / "run"
    config = _tiny_run([tiny["main"], tiny["healthy"]], run)
    out = io.StringIO()
    result = train(config, stream=out)
    # 6 + 5 normal train slices against 4 tumor: 11 // 2 = 5 steps per epoch (one dataset: 3).
    assert (result.step, result.total_steps) == (2, 10)
    text = out.getvalue()
    assert f"+ {tiny['healthy']} (5 normal, 0 tumor)" in text and "= 11 normal, 4 tumor train slices:" in text
    assert "5 steps/epoch, 10 steps in all" in text
    saved = json.load(open(run / "config.json"))
    assert saved["data_dir"] == tiny["main"] and saved["extra_data_dirs"] == [tiny["healthy"]]
    manifests = [schema.read_manifest(d) for d in (tiny["main"], tiny["healthy"])]
    assert saved["data_checksum"] == combined.combined_checksum(manifests)
    assert load_run_config(str(run)).data_dirs == (tiny["main"], tiny["healthy"])

    resumed = train(_tiny_run([tiny["main"], tiny["healthy"]], run, max_steps=3), stream=io.StringIO())
    assert (resumed.resumed_from, resumed.step) == (2, 3)
    # Dropping the healthy cohort changes the data: refused, naming both lists.
    with pytest.raises(ConfigError, match="data sha256:.*" + tiny["healthy"] + ".* there, .*other datasets"):
        train(_tiny_run([tiny["main"]], run, max_steps=4), stream=io.StringIO())


def test_an_old_config_json_with_one_data_dir_resumes(tiny, tmp_path):
    from ssagan_tf.training import resume

    config = _tiny_run([tiny["main"]], tmp_path)
    checksum = integrity.dataset_checksum(schema.read_manifest(tiny["main"]))
    path = save_config(config, str(tmp_path), checksum)
    values = json.load(open(path))
    del values["extra_data_dirs"]                      # as every run before the field was written
    json.dump(values, open(path, "w"))
    assert load_run_config(str(tmp_path)).extra_data_dirs == ()
    notes = []
    resume.check_resume(config, checksum, notes.append)   # nothing refused, nothing changed
    assert notes == []
    both = _tiny_run([tiny["main"], tiny["healthy"]], tmp_path)
    manifests = [schema.read_manifest(d) for d in both.data_dirs]
    with pytest.raises(ConfigError, match="other settings .*data "):
        resume.check_resume(both, combined.combined_checksum(manifests), notes.append)
    resume.check_resume(dataclasses.replace(both, allow_changes=("data",)), combined.combined_checksum(manifests),
                        notes.append)
    assert "data sha256:" in notes[-1]



def test_the_command_line_takes_a_list_and_refuses_folds_and_bad_extras_before_tensorflow(tiny, tmp_path):
    from test_run_train import probe

    result, out = probe(["--help"])
    said = " ".join(out.split())
    assert result["code"] == 0 and "comma-separated list" in said and "--assume_normal joins the normal" in said
    result, out = probe([f"--data_dir={tiny['main']},{tiny['size']}", f"--model_dir={tmp_path / 'run'}"])
    assert result == {"code": 2, "tensorflow": False}, out
    assert f"--data_dir {tiny['size']} (extra dataset) holds 64^2" in out
    result, out = probe([f"--data_dir={tiny['main']},{tiny['healthy']}", f"--model_dir={tmp_path / 'run'}",
                         "--folds=2"])
    assert result == {"code": 2, "tensorflow": False}, out
    assert "--folds deals the patients of one dataset into folds; --data_dir names 2" in out
    assert not (tmp_path / "run").exists()


def test_datasets_stored_differently_are_read_together_each_by_its_own_storage(tmp_path):
    """A quantised, gzip-compressed main dataset beside an old float32 healthy cohort: each
    dataset's records are decoded by its own manifest's storage."""
    from ssagan_tf.data import pipeline

    main = schema.open(write_tiny_dataset(str(tmp_path / "main"), storage=schema.Storage("uint16", "gzip")))
    healthy = schema.open(write_tiny_dataset(str(tmp_path / "healthy"), n_normal=5, n_tumor=0, splits=("train",),
                                             seed=1))
    assert main.storage.quantised
    assert not healthy.storage.quantised
    ds = pipeline.make_unpaired_dataset(main, global_batch_size=1, shuffle=False, flip=False, seed=0,
                                        deterministic=True, repeat=False, extras=[healthy])
    normals = [im for batch in ds for im in batch["normal"]["image"].numpy()]
    expected = [im for d in (main, healthy)
                for im in pipeline.load_split_arrays(d, "train", domains=("normal",))["image"]]
    assert len(normals) == len(expected) == 6 + 5
    # every streamed normal is one of the two datasets' slices, decoded within the storage's error
    for im in normals:
        assert min(float(np.abs(im - e).max()) for e in expected) <= main.storage.max_error
    found = [min(range(len(expected)), key=lambda k: float(np.abs(im - expected[k]).max())) for im in normals]
    assert sorted(found) == list(range(len(expected)))
