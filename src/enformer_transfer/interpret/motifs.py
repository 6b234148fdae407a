"""The motifs stage's work (``stages/motifs.py`` runs it):
the transcription-factor motifs of each cell type's (or contrast's) regulatory code.

For each attributed scalar of a contributions stage: TF-MoDISco (modisco-lite) on the
hypothetical contributions and one-hot sequence of its regions (with cell-type-labelled
regions, e.g. called DARs, only the regions of its cell type: ``match_labels``); each
pattern trimmed to the positions whose contribution weight is at least 30% of its peak
(4 bp added on each side, as modisco's report), matched with TOMTOM (memelite) against
JASPAR (pyjaspar's shipped database) and/or a MEME file. A pattern's importance is the
summed actual contribution of its seqlets per region of the scalar; the cell type x motif
heatmap sums the importance of each cell type's positive patterns by motif name (the best
match with q-value <= ``max_match_qvalue``, else the pattern's consensus).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fs import safe_filename, write_json_atomic
from ..plots.figures import FigureIndex
from ..progress import Progress
from ..results import Run
from ..rundir.config import RunConfig
from ..rundir.layout import MotifsFolder
from ..rundir.run import Contributions
from .motif_db import Motif, jaspar_motifs, meme_motifs, tomtom_matches, write_meme

log = logging.getLogger("enformer_transfer")


@dataclass
class MotifsPlan:
    config: RunConfig
    run: Run
    name: str
    contributions: Contributions
    targets: pd.DataFrame  # rows of the contributions' targets table, with 'position' (its index) and 'regions'
    skipped: dict[str, str]  # targets left out for want of regions: why

    @property
    def settings(self):
        return self.config.motifs


def plan_motifs(config: RunConfig) -> MotifsPlan:
    """Check the contributions stage, the targets, their regions and the motif database first."""
    m = config.motifs
    run = Run.of(config, "motifs")
    if not m.contributions:
        raise InputError(f"motifs: pass --contributions NAME (finished: {', '.join(run.contribution_names()) or 'none'})")
    if m.contributions not in run.contribution_names():
        raise InputError(f"motifs: no finished contributions stage {m.contributions!r} in {run.path} (finished: "
                         f"{', '.join(run.contribution_names()) or 'none'})")
    contributions = run.contributions(m.contributions)
    table = contributions.targets.reset_index().rename(columns={"index": "position"})
    if m.targets:
        keep = []
        for item in m.targets:
            hits = table.index[(table["name"] == item) | (table["label"] == item) | (table["display"] == item)]
            if not len(hits):
                raise InputError(f"--targets {item!r}: not attributed in contributions {m.contributions!r} (has "
                                 f"{', '.join(table['display'])})")
            keep += [h for h in hits if h not in keep]
        table = table.loc[keep].reset_index(drop=True)
    regions = contributions.regions
    labelled = (regions["label"].astype(str) != "").any()
    table["regions"] = [_target_regions(regions, str(label), labelled and m.match_labels) for label in table["label"]]
    too_few = table[table["regions"].map(len) < m.min_regions]
    skipped = {}
    if len(too_few) and not m.targets and len(too_few) < len(table):  # by default, analyse those that can be
        of_type = " of its cell type" if labelled and m.match_labels else ""
        skipped = {row.display: f"{len(row.regions)} region(s){of_type}, fewer than --min-regions {m.min_regions}; "
                                "attribute more regions of it"
                   for row in too_few.itertuples(index=False)}
        table = table[table["regions"].map(len) >= m.min_regions].reset_index(drop=True)
        log.warning("motifs: %s left out: fewer than %d regions%s", ", ".join(skipped), m.min_regions,
                    " of their cell type" if labelled and m.match_labels else "")
    elif len(too_few):
        row = too_few.iloc[0]
        raise InputError(f"motifs: {row['display']!r} has {len(row['regions'])} region(s) in contributions "
                         f"{m.contributions!r}" + (f" labelled {row['label']!r}" if labelled and m.match_labels else "")
                         + f", fewer than --min-regions {m.min_regions}; attribute more regions, or leave it out "
                         "with --targets")
    if m.motif_file is None and not m.jaspar:
        raise InputError("motifs: --no-jaspar needs --motif-file MEME (motifs to match the patterns against)")
    if m.motif_file is not None:
        meme_motifs(m.motif_file)  # readable
    name = m.name or m.contributions
    if safe_filename(name) != name:
        raise InputError(f"motifs name {name!r}: use letters, digits, '-', '_' and '.' only")
    try:
        import modiscolite  # noqa: F401
    except ImportError:
        raise InputError("motifs: needs modisco-lite (pip install 'enformer-transfer[model]')") from None
    return MotifsPlan(config, run, name, contributions, table, skipped)


def _target_regions(regions: pd.DataFrame, label: str, match: bool) -> np.ndarray:
    if match and label:
        return np.flatnonzero(regions["label"].astype(str).to_numpy() == label)
    return np.arange(len(regions))


def known_motifs(plan: MotifsPlan) -> list[Motif]:
    m = plan.settings
    known = jaspar_motifs(m.jaspar_release, m.jaspar_collection, m.jaspar_tax_group) if m.jaspar else []
    return known + (meme_motifs(m.motif_file) if m.motif_file is not None else [])


def trim(cwm: np.ndarray, fraction: float = 0.3, pad: int = 4) -> slice:
    """Positions of a pattern kept: from the first to the last whose summed |contribution weight|
    reaches ``fraction`` of the largest, ``pad`` added on each side (modisco's report)."""
    score = np.abs(cwm).sum(axis=1)
    passing = np.flatnonzero(score >= fraction * score.max())
    return slice(max(int(passing.min()) - pad, 0), min(int(passing.max()) + pad + 1, len(cwm)))


def min_seqlets_for(n_regions: int, settings) -> int:
    """The smallest pattern, in seqlets: ``min_seqlets`` when set, else a tenth of the regions
    from 5 to 20 (modisco's own 20 is sized for thousands of regions; a motif in every region of
    a 70-region cell type gives about 70 seqlets, which 20 splits among too few clusters)."""
    if settings.min_seqlets is not None:
        return settings.min_seqlets
    return int(np.clip(n_regions // 10, 5, 20))


class SeqletCount(NamedTuple):
    """What TF-MoDISco's seqlet calling finds before clustering (its own ``extract_seqlets``)."""

    positive: int
    negative: int
    threshold: float  # |summed contribution| over a seqlet's core above which its sign counts
    mean_abs_contribution: float  # mean |actual contribution| per bp over the target's regions


class ModiscoResult(NamedTuple):
    pos: list
    neg: list
    seqlets: SeqletCount
    min_seqlets: int


def count_seqlets(onehot: np.ndarray, hypothetical: np.ndarray, settings) -> SeqletCount:
    """Positive and negative seqlets as TF-MoDISco calls them (same function, same arguments, same
    sign rule), so a target without patterns can be explained with its numbers."""
    from modiscolite.extract_seqlets import extract_seqlets

    actual = np.multiply(onehot, hypothetical).sum(axis=2)  # in TF-MoDISco's precision: the same threshold
    mean_abs = float(np.abs(actual, dtype=np.float64).mean()) if actual.size else 0.0
    if actual.shape[1] < settings.sliding_window + 2 * settings.flank or not np.any(actual):
        return SeqletCount(0, 0, float("nan"), mean_abs)
    try:
        seqlets, threshold = extract_seqlets(attribution_scores=actual.copy(), window_size=settings.sliding_window,
                                             flank=settings.flank,
                                             suppress=int(0.5 * settings.sliding_window) + settings.flank,
                                             target_fdr=settings.seqlet_fdr, min_passing_windows_frac=0.03,
                                             max_passing_windows_frac=0.2, weak_threshold_for_counting_sign=0.8)
    except ValueError:  # too few windows for its null model (sklearn refuses all-zero weights): no seqlet
        return SeqletCount(0, 0, float("nan"), mean_abs)
    positive = negative = 0
    for seqlet in seqlets:
        flank = int(0.5 * (seqlet.end - seqlet.start - settings.sliding_window))
        core = float(actual[seqlet.example_idx, seqlet.start:seqlet.end][flank:-flank].sum())
        positive += core > threshold
        negative += core < -threshold
    return SeqletCount(int(positive), int(negative), float(threshold), mean_abs)


def run_modisco(onehot: np.ndarray, hypothetical: np.ndarray, settings) -> ModiscoResult:
    """modisco-lite on (regions, width, 4) inputs: its patterns of each sign, with the seqlets it
    had to cluster and the smallest pattern it was allowed (``min_seqlets_for``)."""
    from modiscolite.tfmodisco import TFMoDISco

    onehot, hypothetical = onehot.astype(np.float32), hypothetical.astype(np.float32)
    min_seqlets = min_seqlets_for(len(onehot), settings)
    seqlets = count_seqlets(onehot, hypothetical, settings)
    if max(seqlets.positive, seqlets.negative) <= min_seqlets:  # TF-MoDISco would cluster neither sign
        return ModiscoResult([], [], seqlets, min_seqlets)
    pos, neg = TFMoDISco(one_hot=onehot, hypothetical_contribs=hypothetical,
                         sliding_window_size=settings.sliding_window, flank_size=settings.flank,
                         min_metacluster_size=min_seqlets, max_seqlets_per_metacluster=settings.max_seqlets,
                         target_seqlet_fdr=settings.seqlet_fdr, final_min_cluster_size=min_seqlets,
                         n_leiden_runs=settings.leiden_runs, verbose=False)
    return ModiscoResult(pos or [], neg or [], seqlets, min_seqlets)


def why_no_pattern(result: ModiscoResult, n_regions: int, settings) -> str | None:
    """Why a target has no positive pattern, with its numbers and what to change; None when it has one."""
    if result.pos:
        return None
    seqlets, needed = result.seqlets, result.min_seqlets
    explicit = settings.min_seqlets is not None
    threshold = f", |contribution| > {seqlets.threshold:.3g}" if np.isfinite(seqlets.threshold) else ""
    numbers = (f"{n_regions} regions, {seqlets.positive} positive seqlet{'' if seqlets.positive == 1 else 's'} "
               f"(of {seqlets.positive + seqlets.negative}; "
               f"windows of {settings.sliding_window} bp passing TF-MoDISco's threshold at FDR {settings.seqlet_fdr}"
               f"{threshold}), mean |contribution| {seqlets.mean_abs_contribution:.3g}/bp")
    if seqlets.positive == 0:
        return (f"no seqlets: {numbers}; the contributions of these regions have no window that stands out from "
                "the rest (weak or flat contributions): attribute regions where the track is high, or more of "
                "them")
    per_region = seqlets.positive / max(n_regions, 1)
    more = int(np.ceil((needed + 1) / per_region)) if per_region else None
    lower = (f"--min-seqlets {max(seqlets.positive // 2, 2)}" if seqlets.positive >= 4 else None)
    if seqlets.positive <= needed:
        advice = [f"attribute more regions (about {more} at this rate)" if more else "attribute more regions"]
        if lower:
            advice.append(f"or lower {lower} (patterns from so few seqlets are tentative)")
        setting = f"--min-seqlets {needed}" if explicit else f"the default min_seqlets {needed} for {n_regions} regions"
        return (f"too few seqlets: {numbers}; a pattern needs more than {setting}: " + " ".join(advice))
    advice = f"lower --min-seqlets {max(needed // 2, 2)}" if needed > 2 else "attribute more regions"
    return (f"no cluster: {numbers}, but no {needed} of them alike enough to form a pattern (TF-MoDISco's "
            f"clustering, min_seqlets {needed}): the contributions are diffuse or heterogeneous; {advice}, "
            "or attribute more regions")


def build_motifs(plan: MotifsPlan, out: MotifsFolder, progress: bool) -> dict:
    from modiscolite.io import save_hdf5

    m, contributions = plan.settings, plan.contributions
    known = known_motifs(plan)
    hypothetical, onehot = contributions.array("hypothetical"), contributions.array("onehot")
    rows, queries, trimmed_ppms, runs = [], [], {}, {}
    out.modisco.mkdir(parents=True, exist_ok=True)
    index = FigureIndex(out.figures)
    bar = Progress(len(plan.targets), "motifs", "targets", enabled=progress, first_is_startup=False)
    for target in plan.targets.itertuples(index=False):
        regions = np.asarray(target.regions)
        x = np.asarray(onehot.get_orthogonal_selection((regions,))).astype(np.float32)
        hyp = np.asarray(hypothetical.get_orthogonal_selection((regions, [target.position])))[:, 0]
        found = run_modisco(x, hyp, m)
        runs[target.name] = found
        stem = safe_filename(target.display)
        save_hdf5(str(out.modisco_results(stem)), found.pos or None, found.neg or None, m.sliding_window)
        if progress:
            print(f"motifs: {target.display}: {len(found.pos)} positive, {len(found.neg)} negative patterns "
                  f"from {len(regions)} regions ({found.seqlets.positive} positive, {found.seqlets.negative} "
                  f"negative seqlets; min_seqlets {found.min_seqlets})", flush=True)
        bar.update(1)
        for sign, patterns in (("pos", found.pos), ("neg", found.neg)):
            for i, pattern in enumerate(patterns):
                cwm = np.asarray(pattern.contrib_scores)
                kept = trim(cwm)
                ppm = np.asarray(pattern.sequence)[kept]
                name = f"{target.display}/{sign}_{i}"
                seqlets = pattern.seqlets
                rows.append({
                    "target": target.name, "label": target.label, "display": target.display, "pattern": f"{sign}_{i}",
                    "sign": sign, "n_seqlets": len(seqlets),
                    "n_regions": len({s.example_idx for s in seqlets}),
                    "importance": float(sum(np.sum(s.contrib_scores) for s in seqlets)) / len(regions),
                    "length": int(kept.stop - kept.start),
                    "consensus": "".join("ACGT"[j] for j in ppm.argmax(axis=1)),
                })
                queries.append(ppm.T)
                trimmed_ppms[name] = ppm.T
                paths = _draw_pattern(cwm[kept], f"{target.display} {sign}_{i}: {len(seqlets)} seqlets",
                                      out.figures / f"logo_{stem}_{sign}_{i}")
                index.add(f"logo_{stem}_{sign}_{i}", f"{target.display} {sign}_{i}", paths, kind="pattern",
                          target=str(target.name), pattern=f"{sign}_{i}")
    patterns = pd.DataFrame(rows, columns=["target", "label", "display", "pattern", "sign", "n_seqlets", "n_regions",
                                           "importance", "length", "consensus"])
    matches = tomtom_matches(queries, known, m.matches)
    patterns = _name_patterns(patterns, matches, m.max_match_qvalue)
    matches = matches.assign(target=patterns["target"].to_numpy()[matches["query"]] if len(matches) else [],
                             pattern=patterns["pattern"].to_numpy()[matches["query"]] if len(matches) else [])
    matches = matches.drop(columns="query")[["target", "pattern", "rank", "motif_id", "motif_name", "pvalue",
                                             "qvalue", "offset", "strand"]]
    patterns.to_csv(out.patterns, index=False)
    matches.to_csv(out.matches, index=False)
    out.tables.mkdir(parents=True, exist_ok=True)
    for target in plan.targets.itertuples(index=False):
        patterns[patterns["target"] == target.name].to_csv(out.table(safe_filename(target.display)), index=False)
    write_meme(out.patterns_meme, trimmed_ppms)
    importance = _importance(patterns)
    importance.to_csv(out.importance)
    _draw_heatmap(importance, out, index)
    index.write()
    summary = _summary(plan, patterns, runs, len(known))
    write_json_atomic(out.summary, summary)
    for display, entry in summary["targets"].items():
        print(f"motifs: {display}: {entry['patterns']} patterns ({entry['seqlets']} seqlets, {entry['regions']} "
              f"regions); top: {', '.join(entry['top_motifs']) or '-'}"
              + (f"; no positive pattern: {entry['reason']}" if entry["reason"] else ""))
    for display, reason in summary["left_out"].items():
        print(f"motifs: {display}: left out: {reason}")
    return summary


def _name_patterns(patterns: pd.DataFrame, matches: pd.DataFrame, max_qvalue: float) -> pd.DataFrame:
    """Best match per pattern (id, name, p, q) and the motif name it goes by."""
    best = matches[matches["rank"] == 1].set_index("query") if len(matches) else pd.DataFrame()
    patterns = patterns.copy()
    for column in ("motif_id", "motif_name", "pvalue", "qvalue"):
        patterns[f"best_{column}"] = [best.at[i, column] if i in best.index else None for i in range(len(patterns))]
    named = patterns["best_qvalue"].astype(float) <= max_qvalue
    patterns["motif"] = np.where(named, patterns["best_motif_name"], patterns["consensus"])
    return patterns


def _importance(patterns: pd.DataFrame) -> pd.DataFrame:
    """Targets x motifs: the summed importance of each target's positive patterns per motif."""
    positive = patterns[patterns["sign"] == "pos"]
    if positive.empty:
        return pd.DataFrame()
    table = positive.pivot_table(index="display", columns="motif", values="importance", aggfunc="sum")
    order = list(dict.fromkeys(patterns["display"]))
    table = table.reindex([d for d in order if d in table.index])
    return table[table.max().sort_values(ascending=False).index]


def _draw_pattern(cwm: np.ndarray, title: str, path: Path) -> list[Path]:
    from ..plots import figures as draw

    return draw.motif_logo(cwm, title, path)


def _draw_heatmap(importance: pd.DataFrame, out: MotifsFolder, index: FigureIndex) -> None:
    from ..plots import figures as draw

    if importance.empty:
        return
    paths = draw.motif_importance_heatmap(importance.to_numpy(), list(importance.index), list(importance.columns),
                                          out.figures / "motif_importance")
    index.add("motif_importance", "Cell type x motif: importance of the positive patterns (summed actual "
              "contribution of their seqlets per region)", paths)
    index.entries.insert(0, index.entries.pop())  # the summary first


def _summary(plan: MotifsPlan, patterns: pd.DataFrame, runs: dict[str, ModiscoResult], n_known: int) -> dict:
    m = plan.settings
    targets = {}
    for target in plan.targets.itertuples(index=False):
        mine = patterns[patterns["target"] == target.name]
        positive = mine[mine["sign"] == "pos"].sort_values("importance", ascending=False)
        found = runs[target.name]
        targets[target.display] = {"regions": len(target.regions), "patterns": len(mine),
                                   "seqlets": int(mine["n_seqlets"].sum()),
                                   "top_motifs": list(dict.fromkeys(positive["motif"]))[:5],
                                   "min_seqlets": found.min_seqlets,
                                   "seqlets_called": {"positive": found.seqlets.positive,
                                                      "negative": found.seqlets.negative},
                                   "seqlet_threshold": (found.seqlets.threshold
                                                        if np.isfinite(found.seqlets.threshold) else None),
                                   "mean_abs_contribution": found.seqlets.mean_abs_contribution,
                                   "reason": why_no_pattern(found, len(target.regions), m)}
    return {"contributions": m.contributions, "method": plan.contributions.summary["method"],
            "known_motifs": n_known, "database": ([f"JASPAR {m.jaspar_release} {m.jaspar_collection} "
                                                   f"{m.jaspar_tax_group}"] if m.jaspar else [])
            + ([str(m.motif_file)] if m.motif_file else []), "targets": targets, "left_out": plan.skipped}
