"""The dataset stage's work (``stages/dataset.py`` runs it):
windows x BigWigs -> binned targets in a chunked store, resumable.

Every input is validated before any coverage is read (``plan_dataset``); the store is built
in ``RUN_DIR/dataset.partial`` chunk by chunk (an interrupted build resumes) and renamed to
``RUN_DIR/dataset`` only when complete (``stage.run_stage``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fs import check_free_space, read_json, write_bytes_atomic, write_json_atomic
from ..genome.chroms import mismatch_message
from ..genome.intervals import IntervalSet
from ..genome.sequence import Genome
from ..genome.windows import Windows, read_windows_bed
from ..progress import Progress
from ..rundir import store
from ..rundir.config import RunConfig
from ..rundir.layout import DatasetFolder
from ..rundir.provenance import check_once
from ..targets.table import read_targets_table, write_targets_table
from ._worker import compute_chunks, init_worker
from .bigwig import bigwig_chrom_sizes, chrom_maps_for, describe, open_bigwig, validate_bigwig
from .transform import ChunkSummary, TopValues, TrackParams, chunk_sums

log = logging.getLogger("enformer_transfer")


@dataclass
class DatasetPlan:
    """Validated inputs of the dataset stage."""

    config: RunConfig
    tracks: pd.DataFrame
    windows: Windows
    dropped: pd.DataFrame
    chrom_maps: list[dict[str, str | None]]
    blacklist: IntervalSet | None


def plan_dataset(config: RunConfig) -> DatasetPlan:
    """Check every input of the dataset stage; raise InputError naming file, row and fix."""
    ds, geometry = config.dataset, config.geometry
    for name in ("genome", "targets", "windows"):
        if getattr(ds, name) is None:
            raise InputError(f"dataset: no {name} given; pass --{name} PATH or set dataset.{name} in the config")
    config.run_path("dataset", "; pass --out RUN_DIR")  # the dataset makes the run directory
    tracks = read_targets_table(ds.targets)
    genome = Genome(ds.genome, ds.chrom_aliases)
    windows = read_windows_bed(ds.windows, geometry)
    chroms = list(dict.fromkeys(windows.table["chrom"]))
    missing = genome.names.missing(chroms)
    if missing:
        raise InputError(mismatch_message(f"genome {ds.genome}", missing, genome.sizes, ds.chrom_aliases))
    windows, past_end = _windows_inside_chromosomes(windows, genome, ds)
    windows = _without_duplicate_windows(windows, ds)
    chrom_maps = chrom_maps_for(list(tracks["file"]), chroms, ds.chrom_aliases, ds.allow_missing_chroms, str(ds.targets))
    for t, (file, ident) in enumerate(zip(tracks["file"], tracks["identifier"], strict=True)):
        what = f"track {t} '{ident}' of {ds.targets}"
        _check_chrom_sizes(file, what, chrom_maps[t], genome, ds)
        _check_values(file, what, ds.negative)  # before the integrity check, which would call them damage
        check_once(file, "validate_bigwig", lambda path, t=t, ident=ident: validate_bigwig(
            path, f"track {t} '{ident}' of {ds.targets}",
            "replace the file (fetch it again) or remove its row from the targets table"))
    _check_duplicate_files(tracks, ds.targets, ds.duplicate_files)
    blacklist = _read_blacklist(ds, genome)
    windows, unmappable = _without_unmappable_windows(windows, ds)
    dropped = pd.concat([past_end, unmappable]) if len(past_end) or len(unmappable) else past_end
    n_values = len(windows) * geometry.n_bins * len(tracks)
    needed = n_values * 2 + (n_values if ds.uncovered == "mask" else 0)
    check_free_space(config.run_dir, needed, "the targets store", ds.free_space_limit)
    return DatasetPlan(config, tracks, windows, dropped, chrom_maps, blacklist)


def _check_chrom_sizes(file: str, what: str, chrom_map: dict[str, str | None], genome: Genome, ds) -> None:
    """A window chromosome whose length in the BigWig differs from the genome's: the BigWig was
    made on another assembly, so its coverage lies at other positions (refused unless allowed)."""
    sizes = bigwig_chrom_sizes(file, what)
    for chrom, name in chrom_map.items():
        if name is None:
            continue
        ours, theirs = genome.chrom_size(chrom), sizes[name]
        if ours == theirs:
            continue
        alias = f" (the genome's {chrom})" if name != chrom else ""
        message = f"{describe(file, what)}: {name}{alias} has {theirs} bp in the BigWig but {ours} bp in genome {ds.genome}"
        if not ds.allow_chrom_size_mismatch:
            raise InputError(f"{message}: the BigWig was made on another assembly; use the BigWig for the genome's "
                             "assembly (or --allow-chrom-size-mismatch to read it anyway)")
        log.warning("%s (another assembly?); read anyway (--allow-chrom-size-mismatch)", message)
        return


def _check_values(file: str, what: str, negative: str) -> None:
    """The BigWig's own summary (its header): NaN or infinite values are refused, naming the first
    one; negative values too under ``--negative error``. Files without a summary (version 1) or
    whose summary cannot be read are left to the integrity check and the build."""
    summary = _header_summary(file, what)
    if summary is None:
        return
    found = None
    if not all(np.isfinite(summary.get(key, 0.0)) for key in ("sum", "min", "max")):
        found = _first_nonfinite(file, what)  # none found: a damaged summary, for the integrity check
    if found is not None:
        chrom, start, end, value = found
        kind, shown = ("NaN", "") if np.isnan(value) else ("infinite", f": {value:g}")
        raise InputError(f"{describe(file, what)} contains {kind} values (the first at {chrom}:{start}-{end}{shown}); "
                         "fix the file (write 0 where the signal is zero, leave bases without coverage out) or remove "
                         "its row from the targets table")
    if negative == "error" and summary.get("min", 0.0) < 0:
        raise InputError(f"{describe(file, what)} has negative values (its minimum is {summary['min']:g}); "
                         "--negative clip clips them to 0, --negative abs reads them as positive (a minus-strand "
                         "track stored negative)")


def _header_summary(file: str, what: str) -> dict | None:
    reader = open_bigwig(file, what)
    try:
        return reader.info().get("summary")
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException:  # noqa: BLE001 - a damaged header (pyo3 panics): the integrity check names it
        return None
    finally:
        reader.close()


def _first_nonfinite(file: str, what: str, n_bins: int = 4096) -> tuple[str, int, int, float] | None:
    """The first record holding NaN or an infinite value, found with exact binned summaries (a bin
    with covered bases and a non-finite sum holds one), then the records of that bin only."""
    reader = open_bigwig(file, what)
    try:
        for chrom, size in reader.chroms().items():
            bins = max(1, min(size, n_bins))
            sums = reader.values(chrom, 0, size, bins=bins, exact=True, summary="sum", fillna=None)
            covered = reader.values(chrom, 0, size, bins=bins, exact=True, summary="bases_covered", fillna=None)
            bad = np.flatnonzero((np.nan_to_num(covered) > 0) & ~np.isfinite(sums))
            if not len(bad):
                continue
            first = int(bad[0])  # bin i covers about [i * size / bins, (i + 1) * size / bins)
            near = (max(0, (first - 2) * size // bins), min(size, (first + 3) * size // bins))
            for lo, hi in (near, (0, size)):  # the whole chromosome only if the bins were cut otherwise
                for start, end, value in reader.records(chrom, lo, hi):
                    if not np.isfinite(value):
                        return chrom, int(start), int(end), float(value)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException:  # noqa: BLE001 - locating is a courtesy; the message stands without it
        return None
    finally:
        reader.close()
    return None


def _dropped(table: pd.DataFrame, reasons) -> pd.DataFrame:
    return table.assign(reason=reasons) if len(table) else pd.DataFrame(columns=list(table.columns) + ["reason"])


def _windows_inside_chromosomes(windows: Windows, genome: Genome, ds) -> tuple[Windows, pd.DataFrame]:
    """Windows whose model input reaches past a chromosome end are padded (said once); windows
    whose target interval lies past it are dropped, padded with a warning, or refused."""
    table = windows.table
    sizes = table["chrom"].map(genome.chrom_size)
    beyond = (table["input_start"] < 0) | (table["input_end"] > sizes) | (table["row_end"] > sizes)
    outside = table["end"] > sizes  # target interval not inside the chromosome: no data at all there
    if beyond.any():
        first = table[beyond].iloc[0]
        what = (f"{ds.windows} row {first.bed_row}: model input {first.chrom}:{first.input_start}-"
                f"{first.input_end} extends beyond the chromosome (length {genome.chrom_size(first.chrom)})")
        if ds.beyond_chrom_end == "error":
            raise InputError(f"{what}; {int(beyond.sum())} window(s) affected; use --beyond-chrom-end pad to pad them")
        log.warning("%s; %d window(s) will be padded (N for sequence, uncovered for coverage)", what, int(beyond.sum()))
    if not outside.any():
        return windows, _dropped(table.iloc[:0], [])
    first = table[outside].iloc[0]
    what = (f"{int(outside.sum())} window(s) have target intervals past their chromosome's end, e.g. "
            f"{ds.windows} row {first.bed_row} {first.chrom}:{first.start}-{first.end} (length "
            f"{genome.chrom_size(first.chrom)}): another assembly?")
    if ds.beyond_chrom_end != "drop":
        log.warning("%s Their bins past the end are uncovered (baseline-filled); --beyond-chrom-end drop "
                    "leaves them out, --beyond-chrom-end error refuses them.", what)
        return windows, _dropped(table.iloc[:0], [])
    log.warning("%s They are dropped (--beyond-chrom-end drop).", what)
    if outside.all():
        raise InputError(f"{ds.windows}: every window lies past its chromosome's end; wrong genome?")
    kept = table[~outside].reset_index(drop=True)
    return Windows(kept, windows.geometry), _dropped(table[outside], "target interval past the chromosome end")


def _read_blacklist(ds, genome: Genome) -> IntervalSet | None:
    if ds.blacklist is None:
        return None
    blacklist = IntervalSet.from_bed(ds.blacklist, ds.chrom_aliases)
    unknown = [c for c in blacklist.regions if genome.names.resolve(c) is None]
    if unknown and len(unknown) == len(blacklist.regions):
        raise InputError(mismatch_message(f"genome {ds.genome}", sorted(unknown), genome.sizes, ds.chrom_aliases)
                         + f" (names used by blacklist {ds.blacklist})")
    return blacklist


def _without_unmappable_windows(windows: Windows, ds) -> tuple[Windows, pd.DataFrame]:
    table = windows.table
    if ds.unmappable is None:
        return windows, _dropped(table.iloc[:0], [])
    unmap = IntervalSet.from_bed(ds.unmappable, ds.chrom_aliases)
    frac = np.array([_unmappable_bin_fraction(unmap, r, windows.geometry) for r in table.itertuples()])
    drop = frac >= ds.unmappable_max_fraction
    if not drop.any():
        return windows, _dropped(table.iloc[:0], [])
    log.warning("%d window(s) dropped: at least %.0f%% of their bins are unmappable",
                int(drop.sum()), 100 * ds.unmappable_max_fraction)
    if drop.all():
        raise InputError(f"{ds.windows}: every window is mostly unmappable ({ds.unmappable})")
    kept = table[~drop].reset_index(drop=True)
    return Windows(kept, windows.geometry), _dropped(table[drop], [f"unmappable bins {f:.2f}" for f in frac[drop]])


def _check_duplicate_files(tracks: pd.DataFrame, table: Path, mode: str) -> None:
    """Two tracks reading one BigWig file are identical tracks: usually a copy-paste slip."""
    duplicated = tracks["file"].duplicated(keep=False)
    if not duplicated.any():
        return
    first = tracks[duplicated].iloc[0]
    rows = [str(i + 2) for i in np.flatnonzero(tracks["file"] == first["file"])]
    message = (f"{table}: {int(duplicated.sum())} tracks share a BigWig file with another track, e.g. rows "
               f"{', '.join(rows)} both read {first['file']}")
    if mode == "error":
        raise InputError(f"{message}; give each track its own file (or --duplicate-files warn)")
    log.warning("%s; they will be identical tracks (--duplicate-files error refuses this)", message)


def _without_duplicate_windows(windows: Windows, ds) -> Windows:
    """The same target interval twice within a split: counted twice in training and metrics."""
    table = windows.table
    duplicated = table.duplicated(subset=["split", "chrom", "start", "end"], keep="first")
    if not duplicated.any():
        return windows
    first = table[duplicated].iloc[0]
    message = (f"{ds.windows}: {int(duplicated.sum())} window(s) repeat an earlier window of the same split, e.g. "
               f"row {first.bed_row} {first.chrom}:{first.start}-{first.end} ({first.split})")
    if ds.duplicate_windows == "error":
        raise InputError(f"{message}; remove the repeats (or --duplicate-windows keep / drop)")
    if ds.duplicate_windows == "keep":
        log.warning("%s; they are kept and count twice (--duplicate-windows drop removes them)", message)
        return windows
    log.warning("%s; the repeats are dropped (--duplicate-windows drop)", message)
    return Windows(table[~duplicated].reset_index(drop=True), windows.geometry)


def _unmappable_bin_fraction(unmap: IntervalSet, row, geometry) -> float:
    """Fraction of the window's bins that are at least half unmappable."""
    mask = unmap.coverage_mask(row.chrom, row.start, row.end)
    per_bin = mask.reshape(geometry.n_bins, geometry.bin_size).mean(axis=1)
    return float((per_bin >= 0.5).mean())


