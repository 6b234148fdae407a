"""Every region the tool reads, in one place: a BED file or a DAR table (``call-dars``' dars.csv,
Bakken et al.'s: a 'region' column of chrom:start-end or chrom/start/end columns, plus a label)
read into one table (``read_regions``: name, chrom, start, end, label; ``read_dar_table``: a table
whose label is required), 'chrom:start-end' strings and BED files given on the command line
(``parse_regions``; one string: ``intervals.parse_region``), and the regions and whole
chromosomes to predict (``read_bed_and_chroms``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from ..errors import InputError, did_you_mean
from .chroms import resolve_chroms
from .intervals import SKIPPED_LINES, IntervalSet, bed_rows, parse_region, region_columns


def read_regions(path: Path | str, label_column: str | None = None) -> pd.DataFrame:
    """Columns name, chrom, start, end (0-based, half-open) and label (the ``label_column`` of a
    table; empty for a BED, which has no such column). A table has a 'region' (chrom:start-end) or chrom/start/end columns
    and may have a 'name' column; a BED has chrom start end [name] and no header."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: regions file not found")
    regions = _read_table(path, label_column) if has_header(path) else _read_bed(path)
    if regions.empty:
        raise InputError(f"{path}: no regions")
    bad = regions.index[regions["end"] <= regions["start"]]
    if len(bad):
        row = regions.loc[bad[0]]
        raise InputError(f"{path} row {bad[0] + 1}: end {row['end']} is not after start {row['start']}")
    if (regions["start"] < 0).any():
        raise InputError(f"{path} row {int(regions.index[regions['start'] < 0][0]) + 1}: negative start")
    return regions.reset_index(drop=True)


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def has_header(path: Path) -> bool:
    """A table (first line a header) rather than a BED (second field of the first line a number).
    A BED with a header line naming its columns (chrom, start, end) is read as such a table."""
    with _open(path) as handle:
        for line in handle:
            if line.strip() and not line.startswith(SKIPPED_LINES):
                fields = line.rstrip("\n").split("\t") if "\t" in line else line.replace(",", " ").split()
                return len(fields) < 2 or not fields[1].strip().lstrip("-").isdigit()
    return False


def _read_bed(path: Path) -> pd.DataFrame:
    rows = []
    with _open(path) as handle:
        for lineno, line, fields in bed_rows(handle):
            fields = fields if "\t" in line else line.split()
            try:
                chrom, start, end = fields[0], int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise InputError(f"{path} line {lineno}: expected 'chrom start end [name]' (tab-separated BED); "
                                 "a table needs a .csv or .tsv name and a header") from None
            name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else f"{chrom}:{start}-{end}"
            rows.append((name, chrom, start, end, ""))
    return pd.DataFrame(rows, columns=["name", "chrom", "start", "end", "label"])


def _read_table(path: Path, label_column: str | None) -> pd.DataFrame:
    skipped = 0  # comments and track / browser lines above the header
    with _open(path) as handle:
        for first in handle:
            if first.strip() and not first.startswith(SKIPPED_LINES):
                break
            skipped += 1
    table = pd.read_csv(path, sep="\t" if "\t" in first else ",", skiprows=skipped)
    regions = region_columns(table, path)
    if "name" in table.columns:
        names = table["name"].astype(str)
    else:
        names = regions["chrom"] + ":" + regions["start"].astype(str) + "-" + regions["end"].astype(str)
    regions.insert(0, "name", names.to_numpy())
    if label_column:
        if label_column not in table.columns:
            raise InputError(f"{path}: no column {label_column!r} with each region's cell type "
                             f"(has {', '.join(map(str, table.columns))})")
        regions["label"] = table[label_column].astype(str).replace({"nan": ""}).to_numpy()
    else:
        regions["label"] = ""
    return regions


def find_region(regions: pd.DataFrame, text: str) -> int:
    """Row of a region given by name, chrom:start-end or row number (0-based); -1 if none."""
    hits = regions.index[regions["name"].astype(str) == text]
    if len(hits):
        return int(hits[0])
    try:
        chrom, start, end = parse_region(text)
        hits = regions.index[(regions["chrom"] == chrom) & (regions["start"] == start) & (regions["end"] == end)]
        return int(hits[0]) if len(hits) else -1
    except ValueError:
        pass
    if text.isdigit() and int(text) < len(regions):
        return int(text)
    return -1


def read_dar_table(path: Path | str, label_column: str) -> pd.DataFrame:
    """Regions as 'chr:start-end' in a 'region' column, or chrom/start/end columns, plus a label."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: DAR table not found")
    table = pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".txt", ".bed") else ",")
    if label_column not in table.columns:
        raise InputError(f"{path}: no column {label_column!r} with each region's cell type"
                         f"{did_you_mean(label_column, table.columns)} (has {', '.join(table.columns)})")
    regions = region_columns(table, path)
    regions["label"] = table[label_column].astype(str).to_numpy()
    return regions


def parse_regions(regions: list[str] | None) -> list[tuple[str, int, int]]:
    """'chr1:1000-2000' strings and/or BED files -> (chrom, start, end)."""
    out = []
    for item in regions or []:
        if Path(item).is_file():
            for lineno, line, fields in bed_rows(Path(item).read_text().splitlines()):
                try:
                    out.append((fields[0], int(fields[1]), int(fields[2])))
                except (IndexError, ValueError):
                    raise InputError(f"--plot-regions {item} row {lineno}: expected 'chrom<TAB>start<TAB>end', got "
                                     f"{line.strip()[:60]!r}") from None
            continue
        try:
            out.append(parse_region(item))
        except ValueError:
            raise InputError(f"--plot-regions {item!r}: expected chrom:start-end or a BED file") from None
    return out


def read_bed_and_chroms(bed: Path | str | None, chroms: list[str] | None, genome) -> pd.DataFrame:
    """chrom, start, end of a BED's regions and whole chromosomes, named as the genome names them
    (its alias rule); a chromosome the genome lacks is refused with the genome's names and the fix."""
    mode = genome.names.mode
    rows = []
    if bed is not None:
        regions = IntervalSet.from_bed(bed)
        names = resolve_chroms(regions.regions, genome.sizes, mode, str(bed))
        for chrom, array in regions.regions.items():
            rows += [(names[chrom], int(a), int(b)) for a, b in array]
    names = resolve_chroms(chroms or [], genome.sizes, mode, "predict --chroms")
    for chrom in chroms or []:
        rows.append((names[chrom], 0, genome.sizes[names[chrom]]))
    if not rows:
        raise InputError("predict: give --regions BED, --chroms NAME or --fasta FASTA")
    return pd.DataFrame(rows, columns=["chrom", "start", "end"])
