"""One self-contained HTML file per run: a summary per level against the baselines first, a table
of contents, then the dataset, each head (figures, per-level and per-track tables, every track's
plot), DAR and variant analyses. The sections are listed in ``sections.REPORT_SECTIONS``."""

from __future__ import annotations

import html
import time
from pathlib import Path

from .._version import __version__
from ..config import RunConfig, as_config
from ..errors import InputError, StaleStageError, did_you_mean
from ..fs import write_text_atomic
from ..layout import ReportFolder
from ..run import Run
from ..stage import run_stage
from .elements import SCRIPT, STYLE, Section, toc
from .sections import REPORT_SECTIONS, ReportContext


def write_report(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Write RUN_DIR/report/report.html for the evaluated heads (default: all of them); a view,
    rebuilt whenever what it shows changed."""
    config = as_config(config)
    run = Run.of(config, "report")
    run.only_current = True  # a view: what is stale or damaged is left out, and listed
    evaluated = run.evaluations()
    heads = config.report.heads or evaluated
    missing = [h for h in heads if h not in evaluated]
    for head in missing:
        if f"evaluation {head}" in run.left_out:
            raise StaleStageError(f"report: {run.left_out[f'evaluation {head}']}")
    if not heads and run.left_out:
        stale = "; ".join(f"{what}: {why}" for what, why in sorted(run.left_out.items()))
        raise StaleStageError(f"report: no current evaluation to show in {run.path} ({stale})")
    if not heads or missing:
        hints = "".join(did_you_mean(h, evaluated) for h in missing)
        raise InputError(f"report: head(s) {', '.join(missing) or '(none)'} not evaluated in {run.path}{hints}; "
                         f"evaluated: {', '.join(evaluated) or 'none'}; "
                         "run 'enformer-transfer evaluate RUN_DIR --head NAME' first")
    key = {"dataset": run.dataset_record.digest,
           "evaluations": {h: run.evaluation(h).record.digest for h in heads},
           "dar": {h: run.dar(h).record.digest for h in heads if h in run.dars()},
           "interpretation": interpretation_digests(run),
           "variants": {n: run.variants(n).record.digest for n in run.variant_analyses()},
           "tool_version": __version__}

    def build(work: Path, state: str) -> dict:
        out = ReportFolder(work)
        write_text_atomic(out.html, render_report(run, heads, out.figures))
        return {"heads": heads, "bytes": out.html.stat().st_size}

    folder = run_stage(run.layout.report.path, key, build, config, ("report",), force=force, what="report", on_stale="rebuild",
                       run=run)
    path = ReportFolder(folder).html
    print(f"report: {path}")
    return path


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
