"""Checkpoint selection on the validation judge (`--select_best`) and the warm-up's end by a
validation criterion (`--warmup_patience`), instead of choosing epochs by hand.

Every epoch's validation (`validation.Validation`, with `--judge`) is recorded in
`<model_dir>/selection/scores.json` with its selection score:

    score = mean over the two directions of (judge rate - KID_WEIGHT * kid_left)
    kid_left = clip((KID_synthetic - KID_real_halves) / (KID_inputs - KID_real_halves), 0, 1)

The rate is the fraction of a direction's validation translations the judge calls the target
class (tumor for normal->tumor, normal for tumor->normal), over all validation slices. kid_left is
the part of the inputs' distance to the real target slices (in the judge's features) that the
translations have not closed: 0 when they are as close as two halves of the real slices, 1 when
no closer than the untranslated inputs. It keeps a checkpoint that fools the judge with
something unlike any real slice (a rate of 1.00 at a KID of 21 was seen on LGG) from winning.
When the inputs are no farther than the real halves, KID cannot tell and kid_left is 0.

How many slices are enough: a rate over n slices has a binomial standard error of up to
0.5 / sqrt(n), so the score's is up to 0.25 * sqrt(1 / n_normal + 1 / n_tumor)
(`score_standard_error`); two checkpoints closer than twice that are not told apart. The run
warns at start when that exceeds `MAX_STANDARD_ERROR` (20 normal and 50 tumor validation slices
give 0.066: convert with a larger --val_fraction, or read the selection as a tie-break).

Only checkpoints with the attention the run keeps are eligible: an epoch before the warm-up ends
(the attention networks still training; `after_warmup` false in its record) is recorded but
never selected, unless no epoch after it has been recorded yet (a warm-up as long as the run).
On LGG a checkpoint picked inside the warm-up scored best on 22 validation normals by chance and
drew a broad whitening on test (docs/training.md).

The best-scoring eligible checkpoint (strictly higher than every earlier one) is copied to
`<model_dir>/selection/` (outside `checkpoints/`, so `--keep_checkpoints` never deletes it) and
named in scores.json; export (`--checkpoint=best`, or `auto` when there is one) uses it.

The warm-up criterion: after the validation of epoch e, while the attention trains, it ends
(frozen from epoch e on) when for the last `warmup_patience` epochs neither the Dice of A_t nor
the judge's tumor rate of normal->tumor has risen more than `warmup_min_delta` above its best of
the epochs before (`warmup_plateaued`); `--attention_epochs` is the cap. The epoch it ended at is
checkpointed, so a resumed run keeps it.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil

import numpy as np

from ssagan_tf import io as durable
from ssagan_tf.data.schema import DIRECTIONS
from ssagan_tf.judge.config import read_judge_info
from ssagan_tf.run_dir import SCORES_NAME, best_checkpoint, read_scores, selection_dir

KID_WEIGHT = 0.5
MAX_STANDARD_ERROR = 0.05
# A judge below these on its own validation split cannot steer selection or the warm-up.
MIN_JUDGE_AUC = 0.75
MIN_JUDGE_RATE = 0.6


def kid_left(kid: dict) -> float:
    """The fraction of the inputs' KID (vs real target slices) the translations leave, in [0, 1]."""
    gap = kid["inputs"]["mean"] - kid["real_halves"]["mean"]
    if not gap > 0:
        return 0.0
    return float(np.clip((kid["synthetic"]["mean"] - kid["real_halves"]["mean"]) / gap, 0.0, 1.0))


def selection_score(measures: dict) -> dict:
    """The score of one validation's judge measures (`validation.judge_measures`, both directions):
    {"score", "rate": per direction, "kid_left": per direction, "slices": per direction}."""
    missing = [d for d in DIRECTIONS if d not in measures]
    if missing:
        raise ValueError(f"the judge measured no {', '.join(missing)} translations (too few validation slices)")
    rate = {d: float(measures[d]["rate"]["synthetic"]) for d in DIRECTIONS}
    left = {d: kid_left(measures[d]["kid"]) for d in DIRECTIONS}
    score = float(np.mean([rate[d] - KID_WEIGHT * left[d] for d in DIRECTIONS]))
    return {"score": score, "rate": rate, "kid_left": left, "slices": {d: measures[d]["slices"] for d in DIRECTIONS}}


def score_standard_error(normal_slices: int, tumor_slices: int) -> float:
    """The largest binomial standard error of the score's mean of two rates over these slices."""
    if min(normal_slices, tumor_slices) < 1:
        return math.inf
    return 0.25 * math.sqrt(1.0 / normal_slices + 1.0 / tumor_slices)


