"""The embed stage's work (``stages/embed.py`` runs it):
the backbone's trunk over every window -> (windows, bins, dim) store, resumable.

One-hot inputs are prepared in DataLoader workers, the trunk runs in batches (bf16 autocast
on GPU), and a writer thread stores finished batches while the next one computes. Each
window is one chunk of the store and one line of a progress log, so a killed run resumes
exactly where it stopped, with any number of processes (torchrun / SLURM ranks each take
a disjoint share of the windows left).

The stage in four steps: ``plan_embed`` (validate everything, before any compute),
``allocate`` (create the stores), ``embed_windows`` (the loop), ``finish_embed`` (check every
window is there, summarise).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..devices import (
    Dist,
    autocast,
    dist_from_env,
    exit_with_this_process,
    resolve_device,
    resolve_precision,
)
from ..errors import EnformerTransferError, InputError
from ..fs import check_free_space, write_json_atomic
from ..progress import Progress
from ..rundir import store
from ..rundir.config import EmbedConfig, Geometry, RunConfig
from ..rundir.layout import EmbeddingsFolder, RunLayout
from ..rundir.provenance import StageDir
from ..rundir.run import RunDirectory
from .info import size_text
from .inputs import WindowSequences
from .load import Backbone, load_backbone, resolve_backbone

log = logging.getLogger("enformer_transfer")


@dataclass
class EmbedPlan:
    """Validated inputs of the embed stage."""

    config: RunConfig
    run: RunDirectory
    backbone: Backbone
    device: object  # torch.device
    precision: str
    dist: Dist
    windows: dict[str, pd.DataFrame]
    kept_bins: dict[str, int]
    n_outputs: int  # backbone output tracks stored per bin (0: none)

    @property
    def settings(self) -> EmbedConfig:
        return self.config.embed

    @property
    def geometry(self) -> Geometry:
        return self.run.geometry


def bin_subset(seed: int, global_index: int, n_bins: int, k: int) -> np.ndarray:
    """The seeded, sorted bins kept for a train window (same whatever rank or batch)."""
    rng = np.random.default_rng([seed, global_index])
    return np.sort(rng.choice(n_bins, size=k, replace=False)).astype(np.int16)


def kept_bins(split: str, n_bins: int, fraction: float) -> int:
    if split != "train" or fraction >= 1:
        return n_bins
    return max(1, int(round(n_bins * fraction)))


def plan_embed(config: RunConfig) -> EmbedPlan:
    """Check every input of the embed stage and load the backbone; nothing is computed yet."""
    e = config.embed
    run_dir = config.run_path("embed")
    if e.backbone is None:
        raise InputError("embed: no backbone given; pass --backbone DIR (config.json + pytorch_model.bin) or a hub name")
    run = RunDirectory(run_dir)
    config.geometry = run.geometry  # the geometry is the dataset's
    missing = [s for s in e.splits if s not in run.splits]
    if missing:
        raise InputError(f"embed: the dataset has no split {', '.join(missing)} (it has {', '.join(run.splits)})")
    run.genome()  # the genome the dataset recorded, unchanged
    resolve_backbone(e.backbone, e.allow_download)  # fail fast, before torch work
    dist = dist_from_env()
    device = resolve_device(e.device, dist)
    precision = resolve_precision(e.precision, device)
    backbone = load_backbone(e.backbone, run.geometry, e.tf_gamma, e.allow_download, str(device), e.backbone_kind)
    n_outputs = backbone.output_tracks if e.store_backbone_outputs else 0
    if e.store_backbone_outputs and not n_outputs:
        raise InputError(f"backbone {e.backbone} ({backbone.kind}) has no output head whose tracks could be stored; "
                         "drop --store-backbone-outputs")
    windows = {s: run.windows(s) for s in e.splits}
    keep = {s: kept_bins(s, run.geometry.n_bins, e.train_bin_fraction) for s in e.splits}
    return EmbedPlan(config, run, backbone, device, precision, dist, windows, keep, n_outputs)


def build_embeddings(plan: EmbedPlan, folder: EmbeddingsFolder, state: str, progress: bool) -> dict:
    from ..devices import barrier

    started = time.time()
    if plan.dist.primary:
        print(plan_message(plan), flush=True)
    if plan.dist.primary and state == "fresh":
        allocate(plan, folder)
    barrier(plan.dist)
    todo = _windows_left(plan, folder)
    barrier(plan.dist)  # every rank has read the logs before anyone writes
    embed_windows(plan, folder, todo, progress)
    barrier(plan.dist)
    return finish_embed(plan, folder, sum(len(left) for _, left in todo), started) if plan.dist.primary else {}


def plan_message(plan: EmbedPlan) -> str:
    """One line: the backbone, the store's size per window (bins x width x bytes) and in all."""
    dtype = plan.settings.storage_dtype
    per_window = plan.geometry.n_bins * plan.backbone.embedding_dim * (2 if dtype == "float16" else 4)
    total = sum(len(w) * _bytes_per_window(plan, s) for s, w in plan.windows.items())
    n_windows = sum(len(w) for w in plan.windows.values())
    name = plan.backbone.family.display_name or plan.backbone.kind
    return (f"embed: {name} {plan.geometry.n_bins:,} x {plan.backbone.embedding_dim:,} {dtype} = "
            f"{size_text(per_window)} per window; {n_windows:,} windows, {size_text(total)} in all "
            f"({plan.backbone.source} on {plan.device})")


