"""The run configuration as typed models, one section per stage; defaults equal the reference study.

Every key of a stage's section is a flag of its command (``train.batch_size`` is
``train --batch-size``) and any key can be set on any command with ``--set section.key=value``.
Paths are stored absolute: relative paths in a config file are relative to that file, on the
command line relative to the working directory, so a path means the same file after any
number of commands, from any directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..errors import InputError, did_you_mean
from ..genome.geometry import Geometry
from ..targets import STUDY_CLIP, STUDY_SCALE, STUDY_SUM_STAT, SUM_STATS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Lightning's spellings of precision, accepted where users may have configs from earlier versions.
_PRECISION_ALIASES = {"32": "fp32", "32-true": "fp32", "16-mixed": "fp16", "16": "fp16",
                      "bf16-mixed": "bf16", "bf16-true": "bf16"}


def _checked_name(value):
    """A head or analysis name: what ``layout.check_name`` accepts (no path, no '..')."""
    from .layout import check_name

    if value is None:
        return value
    try:
        return check_name(value)
    except Exception as err:  # InputError -> pydantic's ValueError, one line
        raise ValueError(str(err)) from None


Name = Annotated[str, AfterValidator(_checked_name)]
OptionalName = Annotated[str | None, AfterValidator(_checked_name)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def _path_field(description: str):
    return Field(None, description=description)


def _aliases_field(what: str):
    """chrom_aliases of a stage that reads coordinates of a run: its own rule, or the dataset's."""
    return Field(None, description=f"auto = match chr1/1 and chrM/MT between {what} and the run's genome "
                                   "(default: the dataset's chrom_aliases)")


RunAliases = Literal["none", "auto"] | None


class FetchConfig(_Section):
    """Where ``fetch`` may download from (a hub is untrusted input: docs/guarantees.md)."""

    allow_private_network: bool = Field(
        False, description="let a hub or URL list reach this machine or private, link-local or other non-public "
                           "addresses (a lab-internal hub)")


class TargetsConfig(_Section):
    """How new targets tables transform their tracks (``targets``, ``fetch``): the study's values."""

    clip: float | None = Field(STUDY_CLIP, gt=0, description="hard clip of the binned values")
    clip_soft: float | None = Field(None, gt=0, description="soft clip: values above it grow as a square root")
    scale: float = Field(STUDY_SCALE, gt=0, description="multiply the binned values by this")
    sum_stat: Literal[SUM_STATS] = Field(STUDY_SUM_STAT, description="statistic of each bin's per-base values")


class PseudobulkConfig(_Section):
    """Command pseudobulk: single-cell fragment files + a cells table -> one BigWig per cell-type group
    at each level, and a targets table (docs/pseudobulk.md)."""

    levels: list[str] = Field(default_factory=list, description="cells-table columns, coarsest first, one track per "
                                                                "group of each (default: every column but barcode and sample)")
    barcode_column: str = Field("barcode", description="cells-table column of the cell barcodes")
    sample_column: str = Field("sample", description="cells-table column naming each cell's sample (optional column)")
    count: Literal["insertions", "fragments"] = Field(
        "insertions", description="insertions = Tn5 insertion sites (each fragment's two ends); fragments = full spans")
    shift: list[int] = Field(default_factory=lambda: [0, 0],
                             description="bp added to fragment starts and ends before counting: 0,0 for 10x files "
                                         "(already shifted), --shift=4,-5 for unshifted ones")
    min_fragment_length: int = Field(0, ge=0, description="leave out fragments shorter than this (bp)")
    max_fragment_length: int | None = Field(None, gt=0, description="leave out fragments longer than this (bp)")
    duplicates: Literal["collapse", "reads"] = Field(
        "collapse", description="collapse = each fragment line counts once; reads = weighted by its read count "
                                "(the 5th column of 10x files)")
    min_cells: int = Field(20, ge=1, description="groups with fewer cells are listed in qc.tsv and left out")
    normalization: Literal["cpm", "rpgc", "none"] = Field(
        "cpm", description="cpm = per million counted insertions (fragments); rpgc = mean 1 over the effective "
                           "genome size; none = counts")
    effective_genome_size: int | None = Field(
        None, gt=0, description="bp of the genome for rpgc (default: the chromosome sizes minus the blacklist)")
    bin_size: int = Field(1, ge=1, description="bp per BigWig interval: each holds the mean per-base value")
    chrom_aliases: Literal["none", "auto"] = Field(
        "none", description="auto = match chr1/1 and chrM/MT between the fragments and the chromosome sizes")
    workers: int = Field(0, ge=0, description="worker processes (0 = all cores)")

    @field_validator("shift")
    @classmethod
    def _two_shifts(cls, value: list[int]) -> list[int]:
        if len(value) != 2:
            raise ValueError("give two numbers, the start and end shift, e.g. --shift=4,-5")
        return value


