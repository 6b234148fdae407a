"""Kill a real process with SIGKILL at a moment a test chooses (for resume tests)."""

import os
import signal
import subprocess
import time


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
