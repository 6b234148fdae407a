"""DeepLIFT/SHAP for the end-to-end model (tangermeme's ``deep_lift_shap``), with a rule for
every non-linear operation of the backbone (its family's ``deeplift_rules``) and our heads.

tangermeme attaches DeepLIFT rules to ``torch.nn`` modules; an operation computed as a bare
function call (Enformer's attention softmax and products, its own GELU) would be treated as
linear and the summation-to-delta property would fail, silently. The family's rules make every
such operation visible (for Enformer: ``backbone/enformer.py``); a family without rules is
refused. The remaining layers already have exact rules or are linear: LayerNorm (tangermeme's
rule), ReLU and Softplus (rescale), torch GELU (the MLP head; rescale), convolutions, BatchNorm
in eval mode, linear layers, residual sums, cropping and rearranging (linear). The composition
of exact rules is exact, so the contributions sum to the output's difference from the
references; ``deep_lift_shap`` below measures it per region and scalar.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError


def deeplift_rules(model: nn.Module) -> contextlib.AbstractContextManager[dict]:
    """The backbone family's DeepLIFT rules for ``model`` (a SequenceModel); InputError in one
    line when its family has none (the summation to delta would fail silently)."""
    family = getattr(model, "family", None)
    rules = family.deeplift_rules(model) if family is not None else None
    if rules is None:
        name = f"the {family.display_name or family.kind} backbone" if family is not None else "a trunk of no known backbone family"
        raise InputError(f"deepliftshap: {name} has no exact DeepLIFT rules; use --method grad-input or "
                         "--method ism (they work with every backbone)")
    return rules


class _ScalarModel(nn.Module):
    """(B, 4, L) channels-first one-hot, (B, bins) bin weights -> (B, K) attributed scalars."""

    def __init__(self, model: nn.Module, track_weights: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("track_weights", track_weights)

    def forward(self, x: torch.Tensor, bin_weights: torch.Tensor) -> torch.Tensor:
        outputs = self.model(x.transpose(1, 2))
        return torch.einsum("bnt,bn,kt->bk", outputs.float(), bin_weights.float(), self.track_weights)


@dataclass
class DeepLiftResult:
    hypothetical: np.ndarray  # (B, K, window, 4): mean over references of the hypothetical contributions
    scalars: np.ndarray  # (B, K) at the input
    reference_scalars: np.ndarray  # (B, K) mean over the references
    summation_error: np.ndarray  # (B, K): |sum of actual contributions - (scalar - reference mean)|


def references_for(onehot: np.ndarray, window: tuple[int, int], n_shuffles: int, seed: int) -> np.ndarray:
    """(B, n_shuffles, L, 4): each input with its window dinucleotide-shuffled (the flanks kept),
    so that every contribution lies in the window. Seeded per region: ``seed + region``."""
    from tangermeme.ersatz import dinucleotide_shuffle

    start, end = window
    out = np.repeat(np.asarray(onehot, dtype=np.float32)[:, None], n_shuffles, axis=1)
    for r in range(len(onehot)):
        part = torch.from_numpy(np.ascontiguousarray(onehot[r, start:end].T[None]))
        shuffled = dinucleotide_shuffle(part, n=n_shuffles, random_state=seed + r, allow_N=True)
        out[r, :, start:end] = shuffled[0].transpose(1, 2).float().numpy()
    return out


def deep_lift_shap(model: nn.Module, onehot: np.ndarray, bin_weights: np.ndarray, track_weights: np.ndarray,
                   window: tuple[int, int], n_shuffles: int = 20, seed: int = 0,
                   batch_size: int = 8) -> DeepLiftResult:
    """DeepLIFT/SHAP contributions of every attributed scalar over ``window`` against
    ``n_shuffles`` dinucleotide shuffles of the window, in float32."""
    from tangermeme.deep_lift_shap import deep_lift_shap as tangermeme_deep_lift_shap

    from .attribution import frozen, predicted_scalars

    start, end = int(window[0]), int(window[1])
    device = next(model.parameters()).device
    precision, model.precision = getattr(model, "precision", "fp32"), "fp32"  # sums to the delta in float32 only
    references = references_for(onehot, (start, end), n_shuffles, seed)
    weights = torch.as_tensor(np.asarray(track_weights, dtype=np.float32), device=device)
    n_regions, n_scalars = len(onehot), len(weights)
    hypothetical = np.zeros((n_regions, n_scalars, end - start, 4), dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(onehot, dtype=np.float32).transpose(0, 2, 1)))
    refs = torch.from_numpy(np.ascontiguousarray(references.transpose(0, 1, 3, 2)))
    bins = torch.from_numpy(np.asarray(bin_weights, dtype=np.float32))
    try:
        scalar_model = _ScalarModel(model, weights).eval()  # tangermeme restores the mode it finds
        with deeplift_rules(model) as rules, frozen(model), warnings.catch_warnings():
            # tangermeme warns about inputs that are not one-hot (padding past a chromosome end
            # in the flanks) and about convergence deltas; the deltas are measured below
            warnings.simplefilter("ignore")
            for k in range(n_scalars):
                attributions = tangermeme_deep_lift_shap(
                    scalar_model, x, args=(bins,), target=k, batch_size=batch_size, references=refs,
                    hypothetical=True, additional_nonlinear_ops=rules, only_warn=True, device=device)
                hypothetical[:, k] = attributions[:, :, start:end].transpose(1, 2).numpy()
        scalars = predicted_scalars(model, onehot, bin_weights, track_weights)
        flat = references.reshape(-1, *references.shape[2:])
        reference_scalars = predicted_scalars(model, flat, np.repeat(bin_weights, n_shuffles, axis=0),
                                              track_weights).reshape(n_regions, n_shuffles, n_scalars).mean(1)
    finally:
        model.precision = precision
    actual = hypothetical * np.asarray(onehot[:, None, start:end], dtype=np.float32)
    error = np.abs(actual.sum(axis=(2, 3)) - (scalars - reference_scalars))
    return DeepLiftResult(hypothetical, scalars, reference_scalars, error)
