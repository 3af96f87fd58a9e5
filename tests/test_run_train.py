"""run_train.py without training: flags -> `training.config.build_run_config` -> RunConfig, and
--help and a bad flag answered before TensorFlow is imported (it takes ~9 s to load)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT
from ssagan_tf.training.config import ConfigError, build_run_config

# Runs run_train.py as __main__ with the given arguments, then reports its exit code and whether
# TensorFlow was imported, as one JSON line after its own output.
PROBE = """
import json, runpy, sys
sys.argv = ["run_train.py"] + json.loads(sys.argv[1])
code = 0
try:
    runpy.run_path("run_train.py", run_name="__main__")
except SystemExit as end:
    code = end.code
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


def probe(args):
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


@pytest.mark.parametrize("args, code, expected", [
    (["--help"], 0, "--attention_epochs"),
    (["--system=nope"], 2, "--system"),                                         # refused by the flag parser
    (["--model=nope"], 2, "flag --system=nope"),                                # and by its old spelling
    (["--batch_size=0", "--tau=2", "--data_dir={data}", "--model_dir={run}"], 2,  # by RunConfig, both named
     "batch_size must be >= 1, got 0; tau must be in [0, 1), got 2.0"),
    (["--data_dir={run}", "--model_dir={run}"], 2, "no manifest"),
    (["--lambda_cycle=inf", "--data_dir={data}", "--model_dir={run}"], 2, "lambda_cycle must be finite, got inf"),
    (["--allow_changes=ngf", "--data_dir={data}", "--model_dir={run}"], 2, "allow_changes: 'ngf' cannot be named"),
])
def test_help_and_bad_flags_do_not_import_tensorflow(tiny_dataset, tmp_path, args, code, expected):
    args = [a.format(data=tiny_dataset, run=tmp_path / "run") for a in args]
    result, out = probe(args)
    assert result == {"code": code, "tensorflow": False}, out
    assert expected in out


def test_old_spellings_still_set_the_settings_and_say_so_once(tiny_dataset, tmp_path):
    """--model (now --system) and --judge_dir (now --judge): read as before, one line each."""
    args = ["--model=cyclegan", f"--judge_dir={tmp_path / 'no_judge'}", f"--data_dir={tiny_dataset}",
            f"--model_dir={tmp_path / 'run'}", "--lambda_mask=5", "--batch_size=0"]
    result, out = probe(args)
    assert result == {"code": 2, "tensorflow": False}, out
    assert out.count("WARNING: --model is an old spelling of --system") == 1
    assert out.count("WARNING: --judge_dir is an old spelling of --judge") == 1
    assert "batch_size must be >= 1" in out


def test_build_run_config_takes_size_from_the_manifest_and_checks_values_first(tiny_dataset, tmp_path):
    config = build_run_config(data_dir=tiny_dataset, model_dir=str(tmp_path), model="attention_cyclegan",
                              precision="fp32", ngf=8, attention_ngf=4, batch_size=2, export_dir=None,
                              d_mode="mejjati")
    assert (config.model.image_size, config.model.channels, config.model.ngf) == (32, 1, 8)
    assert (config.model.system, config.model.mask_loss, config.model.attention_filters) == ("attention_cyclegan",
                                                                                            False, 4)
    assert (config.model.precision, config.precision_reason) == ("fp32", "--precision: as requested")
    assert config.export_dir == "" and config.d_mode == "own_attention" and config.batch_size == 2
    with pytest.raises(ConfigError, match=r"--image_size=64 but .* holds 32\^2 slices"):
        build_run_config(data_dir=tiny_dataset, model_dir=str(tmp_path), image_size=64)
    with pytest.raises(ConfigError, match="ngf must be >= 1, got 0; ndf must be >= 1, got -1"):
        build_run_config(data_dir=tiny_dataset, model_dir=str(tmp_path), ngf=0, ndf=-1)
    with pytest.raises(ConfigError, match="required"):
        build_run_config(data_dir="", model_dir=str(tmp_path))


