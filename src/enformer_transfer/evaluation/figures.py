"""Chooses what the evaluation figures show (windows, bins, orders) and draws them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..fs import safe_filename
from ..genome.regions import parse_regions
from ..plots import figures as draw
from ..plots.figures import FigureIndex
from ..plots.labels import track_labels
from ..rundir.layout import EvaluationFolder
from ..targets.table import grouping_columns, hierarchy_order


def evaluation_figures(run, name: str, out: EvaluationFolder, per_track: pd.DataFrame, splits: list[str],
                       track_index: np.ndarray, plot_regions: list[str] | None = None, genes=None) -> list[dict]:
    """Draw the evaluation's figures into ``out.figures`` and list them in its index (name,
    caption, kind, file), which the report follows."""
    from ..rundir import store

    figures = out.figures
    index = FigureIndex(figures)
    tracks = run.tracks.iloc[track_index].reset_index(drop=True)
    ids = list(tracks["identifier"])
    labels = track_labels(tracks)  # what the reader sees: the description (cell type) when there is one
    groupings = grouping_columns(tracks)
    split = "test" if "test" in splits else splits[0]
    logs = run.layout.head(name).metrics
    if logs.is_file():
        index.add("training_curves", "Training curves: loss, and the validation Pearson the kept checkpoint is "
                  "chosen on (dashed: before training; star: the kept epoch)",
                  _training_curves(run.head(name).metadata, pd.read_csv(logs), figures / "training_curves"))
    index.add("pearson_boxplot", "Per-track Pearson by split" + (f" and {groupings[0]}" if groupings else ""),
              draw.pearson_boxplot(per_track, groupings[0] if groupings else None, figures / "pearson_boxplot"))
    corr = np.load(out.correlations(split))
    order = hierarchy_order(tracks)
    index.add(f"correlations_{split}", f"Track x track correlations, observed and predicted ({split})",
              draw.correlation_heatmaps(corr["observed"][np.ix_(order, order)], corr["predicted"][np.ix_(order, order)],
                                        [labels[i] for i in order], figures / f"correlations_{split}"))
    # the window with the most observed signal, and each track's own plot at it
    predictions = store.open_array(out.predictions_store, split)
    targets = run.targets(split)
    totals = [float(np.asarray(targets[i])[..., track_index].sum()) for i in range(targets.shape[0])]
    best = int(np.argmax(totals))
    window = run.windows(split).iloc[best]
    geometry = run.geometry
    coords = window["start"] + geometry.bin_size * (np.arange(geometry.n_bins) + 0.5)
    obs = np.asarray(targets[best])[..., track_index].astype(np.float32)
    pred = np.asarray(predictions[best]).astype(np.float32)
    region = f"{window['chrom']}:{window['start']:,}-{window['end']:,}"
    # up to 12 tracks spread over the hierarchy; every track has its own plot (kind 'track')
    shown = [order[i] for i in np.unique(np.linspace(0, len(order) - 1, min(12, len(order))).round().astype(int))]
    some = f"{len(shown)} of {len(order)} tracks, " if len(shown) < len(order) else ""
    index.add("tracks_example", f"Observed vs predicted, the {split} window with the most signal ({some}{region})",
              draw.track_plot(coords, obs[:, shown], pred[:, shown], [labels[i] for i in shown], region,
                              figures / "tracks_example"))
    # scatter of observed vs predicted bins for the best and the worst track of the split
    part = per_track[per_track["split"] == split].reset_index(drop=True)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(targets.shape[0], size=min(64, targets.shape[0]), replace=False))
    o = np.asarray(targets.get_orthogonal_selection((sample, slice(None), track_index))).astype(np.float32)
    p = np.asarray(predictions.get_orthogonal_selection((sample, slice(None), slice(None)))).astype(np.float32)
    valid = part["pearson"].notna()
    if valid.any():
        for label, t in (("best", int(part["pearson"].where(valid).idxmax())),
                         ("worst", int(part["pearson"].where(valid).idxmin()))):
            index.add(f"scatter_{label}", f"Observed vs predicted bins, {label} track ({labels[t]})",
                      draw.scatter_observed_predicted(o[..., t].ravel(), p[..., t].ravel(), labels[t],
                                                      float(part["pearson"][t]), figures / f"scatter_{label}"))
    index.add("pearson_by_position", "Pearson by bin position (accuracy towards the window edges)",
              draw.pearson_by_position(pd.read_csv(out.bin_position), figures / "pearson_by_position"))
    # Pearson against track properties
    track_stats = run.track_stats
    if track_stats is not None:
        stats = track_stats.set_index("identifier").loc[ids]
        index.add("pearson_vs_mean", "Pearson vs mean target value",
                  draw.pearson_vs_property(stats["mean"].to_numpy(), part["pearson"].to_numpy(), labels,
                                           "mean target value (all windows)", figures / "pearson_vs_mean"))
    if "n_nuclei" in tracks.columns:
        nuclei = pd.to_numeric(tracks["n_nuclei"], errors="coerce").to_numpy()
        if np.isfinite(nuclei).any():
            index.add("pearson_vs_nuclei", "Pearson vs number of nuclei",
                      draw.pearson_vs_property(nuclei, part["pearson"].to_numpy(), labels, "number of nuclei",
                                               figures / "pearson_vs_nuclei"))
    # chosen regions: every evaluated window whose target interval overlaps one
    for chrom, start, end in parse_regions(plot_regions):
        for region_split in splits:
            table = run.windows(region_split)
            hits = table.index[(table["chrom"] == chrom) & (table["start"] < end) & (table["end"] > start)]
            for i in hits:
                w = table.loc[i]
                label = f"{w['chrom']}:{w['start']:,}-{w['end']:,}"
                o_region = np.asarray(run.targets(region_split)[i])[..., track_index].astype(np.float32)
                p_region = np.asarray(store.open_array(out.predictions_store, region_split)[i]).astype(np.float32)
                x = w["start"] + geometry.bin_size * (np.arange(geometry.n_bins) + 0.5)
                key = f"region_{region_split}_{w['chrom']}_{w['start']}"
                index.add(key, f"Observed vs predicted, chosen region {label} ({region_split})",
                          draw.track_plot(x, o_region[:, order], p_region[:, order], [labels[k] for k in order], label,
                                          figures / "regions" / key), kind="region")
    if genes is not None:
        _gene_figures(genes, index, figures)
    for t, ident in enumerate(ids):
        caption = ident if labels[t] == ident else f"{labels[t]} ({ident})"
        index.add(f"track_{ident}", caption, draw.track_plot(coords, obs[:, [t]], pred[:, [t]], [labels[t]], region,
                                                             figures / "tracks" / safe_filename(ident)),
                  kind="track", track=ident, label=labels[t])
    return index.write()


def _training_curves(metadata: dict, logs: pd.DataFrame, path: Path) -> list[Path]:
    """The training log with what the head's record says about its start and the kept epoch."""
    training = metadata.get("training", {})
    kept = training.get("kept", {})
    finetune = metadata.get("finetune")
    start_label = f"frozen head {finetune['from_head']}" if finetune else (
        "ridge start" if training.get("schedule", {}).get("init") == "ridge" else "start")
    kept_start = bool(kept.get("start")) or (finetune or {}).get("kept") == "frozen"
    return draw.training_curves(logs, path, start=training.get("start_valid_pearson"),
                                kept_epoch=None if kept_start else kept.get("epoch"), kept_start=kept_start,
                                start_label=start_label)


