"""Stage report: one self-contained HTML report of the run -> RUN_DIR/report (``report.html``)."""

from __future__ import annotations

from pathlib import Path

from .._version import __version__
from ..errors import InputError, StaleStageError, did_you_mean
from ..fs import write_text_atomic
from ..report.html import interpretation_digests, render_report
from ..results import Run
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import ReportFolder
from ..rundir.stage import run_stage


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