class DatasetConfig(_Section):
    """Stage dataset: BigWigs + genome + windows -> binned targets (Basenji semantics)."""

    genome: Path | None = _path_field("genome FASTA (plain or bgzip) or 2bit")
    targets: Path | None = _path_field("targets table (TSV)")
    windows: Path | None = _path_field("windows BED: chrom start end split")
    blacklist: Path | None = _path_field("blacklist BED; regions clipped to baseline")
    blacklist_pad: int = Field(20, ge=0, description="bp added on each side of blacklist regions")
    blacklist_quirk: bool = Field(
        False, description="reproduce Basenji: a blacklist region starting left of the window is not masked")
    baseline_percentile: float = Field(50.0, ge=0, le=100, description="percentile of the baseline")
    unmappable: Path | None = _path_field("unmappable regions BED; mostly-unmappable windows are dropped")
    unmappable_max_fraction: float = Field(
        0.5, gt=0, le=1, description="drop windows with at least this fraction of unmappable bins")
    transform_order: Literal["old", "new"] = Field(
        "old", description="old = the study (stat, soft clip, clip, scale); new = Basenji since 2023-03")
    clip_floor_zero: bool = Field(False, description="hard clip to [0, clip] (Basenji2 era) instead of [-clip, clip]")
    extreme_clip_percentile: float | None = Field(
        99.99999, gt=0, le=100, description="per-track clip to +/- this percentile over all windows")
    uncovered: Literal["fill", "mask"] = Field(
        "fill", description="fill = uncovered bases get the baseline (Basenji); mask = also store a mask of "
                            "bins with uncovered bases, left out of training and metrics")
    beyond_chrom_end: Literal["pad", "drop", "error"] = Field(
        "pad", description="windows reaching past a chromosome end: pad (and warn), drop the windows whose target "
                           "interval lies past it, or error")
    duplicate_windows: Literal["keep", "drop", "error"] = Field(
        "keep", description="a window repeated within a split: keep (and warn), drop the repeats, or error")
    duplicate_files: Literal["warn", "error"] = Field(
        "warn", description="two tracks reading the same BigWig file: warn or error")
    chrom_aliases: Literal["none", "auto"] = Field(
        "none", description="auto = match chr1/1 and chrM/MT between genome, BigWigs, windows and blacklist")
    allow_missing_chroms: bool = Field(
        False, description="a BigWig lacking a window's chromosome gives uncovered bases instead of an error")
    allow_chrom_size_mismatch: bool = Field(
        False, description="read a BigWig whose chromosome sizes differ from the genome's (another assembly?) "
                           "instead of refusing it")
    negative: Literal["clip", "abs", "keep", "error"] = Field(
        "clip", description="negative coverage values: clip to 0 (and warn), abs = read them as positive "
                            "(minus-strand tracks stored negative), keep them as they are, or error")
    chunk_windows: int = Field(8, gt=0, description="windows per store chunk")
    workers: int = Field(0, ge=0, description="worker processes (0 = all cores)")
    free_space_limit: int | None = Field(None, ge=0, description="treat at most this many bytes as free on the run disk")


class EmbedConfig(_Section):
    """Stage embed: the backbone's trunk over every window -> embeddings store."""

    backbone: str | None = Field(None, description="backbone folder (config.json + pytorch_model.bin) or hub name",
                                 json_schema_extra={"path_like": True})
    backbone_kind: str | None = Field(None, description="backbone family of a hub name (enformer, ...); a folder's "
                                                        "is read from its config.json")
    tf_gamma: bool = Field(False, description="TensorFlow gamma positional features (the study ran without)")
    allow_download: bool = Field(False, description="allow fetching a hub backbone from the network")
    splits: list[str] = Field(default_factory=lambda: ["train", "valid", "test"], min_length=1,
                              description="splits to embed")
    batch_size: int = Field(4, gt=0, description="windows per forward pass")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="compute precision (auto: bf16 on GPU, fp32 on CPU)")
    storage_dtype: Literal["float16", "float32"] = Field("float16", description="stored precision; float16 overflow is an error")
    compile: bool = Field(False, description="torch.compile the trunk")
    loader_workers: int = Field(2, ge=0, description="DataLoader worker processes preparing one-hot inputs")
    train_bin_fraction: float = Field(1.0, gt=0, le=1, description="store this seeded fraction of each train window's bins")
    store_backbone_outputs: bool = Field(
        False, validation_alias=AliasChoices("store_backbone_outputs", "store_backbone_heads"),
        description="also store the backbone's own output tracks (its human head), the zero-shot baseline")
    pad_value: float = Field(0.25, ge=0, le=1, description="one-hot value of positions beyond a chromosome end")
    device: str = Field("auto", description="torch device (auto: cuda if available, with LOCAL_RANK)")


