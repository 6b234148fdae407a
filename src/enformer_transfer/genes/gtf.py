"""Genes from a GTF (GENCODE or Ensembl, plain or gzipped): one row per gene with its span, TSS(s)
and merged exons, and the windows whose target intervals hold each gene's TSS.

Read with polars' CSV reader (the 9 GTF columns, tab-separated, '#' comments) and its regex
extraction for the attributes (``gene_id "..."; gene_name "..."; gene_type "..."``; Ensembl's
``gene_biotype`` is read as the gene type). Coordinates become 0-based half-open.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, did_you_mean
from ..genome.chroms import ChromNames, resolve_chroms

GENE_COLUMNS = ["gene_id", "gene_name", "gene_type", "chrom", "strand", "start", "end", "tss",
                "tss_all", "exons"]
_GTF_FORMAT = ("expected 9 tab-separated columns: seqname source feature start end score strand "
               "frame attributes, attributes as gene_id \"...\";")


def _attribute(name: str):
    import polars as pl

    return pl.col("attributes").str.extract(rf'(?:^|;)\s*{name} "([^"]*)"', 1)


def _read_features(path: Path):
    """The GTF's gene, transcript and exon rows: chrom, feature, start (0-based), end, strand and
    the gene / transcript attributes."""
    import polars as pl

    columns = ["chrom", "source", "feature", "start", "end", "score", "strand", "frame", "attributes"]
    try:
        table = pl.read_csv(path, has_header=False, separator="\t", comment_prefix="#", quote_char=None,
                            new_columns=columns, schema_overrides={"chrom": pl.String, "start": pl.String,
                                                                   "end": pl.String},
                            infer_schema=False, truncate_ragged_lines=True)
    except Exception as err:  # polars raises several types for binary or ragged text
        detail = "not 9 columns" if "columns" in str(err) else f"{type(err).__name__}: {str(err)[:60]}"
        raise InputError(f"{path}: not a GTF ({detail}); {_GTF_FORMAT}".replace("\n", " ")) from None
    if table.width < 9 or table.height == 0:
        raise InputError(f"{path}: not a GTF (no rows of 9 columns); {_GTF_FORMAT}")
    table = table.filter(pl.col("feature").is_in(["gene", "transcript", "exon"]))
    start = table["start"].cast(pl.Int64, strict=False)
    end = table["end"].cast(pl.Int64, strict=False)
    bad = (start.is_null() | end.is_null() | ~table["strand"].is_in(["+", "-"])
           | table["attributes"].is_null()).arg_true()
    if len(bad):
        row = table.row(int(bad[0]))
        raise InputError(f"{path}: not a GTF (a {row[2]} row with start {row[3]!r}, end {row[4]!r}, "
                         f"strand {row[6]!r}); {_GTF_FORMAT}")
    table = table.with_columns(start=start - 1, end=end).with_columns(
        gene_id=_attribute("gene_id"), transcript_id=_attribute("transcript_id"),
        gene_name=_attribute("gene_name"),
        gene_type=pl.coalesce(_attribute("gene_type"), _attribute("gene_biotype")))
    if table.height and table["gene_id"].null_count() == table.height:
        gff3 = table["attributes"].str.contains("ID=").any()
        raise InputError(f"{path}: not a GTF (no gene_id attribute)"
                         + ("; it looks like GFF3: convert it with 'gffread -T -o genes.gtf FILE'" if gff3
                            else f"; {_GTF_FORMAT}"))
    return table.filter(pl.col("gene_id").is_not_null())


def _merged_exons(exons) -> dict[str, list[tuple[int, int]]]:
    """gene_id -> its exons merged across transcripts (overlapping or touching), sorted."""
    import polars as pl

    merged = (
        exons.select("gene_id", "start", "end").sort("gene_id", "start", "end")
        .with_columns(reach=pl.col("end").cum_max().over("gene_id"))
        .with_columns(new=(pl.col("start") > pl.col("reach").shift(1).over("gene_id")).fill_null(True))
        .with_columns(group=pl.col("new").cum_sum())
        .group_by("gene_id", "group", maintain_order=True)
        .agg(pl.col("start").min(), pl.col("end").max())
    )
    out: dict[str, list[tuple[int, int]]] = {}
    for gene_id, start, end in merged.select("gene_id", "start", "end").iter_rows():
        out.setdefault(gene_id, []).append((start, end))
    return out


def read_genes(path: Path | str, gene_types: list[str] | None = None,
               genome_chroms: ChromNames | Iterable[str] | None = None,
               chrom_aliases: str = "auto", missing_chroms: str = "error") -> pd.DataFrame:
    """One row per gene of a GTF: ``gene_id, gene_name, gene_type, chrom, strand, start, end``
    (0-based half-open), ``tss`` (the TSS base of the ``gene`` feature: start of a + gene, end - 1 of
    a - gene), ``tss_all`` (the distinct TSSs of its transcripts, sorted) and ``exons`` ((start,
    end) pairs merged across its transcripts, sorted).

    ``gene_types`` keeps genes of those types (GENCODE's gene_type, Ensembl's gene_biotype).
    ``genome_chroms``: the genome's chromosome names (a ``ChromNames`` carries its alias rule, else
    ``chrom_aliases``); genes get the genome's names (chr1 vs 1), and genes on a chromosome the
    genome lacks are refused (``missing_chroms='error'``) or dropped (``'drop'``).
    A gene without ``gene`` row takes its span from its transcripts and exons; a GTF without exon
    rows is refused (exons are what Borzoi's gene signal sums over)."""
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: GTF not found")
    features = _read_features(path)
    exons = features.filter(pl.col("feature") == "exon")
    if exons.height == 0:
        raise InputError(f"{path}: no exon rows (a GTF without exons); use the full GENCODE/Ensembl "
                         "annotation (e.g. gencode.v47.basic.annotation.gtf.gz), not a genes-only file")
    first = pl.col("feature").first()
    spans = (
        features.with_columns(rank=pl.col("feature").replace_strict(
            {"gene": 0, "transcript": 1, "exon": 2}, return_dtype=pl.Int8))
        .sort("rank")
        .group_by("gene_id", maintain_order=True)
        .agg(pl.col("chrom").first(), pl.col("strand").first(),
             pl.col("gene_name").drop_nulls().first(), pl.col("gene_type").drop_nulls().first(),
             start=pl.when(first == "gene").then(pl.col("start").first()).otherwise(pl.col("start").min()),
             end=pl.when(first == "gene").then(pl.col("end").first()).otherwise(pl.col("end").max()))
    )
    tx_rows = features.filter(pl.col("feature") == "transcript")
    if tx_rows.height == 0:  # transcripts' spans from their exons
        tx_rows = exons.group_by("gene_id", "transcript_id").agg(
            pl.col("strand").first(), pl.col("start").min(), pl.col("end").max())
    tss_all = (tx_rows.with_columns(tss=pl.when(pl.col("strand") == "+").then(pl.col("start"))
                                    .otherwise(pl.col("end") - 1))
               .group_by("gene_id").agg(pl.col("tss").unique().sort()))
    spans = spans.join(tss_all, on="gene_id", how="left", maintain_order="left")

    genes = pd.DataFrame({
        "gene_id": spans["gene_id"].to_list(),
        "gene_name": spans["gene_name"].to_list(),
        "gene_type": spans["gene_type"].fill_null("").to_list(),
        "chrom": spans["chrom"].to_list(),
        "strand": spans["strand"].to_list(),
        "start": spans["start"].to_numpy().astype(np.int64),
        "end": spans["end"].to_numpy().astype(np.int64),
    })
    genes["gene_name"] = genes["gene_name"].where(genes["gene_name"].notna(), genes["gene_id"])
    genes["tss"] = np.where(genes["strand"] == "+", genes["start"], genes["end"] - 1).astype(np.int64)
    tss_lists = spans["tss"].to_list()
    genes["tss_all"] = [list(t) if t else [int(s)] for t, s in zip(tss_lists, genes["tss"], strict=True)]
    merged = _merged_exons(exons)
    genes["exons"] = [merged.get(g, []) for g in genes["gene_id"]]

    if gene_types:
        known = sorted(set(genes["gene_type"]) - {""})
        unknown = [t for t in gene_types if t not in known]
        if unknown:
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise InputError(f"{path}: --gene-types {','.join(unknown)}: no gene of that type"
                             f"{did_you_mean(unknown[0], known)} (the GTF has: {shown or 'no gene_type'})")
        genes = genes[genes["gene_type"].isin(gene_types)]
    if genome_chroms is not None:
        names = genome_chroms if isinstance(genome_chroms, ChromNames) else ChromNames(genome_chroms,
                                                                                       chrom_aliases)
        try:
            resolved = resolve_chroms(genes["chrom"], names.names, names.mode, str(path),
                                      unknown="keep" if missing_chroms == "drop" else "error")
        except InputError as err:
            raise InputError(f"{err}; genes on chromosomes the genome lacks: a GTF of another assembly? "
                             "(keep only the genome's chromosomes in the GTF)") from None
        genes = genes.assign(chrom=genes["chrom"].map(resolved))
        genes = genes[genes["chrom"].notna()]
    return genes.sort_values(["chrom", "start", "end", "gene_id"]).reset_index(drop=True)[GENE_COLUMNS]


def exon_bins(exons, start: int, bin_size: int, n_bins: int) -> np.ndarray:
    """Output bins (0..n_bins-1 of an interval starting at ``start``) overlapping any exon."""
    bins = set()
    for a, b in exons:
        first, last = max(0, (a - start) // bin_size), min(n_bins - 1, (b - 1 - start) // bin_size)
        bins.update(range(first, last + 1))
    return np.array(sorted(bins), dtype=int)


def place_genes(genes: pd.DataFrame, windows: pd.DataFrame, bin_size: int,
                chrom_aliases: str = "auto", source: str = "GTF") -> pd.DataFrame:
    """The genes whose TSS lies in the target interval (``start``, ``end``) of a window of
    ``windows`` (a windows table: chrom, start, end; its row order = the store's window order).
    A gene in several windows is kept once, from the window where its TSS is most central.
    Returns the gene rows with ``window`` (row of ``windows``, 0-based) and ``tss_bin`` (the bin
    of the TSS in that window). No gene in any window is refused: a GTF of another assembly?"""
    names = ChromNames(set(windows["chrom"]), chrom_aliases)
    gene_chrom = genes["chrom"].map(lambda c: names.resolve(c))
    parts = []
    starts_all, ends_all = windows["start"].to_numpy(), windows["end"].to_numpy()
    for chrom, rows in windows.groupby("chrom", sort=False).indices.items():
        idx = np.flatnonzero(gene_chrom.to_numpy() == chrom)
        if not len(idx):
            continue
        tss = genes["tss"].to_numpy()[idx]
        start, end = starts_all[rows], ends_all[rows]
        inside = (tss[:, None] >= start[None, :]) & (tss[:, None] < end[None, :])
        gi, wi = np.nonzero(inside)
        centre = (start[wi] + end[wi]) / 2
        parts.append(pd.DataFrame({"gene_row": idx[gi], "window": rows[wi],
                                   "off_centre": np.abs(tss[gi] + 0.5 - centre)}))
    hits = pd.concat(parts) if parts else pd.DataFrame(columns=["gene_row", "window", "off_centre"])
    if hits.empty:
        raise InputError(f"{source}: no gene's TSS lies in any window's target interval (a GTF of "
                         f"another assembly? {len(genes)} genes on {genes['chrom'].nunique()} chromosomes, "
                         f"windows on {', '.join(sorted(set(windows['chrom']))[:6])})")
    best = hits.sort_values(["gene_row", "off_centre", "window"], kind="stable").drop_duplicates("gene_row")
    best = best.sort_values(["window", "gene_row"], kind="stable")
    placed = genes.iloc[best["gene_row"].to_numpy()].reset_index(drop=True)
    placed["window"] = best["window"].to_numpy().astype(np.int64)
    placed["tss_bin"] = ((placed["tss"].to_numpy() - starts_all[placed["window"].to_numpy()])
                         // bin_size).astype(np.int64)
    return placed
