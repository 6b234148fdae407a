"""Stage 3, embed: Enformer's trunk over every window -> (windows, bins, dim) store, resumable.

One-hot inputs are prepared in DataLoader workers, the trunk runs in batches (bf16 autocast
on GPU), and a writer thread stores finished batches while the next one computes. Each
window is one chunk of the store and one line of a progress log, so a killed run resumes
exactly where it stopped, with any number of processes (torchrun / SLURM ranks each take
a disjoint share of the windows left).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._progress import Progress
from ..config import Geometry, RunConfig
from ..data import store
from ..errors import EnformerTransferError, InputError
from ..genome.onehot import one_hot_padded
from ..provenance import StageDir, check_free_space, write_config_snapshot
from .load import load_backbone, resolve_backbone

log = logging.getLogger("enformer_transfer")

EMBEDDINGS_STORE = "embeddings.zarr"
HEADS_STORE = "heads.zarr"
F16_MAX = 65504.0


class WindowSequences:
    """torch Dataset: window i -> (i, one-hot of its model input), padded past chromosome ends."""

    def __init__(self, genome_path: str, chrom_aliases: str, windows: pd.DataFrame, pad_value: float):
        self.genome_path = genome_path
        self.chrom_aliases = chrom_aliases
        self.chrom = windows["chrom"].tolist()
        self.start = windows["input_start"].to_numpy()
        self.end = windows["input_end"].to_numpy()
        self.index = windows["_store_index"].to_numpy()
        self.pad_value = pad_value
        self._genome = None

    def __len__(self) -> int:
        return len(self.chrom)

    def __getitem__(self, i: int):
        import torch

        if self._genome is None:  # opened in each worker process
            from ..genome.sequence import Genome

            self._genome = Genome(self.genome_path, self.chrom_aliases)
        seq, left, right = self._genome.fetch_padded(self.chrom[i], int(self.start[i]), int(self.end[i]))
        x = one_hot_padded(seq, left, right, self.pad_value)
        return int(self.index[i]), torch.from_numpy(x)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1


def dist_from_env() -> Dist:
    """torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or SLURM (SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID).

    Under SLURM across nodes, export MASTER_ADDR (the first node) and MASTER_PORT in the job
    script, as for any torch.distributed job; on one node they default to localhost.
    """
    env = os.environ
    if "WORLD_SIZE" in env:
        return Dist(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_NTASKS" in env and int(env["SLURM_NTASKS"]) > 1:
        return Dist(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return Dist()


def _init_dist(dist: Dist, device) -> None:
    import torch.distributed as td

    if not dist.active or td.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    os.environ.setdefault("RANK", str(dist.rank))
    os.environ.setdefault("WORLD_SIZE", str(dist.world))
    td.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=dist.rank, world_size=dist.world)


def _broadcast(obj, dist: Dist):
    if not dist.active:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as td

        td.barrier()


def bin_subset(seed: int, global_index: int, n_bins: int, k: int) -> np.ndarray:
    """The seeded, sorted bins kept for a train window (same whatever rank or batch)."""
    rng = np.random.default_rng([seed, global_index])
    return np.sort(rng.choice(n_bins, size=k, replace=False)).astype(np.int16)


def resolve_device(name: str, dist: Dist):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(name)


def embed_key(config: RunConfig, dataset_record: dict, backbone_fingerprint: dict, precision: str) -> dict:
    e = config.embed
    return {
        "dataset": dataset_record["key_digest"],
        "backbone": backbone_fingerprint,
        "tf_gamma": e.tf_gamma,
        "precision": precision,
        "storage_dtype": e.storage_dtype,
        "train_bin_fraction": e.train_bin_fraction,
        "store_backbone_heads": e.store_backbone_heads,
        "pad_value": e.pad_value,
        "splits": e.splits,
        "seed": config.seed,
    }


def embed_run(config: RunConfig, force: bool = False, progress: bool = True) -> Path:
    """Embed every window of the configured splits into RUN_DIR/embeddings; resume or skip."""
    import torch

    from ..run import Run

    started = time.time()
    e = config.embed
    if config.run_dir is None:
        raise InputError("embed: no run directory given")
    if e.backbone is None:
        raise InputError("embed: no backbone given; pass --backbone DIR (config.json + pytorch_model.bin) or a hub name")
    run = Run(config.run_dir)
    record = run.stage_record("dataset")
    dataset_config = RunConfig.model_validate(record["config"])
    geometry: Geometry = dataset_config.geometry
    config.geometry = geometry  # geometry comes from the dataset
    missing = [s for s in e.splits if s not in run.splits]
    if missing:
        raise InputError(f"embed: the dataset has no split {', '.join(missing)} (it has {', '.join(run.splits)})")
    resolve_backbone(e.backbone, e.allow_download)  # fail fast, before torch work
    dist = dist_from_env()
    device = resolve_device(e.device, dist)
    precision = e.precision if e.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    backbone = load_backbone(e.backbone, geometry, e.tf_gamma, e.allow_download, str(device))
    dim = backbone.embedding_dim
    heads_n = backbone.head_sizes.get("human", 0) if e.store_backbone_heads else 0
    if e.store_backbone_heads and not heads_n:
        raise InputError(f"backbone {e.backbone} has no human head to store")

    windows = {s: run.windows(s) for s in e.splits}
    keep = {s: _kept_bins(s, geometry.n_bins, e.train_bin_fraction) for s in e.splits}
    itemsize = 2 if e.storage_dtype == "float16" else 4
    needed = sum(len(windows[s]) * keep[s] * (dim * itemsize + heads_n * 2) for s in e.splits)
    check_free_space(config.run_dir, needed, "the embeddings store", config.dataset.free_space_limit)

    _init_dist(dist, device)
    stage = StageDir(config.run_dir, "embeddings", embed_key(config, record, backbone.fingerprint, precision))
    state = None
    if dist.rank == 0:
        write_config_snapshot(config)
        state = stage.check(force)
        if state != "done":
            work = stage.start()
            if state == "fresh":
                for s in e.splits:
                    shape = (len(windows[s]), keep[s], dim)
                    store.create_array(work / EMBEDDINGS_STORE, s, shape, (1, keep[s], dim), e.storage_dtype,
                                       compress=False)
                    if keep[s] < geometry.n_bins:
                        store.create_array(work / EMBEDDINGS_STORE, f"{s}.bins", (len(windows[s]), keep[s]),
                                           (1, keep[s]), "int16")
                    if heads_n:
                        store.create_array(work / HEADS_STORE, s, (len(windows[s]), geometry.n_bins, heads_n),
                                           (1, geometry.n_bins, heads_n), "float16")
    state = _broadcast(state, dist)
    if state == "done":
        log.info("embeddings: up to date in %s (use --force to recompute)", stage.final)
        return stage.final
    if state == "resume" and dist.rank == 0:
        log.info("embeddings: resuming the interrupted run in %s", stage.partial)
    _barrier(dist)
    work = stage.partial

    # windows left to do, split between ranks
    todo = []
    for s in e.splits:
        done = _done_windows(work, s)
        left = [i for i in range(len(windows[s])) if i not in done]
        todo.append((s, left[dist.rank :: dist.world]))
    _barrier(dist)  # every rank has read the logs before anyone writes

    model = backbone.model
    trunk = torch.compile(model.trunk) if e.compile else model.trunk
    head = model.heads["human"] if heads_n else None
    n_todo = sum(len(left) for _, left in todo)
    bar = Progress(n_todo, f"embed (rank {dist.rank})" if dist.active else "embed", enabled=progress)
    writer = _Writer(work, e.storage_dtype, dist.rank)
    seconds_compute = 0.0
    try:
        for split, left in todo:
            if not left:
                continue
            table = windows[split].iloc[left].assign(_store_index=left)
            global_offset = _global_offset(run, split)
            dataset = WindowSequences(str(dataset_config.dataset.genome), dataset_config.dataset.chrom_aliases,
                                      table, e.pad_value)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=e.batch_size, shuffle=False, num_workers=e.loader_workers,
                pin_memory=device.type == "cuda", persistent_workers=False,
                prefetch_factor=4 if e.loader_workers else None,
            )
            bins = None
            for indices, x in loader:
                t0 = time.time()
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    emb = trunk(x.to(device, non_blocking=True))
                    preds = head(emb) if head is not None else None
                idx = indices.numpy()
                if keep[split] < geometry.n_bins:
                    bins = np.stack([bin_subset(config.seed, global_offset + i, geometry.n_bins, keep[split]) for i in idx])
                    emb = emb[torch.arange(len(idx))[:, None], torch.from_numpy(bins.astype(np.int64)).to(emb.device)]
                emb = _to_storage(emb.float(), e.storage_dtype, split, idx, windows[split])
                preds = preds.float().clamp(max=F16_MAX).to(torch.float16).cpu().numpy() if preds is not None else None
                seconds_compute += time.time() - t0
                writer.put(split, idx, emb, bins, preds)
                bar.update(len(idx))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    _barrier(dist)
    final = stage.final
    if dist.rank == 0:
        for s in e.splits:
            done = _done_windows(work, s)
            if len(done) != len(windows[s]):
                raise EnformerTransferError(f"embed: {len(windows[s]) - len(done)} window(s) of {s} missing; rerun to resume")
        seconds = time.time() - started
        gb = sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 1e9
        stats = {
            "windows": {s: len(windows[s]) for s in e.splits}, "embedding_dim": dim, "bins_kept": keep,
            "precision": precision, "device": str(device), "world_size": dist.world,
            "seconds": round(seconds, 2), "windows_this_run": n_todo, "gb": round(gb, 3),
            "backbone": {"source": backbone.source, "tf_gamma": backbone.tf_gamma,
                         "config": {k: v for k, v in model.config.to_dict().items() if k in
                                    ("dim", "depth", "heads", "num_downsamples", "output_heads", "attn_dim_key")}},
        }
        final = stage.finish(config.model_dump(mode="json"), stats, started)
        print(f"embed: {n_todo} windows in {seconds:.1f} s, {n_todo / max(seconds, 1e-9):.2f} windows/s, "
              f"{gb:.4f} GB written -> {final}", flush=True)
    _barrier(dist)
    if dist.active:
        import torch.distributed as td

        td.destroy_process_group()
    return final


def _done_windows(work: Path, split: str) -> set[int]:
    """Windows of a split finished by any rank of any earlier or current run."""
    done: set[int] = set()
    for log_file in (work / "progress").glob(f"{split}.rank*.txt"):
        done |= store.ProgressLog(log_file).done()
    return done


def _kept_bins(split: str, n_bins: int, fraction: float) -> int:
    if split != "train" or fraction >= 1:
        return n_bins
    return max(1, int(round(n_bins * fraction)))


def _global_offset(run, split: str) -> int:
    """Index of the split's first window among all windows (seeds bin subsets per window)."""
    offset = 0
    for s in run.splits:
        if s == split:
            return offset
        offset += len(run.windows(s))
    return offset