def _bytes_per_window(plan: EmbedPlan, split: str) -> int:
    itemsize = 2 if plan.settings.storage_dtype == "float16" else 4
    return plan.kept_bins[split] * plan.backbone.embedding_dim * itemsize + plan.geometry.n_bins * plan.n_outputs * 2


def check_space(plan: EmbedPlan, key: dict) -> None:
    """Before any work: room for every window still to embed (a resumable partial run counts
    what it has; a finished, up-to-date store needs nothing)."""
    stage = StageDir(plan.run.layout.embeddings.path, key)
    if stage.state_without_changes() == "done":
        return
    partial = EmbeddingsFolder(stage.partial)
    resumable = stage.state_without_changes() == "resume"
    needed = sum((len(w) - (len(_done_windows(partial, s)) if resumable else 0)) * _bytes_per_window(plan, s)
                 for s, w in plan.windows.items())
    check_free_space(plan.run.path, needed, "the embeddings store", plan.config.dataset.free_space_limit)


def allocate(plan: EmbedPlan, folder: EmbeddingsFolder) -> None:
    """Create the stores: one chunk per window."""
    dim, n_bins = plan.backbone.embedding_dim, plan.geometry.n_bins
    for s, table in plan.windows.items():
        keep = plan.kept_bins[s]
        store.create_array(folder.embeddings_store, s, (len(table), keep, dim), (1, keep, dim),
                           plan.settings.storage_dtype, compress=False)
        if keep < n_bins:
            store.create_array(folder.embeddings_store, f"{s}.bins", (len(table), keep), (1, keep), "int16")
        if plan.n_outputs:
            store.create_array(folder.backbone_outputs_store, s, (len(table), n_bins, plan.n_outputs),
                               (1, n_bins, plan.n_outputs), "float16")


def _window_checksums(folder: EmbeddingsFolder, split: str) -> dict[int, list[str]]:
    """Windows of a split finished by any rank of any earlier or current run, with the checksums
    of what was written for each (embeddings, kept bins, backbone outputs)."""
    done: dict[int, list[str]] = {}
    for log_file in sorted(folder.progress.glob(f"{split}.rank*.txt")):
        done.update(store.ProgressLog(log_file).entries())
    return done


def _done_windows(folder: EmbeddingsFolder, split: str) -> set[int]:
    return set(_window_checksums(folder, split))


def _windows_left(plan: EmbedPlan, folder: EmbeddingsFolder) -> list[tuple[str, list[int]]]:
    """Per split, the windows left to do that are this rank's share."""
    todo = []
    for s, table in plan.windows.items():
        done = _done_windows(folder, s)
        left = [i for i in range(len(table)) if i not in done]
        todo.append((s, left[plan.dist.rank :: plan.dist.world]))
    return todo


def embed_windows(plan: EmbedPlan, folder: EmbeddingsFolder, todo: list[tuple[str, list[int]]],
                  progress: bool) -> None:
    """Run the trunk over this rank's windows, writing each finished window."""
    import torch

    e, device, geometry = plan.settings, plan.device, plan.geometry
    trunk = torch.compile(plan.backbone.trunk) if e.compile else plan.backbone.trunk
    head = plan.backbone.output_head if plan.n_outputs else None
    n_todo = sum(len(left) for _, left in todo)
    bar = Progress(n_todo, f"embed (rank {plan.dist.rank})" if plan.dist.active else "embed", enabled=progress)
    writer = _Writer(folder, plan.dist.rank)
    genome = plan.run.genome()
    try:
        for split, left in todo:
            if not left:
                continue
            table = plan.windows[split].iloc[left].assign(store_index=left)
            offset = plan.run.split_offset(split)
            dataset = WindowSequences(str(genome.path), genome.names.mode, table, e.pad_value)
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=e.batch_size, shuffle=False, num_workers=e.loader_workers,
                pin_memory=device.type == "cuda", persistent_workers=False,
                prefetch_factor=4 if e.loader_workers else None, worker_init_fn=exit_with_this_process(),
            )
            keep = plan.kept_bins[split]
            for indices, x in loader:
                with torch.inference_mode(), autocast(device, plan.precision):
                    emb = trunk(x.to(device, non_blocking=True))
                    outputs = head(emb) if head is not None else None
                idx = indices.numpy()
                bins = None
                if keep < geometry.n_bins:
                    bins = np.stack([bin_subset(plan.config.seed, offset + i, geometry.n_bins, keep) for i in idx])
                    emb = emb[torch.arange(len(idx))[:, None], torch.from_numpy(bins.astype(np.int64)).to(emb.device)]
                emb = _to_storage(emb.float(), e.storage_dtype, split, idx, plan.windows[split])
                if outputs is not None:
                    outputs = outputs.float().clamp(max=store.FLOAT16_MAX).to(torch.float16).cpu().numpy()
                writer.put(split, idx, emb, bins, outputs)
                bar.update(len(idx))
        writer.close()
    except BaseException:
        writer.abort()
        raise


