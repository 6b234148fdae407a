"""BigWig coverage -> binned targets with Basenji semantics (reference.md section 2), vectorised.

One window, all tracks at once: on runs of equal values (``bin_window``), or base by base over
a span that overlapping windows share (``BaseValues``, for bp-resolution coverage). Equals,
bit for bit in float16, the per-window per-track NumPy rules of ``_reference.py`` (tested):
per-base float16 values, percentile baseline (any NaN -> 0), blacklist clipping to [-b, b],
NaN -> b, bin statistic in float32, soft clip, hard clip and scale in the ``old`` or ``new``
order, float16 cast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..rundir.store import FLOAT16_MAX

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

    def ceilings(self, order: str = "old") -> np.ndarray:
        """Per track, the largest target the transform can store (float32 of a float16): the hard
        clip (times the scale in the old order), or the float16 maximum for a track without one."""
        top = self.clip.astype(np.float32)
        if order == "old":
            top = top * self.scale.astype(np.float32)
        top = np.where(np.isnan(top), np.float32(FLOAT16_MAX), np.minimum(top, np.float32(FLOAT16_MAX)))
        return top.astype(np.float16).astype(np.float32)


# --- negative coverage ------------------------------------------------------------------------

# What becomes of negative per-base values (coverage cannot be negative; minus-strand tracks are
# sometimes stored negative): clip to 0, mirror (abs), keep as they are, or refuse the track.
NEGATIVE_RULES = ("clip", "abs", "keep", "error")


def negative_tracks(coverage: np.ndarray) -> np.ndarray:
    """Rows of (tracks, length) coverage holding a value below 0 (one pass; uncovered bases are
    ``UNCOVERED``, a positive number, so they never count)."""
    return np.flatnonzero(coverage.min(axis=1) < 0)


def without_negatives(coverage: np.ndarray, tracks: np.ndarray, rule: str) -> np.ndarray:
    """``coverage`` with the negative values of rows ``tracks`` clipped to 0 (``clip``) or mirrored
    (``abs``): a copy when it changes, the same array for ``keep``."""
    if rule == "keep" or not len(tracks):
        return coverage
    out = coverage.copy()
    for t in tracks:
        row = out[t]
        below = row < 0  # only those: -0.0 stays as read, as in the reference
        if rule == "abs":
            np.negative(row, out=row, where=below)
        else:
            np.copyto(row, 0.0, where=below)
    return out


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
    """uint16 keys whose integer order is the float16 value order: the sign bit set for
    positive values, all bits flipped for negative ones (one XOR mask, no temporaries of
    the size of a window beyond the mask)."""
    bits = x16.view(np.uint16)
    mask = bits >> 15
    mask *= 0x7FFF
    mask |= 0x8000
    mask ^= bits
    return mask


def _key_values(keys: np.ndarray) -> np.ndarray:
    keys = keys.astype(np.uint16)
    bits = np.where(keys & 0x8000, keys & 0x7FFF, np.invert(keys))
    return bits.astype(np.uint16).view(np.float16)


# --- one window ----------------------------------------------------------------------------

# Marks uncovered bases in coverage arrays: BigWig values are float32, so a float64 of 1e300
# never occurs in data (NaN would make every uncovered base a run of its own).
UNCOVERED = 1e300


def _run_length(coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values per row: their first values, lengths and rows."""
    rows, length = coverage.shape
    change = np.empty(coverage.shape, dtype=bool)
    change[:, 0] = True
    np.not_equal(coverage[:, 1:], coverage[:, :-1], out=change[:, 1:])
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=rows * length)
    run_rows = starts // length
    # indexed by row and column: ``coverage`` may be a view into a longer span (no flat copy)
    return coverage[run_rows, starts - run_rows * length], lengths, run_rows


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
        if np.isnan(coverage).any():
            coverage = np.where(np.isnan(coverage), UNCOVERED, coverage)
    n_tracks, row_length = coverage.shape
    raw, lengths, run_rows = _run_length(coverage)
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
    return _binned_targets(x, n_bins, bin_size, params, order, clip_floor_zero), uncovered


