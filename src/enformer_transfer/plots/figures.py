"""Figures of the evaluation and the report. Each function draws given numbers and writes
PNG and SVG; the numbers come from ``evaluation``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..rundir.layout import FIGURE_INDEX


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
        write_text_atomic(self.folder / FIGURE_INDEX, json.dumps(self.entries, indent=2))
        return self.entries


def pearson_boxplot(per_track: pd.DataFrame, grouping: str | None, path: Path) -> list[Path]:
    """Per-track Pearson by split (and by group of ``grouping``), as the study's figures 1D/2B/3C."""
    plt = _plt()
    splits = list(dict.fromkeys(per_track["split"]))
    groups = ["all"] + (sorted(g for g in per_track[grouping].dropna().astype(str).unique() if g)
                        if grouping else [])
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups) * len(splits), 3.6), layout="constrained")
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
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.9 * n + 0.8), sharex=True, squeeze=False, layout="constrained")
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
    fig, ax = plt.subplots(figsize=(3.6, 3.4), layout="constrained")
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
    room = 0.6 * size * max((len(str(name)) for name in names), default=0) / 72  # inches for the tick labels
    fig, axes = plt.subplots(2 if stacked else 1, 1 if stacked else 2,
                             figsize=(side + 1.2 + room, 2 * (side + room) + 0.6) if stacked
                             else (2 * (side + room) + 1.6, side + room + 0.6),
                             squeeze=False, layout="constrained")
    for ax, matrix, title in zip(axes.ravel(), (observed, predicted), ("observed", "predicted"), strict=True):
        im = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest")
        ax.set_title(f"track x track correlation, {title}", fontsize=9)
        _sparse_ticks(ax, names, "x", size)
        _sparse_ticks(ax, names, "y", size)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6)
    return _save(fig, path)


def place_labels(ax, xs, ys, names: list[str], fontsize: float = 6, avoid: tuple | None = None) -> int:
    """Label points without overlapping labels: each label tries offsets around its point and is
    left out when none is free (inside the axes, clear of other labels and of the points in
    ``avoid``, (xs, ys) of every point drawn). Returns how many were placed."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    from matplotlib.transforms import Bbox

    marks = []
    if avoid is not None:
        points = np.column_stack([np.asarray(avoid[0], dtype=float), np.asarray(avoid[1], dtype=float)])
        points = points[np.isfinite(points).all(axis=1)]
        radius = 2.5 * fig.dpi / 72  # a marker of size 14 (points^2) is about 3.7 pt across
        marks = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
                 for x, y in ax.transData.transform(points)] if len(points) else []
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
            if inside and not any(box.overlaps(other) for other in placed + marks):
                placed.append(box)
                break
            text.remove()
    return len(placed)


def pearson_vs_property(values: np.ndarray, pearson: np.ndarray, names: list[str], xlabel: str,
                        path: Path, max_labels: int = 12) -> list[Path]:
    """Per-track Pearson against a track property; the best and worst tracks (and the extremes of
    the property) are labelled where their labels do not overlap."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.0), layout="constrained")
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
    place_labels(ax, values[chosen], pearson[chosen], [names[i] for i in chosen], avoid=(values, pearson))
    return _save(fig, path)


def pearson_by_position(position: pd.DataFrame, path: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
    for split, part in position.groupby("split", sort=False):
        ax.plot(part["bin"], part["pearson_mean_over_tracks"], label=split)
    ax.set_xlabel("bin position in the window")
    ax.set_ylabel("Pearson over windows (mean over tracks)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _zoom(ax, values: list[float], pad: float = 0.08) -> None:
    """The y range of ``values`` (padded): a change of 0.001 over 75 epochs shows as a change."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(finite):
        return
    low, high = float(finite.min()), float(finite.max())
    span = high - low or max(abs(high), 1e-6) * 0.01
    ax.set_ylim(low - pad * span, high + pad * span)


def training_curves(logs: pd.DataFrame, path: Path, start: float | None = None, kept_epoch: int | None = None,
                    kept_start: bool = False, start_label: str = "start") -> list[Path]:
    """Loss per epoch (train and valid, each on its own zoomed axis: the two differ in level) and
    the validation Pearson the kept checkpoint is chosen on, with ``start`` (its value before
    training: the ridge initialisation or the frozen head) as a dashed line and the kept epoch
    marked; ``kept_start``: the start itself was kept (training did not beat it)."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    panels = [c for c in ("train_loss", "val_loss", "val_pearson") if c in logs and logs[c].notna().any()]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.3 * max(len(panels), 1) + 0.4, 2.9),
                             squeeze=False, layout="constrained")
    titles = {"train_loss": "train loss", "val_loss": "validation loss", "val_pearson": "validation mean Pearson"}
    for ax, column in zip(axes[0], panels, strict=False):
        part = logs[["epoch", column]].dropna().groupby("epoch", as_index=False).last()
        ax.plot(part["epoch"], part[column], marker="o", ms=2.5, lw=1, color="tab:blue")
        shown = list(part[column])
        if column == "val_pearson":
            if start is not None and np.isfinite(start):
                ax.axhline(start, color="grey", ls="--", lw=1, label=f"{start_label} {start:.4f}")
                shown.append(start)
            if kept_epoch is not None and kept_epoch in set(part["epoch"]):
                value = float(part.loc[part["epoch"] == kept_epoch, column].iloc[0])
                ax.plot([kept_epoch], [value], marker="*", ms=11, color="tab:red", ls="",
                        label=f"kept: epoch {kept_epoch}, {value:.4f}")
            elif kept_start:
                ax.plot([], [], ls="--", color="grey", label="kept: the start (no epoch beat it)")
            ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
        elif kept_epoch is not None:
            ax.axvline(kept_epoch, color="tab:red", lw=0.8, ls=":")
        _zoom(ax, shown)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        if part["epoch"].nunique() == 1:
            ax.set_xlim(part["epoch"].iloc[0] - 0.5, part["epoch"].iloc[0] + 0.5)
        ax.set_title(titles[column], fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=6.5)
        ax.ticklabel_format(axis="y", useOffset=False)
    return _save(fig, path)


def weight_similarity_heatmap(similarity: np.ndarray, rows: list[str], columns: list[str], path: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(columns), 1 + 0.25 * len(rows)), layout="constrained")
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
    most open cell type (observed vs predicted; counts written in, a row without any region
    says so), and cell types x regions heatmaps with their colour bar."""
    plt = _plt()
    made = []
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.hist(pearson[~np.isnan(pearson)], bins=20, range=(-1, 1))
    ax.set_xlabel("Pearson across cell types, per region")
    ax.set_ylabel("regions")
    made += _save(fig, Path(folder) / "dar_pearson_histogram")
    n = len(cell_types)
    side = 2.0 + 0.42 * n
    fig, ax = plt.subplots(figsize=(side + 1.3, side), layout="constrained")
    confusion = np.asarray(confusion)
    im = ax.imshow(confusion, cmap="Blues", vmin=0)
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                dark = confusion[i, j] > 0.6 * confusion.max()
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        if not confusion[i].any():
            ax.text((n - 1) / 2, i, "no region most open here (observed)", ha="center", va="center", fontsize=6.5,
                    color="dimgrey", style="italic")
    ax.set_xticks(range(n), cell_types, rotation=90, fontsize=8)
    ax.set_yticks(range(n), cell_types, fontsize=8)
    ax.set_xlabel("most open, predicted", fontsize=8)
    ax.set_ylabel("most open, observed", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="regions")
    made += _save(fig, Path(folder) / "dar_confusion")
    fig, axes = plt.subplots(2, 1, figsize=(10, 1.6 + 0.7 * n), sharex=True, layout="constrained")
    high = float(np.nanmax([np.nanmax(observed), np.nanmax(predicted)])) if observed.size else 1.0
    for ax, matrix, title in zip(axes, (observed, predicted), ("observed", "predicted"), strict=True):
        im = ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=high or 1.0)
        ax.set_yticks(range(n), cell_types, fontsize=8)
        ax.set_title(f"{title}: cell types x regions (sorted by DAR label)", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    axes[-1].set_xlabel("regions, sorted by their DAR label (white lines separate the labels)", fontsize=8)
    boundaries = np.flatnonzero(region_labels[1:] != region_labels[:-1]) + 0.5
    for ax in axes:
        for x in boundaries:
            ax.axvline(x, color="white", lw=0.8)
    edges = [-0.5, *boundaries, len(region_labels) - 0.5]
    if len(region_labels) and len(edges) <= 40:  # each block named above it (the label its regions carry)
        top = axes[0].secondary_xaxis("top")
        points_per_region = 8.3 * 72 / len(region_labels)  # about 8.3 in of heatmap
        blocks = [((a + b) / 2, str(region_labels[int(np.ceil(a))])) for a, b in zip(edges[:-1], edges[1:], strict=True)
                  if (b - a) * points_per_region >= 0.62 * 7 * len(str(region_labels[int(np.ceil(a))])) + 4]
        top.set_xticks([x for x, _ in blocks], [name for _, name in blocks], fontsize=7)  # narrow blocks unnamed
        top.tick_params(length=0)
    fig.colorbar(im, ax=list(axes), shrink=0.9, label="mean signal in the region's bins")
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


MOTIF_LABEL_WIDTH = 18  # longer motif names (consensus strings) are cut, with an ellipsis, on an axis


def motif_importance_heatmap(importance: np.ndarray, rows: list[str], columns: list[str], path: Path) -> list[Path]:
    """Cell types (attributed tracks) x motifs: the importance of each motif's patterns, blank
    where a cell type has no pattern of the motif. Motif names longer than ``MOTIF_LABEL_WIDTH``
    (unnamed patterns go by their consensus) are shortened with an ellipsis; the full names are in
    the patterns table."""
    from .labels import shorten

    plt = _plt()
    fig, ax = plt.subplots(figsize=(2.6 + 0.4 * len(columns), 2.0 + 0.32 * len(rows)), layout="constrained")
    masked = np.ma.masked_invalid(np.asarray(importance, dtype=float))
    im = ax.imshow(masked, aspect="auto", cmap="magma_r", interpolation="nearest")
    ax.set_xticks(range(len(columns)), [shorten(c, MOTIF_LABEL_WIDTH) for c in columns], rotation=60, ha="right",
                  rotation_mode="anchor", fontsize=7)
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
                                      gridspec_kw={"width_ratios": [1, 4]}, layout="constrained")
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
    fig, axes = plt.subplots(2, 1, figsize=(2.5 + 0.32 * len(names), 4.6), sharex=True, layout="constrained")
    for ax, values, label in zip(axes, (scores, z_scores), (stat, f"{stat} z within level"), strict=True):
        ax.bar(x, np.nan_to_num(values), color=[colours[g] for g in groups])
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel(label, fontsize=8)
        for boundary in np.flatnonzero(np.array(groups[1:]) != np.array(groups[:-1])) + 0.5:
            ax.axvline(boundary, color="grey", lw=0.5, ls=":")
    axes[1].set_xticks(x, names, rotation=90, fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in levels]
    # beside the bars, never over one
    axes[0].legend(handles, levels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[0].set_title(title, fontsize=9)
    return _save(fig, path)


def variant_tracks(coordinates: np.ndarray, ref: np.ndarray, alt: np.ndarray, names: list[str], position: int,
                   title: str, path: Path) -> list[Path]:
    """Predicted reference (filled) and alternative (line) signal of several tracks around a
    variant, stacked, with the variant marked."""
    plt = _plt()
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.9 * n + 0.9), sharex=True, squeeze=False, layout="constrained")
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
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.5, 3.7 + 0.33 * len(rows) * max(len(series), 2))), 3.8),
                           layout="constrained")
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


def gene_scatters(observed: np.ndarray, predicted: np.ndarray, names: list[str], pearsons: list[float],
                  path: Path) -> list[Path]:
    """Observed vs predicted log1p expression across genes, one panel per track (genes x tracks)."""
    plt = _plt()
    n = len(names)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), layout="constrained", squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        ax.scatter(observed[:, k], predicted[:, k], s=4, alpha=0.5, linewidths=0)
        r = "n/a" if not np.isfinite(pearsons[k]) else f"{pearsons[k]:.3f}"
        ax.set_title(f"{names[k]}: r = {r}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("observed log1p", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted log1p", fontsize=7)
    return _save(fig, path)


def gene_specificity_heatmap(observed: np.ndarray, predicted: np.ndarray, genes: list[str], tracks: list[str],
                             path: Path) -> list[Path]:
    """Genes x tracks, log1p expression centred per gene over its level's tracks, observed and predicted."""
    plt = _plt()
    limit = float(np.nanmax(np.abs(np.concatenate([observed.ravel(), predicted.ravel()])))) if observed.size else 1.0
    size = _label_size(max(len(genes), len(tracks)))
    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.18 * len(tracks) * 2 + 2, 1.5 + 0.14 * len(genes)),
                             layout="constrained", squeeze=False)
    for ax, values, title in zip(axes[0], (observed, predicted), ("observed", "predicted"), strict=True):
        image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit or -1, vmax=limit or 1,
                          interpolation="nearest")
        ax.set_title(f"{title} (centred log1p)", fontsize=8)
        _sparse_ticks(ax, tracks, "x", size)
        _sparse_ticks(ax, genes, "y", size)
    fig.colorbar(image, ax=axes[0, -1], shrink=0.6)
    return _save(fig, path)
