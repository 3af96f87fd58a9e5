"""ssagan_tf.training.selection: the selection score by value, the warm-up criterion on
constructed score sequences, and the best checkpoint kept through --keep_checkpoints."""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from ssagan_tf.data import schema
from ssagan_tf.training import selection
from ssagan_tf.run_dir import chosen_checkpoint, read_scores


def measures(rate_n2t, rate_t2n, kid_n2t=(1.0, 3.0, 0.2), kid_t2n=(1.0, 3.0, 0.2), slices=(20, 50)):
    """Judge measures as validation.judge_measures returns them; kid = (synthetic, inputs, halves)."""
    def direction(rate, kid, n):
        synthetic, inputs, halves = kid
        return {"rate": {"synthetic": rate, "inputs": 0.1, "real_target": 0.9}, "slices": n,
                "kid": {"synthetic": {"mean": synthetic, "std": 0.1}, "inputs": {"mean": inputs, "std": 0.1},
                        "real_halves": {"mean": halves, "std": 0.1}}}
    return {"normal_to_tumor": direction(rate_n2t, kid_n2t, slices[0]),
            "tumor_to_normal": direction(rate_t2n, kid_t2n, slices[1])}


def test_selection_score_by_value():
    # kid_left = (1.0 - 0.2) / (3.0 - 0.2) = 0.2857...; score = mean(0.8, 0.6) - 0.5 * 0.2857...
    got = selection.selection_score(measures(0.8, 0.6))
    left = 0.8 / 2.8
    assert got["kid_left"]["normal_to_tumor"] == pytest.approx(left)
    assert got["score"] == pytest.approx(0.7 - 0.5 * left)
    assert got["slices"] == {"normal_to_tumor": 20, "tumor_to_normal": 50}
    # Clipped: farther than the inputs -> 1; closer than the real halves -> 0; no gap -> 0.
    assert selection.kid_left(measures(0, 0, kid_n2t=(21.0, 3.0, 0.2))["normal_to_tumor"]["kid"]) == 1.0
    assert selection.kid_left(measures(0, 0, kid_n2t=(-0.1, 3.0, 0.2))["normal_to_tumor"]["kid"]) == 0.0
    assert selection.kid_left(measures(0, 0, kid_n2t=(0.5, 0.2, 0.3))["normal_to_tumor"]["kid"]) == 0.0
    # A rate of 1.00 at a KID of 21 loses to 0.85 at a KID near the real halves.
    fooled = selection.selection_score(measures(1.0, 0.6, kid_n2t=(21.0, 3.0, 0.2)))["score"]
    honest = selection.selection_score(measures(0.85, 0.6, kid_n2t=(0.3, 3.0, 0.2)))["score"]
    assert honest > fooled
    with pytest.raises(ValueError, match="tumor_to_normal"):
        selection.selection_score({"normal_to_tumor": measures(1, 1)["normal_to_tumor"]})


def test_standard_error_and_the_warning_when_there_are_too_few_slices():
    assert selection.score_standard_error(20, 50) == pytest.approx(0.25 * np.sqrt(1 / 20 + 1 / 50))
    assert "not told apart" in selection.slices_warning(20, 50)
    assert selection.slices_warning(100, 400) is None          # 0.028
    assert selection.score_standard_error(0, 5) == float("inf")


@pytest.mark.parametrize("history, patience, delta, ended", [
    ([{"dice": 0.1, "tumor_rate": 0.3}, {"dice": 0.3, "tumor_rate": 0.5}], 1, 0.02, False),       # rising
    ([{"dice": 0.1, "tumor_rate": 0.3}, {"dice": 0.3, "tumor_rate": 0.5}, {"dice": 0.31, "tumor_rate": 0.5}],
     1, 0.02, True),                                       # both within 0.02 of their best for 1 epoch
    ([{"dice": 0.1, "tumor_rate": 0.3}, {"dice": 0.3, "tumor_rate": 0.5}, {"dice": 0.31, "tumor_rate": 0.6}],
     1, 0.02, False),                                      # the rate still rises
    ([{"dice": 0.5, "tumor_rate": 0.8}, {"dice": 0.3, "tumor_rate": 0.5}, {"dice": 0.4, "tumor_rate": 0.7}],
     2, 0.02, True),                                       # two epochs below the epoch-0 best
    ([{"dice": 0.5, "tumor_rate": 0.8}, {"dice": 0.3, "tumor_rate": 0.5}], 2, 0.02, False),      # too short
    ([{"dice": None, "tumor_rate": 0.5}, {"dice": None, "tumor_rate": 0.5}], 1, 0.0, True),       # no masks
    ([{"dice": 0.2, "tumor_rate": 0.5}, {"dice": 0.2, "tumor_rate": 0.5}], 0, 0.0, False),        # patience 0: off
])
def test_warmup_criterion_on_constructed_sequences(history, patience, delta, ended):
    assert selection.warmup_plateaued(history, patience, delta) is ended


