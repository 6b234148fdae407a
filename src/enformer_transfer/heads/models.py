"""Head models on per-bin embeddings: (..., dim) -> (..., tracks)."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """Linear(dim -> tracks) + Softplus(beta 1, threshold 20): the study's head."""

    def __init__(self, dim: int, n_tracks: int, softplus: bool = True):
        super().__init__()
        self.linear = nn.Linear(dim, n_tracks)
        self.softplus = nn.Softplus(beta=1, threshold=20) if softplus else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softplus(self.linear(x.to(self.linear.weight.dtype)))

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.linear.bias


class MLPHead(nn.Module):
    """Linear -> GELU -> Linear -> Softplus."""

    def __init__(self, dim: int, n_tracks: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_tracks), nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.net[0].weight.dtype))


def make_head(kind: str, dim: int, n_tracks: int, hidden: int = 256) -> nn.Module:
    """'linear' (softplus), 'mlp', or 'ridge' (linear, identity output: the closed-form baseline)."""
    builders = {
        "linear": lambda: LinearHead(dim, n_tracks),
        "ridge": lambda: LinearHead(dim, n_tracks, softplus=False),
        "mlp": lambda: MLPHead(dim, n_tracks, hidden),
    }
    if kind not in builders:
        raise ValueError(f"unknown head model {kind!r} (use {', '.join(builders)})")
    return builders[kind]()
