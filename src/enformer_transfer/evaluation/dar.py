"""DAR analysis: do predictions recover differentially accessible regions between cell types?

reference.md section 8. Regions specific to one cell type (e.g. Bakken et al.'s per-subclass
tables) are intersected with the target intervals of a split (intersections >= 256 bp);
each region's bins are averaged, observed and predicted, for every cell-type track of one
level; per region: the Pearson across cell types, and whether the most open cell type
observed is the most open predicted (confusion matrix, fraction of agreement).

Statistics (summary.json and the printed line): the agreement of the most open cell type,
observed vs predicted, against chance: a permutation p-value, ``(1 + #{permuted >= observed})
/ (1 + permutations)``, permuting the predicted top cell types across regions (both tables of
tops keep their frequencies, so chance is what they imply, not 1 / cell types; the
permutations' mean agreement is reported as the null); the same for the predicted top vs the
DAR label; and a percentile bootstrap interval of the median Pearson across cell types,
resampling regions with replacement. All seeded with the run's seed.

Bin rule: ``contained`` (default) = the bins fully inside the region; ``study`` = the
study's ``start_bin = ceil((a - 1) / 128 + 1)``, ``stop_bin = floor(b / 128)`` inclusive,
which is the contained set shifted one bin downstream (a quirk). Regions with fewer than
two bins are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fs import write_json_atomic
from ..genome.chroms import resolve_chroms
from ..genome.regions import read_dar_table
from ..plots import figures as draw
from ..plots.figures import FigureIndex
from ..results import Run
from ..rundir.config import RunConfig
from ..rundir.layout import DarFolder
from ..targets.table import cell_type_tracks


def region_bins(a: int, b: int, bin_size: int, rule: str = "contained") -> np.ndarray:
    """Bin indices of a region [a, b) given relative to the target interval start."""
    if rule == "study":
        first, last = math.ceil((a - 1) / bin_size + 1), math.floor(b / bin_size)
    elif rule == "contained":
        first, last = math.ceil(a / bin_size), math.floor(b / bin_size) - 1
    else:
        raise InputError(f"unknown bin rule {rule!r} (use contained or study)")
    return np.arange(first, last + 1)


def permutation_test(observed: np.ndarray, predicted: np.ndarray, permutations: int,
                     rng: np.random.Generator) -> tuple[float, float]:
    """(p-value, mean null agreement) of ``mean(observed == predicted)`` against permutations of
    ``predicted`` across regions; p = (1 + #{null >= observed}) / (1 + permutations)."""
    observed, predicted = np.asarray(observed), np.asarray(predicted)
    agreement = float(np.mean(observed == predicted))
    if permutations == 0 or len(observed) == 0:
        return float("nan"), float("nan")
    null = np.array([np.mean(observed == rng.permutation(predicted)) for _ in range(permutations)])
    return float((1 + np.sum(null >= agreement - 1e-12)) / (1 + permutations)), float(null.mean())


def bootstrap_interval(values: np.ndarray, resamples: int, confidence: float,
                       rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (NaN ignored), resampling with replacement."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if resamples == 0 or len(values) == 0:
        return float("nan"), float("nan")
    medians = np.median(values[rng.integers(0, len(values), size=(resamples, len(values)))], axis=1)
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


@dataclass
class DarPlan:
    config: RunConfig
    run: Run
    regions: pd.DataFrame
    cell_types: list[str]
    columns: np.ndarray  # the level's tracks among the head's outputs
    track_columns: np.ndarray  # the same tracks in the targets store
    unknown_labels: list[str]
    splits: list[str]


def plan_dar(config: RunConfig) -> DarPlan:
    """Check the DAR table, the level's tracks and the evaluation before any work."""
    d = config.dar
    run = Run.of(config, "dar")
    if d.regions is None or d.label_column is None:
        raise InputError("dar: pass --regions TABLE (region or chrom/start/end, and a cell-type label) and "
                         "--label-column COLUMN (e.g. subclass)")
    head = run.head(d.head)
    evaluation = run.evaluation(d.head)
    head_index = head.check_compatible(run)  # the head's outputs as positions in the run's tracks
    head_tracks = run.tracks.iloc[head_index].reset_index(drop=True)
    chosen = cell_type_tracks(head_tracks, d.label_column, d.tracks_where, 3, "a correlation across cell types")
    labels = chosen[d.label_column].astype(str)
    cell_types = list(labels)
    columns = chosen.index.to_numpy()
    regions = read_dar_table(d.regions, d.label_column)
    window_chroms = dict.fromkeys(c for split in run.splits for c in run.windows(split)["chrom"])
    aliases = d.chrom_aliases or run.dataset_config.chrom_aliases
    names = resolve_chroms(regions["chrom"], window_chroms, aliases, str(d.regions), "the run's dataset",
                           unknown="keep")
    regions["chrom"] = [names[c] or c for c in regions["chrom"]]  # no windows there: matches none
    unknown = sorted(set(regions["label"]) - set(cell_types))
    regions = regions[regions["label"].isin(cell_types)]
    splits = d.splits or evaluation.splits
    missing = [s for s in splits if s not in evaluation.splits]
    if missing:
        raise InputError(f"dar: head {d.head!r} was not evaluated on {', '.join(missing)} "
                         f"(evaluated: {', '.join(evaluation.splits)})")
    return DarPlan(config, run, regions, cell_types, columns, head_index[columns], unknown, splits)


def build_dar(plan: DarPlan, out: DarFolder) -> dict:
    d, run, cell_types = plan.config.dar, plan.run, plan.cell_types
    geometry = run.geometry
    rows, observed_means, predicted_means = [], [], []
    for split in plan.splits:
        windows = run.windows(split)
        targets, predictions = run.targets(split), run.predictions(d.head, split)
        for region in plan.regions.itertuples(index=False):
            hits = windows.index[(windows["chrom"] == region.chrom) & (windows["start"] < region.end)
                                 & (windows["end"] > region.start)]
            for w in hits:
                window = windows.loc[w]
                a, b = max(region.start, window["start"]), min(region.end, window["end"])
                if b - a < d.min_overlap:
                    continue
                bins = region_bins(a - window["start"], b - window["start"], geometry.bin_size, d.bin_rule)
                bins = bins[(bins >= 0) & (bins < geometry.n_bins)]
                if len(bins) < 2:
                    continue
                obs = np.asarray(targets[w])[bins][:, plan.track_columns].astype(np.float64).mean(0)
                pred = np.asarray(predictions[w])[bins][:, plan.columns].astype(np.float64).mean(0)
                with np.errstate(invalid="ignore"):
                    r = np.corrcoef(obs, pred)[0, 1] if obs.std() > 0 and pred.std() > 0 else np.nan
                rows.append({"chrom": region.chrom, "start": region.start, "end": region.end, "label": region.label,
                             "split": split, "window": int(w), "bins": len(bins),
                             "pearson_across_cell_types": r,
                             "observed_top": cell_types[int(np.argmax(obs))],
                             "predicted_top": cell_types[int(np.argmax(pred))]})
                observed_means.append(obs)
                predicted_means.append(pred)
    if not rows:
        raise InputError(f"{d.regions}: no region overlaps a target interval of {', '.join(plan.splits)} by "
                         f">= {d.min_overlap} bp with 2 or more bins")
    table = pd.DataFrame(rows)
    table.to_csv(out.regions, index=False)
    confusion = pd.crosstab(pd.Categorical(table["observed_top"], cell_types),
                            pd.Categorical(table["predicted_top"], cell_types), dropna=False)
    confusion.index.name, confusion.columns.name = "observed_top", "predicted_top"
    confusion.to_csv(out.confusion)
    agreement = float((table["observed_top"] == table["predicted_top"]).mean())
    label_agreement = float((table["predicted_top"] == table["label"]).mean())
    rng = np.random.default_rng(plan.config.seed)
    p_top, null_top = permutation_test(table["observed_top"].to_numpy(), table["predicted_top"].to_numpy(),
                                       d.permutations, rng)
    p_label, null_label = permutation_test(table["label"].to_numpy(), table["predicted_top"].to_numpy(),
                                           d.permutations, rng)
    low, high = bootstrap_interval(table["pearson_across_cell_types"].to_numpy(), d.bootstrap, d.confidence, rng)
    summary = {"regions": len(table), "cell_types": cell_types, "bin_rule": d.bin_rule, "splits": plan.splits,
               "labels_without_track": plan.unknown_labels,
               "pearson_across_cell_types_median": float(table["pearson_across_cell_types"].median()),
               "pearson_across_cell_types_median_ci": [low, high],
               "top_agreement_observed_predicted": agreement,
               "top_agreement_permutation_p": p_top,
               "top_agreement_permutation_null": null_top,
               "predicted_top_is_dar_label": label_agreement,
               "predicted_top_is_dar_label_permutation_p": p_label,
               "predicted_top_is_dar_label_permutation_null": null_label,
               "chance_agreement": 1 / len(cell_types),
               "permutations": d.permutations, "bootstrap": d.bootstrap, "confidence": d.confidence}
    write_json_atomic(out.summary, summary)
    order = np.argsort(table["label"].to_numpy(), kind="stable")
    paths = draw.dar_figures(table["pearson_across_cell_types"].to_numpy(), confusion.to_numpy(), cell_types,
                             np.array(observed_means)[order].T, np.array(predicted_means)[order].T,
                             table["label"].to_numpy()[order], out.figures)
    index = FigureIndex(out.figures)
    captions = {"dar_pearson_histogram": "Pearson across cell types, per region",
                "dar_confusion": "Most open cell type, observed vs predicted",
                "dar_heatmaps": "Cell types x regions, observed and predicted (regions sorted by DAR label)"}
    for name, caption in captions.items():
        index.add(name, caption, [p for p in paths if p.stem == name])
    index.write()
    interval = (f" [{100 * d.confidence:g}% CI {low:.3f}-{high:.3f}]" if d.bootstrap else "")
    test = f", permutation null {100 * null_top:.1f}%, p = {p_top:.3g}" if d.permutations else ""
    print(f"dar: {summary['regions']} regions, median Pearson across cell types "
          f"{summary['pearson_across_cell_types_median']:.3f}{interval}, most open cell type agrees in "
          f"{100 * agreement:.1f}% (chance {100 * summary['chance_agreement']:.1f}%{test})")
    return summary
