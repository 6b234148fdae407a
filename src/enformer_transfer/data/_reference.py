"""The reference rules, one window and one track at a time, in plain NumPy (as Basenji does).

This is the oracle the fast builder (``transform.py``) is tested against and the
"reference way" of the dataset benchmark. It follows reference.md section 2 literally:
float16 per-base values, ``np.percentile`` baseline, blacklist clip, NaN fill, crop,
statistic, clips and scale, float16 cast.
"""

from __future__ import annotations

import numpy as np


def reference_track_window(
    cov_nt: np.ndarray,
    blacklist_slices: list[tuple[int, int]],
    crop: int,
    n_bins: int,
    bin_size: int,
    sum_stat: str,
    clip: float | None,
    clip_soft: float | None,
    scale: float,
    order: str = "old",
    baseline_percentile: float = 50.0,
    clip_floor_zero: bool = False,
) -> np.ndarray:
    """Targets (n_bins,) float16 of one track over one coverage window."""
    seq_cov_nt = cov_nt.astype("float16")
    baseline_cov = np.percentile(seq_cov_nt, baseline_percentile)
    baseline_cov = np.nan_to_num(baseline_cov)
    for bs, be in blacklist_slices:
        seq_cov_nt[bs:be] = np.clip(seq_cov_nt[bs:be], -baseline_cov, baseline_cov)
    nan_mask = np.isnan(seq_cov_nt)
    seq_cov_nt[nan_mask] = baseline_cov
    seq_cov_nt = seq_cov_nt[crop : crop + n_bins * bin_size]
    if order == "new":
        seq_cov_nt = np.float16(scale) * seq_cov_nt
    seq_cov = seq_cov_nt.reshape(n_bins, bin_size)
    if sum_stat == "sum":
        seq_cov = seq_cov.sum(axis=1, dtype="float32")
    elif sum_stat == "mean":
        seq_cov = seq_cov.mean(axis=1, dtype="float32")
    elif sum_stat == "max":
        seq_cov = seq_cov.max(axis=1).astype("float32")
    elif sum_stat in ("sum_sqrt", "mean_sqrt"):
        if sum_stat == "sum_sqrt":
            seq_cov = seq_cov.sum(axis=1, dtype="float32")
        else:
            seq_cov = seq_cov.mean(axis=1, dtype="float32")
        seq_cov = seq_cov**0.75 if order == "old" else -1 + np.sqrt(1 + seq_cov)
    elif sum_stat == "peak":
        seq_cov = seq_cov.mean(axis=1, dtype="float32")
        seq_cov = np.clip(np.sqrt(seq_cov * 4), 0, 1)
    else:
        raise ValueError(sum_stat)
    if clip_soft is not None:
        clip_mask = seq_cov > clip_soft
        if order == "old":
            seq_cov[clip_mask] = clip_soft + np.sqrt(seq_cov[clip_mask] - clip_soft)
        else:
            seq_cov[clip_mask] = clip_soft - 1 + np.sqrt(seq_cov[clip_mask] - clip_soft + 1)
    if clip is not None:
        seq_cov = np.clip(seq_cov, 0 if clip_floor_zero else -clip, clip)
    if order == "old":
        seq_cov = scale * seq_cov
    seq_cov = np.clip(seq_cov, np.finfo(np.float16).min, np.finfo(np.float16).max)
    return seq_cov.astype("float16")


def reference_extreme_clip(targets: np.ndarray, q: float) -> np.ndarray:
    """Clip each track of (windows, bins, tracks) float16 to +/- its q-th percentile."""
    out = targets.copy()
    for t in range(targets.shape[-1]):
        p = np.percentile(targets[..., t], q)
        out[..., t] = np.clip(targets[..., t], -p, p)
    return out


def reference_build(
    windows,
    tracks,
    n_bins: int,
    bin_size: int,
    blacklist_slices_of=None,
    chrom_of=None,
    order: str = "old",
    baseline_percentile: float = 50.0,
    clip_floor_zero: bool = False,
    extreme_clip_percentile: float | None = 99.99999,
    negative: str = "clip",
) -> np.ndarray:
    """The reference loop: per track, open its BigWig; per window, read, transform in NumPy.

    windows: DataFrame with chrom, row_start, row_end, start (target start), in store order.
    tracks: targets table (file, sum_stat, clip, clip_soft, scale).
    blacklist_slices_of(row) -> list of (start, end) offsets into the row; chrom_of(t, chrom)
    -> the BigWig's chromosome name. ``negative``: negative per-base values are clipped to 0
    (``clip``), mirrored (``abs``) or kept (``keep``) as read. Returns (windows, n_bins, tracks) float16.
    """
    import pybigtools

    def opt(v):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    out = np.empty((len(windows), n_bins, len(tracks)), dtype=np.float16)
    for t, track in enumerate(tracks.itertuples()):
        bw = pybigtools.open(str(track.file))
        for w, row in enumerate(windows.itertuples()):
            chrom = chrom_of(t, row.chrom) if chrom_of else row.chrom
            cov = bw.values(chrom, int(row.row_start), int(row.row_end), fillna=np.nan)
            if negative == "clip":
                cov = np.where(cov < 0, 0.0, cov)
            elif negative == "abs":
                cov = np.where(cov < 0, -cov, cov)
            slices = blacklist_slices_of(row) if blacklist_slices_of else []
            out[w, :, t] = reference_track_window(
                cov, slices, int(row.start - row.row_start), n_bins, bin_size, track.sum_stat,
                opt(track.clip), opt(track.clip_soft), float(track.scale), order,
                baseline_percentile, clip_floor_zero,
            )
        bw.close()
    if extreme_clip_percentile is not None:
        out = reference_extreme_clip(out, extreme_clip_percentile)
    return out
