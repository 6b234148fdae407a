"""Stage motifs: TF-MoDISco patterns per track or contrast, matched to JASPAR ->
RUN_DIR/motifs/NAME (``interpret.motifs``)."""

from __future__ import annotations

from pathlib import Path

from ..interpret.motifs import MotifsPlan, build_motifs, plan_motifs
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import MotifsFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.stage import run_stage


def motifs(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Write RUN_DIR/motifs/NAME: patterns.csv, matches.csv, tables per target, modisco results,
    patterns.meme, logos and the cell type x motif heatmap."""
    config = as_config(config)
    plan = plan_motifs(config)
    folder = plan.run.layout.motifs(plan.name).path
    return run_stage(folder, motifs_key(plan), lambda work, state: build_motifs(plan, MotifsFolder(work), progress),
                     config, ("motifs",), force=force, what=f"motifs {plan.name!r}", run=plan.run)


def motifs_key(plan: MotifsPlan) -> dict:
    m = plan.settings
    return {"contributions": plan.contributions.record.digest,
            "motif_file": file_fingerprint(m.motif_file) if m.motif_file else None,
            "settings": m.model_dump(mode="json", exclude={"name", "motif_file", "contributions"})}