class TrainConfig(_Section):
    """Stage train: a head on stored embeddings. The ``auto`` recipe sizes the schedule to the data
    (docs/training.md); ``--recipe study`` is the reference study's exactly. Settings left empty
    come from the recipe."""

    head: Name = Field("default", description="name of the head (folder RUN_DIR/heads/NAME)")
    recipe: Literal["auto", "study"] = Field(
        "auto", description="auto = a schedule sized to the data (steps, warm-up, cosine decay, ridge start, "
                            "kept on validation Pearson); study = Adam 1e-4, batch 64, 20 epochs, early stopping "
                            "on the loss, as the reference study")
    model: Literal["linear", "mlp", "ridge"] = Field(
        "linear", description="linear + softplus (the study's), a small MLP, or closed-form ridge")
    loss: Literal["poisson", "poisson-log-input", "mse", "poisson-multinomial"] = Field(
        "poisson", description="poisson = rate form (Enformer's; ours); poisson-log-input = the study's "
                               "PoissonNLLLoss(log_input=True) quirk")
    tracks_where: str | None = Field(None, description="train on tracks matching this pandas query, e.g. \"level == 'Class'\" (default: all tracks)")
    lr: float | None = Field(None, gt=0, description="Adam (peak) learning rate (auto: 1e-3; study: 1e-4)")
    batch_size: int | None = Field(None, gt=0, description="windows per batch per device (auto: >= 16 steps an "
                                                           "epoch, at most 64; study: 64)")
    steps: int | None = Field(None, gt=0, description="optimizer steps, run exactly, the schedule sized to them; wins over max_epochs (auto: max(2000, 20 epochs))")
    max_epochs: int | None = Field(None, gt=0, description="epochs, when steps is not given (auto: enough for the steps; study: 20)")
    select: Literal["auto", "pearson", "loss"] = Field(
        "auto", description="what picks the kept checkpoint and stops training: validation mean Pearson or loss "
                            "(auto: pearson; study: loss)")
    min_delta: float | None = Field(None, ge=0, description="early stopping: minimum improvement (study: 0.001)")
    patience: int | None = Field(None, ge=0, description="early stopping: validations without improvement "
                                                         "(auto: a fifth of them; study: 2)")
    mlp_hidden: int = Field(256, gt=0, description="hidden width of the mlp head")
    init: Literal["auto", "random", "ridge"] = Field(
        "auto", description="start of a linear head: ridge = the closed-form solution in the softplus's inverse "
                            "space (auto: ridge; study: random)")
    ridge_lambdas: list[float] = Field(
        default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
        description="ridge strengths (relative to the mean embedding variance), chosen on valid")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="mixed precision (auto: fp16 on GPU, the study's, fp32 on CPU)")
    accelerator: str = Field("auto", description="lightning accelerator")
    devices: int = Field(1, gt=0, description="devices per node (DDP when more than one in all)")
    num_nodes: int = Field(1, gt=0, description="nodes")
    loader_workers: int = Field(2, ge=0, description="DataLoader workers reading the embeddings store")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_alias(cls, value):
        return _PRECISION_ALIASES.get(str(value), value)

    @field_validator("ridge_lambdas")
    @classmethod
    def _positive_lambdas(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one ridge strength, e.g. [0.001, 0.01, 0.1, 1.0]")
        bad = [v for v in value if not (0 < v < float("inf"))]
        if bad:
            raise ValueError(f"ridge strengths must be positive numbers, not {bad[0]}")
        return value


class FinetuneConfig(_Section):
    """Stage finetune: trunk + head trained end to end from sequence, starting from a trained
    frozen head (linear probe, then fine-tune). Settings left empty come from the data's size."""

    head: Name = Field("finetuned", description="name of the fine-tuned model (folder RUN_DIR/heads/NAME)")
    from_head: Name = Field("default", description="the trained frozen head to start from (its tracks and loss)")
    trainable: str = Field("lora", description="what adapts: lora (low-rank adapters), last:K (the last K "
                                               "transformer blocks and final layers) or all")
    lora_rank: int = Field(8, gt=0, description="rank of the LoRA adapters")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling (alpha / rank multiplies the adapters)")
    lr: float | None = Field(None, gt=0, description="peak learning rate (auto: 1e-3 for lora, 1e-4 otherwise)")
    head_lr: float | None = Field(None, gt=0, description="learning rate of the head (auto: a tenth of --lr)")
    batch_size: int = Field(2, gt=0, description="windows per batch per device")
    steps: int | None = Field(None, gt=0, description="optimizer steps, run exactly, the schedule sized to them; wins over max_epochs (auto: max(200, 10 epochs))")
    max_epochs: int | None = Field(None, gt=0, description="epochs, when steps is not given (auto: enough for the steps)")
    patience: int | None = Field(None, ge=0, description="validations without improvement before stopping "
                                                         "(auto: a fifth of them)")
    keep: Literal["best", "finetuned"] = Field(
        "best", description="best: the fine-tuned model only if it beats the frozen head on valid, else the frozen "
                            "head's weights; finetuned: the best fine-tuned checkpoint in any case")
    augment: bool = Field(True, description="reverse-complement and shift the inputs (targets follow)")
    max_shift: int = Field(3, ge=0, description="largest input shift in bp")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="activation checkpointing of the trunk (auto: on GPU)")
    strategy: Literal["auto", "ddp", "fsdp"] = Field("auto", description="several devices: ddp (auto) or fsdp")
    accelerator: str = Field("auto", description="lightning accelerator")
    devices: int = Field(1, gt=0, description="devices per node")
    num_nodes: int = Field(1, gt=0, description="nodes")
    loader_workers: int = Field(2, ge=0, description="DataLoader workers reading sequence and targets")


