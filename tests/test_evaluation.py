"""ssagan_tf/evaluation/runner.py, augmenters.py, report.py, plots.py and run_evaluate.py: the whole
evaluation on a tiny dataset with fake exported augmenters, and the command line."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT, write_tiny_dataset

from ssagan_tf.data import schema
from ssagan_tf.data.pipeline import load_split_arrays
from ssagan_tf.evaluation import EvaluationConfig, run_evaluation
from ssagan_tf.export_layout import IN_MASKS
from ssagan_tf.exported import Translation


def save_fake_augmenter(path, attention=True, in_masks=False):
    """An exported model with the contract's two signatures. With attention: normal_to_tumor paints
    a bright disc in the centre and attends exactly there; tumor_to_normal attends to the bright
    pixels (the tiny dataset's tumor, exactly its mask) and darkens them. Without: identity, with
    an all-ones attention as systems without attention export. `in_masks` adds the masked
    signature, painting 0.9 inside the masks it is given."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None, None, 1], tf.float32)]

    class Fake(tf.Module):
        @tf.function(input_signature=spec)
        def normal_to_tumor(self, images):
            if not attention:
                return {"image": images, "attention": tf.ones_like(images)}
            size = tf.shape(images)[1]
            yy, xx = tf.meshgrid(tf.range(size), tf.range(size), indexing="ij")
            centre, radius = size // 2, size // 6
            disc = tf.cast((yy - centre) ** 2 + (xx - centre) ** 2 <= radius * radius, tf.float32)
            attended = tf.broadcast_to(disc[None, :, :, None], tf.shape(images))
            return {"image": attended * 0.9 + (1 - attended) * images, "attention": attended}

        @tf.function(input_signature=spec)
        def tumor_to_normal(self, images):
            if not attention:
                return {"image": images, "attention": tf.ones_like(images)}
            attended = tf.cast(images > 0.5, tf.float32)
            return {"image": attended * -0.6 + (1 - attended) * images, "attention": attended}

        @tf.function(input_signature=spec * 2)
        def normal_to_tumor_in_masks(self, images, masks):
            return {"image": masks * 0.9 + (1 - masks) * images, "attention": masks}

    module = Fake()
    signatures = {"normal_to_tumor": module.normal_to_tumor, "tumor_to_normal": module.tumor_to_normal}
    if in_masks:
        signatures[IN_MASKS] = module.normal_to_tumor_in_masks
    tf.saved_model.save(module, os.path.join(path, "1"), signatures=signatures)
    return str(path)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return {"ssa": save_fake_augmenter(base / "ssa"), "plain": save_fake_augmenter(base / "plain", attention=False)}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_dataset, exports):
    """One run over every arm, both augmenters, two seeds."""
    out = str(tmp_path_factory.mktemp("report"))
    config = EvaluationConfig(data_dir=tiny_dataset, output_dir=out, augmenters=tuple(exports.items()),
                              arms=("none", "classic", "synthetic", "synthetic+classic"), ratios=(1.0,),
                              seeds=(0, 1), epochs=2, batch_size=8, patience=1, width=4, sample_count=2,
                              precision="fp32")
    return config, run_evaluation(config)


@pytest.mark.slow
def test_every_arm_and_augmenter_row_is_trained_and_scored(evaluated):
    config, results = evaluated
    names = [row["name"] for row in results["rows"]]
    assert names == ["none", "classic", "synthetic [ssa 1:1]", "synthetic [plain 1:1]",
                     "synthetic+classic [ssa 1:1]", "synthetic+classic [plain 1:1]"]
    for row in results["rows"]:
        assert [run["seed"] for run in row["runs"]] == [0, 1]
        assert row["summary"]["auc"]["n"] == 2
        for run in row["runs"]:
            assert len(run["test_probabilities"]) == 10
            assert run["auc_hard"] == pytest.approx(run["balanced_accuracy"])
            # train: 6 normal + 4 tumor real; at 1:1, 4 synthetic tumor and 6 synthetic normal.
            assert run["synthetic_slices"] == (10 if row["augmenter"] else 0)
    comparisons = results["comparisons"]
    assert [c["row"] for c in comparisons] == names[:1] + names[2:]
    assert all(c["baseline"] == "classic" and len(c["metrics"]["auc"]["differences"]) == 2 for c in comparisons)


