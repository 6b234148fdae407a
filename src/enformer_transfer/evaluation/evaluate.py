"""The evaluate stage's work (``stages/evaluate.py`` runs it):
a head's predictions for every window of each split, stored and scored.

Writes RUN_DIR/evaluation/NAME/: predictions.zarr (one array per split), per_track.csv,
per_level.csv, bin_position.csv, correlations_{split}.npz, summary.json, figures/.
Baselines sit in the same tables: the ridge head, the backbone's best-matching own track
(chosen on valid; "zero-shot"), and the same head on another run (a random backbone).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fs import write_json_atomic
from ..metrics import AcrossTracksPerBin, PearsonPerTrack, SplitMetrics
from ..progress import Progress
from ..results import Run
from ..rundir import store
from ..rundir.config import EvaluateConfig, RunConfig
from ..rundir.layout import EvaluationFolder, RunLayout, finished
from ..targets.table import grouping_columns

log = logging.getLogger("enformer_transfer")

WINDOWS_PER_STEP = 8


@dataclass
class EvaluationPlan:
    config: RunConfig
    run: Run
    head: object  # heads.checkpoint.Head
    track_index: np.ndarray
    splits: list[str]
    ridge: str | None  # the ridge head used as baseline
    compare: Path | None  # the other run's per_track.csv
    model: object = None  # the SequenceModel of a fine-tuned head (it runs from sequence)
    genes: pd.DataFrame | None = None  # --genes: the GTF's genes placed in the windows of genes_split
    genes_split: str | None = None
    compare_genes: Path | None = None  # the other run's per_track_genes.csv

    @property
    def settings(self) -> EvaluateConfig:
        return self.config.evaluate


def plan_evaluation(config: RunConfig) -> EvaluationPlan:
    """Check every input of the evaluation before any prediction."""
    e = config.evaluate
    run = Run.of(config, "evaluate")
    head = run.head(e.head)
    track_index = head.check_compatible(run)
    # a fine-tuned model runs from sequence: every split of the dataset can be evaluated
    embedded = run.splits if head.finetuned else run.embedded_splits
    splits = e.splits or [s for s in ("test", "valid") if s in embedded] or embedded
    missing = [s for s in splits if s not in embedded]
    if missing:
        raise InputError(f"evaluate: split(s) {', '.join(missing)} were not embedded (embedded: {', '.join(embedded)})")
    if "train" in splits and not head.finetuned and run.embedding_bins("train") is not None:
        raise InputError("evaluate: the train split kept only a fraction of its bins; evaluate valid/test")
    if e.enformer_targets is not None:
        if not e.enformer_targets.is_file():
            raise InputError(f"{e.enformer_targets}: --enformer-targets file not found")
        outputs = run.backbone_outputs("valid")
        if outputs is None:
            raise InputError(
                "evaluate --enformer-targets names the backbone's own tracks, but embed ran without "
                f"--store-backbone-outputs; rerun 'enformer-transfer embed {run.path} --store-backbone-outputs "
                "--force' (or leave out --enformer-targets)")
        _enformer_track_names(e.enformer_targets, int(outputs.shape[-1]))
    from ..genome.regions import parse_regions

    parse_regions(e.plot_regions)
    ridge = _ridge_baseline(run, e.head, track_index)
    compare = None
    if e.compare_run is not None:
        other = RunLayout(e.compare_run).evaluation(e.head)
        if not finished(other.path):
            raise InputError(f"--compare-run: {other.path} not finished; evaluate head {e.head!r} in "
                             f"{e.compare_run} first")
        compare = other.per_track
    model = None
    if head.finetuned:
        from ..backbone.model import load_sequence_model

        model, _ = load_sequence_model(run, e.head)
    genes, genes_split, compare_genes = None, None, None
    if e.genes is not None:
        genes_split = "test" if "test" in splits else splits[0]
        genes = plan_genes(run, e, track_index, genes_split)
        if e.compare_run is not None:
            compare_genes = _compare_genes(RunLayout(e.compare_run).evaluation(e.head), e)
    return EvaluationPlan(config, run, head, track_index, splits, ridge, compare, model, genes, genes_split,
                          compare_genes)


def plan_genes(run: Run, settings: EvaluateConfig, track_index: np.ndarray, split: str) -> pd.DataFrame:
    """The GTF's genes whose TSS lies in a window of ``split`` (each in its most central window),
    and a check that the head's tracks form valid strand pairs; every error before anything is written."""
    from ..genes.gtf import place_genes, read_genes
    from ..targets.table import gene_tracks

    gene_tracks(run.tracks.iloc[track_index].reset_index(drop=True))
    genes = read_genes(settings.genes, settings.gene_types or None, run.genome().names)  # the dataset's alias rule
    return place_genes(genes, run.windows(split), run.geometry.bin_size,
                       source=f"{settings.genes}: {len(genes)} genes, {split} split")


