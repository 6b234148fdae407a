"""Stage 2, dataset: windows x BigWigs -> binned targets in a chunked store, resumable.

Every input is validated before any coverage is read (``plan_dataset``); the store is built
in ``RUN_DIR/dataset.partial`` chunk by chunk (an interrupted build resumes) and renamed to
``RUN_DIR/dataset`` only when complete.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._progress import Progress
from ..config import RunConfig
from ..errors import InputError
from ..genome.chroms import mismatch_message
from ..genome.intervals import IntervalSet
from ..genome.sequence import Genome
from ..genome.windows import Windows, read_windows_bed
from ..provenance import (
    StageDir,
    check_free_space,
    fingerprints,
    read_json,
    write_config_snapshot,
    write_json_atomic,
)
from . import store
from ._worker import compute_chunk, init_worker
from .bigwig import chrom_maps_for
from .targets_table import read_targets_table, write_targets_table
from .transform import TopValues, TrackParams

log = logging.getLogger("enformer_transfer")

TARGETS_STORE = "targets.zarr"
MASKS_STORE = "masks.zarr"


@dataclass
class DatasetPlan:
    """Validated inputs of the dataset stage."""

    config: RunConfig
    tracks: pd.DataFrame
    windows: Windows
    dropped: pd.DataFrame
    chrom_maps: list[dict[str, str | None]]
    blacklist: IntervalSet | None
    input_files: list[Path]


def plan_dataset(config: RunConfig) -> DatasetPlan:
    """Check every input of the dataset stage; raise InputError naming file, row and fix."""
    ds, geometry = config.dataset, config.geometry
    for name in ("genome", "targets", "windows"):
        if getattr(ds, name) is None:
            raise InputError(f"dataset: no {name} given; pass --{name} PATH or set dataset.{name} in the config")
    if config.run_dir is None:
        raise InputError("dataset: no run directory given; pass --out RUN_DIR")
    tracks = read_targets_table(ds.targets)
    genome = Genome(ds.genome, ds.chrom_aliases)
    windows = read_windows_bed(ds.windows, geometry)
    chroms = list(dict.fromkeys(windows.table["chrom"]))

    missing = genome.names.missing(chroms)
    if missing:
        raise InputError(mismatch_message(f"genome {ds.genome}", missing, genome.sizes, ds.chrom_aliases))
    table = windows.table
    sizes = table["chrom"].map(genome.chrom_size)
    beyond = (table["input_start"] < 0) | (table["input_end"] > sizes) | (table["row_end"] > sizes)
    if beyond.any():
        first = table[beyond].iloc[0]
        what = (
            f"{ds.windows} row {first.bed_row}: model input {first.chrom}:{first.input_start}-{first.input_end} "
            f"extends beyond the chromosome (length {genome.chrom_size(first.chrom)})"
        )
        if ds.beyond_chrom_end == "error":
            raise InputError(f"{what}; {int(beyond.sum())} window(s) affected; use --beyond-chrom-end pad to pad them")
        log.warning("%s; %d window(s) will be padded (N for sequence, uncovered for coverage)", what, int(beyond.sum()))

    chrom_maps = chrom_maps_for(list(tracks["file"]), chroms, ds.chrom_aliases, ds.allow_missing_chroms, str(ds.targets))

    blacklist = None
    if ds.blacklist is not None:
        blacklist = IntervalSet.from_bed(ds.blacklist, ds.chrom_aliases)
        unknown = [c for c in blacklist.regions if genome.names.resolve(c) is None]
        if unknown and len(unknown) == len(blacklist.regions):
            raise InputError(
                mismatch_message(f"genome {ds.genome}", sorted(unknown), genome.sizes, ds.chrom_aliases)
                + f" (names used by blacklist {ds.blacklist})"
            )
    dropped = pd.DataFrame(columns=list(table.columns) + ["reason"])
    if ds.unmappable is not None:
        unmap = IntervalSet.from_bed(ds.unmappable, ds.chrom_aliases)
        frac = np.array([_unmappable_bin_fraction(unmap, r, geometry) for r in table.itertuples()])
        drop = frac >= ds.unmappable_max_fraction
        if drop.any():
            dropped = table[drop].assign(reason=[f"unmappable bins {f:.2f}" for f in frac[drop]])
            log.warning("%d window(s) dropped: at least %.0f%% of their bins are unmappable",
                        int(drop.sum()), 100 * ds.unmappable_max_fraction)
            table = table[~drop].reset_index(drop=True)
            if table.empty:
                raise InputError(f"{ds.windows}: every window is mostly unmappable ({ds.unmappable})")
            windows = Windows(table, geometry)

    n_values = len(windows) * geometry.n_bins * len(tracks)
    needed = n_values * 2 + (n_values if ds.uncovered == "mask" else 0)
    check_free_space(config.run_dir, needed, "the targets store", ds.free_space_limit)

    inputs = [Path(ds.genome), Path(ds.targets), Path(ds.windows)]
    inputs += [Path(f) for f in tracks["file"]]
    inputs += [Path(p) for p in (ds.blacklist, ds.unmappable) if p is not None]
    return DatasetPlan(config, tracks, windows, dropped, chrom_maps, blacklist, inputs)


def _unmappable_bin_fraction(unmap: IntervalSet, row, geometry) -> float:
    """Fraction of the window's bins that are at least half unmappable."""
    mask = unmap.coverage_mask(row.chrom, row.start, row.end)
    per_bin = mask.reshape(geometry.n_bins, geometry.bin_size).mean(axis=1)
    return float((per_bin >= 0.5).mean())


