"""``VariantScorer``: reference and alternative inputs of variants through the end-to-end model in
batches, predictions averaged over strands, scores averaged over shifts.

Work is laid out per chunk of variants: one reference pass per distinct reference input (all
variants with the same input window share it: the alleles of a multi-allelic site, for
example), one alternative pass per variant, each times the shifts and (with ``rc``) the two
strands. A reference and its alternatives are consecutive, so they go through the model in
the same batch unless a batch boundary falls between them. The next batch's one-hot inputs are
built in a thread while the model runs on the current one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .alleles import (
    allele_inputs,
    context_span,
    reference_start,
    reverse_complement,
    shuffled_context,
)
from .scores import empirical_p, variant_scores

Maker = Callable[[], list[np.ndarray]]


class VariantScorer:
    """Scores of variants (rows with genome_chrom, pos, ref, alt, index) for a ``SequenceModel``."""

    def __init__(self, model, genome, geometry, pad_value: float, stats: list[str], shifts: list[int],
                 rc: bool = False, partners: np.ndarray | None = None, batch_size: int = 8,
                 null_shuffles: int = 0, seed: int = 0):
        self.model, self.genome, self.geometry = model, genome, geometry
        self.pad_value, self.stats, self.shifts = pad_value, list(stats), list(shifts)
        self.rc, self.partners, self.batch_size = rc, partners, batch_size
        self.null_shuffles, self.seed = null_shuffles, seed
        self.margin = max(abs(k) for k in self.shifts)
        self.device = next(model.parameters()).device
        self.sequences = 0  # forward passes so far (sequences, all strands and shifts)

    # --- inputs ----------------------------------------------------------------------------

    def context(self, variant) -> np.ndarray:
        start, end = context_span(variant.pos, variant.ref, variant.alt, self.geometry.seq_length, self.margin)
        return self.genome.one_hot(variant.genome_chrom, start, end, self.pad_value)

    def inputs(self, variant, context: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ref, alt) inputs of a variant, each (shifts, seq_length, 4)."""
        context = self.context(variant) if context is None else context
        return allele_inputs(context, variant.ref, variant.alt, self.geometry.seq_length, self.margin, self.shifts)

    def null_inputs(self, variant, draw: int) -> tuple[np.ndarray, np.ndarray]:
        """(ref, alt) inputs of the variant in a dinucleotide-shuffled copy of its context, seeded by
        the run's seed, the variant's index and the draw: the same whatever the chunking or rank."""
        rng = np.random.default_rng([self.seed, int(variant.index), draw])
        centre = self.geometry.seq_length // 2 + self.margin
        shuffled = shuffled_context(self.context(variant), slice(centre, centre + len(variant.ref)), rng)
        return self.inputs(variant, shuffled)

    # --- the model -------------------------------------------------------------------------

    def predict(self, makers: list[Maker], n_blocks: int) -> np.ndarray:
        """Run every block the makers return (in order, block ids 0, 1, ...), each (shifts, L, 4),
        through the model; (n_blocks, shifts, bins, tracks) float32, forward strand orientation,
        averaged over strands."""
        import torch

        strands = 2 if self.rc else 1
        out = None
        batches = self._batches(makers)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(next, batches, None)
            while (item := pending.result()) is not None:
                pending = pool.submit(next, batches, None)
                slots, x = item
                with torch.inference_mode():
                    pred = self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
                self.sequences += len(x)
                if out is None:
                    out = np.zeros((n_blocks, len(self.shifts), pred.shape[1], pred.shape[2]), dtype=np.float32)
                for (block, shift, strand), p in zip(slots, pred, strict=True):
                    if strand:  # back to forward orientation: bins reversed, strands of stranded tracks swapped
                        p = p[::-1] if self.partners is None else p[::-1][:, self.partners]
                    out[block, shift] += p / strands
        return out

    def _batches(self, makers: list[Maker]) -> Iterator[tuple[list, np.ndarray]]:
        slots, xs = [], []
        block = 0
        for make in makers:
            for inputs in make():
                for shift, x in enumerate(inputs):
                    for strand in range(2 if self.rc else 1):
                        slots.append((block, shift, strand))
                        xs.append(reverse_complement(x) if strand else x)
                        if len(xs) == self.batch_size:
                            yield slots, np.stack(xs)
                            slots, xs = [], []
                block += 1
        if xs:
            yield slots, np.stack(xs)

    # --- scores ----------------------------------------------------------------------------

    def score(self, variants: pd.DataFrame) -> dict[str, np.ndarray]:
        """{name: (variants, tracks) float32}: ref_sum, alt_sum, each stat and, with a null, each
        stat's empirical p-value (``STAT_p``)."""
        rows = list(variants.itertuples(index=False))
        makers: list[Maker] = []
        ref_block, alt_block, blocks = [], [], 0
        shared: dict[tuple[str, int], int] = {}
        for v in rows:
            group = (v.genome_chrom, reference_start(v.pos, v.ref, v.alt, self.geometry.seq_length))
            if group in shared:
                makers.append(lambda v=v: [self.inputs(v)[1]])
                ref_block.append(shared[group])
                alt_block.append(blocks)
                blocks += 1
            else:
                makers.append(lambda v=v: list(self.inputs(v)))
                shared[group] = blocks
                ref_block.append(blocks)
                alt_block.append(blocks + 1)
                blocks += 2
        null_first = blocks
        for v in rows:
            for draw in range(self.null_shuffles):
                makers.append(lambda v=v, draw=draw: list(self.null_inputs(v, draw)))
                blocks += 2
        preds = np.maximum(self.predict(makers, blocks), 0)
        result = variant_scores(preds[ref_block], preds[alt_block], self.stats)
        if self.null_shuffles:
            null = preds[null_first:].reshape((len(rows), self.null_shuffles, 2) + preds.shape[1:])
            null_scores = variant_scores(null[:, :, 0], null[:, :, 1], self.stats)
            for stat in self.stats:
                result[f"{stat}_p"] = empirical_p(result[stat], null_scores[stat])
        return {name: values.astype(np.float32) for name, values in result.items()}

    def profiles(self, variant) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (bins, tracks) reference and alternative profiles of one variant, averaged over
        strands and shifts (clipped at 0, as scored)."""
        preds = np.maximum(self.predict([lambda: list(self.inputs(variant))], 2), 0)
        return preds[0].mean(axis=0), preds[1].mean(axis=0)
