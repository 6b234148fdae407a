"""``RunDirectory``: typed read access to a run directory, stage by stage (``results.Run`` adds
the models it holds).

Every stage reads what earlier stages wrote through ``Run`` (never by opening another stage's
``stage.json`` or spelling its file names): the dataset's geometry, tracks, windows and
targets; the embeddings; heads; evaluations. Files an earlier stage recorded by fingerprint
(the genome, the backbone's weights) are checked against it before use.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, IntegrityError, StaleStageError, did_you_mean
from ..fs import SharedLocks
from ..targets.table import read_targets_table
from . import store
from .config import DatasetConfig, EmbedConfig, Geometry, RunConfig, load_config
from .layout import (
    CalledDarsFolder,
    ContributionsFolder,
    DarFolder,
    EvaluationFolder,
    HeadFolder,
    MotifsFolder,
    RunLayout,
    StageFolder,
    VariantsFolder,
    finished,
    finished_names,
    lock_of,
    read_figure_index,
)
from .provenance import StageRecord, verify_fingerprint


class RunDirectory:
    """A run directory: ``RunDirectory(path).tracks``, ``.windows(split)``, ``.targets(split)``, ...
    Its models (heads, backbone) as torch modules: ``results.Run``, the public ``Run``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"{self.path}: run directory not found")
        self.layout = RunLayout(self.path)
        nested = self._runs_one_level_down()
        if nested:
            # the demo's --out folder holds its run in run/: say where the run is, not what to build here
            raise InputError(f"{self.path} is not a run directory; it holds "
                             + (f"a run one level down: give {nested[0]}" if len(nested) == 1 else
                                f"runs one level down: give one of {', '.join(map(str, nested))}"))
        self._records: dict[str, StageRecord] = {}  # run-relative folder -> verified record
        self._verifying: set[str] = set()
        self._locks: SharedLocks | None = None
        self._own: str | None = None
        # a view (the report) lists only what is current; what it left out, and why, is kept here
        self.only_current = False
        self.left_out: dict[str, str] = {}

    @classmethod
    def of(cls, config: RunConfig, stage: str, hint: str = ""):
        """The run a stage's config names; a one-line error naming ``stage`` when it names none."""
        return cls(config.run_path(stage, hint))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _runs_one_level_down(self) -> list[Path]:
        """Runs in subfolders of a folder that is none itself (no config.toml, no dataset)."""
        if self.layout.config.exists() or self.layout.dataset.path.exists():
            return []
        return sorted(sub for sub in self.path.iterdir() if sub.is_dir() and (
            RunLayout(sub).config.is_file() or finished(RunLayout(sub).dataset.path)))

    def _record(self, folder: Path, hint: str) -> StageRecord:
        if not finished(folder):
            stage = self._relative(folder)
            raise InputError(self._missing_upstream(stage) or f"{self.path} has no finished {stage} stage yet; {hint}")
        return self.verified_record(folder)

    def _missing_upstream(self, stage: str) -> str | None:
        """When a stage is asked for before a stage it needs, the advice to build the first one
        missing: the dataset, then (for heads) the embeddings; None when they are there."""
        if stage != "dataset" and not finished(self.layout.dataset.path):
            upstream, hint = "dataset", f"run 'enformer-transfer dataset ... --out {self.path}' first"
        elif stage.startswith("heads/") and not finished(self.layout.embeddings.path):
            upstream, hint = "embeddings", f"run 'enformer-transfer embed {self.path} --backbone DIR' first"
        else:
            return None
        return f"{self.path} has no finished {upstream} stage yet; {hint}"

    def _relative(self, folder: Path) -> str:
        folder = Path(folder)
        try:
            return folder.relative_to(self.path).as_posix()
        except ValueError:
            return str(folder)

    def verified_record(self, folder: Path) -> StageRecord:
        """The record of a finished stage folder, after checking that it is what was built: every
        file it wrote has the content recorded when it finished, and every stage it was built from
        is still the one it read (same digest), all the way up the chain. A stale or damaged
        stage is refused with the command that rebuilds it. Checked once per ``Run``."""
        folder = Path(folder)
        rel = self._relative(folder)
        if rel in self._records:
            return self._records[rel]
        if rel in self._verifying:
            raise IntegrityError(f"{folder}: its stage record names itself among its inputs; "
                                 f"{self.rebuild_hint(rel)}")
        self._verifying.add(rel)
        try:
            record = StageRecord.read(folder)
            fix = self.rebuild_hint(rel)
            record.verify_outputs(folder, fix)
            for upstream, digest in record.upstream.items():
                source = self.path / upstream
                if not finished(source):
                    raise StaleStageError(f"{self.path}: {rel} was built from {upstream}, which is gone or "
                                          f"unfinished now; {fix}")
                current = self.verified_record(source)
                if current.digest != digest:
                    raise StaleStageError(f"{self.path}: {rel} was built from an earlier {upstream} (rebuilt "
                                          f"{current.finished.replace('T', ' ')}); {fix}")
        finally:
            self._verifying.discard(rel)
        self._records[rel] = record
        if self._locks is not None and rel != self._own:
            self._locks.acquire(lock_of(folder), f"{folder}")
        return record

    def rebuild_hint(self, rel: str) -> str:
        """The command that rebuilds the stage folder ``rel`` (run-relative) from what is current."""
        kind, _, name = rel.partition("/")
        run = self.path
        commands = {
            "dataset": f"enformer-transfer dataset --out {run} --force",
            "embeddings": f"enformer-transfer embed {run} --force",
            "heads": (f"enformer-transfer finetune {run} --head {name} ... --force"
                      if HeadFolder(self.path / rel).trunk.exists() else f"enformer-transfer train {run} --head {name} --force"),
            "evaluation": f"enformer-transfer evaluate {run} --head {name} --force",
            "predictions": f"enformer-transfer predict {run} --head {name} ... --force",
            "weights": f"enformer-transfer weights {run} --head {name} --force",
            "dar": f"enformer-transfer dar {run} --head {name} --regions ... --force",
            "variants": f"enformer-transfer variants {run} --head {name} --vcf ... --force",
            "contributions": f"enformer-transfer contributions {run} --name {name} ... --force",
            "motifs": f"enformer-transfer motifs {run} --name {name} --contributions ... --force",
            "called-dars": f"enformer-transfer call-dars {run} --name {name} ... --force",
            "report": f"enformer-transfer report {run} --force",
        }
        command = commands.get(kind, f"rerun the stage that wrote {rel} with --force")
        return f"rebuild it: {command} ('enformer-transfer check {run}' lists every stale or damaged part)"

    def _current(self, names: list[str], read) -> list[str]:
        """``names``, less those whose stage is stale or damaged when ``only_current`` is set
        (each noted in ``left_out`` with the reason and the rebuild command)."""
        if not self.only_current:
            return names
        from ..errors import EnformerTransferError

        kept = []
        for name in names:
            try:
                read(name)
                kept.append(name)
            except EnformerTransferError as err:
                self.left_out[name if "/" in name else f"{read.__name__} {name}"] = str(err)
        return kept

    # --- what a running stage reads ----------------------------------------------------------

    def consumed(self, own: Path | None = None) -> dict[str, str]:
        """{run-relative folder: digest} of every stage read through this ``Run`` so far (the
        whole chain above each), ``own`` (the stage being built) left out."""
        mine = self._relative(own) if own is not None else None
        return {rel: r.digest for rel, r in self._records.items()
                if rel != mine and not (mine and rel.startswith(mine + "/")) and not Path(rel).is_absolute()}

    def hold_reading_locks(self, own: Path) -> None:
        """While a stage runs: shared locks on every stage folder it reads (now and later), so
        that a command rebuilding one of them is refused until it finishes; then check that
        nothing read during planning changed before the locks were taken."""
        self._own = self._relative(own)
        self._locks = SharedLocks()
        for rel, record in list(self._records.items()):
            if rel == self._own or Path(rel).is_absolute():
                continue
            folder = self.path / rel
            self._locks.acquire(lock_of(folder), str(folder))
            try:
                now = StageRecord.read(folder).digest if finished(folder) else None
            except IntegrityError:
                now = None
            if now != record.digest:
                raise StaleStageError(f"{folder} was rebuilt or removed while this command started; rerun it")

    def release_reading_locks(self) -> None:
        if self._locks is not None:
            self._locks.release()
        self._locks, self._own = None, None

    def _stored(self, folder: StageFolder, store_path: Path, key: str, fix: str) -> store.VerifiedArray:
        """An array of a stage's store behind its recorded chunk checksums."""
        return stored_array(folder, store_path, key, fix)

    @property
    def config(self) -> RunConfig:
        """The merged config of the latest successful command (RUN_DIR/config.toml)."""
        if not self.layout.config.is_file():
            raise InputError(f"{self.path}: no config.toml (not a run directory, or no stage finished yet)")
        config = load_config(self.layout.config)
        config.run_dir = self.path.absolute()
        return config

    # --- dataset ---------------------------------------------------------------------------

    @cached_property
    def dataset_record(self) -> StageRecord:
        return self._record(self.layout.dataset.path, f"run 'enformer-transfer dataset ... --out {self.path}' first")

    @cached_property
    def dataset_config(self) -> DatasetConfig:
        return DatasetConfig.model_validate(self.dataset_record.config["dataset"])

    @cached_property
    def geometry(self) -> Geometry:
        return Geometry.model_validate(self.dataset_record.config["geometry"])

    @cached_property
    def tracks(self) -> pd.DataFrame:
        """The targets table of the dataset (one row per track, with metadata columns)."""
        self.dataset_record  # noqa: B018  (a clear error when there is no dataset)
        return read_targets_table(self.layout.dataset.tracks, check_files=False)

    @cached_property
    def _windows(self) -> pd.DataFrame:
        self.dataset_record  # noqa: B018
        return pd.read_csv(self.layout.dataset.windows, sep="\t")

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(self._windows["split"]))

    def windows(self, split: str) -> pd.DataFrame:
        """Target intervals (chrom, start, end, ...) of a split, in store order."""
        self._check_split(split)
        df = self._windows[self._windows["split"] == split].reset_index(drop=True)
        return df[["chrom", "start", "end"] + [c for c in df.columns if c not in ("chrom", "start", "end")]]

    def split_offset(self, split: str) -> int:
        """Index of the split's first window among all windows, in store order."""
        self._check_split(split)
        return int(np.flatnonzero(self._windows["split"].to_numpy() == split)[0])

    def targets(self, split: str):
        """Array-like (windows, bins, tracks) float16, read from disk by window, checked."""
        self._check_split(split)
        folder = self.layout.dataset
        return self._stored(folder, folder.targets_store, split, self._rebuild_dataset)

    def masks(self, split: str):
        """(windows, bins, tracks) bool, True where a bin has uncovered bases; None if not stored."""
        self._check_split(split)
        folder = self.layout.dataset
        if not store.has_array(folder.masks_store, split):
            return None
        return self._stored(folder, folder.masks_store, split, self._rebuild_dataset)

    @property
    def _rebuild_dataset(self) -> str:
        return (f"rebuild it with 'enformer-transfer dataset --out {self.path} --force' "
                f"('enformer-transfer check {self.path}' lists everything damaged)")

    @property
    def _rebuild_embeddings(self) -> str:
        return (f"rebuild it with 'enformer-transfer embed {self.path} --force' "
                f"('enformer-transfer check {self.path}' lists everything damaged)")

    @property
    def track_stats(self) -> pd.DataFrame | None:
        """Per-track mean / std / max / extreme-clip threshold over all windows."""
        path = self.layout.dataset.track_stats
        return pd.read_csv(path, sep="\t") if path.is_file() else None

    def genome(self, chrom_aliases: str | None = None):
        """The dataset's genome, refused when its content differs from what the dataset recorded.
        Chromosome names resolve by ``chrom_aliases`` (a stage's own rule), else the dataset's."""
        from ..genome.sequence import Genome

        recorded = self.dataset_record.key["inputs"]["genome"]
        path = verify_fingerprint(recorded, "the genome of the dataset",
                                  f"rebuild the dataset ('enformer-transfer dataset --out {self.path} --force')")
        return Genome(path, chrom_aliases or self.dataset_config.chrom_aliases)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise InputError(f"{self.path}: no split {split!r} (has {', '.join(self.splits)})")

    # --- embeddings ------------------------------------------------------------------------

    @cached_property
    def embeddings_record(self) -> StageRecord:
        return self._record(self.layout.embeddings.path,
                            f"run 'enformer-transfer embed {self.path} --backbone DIR' first")

    @cached_property
    def embed_config(self) -> EmbedConfig:
        return EmbedConfig.model_validate(self.embeddings_record.config["embed"])

    @property
    def embedding_dim(self) -> int:
        return int(self.embeddings_record.stats["embedding_dim"])

    @property
    def embedded_splits(self) -> list[str]:
        return list(self.embed_config.splits)

    @property
    def embed_precision(self) -> str:
        """The precision the embeddings were computed in (fp32 or bf16)."""
        return self.embeddings_record.stats["precision"]

    @property
    def backbone_info(self) -> dict:
        """Source, kind, tf_gamma and architecture of the backbone that made the embeddings."""
        return self.embeddings_record.stats["backbone"]

    @property
    def backbone_kind(self) -> str:
        """The family of the backbone that made the embeddings (enformer for runs embedded before
        families had names)."""
        return self.backbone_info.get("kind", "enformer")

    def embeddings(self, split: str):
        """Array-like (windows, bins, dim), float16 by default, read from disk by window.

        For a train split stored with ``--train-bin-fraction``, ``bins`` < n_bins and
        ``embedding_bins(split)`` says which bins each window kept.
        """
        self._check_split(split)
        folder = self.layout.embeddings
        self.embeddings_record  # noqa: B018
        if not store.has_array(folder.embeddings_store, split):
            raise InputError(f"{self.path}: split {split!r} was not embedded (see embed --splits)")
        return self._stored(folder, folder.embeddings_store, split, self._rebuild_embeddings)

    def embedding_bins(self, split: str):
        """(windows, kept bins) int16 bin indices, or None when every bin is stored."""
        folder = self.layout.embeddings
        self.embeddings_record  # noqa: B018
        if not store.has_array(folder.embeddings_store, f"{split}.bins"):
            return None
        return self._stored(folder, folder.embeddings_store, f"{split}.bins", self._rebuild_embeddings)

    def backbone_outputs(self, split: str):
        """(windows, bins, backbone tracks) float16 predictions of the backbone's own head, or None."""
        folder = self.layout.embeddings
        self.embeddings_record  # noqa: B018
        if not store.has_array(folder.backbone_outputs_store, split):
            return None
        return self._stored(folder, folder.backbone_outputs_store, split, self._rebuild_embeddings)

    # --- heads -----------------------------------------------------------------------------

    def heads(self) -> list[str]:
        """Names of the trained heads."""
        return self._current(finished_names(self.layout.heads), self.head_record)

    def head_record(self, name: str) -> StageRecord:
        return self._record(self.layout.head(name).path, f"run 'enformer-transfer train {self.path} --head {name}'")

    # --- evaluations -----------------------------------------------------------------------

    def evaluations(self) -> list[str]:
        """Names of the evaluated heads."""
        return self._current(finished_names(self.layout.evaluations), self.evaluation)

    def evaluation(self, name: str) -> Evaluation:
        folder = self.layout.evaluation(name)
        if not finished(folder.path) and did_you_mean(name, self.evaluations()):
            raise InputError(f"{self.path} has no evaluation of head {name!r}{did_you_mean(name, self.evaluations())} "
                             f"(has: {', '.join(self.evaluations())})")
        record = self._record(folder.path, f"run 'enformer-transfer evaluate {self.path} --head {name}' first")
        return Evaluation(folder, record)

    def predictions(self, name: str, split: str):
        """Stored predictions of head ``name``: array-like (windows, bins, tracks) float16."""
        return self.evaluation(name).predictions(split)

    # --- analyses --------------------------------------------------------------------------

    def dars(self) -> list[str]:
        """Heads with a finished DAR analysis."""
        return self._current(finished_names(self.layout.dars), self.dar)

    def dar(self, name: str) -> DarResult:
        folder = self.layout.dar(name)
        record = self._record(folder.path, f"run 'enformer-transfer dar {self.path} --head {name} ...' first")
        return DarResult(folder, record)

    def variant_analyses(self) -> list[str]:
        """Heads with finished variant effects in RUN_DIR/variants."""
        return self._current(finished_names(self.layout.variants_dir), self.variants)

    def variants(self, name: str) -> VariantEffects:
        folder = self.layout.variants(name)
        record = self._record(folder.path, f"run 'enformer-transfer variants {self.path} --head {name} --vcf FILE' "
                                           "first")
        return VariantEffects(folder, record)

    # --- interpretation --------------------------------------------------------------------

    def contribution_names(self) -> list[str]:
        """Names of the finished contributions stages."""
        return self._current(finished_names(self.layout.contribution_sets), self.contributions)

    def contributions(self, name: str) -> Contributions:
        folder = self.layout.contributions(name)
        record = self._record(folder.path, f"run 'enformer-transfer contributions {self.path} --head HEAD "
                                           f"--regions BED --name {name}' first")
        return Contributions(self, folder, record)

    def motif_names(self) -> list[str]:
        """Names of the finished motifs stages."""
        return self._current(finished_names(self.layout.motif_sets), self.motifs)

    def motifs(self, name: str) -> Motifs:
        folder = self.layout.motifs(name)
        record = self._record(folder.path, f"run 'enformer-transfer motifs {self.path} --contributions NAME' first")
        return Motifs(folder, record)

    def called_dar_names(self) -> list[str]:
        """Names of the finished call-dars stages."""
        return self._current(finished_names(self.layout.called_dar_sets), self.called_dars)

    def called_dars(self, name: str) -> CalledDars:
        folder = self.layout.called_dars(name)
        record = self._record(folder.path, f"run 'enformer-transfer call-dars {self.path} --label-column COLUMN "
                              "--tracks-where QUERY' first")
        return CalledDars(folder, record)


