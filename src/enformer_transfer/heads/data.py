"""Training data: windows of an embeddings store with their targets, read window by window.

A ``WindowSource`` pairs the embeddings of a split (windows, bins or kept bins, dim) with
the targets (windows, n_bins, tracks) of the chosen tracks, and the optional uncovered-bin
mask. Nothing is loaded whole: each item is one window (one store chunk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class WindowSource:
    """Array-likes indexed by window (zarr arrays, or NumPy arrays in tests)."""

    embeddings: object
    targets: object
    track_index: np.ndarray
    masks: object | None = None
    bins: object | None = None  # (windows, kept bins) when the store kept a subset of bins
    paths: dict = field(default_factory=dict)  # zarr locations, to reopen in worker processes

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        emb = np.asarray(self.embeddings[i])
        y = np.asarray(self.targets[i])[:, self.track_index]
        m = None if self.masks is None else np.asarray(self.masks[i])[:, self.track_index]
        if self.bins is not None:
            keep = np.asarray(self.bins[i]).astype(np.int64)
            y = y[keep]
            m = None if m is None else m[keep]
        return emb, y, m


def run_source(run, split: str, track_index: np.ndarray) -> WindowSource:
    from ..backbone.embed import EMBEDDINGS_STORE
    from ..data.build import MASKS_STORE, TARGETS_STORE

    masks = run.masks(split)
    bins = run.embedding_bins(split)
    paths = {
        "embeddings": (str(run.embeddings_dir / EMBEDDINGS_STORE), split),
        "targets": (str(run.dataset_dir / TARGETS_STORE), split),
        "masks": (str(run.dataset_dir / MASKS_STORE), split) if masks is not None else None,
        "bins": (str(run.embeddings_dir / EMBEDDINGS_STORE), f"{split}.bins") if bins is not None else None,
    }
    return WindowSource(run.embeddings(split), run.targets(split), np.asarray(track_index), masks, bins, paths)


class WindowDataset(torch.utils.data.Dataset):
    """torch view of a WindowSource; zarr arrays are reopened in each worker process."""

    def __init__(self, source: WindowSource):
        self.source = source
        self._opened = False

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.source.paths:  # send paths, not open stores, to worker processes
            import copy

            source = copy.copy(self.source)
            for name, where in source.paths.items():
                if where is not None:
                    setattr(source, name, None)
            state["source"] = source
            state["_opened"] = False
        return state

    def _reopen(self) -> None:
        if self._opened or not self.source.paths:
            return
        from ..data import store

        for name, where in self.source.paths.items():
            if where is not None:
                setattr(self.source, name, store.open_array(Path(where[0]), where[1]))
        self._opened = True

    def __getitem__(self, i: int):
        if self.source.embeddings is None:
            self._reopen()
        emb, y, m = self.source.window(i)
        item = {"x": torch.from_numpy(emb), "y": torch.from_numpy(y.astype(np.float32))}
        if m is not None:
            item["mask"] = torch.from_numpy(m)
        return item


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Window order depends only on (seed, epoch): resuming an epoch replays the same order.

    Under DDP each rank takes a strided share of the permutation (padded to equal length).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1):
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.world > 1:
            pad = (-len(order)) % self.world
            order = np.concatenate([order, order[:pad]])[self.rank :: self.world]
        return order

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self) -> int:
        return len(self._order())


def make_loader(source: WindowSource, batch_size: int, workers: int, seed: int, shuffle: bool,
                rank: int = 0, world: int = 1) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        WindowDataset(source),
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(source), seed, shuffle, rank, world),
        num_workers=workers,
        persistent_workers=workers > 0,
        multiprocessing_context="spawn" if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )
