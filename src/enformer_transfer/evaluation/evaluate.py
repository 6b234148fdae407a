"""Stage 5, evaluate: a head's predictions for every window of each split, stored and scored.

Writes RUN_DIR/evaluation/NAME/: predictions.zarr (one array per split), per_track.csv,
per_level.csv, bin_position.csv, correlations_{split}.npz, summary.json, figures/.
Baselines sit in the same tables: the ridge head, the backbone's best-matching own track
(chosen on valid; "zero-shot"), and the same head on another run (a random backbone).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._progress import Progress
from ..data import store
from ..data.targets_table import metadata_columns
from ..errors import InputError
from ..provenance import StageDir, write_json_atomic
from .metrics import AcrossTracksPerBin, PearsonPerTrack, SplitMetrics

log = logging.getLogger("enformer_transfer")

PREDICTIONS_STORE = "predictions.zarr"
F16_MAX = 65504.0
WINDOWS_PER_STEP = 8


def grouping_columns(tracks: pd.DataFrame) -> list[str]:
    """Metadata columns that group tracks (cell-type levels): text columns with at least two
    distinct values and fewer distinct values than tracks (empty = not at that level)."""
    out = []
    for col in metadata_columns(tracks):
        values = tracks[col].astype(str).replace({"nan": "", "None": ""})
        values = values[values != ""]
        if values.empty or pd.api.types.is_numeric_dtype(tracks[col]):
            continue
        counts = values.value_counts()
        if 2 <= len(counts) < len(tracks):
            out.append(col)
    return out


def _windows_of(run, split: str, head, track_index: np.ndarray):
    """Yield (start, stop, predictions, observed, mask) over a split, a few windows at a time."""
    emb = run.embeddings(split)
    targets = run.targets(split)
    masks = run.masks(split)
    for start in range(0, emb.shape[0], WINDOWS_PER_STEP):
        stop = min(emb.shape[0], start + WINDOWS_PER_STEP)
        pred = head.predict(np.asarray(emb[start:stop]))
        obs = np.asarray(targets[start:stop])[..., track_index]
        mask = None if masks is None else np.asarray(masks[start:stop])[..., track_index]
        yield start, stop, pred, obs, mask


def evaluate_head(run_dir: Path | str, name: str, splits: list[str] | None = None, force: bool = False,
                  progress: bool = True, compare_run: Path | str | None = None,
                  enformer_targets: Path | str | None = None, plot_regions: list[str] | None = None) -> Path:
    """Predict and score head ``name`` on ``splits`` (default: every embedded split but train).

    ``plot_regions`` ('chr:start-end' or BED files): also draw observed vs predicted tracks of
    every evaluated window overlapping them."""
    from ..run import Run

    started = time.time()
    run = Run(run_dir)
    head = run.head(name)
    track_index = head.check_compatible(run)
    embedded = run.stage_record("embeddings")["config"]["embed"]["splits"]
    splits = splits or [s for s in ("test", "valid") if s in embedded] or embedded
    missing = [s for s in splits if s not in embedded]
    if missing:
        raise InputError(f"evaluate: split(s) {', '.join(missing)} were not embedded (embedded: {', '.join(embedded)})")
    if run.embedding_bins("train") is not None and "train" in splits:
        raise InputError("evaluate: the train split kept only a fraction of its bins; evaluate valid/test")
    head_record = run.stage_record(f"heads/{name}")
    key = {"head": head_record["key_digest"], "splits": splits, "plot_regions": plot_regions,
           "compare_run": str(compare_run) if compare_run else None,
           "enformer_targets": str(enformer_targets) if enformer_targets else None}
    stage = StageDir(run.path / "evaluation", name, key)
    if stage.check(force) == "done":
        log.info("evaluate: %s up to date in %s (use --force to redo)", name, stage.final)
        return stage.final
    out = stage.start()
    tracks = run.tracks.iloc[track_index].reset_index(drop=True)
    n_tracks, n_bins = len(track_index), int(run.targets(splits[0]).shape[1])

    rows, positions, summary = [], [], {"head": name, "splits": {}, "tool": "enformer-transfer"}
    bar = Progress(sum(run.embeddings(s).shape[0] for s in splits), f"evaluate {name}", enabled=progress)
    for split in splits:
        n_windows = int(run.embeddings(split).shape[0])
        pred_store = store.create_array(out / PREDICTIONS_STORE, split, (n_windows, n_bins, n_tracks),
                                        (1, n_bins, n_tracks), "float16")
        metrics = SplitMetrics(n_tracks, n_bins, n_windows, seed=0)
        for start, stop, pred, obs, mask in _windows_of(run, split, head, track_index):
            stored = np.clip(pred, -F16_MAX, F16_MAX).astype(np.float16)
            pred_store[start:stop] = stored
            metrics.update(stored, obs, mask)  # scored as stored: anyone can recompute it from the store
            bar.update(stop - start)
        pred_means, obs_means = metrics.track_means()
        across = AcrossTracksPerBin(obs_means, pred_means)
        targets, masks = run.targets(split), run.masks(split)
        for start in range(0, n_windows, WINDOWS_PER_STEP):
            stop = min(n_windows, start + WINDOWS_PER_STEP)
            across.update(np.asarray(pred_store[start:stop]).astype(np.float64),
                          np.asarray(targets[start:stop])[..., track_index],
                          None if masks is None else np.asarray(masks[start:stop])[..., track_index])
        per_track = metrics.per_track()
        obs_corr, pred_corr = metrics.correlation_matrices()
        np.savez(out / f"correlations_{split}.npz", observed=obs_corr, predicted=pred_corr,
                 identifiers=np.array(tracks["identifier"]))
        table = tracks.drop(columns=["file"]).copy()
        table.insert(0, "split", split)
        for metric, values in per_track.items():
            table[metric] = values
        table["note"] = np.where(np.isnan(per_track["pearson"]), "zero variance: no correlation", "")
        rows.append(table)
        by_position = metrics.per_position()  # NaN where a position has no unmasked bins
        counted = (~np.isnan(by_position)).sum(axis=1)
        mean_by_position = np.where(counted > 0, np.nansum(by_position, axis=1) / np.maximum(counted, 1), np.nan)
        positions.append(pd.DataFrame({"split": split, "bin": np.arange(n_bins),
                                       "pearson_mean_over_tracks": mean_by_position}))
        summary["splits"][split] = {
            "windows": n_windows,
            "pearson_mean": _nanmean(per_track["pearson"]),
            "pearson_log1p_mean": _nanmean(per_track["pearson_log1p"]),
            "spearman_mean": _nanmean(per_track["spearman"]),
            "r2_mean": _nanmean(per_track["r2"]),
            "pearson_window_median_mean": _nanmean(per_track["pearson_window_median"]),
            "across_tracks_per_bin": across.summary(),
            "zero_variance_tracks": list(tracks["identifier"][np.isnan(per_track["pearson"])]),
        }
    per_track = pd.concat(rows, ignore_index=True)
    per_track = _add_baselines(run, name, head, track_index, splits, per_track, summary, compare_run, enformer_targets)
    per_track.to_csv(out / "per_track.csv", index=False)
    pd.concat(positions).to_csv(out / "bin_position.csv", index=False)
    per_level = per_level_table(per_track, grouping_columns(tracks))
    per_level.to_csv(out / "per_level.csv", index=False)
    summary["per_level"] = per_level.to_dict("records")
    write_json_atomic(out / "summary.json", _jsonable(summary))
    from .figures import evaluation_figures

    evaluation_figures(run, name, out, per_track, splits, track_index, plot_regions)
    final = stage.finish({"head": name, "splits": splits}, {"splits": _jsonable(summary["splits"])}, started)
    line = ", ".join(f"{s} {summary['splits'][s]['pearson_mean']:.3f}" for s in splits)
    print(f"evaluate: head {name!r} mean Pearson over tracks: {line} -> {final}")
    return final


def per_level_table(per_track: pd.DataFrame, groupings: list[str]) -> pd.DataFrame:
    """Mean / median per-track metrics per split and per group of every grouping column."""
    value_cols = [c for c in per_track.columns if c == "pearson" or c.endswith("_pearson") or
                  c in ("pearson_log1p", "spearman", "r2")]
    rows = []
    for column in groupings:
        data = per_track[per_track[column].astype(str).replace({"nan": "", "None": ""}) != ""]
        for (split, group), part in data.groupby(["split", column], sort=False):
            row = {"split": split, "grouping": column, "group": group, "n_tracks": len(part)}
            for col in value_cols:
                row[f"{col}_mean"] = part[col].mean()
            row["pearson_median"] = part["pearson"].median()
            rows.append(row)
    return pd.DataFrame(rows)


def _add_baselines(run, name, head, track_index, splits, per_track, summary, compare_run, enformer_targets):
    # the ridge head
    ridge = [h for h in run.heads() if h != name and run.head(h).metadata["model"] == "ridge"]
    if ridge:
        ridge_head = run.head(ridge[0])
        ridge_index = ridge_head.check_compatible(run)
        if list(ridge_index) == list(track_index):
            for split in splits:
                metric = PearsonPerTrack(len(track_index))
                for _, _, pred, obs, mask in _windows_of(run, split, ridge_head, track_index):
                    metric.update(pred, obs, mask)
                per_track.loc[per_track["split"] == split, "ridge_pearson"] = metric.pearson()
            summary["baselines"] = summary.get("baselines", {}) | {"ridge": ridge[0]}
    # the backbone's own tracks, best match chosen on valid
    if run.backbone_predictions("valid") is not None and all(run.backbone_predictions(s) is not None for s in splits):
        choice = _zero_shot_choice(run, track_index)
        names = _enformer_track_names(enformer_targets, int(run.backbone_predictions("valid").shape[-1]))
        for split in splits:
            per_track.loc[per_track["split"] == split, "zero_shot_pearson"] = _zero_shot_pearson(run, split, track_index, choice)
            per_track.loc[per_track["split"] == split, "zero_shot_track"] = [names[c] for c in choice]
        summary["baselines"] = summary.get("baselines", {}) | {"zero_shot": "backbone track with the best valid Pearson"}
    # the same head on another run (for example a randomly initialised backbone)
    if compare_run:
        other = Path(compare_run) / "evaluation" / name / "per_track.csv"
        if not other.is_file():
            raise InputError(f"--compare-run: {other} not found; evaluate head {name!r} in {compare_run} first")
        theirs = pd.read_csv(other)[["split", "identifier", "pearson"]].rename(columns={"pearson": "compare_run_pearson"})
        per_track = per_track.merge(theirs, on=["split", "identifier"], how="left")
        summary["baselines"] = summary.get("baselines", {}) | {"compare_run": str(compare_run)}
    for split in splits:
        part = per_track[per_track["split"] == split]
        for col in ("ridge_pearson", "zero_shot_pearson", "compare_run_pearson"):
            if col in part:
                summary["splits"][split][f"{col}_mean"] = _nanmean(part[col].to_numpy(dtype=float))
    return per_track


def _zero_shot_choice(run, track_index) -> np.ndarray:
    """For each new track, the backbone output track with the highest pooled Pearson on valid."""
    backbone = run.backbone_predictions("valid")
    targets = run.targets("valid")
    k = int(backbone.shape[-1])
    n = len(track_index)
    sx, sxx = np.zeros(k), np.zeros(k)
    sy, syy = np.zeros(n), np.zeros(n)
    sxy = np.zeros((k, n))
    count = 0
    for start in range(backbone.shape[0]):  # one window at a time: 896 x 5,313 float64 is 38 MB
        x = np.asarray(backbone[start], dtype=np.float64).reshape(-1, k)
        y = np.asarray(targets[start])[..., track_index].astype(np.float64).reshape(-1, n)
        sx += x.sum(0)
        sxx += (x * x).sum(0)
        sy += y.sum(0)
        syy += (y * y).sum(0)
        sxy += x.T @ y
        count += len(x)
    cov = sxy / count - np.outer(sx / count, sy / count)
    vx = sxx / count - (sx / count) ** 2
    vy = syy / count - (sy / count) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(np.outer(vx, vy))
    r[~np.isfinite(r)] = -np.inf
    return np.argmax(r, axis=0)


def _zero_shot_pearson(run, split, track_index, choice) -> np.ndarray:
    backbone, targets = run.backbone_predictions(split), run.targets(split)
    metric = PearsonPerTrack(len(track_index))
    for start in range(0, backbone.shape[0], WINDOWS_PER_STEP):
        x = np.asarray(backbone[start : start + WINDOWS_PER_STEP])[..., choice]
        metric.update(x, np.asarray(targets[start : start + WINDOWS_PER_STEP])[..., track_index])
    return metric.pearson()


def _enformer_track_names(path, n: int) -> list[str]:
    if path is None:
        return [f"backbone_track_{i}" for i in range(n)]
    table = pd.read_csv(path, sep="\t")
    if len(table) != n:
        raise InputError(f"{path}: {len(table)} tracks but the backbone head has {n}")
    return [f"{d} ({i})" for i, d in zip(table["identifier"], table["description"], strict=True)]


def _nanmean(values) -> float | None:
    values = np.asarray(values, dtype=float)
    ok = values[~np.isnan(values)]
    return float(ok.mean()) if len(ok) else None


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