def _compare_genes(other: EvaluationFolder, settings: EvaluateConfig) -> Path | None:
    """The compare run's per_track_genes.csv when it was scored on the same genes the same way."""
    if not other.per_track_genes.is_file():
        log.warning("evaluate --compare-run: %s has no gene-level evaluation (evaluate it with --genes)", other.path)
        return None
    theirs = json.loads(other.summary.read_text()).get("genes", {})
    mine = {"gtf": str(settings.genes), "gene_signal": settings.gene_signal, "gene_types": list(settings.gene_types),
            "tss_bins": settings.tss_bins if settings.gene_signal == "tss" else None}
    differ = [k for k, v in mine.items() if theirs.get(k) != v]
    if differ:
        log.warning("evaluate --compare-run: %s scored genes with another %s; its gene-level numbers are left out",
                    other.path, ", ".join(differ))
        return None
    return other.per_track_genes


def _ridge_baseline(run: Run, name: str, track_index) -> str | None:
    """A current ridge head of the run on the same tracks, the baseline beside ``name``; a stale or
    damaged one is left out with a warning (it would give a baseline of other embeddings)."""
    probe = Run(run.path)  # looking over the heads is not reading them: only the one chosen is recorded
    probe.only_current = True
    for other in probe.heads():
        head = probe.head(other)
        if other != name and head.metadata["model"] == "ridge" and \
                list(head.check_compatible(probe)) == list(track_index):
            return other
    for what, why in probe.left_out.items():
        log.warning("evaluate: %s not used as the ridge baseline: %s", what.replace("head_record", "head"),
                    why.split("; rebuild it")[0])
    return None


def _windows_of(run: Run, split: str, head, track_index: np.ndarray, model=None):
    """Yield (start, stop, predictions, observed, mask) over a split, a few windows at a time:
    the head on the stored embeddings, or ``model`` (a fine-tuned trunk + head) from sequence."""
    targets = run.targets(split)
    masks = run.masks(split)
    windows = run.windows(split)
    emb = run.embeddings(split) if model is None else None
    genome = run.genome() if model is not None else None
    for start in range(0, len(windows), WINDOWS_PER_STEP):
        stop = min(len(windows), start + WINDOWS_PER_STEP)
        if model is None:
            pred = head.predict(np.asarray(emb[start:stop]))
        else:
            x = np.stack([genome.one_hot(w.chrom, int(w.input_start), int(w.input_end), run.embed_config.pad_value)
                          for w in windows.iloc[start:stop].itertuples()])
            pred = model.predict(x)
        obs = np.asarray(targets[start:stop])[..., track_index]
        mask = None if masks is None else np.asarray(masks[start:stop])[..., track_index]
        yield start, stop, pred, obs, mask


