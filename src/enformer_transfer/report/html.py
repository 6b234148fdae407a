"""One self-contained HTML file per run: config, provenance, dataset, training, metrics with
baselines, figures (embedded), and a sortable per-track table linking to each track's plot."""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path

import pandas as pd

from .._version import __version__
from ..errors import InputError

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
.small { font-size: 12px; color: #555; } #js-errors { color: #b00; }
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


def write_report(run_dir: Path | str, heads: list[str] | None = None, out: Path | str | None = None) -> Path:
    """Write RUN_DIR/report.html (or ``out``) for the evaluated heads (default: all of them)."""
    from ..run import Run

    run = Run(run_dir)
    evaluated = sorted(p.name for p in (run.path / "evaluation").glob("*") if (p / "stage.json").is_file()) \
        if (run.path / "evaluation").is_dir() else []
    heads = heads or evaluated
    missing = [h for h in heads if h not in evaluated]
    if not heads or missing:
        raise InputError(f"report: head(s) {', '.join(missing) or '(none)'} not evaluated in {run.path}; "
                         "run 'enformer-transfer evaluate RUN_DIR --head NAME' first")
    dataset = run.stage_record("dataset")
    parts = [f"<h1>enformer-transfer report</h1><p class='small'>run <code>{html.escape(str(run.path))}</code>, "
             f"tool {__version__}, written {time.strftime('%Y-%m-%d %H:%M')}</p><pre id='js-errors'></pre>"]
    parts.append("<h2>Summary</h2>")
    for head in heads:
        summary = json.loads((run.path / "evaluation" / head / "summary.json").read_text())
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
    parts.append("<p class='small'>Pearson: per track over all bins of all windows of a split pooled, "
                 "then the mean over tracks (the study's metric); baselines: the ridge head, the backbone's "
                 "best-matching own track chosen on valid (zero-shot), another run's head (compare run).</p>")

    parts.append("<h2>Dataset</h2>")
    windows = pd.read_csv(run.dataset_dir / "windows.tsv", sep="\t")
    geometry = dataset["config"]["geometry"]
    parts.append(f"<p>{len(run.tracks)} tracks; geometry {html.escape(json.dumps(geometry))}; windows per split: "
                 + ", ".join(f"{s} {n}" for s, n in windows["split"].value_counts(sort=False).items()) + "</p>")
    stats_path = run.dataset_dir / "track_stats.tsv"
    if stats_path.is_file():
        parts.append("<h3>Targets per track</h3>" + _table(pd.read_csv(stats_path, sep="\t")))
    parts.append("<h3>Input fingerprints</h3>")
    parts.append(_table(pd.DataFrame(dataset["key"]["inputs"])))
    parts.append("<h3>Config</h3><pre>" + html.escape((run.path / "config.toml").read_text()
                                                     if (run.path / "config.toml").is_file() else "") + "</pre>")

    for head in heads:
        folder = run.path / "evaluation" / head
        meta = run.head(head).metadata
        parts.append(f"<h2>Head <code>{html.escape(head)}</code></h2>")
        training = meta.get("training", {})
        parts.append(f"<p>{html.escape(meta['model'])} head, loss {html.escape(meta['loss'])}, "
                     f"{meta['n_tracks']} tracks; epochs {training.get('epochs', '-')}, best val loss "
                     f"{training.get('best_val_loss', '-')}; backbone {html.escape(str(meta['backbone'].get('source')))}</p>")
        figures = folder / "figures"
        for name, caption in (("training_curves", "training curves"),
                              ("pearson_boxplot", "per-track Pearson by split and level"),
                              ("correlations_test", "track x track correlations, observed and predicted (test)"),
                              ("correlations_valid", "track x track correlations, observed and predicted (valid)"),
                              ("tracks_example", "observed vs predicted, window with the most signal"),
                              ("scatter_best", "observed vs predicted bins, best track"),
                              ("scatter_worst", "observed vs predicted bins, worst track"),
                              ("pearson_by_position", "Pearson by bin position"),
                              ("pearson_vs_mean", "Pearson vs mean target"),
                              ("pearson_vs_nuclei", "Pearson vs number of nuclei")):
            if (figures / f"{name}.png").is_file():
                parts.append(_img(figures / f"{name}.png", caption))
        for path in sorted((figures / "regions").glob("*.png")):
            parts.append(_img(path, f"observed vs predicted, chosen region: {path.stem}"))
        dar = run.path / "dar" / head
        if (dar / "summary.json").is_file():
            summary = json.loads((dar / "summary.json").read_text())
            parts.append(f"<h3>DAR analysis</h3><p>{summary['regions']} regions; median Pearson across cell types "
                         f"{summary['pearson_across_cell_types_median']:.3f}; most open cell type predicted = observed "
                         f"in {100 * summary['top_agreement_observed_predicted']:.1f}% of regions "
                         f"(chance {100 * summary['chance_agreement']:.1f}%); bin rule {html.escape(summary['bin_rule'])}</p>")
            for name in ("dar_pearson_histogram", "dar_confusion", "dar_heatmaps"):
                if (dar / "figures" / f"{name}.png").is_file():
                    parts.append(_img(dar / "figures" / f"{name}.png", name.replace("_", " ")))
        per_level = pd.read_csv(folder / "per_level.csv")
        parts.append("<h3>Per level</h3>" + _table(per_level))
        per_track = pd.read_csv(folder / "per_track.csv")
        keep = [c for c in per_track.columns if c not in ("clip", "clip_soft", "scale", "sum_stat", "description")]
        parts.append("<h3>Per track</h3><p class='small'>click a column to sort; an identifier links to its track plot</p>")
        parts.append(_table(per_track[keep], link_column="identifier", link_prefix=f"{head}-track-"))
        parts.append("<h3>Track plots</h3>")
        from ..provenance import safe_filename

        for ident in meta["tracks"]:
            path = figures / "tracks" / f"{safe_filename(ident['identifier'])}.png"
            if path.is_file():
                parts.append(_img(path, ident["identifier"], anchor=f"{head}-track-{ident['identifier']}"))
    document = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>enformer-transfer report</title>"
                + STYLE + "</head><body>" + "".join(parts) + SCRIPT + "</body></html>")
    target = Path(out) if out else run.path / "report.html"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(document)
    os.replace(tmp, target)
    return target
