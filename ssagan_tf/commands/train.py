"""Train SSA-CycleGAN (or one of the paper's other four systems) on converted TFRecords.

    python run_train.py --flagfile=brain.flags        (or: ssagan train --flagfile=brain.flags)
    python run_train.py --data_dir=DIR --model_dir=DIR [--model=ssa_cyclegan] [--strategy=mirrored] ...
    python run_train.py --data_dir=DIR,HEALTHY_DIR ...   (a healthy cohort's train normals join the normal domain)

Resumes from the newest intact checkpoint in --model_dir unless --fresh, with the settings the run
was trained with: a change that alters the result (data, seed, schedule, batch, tau, losses,
precision, ...) is refused, naming each, unless --allow_changes names it. One trainer per
--model_dir: a second is refused, naming the first. The data's shards are checked against their
manifest at start and as they are read. Ctrl-C or SIGTERM saves a checkpoint of the last finished
step, prints "interrupted" and exits 130. Errors end in one line and exit 1 (--debug: the
traceback); a bad flag, one line and exit 2. See docs/reliability.md.
"""

from __future__ import annotations

import sys

from absl import app, flags

from ssagan_tf import cli
# Only plain-Python modules here: --help and a bad flag are answered before TensorFlow loads.
from ssagan_tf.choices import CYCLE_ATTENTIONS, D_MODE_ALIASES, D_MODES, GAN_LOSSES, MASK_LOSS_TYPES, SYSTEMS, UPSAMPLING
from ssagan_tf.data.integrity import DatasetMismatchError
from ssagan_tf.precision import PRECISIONS
from ssagan_tf.training.config import FREE_ON_RESUME, RESUME_GUARDED, STRATEGIES, SYSTEM_SPECIFIC, ConfigError, \
    build_run_config, unused_settings_warning

flags.DEFINE_list("data_dir", None, "Converted dataset (the --output_dir of `python -m data_prep.convert`), or a "
                  "comma-separated list of them: the first is the main dataset (both classes; it alone is "
                  "validated, judged and selected on); each further one adds the slices of its train split "
                  "by class, so a healthy cohort converted with --no_masks --assume_normal joins the normal "
                  "domain (its val and test splits are not read). All must hold slices of the same size, "
                  "channels and modalities, and no patient may be in two splits (docs/training.md, "
                  "'Several datasets').")
flags.DEFINE_string("model_dir", None, "Run directory: config.json, checkpoints/, logs/ (TensorBoard), samples/; "
                    "locked while a trainer runs (train.lock), so a second trainer there is refused.")
flags.DEFINE_enum("model", "ssa_cyclegan", list(SYSTEMS),
                  "Which of the paper's five systems to train (Table I): plain CycleGAN, +spectral norm, "
                  "+attention, +both, or SSA-CycleGAN (attention, spectral norm and the semi-supervised mask loss).")
flags.DEFINE_integer("image_size", 0, "Slice size; 0 takes it from the dataset manifest, otherwise it must match it.")
flags.DEFINE_integer("ngf", 64, "Filters of the generators' first layer (and of the attention networks', unless "
                     "--attention_ngf is set).")
flags.DEFINE_integer("attention_ngf", 0, "Filters of the attention networks' first layer; 0 = --ngf (the reference "
                     "shape). 32 (the width of Mejjati et al.'s attention network) cuts the attention cost ~3x. "
                     "Systems with attention only.")
flags.DEFINE_integer("ndf", 64, "Filters of the discriminators' first layer.")
flags.DEFINE_integer("n_res_blocks", 9, "Residual blocks in each generator (9 in CycleGAN at 256^2).")
flags.DEFINE_enum("upsample", "transpose", list(UPSAMPLING),
                  "Generator decoder: stride-2 transposed convolutions (transpose, CycleGAN's) or nearest x2 + "
                  "3x3 convolution (resize), which does not paint a checkerboard into filled regions.")
flags.DEFINE_integer("batch_size", 1, "Global batch size (split evenly across replicas; the paper uses 1).")
flags.DEFINE_integer("epochs", 100, "Epochs (passes over the longer training domain); the learning-rate schedule "
                     "spans all of them.")
flags.DEFINE_integer("max_steps", 0, "Stop at this global step (0 = train all epochs). Does not change the "
                     "learning-rate schedule, so a stopped run can be resumed with a larger value.")
