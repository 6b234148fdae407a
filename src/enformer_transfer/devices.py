"""Devices and distributed ranks, shared by every stage that runs the backbone (embed, predict,
finetune, variants, contributions).

Ranks come from torchrun (RANK / WORLD_SIZE / LOCAL_RANK), SLURM (SLURM_PROCID / SLURM_NTASKS /
SLURM_LOCALID) or Lightning's own launcher (which sets LOCAL_RANK and NODE_RANK in the processes
it starts). Under SLURM across nodes, export MASTER_ADDR (the first node) and MASTER_PORT in the
job script, as for any torch.distributed job; on one node they default to localhost.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes of one stage."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def primary(self) -> bool:
        return self.rank == 0


def dist_from_env() -> Dist:
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return Dist(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_NTASKS" in env and int(env["SLURM_NTASKS"]) > 1:
        return Dist(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return Dist()


def is_primary_process() -> bool:
    """False in the extra processes of a distributed job (any launcher): they compute their
    share but leave checking, locking and finishing a stage to the primary process."""
    env = os.environ
    return all(env.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


# This process's PID, set when the package is imported: the workers it spawns inherit it and so
# know their parent before any other code of theirs runs (see exit_with_spawning_parent)
PARENT_PID_VARIABLE = "ENFORMER_TRANSFER_PARENT_PID"


def _request_death_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux PR_SET_PDEATHSIG);
    False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def exit_with_parent(parent_pid: int | None = None, *_worker_id) -> None:
    """In a worker process: die with ``parent_pid``, the process that started it (Linux), so that
    a killed stage leaves no workers behind; exit at once when it is already gone (the worker
    then belongs to init, and the kernel would never kill it). ``parent_pid`` must come from the
    parent (``exit_with_this_process()``): a worker that read its parent's PID itself, after its slow
    imports, could read init's. Without it, ``multiprocessing.parent_process()``: the PID the
    parent recorded when it created this process (a pool initializer); nothing in the main
    process (an initializer called in-process)."""
    if parent_pid is None:
        import multiprocessing

        parent = multiprocessing.parent_process()
        if parent is None:
            return
        parent_pid = parent.pid
    if _request_death_with_parent() and os.getppid() != parent_pid:
        os._exit(1)


def exit_with_this_process() -> Callable[[int], None]:
    """A DataLoader ``worker_init_fn``, made in the parent: its workers die with this process."""
    return functools.partial(exit_with_parent, os.getpid())


def exit_with_spawning_parent() -> None:
    """Run when the package is imported. In a spawned multiprocessing child (DataLoader workers,
    dataset pool workers) this is the first code of ours to run, while the parent's main module
    is re-imported, a second or more before a ``worker_init_fn`` or pool initializer: request
    death with the parent now, and exit if the process that left its PID in the environment is
    gone and is no longer this one's parent (a child of a process that never imported the
    package, whose grandparent left the PID, lives on). In every process: leave this process's
    PID for its children."""
    if "--multiprocessing-fork" in getattr(sys, "orig_argv", ()):
        parent = os.environ.get(PARENT_PID_VARIABLE, "")
        if (_request_death_with_parent() and parent.isdigit() and os.getppid() != int(parent)
                and not _alive(int(parent))):
            os._exit(1)
    os.environ[PARENT_PID_VARIABLE] = str(os.getpid())


def _alive(pid: int) -> bool:
    """False when ``pid`` is gone or a zombie (killed, not yet reaped by its own parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def resolve_device(name: str = "auto", dist: Dist | None = None):
    """'auto': the rank's CUDA device when there is one, else the CPU."""
    import torch

    dist = dist or Dist()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(name)


def resolve_precision(precision: str, device) -> str:
    """'auto' -> bf16 on a GPU, fp32 on the CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device, precision: str):
    """Autocast context for a precision word (fp32: none)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def init_process_group(dist: Dist, device) -> None:
    import torch.distributed as td

    if not dist.active or td.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    os.environ.setdefault("RANK", str(dist.rank))
    os.environ.setdefault("WORLD_SIZE", str(dist.world))
    td.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=dist.rank, world_size=dist.world)


def broadcast(obj, dist: Dist):
    """``obj`` of rank 0 on every rank."""
    if not dist.active:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as td

        td.barrier()


def close_process_group(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()
