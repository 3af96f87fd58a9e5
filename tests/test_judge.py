"""ssagan_tf/judge/ (config.py, train.py, scoring.py), its command line (ssagan_tf/commands/judge.py,
`python -m ssagan_tf.judge` and the former `python -m ssagan_tf.evaluation.judge`) and the judge's
measures in metrics.py: tumor rate and KID by value on constructed inputs, `measure` (translate,
then score) by construction, and a judge trained, saved, reloaded and used end to end."""

import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO_ROOT, write_tiny_dataset
from ssagan_tf import metrics
from ssagan_tf.data import schema
from ssagan_tf.data.pipeline import load_split_arrays
from ssagan_tf.judge.config import JUDGE_MODEL, JudgeConfig, check_output_dir
from ssagan_tf.judge.scoring import Judge, measure, translation_measures
from ssagan_tf.judge.train import train_judge


def test_class_rate_by_value():
    p = [0.1, 0.5, 0.7, 0.2]
    assert metrics.class_rate(p, tumor=True) == 0.5            # 0.5 counts as tumor
    assert metrics.class_rate(p, tumor=False) == 0.5
    assert metrics.class_rate(p, tumor=True, threshold=0.6) == 0.25
    assert np.isnan(metrics.class_rate([], tumor=True))


def test_mmd2_unbiased_equals_a_hand_computation():
    # d = 1, k(x, y) = (x y + 1)^3. Within a: k(0, 1) = 1; within b: k(1, 2) = 27;
    # across: k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37, mean 9.25.
    a, b = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert metrics.mmd2_unbiased(a, b) == pytest.approx(1 + 27 - 2 * 9.25)
    kid = metrics.kernel_inception_distance(a, b, subsets=50, subset_size=10)
    assert kid == {"mean": pytest.approx(9.5), "std": 0.0, "subset_size": 2, "subsets": 1}
    with pytest.raises(ValueError, match="at least 2"):
        metrics.mmd2_unbiased(a[:1], b)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    same = metrics.kernel_inception_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)),
                                             subsets=20, subset_size=200)
    shifted = metrics.kernel_inception_distance(rng.normal(size=(400, 8)), rng.normal(0.5, 1, size=(400, 8)),
                                                subsets=20, subset_size=200)
    further = metrics.kernel_inception_distance(rng.normal(size=(400, 8)), rng.normal(1.0, 1, size=(400, 8)),
                                                subsets=20, subset_size=200)
    assert same["subsets"] == 20 and same["subset_size"] == 200 and same["std"] > 0
    assert abs(same["mean"]) < 3 * same["std"] / np.sqrt(20) + 0.01
    assert shifted["mean"] > 10 * abs(same["mean"]) and further["mean"] > 2 * shifted["mean"]
    # Subsets are the mean of separately computed unbiased estimates on random subsets.
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    kid = metrics.kernel_inception_distance(a, b, subsets=3, subset_size=10, seed=5)
    draws = np.random.default_rng(5)
    by_hand = [metrics.mmd2_unbiased(a[draws.choice(30, 10, replace=False)], b[draws.choice(30, 10, replace=False)])
               for _ in range(3)]
    assert kid["mean"] == pytest.approx(np.mean(by_hand)) and kid["std"] == pytest.approx(np.std(by_hand, ddof=1))


def test_split_by_case_keeps_each_case_in_one_half():
    cases = np.array(["a", "a", "b", "c", "c", "c", "d"])
    first, second = metrics.split_by_case(cases, seed=1)
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(7))
    assert not set(cases[first]) & set(cases[second]) and len(first) and len(second)
    one, two = metrics.split_by_case(np.array(["x"] * 5))
    assert len(one) == 2 and len(two) == 3


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    data = write_tiny_dataset(str(tmp_path_factory.mktemp("judge_data")), n_normal=8, n_tumor=8)
    out = str(tmp_path_factory.mktemp("judges") / "judge")
    info = train_judge(JudgeConfig(data_dir=data, output_dir=out, width=8, epochs=3, patience=3, batch_size=8,
                                   precision="fp32"), log=lambda _: None)
    assert info["dataset"]["slices"]["train"] == {"normal": 8, "tumor": 8}
    return data, out


@pytest.mark.slow
def test_judge_is_saved_with_its_scores_and_reloads(judge_dir):
    data, path = judge_dir
    assert sorted(os.listdir(path)) == ["judge.json", "judge.keras"]
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp-judge-")]
    info = json.load(open(os.path.join(path, "judge.json")))
    assert set(info["scores"]) == {"val", "test"} and 0 <= info["scores"]["test"]["auc"] <= 1
    judge = Judge(path)
    assert judge.image_shape == (32, 32, 1) and judge.test_auc == info["scores"]["test"]["auc"]
    images = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32, 1)).astype(np.float32)
    p, features = judge.score(images, batch_size=2)
    assert p.shape == (5,) and np.all((p >= 0) & (p <= 1)) and features.shape == (5, 64)   # width 8 x 8
    p_one, _ = judge.score(images[:1])
    assert p_one[0] == pytest.approx(p[0], abs=1e-5)
    with pytest.raises(ValueError, match="takes slices"):
        judge.score(np.zeros((1, 16, 16, 1)))