@pytest.mark.slow
def test_same_seed_draws_the_same_synthetic_slices_in_every_arm(evaluated):
    _, results = evaluated
    rows = {row["name"]: row for row in results["rows"]}
    for seed in (0, 1):
        a = rows["synthetic [ssa 1:1]"]["runs"][seed]["synthetic_sources"]
        b = rows["synthetic+classic [ssa 1:1]"]["runs"][seed]["synthetic_sources"]
        assert a == b
    assert rows["synthetic [ssa 1:1]"]["runs"][0]["synthetic_sources"] != \
        rows["synthetic [ssa 1:1]"]["runs"][1]["synthetic_sources"]


@pytest.mark.slow
def test_attention_metrics_of_a_perfect_and_of_an_attention_free_augmenter(evaluated):
    _, results = evaluated
    ssa = results["attention"]["ssa"]
    assert ssa["has_attention"] and ssa["masked_tumor_slices"] == 4
    assert ssa["dice"]["mean"] == pytest.approx(1.0) and ssa["iou"]["mean"] == pytest.approx(1.0)
    assert ssa["outside_change_tumor_to_normal"]["mean"] == 0.0
    assert ssa["outside_change_normal_to_tumor"]["mean"] == 0.0
    assert results["attention"]["plain"] == {"has_attention": False}


def test_attention_metrics_by_value():
    from ssagan_tf.evaluation.runner import attention_metrics

    mask = np.zeros((1, 4, 4, 1), np.float32)
    mask[0, :2, :2] = 1                       # 4 tumor pixels
    attention = np.zeros((1, 4, 4, 1), np.float32)
    attention[0, :2, 1:3] = 0.8               # 4 attended pixels, 2 of them tumor
    source = np.zeros((1, 4, 4, 1), np.float32)
    translated = source + 0.5 * (attention < 0.1)   # every unattended pixel changed by 0.5
    to_normal = Translation(source=source, image=translated, attention=attention)
    result = attention_metrics(to_normal, to_normal, mask, np.array([True]), tau=0.1)
    assert result["dice"]["mean"] == pytest.approx(2 * 2 / (4 + 4))
    assert result["iou"]["mean"] == pytest.approx(2 / 6)
    assert result["outside_change_tumor_to_normal"]["mean"] == pytest.approx(0.5)


