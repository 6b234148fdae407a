"""The end-to-end model: backbone trunk + head, from one-hot sequence to the new tracks.

``SequenceModel`` is one torch module (``forward(onehot) -> (batch, bins, tracks)``) that
stages running from sequence share (predict, and the fine-tune, variant and contribution
stages); ``load_sequence_model`` assembles it for a head of a run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..devices import autocast
from .base import Family


class SequenceModel(nn.Module):
    """Trunk (one-hot (B, L, 4) -> embeddings (B, bins, dim)) followed by a head.

    ``family``: the backbone family the trunk comes from (its checkpoint segments, its split
    for exact attribution, its DeepLIFT rules); None for a trunk of no known family.
    ``checkpointing``: while training, keep only segment boundaries of the trunk in memory.
    BatchNorm statistics never train (``train()`` leaves BatchNorm layers in eval mode)."""

    def __init__(self, trunk: nn.Module, head: nn.Module, precision: str = "fp32", checkpointing: bool = False,
                 family: Family | None = None):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.precision = precision
        self.checkpointing = checkpointing
        self.family = family

    def train(self, mode: bool = True) -> SequenceModel:
        super().train(mode)
        freeze_batchnorm(self)
        return self

    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        with autocast(onehot.device, self.precision):
            if self.checkpointing and self.training and torch.is_grad_enabled():
                segments = self.family.checkpoint_segments(self.trunk) if self.family is not None else None
                return checkpointed(segments or [self.trunk], onehot)
            return self.trunk(onehot)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(onehot).float()).float()

    @torch.inference_mode()
    def predict(self, onehot: np.ndarray, batch_size: int = 4) -> np.ndarray:
        """(windows, seq_length, 4) NumPy one-hot -> (windows, bins, tracks) float32."""
        self.eval()
        device = next(self.parameters()).device
        out = [self(torch.from_numpy(onehot[i : i + batch_size]).to(device)).cpu().numpy()
               for i in range(0, len(onehot), batch_size)]
        return np.concatenate(out) if out else np.zeros((0,), dtype=np.float32)


def freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm layers in eval mode (running statistics frozen), whatever mode the rest is in."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def checkpointed(segments: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``segments`` applied in turn, keeping only their boundaries in memory (each recomputed in
    the backward pass); a segment without parameters runs plainly."""
    for part in segments:
        x = checkpoint(part, x, use_reentrant=False) if any(True for _ in part.parameters()) else part(x)
    return x


def load_sequence_model(run, head_name: str, device: str = "auto"):
    """The run's backbone (as embedded, weights verified) + head ``head_name`` on ``device``;
    returns (SequenceModel, Head)."""
    from ..devices import resolve_device

    target = resolve_device(device)
    head = run.head(head_name)
    if head.finetuned:
        backbone, family = head.load_trunk(str(target)), head.family
    else:
        loaded = run.backbone(str(target))
        backbone, family = loaded.model, loaded.family
    precision = run.embed_precision if target.type == "cuda" else "fp32"
    trunk = family.trunk(backbone, run.geometry.n_bins)
    model = SequenceModel(trunk, head.module.to(target), precision, family=family).eval()
    return model, head