def slices_warning(normal_slices: int, tumor_slices: int) -> str | None:
    error = score_standard_error(normal_slices, tumor_slices)
    if error <= MAX_STANDARD_ERROR:
        return None
    return (f"WARNING: the validation split has {normal_slices} normal and {tumor_slices} tumor slices: the selection "
            f"score's standard error is up to {error:.3f}, so checkpoints scoring within {2 * error:.2f} of each other "
            "are not told apart (convert with a larger --val_fraction for a firmer choice)")


def judge_warning(info: dict) -> str | None:
    """A warning when the judge (its judge.json `info`) is not competent on the validation split:
    AUC below MIN_JUDGE_AUC, or sensitivity or specificity below MIN_JUDGE_RATE."""
    val = info.get("scores", {}).get("val")
    if not val:
        return None
    weak = [f"{name} {val[name]:.2f}" for name, floor in (("auc", MIN_JUDGE_AUC), ("sensitivity", MIN_JUDGE_RATE),
                                                         ("specificity", MIN_JUDGE_RATE))
            if name in val and not val[name] >= floor]
    if not weak:
        return None
    return (f"WARNING: the judge is weak on the validation split ({', '.join(weak)}; wanted AUC >= {MIN_JUDGE_AUC} "
            f"and sensitivity and specificity >= {MIN_JUDGE_RATE}): its rates say little about the translations, so "
            "--select_best and --warmup_patience follow noise there. Train a better judge (more epochs, "
            "--balance_classes, another width) or use the fixed --attention_epochs and the last checkpoint")


def warmup_plateaued(history: list, patience: int, min_delta: float) -> bool:
    """Whether the warm-up should end after the last epoch of `history` (one dict of measures per
    epoch, from epoch 0, e.g. {"dice": .., "tumor_rate": ..}; a measure may be None): for each
    measure, its best over the last `patience` epochs is at most `min_delta` above its best
    before them."""
    if patience < 1 or len(history) <= patience:
        return False
    names = {k for h in history for k, v in h.items() if v is not None}
    if not names:
        return False
    for name in names:
        before = [h[name] for h in history[:-patience] if h.get(name) is not None]
        recent = [h[name] for h in history[-patience:] if h.get(name) is not None]
        if not before or not recent or max(recent) > max(before) + min_delta:
            return False
    return True


def best_record(records: list) -> dict | None:
    """The first record of the highest score among those with a checkpoint, after the warm-up
    (records without `after_warmup`, from runs before the rule, count as after it); when no such
    record exists yet, among all with a checkpoint."""
    with_checkpoint = [r for r in records if r.get("checkpoint_step") is not None]
    eligible = [r for r in with_checkpoint if r.get("after_warmup", True)] or with_checkpoint
    best = None
    for record in eligible:
        if best is None or record["score"] > best["score"]:
            best = record
    return best


def _write_scores(model_dir: str, scores: dict) -> None:
    os.makedirs(selection_dir(model_dir), exist_ok=True)
    durable.atomic_write(os.path.join(selection_dir(model_dir), SCORES_NAME),
                         json.dumps(scores, indent=2, sort_keys=True))


RULE = (f"score = mean over normal_to_tumor and tumor_to_normal of (judge rate - {KID_WEIGHT} * kid_left), "
        "kid_left = clip((KID_synthetic - KID_real_halves) / (KID_inputs - KID_real_halves), 0, 1)")


