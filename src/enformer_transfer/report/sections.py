"""The sections of the report, in reading order. Each is one function ``(context) -> Section``
(or a list of them, or None when it has nothing to show); a new section is one more function
in ``REPORT_SECTIONS``."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..plots import figures as draw
from ..plots.labels import track_label_map
from ..results import Run
from ..rundir.layout import read_figure_index
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
    _metadata: dict = field(default_factory=dict, repr=False)

    def metadata(self, head: str) -> dict:
        """A head's record (read once: loading a head reads its weights)."""
        if head not in self._metadata:
            self._metadata[head] = self.run.head(head).metadata
        return self._metadata[head]

    @cached_property
    def labels(self) -> dict[str, str]:
        return track_label_map(self.run.tracks)

    def label(self, identifier: str) -> str:
        """A track as the reader knows it: its description (cell type) when the targets table has one."""
        return self.labels.get(str(identifier), str(identifier))

    def identical_to(self, head: str) -> str | None:
        """The head shown in the report whose weights ``head`` kept (a fine-tuned model that did not
        beat its frozen head on validation keeps the frozen head's weights), else None."""
        finetune = self.metadata(head).get("finetune") or {}
        source = finetune.get("from_head")
        if finetune.get("kept") == "frozen" and source in self.heads and source != head:
            return source
        return None

    def split(self, head: str) -> str | None:
        """The split a head is judged on: test, else valid, else the first evaluated."""
        splits = list(self.run.evaluation(head).summary["splits"])
        return next((s for s in ("test", "valid") if s in splits), splits[0] if splits else None)


def _baseline_label(column: str, head: str, baselines: dict) -> str:
    if column == "compare_run_pearson":
        other = Path(str(baselines.get("compare_run", "")))
        try:  # name the other run by its backbone (family and folder): what usually differs
            theirs = Run(other)
            backbone = f" ({theirs.backbone_kind} backbone {Path(str(theirs.embed_config.backbone)).name})"
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


BASELINE_CONTEXT = {  # what each baseline is, said once where its number is
    "ridge_pearson": "closed-form ridge on the same embeddings",
    "zero_shot_pearson": "zero-shot: the backbone's own track that matches best on valid",
    "compare_run_pearson": "the same head on another run's embeddings",
}


def _headline(ctx: ReportContext, head: str, split: str) -> str:
    evaluation = ctx.run.evaluation(head)
    meta = ctx.metadata(head)
    values = evaluation.summary["splits"][split]
    per_track = evaluation.per_track
    part = per_track[(per_track["split"] == split) & per_track["pearson"].notna()].sort_values("pearson")
    baselines = evaluation.summary.get("baselines", {})
    compared = []
    for column in BASELINES:
        mean = values.get(f"{column}_mean")
        if mean is not None:
            compared.append(f"{html.escape(_baseline_label(column, head, baselines))} {fmt(mean)} "
                            f"<span class='small'>({html.escape(BASELINE_CONTEXT[column])})</span>")
    kind = "fine-tuned model" if meta.get("finetune") else f"{meta['model']} head"
    same = ctx.identical_to(head)
    if same:
        kind += f"; kept the weights of {same}: identical to {same}"
    text = (f"<b>{html.escape(head)}</b> ({html.escape(kind)}, {meta['n_tracks']} tracks): {split} mean Pearson "
            f"<b>{fmt(values['pearson_mean'])}</b>" + (f" vs {'; '.join(compared)}" if compared else ""))
    if len(part) and not same:
        def names(rows: pd.DataFrame) -> str:
            return ", ".join(f'<a href="#{anchor(head, "track", r.identifier)}">{html.escape(ctx.label(r.identifier))}</a> '
                             f"{fmt(r.pearson)}" for r in rows.itertuples())
        text += f"; best {names(part.iloc[::-1].head(3))}; worst {names(part.head(3))}"
    return f"<p class='headline'>{text}</p>"


