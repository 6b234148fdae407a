"""Streaming metrics, each named by its axis; float64 running sums, one pass.

- per track, pooled: Pearson over all bins of all windows of a split (the reference metric,
  as enformer-pytorch's ``MeanPearsonCorrCoefPerChannel``), also on log1p values, R2, and
  Spearman on a fixed random sample of bins;
- per track, per window: Pearson over a window's bins (then the median over windows);
- per bin position: Pearson over windows at each bin position (accuracy at the window edges);
- track x track correlation matrices of observed and of predicted values.
Zero-variance tracks give NaN ("no correlation"), reported as such and left out of means.
"""

from __future__ import annotations

import numpy as np


class PearsonSums:
    """Running sums for Pearson correlations of arrays of any shape (last axes = the pairs)."""

    def __init__(self, shape: tuple[int, ...]):
        self.n = np.zeros(shape)
        self.sx = np.zeros(shape)
        self.sy = np.zeros(shape)
        self.sxx = np.zeros(shape)
        self.syy = np.zeros(shape)
        self.sxy = np.zeros(shape)

    def add(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, axis) -> None:
        self.n += w.sum(axis)
        self.sx += (w * x).sum(axis)
        self.sy += (w * y).sum(axis)
        self.sxx += (w * x * x).sum(axis)
        self.syy += (w * y * y).sum(axis)
        self.sxy += (w * x * y).sum(axis)

    def pearson(self) -> np.ndarray:
        n = np.maximum(self.n, 1)
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)
        vx = self.sxx / n - (self.sx / n) ** 2
        vy = self.syy / n - (self.sy / n) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(vx * vy)
        return np.where((vx <= 1e-12 * np.maximum(self.sxx / n, 1e-300)) | (vy <= 1e-12 * np.maximum(self.syy / n, 1e-300)), np.nan, r)

    def std(self) -> tuple[np.ndarray, np.ndarray]:
        """Standard deviations of x and of y."""
        n = np.maximum(self.n, 1)
        return (np.sqrt(np.maximum(self.sxx / n - (self.sx / n) ** 2, 0)),
                np.sqrt(np.maximum(self.syy / n - (self.sy / n) ** 2, 0)))

    def r2(self) -> np.ndarray:
        """1 - SSE / SST of y predicted by x."""
        n = np.maximum(self.n, 1)
        sse = self.syy - 2 * self.sxy + self.sxx
        sst = self.syy - self.sy**2 / n
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sst > 0, 1 - sse / sst, np.nan)


