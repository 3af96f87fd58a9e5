"""ssagan_tf/console.py: TensorFlow's start-up chatter is dropped, every other stderr line kept.
(The whole thing in a fresh process, with TensorFlow's real output, is in test_cli.py.)"""

import os
import sys

from ssagan_tf import console

INFO = ("I0000 00:00:1796064647.113945    6863 port.cc:153] oneDNN custom operations are on. You may see slightly "
        "different numerical results\n")
CUINIT = ("E0000 00:00:1796064651.891323    6863 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
          "Failed call to cuInit: UNKNOWN ERROR (303)\n")
REAL = "E0000 00:00:1796064651.891323    6863 allocator.cc:12] real trouble: out of memory\n"


def test_noise_is_info_start_up_lines_and_cuinit_without_a_gpu():
    assert console.is_noise(INFO) and console.is_noise(CUINIT, nvidia=False)
    assert console.is_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not console.is_noise(CUINIT, nvidia=True)              # with a GPU, cuInit failing is an error
    assert not console.is_noise(REAL, nvidia=False)
    assert not console.is_noise("run_train.py: error: something the user must see\n")


def test_filtered_stderr_replays_everything_but_the_noise(capfd):
    with console.filtered_stderr():
        for line in (INFO, REAL, CUINIT if not console.has_nvidia_device() else "", "plain line\n"):
            os.write(2, line.encode())
    assert capfd.readouterr().err == REAL + "plain line\n"


def test_a_raised_error_still_replays_what_was_caught(capfd):
    try:
        with console.filtered_stderr():
            os.write(2, (INFO + REAL).encode())
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert capfd.readouterr().err == REAL


def test_install_respects_a_user_who_asks_for_info_lines():
    asked = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    console.install(asked)
    assert asked == {"TF_CPP_MIN_LOG_LEVEL": "0"}
    unset = {}
    try:
        console.install(unset)
        assert unset == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    finally:           # this test process imports TensorFlow as it was
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, console._QuietImport)]


def test_log_records_print_as_plain_lines_warnings_prefixed(capsys):
    import logging

    from absl import logging as absl_logging

    root = logging.getLogger()
    before, level = list(root.handlers), absl_logging.get_verbosity()
    try:
        console.plain_logging()
        console.plain_logging()                                  # once only, however often called
        assert sum(isinstance(h, console.ConsoleHandler) for h in root.handlers) == 1
        assert absl_logging.get_absl_handler() not in root.handlers
        absl_logging.set_verbosity(absl_logging.INFO)
        absl_logging.info("Wrote %d normal and %d tumor synthetic slices", 3, 4)
        absl_logging.warning("legacy manifest")
    finally:
        root.handlers[:] = before
        absl_logging.set_verbosity(level)
    captured = capsys.readouterr()
    assert captured.out == "Wrote 3 normal and 4 tumor synthetic slices\n"
    assert captured.err == "WARNING: legacy manifest\n"


def test_judge_lines_and_classifier_epochs_are_rounded_with_k_of_n_and_eta():
    from ssagan_tf.judge.classifier import EpochLines, format_seconds
    from ssagan_tf.training.validation import describe_judge

    measures = {"normal_to_tumor": {"target": "tumor", "rate": {"synthetic": 0.7293, "inputs": 0.0028771162033081055,
                                                                "real_target": 0.83},
                                    "kid": {"synthetic": {"mean": 4.0912, "std": 1.2345}, "inputs": {"mean": 9.2},
                                            "real_halves": {"mean": 3.456}}}}
    assert describe_judge(measures) == ["judge normal->tumor: tumor rate 0.73 (inputs 0.00, real 0.83); KID vs real "
                                        "tumor 4.09 +- 1.23 (inputs 9.20, real halves 3.46)"]
    assert [format_seconds(s) for s in (4.4, 65, 3725)] == ["4 s", "1 min 05 s", "1 h 02 min"]
    lines = []
    callback = EpochLines("judge", 30, lines.append)
    callback.on_train_begin()
    callback.on_epoch_end(0, {"loss": 0.41234, "val_loss": 0.398765})
    assert len(lines) == 1
    assert lines[0].startswith("judge epoch 1 of 30: loss 0.412, val loss 0.399 (") and "ETA " in lines[0]


def test_importing_the_library_changes_nothing_outside_it():
    """`import ssagan_tf` (as a notebook does) installs no import hook and sets no variable; the
    command lines install the filter themselves (`cli.run`)."""
    import subprocess

    from conftest import REPO_ROOT

    probe = ("import os, sys\n"
             "before = list(sys.meta_path)\n"
             "import ssagan_tf, ssagan_tf.cli, ssagan_tf.exported, ssagan_tf.run_dir, ssagan_tf.training.config\n"
             "assert sys.meta_path == before, sys.meta_path\n"
             "assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ\n"
             "assert 'tensorflow' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
