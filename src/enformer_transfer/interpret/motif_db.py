"""Known motifs to name discovered patterns: JASPAR (the SQLite databases shipped with pyjaspar,
no network) and MEME files; TOMTOM (memelite) between patterns and known motifs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError


@dataclass(frozen=True)
class Motif:
    id: str
    name: str
    ppm: np.ndarray  # (4, length) ACGT probabilities


def jaspar_motifs(release: str, collection: str, tax_group: str) -> list[Motif]:
    """The latest version of each matrix of a JASPAR collection, as probabilities (counts + 0.01
    pseudocount per base, normalised)."""
    try:
        import pyjaspar
    except ImportError:
        raise InputError("motifs: JASPAR needs the pyjaspar package (pip install 'enformer-transfer[model]'), or "
                         "pass --motif-file MEME and --no-jaspar") from None
    if release not in pyjaspar.jaspar_releases:
        raise InputError(f"--jaspar-release {release!r}: not shipped with pyjaspar (has "
                         f"{', '.join(sorted(pyjaspar.jaspar_releases))})")
    database = pyjaspar.jaspardb(release=release)
    found = database.fetch_motifs(collection=collection, tax_group=[tax_group], all_versions=False)
    if not found:
        raise InputError(f"JASPAR {release}: no motif in collection {collection!r}, tax group {tax_group!r}")
    motifs = []
    for m in found:
        counts = np.array([m.counts[b] for b in "ACGT"], dtype=np.float64) + 0.01
        motifs.append(Motif(m.matrix_id, m.name, counts / counts.sum(axis=0, keepdims=True)))
    return motifs


def meme_motifs(path: Path | str) -> list[Motif]:
    """Motifs of a MEME-format file ('MOTIF id [name]' then a letter-probability matrix)."""
    from memelite.io import read_meme

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: motif file not found")
    try:
        found = read_meme(str(path))
    except (ValueError, AttributeError, IndexError) as err:
        raise InputError(f"{path}: not a MEME motif file ({type(err).__name__}: {err})") from None
    if not found:
        raise InputError(f"{path}: no motif (expected 'MOTIF' lines, each followed by a letter-probability matrix)")
    motifs = []
    for title, pwm in found.items():
        ident, _, name = title.partition(" ")
        ppm = np.asarray(pwm, dtype=np.float64)
        if ppm.shape[0] != 4:
            raise InputError(f"{path}: motif {ident!r} is not over the ACGT alphabet")
        motifs.append(Motif(ident, name or ident, ppm / np.maximum(ppm.sum(axis=0, keepdims=True), 1e-12)))
    return motifs


def tomtom_matches(queries: list[np.ndarray], motifs: list[Motif], best: int) -> pd.DataFrame:
    """For each query (4, length) probability matrix: its ``best`` known motifs by TOMTOM p-value,
    with Benjamini-Hochberg q-values over all known motifs. Columns query, rank, motif_id,
    motif_name, pvalue, qvalue, offset, strand."""
    from memelite import tomtom

    if not queries:
        return pd.DataFrame(columns=["query", "rank", "motif_id", "motif_name", "pvalue", "qvalue", "offset",
                                     "strand"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # memelite warns when few known motifs make the p-values coarse
        pvalues, _, offsets, _, strands = tomtom([np.asarray(q, dtype=np.float64) for q in queries],
                                                 [m.ppm for m in motifs], n_jobs=1)
    rows = []
    for q in range(len(queries)):
        p = np.asarray(pvalues[q], dtype=np.float64)
        qvalues = benjamini_hochberg(p)
        for rank, t in enumerate(np.argsort(p, kind="stable")[:best], 1):
            rows.append({"query": q, "rank": rank, "motif_id": motifs[t].id, "motif_name": motifs[t].name,
                         "pvalue": float(p[t]), "qvalue": float(qvalues[t]), "offset": int(offsets[q][t]),
                         "strand": "-" if strands[q][t] else "+"})
    return pd.DataFrame(rows)


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order."""
    p = np.asarray(pvalues, dtype=np.float64)
    n = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def write_meme(path: Path, motifs: dict[str, np.ndarray]) -> None:
    """Patterns (name -> (4, length) probabilities) as a MEME file."""
    lines = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
             "Background letter frequencies", "A 0.25 C 0.25 G 0.25 T 0.25", ""]
    for name, ppm in motifs.items():
        lines += [f"MOTIF {name}", f"letter-probability matrix: alength= 4 w= {ppm.shape[1]} nsites= 1 E= 0"]
        lines += [" ".join(f"{v:.6f}" for v in column) for column in np.asarray(ppm).T]
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