flags.DEFINE_float("learning_rate", 2e-4, "Adam learning rate of both players.")
flags.DEFINE_float("beta_1", 0.5, "Adam beta_1.")
flags.DEFINE_float("beta_2", 0.999, "Adam beta_2.")
flags.DEFINE_float("decay_start_fraction", 0.5, "Fraction of the steps at constant learning rate before the "
                   "linear decay to 0.")
flags.DEFINE_enum("gan_loss", "lsgan", list(GAN_LOSSES), "Adversarial loss: least squares or log-loss.")
flags.DEFINE_float("lambda_cycle", 10.0, "Weight of each direction's L1 cycle loss.")
flags.DEFINE_float("lambda_identity", 0.0, "Identity loss weight, relative to lambda_cycle (0 = none, as the paper).")
flags.DEFINE_float("lambda_mask", 1.0, "Weight of the semi-supervised attention (mask) loss; ssa_cyclegan only.")
flags.DEFINE_enum("mask_loss_type", "l1", list(MASK_LOSS_TYPES),
                  "Form of the attention (mask) loss; ssa_cyclegan only. l1 = the paper's L1; l1_dice adds a soft "
                  "Dice term, for tumors covering a few percent of a slice or less, where L1 alone drives the "
                  "attention off the tumors (training warns when it does).")
flags.DEFINE_enum("d_mode", "own_attention", list(D_MODES) + list(D_MODE_ALIASES),
                  "What the discriminators see after the attention warm-up: full images (full); real and fake both "
                  "masked by the fake's source attention (source_attention, the paper's form; alias paper); or fakes "
                  "masked by their source attention and reals by their own attention (own_attention, Mejjati et "
                  "al.; alias mejjati).")
flags.DEFINE_string("judge_dir", "", "A judge trained on this dataset (python -m ssagan_tf.evaluation.judge): each "
                    "epoch it scores the validation translations (tumor rate of normal->tumor, normal rate of "
                    "tumor->normal, KID against real slices). Empty = no judge.")
flags.DEFINE_float("attention_area", 0.0, "Not in the paper. > 0: while the attention trains, a hinge loss keeps the "
                   "normal->tumor attention A_n open over at least this fraction of the head (e.g. the median "
                   "tumor area of the labelled slices), so it cannot close to 0 and make normal->tumor the "
                   "identity (docs/training.md, 'When normal->tumor draws nothing'). 0 = off.")
flags.DEFINE_float("lambda_attention_area", 1.0, "Weight of the --attention_area hinge (which lies in [0, 1]).")
flags.DEFINE_enum("cycle_attention", "recompute", list(CYCLE_ATTENTIONS),
                  "Attention of the cycle's way back. recompute (the paper; docs/method.md): the other direction's "
                  "attention network is run on the translation, so a change survives the cycle only where that "
                  "network sees it. source: the way back changes the region the forward attention changed, "
                  "reusing that map (docs/training.md, 'When normal->tumor draws nothing').")
flags.DEFINE_integer("attention_epochs", 30, "Epochs during which the attention networks train; afterwards they "
                     "are frozen and (d_mode other than full) the discriminators see attended regions only.")
flags.DEFINE_float("tau", 0.1, "Attention threshold: discriminator masks during training, and the inference "
                   "threshold stored in config.json for export and augmentation.")
flags.DEFINE_integer("pool_size", 50, "Image history pool size per replica (0 = no pool).")
flags.DEFINE_boolean("flip", True, "Random left-right flips of training slices.")
flags.DEFINE_enum("strategy", "mirrored", list(STRATEGIES),
                  "mirrored: all local GPUs (or the CPU); one_device: the first GPU (or the CPU); multi_worker: "
                  "MultiWorkerMirroredStrategy across machines, configured by TF_CONFIG.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices, one replica each "
                     "(tests the distributed path without GPUs; 0 = off).")
flags.DEFINE_enum("precision", "auto", list(PRECISIONS),
                  "Compute precision. fp32: float32 (reproduces earlier results exactly); bf16: mixed bfloat16 "
                  "(CPUs with AMX/AVX-512 BF16, GPUs of compute capability >= 8.0; 1.5-1.8x faster than fp32 on the "
                  "reference CPU, README Performance); "
                  "fp16: mixed float16 with loss scaling (GPUs of capability 7.x). Normalisation, losses, Eq. 1, "
                  "the output activations, spectral norm's power iteration and optimizer state stay float32. auto "
                  "picks by hardware (and continues a saved run in its own precision); the choice and the reason "
                  "are printed first and stored in config.json.")