class RecordValidation:
    """Periodic action (chief, after `Validation`, before the checkpoint is saved): records each new
    epoch's measures and score in scores.json, and ends the warm-up when the criterion says so.
    `dataset`: the run's main dataset (the `schema.Dataset` training opened), whose validation
    split is scored."""

    def __init__(self, config, dataset, schedule, result, log):
        self.config, self.schedule, self.result, self.log = config, schedule, result, log
        self.recorded = set()
        warning = slices_warning(dataset.count("val", "normal"), dataset.count("val", "tumor"))
        if warning:
            log(warning)
        warning = judge_warning(read_judge_info(config.judge_dir)) if config.judge_dir else None
        if warning:
            log(warning)

    def due(self, step: int) -> bool:
        return self.schedule.ends_epoch(step)

    @staticmethod
    def history(scores: dict) -> list:
        return [{"dice": r.get("dice"), "tumor_rate": r["rate"]["normal_to_tumor"]} for r in scores["records"]]

    def __call__(self, step: int, values=None):
        # Read each time: KeepBest adds the best checkpoint to the same file.
        self.scores = read_scores(self.config.model_dir)
        self.scores["rule"] = RULE
        epochs = sorted(e for e in self.result.val_judge if e not in self.recorded)
        if not epochs:
            return
        # An epoch validated again (a run resumed from before it) replaces its earlier record.
        self.scores["records"] = [r for r in self.scores["records"] if r["epoch"] not in epochs]
        self.recorded.update(epochs)
        for epoch in epochs:
            record = {"epoch": epoch, "step": epoch * self.schedule.steps_per_epoch,
                      "dice": self.result.val_dice.get(epoch), **selection_score(self.result.val_judge[epoch])}
            # The untrained baseline (epoch 0 of a fresh run) has no checkpoint to keep.
            record["checkpoint_step"] = record["step"] if record["step"] > 0 else None
            self.scores["records"].append(record)
            self.log(f"epoch {epoch}: selection score {record['score']:.4f} (rates "
                     f"{record['rate']['normal_to_tumor']:.3f} / {record['rate']['tumor_to_normal']:.3f}, "
                     f"KID left {record['kid_left']['normal_to_tumor']:.3f} / "
                     f"{record['kid_left']['tumor_to_normal']:.3f})")
        self.scores["records"].sort(key=lambda r: r["epoch"])
        epoch = epochs[-1]
        freeze = self.schedule.freeze_epoch
        if (self.config.warmup_patience and freeze is not None and epoch < freeze
                and warmup_plateaued(self.history(self.scores), self.config.warmup_patience, self.config.warmup_min_delta)):
            self.schedule.warmup_end.end_at(epoch)
            self.scores["warmup_ended_at_epoch"] = epoch
            self.log(f"epoch {epoch}: the attention warm-up ends here (Dice of A_t and the tumor rate of "
                     f"normal->tumor rose no more than {self.config.warmup_min_delta} over the last "
                     f"{self.config.warmup_patience} epochs); the attention networks are frozen from now on")
        # The checkpoint at the end of epoch e holds the final attention when it is frozen from e on.
        freeze = self.schedule.freeze_epoch
        for record in self.scores["records"]:
            record["after_warmup"] = freeze is None or record["epoch"] >= freeze
        _write_scores(self.config.model_dir, self.scores)


class KeepBest:
    """Periodic action (chief, after the checkpoint is saved): when the newest record scores higher
    than every earlier one, copies its checkpoint to the selection folder and names it best."""

    def __init__(self, config, schedule, checkpoint_dir: str, log, number_offset: int = 0):
        self.config, self.schedule, self.checkpoint_dir, self.log = config, schedule, checkpoint_dir, log
        # checkpoint number - step: 0 unless this run resumed below a newer checkpoint file
        # (`SaveCheckpoint` numbers its checkpoints the same way).
        self.number_offset = number_offset
        self.keep(None)            # a run killed between saving a checkpoint and keeping it

    def due(self, step: int) -> bool:
        return self.schedule.ends_epoch(step)

    def __call__(self, step: int, values=None):
        self.keep(step)

    def keep(self, step):
        scores = read_scores(self.config.model_dir)
        best = best_record(scores["records"])
        if best is None or (scores.get("best") and scores["best"]["step"] == best["checkpoint_step"]
                            and best_checkpoint(self.config.model_dir)):
            return
        source = os.path.join(self.checkpoint_dir, f"ckpt-{best['checkpoint_step'] + self.number_offset}")
        files = glob.glob(source + ".*")
        if not any(f.endswith(".index") for f in files):
            return                 # saved no more (a resume long after it): keep the earlier best
        folder = selection_dir(self.config.model_dir)
        old = scores.get("best")
        for path in files:          # new files in place first, then scores.json names them
            with durable.atomic_output(os.path.join(folder, os.path.basename(path))) as temp:
                shutil.copyfile(path, temp)
        scores["best"] = {"epoch": best["epoch"], "step": best["checkpoint_step"], "score": best["score"],
                          "checkpoint": os.path.basename(source)}
        _write_scores(self.config.model_dir, scores)
        if old and old["checkpoint"] != scores["best"]["checkpoint"]:
            for path in glob.glob(os.path.join(folder, old["checkpoint"] + ".*")):
                os.remove(path)
        self.log(f"Best checkpoint so far: step {best['checkpoint_step']} (epoch {best['epoch']}, score "
                 f"{best['score']:.4f}), kept in {folder}")
