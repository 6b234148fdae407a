"""One self-contained HTML file per run: a summary per level against the baselines first, a table
of contents, then the dataset, each head (figures, per-level and per-track tables, every track's
plot), DAR and variant analyses. The sections are listed in ``sections.REPORT_SECTIONS``."""

from __future__ import annotations

import html
import time
from pathlib import Path

from .._version import __version__
from ..results import Run
from .elements import SCRIPT, STYLE, Section, toc
from .sections import REPORT_SECTIONS, ReportContext


def render_report(run: Run, heads: list[str], figures: Path | None = None) -> str:
    """The report of ``heads`` as one self-contained HTML document: a title, the table of
    contents, then the sections of ``REPORT_SECTIONS`` in order. Figures the report draws itself
    go to ``figures`` (default: a temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        ctx = ReportContext(run, heads, Path(figures) if figures is not None else Path(scratch))
        ctx.figures.mkdir(parents=True, exist_ok=True)
        sections: list[Section] = []
        for make in REPORT_SECTIONS:
            made = make(ctx)
            sections += [s for s in (made if isinstance(made, list) else [made]) if s is not None]
        body = "".join(s.render() for s in sections)
    title = (f"<h1>enformer-transfer report</h1><p class='small'>run <code>{html.escape(str(run.path))}</code>, "
             f"heads {html.escape(', '.join(heads))}; tool {__version__}, written {time.strftime('%Y-%m-%d %H:%M')}</p>"
             "<pre id='js-errors'></pre>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>enformer-transfer report: {html.escape(run.path.name)}</title>"
            + STYLE + "</head><body>" + title + toc(sections) + body + SCRIPT + "</body></html>")


def interpretation_digests(run: Run) -> dict:
    """The finished call-dars, contributions and motifs stages the report shows."""
    return {"called_dars": {n: run.called_dars(n).record.digest for n in run.called_dar_names()},
            "contributions": {n: run.contributions(n).record.digest for n in run.contribution_names()},
            "motifs": {n: run.motifs(n).record.digest for n in run.motif_names()}}
