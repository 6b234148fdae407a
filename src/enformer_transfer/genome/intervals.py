"""BED interval sets (blacklists, unmappable regions) with fast per-window overlap lookup."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .chroms import ChromNames

SKIPPED_LINES = ("#", "track", "browser")  # BED comments and UCSC browser lines
_COLUMN_NAME = re.compile(r"^#?[A-Za-z_][A-Za-z0-9_.]*$")


HEADER_FIX = " (a header line: one is allowed only before the first row; remove this one)"


def is_header(fields: list[str]) -> bool:
    """A line of column names (``chrom start end``, ``chr chromStart chromEnd``): its second and
    third fields are names, not positions."""
    return len(fields) >= 3 and all(_COLUMN_NAME.match(f.strip()) for f in fields[1:3])


def bed_rows(lines: Iterable[str]) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, line, fields) of each data line of a BED-like file: empty lines, comments,
    ``track`` / ``browser`` lines and a header line of column names before the first row are
    skipped. Fields split on tabs, or on any white space when the line has fewer than 3 tabs' worth."""
    first = True
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.startswith(SKIPPED_LINES):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) < 3:
            fields = line.split()
        if first and is_header(fields):
            first = False
            continue
        first = False
        yield lineno, line, fields


def parse_region(text: str) -> tuple[str, int, int]:
    """'chr1:1,000-2,000' -> ('chr1', 1000, 2000); ValueError otherwise."""
    chrom, sep, span = str(text).strip().rpartition(":")
    start, dash, end = span.partition("-")
    if not (sep and dash and chrom):
        raise ValueError(f"{text!r} is not chrom:start-end")
    return chrom, int(start.replace(",", "")), int(end.replace(",", ""))


def region_columns(table, source) -> pd.DataFrame:
    """chrom, start, end of a regions table (a DataFrame read from ``source``, with a header):
    from chrom/start/end columns or a 'region' column of chrom:start-end; rows as in the file
    (header = row 1)."""
    if {"chrom", "start", "end"} <= set(table.columns):
        regions = table[["chrom", "start", "end"]].copy()
        for column in ("start", "end"):
            values = pd.to_numeric(regions[column], errors="coerce")
            if values.isna().any():
                row = int(np.flatnonzero(values.isna().to_numpy())[0])
                raise InputError(f"{source} row {row + 2}: {column} {regions[column].iloc[row]!r} is not a whole number")
            regions[column] = values.astype("int64")
        regions["chrom"] = regions["chrom"].astype(str)
        return regions.reset_index(drop=True)
    if "region" in table.columns:
        parsed = []
        for row, text in enumerate(table["region"], 2):
            try:
                parsed.append(parse_region(text))
            except ValueError:
                raise InputError(f"{source} row {row}: region {text!r} is not chrom:start-end") from None
        return pd.DataFrame(parsed, columns=["chrom", "start", "end"])
    raise InputError(f"{source}: needs a 'region' column (chrom:start-end) or chrom, start, end columns "
                     f"(has {', '.join(map(str, table.columns))})")


class IntervalSet:
    """Regions of a BED file, queried by window; chromosome names resolved like every input."""

    def __init__(self, regions: dict[str, np.ndarray], source: str = "", chrom_aliases: str = "none"):
        # regions[chrom] = int64 array (n, 2) sorted by start
        self.regions = regions
        self.source = source
        self.names = ChromNames(regions, chrom_aliases)
        self._max_len = {c: int((r[:, 1] - r[:, 0]).max()) if len(r) else 0 for c, r in regions.items()}

    @classmethod
    def from_bed(cls, path: Path | str, chrom_aliases: str = "none") -> IntervalSet:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: BED file not found")
        per_chrom: dict[str, list[tuple[int, int]]] = {}
        with open(path) as handle:
            for lineno, line, fields in bed_rows(handle):
                try:
                    start, end = int(fields[1]), int(fields[2])
                except (IndexError, ValueError):
                    raise InputError(
                        f"{path} row {lineno}: expected 'chrom<TAB>start<TAB>end', got {line.strip()[:60]!r}"
                        f"{HEADER_FIX if is_header(fields) else ''}"
                    ) from None
                if start < 0 or end < start:
                    raise InputError(f"{path} row {lineno}: invalid interval {start}-{end}")
                per_chrom.setdefault(fields[0], []).append((start, end))
        regions = {
            c: np.array(sorted(v), dtype=np.int64).reshape(-1, 2) for c, v in per_chrom.items()
        }
        return cls(regions, str(path), chrom_aliases)

    def overlapping(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Regions (n, 2) that overlap [start, end), in start order."""
        name = self.names.resolve(chrom)
        if name is None:
            return np.zeros((0, 2), dtype=np.int64)
        regs = self.regions[name]
        lo = np.searchsorted(regs[:, 0], start - self._max_len[name], side="left")
        hi = np.searchsorted(regs[:, 0], end, side="left")
        cand = regs[lo:hi]
        return cand[cand[:, 1] > start]

    def coverage_mask(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Boolean per base of [start, end): inside any region."""
        mask = np.zeros(end - start, dtype=bool)
        for a, b in self.overlapping(chrom, start, end):
            mask[max(a, start) - start : min(b, end) - start] = True
        return mask