class FakeWarmupEnd:
    def __init__(self):
        self.ended = None

    def end_at(self, epoch):
        self.ended = epoch


def test_the_best_checkpoint_is_kept_through_keep_checkpoints_and_named_in_scores(tiny_dataset, tmp_path):
    """Epoch 1 scores best of three; its checkpoint is deleted from checkpoints/ by max_to_keep=2
    but kept in selection/, scores.json lists every epoch's score, and chosen_checkpoint finds it."""
    model_dir = str(tmp_path)
    value = tf.Variable(0.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), os.path.join(model_dir, "checkpoints"),
                                         max_to_keep=2)
    schedule = SimpleNamespace(steps_per_epoch=3, ends_epoch=lambda s: s % 3 == 0, freeze_epoch=None,
                               warmup_end=FakeWarmupEnd())
    config = SimpleNamespace(model_dir=model_dir, warmup_patience=0, warmup_min_delta=0.02, judge_dir="")
    result = SimpleNamespace(val_judge={}, val_dice={})
    log = io.StringIO()
    record = selection.RecordValidation(config, schema.open(tiny_dataset), schedule, result,
                                        lambda m: print(m, file=log))
    keep = selection.KeepBest(config, schedule, os.path.join(model_dir, "checkpoints"), lambda m: print(m, file=log))
    for epoch, rates in enumerate([(0.1, 0.1), (0.9, 0.7), (0.5, 0.5), (0.8, 0.7)]):
        result.val_judge[epoch] = measures(*rates)
        result.val_dice[epoch] = 0.1 * epoch
        step = 3 * epoch
        record(step)
        if step:
            value.assign(float(epoch))
            manager.save(checkpoint_number=step)
        keep(step)
    assert not os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-3.index"))     # max_to_keep
    scores = json.load(open(os.path.join(model_dir, "selection", "scores.json")))
    assert [r["epoch"] for r in scores["records"]] == [0, 1, 2, 3]
    assert scores["records"][0]["checkpoint_step"] is None
    assert scores["records"][1]["score"] == pytest.approx(selection.selection_score(measures(0.9, 0.7))["score"])
    assert scores["best"]["step"] == 3 and scores["best"]["epoch"] == 1
    best = chosen_checkpoint(model_dir, "best")
    assert best == os.path.join(model_dir, "selection", "ckpt-3")
    assert tf.train.load_variable(best, "value/.ATTRIBUTES/VARIABLE_VALUE") == 1.0
    assert chosen_checkpoint(model_dir, "auto") == best
    assert chosen_checkpoint(model_dir, "latest").endswith("checkpoints/ckpt-9")
    assert sorted(os.listdir(os.path.join(model_dir, "selection"))) == ["ckpt-3.data-00000-of-00001", "ckpt-3.index",
                                                                        "scores.json"]
    assert "selection score" in log.getvalue() and "not told apart" in log.getvalue()
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        chosen_checkpoint(str(tmp_path / "other"), "best")


def test_a_later_better_score_replaces_the_kept_checkpoint(tiny_dataset, tmp_path):
    model_dir = str(tmp_path)
    value = tf.Variable(0.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), os.path.join(model_dir, "checkpoints"), 5)
    schedule = SimpleNamespace(steps_per_epoch=1, ends_epoch=lambda s: True, freeze_epoch=None,
                               warmup_end=FakeWarmupEnd())
    config = SimpleNamespace(model_dir=model_dir, warmup_patience=0, warmup_min_delta=0.0, judge_dir="")
    result = SimpleNamespace(val_judge={}, val_dice={})
    record = selection.RecordValidation(config, schema.open(tiny_dataset), schedule, result, lambda m: None)
    keep = selection.KeepBest(config, schedule, os.path.join(model_dir, "checkpoints"), lambda m: None)
    for epoch, rate in ((1, 0.5), (2, 0.9)):
        result.val_judge[epoch] = measures(rate, rate)
        record(epoch)
        value.assign(float(epoch))
        manager.save(checkpoint_number=epoch)
        keep(epoch)
    assert chosen_checkpoint(model_dir, "best").endswith("selection/ckpt-2")
    assert not [f for f in os.listdir(os.path.join(model_dir, "selection")) if f.startswith("ckpt-1")]


def test_the_warmup_ends_when_the_record_says_it_plateaued(tiny_dataset, tmp_path):
    schedule = SimpleNamespace(steps_per_epoch=1, ends_epoch=lambda s: True, freeze_epoch=5,
                               warmup_end=FakeWarmupEnd())
    config = SimpleNamespace(model_dir=str(tmp_path), warmup_patience=1, warmup_min_delta=0.02, judge_dir="")
    result = SimpleNamespace(val_judge={}, val_dice={})
    record = selection.RecordValidation(config, schema.open(tiny_dataset), schedule, result, lambda m: None)
    for epoch, (dice, rate) in enumerate([(0.1, 0.2), (0.3, 0.6), (0.31, 0.61)]):
        result.val_judge[epoch], result.val_dice[epoch] = measures(rate, 0.5), dice
        record(epoch)
        assert schedule.warmup_end.ended == (2 if epoch == 2 else None)
    assert read_scores(str(tmp_path))["warmup_ended_at_epoch"] == 2


