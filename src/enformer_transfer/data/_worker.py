"""Dataset worker processes: read chunks of windows from the BigWigs and bin them.

Kept lean (NumPy, pybigtools) so spawned workers start fast.
"""

from __future__ import annotations

import numpy as np

from ..devices import exit_with_parent
from ..errors import InputError
from .bigwig import CoverageReader
from .transform import (
    SHORT_RUNS,
    UNCOVERED,
    BaseValues,
    ChunkSummary,
    bin_window,
    mean_run_length,
    negative_tracks,
    without_negatives,
)

_WORKER: dict = {}
# Most coverage bytes held at once: overlapping windows are read as one span (each base once)
# while tracks x span x 8 bytes stay under this.
SPAN_BYTES = 128 << 20


def init_worker(payload: dict) -> None:
    exit_with_parent()
    _WORKER.clear()
    _WORKER.update(payload)
    reader = CoverageReader(payload["files"], payload["chrom_maps"], payload.get("names"))
    _WORKER["coverage"] = RollingCoverage(reader, len(payload["files"]))
    _WORKER["base_values"] = BaseValues()


class RollingCoverage:
    """Coverage of the latest span read, kept so that the next span, where it overlaps it (the
    next windows along a chromosome), reads only its new bases. One buffer, reused from span to
    span: the kept bases move to its front (spans are views of its first columns)."""

    def __init__(self, reader: CoverageReader, n_tracks: int):
        self.reader = reader
        self.chrom, self.start, self.end = None, 0, 0
        self._buffer = np.empty((n_tracks, 0))

    def read(self, chrom: str, start: int, end: int) -> np.ndarray:
        """(tracks, end - start) float64 coverage, ``UNCOVERED`` where uncovered."""
        kept = min(self.end, end) - start if chrom == self.chrom and self.start <= start < self.end else 0
        shift = start - self.start
        if self._buffer.shape[1] < end - start:  # a longer span than any before: a larger buffer
            larger = np.empty((len(self._buffer), end - start))
            larger[:, :kept] = self._buffer[:, shift : shift + kept]
            self._buffer = larger
        elif kept and shift:
            for row in self._buffer:  # row by row: the overlapping move needs a row-sized temporary only
                row[:kept] = row[shift : shift + kept]
        out = self._buffer[:, : end - start]
        if kept < end - start:
            self.reader.read(chrom, start + kept, end, out=out[:, kept:], fill=UNCOVERED)
        self.chrom, self.start, self.end = chrom, start, end
        return out


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


def compute_chunks(chunks: list[list[tuple]]) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray, ChunkSummary,
                                                            np.ndarray]]:
    """Per chunk of rows (chrom, row_start, row_end, crop, blacklist_slices): the targets, the
    uncovered-bin mask (when it is stored), the number of uncovered bins per track, the
    chunk's ``ChunkSummary`` (so that the final pass need not read the chunk again) and the
    odd-track counts per track: (negative bases over the windows' rows, bins at the ceiling).

    Consecutive chunks come together so that overlapping windows across chunk boundaries
    share their reads and conversions."""
    rows = [row for chunk in chunks for row in chunk]
    targets, mask, uncovered_bins, negative_bases = _compute_rows(rows)
    # pybigtools keeps every block it read in memory while a file is open (GBs over a chromosome,
    # and time spent faulting in pages); the rolling span already holds what the next batch needs
    _WORKER["coverage"].reader.close()
    out, first = [], 0
    for chunk in chunks:
        stop = first + len(chunk)
        chunk_targets = targets[first:stop]
        at_ceiling = np.count_nonzero(np.abs(chunk_targets.astype(np.float32)) >= _WORKER["ceilings"], axis=(0, 1))
        odd = np.stack([negative_bases[first:stop].sum(axis=0), at_ceiling])
        out.append((chunk_targets, None if mask is None else mask[first:stop], uncovered_bins[first:stop].sum(axis=0),
                    ChunkSummary.of(chunk_targets, _WORKER["top_k"]), odd))
        first = stop
    return out


def _compute_rows(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Targets, uncovered-bin mask (or None), uncovered bins and negative bases per track of every row."""
    w = _WORKER
    n_bins, n_tracks = w["n_bins"], len(w["files"])
    targets = np.empty((len(rows), n_bins, n_tracks), dtype=np.float16)
    mask = np.empty((len(rows), n_bins, n_tracks), dtype=bool) if w["store_mask"] else None
    uncovered_bins = np.zeros((len(rows), n_tracks), dtype=np.int64)
    negative_bases = np.zeros((len(rows), n_tracks), dtype=np.int64)
    settings = (n_bins, w["bin_size"], w["params"], w["order"], w["baseline_percentile"], w["clip_floor_zero"])
    for chrom, start, end, members in spans(rows, n_tracks):
        raw = w["coverage"].read(chrom, start, end)
        negative = negative_tracks(raw)
        if len(negative):  # an odd track: counted per window on the values as read, then clipped or mirrored
            for i in members:
                _, row_start, row_end, _, _ = rows[i]
                part = raw[negative, row_start - start : row_end - start]
                negative_bases[i, negative] = np.count_nonzero(part < 0, axis=1)
            if w["negative"] == "error":
                _refuse_negative(raw, negative[0], chrom, start)
        cov = without_negatives(raw, negative, w["negative"])  # the rolling buffer keeps the values as read
        # bp-resolution coverage (runs of a few bases): convert each base once for all windows
        per_base = w["base_values"].load(cov) if mean_run_length(cov) < SHORT_RUNS else None
        for i in members:
            _, row_start, row_end, crop, slices = rows[i]
            offset, length = row_start - start, row_end - row_start
            if per_base is not None:
                targets[i], uncovered = per_base.bin_window(offset, length, slices, crop, *settings)
            else:
                targets[i], uncovered = bin_window(cov[:, offset : offset + length], slices, crop, *settings, UNCOVERED)
            uncovered_bins[i] = uncovered.sum(axis=0)
            if mask is not None:
                mask[i] = uncovered
    return targets, mask, uncovered_bins, negative_bases


def _refuse_negative(coverage: np.ndarray, t: int, chrom: str, start: int) -> None:
    """--negative error: name the track and the first negative base (the files' summaries are
    checked before the build; this catches files without one)."""
    first = int(np.argmax(coverage[t] < 0))
    names = _WORKER.get("names")
    what = f"track {t}" + (f" {names[t]!r}" if names else "")
    raise InputError(f"BigWig {_WORKER['files'][t]} ({what}) has negative values, e.g. {coverage[t, first]:g} at "
                     f"{chrom}:{start + first}-{start + first + 1}; --negative clip clips them to 0, --negative abs "
                     "reads them as positive (a minus-strand track stored negative)")
