"""Every stage of a run config, in order, resuming; and the demo on synthetic data."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import InputError
from .rundir.config import RunConfig
from .rundir.layout import BackboneFolder
from .stages import entry

log = logging.getLogger("enformer_transfer")

RIDGE_BASELINE = "ridge"  # the head name the evaluation reads as its ridge baseline


def run_pipeline(config: RunConfig, force: bool = False, progress: bool = True, evaluate: bool = True) -> Path:
    """dataset -> embed -> train -> evaluate -> dar (when dar.regions is set) -> report.

    Stages after the dataset need ``embed.backbone``; the evaluated head is ``train.head``. With
    ``evaluate``, the ridge head (``--head ridge --model ridge``, closed form: seconds) is trained
    too, before the evaluation: it is the baseline the evaluation and the report set beside the
    head's numbers (not when ``train.head`` is itself the ridge head).
    """
    if config.run_dir is None:
        raise InputError("the config has no run_dir; set run_dir or pass --out RUN_DIR")
    entry("dataset")(config, force=force, progress=progress)
    if config.embed.backbone is None:
        log.info("embed: skipped (no embed.backbone in the config)")
        return config.run_dir
    entry("embed")(config, force=force, progress=progress)
    entry("train")(config, force=force, progress=progress)
    if evaluate:
        if config.train.model != "ridge" and config.train.head != RIDGE_BASELINE:
            ridge = config.model_copy(deep=True)
            ridge.train.head, ridge.train.model = RIDGE_BASELINE, "ridge"
            entry("train")(ridge, force=force, progress=progress)
        config.evaluate.head = config.dar.head = config.train.head
        entry("evaluate")(config, force=force, progress=progress)
        if config.dar.regions is not None:
            entry("dar")(config, force=force, progress=progress)
        entry("report")(config, force=force, progress=progress)
    return config.run_dir


DEMO_BACKBONE = {"dim": 48, "depth": 1, "heads": 2, "attn_dim_key": 16}  # the demo's backbone size
DEMO_PRETRAIN_STEPS = 600


DEMO_GENES_PER_CHROM = 10


def demo_data(folder: Path, seed: int = 0, force: bool = False):
    """The demo's synthetic data: genome with planted motifs, cell-type tracks, pretraining tracks,
    genes with stranded expression tracks, their GTF and promoter variants (folder/genes)."""
    from .synthetic import PRETRAINING_TRACKS, make_synthetic

    if force or not (folder / "pretrain" / "targets.tsv").exists() or not (folder / "genes" / "targets.tsv").exists():
        log.info("demo: writing synthetic genome, BigWigs and windows to %s", folder)
        make_synthetic(folder, seed=seed, pretraining_tracks=PRETRAINING_TRACKS, genes_per_chrom=DEMO_GENES_PER_CHROM)
    return folder


def make_demo_backbone(out: Path | str, seed: int = 0, steps: int = DEMO_PRETRAIN_STEPS,
                       progress: bool = True) -> Path:
    """Pretrain the demo's backbone with the tool itself (``backbone pretrain``): a small Enformer
    from random weights trained on the synthetic pretraining tracks (single motifs and pairs, the
    stand-in for Enformer's own tracks; never the demo's cell types). Deterministic given ``seed``.
    The weights shipped in ``enformer_transfer/demo_backbone`` were made by this function
    (``python -m enformer_transfer.pipeline --make-demo-backbone DIR``)."""
    from .synthetic import DEMO_GEOMETRY

    out = Path(out).absolute()
    data = demo_data(out.parent / f"{out.name}-data", seed)
    config = RunConfig(run_dir=out.parent / f"{out.name}-run", seed=seed, geometry=DEMO_GEOMETRY)
    config.dataset.genome, config.dataset.targets = data / "genome.fa", data / "pretrain" / "targets.tsv"
    config.dataset.windows = data / "windows.bed"
    entry("dataset")(config, progress=progress)
    config.pretrain.out, config.pretrain.steps, config.pretrain.loader_workers = out, steps, 0
    for key, value in DEMO_BACKBONE.items():
        setattr(config.pretrain, key, value)
    return entry("pretrain")(config, progress=progress)


def shipped_demo_backbone() -> Path:
    """The pretrained demo backbone shipped with the package."""
    from importlib.resources import files

    return Path(str(files("enformer_transfer") / "demo_backbone"))


def demo_run_dir(out: Path | str) -> Path:
    """The demo's run directory inside its ``--out`` folder (where its log goes too)."""
    return Path(out).absolute() / "run"