INPUT_FILES = ("genome", "targets", "windows", "blacklist", "unmappable")


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


# --- the build ---------------------------------------------------------------------------

def write_windows_table(windows: Windows, folder: DatasetFolder) -> None:
    table = windows.table.copy()
    table.insert(0, "index", table.groupby("split").cumcount())
    table.to_csv(folder.windows, sep="\t", index=False)


def build_dataset_folder(plan: DatasetPlan, folder: DatasetFolder, state: str, progress: bool) -> dict:
    ds, geometry = plan.config.dataset, plan.config.geometry
    tracks, windows = plan.tracks, plan.windows
    n_tracks = len(tracks)
    cw = ds.chunk_windows
    if state == "fresh":
        write_targets_table(tracks, folder.tracks)
        write_windows_table(windows, folder)
        plan.dropped.to_csv(folder.dropped_windows, sep="\t", index=False)
        for split in windows.splits:
            shape = (len(windows.split(split)), geometry.n_bins, n_tracks)
            store.create_array(folder.targets_store, split, shape, (cw, geometry.n_bins, n_tracks), "float16")
            if ds.uncovered == "mask":
                store.create_array(folder.masks_store, split, shape, (cw, geometry.n_bins, n_tracks), "bool")

    payload = {
        "files": list(tracks["file"]),
        "names": list(tracks["identifier"]),
        "chrom_maps": plan.chrom_maps,
        "n_bins": geometry.n_bins,
        "bin_size": geometry.bin_size,
        "params": TrackParams.from_table(tracks),
        "ceilings": TrackParams.from_table(tracks).ceilings(ds.transform_order),
        "negative": ds.negative,
        "order": ds.transform_order,
        "baseline_percentile": ds.baseline_percentile,
        "clip_floor_zero": ds.clip_floor_zero,
        "store_mask": ds.uncovered == "mask",
        "top_k": _summary_top_k(ds.extreme_clip_percentile, len(windows) * geometry.n_bins, cw * geometry.n_bins,
                                n_tracks),
    }
    jobs = []
    for split in windows.splits:
        split_windows = windows.split(split)
        done = store.ProgressLog(folder.progress / f"{split}.txt").done()
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
    arrays = {s: store.open_array(folder.targets_store, s, "r+") for s in windows.splits}
    masks = {s: store.open_array(folder.masks_store, s, "r+") for s in windows.splits} if ds.uncovered == "mask" else {}
    logs = {s: store.ProgressLog(folder.progress / f"{s}.txt") for s in windows.splits}

    def write(job, result):
        split, chunk, a, b, _ = job
        targets, mask, uncovered_bins, summary, odd = result
        arrays[split][a:b] = targets
        if masks:
            masks[split][a:b] = mask
        # per-chunk counts and summary on disk first, so an interrupted build still has every chunk's
        write_bytes_atomic(folder.chunk_file("uncovered", split, chunk), _npy(uncovered_bins), fsync=False)
        write_bytes_atomic(_odd_path(folder, split, chunk), _npy(odd), fsync=False)
        write_bytes_atomic(_summary_path(folder, split, chunk), _npy(summary.to_array()), fsync=False)
        logs[split].add(chunk, [store.checksum(targets)] + ([store.checksum(mask)] if masks else []))
        bar.update(b - a)

    workers = _worker_count(ds.workers)
    window_bytes = geometry.n_bins * n_tracks * (3 if masks else 2)
    batches = _batches(jobs, workers, window_bytes)
    n_workers = min(workers, max(1, len(batches)))
    if n_workers == 1:
        init_worker(payload)
        for batch in batches:
            _write_batch(write, batch, compute_chunks([job[4] for job in batch]))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=init_worker, initargs=(payload,)) as pool:
            pending = {}
            for batch in _interleaved(batches, n_workers):
                pending[pool.submit(compute_chunks, [job[4] for job in batch])] = batch
                if len(pending) >= 2 * n_workers:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        _write_batch(write, pending.pop(fut), fut.result())
            for fut in list(pending):
                _write_batch(write, pending.pop(fut), fut.result())

    uncovered = _uncovered_counts(folder, windows, cw, n_tracks)
    odd = _odd_counts(folder, windows, cw, n_tracks, ds.negative)
    stats = finish_targets(folder, windows, tracks, ds.extreme_clip_percentile, geometry.n_bins, uncovered, odd)
    stats["windows"] = {s: len(windows.split(s)) for s in windows.splits}
    stats["dropped_windows"] = len(plan.dropped)
    stats["tracks"] = n_tracks
    _report_uncovered(stats, ds.uncovered)
    _report_odd_tracks(stats, ds.negative)
    return stats