def _binned_targets(x: np.ndarray, n_bins: int, bin_size: int, params: TrackParams, order: str,
                    clip_floor_zero: bool) -> np.ndarray:
    """(tracks, n_bins * bin_size) float32 per-base values (float16-exact, NaN filled) ->
    (n_bins, tracks) float16 targets: scale (new order), bin statistic, clips, scale (old)."""
    if order == "new":
        scale16 = params.scale.astype(np.float16).astype(np.float32)[:, None]
        x = (x * scale16).astype(np.float16).astype(np.float32)
    binned = x.reshape(-1, n_bins, bin_size)
    out = np.empty((len(params), n_bins), dtype=np.float32)
    groups = params.groups()
    for stat, idx in groups.items():
        # one statistic for every track (the usual case): no copy of the selected tracks
        out[idx] = _bin_stat(binned if len(groups) == 1 else binned[idx], stat, order)
    _soft_and_hard_clip(out, params, order, clip_floor_zero)
    if order == "old":
        out *= params.scale.astype(np.float32)[:, None]
    targets = np.clip(out, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16).T
    return np.ascontiguousarray(targets)


# --- many windows of one span, base by base ---------------------------------------------------

# float16 bit pattern -> float32 value (a table lookup is faster than NumPy's float16 cast),
# NaN (uncovered) -> 0: the baseline of every window holding an uncovered base is 0
_FLOAT16_TO_FLOAT32 = np.nan_to_num(np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32),
                                    nan=0.0, posinf=np.inf, neginf=-np.inf)
# order keys of float16 +inf and -inf; NaNs have keys above +inf's or below -inf's
_POS_INF_KEY, _NEG_INF_KEY = 0xFC00, 0x03FF
# below this mean run length (bp-resolution coverage), working base by base beats working on runs
SHORT_RUNS = 8.0
# columns converted at a time: small temporaries that stay in the CPU caches
_BLOCK = 16384


def mean_run_length(coverage: np.ndarray, sample: int = 65536) -> float:
    """Mean length of the runs of equal values in the rows of (tracks, length) coverage, over
    its first ``sample`` columns (a BigWig's resolution is the same all along)."""
    part = coverage[:, :sample]
    rows, length = part.shape
    changes = np.count_nonzero(part[:, 1:] != part[:, :-1])  # NaN != NaN: each NaN a run
    return rows * length / (rows + changes)


class BaseValues:
    """Per-base float16 values of a (tracks, length) coverage span (NaN or ``UNCOVERED`` =
    uncovered), converted once and shared by every window inside it: overlapping windows of
    bp-resolution coverage (runs of a few bases) convert each base once, and each window's
    baseline is a sort of its uint16 order keys (a radix-fast sort; no run bookkeeping).

    ``load`` converts a span in blocks of columns into memory kept for the next span (no
    temporaries the size of a span, no fresh pages to fault in for each span)."""

    def __init__(self):
        self._keys = np.empty(0, dtype=np.uint16)
        self._values = np.empty(0, dtype=np.float32)

    def load(self, coverage: np.ndarray) -> BaseValues:
        rows, length = coverage.shape
        if self._keys.size < coverage.size:
            self._keys = np.empty(coverage.size, dtype=np.uint16)
            self._values = np.empty(coverage.size, dtype=np.float32)
        self.keys = self._keys[: coverage.size].reshape(rows, length)
        self.values = self._values[: coverage.size].reshape(rows, length)
        x16 = np.empty((rows, min(length, _BLOCK)), dtype=np.float16)
        for a in range(0, length, _BLOCK):
            b = min(length, a + _BLOCK)
            block = x16[:, : b - a]
            with np.errstate(over="ignore"):  # UNCOVERED (and any value beyond float16) casts to inf
                np.copyto(block, coverage[:, a:b], casting="unsafe")
            keys = _order_keys(block)
            if keys.max() >= _POS_INF_KEY or keys.min() <= _NEG_INF_KEY:  # UNCOVERED casts to inf
                np.copyto(block, np.float16(np.nan), where=coverage[:, a:b] == UNCOVERED)
                keys = _order_keys(block)
            self.keys[:, a:b] = keys
            np.take(_FLOAT16_TO_FLOAT32, block.view(np.uint16), out=self.values[:, a:b], mode="clip")
        return self

    def bin_window(
        self,
        offset: int,
        row_length: int,
        blacklist_slices: list[tuple[int, int]],
        crop: int,
        n_bins: int,
        bin_size: int,
        params: TrackParams,
        order: str = "old",
        baseline_percentile: float = 50.0,
        clip_floor_zero: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``bin_window`` of the coverage row at ``offset`` (``row_length`` bases) of the span:
        the same targets and uncovered-bin mask, bit for bit."""
        keys = np.sort(self.keys[:, offset : offset + row_length], axis=1)
        has_nan = (keys[:, -1] > _POS_INF_KEY) | (keys[:, 0] < _NEG_INF_KEY)
        lo_i, hi_i, gamma = percentile_position(row_length, baseline_percentile)
        baseline = np.zeros(len(keys), dtype=np.float16)  # a NaN: np.percentile NaN, nan_to_num 0
        full = ~has_nan
        baseline[full] = lerp_float16(_key_values(keys[full, lo_i]), _key_values(keys[full, hi_i]), gamma)
        baseline = np.nan_to_num(baseline)
        length = n_bins * bin_size
        first = offset + crop
        x = self.values[:, first : first + length]  # NaN already 0, this window's baseline there
        uncovered = np.zeros((n_bins, len(params)), dtype=bool)
        for t in np.flatnonzero(has_nan):
            bases = self.keys[t, first : first + length]
            nan = (bases > _POS_INF_KEY) | (bases < _NEG_INF_KEY)
            uncovered[:, t] = nan.reshape(n_bins, bin_size).any(axis=1)
        slices = [(max(a, crop) - crop, min(b, crop + length) - crop) for a, b in blacklist_slices]
        slices = [(a, b) for a, b in slices if b > a]  # only the cropped part is binned
        if slices:
            x = x.copy()  # the span's values are shared with other windows
            b32 = baseline.astype(np.float32)[:, None]
            for start, end in slices:
                seg = x[:, start:end]
                np.clip(seg, -b32, b32, out=seg)
        return _binned_targets(x, n_bins, bin_size, params, order, clip_floor_zero), uncovered


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
        """values: (rows, tracks) float16 (all values of a part, or at least its k largest)."""
        self.top = largest(np.concatenate([self.top, values.reshape(-1, values.shape[-1])]), self.k)

    def thresholds(self) -> np.ndarray:
        """np.percentile(all values of the track, q) per track, float16."""
        lo_i, hi_i, gamma = percentile_position(self.n_values, self.q)
        srt = np.sort(self.top.astype(np.float32), axis=0)  # ascending, last = maximum
        offset = self.n_values - len(srt)
        lo = srt[lo_i - offset].astype(np.float16)
        hi = srt[hi_i - offset].astype(np.float16)
        return lerp_float16(lo, hi, gamma)


def largest(values: np.ndarray, k: int) -> np.ndarray:
    """The k largest of (..., tracks) float16 values per track (all of them when fewer)."""
    rows = values.reshape(-1, values.shape[-1])
    if len(rows) <= k:
        return rows
    return (-np.partition(-rows.astype(np.float32), k - 1, axis=0)[:k]).astype(np.float16)


def chunk_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per track, over a chunk of (windows, bins, tracks) float16 targets: the float64 sum,
    sum of squares and maximum, and the number of values (what track_stats.tsv adds up)."""
    v = values.reshape(-1, values.shape[-1]).astype(np.float64)
    return v.sum(axis=0), (v * v).sum(axis=0), v.max(axis=0), len(v)


@dataclass
class ChunkSummary:
    """What the final pass needs of a chunk of targets, computed where the chunk is made:
    ``chunk_sums``, the lowest and highest value per track (NaN ignored: a clip keeps NaN) and,
    with ``top_k``, the top_k largest values per track (for a high percentile over all chunks).
    Saved as one float64 array (float16 values and counts are exact in float64)."""

    total: np.ndarray
    total_sq: np.ndarray
    maximum: np.ndarray
    count: int
    low: np.ndarray
    high: np.ndarray
    top_k: int | None = None
    top: np.ndarray | None = None

    @classmethod
    def of(cls, values: np.ndarray, top_k: int | None) -> ChunkSummary:
        v32 = values.reshape(-1, values.shape[-1]).astype(np.float32)
        top = largest(values, top_k) if top_k is not None else None
        return cls(*chunk_sums(values), np.fmin.reduce(v32, axis=0), np.fmax.reduce(v32, axis=0), top_k, top)

    def to_array(self) -> np.ndarray:
        n_tracks = len(self.total)
        header = [self.total, self.total_sq, self.maximum, self.low, self.high,
                  np.full(n_tracks, self.count), np.full(n_tracks, -1 if self.top_k is None else self.top_k)]
        top = np.zeros((0, n_tracks)) if self.top is None else self.top.astype(np.float64)
        return np.concatenate([np.array(header, dtype=np.float64), top])

    @classmethod
    def from_array(cls, a: np.ndarray) -> ChunkSummary:
        top_k = int(a[6, 0])
        top = a[7:].astype(np.float16) if top_k >= 0 else None
        return cls(a[0], a[1], a[2], int(a[5, 0]), a[3], a[4], None if top_k < 0 else top_k, top)