@pytest.mark.slow
def test_translation_measures_by_construction(judge_dir):
    data, path = judge_dir
    judge = Judge(path)
    test = load_split_arrays(schema.open(data), "test")
    normal, tumor = test["image"][test["label"] == 0], test["image"][test["label"] == 1]
    p_normal, _ = judge.score(normal)
    p_tumor, _ = judge.score(tumor)
    # A translation that changes nothing scores exactly what its inputs score.
    unchanged = translation_measures(judge, normal, normal, tumor, True, test["case_id"][test["label"] == 1])
    assert unchanged["rate"]["synthetic"] == unchanged["rate"]["inputs"] == metrics.class_rate(p_normal, True)
    assert unchanged["rate"]["real_target"] == metrics.class_rate(p_tumor, True)
    assert unchanged["kid"]["synthetic"] == unchanged["kid"]["inputs"]
    # One that returns the real target slices themselves scores the target's rate, and its KID is
    # the unbiased MMD^2 of a set against itself: 2 (mean off-diagonal k - mean diagonal k) / n <= 0.
    perfect = translation_measures(judge, tumor, normal, tumor, True)
    assert perfect["rate"]["synthetic"] == perfect["rate"]["real_target"]
    assert perfect["kid"]["synthetic"]["mean"] <= 1e-9
    back = translation_measures(judge, normal, tumor, normal, False)
    assert back["target"] == "normal" and back["rate"]["synthetic"] == metrics.class_rate(p_normal, False)


@pytest.mark.slow
def test_measure_translates_in_the_callers_chunks_and_scores_as_made_translations(judge_dir):
    """`measure` hands the translator each direction's source slices in order, `batch_size` at a
    time, with every key of the arrays; a chunk-free translation scores alike in any chunks, and
    alike when the translations are given made."""
    data, path = judge_dir
    judge = Judge(path)
    test = load_split_arrays(schema.open(data), "test")
    test = dict(test, position=np.arange(len(test["label"])))        # a key of the caller's own
    normal, tumor = test["label"] == 0, test["label"] == 1
    calls = []

    def translator(direction, part):
        calls.append((direction, part["position"].tolist()))
        return -part["image"]

    chunked = measure(judge, translator, test, batch_size=3, seed=2)
    sources = {"normal_to_tumor": np.flatnonzero(normal).tolist(), "tumor_to_normal": np.flatnonzero(tumor).tolist()}
    assert len(sources["normal_to_tumor"]) == 8
    assert calls == [(d, rows[i:i + 3]) for d, rows in sources.items() for i in range(0, len(rows), 3)]
    assert chunked["normal_to_tumor"] == translation_measures(judge, -test["image"][normal], test["image"][normal],
                                                              test["image"][tumor], True, test["case_id"][tumor],
                                                              seed=2)
    assert chunked["tumor_to_normal"]["target"] == "normal" and chunked["tumor_to_normal"]["slices"] == 8
    calls.clear()
    assert measure(judge, translator, test, seed=2) == chunked and len(calls) == 2      # no batch_size: one call
    made = {"normal_to_tumor": -test["image"][normal], "tumor_to_normal": -test["image"][tumor]}
    assert measure(judge, made, test, seed=2) == chunked
    assert list(measure(judge, made, test, directions=("tumor_to_normal",), seed=2)) == ["tumor_to_normal"]
    # One tumor slice: normal->tumor lacks real targets, tumor->normal inputs; both are left out.
    one_tumor = {k: v[np.r_[np.flatnonzero(normal), np.flatnonzero(tumor)[:1]]] for k, v in test.items()}
    assert measure(judge, translator, one_tumor) == {}
    with pytest.raises(ValueError, match="normal_to_tumor: 3 translations given for 8 source slices"):
        measure(judge, {"normal_to_tumor": made["normal_to_tumor"][:3]}, test, directions=("normal_to_tumor",))


