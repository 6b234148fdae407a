"""Single-cell fragments -> pseudobulk coverage per cell-type group   <- where a fragment becomes coverage

The counting library under the ``pseudobulk`` command (``stages/pseudobulk.py``): the cells table
and its groups, a streaming reader of fragment files, the count of one file (``count_fragment_file``,
phase 1) and the coverage of one group written as a BigWig (``write_group_bigwig``, phase 2).

Counting follows the field (ArchR, SnapATAC2, Signac):

- a fragment line is ``chrom start end barcode [reads ...]``, 0-based half-open, sorted by
  chromosome then start; 10x files are already Tn5-shifted, so its insertion sites are ``start``
  and ``end - 1``. ``shift = (a, b)`` moves every fragment to ``[start + a, end + b)`` first
  (``4, -5`` for files made from unshifted alignments); positions are then clipped to the
  chromosome (insertions to ``[0, size - 1]``, spans to ``[0, size]``);
- ``count = "insertions"`` counts both insertion sites, ``"fragments"`` the whole span;
- the length filter applies to the fragment as written (``end - start``);
- duplicates: 10x files hold one line per unique fragment with its read count in column 5
  (PCR duplicates already collapsed): ``"collapse"`` counts each line once (ArchR, SnapATAC2),
  ``"reads"`` weights it by that count;
- blacklist: insertion sites inside a region are dropped (and counted); with ``"fragments"`` a
  fragment with an insertion site inside is dropped and the coverage inside regions is zero;
- values: per base (``bin_size`` 1) or the mean per-base value of each bin, so a BigWig means the
  same per base at every bin size; every base of every chromosome is written (zero where nothing
  was counted: measured zero, not missing data).

Memory does not grow with the file: a file is read in chunks, each chunk's counts are appended,
per chromosome and per *leaf* (cells sharing their group at every level), to small binary files;
a group's BigWig is then made chromosome by chromosome from the leaves it holds.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, did_you_mean
from ..fs import disk_errors, safe_filename, temporary_name, write_json_atomic
from ..genome.chroms import ChromNames, mismatch_message
from ..rundir.layout import KEY_MARKER, StageFolder, lock_of, partial_of

log = logging.getLogger("enformer_transfer")

CHUNK_ROWS = 1_000_000  # fragment lines parsed at a time (~60 MB of text)
PER_MILLION = 1e6


# --- the output folder ------------------------------------------------------------------------

class PseudobulkFolder:
    """The names of a pseudobulk output folder: what ``fetch`` writes (bigwigs/, targets.tsv) plus
    qc.tsv, figures/ and the record pseudobulk.json; the work in progress lives in
    pseudobulk.partial/ until the record is written."""

    RECORD = "pseudobulk.json"

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.bigwigs = self.path / "bigwigs"
        self.targets = self.path / "targets.tsv"
        self.qc = self.path / "qc.tsv"
        self.figures = StageFolder(self.path).figures  # figures/ with index.json, as in every stage folder
        self.record = self.path / self.RECORD
        self.work = partial_of(self.path / "pseudobulk")
        self.work_key = self.work / KEY_MARKER
        self.lock = lock_of(self.path / "pseudobulk")

    def bigwig(self, identifier: str) -> Path:
        return self.bigwigs / f"{safe_filename(identifier)}.bw"

    # phase 1: per fragment file (its index) and chromosome (its index in the sizes)
    def events(self, file: int, chrom: int, leaf: int) -> Path:
        return self.work / "events" / str(file) / str(chrom) / f"{leaf}.bin"

    def chrom_events(self, file: int, chrom: int) -> Path:
        return self.work / "events" / str(file) / str(chrom)

    def chrom_done(self, file: int, chrom: int) -> Path:
        return self.work / "counted" / str(file) / f"{chrom}.json"

    def chrom_cells(self, file: int, chrom: int) -> Path:
        return self.work / "counted" / str(file) / f"{chrom}.cells.npy"

    def file_done(self, file: int) -> Path:
        return self.work / "counted" / f"{file}.json"

    # phase 2: per group
    def group_done(self, identifier: str) -> Path:
        return self.work / "written" / f"{safe_filename(identifier)}.json"


# --- the cells table --------------------------------------------------------------------------

@dataclass
class Cells:
    """A cells table: one row per cell (sample, barcode), its group at every level, and the
    *leaves*: the distinct combinations of kept groups (cells of a leaf are interchangeable)."""

    source: str
    levels: list[str]
    samples: list[str] | None  # None: no sample column (one barcode space for every file)
    table: pd.DataFrame  # sample, barcode, one column per level; index = cell id
    groups: pd.DataFrame  # level, label, identifier, cells, kept, one column per level (ancestors)
    leaf_of_cell: np.ndarray  # int32 per cell, -1 when in no kept group
    group_leaves: list[np.ndarray]  # per group (groups row), the leaves it holds

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_of_cell.max()) + 1 if len(self.leaf_of_cell) else 0

    def barcodes_of(self, sample: str | None) -> tuple[list[str], np.ndarray]:
        """The barcodes of one sample's cells and their cell ids (every cell without samples)."""
        if sample is None or self.samples is None:
            part = self.table
        else:
            part = self.table[self.table["sample"] == sample]
        return part["barcode"].tolist(), part.index.to_numpy(dtype=np.int64)