def build_evaluation(plan: EvaluationPlan, out: EvaluationFolder, progress: bool) -> dict:
    run, name, head, track_index, splits = plan.run, plan.settings.head, plan.head, plan.track_index, plan.splits
    tracks = run.tracks.iloc[track_index].reset_index(drop=True)
    n_tracks, n_bins = len(track_index), run.geometry.n_bins

    rows, positions, summary = [], [], {"head": name, "splits": {}, "tool": "enformer-transfer"}
    checksums: dict[str, list[str]] = {}
    bar = Progress(sum(len(run.windows(s)) for s in splits), f"evaluate {name}", enabled=progress)
    for split in splits:
        n_windows = len(run.windows(split))
        # float32: float16 rounding flattens near-constant predictions into zero variance
        pred_store = store.create_array(out.predictions_store, split, (n_windows, n_bins, n_tracks),
                                        (1, n_bins, n_tracks), "float32")
        metrics = SplitMetrics(n_tracks, n_bins, n_windows, seed=0)
        for start, stop, pred, obs, mask in _windows_of(run, split, head, track_index, plan.model):
            stored = pred.astype(np.float32)
            pred_store[start:stop] = stored
            checksums.setdefault(f"{out.predictions_store.name}/{split}", []).extend(store.checksum(w) for w in stored)
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
        np.savez(out.correlations(split), observed=obs_corr, predicted=pred_corr,
                 identifiers=np.array(tracks["identifier"]))
        table = tracks.drop(columns=["file"]).copy()
        table.insert(0, "split", split)
        for metric, values in per_track.items():
            table[metric] = values
        table["note"] = track_notes(per_track)
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
            "flat_prediction_tracks": list(tracks["identifier"][per_track["predicted_std"] <= FLAT]),
            "r2_far_below_zero_tracks": list(tracks["identifier"][per_track["r2"] < R2_FAR_BELOW_ZERO]),
        }
    per_track = pd.concat(rows, ignore_index=True)
    per_track = _add_baselines(plan, per_track, summary)
    summary["warnings"] = evaluation_warnings(summary)
    per_track.to_csv(out.per_track, index=False)
    pd.concat(positions).to_csv(out.bin_position, index=False)
    per_level = per_level_table(per_track, grouping_columns(tracks))
    per_level.to_csv(out.per_level, index=False)
    summary["per_level"] = per_level.to_dict("records")
    genes = evaluate_genes(plan, out) if plan.genes is not None else None
    if genes is not None:
        summary["genes"] = genes.summary
    write_json_atomic(out.summary, _jsonable(summary))
    write_json_atomic(out.checksums, checksums)
    from .figures import evaluation_figures

    if plan.settings.figures:
        evaluation_figures(run, name, out, per_track, splits, track_index, plan.settings.plot_regions, genes)
    line = ", ".join(f"{s} {summary['splits'][s]['pearson_mean']:.3f}" for s in splits)
    print(f"evaluate: head {name!r} mean Pearson over tracks: {line} -> {run.layout.evaluation(name).path}")
    if genes is not None:
        g = genes.summary
        print(f"evaluate: head {name!r} genes ({g['split']}, {g['n_genes']} genes, {g['gene_signal']}): mean Pearson "
              f"across genes {_fmt(g['pearson_across_genes_mean'])}, specificity {_fmt(g['pearson_specificity_mean'])}")
    for warning in summary["warnings"]:
        log.warning("evaluate %r: %s", name, warning)
    return {"splits": _jsonable(summary["splits"])}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@dataclass
class GeneEvaluation:
    """What ``evaluate --genes`` found, for the figures: per gene track (``tracks``: identifier,
    metadata, metrics) the log1p observed / predicted values of every gene (genes x tracks)."""

    split: str
    genes: pd.DataFrame
    tracks: pd.DataFrame
    levels: np.ndarray
    observed: np.ndarray  # sums over each gene's bins, before log1p
    predicted: np.ndarray
    summary: dict


def evaluate_genes(plan: EvaluationPlan, out: EvaluationFolder) -> GeneEvaluation:
    """Gene-level observed and predicted expression of the head and its baselines on ``plan.genes_split``
    -> genes.parquet, per_track_genes.csv, per_gene.csv and the summary's ``genes`` block."""
    from ..targets.table import gene_tracks
    from .genes import gene_bins, gene_metrics, gene_sums, log1p, track_levels

    run, e, split, placed, track_index = plan.run, plan.settings, plan.genes_split, plan.genes, plan.track_index
    tracks = run.tracks.iloc[track_index].reset_index(drop=True)
    pairs = gene_tracks(tracks)
    table = tracks.iloc[[t.plus for t in pairs]].drop(columns=["file"]).reset_index(drop=True)
    table["identifier"] = [t.identifier for t in pairs]
    levels = track_levels(table)
    g = run.geometry
    bins = gene_bins(placed, run.windows(split)["start"].to_numpy(), g.bin_size, g.n_bins, e.gene_signal, e.tss_bins)
    targets = run.targets(split)
    observed = gene_sums(placed, bins, lambda w: np.asarray(targets[w])[..., track_index], pairs)
    predicted = gene_sums(placed, bins, store.open_array(out.predictions_store, split), pairs)
    metrics = gene_metrics(observed, predicted, levels, list(placed["gene_id"]))
    per_track = pd.concat([table[["identifier"]].assign(split=split), metrics.per_track,
                           table.drop(columns=["identifier"])], axis=1)
    long = pd.DataFrame({
        "split": split,
        **{c: np.repeat(placed[c].to_numpy(), len(pairs)) for c in
           ("gene_id", "gene_name", "gene_type", "chrom", "strand", "tss", "window", "tss_bin")},
        "identifier": np.tile(table["identifier"].to_numpy(), len(placed)),
        "observed": observed.ravel(), "predicted": predicted.ravel(),
        "observed_log1p": log1p(observed).ravel(), "predicted_log1p": log1p(predicted).ravel()})
    baselines = {}
    if plan.ridge and not plan.head.finetuned:
        ridge_head, embeddings = run.head(plan.ridge), run.embeddings(split)
        ridge = gene_sums(placed, bins, lambda w: ridge_head.predict(np.asarray(embeddings[w:w + 1]))[0], pairs)
        _baseline_columns(per_track, "ridge", gene_metrics(observed, ridge, levels))
        long["ridge_predicted"] = ridge.ravel()
        baselines["ridge"] = plan.ridge
    if all(run.backbone_outputs(s) is not None for s in (split, "valid")):
        choice, outputs = _zero_shot_choice(run, track_index), run.backbone_outputs(split)
        zero_shot = gene_sums(placed, bins, lambda w: np.asarray(outputs[w])[..., choice], pairs)
        _baseline_columns(per_track, "zero_shot", gene_metrics(observed, zero_shot, levels))
        baselines["zero_shot"] = "backbone track with the best valid Pearson over bins"
    if plan.compare_genes is not None:
        theirs = pd.read_csv(plan.compare_genes)
        theirs = theirs[theirs["split"] == split].set_index("identifier")
        for column in ("pearson_across_genes", "pearson_specificity"):
            per_track[f"compare_run_{column}"] = per_track["identifier"].map(theirs[column]).to_numpy(dtype=float)
        baselines["compare_run"] = str(e.compare_run)
    _write_parquet(long, out.genes)
    per_track.to_csv(out.per_track_genes, index=False)
    metrics.per_gene.to_csv(out.per_gene, index=False)
    summary = _genes_summary(plan, placed, per_track, metrics.per_gene, levels, baselines)
    return GeneEvaluation(split, placed, per_track, levels, observed, predicted, summary)


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    """Parquet through polars (a dependency already), so that pyarrow is not needed."""
    import polars as pl

    pl.DataFrame({c: table[c].to_numpy() if table[c].dtype != object else table[c].astype(str).to_list()
                  for c in table.columns}).write_parquet(path)


