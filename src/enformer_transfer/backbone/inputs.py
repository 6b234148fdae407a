"""Model inputs: one-hot windows of the genome, for every stage that runs the backbone.

``WindowSequences`` is a torch Dataset for DataLoader workers (each opens the genome itself);
``window_batch`` builds a batch directly. Both give the model input of a window's target
interval: ``seq_length`` bases centred on it, padded past chromosome ends as the study did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class WindowSequences:
    """torch Dataset: item i -> (store index, one-hot (seq_length, 4)) of a windows table with
    chrom, input_start, input_end and a ``store_index`` column."""

    def __init__(self, genome_path: str, chrom_aliases: str, windows: pd.DataFrame, pad_value: float):
        self.genome_path = str(genome_path)
        self.chrom_aliases = chrom_aliases
        self.chrom = windows["chrom"].tolist()
        self.start = windows["input_start"].to_numpy()
        self.end = windows["input_end"].to_numpy()
        self.index = windows["store_index"].to_numpy()
        self.pad_value = pad_value
        self._genome = None

    def __len__(self) -> int:
        return len(self.chrom)

    def __getitem__(self, i: int):
        import torch

        if self._genome is None:  # opened in each worker process
            from ..genome.sequence import Genome

            self._genome = Genome(self.genome_path, self.chrom_aliases)
        x = self._genome.one_hot(self.chrom[i], int(self.start[i]), int(self.end[i]), self.pad_value)
        return int(self.index[i]), torch.from_numpy(x)


def window_batch(genome, chrom: str, target_starts, geometry, pad_value: float = 0.25) -> np.ndarray:
    """(len(target_starts), seq_length, 4) model inputs of target intervals on one chromosome."""
    return np.stack([genome.one_hot(chrom, int(s) - geometry.context, int(s) - geometry.context + geometry.seq_length,
                                    pad_value) for s in target_starts])