def read_table(path: Path | str, what: str) -> pd.DataFrame:
    """A small text table: tab-separated unless its first line has commas and no tabs."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        first = handle.readline()
    sep = "," if "," in first and "\t" not in first else "\t"
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as err:
        raise InputError(f"{path}: cannot read the {what} ({type(err).__name__}: {err})") from None


def read_cells_table(path: Path | str, levels: list[str] | None = None, barcode_column: str = "barcode",
                     sample_column: str = "sample", min_cells: int = 1) -> Cells:
    """Read and check a cells table: a barcode column, an optional sample column, one column per
    level (empty = no group at that level). A cell listed twice with different groups is an error
    naming both rows; groups below ``min_cells`` are kept in ``groups`` with ``kept`` False."""
    path = Path(path)
    raw = read_table(path, "cells table")
    columns = [c.strip() for c in raw.columns]
    raw.columns = columns
    if barcode_column not in columns:
        raise InputError(f"{path}: no barcode column {barcode_column!r}{did_you_mean(barcode_column, columns)} "
                         f"(columns: {', '.join(columns)}); name it with --barcode-column")
    has_sample = sample_column in columns
    levels = list(levels or [c for c in columns if c not in (barcode_column, sample_column)])
    if not levels:
        raise InputError(f"{path}: no level columns besides {barcode_column!r}; add one column per level "
                         "(class, subclass, ...) or name them with --levels")
    for level in levels:
        if level not in columns:
            raise InputError(f"{path}: no level column {level!r}{did_you_mean(level, columns)} "
                             f"(columns: {', '.join(columns)})")
    if len(set(levels)) != len(levels):
        raise InputError(f"--levels {','.join(levels)}: a level is named twice")
    table = pd.DataFrame({"sample": raw[sample_column].str.strip() if has_sample else "",
                          "barcode": raw[barcode_column].str.strip()})
    for level in levels:
        table[level] = raw[level].str.strip()
    table["row"] = np.arange(len(table)) + 2  # as in the file: the header is row 1
    if table.empty:
        raise InputError(f"{path}: the cells table has no rows")
    empty = table["barcode"] == ""
    if empty.any():
        raise InputError(f"{path} row {int(table['row'][empty].iloc[0])}: empty barcode; give every cell its barcode")
    table = _drop_repeated_cells(table, levels, path)
    groups, group_of_cell = _groups(table, levels, min_cells, path)
    leaf_of_cell, group_leaves = _leaves(group_of_cell, groups["kept"].to_numpy())
    samples = sorted(set(table["sample"])) if has_sample else None
    return Cells(str(path), levels, samples, table.drop(columns=["row"]).reset_index(drop=True), groups,
                 leaf_of_cell, group_leaves)


def _drop_repeated_cells(table: pd.DataFrame, levels: list[str], path: Path) -> pd.DataFrame:
    key = ["sample", "barcode"]
    repeated = table[table.duplicated(key, keep=False)]
    if repeated.empty:
        return table.reset_index(drop=True)
    for _, rows in repeated.groupby(key, sort=False):
        first = rows.iloc[0]
        for _, other in rows.iloc[1:].iterrows():
            for level in levels:
                if other[level] != first[level]:
                    where = f" of sample {first['sample']!r}" if first["sample"] else ""
                    raise InputError(
                        f"{path} rows {first['row']} and {other['row']}: barcode {first['barcode']!r}{where} is in "
                        f"{level} {first[level]!r} and {other[level]!r}; a cell belongs to one group per level "
                        "(fix or remove one row)")
    n = int(table.duplicated(key).sum())
    log.warning("%s: %d row(s) repeat a cell with the same groups; each cell is counted once", path, n)
    return table.drop_duplicates(key).reset_index(drop=True)


def _groups(table: pd.DataFrame, levels: list[str], min_cells: int, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (level, label) with its cells and its ancestors at coarser levels; and the
    group index of every cell at every level (-1: none)."""
    rows, group_of_cell = [], np.full((len(table), len(levels)), -1, dtype=np.int64)
    for li, level in enumerate(levels):
        labels = table[level]
        for label in sorted(set(labels) - {""}):
            members = (labels == label).to_numpy()
            group_of_cell[members, li] = len(rows)
            row = {"level": level, "label": label, "cells": int(members.sum())}
            for coarser in levels[:li]:
                values = table.loc[members, coarser]
                values = values[values != ""]
                common = values.value_counts()
                row[coarser] = str(common.index[0]) if len(common) else ""
                if len(common) > 1:
                    log.warning("%s: %s %r has cells in %d %s groups (%s); its %s is given as %r, the most common",
                                path, level, label, len(common), coarser, ", ".join(map(str, common.index[:4])),
                                coarser, row[coarser])
            row[level] = label
            rows.append(row)
    if not rows:
        raise InputError(f"{path}: no cell has a group at any level ({', '.join(levels)}); fill the level columns")
    groups = pd.DataFrame(rows)
    for level in levels:
        groups[level] = groups[level].fillna("")
    clashes = groups["label"].duplicated(keep=False)
    groups["identifier"] = [safe_filename(name) for name in
                            np.where(clashes, groups["level"] + "_" + groups["label"], groups["label"])]
    files = groups["identifier"]
    if files.duplicated().any():
        dup = groups["identifier"][files.duplicated(keep=False)].tolist()
        raise InputError(f"{path}: two groups would share the BigWig name {dup[0]}.bw; make their labels "
                         "differ in letters, digits, '-', '_' or '.'")
    groups["kept"] = groups["cells"] >= min_cells
    return groups, group_of_cell