class PretrainConfig(_Section):
    """``backbone pretrain``: a small Enformer trained from random weights on a run's tracks, written
    as a backbone folder (its own output head predicts those tracks)."""

    out: Path | None = _path_field("backbone folder to write (config.json + pytorch_model.bin)")
    tracks_where: str | None = Field(None, description="pretrain on tracks matching this pandas query (default: all tracks)")
    dim: int = Field(48, gt=0, description="model width")
    depth: int = Field(1, gt=0, description="transformer blocks")
    heads: int = Field(2, gt=0, description="attention heads")
    attn_dim_key: int = Field(16, gt=0, description="attention key size")
    lr: float = Field(2e-3, gt=0, description="peak learning rate (warm-up, cosine decay)")
    batch_size: int = Field(4, gt=0, description="windows per batch")
    steps: int = Field(600, gt=0, description="optimizer steps, run exactly (the schedule sized to them)")
    augment: bool = Field(True, description="reverse-complement and shift the inputs")
    accelerator: str = Field("auto", description="lightning accelerator")
    devices: int = Field(1, gt=0, description="devices")
    loader_workers: int = Field(1, ge=0, description="DataLoader workers")


class EvaluateConfig(_Section):
    """Stage evaluate: a head's predictions for every window of each split, stored and scored."""

    head: Name = Field("default", description="the head to evaluate (RUN_DIR/heads/NAME)")
    splits: list[str] = Field(default_factory=list, description="splits to evaluate (default: test and valid)")
    compare_run: Path | None = _path_field("another run (e.g. a random backbone) evaluated with the same head name")
    enformer_targets: Path | None = _path_field("targets_human.txt naming the backbone's own tracks")
    plot_regions: list[str] = Field(
        default_factory=list, description="chrom:start-end regions or BED files: plot observed vs predicted there",
        json_schema_extra={"path_like": True})
    genes: Path | None = _path_field("GTF (GENCODE / Ensembl, plain or .gz): also score expression per gene on the test split")
    gene_types: list[str] = Field(default_factory=list,
                                  description="keep genes of these types, e.g. protein_coding,lncRNA (default: all)")
    tss_bins: int = Field(1, ge=0, description="--gene-signal tss: bins on each side of the TSS bin summed")
    gene_signal: Literal["tss", "exons"] = Field(
        "tss", description="tss = bins around the TSS (Enformer); exons = bins over the gene's exons (Borzoi)")
    figures: bool = Field(True, description="draw the figures (track plots, scatters, heatmaps); --no-figures: "
                                            "tables and summary only, e.g. for a run that is only a compare run")


