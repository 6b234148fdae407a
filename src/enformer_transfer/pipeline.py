"""Runs the stages that exist, in order, resuming; and the demo on synthetic data."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import RunConfig
from .data.build import build_dataset
from .errors import InputError

log = logging.getLogger("enformer_transfer")

STAGES = ("dataset", "embed")


def run_pipeline(config: RunConfig, force: bool = False, progress: bool = True) -> Path:
    if config.run_dir is None:
        raise InputError("the config has no run_dir; set run_dir or pass --out RUN_DIR")
    build_dataset(config, force=force, progress=progress)
    if config.embed.backbone is not None:
        from .backbone.embed import embed_run

        embed_run(config, force=force, progress=progress)
    else:
        log.info("embed: skipped (no embed.backbone in the config)")
    return config.run_dir


def run_demo(out: Path | str, force: bool = False, progress: bool = True, seed: int = 0) -> Path:
    """Generate synthetic data in OUT/data and run every stage into OUT/run."""
    from .synthetic import make_synthetic

    out = Path(out)
    data_dir = out / "data"
    if not (data_dir / "targets.tsv").exists() or force:
        log.info("demo: writing synthetic genome, BigWigs and windows to %s", data_dir)
        make_synthetic(data_dir, seed=seed)
    from .synthetic import DEMO_GEOMETRY

    config = RunConfig(run_dir=out / "run", seed=seed, geometry=DEMO_GEOMETRY)
    config.dataset.genome = data_dir / "genome.fa"
    config.dataset.targets = data_dir / "targets.tsv"
    config.dataset.windows = data_dir / "windows.bed"
    config.dataset.blacklist = data_dir / "blacklist.bed"
    backbone = out / "tiny-backbone"
    if not (backbone / "config.json").exists() or force:
        from .backbone.load import init_backbone

        log.info("demo: writing a tiny random-weight Enformer to %s", backbone)
        init_backbone(backbone, dim=48, depth=1, heads=2, attn_dim_key=16,
                      target_length=DEMO_GEOMETRY.n_bins, human_tracks=32, seed=seed)
    config.embed.backbone = str(backbone)
    config.embed.store_backbone_heads = True
    config.embed.loader_workers = 0
    return run_pipeline(config, force=force, progress=progress)
