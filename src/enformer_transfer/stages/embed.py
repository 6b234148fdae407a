"""Stage embed: the backbone's trunk over every window -> RUN_DIR/embeddings (``backbone.embed``)."""

from __future__ import annotations

from pathlib import Path

from ..backbone.embed import EmbedPlan, build_embeddings, check_space, plan_embed
from ..devices import close_process_group, init_process_group
from ..rundir.config import RunConfig, as_config
from ..rundir.layout import EmbeddingsFolder
from ..rundir.stage import run_stage


def embed_run(config: RunConfig | Path | str, force: bool = False, progress: bool = True) -> Path:
    """Embed every window of the configured splits into RUN_DIR/embeddings; resume or skip."""
    config = as_config(config)
    plan = plan_embed(config)
    key = embed_key(plan)
    if plan.dist.primary and not force:
        check_space(plan, key)
    init_process_group(plan.dist, plan.device)
    try:
        return run_stage(plan.run.layout.embeddings.path, key,
                         lambda work, state: build_embeddings(plan, EmbeddingsFolder(work), state, progress),
                         config, ("embed",), force=force, what="embed", dist=plan.dist, run=plan.run)
    finally:
        close_process_group(plan.dist)


def embed_key(plan: EmbedPlan) -> dict:
    e = plan.settings
    return {
        "dataset": plan.run.dataset_record.digest,
        "backbone": plan.backbone.fingerprint,
        "tf_gamma": e.tf_gamma,
        "precision": plan.precision,
        "storage_dtype": e.storage_dtype,
        "train_bin_fraction": e.train_bin_fraction,
        "store_backbone_outputs": e.store_backbone_outputs,
        "pad_value": e.pad_value,
        "splits": e.splits,
        "seed": plan.config.seed,
    }
