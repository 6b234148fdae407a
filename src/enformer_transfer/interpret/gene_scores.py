"""Gene-level variant scores (``variants --genes GTF``): a variant's effect on each nearby gene's
predicted expression in every track, summed over the gene's exon bins (Borzoi's gene-level
``logSED``, ``hound_snpgene.py``).

For a variant and a gene with exons inside the output interval (the target interval of the
window the variant is scored in, shift 0), with ``E`` the output bins overlapping any of the
gene's exons and ``ref``, ``alt`` the predictions of the track the gene is read from (the track
of the gene's own strand when the track has a strand pair, otherwise the unstranded track):

    ref_sum = sum over E of ref            alt_sum = sum over E of alt
    SUM     = alt_sum - ref_sum
    logSED  = log2(alt_sum + 1) - log2(ref_sum + 1)

each per shift and then averaged over shifts, as the bin-level scores (``scores.py``);
``tss_distance`` is the variant's first REF base minus the TSS, in the gene's direction
(negative: upstream of the TSS). Plain NumPy: the stage and the tests use the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..genes.gtf import exon_bins
from ..targets.table import gene_tracks
from .alleles import genome_alleles, reference_start

GENE_STATS = ("SUM", "logSED")


def read_gene_table(path: Path | str, gene_types: list[str] | None = None, genome_chroms=None,
                    chrom_aliases: str = "auto") -> pd.DataFrame:
    """Genes of a GTF (``genes.gtf.read_genes``) on the genome's chromosomes (genes elsewhere
    dropped: a VCF's genome need not hold the whole annotation): one row per gene with strand,
    TSS and exons."""
    from ..genes.gtf import read_genes

    return read_genes(path, gene_types=gene_types or None, genome_chroms=genome_chroms, chrom_aliases=chrom_aliases,
                      missing_chroms="drop").reset_index(drop=True)


@dataclass(frozen=True)
class GeneColumns:
    """The columns of gene-level scores: one per strand pair and per unstranded track. ``plus``
    and ``minus``: the track (position in the head's tracks) a gene on that strand is read from;
    ``named``: the track whose row names the column (the pair's + track)."""

    plus: np.ndarray
    minus: np.ndarray
    named: np.ndarray

    @classmethod
    def from_tracks(cls, tracks: pd.DataFrame) -> GeneColumns:
        """One column per ``targets.table.gene_tracks`` entry (strand pairs from the strand_pair
        column or +/- identifiers; which track is + from the strand column)."""
        pairs = gene_tracks(tracks)
        plus = np.array([t.plus for t in pairs], dtype=int)
        return cls(plus, np.array([t.minus for t in pairs], dtype=int), plus)

    def tracks(self, tracks: pd.DataFrame) -> pd.DataFrame:
        return tracks.iloc[self.named].reset_index(drop=True)

    def read(self, strand: str) -> np.ndarray:
        """The track each column reads for a gene on ``strand``."""
        return self.minus if strand == "-" else self.plus


def output_start(variant, geometry, offset: int = 0) -> int:
    """0-based genome start of the target interval of a variant's reference window (shift 0)."""
    return reference_start(variant.pos, *genome_alleles(variant), geometry.seq_length) - offset + geometry.context


def gene_pairs(variants: pd.DataFrame, genes: pd.DataFrame, geometry, offset: int = 0) -> pd.DataFrame:
    """Every (variant, gene) with an exon inside the variant's output interval: ``variant`` (the
    variant's ``index``), ``gene`` (row of ``genes``), ``tss_distance``, ``exon_bins`` and
    ``bins`` (the bin positions). ``variants`` rows: index, genome_chrom, pos, ref, alt[, flipped]."""
    rows = []
    span = geometry.target_interval_bp
    by_chrom = {chrom: part for chrom, part in genes.groupby("chrom", sort=False)}
    for v in variants.itertuples(index=False):
        part = by_chrom.get(v.genome_chrom)
        if part is None:
            continue
        start = output_start(v, geometry, offset)
        near = part[(part["end"] > start) & (part["start"] < start + span)]
        for g in near.itertuples():
            bins = exon_bins(g.exons, start, geometry.bin_size, geometry.n_bins)
            inside = [e for e in g.exons if e[1] > start and e[0] < start + span]
            if not inside:
                continue
            distance = (v.pos - 1 - g.tss) if g.strand != "-" else (g.tss - (v.pos - 1))
            rows.append({"variant": int(v.index), "gene": int(g.Index), "tss_distance": int(distance),
                         "exon_bins": len(bins), "bins": bins})
    return pd.DataFrame(rows, columns=["variant", "gene", "tss_distance", "exon_bins", "bins"])


def gene_scores(ref: np.ndarray, alt: np.ndarray, bins: np.ndarray, read: np.ndarray) -> dict[str, np.ndarray]:
    """{ref_sum, alt_sum, SUM, logSED: (columns,)} of one variant and gene from its predictions
    ``ref``, ``alt`` (shifts, bins, tracks), the gene's exon ``bins`` and the track each column
    reads (``GeneColumns.read``); per shift, then averaged over shifts."""
    ref_sum = np.asarray(ref, dtype=np.float64)[:, bins][:, :, read].sum(axis=1)  # (shifts, columns)
    alt_sum = np.asarray(alt, dtype=np.float64)[:, bins][:, :, read].sum(axis=1)
    return {"ref_sum": ref_sum.mean(axis=0), "alt_sum": alt_sum.mean(axis=0),
            "SUM": (alt_sum - ref_sum).mean(axis=0),
            "logSED": (np.log2(alt_sum + 1) - np.log2(ref_sum + 1)).mean(axis=0)}


class GeneScorer:
    """Gene-level scores of a chunk of variants from their ref / alt predictions; called by
    ``VariantScorer.score`` with (variants, ref, alt), predictions (variants, shifts, bins, tracks)."""

    def __init__(self, pairs: pd.DataFrame, genes: pd.DataFrame, columns: GeneColumns):
        self.pairs, self.genes, self.columns = pairs, genes, columns

    def __call__(self, variants: pd.DataFrame, ref: np.ndarray, alt: np.ndarray) -> dict[str, np.ndarray]:
        position = {int(i): k for k, i in enumerate(variants["index"])}
        chosen = self.pairs[self.pairs["variant"].isin(position)]
        n = len(self.columns.plus)
        out = {name: np.zeros((len(chosen), n), dtype=np.float32) for name in ("ref_sum", "alt_sum", *GENE_STATS)}
        strands = self.genes["strand"].to_numpy()
        for row, pair in enumerate(chosen.itertuples(index=False)):
            k = position[pair.variant]
            values = gene_scores(ref[k], alt[k], pair.bins, self.columns.read(strands[pair.gene]))
            for name, value in values.items():
                out[name][row] = value
        return {**{f"gene_{name}": value for name, value in out.items()},
                "gene_pair_variant": chosen["variant"].to_numpy(dtype=np.int64),
                "gene_pair_gene": chosen["gene"].to_numpy(dtype=np.int64)}


def gene_table(variants: pd.DataFrame, genes: pd.DataFrame, pairs: pd.DataFrame, columns: GeneColumns,
               head_tracks: pd.DataFrame, values: dict[str, np.ndarray], track_columns) -> pd.DataFrame:
    """One row per variant, gene and column: the variant, the gene, its TSS distance and exon bins,
    the column's track metadata, the track read, every gene-level score and z-score."""
    from .outputs import VARIANT_COLUMNS

    key = pd.MultiIndex.from_frame(pairs[["variant", "gene"]])
    order = key.get_indexer(pd.MultiIndex.from_arrays([values["gene_pair_variant"], values["gene_pair_gene"]]))
    pairs = pairs.iloc[order].reset_index(drop=True)
    n_columns = len(columns.plus)
    by_index = variants.set_index("index")
    left = by_index.loc[pairs["variant"].to_numpy(), VARIANT_COLUMNS].reset_index(drop=True)
    gene_rows = genes.loc[pairs["gene"].to_numpy()].reset_index(drop=True)
    gene_part = pd.DataFrame({"gene_id": gene_rows["gene_id"], "gene_name": gene_rows["gene_name"],
                              "gene_type": gene_rows.get("gene_type", ""), "gene_strand": gene_rows["strand"],
                              "tss": gene_rows["tss"], "tss_distance": pairs["tss_distance"],
                              "exon_bins": pairs["exon_bins"]})
    repeat = np.arange(len(pairs)).repeat(n_columns)
    named = track_columns(columns.tracks(head_tracks))
    ids = head_tracks["identifier"].to_numpy()
    read = np.where(gene_rows["strand"].to_numpy()[:, None] == "-", columns.minus[None], columns.plus[None])
    right = pd.concat([named] * len(pairs), ignore_index=True).assign(track_read=ids[read.reshape(-1)])
    scores = pd.DataFrame({name: values[f"gene_{name}"].reshape(-1)
                           for name in ("ref_sum", "alt_sum", *GENE_STATS, *(f"{s}_z" for s in GENE_STATS))})
    return pd.concat([left.iloc[repeat].reset_index(drop=True), gene_part.iloc[repeat].reset_index(drop=True),
                      right, scores], axis=1)
