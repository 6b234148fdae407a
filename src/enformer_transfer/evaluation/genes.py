"""Gene-level evaluation: observed and predicted expression per gene and track, and how well the
predictions rank genes (across genes) and cell types (specificity). Metric code only; the figures
are drawn by ``evaluation.figures`` through ``plots``; docs/evaluation.md defines every number.

A gene is read in the one window where its TSS is most central (``genes.gtf.place_genes``); its
signal is the sum over its bins of that window (``--gene-signal tss``: the bins within
``--tss-bins`` of the TSS bin, Enformer's protocol; ``exons``: every bin that overlaps one of its
merged exons inside the target interval, Borzoi's), read from the track of its own strand when the
track is one of a strand pair (``targets.table.gene_tracks``), then log1p(max(x, 0)).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..genes.gtf import exon_bins
from ..targets.table import GeneTrack

GENE_SIGNALS = ("tss", "exons")
MIN_GENES = 3  # fewer genes (or tracks of a level) give no correlation
LEVEL_COLUMN = "level"  # the targets table's column naming each track's level (Class, Subclass, ...)


def gene_bins(genes: pd.DataFrame, window_starts: np.ndarray, bin_size: int, n_bins: int,
              signal: str = "tss", tss_bins: int = 1) -> list[np.ndarray]:
    """The bins (of its window, 0-based) each placed gene's signal sums over. ``genes``: the rows of
    ``place_genes`` (window, tss_bin, exons); ``window_starts``: target-interval start per window."""
    if signal not in GENE_SIGNALS:
        raise ValueError(f"gene signal {signal!r}: use {' or '.join(GENE_SIGNALS)}")
    out = []
    for gene in genes.itertuples(index=False):
        if signal == "tss":
            out.append(np.arange(max(0, gene.tss_bin - tss_bins), min(n_bins, gene.tss_bin + tss_bins + 1)))
            continue
        bins = exon_bins(gene.exons, int(window_starts[gene.window]), bin_size, n_bins)
        out.append(bins if len(bins) else np.array([gene.tss_bin], dtype=np.int64))
    return out


def gene_sums(genes: pd.DataFrame, bins: list[np.ndarray], windows_values, gene_tracks: list[GeneTrack],
              columns: np.ndarray | None = None) -> np.ndarray:
    """(genes, gene tracks) sums over each gene's bins of its window, read from the track of the
    gene's strand. ``windows_values[w]``: (n_bins, tracks) array of window w (a zarr array or a
    callable); ``columns``: which of its tracks are the tables' (default all)."""
    plus = np.array([t.plus for t in gene_tracks])
    minus = np.array([t.minus for t in gene_tracks])
    out = np.zeros((len(genes), len(gene_tracks)), dtype=np.float64)
    windows = genes["window"].to_numpy()
    strands = genes["strand"].to_numpy()
    for window in np.unique(windows):
        values = windows_values(int(window)) if callable(windows_values) else windows_values[int(window)]
        values = np.asarray(values, dtype=np.float64)
        if columns is not None:
            values = values[..., columns]
        for g in np.flatnonzero(windows == window):
            summed = values[bins[g]].sum(axis=0)
            out[g] = summed[plus if strands[g] == "+" else minus]
    return out


def log1p(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(values, 0.0))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson of two vectors; NaN for fewer than MIN_GENES values or a constant one."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < MIN_GENES:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 1e-12 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson of the ranks (ties share their mean rank)."""
    return pearson(pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy())


def track_levels(tracks: pd.DataFrame) -> np.ndarray:
    """Each gene track's level: the ``level`` column when the tracks table has one ('' = in no
    level), else one level ('all') holding every track."""
    if LEVEL_COLUMN in tracks.columns:
        return tracks[LEVEL_COLUMN].astype(str).replace({"nan": "", "None": ""}).to_numpy()
    return np.full(len(tracks), "all", dtype=object)


def centred_by_level(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """log1p values minus, per gene, their mean over the tracks of the same level (NaN for tracks in
    no level)."""
    out = np.full(values.shape, np.nan)
    for level in dict.fromkeys(levels):
        if level == "":
            continue
        cols = np.flatnonzero(levels == level)
        out[:, cols] = values[:, cols] - values[:, cols].mean(axis=1, keepdims=True)
    return out


@dataclass
class GeneMetrics:
    """Across genes per track (``per_track``: n_genes, pearson_across_genes, spearman_across_genes,
    pearson_specificity, note) and across the tracks of each level per gene (``per_gene``: gene_id,
    level, n_tracks, pearson_across_tracks)."""

    per_track: pd.DataFrame
    per_gene: pd.DataFrame


def gene_metrics(observed: np.ndarray, predicted: np.ndarray, levels: np.ndarray,
                 gene_ids: list[str] | None = None) -> GeneMetrics:
    """The gene-level metrics of (genes, tracks) observed and predicted sums (before log1p)."""
    obs, pred = log1p(observed), log1p(predicted)
    obs_c, pred_c = centred_by_level(obs, levels), centred_by_level(pred, levels)
    rows = []
    for t in range(obs.shape[1]):
        note = ""
        if obs.shape[0] < MIN_GENES:
            note = f"fewer than {MIN_GENES} genes: no correlation"
        elif np.ptp(obs[:, t]) <= 1e-12:
            note = "zero variance observed across genes: no correlation"
        elif np.ptp(pred[:, t]) <= 1e-12:
            note = "flat prediction across genes: no correlation"
        rows.append({"n_genes": obs.shape[0], "pearson_across_genes": pearson(obs[:, t], pred[:, t]),
                     "spearman_across_genes": spearman(obs[:, t], pred[:, t]),
                     "pearson_specificity": (pearson(obs_c[:, t], pred_c[:, t]) if levels[t] != "" else np.nan),
                     "note": note})
    per_track = pd.DataFrame(rows)
    gene_ids = list(gene_ids) if gene_ids is not None else [str(g) for g in range(obs.shape[0])]
    per_gene = []
    for level in dict.fromkeys(levels):
        cols = np.flatnonzero(levels == level)
        if level == "" or len(cols) < MIN_GENES:
            continue
        for g, gene_id in enumerate(gene_ids):
            per_gene.append({"gene_id": gene_id, "level": level, "n_tracks": len(cols),
                             "pearson_across_tracks": pearson(obs[g, cols], pred[g, cols])})
    return GeneMetrics(per_track, pd.DataFrame(per_gene, columns=["gene_id", "level", "n_tracks",
                                                                  "pearson_across_tracks"]))


def most_variable_genes(observed: np.ndarray, levels: np.ndarray, top: int = 50) -> np.ndarray:
    """Rows of the genes whose centred observed log1p values vary most across tracks (for the
    specificity heatmap), most variable first."""
    centred = centred_by_level(log1p(observed), levels)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a gene with every track in no level
        spread = np.nan_to_num(np.nanvar(centred, axis=1), nan=-1.0) if centred.size else np.zeros(0)
    return np.argsort(-spread, kind="stable")[:top]