def _baseline_columns(per_track: pd.DataFrame, name: str, metrics) -> None:
    for column in ("pearson_across_genes", "pearson_specificity"):
        per_track[f"{name}_{column}"] = metrics.per_track[column].to_numpy()


GENE_METRICS = ("pearson_across_genes", "spearman_across_genes", "pearson_specificity")


def _genes_summary(plan: EvaluationPlan, placed: pd.DataFrame, per_track: pd.DataFrame, per_gene: pd.DataFrame,
                   levels: np.ndarray, baselines: dict) -> dict:
    e = plan.settings
    means = [c for c in per_track.columns if c in GENE_METRICS or c.endswith(("_pearson_across_genes",
                                                                              "_pearson_specificity"))]
    summary = {"split": plan.genes_split, "gtf": str(e.genes), "gene_types": list(e.gene_types),
               "gene_signal": e.gene_signal, "tss_bins": e.tss_bins if e.gene_signal == "tss" else None,
               "n_genes": len(placed), "n_genes_plus": int((placed["strand"] == "+").sum()),
               "n_tracks": len(per_track), "baselines": baselines,
               **{f"{c}_mean": _nanmean(per_track[c]) for c in means}, "per_level": []}
    for level in dict.fromkeys(levels):
        if level == "":
            continue
        part = per_track[levels == level]
        genes_level = per_gene[per_gene["level"] == level]["pearson_across_tracks"]
        summary["per_level"].append({
            "level": level, "n_tracks": len(part), **{f"{c}_mean": _nanmean(part[c]) for c in means},
            "pearson_across_tracks_median": float(genes_level.median()) if genes_level.notna().any() else None,
            "pearson_across_tracks_mean": _nanmean(genes_level)})
    return summary


FLAT = 1e-6  # a predicted standard deviation at or below this: a flat track
R2_FAR_BELOW_ZERO = -1.0


def track_notes(per_track: dict[str, np.ndarray]) -> np.ndarray:
    """A note per track where its numbers need one."""
    notes = np.full(len(per_track["pearson"]), "", dtype=object)
    notes[per_track["r2"] < R2_FAR_BELOW_ZERO] = "R2 far below zero: predictions off in scale"
    notes[per_track["observed_std"] <= FLAT] = "zero variance observed: no correlation"
    notes[per_track["predicted_std"] <= FLAT] = "flat prediction: the head predicts a constant"
    return notes


