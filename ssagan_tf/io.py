"""Files that survive a power cut: write to a temporary file, fsync it, rename it into place, fsync
the folder.

`os.replace` alone is atomic against a crash of the process (`kill -9`), not of the machine: the
rename can reach the disk before the file's data, and a power cut then leaves an empty or partial
file under the final name. Flushing the data before the rename, and the folder after it (the
rename is an entry of the folder), closes that window.

The ways in: `atomic_write` for text or bytes in hand, `atomic_output` for writers that need a
file name (np.savez, a figure's savefig, SimpleITK's WriteImage, shutil.copyfile), and
`replace_durably` for a file or a folder staged elsewhere (a folder flushed with `fsync_tree`
first). Temporary files are written where the caller says: beside the final
file by default, or in a folder of the caller's own (a staging folder), so that a temporary left by
a killed process is never mistaken for, nor confused with, a user's file. Their names are the
final name with `.tmp-<12 hex digits>` appended (`TEMPORARY_MARK`; `atomic_output` may add the
writer's extension after it), by which a program that cleans its own folders recognises them.
"""

from __future__ import annotations

import contextlib
import os
import uuid

# A regular expression of what `temporary_path` appends to a file's name.
TEMPORARY_MARK = r"\.tmp-[0-9a-f]{12}"


def fsync_file(path: str) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Flush a folder's entries (a rename into it, a new file) to the disk. A file system that
    cannot sync folders (some network and FUSE mounts) is let be: it gives no such guarantee."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str) -> None:
    """Flush every file and folder under `root` (a staging folder about to be renamed whole)."""
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                fsync_file(path)
        fsync_dir(directory)


def replace_durably(source: str, target: str) -> None:
    """`os.replace(source, target)` after flushing `source` (a file or a folder), then flush the
    folders whose entries changed."""
    if os.path.isdir(source):
        fsync_dir(source)
    else:
        fsync_file(source)
    os.replace(source, target)
    fsync_dir(os.path.dirname(os.path.abspath(target)))
    source_parent = os.path.dirname(os.path.abspath(source))
    if source_parent != os.path.dirname(os.path.abspath(target)):
        fsync_dir(source_parent)


def temporary_path(path: str, temp_dir: str | None = None) -> str:
    """A fresh name for the temporary file of `path`: in `temp_dir` when given (a folder on the
    same file system), else beside `path`."""
    directory = temp_dir or os.path.dirname(os.path.abspath(path))
    return os.path.join(directory, f"{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}")


def atomic_write(path: str, data, temp_dir: str | None = None) -> str:
    """Write `data` (str or bytes) to `path` so that `path` holds either its old content or all of
    the new, even after a power cut. Returns `path`."""
    temp = temporary_path(path, temp_dir)
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    try:
        with open(temp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):
            os.remove(temp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return path


@contextlib.contextmanager
def atomic_output(path: str, temp_dir: str | None = None, suffix: str = ""):
    """`with atomic_output(path) as temp:` write the file at `temp`; when the block ends it is
    flushed and renamed to `path` (`replace_durably`), and when the block raises it is removed, so
    `path` holds either its old content or all of the new. `suffix` ends the temporary name, for
    writers that choose the format by it (np.savez adds `.npz` to a name without it, savefig and
    SimpleITK read the extension)."""
    temp = temporary_path(path, temp_dir) + suffix
    try:
        yield temp
        replace_durably(temp, path)
    except BaseException:
        if os.path.lexists(temp):
            os.remove(temp)
        raise


def entries_under(root: str, skip_top=lambda name: False) -> list:
    """Every file, link and empty folder under `root`, as sorted '/'-separated relative paths
    (empty folders end in '/'); links are listed, never followed. Top-level names for which
    `skip_top` is true are left out (a program's own state, lock or staging)."""
    found = []
    for directory, subdirs, files in os.walk(root):
        rel = os.path.relpath(directory, root)
        if rel == ".":
            subdirs[:] = [d for d in subdirs if not skip_top(d)]
            files = [f for f in files if not skip_top(f)]
        for name in subdirs:
            if os.path.islink(os.path.join(directory, name)):
                found.append(os.path.normpath(os.path.join(rel, name)))
        if rel != "." and not subdirs and not files:
            found.append(rel + "/")
        found += [os.path.normpath(os.path.join(rel, name)) for name in files]
    return sorted(p.replace(os.sep, "/") for p in found)


def not_owned(entries, owned) -> list:
    """The `entries_under` paths that are neither in `owned` (relative file paths) nor one of
    their folders."""
    owned = set(owned)
    folders = set()
    for name in owned:
        parent = os.path.dirname(name)
        while parent:
            folders.add(parent)
            parent = os.path.dirname(parent)
    return [p for p in entries if p not in owned and p.rstrip("/") not in folders]


def remove_owned(root: str, owned) -> int:
    """Remove the plain files of `owned` (relative paths) under `root`, then the folders that held
    them once empty; a link, or anything else, is left. Returns the number of files removed."""
    removed, folders = 0, set()
    for name in sorted(set(owned)):
        path = os.path.join(root, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
            removed += 1
        parent = os.path.dirname(name)
        while parent:
            folders.add(parent)
            parent = os.path.dirname(parent)
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        try:
            os.rmdir(os.path.join(root, folder))
        except OSError:
            pass                                   # not empty: it holds something else
    return removed