def test_best_record_skips_the_warmup_unless_nothing_else_is_recorded():
    inside = {"epoch": 1, "checkpoint_step": 10, "score": 0.9, "after_warmup": False}
    after = [{"epoch": 2, "checkpoint_step": 20, "score": 0.6, "after_warmup": True},
             {"epoch": 3, "checkpoint_step": 30, "score": 0.7, "after_warmup": True}]
    untrained = {"epoch": 0, "checkpoint_step": None, "score": 0.95, "after_warmup": False}
    assert selection.best_record([untrained, inside]) is inside           # nothing after the warm-up yet
    assert selection.best_record([untrained, inside, *after])["epoch"] == 3
    legacy = [{"epoch": 1, "checkpoint_step": 10, "score": 0.9}, {"epoch": 2, "checkpoint_step": 20, "score": 0.5}]
    assert selection.best_record(legacy)["epoch"] == 1                    # records before the rule: all eligible
    assert selection.best_record([untrained]) is None


def test_a_checkpoint_from_inside_the_warmup_is_replaced_by_the_first_one_after_it(tiny_dataset, tmp_path):
    """Frozen from epoch 2: epoch 1 scores highest and is kept while it is the only one; epoch 2
    scores lower but is after the warm-up, so it replaces epoch 1; records say which are eligible."""
    model_dir = str(tmp_path)
    value = tf.Variable(0.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), os.path.join(model_dir, "checkpoints"), 5)
    schedule = SimpleNamespace(steps_per_epoch=1, ends_epoch=lambda s: True, freeze_epoch=2,
                               warmup_end=FakeWarmupEnd())
    config = SimpleNamespace(model_dir=model_dir, warmup_patience=0, warmup_min_delta=0.0, judge_dir="")
    result = SimpleNamespace(val_judge={}, val_dice={})
    record = selection.RecordValidation(config, schema.open(tiny_dataset), schedule, result, lambda m: None)
    keep = selection.KeepBest(config, schedule, os.path.join(model_dir, "checkpoints"), lambda m: None)
    kept = []
    for epoch, rate in ((1, 0.95), (2, 0.6), (3, 0.5)):
        result.val_judge[epoch] = measures(rate, rate)
        record(epoch)
        value.assign(float(epoch))
        manager.save(checkpoint_number=epoch)
        keep(epoch)
        kept.append(os.path.basename(chosen_checkpoint(model_dir, "best")))
    assert kept == ["ckpt-1", "ckpt-2", "ckpt-2"]
    scores = read_scores(model_dir)
    assert [r["after_warmup"] for r in scores["records"]] == [False, True, True]
    assert scores["best"]["epoch"] == 2


def test_judge_warning_by_value():
    good = {"scores": {"val": {"auc": 0.95, "sensitivity": 0.9, "specificity": 0.8}}}
    assert selection.judge_warning(good) is None
    weak = {"scores": {"val": {"auc": 0.63, "sensitivity": 0.56, "specificity": 0.61}}}
    message = selection.judge_warning(weak)
    assert "auc 0.63" in message and "sensitivity 0.56" in message and "specificity" not in message.split(";")[0]
    assert selection.judge_warning({"scores": {"val": {"auc": 0.9, "sensitivity": 1.0, "specificity": 0.0}}})
    assert selection.judge_warning({"scores": {}}) is None


def test_selection_warns_at_start_when_its_judge_is_weak_on_validation(tiny_dataset, tmp_path):
    from ssagan_tf.judge import config as judge

    folder = tmp_path / "judge"
    folder.mkdir()
    (folder / judge.JUDGE_MODEL).write_bytes(b"")
    (folder / judge.JUDGE_INFO).write_text(json.dumps(
        {"format": judge.FORMAT, "scores": {"val": {"auc": 0.52, "sensitivity": 1.0, "specificity": 0.0}}}))
    schedule = SimpleNamespace(steps_per_epoch=1, ends_epoch=lambda s: True, freeze_epoch=None,
                               warmup_end=FakeWarmupEnd())
    config = SimpleNamespace(model_dir=str(tmp_path / "run"), warmup_patience=0,
                             warmup_min_delta=0.0, judge_dir=str(folder))
    lines = []
    selection.RecordValidation(config, schema.open(tiny_dataset), schedule, SimpleNamespace(val_judge={}, val_dice={}),
                               lines.append)
    assert any("judge is weak on the validation split (auc 0.52, specificity 0.00" in line for line in lines)
