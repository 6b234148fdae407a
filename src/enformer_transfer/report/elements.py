"""The building blocks of the HTML report: sections (with their table-of-contents entries),
tables rounded for reading (full precision kept for sorting and in the CSVs), figures in a grid
with captions above them, the page's style and script."""

from __future__ import annotations

import base64
import html
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Section:
    """A part of the report: an anchor, a title (the TOC entry), its HTML and its subsections."""

    anchor: str
    title: str
    body: str = ""
    children: list[Section] = field(default_factory=list)

    def render(self, level: int = 2) -> str:
        inner = "".join(child.render(level + 1) for child in self.children)
        return (f'<section id="{html.escape(self.anchor)}"><h{level}>{html.escape(self.title)}</h{level}>'
                f"{self.body}{inner}</section>")


def toc(sections: list[Section]) -> str:
    def items(entries: list[Section]) -> str:
        out = []
        for s in entries:
            sub = f"<ol>{items(s.children)}</ol>" if s.children else ""
            out.append(f'<li><a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>{sub}</li>')
        return "".join(out)

    return f'<nav id="toc"><h2>Contents</h2><ol>{items(sections)}</ol></nav>'


def anchor(*parts: str) -> str:
    """An id from free text: letters, digits, '-', '_' and '.' kept."""
    text = "-".join(parts)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def fmt(value) -> str:
    """A number as a reader wants it: 3 decimals for correlations, thousands separators for big
    numbers, scientific notation for tiny ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}"
    if isinstance(value, float) or hasattr(value, "dtype"):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        if v == 0 or abs(v) >= 0.001:
            return f"{v:.3f}"
        return f"{v:.2e}"
    return str(value)


def table(df: pd.DataFrame, empty: str, link_column: str | None = None, link_prefix: str = "",
          bold_max: list[str] | None = None, words: dict[str, str] | None = None) -> str:
    """A sortable table inside a horizontally scrolling box; numbers rounded for display, each
    cell's full value in ``data-value`` (what sorting uses), column names in words
    (``plots.labels.column_label``). ``bold_max``: columns compared in each row, the largest value
    as shown in bold, every tie included. ``empty``: what the reader is told instead of an empty
    table (why there is nothing, and what to run), never a bare 'none'."""
    from ..plots.labels import column_label

    if df is None or not len(df):
        return f"<p class='small'>{html.escape(empty)}</p>"
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns}
    head = "".join(f'<th class="{"" if numeric[c] else "text"}" data-numeric="{int(numeric[c])}" '
                   f'title="{html.escape(str(c))}">{html.escape(column_label(str(c), words))}</th>'
                   for c in df.columns)
    compared = [c for c in (bold_max or []) if c in df.columns and numeric[c]]
    rows = []
    for _, row in df.iterrows():
        shown_best = None
        values = [float(row[c]) for c in compared if not pd.isna(row[c])]
        if len(values) > 1:
            shown_best = fmt(max(values))  # ties as the reader sees them: equal when rounded alike
        cells = []
        for col in df.columns:
            value = row[col]
            missing = value is None or (not isinstance(value, (list, dict)) and pd.isna(value))
            if numeric[col]:
                text, raw = ("", "") if missing else (fmt(value), repr(float(value)) if isinstance(value, float) else str(value))
            else:
                text = raw = "" if missing else str(value)
            shown = html.escape(text)
            if col == link_column and text:
                shown = f'<a href="#{html.escape(anchor(link_prefix + text))}">{shown}</a>'
            if shown_best is not None and col in compared and not missing and fmt(float(value)) == shown_best:
                shown = f"<b>{shown}</b>"
            cells.append(f'<td class="{"" if numeric[col] else "text"}" data-value="{html.escape(raw)}">{shown}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _png_width(data: bytes) -> int:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return 0
    return struct.unpack(">I", data[16:20])[0]


WIDE_PX = 760  # figures drawn wider than this take a whole row of the grid


def figure(path: Path | str, caption: str, ident: str | None = None, hidden: bool = False, extra_class: str = "") -> str:
    """One figure, caption above the image, embedded (the report is one file)."""
    path = Path(path)
    if not path.is_file():
        return ""  # a figure that was not drawn is left out, not shown as an empty box
    data = path.read_bytes()
    classes = " ".join(c for c in ("wide" if _png_width(data) > WIDE_PX else "", extra_class) if c)
    attributes = (f' id="{html.escape(ident)}"' if ident else "") + (" hidden" if hidden else "")
    attributes += f' class="{classes}"' if classes else ""
    return (f"<figure{attributes}><figcaption>{html.escape(caption)}</figcaption>"
            f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
            "</figure>")


def figure_grid(figures: list[tuple[Path | str, str]]) -> str:
    """Figures side by side where they fit, wide ones across the page."""
    cells = [figure(path, caption) for path, caption in figures]
    cells = [c for c in cells if c]
    return f'<div class="figures">{"".join(cells)}</div>' if cells else ""


def details(summary: str, body: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


STYLE = """
<style>
:root { --muted: #5a5a5a; --line: #d9d9d9; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 1.2em 2em 4em;
       max-width: 1360px; color: #222; line-height: 1.45; }
h1 { font-weight: 650; margin-bottom: 0.2em; } h2, h3, h4 { font-weight: 600; }
h2 { border-bottom: 1px solid var(--line); padding-top: 0.8em; } h3 { margin-top: 1.4em; }
a { color: var(--accent); }
section { scroll-margin-top: 1em; }
nav#toc { background: #f6f8fb; border: 1px solid var(--line); padding: 0.4em 1.2em; margin: 1em 0; }
nav#toc h2 { border: 0; margin: 0.3em 0; padding: 0; font-size: 1.05em; }
nav#toc ol { margin: 0.2em 0; padding-left: 1.4em; } nav#toc > ol { columns: 2; column-gap: 3em; }
nav#toc li { break-inside: avoid; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.5em 0; }
.table-wrap.tall { max-height: 32em; overflow-y: auto; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border: 1px solid #e2e2e2; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f1f3f5; cursor: pointer; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 12px; max-width: 100%; }
pre:empty, #js-errors:empty { display: none; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 1.2em 1.6em; grid-auto-flow: row dense;
           align-items: start; margin: 0.8em 0; }
.figures > figure.wide { grid-column: 1 / -1; }
figure { margin: 0; min-width: 0; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 13px; color: #333; font-weight: 500; margin-bottom: 0.35em; }
.small { font-size: 12.5px; color: var(--muted); } #js-errors { color: #b00; } .warning { color: #9a5b00; }
.headline { font-size: 15px; margin: 0.3em 0; } .headline b { font-variant-numeric: tabular-nums; }
.track-viewer .controls { margin: 0.5em 0; display: flex; gap: 0.6em; align-items: center; flex-wrap: wrap; }
.track-viewer select { max-width: 100%; font-size: 13px; }
details { margin: 0.6em 0; } details > summary { cursor: pointer; color: var(--accent); }
code { overflow-wrap: anywhere; }
</style>
"""

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
// track plots: one shown at a time, chosen in the list or by a link from the per-track table
function showTrack(viewer, id) {
  var shown = null;
  viewer.querySelectorAll('figure.track-plot').forEach(function (f) {
    f.hidden = f.id != id; if (f.id == id) shown = f;
  });
  if (shown) viewer.querySelector('select').value = id;
  return shown;
}
document.querySelectorAll('.track-viewer').forEach(function (viewer) {
  var select = viewer.querySelector('select');
  select.addEventListener('change', function () { showTrack(viewer, select.value); });
  viewer.querySelectorAll('button[data-step]').forEach(function (button) {
    button.addEventListener('click', function () {
      var i = select.selectedIndex + parseInt(button.getAttribute('data-step'), 10);
      if (i >= 0 && i < select.options.length) { select.selectedIndex = i; showTrack(viewer, select.value); }
    });
  });
});
function followHash() {
  var id = decodeURIComponent(location.hash.slice(1));
  var target = id && document.getElementById(id);
  if (target && target.classList.contains('track-plot')) {
    showTrack(target.closest('.track-viewer'), id);
    target.scrollIntoView();
  }
}
window.addEventListener('hashchange', followHash);
followHash();
document.body.setAttribute('data-ready', '1');
</script>
"""