class PredictConfig(_Section):
    """Stage predict: a head's predictions for new regions (BigWigs) or sequences (a table)."""

    head: Name = Field("default", description="the head to predict with")
    regions: Path | None = _path_field("BED of regions, tiled into windows")
    chroms: list[str] = Field(default_factory=list, description="whole chromosomes to predict")
    fasta: Path | None = _path_field("sequences of exactly the model input length: write a table")
    out: Path | None = _path_field("output folder (default: RUN_DIR/predictions/HEAD)")
    stride: int | None = Field(None, gt=0, description="bp between windows (default: half the target interval)")
    chrom_aliases: RunAliases = _aliases_field("the regions and chromosomes")
    batch_size: int = Field(4, gt=0, description="windows per forward pass")
    device: str = Field("auto", description="torch device (auto: cuda if available)")


class WeightsConfig(_Section):
    """Stage weights: head weights vs the backbone's own output tracks."""

    head: Name = Field("default", description="a trained linear head")
    enformer_targets: Path | None = _path_field("targets_human.txt naming the backbone's tracks")
    top: int = Field(5, gt=0, description="backbone tracks listed per new track")


class DarConfig(_Section):
    """Stage dar: do predictions recover differentially accessible regions between cell types?"""

    head: Name = Field("default", description="an evaluated head")
    regions: Path | None = _path_field("DAR table: region (chr:start-end) or chrom/start/end, and a cell-type label")
    label_column: str | None = Field(None, description="column of both tables naming the cell type, e.g. subclass")
    tracks_where: str | None = Field(None, description="which tracks form the level, e.g. \"level == 'Subclass'\"")
    splits: list[str] = Field(default_factory=list, description="splits (default: the evaluated ones)")
    chrom_aliases: RunAliases = _aliases_field("the DAR table's regions")
    bin_rule: Literal["contained", "study"] = Field(
        "contained", description="contained = bins inside the region; study = the study's rule (one bin downstream)")
    min_overlap: int = Field(256, gt=0, description="bp of a region inside a target interval")
    permutations: int = Field(1000, ge=0, description="permutations of the predicted top cell types across regions "
                                                      "for the p-value of the top-cell-type agreement (0: none)")
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples of the regions for the interval of the "
                                                   "median Pearson across cell types (0: none)")
    confidence: float = Field(0.95, gt=0, lt=1, description="coverage of the bootstrap interval")


class ContributionsConfig(_Section):
    """Stage contributions: which bases of each region drive a head's tracks. The input is centred on
    each region; the attributed scalar of a track is the sum of its predictions over the output bins
    overlapping the region (docs/interpretation.md)."""

    head: Name = Field("default", description="the head (frozen or fine-tuned) whose tracks are attributed")
    name: OptionalName = Field(None, description="folder RUN_DIR/contributions/NAME (default: HEAD-METHOD)")
    regions: Path | None = _path_field("BED (chrom start end [name]) or a DAR table (region or chrom/start/end "
                                       "columns), e.g. the dars.csv of call-dars")
    label_column: str | None = Field(None, description="column of the regions table naming each region's cell "
                                                       "type (kept for motifs), and of the targets table naming tracks")
    tracks_where: str | None = Field(None, description="attribute the head's tracks matching this pandas query "
                                                       "(default: all, or only the contrast when one is given)")
    chrom_aliases: RunAliases = _aliases_field("the regions")
    contrast: list[str] = Field(default_factory=list, description="A,B: also attribute track A minus track B "
                                                                  "(identifiers or label-column values)")
    method: Literal["grad-input", "ism", "deepliftshap"] = Field(
        "grad-input", description="grad-input = input gradients; ism = every single-base change (3 x width "
                                  "mutants); deepliftshap = DeepLIFT/SHAP against dinucleotide shuffles")
    width: int | None = Field(None, gt=0, description="bp of contributions stored, centred on each region "
                                                      "(default: the longest region)")
    target_bins: int | None = Field(None, gt=0, description="sum the predictions over this many output bins "
                                                            "centred on the region (default: the bins it overlaps)")
    shuffles: int = Field(20, gt=0, description="deepliftshap: dinucleotide shuffles of the window as references")
    bigwigs: bool = Field(True, description="also write one BigWig of actual contributions per attributed scalar")
    plot_regions: list[str] = Field(default_factory=list, description="regions (names, chrom:start-end or row "
                                                                      "numbers) drawn as logos (default: the 3 with "
                                                                      "the largest contributions)")
    plot_width: int = Field(100, gt=0, description="bp around the region centre shown in the logos")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 for grad-input on GPU, fp32 otherwise (ism and deepliftshap always fp32 "
                            "unless set)")
    batch_size: int = Field(4, gt=0, description="regions per forward pass")
    ism_batch_size: int = Field(64, gt=0, description="ism: mutants per forward pass")
    device: str = Field("auto", description="torch device (auto: cuda if available)")


