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
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
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


@contextmanager
def exclusive_lock(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (released by the kernel if the process dies);
    a second process is refused at once with the holder's PID and command."""
    import socket
    import sys
    import time

    from filelock import FileLock, Timeout

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    owner = lock_file.with_name(lock_file.name + ".owner")
    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = owner.read_text().strip() if owner.is_file() else "another process"
        raise StageLockedError(f"{what} is being run by {holder}; wait for it to finish (or stop it), "
                               "then rerun") from None
    try:
        write_text_atomic(owner, f"PID {os.getpid()} on {socket.gethostname()} since "
                                 f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({' '.join(sys.argv[:4])})", fsync=False)
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def safe_filename(name: str) -> str:
    """A track identifier as a file name: letters, digits, '-', '_' and '.' kept, others '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
