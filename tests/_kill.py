"""Kill or signal a real process at a moment a test chooses (resume and signal tests); find
the processes it started."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def kill_when(cmd: list[str], ready, timeout: float = 120, poll: float = 0.002) -> None:
    """Run ``cmd``; SIGKILL it as soon as ``ready()`` is true; fail if it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(poll)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the process finished before it could be killed"


def written_twice(path) -> callable:
    """A ``ready`` for kill_when: true once ``path`` has been seen with two different mtimes
    (a checkpoint written a second time)."""
    stamps = set()

    def ready() -> bool:
        if path.exists():
            stamps.add(path.stat().st_mtime_ns)
        return len(stamps) >= 2

    return ready


def without_quiet(cmd: list[str]) -> list[str]:
    """``cmd`` without ``--quiet``: a resumed run then says "resuming" on stderr."""
    return [a for a in cmd if a != "--quiet"]


def signal_when(cmd: list[str], ready, signum: int, timeout: float = 1200, poll: float = 0.005,
                env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; send it ``signum`` as soon as ``ready()`` is true; fail if it ended first.
    Its stdout and stderr go to temporary files (nothing blocks on a full pipe)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        deadline = time.time() + timeout
        try:
            while not ready():
                assert proc.poll() is None, f"the process ended before the event:\n{_read(err)[-3000:]}"
                assert time.time() < deadline, "the event did not come"
                time.sleep(poll)
            os.kill(proc.pid, signum)
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(cmd, proc.returncode, _read(out), _read(err))


def _read(handle) -> str:
    handle.seek(0)
    return handle.read()


def children(pid: int) -> list[int]:
    """The processes ``pid`` has started (and not lost), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(word) for word in task.read_text().split()]
    return found


def tagged(variable: str, value: str) -> list[int]:
    """Live processes whose environment has ``variable=value`` (a mark set on a command: it is
    inherited by everything the command starts, whoever becomes their parent)."""
    mark = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "environ").read_bytes().split(b"\0") and _state(entry) != "Z":
                found.append(int(entry.name))
    return found


def _state(entry: Path) -> str:
    return entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0]


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
    return "?"
