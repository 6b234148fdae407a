"""Losses on (batch, bins, tracks) predictions; masked bins (mask True) are excluded."""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1e-7


def _weighted_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    keep = (~mask).to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp(min=1)


def poisson(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Poisson negative log-likelihood on rates (Enformer's): pred - target * log(pred)."""
    return _weighted_mean(pred - target * torch.log(pred + EPS), mask)


def poisson_log_input(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The study's quirk: torch.nn.PoissonNLLLoss() (log_input=True) on the softplus output,
    i.e. exp(pred) - target * pred."""
    return _weighted_mean(torch.exp(pred) - target * pred, mask)


def mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return _weighted_mean((pred - target) ** 2, mask)


def poisson_multinomial(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                        total_weight: float = 0.2) -> torch.Tensor:
    """Borzoi's loss per window and track: a multinomial over how the total is spread across bins
    plus ``total_weight`` x Poisson on the total (divided by the number of bins). Borzoi trains
    with a total weight of 0.2; at 1 the sum is exactly the per-bin Poisson loss."""
    if mask is not None:
        keep = (~mask).to(pred.dtype)
        pred, target = pred * keep, target * keep
    n_bins = pred.shape[-2]
    total_pred = pred.sum(dim=-2) + EPS
    total_target = target.sum(dim=-2)
    poisson_term = (total_pred - total_target * torch.log(total_pred)) / n_bins
    log_p = torch.log(pred / total_pred.unsqueeze(-2) + EPS)
    multinomial_term = -(target * log_p).sum(dim=-2) / n_bins
    return (multinomial_term + total_weight * poisson_term).mean()


LOSSES: dict[str, Callable] = {
    "poisson": poisson,
    "poisson-log-input": poisson_log_input,
    "mse": mse,
    "poisson-multinomial": poisson_multinomial,
}
