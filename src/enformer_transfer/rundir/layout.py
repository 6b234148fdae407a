"""Every folder and file name of a run directory, in one place.

A stage writes its folder as ``NAME.partial`` and renames it to ``NAME`` when complete; the
folder classes below name the files inside a stage folder, whichever of the two it is, so
the code that writes a store and the code that reads it use the same name. Nothing else in
the package spells a run directory's file names.

    RUN_DIR/config.toml                    merged config of the latest successful command
    RUN_DIR/enformer-transfer.log          every command's log messages, appended
    RUN_DIR/dataset/                       targets (stage ``dataset``)
    RUN_DIR/embeddings/                    backbone embeddings (stage ``embed``)
    RUN_DIR/heads/NAME/                    a trained head or fine-tuned model (``train``, ``finetune``)
    RUN_DIR/evaluation/NAME/               predictions and metrics of head NAME (``evaluate``)
    RUN_DIR/predictions/NAME/              BigWigs / tables of new regions (``predict``)
    RUN_DIR/weights/NAME/                  head weights vs the backbone's tracks (``weights``)
    RUN_DIR/dar/NAME/                      DAR analysis of head NAME (``dar``)
    RUN_DIR/contributions/NAME/            contributions of bases to tracks (``contributions``)
    RUN_DIR/motifs/NAME/                   TF-MoDISco patterns and JASPAR matches (``motifs``)
    RUN_DIR/called-dars/NAME/              cell-type-specific regions called from tracks (``call-dars``)
    RUN_DIR/variants/NAME/                 variant effects per track of head NAME (``variants``)
    RUN_DIR/report/report.html             the report (``report``)
    RUN_DIR/pretrained-backbone/           a backbone trained from random weights (``backbone pretrain``)
    RUN_DIR/.NAME.lock (beside each folder)  held while a stage runs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.toml"
NAME_MAX = 100
STAGE_RECORD = "stage.json"
PARTIAL = ".partial"
PROGRESS = "progress"  # in a stage folder: per-chunk progress of a resumable build, left out of its checksums
KEY_MARKER = "key.json"  # in a partial folder: the key it is being built for
PRETRAINED_BACKBONE = "pretrained-backbone"  # the default folder of ``backbone pretrain``
BACKBONE_CONFIG = "config.json"  # a backbone folder's model config (enformer-pytorch format)
WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")  # a backbone folder's weights, either
CHECKPOINTS = ("last.ckpt", "best.ckpt")  # in a head's checkpoints/, in the order a resume tries them


def check_name(name: str, what: str = "name") -> str:
    """A head, analysis or run-folder name as given by a user: letters, digits, '-', '_' and '.',
    not starting with '.', at most NAME_MAX characters. ``..`` or a path would put a stage folder
    (and what ``--force`` removes) outside its place in the run directory."""
    from ..errors import InputError

    name = str(name)
    bad = [c for c in name if not (c.isascii() and (c.isalnum() or c in "-_."))]
    if not name or name.startswith(".") or bad or len(name) > NAME_MAX:
        why = ("is empty" if not name else "starts with '.'" if name.startswith(".")
               else f"is {len(name)} characters long (at most {NAME_MAX})" if len(name) > NAME_MAX
               else f"contains {''.join(dict.fromkeys(bad))!r}")
        raise InputError(f"{what} {name!r} {why}: use letters, digits, '-', '_' and '.' (not first), "
                         f"at most {NAME_MAX} characters")
    return name


@dataclass(frozen=True)
class StageFolder:
    """A stage's folder (finished, or ``.partial`` while it is built)."""

    path: Path

    @property
    def record(self) -> Path:
        return self.path / STAGE_RECORD

    @property
    def progress(self) -> Path:
        """Per-chunk progress logs of a resumable build."""
        return self.path / PROGRESS

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def checksums(self) -> Path:
        """Checksums of every chunk of the stage's stores, recorded as they were written."""
        return self.path / "checksums.json"

    @property
    def logs(self) -> Path:
        return self.path / "logs"


class DatasetFolder(StageFolder):
    tracks = property(lambda self: self.path / "tracks.tsv")
    windows = property(lambda self: self.path / "windows.tsv")
    dropped_windows = property(lambda self: self.path / "dropped_windows.tsv")
    targets_store = property(lambda self: self.path / "targets.zarr")
    masks_store = property(lambda self: self.path / "masks.zarr")
    track_stats = property(lambda self: self.path / "track_stats.tsv")
    extreme_clip = property(lambda self: self.path / "extreme_clip.json")

    def chunk_file(self, kind: str, split: str, chunk: int) -> Path:
        """A per-chunk array of a resumable build (``uncovered``, ``summary``, ``odd``, ``clip``)."""
        return self.progress / f"{kind}-{split}-{chunk}.npy"


class EmbeddingsFolder(StageFolder):
    embeddings_store = property(lambda self: self.path / "embeddings.zarr")
    backbone_outputs_store = property(lambda self: self.path / "backbone_outputs.zarr")


