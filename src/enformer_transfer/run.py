"""``Run``: read access to a run directory's artifacts, stage by stage."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from .config import RunConfig, load_config
from .data import store
from .data.build import MASKS_STORE, TARGETS_STORE
from .data.targets_table import read_targets_table
from .errors import InputError
from .provenance import STAGE_RECORD, read_json


class Run:
    """A run directory: ``Run(path).tracks``, ``.windows(split)``, ``.targets(split)``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"{self.path}: run directory not found")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def _stage(self, name: str, hint: str) -> Path:
        folder = self.path / name
        if not (folder / STAGE_RECORD).is_file():
            raise InputError(f"{self.path} has no finished {name} stage yet; {hint}")
        return folder

    @property
    def dataset_dir(self) -> Path:
        return self._stage("dataset", "run 'enformer-transfer dataset ... --out RUN_DIR' first")

    def stage_record(self, name: str) -> dict:
        return read_json(self._stage(name, f"run the {name} stage first") / STAGE_RECORD)

    @property
    def config(self) -> RunConfig:
        return load_config(self.path / "config.toml")

    @cached_property
    def tracks(self) -> pd.DataFrame:
        """The targets table of the dataset (one row per track, with metadata columns)."""
        return read_targets_table(self.dataset_dir / "tracks.tsv", check_files=False)

    @cached_property
    def _windows(self) -> pd.DataFrame:
        return pd.read_csv(self.dataset_dir / "windows.tsv", sep="\t")

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(self._windows["split"]))

    def windows(self, split: str) -> pd.DataFrame:
        """Target intervals (chrom, start, end, ...) of a split, in store order."""
        self._check_split(split)
        df = self._windows[self._windows["split"] == split].reset_index(drop=True)
        return df[["chrom", "start", "end"] + [c for c in df.columns if c not in ("chrom", "start", "end")]]

    def targets(self, split: str):
        """Array-like (windows, bins, tracks) float16, read from disk by window."""
        self._check_split(split)
        return store.open_array(self.dataset_dir / TARGETS_STORE, split)

    def masks(self, split: str):
        """(windows, bins, tracks) bool, True where a bin has uncovered bases; None if not stored."""
        self._check_split(split)
        if not store.has_array(self.dataset_dir / MASKS_STORE, split):
            return None
        return store.open_array(self.dataset_dir / MASKS_STORE, split)

    @property
    def embeddings_dir(self) -> Path:
        return self._stage("embeddings", "run 'enformer-transfer embed RUN_DIR --backbone DIR' first")

    def embeddings(self, split: str):
        """Array-like (windows, bins, dim), float16 by default, read from disk by window.

        For a train split stored with ``--train-bin-fraction``, ``bins`` < n_bins and
        ``embedding_bins(split)`` says which bins each window kept.
        """
        from .backbone.embed import EMBEDDINGS_STORE

        self._check_split(split)
        folder = self.embeddings_dir
        if not store.has_array(folder / EMBEDDINGS_STORE, split):
            raise InputError(f"{self.path}: split {split!r} was not embedded (see embed --splits)")
        return store.open_array(folder / EMBEDDINGS_STORE, split)

    def embedding_bins(self, split: str):
        """(windows, kept bins) int16 bin indices, or None when every bin is stored."""
        from .backbone.embed import EMBEDDINGS_STORE

        folder = self.embeddings_dir
        if not store.has_array(folder / EMBEDDINGS_STORE, f"{split}.bins"):
            return None
        return store.open_array(folder / EMBEDDINGS_STORE, f"{split}.bins")

    def backbone_predictions(self, split: str):
        """(windows, bins, 5313) float16 predictions of the backbone's human head, or None."""
        from .backbone.embed import HEADS_STORE

        folder = self.embeddings_dir
        if not store.has_array(folder / HEADS_STORE, split):
            return None
        return store.open_array(folder / HEADS_STORE, split)

    def heads(self) -> list[str]:
        """Names of the trained heads."""
        folder = self.path / "heads"
        return sorted(p.name for p in folder.iterdir() if (p / STAGE_RECORD).is_file()) if folder.is_dir() else []

    def head(self, name: str):
        """A trained head (torch module + metadata, ``.predict(embeddings)``), checked against this run."""
        from .heads.checkpoint import load_head

        folder = self.path / "heads" / name
        if not (folder / STAGE_RECORD).is_file():
            raise InputError(
                f"{self.path} has no trained head {name!r} (has: {', '.join(self.heads()) or 'none'}); "
                f"run 'enformer-transfer train {self.path} --head {name}'"
            )
        head = load_head(folder)
        head.check_compatible(self)
        return head

    def predictions(self, name: str, split: str):
        """Stored predictions of head ``name``: array-like (windows, bins, tracks) float16."""
        from .evaluation.evaluate import PREDICTIONS_STORE

        folder = self._stage(f"evaluation/{name}", f"run 'enformer-transfer evaluate {self.path} --head {name}' first")
        if not store.has_array(folder / PREDICTIONS_STORE, split):
            raise InputError(f"{self.path}: head {name!r} was not evaluated on split {split!r}")
        return store.open_array(folder / PREDICTIONS_STORE, split)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise InputError(f"{self.path}: no split {split!r} (has {', '.join(self.splits)})")
