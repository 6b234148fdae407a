"""The call-dars stage's work (``stages/call_dars.py`` runs it):
cell-type-specific regions called from a run's own tracks, observed or predicted.

Candidate regions, then a rule (docs/interpretation.md):

- candidates: with ``peaks``, each peak (its signal: the mean of the bins it overlaps, in the
  target interval holding its centre); otherwise fixed-size regions of ``region_bins`` bins
  centred on local maxima: in each target interval, every run of ``region_bins`` consecutive
  bins is scored by its highest cell-type mean, runs that are the highest within
  ``region_bins - 1`` bins on either side are kept, then overlapping ones (across target
  intervals) are removed, highest score first;
- per candidate, the mean signal of each cell type of the level over its bins; the top cell
  type t; ``log2((s_t + pseudocount) / (s_versus + pseudocount))`` with s_versus the mean of
  the other cell types (``versus rest``) or the second highest (``versus second``);
- called for t when that log2 fold change is at least ``min_log2_fold_change`` and s_t at
  least ``min_signal``. Defaults: ``min_signal`` = the 90th percentile and ``pseudocount`` =
  the median of all signals (non-overlapping ``region_bins`` tiles x cell types): a region must
  be open in its cell type, and a background-level region cannot reach a large fold change.

The table (dars.csv: region, chrom, start, end, the label column, the fold change and each
cell type's signal) is what ``dar --regions`` and ``contributions --regions`` read.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fs import atomic_path, safe_filename, write_json_atomic
from ..genome.chroms import resolve_chroms
from ..genome.regions import read_regions
from ..plots.figures import FigureIndex
from ..results import Run
from ..rundir.config import RunConfig
from ..rundir.layout import CalledDarsFolder
from ..targets.table import cell_type_tracks

MAX_BACKGROUND_VALUES = 2_000_000  # signals kept (seeded sample) for the default percentile and median


@dataclass
class CallPlan:
    config: RunConfig
    run: Run
    name: str
    cell_types: list[str]
    columns: np.ndarray  # the level's tracks in the source array (targets store or head outputs)
    splits: list[str]
    peaks: pd.DataFrame | None

    @property
    def settings(self):
        return self.config.call_dars


def plan_call_dars(config: RunConfig) -> CallPlan:
    """Check the level's tracks, the source and the settings before any work."""
    d = config.call_dars
    run = Run.of(config, "call-dars")
    if not d.label_column:
        raise InputError("call-dars: pass --label-column COLUMN (the targets-table column naming each track's cell "
                         "type, e.g. subclass) and --tracks-where QUERY (the level, e.g. \"level == 'Subclass'\")")
    tracks = run.tracks
    if d.source == "predicted":
        head_index = run.head(d.head).check_compatible(run)
        tracks = tracks.iloc[head_index].reset_index(drop=True)
    chosen = cell_type_tracks(tracks, d.label_column, d.tracks_where, 2, "calling cell-type-specific regions")
    labels = chosen[d.label_column].astype(str)
    available = run.evaluation(d.head).splits if d.source == "predicted" else run.splits
    splits = d.splits or available
    missing = [s for s in splits if s not in available]
    if missing:
        what = f"head {d.head!r} was not evaluated on" if d.source == "predicted" else "the dataset has no split"
        raise InputError(f"call-dars: {what} {', '.join(missing)} (has {', '.join(available)})")
    if d.region_bins > run.geometry.n_bins:
        raise InputError(f"--region-bins {d.region_bins} exceeds the {run.geometry.n_bins} bins of a target interval")
    peaks = read_regions(d.peaks) if d.peaks is not None else None
    if peaks is not None:
        window_chroms = dict.fromkeys(c for split in run.splits for c in run.windows(split)["chrom"])
        aliases = d.chrom_aliases or run.dataset_config.chrom_aliases
        names = resolve_chroms(peaks["chrom"], window_chroms, aliases, str(d.peaks), "the run's dataset",
                               unknown="keep")
        peaks["chrom"] = [names[c] or c for c in peaks["chrom"]]  # no windows there: matches none
    name = d.name or ("observed" if d.source == "observed" else d.head)
    if safe_filename(name) != name:
        raise InputError(f"call-dars name {name!r}: use letters, digits, '-', '_' and '.' only")
    return CallPlan(config, run, name, list(labels), chosen.index.to_numpy(), splits, peaks)


def _signals(plan: CallPlan, split: str):
    run, d = plan.run, plan.settings
    values = run.targets(split) if d.source == "observed" else run.predictions(d.head, split)
    masks = run.masks(split) if d.source == "observed" else None
    return values, masks


