"""BigWig coverage -> binned targets with Basenji semantics (reference.md section 2), vectorised.

One window, all tracks at once. Equals, bit for bit in float16, the per-window per-track
NumPy rules of ``_reference.py`` (tested): per-base float16 values, percentile baseline
(any NaN -> 0), blacklist clipping to [-b, b], NaN -> b, bin statistic in float32, soft
clip, hard clip and scale in the ``old`` or ``new`` order, float16 cast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .store import FLOAT16_MAX

if TYPE_CHECKING:
    import pandas as pd



@dataclass(frozen=True)
class TrackParams:
    """Per-track transform parameters as arrays (NaN = not set)."""

    sum_stat: tuple[str, ...]
    clip: np.ndarray
    clip_soft: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_table(cls, tracks: pd.DataFrame) -> TrackParams:
        def arr(col):
            return np.array([np.nan if v is None else float(v) for v in tracks[col]], dtype=np.float64)

        return cls(tuple(tracks["sum_stat"]), arr("clip"), arr("clip_soft"), arr("scale"))

    def __len__(self) -> int:
        return len(self.sum_stat)

    def groups(self) -> dict[str, np.ndarray]:
        stats = np.array(self.sum_stat)
        return {s: np.flatnonzero(stats == s) for s in dict.fromkeys(self.sum_stat)}


# --- percentiles exactly as np.percentile computes them on float16 data -----------------

def percentile_position(n: int, q: float) -> tuple[int, int, float]:
    """Order statistics (0-based) and weight np.percentile(..., q) interpolates for n values."""
    v = (n - 1) * np.true_divide(q, 100)
    if v >= n - 1:
        return n - 1, n - 1, float(v - (-1))  # numpy maps both indexes to the last value
    lo = int(np.floor(v))
    return lo, lo + 1, float(v - np.floor(v))


def lerp_float16(lo: np.ndarray, hi: np.ndarray, gamma: float) -> np.ndarray:
    """numpy's percentile interpolation in float16 arithmetic (weak Python-float weight)."""
    lo = np.asarray(lo, dtype=np.float16)
    hi = np.asarray(hi, dtype=np.float16)
    diff = hi - lo
    if gamma >= 0.5:
        return hi - diff * (1 - gamma)
    return lo + diff * gamma


def _order_keys(x16: np.ndarray) -> np.ndarray:
    """uint16 keys whose integer order is the float16 value order."""
    bits = x16.view(np.uint16)
    return np.where(bits & 0x8000, np.invert(bits), bits | 0x8000)


def _key_values(keys: np.ndarray) -> np.ndarray:
    keys = keys.astype(np.uint16)
    bits = np.where(keys & 0x8000, keys & 0x7FFF, np.invert(keys))
    return bits.astype(np.uint16).view(np.float16)


# --- one window ----------------------------------------------------------------------------

# Marks uncovered bases in coverage arrays: BigWig values are float32, so a float64 of 1e300
# never occurs in data (NaN would make every uncovered base a run of its own).
UNCOVERED = 1e300


