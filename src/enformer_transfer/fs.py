"""Files: every write goes to a temporary name and is renamed when complete; disk errors are named.

The one atomic-write helper of the package (``atomic_path`` and the ``write_*_atomic`` wrappers
around it), the free-space check that runs before long stages, and ``disk_errors``, which turns
"no space left on device" anywhere into one clear error instead of a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import DiskFullError, InputError, StageLockedError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def temporary_name(path: Path) -> Path:
    """``name.partial.ext`` beside ``path`` (same filesystem, so the rename is atomic; the suffix
    is kept because some writers, pybigtools among them, choose the format from it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


@contextmanager
def disk_errors(where: Path | str, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk (or quota) into ``DiskFullError`` naming the place and the size."""
    try:
        yield
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise disk_full_error(where, needed) from None
        raise


def disk_full_error(where: Path | str, needed: int | None = None) -> DiskFullError:
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free if probe.exists() else 0
    size = f": {needed / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free" if needed else f" ({free / 1e6:.1f} MB free)"
    return DiskFullError(f"no space left on the device holding {where}{size}; free space and rerun the "
                         "same command (finished work is kept)")


def fsync_file(path: Path | str) -> None:
    """Flush a written file's data to disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path | str, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    Readers never see half a file: an interrupted or failed write leaves the old file (or none)
    and removes the temporary one.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with disk_errors(path):
            yield tmp
            if fsync and tmp.is_file():
                fsync_file(tmp)
            os.replace(tmp, path)
    finally:
        if tmp.is_file():
            tmp.unlink()


@contextmanager
def atomic_folder(path: Path | str, force: bool = False) -> Iterator[Path]:
    """Yield ``PATH.partial`` (emptied first); rename it to ``PATH`` when the block succeeds.
    An existing ``PATH`` is refused unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path} exists; choose another folder or pass --force to replace it")
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    with disk_errors(path):
        yield partial
        if path.exists():
            shutil.rmtree(path)
        os.replace(partial, path)


def write_bytes_atomic(path: Path | str, data: bytes | memoryview, fsync: bool = True) -> None:
    with atomic_path(path, fsync) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: Path | str, text: str, fsync: bool = True) -> None:
    write_bytes_atomic(path, text.encode(), fsync)


def write_json_atomic(path: Path | str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def read_json(path: Path | str) -> Any:
    with open(path) as handle:
        return json.load(handle)


def check_free_space(path: Path | str, needed: int, what: str, limit: int | None = None) -> None:
    """Fail early, with the numbers, when the disk under ``path`` cannot hold ``needed`` bytes."""
    path = Path(path)
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if limit is not None:
        free = min(free, limit)
    if needed > free:
        raise InputError(
            f"{path}: not enough disk space for {what}: needs up to {needed / 1e9:.3f} GB, "
            f"{free / 1e9:.3f} GB free; free space or choose another run directory"
        )


def _lock_holders(lock_file: Path) -> str:
    """Who holds ``lock_file``: the writer's line, or the readers' lines, or 'another process'."""
    owner = lock_file.with_name(lock_file.name + ".owner")
    lines = [owner.read_text().strip()] if owner.is_file() else []
    readers = lock_file.with_name(lock_file.name + ".readers")
    if readers.is_dir():
        lines += [f.read_text().strip() for f in sorted(readers.iterdir()) if f.is_file()]
    return "; ".join(line for line in lines if line) or "another process"


def _holder_line() -> str:
    import socket
    import sys
    import time

    return (f"PID {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')} "
            f"({' '.join(sys.argv[:4])})")


def _flock(lock_file: Path, shared: bool) -> int | None:
    """An open descriptor of ``lock_file`` holding a flock (shared or exclusive), or None when
    another process holds a conflicting one. The lock file is never removed, so every process
    locks the same inode; the kernel releases the lock when the process dies."""
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def exclusive_lock(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (released by the kernel if the process dies);
    a second process, or a stage reading the folder (``SharedLocks``), is refused at once with
    the holder's PID and command."""
    lock_file = Path(lock_file)
    fd = _flock(lock_file, shared=False)
    if fd is None:
        raise StageLockedError(f"{what} is in use by {_lock_holders(lock_file)} (building it, or a stage "
                               "reading it); wait for it to finish (or stop it), then rerun")
    owner = lock_file.with_name(lock_file.name + ".owner")
    try:
        write_text_atomic(owner, _holder_line(), fsync=False)
        yield
    finally:
        owner.unlink(missing_ok=True)
        os.close(fd)


class SharedLocks:
    """Shared locks on the stage folders a running stage reads: any number of readers, but a
    stage that would rebuild one of them (its exclusive lock) is refused while they are held,
    and a reader is refused while that folder is being rebuilt."""

    def __init__(self) -> None:
        self._held: dict[Path, tuple[int, Path]] = {}

    def acquire(self, lock_file: Path, what: str) -> None:
        lock_file = Path(lock_file)
        if lock_file in self._held:
            return
        fd = _flock(lock_file, shared=True)
        if fd is None:
            raise StageLockedError(f"{what} is being rebuilt by {_lock_holders(lock_file)}; wait for it to "
                                   "finish, then rerun (this command would read it half-built)")
        note = lock_file.with_name(lock_file.name + ".readers") / str(os.getpid())
        try:
            note.parent.mkdir(exist_ok=True)
            note.write_text(_holder_line() + " reading it")
        except OSError:
            pass  # the note only improves the message a writer sees
        self._held[lock_file] = (fd, note)

    def release(self) -> None:
        for fd, note in self._held.values():
            note.unlink(missing_ok=True)
            os.close(fd)
        self._held.clear()


def safe_filename(name: str) -> str:
    """A track identifier as a file name: letters, digits, '-', '_' and '.' kept, others '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