def run_demo(out: Path | str, force: bool = False, progress: bool = True, seed: int = 0,
             pretrain: bool = False) -> Path:
    """The demo: synthetic cell types at three levels learned through a small pretrained backbone.

    OUT/data: synthetic genome with planted motifs, 12 cell-type tracks (new: never seen in
    pretraining), pretraining tracks. OUT/backbone: a small Enformer pretrained on the pretraining
    tracks (shipped with the package; ``pretrain=True`` pretrains it here, a few minutes).
    OUT/random-backbone: the same architecture, random weights. OUT/run: dataset, embeddings of the
    pretrained backbone, the default head, the ridge baseline, a LoRA fine-tuned model, their
    evaluations (with the random backbone's head as the compare run), a DAR analysis of the planted
    subclass-specific motifs, the report. OUT/run-random: the same head on the random backbone.
    OUT/run-genes: the demo's genes (OUT/data/genes: a GTF, stranded expression tracks per cell
    type), a head on them through the pretrained backbone, and the gene-level effects of the planted
    promoter variants (``variants --genes``)."""
    import shutil

    from .backbone.load import init_backbone
    from .synthetic import DEMO_GEOMETRY

    out = Path(out).absolute()
    data_dir = demo_data(out / "data", seed, force)
    backbone = out / "backbone"
    if force or not BackboneFolder(backbone).config.exists():
        if pretrain:
            make_demo_backbone(backbone, seed, progress=progress)
        else:
            if backbone.exists():
                shutil.rmtree(backbone)
            shutil.copytree(shipped_demo_backbone(), backbone)
    random_backbone = out / "random-backbone"
    if force or not BackboneFolder(random_backbone).config.exists():
        init_backbone(random_backbone, n_bins=DEMO_GEOMETRY.n_bins, human_tracks=10, seed=seed, **DEMO_BACKBONE)

    def config_for(run_dir: Path, backbone_dir: Path) -> RunConfig:
        config = RunConfig(run_dir=run_dir, seed=seed, geometry=DEMO_GEOMETRY)
        config.dataset.genome, config.dataset.targets = data_dir / "genome.fa", data_dir / "targets.tsv"
        config.dataset.windows, config.dataset.blacklist = data_dir / "windows.bed", data_dir / "blacklist.bed"
        config.embed.backbone, config.embed.loader_workers = str(backbone_dir), 0
        config.train.loader_workers = config.finetune.loader_workers = 0
        return config

    # the same head on a backbone of the same size without pretraining: what transfer adds
    random = config_for(out / "run-random", random_backbone)
    run_pipeline(random, force=force, progress=progress, evaluate=False)
    random.evaluate.head, random.evaluate.figures = "default", False  # only the compare run
    entry("evaluate")(random, force=force, progress=progress)

    config = config_for(demo_run_dir(out), backbone)
    config.embed.store_backbone_outputs = True
    run_pipeline(config, force=force, progress=progress, evaluate=False)
    ridge = config.model_copy(deep=True)
    ridge.train.head, ridge.train.model = "ridge", "ridge"
    entry("train")(ridge, force=force, progress=progress)
    config.finetune.head, config.finetune.steps = "finetuned", 23  # one epoch of LoRA on the demo's 46 windows
    entry("finetune")(config, force=force, progress=progress)
    for head in ("ridge", "finetuned", config.train.head):  # default last: ridge is its baseline
        config.evaluate.head = head
        config.evaluate.compare_run = random.run_dir if head == config.train.head else None
        entry("evaluate")(config, force=force, progress=progress)
    config.dar.head, config.dar.regions = config.train.head, data_dir / "dar_subclass.csv"
    config.dar.label_column, config.dar.tracks_where = "subclass", "level == 'Subclass'"
    entry("dar")(config, force=force, progress=progress)
    entry("report")(config, force=force, progress=progress)
    run_demo_genes(config_for(out / "run-genes", backbone), config_for(out / "run-genes-random", random_backbone),
                   data_dir / "genes", force, progress)
    return config.run_dir


