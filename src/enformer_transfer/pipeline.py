"""Runs the stages that exist, in order, resuming; and the demo on synthetic data."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import RunConfig
from .data.build import build_dataset
from .errors import InputError

log = logging.getLogger("enformer_transfer")

STAGES = ("dataset",)


def run_pipeline(config: RunConfig, force: bool = False, progress: bool = True) -> Path:
    if config.run_dir is None:
        raise InputError("the config has no run_dir; set run_dir or pass --out RUN_DIR")
    build_dataset(config, force=force, progress=progress)
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
    return run_pipeline(config, force=force, progress=progress)
