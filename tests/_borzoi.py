"""Shared helpers for tests with a tiny random Borzoi (8,192 bp in, 96 bins of 32 bp, 1,920 channels)."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_borzoi(root: Path, kind: str = "borzoi", seed: int = 0) -> Path:
    """A tiny random Borzoi (or Flashzoi) folder under ``root``, written once and reused."""
    from enformer_transfer.backbone.borzoi import BorzoiFamily, FlashzoiFamily

    folder = Path(root) / f"{kind}-tiny-{seed}"
    if not (folder / "model.safetensors").is_file():
        family = FlashzoiFamily() if kind == "flashzoi" else BorzoiFamily()
        family.init(folder, preset="tiny", seed=seed)
    return folder


def one_hot(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Random DNA, one-hot (batch, length, 4) float32 (A, C, G, T)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length), generator=generator), 4).float()
