"""The pseudobulk command: fragment files + a cells table -> OUT/bigwigs/*.bw, OUT/targets.tsv (the
layout ``fetch`` writes, read by ``dataset`` as it is), OUT/qc.tsv and a QC figure.

Plan (every input checked before any work), key (inputs and settings), then two resumable phases
in OUT/pseudobulk.partial/: count every fragment file (one process per file; per chromosome
markers), write every group's BigWig (one process per group; per group markers). OUT/pseudobulk.json,
written last, marks the folder finished: a rerun with the same inputs is "up to date", with other
inputs it is refused unless ``force``. The counting itself is in ``pseudobulk.py``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..data.pseudobulk import (
    LEAF_STATS,
    Cells,
    CountJob,
    GroupJob,
    PseudobulkFolder,
    count_fragment_file,
    fragment_file_layout,
    genome_sizes,
    read_blacklist,
    read_cells_table,
    read_chrom_sizes,
    refuse_alias_mismatch,
    scale_factor,
    write_group_bigwig,
)
from ..errors import InputError, StaleStageError
from ..fs import atomic_path, check_free_space, exclusive_lock, read_json, write_json_atomic
from ..progress import Progress
from ..rundir.config import PseudobulkConfig, TargetsConfig
from ..rundir.provenance import digest_of, file_fingerprint
from ..targets.table import build_targets_table, save_targets_table

log = logging.getLogger("enformer_transfer")
MB = 1 << 20


@dataclass
class PseudobulkPlan:
    out: PseudobulkFolder
    fragments: list[tuple[str | None, Path]]  # (sample, file)
    cells: Cells
    cells_path: Path
    sizes: dict[str, int]
    sizes_source: Path
    blacklist: dict[str, np.ndarray]
    blacklist_path: Path | None
    genome_size: int
    settings: PseudobulkConfig
    targets: TargetsConfig

    @property
    def position_dtype(self) -> str:
        return "int32" if max(self.sizes.values()) < 2**31 - 1 else "int64"


# --- plan -------------------------------------------------------------------------------------

def parse_fragment_specs(specs: list[str | Path], cells: Cells) -> list[tuple[str | None, Path]]:
    """``SAMPLE=PATH`` or ``PATH`` -> (sample, path). Without ``SAMPLE=``, the sample is the file
    name up to its first '.' (donor1.fragments.tsv.gz -> donor1), or the only sample of the table."""
    if not specs:
        raise InputError("pseudobulk: give one or more fragment files with --fragments")
    out = []
    for spec in map(str, specs):
        sample, sep, rest = spec.partition("=")
        if sep and "/" not in sample and not Path(spec).is_file():
            path = Path(rest)
        else:
            sample, path = None, Path(spec)
        if not path.is_file():
            raise InputError(f"{path}: fragment file not found")
        if cells.samples is None:
            if sample is not None:
                raise InputError(f"--fragments {spec}: names sample {sample!r}, but {cells.source} has no sample "
                                 "column; add one (--sample-column) or give the path alone")
        elif sample is None:
            guess = path.name.split(".", 1)[0]
            if guess in cells.samples:
                sample = guess
            elif len(cells.samples) == 1 and len(specs) == 1:
                sample = cells.samples[0]
            else:
                raise InputError(f"--fragments {spec}: which sample? {cells.source} lists samples "
                                 f"{', '.join(cells.samples[:6])}{' ...' if len(cells.samples) > 6 else ''}; "
                                 f"give it as SAMPLE={spec}")
        elif sample not in cells.samples:
            raise InputError(f"--fragments {spec}: sample {sample!r} is not in {cells.source} (samples: "
                             f"{', '.join(cells.samples[:6])}{' ...' if len(cells.samples) > 6 else ''})")
        if any(path.resolve() == seen for _, seen in out):
            raise InputError(f"--fragments {spec}: the file is given twice; its fragments would be counted twice")
        out.append((sample, path.resolve()))
    if cells.samples is not None:
        missing = sorted(set(cells.samples) - {s for s, _ in out})
        if missing:
            log.warning("pseudobulk: no fragment file for sample(s) %s of %s; their cells get no fragments",
                        ", ".join(missing[:6]), cells.source)
    return out


def plan_pseudobulk(out_dir: Path | str, fragments: list[str | Path], cells: Path | str,
                    chrom_sizes: Path | str | None = None, genome: Path | str | None = None,
                    blacklist: Path | str | None = None, settings: PseudobulkConfig | None = None,
                    targets: TargetsConfig | None = None) -> PseudobulkPlan:
    """Check every input (one-line errors naming the file, the row and the fix) before any work."""
    settings = settings or PseudobulkConfig()
    if settings.max_fragment_length is not None and settings.max_fragment_length < settings.min_fragment_length:
        raise InputError(f"--max-fragment-length {settings.max_fragment_length} is below --min-fragment-length "
                         f"{settings.min_fragment_length}")
    if (chrom_sizes is None) == (genome is None):
        raise InputError("pseudobulk: give exactly one of --chrom-sizes SIZES or --genome FASTA")
    sizes_source = Path(chrom_sizes if chrom_sizes is not None else genome)
    sizes = read_chrom_sizes(sizes_source) if chrom_sizes is not None else genome_sizes(sizes_source)
    table = read_cells_table(cells, settings.levels, settings.barcode_column, settings.sample_column,
                             settings.min_cells)
    specs = parse_fragment_specs(fragments, table)
    for _, path in specs:
        _, comments, _ = fragment_file_layout(path)
        first = _first_chrom(path, comments)
        if first is not None:
            refuse_alias_mismatch(first, list(sizes), settings.chrom_aliases, path)
    regions = read_blacklist(blacklist, sizes, settings.chrom_aliases) if blacklist is not None else {}
    genome_size = settings.effective_genome_size or (
        sum(sizes.values()) - sum(int((r[:, 1] - r[:, 0]).sum()) for r in regions.values()))
    left_out = table.groups[~table.groups["kept"]]
    if len(left_out):
        log.warning("pseudobulk: %d group(s) have fewer than %d cells (--min-cells) and are left out: %s",
                    len(left_out), settings.min_cells,
                    ", ".join(f"{r.level} {r.label} ({r.cells})" for r in left_out.head(8).itertuples()))
    if not table.groups["kept"].any():
        raise InputError(f"{cells}: no group has {settings.min_cells} cells or more (--min-cells); lower it")
    return PseudobulkPlan(PseudobulkFolder(Path(out_dir).resolve()), specs, table, Path(cells), sizes, sizes_source, regions,
                          Path(blacklist) if blacklist is not None else None, int(genome_size), settings,
                          targets or TargetsConfig())


def _first_chrom(path: Path, comments: int) -> str | None:
    import gzip

    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    with (gzip.open if compressed else open)(path, "rt") as handle:
        for i, line in enumerate(handle):
            if i >= comments:
                return line.split("\t", 1)[0]
    return None


def pseudobulk_key(plan: PseudobulkPlan) -> dict:
    """What the tracks depend on. Fragment files by path, size and modification time (hashing
    50 GB would take minutes); the other inputs by content; settings but not workers."""
    fragments = []
    for sample, path in plan.fragments:
        stat = path.stat()
        fragments.append({"sample": sample, "path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {
        "fragments": fragments,
        "cells": file_fingerprint(plan.cells_path),
        "chrom_sizes": {"source": str(plan.sizes_source.resolve()), "digest": digest_of(plan.sizes)},
        "blacklist": file_fingerprint(plan.blacklist_path) if plan.blacklist_path is not None else None,
        "settings": plan.settings.model_dump(mode="json", exclude={"workers"}),
    }


# --- the command ------------------------------------------------------------------------------

def pseudobulk(out_dir: Path | str, fragments: list[str | Path], cells: Path | str,
               chrom_sizes: Path | str | None = None, genome: Path | str | None = None,
               blacklist: Path | str | None = None, settings: PseudobulkConfig | None = None,
               targets: TargetsConfig | None = None, force: bool = False, progress: bool = True) -> Path:
    """Pseudobulk coverage per group of cells at every level: OUT/bigwigs/*.bw, OUT/targets.tsv
    (for ``dataset --targets``), OUT/qc.tsv; resumes an interrupted run; returns the targets table."""
    plan = plan_pseudobulk(out_dir, fragments, cells, chrom_sizes, genome, blacklist, settings, targets)
    key = pseudobulk_key(plan)
    plan.out.path.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(plan.out.lock, f"pseudobulk into {plan.out.path}"):
        return _run(plan, key, force, progress)


def _run(plan: PseudobulkPlan, key: dict, force: bool, progress: bool) -> Path:
    folder = plan.out
    digest = digest_of(key)
    if folder.record.is_file():
        record = read_json(folder.record)
        if record.get("key_digest") == digest and not force and all(
                (folder.bigwigs / name).is_file() for name in record.get("bigwigs", [])):
            log.info("pseudobulk: %s is up to date", folder.path)
            return _write_targets(plan, pd.DataFrame(record["groups"]))
        if record.get("key_digest") != digest and not force:
            changed = [k for k in key if record.get("key", {}).get(k) != key[k]] or ["the tool's version"]
            raise StaleStageError(f"{folder.path} holds pseudobulk tracks made from other {', '.join(changed)}; "
                                  "pass --force to replace them, or choose another --out")
        for name in record.get("bigwigs", []):
            (folder.bigwigs / name).unlink(missing_ok=True)
        folder.record.unlink()
    if folder.work.exists():
        same = folder.work_key.is_file() and read_json(folder.work_key).get("key_digest") == digest
        if same and not force:
            log.info("pseudobulk: resuming the interrupted run in %s", folder.work)
        else:
            shutil.rmtree(folder.work)
    folder.work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder.work_key, {"key_digest": digest, "key": key})
    # temporary events: 8 bytes per fragment (more with --duplicates reads), about the size of the
    # gzipped files; the BigWigs: about as much again
    todo = [path for i, (_, path) in enumerate(plan.fragments) if not folder.file_done(i).is_file()]
    check_free_space(folder.path, 2 * sum(path.stat().st_size for path in todo), "the pseudobulk counts")
    started = time.time()
    file_counts = _count(plan, progress)
    groups = _group_table(plan, file_counts)
    _write(plan, groups, progress)
    targets = _finish(plan, key, digest, groups, file_counts)
    log.info("pseudobulk: %d BigWigs from %d fragment file(s) in %.1f s -> %s", int(groups["kept"].sum()),
             len(plan.fragments), time.time() - started, folder.path)
    return targets


def _workers(requested: int) -> int:
    if requested:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- phase 1: count ---------------------------------------------------------------------------

def _count_jobs(plan: PseudobulkPlan) -> list[CountJob]:
    jobs = []
    for index, (sample, path) in enumerate(plan.fragments):
        barcodes, cell_ids = plan.cells.barcodes_of(sample)
        s = plan.settings
        jobs.append(CountJob(
            index=index, path=str(path), sample=sample, barcodes=barcodes, cell_ids=cell_ids,
            leaf_of_cell=plan.cells.leaf_of_cell, n_leaves=plan.cells.n_leaves, chroms=list(plan.sizes),
            sizes=list(plan.sizes.values()), chrom_aliases=s.chrom_aliases, blacklist=plan.blacklist, count=s.count,
            shift=(s.shift[0], s.shift[1]), min_length=s.min_fragment_length, max_length=s.max_fragment_length,
            duplicates=s.duplicates, work=str(plan.out.path), position_dtype=plan.position_dtype))
    return jobs


_QUEUE = None


def _init_count_worker(queue) -> None:
    global _QUEUE
    _QUEUE = queue


class _Reporter:
    """Compressed bytes read, sent on in steps of a few MB (to a bar or a queue)."""

    def __init__(self, send):
        self.send, self.pending = send, 0

    def __call__(self, n: int) -> None:
        self.pending += n
        if self.pending >= 4 * MB:
            self.send(self.pending)
            self.pending = 0


def _count_in_worker(job: CountJob, n_cells: int) -> dict:
    return count_fragment_file(job, n_cells, _Reporter(_QUEUE.put) if _QUEUE is not None else None)


def _count(plan: PseudobulkPlan, progress: bool) -> list[dict]:
    folder, n_cells = plan.out, len(plan.cells.table)
    jobs = [job for job in _count_jobs(plan) if not folder.file_done(job.index).is_file()]
    total = sum(Path(job.path).stat().st_size for job in jobs)
    bar = Progress(max(1, total // MB), "pseudobulk: count fragments", "MB", enabled=progress)
    moved = [0]

    def advance(n: int) -> None:
        moved[0] += n
        whole = moved[0] // MB
        if whole:
            bar.update(whole)
            moved[0] -= whole * MB

    workers = min(_workers(plan.settings.workers), len(jobs))
    if workers <= 1:
        for job in jobs:
            count_fragment_file(job, n_cells, _Reporter(advance))
    else:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_count_worker,
                                 initargs=(queue,)) as pool:
            pending = {pool.submit(_count_in_worker, job, n_cells) for job in jobs}
            while pending:
                done, pending = wait(pending, timeout=0.3, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    advance(queue.get())
                for future in done:
                    future.result()
    bar.close()
    counts = [read_json(folder.file_done(i)) for i in range(len(plan.fragments))]
    _warn(plan, counts)
    return counts


def _warn(plan: PseudobulkPlan, counts: list[dict]) -> None:
    """Counted warnings for what was left out; an error when a file matched no cell at all."""
    for (_, path), c in zip(plan.fragments, counts, strict=True):
        on_known = c["lines"] - sum(c["unknown_chrom"].values())
        if c["unknown_chrom"]:
            names = sorted(c["unknown_chrom"], key=c["unknown_chrom"].get, reverse=True)
            log.warning("pseudobulk: %s: %d fragment(s) on %d chromosome(s) absent from %s (%s); left out", path,
                        sum(c["unknown_chrom"].values()), len(names), plan.sizes_source, ", ".join(names[:5]))
        if on_known and c["unknown_barcode"] == on_known:
            raise InputError(f"{path}: no fragment has a barcode of {plan.cells.source} (file barcodes such as "
                             f"{', '.join(c.get('examples', [])[:2]) or '?'}); check the barcode column, the sample "
                             "(SAMPLE=PATH) and suffixes such as '-1'")
        if c["unknown_barcode"]:
            log.warning("pseudobulk: %s: %d fragment(s) of %d barcode(s) absent from the cells table; left out",
                        path, c["unknown_barcode"], c["unknown_barcodes"])
        if c["length_filtered"]:
            log.info("pseudobulk: %s: %d fragment(s) outside the length limits; left out", path, c["length_filtered"])


# --- phase 2: write ---------------------------------------------------------------------------

def _group_table(plan: PseudobulkPlan, file_counts: list[dict]) -> pd.DataFrame:
    """Per group: cells, fragments, insertions, blacklisted, counted, scale factor, from the
    per-chromosome markers of phase 1."""
    folder, cells = plan.out, plan.cells
    leaf = {name: np.zeros(cells.n_leaves, dtype=np.int64) for name in LEAF_STATS}
    cell_fragments = np.zeros(len(cells.table), dtype=np.int64)
    for file in range(len(plan.fragments)):
        for chrom in range(len(plan.sizes)):
            marker = read_json(folder.chrom_done(file, chrom))
            for name in LEAF_STATS:
                leaf[name] += np.asarray(marker[name], dtype=np.int64)
            cell_fragments += np.load(folder.chrom_cells(file, chrom))
    groups = cells.groups.copy()
    for name in LEAF_STATS:
        groups[name] = [int(leaf[name][leaves].sum()) for leaves in cells.group_leaves]
    with_fragments, median = [], []
    for row in groups.itertuples():
        members = (cells.table[row.level] == row.label).to_numpy()
        per_cell = cell_fragments[members]
        with_fragments.append(int((per_cell > 0).sum()))
        median.append(float(np.median(per_cell)) if len(per_cell) else 0.0)
    groups["cells_with_fragments"] = with_fragments
    groups["median_fragments_per_cell"] = median
    groups["fraction_blacklist"] = np.where(groups["insertions"] > 0,
                                            groups["blacklisted"] / groups["insertions"].clip(lower=1), 0.0)
    s = plan.settings
    groups["scale_factor"] = [scale_factor(s.normalization, r.counted, r.span_bp, s.count, plan.genome_size)
                              if r.kept else 0.0 for r in groups.itertuples()]
    groups["status"] = np.where(groups["kept"], "written", f"left out: fewer than {s.min_cells} cells")
    empty = groups["kept"] & (groups["counted"] == 0)
    if empty.any():
        log.warning("pseudobulk: %d group(s) have no counted fragment; their BigWigs are zero: %s", int(empty.sum()),
                    ", ".join(groups.loc[empty, "identifier"].head(6)))
    return groups


def _group_jobs(plan: PseudobulkPlan, groups: pd.DataFrame) -> list[GroupJob]:
    s = plan.settings
    return [GroupJob(identifier=row.identifier, leaves=plan.cells.group_leaves[i].tolist(),
                     files=list(range(len(plan.fragments))), chroms=list(plan.sizes), sizes=list(plan.sizes.values()),
                     blacklist=plan.blacklist, count=s.count, bin_size=s.bin_size, scale=float(row.scale_factor),
                     work=str(plan.out.path), position_dtype=plan.position_dtype)
            for i, row in enumerate(groups.itertuples()) if row.kept]


def _write_one(job: GroupJob, target: str) -> str:
    write_group_bigwig(job, target)
    return job.identifier


def _write(plan: PseudobulkPlan, groups: pd.DataFrame, progress: bool) -> None:
    folder = plan.out
    folder.bigwigs.mkdir(parents=True, exist_ok=True)
    jobs = _group_jobs(plan, groups)
    todo = [job for job in jobs
            if not (folder.group_done(job.identifier).is_file() and folder.bigwig(job.identifier).is_file())]
    # the largest groups first, so the workers finish together
    size = dict(zip(groups["identifier"], groups["counted"], strict=True))
    todo.sort(key=lambda job: -size[job.identifier])
    bar = Progress(len(jobs), "pseudobulk: write BigWigs", "BigWigs", enabled=progress)
    bar.update(len(jobs) - len(todo))
    workers = min(_workers(plan.settings.workers), len(todo))
    if workers <= 1:
        for job in todo:
            _write_one(job, str(folder.bigwig(job.identifier)))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_write_one, job, str(folder.bigwig(job.identifier))) for job in todo]
            for future in futures:
                future.result()
                bar.update()
    bar.close()


# --- finish -----------------------------------------------------------------------------------

QC_COLUMNS = ["identifier", "level", "label", "status", "cells", "cells_with_fragments", "median_fragments_per_cell",
              "fragments", "insertions", "blacklisted", "fraction_blacklist", "counted", "scale_factor"]


def _write_targets(plan: PseudobulkPlan, groups: pd.DataFrame) -> Path:
    """OUT/targets.tsv: one row per written group (identifier, file, the study's transform, level,
    the group and its ancestors at every level, cells, fragments, insertions)."""
    kept = groups[groups["kept"].astype(bool)]
    levels = plan.cells.levels
    meta = pd.DataFrame({"identifier": kept["identifier"], "level": kept["level"]})
    for level in levels:
        meta[level] = kept[level].fillna("").astype(str)
    for column in ("cells", "fragments", "insertions"):
        meta[column] = kept[column].astype(int)
    meta["description"] = [f"pseudobulk {r.level} {r.label}" for r in kept.itertuples()]
    files = [plan.out.bigwig(i) for i in kept["identifier"]]
    t = plan.targets
    table = build_targets_table(files, meta.reset_index(drop=True), clip=t.clip, scale=t.scale, sum_stat=t.sum_stat,
                                clip_soft=t.clip_soft)
    return save_targets_table(table, plan.out.targets)


def _finish(plan: PseudobulkPlan, key: dict, digest: str, groups: pd.DataFrame, file_counts: list[dict]) -> Path:
    from ..plots.figures import FigureIndex, pseudobulk_qc

    folder = plan.out
    targets = _write_targets(plan, groups)
    qc = groups[QC_COLUMNS + [c for c in plan.cells.levels if c not in QC_COLUMNS]]
    with atomic_path(folder.qc) as tmp:
        qc.to_csv(tmp, sep="\t", index=False)
    index = FigureIndex(folder.figures)
    index.add("pseudobulk_qc", "Per group: cells, fragments per cell and the fraction of insertions in the blacklist",
              pseudobulk_qc(qc, folder.figures / "pseudobulk_qc"))
    index.write()
    kept = groups[groups["kept"]]
    record = {
        "tool": "enformer-transfer pseudobulk", "version": __version__, "key_digest": digest, "key": key,
        "bigwigs": [folder.bigwig(i).name for i in kept["identifier"]],
        "groups": groups.drop(columns=["kept"]).assign(kept=groups["kept"].astype(bool)).to_dict(orient="records"),
        "files": [{"path": str(path), "sample": sample, **counts}
                  for (sample, path), counts in zip(plan.fragments, file_counts, strict=True)],
        "genome_size": plan.genome_size,
    }
    write_json_atomic(folder.record, record)
    shutil.rmtree(folder.work, ignore_errors=True)
    return targets
