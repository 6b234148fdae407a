"""One self-contained HTML file per run: config, provenance, dataset, training, metrics with
baselines, figures (embedded), and a sortable per-track table linking to each track's plot."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import pandas as pd

from .._version import __version__
from ..config import RunConfig, as_config
from ..errors import InputError
from ..fs import write_text_atomic
from ..layout import ReportFolder
from ..run import Run
from ..stage import run_stage

SCRIPT = """
<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(String(e.message));
  document.getElementById('js-errors').textContent = window.__errors.join('\\n');
});
function sortTable(table, column, numeric) {
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var ascending = table.getAttribute('data-sort-col') != column || table.getAttribute('data-sort-dir') != 'asc';
  rows.sort(function (a, b) {
    var x = a.cells[column].getAttribute('data-value'), y = b.cells[column].getAttribute('data-value');
    if (numeric) { x = parseFloat(x); y = parseFloat(y); if (isNaN(x)) x = -Infinity; if (isNaN(y)) y = -Infinity; }
    return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
  });
  rows.forEach(function (r) { body.appendChild(r); });
  table.setAttribute('data-sort-col', column);
  table.setAttribute('data-sort-dir', ascending ? 'asc' : 'desc');
}
document.querySelectorAll('table.sortable').forEach(function (table) {
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell, i) {
    cell.addEventListener('click', function () { sortTable(table, i, cell.getAttribute('data-numeric') == '1'); });
  });
});
document.body.setAttribute('data-ready', '1');
</script>
"""

STYLE = """
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 1px solid #ccc; padding-top: 1em; }
table { border-collapse: collapse; font-size: 12px; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; cursor: pointer; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 12px; }
img { max-width: 100%; } figure { margin: 1em 0; } figcaption { font-size: 12px; color: #555; }
.small { font-size: 12px; color: #555; } #js-errors { color: #b00; } .warning { color: #a60; }
</style>
"""


def _img(path: Path, caption: str, anchor: str | None = None) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return (f'<figure{ident}><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(df: pd.DataFrame, link_column: str | None = None, link_prefix: str = "") -> str:
    head = []
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col])
        head.append(f'<th class="{"" if numeric else "text"}" data-numeric="{int(numeric)}">{html.escape(str(col))}</th>')
    rows = []
    for _, row in df.iterrows():
        cells = []
        for col in df.columns:
            value = row[col]
            numeric = pd.api.types.is_numeric_dtype(df[col])
            if numeric:
                text = "" if pd.isna(value) else (f"{value:.4f}" if isinstance(value, float) else str(value))
                raw = "" if pd.isna(value) else str(value)
            else:
                text = raw = "" if pd.isna(value) else str(value)
            shown = html.escape(text)
            if col == link_column and text:
                shown = f'<a href="#{html.escape(link_prefix + text)}">{shown}</a>'
            cells.append(f'<td class="{"" if numeric else "text"}" data-value="{html.escape(raw)}">{shown}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _variants_section(run: Run, name: str) -> str:
    """A finished variants stage: what was scored, the top variants per track, the figures."""
    from ..interpret.vcf import short_name

    effects = run.variants(name)
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
    parts = [f"<h2>Variant effects <code>{html.escape(name)}</code></h2><p>{html.escape(text)}</p>",
             f"<h3>Top variants per track by |{html.escape(stat)}|</h3>",
             _table(top.assign(variant=top["variant"].map(short_name)))]
    parts += [_img(f["path"], f["caption"]) for f in effects.figures]
    return "".join(parts)


def write_report(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Write RUN_DIR/report/report.html for the evaluated heads (default: all of them); a view,
    rebuilt whenever what it shows changed."""
    config = as_config(config)
    if config.run_dir is None:
        raise InputError("report: no run directory given")
    run = Run(config.run_dir)
    evaluated = run.evaluations()
    heads = config.report.heads or evaluated
    missing = [h for h in heads if h not in evaluated]
    if not heads or missing:
        raise InputError(f"report: head(s) {', '.join(missing) or '(none)'} not evaluated in {run.path}; "
                         "run 'enformer-transfer evaluate RUN_DIR --head NAME' first")
    key = {"dataset": run.dataset_record.key_digest,
           "evaluations": {h: run.evaluation(h).record.key_digest for h in heads},
           "dar": {h: run.dar(h).record.key_digest for h in heads if h in run.dars()},
           "interpretation": interpretation_digests(run),
           "variants": {n: run.variants(n).record.key_digest for n in run.variant_analyses()},
           "tool_version": __version__}

    def build(work: Path, state: str) -> dict:
        out = ReportFolder(work)
        write_text_atomic(out.html, render_report(run, heads))
        return {"heads": heads, "bytes": out.html.stat().st_size}

    folder = run_stage(run.layout.report.path, key, build, config, ("report",), force=force, what="report", on_stale="rebuild")
    path = ReportFolder(folder).html
    print(f"report: {path}")
    return path


def render_report(run: Run, heads: list[str]) -> str:
    """The report of ``heads`` as one self-contained HTML document."""
    dataset = run.dataset_record
    parts = [f"<h1>enformer-transfer report</h1><p class='small'>run <code>{html.escape(str(run.path))}</code>, "
             f"tool {__version__}, written {time.strftime('%Y-%m-%d %H:%M')}</p><pre id='js-errors'></pre>"]
    parts.append("<h2>Summary</h2>")
    for head in heads:
        summary = run.evaluation(head).summary
        rows = []
        for split, values in summary["splits"].items():
            row = {"head": head, "split": split, "windows": values["windows"],
                   "mean Pearson": values["pearson_mean"], "log1p Pearson": values["pearson_log1p_mean"],
                   "Spearman": values["spearman_mean"], "R2": values["r2_mean"],
                   "per-window median": values["pearson_window_median_mean"],
                   "across cell types per bin": values["across_tracks_per_bin"]["mean"]}
            for key in ("ridge_pearson_mean", "zero_shot_pearson_mean", "compare_run_pearson_mean"):
                if key in values:
                    row[key.replace("_mean", "").replace("_", " ")] = values[key]
            rows.append(row)
        parts.append(_table(pd.DataFrame(rows)))
        for warning in summary.get("warnings", []):
            parts.append(f"<p class='warning'>head {html.escape(head)}: {html.escape(warning)}</p>")
    parts.append("<p class='small'>Pearson: per track over all bins of all windows of a split pooled, "
                 "then the mean over tracks (the study's metric); baselines: the ridge head, the backbone's "
                 "best-matching own track chosen on valid (zero-shot), another run's head (compare run).</p>")

    parts.append("<h2>Dataset</h2>")
    geometry = run.geometry.model_dump()
    parts.append(f"<p>{len(run.tracks)} tracks; geometry {html.escape(json.dumps(geometry))}; windows per split: "
                 + ", ".join(f"{s} {len(run.windows(s))}" for s in run.splits) + "</p>")
    if run.track_stats is not None:
        parts.append("<h3>Targets per track</h3>" + _table(run.track_stats))
    parts.append("<h3>Input fingerprints</h3>")
    inputs = dataset.key["inputs"]
    files = [dict(f, input=name) for name, value in inputs.items() for f in (value if isinstance(value, list) else [value])]
    parts.append(_table(pd.DataFrame(files)))
    parts.append("<h3>Config</h3><pre>" + html.escape(run.layout.config.read_text()
                                                     if run.layout.config.is_file() else "") + "</pre>")

    for head in heads:
        evaluation = run.evaluation(head)
        meta = run.head(head).metadata
        parts.append(f"<h2>Head <code>{html.escape(head)}</code></h2>")
        training = meta.get("training", {})
        parts.append(f"<p>{html.escape(meta['model'])} head, loss {html.escape(meta['loss'])}, "
                     f"{meta['n_tracks']} tracks; epochs {training.get('epochs', '-')}, best val loss "
                     f"{training.get('best_val_loss', '-')}; backbone {html.escape(str(meta['backbone'].get('source')))}</p>")
        figures = evaluation.figures
        for figure in figures:
            if figure["kind"] in ("summary", "region"):
                parts.append(_img(figure["path"], figure["caption"]))
        if head in run.dars():
            dar = run.dar(head)
            summary = dar.summary
            parts.append(f"<h3>DAR analysis</h3><p>{summary['regions']} regions; median Pearson across cell types "
                         f"{summary['pearson_across_cell_types_median']:.3f}{_dar_interval(summary)}; most open cell "
                         f"type predicted = observed in {100 * summary['top_agreement_observed_predicted']:.1f}% of "
                         f"regions (chance {100 * summary['chance_agreement']:.1f}%{_dar_test(summary)}); bin rule "
                         f"{html.escape(summary['bin_rule'])}</p>")
            for figure in dar.figures:
                parts.append(_img(figure["path"], figure["caption"]))
        per_level = evaluation.per_level
        parts.append("<h3>Per level</h3>" + (_table(per_level) if len(per_level) else
                                             "<p class='small'>the tracks of this head have no grouping column "
                                             "(no metadata column with repeated values)</p>"))
        per_track = evaluation.per_track
        keep = [c for c in per_track.columns if c not in ("clip", "clip_soft", "scale", "sum_stat", "description")]
        parts.append("<h3>Per track</h3><p class='small'>click a column to sort; an identifier links to its track plot</p>")
        parts.append(_table(per_track[keep], link_column="identifier", link_prefix=f"{head}-track-"))
        parts.append("<h3>Track plots</h3>")
        for figure in figures:
            if figure["kind"] == "track":
                parts.append(_img(figure["path"], figure["caption"], anchor=f"{head}-track-{figure['track']}"))
    parts += interpretation_sections(run)
    parts += [_variants_section(run, name) for name in run.variant_analyses()]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>enformer-transfer report</title>"
            + STYLE + "</head><body>" + "".join(parts) + SCRIPT + "</body></html>")


def _dar_interval(summary: dict) -> str:
    low, high = summary.get("pearson_across_cell_types_median_ci", [None, None])
    if low is None or low != low:  # absent (older analyses) or NaN
        return ""
    return f" ({100 * summary['confidence']:g}% bootstrap interval {low:.3f} to {high:.3f})"


def _dar_test(summary: dict) -> str:
    p = summary.get("top_agreement_permutation_p")
    if p is None or p != p:
        return ""
    return (f"; permuting predicted tops across regions: {100 * summary['top_agreement_permutation_null']:.1f}%, "
            f"permutation p = {p:.3g}")


def interpretation_digests(run: Run) -> dict:
    """The finished call-dars, contributions and motifs stages the report shows."""
    return {"called_dars": {n: run.called_dars(n).record.key_digest for n in run.called_dar_names()},
            "contributions": {n: run.contributions(n).record.key_digest for n in run.contribution_names()},
            "motifs": {n: run.motifs(n).record.key_digest for n in run.motif_names()}}


def interpretation_sections(run: Run) -> list[str]:
    """Called DARs, contributions (logos) and motifs (table, heatmap, logos), when present."""
    parts = []
    for name in run.called_dar_names():
        called = run.called_dars(name)
        summary, rule = called.summary, called.summary["rule"]
        parts.append(f"<h2>Called DARs <code>{html.escape(name)}</code></h2><p>{summary['regions']} cell-type-specific "
                     f"regions of {summary['candidates']} candidates ({html.escape(summary['source'])}, "
                     f"{html.escape(rule['candidates'])}): log2 fold change &ge; {rule['min_log2_fold_change']:g} "
                     f"vs {html.escape(rule['versus'])}, signal &ge; {rule['min_signal']:.3g}, pseudocount "
                     f"{rule['pseudocount']:.3g}</p>")
        parts.append(_table(pd.DataFrame({summary["label_column"]: list(summary["per_cell_type"]),
                                          "regions": list(summary["per_cell_type"].values())})))
        parts += [_img(f["path"], f["caption"]) for f in called.figures]
    for name in run.contribution_names():
        contributions = run.contributions(name)
        summary = contributions.summary
        parts.append(f"<h2>Contributions <code>{html.escape(name)}</code></h2><p>head "
                     f"<code>{html.escape(summary['head'])}</code>, {html.escape(summary['method'])}, "
                     f"{summary['regions']} regions x {len(summary['targets'])} attributed scalars, "
                     f"{summary['width']} bp centred on each region; scalar: a track's predictions summed over "
                     f"the bins {html.escape(str(summary['target_bins']))}</p>")
        if "summation" in summary:
            parts.append(f"<p class='small'>DeepLIFT/SHAP summation to delta: max relative error "
                         f"{summary['summation']['max_relative_error']}</p>")
        parts += [_img(f["path"], f["caption"]) for f in contributions.figures]
    for name in run.motif_names():
        motifs = run.motifs(name)
        parts.append(f"<h2>Motifs <code>{html.escape(name)}</code></h2><p>TF-MoDISco patterns of contributions "
                     f"<code>{html.escape(motifs.summary['contributions'])}</code>, matched (TOMTOM) against "
                     f"{html.escape(', '.join(motifs.summary['database']))}</p>")
        figures = motifs.figures
        parts += [_img(f["path"], f["caption"]) for f in figures if f["kind"] == "summary"]
        keep = ["display", "pattern", "n_seqlets", "n_regions", "importance", "motif", "best_motif_id",
                "best_qvalue", "consensus"]
        table = motifs.patterns[[c for c in keep if c in motifs.patterns.columns]].rename(columns={"display": "target"})
        parts.append("<h3>Patterns</h3>" + _table(table))
        parts.append("<h3>Pattern logos</h3>")
        parts += [_img(f["path"], f["caption"]) for f in figures if f["kind"] == "pattern"]
    return parts
