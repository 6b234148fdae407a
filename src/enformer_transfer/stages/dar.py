"""Stage dar: do a head's predictions recover differentially accessible regions between cell
types? -> RUN_DIR/dar/NAME (``evaluation.dar``)."""

from __future__ import annotations

from pathlib import Path

from ..evaluation.dar import DarPlan, build_dar, plan_dar
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import DarFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def dar_analysis(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Write RUN_DIR/dar/NAME/: regions.csv, confusion.csv, summary.json and figures."""
    config = as_config(config)
    plan = plan_dar(config)
    folder = plan.run.layout.dar(config.dar.head).path
    return run_stage(folder, dar_key(plan), lambda work, state: build_dar(plan, DarFolder(work)), config, ("dar",),
                     force=force, what=f"dar {config.dar.head!r}", run=plan.run)


def dar_key(plan: DarPlan) -> dict:
    d = plan.config.dar
    return {"evaluation": plan.run.evaluation(d.head).record.digest, "regions": file_fingerprint(d.regions),
            "dar": d.model_dump(mode="json", exclude={"regions", "head", "chrom_aliases"}), "splits": plan.splits}
