"""Dataset worker processes: read a chunk of windows from the BigWigs and bin them.

Kept lean (NumPy, pybigtools) so spawned workers start fast.
"""

from __future__ import annotations

import numpy as np

from .bigwig import CoverageReader
from .transform import SHORT_RUNS, BaseValues, bin_window, chunk_summary, mean_run_length

_WORKER: dict = {}
# Most coverage bytes read at once: overlapping windows of a chunk are read as one span (each
# base once) while tracks x span x 8 bytes stay under this.
SPAN_BYTES = 128 << 20


def init_worker(payload: dict) -> None:
    _WORKER.clear()
    _WORKER.update(payload)
    _WORKER["reader"] = CoverageReader(payload["files"], payload["chrom_maps"])
    _WORKER["coverage"] = np.empty(0)  # memory kept from span to span
    _WORKER["base_values"] = BaseValues()


def _read_span(chrom: str, start: int, end: int) -> np.ndarray:
    """(tracks, end - start) coverage, NaN where uncovered, in the worker's kept memory."""
    w = _WORKER
    shape = (len(w["files"]), end - start)
    if w["coverage"].size < shape[0] * shape[1]:
        w["coverage"] = np.empty(shape[0] * shape[1])
    out = w["coverage"][: shape[0] * shape[1]].reshape(shape)
    return w["reader"].read(chrom, start, end, out=out, fill=np.nan)


def spans(rows: list[tuple], n_tracks: int) -> list[tuple[str, int, int, list[int]]]:
    """Consecutive rows on one chromosome that overlap, as (chrom, start, end, row numbers):
    read once for all of them, as long as the span stays under ``SPAN_BYTES``."""
    out: list[tuple[str, int, int, list[int]]] = []
    for i, (chrom, start, end, _, _) in enumerate(rows):
        if out:
            c, s, e, members = out[-1]
            grown = max(e, end) - s
            if c == chrom and s <= start < e and grown * n_tracks * 8 <= SPAN_BYTES:
                out[-1] = (c, s, max(e, end), members + [i])
                continue
        out.append((chrom, start, end, [i]))
    return out


def compute_chunks(chunks: list[list[tuple]]) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray, dict]]:
    """Per chunk of rows (chrom, row_start, row_end, crop, blacklist_slices): the targets, the
    uncovered-bin mask (when it is stored), the number of uncovered bins per track and the
    chunk's ``chunk_summary`` (so that the final pass need not read the chunk again).

    Consecutive chunks come together so that overlapping windows across chunk boundaries
    share their reads (each base read and converted once per span)."""
    rows = [row for chunk in chunks for row in chunk]
    result = _compute_rows(rows)
    out, first = [], 0
    for chunk in chunks:
        out.append(result(first, first + len(chunk)))
        first += len(chunk)
    return out


def _compute_rows(rows: list[tuple]):
    """Bin every row; return a function of (first, stop) giving those rows' chunk result."""
    w = _WORKER
    n_bins, n_tracks = w["n_bins"], len(w["files"])
    targets = np.empty((len(rows), n_bins, n_tracks), dtype=np.float16)
    mask = np.empty((len(rows), n_bins, n_tracks), dtype=bool) if w["store_mask"] else None
    uncovered_bins = np.zeros((len(rows), n_tracks), dtype=np.int64)
    settings = (n_bins, w["bin_size"], w["params"], w["order"], w["baseline_percentile"], w["clip_floor_zero"])
    for chrom, start, end, members in spans(rows, n_tracks):
        cov = _read_span(chrom, start, end)
        # bp-resolution coverage (runs of a few bases): convert each base once for all windows
        per_base = w["base_values"].load(cov) if mean_run_length(cov) < SHORT_RUNS else None
        for i in members:
            _, row_start, row_end, crop, slices = rows[i]
            offset, length = row_start - start, row_end - row_start
            if per_base is not None:
                targets[i], uncovered = per_base.bin_window(offset, length, slices, crop, *settings)
            else:
                targets[i], uncovered = bin_window(cov[:, offset : offset + length], slices, crop, *settings)
            uncovered_bins[i] = uncovered.sum(axis=0)
            if mask is not None:
                mask[i] = uncovered
    def result(first: int, stop: int):
        return (targets[first:stop], None if mask is None else mask[first:stop],
                uncovered_bins[first:stop].sum(axis=0), chunk_summary(targets[first:stop], w["top_k"]))

    return result