flags.DEFINE_boolean("jit_compile", False, "Compile each replica's step with XLA.")
flags.DEFINE_boolean("deterministic", False, "TF op determinism, for bitwise-repeatable runs (slower). The data order "
                     "and flips are deterministic from --seed either way.")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order and image pools.")
flags.DEFINE_integer("checkpoint_every", 500, "Save a checkpoint every this many steps (and at every epoch end).")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept on disk.")
flags.DEFINE_integer("log_every", 50, "Console line and TensorBoard scalars every this many steps.")
flags.DEFINE_integer("image_every", 500, "TensorBoard image grid and samples/step_*.png every this many steps.")
flags.DEFINE_boolean("fresh", False, "Start over: delete what training wrote in --model_dir (config.json, "
                     "checkpoints, TensorBoard event files, sample grids), nothing else; refused for a folder that "
                     "is not a training run.")
flags.DEFINE_list("allow_changes", [], "On resume, the settings that may differ from the saved run's (comma-separated "
                  "names among " + ", ".join(RESUME_GUARDED) + "; data = the dataset's checksum). These may always "
                  "change: " + ", ".join(n for n in FREE_ON_RESUME if n not in ("fresh", "allow_changes",
                                                                                 "precision_reason")) + ".")
flags.DEFINE_integer("folds", 0, "Patient-level cross-validation: train on fold --fold's training patients of K "
                     "folds (the patients of all of --data_dir's splits pooled, as run_evaluate.py --folds=K deals "
                     "them); their data are written once to --model_dir/fold_data, the fold's test patients never. "
                     "0 = the dataset's own train split.")
flags.DEFINE_integer("fold", 0, "With --folds: which fold's training patients to train on (0..K-1).")
flags.DEFINE_integer("fold_seed", 0, "With --folds: the seed of the patients' fold assignment (the evaluation's "
                     "--fold_seed must be the same).")
flags.DEFINE_float("tumor_fraction", 1.0, "With --folds: the low-data regime; keep the tumor slices of only this "
                   "fraction of the fold's training cases, the same ones run_evaluate.py --tumor_fraction keeps "
                   "for the fold's classifiers. 1 = all.")
flags.DEFINE_float("ema_decay", 0.0, "Not in the paper. > 0: keep an exponential moving average of the generators' "
                   "weights (e.g. 0.999: about the last 1000 steps; the attention networks, frozen after the "
                   "warm-up, are not averaged), checkpointed with the "
                   "run; validation, samples, export and augmentation use it, the raw weights train "
                   "(docs/training.md, 'Levers'). 0 = off.")
flags.DEFINE_boolean("select_best", False, "Not in the paper. Score every epoch's validation translations with "
                     "--judge_dir (mean of both directions' judge rates minus a KID penalty; docs/training.md, "
                     "'Levers'), record the scores in <model_dir>/selection/scores.json and keep the best "
                     "checkpoint there (never deleted by --keep_checkpoints); export then uses it.")
flags.DEFINE_integer("warmup_patience", 0, "Not in the paper. > 0: end the attention warm-up early, after the "
                     "epoch where neither A_t's validation Dice nor the judge's tumor rate of normal->tumor has "
                     "risen by more than --warmup_min_delta for this many epochs (needs --judge_dir; "
                     "--attention_epochs is the cap). 0 = the fixed --attention_epochs.")
flags.DEFINE_float("warmup_min_delta", 0.02, "The rise of a validation measure that counts as progress for "
                   "--warmup_patience.")
flags.DEFINE_float("lesion_guidance", 0.0, "Not in the paper. > 0: while the attention trains, each normal slice "
                   "gets the whole-tumor mask of the batch's labelled tumor slice transplanted onto it (inside the "
                   "head, rotated and scaled within limits; ssagan_tf/lesions.py), and A_n is pulled towards it by "
                   "the --mask_loss_type loss with this weight. 0 = off.")
flags.DEFINE_float("lambda_fill", 0.0, "Not in the paper. > 0: weight of a self-supervised healthy-fill term: a "
                   "real lesion is pasted into a normal slice and tumor->normal, given its mask as attention, must "
                   "restore the original (L1 inside the mask). 0 = off.")