# Windows per worker task: consecutive chunks of a task share reads of overlapping windows;
# small enough that the workers finish together, and the results stay under BATCH_BYTES.
BATCH_WINDOWS = 32
BATCH_BYTES = 64 << 20


def _batches(jobs: list[tuple], n_workers: int, window_bytes: int) -> list[list[tuple]]:
    """Consecutive chunk jobs of one split in groups of at most ``BATCH_WINDOWS`` windows,
    fewer when that leaves less than four groups per worker."""
    n_windows = sum(b - a for _, _, a, b, _ in jobs)
    size = max(1, min(BATCH_WINDOWS, n_windows // (4 * n_workers), BATCH_BYTES // window_bytes))
    out: list[list[tuple]] = []
    filled = 0
    for job in jobs:
        split, _, a, b, _ = job
        if out and out[-1][-1][0] == split and filled + (b - a) <= size:
            out[-1].append(job)
            filled += b - a
        else:
            out.append([job])
            filled = b - a
    return out


def _interleaved(batches: list[list[tuple]], n_workers: int) -> list[list[tuple]]:
    """Batches in turns from ``n_workers`` stripes of consecutive batches: while the workers take
    turns, each walks along its own stripe and reads only the new bases of its next batch."""
    stripes = [batches[i * len(batches) // n_workers : (i + 1) * len(batches) // n_workers] for i in range(n_workers)]
    return [stripe[i] for i in range(len(stripes[-1])) for stripe in stripes if i < len(stripe)]


def _write_batch(write, batch: list[tuple], results: list) -> None:
    for job, result in zip(batch, results, strict=True):
        write(job, result)


def _npy(values: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


def _summary_path(folder: DatasetFolder, split: str, chunk: int) -> Path:
    return folder.chunk_file("summary", split, chunk)


def _summary_top_k(q: float | None, n_values: int, chunk_values: int, n_tracks: int) -> int | None:
    """How many largest values per track a chunk summary keeps for the extreme-clip percentile:
    None (the final pass reads the chunks) when that is no percentile or a sizeable part of a chunk."""
    if q is None:
        return None
    k = TopValues(n_tracks, n_values, q).k
    return k if k <= chunk_values // 4 else None


def _uncovered_counts(folder: DatasetFolder, windows: Windows, chunk_windows: int, n_tracks: int) -> np.ndarray:
    total = np.zeros(n_tracks, dtype=np.int64)
    for split in windows.splits:
        for chunk in range(len(store.chunk_ranges(len(windows.split(split)), chunk_windows))):
            total += np.load(folder.chunk_file("uncovered", split, chunk))
    return total


def _odd_path(folder: DatasetFolder, split: str, chunk: int) -> Path:
    return folder.chunk_file("odd", split, chunk)


@dataclass
class OddCounts:
    """Per track, over every window: negative bases (as read, over the windows' rows), the bases
    read, and the bins at the track's ceiling (its hard clip, or the float16 maximum)."""

    negative_bases: np.ndarray
    bases: int
    bins_at_clip: np.ndarray
    negative_rule: str = "clip"


def _odd_counts(folder: DatasetFolder, windows: Windows, chunk_windows: int, n_tracks: int,
                negative_rule: str) -> OddCounts:
    total = np.zeros((2, n_tracks), dtype=np.int64)
    for split in windows.splits:
        for chunk in range(len(store.chunk_ranges(len(windows.split(split)), chunk_windows))):
            path = _odd_path(folder, split, chunk)
            if path.exists():  # a chunk built by an earlier version has none: not counted
                total += np.load(path)
    bases = int((windows.table["row_end"] - windows.table["row_start"]).sum())
    return OddCounts(total[0], bases, total[1], negative_rule)


# A track with more than this fraction of its bins at the hard clip is said to be saturated: the
# clip then cuts its ordinary peaks, not its rare outliers (the clip or scale does not fit the
# track's units, e.g. raw counts where normalised coverage was expected).
SATURATED_BIN_FRACTION = 0.01
# tracks named in one warning line; the rest are in track_stats.tsv and stage.json
_NAMED = 5


def _named(items: list[str]) -> str:
    more = f" and {len(items) - _NAMED} more" if len(items) > _NAMED else ""
    return ", ".join(items[:_NAMED]) + more


def _report_odd_tracks(stats: dict, negative_rule: str) -> None:
    """Warn once per kind of odd track, naming the tracks (all of them in stage.json)."""
    negative = stats["negative_values"]
    if negative:
        listed = _named([f"{name!r} {n['bases']:,} bases ({100 * n['fraction']:.3g}%)" for name, n in negative.items()])
        done = {"clip": "clipped to 0 (--negative abs reads minus-strand tracks stored negative as positive, "
                        "--negative error refuses them)",
                "abs": "read as positive (--negative abs)",
                "keep": "kept as they are (--negative keep)"}[negative_rule]
        emit = log.warning if negative_rule == "clip" else log.info  # abs and keep: asked for
        emit("dataset: %d track(s) have negative coverage values, %s: %s", len(negative), done, listed)
    if stats["all_zero_tracks"]:
        log.warning("dataset: %d track(s) are zero in every bin of every window (nothing to learn; an empty or "
                    "wrong BigWig?): %s", len(stats["all_zero_tracks"]), _named([repr(t) for t in stats["all_zero_tracks"]]))
    saturated = stats["saturated_tracks"]
    if saturated:
        listed = _named([f"{name!r} {100 * f:.3g}%" for name, f in saturated.items()])
        log.warning("dataset: %d track(s) have more than %g%% of their bins at the hard clip (the clip cuts their "
                    "ordinary peaks: check the track's units, its clip and scale in the targets table): %s",
                    len(saturated), 100 * SATURATED_BIN_FRACTION, listed)


def _chunk_ranges(arr) -> list[tuple[int, int]]:
    return store.chunk_ranges(arr.shape[0], arr.chunks[0])


def _read_summary(folder: DatasetFolder, split: str, chunk: int) -> ChunkSummary | None:
    """The chunk's summary from the build; None when it has none (an import, or a chunk built
    before summaries existed): the chunk is then read."""
    path = _summary_path(folder, split, chunk)
    return ChunkSummary.from_array(np.load(path)) if path.exists() else None


def _extreme_clip_thresholds(arrays: dict, summaries: dict, n_tracks: int, n_values: int, q: float) -> np.ndarray:
    """The q-th percentile per track over every chunk: from each chunk's largest values where its
    summary holds enough of them, else from the chunk itself."""
    top = TopValues(n_tracks, n_values, q)
    for split, arr in arrays.items():
        for chunk, (a, b) in enumerate(_chunk_ranges(arr)):
            summary = summaries[split, chunk]
            if summary is not None and summary.top_k == top.k:
                top.add(summary.top)
            else:
                top.add(np.asarray(arr[a:b]))
    return top.thresholds()


def _clip_keeps(summary: ChunkSummary, thresholds: np.ndarray) -> bool:
    """True when clipping the chunk to +/- thresholds leaves every value bit for bit as it is:
    each threshold finite and positive (a zero one turns -0.0 into +0.0) and the chunk's values
    inside [-t, t]. Then nothing is counted as clipped either."""
    lim = thresholds.astype(np.float32)
    inside = ~(summary.high > lim) & ~(summary.low < -lim)
    return bool(np.all(np.isfinite(lim) & (lim > 0) & inside))


def _report_uncovered(stats: dict, mode: str) -> None:
    """Say once how many target bins had bases without coverage, and what was done with them."""
    fraction = stats["uncovered_bin_fraction"]
    if fraction <= 0:
        return
    if mode == "fill":
        log.warning("dataset: %.1f%% of target bins (over all tracks) have bases without coverage; they were "
                    "filled with each window's baseline (Basenji's rule) and count as data. To leave them out of "
                    "training and metrics, rebuild with --uncovered mask", 100 * fraction)
    else:
        log.info("dataset: %.1f%% of target bins have bases without coverage; they are masked", 100 * fraction)


def finish_targets(folder: DatasetFolder, windows: Windows, tracks: pd.DataFrame, q: float | None, n_bins: int,
                   uncovered_bins: np.ndarray | None = None, odd: OddCounts | None = None) -> dict:
    """Per track, over all windows of all splits: clip to +/- the q-th percentile (Basenji
    step 7), then write track_stats.tsv.

    The thresholds are saved before clipping so that an interrupted clip pass resumes with
    the same thresholds (clipping twice with them changes nothing). Chunks with a summary
    from the build (``ChunkSummary``) are neither read nor rewritten when the clip leaves
    them as they are (with 1e-7 of the values clipped, nearly every chunk).
    """
    n_tracks = len(tracks)
    arrays = {s: store.open_array(folder.targets_store, s, "r+") for s in windows.splits}
    summaries = {(split, chunk): _read_summary(folder, split, chunk)
                 for split, arr in arrays.items() for chunk in range(len(_chunk_ranges(arr)))}
    thresholds = None
    if q is not None:
        if folder.extreme_clip.exists():
            thresholds = np.array(read_json(folder.extreme_clip)["thresholds"], dtype=np.float16)
        else:
            thresholds = _extreme_clip_thresholds(arrays, summaries, n_tracks, len(windows) * n_bins, q)
            write_json_atomic(folder.extreme_clip, {"percentile": q, "thresholds": [float(t) for t in thresholds],
                                                    "identifiers": list(tracks["identifier"])})
    total = np.zeros(n_tracks)
    total_sq = np.zeros(n_tracks)
    maximum = np.full(n_tracks, -np.inf)
    n_clipped = np.zeros(n_tracks, dtype=np.int64)
    count = 0
    checksums: dict[str, list[str]] = {}
    for split, arr in arrays.items():
        clip_log = store.ProgressLog(folder.progress / f"clip-{split}.txt")
        done = clip_log.entries()
        built = store.ProgressLog(folder.progress / f"{split}.txt").entries()
        sums_of_split = checksums[f"{folder.targets_store.name}/{split}"] = []
        if store.has_array(folder.masks_store, split):
            checksums[f"{folder.masks_store.name}/{split}"] = [built[c][1] for c in range(len(_chunk_ranges(arr)))]
        for chunk, (a, b) in enumerate(_chunk_ranges(arr)):
            summary = summaries[split, chunk]
            if summary is not None and (thresholds is None or (chunk not in done and
                                                               _clip_keeps(summary, thresholds))):
                sums = (summary.total, summary.total_sq, summary.maximum, summary.count)
                sums_of_split.append(built[chunk][0])  # stored as built
            else:
                values = np.asarray(arr[a:b])
                counts_file = folder.chunk_file("clip", split, chunk)
                if thresholds is not None and chunk not in done:
                    lim = thresholds.astype(np.float32)
                    v32 = values.astype(np.float32)
                    if not counts_file.exists():  # counted before this chunk was first clipped
                        counts = ((v32 > lim) | (v32 < -lim)).reshape(-1, n_tracks).sum(axis=0)
                        write_bytes_atomic(counts_file, _npy(counts), fsync=False)
                    values = np.clip(values, -thresholds, thresholds)
                    arr[a:b] = values
                    clip_log.add(chunk, [store.checksum(values)])
                if thresholds is not None:  # counts survive an interrupted, resumed clip pass
                    n_clipped += np.load(counts_file)
                sums = chunk_sums(values)
                sums_of_split.append(done[chunk][0] if chunk in done and done[chunk] else store.checksum(values))
            total += sums[0]
            total_sq += sums[1]
            maximum = np.maximum(maximum, sums[2])
            count += sums[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0))
    uncovered_fraction = (uncovered_bins / max(count, 1)) if uncovered_bins is not None else np.zeros(n_tracks)
    all_zero = (total_sq == 0) & (count > 0)  # every value 0 (or -0)
    unknown = np.full(n_tracks, np.nan)
    negative_fraction = odd.negative_bases / max(odd.bases, 1) if odd is not None else unknown
    at_clip_fraction = odd.bins_at_clip / max(count, 1) if odd is not None else unknown
    track_stats = pd.DataFrame({
        "identifier": tracks["identifier"], "mean": mean, "std": std, "max": maximum,
        "extreme_clip_threshold": thresholds.astype(np.float64) if thresholds is not None else np.nan,
        "values_clipped": n_clipped, "uncovered_bin_fraction": uncovered_fraction,
        "negative_bases": odd.negative_bases if odd is not None else unknown,
        "negative_fraction": negative_fraction, "at_clip_bin_fraction": at_clip_fraction, "all_zero": all_zero,
    })
    track_stats.to_csv(folder.track_stats, sep="\t", index=False)
    write_json_atomic(folder.checksums, checksums)
    ids = [str(i) for i in tracks["identifier"]]
    negative = {} if odd is None else {
        ids[t]: {"bases": int(odd.negative_bases[t]), "fraction": float(negative_fraction[t])}
        for t in np.flatnonzero(odd.negative_bases > 0)}
    return {"extreme_clip_percentile": q, "values_clipped": int(n_clipped.sum()),
            "uncovered_bin_fraction": float(uncovered_fraction.mean()),
            "negative_values": negative, "negative_rule": None if odd is None else odd.negative_rule,
            "all_zero_tracks": [ids[t] for t in np.flatnonzero(all_zero)],
            "saturated_tracks": {ids[t]: float(at_clip_fraction[t])
                                 for t in np.flatnonzero(at_clip_fraction > SATURATED_BIN_FRACTION)},
            "saturated_bin_fraction": SATURATED_BIN_FRACTION}
