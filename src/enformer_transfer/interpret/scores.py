"""Variant scores, named and defined as Basenji / baskerville's variant scoring names them
(``baskerville/snps.py::compute_scores``), plus specificity across cell types and empirical
p-values. Plain NumPy: the stage and the tests use the same functions.

Inputs are predictions ``ref``, ``alt`` of shape (..., shifts, bins, tracks), already averaged
over strands and clipped at 0 (tracks are coverage; a ridge head's linear output can dip below
0, and the log scores need values >= 0). Every score is computed per shift and then averaged
over shifts, as baskerville does; sums run over all output bins of one track:

    ref_sum = sum(ref)                     alt_sum = sum(alt)
    SUM     = sum(alt) - sum(ref)
    logSUM  = sum(log2(alt + 1)) - sum(log2(ref + 1))
    logSED  = log2(sum(alt) + 1) - log2(sum(ref) + 1)
    SAX     = (alt - ref) at the bin of largest |alt - ref|
    D1      = sum(|alt - ref|)
    D2      = sqrt(sum((alt - ref)^2))
    JS      = (KL(r || a) + KL(a || r)) / 2, natural log, with r = (ref + c) / sum(ref + c),
              a = (alt + c) / sum(alt + c) and c the 25th percentile of ref over the bins
              (baskerville's "JS": a symmetrised Kullback-Leibler divergence of the profiles),
              capped at the float16 maximum (JS_CAP) where a zero pseudocount makes it infinite

``StrandMerge`` sums the two strands of each stranded pair into one column afterwards, as
baskerville's ``strand_transform`` does: every score added, D2 in quadrature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..rundir.store import FLOAT16_MAX

STATS = ("SUM", "logSUM", "logSED", "SAX", "D1", "D2", "JS")
SUMS = ("ref_sum", "alt_sum")
# baskerville clips every score to the float16 range before storing it; JS is the one score that
# can be infinite (c = 0 and a bin where ref is 0 but alt is not), so it gets the same finite cap
JS_CAP = FLOAT16_MAX


def variant_scores(ref: np.ndarray, alt: np.ndarray, stats: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """{name: (..., tracks)} for ``ref_sum``, ``alt_sum`` and each of ``stats``, from predictions
    (..., shifts, bins, tracks); the module docstring defines each."""
    ref = np.asarray(ref, dtype=np.float64)
    alt = np.asarray(alt, dtype=np.float64)
    bins = -2
    ref_total, alt_total = ref.sum(axis=bins), alt.sum(axis=bins)  # (..., shifts, tracks)
    diff = alt - ref
    per_shift = {"ref_sum": ref_total, "alt_sum": alt_total}
    for stat in stats:
        if stat == "SUM":
            per_shift[stat] = alt_total - ref_total
        elif stat == "logSUM":
            per_shift[stat] = np.log2(alt + 1).sum(axis=bins) - np.log2(ref + 1).sum(axis=bins)
        elif stat == "logSED":
            per_shift[stat] = np.log2(alt_total + 1) - np.log2(ref_total + 1)
        elif stat == "SAX":
            at = np.expand_dims(np.abs(diff).argmax(axis=bins), bins)
            per_shift[stat] = np.take_along_axis(diff, at, axis=bins).squeeze(bins)
        elif stat == "D1":
            per_shift[stat] = np.abs(diff).sum(axis=bins)
        elif stat == "D2":
            per_shift[stat] = np.sqrt((diff**2).sum(axis=bins))
        elif stat == "JS":
            per_shift[stat] = _symmetric_kl(ref, alt)
        else:
            raise ValueError(f"unknown variant score {stat!r} (known: {', '.join(STATS)})")
    scores = {name: values.mean(axis=-2) for name, values in per_shift.items()}  # mean over shifts
    if "JS" in scores:
        scores["JS"] = np.minimum(scores["JS"], JS_CAP)
    return scores


def _symmetric_kl(ref: np.ndarray, alt: np.ndarray) -> np.ndarray:
    pseudocount = np.percentile(ref, 25, axis=-2, keepdims=True)
    r = _normalise(ref + pseudocount)
    a = _normalise(alt + pseudocount)
    return (_relative_entropy(r, a).sum(axis=-2) + _relative_entropy(a, r).sum(axis=-2)) / 2


def _normalise(profile: np.ndarray) -> np.ndarray:
    total = profile.sum(axis=-2, keepdims=True)
    flat = np.full_like(profile, 1.0 / profile.shape[-2])  # a profile of zeros: uniform
    return np.divide(profile, total, out=flat, where=total > 0)


def _relative_entropy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x log(x / y), 0 where x = 0 (scipy.special.rel_entr)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * np.log(x / y)
    return np.where(x > 0, out, 0.0)


@dataclass(frozen=True)
class StrandMerge:
    """One column per stranded pair (and per unstranded track), in the order of each pair's first
    track: ``first`` and ``second`` are the positions of the two strands in the head's tracks
    (equal for an unstranded track), ``named`` the one whose row names the column (the ``+``
    strand when the identifiers say so, as baskerville keeps the row that is not ``-``)."""

    first: np.ndarray
    second: np.ndarray
    named: np.ndarray

    @classmethod
    def from_partners(cls, partners: np.ndarray, identifiers: list[str]) -> StrandMerge:
        """From each track's other strand (``targets.strand_partners``; itself when unstranded)."""
        first, second, named = [], [], []
        for track, other in enumerate(partners):
            if other < track and partners[other] == track:
                continue  # the second strand of a pair already taken
            first.append(track)
            second.append(int(other))
            minus = identifiers[track].endswith("-") and not identifiers[other].endswith("-")
            named.append(int(other) if minus else track)
        return cls(np.array(first), np.array(second), np.array(named))

    @property
    def pairs(self) -> np.ndarray:
        return np.flatnonzero(self.first != self.second)

    def tracks(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """The rows that name the merged columns."""
        return tracks.iloc[self.named].reset_index(drop=True)

    def scores(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{name: (..., columns)} from {name: (..., tracks)}: the two strands' scores added, D2 as
        sqrt(D2_a^2 + D2_b^2) (baskerville: ``strand_clip_save(..., d2=True)``), JS capped again."""
        out = {}
        for name, value in values.items():
            a, b = value[..., self.first], value[..., self.second]
            single = self.first == self.second
            if name == "D2":
                merged = np.sqrt(a**2 + b**2)
            else:
                merged = a + b
                if name == "JS":
                    merged = np.minimum(merged, JS_CAP)
            out[name] = np.where(single, a, merged)
        return out

    def profiles(self, values: np.ndarray) -> np.ndarray:
        """(..., tracks) predictions -> (..., columns): the two strands' coverage added."""
        return np.where(self.first == self.second, values[..., self.first],
                        values[..., self.first] + values[..., self.second])


def specificity(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """z-score of each track's score among the tracks of its group (one level of the hierarchy):
    (score - mean) / std over the group's tracks (population std), per variant. ``scores``:
    (variants, tracks); NaN where the group has fewer than two tracks or no spread."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full_like(scores, np.nan)
    for group in dict.fromkeys(groups):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        part = scores[:, members]
        mean = part.mean(axis=1, keepdims=True)
        std = part.std(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, members] = np.where(std > 0, (part - mean) / np.where(std > 0, std, 1.0), np.nan)
    return out


def empirical_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """(1 + #{|null| >= |observed|}) / (N + 1) per entry; ``observed`` (..., tracks), ``null``
    (..., N, tracks): the N null scores of the same variant and track."""
    observed = np.abs(np.asarray(observed))[..., None, :]
    exceed = (np.abs(np.asarray(null)) >= observed).sum(axis=-2)
    return (1 + exceed) / (np.asarray(null).shape[-2] + 1)