flags.DEFINE_string("export_dir", None, "After training, export the generators for TF Serving here "
                    "(`ssagan_tf.export`, computing in float32); checked before training starts.")

FLAGS = flags.FLAGS
# The library's settings, by flag name (every flag above but the entry point's own --debug).
SETTINGS = ("data_dir", "model_dir", "model", "image_size", "precision", "ngf", "attention_ngf", "ndf",
            "n_res_blocks", "upsample", "batch_size", "epochs", "max_steps", "learning_rate", "beta_1", "beta_2",
            "decay_start_fraction", "gan_loss", "lambda_cycle", "lambda_identity", "lambda_mask", "mask_loss_type",
            "d_mode", "cycle_attention", "judge_dir", "attention_area", "lambda_attention_area", "attention_epochs",
            "tau", "pool_size", "flip", "strategy", "cpu_replicas", "jit_compile", "deterministic", "seed",
            "checkpoint_every", "keep_checkpoints", "log_every", "image_every", "fresh", "export_dir",
            "allow_changes", "ema_decay", "select_best", "warmup_patience", "warmup_min_delta",
            "lesion_guidance", "lambda_fill")


def fold_settings() -> dict:
    """With --folds: the fold's cohort record and its training data folder (written here, once)."""
    used = [name for name in ("fold", "fold_seed", "tumor_fraction") if FLAGS[name].present]
    if not FLAGS.folds:
        if used:
            raise app.UsageError(f"--{', --'.join(used)} need --folds (cross-validation)")
        return {}
    if FLAGS.folds < 2:
        raise app.UsageError(f"--folds={FLAGS.folds}: need at least 2 (or 0 for no cross-validation)")
    if not 0.0 < FLAGS.tumor_fraction <= 1.0:
        raise app.UsageError(f"--tumor_fraction={FLAGS.tumor_fraction}: must be in (0, 1]")
    if not FLAGS.data_dir or not FLAGS.model_dir:
        raise app.UsageError("--data_dir and --model_dir are required")
    if len(FLAGS.data_dir) > 1:
        raise app.UsageError(f"--folds deals the patients of one dataset into folds; --data_dir names "
                             f"{len(FLAGS.data_dir)} ({', '.join(FLAGS.data_dir)}). Cross-validate on the main "
                             "dataset alone, or convert the cohorts together into one dataset")
    data_dir = FLAGS.data_dir[0]
    import os

    from ssagan_tf.data import folds, schema

    try:
        source = schema.open(data_dir)
        cohort = folds.cohort_record(source, FLAGS.folds, FLAGS.fold, FLAGS.fold_seed, FLAGS.tumor_fraction)
        data_dir = folds.write_fold_dataset(source, os.path.join(FLAGS.model_dir, folds.FOLD_DATA_NAME), cohort)
    except (FileNotFoundError, ValueError) as err:
        raise app.UsageError(str(err)) from err
    print(f"Fold {FLAGS.fold} of {FLAGS.folds}: training on {len(cohort['train_patients'])} patients, validating on "
          f"{len(cohort['val_patients'])}; its {len(cohort['test_patients'])} test patients are not in {data_dir}",
          flush=True)
    return {"data_dir": data_dir, "cohort": cohort}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    settings = {name: FLAGS[name].value for name in SETTINGS}
    settings.update(fold_settings())
    try:
        config = build_run_config(**settings)
    except ConfigError as err:
        raise app.UsageError(str(err)) from err
    warning = unused_settings_warning(config.model, [name for name in SYSTEM_SPECIFIC if FLAGS[name].present])
    if warning:
        print(warning, file=sys.stderr, flush=True)

    from ssagan_tf.export import export_after_training
    from ssagan_tf.training.loop import train

    try:
        train(config, finish=export_after_training)
    except DatasetMismatchError:
        raise                     # the data, not the flags, are at fault: one error line (ssagan_tf.cli)
    except ConfigError as err:    # the data, devices or run directory refuse these settings
        raise app.UsageError(str(err)) from err
    return 0


def run(argv=None) -> None:
    """The command line (run_train.py, `ssagan train`): `ssagan_tf.cli`'s endings; exits."""
    cli.run(main, __doc__, argv, help_module=sys.modules[__name__])


if __name__ == "__main__":
    run()
