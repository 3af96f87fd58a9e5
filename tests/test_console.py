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