@pytest.mark.slow
def test_report_and_results_are_written_and_parse(evaluated):
    config, results = evaluated
    with open(os.path.join(config.output_dir, "results.json")) as f:
        parsed = json.load(f)   # strict JSON: NaN was written as null
    assert parsed["rows"][0]["name"] == "none" and parsed["data"]["test"]["tumor"]["slices"] == 4
    with open(os.path.join(config.output_dir, "report.md"), encoding="utf-8") as f:
        report = f.read()
    assert "| Arm | Augmenter | Synthetic:real | Sensitivity | Specificity | Accuracy | AUC | Seeds |" in report
    assert "| synthetic+classic | ssa | 1:1 |" in report
    assert "how much these numbers can carry" in report and "cannot give a two-sided p below 0.5" in report
    assert "no attention" in report
    for file_name in results["figures"].values():
        assert f"]({file_name})" in report
        with open(os.path.join(config.output_dir, file_name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert set(results["figures"]) == {"roc", "metrics", "samples_ssa", "samples_plain"}


def test_augmenter_without_the_signatures_is_refused(tmp_path):
    import tensorflow as tf

    from ssagan_tf.exported import load_translator

    module = tf.Module()
    module.f = tf.function(lambda images: {"image": images},
                           input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.f})
    with pytest.raises(ValueError, match="missing signature"):
        load_translator(str(tmp_path), name="broken", require_info=False)


@pytest.mark.slow
def test_augmenter_for_another_slice_shape_is_refused(exports):
    from ssagan_tf.exported import load_translator

    augmenter = load_translator(exports["ssa"], name="ssa", require_info=False)
    augmenter.check_input_shape((32, 32, 1))
    with pytest.raises(ValueError, match="takes images"):
        augmenter.check_input_shape((32, 32, 4))


def _cli(*flags):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run_evaluate.py"), *flags],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=HANG_TIMEOUT)


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--arms=none,mixip"], "unknown arm"),
    (["--folds=1", "--arms=none"], "folds=1"),
    (["--augmenters=ssa=x/{fold}", "--arms=none"], "only --folds fills in"),
    (["--augmenters=identity=x", "--arms=none"], "built-in control"),
    (["--classic_strength=5", "--arms=none"], "classic_strength"),
    (["--augmenters=ssa"], "NAME=EXPORTED_DIR"),
    (["--ratios=one"], "--ratios"),
    (["--ratios=1.5"], "must be one of"),
    (["--arms=synthetic"], "synthetic arms need"),
    (["--augmenters=copy_paste", "--normals_only=copy_paste", "--arms=none"], "tumor slices only"),
    (["--augmenters=copy_paste", "--tumors_only=cp", "--arms=none"], "not one of --augmenters"),
    (["--augmenters=a=x,b=x", "--tumors_only=a", "--normals_only=a", "--arms=none"], "named by both"),
    (["--augmenters=a=x", "--in_masks=a", "--normals_only=a", "--arms=none"], "normals_only leaves out"),
])
def test_cli_rejects_bad_flags_before_any_work(tmp_path, tiny_dataset, flags, message):
    out = tmp_path / "report"
    result = _cli(f"--data_dir={tiny_dataset}", f"--output_dir={out}", *flags)
    assert result.returncode != 0 and message in result.stderr + result.stdout
    assert not out.exists()


@pytest.mark.slow
def test_cli_rejects_missing_inputs(tmp_path, tiny_dataset):
    assert "--data_dir" in _cli(f"--output_dir={tmp_path}").stderr
    result = _cli(f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'r'}", "--arms=none")
    assert result.returncode != 0 and "no manifest" in result.stderr
    result = _cli(f"--data_dir={tiny_dataset}", f"--output_dir={tmp_path / 'r'}", f"--augmenters=a={tmp_path}/x")
    assert result.returncode != 0 and "no such exported" in result.stderr


@pytest.mark.slow
def test_cli_refuses_to_write_into_the_dataset_or_over_a_file(tmp_path, tiny_dataset):
    before = sorted(os.listdir(tiny_dataset))
    inside = os.path.join(tiny_dataset, "report")
    for output, message in ((tiny_dataset, "is the dataset"), (inside, "is inside the dataset")):
        result = _cli(f"--data_dir={tiny_dataset}", f"--output_dir={output}", "--arms=none")
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert sorted(os.listdir(tiny_dataset)) == before
    (tmp_path / "report.md").write_text("mine")
    result = _cli(f"--data_dir={tiny_dataset}", f"--output_dir={tmp_path / 'report.md'}", "--arms=none")
    assert result.returncode == 2 and "report.md: is a file, not a folder" in result.stderr
    assert (tmp_path / "report.md").read_text() == "mine"