def test_old_config_json_without_the_newer_fields_still_loads(tiny_dataset, tmp_path):
    """config.json files saved before export_dir (and precision) existed read as the defaults."""
    from ssagan_tf.training.config import RunConfig

    values = build_run_config(data_dir=tiny_dataset, model_dir=str(tmp_path), precision="fp32").to_dict()
    for name in ("export_dir", "precision_reason"):
        values.pop(name)
    values["model"].pop("precision")
    values["model"]["mixed_precision"] = False
    old = RunConfig.from_dict(json.loads(json.dumps(values)))
    assert old.export_dir == "" and old.model.precision == "fp32"


def test_fold_flags_need_folds_and_are_refused_before_tensorflow(tiny_dataset, tmp_path):
    result, out = probe([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'run'}", "--fold=1"])
    assert result == {"code": 2, "tensorflow": False} and "--fold need --folds" in out
    result, out = probe([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'run'}", "--folds=1"])
    assert result["code"] == 2 and "--folds=1: need at least 2" in out


@pytest.mark.parametrize("text, problem", [
    ("{not json", r"not valid JSON \(Expecting property name"),
    ("[1, 2]", "holds a JSON list, not an object"),
    ('{"model": {}}', "missing data_dir, model_dir, tau, model.system"),
    (None, r"wrong types: tau is \"0.1\" \(wants float\), model.ngf is 8.5 \(wants int\)"),
    (None, "lambda_cycle must be finite, got inf"),
])
def test_a_corrupt_or_foreign_config_json_is_named_with_its_problem(tiny_dataset, tmp_path, text, problem):
    from ssagan_tf.training.config import RunConfigFileError, load_config_dict, save_config

    config = build_run_config(data_dir=tiny_dataset, model_dir=str(tmp_path), precision="fp32", ngf=8)
    path = save_config(config, str(tmp_path))
    assert load_config_dict(str(tmp_path))["model"]["ngf"] == 8
    if text is None:
        values = json.loads(open(path).read())
        if "wrong types" in problem:
            values["tau"], values["model"]["ngf"] = "0.1", 8.5
        else:
            values["lambda_cycle"] = float("inf")         # json writes Infinity
        text = json.dumps(values)
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(RunConfigFileError, match=problem) as error:
        load_config_dict(str(tmp_path))
    assert str(error.value).startswith(path + ": ") and "\n" not in str(error.value)


def test_an_export_dir_that_cannot_be_written_is_refused_before_training(tiny_dataset, tmp_path):
    (tmp_path / "a_file").write_text("mine")
    for export_dir, problem in ((tmp_path / "a_file", "is a file, not a folder"),
                                (tmp_path / "a_file" / "below", "a_file is a file, not a folder")):
        config = build_run_config(data_dir=tiny_dataset, model_dir=str(tmp_path / "run"), precision="fp32",
                                  export_dir=str(export_dir))
        with pytest.raises(ConfigError, match=f"--export_dir {export_dir}: .*{problem}.*before training"):
            config.check_inputs()
    assert (tmp_path / "a_file").read_text() == "mine" and not (tmp_path / "run").exists()
    build_run_config(data_dir=tiny_dataset, model_dir=str(tmp_path / "run"), precision="fp32",
                     export_dir=str(tmp_path / "new" / "export")).check_inputs()      # to be created: fine


def test_an_augmentation_output_is_named_with_what_it_lacks(tmp_path):
    """Training on run_augment.py's output (synthetic slices, one split) is allowed but said."""
    from conftest import write_tiny_dataset
    from ssagan_tf.data import schema

    real = write_tiny_dataset(str(tmp_path / "real"))
    config = build_run_config(data_dir=real, model_dir=str(tmp_path / "run"), precision="fp32")
    assert config.data_warnings(schema.read_manifest(real)) == []
    synthetic = write_tiny_dataset(str(tmp_path / "synthetic"), splits=("train",))
    path = os.path.join(synthetic, schema.MANIFEST_NAME)
    manifest = json.load(open(path))
    manifest["synthetic"] = {"model": "ssagan/3"}
    json.dump(manifest, open(path, "w"))
    config = build_run_config(data_dir=synthetic, model_dir=str(tmp_path / "run2"), precision="fp32")
    [warning] = config.data_warnings(schema.read_manifest(synthetic))
    assert "augmentation's output" in warning and "made by ssagan/3" in warning and "no val split" in warning
