"""Stage contributions: which bases drive each track, per region -> RUN_DIR/contributions/NAME
(``interpret.contributions``)."""

from __future__ import annotations

from pathlib import Path

from ..fs import check_free_space
from ..interpret.contributions import ContributionsPlan, build_contributions, plan_contributions
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import ContributionsFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def contributions(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Write RUN_DIR/contributions/NAME: contributions.zarr, regions.tsv, scalars.tsv, BigWigs,
    logos and summary.json."""
    config = as_config(config)
    plan = plan_contributions(config)
    folder = plan.run.layout.contributions(plan.name).path
    n, k, w = len(plan.regions), len(plan.targets), plan.width
    copies = 3 if plan.settings.method == "ism" else 2
    check_free_space(plan.run.path, n * k * w * 16 * copies + n * w * 8, "the contributions store",
                     config.dataset.free_space_limit)
    return run_stage(folder, contributions_key(plan), lambda work, state: build_contributions(plan, ContributionsFolder(work),
                                                                                 state, progress),
                     config, ("contributions",), force=force, what=f"contributions {plan.name!r}", run=plan.run)


def contributions_key(plan: ContributionsPlan) -> dict:
    c = plan.settings
    return {"head": plan.run.head_record(c.head).digest, "embeddings": plan.run.embeddings_record.digest,
            "regions": file_fingerprint(c.regions), "precision": plan.precision, "seed": plan.config.seed,
            "settings": c.model_dump(mode="json", exclude={"regions", "name", "batch_size", "ism_batch_size",
                                                           "device", "precision", "chrom_aliases"})}