def _to_storage(emb, dtype: str, split: str, idx, windows: pd.DataFrame) -> np.ndarray:
    import torch

    if dtype == "float16":
        bad = ~torch.isfinite(emb) | (emb.abs() > F16_MAX)
        if bool(bad.any()):
            b = int(bad.flatten(1).any(1).nonzero()[0])
            w = windows.iloc[int(idx[b])]
            value = emb[b][bad[b]][0].item()
            raise EnformerTransferError(
                f"embed: window {split}[{int(idx[b])}] {w.chrom}:{w.start}-{w.end} has an embedding value "
                f"{value:g} outside the float16 range; rerun with --storage-dtype float32 (nothing was clipped)"
            )
        return emb.to(torch.float16).cpu().numpy()
    return emb.cpu().numpy()


class _Writer:
    """Writes finished batches in a background thread (file writes release the GIL)."""

    def __init__(self, work: Path, storage_dtype: str, rank: int):
        self.work = work
        self.rank = rank
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.arrays: dict = {}
        self.logs: dict = {}
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _array(self, name: str, key: str):
        """The store array, or its raw chunk writer when the array allows one (embeddings)."""
        if (name, key) not in self.arrays:
            array = store.open_array(self.work / name, key, "r+")
            self.arrays[name, key] = store.RawWindowChunks.of(array) or array
        return self.arrays[name, key]

    @staticmethod
    def _set(target, i: int, values) -> None:
        if isinstance(target, store.RawWindowChunks):
            target.write(i, values)
        else:
            target[i] = values

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                split, idx, emb, bins, preds = item
                for j, i in enumerate(idx):
                    self._set(self._array(EMBEDDINGS_STORE, split), int(i), emb[j])
                    if bins is not None:
                        self._set(self._array(EMBEDDINGS_STORE, f"{split}.bins"), int(i), bins[j])
                    if preds is not None:
                        self._set(self._array(HEADS_STORE, split), int(i), preds[j])
                log_ = self.logs.setdefault(split, store.ProgressLog(self.work / "progress" / f"{split}.rank{self.rank}.txt"))
                for i in idx:
                    log_.add(int(i))
            except BaseException as err:  # surfaced to the main thread on the next put
                self.error = err
                return

    def put(self, *item) -> None:
        if self.error:
            raise self.error
        while True:
            try:
                self.queue.put(item, timeout=1)
                return
            except queue.Full:
                if self.error or not self.thread.is_alive():
                    raise (self.error or EnformerTransferError("embed: writer thread stopped")) from None

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error:
            raise self.error

    def abort(self) -> None:
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass

