"""Dataset worker processes: read a chunk of windows from the BigWigs and bin them.

Kept lean (NumPy, pybigtools) so spawned workers start fast.
"""

from __future__ import annotations

import numpy as np

from .bigwig import CoverageReader
from .transform import UNCOVERED, bin_window

_WORKER: dict = {}


def init_worker(payload: dict) -> None:
    _WORKER.clear()
    _WORKER.update(payload)
    _WORKER["reader"] = CoverageReader(payload["files"], payload["chrom_maps"])


def compute_chunk(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray | None]:
    """rows: (chrom, row_start, row_end, crop, blacklist_slices) -> targets, uncovered."""
    w = _WORKER
    n_bins, n_tracks = w["n_bins"], len(w["files"])
    targets = np.empty((len(rows), n_bins, n_tracks), dtype=np.float16)
    uncovered = np.empty((len(rows), n_bins, n_tracks), dtype=bool) if w["want_uncovered"] else None
    buffer = None
    for i, (chrom, row_start, row_end, crop, slices) in enumerate(rows):
        if buffer is None or buffer.shape[1] != row_end - row_start:
            buffer = np.empty((n_tracks, row_end - row_start), dtype=np.float64)
        cov = w["reader"].read(chrom, row_start, row_end, out=buffer, fill=UNCOVERED)
        targets[i], window_uncovered = bin_window(
            cov, slices, crop, n_bins, w["bin_size"], w["params"], w["order"],
            w["baseline_percentile"], w["clip_floor_zero"], UNCOVERED, w["want_uncovered"],
        )
        if uncovered is not None:
            uncovered[i] = window_uncovered
    return targets, uncovered