def run_demo_genes(config: RunConfig, random: RunConfig, genes_dir: Path, force: bool = False,
                   progress: bool = True) -> Path:
    """The demo's gene run: stranded expression tracks of the demo's genes (on the windows that
    reach a gene) learned by a head on the pretrained backbone and, for the margin, on the random
    one; both scored per gene (``evaluate --genes``), and each planted promoter variant scored on
    the genes around it (``variants --genes``)."""
    for c in (random, config):
        c.dataset.genome, c.dataset.targets = genes_dir / "genome.fa", genes_dir / "targets.tsv"
        c.dataset.windows = genes_dir / "windows.bed"
        run_pipeline(c, force=force, progress=progress, evaluate=False)
        c.evaluate.head, c.evaluate.genes = c.train.head, genes_dir / "genes.gtf"
        c.evaluate.compare_run = random.run_dir if c is config else None
        c.evaluate.figures = False  # the gene run has no report: its tables and summary lines
        entry("evaluate")(c, force=force, progress=progress)
    config.variants.vcf, config.variants.genes = genes_dir / "promoter_variants.vcf", genes_dir / "genes.gtf"
    config.variants.plot_top, config.variants.batch_size = 0, 16
    entry("variants")(config, force=force, progress=progress)
    return config.run_dir


def promoter_variant_recovery(run_dir: Path | str, truth: Path | str, level: str = "Subclass"):
    """Per planted promoter variant (genes.tsv of the demo's data): the cell type of ``level``
    whose expression of the variant's own gene changes most (largest |logSED|), and the one the
    promoter motif was planted for."""
    import pandas as pd

    from .results import Run

    effects = Run(run_dir).variants("default").gene_scores
    planted = pd.read_csv(truth, sep="\t")
    own = effects.merge(planted[["variant", "gene_id", "planted_for"]].rename(columns={"variant": "id"}),
                        on=["id", "gene_id"])
    own = own[own["level"] == level]
    top = own.loc[own["logSED"].abs().groupby(own["id"]).idxmax()]
    return top[["id", "gene_name", "chrom", "gene_strand", "tss_distance", "subclass", "planted_for", "logSED",
                "logSED_z"]].rename(columns={"subclass": "most_affected"}).reset_index(drop=True)