class PearsonPerTrack:
    """Accumulate (..., tracks) predictions and targets; ``pearson()`` per track, pooled."""

    def __init__(self, n_tracks: int):
        self.sums = PearsonSums((n_tracks,))

    def update(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        x = np.asarray(pred, dtype=np.float64).reshape(-1, pred.shape[-1])
        y = np.asarray(target, dtype=np.float64).reshape(-1, target.shape[-1])
        w = np.ones_like(x) if mask is None else (~np.asarray(mask).reshape(x.shape)).astype(np.float64)
        self.sums.add(x, y, w, 0)

    def pearson(self) -> np.ndarray:
        return self.sums.pearson()


class SplitMetrics:
    """Every per-track metric of one split in one streaming pass over window batches."""

    def __init__(self, n_tracks: int, n_bins: int, n_windows: int, spearman_sample: int = 100_000, seed: int = 0):
        self.n_tracks, self.n_bins = n_tracks, n_bins
        self.pooled = PearsonSums((n_tracks,))
        self.log1p = PearsonSums((n_tracks,))
        self.position = PearsonSums((n_bins, n_tracks))
        self.window_pearson: list[np.ndarray] = []
        self.obs_cross = np.zeros((n_tracks, n_tracks))
        self.pred_cross = np.zeros((n_tracks, n_tracks))
        self.obs_sum = np.zeros(n_tracks)
        self.pred_sum = np.zeros(n_tracks)
        self.count = 0.0
        per_window = max(1, min(n_bins, -(-spearman_sample // max(n_windows, 1))))
        self.rng = np.random.default_rng(seed)
        self.sample_per_window = per_window
        self.sample_pred: list[np.ndarray] = []
        self.sample_obs: list[np.ndarray] = []

    def update(self, pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None) -> None:
        """pred, obs: (windows, bins, tracks); mask True = excluded."""
        x = np.asarray(pred, dtype=np.float64)
        y = np.asarray(obs, dtype=np.float64)
        w = np.ones_like(x) if mask is None else (~np.asarray(mask)).astype(np.float64)
        flat = (-1, self.n_tracks)
        self.pooled.add(x.reshape(flat), y.reshape(flat), w.reshape(flat), 0)
        lx, ly = np.log1p(np.maximum(x, 0)), np.log1p(np.maximum(y, 0))
        self.log1p.add(lx.reshape(flat), ly.reshape(flat), w.reshape(flat), 0)
        self.position.add(x, y, w, 0)
        for i in range(len(x)):
            s = PearsonSums((self.n_tracks,))
            s.add(x[i], y[i], w[i], 0)
            self.window_pearson.append(s.pearson())
            keep = self.rng.choice(self.n_bins, self.sample_per_window, replace=False)
            self.sample_pred.append(np.where(w[i][keep] > 0, x[i][keep], np.nan))
            self.sample_obs.append(np.where(w[i][keep] > 0, y[i][keep], np.nan))
        full = w.reshape(flat).min(axis=1) > 0  # bins observed in every track
        xo, yo = x.reshape(flat)[full], y.reshape(flat)[full]
        self.obs_cross += yo.T @ yo
        self.pred_cross += xo.T @ xo
        self.obs_sum += yo.sum(0)
        self.pred_sum += xo.sum(0)
        self.count += len(yo)

    def track_means(self) -> tuple[np.ndarray, np.ndarray]:
        n = np.maximum(self.pooled.n, 1)
        return self.pooled.sx / n, self.pooled.sy / n

    def spearman(self) -> np.ndarray:
        import pandas as pd

        if not self.sample_pred:
            return np.full(self.n_tracks, np.nan)
        px = pd.DataFrame(np.concatenate(self.sample_pred))
        py = pd.DataFrame(np.concatenate(self.sample_obs))
        out = np.full(self.n_tracks, np.nan)
        for t in range(self.n_tracks):
            a, b = px[t], py[t]
            ok = a.notna() & b.notna()
            if ok.sum() > 2 and a[ok].nunique() > 1 and b[ok].nunique() > 1:
                out[t] = np.corrcoef(a[ok].rank(), b[ok].rank())[0, 1]
        return out

    def correlation_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        def corr(cross, s):
            n = max(self.count, 1)
            cov = cross / n - np.outer(s / n, s / n)
            sd = np.sqrt(np.clip(np.diag(cov), 0, None))
            with np.errstate(invalid="ignore", divide="ignore"):
                return cov / np.outer(sd, sd)

        return corr(self.obs_cross, self.obs_sum), corr(self.pred_cross, self.pred_sum)

    def per_track(self) -> dict[str, np.ndarray]:
        windows = np.array(self.window_pearson) if self.window_pearson else np.full((1, self.n_tracks), np.nan)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                window_median = np.nanmedian(windows, axis=0)
        predicted_std, observed_std = self.pooled.std()
        return {
            "pearson": self.pooled.pearson(),
            "pearson_log1p": self.log1p.pearson(),
            "spearman": self.spearman(),
            "r2": self.pooled.r2(),
            "pearson_window_median": window_median,
            "predicted_std": predicted_std,
            "observed_std": observed_std,
        }

    def per_position(self) -> np.ndarray:
        """(bins, tracks) Pearson over windows at each bin position."""
        return self.position.pearson()


class AcrossTracksPerBin:
    """Pearson across tracks at each bin, after mean-centring each track (does the model know
    which cell type is open here?); averaged over bins."""

    def __init__(self, obs_means: np.ndarray, pred_means: np.ndarray):
        self.obs_means, self.pred_means = obs_means, pred_means
        self.values: list[np.ndarray] = []

    def update(self, pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None = None) -> None:
        x = np.asarray(pred, dtype=np.float64).reshape(-1, pred.shape[-1]) - self.pred_means
        y = np.asarray(obs, dtype=np.float64).reshape(-1, obs.shape[-1]) - self.obs_means
        if mask is not None:
            keep = ~np.asarray(mask).reshape(x.shape).any(1)
            x, y = x[keep], y[keep]
        xc = x - x.mean(1, keepdims=True)
        yc = y - y.mean(1, keepdims=True)
        den = np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, (xc * yc).sum(1) / den, np.nan)
        self.values.append(r)

    def summary(self) -> dict[str, float]:
        r = np.concatenate(self.values) if self.values else np.array([np.nan])
        ok = r[~np.isnan(r)]
        return {"mean": float(ok.mean()) if len(ok) else float("nan"),
                "median": float(np.median(ok)) if len(ok) else float("nan"),
                "bins": int(len(ok))}