def _leaves(group_of_cell: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Leaf per cell (the distinct combinations of kept groups; -1: in no kept group) and the
    leaves of every group."""
    kept_groups = np.where(group_of_cell >= 0, np.where(kept[np.maximum(group_of_cell, 0)], group_of_cell, -1), -1)
    in_any = (kept_groups >= 0).any(axis=1)
    leaf_of_cell = np.full(len(group_of_cell), -1, dtype=np.int32)
    group_leaves: list[list[int]] = [[] for _ in kept]
    if in_any.any():
        combos, inverse = np.unique(kept_groups[in_any], axis=0, return_inverse=True)
        leaf_of_cell[in_any] = inverse.reshape(-1)
        for leaf, combo in enumerate(combos):
            for g in combo[combo >= 0]:
                group_leaves[int(g)].append(leaf)
    return leaf_of_cell, [np.array(v, dtype=np.int64) for v in group_leaves]


# --- chromosome sizes and the blacklist ---------------------------------------------------------

def read_chrom_sizes(path: Path | str) -> dict[str, int]:
    """A UCSC chrom.sizes file (name, length; tab-separated) or a FASTA index (.fai)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: chromosome sizes not found")
    sizes: dict[str, int] = {}
    with open(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            try:
                name, size = fields[0], int(fields[1])
            except (IndexError, ValueError):
                raise InputError(f"{path} row {lineno}: expected 'chrom<TAB>length', got {line.strip()[:60]!r}") from None
            if size <= 0:
                raise InputError(f"{path} row {lineno}: chromosome {name!r} has length {size}")
            if name in sizes:
                raise InputError(f"{path} row {lineno}: chromosome {name!r} is listed twice")
            sizes[name] = size
    if not sizes:
        raise InputError(f"{path}: no chromosomes")
    return sizes


def genome_sizes(path: Path | str) -> dict[str, int]:
    from ..genome.sequence import Genome

    return dict(Genome(path).sizes)


def read_blacklist(path: Path | str, sizes: dict[str, int], chrom_aliases: str = "none") -> dict[str, np.ndarray]:
    """Blacklist regions per chromosome of ``sizes`` (names resolved like the fragments'), merged
    and clipped: chrom -> int64 (n, 2) of sorted, disjoint [start, end)."""
    from ..genome.intervals import IntervalSet

    regions = IntervalSet.from_bed(path).regions
    names = ChromNames(sizes, chrom_aliases)
    out: dict[str, np.ndarray] = {}
    for chrom, spans in regions.items():
        name = names.resolve(chrom)
        if name is None:
            continue
        spans = np.clip(spans, 0, sizes[name])
        spans = spans[spans[:, 1] > spans[:, 0]]
        spans = spans[np.argsort(spans[:, 0], kind="stable")]
        merged: list[list[int]] = []
        for a, b in spans.tolist():
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out[name] = np.array(merged, dtype=np.int64).reshape(-1, 2)
    return out


def in_regions(positions: np.ndarray, regions: np.ndarray | None) -> np.ndarray:
    """Whether each position lies in one of the sorted disjoint ``regions`` (n, 2)."""
    if regions is None or not len(regions):
        return np.zeros(len(positions), dtype=bool)
    i = np.searchsorted(regions[:, 0], positions, side="right") - 1
    return (i >= 0) & (positions < regions[np.maximum(i, 0), 1])


# --- fragment files -----------------------------------------------------------------------------

class _CountingReader:
    """A binary file that counts the bytes read from it (the progress of a compressed read)."""

    def __init__(self, handle, report: Callable[[int], None] | None):
        self.handle, self.report = handle, report

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        if self.report is not None and data:
            self.report(len(data))
        return data

    def readinto(self, buffer) -> int:
        n = self.handle.readinto(buffer)
        if self.report is not None and n:
            self.report(n)
        return n

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.handle.close()

    def __getattr__(self, name):
        return getattr(self.handle, name)


def fragment_file_layout(path: Path) -> tuple[bool, int, int]:
    """(gzip-compressed, leading comment lines, columns of the first fragment line)."""
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    comments = 0
    try:
        with opener(path, "rt") as handle:
            for line in handle:
                if line.startswith("#"):
                    comments += 1
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 4 or not fields[1].isdigit() or not fields[2].isdigit():
                    raise InputError(f"{path} line {comments + 1}: expected tab-separated chrom, start, end, barcode"
                                     f"[, read count], got {line.strip()[:80]!r}; is it a fragment file?")
                return compressed, comments, len(fields)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read as a (gzipped) fragment file ({err})") from None
    raise InputError(f"{path}: no fragments (only {comments} comment line(s))")


def iter_fragment_chunks(path: Path, with_reads: bool, rows: int = CHUNK_ROWS,
                         report: Callable[[int], None] | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
    """(line number of the chunk's first row, chunk) of a fragment file: chrom and barcode as
    categoricals, start and end as int64, reads (when ``with_reads`` and the file has the column)."""
    compressed, comments, n_columns = fragment_file_layout(path)
    names = ["chrom", "start", "end", "barcode"] + (["reads"] if with_reads and n_columns >= 5 else [])
    dtype = {"chrom": "category", "start": np.int64, "end": np.int64, "barcode": "category", "reads": np.int64}
    raw = open(path, "rb")
    stream = gzip.GzipFile(fileobj=_CountingReader(raw, report)) if compressed else _CountingReader(raw, report)
    line = comments + 1
    try:
        reader = pd.read_csv(stream, sep="\t", header=None, names=names, usecols=list(range(len(names))),
                             skiprows=comments, dtype={k: dtype[k] for k in names}, chunksize=rows, engine="c",
                             na_filter=False, quoting=3)
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                return
            except (ValueError, pd.errors.ParserError, OSError, EOFError) as err:
                raise InputError(f"{path}: cannot read fragments after line {line} ({str(err).splitlines()[0]}); "
                                 "expected tab-separated chrom, start, end, barcode[, read count]") from None
            yield line, chunk
            line += len(chunk)
    finally:
        stream.close()
        raw.close()


# --- phase 1: counting one fragment file ----------------------------------------------------------

@dataclass
class CountJob:
    """Everything a worker needs to count one fragment file (picklable)."""

    index: int
    path: str
    sample: str | None
    barcodes: list[str]
    cell_ids: np.ndarray  # global cell id of each barcode
    leaf_of_cell: np.ndarray
    n_leaves: int
    chroms: list[str]  # the sizes' names, in order
    sizes: list[int]
    chrom_aliases: str
    blacklist: dict[str, np.ndarray]
    count: str
    shift: tuple[int, int]
    min_length: int
    max_length: int | None
    duplicates: str
    work: str  # the output folder
    rows: int = CHUNK_ROWS
    position_dtype: str = "int32"


LEAF_STATS = ("fragments", "insertions", "blacklisted", "counted", "span_bp")


@dataclass
class FileCounts:
    """What one fragment file held, beyond its per-leaf counts (for warnings and the QC)."""

    lines: int = 0
    unknown_barcode: int = 0
    unknown_barcodes: set = field(default_factory=set)
    unknown_chrom: dict = field(default_factory=dict)  # name -> fragments
    length_filtered: int = 0
    no_group: int = 0

    def as_dict(self) -> dict:
        return {"lines": self.lines, "unknown_barcode": self.unknown_barcode,
                "unknown_barcodes": len(self.unknown_barcodes), "examples": sorted(self.unknown_barcodes)[:3],
                "unknown_chrom": self.unknown_chrom,
                "length_filtered": self.length_filtered, "no_group": self.no_group}


class _ChromCounter:
    """The counts of one chromosome of one file: per-leaf statistics, per-cell fragments, and the
    leaves' events appended to their files (positions, or start/end pairs)."""

    def __init__(self, job: CountJob, chrom_index: int, n_cells: int):
        self.job, self.chrom_index = job, chrom_index
        self.size = job.sizes[chrom_index]
        self.regions = job.blacklist.get(job.chroms[chrom_index])
        self.stats = {name: np.zeros(job.n_leaves, dtype=np.int64) for name in LEAF_STATS}
        self.cell_fragments = np.zeros(n_cells, dtype=np.int64)
        self.folder = PseudobulkFolder(job.work)
        events = self.folder.chrom_events(job.index, chrom_index)
        if events.exists():  # from an interrupted run: redone
            shutil.rmtree(events)
        events.mkdir(parents=True)

    def add(self, start: np.ndarray, end: np.ndarray, cell: np.ndarray, leaf: np.ndarray,
            reads: np.ndarray | None) -> None:
        job, size = self.job, self.size
        self.cell_fragments += np.bincount(cell, minlength=len(self.cell_fragments))
        weight = np.ones(len(start), dtype=np.int64) if reads is None else np.maximum(reads, 1)
        self.stats["fragments"] += np.bincount(leaf, minlength=job.n_leaves)
        first, last = start + job.shift[0], end + job.shift[1]
        if job.count == "insertions":
            positions = np.concatenate([np.clip(first, 0, size - 1), np.clip(last - 1, 0, size - 1)])
            leaves, weights = np.concatenate([leaf, leaf]), np.concatenate([weight, weight])
            self.stats["insertions"] += np.bincount(leaves, weights, job.n_leaves).astype(np.int64)
            if self.regions is not None:
                bad = in_regions(positions, self.regions)
                self.stats["blacklisted"] += np.bincount(leaves[bad], weights[bad], job.n_leaves).astype(np.int64)
                positions, leaves, weights = positions[~bad], leaves[~bad], weights[~bad]
            counted = np.bincount(leaves, weights, job.n_leaves).astype(np.int64)
            self.stats["counted"] += counted
            self.stats["span_bp"] += counted
            if reads is not None:
                positions, leaves = np.repeat(positions, weights), np.repeat(leaves, weights)
            self._append(leaves, positions)
        else:
            first, last = np.clip(first, 0, size), np.clip(last, 0, size)
            self.stats["insertions"] += np.bincount(leaf, 2 * weight, job.n_leaves).astype(np.int64)
            keep = last > first
            if self.regions is not None:
                bad_first = in_regions(first, self.regions)
                bad_last = in_regions(np.maximum(last - 1, 0), self.regions)
                bad = (bad_first.astype(np.int64) + bad_last) * weight
                self.stats["blacklisted"] += np.bincount(leaf, bad, job.n_leaves).astype(np.int64)
                keep &= ~(bad_first | bad_last)
            first, last, leaf, weight = first[keep], last[keep], leaf[keep], weight[keep]
            self.stats["counted"] += np.bincount(leaf, weight, job.n_leaves).astype(np.int64)
            self.stats["span_bp"] += np.bincount(leaf, weight * (last - first), job.n_leaves).astype(np.int64)
            spans = np.stack([first, last], axis=1)
            if reads is not None:
                spans, leaf = np.repeat(spans, weight, axis=0), np.repeat(leaf, weight)
            self._append(leaf, spans)

    def _append(self, leaves: np.ndarray, events: np.ndarray) -> None:
        if not len(leaves):
            return
        order = np.argsort(leaves, kind="stable")
        leaves, events = leaves[order], events[order].astype(self.job.position_dtype)
        bounds = np.searchsorted(leaves, np.arange(self.job.n_leaves + 1))
        for leaf in np.flatnonzero(np.diff(bounds)):
            path = self.folder.events(self.job.index, self.chrom_index, int(leaf))
            with open(path, "ab") as handle:
                handle.write(events[bounds[leaf]:bounds[leaf + 1]].tobytes())

    def finish(self) -> None:
        """Record the chromosome as counted: its per-cell counts, then (last) its marker."""
        cells = self.folder.chrom_cells(self.job.index, self.chrom_index)
        cells.parent.mkdir(parents=True, exist_ok=True)
        partial = temporary_name(cells)
        np.save(partial, self.cell_fragments)
        os.replace(partial, cells)
        write_json_atomic(self.folder.chrom_done(self.job.index, self.chrom_index),
                          {name: values.tolist() for name, values in self.stats.items()})


def count_fragment_file(job: CountJob, n_cells: int, report: Callable[[int], None] | None = None) -> dict:
    """Phase 1: stream one fragment file and append its counts, per chromosome and leaf, under the
    work folder. Chromosomes counted by an interrupted run are not redone (the file is read again,
    their lines skipped). Returns the file's ``FileCounts`` as a dict, also written as its marker."""
    folder = PseudobulkFolder(job.work)
    path = Path(job.path)
    chrom_index = {name: i for i, name in enumerate(job.chroms)}
    names = ChromNames(job.chroms, job.chrom_aliases)
    barcodes = pd.Index(job.barcodes)
    done = {i for i in range(len(job.chroms)) if folder.chrom_done(job.index, i).is_file()}
    counts = FileCounts()
    seen: dict[str, int] = {}  # chromosome names of the file, in order, with the line each started
    current: str | None = None
    counter: _ChromCounter | None = None
    last_start = -1
    with_reads = job.duplicates == "reads"
    with disk_errors(folder.work):
        for line, chunk in iter_fragment_chunks(path, with_reads, job.rows, report):
            counts.lines += len(chunk)
            chrom_codes = chunk["chrom"].cat.codes.to_numpy()
            chrom_names = chunk["chrom"].cat.categories
            barcode_names = chunk["barcode"].cat.categories
            barcode_codes = chunk["barcode"].cat.codes.to_numpy()
            local = barcodes.get_indexer(barcode_names)[barcode_codes]
            start, end = chunk["start"].to_numpy(), chunk["end"].to_numpy()
            reads = chunk["reads"].to_numpy() if "reads" in chunk.columns else None
            segment_starts = np.flatnonzero(np.r_[True, chrom_codes[1:] != chrom_codes[:-1]])
            for a, b in zip(segment_starts, np.r_[segment_starts[1:], len(chunk)], strict=True):
                chrom = str(chrom_names[chrom_codes[a]])
                if chrom != current:
                    if counter is not None:
                        counter.finish()
                        counter = None
                    if chrom in seen:
                        raise InputError(f"{path} line {line + a}: chromosome {chrom!r} appears again (it started on "
                                         f"line {seen[chrom]}, other chromosomes came between); the fragments must "
                                         "be sorted by chromosome, then start: sort -k1,1 -k2,2n, then bgzip")
                    seen[chrom] = line + a
                    current, last_start = chrom, -1
                    resolved = names.resolve(chrom)
                    if resolved is None:
                        refuse_alias_mismatch(chrom, job.chroms, job.chrom_aliases, path)
                    elif chrom_index[resolved] not in done:
                        counter = _ChromCounter(job, chrom_index[resolved], n_cells)
                s, e = start[a:b], end[a:b]
                _check_order(s, e, last_start, path, line + a, chrom)
                last_start = int(s[-1])
                resolved = names.resolve(chrom)
                if resolved is None:
                    counts.unknown_chrom[chrom] = counts.unknown_chrom.get(chrom, 0) + int(b - a)
                    continue
                cell_local = local[a:b]
                unknown = cell_local < 0
                if unknown.any():
                    counts.unknown_barcode += int(unknown.sum())
                    if len(counts.unknown_barcodes) < 1_000_000:  # distinct ones, from the few categories
                        codes = np.unique(barcode_codes[a:b][unknown])
                        counts.unknown_barcodes.update(barcode_names[codes].tolist())
                keep = ~unknown
                length = e - s
                fits = length >= job.min_length
                if job.max_length is not None:
                    fits &= length <= job.max_length
                counts.length_filtered += int((keep & ~fits).sum())
                keep &= fits
                cell = job.cell_ids[cell_local[keep]]
                leaf = job.leaf_of_cell[cell]
                grouped = leaf >= 0
                counts.no_group += int((~grouped).sum())
                if counter is None:
                    continue  # counted by an earlier run
                r = reads[a:b][keep][grouped] if reads is not None else None
                counter.add(s[keep][grouped], e[keep][grouped], cell[grouped], leaf[grouped].astype(np.int64), r)
        if counter is not None:
            counter.finish()
        # chromosomes of the sizes without any fragment in this file: counted (as empty)
        for i in range(len(job.chroms)):
            if not folder.chrom_done(job.index, i).is_file():
                _ChromCounter(job, i, n_cells).finish()
    result = counts.as_dict()
    folder.file_done(job.index).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder.file_done(job.index), result)
    return result


def refuse_alias_mismatch(chrom: str, chroms: list[str], chrom_aliases: str, path: Path | str) -> None:
    """A chromosome absent from the sizes is counted and left out (a warning at the end); but when
    its name differs from one of the sizes' only by a prefix (chr1 / 1), a one-line error with the
    hint: every fragment would be left out."""
    if ChromNames(chroms, chrom_aliases).resolve(chrom) is not None:
        return
    message = mismatch_message(str(path), [chrom], chroms, chrom_aliases)
    if "differ only by a prefix" in message:
        raise InputError(f"{path}: chromosome {chrom!r} is not in the chromosome sizes; "
                         f"{message.split('; ', 1)[1]}")


def _check_order(start: np.ndarray, end: np.ndarray, last_start: int, path: Path, line: int, chrom: str) -> None:
    steps = np.diff(np.r_[last_start, start])
    if (steps < 0).any():
        i = int(np.flatnonzero(steps < 0)[0])
        before = last_start if i == 0 else int(start[i - 1])
        raise InputError(f"{path} line {line + i}: fragments are not sorted ({chrom}:{int(start[i])} after "
                         f"{chrom}:{before}); sort by chromosome, then start (sort -k1,1 -k2,2n), then bgzip")
    bad = end <= start
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path} line {line + i}: fragment end {int(end[i])} is not after its start "
                         f"{int(start[i])}; is it a fragment file?")


