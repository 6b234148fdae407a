"""Closed-form ridge: one pass accumulating X^T X and X^T Z in float64, the strength chosen on
valid by mean Pearson.

``link='identity'`` fits the targets themselves (the ridge baseline head). ``link='softplus'``
fits them in the softplus's inverse space, z = log(exp(y) - 1) with y floored at 5 % of the
track's mean, then sets each track's bias so that the mean prediction equals the mean target:
the start of a softplus head whose first predictions are already as good as a linear fit.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..metrics import PearsonPerTrack
from .data import WindowSource

log = logging.getLogger("enformer_transfer")

LINK_FLOOR = 0.05  # of a track's mean target: the smallest target the inverse link sees
CALIBRATION_ROWS = 50_000


class _Moments:
    def __init__(self, dim: int, n_tracks: int, device):
        kw = {"dtype": torch.float64, "device": device}
        self.xtx = torch.zeros(dim, dim, **kw)
        self.xty = torch.zeros(dim, n_tracks, **kw)
        self.sx = torch.zeros(dim, **kw)
        self.sy = torch.zeros(n_tracks, **kw)
        self.n = 0.0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.to(torch.float64)
        y = y.to(torch.float64)
        self.xtx += x.T @ x
        self.xty += x.T @ y
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.n += x.shape[0]


def _rows(source: WindowSource, i: int, device):
    emb, y, m = source.window(i)
    x = torch.from_numpy(emb.reshape(-1, emb.shape[-1]).astype(np.float32)).to(device)
    yt = torch.from_numpy(y.reshape(-1, y.shape[-1]).astype(np.float32)).to(device)
    if m is not None:  # a bin masked in any track is left out of the fit
        keep = torch.from_numpy(~m.reshape(-1, m.shape[-1]).any(1)).to(device)
        x, yt = x[keep], yt[keep]
    return x, yt


def softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    """log(exp(y) - 1), stable for large y."""
    return y + torch.log(-torch.expm1(-y))


def _train_target_means(train: WindowSource) -> np.ndarray:
    total, count = np.zeros(len(train.track_index)), 0
    for i in range(len(train)):
        y, m = train.targets_of(np.array([i]))
        y = y[0].reshape(-1, y.shape[-1]).astype(np.float64)
        if m is not None:
            y = y[~m[0].reshape(-1, m.shape[-1]).any(1)]
        total += y.sum(0)
        count += len(y)
    return total / max(count, 1)


def fit_ridge(train: WindowSource, valid: WindowSource | None, lambdas: list[float], device: str = "cpu",
              link: str = "identity", seed: int = 0) -> dict:
    """Ridge weights (tracks, dim) and bias for ``link``; returns {weight, bias, lambda,
    valid_pearson (per lambda), link}. Strengths are relative to the mean variance of the
    embedding features, so one grid suits any backbone."""
    dim = int(train.embeddings.shape[-1])
    n_tracks = len(train.track_index)
    floor = None
    if link == "softplus":
        floor = torch.from_numpy(np.maximum(LINK_FLOOR * _train_target_means(train), 1e-4)).to(device)
    mom = _Moments(dim, n_tracks, device)
    rng = np.random.default_rng(seed)
    per_window = max(1, CALIBRATION_ROWS // max(len(train), 1))
    sample = []
    for i in range(len(train)):
        x, y = _rows(train, i, device)
        z = y if floor is None else softplus_inverse(torch.maximum(y.to(torch.float64), floor))
        mom.update(x, z)
        if floor is not None and len(x):
            sample.append(x[torch.from_numpy(rng.choice(len(x), min(per_window, len(x)), replace=False)).to(device)])
    n = max(mom.n, 1.0)
    mx, mz = mom.sx / n, mom.sy / n
    cxx = mom.xtx / n - torch.outer(mx, mx)
    cxz = mom.xty / n - torch.outer(mx, mz)
    scale = float(torch.diagonal(cxx).mean().clamp(min=1e-12))
    eye = torch.eye(dim, dtype=torch.float64, device=device)
    solutions = []
    for lam in lambdas:
        w = torch.linalg.solve(cxx + lam * scale * eye, cxz)
        solutions.append((w, mz - mx @ w))
    output = (lambda t: t) if floor is None else torch.nn.functional.softplus
    scores = [float("nan")] * len(lambdas)
    best = 0
    if valid is not None and len(valid) and len(lambdas) > 1:
        metrics = [PearsonPerTrack(n_tracks) for _ in lambdas]
        for i in range(len(valid)):
            x, y = _rows(valid, i, device)
            x = x.to(torch.float64)
            for k, (w, b) in enumerate(solutions):
                metrics[k].update(output(x @ w + b).cpu().numpy(), y.cpu().numpy())
        scores = [float(np.nanmean(m.pearson())) for m in metrics]
        best = int(np.nanargmax(scores))
    w, b = solutions[best]
    if floor is not None and sample:
        b = _calibrated_bias(torch.cat(sample).to(torch.float64) @ w, b, mom.sy.new_tensor(_train_target_means(train)))
    log.info("ridge (%s link): strength %g chosen (valid mean Pearson %s)", link, lambdas[best],
             ", ".join(f"{lam:g}: {s:.3f}" for lam, s in zip(lambdas, scores, strict=True)))
    return {"weight": w.T.float().cpu(), "bias": b.float().cpu(), "lambda": lambdas[best], "link": link,
            "valid_pearson": dict(zip(map(str, lambdas), scores, strict=True))}


def _calibrated_bias(xw: torch.Tensor, bias: torch.Tensor, target_mean: torch.Tensor) -> torch.Tensor:
    """Per track, the bias b with mean(softplus(xw + b)) = the mean target (Newton's method)."""
    b = bias.clone()
    for _ in range(30):
        t = xw + b
        value = torch.nn.functional.softplus(t).mean(0) - target_mean
        slope = torch.sigmoid(t).mean(0).clamp(min=1e-6)
        b = b - value / slope
    return b
