"""DeepLIFT/SHAP for the end-to-end model (tangermeme's ``deep_lift_shap``), with a rule for
every non-linear operation of enformer-pytorch's Enformer and our heads.

tangermeme attaches DeepLIFT rules to ``torch.nn`` modules. Enformer computes three of its
non-linear operations as bare function calls, which such a rule cannot see and which would
be treated as linear (the summation-to-delta property then fails, silently):

- ``AttentionPool``: softmax over each pair of positions, then ``x * attention`` summed;
- ``Attention``: ``einsum(q, k)``, softmax, ``einsum(attention, v)``;
- its own ``GELU`` class (``x * sigmoid(1.702 x)``), not ``torch.nn.GELU``.

``enformer_rules(model)`` swaps each AttentionPool and Attention for a module computing the
same values with ``torch.nn.Softmax`` (tangermeme's exact softmax rule) and
``tangermeme.deep_lift_shap.BilinearOp`` (the midpoint product rule, exact for products), and
registers the rescale rule for Enformer's GELU. The remaining layers already have exact rules
or are linear: LayerNorm (tangermeme's rule), ReLU and Softplus (rescale), torch GELU (the
MLP head; rescale), convolutions, BatchNorm in eval mode, linear layers, residual sums,
cropping and rearranging (linear). The composition of exact rules is exact, so the
contributions sum to the output's difference from the references; ``deep_lift_shap`` below
measures it per region and scalar.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from torch import nn


class _AttentionPoolRule(nn.Module):
    """enformer-pytorch's AttentionPool with a hookable softmax and product."""

    def __init__(self, pool: nn.Module):
        from tangermeme.deep_lift_shap import BilinearOp

        super().__init__()
        self.pool = pool
        self.softmax = nn.Softmax(dim=-1)
        self.product = BilinearOp("...,...->...")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = self.pool
        b, _, n = x.shape
        remainder = n % pool.pool_size
        if remainder:
            x = nn.functional.pad(x, (0, remainder), value=0)
            mask = nn.functional.pad(torch.zeros((b, 1, n), dtype=torch.bool, device=x.device), (0, remainder),
                                     value=True)
        x = pool.pool_fn(x)
        logits = pool.to_attn_logits(x)
        if remainder:
            logits = logits.masked_fill(pool.pool_fn(mask), -torch.finfo(logits.dtype).max)
        return self.product(x, self.softmax(logits)).sum(dim=-1)


class _AttentionRule(nn.Module):
    """enformer-pytorch's Attention with hookable products and softmax (same parameters)."""

    def __init__(self, attention: nn.Module):
        from tangermeme.deep_lift_shap import BilinearOp

        super().__init__()
        self.attention = attention
        self.content = BilinearOp("b h i d, b h j d -> b h i j")
        self.softmax = nn.Softmax(dim=-1)
        self.mix = BilinearOp("b h i j, b h j d -> b h i d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from enformer_pytorch.modeling_enformer import get_positional_embed, relative_shift

        a = self.attention
        n, h = x.shape[-2], a.heads
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=h) for t in (a.to_q(x), a.to_k(x), a.to_v(x)))
        q = q * a.scale
        content_logits = self.content(q + a.rel_content_bias, k)
        positions = a.pos_dropout(get_positional_embed(n, a.num_rel_pos_features, x.device,
                                                       use_tf_gamma=a.use_tf_gamma, dtype=a.to_rel_k.weight.dtype))
        rel_k = rearrange(a.to_rel_k(positions), "n (h d) -> h n d", h=h)  # does not depend on the input: linear
        rel_logits = relative_shift(torch.einsum("b h i d, h j d -> b h i j", q + a.rel_pos_bias, rel_k))
        attention = a.attn_dropout(self.softmax(content_logits + rel_logits))
        out = rearrange(self.mix(attention, v), "b h n d -> b n (h d)")
        return a.to_out(out)


@contextlib.contextmanager
def enformer_rules(model: nn.Module) -> Iterator[dict]:
    """Within the block, ``model``'s AttentionPool and Attention modules are replaced by their
    rule-carrying twins (same parameters, same outputs); yields the extra rules for
    tangermeme's ``additional_nonlinear_ops``. The model is restored on exit."""
    from enformer_pytorch.modeling_enformer import GELU, Attention, AttentionPool
    from tangermeme.deep_lift_shap import _nonlinear as rescale_rule

    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AttentionPool):
                twin = _AttentionPoolRule(child)
            elif isinstance(child, Attention):
                twin = _AttentionRule(child)
            else:
                continue
            setattr(parent, name, twin)
            swapped.append((parent, name, child))
    try:
        yield {GELU: rescale_rule}
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)


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
        with enformer_rules(model) as rules, frozen(model), warnings.catch_warnings():
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
