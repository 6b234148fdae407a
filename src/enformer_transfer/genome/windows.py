"""Windows: BED rows -> target intervals, model inputs and bins; or windows generated from a genome.

The target interval of a BED row is its central ``n_bins x bin_size`` bp, so Enformer's
131,072-bp ``sequences_human.bed`` rows (target = row minus 8,192 bp each side), Basenji's
114,688-bp target rows and 196,608-bp input rows all give the same bins. Bin i of a window
covers ``[target_start + i * bin_size, target_start + (i + 1) * bin_size)``.
The BED row itself is the coverage window of Basenji semantics (its median is the baseline).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .geometry import Geometry
from .intervals import HEADER_FIX, bed_rows, is_header

log = logging.getLogger("enformer_transfer")

KNOWN_SPLITS = ("train", "valid", "test")
WINDOW_COLUMNS = ["chrom", "start", "end", "split", "row_start", "row_end", "input_start", "input_end", "bed_row"]


@dataclass
class Windows:
    """All windows in store order: grouped by split (train, valid, test, others), BED order within."""

    table: pd.DataFrame
    geometry: Geometry

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(self.table["split"]))

    def split(self, name: str) -> pd.DataFrame:
        return self.table[self.table["split"] == name].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.table)


def split_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [s for s in KNOWN_SPLITS if s in names]
    return known + sorted(n for n in names if n not in KNOWN_SPLITS)


def read_windows_bed(path: Path | str, geometry: Geometry) -> Windows:
    """Read ``chrom start end split`` (or ``chrom start end name split``) rows."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: windows BED not found")
    rows = []
    target_bp = geometry.target_interval_bp
    with open(path) as handle:
        for lineno, line, fields in bed_rows(handle):
            if len(fields) < 4:
                fields = line.split()
            if len(fields) < 4:
                raise InputError(
                    f"{path} row {lineno}: expected 'chrom start end split', got {len(fields)} columns; "
                    "add a split column (train/valid/test)"
                )
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise InputError(f"{path} row {lineno}: start/end are not integers: {line.strip()[:60]!r}"
                                 f"{HEADER_FIX if is_header(fields) else ''}") from None
            split = fields[3]
            if split not in KNOWN_SPLITS and len(fields) >= 5 and fields[4] in KNOWN_SPLITS:
                split = fields[4]  # chrom start end name split
            if not split.replace("_", "").replace("-", "").isalnum():
                raise InputError(f"{path} row {lineno}: split {split!r} is not a valid split name")
            if start < 0 or end <= start:
                raise InputError(f"{path} row {lineno}: invalid interval {start}-{end}")
            length = end - start
            if length < target_bp:
                raise InputError(
                    f"{path} row {lineno}: window of {length} bp is shorter than the target interval "
                    f"({geometry.n_bins} bins x {geometry.bin_size} bp = {target_bp} bp); "
                    "fix the row or the geometry (--n-bins, --bin-size)"
                )
            if (length - target_bp) % 2:
                raise InputError(
                    f"{path} row {lineno}: window of {length} bp exceeds the target interval "
                    f"({target_bp} bp) by an odd number of bp, so it has no central target interval"
                )
            rows.append((fields[0], start, end, split, lineno))
    if not rows:
        raise InputError(f"{path}: no windows (the BED file is empty); give at least one 'chrom start end split' row")
    unusual = sorted({r[3] for r in rows} - set(KNOWN_SPLITS))
    if unusual:
        log.warning("%s: split name(s) %s are not train/valid/test; they are kept as splits of their own",
                    path, ", ".join(unusual[:5]))
    return windows_from_rows(rows, geometry, source=str(path))


def windows_from_rows(rows, geometry: Geometry, source: str = "") -> Windows:
    df = pd.DataFrame(rows, columns=["chrom", "row_start", "row_end", "split", "bed_row"])
    crop = (df["row_end"] - df["row_start"] - geometry.target_interval_bp) // 2
    df["start"] = df["row_start"] + crop
    df["end"] = df["row_end"] - crop
    df["input_start"] = df["start"] - geometry.context
    df["input_end"] = df["end"] + geometry.context
    order = {s: i for i, s in enumerate(split_order(df["split"]))}
    df["_split_rank"] = df["split"].map(order)
    df = df.sort_values(["_split_rank", "bed_row"], kind="stable").drop(columns="_split_rank")
    df = df[WINDOW_COLUMNS].reset_index(drop=True)
    warn_cross_split_overlap(df, source)
    return Windows(df, geometry)


