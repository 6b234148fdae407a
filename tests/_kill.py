"""Run real processes and kill or signal them at a moment a test chooses (resume and signal tests);
find the processes they started.

Nothing here waits on the wall clock: a test waits for an event (a file written, a lock taken) or
for the process to end, and gives up only when the process stalls, that is when its CPU time has
not moved for ``STALL`` seconds. A loaded machine (a CI runner at load 8 on 2 cores) slows a
process down; it does not stop its CPU clock, so a slow run is waited for and a hung one fails.
"""

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

STALL = 300.0  # seconds without a CPU tick of the process (or its reaped children): a hang


def cpu_ticks(pid: int) -> int | None:
    """CPU time of a process and its reaped children in clock ticks (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    except (OSError, IndexError, ValueError):
        return None


def wait_for(proc: subprocess.Popen, ready=None, poll: float = 0.002, stall: float = STALL) -> bool:
    """Wait until ``ready()`` is true (True) or ``proc`` has ended (False); fail if ``proc`` stalls."""
    ticks, moved = cpu_ticks(proc.pid), time.monotonic()
    checked = moved
    while proc.poll() is None:
        if ready is not None and ready():
            return True
        now = time.monotonic()
        if now - checked >= 1.0:  # reading /proc once a second is enough to see progress
            checked = now
            current = cpu_ticks(proc.pid)
            if current != ticks or current is None:
                ticks, moved = current, now
            elif now - moved > stall:
                proc.kill()
                proc.wait()
                raise AssertionError(f"{' '.join(map(str, proc.args))[:200]}: no CPU progress for {stall:.0f} s")
        time.sleep(poll)
    return bool(ready is not None and ready())


def run_watched(cmd: list[str], stall: float = STALL, env: dict | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` that fails when the process stalls
    instead of after a fixed time (output goes to files: a full pipe cannot block the process)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        wait_for(proc, stall=stall)
        proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def kill_when(cmd: list[str], ready, poll: float = 0.002) -> None:
    """Run ``cmd``; SIGKILL it as soon as ``ready()`` is true; fail if it ended first."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        if wait_for(proc, ready, poll) and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        err.seek(0)
        assert proc.returncode == -signal.SIGKILL, \
            f"the process finished (code {proc.returncode}) before it could be killed: {err.read()[-2000:]}"


def written_twice(path) -> callable:
    """A ``ready`` for kill_when: true once ``path`` has been seen with two different mtimes
    (a checkpoint written a second time)."""
    stamps = set()

    def ready() -> bool:
        try:
            stamps.add(path.stat().st_mtime_ns)
        except FileNotFoundError:  # between a replace's unlink and rename, or not yet written
            pass
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


def free_port() -> int:
    """A TCP port free now, for a test's torch.distributed rendezvous: a fixed port collides with
    another test run on the same machine (two CI jobs, a developer's run beside CI) or with the
    previous run's socket still in TIME_WAIT."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
