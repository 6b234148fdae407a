"""Every stage of a run config, in order, resuming; and the demo on synthetic data."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import RunConfig
from .errors import InputError

log = logging.getLogger("enformer_transfer")


def run_pipeline(config: RunConfig, force: bool = False, progress: bool = True, evaluate: bool = True) -> Path:
    """dataset -> embed -> train -> evaluate -> dar (when dar.regions is set) -> report.

    Stages after the dataset need ``embed.backbone``; the evaluated head is ``train.head``.
    """
    from .data.build import build_dataset

    if config.run_dir is None:
        raise InputError("the config has no run_dir; set run_dir or pass --out RUN_DIR")
    build_dataset(config, force=force, progress=progress)
    if config.embed.backbone is None:
        log.info("embed: skipped (no embed.backbone in the config)")
        return config.run_dir
    from .backbone.embed import embed_run
    from .heads.train import train_head

    embed_run(config, force=force, progress=progress)
    train_head(config, force=force, progress=progress)
    if evaluate:
        from .evaluation.dar import dar_analysis
        from .evaluation.evaluate import evaluate_head
        from .report.html import write_report

        config.evaluate.head = config.dar.head = config.train.head
        evaluate_head(config, force=force, progress=progress)
        if config.dar.regions is not None:
            dar_analysis(config, force=force, progress=progress)
        write_report(config, force=force, progress=progress)
    return config.run_dir


def run_demo(out: Path | str, force: bool = False, progress: bool = True, seed: int = 0) -> Path:
    """Generate synthetic data in OUT/data and run every stage into OUT/run (with the ridge
    baseline and a DAR analysis of the planted subclass-specific motifs)."""
    from .synthetic import DEMO_GEOMETRY, make_synthetic

    out = Path(out).absolute()
    data_dir = out / "data"
    if not (data_dir / "dar_subclass.csv").exists() or force:
        log.info("demo: writing synthetic genome, BigWigs and windows to %s", data_dir)
        make_synthetic(data_dir, seed=seed)
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
        init_backbone(backbone, dim=48, depth=1, heads=2, attn_dim_key=16, n_bins=DEMO_GEOMETRY.n_bins,
                      human_tracks=32, seed=seed, stem_motifs=list(MOTIFS.values()))
    config.embed.backbone = str(backbone)
    config.embed.store_backbone_outputs = True
    config.embed.loader_workers = 0
    config.train.loader_workers = 0  # the default recipe otherwise: it sizes itself to the 46 train windows
    run_pipeline(config, force=force, progress=progress, evaluate=False)
    from .evaluation.dar import dar_analysis
    from .evaluation.evaluate import evaluate_head
    from .heads.train import train_head
    from .report.html import write_report

    ridge = config.model_copy(deep=True)
    ridge.train.head, ridge.train.model = "ridge", "ridge"
    train_head(ridge, force=force, progress=progress)
    for head in ("ridge", config.train.head):  # the default head last: the ridge head is its baseline
        config.evaluate.head = head
        evaluate_head(config, force=force, progress=progress)
    config.dar.head, config.dar.regions = config.train.head, data_dir / "dar_subclass.csv"
    config.dar.label_column, config.dar.tracks_where = "subclass", "level == 'Subclass'"
    dar_analysis(config, force=force, progress=progress)
    write_report(config, force=force, progress=progress)
    return config.run_dir


def demo_summary(run_dir: Path | str) -> list[str]:
    """What the demo shows, line by line: shapes, per-level Pearson against ridge, the DAR analysis."""
    from .run import Run

    run = Run(run_dir)
    lines = [f"demo: {len(run.tracks)} tracks; targets (windows, bins, tracks): "
             + ", ".join(f"{s} {tuple(run.targets(s).shape)}" for s in run.splits),
             "demo: embeddings (windows, bins, dim): "
             + ", ".join(f"{s} {tuple(run.embeddings(s).shape)}" for s in run.splits)]
    per_level = run.evaluation("default").per_level
    for split in ("valid", "test"):
        levels = per_level[(per_level["split"] == split) & (per_level["grouping"] == "level")]
        lines.append(f"demo: {split} mean Pearson per level (default head | ridge): " + ", ".join(
            f"{r.group} {r.pearson_mean:.3f} | {r.ridge_pearson_mean:.3f}" for r in levels.itertuples()))
    dar = run.dar("default").summary
    lines.append(f"demo: DAR analysis, {dar['regions']} subclass-specific regions: median Pearson across subclasses "
                 f"{dar['pearson_across_cell_types_median']:.3f}; most open subclass predicted = observed in "
                 f"{100 * dar['top_agreement_observed_predicted']:.1f}% (chance {100 * dar['chance_agreement']:.1f}%)")
    lines.append(f"demo: run directory {run.path}")
    lines.append(f"demo: report {run.layout.report.html}")
    return lines
