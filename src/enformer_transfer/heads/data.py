"""Training data: windows of an embeddings store with their targets, read window by window.

A ``WindowSource`` pairs the embeddings of a split (windows, bins or kept bins, dim) with
the targets (windows, n_bins, tracks) of the chosen tracks, and the optional uncovered-bin
mask. Nothing is loaded whole: each item is one window (one store chunk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..devices import exit_with_this_process
from ..rundir import store


@dataclass
class WindowSource:
    """Array-likes indexed by window (a run's checked stores, or NumPy / zarr arrays in tests)."""

    embeddings: object
    targets: object
    track_index: np.ndarray
    masks: object | None = None
    bins: object | None = None  # (windows, kept bins) when the store kept a subset of bins

    def specs(self) -> dict[str, store.StoredArray]:
        """Where the stored arrays are, to reopen them (checked) in worker processes."""
        return {name: value.spec for name in ("embeddings", "targets", "masks", "bins")
                if (value := getattr(self, name)) is not None and getattr(value, "spec", None) is not None}

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def targets_of(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Targets (and masks) of several windows, reading each stored chunk once."""
        order = np.argsort(indices, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        chosen = indices[order]

        def read(array):
            if hasattr(array, "get_orthogonal_selection"):
                values = np.asarray(array.get_orthogonal_selection((chosen, slice(None), self.track_index)))
            else:
                values = np.asarray(array[chosen])[..., self.track_index]
            return values[back]

        y = read(self.targets)
        m = None if self.masks is None else read(self.masks)
        if self.bins is not None:
            keep = np.stack([np.asarray(self.bins[int(i)]) for i in indices]).astype(np.int64)
            y = np.take_along_axis(y, keep[..., None], axis=1)
            m = None if m is None else np.take_along_axis(m, keep[..., None], axis=1)
        return y, m

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One window: embeddings (bins, dim), targets (bins, tracks), mask or None."""
        emb = np.asarray(self.embeddings[i])
        y, m = self.targets_of(np.array([i]))
        return emb, y[0], None if m is None else m[0]


def run_source(run, split: str, track_index: np.ndarray) -> WindowSource:
    """The embeddings, targets (of the chosen tracks) and masks of a split of a run."""
    return WindowSource(run.embeddings(split), run.targets(split), np.asarray(track_index), run.masks(split),
                        run.embedding_bins(split))


class WindowDataset(torch.utils.data.Dataset):
    """torch view of a WindowSource, indexed by a list of windows (a whole batch per call, so
    a batch is filled in place, without per-window collation); zarr arrays are reopened in
    each worker process."""

    def __init__(self, source: WindowSource):
        self.source = source
        self._opened = False

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self):
        state = dict(self.__dict__)
        specs = self.source.specs()
        if specs:  # send where the stores are, not open stores, to worker processes
            import copy

            source = copy.copy(self.source)
            for name in specs:
                setattr(source, name, None)
            state["source"], state["_specs"], state["_raw"] = source, specs, None
            state["_opened"] = False
        return state

    def _reopen(self) -> None:
        if self._opened:
            return
        for name, spec in getattr(self, "_specs", {}).items():
            setattr(self.source, name, spec.open())
        self._opened = True

    def __getitem__(self, indices):
        if self.source.embeddings is None:
            self._reopen()
        if isinstance(indices, int):
            indices = [indices]
        indices = np.asarray(indices, dtype=np.int64)
        source = self.source
        raw = getattr(self, "_raw", None)
        if raw is None:
            raw = self._raw = store.RawWindowChunks.of(source.embeddings) or False
        x = _batch_tensor((len(indices),) + tuple(source.embeddings.shape[1:]), _torch_dtype(source.embeddings.dtype))
        for j, i in enumerate(indices):
            if raw:
                raw.read_into(int(i), x[j].numpy())
            else:
                x[j] = torch.from_numpy(np.asarray(source.embeddings[int(i)]))
        y, mask = source.targets_of(indices)
        batch = {"x": x, "y": torch.from_numpy(y.astype(np.float32))}
        if mask is not None:
            batch["mask"] = torch.from_numpy(mask)
        return batch


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty batch tensor; in a DataLoader worker it is allocated in shared memory, as
    torch's default collate does, so handing it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = int(np.prod(shape))
    proto = torch.empty(0, dtype=dtype)
    storage = proto._typed_storage()._new_shared(numel, device=proto.device)
    return proto.new(storage).resize_(shape)


def _torch_dtype(dtype) -> torch.dtype:
    return {np.dtype("float16"): torch.float16, np.dtype("float32"): torch.float32}[np.dtype(dtype)]


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Batches of windows whose order depends only on (seed, epoch): resuming an epoch
    replays the same order. Under DDP each rank takes a strided share of the permutation
    (padded to equal length)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1,
                 batch_size: int = 1):
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        self.batch_size = batch_size
        self.epoch = 0
        # a trainer's epoch counter, read when an epoch's iterator is made: Lightning makes the
        # first iterator of a resumed run before it calls set_epoch
        self.epoch_source = None

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
        if self.epoch_source is not None:
            self.epoch = int(self.epoch_source())
        order = self._order().tolist()
        return iter([order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)])

    def __len__(self) -> int:
        return -(-len(self._order()) // self.batch_size)


def make_loader(source: WindowSource, batch_size: int, workers: int, seed: int, shuffle: bool,
                rank: int = 0, world: int = 1, epoch_source=None) -> torch.utils.data.DataLoader:
    sampler = EpochShuffleSampler(len(source), seed, shuffle, rank, world, batch_size)
    sampler.epoch_source = epoch_source
    return torch.utils.data.DataLoader(
        WindowDataset(source),
        batch_size=None,  # the dataset fills whole batches
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        multiprocessing_context="spawn" if workers > 0 else None,
        worker_init_fn=exit_with_this_process(),
        pin_memory=torch.cuda.is_available(),
    )