def candidate_regions(plan: CallPlan) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(candidates: chrom, start, end, split, window, score; their signals (candidates, cell types);
    background signals for the default thresholds)."""
    d, g = plan.settings, plan.run.geometry
    m = d.region_bins
    rows, signals, background = [], [], []
    rng = np.random.default_rng(plan.config.seed)
    n_windows = sum(len(plan.run.windows(s)) for s in plan.splits)
    keep_fraction = min(1.0, MAX_BACKGROUND_VALUES / max(1, n_windows * (g.n_bins // m) * len(plan.cell_types)))
    for split in plan.splits:
        windows = plan.run.windows(split)
        values, masks = _signals(plan, split)
        peaks = _peaks_by_window(plan.peaks, windows) if plan.peaks is not None else None
        for w in range(len(windows)):
            if peaks is not None and w not in peaks:
                continue
            y = np.asarray(values[w])[:, plan.columns].astype(np.float64)  # (bins, cell types)
            masked = None if masks is None else np.asarray(masks[w])[:, plan.columns].any(axis=1)
            start = int(windows["start"].iloc[w])
            chrom = windows["chrom"].iloc[w]
            if peaks is not None:
                for a, b in peaks[w]:
                    first, last = (a - start) // g.bin_size, -(-(b - start) // g.bin_size)
                    first, last = max(first, 0), min(last, g.n_bins)
                    if last <= first or (masked is not None and masked[first:last].any()):
                        continue
                    s = y[first:last].mean(axis=0)
                    rows.append((chrom, a, b, split, w, s.max()))
                    signals.append(s)
                    background.append(s)
                continue
            runs = np.lib.stride_tricks.sliding_window_view(y, m, axis=0).mean(axis=-1)  # (bins - m + 1, cell types)
            tiles = runs[::m]
            if masked is not None:
                bad = np.lib.stride_tricks.sliding_window_view(masked, m).any(axis=-1)
                runs = np.where(bad[:, None], -np.inf, runs)
                tiles = tiles[~bad[::m]]
            background.append(tiles.reshape(-1)[rng.random(tiles.size) < keep_fraction])
            score = runs.max(axis=1)
            padded = np.concatenate([np.full(m - 1, -np.inf), score, np.full(m - 1, -np.inf)])
            neighbourhood = np.lib.stride_tricks.sliding_window_view(padded, 2 * m - 1).max(axis=1)
            peaks_here = np.flatnonzero((score >= neighbourhood) & np.isfinite(score))
            for j in peaks_here:
                rows.append((chrom, start + int(j) * g.bin_size, start + (int(j) + m) * g.bin_size, split, w,
                             float(score[j])))
                signals.append(runs[j])
    candidates = pd.DataFrame(rows, columns=["chrom", "start", "end", "split", "window", "score"])
    if candidates.empty:
        raise InputError(f"call-dars: no candidate region in {', '.join(plan.splits)}"
                         + (f" (no peak of {plan.settings.peaks} inside a target interval)" if plan.peaks is not None
                            else ""))
    signal_matrix = np.array(signals, dtype=np.float64).reshape(len(candidates), len(plan.cell_types))
    if plan.peaks is None:
        keep = _non_overlapping(candidates)
        candidates, signal_matrix = candidates.iloc[keep].reset_index(drop=True), signal_matrix[keep]
    return candidates, signal_matrix, np.concatenate([np.ravel(b) for b in background])


def _peaks_by_window(peaks: pd.DataFrame, windows: pd.DataFrame) -> dict[int, list[tuple[int, int]]]:
    """Each peak in the target interval holding its centre."""
    out: dict[int, list[tuple[int, int]]] = {}
    for chrom, part in peaks.groupby("chrom", sort=False):
        here = windows.index[windows["chrom"] == chrom].to_numpy()
        if not len(here):
            continue
        starts, ends = windows["start"].to_numpy()[here], windows["end"].to_numpy()[here]
        for a, b in zip(part["start"].to_numpy(), part["end"].to_numpy(), strict=True):
            centre = (a + b) // 2
            hit = np.flatnonzero((starts <= centre) & (centre < ends))
            if len(hit):
                out.setdefault(int(here[hit[0]]), []).append((int(a), int(b)))
    return out


def _non_overlapping(candidates: pd.DataFrame) -> np.ndarray:
    """Greedy: highest score first, dropping candidates overlapping a kept one (same chromosome)."""
    keep = []
    for _, part in candidates.groupby("chrom", sort=False):
        order = part.sort_values(["score", "start"], ascending=[False, True], kind="stable").index.to_numpy()
        taken: list[tuple[int, int]] = []
        starts = candidates["start"].to_numpy()
        ends = candidates["end"].to_numpy()
        for i in order:
            a, b = int(starts[i]), int(ends[i])
            k = bisect.bisect_left(taken, (a, b))
            if (k > 0 and taken[k - 1][1] > a) or (k < len(taken) and taken[k][0] < b):
                continue
            taken.insert(k, (a, b))
            keep.append(i)
    return np.sort(np.array(keep, dtype=int))


@dataclass(frozen=True)
class Rule:
    min_log2_fold_change: float
    min_signal: float
    pseudocount: float
    versus: str


def apply_rule(signals: np.ndarray, rule: Rule) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate: top cell type, its signal, the versus signal, the log2 fold change and whether called."""
    order = np.argsort(-signals, axis=1, kind="stable")
    top = order[:, 0]
    rows = np.arange(len(signals))
    s_top = signals[rows, top]
    if rule.versus == "second":
        s_versus = signals[rows, order[:, 1]]
    else:
        s_versus = (signals.sum(axis=1) - s_top) / (signals.shape[1] - 1)
    tiny = 1e-12
    lfc = np.log2(np.maximum(s_top + rule.pseudocount, tiny) / np.maximum(s_versus + rule.pseudocount, tiny))
    called = (lfc >= rule.min_log2_fold_change) & (s_top >= rule.min_signal)
    return top, s_versus, lfc, called