class Evaluation:
    """A finished evaluation: tables, summary and stored predictions of one head."""

    def __init__(self, folder: EvaluationFolder, record: StageRecord):
        self.folder = folder
        self.record = record

    @property
    def head(self) -> str:
        return self.folder.path.name

    @cached_property
    def summary(self) -> dict:
        return json.loads(self.folder.summary.read_text())

    @property
    def splits(self) -> list[str]:
        return list(self.summary["splits"])

    @cached_property
    def per_track(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.per_track)

    @cached_property
    def per_level(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.per_level)

    @cached_property
    def bin_position(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.bin_position)

    @property
    def has_genes(self) -> bool:
        """Whether it was run with --genes (per-gene expression)."""
        return "genes" in self.summary

    @cached_property
    def per_track_genes(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.per_track_genes)

    @cached_property
    def per_gene(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.per_gene)

    @cached_property
    def genes(self) -> pd.DataFrame:
        """Gene x track observed / predicted expression (genes.parquet)."""
        import polars as pl

        table = pl.read_parquet(self.folder.genes)
        return pd.DataFrame({c: table[c].to_numpy() for c in table.columns})

    @property
    def figures(self) -> list[dict]:
        """The evaluation's figures in reading order: name, caption, kind, path."""
        return read_figure_index(self.folder.figures)

    def correlations(self, split: str) -> dict[str, np.ndarray]:
        return dict(np.load(self.folder.correlations(split)))

    def predictions(self, split: str):
        path = self.folder.predictions_store
        if not store.has_array(path, split):
            raise InputError(f"{self.folder.path}: head {self.head!r} was not evaluated on split {split!r}")
        return stored_array(self.folder, path, split,
                            f"redo it with 'enformer-transfer evaluate RUN_DIR --head {self.head} --force'")