def dataset_key(plan: DatasetPlan) -> dict:
    cfg = plan.config
    settings = cfg.dataset.model_dump(mode="json", exclude={"workers", "chunk_windows", "free_space_limit"})
    return {
        "geometry": cfg.geometry.model_dump(mode="json"),
        "dataset": settings,
        "chunk_windows": cfg.dataset.chunk_windows,
        "inputs": fingerprints(plan.input_files),
    }


def blacklist_slices(blacklist: IntervalSet | None, chrom: str, row_start: int, row_end: int,
                     pad: int, quirk: bool) -> list[tuple[int, int]]:
    """Blacklist regions (widened by ``pad``) as offsets into the coverage window.

    With ``quirk`` (Basenji): a region starting left of the window is not masked.
    """
    if blacklist is None:
        return []
    out = []
    for a, b in blacklist.overlapping(chrom, row_start - pad, row_end + pad):
        bs, be = max(0, int(a) - pad) - row_start, int(b) + pad - row_start
        if bs < 0:
            if quirk:
                continue
            bs = 0
        be = min(be, row_end - row_start)
        if be > bs:
            out.append((bs, be))
    return out


def _worker_count(requested: int) -> int:
    if requested:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- the stage ---------------------------------------------------------------------------

def build_dataset(config: RunConfig, force: bool = False, progress: bool = True) -> Path:
    """Build (or resume, or skip) the dataset stage of ``config.run_dir``; return its folder."""
    started = time.time()
    plan = plan_dataset(config)
    write_config_snapshot(config)
    stage = StageDir(config.run_dir, "dataset", dataset_key(plan))
    state = stage.check(force)
    if state == "done":
        log.info("dataset: up to date in %s (use --force to rebuild)", stage.final)
        return stage.final
    if state == "resume":
        log.info("dataset: resuming the interrupted build in %s", stage.partial)
    work = stage.start()
    ds, geometry = config.dataset, config.geometry
    tracks, windows = plan.tracks, plan.windows
    n_tracks = len(tracks)
    cw = ds.chunk_windows
    if state == "fresh":
        write_targets_table(tracks, work / "tracks.tsv")
        wt = windows.table.copy()
        wt.insert(0, "index", wt.groupby("split").cumcount())
        wt.to_csv(work / "windows.tsv", sep="\t", index=False)
        plan.dropped.to_csv(work / "dropped_windows.tsv", sep="\t", index=False)
        for split in windows.splits:
            shape = (len(windows.split(split)), geometry.n_bins, n_tracks)
            store.create_array(work / TARGETS_STORE, split, shape, (cw, geometry.n_bins, n_tracks), "float16")
            if ds.uncovered == "mask":
                store.create_array(work / MASKS_STORE, split, shape, (cw, geometry.n_bins, n_tracks), "bool")

    payload = {
        "files": list(tracks["file"]),
        "chrom_maps": plan.chrom_maps,
        "n_bins": geometry.n_bins,
        "bin_size": geometry.bin_size,
        "params": TrackParams.from_table(tracks),
        "order": ds.transform_order,
        "baseline_percentile": ds.baseline_percentile,
        "clip_floor_zero": ds.clip_floor_zero,
        "want_uncovered": ds.uncovered == "mask",
    }
    jobs = []
    for split in windows.splits:
        split_windows = windows.split(split)
        done = store.ProgressLog(work / "progress" / f"{split}.txt").done()
        for chunk, (a, b) in enumerate(store.chunk_ranges(len(split_windows), cw)):
            if chunk in done:
                continue
            rows = [
                (r.chrom, r.row_start, r.row_end, r.start - r.row_start,
                 blacklist_slices(plan.blacklist, r.chrom, r.row_start, r.row_end, ds.blacklist_pad, ds.blacklist_quirk))
                for r in split_windows.iloc[a:b].itertuples()
            ]
            jobs.append((split, chunk, a, b, rows))

    bar = Progress(sum(b - a for _, _, a, b, _ in jobs), "dataset", enabled=progress)
    arrays = {s: store.open_array(work / TARGETS_STORE, s, "r+") for s in windows.splits}
    masks = {s: store.open_array(work / MASKS_STORE, s, "r+") for s in windows.splits} if ds.uncovered == "mask" else {}
    logs = {s: store.ProgressLog(work / "progress" / f"{s}.txt") for s in windows.splits}

    def write(job, result):
        split, chunk, a, b, _ = job
        arrays[split][a:b] = result[0]
        if masks:
            masks[split][a:b] = result[1]
        logs[split].add(chunk)
        bar.update(b - a)

    n_workers = min(_worker_count(ds.workers), max(1, len(jobs)))
    if n_workers == 1:
        init_worker(payload)
        for job in jobs:
            write(job, compute_chunk(job[4]))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=init_worker, initargs=(payload,)) as pool:
            pending = {}
            queue = iter(jobs)
            for job in queue:
                pending[pool.submit(compute_chunk, job[4])] = job
                if len(pending) >= 2 * n_workers:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        write(pending.pop(fut), fut.result())
            for fut in list(pending):
                write(pending.pop(fut), fut.result())

    stats = _extreme_clip_and_stats(work, windows, tracks, ds.extreme_clip_percentile, geometry.n_bins)
    stats["windows"] = {s: len(windows.split(s)) for s in windows.splits}
    stats["dropped_windows"] = len(plan.dropped)
    stats["tracks"] = n_tracks
    final = stage.finish(config.model_dump(mode="json"), stats, started)
    log.info("dataset: %d windows x %d bins x %d tracks in %s (%.1f s)",
             len(windows), geometry.n_bins, n_tracks, final, time.time() - started)
    return final


def _extreme_clip_and_stats(work: Path, windows: Windows, tracks: pd.DataFrame, q: float | None, n_bins: int) -> dict:
    """Per track, over all windows of all splits: clip to +/- the q-th percentile (Basenji step 7).

    The thresholds are saved before clipping so that an interrupted clip pass resumes with
    the same thresholds (clipping twice with them changes nothing).
    """
    n_tracks = len(tracks)
    arrays = {s: store.open_array(work / TARGETS_STORE, s, "r+") for s in windows.splits}
    thresholds_path = work / "extreme_clip.json"
    thresholds = None
    if q is not None:
        if thresholds_path.exists():
            thresholds = np.array(read_json(thresholds_path)["thresholds"], dtype=np.float16)
        else:
            top = TopValues(n_tracks, len(windows) * n_bins, q)
            for arr in arrays.values():
                for _, _, values in store.iter_chunks(arr):
                    top.add(values)
            thresholds = top.thresholds()
            write_json_atomic(thresholds_path, {"percentile": q, "thresholds": [float(t) for t in thresholds],
                                                "identifiers": list(tracks["identifier"])})
    total = np.zeros(n_tracks)
    total_sq = np.zeros(n_tracks)
    maximum = np.full(n_tracks, -np.inf)
    n_clipped = np.zeros(n_tracks, dtype=np.int64)
    count = 0
    for split, arr in arrays.items():
        clip_log = store.ProgressLog(work / "progress" / f"clip-{split}.txt")
        done = clip_log.done()
        for chunk, (a, b) in enumerate(store.chunk_ranges(arr.shape[0], arr.chunks[0])):
            values = np.asarray(arr[a:b])
            counts_file = work / "progress" / f"clip-{split}-{chunk}.npy"
            if thresholds is not None and chunk not in done:
                lim = thresholds.astype(np.float32)
                v32 = values.astype(np.float32)
                if not counts_file.exists():  # counted before this chunk was first clipped
                    tmp = counts_file.with_name(counts_file.stem + ".partial.npy")
                    np.save(tmp, ((v32 > lim) | (v32 < -lim)).reshape(-1, n_tracks).sum(axis=0))
                    os.replace(tmp, counts_file)
                values = np.clip(values, -thresholds, thresholds)
                arr[a:b] = values
                clip_log.add(chunk)
            if thresholds is not None:  # counts survive an interrupted, resumed clip pass
                n_clipped += np.load(counts_file)
            v = values.reshape(-1, n_tracks).astype(np.float64)
            total += v.sum(axis=0)
            total_sq += (v * v).sum(axis=0)
            maximum = np.maximum(maximum, v.max(axis=0))
            count += len(v)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0))
    track_stats = pd.DataFrame({
        "identifier": tracks["identifier"], "mean": mean, "std": std, "max": maximum,
        "extreme_clip_threshold": thresholds.astype(np.float64) if thresholds is not None else np.nan,
        "values_clipped": n_clipped,
    })
    track_stats.to_csv(work / "track_stats.tsv", sep="\t", index=False)
    return {"extreme_clip_percentile": q, "values_clipped": int(n_clipped.sum())}
