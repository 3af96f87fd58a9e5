"""Exclusive locks on the folders a run writes: one trainer per `--model_dir`, one augmentation
per `--output_dir`.

A lock is `fcntl.flock` on a small file in the folder, held open for as long as the run lasts.
The kernel drops it when the process ends, however it ends (`kill -9` included), so a lock never
outlives its holder and there is nothing to clean up by hand; the file stays, holding who took
the lock last (pid, host, start time), so that a second starter can name the holder.

flock works between processes of one machine, and on NFS v4 (where Linux emulates it with
byte-range locks) between machines; on file systems without locking it raises, and we say so.

Lock files are opened without following symbolic links: a link planted under a lock's name is
refused, so taking a lock can never truncate or overwrite the file it points to.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time


class DirectoryLockedError(RuntimeError):
    """Another live process holds the folder's lock."""


class DirectoryLock:
    """`with DirectoryLock(folder, "train.lock", "training run", "--model_dir"):` ... the body runs
    holding the folder's lock; a second holder raises `DirectoryLockedError` naming the first.

    `what` says what holds such a lock (in the message), `option` which setting picks the folder.
    The folder is created when missing."""

    def __init__(self, directory: str, name: str, what: str, option: str):
        self.directory, self.what, self.option = directory, what, option
        self.path = os.path.join(directory, name)
        self._fd = None

    def acquire(self) -> "DirectoryLock":
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise NotADirectoryError(f"{self.option} {self.directory}: is a file, not a folder")
        os.makedirs(self.directory, exist_ok=True)
        fd = _open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DirectoryLockedError(self._busy_message()) from None
            raise OSError(err.errno, f"{self.path}: cannot lock ({err.strerror}); the file system of "
                                     f"{self.directory} may not support locks: use a local folder") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()), "what": self.what}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)            # closing drops the flock
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _busy_message(self) -> str:
        holder = read_holder(self.path)
        if holder:
            who = (f"{holder.get('what', 'another run')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                   f"started {holder.get('started', '?')})")
        else:
            who = "another process (it has not written its name yet)"
        return (f"{self.directory} is in use by {who}; wait for it to finish, stop it, or choose another "
                f"{self.option} (lock file {self.path})")


def _open_lock_file(path: str, flags: int) -> int:
    """Open a lock file, refusing a symbolic link (O_NOFOLLOW) or anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(err.errno, f"{path}: the lock file is a symbolic link; refusing to follow it (a lock "
                                     "is a plain file this program writes: remove the link)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path}: the lock file is not a regular file; remove it")
    return fd


def read_holder(path: str) -> dict:
    """What the lock file at `path` says about its last holder ({} when unreadable or a link)."""
    try:
        fd = _open_lock_file(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        with os.fdopen(fd) as f:
            value = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def is_held(path: str) -> bool:
    """Whether a live process holds the lock file at `path` (False when the file is missing)."""
    try:
        fd = _open_lock_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)


def is_stale(path: str) -> bool:
    """Whether the lock file at `path` marks work that a dead process of this machine left: the
    file is a plain file naming this host and a pid, and nobody holds its lock. Work of another
    machine (a shared file system, where flock may not reach across hosts) is never stale here."""
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    holder = read_holder(path)
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        return not is_held(path)
    except OSError:
        return False