@pytest.mark.slow
def test_judge_output_folder_rules(judge_dir, tmp_path):
    data, _ = judge_dir
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no judge"):
        train_judge(JudgeConfig(data_dir=data, output_dir=str(foreign), width=8, epochs=1, precision="fp32"))
    assert (foreign / "notes.txt").read_text() == "mine"
    beside = tmp_path / "judge_and_notes"          # a judge, and a user's file beside it
    shutil.copytree(judge_dir[1], beside)
    (beside / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files besides a judge \\(notes.txt\\); nothing there is replaced"):
        check_output_dir(str(beside))
    assert (beside / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_output_dir(str(tmp_path / "file"))
    with pytest.raises(ValueError, match="learning_rate"):
        JudgeConfig(data_dir=data, output_dir="x", learning_rate=float("nan"))
    with pytest.raises(ValueError, match="width must be >= 1, got 0; precision must be one of auto, fp32, bf16, fp16"):
        JudgeConfig(data_dir=data, output_dir="x", width=0, precision="fp64")


@pytest.mark.slow
def test_judge_command_line(judge_dir, tmp_path):
    data, _ = judge_dir
    out = tmp_path / "cli_judge"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "ssagan_tf.judge", f"--data_dir={data}",
                           f"--output_dir={out}", "--width=8", "--epochs=1", "--precision=fp32"],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "judge:" in done.stdout and "test AUC" in done.stdout
    assert re.search(r"^judge epoch 1 of 1: loss \d+\.\d{3}, val loss \d+\.\d{3} \(.* s/epoch, ETA 0 s at most\)$",
                     done.stdout, re.M), done.stdout
    assert (out / "judge.keras").is_file()
    # Retraining replaces the earlier judge whole.
    before = json.load(open(out / "judge.json"))
    done = subprocess.run([sys.executable, "-m", "ssagan_tf.judge", f"--data_dir={data}",
                           f"--output_dir={out}", "--width=8", "--epochs=2", "--patience=5", "--precision=fp32"],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.load(open(out / "judge.json"))["config"]["epochs"] == 2 != before["config"]["epochs"]


@pytest.mark.slow
def test_the_former_command_path_trains_a_judge_and_says_it_moved(judge_dir, tmp_path):
    data, _ = judge_dir
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    moved = ("python -m ssagan_tf.evaluation.judge is deprecated: use python -m ssagan_tf.judge (or ssagan judge), "
             "same flags")
    out = tmp_path / "old_path_judge"
    done = subprocess.run([sys.executable, "-m", "ssagan_tf.evaluation.judge", f"--data_dir={data}",
                           f"--output_dir={out}", "--width=8", "--epochs=1", "--precision=fp32"],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.splitlines()[0] == moved and "test AUC" in done.stdout
    assert json.load(open(out / "judge.json"))["config"]["width"] == 8
    done = subprocess.run([sys.executable, "-m", "ssagan_tf.evaluation.judge", f"--data_dir={tmp_path / 'nowhere'}",
                           f"--output_dir={tmp_path / 'j'}"], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 2 and lines[0] == moved, done.stderr
    assert lines[1].startswith("python -m ssagan_tf.evaluation.judge: ") and "nowhere" in lines[1]


@pytest.mark.slow
def test_a_balanced_judge_stops_on_the_class_weighted_validation_loss(tmp_path):
    """3 normal / 9 tumor slices per split: the judge records its weights, and its best validation
    loss is the class-weighted binary cross-entropy of the kept model on val, by hand."""
    data = write_tiny_dataset(str(tmp_path / "data"), n_normal=3, n_tumor=9)
    out = str(tmp_path / "judge")
    info = train_judge(JudgeConfig(data_dir=data, output_dir=out, width=8, epochs=3, patience=3, batch_size=32,
                                   precision="fp32", balance_classes=True), log=lambda _: None)
    assert info["config"]["balance_classes"] is True
    assert info["class_weights"]["train"] == {"0": pytest.approx(2.0), "1": pytest.approx(12 / 18)}
    val = load_split_arrays(schema.open(data), "val")
    model = keras.models.load_model(os.path.join(out, JUDGE_MODEL), compile=False)
    logits = np.asarray(model.predict(val["image"], verbose=0), np.float64).ravel()
    y = val["label"].astype(np.float64)
    per_slice = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    w = np.where(y == 1, 12 / 18, 2.0)
    assert info["best_val_loss"] == pytest.approx(float(np.sum(w * per_slice) / len(y)), rel=1e-4)
    # Unweighted, the same model's loss differs: the weights reached the stopping criterion.
    assert abs(float(np.mean(per_slice)) - info["best_val_loss"]) > 1e-4


@pytest.mark.slow
def test_a_checked_judge_config_hands_its_dataset_to_the_trainer(tmp_path, monkeypatch):
    """The judge's command checks its config (which opens the dataset) and gives the opened
    dataset to `train_judge`: the manifest is read once; a trainer given none checks for itself."""
    data = write_tiny_dataset(str(tmp_path / "data"), size=16, n_normal=4, n_tumor=4)
    reads = []
    read_manifest = schema.read_manifest
    monkeypatch.setattr(schema, "read_manifest", lambda folder: reads.append(folder) or read_manifest(folder))
    config = JudgeConfig(data_dir=data, output_dir=str(tmp_path / "judge"), width=8, epochs=1, precision="fp32")
    info = train_judge(config, log=lambda _: None, dataset=config.check_inputs())
    assert reads == [data] and info["epochs_run"] == 1
    train_judge(JudgeConfig(data_dir=data, output_dir=str(tmp_path / "again"), width=8, epochs=1,
                            precision="fp32"), log=lambda _: None)
    assert reads == [data, data]
