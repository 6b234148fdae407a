"""Chooses what the evaluation figures show (windows, bins, orders) and draws them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..genome.intervals import parse_region
from ..plots import figures as draw
from ..provenance import safe_filename


def hierarchy_order(tracks: pd.DataFrame) -> list[int]:
    """Tracks ordered by level, then class, subclass, cluster when those columns exist."""
    keys = [c for c in ("level", "class", "subclass", "cluster") if c in tracks.columns]
    if not keys:
        return list(range(len(tracks)))
    return list(tracks.reset_index(drop=True).sort_values(keys, kind="stable").index)


def parse_regions(regions: list[str] | None) -> list[tuple[str, int, int]]:
    """'chr1:1000-2000' strings and/or BED files -> (chrom, start, end)."""
    from ..errors import InputError

    out = []
    for item in regions or []:
        if Path(item).is_file():
            for line in Path(item).read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and not line.startswith(("#", "track", "browser")):
                    out.append((fields[0], int(fields[1]), int(fields[2])))
            continue
        try:
            out.append(parse_region(item))
        except ValueError:
            raise InputError(f"--plot-regions {item!r}: expected chrom:start-end or a BED file") from None
    return out


def evaluation_figures(run, name: str, out: Path, per_track: pd.DataFrame, splits: list[str],
                       track_index: np.ndarray, plot_regions: list[str] | None = None) -> dict[str, list[Path]]:
    from ..data import store
    from .evaluate import PREDICTIONS_STORE, grouping_columns

    figures = out / "figures"
    tracks = run.tracks.iloc[track_index].reset_index(drop=True)
    ids = list(tracks["identifier"])
    groupings = grouping_columns(tracks)
    made: dict[str, list[Path]] = {}
    made["pearson_boxplot"] = draw.pearson_boxplot(per_track, groupings[0] if groupings else None,
                                                   figures / "pearson_boxplot")
    split = "test" if "test" in splits else splits[0]
    corr = np.load(out / f"correlations_{split}.npz")
    order = hierarchy_order(tracks)
    made["correlation_heatmaps"] = draw.correlation_heatmaps(
        corr["observed"][np.ix_(order, order)], corr["predicted"][np.ix_(order, order)],
        [ids[i] for i in order], figures / f"correlations_{split}")
    made["pearson_by_position"] = draw.pearson_by_position(pd.read_csv(out / "bin_position.csv"),
                                                           figures / "pearson_by_position")
    # the window with the most observed signal, and each track's own plot at it
    predictions = store.open_array(out / PREDICTIONS_STORE, split)
    targets = run.targets(split)
    totals = [float(np.asarray(targets[i])[..., track_index].sum()) for i in range(targets.shape[0])]
    best = int(np.argmax(totals))
    window = run.windows(split).iloc[best]
    geometry = run.stage_record("dataset")["config"]["geometry"]
    coords = window["start"] + geometry["bin_size"] * (np.arange(geometry["n_bins"]) + 0.5)
    obs = np.asarray(targets[best])[..., track_index].astype(np.float32)
    pred = np.asarray(predictions[best]).astype(np.float32)
    region = f"{window['chrom']}:{window['start']:,}-{window['end']:,}"
    shown = order[:8]
    made["track_plot"] = draw.track_plot(coords, obs[:, shown], pred[:, shown], [ids[i] for i in shown], region,
                                         figures / "tracks_example")
    for t, ident in enumerate(ids):
        made[f"track_{ident}"] = draw.track_plot(coords, obs[:, [t]], pred[:, [t]], [ident], region,
                                                 figures / "tracks" / safe_filename(ident))
    # chosen regions: every evaluated window whose target interval overlaps one
    for chrom, start, end in parse_regions(plot_regions):
        for region_split in splits:
            table = run.windows(region_split)
            hits = table.index[(table["chrom"] == chrom) & (table["start"] < end) & (table["end"] > start)]
            for i in hits:
                w = table.loc[i]
                label = f"{w['chrom']}:{w['start']:,}-{w['end']:,}"
                o = np.asarray(run.targets(region_split)[i])[..., track_index].astype(np.float32)
                p = np.asarray(store.open_array(out / PREDICTIONS_STORE, region_split)[i]).astype(np.float32)
                x = w["start"] + geometry["bin_size"] * (np.arange(geometry["n_bins"]) + 0.5)
                key = f"region_{region_split}_{w['chrom']}_{w['start']}"
                made[key] = draw.track_plot(x, o[:, order], p[:, order], [ids[k] for k in order], label,
                                            figures / "regions" / key)
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
            made[f"scatter_{label}"] = draw.scatter_observed_predicted(
                o[..., t].ravel(), p[..., t].ravel(), ids[t], float(part["pearson"][t]), figures / f"scatter_{label}")
    # Pearson against track properties
    stats_path = run.dataset_dir / "track_stats.tsv"
    if stats_path.is_file():
        stats = pd.read_csv(stats_path, sep="\t").set_index("identifier").loc[ids]
        made["pearson_vs_mean"] = draw.pearson_vs_property(stats["mean"].to_numpy(), part["pearson"].to_numpy(), ids,
                                                           "mean target value (all windows)", figures / "pearson_vs_mean")
    if "n_nuclei" in tracks.columns:
        nuclei = pd.to_numeric(tracks["n_nuclei"], errors="coerce").to_numpy()
        if np.isfinite(nuclei).any():
            made["pearson_vs_nuclei"] = draw.pearson_vs_property(nuclei, part["pearson"].to_numpy(), ids,
                                                                 "number of nuclei", figures / "pearson_vs_nuclei")
    logs = run.path / "heads" / name / "logs" / "metrics.csv"
    if logs.is_file():
        made["training_curves"] = draw.training_curves(pd.read_csv(logs), figures / "training_curves")
    return made

