"""Closed-form ridge head: one pass accumulating X^T X and X^T Y in float64, strength chosen on valid."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..metrics import PearsonPerTrack
from .data import WindowSource

log = logging.getLogger("enformer_transfer")


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


def fit_ridge(train: WindowSource, valid: WindowSource | None, lambdas: list[float],
              device: str = "cpu") -> dict:
    """Ridge weights (dim, tracks) and bias, the strength with the best mean valid Pearson.

    Strengths are relative to the mean variance of the embedding features, so one grid
    suits any backbone. Returns {weight, bias, lambda, valid_pearson (per lambda)}.
    """
    dim = int(train.embeddings.shape[-1])
    n_tracks = len(train.track_index)
    mom = _Moments(dim, n_tracks, device)
    for i in range(len(train)):
        mom.update(*_rows(train, i, device))
    n = max(mom.n, 1.0)
    mx, my = mom.sx / n, mom.sy / n
    cxx = mom.xtx / n - torch.outer(mx, mx)
    cxy = mom.xty / n - torch.outer(mx, my)
    scale = float(torch.diagonal(cxx).mean().clamp(min=1e-12))
    eye = torch.eye(dim, dtype=torch.float64, device=device)
    solutions = []
    for lam in lambdas:
        w = torch.linalg.solve(cxx + lam * scale * eye, cxy)
        solutions.append((w, my - mx @ w))
    scores = [float("nan")] * len(lambdas)
    best = 0
    if valid is not None and len(valid) and len(lambdas) > 1:
        metrics = [PearsonPerTrack(n_tracks) for _ in lambdas]
        for i in range(len(valid)):
            x, y = _rows(valid, i, device)
            x = x.to(torch.float64)
            for k, (w, b) in enumerate(solutions):
                metrics[k].update((x @ w + b).cpu().numpy(), y.cpu().numpy())
        scores = [float(np.nanmean(m.pearson())) for m in metrics]
        best = int(np.nanargmax(scores))
    log.info("ridge: strength %g chosen (valid mean Pearson %s)", lambdas[best],
             ", ".join(f"{lam:g}: {s:.3f}" for lam, s in zip(lambdas, scores, strict=True)))
    w, b = solutions[best]
    return {"weight": w.T.float().cpu(), "bias": b.float().cpu(), "lambda": lambdas[best],
            "valid_pearson": dict(zip(map(str, lambdas), scores, strict=True))}
