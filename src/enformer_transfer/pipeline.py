"""Runs the stages that exist, in order, resuming; and the demo on synthetic data."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import RunConfig
from .data.build import build_dataset
from .errors import InputError

log = logging.getLogger("enformer_transfer")

STAGES = ("dataset", "embed", "train", "evaluate", "report")


def run_pipeline(config: RunConfig, force: bool = False, progress: bool = True, evaluate: bool = True) -> Path:
    if config.run_dir is None:
        raise InputError("the config has no run_dir; set run_dir or pass --out RUN_DIR")
    build_dataset(config, force=force, progress=progress)
    if config.embed.backbone is not None:
        from .backbone.embed import embed_run

        embed_run(config, force=force, progress=progress)
        from .heads.train import train_head

        train_head(config, force=force, progress=progress)
        if evaluate:
            from .evaluation.evaluate import evaluate_head
            from .report.html import write_report

            evaluate_head(config.run_dir, config.train.head, force=force, progress=progress)
            write_report(config.run_dir)
    else:
        log.info("embed: skipped (no embed.backbone in the config)")
    return config.run_dir


def run_demo(out: Path | str, force: bool = False, progress: bool = True, seed: int = 0) -> Path:
    """Generate synthetic data in OUT/data and run every stage into OUT/run (with the ridge
    baseline and a DAR analysis of the planted subclass-specific motifs)."""
    from .synthetic import make_synthetic

    out = Path(out)
    data_dir = out / "data"
    if not (data_dir / "dar_subclass.csv").exists() or force:
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
        from .synthetic import MOTIFS

        log.info("demo: writing a tiny random-weight Enformer (stem seeded with the planted motifs) to %s", backbone)
        init_backbone(backbone, dim=48, depth=1, heads=2, attn_dim_key=16, target_length=DEMO_GEOMETRY.n_bins,
                      human_tracks=32, seed=seed, stem_motifs=list(MOTIFS.values()))
    config.embed.backbone = str(backbone)
    config.embed.store_backbone_heads = True
    config.embed.loader_workers = 0
    config.embed.splits = ["train", "valid", "test"]
    # the study's lr 1e-4 and batch 64 suit 34,021 windows (~10,000 steps); the demo has 46
    config.train.lr = 1e-2
    config.train.batch_size = 4
    config.train.max_epochs = 40
    config.train.loader_workers = 0
    run_pipeline(config, force=force, progress=progress, evaluate=False)
    from .heads.train import train_head

    ridge = config.model_copy(deep=True)
    ridge.train.head, ridge.train.model = "ridge", "ridge"
    train_head(ridge, force=force, progress=progress)
    from .evaluation.evaluate import evaluate_head
    from .report.html import write_report

    evaluate_head(config.run_dir, "ridge", force=force, progress=progress)
    evaluate_head(config.run_dir, config.train.head, force=force, progress=progress)  # ridge as its baseline
    from .evaluation.dar import dar_analysis
    from .run import Run

    dar_analysis(Run(config.run_dir), config.train.head, data_dir / "dar_subclass.csv", "subclass",
                 tracks_where="level == 'Subclass'")
    write_report(config.run_dir)
    return config.run_dir
