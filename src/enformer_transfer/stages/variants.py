"""Stage variants: score the variants of a VCF in every track of a head, per cell type ->
RUN_DIR/variants/NAME (``interpret.variants``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..devices import close_process_group, init_process_group
from ..interpret.variants import VariantsPlan, build_variants, plan_variants
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import VariantsFolder
from ..rundir.provenance import file_fingerprint
from ..rundir.run import VariantEffects
from ..rundir.stage import run_stage


def variants(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Score ``variants.vcf`` with head ``variants.head`` into ``variants.out`` (default
    RUN_DIR/variants/HEAD); resume or skip."""
    config = as_config(config)
    plan = plan_variants(config)
    key = variants_key(plan)
    init_process_group(plan.dist, plan.device)
    try:
        return run_stage(plan.folder, key, lambda work, state: build_variants(plan, VariantsFolder(work), progress),
                         config, ("variants",), force=force, what=f"variants {plan.settings.head!r}", dist=plan.dist,
                         run=plan.run)
    finally:
        close_process_group(plan.dist)


def variants_key(plan: VariantsPlan) -> dict:
    """Everything the result depends on (speed settings left out)."""
    p, run = plan.settings, plan.run
    return {
        "head": run.head_record(p.head).digest,
        "dataset": run.dataset_record.digest,
        "embeddings": run.embeddings_record.digest,
        "vcf": file_fingerprint(p.vcf),
        **({"genes": file_fingerprint(p.genes), "gene_types": list(p.gene_types)} if p.genes else {}),
        "settings": p.model_dump(mode="json", exclude={"head", "vcf", "out", "chunk_variants", "batch_size",
                                                       "precision", "compile", "device", "chrom_aliases", "genes",
                                                       "gene_types"}),
        "precision": plan.precision,
        "seed": plan.config.seed,
    }


def score_variants(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> pd.DataFrame:
    """The ``variants`` stage, returning its table: one row per variant and track with every score."""
    return VariantEffects(VariantsFolder(variants(config, force, progress))).scores