class MotifsConfig(_Section):
    """Stage motifs: TF-MoDISco patterns in the contributions of one contributions stage, per
    attributed track or contrast, annotated with their best TOMTOM matches in JASPAR."""

    contributions: str | None = Field(None, description="the contributions stage (RUN_DIR/contributions/NAME)")
    name: OptionalName = Field(None, description="folder RUN_DIR/motifs/NAME (default: the contributions name)")
    targets: list[str] = Field(default_factory=list, description="attributed tracks or contrasts to analyse "
                                                                 "(names or labels; default: all)")
    match_labels: bool = Field(True, description="when regions carry cell-type labels, use for each target only "
                                                 "the regions labelled with its cell type")
    min_regions: int = Field(5, gt=0, description="refuse a target with fewer regions")
    max_seqlets: int = Field(2000, gt=0, description="seqlets per metacluster (modisco)")
    min_seqlets: int | None = Field(None, gt=0, description="smallest pattern, in seqlets (modisco "
                                                          "final_min_cluster_size; default: scaled to each target's "
                                                          "regions, a tenth of them, from 5 to 20)")
    sliding_window: int = Field(21, gt=0, description="bp of the windows seqlets are called in (modisco)")
    flank: int = Field(10, ge=0, description="bp added on each side of a seqlet (modisco)")
    seqlet_fdr: float = Field(0.2, gt=0, lt=1, description="target false discovery rate of seqlets (modisco)")
    leiden_runs: int = Field(10, gt=0, description="Leiden clusterings per step (modisco: 50; fewer is faster)")
    jaspar: bool = Field(True, description="match the patterns against JASPAR (pyjaspar's shipped database)")
    motif_file: Path | None = _path_field("more motifs to match against, MEME format (with --no-jaspar: these only)")
    jaspar_release: str = Field("JASPAR2024", description="JASPAR release shipped with pyjaspar")
    jaspar_collection: str = Field("CORE", description="JASPAR collection")
    jaspar_tax_group: str = Field("vertebrates", description="JASPAR taxonomic group")
    matches: int = Field(3, gt=0, description="best matches listed per pattern")
    max_match_qvalue: float = Field(0.05, gt=0, le=1, description="a pattern is named after its best match only at or "
                                                                   "below this TOMTOM q-value")


class CallDarsConfig(_Section):
    """Stage call-dars: regions whose signal in one cell type of a level stands out from the others,
    from observed targets or a head's predictions (docs/interpretation.md gives the rule)."""

    name: OptionalName = Field(None, description="folder RUN_DIR/called-dars/NAME (default: observed or the head)")
    source: Literal["observed", "predicted"] = Field("observed", description="observed targets or an evaluated "
                                                                             "head's predictions")
    head: Name = Field("default", description="source predicted: the evaluated head")
    label_column: str | None = Field(None, description="targets-table column naming each track's cell type, "
                                                       "e.g. subclass (the column of the written table)")
    tracks_where: str | None = Field(None, description="which tracks form the level, e.g. \"level == 'Subclass'\"")
    splits: list[str] = Field(default_factory=list, description="splits (default: all; predicted: the evaluated)")
    peaks: Path | None = _path_field("BED of candidate regions (default: fixed-size regions centred on local maxima)")
    chrom_aliases: RunAliases = _aliases_field("the peaks")
    region_bins: int = Field(4, gt=0, description="bins per fixed-size candidate region")
    min_log2_fold_change: float = Field(1.0, ge=0, description="log2((top + pseudocount) / (versus + pseudocount)) "
                                                               "at least this")
    versus: Literal["rest", "second"] = Field("rest", description="rest = the mean of the other cell types; "
                                                                   "second = the second highest")
    min_signal: float | None = Field(None, description="the top cell type's mean signal at least this (default: the "
                                                       "90th percentile of all region x cell type signals)")
    pseudocount: float | None = Field(None, ge=0, description="added to both signals (default: the median of all "
                                                              "region x cell type signals)")
    max_per_cell_type: int | None = Field(None, gt=0, description="keep at most this many regions per cell type, "
                                                                  "the largest fold changes")