# --- phase 2: coverage of one group ---------------------------------------------------------------

def coverage_steps(starts: np.ndarray, ends: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-base coverage of the spans [starts, ends) over [0, size) as a step function:
    (breaks, values), values[i] on [breaks[i], breaks[i+1]) (the last up to ``size``), breaks[0]
    is 0, neighbouring values differ."""
    positions = np.concatenate([np.asarray(starts, np.int64), np.asarray(ends, np.int64)])
    deltas = np.concatenate([np.ones(len(starts), np.int64), -np.ones(len(ends), np.int64)])
    order = np.argsort(positions, kind="stable")
    return _steps(positions[order], deltas[order], size)


def insertion_steps(positions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-base insertion counts as a step function (see ``coverage_steps``)."""
    positions = np.sort(np.asarray(positions, np.int64), kind="stable")
    if not len(positions):
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    first = np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])
    unique, counts = positions[first], np.diff(np.r_[first, len(positions)])
    both = np.concatenate([unique, unique + 1])
    deltas = np.concatenate([counts, -counts])
    order = np.argsort(both, kind="stable")  # two sorted runs: a merge
    return _steps(both[order], deltas[order], size)


def _steps(positions: np.ndarray, deltas: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted change points (+delta at position) -> (breaks, values) on [0, size)."""
    if len(positions):
        first = np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])
        positions, deltas = positions[first], np.add.reduceat(deltas, first)
    breaks = np.r_[0, positions].astype(np.int64)
    values = np.r_[0, np.cumsum(deltas)].astype(np.int64)
    last_of_equal = np.r_[breaks[1:] != breaks[:-1], True]  # a change at 0 replaces the initial 0
    breaks, values = breaks[last_of_equal], values[last_of_equal]
    inside = breaks < size
    return merge_equal(breaks[inside], values[inside])


def merge_equal(breaks: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.r_[True, values[1:] != values[:-1]]
    return breaks[keep], values[keep]


def zero_inside(breaks: np.ndarray, values: np.ndarray, regions: np.ndarray | None,
                size: int) -> tuple[np.ndarray, np.ndarray]:
    """The step function with value 0 inside ``regions`` (sorted, disjoint (n, 2))."""
    if regions is None or not len(regions):
        return breaks, values
    edges = regions.reshape(-1)
    new = np.unique(np.r_[breaks, edges[(edges > 0) & (edges < size)]])
    new_values = values[np.searchsorted(breaks, new, side="right") - 1]
    new_values = np.where(in_regions(new, regions), 0, new_values)
    return merge_equal(new, new_values)


def bin_steps(breaks: np.ndarray, values: np.ndarray, size: int, bin_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean of a per-base step function over bins of ``bin_size`` (the last bin may be
    shorter), as a step function on bin edges."""
    values = values.astype(np.float64)
    if bin_size == 1:
        return breaks, values
    ends = np.r_[breaks[1:], size]
    integral_at_break = np.r_[0.0, np.cumsum(values * (ends - breaks))]

    def integral(x: np.ndarray) -> np.ndarray:
        j = np.searchsorted(breaks, x, side="right") - 1
        return integral_at_break[j] + values[j] * (x - breaks[j])

    inner = breaks % bin_size != 0
    split_bins = np.unique(breaks[inner] // bin_size)  # bins with a change inside: a mean
    starts = np.unique(np.r_[breaks[~inner], split_bins * bin_size, (split_bins + 1) * bin_size])
    starts = starts[starts < size]
    out = values[np.searchsorted(breaks, starts, side="right") - 1]
    mixed = np.isin(starts // bin_size, split_bins)
    a = starts[mixed]
    b = np.minimum(a + bin_size, size)
    out[mixed] = (integral(b) - integral(a)) / (b - a)
    return merge_equal(starts, out)


@dataclass
class GroupJob:
    """Everything a worker needs to write one group's BigWig (picklable)."""

    identifier: str
    leaves: list[int]
    files: list[int]  # fragment file indices
    chroms: list[str]
    sizes: list[int]
    blacklist: dict[str, np.ndarray]
    count: str
    bin_size: int
    scale: float
    work: str
    position_dtype: str = "int32"


def group_chrom_steps(job: GroupJob, chrom_index: int) -> tuple[np.ndarray, np.ndarray]:
    """One group's unscaled step function on one chromosome, from its leaves' events."""
    folder = PseudobulkFolder(job.work)
    size = job.sizes[chrom_index]
    parts = []
    for file in job.files:
        for leaf in job.leaves:
            path = folder.events(file, chrom_index, leaf)
            if path.is_file():
                parts.append(np.fromfile(path, dtype=job.position_dtype))
    events = np.concatenate(parts) if parts else np.zeros(0, dtype=job.position_dtype)
    if job.count == "insertions":
        breaks, values = insertion_steps(events, size)
    else:
        spans = events.reshape(-1, 2)
        breaks, values = coverage_steps(spans[:, 0], spans[:, 1], size)
        breaks, values = zero_inside(breaks, values, job.blacklist.get(job.chroms[chrom_index]), size)
    return bin_steps(breaks, values, size, job.bin_size)


def group_intervals(job: GroupJob, stats: dict | None = None) -> Iterator[tuple[str, int, int, float]]:
    """(chrom, start, end, value) of one group, every base of every chromosome, in the sizes' order;
    ``stats`` (when given) receives the number of intervals and the total signal."""

    def chromosome(i: int):
        breaks, values = group_chrom_steps(job, i)
        ends = np.r_[breaks[1:], job.sizes[i]]
        scaled = (values * job.scale).astype(np.float32)
        if stats is not None:
            stats["intervals"] = stats.get("intervals", 0) + len(breaks)
            stats["signal"] = stats.get("signal", 0.0) + float((scaled.astype(np.float64) * (ends - breaks)).sum())
        return zip(itertools.repeat(job.chroms[i]), breaks.tolist(), ends.tolist(), scaled.tolist())

    # iterated in C (no Python frame per interval): pybigtools pulls the tuples itself
    return itertools.chain.from_iterable(map(chromosome, range(len(job.chroms))))


def write_group_bigwig(job: GroupJob, target: Path | str) -> dict:
    """Phase 2: one group's BigWig, written under a temporary name and renamed; its summary
    (intervals, total signal) is returned and written as the group's marker."""
    import pybigtools

    target = Path(target)
    partial = temporary_name(target)
    stats: dict = {}
    with disk_errors(target):
        pybigtools.open(str(partial), "w").write(dict(zip(job.chroms, job.sizes, strict=True)),
                                                 group_intervals(job, stats))
        os.replace(partial, target)
    marker = PseudobulkFolder(job.work).group_done(job.identifier)
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, {"file": target.name, **stats})
    return stats


def scale_factor(normalization: str, counted: int, span_bp: int, count: str, genome_size: int) -> float:
    """The factor of a group's values: cpm = 1e6 / counted insertions (or fragments); rpgc =
    effective genome size / the group's total per-base signal (deepTools' 1x normalisation:
    the mean over the effective genome is 1); none = 1."""
    if normalization == "none":
        return 1.0
    if normalization == "cpm":
        return PER_MILLION / counted if counted else 0.0
    total = counted if count == "insertions" else span_bp
    return genome_size / total if total else 0.0


def read_json_file(path: Path) -> dict:
    with open(path) as handle:
        return json.load(handle)
