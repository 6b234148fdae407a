"""Closed-form ridge: one pass accumulating X^T X and X^T Z in float64, the strength chosen on
valid by mean Pearson.

``link='identity'`` fits the targets themselves (the ridge baseline head). ``link='softplus'``
fits them in the softplus's inverse space, z = log(exp(y) - 1) with y floored at 5 % of the
track's mean, then sets each track's bias so that the mean prediction equals the mean target:
the start of a softplus head whose first predictions are already as good as a linear fit.
:func:`linear_regime_start` puts the identity-link fit into a softplus head where the softplus is
the identity: a start whose valid Pearson is the ridge head's.
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
LINEAR_REGIME = 20.0  # LinearHead's softplus threshold: above it the output is the input, exactly


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

    def update_targets(self, x: torch.Tensor, y: torch.Tensor, shared: _Moments) -> None:
        """The sums of another target space for the rows ``shared`` has just taken in (X^T X shared)."""
        y = y.to(torch.float64)
        self.xty += x.to(torch.float64).T @ y
        self.sy += y.sum(0)
        self.xtx, self.sx, self.n = shared.xtx, shared.sx, shared.n


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
    valid_pearson (per lambda), link, valid_min (per track, the chosen fit's smallest valid
    output before the link)}. Strengths are relative to the mean variance of the embedding
    features, so one grid suits any backbone."""
    return fit_ridges(train, valid, lambdas, device, (link,), seed)[link]


