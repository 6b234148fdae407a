"""The end-to-end model: backbone trunk + head, from one-hot sequence to the new tracks.

``SequenceModel`` is one torch module (``forward(onehot) -> (batch, bins, tracks)``) that
stages running from sequence share (predict, and the fine-tune, variant and contribution
stages); ``load_sequence_model`` assembles it for a head of a run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..devices import autocast


class SequenceModel(nn.Module):
    """Trunk (one-hot (B, L, 4) -> embeddings (B, bins, dim)) followed by a head."""

    def __init__(self, trunk: nn.Module, head: nn.Module, precision: str = "fp32"):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.precision = precision

    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        with autocast(onehot.device, self.precision):
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


def load_sequence_model(run, head_name: str, device: str = "auto"):
    """The run's backbone (as embedded, weights verified) + head ``head_name`` on ``device``;
    returns (SequenceModel, Head)."""
    from ..devices import resolve_device

    target = resolve_device(device)
    head = run.head(head_name)
    backbone = run.backbone(str(target))
    precision = run.embed_precision if target.type == "cuda" else "fp32"
    model = SequenceModel(backbone.model.trunk, head.module.to(target), precision).eval()
    return model, head
