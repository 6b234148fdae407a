"""Model inputs of a variant: reference and alternative one-hot windows centred on it.

For a variant at VCF position POS (1-based) the reference input is the ``seq_length`` bases
starting at ``POS - 1 - seq_length // 2`` (0-based), so the variant's first base sits at input
index ``seq_length // 2``; bases past a chromosome end get the pad value, as in ``embed``.

Alleles of different lengths follow Basenji's SAD (``basenji/vcf.py``: ``snp_seq1`` and
``dna_length_1hot``): the context is fetched ``D`` bases longer for a deletion of ``D`` bases,
the ALT allele replaces the REF allele in it, and each sequence longer than ``seq_length`` is cut
back to it symmetrically (``(length - seq_length) // 2`` bases from the left, the rest from the
right): a deletion's reference input starts ``D // 2`` bases later, an insertion of ``I`` bases
loses ``I // 2`` bases on the left of its alternative input. Both inputs stay centred on the
variant. A shift ``k`` moves the input window ``k`` bases to the left in the genome (the sequence
moves right in the input, baskerville's sign), filled with the real flanking sequence.

``--placement baskerville`` puts the variant one base to the left in the input, at index
``seq_length // 2 - 1``, as baskerville's windows starting at ``POS - seq_length // 2`` do: that
is our shift -1, so it is applied as an extra shift of -1 on top of every ``--shifts`` value.
"""

from __future__ import annotations

import numpy as np

from ..genome.onehot import one_hot

# the shift that moves our window (variant at index seq_length // 2) to each placement's
PLACEMENT_SHIFT = {"center": 0, "baskerville": -1}


def genome_alleles(variant) -> tuple[str, str]:
    """(allele in the genome, the other allele) of a variant row: its (ref, alt), or (alt, ref)
    for a REF mismatch flipped because its ALT is the genome's (``--ref-mismatch flip``)."""
    flipped = bool(getattr(variant, "flipped", False))
    return (variant.alt, variant.ref) if flipped else (variant.ref, variant.alt)


def deletion_length(ref: str, alt: str) -> int:
    return max(0, len(ref) - len(alt))


def reference_start(pos: int, ref: str, alt: str, seq_length: int) -> int:
    """0-based genome start of a variant's reference input (shift 0). Variants on one chromosome
    with the same start have the same reference input: one reference pass serves them all."""
    return pos - 1 - seq_length // 2 + deletion_length(ref, alt) // 2


def context_span(pos: int, ref: str, alt: str, seq_length: int, margin: int) -> tuple[int, int]:
    """[start, end) of the genome context both inputs are cut from, ``margin`` bases wider on each
    side for shifts."""
    start = pos - 1 - seq_length // 2 - margin
    return start, start + seq_length + deletion_length(ref, alt) + 2 * margin


def allele_inputs(context: np.ndarray, ref: str, alt: str, seq_length: int, margin: int,
                  shifts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Reference and alternative inputs, each (len(shifts), seq_length, 4), from the one-hot
    ``context`` of ``context_span``."""
    centre = seq_length // 2 + margin
    alt_context = np.concatenate([context[:centre], one_hot(alt), context[centre + len(ref):]])
    ref_trim = deletion_length(ref, alt) // 2
    alt_trim = max(0, len(alt) - len(ref)) // 2
    return _windows(context, ref_trim + margin, seq_length, shifts), \
        _windows(alt_context, alt_trim + margin, seq_length, shifts)


def _windows(sequence: np.ndarray, start: int, length: int, shifts: list[int]) -> np.ndarray:
    return np.stack([sequence[start - k : start - k + length] for k in shifts])


def reverse_complement(onehot: np.ndarray) -> np.ndarray:
    """Reverse complement of (..., length, 4) one-hot in ACGT order (complement = channels reversed)."""
    return onehot[..., ::-1, ::-1]


# --- a null: the same variant in shuffled copies of its context --------------------------

def shuffled_context(context: np.ndarray, keep: slice, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``context`` whose bases left and right of ``keep`` (the REF allele) are each
    dinucleotide-shuffled; positions past a chromosome end stay where they are."""
    codes = _letters(context)
    out = context.copy()
    inside = np.flatnonzero(codes != 5)
    if not len(inside):
        return out
    for a, b in ((inside[0], keep.start), (keep.stop, inside[-1] + 1)):
        if b - a > 2:
            out[a:b] = context[a:b][dinucleotide_shuffle(codes[a:b], rng)]
    return out


def _letters(onehot: np.ndarray) -> np.ndarray:
    """Per position: 0-3 for ACGT, 4 for N (all zeros), 5 for padding (fractional values)."""
    total = onehot.sum(axis=-1)
    return np.where(total == 0, 4, np.where(onehot.max(axis=-1) < 1, 5, onehot.argmax(axis=-1))).astype(np.int8)


def dinucleotide_shuffle(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``codes`` in a random order that keeps the first letter, the last letter and
    the count of every dinucleotide (Altschul & Erickson 1985: a random Eulerian walk through the
    letters, the last exit of each letter drawn as a random arborescence by Wilson's algorithm)."""
    n = len(codes)
    if n < 3:
        return np.arange(n)
    codes = np.asarray(codes)
    # edge j (j >= 1) leads from letter codes[j - 1] to letter codes[j]
    exits = {int(a): list(np.flatnonzero(codes[:-1] == a) + 1) for a in np.unique(codes[:-1])}
    last = int(codes[-1])
    in_tree, last_exit = {last}, {}
    for letter in exits:
        current = letter
        while current not in in_tree:
            last_exit[current] = exits[current][int(rng.integers(len(exits[current])))]
            current = int(codes[last_exit[current]])
        current = letter
        while current not in in_tree:
            in_tree.add(current)
            current = int(codes[last_exit[current]])
    order = {}
    for letter, edges in exits.items():
        edges = np.array(edges)
        if letter in last_exit:
            edges = edges[edges != last_exit[letter]]
            edges = np.concatenate([rng.permutation(edges), [last_exit[letter]]])
        else:
            edges = rng.permutation(edges)
        order[letter] = edges.tolist()
    cursor = dict.fromkeys(order, 0)
    walk = [0]
    current = int(codes[0])
    for _ in range(n - 1):
        edge = order[current][cursor[current]]
        cursor[current] += 1
        walk.append(edge)
        current = int(codes[edge])
    return np.array(walk)