def _missing_baselines(ctx: ReportContext) -> str:
    """Which baselines the summary lacks, and the command that adds each: a number is read against them."""
    run = ctx.run
    have = set()
    for head in ctx.heads:
        have |= {c for c in BASELINES if c in ctx.run.evaluation(head).per_track.columns}
    ridge_heads = [h for h in run.heads() if ctx.metadata(h).get("model") == "ridge"]
    missing = []
    if "ridge_pearson" not in have and not any(h in ctx.heads for h in ridge_heads):
        first = next((h for h in ctx.heads if ctx.metadata(h).get("model") != "ridge"), ctx.heads[0])
        missing.append("no ridge baseline (a closed-form ridge head on the same embeddings: what a linear read-out "
                       "reaches without training): <code>enformer-transfer train RUN_DIR --head ridge --model ridge"
                       f"</code>, then <code>enformer-transfer evaluate RUN_DIR --head {html.escape(first)}</code>")
    if "compare_run_pearson" not in have:
        missing.append("no random-backbone comparison (the same head on a backbone without pretraining: what "
                       "transfer adds): evaluate with <code>--compare-run OTHER_RUN_DIR</code>")
    if not missing:
        return ""
    return f"<p class='small'>Baselines not in this run: {'; '.join(missing)}.</p>"


def summary_section(ctx: ReportContext) -> Section:
    """What a reader wants first: how well each head learned the tracks, per level, against the baselines."""
    split = next((ctx.split(h) for h in ctx.heads if ctx.split(h)), None)
    parts = [_headline(ctx, head, ctx.split(head)) for head in ctx.heads if ctx.split(head)]
    parts.append(_missing_baselines(ctx))
    for head in ctx.heads:
        for warning in ctx.run.evaluation(head).summary.get("warnings", []):
            parts.append(f"<p class='warning'>head {html.escape(head)}: {html.escape(warning)}</p>")
    if split is not None:
        overview = summary_table(ctx, split)
        same = [h for h in ctx.heads if ctx.identical_to(h) and h in overview.columns]
        overview = overview.drop(columns=same)  # the same numbers as the head whose weights it kept
        series = [c for c in overview.columns if c not in ("grouping", "group", "tracks")]
        baselines = [c for c in series if c not in ctx.heads]
        explained = {"ridge baseline": "the ridge head", "backbone's best own track":
                     "the backbone's best-matching own track (chosen on valid, zero-shot)"}
        said = [explained.get(c, f"{c}: the same head trained in another run") for c in baselines]
        parts.append(f"<h3>Mean Pearson per level ({html.escape(split)} split)</h3>"
                     "<p class='small'>per track over all bins of the split's windows pooled, then the mean over the "
                     "level's tracks" + ("; the best of each row in bold" if len(series) > 1 else "")
                     + (f". Baselines: {html.escape('; '.join(said))}" if said else "")
                     + "".join(f"; {html.escape(h)} is left out: identical to {html.escape(ctx.identical_to(h))}"
                               for h in same) + ".</p>")
        parts.append(table(overview, empty=f"no head has a {split} evaluation", bold_max=series))
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
            f"{geometry.bin_size} bp per window.</p>", table(splits, empty="the dataset has no windows")]
    children = []
    if run.track_stats is not None:
        stats = run.track_stats
        labels = [ctx.label(i) for i in stats["identifier"]]
        if labels != list(stats["identifier"].astype(str)):
            stats = stats.assign(track=labels)[["track", *stats.columns]]
        children.append(Section("dataset-targets", "Targets per track", table(stats, empty="no track statistics")))
    inputs = run.dataset_record.key["inputs"]
    files = [dict(f, input=name) for name, value in inputs.items() for f in (value if isinstance(value, list) else [value])]
    config = run.layout.config.read_text() if run.layout.config.is_file() else ""
    extra = details("Input files and their fingerprints", table(pd.DataFrame(files), empty="no input files recorded"))
    if config:
        extra += details("Run config (config.toml)", f"<pre>{html.escape(config)}</pre>")
    extra += details("Geometry", f"<pre>{html.escape(json.dumps(geometry.model_dump(), indent=1))}</pre>")
    children.append(Section("dataset-provenance", "Inputs and config", extra))
    return Section("dataset", "Dataset", "".join(body), children)


def _track_viewer(ctx: ReportContext, head: str, figures: list[dict]) -> str:
    tracks = [f for f in figures if f["kind"] == "track"]
    if not tracks:
        return ""

    def named(track: str) -> str:
        label = ctx.label(track)
        return track if label == track else f"{label} ({track})"

    options = "".join(f'<option value="{anchor(head, "track", f["track"])}">{html.escape(named(f["track"]))}</option>'
                      for f in tracks)
    plots = "".join(figure(f["path"], f["caption"], ident=anchor(head, "track", f["track"]), hidden=i > 0,
                           extra_class="track-plot") for i, f in enumerate(tracks))
    return (f'<div class="track-viewer"><div class="controls"><button type="button" data-step="-1">&larr;</button>'
            f'<label>track <select aria-label="track">{options}</select></label>'
            f'<button type="button" data-step="1">&rarr;</button><span class="small">{len(tracks)} tracks; '
            f"an identifier in the per-track table opens its plot</span></div>{plots}</div>")