def finish_embed(plan: EmbedPlan, folder: EmbeddingsFolder, n_embedded: int, started: float) -> dict:
    """Check that every window of every split is stored; the stage's stats."""
    checksums: dict[str, list[str]] = {}
    for s, table in plan.windows.items():
        done = _window_checksums(folder, s)
        if len(done) != len(table):
            raise EnformerTransferError(f"embed: {len(table) - len(done)} window(s) of {s} missing; rerun to resume")
        names = [f"{folder.embeddings_store.name}/{s}"]
        if plan.kept_bins[s] < plan.geometry.n_bins:
            names.append(f"{folder.embeddings_store.name}/{s}.bins")
        if plan.n_outputs:
            names.append(f"{folder.backbone_outputs_store.name}/{s}")
        for k, name in enumerate(names):
            checksums[name] = [done[i][k] for i in range(len(table))]
    write_json_atomic(folder.checksums, checksums)
    seconds = time.time() - started
    gb = sum(f.stat().st_size for f in folder.path.rglob("*") if f.is_file()) / 1e9
    stats = {
        "windows": {s: len(w) for s, w in plan.windows.items()}, "embedding_dim": plan.backbone.embedding_dim,
        "bins_kept": plan.kept_bins, "precision": plan.precision, "device": str(plan.device),
        "world_size": plan.dist.world, "seconds": round(seconds, 2), "windows_this_run": n_embedded,
        "gb": round(gb, 3),
        "backbone": {"source": plan.backbone.source, "kind": plan.backbone.kind, "tf_gamma": plan.backbone.tf_gamma,
                     "config": plan.backbone.family.describe(plan.backbone.model)},
    }
    print(f"embed: {n_embedded} windows in {seconds:.1f} s, {n_embedded / max(seconds, 1e-9):.2f} windows/s, "
          f"{gb:.4f} GB written -> {RunLayout(plan.config.run_dir).embeddings.path}", flush=True)
    return stats


def _to_storage(emb, dtype: str, split: str, idx, windows: pd.DataFrame) -> np.ndarray:
    import torch

    if dtype == "float16":
        bad = ~torch.isfinite(emb) | (emb.abs() > store.FLOAT16_MAX)
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

    def __init__(self, folder: EmbeddingsFolder, rank: int):
        self.folder = folder
        self.rank = rank
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.arrays: dict = {}
        self.logs: dict = {}
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _array(self, path: Path, key: str):
        """The store array, or its raw chunk writer when the array allows one (embeddings)."""
        if (path, key) not in self.arrays:
            array = store.open_array(path, key, "r+")
            self.arrays[path, key] = store.RawWindowChunks.of(array) or array
        return self.arrays[path, key]

    @staticmethod
    def _set(target, i: int, values) -> None:
        if isinstance(target, store.RawWindowChunks):
            target.write(i, values)
        else:
            target[i] = values

    def _loop(self) -> None:
        embeddings, outputs_store = self.folder.embeddings_store, self.folder.backbone_outputs_store
        while True:
            item = self.queue.get()
            if item is None:
                return
            try:
                split, idx, emb, bins, outputs = item
                log_ = self.logs.setdefault(split, store.ProgressLog(self.folder.progress / f"{split}.rank{self.rank}.txt"))
                for j, i in enumerate(idx):
                    self._set(self._array(embeddings, split), int(i), emb[j])
                    sums = [store.checksum(emb[j])]
                    if bins is not None:
                        self._set(self._array(embeddings, f"{split}.bins"), int(i), bins[j])
                        sums.append(store.checksum(bins[j]))
                    if outputs is not None:
                        self._set(self._array(outputs_store, split), int(i), outputs[j])
                        sums.append(store.checksum(outputs[j]))
                    log_.add(int(i), sums)  # written, then logged: a logged window is complete
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
