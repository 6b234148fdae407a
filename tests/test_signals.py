"""Signals: SIGTERM and SIGINT end every stage with 143 / 130, keep its .partial and say how to
resume; workers die with a stage killed by SIGKILL, however early, leaving no process behind."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from _kill import children, command_line, signal_when, tagged, without_quiet

from enformer_transfer.devices import PARENT_PID_VARIABLE

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux")

CLI = [sys.executable, "-m", "enformer_transfer.cli"]
MARK = "ENFORMER_TRANSFER_TEST_MARK"  # set on a command: every process it starts inherits it
PDEATHSIG = """
import ctypes, signal
value = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
print('pdeathsig', value.value)
"""


def _python(code: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *extra], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- workers die with their parent ------------------------------------------------------

def test_a_worker_exits_when_its_parent_is_gone_and_dies_with_it_otherwise():
    code = "import os, sys\nfrom enformer_transfer.devices import exit_with_parent\nexit_with_parent({}, 0)\n" + PDEATHSIG
    gone = _python(code.format(_dead_pid()))  # the parent's PID, from the parent, no longer its parent
    assert gone.returncode == 1 and "pdeathsig" not in gone.stdout
    alive = _python(code.format(os.getpid()))
    assert alive.returncode == 0 and f"pdeathsig {int(signal.SIGKILL)}" in alive.stdout
    # called in the main process (a pool initializer run in-process): nothing to tie it to
    main = _python("from enformer_transfer.devices import exit_with_parent\nexit_with_parent()\n" + PDEATHSIG)
    assert main.returncode == 0 and "pdeathsig 0" in main.stdout


def test_a_spawned_worker_checks_its_parent_when_the_package_is_imported():
    """The first code of ours in a spawned worker: exit when the process that left its PID is
    gone; otherwise die with the parent from then on (and leave its own PID for its children)."""
    code = "import os, enformer_transfer\nprint('child', os.environ['" + PARENT_PID_VARIABLE + "'])\n" + PDEATHSIG
    orphan = _python(code, "--multiprocessing-fork", env={PARENT_PID_VARIABLE: str(_dead_pid())})
    assert orphan.returncode == 1 and "child" not in orphan.stdout
    zombie = subprocess.Popen(["true"])  # killed but not yet reaped by its own parent: gone too
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    orphan = _python(code, "--multiprocessing-fork", env={PARENT_PID_VARIABLE: str(zombie.pid)})
    zombie.wait()
    assert orphan.returncode == 1 and "child" not in orphan.stdout
    worker = _python(code, "--multiprocessing-fork", env={PARENT_PID_VARIABLE: str(os.getpid())})
    assert worker.returncode == 0 and f"pdeathsig {int(signal.SIGKILL)}" in worker.stdout
    assert "child " in worker.stdout and f"child {os.getpid()}" not in worker.stdout
    # spawned by a process that never imported the package, whose parent (alive) left the PID
    grandchild = _python(code, "--multiprocessing-fork", env={PARENT_PID_VARIABLE: "1"})
    assert grandchild.returncode == 0
    plain = _python(code, env={PARENT_PID_VARIABLE: str(_dead_pid())})  # not a worker: nothing changes
    assert plain.returncode == 0 and "pdeathsig 0" in plain.stdout


@pytest.mark.slow
def test_train_killed_as_its_workers_start_leaves_no_process_behind(demo_run, tmp_path):
    """SIGKILL of a real `train` when its first child process appears, and up to 1.75 s after
    that (spawned workers importing, initialising, running), 8 times: every process it
    started is gone soon after (none is left holding the terminal, as in `train | tee log`)."""
    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(
        "heads", "evaluation", "dar", "report", "weights"))
    cmd = [*CLI, "train", str(run_dir), "--head", "k", "--max-epochs", "2", "--loader-workers", "2", "--quiet"]
    left_behind = {}
    for attempt in range(8):
        mark = uuid.uuid4().hex
        proc = subprocess.Popen(cmd, env={**os.environ, MARK: mark}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 1200
            while not children(proc.pid):
                assert proc.poll() is None, "train ended before it started a worker"
                assert time.time() < deadline, "train started no worker"
                time.sleep(0.001)
            time.sleep(attempt * 0.25)  # from the event on: each attempt kills the workers in a later phase
        finally:
            proc.kill()
            proc.wait()
        deadline = time.time() + 60
        while tagged(MARK, mark) and time.time() < deadline:
            time.sleep(0.05)
        survivors = tagged(MARK, mark)
        if survivors:
            left_behind[attempt] = [command_line(pid) for pid in survivors]
            for pid in survivors:
                os.kill(pid, signal.SIGKILL)
    assert not left_behind, left_behind


# --- SIGTERM and SIGINT end a stage with a failure code ---------------------------------

def test_sigterm_in_process_ends_train_with_143_and_the_resume_command(demo_run, tmp_path, capsys):
    """main() itself: Lightning's SIGTERM handler runs the command's after its own, the stage
    stops, the .partial stays; the signal handlers of the caller are restored."""
    from enformer_transfer.cli import main

    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(
        "heads", "evaluation", "dar", "report", "weights"))
    partial = run_dir / "heads" / "t.partial"
    received = []
    previous = signal.signal(signal.SIGTERM, lambda *_: received.append(1))  # a late signal must not end pytest
    done = threading.Event()

    def terminate_when_working():
        while not done.is_set():
            if (partial / "checkpoints" / "last.ckpt").exists():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=terminate_when_working, daemon=True)
    watcher.start()
    try:
        status = main(["train", str(run_dir), "--head", "t", "--max-epochs", "20", "--patience", "100",
                       "--loader-workers", "0", "--quiet"])
    finally:
        done.set()
        watcher.join()
        handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)
    assert status == 143 and not received
    assert handler is not previous and handler.__name__ == "<lambda>"  # the caller's handler is back
    assert partial.is_dir() and not (run_dir / "heads" / "t").exists()
    err = capsys.readouterr().err
    assert f"interrupted by SIGTERM: the work done so far is kept; to resume, run: enformer-transfer train {run_dir}" in err


def _stage_command(stage: str, demo_run, tmp_path) -> tuple[list[str], object, object]:
    """(command, its .partial folder, the event that shows it is working) of a small run: the
    event is the first of its checkpoints or windows; more are left for the rerun."""
    if stage == "embed":
        run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(
            "embeddings", "heads", "evaluation", "dar", "report", "weights"))
        partial = run_dir / "embeddings.partial"
        progress = partial / "progress" / "train.rank0.txt"
        cmd = [*CLI, "embed", str(run_dir), "--backbone", str(demo_run.parent / "backbone"), "--batch-size", "1",
               "--loader-workers", "0", "--quiet"]
        return cmd, partial, lambda: progress.exists() and progress.read_text().count(";") >= 2
    if stage == "pretrain":
        out = tmp_path / "bb"
        cmd = [*CLI, "backbone", "pretrain", str(demo_run), "--out", str(out), "--steps", "36", "--loader-workers",
               "0", "--quiet"]
        partial = tmp_path / "bb.partial"
    else:
        keep = ["heads"] if stage == "finetune" else []
        run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(
            *{"heads", "evaluation", "dar", "report", "weights"} - set(keep)))
        if stage == "finetune":
            shutil.rmtree(run_dir / "heads" / "finetuned", ignore_errors=True)
            cmd = [*CLI, "finetune", str(run_dir), "--head", "ft", "--steps", "46", "--patience", "100",
                   "--loader-workers", "0", "--quiet"]
        else:
            cmd = [*CLI, "train", str(run_dir), "--head", "t", "--max-epochs", "3", "--patience", "100",
                   "--loader-workers", "0", "--quiet"]
        partial = run_dir / "heads" / f"{'ft' if stage == 'finetune' else 't'}.partial"
    last = partial / "checkpoints" / "last.ckpt"
    return cmd, partial, last.exists


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train", "finetune", "pretrain", "embed"])
def test_sigterm_exits_143_keeps_the_partial_and_the_same_command_resumes(stage, demo_run, tmp_path):
    cmd, partial, working = _stage_command(stage, demo_run, tmp_path)
    result = signal_when(cmd, working, signal.SIGTERM)
    assert result.returncode == 143, result.stderr[-3000:]
    assert partial.is_dir() and not partial.with_name(partial.name.removesuffix(".partial")).exists()
    lines = [line for line in result.stderr.splitlines() if line.startswith("interrupted")]
    words = [str(word) for word in cmd[3:]]
    assert lines == [f"interrupted by SIGTERM: the work done so far is kept; to resume, run: "
                     f"enformer-transfer {' '.join(words)}"], result.stderr[-3000:]
    again = subprocess.run(without_quiet(cmd), capture_output=True, text=True, timeout=3600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    assert not partial.exists() and partial.with_name(partial.name.removesuffix(".partial")).is_dir()


@pytest.mark.slow
def test_sigint_exits_130_and_stops_the_workers(demo_run, tmp_path):
    run_dir = shutil.copytree(demo_run, tmp_path / "run", ignore=shutil.ignore_patterns(
        "heads", "evaluation", "dar", "report", "weights"))
    partial = run_dir / "heads" / "i.partial"
    cmd = [*CLI, "train", str(run_dir), "--head", "i", "--max-epochs", "3", "--patience", "100",
           "--loader-workers", "1", "--quiet"]
    mark = uuid.uuid4().hex
    result = signal_when(cmd, (partial / "checkpoints" / "last.ckpt").exists, signal.SIGINT,
                         env={**os.environ, MARK: mark})
    assert result.returncode == 130, result.stderr[-3000:]
    assert "interrupted by SIGINT" in result.stderr and partial.is_dir()
    deadline = time.time() + 60
    while tagged(MARK, mark) and time.time() < deadline:
        time.sleep(0.05)
    assert not tagged(MARK, mark)