VARIANT_STATS = ("SUM", "logSUM", "logSED", "SAX", "D1", "D2", "JS")


class VariantsConfig(_Section):
    """Stage variants: effects of a VCF's variants on every track of a head, from sequence
    (docs/variants.md: the input window, each score's formula, indels, the null)."""

    head: Name = Field("default", description="the head (frozen-trunk or fine-tuned) to score with")
    vcf: Path | None = _path_field("variants: VCF (plain or bgzip) or a TSV with chrom, pos, ref, alt[, id]")
    out: Path | None = _path_field("output folder (default: RUN_DIR/variants/HEAD)")
    chrom_aliases: RunAliases = _aliases_field("the variants' chromosomes")
    stats: list[Literal[VARIANT_STATS]] = Field(
        default_factory=lambda: ["SUM", "logSUM", "logSED", "SAX", "D1", "D2"],
        description="scores per variant and track (ref_sum and alt_sum always): SUM, logSUM, logSED, SAX, D1, D2, JS")
    rc: bool = Field(False, description="average forward and reverse-complement predictions")
    shifts: list[int] = Field(default_factory=lambda: [0],
                              description="input shifts in bp whose scores are averaged (e.g. --shifts=-1,0,1)")
    level_column: str | None = Field(
        None, description="tracks column whose values group the tracks of one level for the specificity z-score "
                          "(default: level when the tracks have it, else all tracks together)")
    summary_stat: Literal[VARIANT_STATS] = Field("logSED", description="the score that ranks variants in the "
                                                                       "summaries and figures")
    top: int = Field(10, gt=0, description="variants listed per track in the per-level summary")
    plot_variants: list[str] = Field(default_factory=list, description="variants (ID or chrom:pos:ref:alt) to draw")
    plot_top: int = Field(3, ge=0, description="also draw this many variants with the largest effect")
    bigwig: bool = Field(False, description="write per-bin alt - ref of every track around the drawn variants as BigWigs")
    null_shuffles: int = Field(0, ge=0, description="empirical p-values from the variant in this many "
                                                    "dinucleotide-shuffled copies of its context (0: none)")
    ref_mismatch: Literal["error", "skip", "flip"] = Field(
        "error", description="a REF that differs from the genome: error refuses the file, skip drops the variant, "
                             "flip scores it when its ALT is the genome's allele (baskerville; ALT - REF as the VCF "
                             "states); skipped and flipped are listed in ref_mismatches.tsv")
    placement: Literal["center", "baskerville"] = Field(
        "center", description="where the variant sits in the input: center = index seq_length // 2, baskerville = "
                              "one base to its left (baskerville's windows; the same as --shifts=-1)")
    scale: Literal["coverage", "scaled", "transformed"] = Field(
        "coverage", description="scores of coverage (the targets' soft clip, sqrt statistic and scale undone), of "
                                "coverage x scale (baskerville's untransform_preds default) or of the head's "
                                "transformed output")
    strands: Literal["merge", "separate"] = Field(
        "merge", description="stranded track pairs (targets table strand_pair): merge = one column per pair, scores "
                             "added and D2 in quadrature (baskerville); separate = one column per strand")
    genes: Path | None = _path_field("GTF (GENCODE / Ensembl, plain or gzipped): also score each variant on every "
                                     "gene with exons in its output interval, over the gene's exon bins (logSED, "
                                     "SUM; docs/variants.md)")
    gene_types: list[str] = Field(default_factory=list, description="with --genes: only genes of these types, e.g. "
                                                                    "protein_coding (default: all)")
    chunk_variants: int = Field(32, gt=0, description="variants per resumable chunk")
    batch_size: int = Field(8, gt=0, description="sequences per forward pass")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="compute precision (auto: bf16 on GPU, "
                                                                           "fp32 on CPU)")
    compile: bool = Field(False, description="torch.compile the trunk")
    device: str = Field("auto", description="torch device (auto: cuda if available, with LOCAL_RANK)")

    @model_validator(mode="before")
    @classmethod
    def _earlier_skip_ref_mismatch(cls, data):
        """``skip_ref_mismatch = true`` of earlier configs means ``ref_mismatch = "skip"``."""
        if isinstance(data, dict) and "skip_ref_mismatch" in data:
            data = dict(data)
            skip = data.pop("skip_ref_mismatch")
            data.setdefault("ref_mismatch", "skip" if skip else "error")
        return data


