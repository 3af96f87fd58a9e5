"""ssagan_tf/locking.py: one holder per folder, the second named the first, and a lock that dies
with its holder (kill -9 included)."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT
from ssagan_tf.locking import DirectoryLock, DirectoryLockedError, is_held, read_holder


def _lock(folder):
    return DirectoryLock(str(folder), "test.lock", "a test run", "--folder")


def test_second_holder_is_refused_naming_the_first_and_may_take_it_after_release(tmp_path):
    first = _lock(tmp_path / "run").acquire()
    with pytest.raises(DirectoryLockedError) as refused:
        _lock(tmp_path / "run").acquire()
    message = str(refused.value)
    assert f"is in use by a test run (pid {os.getpid()} on {socket.gethostname()}, started " in message
    assert "choose another --folder" in message and "\n" not in message
    assert is_held(first.path)
    first.release()
    assert not is_held(first.path)
    with _lock(tmp_path / "run") as second:
        assert read_holder(second.path)["pid"] == os.getpid()
    assert not is_held(second.path)


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="--folder .*run: is a file, not a folder"):
        _lock(tmp_path / "run").acquire()


def test_lock_of_a_process_killed_with_sigkill_is_free_at_once(tmp_path):
    code = (f"import sys, time; sys.path.insert(0, {REPO_ROOT!r})\n"
            "from ssagan_tf.locking import DirectoryLock\n"
            f"DirectoryLock({str(tmp_path / 'run')!r}, 'test.lock', 'a test run', '--folder').acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(300)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLockedError, match=f"pid {holder.pid} on "):
            _lock(tmp_path / "run").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=HANG_TIMEOUT)
    with _lock(tmp_path / "run") as taken:
        assert read_holder(taken.path)["pid"] == os.getpid()
