"""``VariantScorer``: reference and alternative inputs of variants through the end-to-end model in
batches, predictions averaged over strands, scores averaged over shifts.

Work is laid out per chunk of variants: one reference pass per distinct reference input (all
variants with the same input window share it: the alleles of a multi-allelic site, for
example), one alternative pass per variant, each times the shifts and (with ``rc``) the two
strands. A reference and its alternatives are consecutive, so they go through the model in
the same batch unless a batch boundary falls between them. The next batch's one-hot inputs are
built in a thread while the model runs on the current one.

baskerville's conventions, each chosen by the stage (docs/variants.md): ``offset`` moves every
window (-1: baskerville's placement), ``untransform`` puts predictions back on the coverage
scale before scoring, ``merge`` sums stranded pairs into one column after scoring, and a
variant flipped for a REF mismatch is predicted with the genome's allele as its reference input
and scored ALT - REF as its VCF states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .alleles import (
    allele_inputs,
    context_span,
    genome_alleles,
    reference_start,
    reverse_complement,
    shuffled_context,
)
from .scores import StrandMerge, empirical_p, variant_scores

Maker = Callable[[], list[np.ndarray]]


class VariantScorer:
    """Scores of variants (rows with genome_chrom, pos, ref, alt, index) for a ``SequenceModel``."""

    def __init__(self, model, genome, geometry, pad_value: float, stats: list[str], shifts: list[int],
                 rc: bool = False, partners: np.ndarray | None = None, batch_size: int = 8,
                 null_shuffles: int = 0, seed: int = 0, offset: int = 0,
                 untransform: Callable[[np.ndarray], np.ndarray] | None = None, merge: StrandMerge | None = None,
                 genes: Callable[[pd.DataFrame, np.ndarray, np.ndarray], dict[str, np.ndarray]] | None = None):
        self.model, self.genome, self.geometry = model, genome, geometry
        self.pad_value, self.stats = pad_value, list(stats)
        self.offset = offset  # the placement: every window moved as by this extra shift
        self.shifts = [k + offset for k in shifts]  # the shifts the inputs are cut with
        self.rc, self.partners, self.batch_size = rc, partners, batch_size
        self.null_shuffles, self.seed = null_shuffles, seed
        self.untransform, self.merge = untransform, merge
        self.genes = genes  # gene_scores.GeneScorer: gene-level scores from the same predictions
        self.margin = max(abs(k) for k in self.shifts)
        self.device = next(model.parameters()).device
        self.sequences = 0  # forward passes so far (sequences, all strands and shifts)

    # --- inputs ----------------------------------------------------------------------------

    def context(self, variant) -> np.ndarray:
        start, end = context_span(variant.pos, *genome_alleles(variant), self.geometry.seq_length, self.margin)
        return self.genome.one_hot(variant.genome_chrom, start, end, self.pad_value)

    def inputs(self, variant, context: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(genome allele, other allele) inputs of a variant, each (shifts, seq_length, 4): (ref, alt)
        unless the variant is flipped."""
        context = self.context(variant) if context is None else context
        return allele_inputs(context, *genome_alleles(variant), self.geometry.seq_length, self.margin, self.shifts)

    def null_inputs(self, variant, draw: int) -> tuple[np.ndarray, np.ndarray]:
        """(ref, alt) inputs of the variant in a dinucleotide-shuffled copy of its context, seeded by
        the run's seed, the variant's index and the draw: the same whatever the chunking or rank."""
        rng = np.random.default_rng([self.seed, int(variant.index), draw])
        centre = self.geometry.seq_length // 2 + self.margin
        kept = slice(centre, centre + len(genome_alleles(variant)[0]))
        shuffled = shuffled_context(self.context(variant), kept, rng)
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
        """{name: (variants, columns) float32}: ref_sum, alt_sum, each stat and, with a null, each
        stat's empirical p-value (``STAT_p``); one column per track, or per strand pair when merged.
        With ``genes`` (``gene_scores.GeneScorer``) also its ``gene_*`` arrays, one row per
        (variant, gene) pair of the chunk, from the same predictions."""
        rows = list(variants.itertuples(index=False))
        makers: list[Maker] = []
        genome_block, other_block, blocks = [], [], 0
        shared: dict[tuple[str, int], int] = {}
        for v in rows:
            group = (v.genome_chrom, reference_start(v.pos, *genome_alleles(v), self.geometry.seq_length))
            if group in shared:
                makers.append(lambda v=v: [self.inputs(v)[1]])
                genome_block.append(shared[group])
                other_block.append(blocks)
                blocks += 1
            else:
                makers.append(lambda v=v: list(self.inputs(v)))
                shared[group] = blocks
                genome_block.append(blocks)
                other_block.append(blocks + 1)
                blocks += 2
        null_first = blocks
        for v in rows:
            for draw in range(self.null_shuffles):
                makers.append(lambda v=v, draw=draw: list(self.null_inputs(v, draw)))
                blocks += 2
        preds = self._coverage(self.predict(makers, blocks))
        flipped = np.array([bool(getattr(v, "flipped", False)) for v in rows])
        # a flipped variant's genome allele is its VCF ALT: its reference input is the other one
        ref_block = np.where(flipped, other_block, genome_block)
        alt_block = np.where(flipped, genome_block, other_block)
        result = self._merged(variant_scores(preds[ref_block], preds[alt_block], self.stats))
        if self.null_shuffles:
            null = preds[null_first:].reshape((len(rows), self.null_shuffles, 2) + preds.shape[1:])
            swap = flipped.reshape((-1,) + (1,) * (null.ndim - 2))  # (variants, 1, 1, 1, 1)
            null_ref = np.where(swap, null[:, :, 1], null[:, :, 0])
            null_alt = np.where(swap, null[:, :, 0], null[:, :, 1])
            null_scores = self._merged(variant_scores(null_ref, null_alt, self.stats))
            for stat in self.stats:
                result[f"{stat}_p"] = empirical_p(result[stat], null_scores[stat])
        result = {name: values.astype(np.float32) for name, values in result.items()}
        if self.genes is not None:
            result.update(self.genes(variants, preds[ref_block], preds[alt_block]))
        return result

    def _coverage(self, preds: np.ndarray) -> np.ndarray:
        """Predictions clipped at 0 (tracks are coverage; a ridge head's linear output can dip below
        0), then untransformed when asked (float32: a chunk's predictions are large)."""
        preds = np.maximum(preds, 0)
        return preds if self.untransform is None else self.untransform(preds).astype(np.float32)

    def _merged(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return scores if self.merge is None else self.merge.scores(scores)

    def profiles(self, variant) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (bins, columns) reference and alternative profiles of one variant, averaged over
        strands and shifts, on the scale scored (strand pairs added when merged)."""
        preds = self._coverage(self.predict([lambda: list(self.inputs(variant))], 2)).mean(axis=1)
        if self.merge is not None:
            preds = self.merge.profiles(preds)
        genome, other = preds[0], preds[1]
        return (other, genome) if bool(getattr(variant, "flipped", False)) else (genome, other)