class ReportConfig(_Section):
    """Stage report: one self-contained HTML page of the run."""

    heads: list[Name] = Field(default_factory=list, description="evaluated heads to include (default: all)")


class RunConfig(_Section):
    """All stages of one run; each key can also be given as a command-line flag."""

    run_dir: Path | None = Field(None, description="the run directory")
    seed: int = Field(0, description="random seed of every stage")
    geometry: Geometry = Field(default_factory=Geometry)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    pseudobulk: PseudobulkConfig = Field(default_factory=PseudobulkConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    weights: WeightsConfig = Field(default_factory=WeightsConfig)
    dar: DarConfig = Field(default_factory=DarConfig)
    contributions: ContributionsConfig = Field(default_factory=ContributionsConfig)
    motifs: MotifsConfig = Field(default_factory=MotifsConfig)
    call_dars: CallDarsConfig = Field(default_factory=CallDarsConfig)
    variants: VariantsConfig = Field(default_factory=VariantsConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    def run_path(self, stage: str, hint: str = "") -> Path:
        """``run_dir``, or the one-line error naming ``stage`` (and ``hint``, e.g. the flag) when
        the config names none; ``RunDirectory.of`` is this and the run it names."""
        if self.run_dir is None:
            raise InputError(f"{stage}: no run directory given{hint}")
        return self.run_dir


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation for name, field in RunConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}


def as_config(config: RunConfig | Path | str) -> RunConfig:
    """A stage's config: a RunConfig as given, or a run directory's own (its config.toml)."""
    if isinstance(config, RunConfig):
        return config
    from .layout import RunLayout

    run_dir = Path(config)
    snapshot = RunLayout(run_dir).config
    loaded = load_config(snapshot) if snapshot.is_file() else RunConfig()
    loaded.run_dir = Path(os.path.abspath(run_dir))
    return loaded


def load_config(path: Path | str) -> RunConfig:
    """Read a TOML run config; relative paths are relative to the config file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None
    return validate_config(data, f"{path}: ", base=path.parent)


def validate_config(data: dict, where: str = "", base: Path | None = None) -> RunConfig:
    """A RunConfig from plain data; relative paths become absolute against ``base`` (default: cwd)."""
    try:
        config = RunConfig.model_validate(data)
    except ValueError as err:
        raise InputError(f"{where}{first_error(err)}") from None
    return absolute_paths(config, base or Path.cwd())


def _absolute(base: Path, value: Path) -> Path:
    return Path(os.path.normpath(base / value)) if not value.is_absolute() else value


def absolute_paths(config: RunConfig, base: Path) -> RunConfig:
    """Make every relative path of the config absolute against ``base`` (in place)."""
    base = Path(os.path.abspath(base))
    if config.run_dir is not None:
        config.run_dir = _absolute(base, config.run_dir)
    for name in SECTIONS:
        section = getattr(config, name)
        for key, field in type(section).model_fields.items():
            value = getattr(section, key)
            if isinstance(value, Path):
                setattr(section, key, _absolute(base, value))
            elif (field.json_schema_extra or {}).get("path_like"):
                setattr(section, key, _absolute_path_like(base, value))
    return config


def _absolute_path_like(base: Path, value):
    """Strings that may name files: made absolute when they do (or, for a backbone, when they
    are not of the hub's 'Org/name' form)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_absolute_path_like(base, v) for v in value]
    path = Path(value)
    if path.is_absolute():
        return value
    if (base / path).exists():
        return str(_absolute(base, path))
    if _looks_like_region(value) or ("/" in value and not value.startswith(".")):
        return value  # a region, or a hub name such as EleutherAI/enformer-official-rough
    return str(_absolute(base, path))


def _looks_like_region(text: str) -> bool:
    return ":" in text and "-" in text.rpartition(":")[2]


def config_to_toml(config: RunConfig) -> str:
    import tomli_w

    data = config.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)


def first_error(err: ValueError) -> str:
    """The first validation error of a pydantic error as 'section.key: message'."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = first.get("loc", ())
        where = ".".join(str(p) for p in loc)
        hint = ""
        if first.get("type") == "extra_forbidden" and loc:
            model = RunConfig if len(loc) == 1 else SECTIONS.get(str(loc[0]))
            hint = did_you_mean(str(loc[-1]), list(model.model_fields)) if model is not None else ""
        message = str(first.get("msg")).removeprefix("Value error, ")  # pydantic's prefix of our own messages
        return f"{where}: {message}{hint}"
    return str(err)