class DarResult:
    """A finished DAR analysis: summary, per-region table, figures."""

    def __init__(self, folder: DarFolder, record: StageRecord):
        self.folder = folder
        self.record = record

    @cached_property
    def summary(self) -> dict:
        return json.loads(self.folder.summary.read_text())

    @cached_property
    def regions(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.regions)

    @property
    def figures(self) -> list[dict]:
        return read_figure_index(self.folder.figures)


class VariantEffects:
    """Finished variant effects (a run's RUN_DIR/variants/NAME, or any ``--out`` folder): the
    table of scores per variant and track, per-level summaries, figures."""

    def __init__(self, folder: VariantsFolder, record: StageRecord | None = None):
        if not finished(folder.path):
            raise InputError(f"{folder.path}: no finished variants stage here")
        self.folder = folder
        self.record = record or StageRecord.read(folder.path)

    @cached_property
    def summary(self) -> dict:
        return json.loads(self.folder.summary.read_text())

    @cached_property
    def scores(self) -> pd.DataFrame:
        """One row per variant and track: the variant, the track's metadata, every score."""
        return _read_table(self.folder.scores, {"chrom": str, "ref": str, "alt": str})

    @cached_property
    def gene_scores(self) -> pd.DataFrame:
        """With ``--genes``: one row per variant, gene and track (strand pairs: one row, read on the
        gene's strand), with logSED and SUM over the gene's exon bins and their z-scores."""
        if not self.folder.gene_scores.is_file():
            raise InputError(f"{self.folder.path}: no gene-level scores here (rerun variants with --genes GTF)")
        return _read_table(self.folder.gene_scores, {"chrom": str, "ref": str, "alt": str, "gene_id": str,
                                                     "gene_name": str})

    @cached_property
    def top_variants(self) -> pd.DataFrame:
        return _read_table(self.folder.top_variants)

    @cached_property
    def most_affected(self) -> pd.DataFrame:
        return _read_table(self.folder.most_affected)

    @property
    def figures(self) -> list[dict]:
        return read_figure_index(self.folder.figures)