def demo_summary(run_dir: Path | str) -> list[str]:
    """What the demo shows, line by line: the transfer from pretraining per level, the fine-tuned
    model, the DAR analysis; what the demo is, and the commands for real data."""
    from .results import Run

    run = Run(run_dir)
    default = run.evaluation("default").per_track
    finetuned = run.evaluation("finetuned").per_track.set_index(["split", "identifier"])["pearson"]
    default = default.assign(finetuned_pearson=[finetuned.get((s, i)) for s, i in
                                                 zip(default["split"], default["identifier"], strict=True)])
    lines = ["demo: synthetic genome (4 x 200 kb, planted motifs) and 12 synthetic cell-type tracks at three "
             "levels; a tiny Enformer (dim 48) pretrained by `backbone pretrain` on other tracks (single motifs "
             "and pairs), never on these cell types",
             "demo: test mean Pearson per level: pretrained backbone + new head | random backbone + new head | "
             "fine-tuned (LoRA) | ridge on the pretrained embeddings"]
    test = default[default["split"] == "test"]
    for level, part in [("all", test)] + list(test.groupby("level", sort=False)):
        lines.append(f"demo:   {level:8s} {part['pearson'].mean():.3f} | {part['compare_run_pearson'].mean():.3f} | "
                     f"{part['finetuned_pearson'].mean():.3f} | {part['ridge_pearson'].mean():.3f}")
    margin = test["pearson"].mean() - test["compare_run_pearson"].mean()
    lines.append(f"demo: transfer: the pretrained backbone's head beats the random backbone's by {margin:.3f} test "
                 "mean Pearson on held-out chromosomes")
    record = run.head("finetuned").metadata.get("finetune") or {}
    if record.get("kept") == "frozen":
        lines.append("demo: fine-tuning (LoRA, one epoch) did not raise the validation Pearson of the frozen head, so "
                     "the frozen head's weights were kept, as `finetune` does by default (a strong backbone and 46 "
                     "training windows leave little to gain)")
    dar = run.dar("default").summary
    lines.append(f"demo: DAR analysis, {dar['regions']} subclass-specific regions: median Pearson across subclasses "
                 f"{dar['pearson_across_cell_types_median']:.3f}; most open subclass predicted = observed in "
                 f"{100 * dar['top_agreement_observed_predicted']:.1f}% (chance {100 * dar['chance_agreement']:.1f}%)")
    lines += _demo_genes_summary(Path(run.path).parent)
    lines.append(f"demo: run directory {run.path}")
    lines.append(f"demo: report {run.layout.report.html} (per-level Pearson with the baselines, training curves, "
                 "track plots, the DAR analysis)")
    lines.append("demo: on real data with the real weights: see docs/guide.md (fetch, targets, dataset, embed "
                 "--backbone enformer-weights, train, evaluate, report), or `enformer-transfer run "
                 "examples/study.toml`")
    return lines


def _demo_genes_summary(out: Path) -> list[str]:
    """The gene run's lines: the genes, the head on their stranded expression, the promoter variants."""
    from .results import Run

    genes_run, truth = out / "run-genes", out / "data" / "genes" / "genes.tsv"
    if not (genes_run / "variants").is_dir() or not truth.is_file():
        return []
    run = Run(genes_run)
    head = run.head("default").metadata.get("metrics", {})
    recovered = promoter_variant_recovery(genes_run, truth)
    hit = (recovered["most_affected"] == recovered["planted_for"]).mean()
    test = head.get("pearson_mean", {}).get("test")
    lines = [f"demo: genes: {len(recovered)} genes (data/genes/genes.gtf), a + and a - expression track per cell type; "
             f"a head on them (run-genes){f', test mean Pearson {test:.3f}' if test is not None else ''}; "
             f"planted promoter variants (`variants --genes`): the subclass whose expression of the gene drops most "
             f"is the planted one in {100 * hit:.1f}%"]
    if "default" in run.evaluations() and "genes" in run.evaluation("default").summary:
        genes = run.evaluation("default").summary["genes"]
        random = Run(out / "run-genes-random").evaluation("default").summary["genes"]
        lines.append(f"demo: genes (`evaluate --genes`, {genes['n_genes']} test genes, TSS +-{genes['tss_bins']} bins): "
                     f"Pearson across genes {genes['pearson_across_genes_mean']:.3f} (random backbone "
                     f"{random['pearson_across_genes_mean']:.3f}), cell-type specificity "
                     f"{genes['pearson_specificity_mean']:.3f} (random {random['pearson_specificity_mean']:.3f})")
    return lines


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="pipeline helpers")
    parser.add_argument("--make-demo-backbone", type=Path, metavar="DIR", required=True,
                        help="pretrain the demo's backbone into DIR (what the package ships)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    print(make_demo_backbone(args.make_demo_backbone, args.seed))
