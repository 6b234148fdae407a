"""Training windows from sequence: one-hot model inputs read from the genome, the dataset's
targets, with Enformer's augmentation (reverse complement, small shifts).

A reverse-complemented window flips its targets along the bins, and swaps the two strands of
stranded tracks (the targets table's ``strand_pair`` column, as in Basenji); a shifted window
moves its input by up to ``max_shift`` bp and keeps its targets (bins are 128 bp wide).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..devices import exit_with_this_process


class SequenceWindows(torch.utils.data.Dataset):
    """Window i of a split -> {'x': one-hot (seq_length, 4), 'y': targets (bins, tracks), 'mask'}.

    ``augment``: a seeded random reverse complement and shift per (epoch, window), so a resumed
    run replays the same inputs."""

    def __init__(self, genome_path: str, chrom_aliases: str, windows: pd.DataFrame, targets, masks,
                 track_index: np.ndarray, pad_value: float, augment: bool = False, max_shift: int = 3,
                 partners: np.ndarray | None = None, seed: int = 0):
        self.genome_path, self.chrom_aliases = str(genome_path), chrom_aliases
        self.chrom = windows["chrom"].tolist()
        self.start = windows["input_start"].to_numpy()
        self.end = windows["input_end"].to_numpy()
        self.targets, self.masks = targets, masks
        self.specs = {name: getattr(array, "spec", None) for name, array in (("targets", targets), ("masks", masks))}
        self.track_index = np.asarray(track_index)
        self.pad_value, self.augment, self.max_shift = pad_value, augment, max_shift
        self.partners = partners
        self.seed, self.epoch = seed, 0
        self._genome = None

    def __len__(self) -> int:
        return len(self.chrom)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_genome"] = None
        for name, spec in self.specs.items():  # worker processes reopen the stores, checked
            if spec is not None:
                state[name] = None
        return state

    def _open(self) -> None:
        from ..genome.sequence import Genome

        self._genome = Genome(self.genome_path, self.chrom_aliases)
        for name, spec in self.specs.items():
            if spec is not None and getattr(self, name) is None:
                setattr(self, name, spec.open())

    def choice(self, i: int) -> tuple[bool, int]:
        """(reverse complement?, shift in bp) of window i in the current epoch."""
        if not self.augment:
            return False, 0
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return bool(rng.integers(2)), int(rng.integers(-self.max_shift, self.max_shift + 1))

    def __getitem__(self, i: int) -> dict:
        if self._genome is None:
            self._open()
        reverse, shift = self.choice(i)
        x = self._genome.one_hot(self.chrom[i], int(self.start[i]) + shift, int(self.end[i]) + shift, self.pad_value)
        y = np.asarray(self.targets[i])[:, self.track_index].astype(np.float32)
        mask = None if self.masks is None else np.asarray(self.masks[i])[:, self.track_index]
        if reverse:
            x = x[::-1, ::-1]  # reverse, and A C G T -> T G C A
            y = y[::-1]
            mask = None if mask is None else mask[::-1]
            if self.partners is not None:
                y = y[:, self.partners]
                mask = None if mask is None else mask[:, self.partners]
        item = {"x": torch.from_numpy(np.ascontiguousarray(x)), "y": torch.from_numpy(np.ascontiguousarray(y))}
        if mask is not None:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(mask))
        return item


class EpochSampler(torch.utils.data.Sampler):
    """Seeded window order per epoch (read from the trainer when an epoch starts), a strided
    share per DDP rank; sets the dataset's epoch so its augmentation follows."""

    def __init__(self, dataset: SequenceWindows, shuffle: bool, seed: int, rank: int = 0, world: int = 1,
                 epoch_source=None):
        self.dataset, self.shuffle, self.seed, self.rank, self.world = dataset, shuffle, seed, rank, world
        self.epoch_source = epoch_source

    def _order(self, epoch: int) -> list[int]:
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        if self.world > 1:
            order = np.concatenate([order, order[: (-n) % self.world]])[self.rank :: self.world]
        return order.tolist()

    def __iter__(self):
        epoch = int(self.epoch_source()) if self.epoch_source is not None else 0
        self.dataset.epoch = epoch
        return iter(self._order(epoch))

    def __len__(self) -> int:
        return len(self._order(0))


def sequence_loader(dataset: SequenceWindows, batch_size: int, workers: int, shuffle: bool, seed: int,
                    rank: int = 0, world: int = 1, epoch_source=None) -> torch.utils.data.DataLoader:
    sampler = EpochSampler(dataset, shuffle, seed, rank, world, epoch_source)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        persistent_workers=False,  # the epoch (augmentation) reaches new workers each epoch
        multiprocessing_context="spawn" if workers > 0 else None, worker_init_fn=exit_with_this_process(),
        pin_memory=torch.cuda.is_available(),
    )