@pytest.mark.slow
def test_cli_runs_and_prints_the_report_path(tmp_path):
    data = write_tiny_dataset(str(tmp_path / "data"), n_normal=4, n_tumor=4)
    out = tmp_path / "report"
    result = _cli(f"--data_dir={data}", f"--output_dir={out}", "--arms=none", "--seeds=3", "--epochs=1",
                  "--width=4", "--batch_size=8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report: {out}/report.md (1 classifier," in result.stdout.splitlines()[-1]
    assert re.search(r"^classifier 1 of 1: none seed 3: sensitivity \d\.\d\d, specificity \d\.\d\d, AUC .*ETA 0 s\)$",
                     result.stdout, re.M), result.stdout
    assert not re.search(r"^[IWE]\d{4} ", result.stdout + result.stderr, re.M)     # no absl record prefixes
    assert (out / "report.md").is_file() and (out / "results.json").is_file()
    # Cross-validated, the count is of every fold's classifiers.
    result = _cli(f"--data_dir={data}", f"--output_dir={tmp_path / 'cv'}", "--arms=none", "--seeds=3", "--epochs=1",
                  "--width=4", "--batch_size=8", "--folds=2", "--bootstrap_resamples=100")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report: {tmp_path / 'cv'}/report.md (2 classifiers," in result.stdout.splitlines()[-1]


def test_keep_tumor_cases_by_value():
    from ssagan_tf.evaluation.arms import keep_tumor_cases

    train = {"label": np.array([0, 1, 1, 0, 1, 1, 1]), "case_id": np.array([b"a", b"a", b"b", b"b", b"c", b"c", b"c"]),
             "image": np.arange(7)}
    kept, cases = keep_tumor_cases(train, 1 / 3, seed=0)
    assert len(cases) == 1
    tumor_cases = {c.decode() for c in kept["case_id"][kept["label"] == 1]}
    assert tumor_cases == set(cases)
    assert np.sum(kept["label"] == 0) == 2                          # every normal slice stays
    whole, all_cases = keep_tumor_cases(train, 1.0)
    assert whole is train and all_cases == ["a", "b", "c"]
    assert len(keep_tumor_cases(train, 0.01)[1]) == 1               # never fewer than one case


@pytest.mark.slow
def test_judge_and_low_data_regime_in_the_evaluation(tmp_path, tiny_dataset, exports):
    from ssagan_tf.judge.config import JudgeConfig
    from ssagan_tf.judge.train import train_judge

    judge = str(tmp_path / "judge")
    train_judge(JudgeConfig(data_dir=tiny_dataset, output_dir=judge, width=4, epochs=1, precision="fp32"),
                log=lambda _: None)
    out = str(tmp_path / "report")
    config = EvaluationConfig(data_dir=tiny_dataset, output_dir=out, augmenters=tuple(exports.items()),
                              arms=("none", "synthetic"), seeds=(0,), epochs=1, batch_size=8, width=4,
                              sample_count=2, precision="fp32", judge=judge, tumor_fraction=0.5)
    results = run_evaluation(config)
    plain = results["judged"]["augmenters"]["plain"]
    # The plain augmenter returns its inputs: its rates and KID are the inputs' exactly.
    for direction in ("normal_to_tumor", "tumor_to_normal"):
        assert plain[direction]["rate"]["synthetic"] == plain[direction]["rate"]["inputs"]
        assert plain[direction]["kid"]["synthetic"] == plain[direction]["kid"]["inputs"]
    assert set(results["judged"]["augmenters"]["ssa"]) == {"normal_to_tumor", "tumor_to_normal"}
    low = results["low_data"]
    assert len(low["kept_tumor_cases"]) == 1 and low["tumor_slices"] < low["tumor_slices_before"]
    assert results["data"]["train"]["tumor"]["slices"] == low["tumor_slices"]
    report = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert "## The judge's view of the augmenters" in report and "low-data regime (--tumor_fraction=0.5)" in report
    with pytest.raises(ValueError, match="tumor_fraction"):
        EvaluationConfig(data_dir=tiny_dataset, output_dir=out, arms=("none",), tumor_fraction=0.0)


@pytest.mark.slow
def test_in_masks_draws_normal_to_tumor_inside_transplanted_training_lesions(tmp_path, tiny_dataset):
    """--in_masks: normal->tumor paints exactly inside the lesion masks LesionMasks places from the
    training tumor slices (inside the brain), tumor->normal is the export's own, the rows of both
    ways are trained, and the report says which augmenter drew in masks."""
    from ssagan_tf import lesions
    from ssagan_tf.evaluation.in_masks import DrawnInMasks
    from ssagan_tf.exported import load_translator

    path = save_fake_augmenter(tmp_path / "ssa", in_masks=True)
    data = {split: load_split_arrays(schema.open(tiny_dataset), split) for split in ("train", "test")}
    drawn = DrawnInMasks(load_translator(path, name="ssa_masks", require_info=False), data["train"])
    normal = data["test"]["image"][data["test"]["label"] == 0]
    out = drawn.translate("normal_to_tumor", normal)
    train_tumors = {k: v[data["train"]["label"] == 1] for k, v in data["train"].items()}
    expected = lesions.LesionMasks(train_tumors, 0, "train")(normal, np.arange(len(normal)))
    assert (expected.sum(axis=(1, 2, 3)) > 0).all()
    assert not (expected * (1 - lesions.brain_mask(normal).numpy())).any()
    np.testing.assert_array_equal(out.attention, expected)
    np.testing.assert_allclose(out.image, expected * 0.9 + (1 - expected) * normal)
    tumor = data["test"]["image"][data["test"]["label"] == 1]
    np.testing.assert_array_equal(drawn.translate("tumor_to_normal", tumor).image,
                                  load_translator(path, require_info=False).translate("tumor_to_normal", tumor).image)

    config = EvaluationConfig(data_dir=tiny_dataset, output_dir=str(tmp_path / "report"),
                              augmenters=(("ssa", path), ("ssa_masks", path)), in_masks=("ssa_masks",),
                              arms=("synthetic",), seeds=(0,), epochs=1, batch_size=8, width=4, sample_count=2,
                              precision="fp32")
    results = run_evaluation(config)
    assert [r["name"] for r in results["rows"]] == ["synthetic [ssa 1:1]", "synthetic [ssa_masks 1:1]"]
    report = open(os.path.join(config.output_dir, "report.md"), encoding="utf-8").read()
    assert "`ssa_masks` = `" + path + "` (normal->tumor drawn in transplanted lesion masks)" in report
    assert "`ssa` = `" + path + "`," in report


@pytest.mark.slow
def test_tumors_only_and_normals_only_keep_one_class_of_an_export(tmp_path, tiny_dataset, exports):
    """One export three times: both classes, tumor->normal's synthetic normals only, normal->tumor's
    synthetic tumors only; a rerun that restricts a name trains its classifier again."""
    path = exports["ssa"]
    out = str(tmp_path / "report")
    common = dict(data_dir=tiny_dataset, output_dir=out, arms=("synthetic",), seeds=(0,), epochs=1, batch_size=8,
                  width=4, sample_count=2, precision="fp32")
    config = EvaluationConfig(augmenters=(("ssa", path), ("ssa_t", path), ("ssa_n", path)), tumors_only=("ssa_t",),
                              normals_only=("ssa_n",), **common)
    results = run_evaluation(config)
    runs = {row["augmenter"]: row["runs"][0] for row in results["rows"]}
    # train: 6 normal + 4 tumor real slices; at 1:1, 4 synthetic tumors and 6 synthetic normals.
    assert (runs["ssa"]["synthetic_slices"], runs["ssa"]["train_tumor"]) == (10, 8)
    assert (runs["ssa_t"]["synthetic_slices"], runs["ssa_t"]["train_tumor"]) == (4, 8)
    assert (runs["ssa_n"]["synthetic_slices"], runs["ssa_n"]["train_tumor"]) == (6, 4)
    assert runs["ssa_t"]["synthetic_sources"]["tumor"] == runs["ssa"]["synthetic_sources"]["tumor"]
    assert runs["ssa_n"]["synthetic_sources"]["normal"] == runs["ssa"]["synthetic_sources"]["normal"]
    report = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    assert f"`ssa_t` = `{path}` (synthetic tumor slices only)" in report
    assert f"`ssa_n` = `{path}` (synthetic normal slices only)" in report
    assert results["cross_validation"]["per_fold"][0]["augmenters"]["ssa_n"]["synthetic_classes"] == ["normal"]
    again = run_evaluation(EvaluationConfig(augmenters=(("ssa", path),), tumors_only=("ssa",), **common))
    assert again["classifiers_reused"] == 0
    assert again["rows"][0]["runs"][0]["synthetic_slices"] == 4


@pytest.mark.slow
def test_balance_classes_weights_each_rows_training_set_by_its_own_counts(tmp_path, tiny_dataset, exports):
    """--balance_classes: each row's classifier weighs its slices by n / (2 n_class) of its own
    training set (6 normal + 4 tumor real; + 4 synthetic tumors and 6 synthetic normals at 1:1),
    and its classifiers are keyed apart from the unweighted ones."""
    out = str(tmp_path / "report")
    common = dict(data_dir=tiny_dataset, output_dir=out, augmenters=(("ssa", exports["ssa"]),),
                  arms=("classic", "synthetic"), seeds=(0,), epochs=1, batch_size=8, width=4, sample_count=2,
                  precision="fp32")
    results = run_evaluation(EvaluationConfig(balance_classes=True, **common))
    runs = {row["name"]: row["runs"][0] for row in results["rows"]}
    assert runs["classic"]["class_weights"] == pytest.approx({"normal": 10 / 12, "tumor": 10 / 8})
    assert runs["synthetic [ssa 1:1]"]["class_weights"] == pytest.approx({"normal": 20 / 24, "tumor": 20 / 16})
    assert "class-balanced loss" in open(os.path.join(out, "report.md"), encoding="utf-8").read()
    plain = run_evaluation(EvaluationConfig(**common))
    assert plain["classifiers_reused"] == 0 and "class_weights" not in plain["rows"][0]["runs"][0]
    assert run_evaluation(EvaluationConfig(balance_classes=True, **common))["classifiers_reused"] == 2
    with pytest.raises(ValueError, match="balance_classes with mixup"):
        EvaluationConfig(**dict(common, arms=("mixup",)), balance_classes=True)


def test_in_masks_needs_an_export_with_the_masked_signature(tmp_path, tiny_dataset):
    path = save_fake_augmenter(tmp_path / "old")          # written without normal_to_tumor_in_masks
    config = EvaluationConfig(data_dir=tiny_dataset, output_dir=str(tmp_path / "report"),
                              augmenters=(("ssa", path),), in_masks=("ssa",), arms=("synthetic",), seeds=(0,),
                              epochs=1, batch_size=8, width=4, precision="fp32")
    with pytest.raises(ValueError, match="no normal_to_tumor_in_masks signature"):
        run_evaluation(config)


def test_a_translator_refuses_slices_its_export_cannot_take(tmp_path):
    from ssagan_tf.exported import Translator, load_translator

    fixed = Translator("ssa", "1", "e", {"model_config": {"image_size": 32, "channels": 1}}, {})
    fixed._check_shape(np.zeros((2, 32, 32, 1), np.float32))
    for shape in ((2, 64, 64, 1), (2, 32, 32, 3), (32, 32, 1)):
        with pytest.raises(ValueError, match="given to a model of"):
            fixed._check_shape(np.zeros(shape, np.float32))
    # An export whose signatures leave the size open (no export.json) takes any size, not another channel count.
    open_size = load_translator(save_fake_augmenter(tmp_path / "ssa", in_masks=True), require_info=False)
    images = np.full((2, 24, 24, 1), -0.5, np.float32)
    masks = np.zeros((2, 24, 24, 1), np.float32)
    masks[:, 5:9, 5:9] = 1
    painted, attention = open_size.in_masks(images, masks)
    np.testing.assert_allclose(painted, np.where(masks > 0, 0.9, -0.5))
    with pytest.raises(ValueError, match="given to a model of"):
        open_size.in_masks(np.zeros((2, 24, 24, 3), np.float32), masks)