def build_called_dars(plan: CallPlan, out: CalledDarsFolder) -> dict:
    from ..plots import figures as draw

    d, cell_types = plan.settings, plan.cell_types
    candidates, signals, background = candidate_regions(plan)
    rule = Rule(d.min_log2_fold_change,
                float(np.percentile(background, 90)) if d.min_signal is None else d.min_signal,
                float(np.median(background)) if d.pseudocount is None else d.pseudocount, d.versus)
    top, s_versus, lfc, called = apply_rule(signals, rule)
    candidates[d.label_column] = np.array(cell_types)[top]
    candidates["log2_fold_change"] = lfc
    candidates["signal_top"] = signals[np.arange(len(signals)), top]
    candidates["signal_versus"] = s_versus
    candidates["called"] = called
    for c, cell in enumerate(cell_types):
        candidates[f"signal_{cell}"] = signals[:, c]
    candidates.insert(0, "region", candidates["chrom"] + ":" + candidates["start"].astype(str) + "-"
                      + candidates["end"].astype(str))
    table = candidates[called].drop(columns=["called", "score"])
    table = table.assign(_order=table[d.label_column].map({c: i for i, c in enumerate(cell_types)}))
    table = table.sort_values(["_order", "log2_fold_change"], ascending=[True, False], kind="stable")
    if d.max_per_cell_type:
        table = table.groupby("_order", sort=False).head(d.max_per_cell_type)
    table = table.drop(columns="_order").reset_index(drop=True)
    table.to_csv(out.table, index=False)
    with atomic_path(out.candidates) as tmp:
        candidates.to_csv(tmp, index=False, compression="gzip")
    counts = table[d.label_column].value_counts()
    summary = {"source": d.source if d.source == "observed" else f"predicted ({d.head})", "splits": plan.splits,
               "label_column": d.label_column, "cell_types": cell_types, "candidates": len(candidates),
               "regions": len(table), "per_cell_type": {c: int(counts.get(c, 0)) for c in cell_types},
               "rule": {"candidates": "peaks" if plan.peaks is not None else f"{d.region_bins}-bin local maxima",
                        "min_log2_fold_change": rule.min_log2_fold_change, "versus": rule.versus,
                        "min_signal": rule.min_signal, "pseudocount": rule.pseudocount,
                        "max_per_cell_type": d.max_per_cell_type}}
    write_json_atomic(out.summary, summary)
    if len(table):
        sig = table[[f"signal_{c}" for c in cell_types]].to_numpy().T
        paths = draw.called_dars_figure(np.array([summary["per_cell_type"][c] for c in cell_types]), cell_types, sig,
                                        table[d.label_column].to_numpy(), out.figures / "called_dars")
        index = FigureIndex(out.figures)
        index.add("called_dars", f"Called DARs per cell type ({summary['source']}), and each cell type's signal",
                  paths)
        index.write()
    print(f"call-dars: {len(table)} cell-type-specific regions of {len(candidates)} candidates ({summary['source']}; "
          + ", ".join(f"{c} {n}" for c, n in summary["per_cell_type"].items())
          + f"); rule: log2 fold change >= {rule.min_log2_fold_change:g} vs {rule.versus}, signal >= "
          f"{rule.min_signal:.3g}, pseudocount {rule.pseudocount:.3g}")
    return summary
