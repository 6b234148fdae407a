"""Stage call-dars: cell-type-specific regions from the run's own tracks (observed or predicted)
-> RUN_DIR/called-dars/NAME (``interpret.dar_calling``)."""

from __future__ import annotations

from pathlib import Path

from ..interpret.dar_calling import CallPlan, build_called_dars, plan_call_dars
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import CalledDarsFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def call_dars(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Write RUN_DIR/called-dars/NAME: dars.csv, candidates.csv.gz, summary.json and a figure."""
    config = as_config(config)
    plan = plan_call_dars(config)
    folder = plan.run.layout.called_dars(plan.name).path
    return run_stage(folder, call_dars_key(plan), lambda work, state: build_called_dars(plan, CalledDarsFolder(work)), config,
                     ("call_dars",), force=force, what=f"call-dars {plan.name!r}", run=plan.run)


def call_dars_key(plan: CallPlan) -> dict:
    d, run = plan.settings, plan.run
    source = (run.evaluation(d.head).record.digest if d.source == "predicted" else run.dataset_record.digest)
    return {"source": source, "peaks": file_fingerprint(d.peaks) if d.peaks else None, "splits": plan.splits,
            "seed": plan.config.seed, "settings": d.model_dump(mode="json", exclude={"name", "peaks", "chrom_aliases"})}
