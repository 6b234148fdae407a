"""Figures of the evaluation and the report. Each function draws given numbers and writes
PNG and SVG; the numbers come from ``evaluation``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in (".png", ".svg"):
        target = path.with_suffix(ext)
        fig.savefig(target, dpi=110, bbox_inches="tight")
        out.append(target)
    _plt().close(fig)
    return out


class FigureIndex:
    """The figures of a stage folder, in reading order: figures/index.json lists each one's
    name, caption, kind ('summary', 'track', 'region') and PNG file (relative to the folder)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.entries: list[dict] = []

    def add(self, name: str, caption: str, paths: list[Path], kind: str = "summary", **extra) -> None:
        png = next(p for p in paths if Path(p).suffix == ".png")
        self.entries.append({"name": name, "caption": caption, "kind": kind,
                             "file": str(Path(png).relative_to(self.folder)), **extra})

    def write(self) -> list[dict]:
        import json

        from ..fs import write_text_atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / "index.json", json.dumps(self.entries, indent=2))
        return self.entries


def read_figure_index(folder: Path) -> list[dict]:
    """The entries of a figures folder's index.json, with absolute paths ('path')."""
    import json

    path = Path(folder) / "index.json"
    if not path.is_file():
        return []
    return [{**e, "path": Path(folder) / e["file"]} for e in json.loads(path.read_text())]


def pearson_boxplot(per_track: pd.DataFrame, grouping: str | None, path: Path) -> list[Path]:
    """Per-track Pearson by split (and by group of ``grouping``), as the study's figures 1D/2B/3C."""
    plt = _plt()
    splits = list(dict.fromkeys(per_track["split"]))
    groups = ["all"] + (sorted(g for g in per_track[grouping].dropna().astype(str).unique() if g)
                        if grouping else [])
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups) * len(splits), 3.6))
    data, labels, positions = [], [], []
    pos = 0
    for group in groups:
        for split in splits:
            part = per_track[per_track["split"] == split]
            if group != "all":
                part = part[part[grouping].astype(str) == group]
            values = part["pearson"].dropna().to_numpy()
            if len(values):
                data.append(values)
                labels.append(f"{group}\n{split}")
                positions.append(pos)
            pos += 1
        pos += 0.5
    ax.boxplot(data, positions=positions, widths=0.7, showfliers=False)  # every point is drawn below
    for values, x in zip(data, positions, strict=True):
        ax.scatter(np.full(len(values), x) + np.linspace(-0.15, 0.15, len(values)), values, s=8, alpha=0.6)
    ax.set_xticks(positions, labels, fontsize=7)
    ax.set_ylabel("Pearson r per track (all bins pooled)")
    ax.set_title("Per-track Pearson by split" + (f" and {grouping}" if grouping else ""))
    return _save(fig, path)


