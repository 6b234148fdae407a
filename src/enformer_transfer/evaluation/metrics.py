"""Streaming per-track Pearson (the reference metric): all bins of all windows of a split pooled.

Running float64 sums, as enformer-pytorch's ``MeanPearsonCorrCoefPerChannel``; a track with
zero variance has no correlation (NaN), reported as such and left out of means.
"""

from __future__ import annotations

import numpy as np


class PearsonPerTrack:
    """Accumulate (…, tracks) predictions and targets; ``pearson()`` per track."""

    def __init__(self, n_tracks: int):
        self.n = np.zeros(n_tracks)
        self.sx = np.zeros(n_tracks)
        self.sy = np.zeros(n_tracks)
        self.sxx = np.zeros(n_tracks)
        self.syy = np.zeros(n_tracks)
        self.sxy = np.zeros(n_tracks)

    def update(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        x = np.asarray(pred, dtype=np.float64).reshape(-1, pred.shape[-1])
        y = np.asarray(target, dtype=np.float64).reshape(-1, target.shape[-1])
        w = np.ones_like(x) if mask is None else (~np.asarray(mask).reshape(-1, x.shape[-1])).astype(np.float64)
        self.n += w.sum(0)
        self.sx += (w * x).sum(0)
        self.sy += (w * y).sum(0)
        self.sxx += (w * x * x).sum(0)
        self.syy += (w * y * y).sum(0)
        self.sxy += (w * x * y).sum(0)

    def pearson(self) -> np.ndarray:
        n = np.maximum(self.n, 1)
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)
        vx = self.sxx / n - (self.sx / n) ** 2
        vy = self.syy / n - (self.sy / n) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(vx * vy)
        r[(vx <= 0) | (vy <= 0)] = np.nan
        return r