def _gene_figures(genes, index: FigureIndex, figures: Path, shown: int = 12, top: int = 50) -> None:
    """Per-gene expression (``evaluate.GeneEvaluation``): observed vs predicted across genes for up
    to ``shown`` tracks, and the ``top`` most variable genes' centred values (specificity)."""
    from .genes import centred_by_level, log1p, most_variable_genes

    table = genes.tracks
    labels = list(track_labels(table))
    observed, predicted = log1p(genes.observed), log1p(genes.predicted)
    picked = np.unique(np.linspace(0, len(table) - 1, min(shown, len(table))).round().astype(int))
    some = f", {len(picked)} of {len(table)} tracks" if len(picked) < len(table) else ""
    index.add("genes_scatter", f"Observed vs predicted expression per gene ({genes.split}, {len(genes.genes)} genes, "
              f"log1p{some})",
              draw.gene_scatters(observed[:, picked], predicted[:, picked], [labels[i] for i in picked],
                                 list(table["pearson_across_genes"].to_numpy()[picked]), figures / "genes_scatter"),
              kind="genes")
    rows = most_variable_genes(genes.observed, genes.levels, top)
    in_level = [i for i in hierarchy_order(table) if genes.levels[i] != ""]
    if len(rows) and len(in_level) >= 2:
        names = list(genes.genes["gene_name"].astype(str).to_numpy()[rows])
        index.add("genes_specificity", f"The {len(rows)} genes that vary most across cell types: log1p expression "
                  "minus its mean over the level's tracks, observed and predicted",
                  draw.gene_specificity_heatmap(centred_by_level(observed, genes.levels)[np.ix_(rows, in_level)],
                                                centred_by_level(predicted, genes.levels)[np.ix_(rows, in_level)],
                                                names, [labels[i] for i in in_level], figures / "genes_specificity"),
                  kind="genes")