def _run_length(coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values per row: start offsets into the flat array, lengths, rows."""
    rows, length = coverage.shape
    change = np.empty(coverage.shape, dtype=bool)
    change[:, 0] = True
    np.not_equal(coverage[:, 1:], coverage[:, :-1], out=change[:, 1:])
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=rows * length)
    return starts, lengths, starts // length


def _kth_keys(keys: np.ndarray, weights: np.ndarray, rows: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """Per row, the order key of the k-th smallest value (0-based), counting each key
    ``weights`` times: a 256-bucket histogram of the high byte, then of the low byte inside
    the bucket that holds the k-th value (two small histograms instead of one of 65,536)."""
    high = keys >> 8
    counts = np.bincount(rows * 256 + high, weights=weights, minlength=n_rows * 256).reshape(n_rows, 256)
    csum = np.cumsum(counts, axis=1)
    bucket = np.argmax(csum > k, axis=1)
    before = np.where(bucket > 0, csum[np.arange(n_rows), np.maximum(bucket - 1, 0)], 0)
    inside = high == bucket[rows]
    counts = np.bincount(rows[inside] * 256 + (keys[inside] & 255), weights=weights[inside],
                         minlength=n_rows * 256).reshape(n_rows, 256)
    low = np.argmax(np.cumsum(counts, axis=1) + before[:, None] > k, axis=1)
    return bucket * 256 + low


def _run_percentiles(keys: np.ndarray, lengths: np.ndarray, run_rows: np.ndarray, n_rows: int,
                     n: int, q: float) -> np.ndarray:
    """np.percentile of each row, from its runs' float16 order keys weighted by run length."""
    lo_i, hi_i, gamma = percentile_position(n, q)
    lo_key = _kth_keys(keys, lengths, run_rows, n_rows, lo_i)
    hi_key = lo_key if hi_i == lo_i else _kth_keys(keys, lengths, run_rows, n_rows, hi_i)
    return lerp_float16(_key_values(lo_key), _key_values(hi_key), gamma)


def bin_window(
    coverage: np.ndarray,
    blacklist_slices: list[tuple[int, int]],
    crop: int,
    n_bins: int,
    bin_size: int,
    params: TrackParams,
    order: str = "old",
    baseline_percentile: float = 50.0,
    clip_floor_zero: bool = False,
    uncovered_value: float = np.nan,
) -> tuple[np.ndarray, np.ndarray]:
    """Binned targets of one window for all tracks.

    coverage: (tracks, row_length) float64 per-base values of the coverage window;
        uncovered bases are NaN or ``uncovered_value``.
    blacklist_slices: [start, end) offsets into the row to clip to the baseline.
    Returns targets (n_bins, tracks) float16 and a (n_bins, tracks) bool array marking bins
    with any uncovered base (filled with the baseline).

    Coverage is piecewise constant (BigWig records), so the work is done on runs of equal
    values: float16 rounding and the baseline percentile per run (weighted by run length),
    then the runs are expanded back to bases for the float32 bin statistic, whose summation
    order must match NumPy's to give the same bits.
    """
    coverage = np.asarray(coverage, dtype=np.float64)
    if np.isnan(uncovered_value):
        uncovered_value = UNCOVERED
        coverage = np.where(np.isnan(coverage), UNCOVERED, coverage)
    n_tracks, row_length = coverage.shape
    starts, lengths, run_rows = _run_length(coverage)
    raw = coverage.ravel()[starts]
    uncovered_runs = (raw == uncovered_value) | np.isnan(raw)
    values16 = np.where(uncovered_runs, 0, raw).astype(np.float16)
    has_uncovered = np.bincount(run_rows[uncovered_runs], minlength=n_tracks) > 0
    baseline = np.zeros(n_tracks, dtype=np.float16)  # any uncovered base: baseline 0 (NaN -> 0)
    full = np.flatnonzero(~has_uncovered)
    if len(full):
        keep = ~has_uncovered[run_rows]
        remap = np.cumsum(~has_uncovered) - 1
        baseline[full] = _run_percentiles(
            _order_keys(values16[keep]).astype(np.int64), lengths[keep], remap[run_rows[keep]],
            len(full), row_length, baseline_percentile,
        )
    baseline = np.nan_to_num(baseline)
    values = values16.astype(np.float32)
    values[uncovered_runs] = baseline[run_rows[uncovered_runs]]  # NaN -> baseline
    x = np.repeat(values, lengths).reshape(n_tracks, row_length)
    b32 = baseline.astype(np.float32)[:, None]
    for start, end in blacklist_slices:
        seg = x[:, start:end]
        np.clip(seg, -b32, b32, out=seg)
    length = n_bins * bin_size
    x = x[:, crop : crop + length]
    if has_uncovered.any():
        per_base = np.repeat(uncovered_runs, lengths).reshape(n_tracks, row_length)
        uncovered = np.ascontiguousarray(per_base[:, crop : crop + length].reshape(-1, n_bins, bin_size).any(axis=2).T)
    else:
        uncovered = np.zeros((n_bins, n_tracks), dtype=bool)
    if order == "new":
        scale16 = params.scale.astype(np.float16).astype(np.float32)[:, None]
        x = (x * scale16).astype(np.float16).astype(np.float32)
    binned = x.reshape(-1, n_bins, bin_size)
    out = np.empty((len(params), n_bins), dtype=np.float32)
    for stat, idx in params.groups().items():
        out[idx] = _bin_stat(binned[idx], stat, order)
    _soft_and_hard_clip(out, params, order, clip_floor_zero)
    if order == "old":
        out *= params.scale.astype(np.float32)[:, None]
    targets = np.clip(out, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16).T
    return np.ascontiguousarray(targets), uncovered


def _bin_stat(binned: np.ndarray, stat: str, order: str) -> np.ndarray:
    if stat == "sum":
        return binned.sum(axis=2)
    if stat == "mean":
        return binned.mean(axis=2)
    if stat == "max":
        return binned.max(axis=2)
    if stat in ("sum_sqrt", "mean_sqrt"):
        x = binned.sum(axis=2) if stat == "sum_sqrt" else binned.mean(axis=2)
        return x**0.75 if order == "old" else -1 + np.sqrt(1 + x)
    if stat == "peak":
        x = binned.mean(axis=2)
        return np.clip(np.sqrt(x * 4), 0, 1)
    raise ValueError(f"unknown sum_stat {stat!r}")


def _soft_and_hard_clip(out: np.ndarray, params: TrackParams, order: str, floor_zero: bool) -> None:
    for t in np.flatnonzero(~np.isnan(params.clip_soft)):
        cs = np.float32(params.clip_soft[t])
        row = out[t]
        mask = row > cs
        if order == "old":
            row[mask] = cs + np.sqrt(row[mask] - cs)
        else:
            row[mask] = cs - 1 + np.sqrt(row[mask] - cs + 1)
    for t in np.flatnonzero(~np.isnan(params.clip)):
        c = np.float32(params.clip[t])
        np.clip(out[t], np.float32(0) if floor_zero else -c, c, out=out[t])


# --- per-track extreme-value clip over all windows -----------------------------------------

class TopValues:
    """Running largest values per track, enough to compute one high percentile exactly."""

    def __init__(self, n_tracks: int, n_values: int, q: float):
        self.n_values = n_values
        self.q = q
        lo_i, _, _ = percentile_position(n_values, q)
        self.k = n_values - lo_i  # the order statistics at lo_i and above
        self.top = np.zeros((0, n_tracks), dtype=np.float16)

    def add(self, values: np.ndarray) -> None:
        """values: (rows, tracks) float16."""
        merged = np.concatenate([self.top, values.reshape(-1, values.shape[-1])])
        if len(merged) > self.k:
            merged = -np.partition(-merged.astype(np.float32), self.k - 1, axis=0)[: self.k]
            merged = merged.astype(np.float16)
        self.top = merged

    def thresholds(self) -> np.ndarray:
        """np.percentile(all values of the track, q) per track, float16."""
        lo_i, hi_i, gamma = percentile_position(self.n_values, self.q)
        srt = np.sort(self.top.astype(np.float32), axis=0)  # ascending, last = maximum
        offset = self.n_values - len(srt)
        lo = srt[lo_i - offset].astype(np.float16)
        hi = srt[hi_i - offset].astype(np.float16)
        return lerp_float16(lo, hi, gamma)