def fit_ridges(train: WindowSource, valid: WindowSource | None, lambdas: list[float], device: str = "cpu",
               links: tuple[str, ...] = ("identity",), seed: int = 0) -> dict[str, dict]:
    """:func:`fit_ridge` for several links from one pass over train and one over valid (the
    embeddings are read once). Each link's fit is the same as fitting it alone: X^T X is shared,
    every other sum and the choice of strength are the link's own."""
    dim = int(train.embeddings.shape[-1])
    n_tracks = len(train.track_index)
    floor = None
    if "softplus" in links:
        floor = torch.from_numpy(np.maximum(LINK_FLOOR * _train_target_means(train), 1e-4)).to(device)
    moments = {link: _Moments(dim, n_tracks, device) for link in links}
    rng = np.random.default_rng(seed)
    per_window = max(1, CALIBRATION_ROWS // max(len(train), 1))
    sample = []
    for i in range(len(train)):
        x, y = _rows(train, i, device)
        for k, link in enumerate(links):
            z = softplus_inverse(torch.maximum(y.to(torch.float64), floor)) if link == "softplus" else y
            if k == 0:
                moments[link].update(x, z)
            else:  # X^T X and the sums of x are the first link's
                moments[link].update_targets(x, z, moments[links[0]])
        if floor is not None and len(x):
            sample.append(x[torch.from_numpy(rng.choice(len(x), min(per_window, len(x)), replace=False)).to(device)])
    solutions, outputs = {}, {}
    for link in links:
        mom = moments[link]
        n = max(mom.n, 1.0)
        mx, mz = mom.sx / n, mom.sy / n
        cxx = mom.xtx / n - torch.outer(mx, mx)
        cxz = mom.xty / n - torch.outer(mx, mz)
        scale = float(torch.diagonal(cxx).mean().clamp(min=1e-12))
        eye = torch.eye(dim, dtype=torch.float64, device=device)
        solutions[link] = []
        for lam in lambdas:
            w = torch.linalg.solve(cxx + lam * scale * eye, cxz)
            solutions[link].append((w, mz - mx @ w))
        outputs[link] = torch.nn.functional.softplus if link == "softplus" else (lambda t: t)
    scores = {link: [float("nan")] * len(lambdas) for link in links}
    lowest = {link: [torch.full((n_tracks,), float("inf"), dtype=torch.float64, device=device) for _ in lambdas]
              for link in links}
    if valid is not None and len(valid):
        metrics = {link: [PearsonPerTrack(n_tracks) for _ in lambdas] for link in links}
        for i in range(len(valid)):
            x, y = _rows(valid, i, device)
            x = x.to(torch.float64)
            for link in links:
                for k, (w, b) in enumerate(solutions[link]):
                    t = x @ w + b
                    if len(t):
                        lowest[link][k] = torch.minimum(lowest[link][k], t.min(0).values)
                    if len(lambdas) > 1:
                        metrics[link][k].update(outputs[link](t).cpu().numpy(), y.cpu().numpy())
        if len(lambdas) > 1:
            scores = {link: [float(np.nanmean(m.pearson())) for m in metrics[link]] for link in links}
    fits = {}
    for link in links:
        best = int(np.nanargmax(scores[link])) if np.isfinite(scores[link]).any() else 0
        w, b = solutions[link][best]
        if link == "softplus" and sample:
            b = _calibrated_bias(torch.cat(sample).to(torch.float64) @ w, b,
                                 moments[link].sy.new_tensor(_train_target_means(train)))
        log.info("ridge (%s link): strength %g chosen (valid mean Pearson %s)", link, lambdas[best],
                 ", ".join(f"{lam:g}: {s:.3f}" for lam, s in zip(lambdas, scores[link], strict=True)))
        valid_min = lowest[link][best] + (b - solutions[link][best][1])  # the calibrated bias moves it
        fits[link] = {"weight": w.T.float().cpu(), "bias": b.float().cpu(), "lambda": lambdas[best], "link": link,
                      "valid_pearson": dict(zip(map(str, lambdas), scores[link], strict=True)),
                      "valid_min": valid_min.cpu()}
    return fits


def linear_regime_start(fit: dict, margin: float = LINEAR_REGIME) -> dict:
    """The identity-link ridge ``fit`` as a softplus head's start: its weights, and its bias raised
    per track so that every valid output is at least ``margin`` before the softplus. There the
    softplus head (LinearHead: Softplus with threshold 20) returns its input unchanged, so the
    start's valid predictions are the ridge head's plus a constant per track: the same Pearson,
    up to float32 rounding of the offset. Train or test bins up to ~6 below the valid minimum are
    still returned unchanged in float32 (softplus(t) - t = log1p(exp(-t)) < 1e-6 above t = 14)."""
    valid_min = fit["valid_min"]
    offset = torch.where(torch.isfinite(valid_min), (margin - valid_min).clamp(min=0), torch.zeros_like(valid_min))
    return {"weight": fit["weight"].clone(), "bias": (fit["bias"].double() + offset).float(),
            "offset": offset.float()}


OFFSET_FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def lowest_offsets(start: dict, valid: WindowSource, device: str = "cpu") -> torch.Tensor:
    """Per track, the smallest offset (a fraction of the linear-regime start's) at which the softplus
    head's valid Pearson is at least the linear regime's: a start whose level is as near the targets
    as the ridge head's valid Pearson allows (the softplus's bend costs it nothing, or gains)."""
    weight, base = start["weight"].to(device), (start["bias"] - start["offset"]).to(device)
    offsets = [f * start["offset"].to(device) for f in OFFSET_FRACTIONS]
    metrics = [PearsonPerTrack(len(base)) for _ in offsets]
    for i in range(len(valid)):
        x, y = _rows(valid, i, device)
        t = x @ weight.T + base  # float32, as the head computes it
        for metric, offset in zip(metrics, offsets, strict=True):
            metric.update(torch.nn.functional.softplus(t + offset, beta=1, threshold=20).cpu().numpy(),
                          y.cpu().numpy())
    scores = np.stack([m.pearson() for m in metrics])  # (fractions, tracks)
    chosen = []
    for track in range(scores.shape[1]):
        linear = scores[-1, track]
        ok = [k for k in range(len(offsets)) if not np.isfinite(linear) or scores[k, track] >= linear]
        chosen.append(float(offsets[ok[0]][track]))
    return torch.tensor(chosen, dtype=torch.float32)


def _calibrated_bias(xw: torch.Tensor, bias: torch.Tensor, target_mean: torch.Tensor) -> torch.Tensor:
    """Per track, the bias b with mean(softplus(xw + b)) = the mean target (Newton's method)."""
    b = bias.clone()
    for _ in range(30):
        t = xw + b
        value = torch.nn.functional.softplus(t).mean(0) - target_mean
        slope = torch.sigmoid(t).mean(0).clamp(min=1e-6)
        b = b - value / slope
    return b