def warn_cross_split_overlap(df: pd.DataFrame, source: str = "") -> int:
    """Warn when target intervals of different splits overlap (test data leaking into training)."""
    n_overlaps = 0
    example = None
    for chrom, group in df.groupby("chrom", sort=False):
        g = group.sort_values("start")
        starts, ends, splits = g["start"].to_numpy(), g["end"].to_numpy(), g["split"].to_numpy()
        # compare each window with the previous ones still open (running max end per split)
        open_ends: dict[str, tuple[int, int]] = {}
        for s, e, sp, row in zip(starts, ends, splits, g["bed_row"].to_numpy(), strict=True):
            for other, (other_end, other_row) in open_ends.items():
                if other != sp and other_end > s:
                    n_overlaps += 1
                    if example is None:
                        example = (chrom, row, other_row, sp, other)
            if e > open_ends.get(sp, (-1, 0))[0]:
                open_ends[sp] = (e, row)
    if n_overlaps:
        chrom, row, other_row, sp, other = example
        log.warning(
            "%s: %d window(s) overlap windows of another split (leakage), e.g. row %d (%s) and row %d (%s) on %s",
            source or "windows", n_overlaps, row, sp, other_row, other, chrom,
        )
    return n_overlaps


def generate_windows(
    genome,
    geometry: Geometry,
    valid_chroms: list[str] | None = None,
    test_chroms: list[str] | None = None,
    crop: int | None = None,
    blacklist=None,
    max_n_fraction: float = 0.1,
    max_blacklist_fraction: float = 0.1,
    chroms: list[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Tile chromosomes with non-overlapping target intervals; whole chromosomes form the splits.

    Rows are ``target + 2 * crop`` bp (Enformer's convention: crop 8,192 for the default
    geometry); a window is kept when its whole model input lies inside the chromosome, its
    target interval has at most ``max_n_fraction`` N and at most ``max_blacklist_fraction``
    blacklisted bases. Without explicit valid/test chromosomes, about a tenth of the
    chromosomes each are held out, chosen by ``seed``.
    """
    crop = min(8192, geometry.context) if crop is None else crop
    if crop > geometry.context:
        raise InputError(f"crop {crop} exceeds the model context of {geometry.context} bp per side")
    names = chroms or list(genome.sizes)
    valid_chroms, test_chroms = list(valid_chroms or []), list(test_chroms or [])
    if not valid_chroms and not test_chroms:
        rng = np.random.default_rng(seed)
        shuffled = list(rng.permutation(names))
        k = max(1, len(names) // 10) if len(names) >= 3 else 0
        valid_chroms, test_chroms = shuffled[:k], shuffled[k : 2 * k]
    for c in valid_chroms + test_chroms:
        if c not in genome.sizes:
            raise InputError(f"{genome.path}: held-out chromosome {c!r} is not in the genome")
    T = geometry.target_interval_bp
    rows = []
    for chrom in names:
        size = genome.sizes[chrom]
        split = "valid" if chrom in valid_chroms else "test" if chrom in test_chroms else "train"
        seq = None
        for tstart in range(geometry.context, size - T - geometry.context + 1, T):
            tend = tstart + T
            if seq is None:
                seq = genome.fetch(chrom, 0, size)
            target_seq = seq[tstart:tend]
            n_frac = 1 - sum(target_seq.count(b) for b in "ACGT") / T
            if n_frac > max_n_fraction:
                continue
            if blacklist is not None:
                covered = blacklist.coverage_mask(chrom, tstart, tend).mean()
                if covered > max_blacklist_fraction:
                    continue
            rows.append((chrom, tstart - crop, tend + crop, split))
    if not rows:
        raise InputError(f"{genome.path}: no window of {geometry.seq_length} bp fits the chromosomes")
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "split"])


def write_bed(df: pd.DataFrame, path: Path | str) -> None:
    from ..fs import atomic_path

    with atomic_path(path) as tmp:
        df[["chrom", "start", "end", "split"]].to_csv(tmp, sep="\t", header=False, index=False)


def windows_command(genome_path: Path | str, out: Path | str, config, valid_chroms: list[str] | None = None,
                    test_chroms: list[str] | None = None, crop: int | None = None,
                    blacklist_bed: Path | str | None = None) -> dict[str, int]:
    """The ``windows`` command: tile a genome (geometry and seed of ``config``), write the BED,
    return the windows per split."""
    from .intervals import IntervalSet
    from .sequence import Genome

    genome = Genome(genome_path)
    blacklist = IntervalSet.from_bed(blacklist_bed) if blacklist_bed else None
    df = generate_windows(genome, config.geometry, valid_chroms, test_chroms, crop=crop, blacklist=blacklist,
                          seed=config.seed)
    write_bed(df, out)
    return {str(k): int(v) for k, v in df["split"].value_counts().items()}
