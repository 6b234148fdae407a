"""Attribution of the end-to-end model's outputs to its input bases: input gradients and exact
in-silico mutagenesis, for several attributed scalars at once.

The attributed scalars of a batch of inputs are ``S[b, k] = sum_bins bin_weights[b, bin] *
sum_tracks track_weights[k, track] * model(x)[b, bin, track]``: a track summed over the output
bins of a region (``track_weights`` one-hot), or a contrast of two tracks (+1 / -1).

Both methods exploit one property of Enformer (``TrunkSplit``, from the backbone's family): its
stem and convolution tower are translation-equivariant with a receptive field of a few hundred bp, and only the
transformer above them mixes distant positions. So

- the input gradient over a window (a few kb of a 196-kb input) is computed exactly by one
  forward pass, one backward pass through the transformer and the head per attributed scalar
  (batched across scalars: ``is_grads_batched``), and a backward pass through the tower over
  the window plus twice the receptive field only;
- a mutant of a base in the window changes the tower's output only within a receptive field
  of it, so each mutant runs the tower on that crop, spliced into the reference's tower output,
  and then the transformer and head.

Results equal direct autograd / explicit mutant predictions through ``model(x)`` up to float
rounding (tests/test_contributions.py checks both). A trunk of another shape falls back to
the direct computation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..backbone.base import TrunkSplit
from ..devices import autocast


def trunk_split(model: nn.Module) -> TrunkSplit | None:
    """Where the trunk of ``model`` (a SequenceModel) starts to mix positions, as its backbone
    family says; None for a trunk of no known family or of another layout (direct computation)."""
    family = getattr(model, "family", None)
    return family.split(model.trunk) if family is not None else None


def attributed_scalars(outputs: torch.Tensor, bin_weights: torch.Tensor, track_weights: torch.Tensor) -> torch.Tensor:
    """(B, bins, tracks) predictions -> (B, K) attributed scalars."""
    return torch.einsum("bnt,bn,kt->bk", outputs.float(), bin_weights, track_weights)


def hypothetical_from_gradients(gradients: np.ndarray) -> np.ndarray:
    """Input gradients (..., 4) mean-centred over the four bases at each position: the
    component of the gradient along the one-hot simplex (Majdandzic et al. 2023)."""
    return gradients - gradients.mean(axis=-1, keepdims=True)


def actual_from_hypothetical(hypothetical: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """Actual contributions: the hypothetical contribution of the base present ((..., L, 4) x
    one-hot (B, L, 4) broadcast over the scalars' axis)."""
    return hypothetical * onehot[:, None]


class _Inputs:
    def __init__(self, model: nn.Module, onehot, bin_weights, track_weights):
        self.device = next(model.parameters()).device
        self.x = torch.as_tensor(np.asarray(onehot, dtype=np.float32), device=self.device)
        self.bin_weights = torch.as_tensor(np.asarray(bin_weights, dtype=np.float32), device=self.device)
        self.track_weights = torch.as_tensor(np.asarray(track_weights, dtype=np.float32), device=self.device)
        self.precision = getattr(model, "precision", "fp32")


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """The model's parameters without gradients within the block: a backward pass then computes
    the input's gradient only (with batched cotangents, weight gradients cost 15x more)."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def _head(model: nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
    return model.head(embeddings.float()).float()


def _vjp(outputs: torch.Tensor, inputs: torch.Tensor, cotangents: torch.Tensor) -> torch.Tensor:
    """(K, *inputs.shape): the gradient of ``outputs`` against each of K cotangents, in one
    batched backward pass (vmap over the backward graph); a loop where an operation of the
    model has no batching rule."""
    try:
        return torch.autograd.grad(outputs, inputs, grad_outputs=cotangents, is_grads_batched=True,
                                   retain_graph=True)[0]
    except RuntimeError:  # pragma: no cover - an operation without a vmap rule
        return torch.stack([torch.autograd.grad(outputs, inputs, grad_outputs=c, retain_graph=True)[0]
                            for c in cotangents])


def input_gradients(model: nn.Module, onehot: np.ndarray, bin_weights: np.ndarray, track_weights: np.ndarray,
                    window: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of every attributed scalar with respect to the input over ``window``.

    ``onehot`` (B, L, 4); ``bin_weights`` (B, bins); ``track_weights`` (K, tracks); returns
    (gradients (B, K, window length, 4) float32, scalars (B, K) float32). One forward pass
    serves all K scalars; their backward passes are batched."""
    inputs = _Inputs(model, onehot, bin_weights, track_weights)
    x, start, end = inputs.x, int(window[0]), int(window[1])
    n_scalars, batch = inputs.track_weights.shape[0], x.shape[0]
    eye = torch.eye(n_scalars, device=x.device)[:, None, :].expand(n_scalars, batch, n_scalars)
    split = trunk_split(model)
    with frozen(model), torch.enable_grad(), autocast(x.device, inputs.precision):
        if split is None:
            x = x.detach().requires_grad_()
            scalars = attributed_scalars(model(x), inputs.bin_weights, inputs.track_weights)
            grads = _vjp(scalars, x, eye)[:, :, start:end]
        else:
            with torch.no_grad():
                local = split.local(x)
            local = local.detach().requires_grad_()
            scalars = attributed_scalars(_head(model, split.rest(local)), inputs.bin_weights, inputs.track_weights)
            local_grads = _vjp(scalars, local, eye)  # (K, B, channels, positions)
            a, b = split.crop(start, end, x.shape[1])
            crop = x[:, a:b].detach().requires_grad_()
            crop_local = split.local(crop)
            cotangents = local_grads[..., a // split.stride : b // split.stride].to(crop_local.dtype).contiguous()
            grads = _vjp(crop_local, crop, cotangents)[:, :, start - a : end - a]
    return (grads.transpose(0, 1).float().cpu().numpy(), scalars.detach().float().cpu().numpy())


def predicted_scalars(model: nn.Module, onehot: np.ndarray, bin_weights: np.ndarray,
                      track_weights: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """(B, K) attributed scalars of inputs (B, L, 4), through ``model(x)``."""
    out = []
    for i in range(0, len(onehot), batch_size):
        inputs = _Inputs(model, onehot[i : i + batch_size], bin_weights[i : i + batch_size], track_weights)
        with torch.inference_mode():
            out.append(attributed_scalars(model(inputs.x), inputs.bin_weights, inputs.track_weights).cpu().numpy())
    return np.concatenate(out)


def mutants(onehot: np.ndarray, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Every single-base change in [start, end): (positions, bases), in position order. A
    position whose input is one-hot gets its 3 other bases; an N or padded position all 4."""
    window = onehot[start:end]
    present = window == 1
    no_base = ~present.any(axis=1)
    present[no_base] = False
    positions, bases = np.nonzero(~present)
    return positions + start, bases


def in_silico_mutagenesis(model: nn.Module, onehot: np.ndarray, bin_weights: np.ndarray,
                          track_weights: np.ndarray, window: tuple[int, int],
                          batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Exact ISM of the window: for every single-base change, the change of every attributed
    scalar from the unmutated input's. Returns (deltas (B, K, window length, 4), with 0 at the
    base present; scalars (B, K) of the unmutated inputs)."""
    start, end = int(window[0]), int(window[1])
    inputs = _Inputs(model, onehot, bin_weights, track_weights)
    n_regions, n_scalars = inputs.x.shape[0], inputs.track_weights.shape[0]
    deltas = np.zeros((n_regions, n_scalars, end - start, 4), dtype=np.float32)
    scalars = np.zeros((n_regions, n_scalars), dtype=np.float32)
    split = trunk_split(model)
    for r in range(n_regions):
        positions, bases = mutants(np.asarray(onehot[r]), start, end)
        run = _MutantRunner(model, split, inputs, r, start, end)
        scalars[r] = run(positions[:0], bases[:0])[0]
        for i in range(0, len(positions), batch_size):
            p, b = positions[i : i + batch_size], bases[i : i + batch_size]
            out = run(p, b)  # the unmutated input first: each batch's deltas against its own reference row
            deltas[r, :, p - start, b] = out[1:] - out[0]
    return deltas, scalars


class _MutantRunner:
    """Scalars of mutants of one input: the unmutated input first, then one mutant per
    (position, base); through the crop of the tower when the trunk splits."""

    def __init__(self, model, split: TrunkSplit | None, inputs: _Inputs, r: int, start: int, end: int):
        self.model, self.split, self.inputs = model, split, inputs
        self.x = inputs.x[r]
        self.bin_weights = inputs.bin_weights[r : r + 1]
        if split is not None:
            length = self.x.shape[0]
            self.a, self.b = split.crop(start, end, length)
            self.p, self.q = split.affected(start, end, length)
            with torch.inference_mode(), autocast(self.x.device, inputs.precision):
                self.local = split.local(self.x[None])

    @torch.inference_mode()
    def __call__(self, positions: np.ndarray, bases: np.ndarray) -> np.ndarray:
        device, split = self.x.device, self.split
        rows = torch.arange(len(positions) + 1, device=device)[1:]
        at = torch.as_tensor(positions, device=device, dtype=torch.long)
        to = torch.as_tensor(bases, device=device, dtype=torch.long)
        with autocast(device, self.inputs.precision):
            if split is None:
                x = self.x[None].repeat(len(positions) + 1, 1, 1)
                x[rows, at] = 0.0
                x[rows, at, to] = 1.0
                outputs = self.model(x)
            else:
                crop = self.x[None, self.a : self.b].repeat(len(positions) + 1, 1, 1)
                crop[rows, at - self.a] = 0.0
                crop[rows, at - self.a, to] = 1.0
                local = self.local.expand(len(crop), -1, -1).clone()
                offset = self.a // split.stride
                local[..., self.p : self.q] = split.local(crop)[..., self.p - offset : self.q - offset].to(local.dtype)
                outputs = _head(self.model, split.rest(local))
        weights = self.bin_weights.expand(len(outputs), -1)
        return attributed_scalars(outputs, weights, self.inputs.track_weights).float().cpu().numpy()