def track_plot(coordinates: np.ndarray, observed: np.ndarray, predicted: np.ndarray, names: list[str],
               region: str, path: Path) -> list[Path]:
    """Observed (filled) and predicted (line) signal of several tracks over one region, stacked."""
    plt = _plt()
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.9 * n + 0.8), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.fill_between(coordinates, observed[:, i], step="mid", alpha=0.5, color="tab:blue", label="observed")
        ax.plot(coordinates, predicted[:, i], color="tab:red", lw=1, label="predicted")
        ax.set_ylabel(names[i], rotation=0, ha="right", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel(f"{region} (bp)")
    return _save(fig, path)


def scatter_observed_predicted(observed: np.ndarray, predicted: np.ndarray, name: str, pearson: float,
                               path: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.hexbin(observed, predicted, gridsize=40, bins="log", mincnt=1, cmap="viridis")
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted")
    ax.set_title(f"{name}: r = {pearson:.3f}", fontsize=8)
    return _save(fig, path)


def _label_size(n: int) -> float:
    return 7.0 if n <= 40 else 6.0 if n <= 100 else 5.0


def _sparse_ticks(ax, names: list[str], axis: str, fontsize: float, max_labels: int = 120) -> None:
    """Tick labels for every name up to ``max_labels``, else every k-th (still legible)."""
    step = max(1, int(np.ceil(len(names) / max_labels)))
    ticks = list(range(0, len(names), step))
    labels = [names[i] for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
    else:
        ax.set_yticks(ticks, labels, fontsize=fontsize)


def correlation_heatmaps(observed: np.ndarray, predicted: np.ndarray, names: list[str], path: Path) -> list[Path]:
    """Track x track correlation matrices, observed and predicted, in the given (hierarchy) order;
    side by side for a few tracks, one above the other (each as wide as the page) for many."""
    plt = _plt()
    n = len(names)
    size = _label_size(n)
    side = max(4.0, 0.11 * n + 1.6)  # inches per panel: a label row per track
    stacked = n > 30
    fig, axes = plt.subplots(2 if stacked else 1, 1 if stacked else 2,
                             figsize=(side + 1.2, 2 * side + 0.6) if stacked else (2 * side + 1.6, side + 0.4),
                             squeeze=False, layout="constrained")
    for ax, matrix, title in zip(axes.ravel(), (observed, predicted), ("observed", "predicted"), strict=True):
        im = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.set_title(f"track x track correlation, {title}", fontsize=9)
        _sparse_ticks(ax, names, "x", size)
        _sparse_ticks(ax, names, "y", size)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6)
    return _save(fig, path)


def place_labels(ax, xs, ys, names: list[str], fontsize: float = 6) -> int:
    """Label points without overlapping labels: each label tries offsets around its point and is
    left out when none is free. Returns how many were placed."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    offsets = [(4, 3), (4, -9), (-4, 3), (-4, -9), (6, 10), (6, -15), (-6, 10), (-6, -15), (0, 14), (0, -18)]
    for x, y, name in zip(xs, ys, names, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        for dx, dy in offsets:
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx >= 0 else "right", alpha=0.85)
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()
    return len(placed)


def pearson_vs_property(values: np.ndarray, pearson: np.ndarray, names: list[str], xlabel: str,
                        path: Path, max_labels: int = 12) -> list[Path]:
    """Per-track Pearson against a track property; the best and worst tracks (and the extremes of
    the property) are labelled where their labels do not overlap."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    values, pearson = np.asarray(values, dtype=float), np.asarray(pearson, dtype=float)
    ax.scatter(values, pearson, s=14)
    order = np.argsort(np.where(np.isfinite(pearson), pearson, np.inf))
    extremes = [*order[: max_labels // 3], *order[::-1][np.isfinite(pearson[order[::-1]])][: max_labels // 3],
                int(np.nanargmax(values)) if np.isfinite(values).any() else None,
                int(np.nanargmin(values)) if np.isfinite(values).any() else None]
    chosen = list(dict.fromkeys(int(i) for i in extremes if i is not None))
    if len(names) <= max_labels:
        chosen = list(range(len(names)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test Pearson r")
    place_labels(ax, values[chosen], pearson[chosen], [names[i] for i in chosen])
    return _save(fig, path)


def pearson_by_position(position: pd.DataFrame, path: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    for split, part in position.groupby("split", sort=False):
        ax.plot(part["bin"], part["pearson_mean_over_tracks"], label=split)
    ax.set_xlabel("bin position in the window")
    ax.set_ylabel("Pearson over windows (mean over tracks)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def training_curves(logs: pd.DataFrame, path: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    for column in ("train_loss", "val_loss"):
        if column in logs:
            part = logs[["epoch", column]].dropna()
            ax.plot(part["epoch"], part[column], marker="o", label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    return _save(fig, path)


def weight_similarity_heatmap(similarity: np.ndarray, rows: list[str], columns: list[str], path: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(columns), 1 + 0.25 * len(rows)))
    im = ax.imshow(similarity, cmap="RdBu_r", vmin=-np.nanmax(np.abs(similarity)), vmax=np.nanmax(np.abs(similarity)),
                   aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=6)
    ax.set_title("head weights: cosine similarity to the backbone's tracks (best per assay)", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


def dar_figures(pearson: np.ndarray, confusion: np.ndarray, cell_types: list[str], observed: np.ndarray,
                predicted: np.ndarray, region_labels: np.ndarray, folder: Path) -> list[Path]:
    """DAR analysis: histogram of per-region Pearson across cell types, confusion matrix of the
    most open cell type (observed vs predicted), and cell types x regions heatmaps."""
    plt = _plt()
    made = []
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(pearson[~np.isnan(pearson)], bins=20, range=(-1, 1))
    ax.set_xlabel("Pearson across cell types, per region")
    ax.set_ylabel("regions")
    made += _save(fig, Path(folder) / "dar_pearson_histogram")
    fig, ax = plt.subplots(figsize=(1.5 + 0.35 * len(cell_types), 1.2 + 0.35 * len(cell_types)))
    im = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(cell_types)), cell_types, rotation=90, fontsize=7)
    ax.set_yticks(range(len(cell_types)), cell_types, fontsize=7)
    ax.set_xlabel("most open, predicted")
    ax.set_ylabel("most open, observed")
    fig.colorbar(im, ax=ax, shrink=0.8)
    made += _save(fig, Path(folder) / "dar_confusion")
    fig, axes = plt.subplots(2, 1, figsize=(8, 1.2 + 0.5 * len(cell_types)), sharex=True)
    for ax, matrix, title in zip(axes, (observed, predicted), ("observed", "predicted"), strict=True):
        ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(cell_types)), cell_types, fontsize=6)
        ax.set_title(f"{title}: cell types x regions (sorted by DAR label)", fontsize=8)
    boundaries = np.flatnonzero(region_labels[1:] != region_labels[:-1]) + 0.5
    for ax in axes:
        for x in boundaries:
            ax.axvline(x, color="white", lw=0.5)
    made += _save(fig, Path(folder) / "dar_heatmaps")
    return made


def _logo(ax, values: np.ndarray, start: int = 0) -> None:
    """A sequence logo of (positions, 4) ACGT values on ``ax`` (logomaker), x from ``start``."""
    import logomaker

    frame = pd.DataFrame(np.asarray(values, dtype=float), columns=list("ACGT"),
                         index=np.arange(start, start + len(values)))
    logomaker.Logo(frame, ax=ax, color_scheme="classic", flip_below=False, show_spines=False)
    ax.axhline(0, color="#999", lw=0.4)
    ax.tick_params(labelsize=6)


def contribution_logos(values: np.ndarray, names: list[str], title: str, start: int, path: Path) -> list[Path]:
    """Actual contributions of one region, one logo per attributed track stacked (e.g. the same
    enhancer in five cell types), on a shared x axis (bp from the region centre) and a shared
    y range, so that tracks compare at a glance. ``values`` (tracks, positions, 4)."""
    plt = _plt()
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(min(14.0, 2 + values.shape[1] * 0.09), 0.3 + 0.95 * n),
                             sharex=True, squeeze=False)
    low, high = float(min(values.min(), 0)), float(max(values.max(), 0))
    pad = 0.05 * (high - low or 1.0)
    for ax, track, name in zip(axes[:, 0], values, names, strict=True):
        _logo(ax, track, start)
        ax.set_ylim(low - pad, high + pad)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    axes[0, 0].set_title(title, fontsize=8)
    axes[-1, 0].set_xlabel("bp from the region centre", fontsize=7)
    return _save(fig, path)


def motif_logo(cwm: np.ndarray, title: str, path: Path) -> list[Path]:
    """A pattern's contribution weight matrix (positions, 4) as a logo."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(2.5, 0.16 * len(cwm)), 1.1))
    _logo(ax, cwm)
    ax.set_xticks([])
    ax.set_title(title, fontsize=7)
    return _save(fig, path)


def motif_importance_heatmap(importance: np.ndarray, rows: list[str], columns: list[str], path: Path) -> list[Path]:
    """Cell types (attributed tracks) x motifs: the importance of each motif's patterns, blank
    where a cell type has no pattern of the motif."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2.2 + 0.4 * len(columns), 1.3 + 0.32 * len(rows)))
    masked = np.ma.masked_invalid(np.asarray(importance, dtype=float))
    im = ax.imshow(masked, aspect="auto", cmap="magma_r", interpolation="nearest")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("motif (best database match, else the pattern's consensus)", fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8, label="pattern importance")
    return _save(fig, path)


def called_dars_figure(counts: np.ndarray, cell_types: list[str], signals: np.ndarray, labels: np.ndarray,
                       path: Path) -> list[Path]:
    """Called DARs: regions per cell type, and the cell types x regions signal heatmap (regions
    sorted by the cell type they were called for, each cell type's row scaled to its maximum)."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 1.4 + 0.35 * len(cell_types)),
                                      gridspec_kw={"width_ratios": [1, 4]})
    left.barh(range(len(cell_types)), counts, color="#4a7ab5")
    left.set_yticks(range(len(cell_types)), cell_types, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("regions called", fontsize=7)
    scaled = signals / np.maximum(signals.max(axis=1, keepdims=True), 1e-12)
    right.imshow(scaled, aspect="auto", cmap="viridis", interpolation="nearest")
    right.set_yticks(range(len(cell_types)), cell_types, fontsize=7)
    right.set_xlabel("called regions (sorted by cell type)", fontsize=7)
    for x in np.flatnonzero(labels[1:] != labels[:-1]) + 0.5:
        right.axvline(x, color="white", lw=0.6)
    return _save(fig, path)


def variant_effect_bars(scores: np.ndarray, z_scores: np.ndarray, names: list[str], groups: list[str],
                        stat: str, title: str, path: Path) -> list[Path]:
    """One variant's score in every track (top) and its z-score among the tracks of the same
    level (bottom), tracks in hierarchy order, one colour per level."""
    plt = _plt()
    levels = list(dict.fromkeys(groups))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(levels)}
    x = np.arange(len(names))
    fig, axes = plt.subplots(2, 1, figsize=(1.5 + 0.32 * len(names), 4.6), sharex=True)
    for ax, values, label in zip(axes, (scores, z_scores), (stat, f"{stat} z within level"), strict=True):
        ax.bar(x, np.nan_to_num(values), color=[colours[g] for g in groups])
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel(label, fontsize=8)
        for boundary in np.flatnonzero(np.array(groups[1:]) != np.array(groups[:-1])) + 0.5:
            ax.axvline(boundary, color="grey", lw=0.5, ls=":")
    axes[1].set_xticks(x, names, rotation=90, fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in levels]
    axes[0].legend(handles, levels, fontsize=6, loc="upper right")
    axes[0].set_title(title, fontsize=9)
    return _save(fig, path)


def variant_tracks(coordinates: np.ndarray, ref: np.ndarray, alt: np.ndarray, names: list[str], position: int,
                   title: str, path: Path) -> list[Path]:
    """Predicted reference (filled) and alternative (line) signal of several tracks around a
    variant, stacked, with the variant marked."""
    plt = _plt()
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.9 * n + 0.9), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.fill_between(coordinates, ref[:, i], step="mid", alpha=0.45, color="tab:blue", label="reference")
        ax.plot(coordinates, alt[:, i], color="tab:red", lw=1, drawstyle="steps-mid", label="alternative")
        ax.axvline(position, color="black", lw=0.6, ls="--")
        ax.set_ylabel(names[i], rotation=0, ha="right", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("position (bp)")
    return _save(fig, path)


def summary_bars(table: pd.DataFrame, title: str, path: Path) -> list[Path]:
    """Grouped bars: one group per row of ``table`` (index: (grouping, group)), one bar per
    column (heads and baselines), the values as given (mean Pearson per track); groupings are
    separated and named above the bars."""
    plt = _plt()
    keys, series = list(table.index), list(table.columns)
    rows = [k[-1] if isinstance(k, tuple) else k for k in keys]
    groupings = [k[0] if isinstance(k, tuple) else "" for k in keys]
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.5, 3.7 + 0.33 * len(rows) * max(len(series), 2))), 3.8))
    x = np.arange(len(rows))
    colours = plt.get_cmap("tab10")
    for i, column in enumerate(series):
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(values), width, label=column, color=colours(i % 10))
    ax.axhline(0, color="black", lw=0.6)
    starts = [i for i in range(len(rows)) if i == 0 or groupings[i] != groupings[i - 1]]
    for i, start in enumerate(starts):
        if start:
            ax.axvline(start - 0.5, color="grey", lw=0.6, ls=":")
        end = starts[i + 1] if i + 1 < len(starts) else len(rows)
        if groupings[start] not in ("", "all"):
            ax.text((start + end - 1) / 2, 1.0, groupings[start], transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7, color="dimgrey")
    ax.set_xticks(x, [str(r) for r in rows], rotation=30 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center",
                  fontsize=8)
    ax.set_ylabel("mean Pearson r per track")
    ax.set_title(title, fontsize=9, pad=14)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)


def pseudobulk_qc(qc: pd.DataFrame, path: Path) -> list[Path]:
    """Per pseudobulk group (rows of qc.tsv, by level): cells, median fragments per cell and the
    fraction of insertions in the blacklist, as given; groups left out drawn grey."""
    plt = _plt()
    panels = [("cells", "cells", True), ("median_fragments_per_cell", "median fragments per cell", True),
              ("fraction_blacklist", "fraction of insertions in the blacklist", False)]
    names = [f"{r.level}: {r.label}" for r in qc.itertuples()]
    kept = qc["status"].astype(str).eq("written").to_numpy()
    levels = list(dict.fromkeys(qc["level"]))
    colours = plt.get_cmap("tab10")
    colour = [colours(levels.index(level) % 10) if k else "lightgrey" for level, k in zip(qc["level"], kept, strict=True)]
    fig, axes = plt.subplots(1, 3, figsize=(11, max(2.5, 0.2 * len(qc) + 1.2)), sharey=True)
    y = np.arange(len(qc))
    for ax, (column, label, log) in zip(axes, panels, strict=True):
        values = pd.to_numeric(qc[column], errors="coerce").fillna(0).to_numpy(dtype=float)
        ax.barh(y, values, color=colour)
        if log and (values > 0).any():
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax.set_xscale("log")  # plain tick labels: log scale's mathtext labels take seconds to lay out
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(y, names, fontsize=_label_size(len(qc)))
    axes[0].invert_yaxis()
    return _save(fig, path)