def _column_words(ctx: ReportContext, head: str) -> dict[str, str]:
    """Baseline columns of ``head``'s tables in words (the compare run by its name)."""
    baselines = ctx.run.evaluation(head).summary.get("baselines", {})
    return {column: f"{_baseline_label(column, head, baselines)}, Pearson" for column in BASELINES}


def _identical_head_section(ctx: ReportContext, head: str, same: str) -> Section:
    """A fine-tuned model that kept its frozen head's weights: one paragraph and its training
    curves, not a second copy of the frozen head's section."""
    meta = ctx.metadata(head)
    finetune, training = meta["finetune"], meta.get("training", {})
    start = training.get("start_valid_pearson")
    logs = ctx.run.layout.head(head).metrics
    best = None
    if logs.is_file():
        epochs = pd.read_csv(logs)
        if "val_pearson" in epochs and epochs["val_pearson"].notna().any():
            best = float(epochs["val_pearson"].max())
    split = ctx.split(head)
    ours = ctx.run.evaluation(head).summary["splits"].get(split, {}).get("pearson_mean")
    theirs = ctx.run.evaluation(same).summary["splits"].get(split, {}).get("pearson_mean")
    epochs = training.get("epochs")
    tried = (f"{finetune.get('trainable', '?')} fine-tuning from head {same}, {training.get('steps', 0):,} steps"
             + (f", {epochs} epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""))
    outcome = (f"validation mean Pearson {fmt(start)} before fine-tuning, {fmt(best)} at its best epoch"
               if start is not None and best is not None else "no validation improvement")
    text = (f"<p><b>Identical to {html.escape(same)}</b>: {html.escape(tried)}; {html.escape(outcome)}. No "
            "checkpoint beat the frozen head on validation (raising the mean Pearson without lowering any track by "
            f"more than 0.01), so the frozen head's weights were kept (see <a href='#{anchor('head', same)}'>head {html.escape(same)}</a> for "
            f"its figures and tables). Evaluated from sequence, {split} mean Pearson {fmt(ours)} "
            f"(head {html.escape(same)}: {fmt(theirs)}; any difference is the stored embeddings' precision).</p>")
    curves = figure_grid([(f["path"], f["caption"]) for f in ctx.run.evaluation(head).figures
                          if f.get("name") == "training_curves"])
    return Section(anchor("head", head), f"Head {head}", text + curves)


def _dar_body(ctx: ReportContext, head: str) -> str:
    dar = ctx.run.dar(head)
    s = dar.summary
    text = (f"<p>{s['regions']} regions; median Pearson across cell types "
            f"{fmt(s['pearson_across_cell_types_median'])}{_dar_interval(s)}; most open cell type predicted = "
            f"observed in {100 * s['top_agreement_observed_predicted']:.1f}% of regions (chance "
            f"{100 * s['chance_agreement']:.1f}%{_dar_test(s)}); bin rule {html.escape(s['bin_rule'])}</p>")
    regions = dar.regions
    cell_types = [str(c) for c in s.get("cell_types", [])]
    never_open = [c for c in cell_types if c not in set(regions["observed_top"].astype(str))]
    never_predicted = [c for c in cell_types if c not in set(regions["predicted_top"].astype(str))]
    notes = []
    if never_open:
        notes.append(f"empty confusion row(s) {', '.join(never_open)}: no region is observed most open in that "
                     "cell type")
    if never_predicted:
        notes.append(f"empty column(s) {', '.join(never_predicted)}: no region is predicted most open there")
    if s.get("labels_without_track"):
        notes.append(f"DAR labels without a track (their regions are left out): {', '.join(map(str, s['labels_without_track']))}")
    if notes:
        text += f"<p class='small'>{html.escape('; '.join(notes))}.</p>"
    return text + figure_grid([(f["path"], f["caption"]) for f in dar.figures])


GENE_WORDS = {
    "pearson_across_genes": "Pearson across genes", "spearman_across_genes": "Spearman across genes",
    "pearson_specificity": "Pearson across genes, centred per level (specificity)",
    "ridge_pearson_across_genes": "ridge, across genes", "ridge_pearson_specificity": "ridge, specificity",
    "zero_shot_pearson_across_genes": "backbone's own track, across genes",
    "zero_shot_pearson_specificity": "backbone's own track, specificity",
    "compare_run_pearson_across_genes": "compare run, across genes",
    "compare_run_pearson_specificity": "compare run, specificity",
}


def _genes_body(ctx: ReportContext, evaluation) -> str:
    """Expression per gene (evaluate --genes): the numbers, per level and per track, and the figures."""
    g = evaluation.summary["genes"]
    signal = (f"sum over the bins within {g['tss_bins']} bin(s) of the TSS" if g["gene_signal"] == "tss"
              else "sum over the bins of the gene's exons")
    text = (f"<p>{g['n_genes']} genes of {html.escape(Path(g['gtf']).name)} with their TSS in a {g['split']} window "
            f"({g['n_genes_plus']} on +); {signal}, log1p; {g['n_tracks']} tracks. Mean Pearson across genes "
            f"{fmt(g.get('pearson_across_genes_mean'))}, Spearman {fmt(g.get('spearman_across_genes_mean'))}, "
            f"specificity (centred per level) {fmt(g.get('pearson_specificity_mean'))}.</p>")
    levels = pd.DataFrame(g["per_level"])
    words = {f"{c}_mean": f"{w}, mean" for c, w in GENE_WORDS.items()}
    words["pearson_across_tracks_median"] = "per gene, Pearson across the level's tracks, median"
    words["pearson_across_tracks_mean"] = "per gene, Pearson across the level's tracks, mean"
    text += table(levels, words=words, empty="no level")
    per_track = evaluation.per_track_genes
    keep = [c for c in ("identifier", "n_genes", *GENE_WORDS, "note") if c in per_track.columns
            and per_track[c].notna().any()]
    text += details("Per track (full precision in per_track_genes.csv)",
                    table(per_track[keep], words=GENE_WORDS, empty="no track"))
    return text + figure_grid([(f["path"], f["caption"]) for f in evaluation.figures if f["kind"] == "genes"])


def head_section(ctx: ReportContext, head: str) -> Section:
    same = ctx.identical_to(head)
    if same:
        return _identical_head_section(ctx, head, same)
    run = ctx.run
    evaluation = run.evaluation(head)
    meta = ctx.metadata(head)
    training = meta.get("training", {})
    kept = training.get("kept", {})
    facts = [f"{meta['model']} head", f"loss {meta['loss']}", f"{meta['n_tracks']} tracks"]
    if training.get("steps"):
        facts.append(f"{training['steps']:,} steps, {training.get('epochs', '-')} epochs")
    if kept.get("epoch") is not None:
        facts.append(f"kept epoch {kept['epoch']}")
    elif kept.get("start"):
        facts.append("kept its start (no epoch beat it on validation)")
    if training.get("start_valid_pearson") is not None:
        facts.append(f"validation mean Pearson {fmt(training['start_valid_pearson'])} at the start"
                     + (f", {fmt(kept['val_pearson'])} kept" if kept.get("val_pearson") is not None else ""))
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
        children.append(Section(f"{key}-dar", "DAR analysis", _dar_body(ctx, head)))
    if evaluation.has_genes:
        children.append(Section(f"{key}-genes", "Genes", _genes_body(ctx, evaluation)))
    words = _column_words(ctx, head)
    per_level = evaluation.per_level
    children.append(Section(f"{key}-levels", "Per level", table(
        per_level, words={f"{c}_mean": f"{w}, mean" for c, w in words.items()},
        empty="no level to show: the tracks of this head have no grouping column (no metadata column with "
              "repeated values, such as class or level; add one to the targets table to see per-level means)")))
    per_track = evaluation.per_track
    keep = [c for c in per_track.columns if c not in TRACK_TABLE_HIDDEN and per_track[c].notna().any()
            and not (per_track[c].astype(str) == "").all()]
    shown = per_track[keep]
    labels = [ctx.label(i) for i in shown["identifier"]]
    if labels != list(shown["identifier"].astype(str)):
        at = keep.index("identifier") + 1
        shown = shown.assign(track=labels)[[*keep[:at], "track", *keep[at:]]]
    children.append(Section(f"{key}-tracks", "Per track",
                            "<p class='small'>click a column to sort; an identifier opens its track plot; "
                            "full precision in per_track.csv</p>"
                            + table(shown, empty="no track was evaluated", link_column="identifier",
                                    link_prefix=f"{head}-track-", words=words)
                            .replace('class="table-wrap"', 'class="table-wrap tall"', 1)))
    viewer = _track_viewer(ctx, head, figures)
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
        if "scale" in summary:  # baskerville's conventions, recorded since they became settings
            settings.append(f"{summary['scale']} scale, {summary['placement']} placement, strands "
                            f"{summary['strands']}")
        dropped = summary.get("ref_mismatches_dropped", summary["ref_mismatches"])
        flipped = f", {summary['flipped']} flipped" if summary.get("flipped") else ""
        text = (f"{summary['variants']} variants ({kinds}) x {summary['tracks']} tracks of head {summary['head']}; "
                f"{sum(summary['skipped'].values())} alleles left out, {dropped} REF mismatches "
                f"dropped{flipped}; {'; '.join(settings)} (docs/variants.md)")
        key = anchor("variants", name)
        top = top.assign(variant=top["variant"].map(short_name))
        if "identifier" in top.columns:
            labels = [ctx.label(i) for i in top["identifier"]]
            if labels != list(top["identifier"].astype(str)):
                at = list(top.columns).index("identifier") + 1
                top = top.assign(track=labels)[[*top.columns[:at], "track", *top.columns[at:]]]
        children = [Section(f"{key}-top", f"Top variants per track by |{stat}|",
                            table(top, empty=f"no variant was scored in {name} (every allele was left out: see the "
                                             "counts above and docs/variants.md)"))]
        if effects.folder.gene_scores.is_file():  # variants --genes: the strongest effects on a gene's expression
            genes = effects.gene_scores
            strongest = genes.loc[genes["logSED"].abs().sort_values(ascending=False).index[:15]]
            columns = [c for c in ("variant", "gene_name", "gene_strand", "tss_distance", "identifier", "track_read",
                                   "logSED", "logSED_z", "SUM") if c in strongest.columns]
            strongest = strongest[columns].assign(variant=strongest["variant"].map(short_name))
            pairs = len(genes[["gene_id", "variant"]].drop_duplicates())
            about = (f"{pairs} variant-gene pairs x {genes['identifier'].nunique()} tracks; logSED and SUM over each "
                     "gene's exon bins, read on the gene's own strand (docs/variants.md)")
            children.append(Section(f"{key}-genes", "Gene-level effects: the 15 strongest by |logSED|",
                                    f"<p>{html.escape(about)}</p>" + table(strongest, empty="no gene was scored")))
        grid = figure_grid([(f["path"], f["caption"]) for f in effects.figures])
        if grid:
            children.append(Section(f"{key}-figures", "Figures", grid))
        out.append(Section(key, f"Variant effects {name}", f"<p>{html.escape(text)}</p>", children))
    return out


def _dar_interval(summary: dict) -> str:
    low, high = summary.get("pearson_across_cell_types_median_ci", [None, None])
    if low is None or low != low:  # absent (older analyses) or NaN
        return ""
    if fmt(low) == fmt(high):  # no spread to show: say so once, with what it rests on
        resamples = f"all {summary['bootstrap']} bootstrap resamples" if summary.get("bootstrap") else "every bootstrap resample"
        return f" ({resamples} of the {summary['regions']} regions give this median: no spread)"
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
        body = text + table(counts, empty="no region passed the rule: lower --min-log2-fold-change or --min-signal "
                                         "and rerun enformer-transfer call-dars") + figure_grid([(f["path"], f["caption"]) for f in called.figures])
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


def _no_patterns(summary: dict, name: str, minimum: int | None) -> str:
    """Why targets have no pattern, and what to change (TF-MoDISco found too few seqlets)."""
    targets = summary.get("targets", {})
    empty = {display: entry for display, entry in targets.items() if not entry.get("patterns")}
    if not empty:
        return ""
    which = ", ".join(f"{display} ({entry.get('regions', '?')} regions, {entry.get('seqlets', 0)} seqlets)"
                      for display, entry in empty.items())
    return (f"<p class='small'>No pattern for {html.escape(which)}: TF-MoDISco needs "
            + (f"at least {minimum} seqlets per pattern (--min-seqlets)" if minimum else "enough seqlets per pattern")
            + "; few regions or weak contributions give too few. More regions (call-dars with a lower "
            "--min-log2-fold-change), or <code>enformer-transfer motifs RUN_DIR --contributions "
            f"{html.escape(str(summary.get('contributions', name)))} --min-seqlets 10 --force</code>, usually finds "
            "them.</p>")


def motifs_sections(ctx: ReportContext) -> list[Section]:
    """Finished motifs stages: TF-MoDISco patterns per target, their JASPAR matches, logos."""
    out = []
    for name in ctx.run.motif_names():
        motifs = ctx.run.motifs(name)
        figures = motifs.figures
        text = (f"<p>TF-MoDISco patterns of contributions <code>{html.escape(motifs.summary['contributions'])}</code>, "
                f"matched (TOMTOM) against {html.escape(', '.join(motifs.summary['database']))}</p>")
        config = motifs.record.config if isinstance(motifs.record.config, dict) else {}
        if not any(entry.get("reason") for entry in motifs.summary.get("targets", {}).values()):
            text += _no_patterns(motifs.summary, name, (config.get("motifs") or config).get("min_seqlets"))
        keep = ["display", "pattern", "n_seqlets", "n_regions", "importance", "motif", "best_motif_id",
                "best_qvalue", "consensus"]
        patterns = motifs.patterns[[c for c in keep if c in motifs.patterns.columns]].rename(
            columns={"display": "target"})
        # a target without a pattern says why (its numbers, what to change), never a bare "none"
        reasons = {target: entry["reason"] for target, entry in motifs.summary.get("targets", {}).items()
                   if entry.get("reason")}
        left_out = motifs.summary.get("left_out") or {}
        reasons.update(left_out if isinstance(left_out, dict) else dict.fromkeys(left_out, "too few regions"))
        without = ("<p>Without a positive pattern:</p><ul>" + "".join(
            f"<li><b>{html.escape(target)}</b>: {html.escape(reason)}</li>" for target, reason in reasons.items())
            + "</ul>") if reasons else ""
        key = anchor("motifs", name)
        children = []
        if len(patterns):  # none found: said above, with what to change
            children.append(Section(f"{key}-patterns", "Patterns", table(patterns, empty="")))
        logos = figure_grid([(f["path"], f["caption"]) for f in figures if f["kind"] == "pattern"])
        if logos:
            children.append(Section(f"{key}-logos", "Pattern logos", logos))
        summary_figures = [(f["path"], f["caption"]) for f in figures if f["kind"] == "summary"]
        if summary_figures and len(patterns) and patterns["motif"].astype(str).str.len().max() > draw.MOTIF_LABEL_WIDTH:
            text += (f"<p class='small'>motif names longer than {draw.MOTIF_LABEL_WIDTH} characters (unmatched "
                     "patterns go by their consensus) are shortened on the heatmap's axis; the full names are in the "
                     "Patterns table.</p>")
        out.append(Section(key, f"Motifs {name}", text + without + figure_grid(summary_figures), children))
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


def pseudobulk_section(ctx: ReportContext) -> Section | None:
    """When the run's targets table was written by ``pseudobulk``: its QC per group (cells,
    fragments, blacklist fraction) and figure, found beside the targets table the dataset recorded."""
    from ..data.pseudobulk import PseudobulkFolder

    recorded = ctx.run.dataset_record.key.get("inputs", {}).get("targets") or {}
    if not recorded.get("path"):
        return None
    folder = PseudobulkFolder(Path(recorded["path"]).parent)
    if not (folder.record.is_file() and folder.qc.is_file()):
        return None
    qc = pd.read_csv(folder.qc, sep="\t", keep_default_na=False)
    written = qc["status"].eq("written")
    figures = [(e["path"], e["caption"]) for e in read_figure_index(folder.figures)]
    body = (f"<p>The tracks were made from single-cell fragments by <code>pseudobulk</code> "
            f"({html.escape(str(folder.path))}): {int(written.sum())} groups written, {int((~written).sum())} left out "
            f"(too few cells).</p>" + figure_grid(figures) + table(qc, empty="no group of cells (see the pseudobulk command's output)"))
    return Section("pseudobulk", "Pseudobulk tracks", body)


REPORT_SECTIONS = [summary_section, left_out_section, dataset_section, pseudobulk_section, heads_sections,
                   called_dars_sections, contributions_sections,
                   motifs_sections, variants_sections]