def _read_table(path: Path, dtypes: dict | None = None) -> pd.DataFrame:
    """A TSV of the variants stage: empty cells are missing numbers, variant IDs stay text."""
    table = pd.read_csv(path, sep="\t", dtype={"id": str, **(dtypes or {})}, keep_default_na=False, na_values=[""])
    return table.assign(id=table["id"].fillna("")) if "id" in table else table


def read_checksums(folder: StageFolder) -> dict[str, list[str]]:
    """The chunk checksums a stage recorded ({'store.zarr/array': [crc per chunk]}); empty when
    the stage has no store."""
    path = folder.checksums
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"{path}: damaged (not JSON); rebuild the stage with --force") from None


def stored_array(folder: StageFolder, store_path: Path, key: str, fix: str) -> store.VerifiedArray:
    """An array of a stage's store behind the chunk checksums the stage recorded as it wrote them.
    There is no reading without them: a store without its checksum record (deleted, or never
    written) would read missing chunks as zeros."""
    checksums = read_checksums(folder).get(f"{store_path.name}/{key}")
    if checksums is None:
        raise IntegrityError(f"{store_path}/{key}: no chunk checksums recorded for it in {folder.checksums} "
                             f"(deleted or damaged); {fix}")
    return store.StoredArray(store_path, key, tuple(checksums), f"{store_path}/{key}", fix).open()


