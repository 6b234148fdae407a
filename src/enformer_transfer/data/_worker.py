"""Dataset worker processes: read a chunk of windows from the BigWigs and bin them.

Kept lean (NumPy, pybigtools) so spawned workers start fast.
"""

from __future__ import annotations

import numpy as np

from ..devices import exit_with_parent
from .bigwig import CoverageReader
from .transform import UNCOVERED, bin_window

_WORKER: dict = {}


def init_worker(payload: dict) -> None:
    exit_with_parent()
    _WORKER.clear()
    _WORKER.update(payload)
    _WORKER["reader"] = CoverageReader(payload["files"], payload["chrom_maps"])


def compute_chunk(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """rows: (chrom, row_start, row_end, crop, blacklist_slices) -> targets, the uncovered-bin
    mask (when it is stored) and the number of uncovered bins per track."""
    w = _WORKER
    n_bins, n_tracks = w["n_bins"], len(w["files"])
    targets = np.empty((len(rows), n_bins, n_tracks), dtype=np.float16)
    mask = np.empty((len(rows), n_bins, n_tracks), dtype=bool) if w["store_mask"] else None
    uncovered_bins = np.zeros(n_tracks, dtype=np.int64)
    buffer = None
    for i, (chrom, row_start, row_end, crop, slices) in enumerate(rows):
        if buffer is None or buffer.shape[1] != row_end - row_start:
            buffer = np.empty((n_tracks, row_end - row_start), dtype=np.float64)
        cov = w["reader"].read(chrom, row_start, row_end, out=buffer, fill=UNCOVERED)
        targets[i], uncovered = bin_window(
            cov, slices, crop, n_bins, w["bin_size"], w["params"], w["order"],
            w["baseline_percentile"], w["clip_floor_zero"], UNCOVERED,
        )
        uncovered_bins += uncovered.sum(axis=0)
        if mask is not None:
            mask[i] = uncovered
    return targets, mask, uncovered_bins