class HeadFolder(StageFolder):
    """A trained head: its weights (``head.safetensors``) and what they are (``head.json``), never
    a pickle; a fine-tuned model also holds its adapted trunk (``trunk/``, the enformer-pytorch
    format) and, for LoRA, the adapters alone."""

    safetensors = property(lambda self: self.path / "head.safetensors")
    model = safetensors  # the file a head's weights load from (head.pt of older versions is never read)
    trunk = property(lambda self: self.path / "trunk")
    adapters = property(lambda self: self.path / "adapters.safetensors")
    metadata = property(lambda self: self.path / "head.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.checkpoints / CHECKPOINTS[0])
    metrics = property(lambda self: self.path / "logs" / "metrics.csv")
    track_change = property(lambda self: self.path / "track_change.json")  # fine-tuned: per-track change on test


@dataclass(frozen=True)
class BackboneFolder:
    """A backbone folder (``EleutherAI/enformer-official-rough``'s format): ``config.json`` and
    ``pytorch_model.bin`` or ``model.safetensors``; one written by ``backbone pretrain`` also
    holds ``pretrain.json`` (its tracks, settings and validation score)."""

    path: Path

    config = property(lambda self: self.path / BACKBONE_CONFIG)
    pretrain_record = property(lambda self: self.path / "pretrain.json")

    @property
    def weight_files(self) -> list[Path]:
        """The weight files that exist, in WEIGHT_FILES' order."""
        return [self.path / w for w in WEIGHT_FILES if (self.path / w).is_file()]


class EvaluationFolder(StageFolder):
    predictions_store = property(lambda self: self.path / "predictions.zarr")
    per_track = property(lambda self: self.path / "per_track.csv")
    per_level = property(lambda self: self.path / "per_level.csv")
    bin_position = property(lambda self: self.path / "bin_position.csv")
    summary = property(lambda self: self.path / "summary.json")
    genes = property(lambda self: self.path / "genes.parquet")  # gene x track, observed / predicted
    per_track_genes = property(lambda self: self.path / "per_track_genes.csv")
    per_gene = property(lambda self: self.path / "per_gene.csv")  # per gene, across the tracks of a level

    def correlations(self, split: str) -> Path:
        return self.path / f"correlations_{split}.npz"


class PredictionsFolder(StageFolder):
    table = property(lambda self: self.path / "predictions.tsv")

    def bigwig(self, file_stem: str) -> Path:
        return self.path / f"{file_stem}.bw"


class WeightsFolder(StageFolder):
    top_matches = property(lambda self: self.path / "top_matches.csv")
    by_assay = property(lambda self: self.path / "similarity_by_assay.csv")


class DarFolder(StageFolder):
    regions = property(lambda self: self.path / "regions.csv")
    confusion = property(lambda self: self.path / "confusion.csv")
    summary = property(lambda self: self.path / "summary.json")


class ContributionsFolder(StageFolder):
    """Per region and attributed scalar: hypothetical and actual contributions over a window
    centred on the region (contributions.zarr), the regions and scalars as tables, BigWigs."""

    store = property(lambda self: self.path / "contributions.zarr")
    regions = property(lambda self: self.path / "regions.tsv")
    targets = property(lambda self: self.path / "scalars.tsv")  # the attributed scalars
    summary = property(lambda self: self.path / "summary.json")
    bigwigs = property(lambda self: self.path / "bigwigs")

    def bigwig(self, file_stem: str) -> Path:
        return self.bigwigs / f"{file_stem}.bw"


class MotifsFolder(StageFolder):
    """TF-MoDISco patterns per attributed scalar, their seqlets and best motif-database matches."""

    patterns = property(lambda self: self.path / "patterns.csv")
    matches = property(lambda self: self.path / "matches.csv")
    importance = property(lambda self: self.path / "importance.csv")
    patterns_meme = property(lambda self: self.path / "patterns.meme")
    summary = property(lambda self: self.path / "summary.json")
    modisco = property(lambda self: self.path / "modisco")
    tables = property(lambda self: self.path / "tables")

    def modisco_results(self, file_stem: str) -> Path:
        return self.modisco / f"{file_stem}.h5"

    def table(self, file_stem: str) -> Path:
        return self.tables / f"{file_stem}.csv"


class CalledDarsFolder(StageFolder):
    """Cell-type-specific regions called from a run's own tracks: the table ``dar`` and
    ``contributions`` accept (dars.csv) and every candidate region's signals."""

    table = property(lambda self: self.path / "dars.csv")
    candidates = property(lambda self: self.path / "candidates.csv.gz")
    summary = property(lambda self: self.path / "summary.json")


class VariantsFolder(StageFolder):
    """Variant effects of one head: the variants scored (and those left out), one row per variant
    and track with every score, per-level summaries, figures, and per-chunk results while it runs."""

    variants = property(lambda self: self.path / "variants.tsv")
    skipped = property(lambda self: self.path / "skipped.tsv")
    ref_mismatches = property(lambda self: self.path / "ref_mismatches.tsv")
    scores = property(lambda self: self.path / "scores.tsv")
    scores_parquet = property(lambda self: self.path / "scores.parquet")
    scores_h5 = property(lambda self: self.path / "scores.h5")  # per score a variants x tracks matrix (baskerville)
    gene_scores = property(lambda self: self.path / "gene_scores.tsv")  # --genes: per variant, gene and track
    gene_scores_parquet = property(lambda self: self.path / "gene_scores.parquet")
    top_variants = property(lambda self: self.path / "top_variants.tsv")
    most_affected = property(lambda self: self.path / "most_affected.tsv")
    summary = property(lambda self: self.path / "summary.json")
    chunks = property(lambda self: self.path / "chunks")
    bigwigs = property(lambda self: self.path / "bigwig")

    def chunk(self, index: int) -> Path:
        return self.chunks / f"{index:06d}.npz"

    def bigwig(self, variant_stem: str, track_stem: str) -> Path:
        """Per-bin alt - ref of one track around one variant."""
        return self.bigwigs / variant_stem / f"{track_stem}.bw"


class ReportFolder(StageFolder):
    html = property(lambda self: self.path / "report.html")


class RunLayout:
    """The folders of one run directory."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def log(self) -> Path:
        """The log of every command run on this directory (appended, all levels)."""
        return self.root / "enformer-transfer.log"

    @property
    def dataset(self) -> DatasetFolder:
        return DatasetFolder(self.root / "dataset")

    @property
    def embeddings(self) -> EmbeddingsFolder:
        return EmbeddingsFolder(self.root / "embeddings")

    @property
    def heads(self) -> Path:
        return self.root / "heads"

    def head(self, name: str) -> HeadFolder:
        return HeadFolder(self.heads / check_name(name, "head name"))

    @property
    def evaluations(self) -> Path:
        return self.root / "evaluation"

    def evaluation(self, name: str) -> EvaluationFolder:
        return EvaluationFolder(self.evaluations / check_name(name, "head name"))

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    def predictions(self, name: str) -> PredictionsFolder:
        return PredictionsFolder(self.predictions_dir / check_name(name, "predictions name"))

    @property
    def weights_dir(self) -> Path:
        return self.root / "weights"

    def weights(self, name: str) -> WeightsFolder:
        return WeightsFolder(self.weights_dir / check_name(name, "head name"))

    @property
    def dars(self) -> Path:
        return self.root / "dar"

    def dar(self, name: str) -> DarFolder:
        return DarFolder(self.dars / check_name(name, "DAR analysis name"))

    @property
    def contribution_sets(self) -> Path:
        return self.root / "contributions"

    def contributions(self, name: str) -> ContributionsFolder:
        return ContributionsFolder(self.contribution_sets / check_name(name, "contributions name"))

    @property
    def motif_sets(self) -> Path:
        return self.root / "motifs"

    def motifs(self, name: str) -> MotifsFolder:
        return MotifsFolder(self.motif_sets / check_name(name, "motifs name"))

    @property
    def called_dar_sets(self) -> Path:
        return self.root / "called-dars"

    def called_dars(self, name: str) -> CalledDarsFolder:
        return CalledDarsFolder(self.called_dar_sets / check_name(name, "call-dars name"))

    @property
    def variants_dir(self) -> Path:
        return self.root / "variants"

    def variants(self, name: str) -> VariantsFolder:
        return VariantsFolder(self.variants_dir / check_name(name, "variants name"))

    @property
    def report(self) -> ReportFolder:
        return ReportFolder(self.root / "report")

    @property
    def pretrained_backbone(self) -> BackboneFolder:
        """Where ``backbone pretrain`` writes its backbone unless told otherwise."""
        return BackboneFolder(self.root / PRETRAINED_BACKBONE)


def partial_of(folder: Path) -> Path:
    """Where a stage folder is built before it is renamed into place."""
    return folder.with_name(folder.name + PARTIAL)


def lock_of(folder: Path) -> Path:
    """The lock file of a stage folder (beside it: the folder itself is renamed)."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.lock")


def finished(folder: Path) -> bool:
    return (Path(folder) / STAGE_RECORD).is_file()


def finished_names(parent: Path) -> list[str]:
    """Names of the finished stage folders under ``parent`` (heads, evaluations, ...)."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir() if p.is_dir() and finished(p))


FIGURE_INDEX = "index.json"  # in every figures/ folder: the figures in reading order (plots.figures.FigureIndex)


def read_figure_index(folder: Path) -> list[dict]:
    """The entries of a figures folder's index.json, with absolute paths ('path')."""
    import json

    path = Path(folder) / FIGURE_INDEX
    if not path.is_file():
        return []
    return [{**e, "path": Path(folder) / e["file"]} for e in json.loads(path.read_text())]