class _Figures:
    folder: StageFolder

    @property
    def figures(self) -> list[dict]:
        """The stage's figures in reading order: name, caption, kind, path."""
        return read_figure_index(self.folder.figures)


class Contributions(_Figures):
    """A finished contributions stage: regions and attributed scalars as tables, the stored
    contributions (regions, scalars, window, 4) as checked arrays read by region chunk."""

    def __init__(self, run: RunDirectory, folder: ContributionsFolder, record: StageRecord):
        self.run, self.folder, self.record = run, folder, record

    @property
    def name(self) -> str:
        return self.folder.path.name

    @cached_property
    def summary(self) -> dict:
        return json.loads(self.folder.summary.read_text())

    @cached_property
    def regions(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.regions, sep="\t", keep_default_na=False)

    @cached_property
    def targets(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.targets, sep="\t", keep_default_na=False)

    def array(self, key: str):
        """'hypothetical', 'actual' (regions, scalars, width, 4), 'onehot' (regions, width, 4),
        'scalars' (regions, scalars); ism: 'ism'; deepliftshap: 'reference_scalars', 'summation_error'."""
        if not store.has_array(self.folder.store, key):
            raise InputError(f"{self.folder.path}: no array {key!r} (method {self.summary['method']})")
        return self.run._stored(self.folder, self.folder.store, key,
                                f"redo it with 'enformer-transfer contributions RUN_DIR --name {self.name} --force'")


class Motifs(_Figures):
    """A finished motifs stage: patterns (per attributed scalar), their matches, importance."""

    def __init__(self, folder: MotifsFolder, record: StageRecord):
        self.folder, self.record = folder, record

    @cached_property
    def summary(self) -> dict:
        return json.loads(self.folder.summary.read_text())

    @cached_property
    def patterns(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.patterns, keep_default_na=False)

    @cached_property
    def matches(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.matches, keep_default_na=False)


class CalledDars(_Figures):
    """A finished call-dars stage: the DAR table (``dar --regions`` and ``contributions --regions``
    accept it) and its summary."""

    def __init__(self, folder: CalledDarsFolder, record: StageRecord):
        self.folder, self.record = folder, record

    @cached_property
    def summary(self) -> dict:
        return json.loads(self.folder.summary.read_text())

    @cached_property
    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.folder.table)