def evaluation_warnings(summary: dict) -> list[str]:
    """Flat tracks and R2 far below zero, per split: shown in the summary and the report."""
    out = []
    for split, values in summary["splits"].items():
        flat, off = values["flat_prediction_tracks"], values["r2_far_below_zero_tracks"]
        if flat:
            out.append(f"{split}: {len(flat)} track(s) predicted as a constant ({', '.join(flat[:5])}"
                       f"{', ...' if len(flat) > 5 else ''}): the head did not learn them")
        if off:
            out.append(f"{split}: {len(off)} track(s) with R2 below {R2_FAR_BELOW_ZERO:g} ({', '.join(off[:5])}"
                       f"{', ...' if len(off) > 5 else ''}): predictions are off in scale (undertrained head, "
                       "or the loss does not match the targets)")
    return out


PER_LEVEL_COLUMNS = ["split", "grouping", "group", "n_tracks"]


def per_level_table(per_track: pd.DataFrame, groupings: list[str]) -> pd.DataFrame:
    """Mean / median per-track metrics per split and per group of every grouping column (a table
    with its header and no rows when the tracks have no grouping column)."""
    value_cols = [c for c in per_track.columns if c == "pearson" or c.endswith("_pearson") or
                  c in ("pearson_log1p", "spearman", "r2")]
    columns = PER_LEVEL_COLUMNS + [f"{c}_mean" for c in value_cols] + ["pearson_median"]
    rows = []
    for column in groupings:
        data = per_track[per_track[column].astype(str).replace({"nan": "", "None": ""}) != ""]
        for (split, group), part in data.groupby(["split", column], sort=False):
            row = {"split": split, "grouping": column, "group": group, "n_tracks": len(part)}
            for col in value_cols:
                row[f"{col}_mean"] = part[col].mean()
            row["pearson_median"] = part["pearson"].median()
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _add_baselines(plan: EvaluationPlan, per_track: pd.DataFrame, summary: dict) -> pd.DataFrame:
    run, track_index, splits = plan.run, plan.track_index, plan.splits
    baselines = {}
    if plan.ridge:
        ridge_head = run.head(plan.ridge)
        for split in splits:
            metric = PearsonPerTrack(len(track_index))
            for _, _, pred, obs, mask in _windows_of(run, split, ridge_head, track_index):
                metric.update(pred, obs, mask)
            per_track.loc[per_track["split"] == split, "ridge_pearson"] = metric.pearson()
        baselines["ridge"] = plan.ridge
    # the backbone's own tracks, best match chosen on valid
    if all(run.backbone_outputs(s) is not None for s in set(splits) | {"valid"}):
        choice = _zero_shot_choice(run, track_index)
        names = _enformer_track_names(plan.settings.enformer_targets, int(run.backbone_outputs("valid").shape[-1]))
        for split in splits:
            per_track.loc[per_track["split"] == split, "zero_shot_pearson"] = _zero_shot_pearson(run, split, track_index, choice)
            per_track.loc[per_track["split"] == split, "zero_shot_track"] = [names[c] for c in choice]
        baselines["zero_shot"] = "backbone track with the best valid Pearson"
    # the same head on another run (for example a randomly initialised backbone)
    if plan.compare is not None:
        theirs = pd.read_csv(plan.compare)[["split", "identifier", "pearson"]].rename(
            columns={"pearson": "compare_run_pearson"})
        per_track = per_track.merge(theirs, on=["split", "identifier"], how="left")
        baselines["compare_run"] = str(plan.settings.compare_run)
    if baselines:
        summary["baselines"] = baselines
    for split in splits:
        part = per_track[per_track["split"] == split]
        for col in ("ridge_pearson", "zero_shot_pearson", "compare_run_pearson"):
            if col in part:
                summary["splits"][split][f"{col}_mean"] = _nanmean(part[col].to_numpy(dtype=float))
    return per_track


def _zero_shot_choice(run: Run, track_index: np.ndarray) -> np.ndarray:
    """For each new track, the backbone output track with the highest pooled Pearson on valid."""
    outputs = run.backbone_outputs("valid")
    targets = run.targets("valid")
    k = int(outputs.shape[-1])
    n = len(track_index)
    sx, sxx = np.zeros(k), np.zeros(k)
    sy, syy = np.zeros(n), np.zeros(n)
    sxy = np.zeros((k, n))
    count = 0
    for start in range(outputs.shape[0]):  # one window at a time: 896 x 5,313 float64 is 38 MB
        x = np.asarray(outputs[start], dtype=np.float64).reshape(-1, k)
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


def _zero_shot_pearson(run: Run, split: str, track_index: np.ndarray, choice: np.ndarray) -> np.ndarray:
    outputs, targets = run.backbone_outputs(split), run.targets(split)
    metric = PearsonPerTrack(len(track_index))
    for start in range(0, outputs.shape[0], WINDOWS_PER_STEP):
        x = np.asarray(outputs[start : start + WINDOWS_PER_STEP])[..., choice]
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
