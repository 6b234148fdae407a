"""The sections of the report, in reading order. Each is one function ``(context) -> Section``
(or a list of them, or None when it has nothing to show); a new section is one more function
in ``REPORT_SECTIONS``."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..plots import figures as draw
from ..run import Run
from .elements import Section, anchor, details, figure, figure_grid, fmt, table

BASELINES = {  # per-track column of an evaluation -> what the reader is told it is
    "ridge_pearson": "ridge baseline",
    "zero_shot_pearson": "backbone's best own track",
    "compare_run_pearson": "compare run",
}
TRACK_TABLE_HIDDEN = ("clip", "clip_soft", "scale", "sum_stat", "description", "index")


@dataclass
class ReportContext:
    """What every section may read: the run, the heads shown, a folder for report-time figures."""

    run: Run
    heads: list[str]
    figures: Path

    def split(self, head: str) -> str | None:
        """The split a head is judged on: test, else valid, else the first evaluated."""
        splits = list(self.run.evaluation(head).summary["splits"])
        return next((s for s in ("test", "valid") if s in splits), splits[0] if splits else None)


def _baseline_label(column: str, head: str, baselines: dict) -> str:
    if column == "compare_run_pearson":
        other = Path(str(baselines.get("compare_run", "")))
        try:  # name the other run by its backbone: what usually differs
            backbone = f" (backbone {Path(str(Run(other).embed_config.backbone)).name})"
        except Exception:  # a moved or partial run: its folder name is enough
            backbone = ""
        return f"{head} on {other.name}{backbone}"
    return BASELINES[column]


def summary_table(ctx: ReportContext, split: str) -> pd.DataFrame:
    """Mean per-track Pearson of ``split`` per level (every metadata grouping) and over all
    tracks: one column per head, then one per baseline (taken from the first head that has it;
    a ridge baseline that is itself a head shown is not repeated)."""
    rows: dict[tuple[str, str], dict] = {("all", "all tracks"): {"grouping": "all", "group": "all tracks"}}
    for head in ctx.heads:
        evaluation = ctx.run.evaluation(head)
        values = evaluation.summary["splits"].get(split)
        if values is None:
            continue
        per_track = evaluation.per_track
        per_track = per_track[per_track["split"] == split]
        per_level = evaluation.per_level
        per_level = per_level[per_level["split"] == split] if len(per_level) else per_level
        baselines = evaluation.summary.get("baselines", {})
        columns = [(head, "pearson")]
        for column in BASELINES:
            if column not in per_track.columns:
                continue
            if column == "ridge_pearson" and baselines.get("ridge") in ctx.heads:
                continue
            label = _baseline_label(column, head, baselines)
            if not any(label in row for row in rows.values()):
                columns.append((label, column))
        all_row = rows[("all", "all tracks")]
        all_row.setdefault("tracks", len(per_track))
        for label, column in columns:
            all_row[label] = per_track[column].astype(float).mean()
        for _, level in per_level.iterrows():
            row = rows.setdefault((level["grouping"], str(level["group"])),
                                  {"grouping": level["grouping"], "group": str(level["group"])})
            row.setdefault("tracks", int(level["n_tracks"]))
            for label, column in columns:
                row[label] = level.get(f"{column}_mean")
    table_ = pd.DataFrame(list(rows.values()))
    front = ["grouping", "group", "tracks"] + [h for h in ctx.heads if h in table_.columns]
    return table_[front + [c for c in table_.columns if c not in front]]


def _headline(ctx: ReportContext, head: str, split: str) -> str:
    evaluation = ctx.run.evaluation(head)
    meta = ctx.run.head(head).metadata
    values = evaluation.summary["splits"][split]
    per_track = evaluation.per_track
    part = per_track[(per_track["split"] == split) & per_track["pearson"].notna()].sort_values("pearson")
    baselines = evaluation.summary.get("baselines", {})
    compared = []
    for column in BASELINES:
        mean = values.get(f"{column}_mean")
        if mean is not None:
            compared.append(f"{html.escape(_baseline_label(column, head, baselines))} {fmt(mean)}")
    kind = "fine-tuned model" if meta.get("finetune") else f"{meta['model']} head"
    text = (f"<b>{html.escape(head)}</b> ({html.escape(kind)}, {meta['n_tracks']} tracks): {split} mean Pearson "
            f"<b>{fmt(values['pearson_mean'])}</b>" + (f" vs {', '.join(compared)}" if compared else ""))
    if len(part):
        def names(rows: pd.DataFrame) -> str:
            return ", ".join(f'<a href="#{anchor(head, "track", r.identifier)}">{html.escape(r.identifier)}</a> '
                             f"{fmt(r.pearson)}" for r in rows.itertuples())
        text += f"; best {names(part.iloc[::-1].head(3))}; worst {names(part.head(3))}"
    return f"<p class='headline'>{text}</p>"


def summary_section(ctx: ReportContext) -> Section:
    """What a reader wants first: how well each head learned the tracks, per level, against the baselines."""
    split = next((ctx.split(h) for h in ctx.heads if ctx.split(h)), None)
    parts = [_headline(ctx, head, ctx.split(head)) for head in ctx.heads if ctx.split(head)]
    for head in ctx.heads:
        for warning in ctx.run.evaluation(head).summary.get("warnings", []):
            parts.append(f"<p class='warning'>head {html.escape(head)}: {html.escape(warning)}</p>")
    if split is not None:
        overview = summary_table(ctx, split)
        series = [c for c in overview.columns if c not in ("grouping", "group", "tracks")]
        baselines = [c for c in series if c not in ctx.heads]
        explained = {"ridge baseline": "the ridge head", "backbone's best own track":
                     "the backbone's best-matching own track (chosen on valid, zero-shot)"}
        said = [explained.get(c, f"{c}: the same head trained in another run") for c in baselines]
        parts.append(f"<h3>Mean Pearson per level ({html.escape(split)} split)</h3>"
                     "<p class='small'>per track over all bins of the split's windows pooled, then the mean over the "
                     "level's tracks" + ("; the best of each row in bold" if len(series) > 1 else "")
                     + (f". Baselines: {html.escape('; '.join(said))}" if said else "") + ".</p>")
        parts.append(table(overview, bold_max_rows=len(series) > 1))
        if len(overview) <= 40 and series:
            made = draw.summary_bars(overview.set_index(["grouping", "group"])[series],
                                     f"Mean Pearson per level ({split})", ctx.figures / "summary_bars")
            parts.append(figure_grid([(made[0], f"Mean Pearson per level, heads and baselines ({split})")]))
    return Section("summary", "Summary", "".join(parts))


def dataset_section(ctx: ReportContext) -> Section:
    run = ctx.run
    geometry = run.geometry
    splits = pd.DataFrame([{"split": s, "windows": len(run.windows(s))} for s in run.splits])
    body = [f"<p>{len(run.tracks)} tracks; input {geometry.seq_length:,} bp, {geometry.n_bins} bins of "
            f"{geometry.bin_size} bp per window.</p>", table(splits)]
    children = []
    if run.track_stats is not None:
        children.append(Section("dataset-targets", "Targets per track", table(run.track_stats)))
    inputs = run.dataset_record.key["inputs"]
    files = [dict(f, input=name) for name, value in inputs.items() for f in (value if isinstance(value, list) else [value])]
    config = run.layout.config.read_text() if run.layout.config.is_file() else ""
    extra = details("Input files and their fingerprints", table(pd.DataFrame(files)))
    if config:
        extra += details("Run config (config.toml)", f"<pre>{html.escape(config)}</pre>")
    extra += details("Geometry", f"<pre>{html.escape(json.dumps(geometry.model_dump(), indent=1))}</pre>")
    children.append(Section("dataset-provenance", "Inputs and config", extra))
    return Section("dataset", "Dataset", "".join(body), children)


def _track_viewer(head: str, figures: list[dict]) -> str:
    tracks = [f for f in figures if f["kind"] == "track"]
    if not tracks:
        return ""
    options = "".join(f'<option value="{anchor(head, "track", f["track"])}">{html.escape(f["track"])}</option>'
                      for f in tracks)
    plots = "".join(figure(f["path"], f["caption"], ident=anchor(head, "track", f["track"]), hidden=i > 0,
                           extra_class="track-plot") for i, f in enumerate(tracks))
    return (f'<div class="track-viewer"><div class="controls"><button type="button" data-step="-1">&larr;</button>'
            f'<label>track <select aria-label="track">{options}</select></label>'
            f'<button type="button" data-step="1">&rarr;</button><span class="small">{len(tracks)} tracks; '
            f"an identifier in the per-track table opens its plot</span></div>{plots}</div>")


def head_section(ctx: ReportContext, head: str) -> Section:
    run = ctx.run
    evaluation = run.evaluation(head)
    meta = run.head(head).metadata
    training = meta.get("training", {})
    kept = training.get("kept", {})
    facts = [f"{meta['model']} head", f"loss {meta['loss']}", f"{meta['n_tracks']} tracks"]
    if training.get("steps"):
        facts.append(f"{training['steps']:,} steps, {training.get('epochs', '-')} epochs")
    if kept.get("epoch") is not None:
        facts.append(f"kept epoch {kept['epoch']}")
    if training.get("best_val_loss") is not None:
        facts.append(f"best val loss {fmt(training['best_val_loss'])}")
    facts.append(f"backbone {meta['backbone'].get('source')}")
    body = f"<p>{html.escape('; '.join(facts))}</p>"
    from ..heads.train import no_signal  # near-zero valid Pearson, the ridge baseline's too

    if no_signal(meta):
        body += f"<p class='warning'>head {html.escape(head)}: {html.escape(no_signal(meta))}</p>"
    key = anchor("head", head)
    figures = evaluation.figures
    grid = figure_grid([(f["path"], f["caption"]) for f in figures if f["kind"] in ("summary", "region")])
    children = [Section(f"{key}-figures", "Figures", grid)] if grid else []
    if head in run.dars():
        dar = run.dar(head)
        s = dar.summary
        text = (f"<p>{s['regions']} regions; median Pearson across cell types "
                f"{fmt(s['pearson_across_cell_types_median'])}{_dar_interval(s)}; most open cell type predicted = "
                f"observed in {100 * s['top_agreement_observed_predicted']:.1f}% of regions (chance "
                f"{100 * s['chance_agreement']:.1f}%{_dar_test(s)}); bin rule {html.escape(s['bin_rule'])}</p>")
        children.append(Section(f"{key}-dar", "DAR analysis",
                                text + figure_grid([(f["path"], f["caption"]) for f in dar.figures])))
    per_level = evaluation.per_level
    children.append(Section(f"{key}-levels", "Per level", table(
        per_level, empty="the tracks of this head have no grouping column (no metadata column with repeated values)")))
    per_track = evaluation.per_track
    keep = [c for c in per_track.columns if c not in TRACK_TABLE_HIDDEN]
    children.append(Section(f"{key}-tracks", "Per track",
                            "<p class='small'>click a column to sort; an identifier opens its track plot; "
                            "full precision in per_track.csv</p>"
                            + table(per_track[keep], link_column="identifier", link_prefix=f"{head}-track-")
                            .replace('class="table-wrap"', 'class="table-wrap tall"', 1)))
    viewer = _track_viewer(head, figures)
    if viewer:
        children.append(Section(f"{key}-track-plots", "Track plots", viewer))
    return Section(key, f"Head {head}", body, children)


def heads_sections(ctx: ReportContext) -> list[Section]:
    return [head_section(ctx, head) for head in ctx.heads]


def variants_sections(ctx: ReportContext) -> list[Section]:
    """A finished variants stage: what was scored, the top variants per track, the figures."""
    from ..interpret.vcf import short_name

    out = []
    for name in ctx.run.variant_analyses():
        effects = ctx.run.variants(name)
        summary, stat = effects.summary, effects.summary["summary_stat"]
        top = effects.top_variants.query("rank <= 3")
        kinds = ", ".join(f"{k} {v}" for k, v in summary["kinds"].items())
        levels = (f"among the tracks of the same {summary['level_column']}" if summary["level_column"]
                  else "across all tracks")
        settings = [f"scores {', '.join(summary['stats'])}", f"z-scores {levels}", f"shifts {summary['shifts']}"]
        if summary["rc"]:
            settings.append("both strands")
        if summary["null_shuffles"]:
            settings.append(f"p-values from {summary['null_shuffles']} shuffled contexts")
        text = (f"{summary['variants']} variants ({kinds}) x {summary['tracks']} tracks of head {summary['head']}; "
                f"{sum(summary['skipped'].values())} alleles left out, {summary['ref_mismatches']} REF mismatches "
                f"dropped; {'; '.join(settings)} (docs/variants.md)")
        key = anchor("variants", name)
        children = [Section(f"{key}-top", f"Top variants per track by |{stat}|",
                            table(top.assign(variant=top["variant"].map(short_name))))]
        grid = figure_grid([(f["path"], f["caption"]) for f in effects.figures])
        if grid:
            children.append(Section(f"{key}-figures", "Figures", grid))
        out.append(Section(key, f"Variant effects {name}", f"<p>{html.escape(text)}</p>", children))
    return out


def _dar_interval(summary: dict) -> str:
    low, high = summary.get("pearson_across_cell_types_median_ci", [None, None])
    if low is None or low != low:  # absent (older analyses) or NaN
        return ""
    return f" ({100 * summary['confidence']:g}% bootstrap interval {fmt(low)} to {fmt(high)})"


def _dar_test(summary: dict) -> str:
    p = summary.get("top_agreement_permutation_p")
    if p is None or p != p:
        return ""
    return (f"; permuting predicted tops across regions: {100 * summary['top_agreement_permutation_null']:.1f}%, "
            f"permutation p = {p:.3g}")


def called_dars_sections(ctx: ReportContext) -> list[Section]:
    """Finished call-dars stages: the rule, regions per cell type, figures."""
    out = []
    for name in ctx.run.called_dar_names():
        called = ctx.run.called_dars(name)
        summary, rule = called.summary, called.summary["rule"]
        text = (f"<p>{summary['regions']} cell-type-specific regions of {summary['candidates']} candidates "
                f"({html.escape(summary['source'])}, {html.escape(rule['candidates'])}): log2 fold change &ge; "
                f"{rule['min_log2_fold_change']:g} vs {html.escape(rule['versus'])}, signal &ge; {rule['min_signal']:.3g}, "
                f"pseudocount {rule['pseudocount']:.3g}</p>")
        counts = pd.DataFrame({summary["label_column"]: list(summary["per_cell_type"]),
                               "regions": list(summary["per_cell_type"].values())})
        body = text + table(counts) + figure_grid([(f["path"], f["caption"]) for f in called.figures])
        out.append(Section(anchor("called-dars", name), f"Called DARs {name}", body))
    return out


def contributions_sections(ctx: ReportContext) -> list[Section]:
    """Finished contributions stages: what was attributed and how, the logos."""
    out = []
    for name in ctx.run.contribution_names():
        contributions = ctx.run.contributions(name)
        s = contributions.summary
        text = (f"<p>head <code>{html.escape(s['head'])}</code>, {html.escape(s['method'])}, {s['regions']} regions x "
                f"{len(s['targets'])} attributed scalars, {s['width']} bp centred on each region; scalar: a track's "
                f"predictions summed over the bins {html.escape(str(s['target_bins']))} (docs/interpretation.md)</p>")
        if "summation" in s:
            text += (f"<p class='small'>DeepLIFT/SHAP summation to delta: max relative error "
                     f"{s['summation']['max_relative_error']}</p>")
        body = text + figure_grid([(f["path"], f["caption"]) for f in contributions.figures])
        out.append(Section(anchor("contributions", name), f"Contributions {name}", body))
    return out


def motifs_sections(ctx: ReportContext) -> list[Section]:
    """Finished motifs stages: TF-MoDISco patterns per target, their JASPAR matches, logos."""
    out = []
    for name in ctx.run.motif_names():
        motifs = ctx.run.motifs(name)
        figures = motifs.figures
        text = (f"<p>TF-MoDISco patterns of contributions <code>{html.escape(motifs.summary['contributions'])}</code>, "
                f"matched (TOMTOM) against {html.escape(', '.join(motifs.summary['database']))}</p>")
        keep = ["display", "pattern", "n_seqlets", "n_regions", "importance", "motif", "best_motif_id",
                "best_qvalue", "consensus"]
        patterns = motifs.patterns[[c for c in keep if c in motifs.patterns.columns]].rename(
            columns={"display": "target"})
        key = anchor("motifs", name)
        children = [Section(f"{key}-patterns", "Patterns", table(patterns))]
        logos = figure_grid([(f["path"], f["caption"]) for f in figures if f["kind"] == "pattern"])
        if logos:
            children.append(Section(f"{key}-logos", "Pattern logos", logos))
        body = text + figure_grid([(f["path"], f["caption"]) for f in figures if f["kind"] == "summary"])
        out.append(Section(key, f"Motifs {name}", body, children))
    return out


def left_out_section(ctx: ReportContext) -> Section | None:
    """What the report does not show because it is stale (built from an upstream stage that was
    rebuilt since) or damaged, with the command that rebuilds each."""
    if not ctx.run.left_out:
        return None
    items = "".join(f"<li><b>{html.escape(what)}</b>: {html.escape(why)}</li>"
                    for what, why in sorted(ctx.run.left_out.items()))
    return Section("left-out", "Left out: stale or damaged results",
                   "<p>These results exist in the run directory but no longer match what they were built "
                   f"from, so they are not shown.</p><ul>{items}</ul>")


REPORT_SECTIONS = [summary_section, left_out_section, dataset_section, heads_sections, called_dars_sections, contributions_sections,
                   motifs_sections, variants_sections]
