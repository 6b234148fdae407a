"""Predictions back on the coverage scale: the inverse of the targets' transform (data/transform.py)
per track, from the parameters in the head's tracks (clip_soft, scale, sum_stat) and the dataset's
transform order, as baskerville's ``untransform_preds`` (new order) and ``untransform_preds1``
(old order) undo them before scoring variants.

Forward, per bin (docs/dataset.md):

    old: y = scale * softclip(stat(x)),   softclip(v) = cs + sqrt(v - cs) above cs,
         stat of a *_sqrt track: s ** 0.75
    new: y = softclip(stat(scale * x)),   softclip(v) = cs - 1 + sqrt(v - cs + 1) above cs,
         stat of a *_sqrt track: -1 + sqrt(1 + s)

Inverse (``coverage``): the steps undone in reverse order, ending with the division by ``scale``,
so a mean track gives the bin's mean coverage. ``scaled`` keeps the factor ``scale``, as
baskerville does by default (``unscale=False``). A ``peak`` track (clip(sqrt(4 mean), 0, 1), not a
Basenji statistic) is inverted as ``y ** 2 / 4``. The hard clip cannot be undone: a prediction at
the clip stays there. Predictions are clipped at 0 first (every inverse is then defined).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..data.transform import TrackParams

Scale = Literal["coverage", "scaled", "transformed"]
SQRT_STATS = ("sum_sqrt", "mean_sqrt")


@dataclass(frozen=True)
class Untransform:
    """``(..., tracks)`` predictions of the head -> the same on the coverage scale."""

    params: TrackParams
    order: Literal["old", "new"] = "old"
    keep_scale: bool = False  # baskerville's default: soft clip and sqrt undone, scale kept

    def __call__(self, predictions: np.ndarray) -> np.ndarray:
        y = np.maximum(np.asarray(predictions, dtype=np.float64), 0)
        scale = self.params.scale
        if self.order == "old":
            y = y / scale
        soft = np.flatnonzero(~np.isnan(self.params.clip_soft))
        if len(soft):
            cs = self.params.clip_soft[soft]
            part = y[..., soft]
            if self.order == "old":
                unclipped = cs + (part - cs) ** 2
            else:
                unclipped = cs - 1 + (part - cs + 1) ** 2
            y[..., soft] = np.where(part > cs, unclipped, part)
        stats = np.asarray(self.params.sum_stat)
        sqrt = np.flatnonzero(np.isin(stats, SQRT_STATS))
        if len(sqrt):
            y[..., sqrt] = y[..., sqrt] ** (4 / 3) if self.order == "old" else -1 + (y[..., sqrt] + 1) ** 2
        peak = np.flatnonzero(stats == "peak")
        if len(peak):
            y[..., peak] = y[..., peak] ** 2 / 4
        if self.order == "new":
            y = y / scale
        return y * scale if self.keep_scale else y


def untransform_for(scale: Scale, params: TrackParams, order: str) -> Untransform | None:
    """The inverse for ``--scale`` (None for ``transformed``: the head's own output)."""
    if scale == "transformed":
        return None
    return Untransform(params, order, keep_scale=scale == "scaled")
