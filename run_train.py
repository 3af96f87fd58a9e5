"""Train SSA-CycleGAN (or one of the paper's other four systems) on converted TFRecords.

    python run_train.py --flagfile=brain.flags
    python run_train.py --data_dir=DIR --model_dir=DIR [--model=ssa_cyclegan] [--strategy=mirrored] ...

Resumes from the latest checkpoint in --model_dir unless --fresh. One trainer per --model_dir: a
second is refused, naming the first. The data's shards are checked against their manifest at start
and as they are read. Errors end in one line and exit 1 (--debug: the traceback); a bad flag, one
line and exit 2. See docs/reliability.md.
"""

from __future__ import annotations

import importlib.util
import sys

from absl import app, flags

from ssagan_tf.data.integrity import DatasetMismatchError
from ssagan_tf.models import SYSTEMS

flags.DEFINE_string("data_dir", None, "Converted dataset (the --output_dir of `python -m data_prep.convert`).")
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
flags.DEFINE_enum("upsample", "transpose", ["transpose", "resize"],
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
flags.DEFINE_enum("gan_loss", "lsgan", ["lsgan", "vanilla"], "Adversarial loss: least squares or log-loss.")
flags.DEFINE_float("lambda_cycle", 10.0, "Weight of each direction's L1 cycle loss.")
flags.DEFINE_float("lambda_identity", 0.0, "Identity loss weight, relative to lambda_cycle (0 = none, as the paper).")
flags.DEFINE_float("lambda_mask", 1.0, "Weight of the semi-supervised attention (mask) loss; ssa_cyclegan only.")
flags.DEFINE_enum("mask_loss_type", "l1", ["l1", "l1_dice"],
                  "Form of the attention (mask) loss; ssa_cyclegan only. l1 = the paper's L1; l1_dice adds a soft "
                  "Dice term, for tumors covering a few percent of a slice or less, where L1 alone drives the "
                  "attention off the tumors (training warns when it does).")
flags.DEFINE_enum("d_mode", "own_attention", ["full", "source_attention", "own_attention", "paper", "mejjati"],
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
flags.DEFINE_enum("cycle_attention", "recompute", ["recompute", "source"],
                  "Attention of the cycle's way back. recompute (the paper, DESIGN.md): the other direction's "
                  "attention network is run on the translation, so a change survives the cycle only where that "
                  "network sees it. source: the way back changes the region the forward attention changed, "
                  "reusing that map (docs/training.md, 'When normal->tumor draws nothing').")
flags.DEFINE_integer("attention_epochs", 30, "Epochs during which the attention networks train; afterwards they "
                     "are frozen and (d_mode other than full) the discriminators see attended regions only.")
flags.DEFINE_float("tau", 0.1, "Attention threshold: discriminator masks during training, and the inference "
                   "threshold stored in config.json for export and augmentation.")
flags.DEFINE_integer("pool_size", 50, "Image history pool size per replica (0 = no pool).")
flags.DEFINE_boolean("flip", True, "Random left-right flips of training slices.")
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "one_device", "multi_worker"],
                  "mirrored: all local GPUs (or the CPU); one_device: the first GPU (or the CPU); multi_worker: "
                  "MultiWorkerMirroredStrategy across machines, configured by TF_CONFIG.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices, one replica each "
                     "(tests the distributed path without GPUs; 0 = off).")
flags.DEFINE_enum("precision", "auto", ["auto", "fp32", "bf16", "fp16"],
                  "Compute precision. fp32: float32 (reproduces earlier results exactly); bf16: mixed bfloat16 "
                  "(CPUs with AMX/AVX-512 BF16, GPUs of compute capability >= 8.0; ~2x faster on such CPUs); "
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
flags.DEFINE_boolean("fresh", False, "Start over: delete this run's checkpoints, logs and samples in --model_dir.")
flags.DEFINE_string("export_dir", None, "After training, export the generators for TF Serving here "
                    "(`ssagan_tf.export`).")

FLAGS = flags.FLAGS


def config_from_flags(f):
    """Flags -> the frozen, validated RunConfig (image size and channels from the manifest)."""
    from ssagan_tf.data import schema
    from ssagan_tf.models import ModelConfig
    from ssagan_tf.training.config import RunConfig, resolve_precision

    if not f.data_dir or not f.model_dir:
        raise ValueError("--data_dir and --model_dir are required")
    manifest = schema.read_manifest(f.data_dir)
    if f.image_size and f.image_size != manifest.image_size:
        raise ValueError(f"--image_size={f.image_size} but {f.data_dir} holds {manifest.image_size}^2 slices "
                         "(convert again with --image_size, or leave this flag at 0)")
    choice = resolve_precision(f.precision, f.model_dir, f.fresh)
    model = ModelConfig.for_system(f.model, image_size=manifest.image_size, channels=manifest.channels, ngf=f.ngf,
                                   attention_ngf=f.attention_ngf, ndf=f.ndf, n_res_blocks=f.n_res_blocks,
                                   upsample=f.upsample,
                                   precision=choice.precision)
    names = ("batch_size", "epochs", "max_steps", "learning_rate", "beta_1", "beta_2", "decay_start_fraction",
             "gan_loss", "lambda_cycle", "lambda_identity", "lambda_mask", "mask_loss_type", "d_mode", "cycle_attention", "judge_dir",
             "attention_area", "lambda_attention_area",
             "attention_epochs", "tau",
             "pool_size", "flip", "strategy", "cpu_replicas", "jit_compile", "deterministic",
             "seed", "checkpoint_every", "keep_checkpoints", "log_every", "image_every", "fresh")
    return RunConfig(data_dir=f.data_dir, model_dir=f.model_dir, model=model,
                     precision_reason=choice.why,
                     **{n: getattr(f, n) for n in names}).validate()


def unused_flags_warning(f, model) -> str | None:
    """A warning naming the flags set on the command line (or in a flagfile) that `model`'s system
    does not use; None when there are none. Defaults are not named."""
    from ssagan_tf.training.config import SYSTEM_SPECIFIC, unused_settings

    unused = unused_settings(model, [name for name in SYSTEM_SPECIFIC if f[name].present])
    if not unused:
        return None
    named = ", ".join(f"--{name} (only {who})" for name, who in unused)
    return f"WARNING: --model={model.system} does not use {named}; ignored"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags(FLAGS)
        warning = unused_flags_warning(FLAGS, config.model)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        from ssagan_tf.training.loop import check_data, plan

        plan(config, check_data(config))
    except DatasetMismatchError:
        raise                     # the data, not the flags, are at fault: one error line (ssagan_tf.cli)
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from err
    if FLAGS.export_dir and importlib.util.find_spec("ssagan_tf.export") is None:
        raise app.UsageError("--export_dir needs the ssagan_tf.export module, which is not installed")

    from ssagan_tf.training.config import ConfigError
    from ssagan_tf.training.loop import train

    try:
        result = train(config)
    except ConfigError as err:           # found once the devices or the run directory are known
        raise app.UsageError(str(err)) from err
    if FLAGS.export_dir and result.chief:          # one process of a multi-worker run exports
        from ssagan_tf.export import export_models

        export_models(config.model_dir, FLAGS.export_dir, precision=config.precision)
        print(f"Exported to {FLAGS.export_dir}", flush=True)
    return 0


if __name__ == "__main__":
    from ssagan_tf import cli

    cli.run(main, __doc__)
